//! Paths moat writes as host root outside its own state (T35) and host
//! state keyed by tenant input (T36), through the real binary: a link the
//! bundle's owner plants at `--pid-file` or `--log` is never written
//! through; an exec never re-creates a container's cgroup; the seccomp
//! cache stays bounded.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_integration::*;

/// The hierarchy whose `cgroup.procs` a planted pid-file link names: the
/// pids controller's (v1), or the unified one (v2 only).
fn pids_hierarchy() -> PathBuf {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("pids/cgroup.procs").exists() {
        base.join("pids")
    } else {
        base.to_path_buf()
    }
}

fn is_link(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn a_pid_file_link_to_cgroup_procs_is_replaced_and_the_init_stays_in_its_cgroup() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("pidlink");
    let leak = env.leak_check(&id);
    let hierarchy = pids_hierarchy();
    // The tenant owns the bundle and plants the link (red team G3).
    let pid_file = Path::new(b.path()).join("pid");
    make_symlink(hierarchy.join("cgroup.procs").to_str().unwrap(), &pid_file);
    {
        let _g = env.guard(&id);
        env.moat(&[
            "create",
            "--bundle",
            b.path(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
        ])
        .assert_ok();
        let init = init_pid(&env, &id);
        assert!(!is_link(&pid_file), "the planted link is still there");
        assert_eq!(
            fs::read_to_string(&pid_file).unwrap().trim(),
            init.to_string()
        );
        let own = cgroup_dir(&hierarchy, &id).join("cgroup.procs");
        let members = fs::read_to_string(&own).unwrap_or_default();
        assert!(
            members.lines().any(|l| l.trim() == init.to_string()),
            "the init {init} left {}: {members:?}",
            own.display()
        );
        // No stray temp file next to it.
        let left: Vec<_> = fs::read_dir(b.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".pid"))
            .collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}

#[test]
fn an_exec_pid_file_link_is_replaced_not_followed() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "execpid");
    let leak = env.leak_check(&id);
    let target = env.tmp.path().join("precious");
    fs::write(&target, "keep\n").unwrap();
    let pid_file = Path::new(b.path()).join("exec.pid");
    make_symlink(target.to_str().unwrap(), &pid_file);
    // The old temp name (`<pid-file>.tmp`) planted as well.
    let old_tmp = Path::new(b.path()).join("exec.tmp");
    make_symlink(target.to_str().unwrap(), &old_tmp);
    env.moat(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "true",
    ])
    .assert_ok();
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
    assert!(!is_link(&pid_file));
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

#[test]
fn a_log_link_is_refused_and_its_target_untouched() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    // A refusal that quotes tenant text (red team G3: a .so path for
    // /etc/ld.so.preload).
    b.annotate("moat.dev/resources.pids_limit", " /tmp/evil.so ");
    let target = env.tmp.path().join("ld.so.preload");
    fs::write(&target, "").unwrap();
    let log = Path::new(b.path()).join("log.json");
    make_symlink(target.to_str().unwrap(), &log);
    let id = env.id("loglink");
    let leak = env.leak_check(&id);
    let out = env.moat_raw(&[
        "--root",
        env.root_str(),
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.path(),
        &id,
    ]);
    out.assert_fails_with("symbolic link");
    assert_eq!(
        fs::read(&target).unwrap(),
        b"",
        "moat wrote through the link"
    );
    assert!(is_link(&log));
    leak.verify();

    // A fresh path (what engines pass) is created and appended to.
    let fresh = Path::new(b.path()).join("fresh.json");
    for _ in 0..2 {
        env.moat_raw(&[
            "--root",
            env.root_str(),
            "--log",
            fresh.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.path(),
            &id,
        ])
        .assert_fails_with("pids_limit");
    }
    let text = fs::read_to_string(&fresh).unwrap();
    assert!(
        text.lines().filter(|l| l.contains("pids_limit")).count() >= 2,
        "{text}"
    );
    leak.verify();
}

#[test]
fn exec_never_recreates_a_removed_cgroup() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "execcg");
    let leak = env.leak_check(&id);
    let init = init_pid(&env, &id);
    // Stand-in for delete having removed the cgroups while an exec was on
    // its way (red team G1): the init is moved to the parent cgroup in
    // every hierarchy and the container's cgroup directories removed.
    let dirs = live_cgroup_dirs(&id);
    remove_cgroups_under(init, &dirs);
    let _ = env.moat(&["exec", &id, "true"]);
    assert_no_cgroup_recreated(&id, "exec");
    // Put things back as create left them, so delete finds its cgroups.
    restore_cgroups(init, &dirs);
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

