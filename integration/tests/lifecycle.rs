//! A container's lifecycle around what the host holds for it: its id range
//! is freed only when nothing runs with its ids (T31), its bundle's
//! config.json is read only as a regular file and its state is private to
//! host root (T17), and its socket families (T26).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat::harden::IdRange;
use moat::idpool::IdPool;
use moat_integration::*;

/// The host id container id 0 maps to, from a process's uid_map.
fn host_id_of(pid: i32) -> u32 {
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    map.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unparsable uid_map {map:?}"))
}

/// Is `pid` gone (or a zombie, which can no longer do anything)?
fn gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Kills and reaps a child when dropped (also when the test fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// T31: a CI job removes the state root of a running container; `delete
/// --force` must find the container's processes through the id-pool claim
/// and kill them before the range goes back to the pool.
#[test]
fn delete_force_after_state_root_removed_kills_before_freeing() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("gone");
    let leak = env.leak_check(&id);
    let _guard = env.guard(&id);
    env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
    env.moat(&["start", &id]).assert_ok();
    env.wait_status(&id, "running", Duration::from_secs(10));
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    let policy = effective_policy().user_namespace;
    let pool = IdPool::new(&policy);
    let root = canonical_root(&env.root);
    let owned = pool.owned(&root, &id);
    assert_eq!(owned.len(), 1, "one range claimed: {owned:?}");
    let range: IdRange = owned[0].range;
    assert_eq!(host_id_of(pid), range.host_id);
    assert!(
        owned[0]
            .record
            .as_ref()
            .is_some_and(|r| r.cgroups_path.is_some()),
        "the claim records the cgroup: {owned:?}"
    );

    // What a CI job cleaning its temporary root does.
    fs::remove_dir_all(&env.root).expect("rm -rf the state root");
    assert!(!gone(pid), "removing the state does not stop the container");

    env.moat(&["delete", "--force", &id]).assert_ok();
    // When delete returns, the range is free: nothing of it may run.
    assert!(gone(pid), "init {pid} still runs after delete --force");
    assert!(
        moat::idpool::container_processes_in(range).is_empty(),
        "processes with ids of the freed range remain"
    );
    assert!(pool.owned(&root, &id).is_empty(), "range not freed");
    for dir in cgroup_dirs(&id) {
        assert!(!dir.exists(), "cgroup {} left", dir.display());
    }
    leak.verify();
}

/// T31: a range in which some process runs is never handed to a new
/// container, even when its slot file is free.
#[test]
fn a_range_with_a_live_process_is_never_handed_out() {
    let env = Env::new();
    let policy = effective_policy().user_namespace;
    let pool = IdPool::new(&policy);
    let free_slot = (0..policy.ranges)
        .find(|s| !pool.dir().join(s.to_string()).exists())
        .expect("a free slot");
    let host_id = pool.range_of(free_slot).host_id;
    let id_arg = host_id.to_string();
    let squatter = KillOnDrop(
        Command::new("setpriv")
            .args(["--reuid", &id_arg, "--regid", &id_arg, "--clear-groups"])
            .args(["sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("setpriv"),
    );
    let pid = squatter.0.id() as i32;
    let start = Instant::now();
    while fs::metadata(format!("/proc/{pid}")).map(|m| m.uid()).ok() != Some(host_id) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "setpriv did not switch ids"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let b = env.sh_bundle("cat /proc/self/uid_map");
    let id = env.id("next");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    let got: u32 = out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no uid_map in {:?}", out.stdout));
    assert_ne!(
        got, host_id,
        "the range of live process {pid} was handed out"
    );
    drop(squatter);
    leak.verify();
}

/// Runs `create` and `run` of `bundle` and asserts both fail quickly with
/// `phrase`, leaving nothing behind.
fn assert_refused_quickly(env: &Env, bundle: &Bundle, phrase: &str) {
    for cmd in ["create", "run"] {
        let id = env.id(&format!("cfg-{cmd}"));
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            let out = env.moat_argv(
                &env.argv(&[cmd, "--bundle", bundle.path(), &id]),
                Duration::from_secs(10),
            );
            out.assert_fails_with(phrase);
            leak.verify();
        }
        leak.verify();
    }
}

/// T17: a FIFO as config.json once blocked `create` forever.
#[test]
fn fifo_config_json_is_refused_quickly() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    fs::remove_file(b.config_path()).unwrap();
    let path = std::ffi::CString::new(b.config_path().to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    assert_refused_quickly(
        &env,
        &b,
        "is a FIFO; moat reads config.json only as a regular file",
    );
}

#[test]
fn symlinked_config_json_is_refused() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    let elsewhere = env.tmp.path().join("elsewhere.json");
    fs::rename(b.config_path(), &elsewhere).unwrap();
    make_symlink(elsewhere.to_str().unwrap(), &b.config_path());
    assert_refused_quickly(&env, &b, "is a symbolic link");
}

