//! Bad input through the real `moat` binary: every case must fail with a
//! non-zero exit and a clear message, and leave nothing behind (state
//! directories, rootfs mounts, id-pool entries, cgroups, processes).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use moat_integration::*;
use serde_json::json;

/// Runs `create` (and `run`) of `bundle` as a fresh id and asserts both
/// fail mentioning `phrase`, leaving nothing behind.
fn assert_refused(env: &Env, bundle: &Bundle, phrase: &str) {
    for cmd in ["create", "run"] {
        env.assert_refused(cmd, bundle, &format!("bad-{cmd}"), &[phrase]);
    }
}

#[test]
fn malformed_config_json() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    b.write_raw(b"{not json");
    assert_refused(&env, &b, "malformed");
}

#[test]
fn empty_config_json() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    b.write_raw(b"");
    assert_refused(&env, &b, "empty");
    b.write_raw(b" \n\t\n");
    assert_refused(&env, &b, "empty");
}

#[test]
fn huge_config_json() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    // A valid spec preceded by 20 MiB of whitespace.
    let mut data = vec![b' '; 20 << 20];
    data.extend_from_slice(&serde_json::to_vec(&b.config).unwrap());
    b.write_raw(&data);
    assert_refused(&env, &b, "larger than");
}

#[test]
fn missing_config_json() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    fs::remove_file(b.config_path()).unwrap();
    assert_refused(&env, &b, "config.json");

    // A bundle directory that does not exist at all.
    let id = env.id("nobundle");
    let leak = env.leak_check(&id);
    let missing = env.tmp.path().join("no-such-bundle");
    env.moat(&["create", "--bundle", missing.to_str().unwrap(), &id])
        .assert_fails_with("does not exist");
    leak.verify();
}

#[test]
fn wrong_oci_version() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.config["ociVersion"] = json!("0.1");
    b.write();
    assert_refused(&env, &b, "ociVersion");
}

#[test]
fn missing_rootfs() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    fs::remove_dir_all(b.rootfs()).unwrap();
    assert_refused(&env, &b, "rootfs");

    // A rootfs that is a file.
    fs::write(b.rootfs(), b"not a directory").unwrap();
    assert_refused(&env, &b, "not a directory");
}

#[test]
fn hostile_ids_are_refused() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    let long = "a".repeat(1000);
    let cases: &[(&str, &str)] = &[
        ("../x", "may only contain"),
        ("a/b", "may only contain"),
        ("/", "may only contain"),
        ("..", "names a directory"),
        (".", "names a directory"),
        ("", "container_id"),
        ("a b", "may only contain"),
        ("x\ny", "may only contain"),
        (&long, "longer than 200"),
    ];
    // A decoy beside the state root that "../x" would name.
    let decoy = env.tmp.path().join("x");
    fs::create_dir_all(&decoy).unwrap();
    fs::write(decoy.join("state.json"), b"{}").unwrap();
    for (id, phrase) in cases {
        let leak = env.leak_check(id);
        for cmd in ["create", "run"] {
            env.moat(&[cmd, "--bundle", b.path(), id])
                .assert_fails_with(phrase);
            leak.verify();
        }
        // Other commands refuse them too, and delete --force must not
        // remove anything outside the root.
        for args in [
            vec!["delete", "--force", id],
            vec!["delete", id],
            vec!["state", id],
            vec!["kill", id, "KILL"],
        ] {
            let out = env.moat(&args);
            assert!(!out.success(), "accepted id {id:?}:\n{out}");
        }
        assert!(
            decoy.join("state.json").exists(),
            "{id:?} reached the decoy"
        );
        leak.verify();
    }
}

#[test]
fn id_of_200_characters_is_the_longest_valid() {
    // An id is a directory and cgroup name (255 bytes at most) with
    // libcontainer sockets below it; moat accepts 200 and refuses longer
    // ids (see hostile_ids_are_refused for 1000).
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = "a".repeat(200);
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        env.moat(&["start", &id]).assert_ok();
        assert_eq!(env.status(&id), "running");
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
    let t = env.bundle(&["true"]);
    env.run(&t, &id).assert_ok();
    leak.verify();
    let too_long = "a".repeat(201);
    env.moat(&["create", "--bundle", b.path(), &too_long])
        .assert_fails_with("longer than 200");
    env.leak_check(&too_long).verify();
}

