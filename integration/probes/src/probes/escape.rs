//! T13 (mounts and symlinks reaching host paths), T14 (CVE-2019-5736) and
//! T15 (CVE-2024-21626): ways out of the container's filesystem view.

use super::Ctx;
use crate::outcome::{errno_name, failed, Outcome};
use crate::sys::{close, dev_ino, fstat, mountinfo, open, readlink};

/// Host trees a mount must neither be nor contain.
const SENSITIVE: &[&str] = &[
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/lib/modules",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/run/containerd",
    "/var/run/docker.sock",
    "/run/docker.sock",
];

/// Device nodes every container gets (runtimes bind them from the host's
/// devtmpfs when they cannot mknod).
const DEFAULT_DEVICES: &[&str] = &[
    "null", "zero", "full", "tty", "random", "urandom", "console", "ptmx",
];

/// Filesystems that are not a disk tree of the host (their `root` field
/// says nothing about host paths).
const VIRTUAL_FS: &[&str] = &[
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "nsfs",
    "overlay",
    "hugetlbfs",
    "fusectl",
    "configfs",
    "binfmt_misc",
    "autofs",
    "efivarfs",
    "ramfs",
    "shm",
];

/// Whether mounting host path `root` exposes a sensitive tree: it is one or
/// contains one. (Lying inside one is fine: docker binds single files from
/// /var/lib/docker/containers.)
fn exposes_sensitive(root: &str) -> Option<&'static str> {
    let root = root.trim_end_matches(" (deleted)");
    SENSITIVE.iter().copied().find(|s| {
        root == *s || root == "/" || s.starts_with(&format!("{}/", root.trim_end_matches('/')))
    })
}

pub fn host_sensitive_mount(_: &Ctx) -> Outcome {
    let mounts = match mountinfo() {
        Ok(m) => m,
        Err(e) => return Outcome::Error(e),
    };
    let mut found = Vec::new();
    for m in &mounts {
        let sock = m.root.ends_with("docker.sock") || m.root.ends_with("containerd.sock");
        let disk = !VIRTUAL_FS.contains(&m.fstype.as_str());
        let hit = if sock {
            Some("an engine socket")
        } else if m.fstype == "devtmpfs" {
            // Runtimes bind single harmless nodes (/dev/null, also used to
            // mask /proc files); the whole tree or any other node is the
            // host's hardware.
            let node = m.root.trim_start_matches('/');
            if node.is_empty() {
                Some("the host's /dev")
            } else if DEFAULT_DEVICES.contains(&node) {
                None
            } else {
                Some("a host device node")
            }
        } else if disk {
            exposes_sensitive(&m.root)
        } else {
            None
        };
        if let Some(what) = hit {
            found.push(format!(
                "{} ({} {}) exposes {what}",
                m.mount_point, m.fstype, m.root
            ));
        }
    }
    if found.is_empty() {
        Outcome::Blocked(format!(
            "none of {} mounts exposes a sensitive host tree",
            mounts.len()
        ))
    } else {
        Outcome::Allowed(found.join("; "))
    }
}

/// "..", /proc/1/root and /proc/self/root must all lead back to "/".
pub fn proc_root_escape(_: &Ctx) -> Outcome {
    let root = match dev_ino("/") {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("stat /: {}", errno_name(e))),
    };
    let mut checked = Vec::new();
    for path in [
        "/..",
        "/../../..",
        "/proc/self/root/..",
        "/proc/1/root",
        "/proc/1/root/../..",
        "/proc/1/cwd/../../../..",
    ] {
        match dev_ino(path) {
            Ok(x) if x == root => checked.push(path),
            Ok(_) => {
                return Outcome::Allowed(format!("{path} is not the container's root"));
            }
            Err(_) => {}
        }
    }
    if checked.is_empty() {
        return Outcome::Error("none of the paths could be stat'ed".into());
    }
    Outcome::Blocked(format!(
        "all lead to the container's root: {}",
        checked.join(", ")
    ))
}

/// CVE-2019-5736 overwrote the runtime through /proc/self/exe. Inside the
/// container /proc/self/exe is the probe itself, so this checks that an
/// executable of the container cannot be opened for writing through it.
pub fn self_exe_write(_: &Ctx) -> Outcome {
    match open("/proc/self/exe", libc::O_WRONLY) {
        Ok(fd) => {
            close(fd as libc::c_long);
            Outcome::Allowed(
                "opened /proc/self/exe (this probe's binary) for writing (closed, nothing written)"
                    .into(),
            )
        }
        Err(libc::ETXTBSY) => Outcome::Blocked(
            "open /proc/self/exe O_WRONLY: ETXTBSY (the running binary cannot be written)".into(),
        ),
        Err(e) => failed("open /proc/self/exe O_WRONLY", e, &[]),
    }
}