#[test]
fn directory_config_json_is_refused() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    fs::remove_file(b.config_path()).unwrap();
    fs::create_dir(b.config_path()).unwrap();
    assert_refused_quickly(&env, &b, "is a directory");
}

/// T17: the state root, moat's private state, the id pool and its tag
/// files are host root's alone; no other host user can learn a container's
/// id from them.
#[test]
fn state_and_pool_are_private_to_host_root() {
    let env = Env::new();
    // Only moat's own modes may protect the root (not the test's tempdir).
    fs::set_permissions(env.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("private");
    let leak = env.leak_check(&id);
    {
        let _guard = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        let root = canonical_root(&env.root);
        let private_root = moat::state::private_root(&root);
        let private = moat::state::private_dir(&root, &id);
        assert_eq!(mode(&root), 0o700, "state root");
        assert_eq!(mode(&private_root), 0o700, "moat's private root");
        assert_eq!(mode(&private), 0o700, "the container's private dir");

        let policy = effective_policy().user_namespace;
        let pool = IdPool::new(&policy);
        let slots = pool.owned_by(&root, &id);
        assert_eq!(slots.len(), 1);
        let slot_file: PathBuf = pool.dir().join(slots[0].to_string());
        assert_eq!(mode(pool.dir()), 0o700, "pool dir");
        assert_eq!(mode(&slot_file), 0o600, "pool tag file");
        if pool.dir().parent() == Some(Path::new("/run/moat")) {
            assert_eq!(mode(Path::new("/run/moat")), 0o700, "/run/moat");
        }

        // As an unprivileged host user: nothing names the container.
        let root_s = root.to_str().unwrap();
        assert!(as_nobody(&["ls", env.tmp.path().to_str().unwrap()])
            .status
            .success());
        assert!(
            !as_nobody(&["ls", root_s]).status.success(),
            "state root listable"
        );
        assert!(
            !as_nobody(&["ls", pool.dir().to_str().unwrap()])
                .status
                .success(),
            "pool listable"
        );
        assert!(
            !as_nobody(&["cat", slot_file.to_str().unwrap()])
                .status
                .success(),
            "tag readable"
        );
        assert!(
            !as_nobody(&["ls", private.to_str().unwrap()])
                .status
                .success(),
            "private dir listable"
        );
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}

/// T26: socket families that bypass the netfilter egress table (AF_VSOCK,
/// AF_PACKET, AF_KCM, …) are refused by the default profile; AF_INET and
/// AF_UNIX work. A static C probe, since busybox has no socket tool.
#[test]
fn socket_families_outside_the_allowlist_are_refused() {
    let env = Env::new();
    let b = env.bundle(&["/probe-families"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("families.c");
    fs::write(
        &src,
        "#include <stdio.h>\n#include <errno.h>\n#include <sys/socket.h>\n\
         int main(void) {\n\
           int fams[] = {40, 41, 17, 21, 30, 38, 44, 2, 10, 1};\n\
           for (unsigned i = 0; i < sizeof fams / sizeof *fams; i++) {\n\
             errno = 0;\n\
             int type = fams[i] == 17 ? SOCK_RAW : fams[i] == 21 ? SOCK_SEQPACKET : SOCK_DGRAM;\n\
             int fd = socket(fams[i], type, 0);\n\
             printf(\"socket%d=%s\\n\", fams[i], fd >= 0 ? \"ok\" : (errno == EPERM ? \"EPERM\" : \"other\"));\n\
           }\n\
           int sv[2];\n\
           printf(\"pair1=%s\\n\", socketpair(1, SOCK_STREAM, 0, sv) == 0 ? \"ok\" : \"fail\");\n\
           errno = 0;\n\
           printf(\"pair40=%s\\n\", socketpair(40, SOCK_STREAM, 0, sv) == 0 ? \"ok\" : (errno == EPERM ? \"EPERM\" : \"other\"));\n\
           return 0;\n\
         }\n",
    )
    .unwrap();
    let bin = b.rootfs().join("probe-families");
    let out = Command::new("cc")
        .args([
            "-static",
            "-O1",
            "-o",
            bin.to_str().unwrap(),
            src.to_str().unwrap(),
        ])
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = env.id("families");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    let got = kv(&out.stdout);
    // EPERM is moat's default errno: the kernel alone would answer
    // EAFNOSUPPORT or hand out a socket.
    for fam in [40, 41, 17, 21, 30, 38, 44] {
        assert_eq!(
            got.get(&format!("socket{fam}")).map(String::as_str),
            Some("EPERM"),
            "family {fam}: {}",
            out.stdout
        );
    }
    for fam in [2, 10, 1] {
        assert_eq!(
            got.get(&format!("socket{fam}")).map(String::as_str),
            Some("ok"),
            "family {fam}: {}",
            out.stdout
        );
    }
    assert_eq!(got.get("pair1").map(String::as_str), Some("ok"));
    assert_eq!(got.get("pair40").map(String::as_str), Some("EPERM"));
    leak.verify();
}

/// T22: two creates naming the same cgroupsPath at the same moment. Both
/// pass the check that the cgroup holds no process (it does not exist yet);
/// moat then creates the leaf exclusively, so exactly one gets it and the
/// other is refused, and the two never share a cgroup (its limits, and the
/// delete that kills everything in it). Several rounds, each with the leak
/// check for both.
///
/// A raw bundle's cgroup is named after its state root and id (R6-1), so
/// only engine bundles of one id in two state roots can name one path:
/// two containerds' bundles (namespace `default`) name `/default/<id>` here
/// (an engine's container may not be below moat's raw parent `/moat`).
#[test]
fn concurrent_creates_of_one_cgroups_path_get_it_once() {
    let envs = [Env::new(), Env::new()];
    let rounds = 10;
    for round in 0..rounds {
        let id = envs[0].id("cg-race");
        let rel = format!("/default/{id}");
        let bundles: Vec<_> = envs
            .iter()
            .map(|env| {
                let mut b = env.engine_bundle("default", &id, &["sleep", "300"]);
                b.config["linux"]["cgroupsPath"] = serde_json::json!(rel);
                b.write();
                b
            })
            .collect();
        let ids = [id.clone(), id.clone()];
        let leaks: Vec<_> = envs.iter().map(|env| env.leak_check(&id)).collect();
        {
            let _guards: Vec<_> = envs.iter().map(|env| env.guard(&id)).collect();
            // stderr to files, not pipes: the winner's init inherits them
            // and keeps them open until it is deleted.
            let errs: Vec<PathBuf> = envs
                .iter()
                .map(|env| env.tmp.path().join(format!("{id}-{round}.stderr")))
                .collect();
            let children: Vec<Child> = envs
                .iter()
                .zip(&bundles)
                .zip(&errs)
                .map(|((env, b), err)| {
                    Command::new(moat_bin())
                        .args(env.argv(&["create", "--bundle", b.path(), &id]))
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(fs::File::create(err).unwrap())
                        .spawn()
                        .expect("spawn moat create")
                })
                .collect();
            let codes: Vec<_> = children
                .into_iter()
                .map(|mut c| c.wait().expect("wait for moat create"))
                .collect();
            let stderr: Vec<String> = errs
                .iter()
                .map(|e| fs::read_to_string(e).unwrap_or_default())
                .collect();
            let ok: Vec<usize> = (0..2).filter(|&i| codes[i].success()).collect();
            assert_eq!(
                ok.len(),
                1,
                "round {round}: {} of 2 creates of {rel} succeeded: {stderr:?}",
                ok.len(),
            );
            let loser = 1 - ok[0];
            let err = &stderr[loser];
            assert!(
                err.contains("refused by moat rule cgroups-path"),
                "round {round}: the second create failed otherwise: {err}"
            );
            let pid = envs[ok[0]].state(&ids[ok[0]])["pid"]
                .as_i64()
                .unwrap()
                .to_string();
            let procs = fs::read_to_string(
                Path::new("/sys/fs/cgroup/pids")
                    .join(rel.trim_start_matches('/'))
                    .join("cgroup.procs"),
            )
            .unwrap_or_default();
            assert_eq!(
                procs.split_whitespace().collect::<Vec<_>>(),
                [pid.as_str()],
                "round {round}: {rel} holds more than the winner's init"
            );
            envs[ok[0]]
                .moat(&["delete", "--force", &ids[ok[0]]])
                .assert_ok();
        }
        for leak in &leaks {
            leak.verify();
        }
        assert!(
            !Path::new("/sys/fs/cgroup/pids")
                .join(rel.trim_start_matches('/'))
                .exists(),
            "{rel} left behind"
        );
    }
}

/// A host process spawned with exactly `pid` (through
/// `/proc/sys/kernel/ns_last_pid`; other forks on the host may take the
/// pid first, so it retries), or `None`.
fn spawn_with_pid(pid: i32) -> Option<Child> {
    for _ in 0..200 {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
        let mut child = Command::new("sleep").arg("120").spawn().ok()?;
        if child.id() as i32 == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

/// T33 (red-team R6): once a container's init has exited, a process that
/// reuses its pid is not the container: `state` says stopped, `exec`
/// refuses (it would have entered that process's namespaces), and `kill`
/// answers runc's "container not running" and leaves the process alone.
#[test]
fn a_process_reusing_the_inits_pid_is_not_the_container() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, _guard) = env.start_sleeper(&b, "pid-reuse");
    let leak = env.leak_check(&id);
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    env.moat(&["kill", &id, "KILL"]).assert_ok();
    let gone = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            gone.elapsed() < Duration::from_secs(30),
            "init {pid} not reaped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(mut squatter) = spawn_with_pid(pid) else {
        panic!("could not spawn a process with pid {pid}");
    };
    let alive = |c: &mut Child| c.try_wait().ok().flatten().is_none();
    let state = env.state(&id);
    let exec = env.moat(&["exec", &id, "true"]);
    let kill = env.moat(&["kill", &id, "KILL"]);
    let squatter_alive = alive(&mut squatter);
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(state["status"], "stopped", "{state}");
    assert!(!exec.status.success(), "exec entered pid {pid}: {exec:?}");
    kill.assert_fails_with("container not running");
    assert!(
        squatter_alive,
        "moat kill signalled the process reusing pid {pid}"
    );
    env.moat(&["delete", "--force", &id]).assert_ok();
    leak.verify();
}

/// moat removes a stopped container's empty cgroups itself; one that still
/// holds a process (in a pod sharing a PID namespace the init's children
/// outlive it) is left to libcontainer's delete, which kills what is there
/// and removes the cgroup, as before moat did the empty ones.
#[test]
fn delete_of_a_stopped_container_kills_what_is_left_in_its_cgroup() {
    require_root();
    let env = Env::new();
    let id = env.id("cgleft");
    let leak = env.leak_check(&id);
    let _guard = env.guard(&id);
    let b = env.bundle(&["/bin/true"]);
    env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
    env.moat(&["start", &id]).assert_ok();
    env.wait_status(&id, "stopped", Duration::from_secs(60));
    let pids_dir = cgroup_dirs(&id)
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids") && d.is_dir())
        .expect("the stopped container's pids cgroup");
    let mut left = KillOnDrop(Command::new("sleep").arg("300").spawn().expect("sleep"));
    let pid = left.0.id() as i32;
    fs::write(pids_dir.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
    env.moat(&["delete", &id]).assert_ok();
    let status = wait_timeout(
        &mut left.0,
        Duration::from_secs(60),
        "the process left in the cgroup",
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(!pids_dir.exists(), "{} still exists", pids_dir.display());
    leak.verify();
}