#[test]
fn duplicate_id_fails_and_keeps_the_first_container() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("dup");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        let first = env.state(&id);
        let first_pid = first["pid"].as_i64().unwrap();

        let other = env.bundle(&["sh", "-c", "echo second"]);
        env.moat(&["create", "--bundle", other.path(), &id])
            .assert_fails_with("already exists");
        env.moat(&["run", "--bundle", other.path(), &id])
            .assert_fails_with("already exists");

        // The first container is untouched and still works.
        let again = env.state(&id);
        assert_eq!(again["status"], "created", "{again}");
        assert_eq!(again["pid"].as_i64().unwrap(), first_pid);
        assert_eq!(again["bundle"], first["bundle"]);
        env.moat(&["start", &id]).assert_ok();
        env.wait_status(&id, "running", Duration::from_secs(10));
        let out = env.moat(&["exec", &id, "echo", "still here"]);
        out.assert_ok();
        assert_eq!(out.stdout.trim(), "still here");
        env.moat(&["kill", &id, "KILL"]).assert_ok();
        env.wait_status(&id, "stopped", Duration::from_secs(10));
        env.moat(&["delete", &id]).assert_ok();
    }
    leak.verify();
}

#[test]
fn unknown_id_for_every_command() {
    let env = Env::new();
    let id = env.id("ghost");
    let leak = env.leak_check(&id);
    let resources = env.tmp.path().join("resources.json");
    fs::write(&resources, br#"{"pids": {"limit": 10}}"#).unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["start", &id],
        vec!["state", &id],
        vec!["kill", &id],
        vec!["kill", &id, "SIGKILL"],
        vec!["delete", &id],
        vec!["exec", &id, "true"],
        vec!["ps", &id],
        vec!["ps", "--format", "json", &id],
        vec!["pause", &id],
        vec!["resume", &id],
        vec!["events", "--stats", &id],
        vec!["update", "--pids-limit", "10", &id],
        vec!["update", "--resources", resources.to_str().unwrap(), &id],
        vec!["report", &id],
    ];
    for args in &commands {
        env.moat(args).assert_fails_with("does not exist");
        leak.verify();
    }
    env.moat(&["delete", "--force", &id]).assert_ok();
    leak.verify();
    let list = env.moat(&["list", "--format", "json"]);
    list.assert_ok();
    assert_eq!(list.json(), json!([]), "{list}");
}

#[test]
fn symlinked_mount_destination_pointing_outside_is_refused() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    make_symlink("../../../../etc", &b.rootfs().join("evil"));
    b.add_mount(json!({
        "destination": "/evil/x",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=1m"]
    }));
    let host_target = Path::new("/etc/x");
    let existed = host_target.exists();
    let etc_before = fs::read_dir("/etc").unwrap().count();
    assert_refused(&env, &b, "symlink");
    assert_eq!(host_target.exists(), existed, "/etc/x appeared or vanished");
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/etc/x")),
        "something is mounted on the host's /etc/x"
    );
    assert_eq!(fs::read_dir("/etc").unwrap().count(), etc_before);

    // The same through a deeper path and a bind mount.
    let mut b = env.bundle(&["true"]);
    fs::create_dir_all(b.rootfs().join("var/lib")).unwrap();
    make_symlink("../../../../../../etc", &b.rootfs().join("var/lib/evil"));
    let src = env.tmp.path().join("src-dir");
    fs::create_dir_all(&src).unwrap();
    b.add_mount(json!({
        "destination": "/var/lib/evil/moat-test",
        "type": "bind",
        "source": src,
        "options": ["rbind", "ro"]
    }));
    assert_refused(&env, &b, "symlink");
    assert!(!Path::new("/etc/moat-test").exists());
}

#[test]
fn privileged_spec_is_refused() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.config["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    b.write();
    assert_refused(&env, &b, "refusals.allow_privileged");

    // CAP_SYS_ADMIN with nothing masked: docker's --privileged shape.
    let mut b = env.bundle(&["true"]);
    b.set_capabilities(&["CAP_SYS_ADMIN", "CAP_KILL"]);
    b.config["linux"]["maskedPaths"] = json!([]);
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.write();
    assert_refused(&env, &b, "refusals.allow_privileged");
}

#[test]
fn host_namespaces_are_refused() {
    let env = Env::new();
    for ns in ["network", "pid", "ipc", "uts", "mount"] {
        let mut b = env.bundle(&["true"]);
        let list: Vec<_> = b.config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != ns)
            .cloned()
            .collect();
        b.config["linux"]["namespaces"] = json!(list);
        b.write();
        assert_refused(&env, &b, "refusals.allow_host_namespaces");
    }
}

