//! T2 (no_new_privs, setuid binaries) and T3 (user namespace, identity).

use std::os::unix::fs::PermissionsExt;

use super::Ctx;
use crate::outcome::{errno, errno_name, Outcome};
use crate::sys::{
    cpath, cstr, describe_status, map_id, maps_host_root, mount_of, mountinfo, parse_id_map,
    read_some, wait_for, Scratch, SCRATCH_BASES,
};

/// The hidden subcommand the setuid copy runs: prints its effective uid.
pub const EUID_COMMAND: &str = "__print-euid";

pub fn no_new_privs(_: &Ctx) -> Outcome {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("read /proc/self/status: {e}")),
    };
    let Some(line) = status.lines().find(|l| l.starts_with("NoNewPrivs:")) else {
        return Outcome::Error("no NoNewPrivs line in /proc/self/status".into());
    };
    match line.split_whitespace().nth(1) {
        Some("1") => {
            Outcome::Blocked("NoNewPrivs: 1 (setuid bits and file capabilities are ignored)".into())
        }
        Some("0") => Outcome::Allowed("NoNewPrivs: 0 (execve may gain privileges)".into()),
        _ => Outcome::Error(format!("unexpected line {line:?}")),
    }
}

fn id_map(file: &str, what: &str) -> Outcome {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return Outcome::Error(format!("read {file}: {e}")),
    };
    let map = parse_id_map(&text);
    let shown = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if map.is_empty() {
        return Outcome::Error(format!("{file} is empty or unreadable: {shown:?}"));
    }
    if maps_host_root(&map) {
        Outcome::Allowed(format!(
            "{file} maps host {what} 0 into the container ({shown}): an escape lands as host root"
        ))
    } else {
        let zero = map_id(&map, 0)
            .map(|h| format!("container {what} 0 is host {what} {h}"))
            .unwrap_or_else(|| format!("container {what} 0 is unmapped"));
        Outcome::Blocked(format!("{zero}; host {what} 0 is not mapped ({shown})"))
    }
}

pub fn uid_map_host_root(_: &Ctx) -> Outcome {
    id_map("/proc/self/uid_map", "uid")
}

pub fn gid_map_host_root(_: &Ctx) -> Outcome {
    id_map("/proc/self/gid_map", "gid")
}

/// `ioctl(2)` request of nsfs (linux/nsfs.h): the owner's uid.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// T8 (red-team R8-1): the kernel charges the container's inotify
/// instances and watches, mqueue bytes, queued signals, ... also to its
/// user namespace's owner. Owned by a uid of the container's own range the
/// owner shows as a mapped uid here; owned by host root (or any uid outside
/// the range) it shows as the overflow uid, and every container shares
/// that user's limits with it.
pub fn userns_owner(_: &Ctx) -> Outcome {
    let ns = match std::fs::File::open("/proc/self/ns/user") {
        Ok(f) => f,
        Err(e) => return Outcome::Error(format!("open /proc/self/ns/user: {e}")),
    };
    let mut uid: libc::uid_t = libc::uid_t::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&ns),
            NS_GET_OWNER_UID as _,
            &mut uid,
        )
    };
    if rc != 0 {
        return Outcome::Error(format!("NS_GET_OWNER_UID: {}", errno_name(errno())));
    }
    // moat's owner is the range's base host uid, container uid 0 here; an
    // owner outside the range reads as the overflow uid (65534), which a
    // 65536-id range also maps, so only 0 is proof.
    let map = parse_id_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default());
    match (uid, map_id(&map, 0)) {
        (0, Some(host)) if host != 0 => Outcome::Blocked(format!(
            "the user namespace is owned by container uid 0 (host uid {host}): its kernel counters are charged to the container's own range"
        )),
        _ => Outcome::Allowed(format!(
            "the user namespace's owner reads as uid {uid} here, not the range's own root (an unmapped owner, host root?, reads as the overflow uid): the container shares that user's inotify, mqueue and signal limits"
        )),
    }
}

