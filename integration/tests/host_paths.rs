//! Host paths and namespaces a tenant names in config.json (T10, T11, T19,
//! T29, T30): what moat checks is what it mounts and joins, volumes never
//! hand container root the host's files, and staging is private.
//!
//! Every test ends with `LeakCheck::verify()`. The races run a thread that
//! flips a symlink as fast as it can while moat creates containers, and
//! assert that the host's object was never used: 0 of N.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use moat_integration::network::must;
use moat_integration::*;
use serde_json::json;

/// How many creates each race runs.
const RACE_RUNS: usize = 200;

/// Runs moat with `args` from working directory `cwd` (the other helpers
/// run it from the test's own).
fn moat_in(env: &Env, cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(moat_bin())
        .args(env.argv(args))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("spawn moat");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A relative bind source is relative to the bundle, always, and may not
/// climb out of it: `hostetc -> /etc` in the bundle is refused wherever moat
/// runs from, even when moat's working directory has a harmless `hostetc`;
/// a relative source inside the bundle is the bundle's, not the cwd's.
#[test]
fn relative_bind_source_is_the_bundles_and_may_not_leave_it() {
    let env = Env::new();
    let other = env.tmp.path().join("elsewhere");
    fs::create_dir_all(other.join("hostetc")).unwrap();
    fs::create_dir_all(other.join("data")).unwrap();
    fs::write(other.join("data/marker"), "cwd\n").unwrap();

    let mut b = env.sh_bundle("cat /x/marker");
    symlink("/etc", b.dir.join("hostetc")).unwrap();
    fs::create_dir_all(b.dir.join("data")).unwrap();
    fs::write(b.dir.join("data/marker"), "bundle\n").unwrap();
    b.add_mount(bind("hostetc", "/x", false));
    let id = env.id("rel");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let (ok, _, err) = moat_in(&env, &other, &["run", "--bundle", b.path(), &id]);
        assert!(!ok, "a relative source out of the bundle ran");
        assert!(
            err.contains("refused by moat rule host-path") && err.contains("resolves outside it"),
            "{err}"
        );
    }
    leak.verify();

    let mut b = env.sh_bundle("cat /x/marker");
    fs::create_dir_all(b.dir.join("data")).unwrap();
    fs::write(b.dir.join("data/marker"), "bundle\n").unwrap();
    b.add_mount(bind("data", "/x", false));
    let id = env.id("rel");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let (ok, out, err) = moat_in(&env, &other, &["run", "--bundle", b.path(), &id]);
        assert!(ok, "{err}");
        assert_eq!(out.trim(), "bundle", "{err}");
    }
    leak.verify();
}

/// An overlay layer given through a symlink to /etc is judged by where it
/// leads: refused. A harmless overlay is made by moat from the pinned layer
/// and shows that layer.
#[test]
fn overlay_layer_through_a_symlink_to_etc_is_refused() {
    let env = Env::new();
    let link = env.tmp.path().join("lower-link");
    symlink("/etc", &link).unwrap();
    // Without an upper layer overlayfs wants two lower ones.
    let base = env.tmp.path().join("base");
    fs::create_dir_all(&base).unwrap();
    let overlay = |lower: &Path| {
        json!({
            "destination": "/x", "type": "overlay", "source": "overlay",
            "options": [format!("lowerdir={}:{}", lower.display(), base.display()), "ro"]
        })
    };
    let mut b = env.sh_bundle("ls /x/passwd");
    b.add_mount(overlay(&link));
    let id = env.id("ovl");
    let leak = env.leak_check(&id);
    env.run(&b, &id)
        .assert_fails_with("refused by moat rule sensitive-host-mount")
        .assert_fails_with("/etc");
    leak.verify();

    let lower = env.tmp.path().join("lower");
    fs::create_dir_all(&lower).unwrap();
    fs::write(lower.join("hello"), "layer\n").unwrap();
    let mut b = env.sh_bundle("cat /x/hello");
    b.add_mount(overlay(&lower));
    let id = env.id("ovl");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "layer", "{out}");
    leak.verify();
}