#[test]
fn host_namespaces_joined_by_path_are_refused() {
    // The host's namespaces named through any host process: moat itself
    // (/proc/self, resolved by moat) and this test process.
    let env = Env::new();
    let me = std::process::id();
    for (typ, file) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        for path in [
            format!("/proc/self/ns/{file}"),
            format!("/proc/{me}/ns/{file}"),
        ] {
            eprintln!("case: {typ} namespace path {path}");
            let mut b = env.bundle(&["true"]);
            b.join_namespace(typ, &path);
            assert_refused(&env, &b, "refusals.allow_host_namespaces");
        }
    }
}

#[test]
fn pid_1_namespace_paths_are_refused() {
    // PID 1's namespace files are the host's by definition, also where moat
    // cannot read them (this VM's PID 1 denies ptrace access to /proc/1/ns):
    // then moat must fail closed, naming the policy key.
    let env = Env::new();
    for (typ, file) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        let path = format!("/proc/1/ns/{file}");
        eprintln!("case: {typ} namespace path {path}");
        let mut b = env.bundle(&["true"]);
        b.join_namespace(typ, &path);
        assert_refused(&env, &b, "refusals.allow_host_namespaces");
    }
}

#[test]
fn sensitive_host_mounts_are_refused() {
    let env = Env::new();
    let sources = [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/containerd/containerd.sock",
        "/etc",
        "/",
        "/proc",
        "/var/lib/docker",
    ];
    for src in sources {
        let mut b = env.bundle(&["true"]);
        b.add_mount(bind(src, "/mnt-host", true));
        assert_refused(&env, &b, "refusals.allow_host_mounts");
    }
    // The same through a symlink in a harmless-looking temp path.
    for target in ["/etc", "/var/run/docker.sock"] {
        if !Path::new(target).exists() {
            continue;
        }
        let link = env
            .tmp
            .path()
            .join(format!("innocent-{}", target.replace('/', "_")));
        make_symlink(target, &link);
        let mut b = env.bundle(&["true"]);
        b.add_mount(bind(&link, "/mnt-host", true));
        assert_refused(&env, &b, "refusals.allow_host_mounts");
    }
    // A dotted path that normalises to /etc.
    let mut b = env.bundle(&["true"]);
    b.add_mount(bind("/tmp/../etc", "/mnt-host", true));
    assert_refused(&env, &b, "refusals.allow_host_mounts");
}

#[test]
fn harmless_bind_mount_works_and_is_cleaned_up() {
    // The control for the refusals above: a dummy file at a temp path
    // (standing in for a socket) is mounted, readable, and unstaged after.
    let env = Env::new();
    let dummy = env.tmp.path().join("dummy.sock");
    fs::write(&dummy, b"dummy-content\n").unwrap();
    let mut b = env.sh_bundle("cat /dummy.sock");
    b.add_mount(json!({
        "destination": "/dummy.sock",
        "type": "bind",
        "source": dummy,
        "options": ["bind", "ro"]
    }));
    let id = env.id("bindok");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "dummy-content", "{out}");
    leak.verify();
    assert_eq!(fs::read(&dummy).unwrap(), b"dummy-content\n");
}

#[test]
fn devices_beyond_the_default_set_are_refused() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.config["linux"]["devices"] = json!([{
        "path": "/dev/sda", "type": "b", "major": 8, "minor": 0,
        "fileMode": 432, "uid": 0, "gid": 0
    }]);
    b.write();
    assert_refused(&env, &b, "refusals.allow_devices");

    // A device cgroup rule for it.
    let mut b = env.bundle(&["true"]);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rwm"}
    ]);
    b.write();
    assert_refused(&env, &b, "refusals.allow_devices");
}

/// The processes of cgroup /moat/<id> (pids hierarchy) with their state
/// and parent, for failure messages.
fn describe_cgroup(id: &str) -> String {
    let procs =
        read_or_empty(&cgroup_dir(Path::new("/sys/fs/cgroup/pids"), id).join("cgroup.procs"));
    let list: Vec<String> = procs
        .split_whitespace()
        .map(|p| {
            let stat = read_or_empty(Path::new(&format!("/proc/{p}/stat")));
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().take(2).collect())
                .unwrap_or_default();
            format!("{p} {fields:?} {}", proc_cmdline(p.parse().unwrap_or(0)))
        })
        .collect();
    format!("{list:?}")
}

