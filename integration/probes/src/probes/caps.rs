//! T1: things only a capability outside moat's allowlist permits.

use std::time::Duration;

use libc::{c_long, syscall};

use super::Ctx;
use crate::outcome::{errno, errno_name, failed, Outcome};
use crate::sys::{close, cpath, cstr, in_child, sys, Scratch};

const CHILD_TIMEOUT: Duration = Duration::from_secs(20);

fn socket_probe(call: &str, domain: c_long, typ: c_long, proto: c_long) -> Outcome {
    let ret = unsafe {
        syscall(
            libc::SYS_socket,
            domain,
            typ | libc::SOCK_CLOEXEC as c_long,
            proto,
        )
    };
    match sys(ret) {
        Ok(fd) => {
            close(fd);
            Outcome::Allowed(format!("{call} returned a socket (closed): CAP_NET_RAW"))
        }
        // No such protocol family in this kernel: nothing to conclude.
        Err(e) => failed(call, e, &[]),
    }
}

pub fn raw_socket(_: &Ctx) -> Outcome {
    socket_probe(
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
        libc::AF_INET as c_long,
        libc::SOCK_RAW as c_long,
        libc::IPPROTO_ICMP as c_long,
    )
}

pub fn packet_socket(_: &Ctx) -> Outcome {
    const ETH_P_ALL: u16 = 0x0003;
    socket_probe(
        "socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)",
        libc::AF_PACKET as c_long,
        libc::SOCK_RAW as c_long,
        ETH_P_ALL.to_be() as c_long,
    )
}

pub fn mknod_char_device(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("mknod") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let node = scratch.join("null");
    let path = cpath(&node);
    let dev = libc::makedev(1, 3);
    let ret = unsafe {
        syscall(
            libc::SYS_mknodat,
            libc::AT_FDCWD as c_long,
            path.as_ptr(),
            (libc::S_IFCHR | 0o600) as c_long,
            dev as c_long,
        )
    };
    match sys(ret) {
        Ok(_) => {
            let _ = std::fs::remove_file(&node);
            Outcome::Allowed(format!(
                "mknod of char device 1:3 at {} worked (removed)",
                node.display()
            ))
        }
        Err(e) => failed("mknod(char 1:3) in a scratch dir", e, &[]),
    }
}

pub fn chown_to_other_uid(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("chown") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let file = scratch.join("f");
    if let Err(e) = std::fs::write(&file, b"x") {
        return Outcome::Error(format!("create {}: {e}", file.display()));
    }
    let path = cpath(&file);
    let ret = unsafe {
        syscall(
            libc::SYS_fchownat,
            libc::AT_FDCWD as c_long,
            path.as_ptr(),
            12345 as c_long,
            12345 as c_long,
            0 as c_long,
        )
    };
    match sys(ret) {
        Ok(_) => Outcome::Allowed(
            "chown of a scratch file to 12345:12345 worked (CAP_CHOWN; inside a user namespace only ids of the container's own range)"
                .into(),
        ),
        Err(e) => failed("chown(scratch file, 12345, 12345)", e, &[libc::EINVAL]),
    }
}

pub fn sethostname(_: &Ctx) -> Outcome {
    // Set the hostname to what it already is.
    let mut buf = [0u8; 65];
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } != 0 {
        return Outcome::Error(format!("gethostname: {}", errno_name(errno())));
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(64);
    let ret = unsafe { syscall(libc::SYS_sethostname, buf.as_ptr(), len as c_long) };
    match sys(ret) {
        Ok(_) => Outcome::Allowed(format!(
            "sethostname({:?}) (its current name) worked: CAP_SYS_ADMIN over the UTS namespace",
            String::from_utf8_lossy(&buf[..len])
        )),
        Err(e) => failed("sethostname(current name)", e, &[]),
    }
}

pub fn chroot(_: &Ctx) -> Outcome {
    in_child(CHILD_TIMEOUT, || {
        let root = cstr("/");
        let ret = unsafe { syscall(libc::SYS_chroot, root.as_ptr()) };
        match sys(ret) {
            Ok(_) => Outcome::Allowed("chroot(/) worked (in a child): CAP_SYS_CHROOT".into()),
            Err(e) => failed("chroot(/)", e, &[]),
        }
    })
}

