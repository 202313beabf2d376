//! T8 (red-team R8-1): the kernel charges the per-user counters of every
//! process in a user namespace (inotify instances and watches, fanotify
//! groups, POSIX mqueue bytes, pending signals) also to the namespace's
//! OWNER in the parent namespace. moat makes each container's user
//! namespace owned by its range's base host uid, so a container that takes
//! all its inotify instances takes none of host root's (dockerd,
//! containerd, systemd) and none of another container's.
//!
//! The instances are taken by a process in the container's user namespace
//! as container root (host uid = the range's base): a child of this test
//! that joins `/proc/<init>/ns/user` and sets its ids to 0 there, charged
//! exactly like the container's own processes (the busybox rootfs has no
//! inotify program). Every case ends with the leak check.

use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd};

use moat_integration::*;

/// `ioctl(2)` request of nsfs (linux/nsfs.h): the owner's uid.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The uid owning the user namespace at `path`, as this process sees it.
fn userns_owner(path: &str) -> u32 {
    let f = File::open(path).expect("open user namespace");
    let mut uid: libc::uid_t = u32::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_OWNER_UID, &mut uid) };
    assert_eq!(
        rc,
        0,
        "NS_GET_OWNER_UID: {}",
        std::io::Error::last_os_error()
    );
    uid
}

/// The host uid the container's uid 0 is (its uid_map's first extent).
fn range_base(pid: i32) -> u32 {
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"0"), "uid_map {map:?}");
    fields[1].parse().expect("host id")
}

/// `fs.inotify.max_user_instances`: a user's limit (host root's too).
fn max_instances() -> i32 {
    fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .expect("max_user_instances")
        .trim()
        .parse()
        .expect("a number")
}

/// A child holding inotify instances as root of a container's user
/// namespace until dropped.
struct Holder {
    got: i32,
    release: Option<OwnedFd>,
    child: nix::unistd::Pid,
}

impl Drop for Holder {
    /// Releases by a byte, not by closing: a holder forked later inherited
    /// this one's write end, so closing ours would never end its read.
    fn drop(&mut self) {
        if let Some(w) = self.release.take() {
            let _ = nix::unistd::write(&w, &[1]);
        }
        let _ = nix::sys::wait::waitpid(self.child, None);
    }
}

/// Forks a child that joins the user namespace of `pid`, becomes its root
/// (ids 0 there), and opens up to `want` inotify instances; returns once
/// it has counted them. -1: it could not join.
fn hold_inotify(pid: i32, want: i32) -> Holder {
    let userns = File::open(format!("/proc/{pid}/ns/user")).expect("open userns");
    let (count_r, count_w) = nix::unistd::pipe().unwrap();
    let (release_r, release_w) = nix::unistd::pipe().unwrap();
    // SAFETY: the child makes raw syscalls only (the test harness is
    // multi-threaded), then _exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: raw syscalls with plain integer arguments.
            let joined = unsafe {
                libc::syscall(libc::SYS_setns, userns.as_raw_fd(), libc::CLONE_NEWUSER) == 0
                    && libc::syscall(libc::SYS_setresgid, 0, 0, 0) == 0
                    && libc::syscall(libc::SYS_setresuid, 0, 0, 0) == 0
            };
            let mut got: i32 = -1;
            if joined {
                got = 0;
                // SAFETY: as above; the fds stay open until _exit.
                while got < want && unsafe { libc::syscall(libc::SYS_inotify_init1, 0) } >= 0 {
                    got += 1;
                }
            }
            let _ = nix::unistd::write(&count_w, &got.to_ne_bytes());
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(release_r.as_raw_fd(), &mut b);
            // SAFETY: no destructors may run in a fork child.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(count_w);
            drop(release_r);
            let mut b = [0u8; 4];
            let n = nix::unistd::read(count_r.as_raw_fd(), &mut b).unwrap_or(0);
            assert_eq!(n, 4, "the holder died before counting");
            Holder {
                got: i32::from_ne_bytes(b),
                release: Some(release_w),
                child,
            }
        }
    }
}

/// Whether host root (this process) can still make an inotify instance.
fn host_root_inotify() -> Result<(), std::io::Error> {
    // SAFETY: inotify_init1 takes a flag; the fd is closed right away.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(())
}

/// R8-1: each container's user namespace is owned by its range's base
/// host uid (never host root), and a container holding every inotify
/// instance it may have leaves host root and a second container theirs.
#[test]
fn a_containers_inotify_instances_are_its_own_not_host_roots() {
    require_root();
    let env = Env::new();
    let max = max_instances();
    assert!(
        (1..=65536).contains(&max),
        "fs.inotify.max_user_instances {max}"
    );
    let bundle = env.sh_bundle("sleep 300");
    let a_id = env.id("inotify-a");
    let b_id = env.id("inotify-b");
    let leak_a = env.leak_check(&a_id);
    let leak_b = env.leak_check(&b_id);
    {
        let _ga = start_with(&env, &[], &bundle, &a_id);
        let _gb = start_with(&env, &[], &bundle, &b_id);
        let (a, b) = (init_pid(&env, &a_id), init_pid(&env, &b_id));
        for (id, pid) in [(&a_id, a), (&b_id, b)] {
            let base = range_base(pid);
            assert_ne!(base, 0, "{id} runs as host root");
            assert_eq!(
                userns_owner(&format!("/proc/{pid}/ns/user")),
                base,
                "{id}'s user namespace is not owned by its range's host uid"
            );
        }
        assert_ne!(range_base(a), range_base(b), "two containers share a range");
        // An exec joins the same namespace (its processes are charged alike).
        let out = exec_sh(&env, &a_id, "id -u");
        out.assert_ok();
        assert_eq!(out.stdout.trim(), "0", "exec runs as container root");

        let held_a = hold_inotify(a, max + 8);
        assert_eq!(
            held_a.got, max,
            "container A got {} inotify instances, not its own {max} (shared with host root?)",
            held_a.got
        );
        host_root_inotify().unwrap_or_else(|e| {
            panic!("host root cannot make an inotify instance while container A holds {max}: {e}")
        });
        let held_b = hold_inotify(b, max + 8);
        assert_eq!(
            held_b.got, max,
            "container B got {} inotify instances while A holds {max}",
            held_b.got
        );
        drop(held_a);
        drop(held_b);
    }
    leak_a.verify();
    leak_b.verify();
}