fn looks_like_runtime(target: &str) -> bool {
    let target = target.trim_end_matches(" (deleted)");
    let base = target.rsplit('/').next().unwrap_or(target);
    // Runtimes that re-execute from a sealed copy show up as memfd:NAME.
    target.contains("memfd:")
        || ["runc", "moat", "crun", "youki", "conmon", "containerd"].contains(&base)
        || base.starts_with("containerd-shim")
        || base.starts_with("runc.")
}

/// The CVE-2019-5736 precondition: a runtime's binary reachable from the
/// container through /proc/PID/exe or an open descriptor. The probe can
/// only see what is there while it runs (as the container's init, the
/// runtime's `exec` window is not observable from here).
pub fn runtime_visible(_: &Ctx) -> Outcome {
    let me = std::process::id().to_string();
    let own = dev_ino("/proc/self/exe").ok();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Outcome::Error("cannot list /proc".into());
    };
    let mut pids = 0;
    let mut found = Vec::new();
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        pids += 1;
        let exe = format!("/proc/{pid}/exe");
        if let Ok(target) = readlink(&exe) {
            let real = dev_ino(&exe).ok();
            let foreign = real.is_some()
                && real != own
                && dev_ino(target.trim_end_matches(" (deleted)")).ok() != real;
            if (pid != me && foreign) || (looks_like_runtime(&target) && real != own) {
                let open_ok = open(&exe, libc::O_RDONLY)
                    .map(|fd| close(fd as libc::c_long))
                    .is_ok();
                found.push(format!(
                    "pid {pid} runs {target}{}",
                    if open_ok {
                        " (opened read-only)"
                    } else {
                        " (not openable)"
                    }
                ));
            }
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for fd in fds.flatten() {
                let link = fd.path();
                if let Ok(target) = readlink(&link.to_string_lossy()) {
                    if looks_like_runtime(&target) {
                        found.push(format!("{} -> {target}", link.display()));
                    }
                }
            }
        }
    }
    if found.is_empty() {
        Outcome::Blocked(format!(
            "no runtime binary reachable through /proc/*/exe or /proc/*/fd of {pids} visible processes (the runtime's exec window cannot be observed from init)"
        ))
    } else {
        Outcome::Allowed(found.join("; "))
    }
}

/// A descriptor beyond stdio that points outside the container (the
/// CVE-2024-21626 leak was a host cgroup directory fd).
pub fn leaked_fds(_: &Ctx) -> Outcome {
    let entries: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect(),
        Err(e) => return Outcome::Error(format!("list /proc/self/fd: {e}")),
    };
    let mut seen = Vec::new();
    let mut outside = Vec::new();
    for fd in entries {
        if fd <= 2 {
            continue;
        }
        // The listing's own fd is closed by now.
        let Ok(st) = fstat(fd) else { continue };
        let Ok(target) = readlink(&format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        if !target.starts_with('/') {
            seen.push(format!("{fd} -> {target}"));
            continue;
        }
        let here = dev_ino(&target).ok();
        let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if here != Some((st.st_dev, st.st_ino)) {
            outside.push(format!(
                "fd {fd} -> {target}{} is outside the container",
                if dir { " (a directory)" } else { "" }
            ));
        } else {
            seen.push(format!("{fd} -> {target}"));
        }
    }
    if outside.is_empty() {
        Outcome::Blocked(if seen.is_empty() {
            "no descriptor beyond 0-2 is open".into()
        } else {
            format!(
                "descriptors beyond 0-2 all stay inside: {}",
                seen.join(", ")
            )
        })
    } else {
        Outcome::Allowed(outside.join("; "))
    }
}

/// The working directory must lie under the container's root: walking ".."
/// from it must end at "/".
pub fn cwd_outside_root(_: &Ctx) -> Outcome {
    let root = match dev_ino("/") {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("stat /: {}", errno_name(e))),
    };
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("(getcwd failed: {e})"));
    let mut path = String::from(".");
    let mut prev = match dev_ino(".") {
        Ok(x) => x,
        Err(e) => return Outcome::Error(format!("stat .: {}", errno_name(e))),
    };
    for _ in 0..256 {
        path.push_str("/..");
        let next = match dev_ino(&path) {
            Ok(x) => x,
            Err(e) => return Outcome::Error(format!("stat {path}: {}", errno_name(e))),
        };
        if next == prev {
            break;
        }
        prev = next;
    }
    if prev == root && !cwd.starts_with("(unreachable)") {
        Outcome::Blocked(format!(
            "the working directory {cwd:?} is under the container's root"
        ))
    } else {
        Outcome::Allowed(format!(
            "the working directory {cwd:?} is outside the container's root (walking '..' ends elsewhere)"
        ))
    }
}
