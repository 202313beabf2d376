//! `moat learn`: profiles learned from a real workload's behaviour, then
//! enforced. Every test runs real containers on the real kernel (seccomp
//! user notification) and checks that no recorder, socket or state is
//! left behind. Network traffic stays on the container's own loopback.
//!
//! The docker round trip needs the runtime `moat-learn` (registered by
//! `make test`: hack/docker-register.sh with `--learn-dir
//! /var/lib/moat/learned`); it is skipped when docker does not answer,
//! unless `CI` is set.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_integration::docker::{docker, IMAGE};
use moat_integration::{kv, Bundle, Env};
use serde_json::Value;

/// Files, a pipe into a child process, a TCP connection over loopback,
/// and a child's exit status.
///
/// The client's stdin is a file, not a pipe: busybox `nc` reads stdin and
/// the socket in one poll loop, stdin first, and exits (status 0) at the
/// socket's end of file. The listener (stdin /dev/null) shuts its sending
/// side at once, so a client whose piped `echo` had not yet written when
/// that end of file came (a loaded machine, every syscall recorded) left
/// without sending: the listener read nothing. A file is readable at the
/// first poll. The client retries until the listener listens (300 tries,
/// 30 s and more), then stops the listener rather than wait for it forever:
/// the script ends within moat's 60 s and the test shows its output.
///
/// While learning, a syscall waits for the recorder's answer, and a signal
/// that comes meanwhile ends the wait: the call fails with EINTR when the
/// handler has no SA_RESTART (the kernel's seccomp user notification;
/// docs/seccomp.md, "Learning"). busybox sh catches SIGCHLD so, and gives
/// up on an `open`, `fcntl` or `fork` that fails: under load 12-15 about
/// one run in twenty exited 2 (`sh: 10: Interrupted system call`, saving
/// stdin for the client's redirection, unseen behind `2>/dev/null`) when
/// the listener, a background child, exited while the script set up or
/// undid the client's redirections. So the script never runs commands
/// while a child of its own may exit unwaited: listener and client are both
/// started in the background (the client's loop in a subshell whose
/// children are all waited for) and the script only `wait`s for them,
/// where an interrupted wait is retried.
const SCRIPT: &str = r#"
echo data > /tmp/f && cat /tmp/f > /tmp/g && echo FILES=$(cat /tmp/g)
echo PIPE=$(echo piped | tr a-z A-Z)
echo hello > /tmp/send
nc -l -p 7070 > /tmp/recv &
srv=$!
(i=0; until nc 127.0.0.1 7070 < /tmp/send 2>/dev/null; do i=$((i+1)); [ $i -lt 300 ] || { kill $srv; break; }; sleep 0.1; done) &
wait
echo SOCK=$(cat /tmp/recv)
sh -c 'exit 3'; echo CHILD=$?
"#;

fn expect_script_output(stdout: &str) {
    let kv = kv(stdout);
    assert_eq!(
        kv.get("FILES").map(String::as_str),
        Some("data"),
        "{stdout}"
    );
    assert_eq!(
        kv.get("PIPE").map(String::as_str),
        Some("PIPED"),
        "{stdout}"
    );
    assert_eq!(
        kv.get("SOCK").map(String::as_str),
        Some("hello"),
        "{stdout}"
    );
    assert_eq!(kv.get("CHILD").map(String::as_str), Some("3"), "{stdout}");
}

fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Names the profile's rules allow (with or without conditions).
fn allowed(profile: &Value) -> BTreeSet<String> {
    profile["syscalls"]
        .as_array()
        .expect("syscalls array")
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// Runs `moat learn` on `bundle` (container `id`, deleted on failure too).
fn learn(env: &Env, bundle: &Bundle, id: &str, output: &Path) -> moat_integration::Out {
    let _guard = env.guard(id);
    let leaks = env.leak_check(id);
    let out = env.moat(&[
        "learn",
        "--bundle",
        bundle.path(),
        "--id",
        id,
        "--output",
        output.to_str().unwrap(),
    ]);
    leaks.verify();
    assert!(
        !moat::learn::socket_path(&moat_integration::canonical_root(&env.root), id).exists(),
        "recorder socket left behind"
    );
    out
}

/// A bundle running `script` under `profile` as its seccomp filter.
fn enforcing_bundle(env: &Env, script: &str, profile: &Value) -> Bundle {
    let mut b = env.sh_bundle(script);
    b.config["linux"]["seccomp"] = profile.clone();
    b.write();
    b
}

#[test]
fn learned_profile_runs_its_workload_and_denies_the_rest() {
    let env = Env::new();
    let out_path = env.tmp.path().join("learned.json");
    let bundle = env.sh_bundle(SCRIPT);
    let id = env.id("learn");
    let out = learn(&env, &bundle, &id, &out_path);
    out.assert_ok();
    expect_script_output(&out.stdout);
    assert!(out.stdout.contains("profile written to"), "{out}");

    let profile = read_json(&out_path);
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert!(profile["architectures"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let names = allowed(&profile);
    for n in [
        "read", "openat", "socket", "bind", "listen", "connect", "execve", "wait4",
    ] {
        assert!(names.contains(n), "{n} not learned: {names:?}");
    }
    // Only what was used: far fewer than the default profile's ~330.
    assert!(names.len() < 120, "{} names allowed", names.len());
    // socket is allowed only for the families used (nc: AF_INET, and
    // AF_INET6 for its listener), not AF_NETLINK or AF_PACKET.
    let families: BTreeSet<u64> = profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["names"] == serde_json::json!(["socket"]))
        .map(|r| {
            assert_eq!(r["args"][0]["op"], "SCMP_CMP_EQ", "{r}");
            r["args"][0]["value"].as_u64().unwrap()
        })
        .collect();
    assert!(
        families.contains(&2) && !families.contains(&16) && !families.contains(&17),
        "{families:?}"
    );
    let meta = &profile["moatLearned"];
    assert_eq!(meta["runs"][0]["container"], id.as_str());
    assert_eq!(meta["runs"][0]["complete"], true);
    assert!(strings(&meta["observed"]).contains("execve"));

    // The same script under the learned profile works.
    let b = enforcing_bundle(&env, SCRIPT, &profile);
    let run = env.run(&b, &env.id("enforce"));
    run.assert_ok();
    expect_script_output(&run.stdout);

    // mkdir was never made: under the learned profile it fails with EPERM,
    // under moat's default profile it works.
    assert!(!names.contains("mkdir") && !names.contains("mkdirat"));
    let probe = "mkdir /tmp/newdir; echo MKDIR=$?";
    let b = enforcing_bundle(&env, probe, &profile);
    let denied = env.run(&b, &env.id("deny"));
    assert_eq!(
        kv(&denied.stdout).get("MKDIR").map(String::as_str),
        Some("1"),
        "{denied}"
    );
    assert!(
        denied.stderr.contains("Operation not permitted"),
        "{denied}"
    );
    let normal = env.run_sh(probe);
    assert_eq!(
        kv(&normal.stdout).get("MKDIR").map(String::as_str),
        Some("0"),
        "{normal}"
    );
}

#[test]
fn always_denied_syscalls_are_reported_never_learned() {
    let env = Env::new();
    let out_path = env.tmp.path().join("denied.json");
    let bundle =
        env.sh_bundle("unshare -U true; echo UNSHARE=$?; dmesg >/dev/null 2>&1; echo DMESG=$?");
    let id = env.id("denied");
    let out = learn(&env, &bundle, &id, &out_path);
    out.assert_ok();
    // Denied while learning, exactly as when enforcing.
    assert_eq!(
        kv(&out.stdout).get("UNSHARE").map(String::as_str),
        Some("1"),
        "{out}"
    );
    assert_eq!(
        kv(&out.stdout).get("DMESG").map(String::as_str),
        Some("1"),
        "{out}"
    );
    assert!(out.stdout.contains("attempted, denied by moat:"), "{out}");
    assert!(
        out.stdout.contains("unshare") && out.stdout.contains("syslog"),
        "{out}"
    );

    let profile = read_json(&out_path);
    let names = allowed(&profile);
    for n in moat::seccomp::ALWAYS_DENIED {
        assert!(
            !names.contains(*n),
            "always-denied {n} in a learned profile"
        );
    }
    let attempted = strings(&profile["moatLearned"]["deniedAttempts"]);
    assert!(
        attempted.contains("unshare") && attempted.contains("syslog"),
        "{attempted:?}"
    );
    assert!(profile["comment"]
        .as_str()
        .unwrap()
        .contains("denied by moat"));
}

#[test]
fn merge_unions_profiles_and_refuses_bad_input() {
    let env = Env::new();
    let a = env.tmp.path().join("a.json");
    let b = env.tmp.path().join("b.json");
    learn(
        &env,
        &env.sh_bundle("cat /proc/self/status >/dev/null"),
        &env.id("ma"),
        &a,
    )
    .assert_ok();
    learn(
        &env,
        &env.sh_bundle("mkdir /tmp/d && rmdir /tmp/d"),
        &env.id("mb"),
        &b,
    )
    .assert_ok();
    let (pa, pb) = (allowed(&read_json(&a)), allowed(&read_json(&b)));
    assert!(pb.contains("mkdir") && !pa.contains("mkdir"));

    let merged = env.tmp.path().join("merged.json");
    env.moat(&[
        "learn",
        "--merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ])
    .assert_ok();
    let m = read_json(&merged);
    let union: BTreeSet<String> = pa.union(&pb).cloned().collect();
    assert_eq!(allowed(&m), union);
    assert_eq!(m["moatLearned"]["runs"].as_array().unwrap().len(), 2);

    // Malformed inputs: a clear error naming the file; no output written.
    let cases: &[(&str, &str, &str)] = &[
        ("empty.json", "", "empty"),
        ("trunc.json", "{\"defaultAction\": ", "not valid JSON"),
        ("array.json", "[1, 2]", "expected a JSON object"),
        ("nodefault.json", "{\"syscalls\": []}", "defaultAction"),
        ("allow.json", "{\"defaultAction\": \"SCMP_ACT_ALLOW\"}", "lets every unlisted syscall through"),
        ("names.json", "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"action\": \"SCMP_ACT_ALLOW\"}]}", "has no \"names\""),
    ];
    for (name, text, phrase) in cases {
        let bad = env.tmp.path().join(name);
        fs::write(&bad, text).unwrap();
        let out_file = env.tmp.path().join(format!("out-{name}"));
        let out = env.moat(&[
            "learn",
            "--merge",
            a.to_str().unwrap(),
            bad.to_str().unwrap(),
            "-o",
            out_file.to_str().unwrap(),
        ]);
        out.assert_fails_with(phrase);
        assert!(
            out.stderr.contains(name),
            "error does not name {name}:\n{out}"
        );
        assert!(
            !out_file.exists(),
            "{name}: output written despite the error"
        );
    }
    env.moat(&["learn", "--merge", "/nonexistent/x.json"])
        .assert_fails_with("cannot read /nonexistent/x.json");
}

#[test]
fn duration_stops_a_long_running_workload() {
    let env = Env::new();
    let out_path = env.tmp.path().join("sleep.json");
    let bundle = env.bundle(&["/bin/sleep", "300"]);
    let id = env.id("dur");
    let _guard = env.guard(&id);
    let leaks = env.leak_check(&id);
    let start = Instant::now();
    let out = env.moat(&[
        "learn",
        "--bundle",
        bundle.path(),
        "--id",
        &id,
        "-o",
        out_path.to_str().unwrap(),
        "--duration",
        "1",
    ]);
    out.assert_ok();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert!(out.stdout.contains("stopped after --duration 1s"), "{out}");
    leaks.verify();
    let profile = read_json(&out_path);
    assert!(
        allowed(&profile).contains("clock_nanosleep") || allowed(&profile).contains("nanosleep")
    );
}

/// `--learn-dir` (docker's runtimeArgs), with an `exec` into the learning
/// container: the exec'd process is recorded too, and delete leaves no
/// recorder, socket or state.
#[test]
fn learn_dir_records_exec_and_delete_leaves_nothing() {
    let env = Env::new();
    let dir = env.tmp.path().join("learned");
    let bundle = env.bundle(&["/bin/sleep", "300"]);
    let id = env.id("ldir");
    let leaks = env.leak_check(&id);
    let _guard = env.guard(&id);
    let dir_s = dir.to_str().unwrap();
    env.moat(&[
        "--learn-dir",
        dir_s,
        "create",
        "--bundle",
        bundle.path(),
        &id,
    ])
    .assert_ok();
    let private = moat::state::private_dir(&moat_integration::canonical_root(&env.root), &id);
    let record = moat::learn::record(&private).expect("recorder record");
    assert!(Path::new(&format!("/proc/{}", record.pid)).exists());
    env.moat(&["start", &id]).assert_ok();
    let exec = env.moat(&[
        "exec",
        &id,
        "/bin/sh",
        "-c",
        "mkdir /tmp/fromexec && echo EXEC=ok",
    ]);
    exec.assert_ok();
    assert!(exec.stdout.contains("EXEC=ok"), "{exec}");
    env.moat(&["delete", "--force", &id]).assert_ok();
    leaks.verify();
    assert!(!record.socket.exists(), "socket left behind");
    let start = Instant::now();
    while fs::read_to_string(format!("/proc/{}/stat", record.pid))
        .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "recorder {} still running",
            record.pid
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let profile = read_json(&dir.join(format!("{id}.json")));
    assert!(
        allowed(&profile).contains("mkdir"),
        "exec'd mkdir not recorded"
    );
    assert_eq!(profile["moatLearned"]["runs"][0]["processTrees"], 2);
}

/// The `moat.dev/learn` annotation (containerd, Kubernetes): the profile
/// goes to the policy's `learn.dir`, under the containerd namespace of the
/// bundle (R8), by the annotation's name, and runs with the same name in
/// the same namespace accumulate. Bad values are refused, leaving nothing.
#[test]
fn annotation_learns_into_the_policy_dir_and_accumulates() {
    let env = Env::new();
    let dir = env.tmp.path().join("annotated");
    let policy = env.tmp.path().join("policy.toml");
    fs::write(
        &policy,
        format!("[learn]\ndir = {:?}\n", dir.to_str().unwrap()),
    )
    .unwrap();
    let policy_s = policy.to_str().unwrap();
    let profile_path = dir.join("default").join("web.json");

    for (n, script) in [
        "cat /proc/self/status >/dev/null",
        "mkdir /tmp/d && rmdir /tmp/d",
    ]
    .iter()
    .enumerate()
    {
        let id = env.id("ann");
        let mut b = env.engine_bundle("default", &id, &["/bin/sh", "-c", script]);
        b.annotate("moat.dev/learn", "web");
        let leaks = env.leak_check(&id);
        let _guard = env.guard(&id);
        env.moat(&["--policy", policy_s, "run", "--bundle", b.path(), &id])
            .assert_ok();
        leaks.verify();
        let profile = read_json(&profile_path);
        assert_eq!(
            profile["moatLearned"]["runs"].as_array().unwrap().len(),
            n + 1
        );
    }
    let names = allowed(&read_json(&profile_path));
    assert!(
        names.contains("mkdir") && names.contains("rmdir"),
        "{names:?}"
    );

    // A path instead of a name: refused before anything is created.
    let mut b = env.sh_bundle("true");
    b.annotate("moat.dev/learn", "../escape");
    let id = env.id("annbad");
    let leaks = env.leak_check(&id);
    env.moat(&["--policy", policy_s, "run", "--bundle", b.path(), &id])
        .assert_fails_with("moat.dev/learn");
    leaks.verify();
    assert!(!env.tmp.path().join("escape.json").exists());

    // The operator turned annotation learning off.
    let off = env.tmp.path().join("off.toml");
    fs::write(&off, "[learn]\ndir = \"\"\n").unwrap();
    let mut b = env.sh_bundle("true");
    b.annotate("moat.dev/learn", "true");
    let id = env.id("annoff");
    let leaks = env.leak_check(&id);
    env.moat(&[
        "--policy",
        off.to_str().unwrap(),
        "run",
        "--bundle",
        b.path(),
        &id,
    ])
    .assert_fails_with("learn.dir is empty");
    leaks.verify();
}

// ---------------------------------------------------------------------------
// docker: `--runtime=moat-learn`, then the runtime under test (MOAT_DOCKER_RUNTIME,
// default moat) with `--security-opt seccomp=`.
// ---------------------------------------------------------------------------

const LEARN_DIR: &str = "/var/lib/moat/learned";

fn docker_ready() -> bool {
    let info = docker(&["info", "--format", "{{json .Runtimes}}"]);
    let ok = info.ok() && info.stdout.contains("\"moat-learn\"");
    if !ok && std::env::var_os("CI").is_some() {
        panic!("docker with the runtime moat-learn is required under CI (make test registers it)");
    }
    if !ok {
        eprintln!("skipping: docker or its moat-learn runtime is not available");
    }
    ok
}

/// Removes the test's docker containers and its learned profile when dropped.
struct DockerCleanup {
    names: Vec<String>,
    profile: Option<PathBuf>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = docker(&["rm", "-f", name]);
        }
        if let Some(p) = &self.profile {
            let _ = fs::remove_file(p);
        }
    }
}

#[test]
fn docker_learn_then_enforce_round_trip() {
    if !docker_ready() {
        return;
    }
    let name = format!("moat-learn-it-{}", std::process::id());
    let (enforce, deny) = (format!("{name}-enforce"), format!("{name}-deny"));
    let mut cleanup = DockerCleanup {
        names: vec![name.clone(), enforce.clone(), deny.clone()],
        profile: None,
    };
    let learned = docker(&[
        "run",
        "--name",
        &name,
        "--runtime=moat-learn",
        IMAGE,
        "sh",
        "-c",
        SCRIPT,
    ]);
    assert!(
        learned.ok(),
        "docker run --runtime=moat-learn failed: {}",
        learned.describe()
    );
    expect_script_output(&learned.stdout);
    let id = docker(&["inspect", "--format", "{{.Id}}", &name]);
    assert!(id.ok(), "{}", id.describe());
    let profile_path = Path::new(LEARN_DIR).join(format!("{}.json", id.stdout.trim()));
    cleanup.profile = Some(profile_path.clone());
    let rm = docker(&["rm", &name]);
    assert!(rm.ok(), "{}", rm.describe());
    let profile = read_json(&profile_path);
    let names = allowed(&profile);
    assert!(
        names.contains("connect") && !names.contains("mkdir"),
        "{names:?}"
    );

    let seccomp = format!("seccomp={}", profile_path.display());
    let runtime = format!("--runtime={}", moat_integration::docker::runtime());
    let run_enforcing = |name: &str, script: &str| {
        docker(&[
            "run",
            "--rm",
            "--name",
            name,
            &runtime,
            "--security-opt",
            &seccomp,
            IMAGE,
            "sh",
            "-c",
            script,
        ])
    };
    let enforced = run_enforcing(&enforce, SCRIPT);
    assert!(
        enforced.ok(),
        "enforcing the learned profile failed: {}",
        enforced.describe()
    );
    expect_script_output(&enforced.stdout);
    let denied = run_enforcing(&deny, "mkdir /tmp/x; echo MKDIR=$?");
    assert_eq!(
        kv(&denied.stdout).get("MKDIR").map(String::as_str),
        Some("1"),
        "{}",
        denied.describe()
    );
}

/// R8: a tenant's `moat.dev/learn: web` never merges into another
/// tenant's `web`: a raw bundle learns under `raw/<its state root's
/// tag>/<its id>/` (R6-6), another
/// containerd namespace under its own name, so the profile learned for the
/// `default` namespace is left exactly as it was.
#[test]
fn annotation_profiles_of_other_tenants_are_never_merged_into() {
    let env = Env::new();
    let dir = env.tmp.path().join("scoped");
    let policy = env.tmp.path().join("policy.toml");
    fs::write(
        &policy,
        format!("[learn]\ndir = {:?}\n", dir.to_str().unwrap()),
    )
    .unwrap();
    let policy_s = policy.to_str().unwrap();
    let run = |b: &Bundle, id: &str| {
        let leaks = env.leak_check(id);
        {
            let _guard = env.guard(id);
            env.moat(&["--policy", policy_s, "run", "--bundle", b.path(), id])
                .assert_ok();
        }
        leaks.verify();
    };

    // The victim: namespace `default` learns `web`.
    let victim = env.id("victim");
    let mut b = env.engine_bundle("default", &victim, &["/bin/sh", "-c", "true"]);
    b.annotate("moat.dev/learn", "web");
    run(&b, &victim);
    let victims = dir.join("default").join("web.json");
    let before = fs::read_to_string(&victims).unwrap();
    assert!(!allowed(&read_json(&victims)).contains("mkdir"));

    // A raw tenant and another namespace ask for the same name, and even
    // write the victim's pod namespace into their annotations.
    let raw = env.id("raw");
    let mut b = env.sh_bundle("mkdir /tmp/d && rmdir /tmp/d");
    b.annotate("moat.dev/learn", "web");
    b.annotate("io.kubernetes.cri.sandbox-namespace", "default");
    run(&b, &raw);
    let other = env.id("other");
    let mut b = env.engine_bundle("tenant-b", &other, &["/bin/sh", "-c", "mkdir /tmp/d"]);
    b.annotate("moat.dev/learn", "web");
    run(&b, &other);

    // Two docker containers (namespace `moby`, shared by every user of
    // docker's socket) asking for the same name: each its own profile,
    // in its container's scope (M2).
    let docker_a = env.id("dock-a");
    let mut b = env.engine_bundle("moby", &docker_a, &["/bin/sh", "-c", "true"]);
    b.annotate("moat.dev/learn", "web");
    run(&b, &docker_a);
    let docker_as = dir.join("moby").join(&docker_a).join("web.json");
    let docker_before = fs::read_to_string(&docker_as).unwrap();
    let docker_b = env.id("dock-b");
    let mut b = env.engine_bundle("moby", &docker_b, &["/bin/sh", "-c", "mkdir /tmp/d"]);
    b.annotate("moat.dev/learn", "web");
    run(&b, &docker_b);
    assert_eq!(
        fs::read_to_string(&docker_as).unwrap(),
        docker_before,
        "one docker container's run merged into another's profile"
    );
    assert!(!dir.join("moby").join("web.json").exists());

    assert_eq!(
        fs::read_to_string(&victims).unwrap(),
        before,
        "another tenant's run merged into the victim's profile"
    );
    for path in [
        dir.join("moby").join(&docker_b).join("web.json"),
        dir.join("raw")
            .join(moat::engine_bundle::state_root_tag(
                &moat_integration::canonical_root(&env.root),
            ))
            .join(&raw)
            .join("web.json"),
        dir.join("tenant-b").join("web.json"),
    ] {
        let names = allowed(&read_json(&path));
        assert!(names.contains("mkdir"), "{}: {names:?}", path.display());
    }
}

/// T39 (red-team pass 5 G8): the recorder answers every allowed syscall of
/// a learning container; it runs in the container's cpu/cpuacct, memory and
/// pids cgroups (not the caller's), so that work counts against the
/// container's quota. Delete still leaves nothing (the cgroups go too).
#[test]
fn recorder_runs_in_the_containers_cgroup() {
    let env = Env::new();
    let dir = env.tmp.path().join("learned");
    let mut bundle = env.bundle(&["/bin/sh", "-c", "while :; do : > /dev/null; done"]);
    bundle.config["linux"]["resources"]["cpu"] =
        serde_json::json!({"quota": 10000, "period": 100000});
    bundle.write();
    let id = env.id("lcg");
    let leaks = env.leak_check(&id);
    {
        let _guard = env.guard(&id);
        env.moat(&[
            "--learn-dir",
            dir.to_str().unwrap(),
            "create",
            "--bundle",
            bundle.path(),
            &id,
        ])
        .assert_ok();
        env.moat(&["start", &id]).assert_ok();
        let private = moat::state::private_dir(&moat_integration::canonical_root(&env.root), &id);
        let record = moat::learn::record(&private).expect("recorder record");
        let line = |pid: i32, ctrl: &str| {
            fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap_or_default()
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == ctrl))
                })
                .and_then(|l| l.split(':').nth(2).map(str::to_string))
                .unwrap_or_default()
        };
        let state = env.state(&id);
        let init = state["pid"].as_i64().expect("init pid") as i32;
        for ctrl in ["cpuacct", "memory", "pids"] {
            let want = line(init, ctrl);
            assert!(want.contains(&id), "init's {ctrl} cgroup {want:?}");
            let start = Instant::now();
            while line(record.pid, ctrl) != want {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "recorder {} {ctrl} cgroup {:?}, the container's {want:?}",
                    record.pid,
                    line(record.pid, ctrl)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Not the devices hierarchy: `kill --all` must not reach it.
        assert!(!line(record.pid, "devices").contains(&id));
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leaks.verify();
}

/// T39: the recorder sits in the container's resource cgroups, yet
/// `kill --all` never reaches it, neither while the container runs
/// (libcontainer lists the devices hierarchy, which the recorder does not
/// join) nor once it has stopped (moat signals what is left in the cgroup,
/// sparing the recorder by its recorded pid and start time): the recorder
/// ends by itself when the container's processes are gone and its profile
/// says so (`complete`, `finished`; a SIGTERM leaves it incomplete, a
/// SIGKILL unfinished). Delete leaves nothing.
#[test]
fn kill_all_leaves_the_recorder_to_finish_its_profile() {
    let env = Env::new();
    let dir = env.tmp.path().join("learned");
    let bundle = env.bundle(&["/bin/sh", "-c", "mkdir /tmp/before-kill; sleep 300"]);
    let id = env.id("lkill");
    let leaks = env.leak_check(&id);
    {
        let _guard = env.guard(&id);
        env.moat(&[
            "--learn-dir",
            dir.to_str().unwrap(),
            "create",
            "--bundle",
            bundle.path(),
            &id,
        ])
        .assert_ok();
        env.moat(&["start", &id]).assert_ok();
        let private = moat::state::private_dir(&moat_integration::canonical_root(&env.root), &id);
        let record = moat::learn::record(&private).expect("recorder record");
        // The recorder has joined the container's pids cgroup (its first
        // notification) before the kill.
        let in_container = || {
            fs::read_to_string(format!("/proc/{}/cgroup", record.pid))
                .unwrap_or_default()
                .lines()
                .any(|l| l.split(':').nth(1) == Some("pids") && l.contains(&id))
        };
        let start = Instant::now();
        while !in_container() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the recorder never joined the container's pids cgroup"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The workload has run its mkdir (recorded) before the kill.
        let init = env.state(&id)["pid"].as_i64().expect("init pid");
        let made = format!("/proc/{init}/root/tmp/before-kill");
        let start = Instant::now();
        while !Path::new(&made).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the workload never ran"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        env.moat(&["kill", "--all", &id, "KILL"]).assert_ok();
        let start = Instant::now();
        while env.state(&id)["status"] != "stopped" {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "container {id} never stopped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The engine's kill of "all" after the init exited (containerd 2.x).
        env.moat(&["kill", "--all", &id, "KILL"]).assert_ok();
        let start = Instant::now();
        while moat::learn::live_recorder_pid(&private).is_some() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "recorder {} still running after the container stopped",
                record.pid
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let profile = read_json(&dir.join(format!("{id}.json")));
        let run = &profile["moatLearned"]["runs"][0];
        assert_eq!(run["complete"], true, "the recorder did not finish: {run}");
        assert!(run["finished"].is_string(), "{run}");
        assert!(
            allowed(&profile).contains("mkdir") || allowed(&profile).contains("mkdirat"),
            "{profile}"
        );
        env.moat(&["delete", &id]).assert_ok();
    }
    leaks.verify();
}
