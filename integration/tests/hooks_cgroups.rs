//! OCI hooks (threat T21) and `linux.cgroupsPath` (threat T22) through the
//! real `moat` binary: hooks are refused unless the policy allows their
//! executable, allowed hooks see the real bundle, a failing poststop hook
//! never blocks `delete`; a cgroupsPath outside the allowed parents, not
//! plain, or naming a cgroup that holds a process is refused with nothing
//! touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat_integration::*;
use serde_json::json;

const KINDS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook script in the env's directory: writes its state (stdin) to
/// `<dir>/<arg1>.json` and its environment to `<dir>/<arg1>.env`, then
/// exits with `code`. Returns its real path.
#[allow(
    clippy::disallowed_methods,
    reason = "test harness: the real path moat is expected to report"
)]
fn hook_script(env: &Env, name: &str, code: i32) -> PathBuf {
    let dir = env.tmp.path().join(format!("{name}-proof"));
    fs::create_dir_all(&dir).unwrap();
    let path = env.tmp.path().join(format!("{name}.sh"));
    fs::write(
        &path,
        format!(
            "#!/bin/sh\ncat > {d}/\"$1\".json\nenv > {d}/\"$1\".env\nexit {code}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    fs::canonicalize(path).unwrap()
}

fn proof_dir(script: &Path) -> PathBuf {
    let name = script.file_stem().unwrap().to_str().unwrap();
    script.with_file_name(format!("{name}-proof"))
}

fn set_hook(bundle: &mut Bundle, kind: &str, hook: serde_json::Value) {
    bundle.config["hooks"][kind] = json!([hook]);
    bundle.write();
}

/// A policy file allowing `exes` as hook executables.
fn policy_allowing(env: &Env, exes: &[&Path]) -> String {
    let path = env.tmp.path().join("hooks-policy.toml");
    let list: Vec<String> = exes
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    fs::write(&path, format!("[hooks]\nallow = [{}]\n", list.join(", "))).unwrap();
    path.display().to_string()
}

#[test]
fn every_hook_kind_is_refused_by_default_and_never_runs() {
    let env = Env::new();
    let script = hook_script(&env, "evil", 0);
    for kind in KINDS {
        let mut b = env.bundle(&["true"]);
        set_hook(
            &mut b,
            kind,
            json!({"path": script, "args": ["evil", kind]}),
        );
        let id = env.id("hook-refused");
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            let out = env.run(&b, &id);
            out.assert_fails_with("refused by moat rule hooks");
            out.assert_fails_with(&format!("hooks.{kind}[0]"));
            out.assert_fails_with(script.to_str().unwrap());
            leak.verify();
        }
        leak.verify();
        assert!(
            fs::read_dir(proof_dir(&script)).unwrap().next().is_none(),
            "a refused {kind} hook ran"
        );
    }
}

#[test]
fn in_container_hook_kinds_are_refused_even_when_allowed() {
    let env = Env::new();
    let script = hook_script(&env, "inside", 0);
    let policy = policy_allowing(&env, &[&script]);
    for kind in ["createContainer", "startContainer"] {
        let mut b = env.bundle(&["true"]);
        set_hook(&mut b, kind, json!({"path": script, "args": ["x", kind]}));
        let id = env.id("hook-inside");
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            env.moat(&["--policy", &policy, "run", "--bundle", b.path(), &id])
                .assert_fails_with("mount namespace");
        }
        leak.verify();
        assert!(fs::read_dir(proof_dir(&script)).unwrap().next().is_none());
    }
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "test harness: the real path moat is expected to report"
)]
fn allowed_hooks_run_and_see_the_real_bundle() {
    let env = Env::new();
    let script = hook_script(&env, "good", 0);
    let policy = policy_allowing(&env, &[&script]);
    let mut b = env.bundle(&["true"]);
    for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
        b.config["hooks"][kind] = json!([{
            "path": script, "args": ["good", kind], "timeout": 30,
            // R9: only a PATH of system directories reaches a hook.
            "env": ["PATH=/usr/bin:/bin", "PROOF_ENV=from-the-spec",
                    "GLIBC_TUNABLES=glibc.malloc.check=3", "GODEBUG=inittrace=1"]
        }]);
    }
    b.write();
    let id = env.id("hook-ok");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        // run = create, start, wait, delete: every kind runs.
        env.moat(&["--policy", &policy, "run", "--bundle", b.path(), &id])
            .assert_ok();
    }
    leak.verify();
    let real_bundle = fs::canonicalize(&b.dir).unwrap();
    for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
        let dir = proof_dir(&script);
        let state: serde_json::Value = serde_json::from_slice(
            &fs::read(dir.join(format!("{kind}.json")))
                .unwrap_or_else(|e| panic!("the allowed {kind} hook did not run: {e}")),
        )
        .unwrap();
        assert_eq!(state["id"], json!(id), "{kind}: {state}");
        assert_eq!(
            state["bundle"],
            json!(real_bundle.display().to_string()),
            "{kind} hook saw another bundle"
        );
        let envf = fs::read_to_string(dir.join(format!("{kind}.env"))).unwrap();
        assert!(
            envf.lines().any(|l| l == "PATH=/usr/bin:/bin"),
            "{kind}: hook PATH lost: {envf}"
        );
        for hostile in ["PROOF_ENV=", "GLIBC_TUNABLES=", "GODEBUG="] {
            assert!(
                !envf.lines().any(|l| l.starts_with(hostile)),
                "{kind}: {hostile} reached the hook: {envf}"
            );
        }
    }
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "test harness: the real path moat is expected to report"
)]
fn failing_or_hanging_poststop_hook_does_not_block_delete() {
    let env = Env::new();
    let failing = hook_script(&env, "failing", 3);
    let hanging = env.tmp.path().join("hanging.sh");
    fs::write(&hanging, "#!/bin/sh\nexec sleep 300\n").unwrap();
    fs::set_permissions(&hanging, fs::Permissions::from_mode(0o755)).unwrap();
    let hanging = fs::canonicalize(hanging).unwrap();
    let policy = policy_allowing(&env, &[&failing, &hanging]);
    for (hook, force) in [
        (
            json!({"path": failing, "args": ["failing", "poststop"]}),
            false,
        ),
        (
            json!({"path": failing, "args": ["failing", "poststop"]}),
            true,
        ),
        (json!({"path": hanging, "timeout": 1}), false),
    ] {
        let mut b = env.bundle(&["true"]);
        set_hook(&mut b, "poststop", hook);
        let id = env.id("poststop");
        let leak = env.leak_check(&id);
        let _g = env.guard(&id);
        env.moat(&["--policy", &policy, "create", "--bundle", b.path(), &id])
            .assert_ok();
        env.moat(&["start", &id]).assert_ok();
        env.wait_status(&id, "stopped", Duration::from_secs(10));
        let start = Instant::now();
        let del = if force {
            env.moat(&["delete", "--force", &id])
        } else {
            env.moat(&["delete", &id])
        };
        del.assert_ok();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "delete waited for the hook"
        );
        leak.verify();
    }
    assert!(
        proof_dir(&failing).join("poststop.json").exists(),
        "the failing hook never ran"
    );
}