/// Flips `link` between `a` and `b` (atomic renames of prepared links) as
/// fast as it can until `stop`.
fn flipper(
    link: PathBuf,
    a: PathBuf,
    b: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let dir = link.parent().unwrap().to_path_buf();
        let (la, lb) = (dir.join(".flip-a"), dir.join(".flip-b"));
        let mut flips = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (tmp, target) in [(&la, &a), (&lb, &b)] {
                let _ = fs::remove_file(tmp);
                symlink(target, tmp).unwrap();
                fs::rename(tmp, &link).unwrap();
                flips += 1;
            }
        }
        flips
    })
}

/// A bind source whose symlink a thread flips between a harmless directory
/// and /etc while moat creates containers: each create is refused (it saw
/// /etc) or mounts the harmless directory. Host /etc is never mounted.
#[test]
fn bind_source_swap_race_never_mounts_host_etc() {
    let env = Env::new();
    let safe = env.tmp.path().join("safe");
    fs::create_dir_all(&safe).unwrap();
    fs::write(safe.join("marker"), "safe\n").unwrap();
    let link = env.tmp.path().join("src");
    symlink(&safe, &link).unwrap();
    let mut b = env.sh_bundle(
        "if [ -e /x/passwd ]; then echo HOSTETC; elif [ -e /x/marker ]; then echo SAFE; fi",
    );
    b.add_mount(bind(link.to_str().unwrap(), "/x", false));
    let stop = Arc::new(AtomicBool::new(false));
    let t = flipper(
        link.clone(),
        safe.clone(),
        PathBuf::from("/etc"),
        stop.clone(),
    );
    let (mut host, mut safe_runs, mut refused) = (0, 0, 0);
    let start = Instant::now();
    let id = env.id("race");
    let leak = env.leak_check(&id);
    for _ in 0..RACE_RUNS {
        let out = env.run(&b, &id);
        if out.stdout.contains("HOSTETC") {
            host += 1;
        } else if out.success() && out.stdout.contains("SAFE") {
            safe_runs += 1;
        } else if out
            .stderr
            .contains("refused by moat rule sensitive-host-mount")
        {
            refused += 1;
        } else {
            stop.store(true, Ordering::Relaxed);
            panic!("unexpected outcome:\n{out}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = t.join().unwrap();
    eprintln!(
        "{RACE_RUNS} creates in {:?} ({flips} flips): {safe_runs} safe, {refused} refused, {host} host /etc",
        start.elapsed()
    );
    assert_eq!(
        host, 0,
        "host /etc was mounted in {host} of {RACE_RUNS} runs"
    );
    // The race really raced: both outcomes happened.
    assert!(
        safe_runs > 0 && refused > 0,
        "{safe_runs} safe, {refused} refused"
    );
    leak.verify();
}

fn ns_id(path: &str) -> String {
    fs::read_link(path)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// A namespace path whose symlink a thread flips between a namespace the
/// tenant may join (another moat container's ipc namespace) and the host's:
/// each create is refused (it saw the host's) or joins the allowed one.
#[test]
fn namespace_path_swap_race_never_joins_the_hosts() {
    namespace_path_swap_race("ipc", "ipc");
}

/// The same race on the network namespace path (issue 15): a create that
/// joined the host's network namespace would also have put moat's
/// reject-all egress table there. Neither happens in any run, and the
/// host's namespace holds no moat table afterwards.
#[test]
fn network_namespace_path_swap_race_never_joins_the_hosts() {
    let host_table = || {
        Command::new("nft")
            .args(["list", "table", "inet", "moat"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        !host_table(),
        "a moat table is in the host's namespace before the test"
    );
    namespace_path_swap_race("network", "net");
    assert!(
        !host_table(),
        "a create put moat's table into the host's namespace"
    );
}

/// Flips `ns_type`'s path (`/proc/<pid>/ns/<ns_file>`) between a
/// consenting moat container's namespace and PID 1's for [`RACE_RUNS`]
/// creates; asserts none joined the host's.
fn namespace_path_swap_race(ns_type: &str, ns_file: &str) {
    let env = Env::new();
    let mut sleeper = env.bundle(&["sleep", "300"]);
    // A raw bundle is joinable only with its own consent (T10).
    sleeper.annotate("moat.dev/joinable", "true");
    let (owner, _g) = env.start_sleeper(&sleeper, "ns-owner");
    let pid = env.state(&owner)["pid"].as_i64().unwrap();
    let theirs = PathBuf::from(format!("/proc/{pid}/ns/{ns_file}"));
    let their_id = ns_id(theirs.to_str().unwrap());
    let host_id = ns_id(&format!("/proc/self/ns/{ns_file}"));
    assert_ne!(their_id, host_id);
    let link = env.tmp.path().join(format!("{ns_file}-link"));
    symlink(&theirs, &link).unwrap();
    let mut b = env.sh_bundle(&format!("readlink /proc/self/ns/{ns_file}"));
    for ns in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == ns_type {
            ns["path"] = json!(link.display().to_string());
        }
    }
    b.write();
    let stop = Arc::new(AtomicBool::new(false));
    let t = flipper(
        link.clone(),
        theirs.clone(),
        PathBuf::from(format!("/proc/1/ns/{ns_file}")),
        stop.clone(),
    );
    let (mut host, mut joined, mut refused) = (0, 0, 0);
    let start = Instant::now();
    let id = env.id("nsrace");
    let leak = env.leak_check(&id);
    for _ in 0..RACE_RUNS {
        let out = env.run(&b, &id);
        let seen = out.stdout.trim().to_string();
        if seen == host_id {
            host += 1;
        } else if out.success() && seen == their_id {
            joined += 1;
        } else if out.stderr.contains("refused by moat rule host-namespace") {
            refused += 1;
        } else {
            stop.store(true, Ordering::Relaxed);
            panic!("unexpected outcome (host {host_id}, allowed {their_id}):\n{out}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = t.join().unwrap();
    eprintln!(
        "{ns_type}: {RACE_RUNS} creates in {:?} ({flips} flips): {joined} joined the allowed namespace, {refused} refused, {host} joined the host's",
        start.elapsed()
    );
    assert_eq!(
        host, 0,
        "the host's {ns_type} namespace was joined in {host} of {RACE_RUNS} runs"
    );
    assert!(
        joined > 0 && refused > 0,
        "{joined} joined, {refused} refused"
    );
    leak.verify();
}

/// Deletes an `ip netns` namespace when dropped.
struct NetnsGuard(String);
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A fresh `ip netns add` namespace named `name` (a leftover of that name
/// removed first), deleted when the guard drops.
fn fresh_netns(name: &str) -> NetnsGuard {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    must("ip", &["netns", "add", name]);
    NetnsGuard(name.to_string())
}

/// A network namespace no engine made for a pod (one `ip netns add` made
/// with a name outside the CNI pattern, or one pinned anywhere else) is
/// refused, and gets no moat table. One pinned where CNI pins pods'
/// (`/run/netns/cni-*`) is joined by a container an engine made, gets
/// moat's table, and loses it when its last moat container is deleted.
#[test]
fn only_engine_made_network_namespaces_may_be_joined() {
    let env = Env::new();
    let name = format!("moat-hp-{}", std::process::id());
    let _g1 = fresh_netns(&name);
    let path = PathBuf::from(format!("/run/netns/{name}"));
    let mut b = env.bundle(&["true"]);
    b.join_namespace("network", path.to_str().unwrap());
    let id = env.id("netns");
    let leak = env.leak_check(&id).touching_netns(&path);
    env.run(&b, &id)
        .assert_fails_with("refused by moat rule namespace-path")
        .assert_fails_with("namespaces.joinable_netns");
    leak.verify();

    let cni = format!("cni-moat-hp-{}", std::process::id());
    let _g2 = fresh_netns(&cni);
    let path = PathBuf::from(format!("/var/run/netns/{cni}"));
    // Only a container an engine made may join an engine's pin (T10).
    let id = env.id("netns");
    let second = env.id("netns");
    let mut b = env.engine_bundle("moat-it", &id, &["true"]);
    b.join_namespace("network", path.to_str().unwrap());
    let mut b2 = env.engine_bundle("moat-it", &second, &["true"]);
    b2.join_namespace("network", path.to_str().unwrap());
    let leak = env.leak_check(&id).touching_netns(&path);
    let has_table = || {
        Command::new("ip")
            .args([
                "netns", "exec", &cni, "nft", "list", "table", "inet", "moat",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    {
        let _g = env.guard(&id);
        let _g2 = env.guard(&second);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        assert!(has_table(), "no moat table in the joined pod namespace");
        env.moat(&["create", "--bundle", b2.path(), &second])
            .assert_ok();
        // The second joined a namespace the first already held, so it is a
        // member of the first's pod (deleting the owner deletes it too):
        // the member goes first, as engines delete a pod's containers
        // before its sandbox.
        env.moat(&["delete", "--force", &second]).assert_ok();
        assert!(
            has_table(),
            "the table went with one of two containers in the namespace"
        );
        env.moat(&["delete", "--force", &id]).assert_ok();
        assert!(
            !has_table(),
            "the table outlived the namespace's last moat container"
        );
    }
    // touching_netns: the table is gone with its last container.
    leak.verify();
}

/// A root-only directory of the host (`/root/…/.ssh`) bound rw is not
/// idmapped: container root cannot write host root's 0600 file, nor plant a
/// root-owned or setuid file there.
#[test]
fn root_only_bind_stays_host_roots() {
    let env = Env::new();
    let dir = PathBuf::from(format!("/root/moat-hp-{}/.ssh", std::process::id()));
    let _ = fs::remove_dir_all(dir.parent().unwrap());
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let keys = dir.join("authorized_keys");
    fs::write(&keys, "ssh-ed25519 AAAA host\n").unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
    let mut b = env.sh_bundle(
        "echo evil >> /x/authorized_keys; echo new > /x/planted; cp /bin/busybox /x/suid && chmod 4755 /x/suid; ls -lnd /x; true",
    );
    b.add_mount(bind(dir.to_str().unwrap(), "/x", true));
    let id = env.id("rootonly");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    let cleanup = || {
        let _ = fs::remove_dir_all(dir.parent().unwrap());
    };
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let content = fs::read_to_string(&keys).unwrap();
    cleanup();
    out.assert_ok();
    assert_eq!(
        content, "ssh-ed25519 AAAA host\n",
        "host root's file was changed:\n{out}"
    );
    assert_eq!(
        names,
        ["authorized_keys"],
        "files appeared on the host:\n{out}"
    );
    assert!(
        out.stdout.contains(" 65534 "),
        "the host-root directory does not appear as nobody:\n{out}"
    );
    leak.verify();
}

/// What moat stages for a container (rootfs, volumes, netns pin) is
/// unreachable for an unprivileged host user, and no container may bind
/// moat's staging or state trees, by name or through a symlink.
#[test]
fn staging_is_private() {
    let env = Env::new();
    let secret_dir = env.tmp.path().join("secret");
    fs::create_dir_all(&secret_dir).unwrap();
    fs::write(secret_dir.join("s"), "tenant secret\n").unwrap();
    let mut b = env.bundle(&["sleep", "300"]);
    b.add_mount(bind(secret_dir.to_str().unwrap(), "/x", false));
    let id = env.id("priv");
    let leak = env.leak_check(&id);
    let g = env.guard(&id);
    env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
    // Started: a created init still runs moat's code (and command line).
    env.moat(&["start", &id]).assert_ok();
    let cdir = moat::rootfs::container_dir(&canonical_root(&env.root), &id);
    let md = fs::metadata(&cdir).unwrap();
    assert_eq!(md.mode() & 0o777, 0o700, "{}", cdir.display());
    assert_ne!(md.uid(), 0, "the container dir is not its root's");
    assert_ne!(md.uid(), 65534);
    let base = fs::metadata(moat::rootfs::MOUNT_BASE).unwrap();
    assert_eq!(base.mode() & 0o777, 0o711);
    let staged =
        moat::staging::staging_dir(&moat::rootfs::mount_point(&canonical_root(&env.root), &id));
    // As root the secret is there (so the check below is not vacuous).
    let found: Vec<_> = fs::read_dir(&staged)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("s"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let probe = format!(
        "ls {base} ; cat {secret} ; ls {rootfs} ; ls {dir}",
        base = moat::rootfs::MOUNT_BASE,
        secret = found[0].display(),
        rootfs = moat::rootfs::mount_point(&canonical_root(&env.root), &id).display(),
        dir = cdir.display()
    );
    let out = as_nobody(&["sh", "-c", &probe]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("tenant secret"),
        "uid 65534 read the secret"
    );
    assert_eq!(stdout.trim(), "", "uid 65534 listed staging: {stdout}");
    assert_eq!(stderr.matches("Permission denied").count(), 4, "{stderr}");

    // Another container may not mount moat's trees.
    let link = env.tmp.path().join("to-staging");
    symlink(moat::rootfs::MOUNT_BASE, &link).unwrap();
    for source in [
        moat::rootfs::MOUNT_BASE.to_string(),
        link.display().to_string(),
        cdir.display().to_string(),
        "/run/moat".to_string(),
    ] {
        let mut other = env.bundle(&["true"]);
        other.add_mount(bind(&source, "/x", false));
        let oid = env.id("priv-other");
        let oleak = env.leak_check(&oid);
        let out = env.run(&other, &oid);
        assert!(!out.success(), "{source} was mounted:\n{out}");
        assert!(
            out.stderr.contains("refused by moat rule host-path")
                || out
                    .stderr
                    .contains("refused by moat rule sensitive-host-mount"),
            "{source}:\n{out}"
        );
        oleak.verify();
    }
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(g);
    leak.verify();
}

/// Unmounts a test's mount on drop (lazily, so a failed test still cleans).
struct TestMount(PathBuf);

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A volume directory that is really a bind of host /etc (what docker's
/// local driver makes of `volume-opt=type=none,o=bind,device=/etc`) is
/// judged as /etc, not by the volume path it is mounted at: refused, never
/// idmapped into container root's hands (T11, T19, T29).
#[test]
fn a_volume_that_binds_a_host_directory_is_judged_as_that_directory() {
    let env = Env::new();
    let vols = env.tmp.path().join("vols");
    let data = vols.join("w/_data");
    fs::create_dir_all(&data).expect("mkdir");
    nix::mount::mount(
        Some("/etc"),
        &data,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind /etc onto the volume directory");
    let _m = TestMount(data.clone());
    let policy = env.tmp.path().join("volumes-policy.toml");
    fs::write(
        &policy,
        format!(
            "[volumes]\nidmap_under = [{:?}]\n",
            format!("{}/*/_data", vols.display())
        ),
    )
    .expect("policy");
    let mut b = env.bundle(&["cat", "/x/shadow"]);
    b.add_mount(bind(data.to_str().expect("utf-8"), "/x", true));
    b.write();
    let id = env.id("alias");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&[
            "--policy",
            policy.to_str().expect("utf-8"),
            "run",
            "--bundle",
            b.path(),
            &id,
        ])
        .assert_fails_with("refused by moat rule sensitive-host-mount")
        .assert_fails_with("/etc");
        leak.verify();
    }
    leak.verify();
}

/// Exchanges `a` and `b` (renameat2 RENAME_EXCHANGE: a directory and a
/// symlink swap places atomically) as fast as it can until `stop`.
fn exchanger(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use std::os::unix::ffi::OsStrExt;
        let a = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
        let b = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
        let mut swaps = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: two valid NUL-terminated paths; no memory is shared.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
            swaps += 1;
        }
        swaps
    })
}

/// T29, the rootfs in the unshifted fallback: a rootfs on ramfs (which
/// cannot be idmapped) whose path a thread swaps with a symlink to the host's
/// `/` while moat creates containers. Each create is refused (it opened
/// `/`) or runs in the directory it opened: moat attaches a clone of the
/// opened directory at its own mount point and hands libcontainer that,
/// never the name. Failed before: the fallback gave libcontainer the path,
/// resolved again after the checks.
#[test]
fn rootfs_swap_race_in_the_unshifted_fallback_never_runs_the_hosts_root() {
    let env = Env::new();
    let fsdir = env.tmp.path().join("ramfs");
    fs::create_dir(&fsdir).unwrap();
    must(
        "mount",
        &[
            "-t",
            "ramfs",
            "-o",
            "mode=755",
            "ramfs",
            fsdir.to_str().unwrap(),
        ],
    );
    let _m = TestMount(fsdir.clone());
    let rootfs = fsdir.join("rootfs");
    copy_rootfs(&rootfs);
    fs::write(rootfs.join("moat-rootfs-marker"), "").unwrap();
    let hostroot = fsdir.join("hostroot");
    symlink("/", &hostroot).unwrap();
    let mut b =
        env.sh_bundle("if [ -e /moat-rootfs-marker ]; then echo SAFE; else echo HOSTROOT; fi");
    b.config["root"]["path"] = json!(rootfs.to_str().unwrap());
    b.write();

    // Without the race: the fallback is taken (not idmapped) and the
    // container's root is the opened directory.
    let id = env.id("rootfs-fallback");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        let mp = leak.mount_point();
        let line = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(mp.to_str().unwrap()))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("nothing mounted at {}", mp.display()));
        assert!(
            !line.contains("idmapped"),
            "ramfs rootfs was idmapped, the fallback is not exercised: {line}"
        );
        let pid = env.state(&id)["pid"].as_i64().unwrap();
        assert!(Path::new(&format!("/proc/{pid}/root/moat-rootfs-marker")).exists());
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();

    let stop = Arc::new(AtomicBool::new(false));
    let t = exchanger(rootfs.clone(), hostroot.clone(), stop.clone());
    let (mut host, mut safe_runs, mut refused) = (0, 0, 0);
    let start = Instant::now();
    let id = env.id("rootfs-race");
    let leak = env.leak_check(&id);
    for _ in 0..RACE_RUNS {
        let out = env.run(&b, &id);
        if out.stdout.contains("HOSTROOT") {
            host += 1;
        } else if out.success() && out.stdout.contains("SAFE") {
            safe_runs += 1;
        } else if out.stderr.contains("refused by moat rule")
            || out.stderr.contains("does not exist or is not a directory")
        {
            refused += 1;
        } else {
            stop.store(true, Ordering::Relaxed);
            panic!("unexpected outcome:\n{out}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = t.join().unwrap();
    eprintln!(
        "{RACE_RUNS} creates in {:?} ({swaps} swaps): {safe_runs} safe, {refused} refused, {host} host root",
        start.elapsed()
    );
    assert_eq!(
        host, 0,
        "the host's / was the container's root in {host} of {RACE_RUNS} runs"
    );
    assert!(
        safe_runs > 0 && refused > 0,
        "{safe_runs} safe, {refused} refused"
    );
    leak.verify();
}

/// A raw-config tenant naming an engine's network namespace pin (one made
/// where CNI pins pods', `/run/netns/cni-*`, in `namespaces.joinable_netns`)
/// is refused with one line and leaves no table in it: such a pin may hold
/// any docker or CRI container, whichever runtime runs it, and joining it
/// would reach its 127.0.0.1 services. The same join from a bundle an
/// engine made (under containerd's task directory) runs in that namespace,
/// and its delete takes moat's table out again (T10).
#[test]
fn a_raw_bundle_may_not_join_an_engine_pin() {
    let env = Env::new();
    let cni = format!("cni-moat-hp-raw-{}", std::process::id());
    let _g = fresh_netns(&cni);
    let path = PathBuf::from(format!("/run/netns/{cni}"));
    let pin_id = format!("net:[{}]", fs::metadata(&path).unwrap().ino());
    let script = "readlink /proc/self/ns/net";

    let mut raw = env.sh_bundle(script);
    raw.join_namespace("network", path.to_str().unwrap());
    let id = env.id("rawpin");
    let leak = env.leak_check(&id).touching_netns(&path);
    let out = env.run(&raw, &id);
    out.assert_fails_with("refused by moat rule namespace-path")
        .assert_fails_with("only by a container the engine made");
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "not a one-line refusal:\n{out}"
    );
    leak.verify();

    let id = env.id("enginepin");
    let mut engine = env.engine_bundle("moat-it", &id, &["/bin/sh", "-c", script]);
    engine.join_namespace("network", path.to_str().unwrap());
    let leak = env.leak_check(&id).touching_netns(&path);
    let out = env.run(&engine, &id);
    out.assert_ok();
    assert_eq!(
        out.stdout.trim(),
        pin_id,
        "the engine-made container is not in the pinned namespace:\n{out}"
    );
    leak.verify();
}

/// T36 (mounts), red-team pass 7: each distinct bind source is staged as
/// one host mount, however many destinations the spec binds it at (the
/// same directory at three places, two of them `rbind`, one plain `bind`,
/// and one file twice: three host mounts, not five). Every destination
/// still shows the source, and the delete leaves nothing.
#[test]
fn one_source_bound_at_several_destinations_is_staged_once() {
    let env = Env::new();
    let shared = env.tmp.path().join("shared");
    fs::create_dir_all(&shared).unwrap();
    fs::write(shared.join("s"), "one source\n").unwrap();
    let file = env.tmp.path().join("f");
    fs::write(&file, "one file\n").unwrap();
    let mut b = env.bundle(&["sleep", "300"]);
    b.add_mount(bind(&shared, "/a", false));
    b.add_mount(bind(&shared, "/b", false));
    b.add_mount(json!({
        "destination": "/c", "type": "bind", "source": &shared,
        "options": ["bind", "ro"]
    }));
    b.add_mount(bind(&file, "/f1", false));
    b.add_mount(bind(&file, "/f2", false));
    let id = env.id("dedupe");
    let leak = env.leak_check(&id);
    let g = env.guard(&id);
    env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
    env.moat(&["start", &id]).assert_ok();
    let staged =
        moat::staging::staging_dir(&moat::rootfs::mount_point(&canonical_root(&env.root), &id));
    let prefix = format!("{}/", staged.display());
    // (The mount's root, relative to its filesystem, names the test's
    // temporary directory wherever /tmp is mounted.)
    let tmp = env
        .tmp
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // The staged mounts of the test's sources (moat also stages its own
    // sysfs there for the container's network namespace).
    let staged_mounts: Vec<&str> = mountinfo
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 4 && f[4].starts_with(&prefix) && f[3].contains(&tmp)
        })
        .collect();
    assert_eq!(
        staged_mounts.len(),
        3,
        "one host mount per distinct (source, recursion):\n{}",
        staged_mounts.join("\n")
    );
    let out = env.moat(&["exec", &id, "sh", "-c", "cat /a/s /b/s /c/s /f1 /f2"]);
    out.assert_ok();
    assert_eq!(
        out.stdout, "one source\none source\none source\none file\none file\n",
        "{out}"
    );
    drop(g);
    leak.verify();
}
