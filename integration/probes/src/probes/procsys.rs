//! T7: /proc and /sys leaking host state or changing the host kernel,
//! including CVE-2022-0492 (cgroup v1 release_agent).

use std::time::Duration;

use libc::{c_long, syscall};

use super::Ctx;
use crate::outcome::{errno, errno_name, failed, Outcome, REFUSALS};
use crate::sys::{
    close, cpath, cstr, fstat, in_child, mount_of, mountinfo, open, read_some, sys, Scratch,
};

/// Reads a path that moat masks. Blocked when it is absent, refused, the
/// /dev/null bind or an empty directory; allowed when real content (or a
/// real, readable file) is there.
fn read_masked(path: &str) -> Outcome {
    let fd = match open(path, libc::O_RDONLY | libc::O_NONBLOCK) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Outcome::Blocked(format!("{path}: ENOENT (hidden)")),
        Err(e) => return failed(&format!("open {path}"), e, &[]),
    };
    let out = (|| {
        let st = match fstat(fd) {
            Ok(st) => st,
            Err(e) => return Outcome::Error(format!("fstat {path}: {}", errno_name(e))),
        };
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFCHR {
            let (ma, mi) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
            if (ma, mi) == (1, 3) {
                return Outcome::Blocked(format!("{path} is masked (/dev/null bound over it)"));
            }
            return Outcome::Error(format!("{path} is char device {ma}:{mi}"));
        }
        if kind == libc::S_IFDIR {
            let names: Vec<String> = match std::fs::read_dir(path) {
                Ok(d) => d
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) => {
                    return failed(
                        &format!("read_dir {path}"),
                        e.raw_os_error().unwrap_or(0),
                        &[],
                    )
                }
            };
            if names.is_empty() {
                return Outcome::Blocked(format!("{path} is masked (an empty directory)"));
            }
            let mut shown = names;
            shown.sort();
            shown.truncate(5);
            return Outcome::Allowed(format!("{path} lists host entries: {}", shown.join(", ")));
        }
        match read_some(fd, 4096) {
            Ok(data) if data.is_empty() => Outcome::Allowed(format!(
                "{path} is the real file, readable (0 bytes right now), not masked"
            )),
            Ok(data) => Outcome::Allowed(format!(
                "read {} bytes from {path} (not masked)",
                data.len()
            )),
            Err(e) => failed(&format!("read {path}"), e, &[]),
        }
    })();
    close(fd as c_long);
    out
}

pub fn read_proc_kcore(_: &Ctx) -> Outcome {
    read_masked("/proc/kcore")
}

pub fn read_proc_keys(_: &Ctx) -> Outcome {
    read_masked("/proc/keys")
}

pub fn read_proc_timer_list(_: &Ctx) -> Outcome {
    read_masked("/proc/timer_list")
}

pub fn read_proc_interrupts(_: &Ctx) -> Outcome {
    read_masked("/proc/interrupts")
}

pub fn read_sys_firmware(_: &Ctx) -> Outcome {
    read_masked("/sys/firmware")
}

/// Opens a kernel knob for writing; nothing is ever written.
fn open_for_write(path: &str) -> Outcome {
    match open(path, libc::O_WRONLY) {
        Ok(fd) => {
            close(fd as c_long);
            Outcome::Allowed(format!(
                "opened {path} for writing (closed, nothing written)"
            ))
        }
        Err(libc::ENOENT) => Outcome::Blocked(format!("{path}: ENOENT (absent)")),
        Err(e) => with_mount(failed(&format!("open {path} O_WRONLY"), e, &[]), path),
    }
}

/// Adds the flags of the mount `path` is on to a blocked outcome's detail
/// (EACCES from file ownership comes before a read-only mount's EROFS).
fn with_mount(o: Outcome, path: &str) -> Outcome {
    match o {
        Outcome::Blocked(d) => Outcome::Blocked(format!("{d}{}", mount_note(path))),
        o => o,
    }
}

fn mount_note(path: &str) -> String {
    let mounts = mountinfo().unwrap_or_default();
    mount_of(&mounts, path)
        .map(|m| format!(" (on mount {} {})", m.mount_point, m.options.join(",")))
        .unwrap_or_default()
}

pub fn write_sysrq_trigger(_: &Ctx) -> Outcome {
    open_for_write("/proc/sysrq-trigger")
}

pub fn write_proc_sys_hostname(_: &Ctx) -> Outcome {
    open_for_write("/proc/sys/kernel/hostname")
}

pub fn write_core_pattern(_: &Ctx) -> Outcome {
    open_for_write("/proc/sys/kernel/core_pattern")
}

