//! T5 (read-only root) and T6 (mount flags, devices).

use std::os::unix::fs::FileTypeExt;

use super::Ctx;
use crate::outcome::{errno_name, failed, Outcome};
use crate::sys::{close, mount_of, mountinfo, open, Scratch, SCRATCH_BASES};

pub fn write_rootfs(_: &Ctx) -> Outcome {
    let path = format!("/.moat-probe-write-{}", std::process::id());
    match open(
        &path,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
    ) {
        Ok(fd) => {
            close(fd as libc::c_long);
            let _ = std::fs::remove_file(&path);
            Outcome::Allowed(format!("created {path} on the root filesystem (removed)"))
        }
        Err(e) => failed(&format!("create {path}"), e, &[]),
    }
}

/// Opens an image binary for writing (nothing is written).
pub fn open_binary_for_write(_: &Ctx) -> Outcome {
    let candidates = ["/bin/sh", "/bin/busybox", "/usr/bin/env", "/sbin/init"];
    for path in candidates {
        if std::fs::metadata(path).is_err() {
            continue;
        }
        return match open(path, libc::O_WRONLY) {
            Ok(fd) => {
                close(fd as libc::c_long);
                Outcome::Allowed(format!(
                    "opened {path} for writing (closed, nothing written)"
                ))
            }
            // ETXTBSY comes after the read-only check: the file system is
            // writable, the binary just runs right now.
            Err(e) => failed(&format!("open {path} O_WRONLY"), e, &[libc::ETXTBSY]),
        };
    }
    Outcome::Error(format!("none of {candidates:?} exists"))
}

/// Every writable place a process could plant a setuid binary or a device
/// node in must be mounted nosuid (and nodev, except /dev itself).
pub fn scratch_mount_flags(_: &Ctx) -> Outcome {
    let mounts = match mountinfo() {
        Ok(m) => m,
        Err(e) => return Outcome::Error(e),
    };
    let mut bases: Vec<&str> = vec!["/"];
    bases.extend(SCRATCH_BASES);
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    for base in bases {
        let Ok(scratch) = Scratch::new_in(&[base], "flags") else {
            continue;
        };
        let path = scratch.path.to_string_lossy().into_owned();
        let Some(m) = mount_of(&mounts, &path) else {
            continue;
        };
        let has = |o: &str| m.options.iter().any(|x| x == o);
        let mut missing = Vec::new();
        if !has("nosuid") {
            missing.push("nosuid");
        }
        if !has("nodev") && base != "/dev" {
            missing.push("nodev");
        }
        let desc = format!("{base} (mount {} {})", m.mount_point, m.options.join(","));
        if missing.is_empty() {
            seen.push(desc);
        } else {
            bad.push(format!("{desc} lacks {}", missing.join(",")));
        }
    }
    if !bad.is_empty() {
        Outcome::Allowed(format!("writable: {}", bad.join("; ")))
    } else if seen.is_empty() {
        Outcome::Blocked("no writable location at all".into())
    } else {
        Outcome::Blocked(format!(
            "every writable location is nosuid,nodev: {}",
            seen.join("; ")
        ))
    }
}

fn open_device(path: &str) -> Outcome {
    match open(path, libc::O_RDONLY | libc::O_NONBLOCK) {
        Ok(fd) => {
            close(fd as libc::c_long);
            Outcome::Allowed(format!("opened {path} for reading (closed, nothing read)"))
        }
        Err(libc::ENOENT) => Outcome::Blocked(format!("{path}: ENOENT (no such device node)")),
        Err(e) => failed(&format!("open {path}"), e, &[]),
    }
}

pub fn open_dev_mem(_: &Ctx) -> Outcome {
    open_device("/dev/mem")
}

pub fn open_dev_kmsg(_: &Ctx) -> Outcome {
    open_device("/dev/kmsg")
}

/// Any block device under /dev (the host's disks) that opens.
pub fn open_block_device(_: &Ctx) -> Outcome {
    let mut found = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let path = entry.path();
            if ft.is_dir() && !ft.is_symlink() && dir.as_os_str() == "/dev" {
                // One level down is enough (/dev/mapper, /dev/disk/...).
                if path.as_os_str() != "/dev/pts" && path.as_os_str() != "/dev/shm" {
                    dirs.push(path);
                }
            } else if ft.is_block_device() {
                found.push(path.to_string_lossy().into_owned());
            }
        }
    }
    for well_known in ["/dev/sda", "/dev/vda", "/dev/xvda", "/dev/nvme0n1"] {
        if !found.iter().any(|f| f == well_known) && std::fs::metadata(well_known).is_ok() {
            found.push(well_known.to_string());
        }
    }
    if found.is_empty() {
        return Outcome::Blocked("no block device node under /dev".into());
    }
    let mut refused = Vec::new();
    for dev in &found {
        match open(dev, libc::O_RDONLY | libc::O_NONBLOCK) {
            Ok(fd) => {
                close(fd as libc::c_long);
                return Outcome::Allowed(format!(
                    "opened block device {dev} (closed, nothing read)"
                ));
            }
            Err(e) => refused.push(format!("{dev}: {}", errno_name(e))),
        }
    }
    Outcome::Blocked(format!(
        "block devices present but none opens: {}",
        refused.join(", ")
    ))
}

/// A writable tmpfs without a real size cap lets a container fill host
/// memory: one sized at a quarter of the host's RAM or more (the kernel's
/// default is half) counts as unbounded.
pub fn unbounded_tmpfs(_: &Ctx) -> Outcome {
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0);
    if mem_kib == 0 {
        return Outcome::Error("no MemTotal in /proc/meminfo".into());
    }
    let mounts = match mountinfo() {
        Ok(m) => m,
        Err(e) => return Outcome::Error(e),
    };
    let mut capped = Vec::new();
    let mut unbounded = Vec::new();
    for m in mounts.iter().filter(|m| m.fstype == "tmpfs") {
        if !m.options.iter().any(|o| o == "rw") {
            continue;
        }
        let mp = crate::sys::cstr(&m.mount_point);
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(mp.as_ptr(), &mut vfs) } != 0 {
            continue;
        }
        let size_kib = vfs.f_blocks * vfs.f_frsize / 1024;
        let probe = format!("{}/.moat-probe-tmpfs-{}", m.mount_point, std::process::id());
        let writable = match open(&probe, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) {
            Ok(fd) => {
                close(fd as libc::c_long);
                let _ = std::fs::remove_file(&probe);
                true
            }
            Err(_) => false,
        };
        if !writable {
            continue;
        }
        let desc = format!("{} ({} MiB)", m.mount_point, size_kib / 1024);
        if size_kib.saturating_mul(4) >= mem_kib {
            unbounded.push(desc);
        } else {
            capped.push(desc);
        }
    }
    if !unbounded.is_empty() {
        Outcome::Allowed(format!(
            "writable tmpfs sized like host memory ({} MiB RAM): {}",
            mem_kib / 1024,
            unbounded.join(", ")
        ))
    } else if capped.is_empty() {
        Outcome::Blocked("no writable tmpfs".into())
    } else {
        Outcome::Blocked(format!(
            "every writable tmpfs is capped: {}",
            capped.join(", ")
        ))
    }
}