#[test]
fn exec_process_json_with_hooks_is_refused() {
    let env = Env::new();
    let script = hook_script(&env, "exechook", 0);
    let b = env.bundle(&["sleep", "300"]);
    let (id, _g) = env.start_sleeper(&b, "exec-hooks");
    for (key, value, rule) in [
        (
            "hooks",
            json!({"prestart": [{"path": script, "args": ["x", "exec"]}]}),
            "hooks",
        ),
        ("futureField", json!(true), "unsupported-field"),
    ] {
        let mut process = json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["true"]});
        process[key] = value;
        let pf = env.tmp.path().join("process.json");
        fs::write(&pf, serde_json::to_vec(&process).unwrap()).unwrap();
        env.moat(&["exec", "--process", pf.to_str().unwrap(), &id])
            .assert_fails_with(&format!("refused by moat rule {rule}: exec --process"))
            .assert_fails_with(key);
    }
    assert!(fs::read_dir(proof_dir(&script)).unwrap().next().is_none());
}

/// A cgroup the test made in every hierarchy, with a `sleep` it started
/// in one of them; removed (after killing the sleep) when dropped.
struct LiveCgroup {
    dirs: Vec<PathBuf>,
    child: Child,
}

impl LiveCgroup {
    fn new(rel: &str) -> LiveCgroup {
        let dirs: Vec<PathBuf> = cgroup_hierarchies()
            .into_iter()
            .map(|h| h.join(rel.trim_start_matches('/')))
            .collect();
        for d in &dirs {
            fs::create_dir_all(d).unwrap();
        }
        let child = Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pids = dirs
            .iter()
            .find(|d| d.starts_with("/sys/fs/cgroup/pids"))
            .unwrap_or(&dirs[0]);
        fs::write(pids.join("cgroup.procs"), child.id().to_string()).unwrap();
        LiveCgroup { dirs, child }
    }