pub fn write_sys_kernel(_: &Ctx) -> Outcome {
    let candidates = [
        "/sys/kernel/uevent_helper",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/profiling",
        "/sys/kernel/kexec_crash_size",
    ];
    for path in candidates {
        if std::fs::symlink_metadata(path).is_ok() {
            return open_for_write(path);
        }
    }
    if std::fs::read_dir("/sys/kernel").is_err() {
        return Outcome::Blocked("/sys/kernel is not visible".into());
    }
    Outcome::Error(format!("none of {candidates:?} exists"))
}

pub fn kallsyms_addresses(_: &Ctx) -> Outcome {
    let fd = match open("/proc/kallsyms", libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Outcome::Blocked("/proc/kallsyms: ENOENT".into()),
        Err(e) => return failed("open /proc/kallsyms", e, &[]),
    };
    let data = read_some(fd, 64 * 1024);
    close(fd as c_long);
    let data = match data {
        Ok(d) => d,
        Err(e) => return failed("read /proc/kallsyms", e, &[]),
    };
    let text = String::from_utf8_lossy(&data);
    let mut lines = 0;
    for line in text.lines() {
        let Some(addr) = line.split_whitespace().next() else {
            continue;
        };
        lines += 1;
        if u64::from_str_radix(addr, 16).is_ok_and(|a| a != 0) {
            return Outcome::Allowed(
                "/proc/kallsyms shows real kernel addresses (kptr_restrict does not hide them)"
                    .into(),
            );
        }
    }
    if lines == 0 {
        return Outcome::Blocked("/proc/kallsyms is empty".into());
    }
    Outcome::Blocked(format!(
        "/proc/kallsyms shows only zero addresses ({lines} lines read)"
    ))
}

/// Writes a release_agent's own value back (a no-op); the write is what
/// CVE-2022-0492 needed. `Ok(detail)` when it worked.
fn rewrite_release_agent(path: &str) -> Result<String, (i32, String)> {
    let current = match open(path, libc::O_RDONLY) {
        Ok(fd) => {
            let r = read_some(fd, 4096);
            close(fd as c_long);
            r.map_err(|e| (e, format!("read {path}")))?
        }
        Err(e) => return Err((e, format!("open {path} for reading"))),
    };
    let fd = open(path, libc::O_WRONLY).map_err(|e| (e, format!("open {path} O_WRONLY")))?;
    let value: Vec<u8> = if current.is_empty() {
        b"\n".to_vec()
    } else {
        current.clone()
    };
    let n = unsafe { libc::write(fd, value.as_ptr().cast(), value.len()) };
    let e = errno();
    close(fd as c_long);
    if n < 0 {
        return Err((e, format!("write {path} (its own value)")));
    }
    Ok(format!(
        "wrote {path} (its own value {:?} back): a release_agent is writable",
        String::from_utf8_lossy(&current).trim()
    ))
}

fn release_agents() -> Vec<String> {
    let mut found = Vec::new();
    let mut push = |p: String| {
        if !found.contains(&p) && std::fs::symlink_metadata(&p).is_ok() {
            found.push(p);
        }
    };
    push("/sys/fs/cgroup/release_agent".into());
    if let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in dir.flatten() {
            push(format!("{}/release_agent", e.path().display()));
        }
    }
    for m in mountinfo().unwrap_or_default() {
        if m.fstype == "cgroup" {
            push(format!("{}/release_agent", m.mount_point));
        }
    }
    found
}

pub fn release_agent_write(_: &Ctx) -> Outcome {
    let agents = release_agents();
    if agents.is_empty() {
        return Outcome::Blocked(
            "no release_agent visible: no cgroup v1 hierarchy is mounted at its root".into(),
        );
    }
    let mut refused = Vec::new();
    for path in &agents {
        match rewrite_release_agent(path) {
            Ok(d) => return Outcome::Allowed(d),
            Err((e, what)) if REFUSALS.contains(&e) => {
                refused.push(format!("{what}: {}{}", errno_name(e), mount_note(path)))
            }
            Err((e, what)) => {
                return Outcome::Error(format!("{what}: unexpected {}", errno_name(e)))
            }
        }
    }
    Outcome::Blocked(refused.join("; "))
}

/// v1 hierarchies this process is in, as mount options ("rdma",
/// "cpu,cpuacct", "none,name=systemd").
fn v1_mount_options() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut opts: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, ctl) = (f.next()?, f.next()?);
            if id == "0" || ctl.is_empty() {
                return None;
            }
            Some(if ctl.starts_with("name=") {
                format!("none,{ctl}")
            } else {
                ctl.to_string()
            })
        })
        .collect();
    // rdma first: it is the hierarchy the public exploit used.
    opts.sort_by_key(|o| o != "rdma");
    opts
}

