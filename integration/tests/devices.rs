//! T34: a container's device nodes (/dev/null, /dev/zero, …) are inodes of
//! its own, never the host's. With the host's inodes bind-mounted in (what
//! libcontainer does in a user namespace), a container could flock them and
//! inotify-watch them: it would see host processes open /dev/null or
//! /dev/urandom, and a lock it holds slows every close on the host.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, Instant};

use moat_integration::*;

/// The nodes libcontainer binds from the host when the spec lists none.
const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// An inotify instance (non-blocking) watching one path for opens.
struct OpenWatch {
    fd: std::os::fd::OwnedFd,
}

impl OpenWatch {
    fn new(path: &str) -> OpenWatch {
        use std::os::fd::FromRawFd;
        // SAFETY: inotify_init1 has no preconditions.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            raw >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: inotify_init1 returned a new descriptor we now own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let c = std::ffi::CString::new(path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a valid inotify descriptor and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN) };
        assert!(
            wd >= 0,
            "inotify_add_watch {path}: {}",
            std::io::Error::last_os_error()
        );
        OpenWatch { fd }
    }

    /// Bytes of events queued now (0 when none).
    fn pending(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            // SAFETY: reading into a buffer of the given length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return total;
            }
            total += n as usize;
        }
    }
}

fn host_uid_of(pid: i32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status_field(&status, "Uid")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Uid in /proc/{pid}/status"))
}

/// Seen from the host through the container's root: each default device
/// is a node with the host node's numbers and mode, owned by container
/// root, and a different inode from the host's; the devices work inside;
/// an inotify watch on the container's /dev/null sees no host open (it
/// does see the container's own), so the watch is not a side channel on
/// the host.
#[test]
fn device_nodes_are_the_containers_own_inodes() {
    require_root();
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "own-devs");
    let leak = env.leak_check(&id);
    let pid = init_pid(&env, &id);
    let container_root = host_uid_of(pid);
    assert_ne!(container_root, 0, "the container's root is not host root");
    for dev in DEFAULT_DEVICES {
        let host = fs::metadata(dev).unwrap();
        let inside = fs::metadata(format!("/proc/{pid}/root{dev}"))
            .unwrap_or_else(|e| panic!("{dev} in the container: {e}"));
        assert!(inside.file_type().is_char_device(), "{dev}: {inside:?}");
        assert_eq!(inside.rdev(), host.rdev(), "{dev}: device numbers");
        assert_eq!(inside.mode() & 0o777, host.mode() & 0o777, "{dev}: mode");
        assert_ne!(
            (inside.dev(), inside.ino()),
            (host.dev(), host.ino()),
            "{dev}: the container shares the host's inode"
        );
        // The host node's owner, not container root: the container may do
        // with its node what the host's bind let it (a root-only node stays
        // out of its reach).
        assert_eq!(
            (inside.uid(), inside.gid()),
            (host.uid(), host.gid()),
            "{dev}: owner"
        );
    }
    let out = exec_sh(
        &env,
        &id,
        "echo x > /dev/null && head -c 8 /dev/urandom | wc -c && head -c 4 /dev/zero | wc -c",
    );
    out.assert_ok();
    let counts: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(counts, ["8", "4"], "{out}");

    let watch = OpenWatch::new(&format!("/proc/{pid}/root/dev/null"));
    for _ in 0..20 {
        drop(fs::File::open("/dev/null").unwrap());
    }
    assert_eq!(
        watch.pending(),
        0,
        "a watch on the container's /dev/null saw the host open /dev/null"
    );
    // The control: the same watch sees the container's own opens.
    exec_sh(&env, &id, ": < /dev/null").assert_ok();
    let start = Instant::now();
    let mut seen = watch.pending();
    while seen == 0 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
        seen = watch.pending();
    }
    assert!(seen > 0, "the watch never saw the container open /dev/null");

    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

/// A device the spec lists (docker lists the defaults itself) gets its own
/// node too, and a tty container's /dev/tty is its own.
#[test]
fn spec_listed_devices_get_their_own_inodes() {
    require_root();
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "300"]);
    b.config["linux"]["devices"] = serde_json::json!([
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 0, "gid": 0},
        {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9, "fileMode": 438, "uid": 0, "gid": 0}
    ]);
    b.write();
    let (id, guard) = env.start_sleeper(&b, "spec-devs");
    let leak = env.leak_check(&id);
    let pid = init_pid(&env, &id);
    for dev in DEFAULT_DEVICES {
        let host = fs::metadata(dev).unwrap();
        let inside = fs::metadata(format!("/proc/{pid}/root{dev}")).unwrap();
        assert_eq!(inside.rdev(), host.rdev(), "{dev}");
        assert_ne!(
            (inside.dev(), inside.ino()),
            (host.dev(), host.ino()),
            "{dev}: the container shares the host's inode"
        );
    }
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