/// A tiny deterministic PRNG (xorshift) for the extra kill delays.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn moat_killed_mid_create_is_cleaned_up_by_delete_force() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let mut delays: Vec<u64> = vec![0, 2, 5, 10, 20, 40];
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let seed0 = seed;
    // A dense sweep over the whole create (about 50 ms here), a few
    // random delays, and one after create has finished.
    delays.extend(1..=40);
    delays.extend((43..=70).step_by(3));
    for _ in 0..6 {
        delays.push(xorshift(&mut seed) % 60);
    }
    delays.push(300);
    let mut failures = Vec::new();
    for (i, delay) in delays.iter().enumerate() {
        let id = env.id(&format!("killed-{delay}ms"));
        let leak = env.leak_check(&id);
        let mut child = env.spawn(&["create", "--bundle", b.path(), &id]);
        std::thread::sleep(Duration::from_millis(*delay));
        // Only the moat we spawned.
        // SAFETY: kill(2) on a child we have not yet waited for.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let status = wait_timeout(&mut child, Duration::from_secs(30), "killed moat create");
        let root = canonical_root(&env.root);
        let left_before: Vec<&str> = [
            ("state", root.join(&id).exists()),
            ("moat-state", root.join("@moat").join(&id).exists()),
            ("rootfs-mount", leak.mount_point().exists()),
            ("cgroup", cgroup_dirs(&id).iter().any(|d| d.exists())),
        ]
        .iter()
        .filter(|(_, present)| *present)
        .map(|(what, _)| *what)
        .collect();
        eprintln!(
            "killed after {delay} ms: moat {}; left before delete --force: {left_before:?}",
            if status.code().is_some() {
                "had already exited"
            } else {
                "was killed"
            }
        );
        let procs_before = describe_cgroup(&id);
        let state_before = read_or_empty(&root.join(&id).join("state.json"));
        let del = env.moat(&["delete", "--force", &id]);
        if !del.success() {
            eprintln!(
                "delete --force failed; before it: cgroup {procs_before}, state.json {state_before}; after it: cgroup {}",
                describe_cgroup(&id)
            );
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            del.assert_ok();
            // Any container process must be gone now.
            let start = Instant::now();
            loop {
                let left = processes_in_cgroup(&id);
                if left.is_empty() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "processes left in /moat/{id}: {left:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            leak.verify();
        }));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            // Leave the host clean for the next case, and tell whether a
            // second delete --force would have done.
            let again = env.moat(&["delete", "--force", &id]);
            std::thread::sleep(Duration::from_millis(200));
            let left = leak.leaks();
            failures.push(format!(
                "case {i}: killed after {delay} ms (moat exit {status:?}):\n{msg}\n\
                 a second delete --force exited {:?}; left after it: {left:?}",
                again.code
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "delays {delays:?} (seed {seed0}); {} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // A kill between claiming an id range and recording its owner must not
    // leave an ownerless slot (it could never be freed).
    let empty: Vec<_> = fs::read_dir("/run/moat/id-pool")
        .into_iter()
        .flatten()
        .flatten()
        // Slot files only (named by number); claim files are swept by the
        // next allocation.
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.len() == 0))
        .map(|e| e.path())
        .collect();
    assert!(empty.is_empty(), "ownerless id-pool slots: {empty:?}");
}

/// CVE-2024-21626's shape: a bundle whose cwd is a descriptor path under
/// /proc (a runtime's leaked fd of a host directory). Refused before
/// anything is created, for create and run, and for exec --cwd.
#[test]
fn cwd_under_proc_is_refused() {
    let env = Env::new();
    for cwd in ["/proc/self/fd/7", "/proc/self/cwd", "/proc/1/root"] {
        let mut b = env.bundle(&["true"]);
        b.config["process"]["cwd"] = json!(cwd);
        b.write();
        assert_refused(&env, &b, "refused by moat rule cwd");
    }
    let b = env.bundle(&["sleep", "30"]);
    let id = env.id("cwd-exec");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        env.moat(&["start", &id]).assert_ok();
        env.moat(&["exec", "--cwd", "/proc/self/fd/5", &id, "pwd"])
            .assert_fails_with("refused by moat rule cwd");
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}
