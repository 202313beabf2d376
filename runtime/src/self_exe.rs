//! The CVE-2019-5736 defence: moat re-executes itself from a read-only,
//! detached bind mount of its own binary before it does anything that lets
//! a container process near it.
//!
//! Threat (T14 in docs/threat-model.md): while moat runs inside a
//! container's namespaces (the container's init before `start`, `moat exec`
//! joining a running container), a container process can open
//! `/proc/<moat pid>/exe` and, once moat has exited, reopen that descriptor
//! for writing and replace the runtime binary on the host. moat's user
//! namespace already stops this (container root is an unprivileged host
//! uid and the binary belongs to host root); this is the second wall.
//!
//! How: `open_tree(OPEN_TREE_CLONE)` of `/proc/self/exe` makes a private
//! bind mount of the binary that is attached to no mount namespace, so no
//! one can reach it by path or remount it; `mount_setattr` makes it
//! read-only; `execveat` runs the binary from it. From then on
//! `/proc/<pid>/exe` of every process this one forks names the file on
//! that mount, and opening it for writing fails with EROFS, even for host
//! root. Unlike a sealed memfd copy (runc's approach, which moat used
//! before) nothing is copied: the copy of a 10 MiB binary cost about 5 ms
//! per command and pinned 10 MiB of shared memory per created container.
//! Where the kernel lacks these calls (before 5.12) the caller falls back
//! to the sealed copy.
//!
//! When the binary is already unwritable for everyone, the re-exec is
//! skipped: it runs from a read-only mount, or its inode is immutable
//! (`FS_IMMUTABLE_FL`, which hack/docker-register.sh sets on the installed
//! `/usr/local/bin/moat`). Reopening `/proc/<pid>/exe` for writing then
//! fails with EPERM instead of EROFS, and the second exec of the 12 MiB
//! binary (about 1.5 ms per command) is saved. runc 1.2 decides the same
//! way: its protective copy is skipped when the binary already is a sealed
//! memfd (its `memfd-bind` helper), i.e. when the inode itself cannot be
//! written.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use crate::rootfs::{open_tree_clone, set_mount_attr, MountAttr};

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;

/// Set in the environment of the re-executed process, so a kernel that
/// silently ignored the read-only attribute cannot make moat loop.
const REEXEC_MARK: &str = "_MOAT_EXE_REEXEC";

/// Is the file behind `/proc/self/exe` on a read-only mount?
pub fn exe_is_read_only() -> io::Result<bool> {
    let st = nix::sys::statvfs::statvfs("/proc/self/exe").map_err(io::Error::from)?;
    Ok(st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// The inode flag `chattr +i` sets (linux/fs.h `FS_IMMUTABLE_FL`).
pub const FS_IMMUTABLE_FL: libc::c_int = 0x0000_0010;

/// Is the file this process runs from immutable (`FS_IMMUTABLE_FL`)?
///
/// Read from a descriptor of `/proc/self/exe`, so the answer is about the
/// inode this process executes, not whatever a path names now. An
/// immutable inode cannot be opened for writing, truncated, renamed over
/// or unlinked by anyone, host root included, until the flag is cleared,
/// and clearing it takes `CAP_LINUX_IMMUTABLE` in the host's user
/// namespace, which no container process has. A filesystem without the
/// flag (the ioctl fails) counts as not immutable.
pub fn exe_is_immutable() -> io::Result<bool> {
    let exe = std::fs::File::open("/proc/self/exe")?;
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which
    // points at a live c_int; the descriptor is open for the call.
    let rc = unsafe { libc::ioctl(exe.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(flags & FS_IMMUTABLE_FL != 0)
}

/// Can nobody (host root included) write the binary this process runs
/// from while the flag or mount stays as it is: on a read-only mount, or
/// an immutable inode? Then the re-exec buys nothing (T14).
pub fn exe_is_unwritable() -> io::Result<bool> {
    Ok(exe_is_immutable()? || exe_is_read_only()?)
}

/// Makes sure this process runs from a binary no one can write: returns at
/// once when it already does (read-only mount or immutable inode,
/// [`exe_is_unwritable`]), otherwise re-executes itself
/// from a read-only, detached bind mount (with the same arguments and
/// environment) and never returns. An error means the protection could not
/// be set up; the caller decides whether to fall back or fail.
pub fn reexec_from_read_only_mount() -> io::Result<()> {
    let marked = std::env::var_os(REEXEC_MARK).is_some();
    if marked {
        // Not passed on to anything moat starts.
        std::env::remove_var(REEXEC_MARK);
    }
    if exe_is_unwritable()? {
        return Ok(());
    }
    if marked {
        return Err(io::Error::other(
            "re-executed from a read-only mount, but the binary is still on a writable one",
        ));
    }
    let tree = read_only_clone_of_self()?;
    let argv = to_cstrings(std::env::args_os())?;
    let mut env: Vec<OsString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    env.push(OsString::from(format!("{REEXEC_MARK}=1")));
    let envp = to_cstrings(env)?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    let empty = CString::default();
    // SAFETY: valid NUL-terminated strings and NULL-terminated arrays that
    // outlive the call; on success execveat does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            tree.as_raw_fd(),
            empty.as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(io::Error::last_os_error())
}

/// A detached bind mount of this process's binary, made read-only, nosuid
/// and nodev. The descriptor is close-on-exec: the re-executed process
/// keeps the mount alive through its executable, not through a descriptor
/// a container could inherit.
fn read_only_clone_of_self() -> io::Result<OwnedFd> {
    let path = CString::new("/proc/self/exe").map_err(io::Error::other)?;
    let tree = open_tree_clone(&path)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    set_mount_attr(&tree, &attr, 0)?;
    Ok(tree)
}

/// Arguments or environment entries as C strings (for exec).
pub fn to_cstrings(items: impl IntoIterator<Item = OsString>) -> io::Result<Vec<CString>> {
    items
        .into_iter()
        .map(|s| CString::new(s.into_vec()).map_err(io::Error::other))
        .collect()
}

/// The NULL-terminated pointer array exec wants.
pub fn null_terminated(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}