    fn assert_intact(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the other workload's process was killed"
        );
        let pid = self.child.id().to_string();
        assert!(
            self.dirs.iter().all(|d| d.is_dir()),
            "the other workload's cgroup was removed"
        );
        assert!(
            self.dirs
                .iter()
                .any(|d| read_or_empty(&d.join("cgroup.procs"))
                    .lines()
                    .any(|l| l == pid)),
            "the process left its cgroup"
        );
    }
}

impl Drop for LiveCgroup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let _ = fs::remove_dir(d);
        }
    }
}

#[test]
fn cgroups_path_of_a_live_workload_or_outside_the_parents_is_refused() {
    let env = Env::new();
    let live_rel = format!("/moat/it-live-{}", std::process::id());
    let mut live = LiveCgroup::new(&live_rel);
    // Below the live workload's cgroup: its limits would count the
    // container, and deleting it would kill the container.
    let nested = format!("{live_rel}/nested");
    for (path, phrase) in [
        (live_rel.as_str(), "already holds a process"),
        (nested.as_str(), "above it"),
        ("/", "component"),
        ("../x", "neither an absolute"),
        ("/moat", "not below any of the allowed parents"),
        ("/user.slice/x", "not below any of the allowed parents"),
        ("/moat/../user.slice", "component"),
    ] {
        let mut b = env.bundle(&["true"]);
        b.config["linux"]["cgroupsPath"] = json!(path);
        b.write();
        let id = env.id("cg-bad");
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            env.moat(&["run", "--bundle", b.path(), &id])
                .assert_fails_with("refused by moat rule cgroups-path")
                .assert_fails_with(phrase);
            leak.verify();
        }
        leak.verify();
        live.assert_intact();
    }
}

#[test]
fn cgroups_path_below_an_allowed_parent_works_and_is_removed() {
    let env = Env::new();
    let id = env.id("cg-ok");
    // containerd's `default` namespace parent: a bundle containerd made
    // for this id, whose cgroup is named after it (T22).
    let rel = format!("/default/{id}");
    let mut b = env.engine_bundle("default", &id, &["sleep", "300"]);
    b.config["linux"]["cgroupsPath"] = json!(rel);
    b.write();
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        let pid = env.state(&id)["pid"].as_i64().unwrap().to_string();
        let procs = read_or_empty(
            &Path::new("/sys/fs/cgroup/pids")
                .join(rel.trim_start_matches('/'))
                .join("cgroup.procs"),
        );
        assert!(
            procs.lines().any(|l| l == pid),
            "init {pid} not in {rel}: {procs:?}"
        );
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
    for h in cgroup_hierarchies() {
        assert!(
            !h.join(rel.trim_start_matches('/')).exists(),
            "{rel} left in {}",
            h.display()
        );
    }
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "test harness: the real path moat is expected to report"
)]
fn install_docker_allows_dockerds_hook_in_the_policy() {
    let env = Env::new();
    let dir = env.tmp.path();
    let daemon = dir.join("daemon.json");
    let policy = dir.join("policy.toml");
    let install_docker = |dockerd: &Path| {
        env.moat_raw(&[
            "install",
            "docker",
            "--config",
            daemon.to_str().unwrap(),
            "--policy-file",
            policy.to_str().unwrap(),
            "--dockerd",
            dockerd.to_str().unwrap(),
        ])
        .assert_ok();
    };
    // Where Debian puts dockerd: the embedded default allows it already,
    // so no policy file is written.
    if Path::new("/usr/sbin/dockerd").is_file() {
        install_docker(Path::new("/usr/sbin/dockerd"));
        assert!(!policy.exists());
    }
    // A dockerd elsewhere is added, restricted to its hook's name.
    let fake = dir.join("opt-dockerd");
    fs::write(&fake, "").unwrap();
    install_docker(&fake);
    let p = moat::policy::Policy::from_toml(&fs::read_to_string(&policy).unwrap()).unwrap();
    let fake = fs::canonicalize(fake).unwrap().display().to_string();
    assert!(p.hooks.allow.contains(&fake), "{:?}", p.hooks);
    assert_eq!(p.hooks.arg0[&fake], vec!["libnetwork-setkey".to_string()]);
}