enum Exec {
    Euid(u32),
    /// exec failed with this errno (e.g. EACCES on a noexec mount).
    Failed(i32),
    /// setresgid/setresuid to 65534 failed with this errno (no CAP_SETUID
    /// or CAP_SETGID): there is no unprivileged user to escalate from.
    CannotDrop(&'static str, i32),
    Other(String),
}

/// Child: drop to uid/gid 65534, exec `copy EUID_COMMAND`; the parent reads
/// what it prints.
fn exec_as_nobody(copy: &std::path::Path) -> Exec {
    crate::sys::flush_stdout();
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Exec::Other(format!("pipe2: {}", errno_name(errno())));
    }
    let prog = cpath(copy);
    let arg0 = cstr("moat-probe");
    let arg1 = cstr(EUID_COMMAND);
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Exec::Other(format!("fork: {}", errno_name(errno())));
    }
    if pid == 0 {
        unsafe {
            libc::close(fds[0]);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let fail = |what: &str| {
                let msg = format!("{what} {}\n", errno());
                libc::write(fds[1], msg.as_ptr().cast(), msg.len());
                libc::_exit(1);
            };
            if libc::setgroups(0, std::ptr::null()) != 0 && errno() != libc::EPERM {
                fail("setgroups");
            }
            if libc::setresgid(65534, 65534, 65534) != 0 {
                fail("setresgid");
            }
            if libc::setresuid(65534, 65534, 65534) != 0 {
                fail("setresuid");
            }
            if libc::dup2(fds[1], 1) < 0 {
                fail("dup2");
            }
            libc::execv(prog.as_ptr(), argv.as_ptr());
            fail("exec");
        }
    }
    unsafe { libc::close(fds[1]) };
    let out = read_some(fds[0], 256).unwrap_or_default();
    unsafe { libc::close(fds[0]) };
    let status = wait_for(pid);
    let text = String::from_utf8_lossy(&out).trim().to_string();
    if let Some(rest) = text.strip_prefix("exec ") {
        return match rest.parse() {
            Ok(e) => Exec::Failed(e),
            Err(_) => Exec::Other(text),
        };
    }
    for call in ["setresgid", "setresuid"] {
        if let Some(e) = text.strip_prefix(call).and_then(|r| r.trim().parse().ok()) {
            return Exec::CannotDrop(call, e);
        }
    }
    if let Some(euid) = text.strip_prefix("euid=").and_then(|n| n.parse().ok()) {
        return Exec::Euid(euid);
    }
    Exec::Other(format!(
        "child printed {text:?} ({})",
        describe_status(status)
    ))
}

fn no_new_privs_line() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("NoNewPrivs:"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default()
}

/// Copies this binary to each writable scratch location as a setuid-root
/// file, then runs it as uid 65534 and checks whether its euid became 0.
/// Where container root cannot become uid 65534 (no CAP_SETUID/SETGID)
/// there is no unprivileged user to escalate from; the probe then reports
/// what would stop a setuid binary (no_new_privs) without running one.
pub fn setuid_binary(_: &Ctx) -> Outcome {
    if unsafe { libc::geteuid() } != 0 {
        return Outcome::Error(
            "the probe does not run as (container) root, so it cannot plant a setuid-root binary"
                .into(),
        );
    }
    let mounts = mountinfo().unwrap_or_default();
    let mut tried = Vec::new();
    let mut unclear = false;
    for base in SCRATCH_BASES {
        let Ok(scratch) = Scratch::new_in(&[base], "setuid") else {
            continue;
        };
        let copy = scratch.join("suid");
        if let Err(e) = std::fs::copy("/proc/self/exe", &copy) {
            unclear = true;
            tried.push(format!("{base}: copy failed: {e}"));
            continue;
        }
        if let Err(e) = std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)) {
            unclear = true;
            tried.push(format!("{base}: chmod 4755 failed: {e}"));
            continue;
        }
        let flags = mount_of(&mounts, &copy.to_string_lossy())
            .map(|m| format!("{} on {}", m.options.join(","), m.mount_point))
            .unwrap_or_default();
        match exec_as_nobody(&copy) {
            Exec::Euid(0) => {
                return Outcome::Allowed(format!(
                    "a setuid-root copy in {base} ({flags}) run as uid 65534 got euid 0"
                ))
            }
            Exec::Euid(n) => {
                return Outcome::Blocked(format!(
                    "a setuid-root copy in {base} run as uid 65534 kept euid {n} (mount: {flags}; {})",
                    no_new_privs_line()
                ));
            }
            Exec::CannotDrop(call, e) => {
                let nnp = no_new_privs_line();
                let why = format!(
                    "container root cannot become uid 65534 to run a setuid-root binary ({call}: {}: no CAP_SETUID/CAP_SETGID)",
                    errno_name(e)
                );
                return if nnp == "NoNewPrivs: 1" {
                    Outcome::Blocked(format!(
                        "{why}; and {nnp}: the kernel would ignore the setuid bit anyway"
                    ))
                } else {
                    Outcome::Error(format!("{why}; {nnp}: not tested"))
                };
            }
            Exec::Failed(e) => {
                unclear |= e != libc::EACCES && e != libc::EPERM;
                tried.push(format!("{base}: exec {}", errno_name(e)))
            }
            Exec::Other(s) => {
                unclear = true;
                tried.push(format!("{base}: {s}"))
            }
        }
    }
    if tried.is_empty() {
        return Outcome::Blocked("no writable location to plant a setuid binary in".into());
    }
    let detail = format!(
        "no writable location could run a setuid binary: {}",
        tried.join("; ")
    );
    if unclear {
        Outcome::Error(detail)
    } else {
        Outcome::Blocked(detail)
    }
}

/// What the setuid copy runs.
pub fn print_euid() {
    println!("euid={}", unsafe { libc::geteuid() });
}