/// A root-only host node the spec lists (`/dev/console`, 0600 root:root
/// here) keeps its host owner on the container's own node: container root
/// (an unprivileged host uid) cannot open it, as it could not open the
/// host's bind. Review finding: the own node was chowned to container root,
/// which let a raw tenant write the host's console.
#[test]
fn a_root_only_node_stays_out_of_container_roots_reach() {
    require_root();
    let host = match fs::metadata("/dev/console") {
        Ok(m) if m.file_type().is_char_device() && m.mode() & 0o077 == 0 => m,
        _ => {
            eprintln!("SKIPPED: no root-only /dev/console on this host");
            return;
        }
    };
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "300"]);
    b.config["linux"]["devices"] = serde_json::json!([
        {"path": "/dev/console", "type": "c", "major": 5, "minor": 1}
    ]);
    b.write();
    let id = env.id("console");
    let leak = env.leak_check(&id);
    let created = env.moat(&["create", "--bundle", b.path(), &id]);
    if !created.success() {
        // The policy may refuse the device outright: equally out of reach.
        created.assert_fails_with("refused by moat rule");
        leak.verify();
        return;
    }
    let guard = env.guard(&id);
    env.moat(&["start", &id]).assert_ok();
    let pid = init_pid(&env, &id);
    let inside = fs::metadata(format!("/proc/{pid}/root/dev/console")).unwrap();
    assert_eq!((inside.uid(), inside.gid()), (host.uid(), host.gid()));
    assert_eq!(inside.mode() & 0o777, host.mode() & 0o777);
    let out = exec_sh(
        &env,
        &id,
        "if echo x 2>/dev/null > /dev/console; then echo OPENED; else echo DENIED; fi",
    );
    out.assert_ok();
    assert!(
        out.stdout.contains("DENIED"),
        "container root opened the host's console:\n{out}"
    );
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

/// T34's class, not only the device paths: no mount in the container shows
/// a node of the host's `/dev` (libcontainer masks `maskedPaths` files such
/// as `/proc/keys` and `/proc/timer_list` by binding the container's
/// `/dev/null` over them, which was the host's). Each masked file is the
/// container's own `/dev/null` inode, and reads as empty.
#[test]
fn masked_files_are_the_containers_own_dev_null() {
    require_root();
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "masked");
    let leak = env.leak_check(&id);
    let pid = init_pid(&env, &id);
    let host_dev = fs::metadata("/dev/null").unwrap().dev();
    let own_null = fs::metadata(format!("/proc/{pid}/root/dev/null")).unwrap();
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mut masked_seen = 0;
    for line in mountinfo.lines() {
        let point = line.split(' ').nth(4).unwrap();
        let fs_type = line.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
        let Ok(shown) = fs::symlink_metadata(format!("/proc/{pid}/root{point}")) else {
            continue;
        };
        let kind = shown.file_type();
        if !(kind.is_char_device() || kind.is_block_device()) || fs_type == "devpts" {
            continue;
        }
        assert_ne!(
            shown.dev(),
            host_dev,
            "{point}: the mount shows a node of the host's /dev ({line})"
        );
        if point.starts_with("/proc/") {
            assert_eq!(
                (shown.dev(), shown.ino()),
                (own_null.dev(), own_null.ino()),
                "{point}: a masked file is the container's own /dev/null"
            );
            masked_seen += 1;
        }
    }
    // /proc/keys and /proc/timer_list exist on every kernel moat supports
    // (CONFIG_KEYS, timers) and are in moat's masked paths.
    assert!(
        masked_seen >= 2,
        "no masked /proc file found in the mount table:\n{mountinfo}"
    );
    let out = exec_sh(&env, &id, "wc -c < /proc/keys; wc -c < /proc/timer_list");
    out.assert_ok();
    let counts: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(counts, ["0", "0"], "{out}");
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

/// The container's own nodes are on a tmpfs of their own, not on the
/// filesystem of moat's `--root` (issue 17): the kernel runs its fsnotify
/// path on every read and open of a file whose filesystem anyone watches
/// (containerd watches a file on the state root's), which made the
/// container's `/dev/zero` reads and `/dev/null` opens cost more than
/// runc's; and no host path reaches the nodes. Fails with the previous
/// binary: `/dev/null: on the --root's filesystem`.
#[test]
fn device_nodes_are_on_a_tmpfs_of_their_own() {
    require_root();
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "own-tmpfs");
    let leak = env.leak_check(&id);
    let pid = init_pid(&env, &id);
    let state_dev = fs::metadata(&env.root).unwrap().dev();
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    for dev in ["/dev/null", "/dev/zero"] {
        // The last mount at the path is the one the container sees.
        let line = mountinfo
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(dev))
            .unwrap_or_else(|| panic!("{dev} is not a mount point:\n{mountinfo}"));
        let fs_type = line.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
        assert_eq!(fs_type, "tmpfs", "{dev}: {line}");
        let inside = fs::metadata(format!("/proc/{pid}/root{dev}")).unwrap();
        assert!(inside.file_type().is_char_device(), "{dev}: {inside:?}");
        assert_ne!(
            inside.dev(),
            state_dev,
            "{dev}: on the --root's filesystem ({line})"
        );
        assert_ne!(
            inside.dev(),
            fs::metadata(dev).unwrap().dev(),
            "{dev}: on the host's /dev"
        );
    }
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}