#[test]
fn a_container_process_posing_as_dockerd_is_refused() {
    // A container runs its own /usr/sbin/dockerd (a copy of busybox, run
    // as `sleep`); from the host, /proc/<pid>/exe of that process may read
    // "/usr/sbin/dockerd", which the default policy allows.
    let env = Env::new();
    let poser = env.bundle(&["/usr/local/bin/sleep", "300"]);
    let sbin = poser.rootfs().join("usr/sbin");
    fs::create_dir_all(&sbin).unwrap();
    fs::copy(poser.rootfs().join("bin/busybox"), sbin.join("dockerd")).unwrap();
    fs::create_dir_all(poser.rootfs().join("usr/local/bin")).unwrap();
    make_symlink(
        "/usr/sbin/dockerd",
        &poser.rootfs().join("usr/local/bin/sleep"),
    );
    let (poser_id, _pg) = env.start_sleeper(&poser, "poser");
    let pid = env.state(&poser_id)["pid"].as_i64().unwrap();
    let exe = format!("/proc/{pid}/exe");
    eprintln!("poser's exe reads {:?}", fs::read_link(&exe));

    let script = hook_script(&env, "poser", 0);
    let mut b = env.bundle(&["true"]);
    set_hook(
        &mut b,
        "prestart",
        json!({"path": exe, "args": ["libnetwork-setkey", "x", "y"]}),
    );
    let id = env.id("poser-hook");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["run", "--bundle", b.path(), &id])
            .assert_fails_with("refused by moat rule hooks");
    }
    leak.verify();
    assert!(fs::read_dir(proof_dir(&script)).unwrap().next().is_none());
}

/// A cgroupsPath of several new levels (red-team finding: every level above
/// the leaf was left in every hierarchy, after a delete and after a failed
/// create): the levels this create made are removed again (T22, T17).
/// Only the CRI's bundles choose levels (kubelet's pod levels); a raw
/// bundle's cgroup is named by moat (R6-1).
#[test]
fn new_cgroup_levels_above_the_leaf_are_removed() {
    let env = Env::new();
    // Below a CRI parent (levels of the engine's choosing are the CRI's
    // pod levels); an engine bundle may not be below moat's raw `/moat`.
    let top = format!("k8s.io/lvl-{}", std::process::id());
    for (what, argv) in [("ran", vec!["true"]), ("failed", vec!["/nonexistent"])] {
        let id = env.id(&format!("cg-levels-{what}"));
        let rel = format!("/{top}/a/b/{id}");
        let mut b = env.engine_bundle("k8s.io", &id, &argv);
        b.config["linux"]["cgroupsPath"] = json!(rel);
        b.write();
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            let out = env.run(&b, &id);
            if what == "ran" {
                out.assert_ok();
            }
            let _ = env.moat(&["delete", "--force", &id]);
        }
        leak.verify();
        for h in cgroup_hierarchies() {
            let left = h.join(&top);
            assert!(!left.exists(), "{what}: {} left behind", left.display());
        }
    }
}

/// Red-team R4: a raw tenant squatted a stopped docker container's
/// `/docker/<id>`; docker restarted the container into it and the tenant's
/// delete SIGKILLed it. Engine parents are now for bundles an engine made
/// for this id, with the leaf named after that id (T22); nothing is left.
#[test]
fn engine_cgroup_parents_are_refused_to_raw_bundles_and_other_leaves() {
    let env = Env::new();
    let victim = format!("{:064x}", u64::from(std::process::id()));
    // A raw bundle, created under the victim's id as the red team did.
    let mut raw = env.bundle(&["true"]);
    raw.config["linux"]["cgroupsPath"] = json!(format!("/docker/{victim}"));
    raw.write();
    // A bundle docker made for another container, naming the victim's leaf.
    let id = env.id("cg-engine");
    let mut other = env.engine_bundle("moby", &id, &["true"]);
    other.config["linux"]["cgroupsPath"] = json!(format!("/docker/{victim}"));
    other.write();
    for (b, id, phrase) in [
        (&raw, victim.clone(), "only for bundles an engine made"),
        (&other, id.clone(), "named after its own id"),
    ] {
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            env.moat(&["run", "--bundle", b.path(), &id])
                .assert_fails_with("refused by moat rule cgroups-path")
                .assert_fails_with(phrase);
        }
        leak.verify();
        for h in cgroup_hierarchies() {
            assert!(
                !h.join("docker").join(&victim).exists(),
                "squatted in {}",
                h.display()
            );
        }
    }
}