pub fn net_admin_set_mtu(_: &Ctx) -> Outcome {
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Outcome::Error(format!(
            "socket(AF_INET, SOCK_DGRAM): {}",
            errno_name(errno())
        ));
    }
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    let out = if unsafe { libc::ioctl(sock, libc::SIOCGIFMTU, &mut req) } != 0 {
        Outcome::Error(format!("SIOCGIFMTU(lo): {}", errno_name(errno())))
    } else {
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        // Set the MTU it already has.
        let ret = unsafe { libc::ioctl(sock, libc::SIOCSIFMTU, &mut req) };
        if ret == 0 {
            Outcome::Allowed(format!(
                "SIOCSIFMTU(lo, {mtu}) (unchanged) worked: CAP_NET_ADMIN over the network namespace"
            ))
        } else {
            failed("ioctl(SIOCSIFMTU, lo, current mtu)", errno(), &[])
        }
    };
    close(sock as c_long);
    out
}

pub fn setfcap_xattr(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("setfcap") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let file = scratch.join("f");
    if let Err(e) = std::fs::write(&file, b"x") {
        return Outcome::Error(format!("create {}: {e}", file.display()));
    }
    // struct vfs_cap_data, revision 2: permitted = CAP_NET_RAW.
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    let mut data = [0u8; 20];
    data[0..4].copy_from_slice(&VFS_CAP_REVISION_2.to_le_bytes());
    data[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    let path = cpath(&file);
    let name = cstr("security.capability");
    let ret = unsafe {
        syscall(
            libc::SYS_setxattr,
            path.as_ptr(),
            name.as_ptr(),
            data.as_ptr(),
            data.len() as c_long,
            0 as c_long,
        )
    };
    match sys(ret) {
        Ok(_) => Outcome::Allowed(
            "set a file capability (cap_net_raw+p) on a scratch file (deleted): CAP_SETFCAP".into(),
        ),
        Err(e) => failed("setxattr(security.capability)", e, &[]),
    }
}

pub fn raise_rlimit(_: &Ctx) -> Outcome {
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_048_576);
    in_child(CHILD_TIMEOUT, move || {
        for (res, name) in [
            (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
            (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
            (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        ] {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if unsafe { libc::getrlimit(res, &mut lim) } != 0 {
                continue;
            }
            // NOFILE cannot exceed fs.nr_open even with the capability.
            if lim.rlim_max == libc::RLIM_INFINITY
                || (res == libc::RLIMIT_NOFILE && lim.rlim_max >= nr_open)
            {
                continue;
            }
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_cur,
                rlim_max: lim.rlim_max + 1,
            };
            let ret = unsafe {
                syscall(
                    libc::SYS_prlimit64,
                    0 as c_long,
                    res as c_long,
                    &raised as *const libc::rlimit,
                    std::ptr::null::<libc::rlimit>(),
                )
            };
            return match sys(ret) {
                Ok(_) => Outcome::Allowed(format!(
                    "raised the hard {name} above {} (in a child): CAP_SYS_RESOURCE",
                    lim.rlim_max
                )),
                Err(e) => failed(&format!("prlimit({name}, hard + 1)"), e, &[]),
            };
        }
        Outcome::Error("no resource with a finite hard limit to raise".into())
    })
}

pub fn raise_priority(_: &Ctx) -> Outcome {
    in_child(CHILD_TIMEOUT, || {
        unsafe { *libc::__errno_location() = 0 };
        let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        if now == -1 && errno() != 0 {
            return Outcome::Error(format!("getpriority: {}", errno_name(errno())));
        }
        if now <= -20 {
            return Outcome::Error("already at the highest priority".into());
        }
        let ret = unsafe {
            syscall(
                libc::SYS_setpriority,
                libc::PRIO_PROCESS as c_long,
                0 as c_long,
                (now - 1) as c_long,
            )
        };
        match sys(ret) {
            Ok(_) => Outcome::Allowed(format!(
                "lowered its nice value from {now} to {} (in a child): CAP_SYS_NICE",
                now - 1
            )),
            Err(e) => failed("setpriority(self, nice - 1)", e, &[]),
        }
    })
}