/// CVE-2022-0492: unshare user+mount+cgroup namespaces, mount a cgroup v1
/// hierarchy and write its release_agent (its own value back).
pub fn cgroup_mount_in_userns(_: &Ctx) -> Outcome {
    let opts = v1_mount_options();
    if opts.is_empty() {
        return Outcome::Error("the process is in no cgroup v1 hierarchy (cgroup v2 only?)".into());
    }
    in_child(Duration::from_secs(20), move || {
        let scratch = match Scratch::new("cgmount") {
            Ok(s) => s,
            Err(e) => return Outcome::Error(e),
        };
        let flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWCGROUP) as c_long;
        if let Err(e) = sys(unsafe { syscall(libc::SYS_unshare, flags) }) {
            return failed("unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWCGROUP)", e, &[]);
        }
        let target = cpath(&scratch.path);
        let (src, typ) = (cstr("cgroup"), cstr("cgroup"));
        let mut refused = Vec::new();
        for o in &opts {
            let data = cstr(o);
            let ret = unsafe {
                syscall(
                    libc::SYS_mount,
                    src.as_ptr(),
                    target.as_ptr(),
                    typ.as_ptr(),
                    (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as c_long,
                    data.as_ptr(),
                )
            };
            if let Err(e) = sys(ret) {
                refused.push(format!("mount -t cgroup -o {o}: {}", errno_name(e)));
                continue;
            }
            let agent = format!("{}/release_agent", scratch.path.display());
            let out = if std::fs::symlink_metadata(&agent).is_err() {
                Outcome::Blocked(format!(
                    "unshare and mount -t cgroup -o {o} worked, but the mount has no release_agent (not the hierarchy root)"
                ))
            } else {
                match rewrite_release_agent(&agent) {
                    Ok(d) => Outcome::Allowed(format!("after unshare and mount -o {o}: {d}")),
                    Err((e, what)) => match failed(&what, e, &[]) {
                        Outcome::Blocked(d) => {
                            Outcome::Blocked(format!("unshare and mount -o {o} worked, but {d}"))
                        }
                        other => other,
                    },
                }
            };
            unsafe {
                syscall(
                    libc::SYS_umount2,
                    target.as_ptr(),
                    libc::MNT_DETACH as c_long,
                )
            };
            return out;
        }
        let all_refused = refused.iter().all(|r| {
            REFUSALS
                .iter()
                .any(|e| r.ends_with(&format!(": {}", errno_name(*e))))
        });
        let detail = format!("unshare worked, but {}", refused.join("; "));
        if all_refused {
            Outcome::Blocked(detail)
        } else {
            Outcome::Error(detail)
        }
    })
}

fn cgroup_mounts() -> Vec<crate::sys::MountInfo> {
    mountinfo()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fstype == "cgroup"
                || m.fstype == "cgroup2"
                || (m.fstype == "tmpfs" && m.mount_point == "/sys/fs/cgroup")
        })
        .collect()
}

/// moat promises read-only cgroupfs; this reads the mount flags of every
/// cgroup and cgroup2 mount (the tmpfs holding v1 hierarchies is judged by
/// `unbounded_tmpfs`).
pub fn cgroupfs_read_only(_: &Ctx) -> Outcome {
    let mounts: Vec<_> = cgroup_mounts()
        .into_iter()
        .filter(|m| m.fstype != "tmpfs")
        .collect();
    if mounts.is_empty() {
        return Outcome::Blocked("no cgroup filesystem is mounted".into());
    }
    let rw: Vec<String> = mounts
        .iter()
        .filter(|m| {
            m.options.iter().any(|o| o == "rw") && !m.super_options.iter().any(|o| o == "ro")
        })
        .map(|m| format!("{} ({} {})", m.mount_point, m.fstype, m.root))
        .collect();
    if rw.is_empty() {
        Outcome::Blocked(format!("all {} cgroup mounts are read-only", mounts.len()))
    } else {
        Outcome::Allowed(format!("mounted read-write: {}", rw.join(", ")))
    }
}

/// Creates a child cgroup (removed at once) in every cgroup mount.
pub fn write_cgroupfs(_: &Ctx) -> Outcome {
    let mounts: Vec<_> = cgroup_mounts()
        .into_iter()
        .filter(|m| m.fstype != "tmpfs")
        .collect();
    if mounts.is_empty() {
        return Outcome::Blocked("no cgroup filesystem is mounted".into());
    }
    let mut refused = Vec::new();
    for m in &mounts {
        let dir = format!("{}/moat-probe-{}", m.mount_point, std::process::id());
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&dir);
                return Outcome::Allowed(format!(
                    "created cgroup {dir} (removed) on mount {} {}",
                    m.mount_point,
                    m.options.join(",")
                ));
            }
            Err(e) => {
                let e = e.raw_os_error().unwrap_or(0);
                if !REFUSALS.contains(&e) {
                    return Outcome::Error(format!("mkdir {dir}: unexpected {}", errno_name(e)));
                }
                refused.push(format!(
                    "mkdir {dir}: {} (mount {})",
                    errno_name(e),
                    m.options.join(",")
                ));
            }
        }
    }
    Outcome::Blocked(refused.join("; "))
}