#[test]
fn the_seccomp_cache_stays_bounded() {
    let env = Env::new();
    let cache = Path::new("/run/moat/seccomp-cache");
    fs::create_dir_all(cache).unwrap();
    // Fill the cache to its bound with old entries (names of the current
    // format, contents never read: they are evicted before any use).
    let bound = moat::seccomp_bpf::CACHE_MAX_ENTRIES;
    let tag = format!("{:08x}", std::process::id());
    let planted: Vec<PathBuf> = (0..bound)
        .map(|i| cache.join(format!("{tag}{:056x}.bpf", i)))
        .collect();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for p in &planted {
        fs::write(p, [0u8; 8]).unwrap();
        fs::File::open(p).unwrap().set_modified(old).unwrap();
    }
    struct Sweep(Vec<PathBuf>);
    impl Drop for Sweep {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = fs::remove_file(p);
            }
        }
    }
    let _sweep = Sweep(planted.clone());
    // Distinct tenant profiles (red team G2), new to the cache (an errno
    // no earlier run used): each compiled and stored.
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_micros()
        % 3000;
    for i in 0..3 {
        let mut b = env.bundle(&["true"]);
        // moat's own default profile plus one rule that differs per run.
        let default = workspace_dir().join("configs/seccomp/default.json");
        let mut seccomp: serde_json::Value =
            serde_json::from_slice(&fs::read(&default).unwrap()).unwrap();
        let rules = seccomp["syscalls"].as_array().cloned().unwrap_or_default();
        let mut all = vec![serde_json::json!({
            "names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1000 + salt + i
        })];
        all.extend(rules);
        seccomp["syscalls"] = serde_json::Value::Array(all);
        b.config["linux"]["seccomp"] = seccomp;
        b.write();
        let id = env.id("cache");
        let leak = env.leak_check(&id);
        env.run(&b, &id).assert_ok();
        leak.verify();
    }
    let entries = fs::read_dir(cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bpf"))
        .count();
    assert!(entries <= bound, "{entries} cache entries, bound {bound}");
    let evicted = planted.iter().filter(|p| !p.exists()).count();
    assert!(evicted >= 3, "only {evicted} old entries evicted");
}

/// The cgroup directories of running container `id` (at least one).
#[track_caller]
fn live_cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = cgroup_dirs(id).into_iter().filter(|d| d.is_dir()).collect();
    assert!(!dirs.is_empty(), "container {id} has no cgroup");
    dirs
}

/// No cgroup directory of container `id` exists after `what` ran with
/// them removed.
#[track_caller]
fn assert_no_cgroup_recreated(id: &str, what: &str) {
    let recreated: Vec<_> = cgroup_dirs(id).into_iter().filter(|d| d.exists()).collect();
    assert!(recreated.is_empty(), "{what} re-created {recreated:?}");
}

/// Moves `init` out of the container's cgroup directories `dirs` (to their
/// parents) and removes them: what delete leaves for a command that looked
/// the container up a moment before.
fn remove_cgroups_under(init: i32, dirs: &[PathBuf]) {
    for d in dirs {
        fs::write(d.parent().unwrap().join("cgroup.procs"), init.to_string())
            .unwrap_or_else(|e| panic!("cannot move {init} out of {}: {e}", d.display()));
        fs::remove_dir(d).unwrap_or_else(|e| panic!("cannot remove {}: {e}", d.display()));
    }
}

/// Puts back the cgroup directories [`remove_cgroups_under`] removed, with
/// `init` in them, so delete finds its cgroups.
fn restore_cgroups(init: i32, dirs: &[PathBuf]) {
    for d in dirs {
        fs::create_dir(d).unwrap();
        for knob in ["cpuset.cpus", "cpuset.mems"] {
            if d.join(knob).exists() {
                let parent = fs::read_to_string(d.parent().unwrap().join(knob)).unwrap();
                fs::write(d.join(knob), parent.trim()).unwrap();
            }
        }
        fs::write(d.join("cgroup.procs"), init.to_string()).unwrap();
    }
}

/// The rest of red team G1 (T36): `pause`, `resume` and `update` of a
/// container whose cgroup was removed after it was looked up (the init
/// moved out, the directories removed) fail with one line naming the gone
/// cgroup and create no directory; libcgroups' v1 freezer re-created it.
/// With the cgroups in place the same commands work (pause freezes,
/// resume thaws, update writes pids.max).
#[test]
fn pause_resume_and_update_never_recreate_a_removed_cgroup() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "pausecg");
    let leak = env.leak_check(&id);
    let init = init_pid(&env, &id);
    let dirs = live_cgroup_dirs(&id);
    let left = |what: &str| assert_no_cgroup_recreated(&id, what);

    // Running, then its cgroup removed: pause and update fail.
    remove_cgroups_under(init, &dirs);
    env.moat(&["pause", &id])
        .assert_fails_with("is gone (deleted?)");
    left("pause");
    env.moat(&["update", "--pids-limit", "50", &id])
        .assert_fails_with("is gone (deleted?)");
    left("update");
    restore_cgroups(init, &dirs);

    // In place, they work.
    env.moat(&["update", "--pids-limit", "50", &id]).assert_ok();
    assert_eq!(pids_max(&id), "50");
    env.moat(&["pause", &id]).assert_ok();
    let freezer = dirs
        .iter()
        .map(|d| d.join("freezer.state"))
        .find(|f| f.exists());
    if let Some(state) = &freezer {
        assert_eq!(fs::read_to_string(state).unwrap().trim(), "FROZEN");
    }
    // Paused, then its cgroup removed: resume fails.
    remove_cgroups_under(init, &dirs);
    env.moat(&["resume", &id])
        .assert_fails_with("is gone (deleted?)");
    left("resume");
    restore_cgroups(init, &dirs);
    env.moat(&["resume", &id]).assert_ok();
    if let Some(state) = &freezer {
        assert_eq!(fs::read_to_string(state).unwrap().trim(), "THAWED");
    }
    exec_sh(&env, &id, "true").assert_ok();
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

