//! Egress blocking: the edge. Creates a container's network namespace,
//! brings its loopback up and installs moat's nftables ruleset in it.
//!
//! moat creates the network namespace itself, as host root, before
//! libcontainer creates the container's user namespace. The namespace is
//! therefore owned by the host's user namespace, and container root holds
//! no capability over it, even with CAP_NET_ADMIN granted inside its own
//! user namespace: it cannot flush or change the rules. The container joins
//! it by path (see [`crate::nsjoin`]). Rules are installed before the
//! container's first instruction: there is no window.
//!
//! Nothing here touches the host's network namespace: every `nft` runs in
//! a child that has already entered the container's namespace.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{op}: {source}")]
    Sys { op: String, source: std::io::Error },
    #[error("nftables is not usable on this host ({0}); moat fails closed. Install nftables (the nft binary and the nf_tables kernel module), or turn egress blocking off with policy key egress.enabled = false")]
    NoNftables(String),
    #[error("nft refused moat's ruleset: {0}")]
    Nft(String),
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetnsError {
    let op = op.into();
    move |source| NetnsError::Sys { op, source }
}

/// Where the network namespace of a container's rootfs mount point lives.
pub fn netns_path(rootfs_mount: &Path) -> PathBuf {
    let mut s = rootfs_mount.as_os_str().to_owned();
    s.push(".netns");
    PathBuf::from(s)
}

/// Brings `lo` up in the calling process's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a datagram socket and two ioctls on a zeroed ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Creates a new network namespace, pinned by a bind mount at `path`, with
/// its loopback up. Must be called from a single-threaded process.
pub fn create(path: &Path) -> Result<(), NetnsError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(sys("create netns directory"))?;
    }
    File::create(path).map_err(sys(format!("create {}", path.display())))?;
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| sys("pipe")(e.into()))?;
    let (done_r, done_w) = nix::unistd::pipe().map_err(|e| sys("pipe")(e.into()))?;
    // SAFETY: single-threaded; the child only unshares, ioctls, writes and
    // reads pipes, then _exits.
    match unsafe { fork() }.map_err(|e| sys("fork")(e.into()))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWNET).is_ok() && loopback_up().is_ok();
            let _ = nix::unistd::write(&ready_w, &[u8::from(ok)]);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(done_r.as_raw_fd(), &mut b);
            // SAFETY: leaving a fork child.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let mut b = [0u8; 1];
            let got = nix::unistd::read(ready_r.as_raw_fd(), &mut b);
            let result = if got == Ok(1) && b[0] == 1 {
                mount(
                    Some(Path::new(&format!("/proc/{child}/ns/net"))),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| sys("pin the network namespace")(e.into()))
            } else {
                Err(NetnsError::Sys {
                    op: "unshare a network namespace with loopback up".into(),
                    source: std::io::Error::from_raw_os_error(libc::EPERM),
                })
            };
            drop(done_w);
            let _ = waitpid(child, None);
            if result.is_err() {
                let _ = fs::remove_file(path);
            }
            result
        }
    }
}

/// Runs `nft ARGS` inside the network namespace at `netns`, with `stdin`.
fn nft_in(netns: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    let ns = File::open(netns).map_err(sys(format!("open {}", netns.display())))?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setns is async-signal-safe; it runs in the forked child only.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| NetnsError::NoNftables(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(sys("write the ruleset to nft"))?;
    }
    let out = child.wait_with_output().map_err(sys("wait for nft"))?;
    drop(ns);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if err.contains("Protocol not supported") || err.contains("Operation not supported") {
            return Err(NetnsError::NoNftables(err));
        }
        return Err(NetnsError::Nft(err));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs (or replaces) moat's ruleset in the namespace at `netns`.
pub fn apply(netns: &Path, ruleset: &str) -> Result<(), NetnsError> {
    nft_in(netns, &["-f", "-"], Some(ruleset)).map(|_| ())
}

/// Does the namespace already carry moat's table? (Containers sharing a
/// network namespace, e.g. a pod, install it once.)
pub fn has_table(netns: &Path) -> bool {
    table(netns).is_some()
}

/// The text of moat's table in the namespace, if it has one.
pub fn table(netns: &Path) -> Option<String> {
    nft_in(
        netns,
        &["list", "table", "inet", crate::egress::TABLE],
        None,
    )
    .ok()
}

/// Blocked connection attempts counted in the namespace: (packets, bytes).
pub fn blocked(netns: &Path) -> Result<(u64, u64), NetnsError> {
    let out = nft_in(
        netns,
        &[
            "list",
            "counter",
            "inet",
            crate::egress::TABLE,
            crate::egress::BLOCKED_COUNTER,
        ],
        None,
    )?;
    crate::egress::parse_counter(&out)
        .ok_or_else(|| NetnsError::Nft(format!("unexpected counter output: {out}")))
}

/// Unpins a namespace created by [`create`]. Idempotent. The namespace
/// itself goes away with its last process.
pub fn remove(path: &Path) {
    for _ in 0..4 {
        if umount2(path, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    let _ = fs::remove_file(path);
}