/// T35, the directory part: a directory of `--pid-file`'s path that the
/// tenant can write holds a planted link to `/etc`; host root must not
/// follow it (the pid file would land in `/etc`). The create fails with one
/// line and leaves nothing, in `/etc` or elsewhere.
#[test]
fn a_pid_file_directory_link_to_etc_is_refused() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("piddirlink");
    let leak = env.leak_check(&id);
    // A directory the tenant owns, with the link planted in it.
    let tenant = Path::new(b.path()).join("tenant");
    fs::create_dir(&tenant).unwrap();
    std::os::unix::fs::chown(&tenant, Some(1000), Some(1000)).unwrap();
    make_symlink("/etc", &tenant.join("run"));
    let name = format!("moat-t35-{id}");
    let pid_file = tenant.join("run").join(&name);
    let out = env.moat(&[
        "create",
        "--bundle",
        b.path(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    let leaked = Path::new("/etc").join(&name);
    let in_etc: Vec<_> = fs::read_dir("/etc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&name))
        .collect();
    let _ = fs::remove_file(&leaked);
    assert!(in_etc.is_empty(), "written into /etc: {in_etc:?}\n{out}");
    assert!(!out.success(), "create must fail:\n{out}");
    assert!(
        out.stderr
            .contains("run is a symbolic link in a directory others than root can write"),
        "{out}"
    );
    // One line of error (a WARN about another test's id range is not
    // this refusal's).
    let errors = out.stderr.lines().filter(|l| !l.contains(" WARN ")).count();
    assert_eq!(errors, 1, "one line:\n{out}");
    leak.verify();
}

/// Red-team R8-3 (T35): `--console-socket` was connected to by name as
/// host root, following a link the bundle's owner planted: a root-only
/// socket (its directory 0700) received the container's pty master and
/// typed into the container's shell. Now a link at the final name is
/// refused for create and exec, before anything is made; a real socket
/// still gets the terminal.
#[test]
fn a_console_socket_link_is_refused_and_never_connected() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    let env = Env::new();
    let private = env.tmp.path().join("root-only");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = UnixListener::bind(private.join("victim.sock")).unwrap();
    victim.set_nonblocking(true).unwrap();
    let not_connected = |what: &str| {
        assert!(
            matches!(victim.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{what}: moat connected to the root-only socket through the link"
        );
    };

    let mut b = env.bundle(&["sh"]);
    b.config["process"]["terminal"] = serde_json::json!(true);
    b.write();
    let link = Path::new(b.path()).join("console.sock");
    make_symlink(private.join("victim.sock").to_str().unwrap(), &link);
    let id = env.id("consolelink");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let out = env.moat(&[
            "create",
            "--console-socket",
            link.to_str().unwrap(),
            "--bundle",
            b.path(),
            &id,
        ]);
        out.assert_fails_with("refusing console socket");
        out.assert_fails_with("symbolic link");
        assert!(!out.stderr.trim().contains('\n'), "{}", out.stderr);
    }
    not_connected("create");
    leak.verify();

    // exec -t of a running container: the same.
    let run = env.bundle(&["sleep", "300"]);
    let id = env.id("consolelink-exec");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["run", "--detach", "--bundle", run.path(), &id])
            .assert_ok();
        let out = env.moat(&[
            "exec",
            "--tty",
            "--console-socket",
            link.to_str().unwrap(),
            &id,
            "true",
        ]);
        out.assert_fails_with("symbolic link");
        not_connected("exec");
    }
    leak.verify();

    // A real socket (what engines pass) still gets the terminal.
    let real = UnixListener::bind(Path::new(b.path()).join("real.sock")).unwrap();
    let id = env.id("consolereal");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&[
            "create",
            "--console-socket",
            Path::new(b.path()).join("real.sock").to_str().unwrap(),
            "--bundle",
            b.path(),
            &id,
        ])
        .assert_ok();
        real.set_nonblocking(true).unwrap();
        assert!(real.accept().is_ok(), "no connection to the real socket");
    }
    leak.verify();
}
