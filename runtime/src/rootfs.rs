//! Gives a container an idmapped view of its root filesystem.
//!
//! With a user namespace, container root is an unprivileged host uid, so an
//! image whose files belong to host root would look owned by `nobody`
//! inside. An idmapped mount (mount_setattr MOUNT_ATTR_IDMAP) shifts the
//! owners into the container's range without touching the files.
//!
//! Two cases, measured on Linux 6.x (integration/tests/bundle.rs runs the
//! first, docker.rs the second):
//! - a plain directory (a runc-style bundle on ext4/xfs/btrfs/tmpfs): one
//!   idmapped bind mount of it;
//! - an overlayfs mount (what docker and containerd hand over): overlayfs
//!   itself refuses MOUNT_ATTR_IDMAP, so moat mounts a new overlay whose
//!   lower layers are idmapped bind mounts of the original layers (the
//!   original upper layer on top as one more lower layer) with a small
//!   moat-private tmpfs as upper layer, which is where missing mount points
//!   get created. The root is then remounted read-only by libcontainer.
//!
//! When neither works the container runs on the original rootfs unshifted
//! and the report says so ([`RootfsMode::Unshifted`]).
//!
//! Must be called from a single-threaded process: it forks.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::harden::IdRange;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootfsMode {
    /// An idmapped bind mount of a plain directory.
    IdmappedBind,
    /// A new overlay over idmapped bind mounts of the original layers.
    IdmappedOverlay,
    /// The original rootfs, owners not shifted (kernel or filesystem could
    /// not idmap). Files owned by host root appear as `nobody`.
    Unshifted,
}

impl RootfsMode {
    pub fn describe(self) -> &'static str {
        match self {
            RootfsMode::IdmappedBind => "idmapped bind mount of the bundle's rootfs",
            RootfsMode::IdmappedOverlay => {
                "overlay of idmapped layers (the engine's overlayfs cannot be idmapped itself)"
            }
            RootfsMode::Unshifted => {
                "original rootfs, not idmapped: host-root files appear as nobody inside"
            }
        }
    }
}

/// What was prepared, recorded in the container's state for teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedRootfs {
    pub mode: RootfsMode,
    /// The path to hand libcontainer as `root.path`.
    pub path: PathBuf,
    /// Why an idmapped mode was not used, when it was not.
    pub fallback_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {0} does not exist or is not a directory")]
    Missing(PathBuf),
    #[error("{op}: {source}")]
    Sys { op: String, source: std::io::Error },
    /// Not an error of the kernel: the rootfs is a host directory outside
    /// the bundle and no engine's, so it is never idmapped (T11).
    #[error("root.path is outside the bundle and not a rootfs an engine assembles, so it is mounted unshifted (T11)")]
    NotShifted,
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> RootfsError {
    let op = op.into();
    move |source| RootfsError::Sys { op, source }
}

fn nix_sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> RootfsError {
    let op = op.into();
    move |e| RootfsError::Sys {
        op,
        source: std::io::Error::from(e),
    }
}

/// Where prepared root filesystems are mounted. Not under the state root:
/// the container's root (an unprivileged host uid) must be able to traverse
/// every ancestor of its rootfs, and engines create their state roots 0700.
/// This directory is 0711 (traversable, not listable); everything of one
/// container (rootfs mount point, staged mounts, netns pin, sysfs) lives in
/// its own [`container_dir`], 0700 and owned by the container's root (host
/// id of container uid 0), so no other host user, and no other container,
/// can reach it (T30).
pub const MOUNT_BASE: &str = "/run/moat-rootfs";

/// The private directory of container `id` under state root `root`: a
/// hash, so it is fixed-length, unique per (root, id), and computable after
/// a crash without any state.
pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    // FNV-1a, 64 bit: no need for a cryptographic hash, ids are validated.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in root
        .as_os_str()
        .as_bytes()
        .iter()
        .chain(b"\t")
        .chain(id.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Path::new(MOUNT_BASE).join(format!("{h:016x}"))
}

/// The rootfs mount point of container `id` under state root `root`, in
/// its [`container_dir`]; the staging, netns and sysfs paths are derived
/// from it by suffix, so they land there too.
pub fn mount_point(root: &Path, id: &str) -> PathBuf {
    container_dir(root, id).join("rootfs")
}

/// Creates a container's private directory: 0700, owned by the host id
/// its root maps to (libcontainer makes the mounts from inside the
/// container's user namespace, as that id, so it must be able to traverse;
/// nobody else may).
pub fn create_container_dir(dir: &Path, range: IdRange) -> Result<(), RootfsError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    create_traversable_dir(Path::new(MOUNT_BASE))?;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(sys(format!("create {}", dir.display()))(e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(sys(format!("chmod {}", dir.display())))?;
    nix::unistd::chown(
        dir,
        Some(nix::unistd::Uid::from_raw(range.host_id)),
        Some(nix::unistd::Gid::from_raw(range.host_id)),
    )
    .map_err(nix_sys("chown the container's private directory"))
}

fn create_traversable_dir(path: &Path) -> Result<(), RootfsError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(path)
        .map_err(sys(format!("create {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o711))
        .map_err(sys(format!("chmod {}", path.display())))
}

pub(crate) const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// The kernel's `struct mount_attr` (mount_setattr(2)).
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

/// mount_setattr(2) on the detached tree `tree` (from open_tree).
/// `flags` may add AT_RECURSIVE.
pub(crate) fn set_mount_attr(
    tree: &OwnedFd,
    attr: &MountAttr,
    flags: libc::c_uint,
) -> std::io::Result<()> {
    let empty = CString::default();
    // SAFETY: a valid descriptor, an empty path with AT_EMPTY_PATH and a
    // correctly sized, initialised mount_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A detached clone of the mount at `path` (open_tree(OPEN_TREE_CLONE),
/// close-on-exec), not yet attached anywhere: closing it dissolves it.
pub(crate) fn open_tree_clone(path: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain syscall with a valid NUL-terminated path.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn cstring(p: &Path) -> Result<CString, RootfsError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RootfsError::Sys {
        op: format!("path {} contains NUL", p.display()),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// A user namespace whose only purpose is to describe the id mapping for
/// MOUNT_ATTR_IDMAP. A short-lived child unshares it; we keep its fd.
pub fn mapping_userns(range: IdRange) -> Result<OwnedFd, RootfsError> {
    userns_of(range, Owner::HostRoot)
}

/// The container's own user namespace (T8, kernel counters): made by a
/// short-lived child that first becomes the range's base host uid and gid,
/// so the namespace is **owned by that uid**. The kernel charges every
/// per-user counter of the processes in a user namespace (inotify
/// instances and watches, fanotify groups, POSIX mqueue bytes, pending
/// signals, …) also to the namespace's owner in the parent namespace:
/// owned by host root, as a namespace libcontainer unshares would be, every
/// container would share host root's limits (`fs.inotify.max_user_*`,
/// RLIMIT_MSGQUEUE) with the host's daemons and with each other. Owned by
/// the range's base, each container range has limits of its own.
///
/// Owning a namespace gives every capability in it to any process of the
/// PARENT namespace with that euid. No such process exists outside this
/// helper: the range is reserved for moat (the id pool hands it to one
/// container, T31), and the container's processes run inside the new
/// namespace, where they are not its owner.
///
/// The mapping is written by host root (this process), one extent from
/// container id 0, without `setgroups deny`: container root keeps
/// setgroups(2), as in a namespace libcontainer maps. The container joins
/// the namespace by the returned fd (`/proc/self/fd/N`).
pub fn container_userns(range: IdRange) -> Result<OwnedFd, RootfsError> {
    userns_of(range, Owner::RangeBase)
}

/// Who makes (and so owns) a user namespace made by [`userns_of`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// moat as it runs (host root): for an idmapping only, no process ever
    /// runs in it; its setgroups is denied.
    HostRoot,
    /// The range's base host uid and gid (see [`container_userns`]).
    RangeBase,
}

/// The child's side of [`userns_of`]: becomes the owner, unshares. Only
/// raw syscalls: the child of a fork of a possibly multi-threaded process
/// may call async-signal-safe functions only (glibc's set*id wrappers
/// would signal threads that do not exist in the child).
fn become_owner_and_unshare(range: IdRange, owner: Owner) -> bool {
    if owner == Owner::RangeBase {
        let base = libc::c_long::from(range.host_id);
        // A namespace's parent-level RLIMIT_NPROC bound is its creator's
        // RLIMIT_NPROC when the creator is not host root: raised first (to
        // unlimited, or without CAP_SYS_RESOURCE to its hard limit) so the
        // container's process count stays bounded by its pids cgroup (T8),
        // not by a low soft limit moat was started with. Best effort.
        let unlimited = libc::rlimit64 {
            rlim_cur: libc::RLIM64_INFINITY,
            rlim_max: libc::RLIM64_INFINITY,
        };
        let mut old = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: raw prlimit64 calls on this process with live rlimit64s.
        unsafe {
            let set = |new: *const libc::rlimit64| {
                libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    libc::RLIMIT_NPROC,
                    new,
                    std::ptr::null_mut::<libc::rlimit64>(),
                ) == 0
            };
            if !set(&unlimited)
                && libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    libc::RLIMIT_NPROC,
                    std::ptr::null::<libc::rlimit64>(),
                    &mut old as *mut libc::rlimit64,
                ) == 0
            {
                old.rlim_cur = old.rlim_max;
                let _ = set(&old);
            }
        }
        // SAFETY: raw syscalls with valid arguments (a NULL group list of
        // length 0, plain ids); no memory is allocated.
        let ok = unsafe {
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                && libc::syscall(libc::SYS_setresgid, base, base, base) == 0
                && libc::syscall(libc::SYS_setresuid, base, base, base) == 0
        };
        if !ok {
            return false;
        }
    }
    // SAFETY: a raw syscall with a constant flag.
    unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) == 0 }
}

/// A new user namespace with `range` mapped from container id 0, made by a
/// short-lived child as `owner`; the fd is kept, the child ends.
fn userns_of(range: IdRange, owner: Owner) -> Result<OwnedFd, RootfsError> {
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(nix_sys("pipe"))?;
    let (done_r, done_w) = nix::unistd::pipe().map_err(nix_sys("pipe"))?;
    // SAFETY: the child only makes raw syscalls (become_owner_and_unshare,
    // write, read, _exit), all async-signal-safe.
    match unsafe { fork() }.map_err(nix_sys("fork"))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = become_owner_and_unshare(range, owner);
            let _ = nix::unistd::write(&ready_w, &[u8::from(ok)]);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(done_r.as_raw_fd(), &mut b);
            // SAFETY: _exit is always safe; no destructors must run in a fork child.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let result = (|| {
                let mut b = [0u8; 1];
                let mut f = File::from(ready_r);
                f.read_exact(&mut b).map_err(sys("wait for userns child"))?;
                if b[0] != 1 {
                    return Err(RootfsError::Sys {
                        op: match owner {
                            Owner::HostRoot => "unshare(CLONE_NEWUSER)".into(),
                            Owner::RangeBase => {
                                format!("unshare(CLONE_NEWUSER) as host uid {}", range.host_id)
                            }
                        },
                        source: std::io::Error::from_raw_os_error(libc::EPERM),
                    });
                }
                write_maps(child, range, owner == Owner::HostRoot)?;
                let f = File::open(format!("/proc/{child}/ns/user"))
                    .map_err(sys("open userns of mapping child"))?;
                Ok(OwnedFd::from(f))
            })();
            drop(done_w);
            let _ = waitpid(child, None);
            result
        }
    }
}

fn write_maps(child: Pid, range: IdRange, deny_setgroups: bool) -> Result<(), RootfsError> {
    let line = format!("0 {} {}\n", range.host_id, range.size);
    fs::write(format!("/proc/{child}/uid_map"), &line).map_err(sys("write uid_map"))?;
    if deny_setgroups {
        fs::write(format!("/proc/{child}/setgroups"), "deny").map_err(sys("write setgroups"))?;
    }
    fs::write(format!("/proc/{child}/gid_map"), &line).map_err(sys("write gid_map"))?;
    Ok(())
}

/// Attaches an idmapped clone of `source` at `target` (an existing dir).
fn idmapped_bind(source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), RootfsError> {
    idmapped_bind_tree(source, target, userns, false, 0)
}

/// `MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV`, for [`idmapped_bind_tree`].
pub const MOUNT_ATTR_NOSUID_NODEV: u64 = 0x2 | 0x4;

/// Attaches an idmapped clone of `source` (a directory or a file) at
/// `target` (an existing directory or file). `recursive` clones and idmaps
/// the mounts below `source` too (an `rbind`); `extra_attrs` are more
/// MOUNT_ATTR_* flags set in the same call. Every mount of the tree must
/// accept idmapping, or this fails (EINVAL) and nothing is attached.
pub fn idmapped_bind_tree(
    source: &Path,
    target: &Path,
    userns: &OwnedFd,
    recursive: bool,
    extra_attrs: u64,
) -> Result<(), RootfsError> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | extra_attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    attach_clone(source, target, recursive, Some(&attr))
}

/// Attaches a clone of `source`'s mount (its whole tree when `recursive`)
/// at `target`, with `attr` set on the clone first when given.
fn attach_clone(
    source: &Path,
    target: &Path,
    recursive: bool,
    attr: Option<&MountAttr>,
) -> Result<(), RootfsError> {
    let src = cstring(source)?;
    let recursive_flag = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: plain syscalls with valid NUL-terminated paths and a
    // correctly sized, initialised mount_attr.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | recursive_flag,
        )
    };
    if tree < 0 {
        return Err(sys(format!("open_tree {}", source.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: open_tree returned a new fd we now own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    if let Some(attr) = attr {
        set_mount_attr(&tree, attr, recursive_flag)
            .map_err(sys(format!("mount_setattr(IDMAP) {}", source.display())))?;
    }
    let empty = CString::default();
    let dst = cstring(target)?;
    // SAFETY: see above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(sys(format!("move_mount to {}", target.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// One line of /proc/self/mountinfo, the fields moat needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount id (first field): what `mnt_id:` of an fd's fdinfo names.
    pub id: u64,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

pub(crate) fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let id = pre.split(' ').next()?.parse().ok()?;
            let mount_point = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fs_type = post.next()?;
            let _source = post.next()?;
            let super_options = post.next().unwrap_or("");
            Some(MountInfo {
                id,
                mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
                fs_type: fs_type.to_string(),
                super_options: super_options.to_string(),
            })
        })
        .collect()
}

/// The mount whose mount point is exactly `path` (the last one wins: it is
/// the one on top).
pub fn mount_at(path: &Path) -> Option<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path)
}

/// The mount an open directory is the root of, found by the fd's own
/// mount id (`mnt_id:` in `/proc/self/fdinfo/N`), never by a name: `None`
/// when the fd is not the top of its mount (a plain directory inside one).
/// A name swapped after the fd was opened cannot make moat take another
/// mount's layers (T29).
pub fn mount_of_fd(fd: BorrowedFd) -> Option<MountInfo> {
    // The kernel says whether the fd is the root of its mount: when it is
    // not, no mount has it as its top and the mount table (one read per
    // create, its cost growing with the host's mount count) is not read.
    if is_mount_root(fd) == Some(false) {
        return None;
    }
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let id: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .parse()
        .ok()?;
    let real = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
        .into_iter()
        .find(|m| m.id == id)
        .filter(|m| m.mount_point == real)
}

/// Whether an open fd is the root of its mount (`STATX_ATTR_MOUNT_ROOT`),
/// or `None` when the kernel does not report that attribute (before 5.8).
fn is_mount_root(fd: BorrowedFd) -> Option<bool> {
    // SAFETY: statx is plain data that the call only writes into.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the call, the empty path is NUL-terminated,
    // and `stx` outlives it.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (rc == 0 && stx.stx_attributes_mask & flag != 0).then_some(stx.stx_attributes & flag != 0)
}

/// Detaches the mounts stacked at `path`, at most `max` of them, and
/// returns how many. Asks the kernel, not the mount table: `umount2` fails
/// (EINVAL) once nothing is mounted at `path` (ENOENT once it is gone), so
/// no /proc/self/mountinfo is read and parsed before and after each one.
/// `UMOUNT_NOFOLLOW`: a symlink at `path` is not followed (teardown only
/// passes directories moat made in its own root-only state).
pub fn detach_mounts_at(path: &Path, max: usize) -> usize {
    let flags = MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW;
    (0..max)
        .take_while(|_| umount2(path, flags).is_ok())
        .count()
}

/// Is anything mounted at `path`? (Used by the leak tests.)
pub fn is_mount_point(path: &Path) -> bool {
    mount_at(path).is_some()
}

/// The layers of an overlay mount, top first: the upper layer (if any)
/// then the lower layers. Escaped ':' and ',' in paths are not supported.
pub fn overlay_layers(super_options: &str) -> Option<Vec<PathBuf>> {
    let mut upper = None;
    let mut lower = Vec::new();
    for opt in super_options.split(',') {
        if let Some(v) = opt.strip_prefix("upperdir=") {
            upper = Some(PathBuf::from(v));
        } else if let Some(v) = opt.strip_prefix("lowerdir=") {
            lower.extend(v.split(':').map(PathBuf::from));
        }
    }
    if lower.is_empty() || lower.iter().any(|l| !l.is_absolute()) {
        return None;
    }
    Some(upper.into_iter().chain(lower).collect())
}

/// Prepares the rootfs for container `private_dir` (moat's per-container
/// state directory). Never fails for a kernel that cannot idmap: it falls
/// back to [`RootfsMode::Unshifted`]. Fails only when the rootfs is missing.
/// `shift: false` (a host directory that is neither the bundle's nor an
/// engine's, see `harden::root::rootfs_may_be_idmapped`) goes straight to
/// the unshifted mount.
#[allow(
    clippy::disallowed_methods,
    reason = "the name finds the rootfs's mountinfo entry (its overlay layers) and is the unshifted fallback; the idmapped bind is made from the pinned handle"
)]
pub fn prepare(
    rootfs: &Path,
    rootfs_fd: BorrowedFd,
    range: IdRange,
    private_dir: &Path,
    target: &Path,
    shift: bool,
) -> Result<PreparedRootfs, RootfsError> {
    // Everything below uses the fd opened in precheck; `rootfs` (its real
    // path then) only names it in messages (T29).
    let handle = PathBuf::from(format!("/proc/self/fd/{}", rootfs_fd.as_raw_fd()));
    let handle = handle.as_path();
    let target = target.to_path_buf();
    let attempt = (|| -> Result<RootfsMode, RootfsError> {
        if !shift {
            return Err(RootfsError::NotShifted);
        }
        if let Some(dir) = target.parent() {
            create_container_dir(dir, range)?;
        }
        create_traversable_dir(&target)?;
        let userns = mapping_userns(range)?;
        match mount_of_fd(rootfs_fd) {
            Some(m) if m.fs_type == "overlay" => {
                let layers = overlay_layers(&m.super_options).ok_or_else(|| RootfsError::Sys {
                    op: "parse overlay layers".into(),
                    source: std::io::Error::from_raw_os_error(libc::EINVAL),
                })?;
                mount_idmapped_overlay(&layers, &target, private_dir, &userns, range)?;
                Ok(RootfsMode::IdmappedOverlay)
            }
            _ => {
                // From the fd pinned in precheck, not the name (T29).
                idmapped_bind(handle, &target, &userns)?;
                Ok(RootfsMode::IdmappedBind)
            }
        }
    })();
    match attempt {
        Ok(mode) => Ok(PreparedRootfs {
            mode,
            path: target,
            fallback_reason: None,
        }),
        Err(e) => {
            if matches!(e, RootfsError::NotShifted) {
                tracing::info!(rootfs = %rootfs.display(), "{e}");
            } else {
                tracing::warn!(error = %e, rootfs = %rootfs.display(), "rootfs cannot be idmapped; running unshifted");
            }
            teardown(private_dir, &target);
            // Staging and the netns pin still live in the private directory.
            if let Some(dir) = target.parent() {
                create_container_dir(dir, range)?;
            }
            // Unshifted, but still the directory precheck opened: a plain
            // clone of its mount tree from the fd, attached at moat's own
            // mount point, which is what libcontainer gets. Never the name:
            // a symlink swapped since precheck changes nothing (T29).
            create_traversable_dir(&target)?;
            if let Err(bind) = attach_clone(handle, &target, true, None) {
                teardown(private_dir, &target);
                return Err(bind);
            }
            Ok(PreparedRootfs {
                mode: RootfsMode::Unshifted,
                path: target,
                fallback_reason: Some(e.to_string()),
            })
        }
    }
}

fn mount_idmapped_overlay(
    layers: &[PathBuf],
    target: &Path,
    private_dir: &Path,
    userns: &OwnedFd,
    range: IdRange,
) -> Result<(), RootfsError> {
    let layer_root = private_dir.join("layers");
    let scratch = private_dir.join("scratch");
    fs::create_dir_all(&layer_root).map_err(sys("create layers dir"))?;
    fs::create_dir_all(&scratch).map_err(sys("create scratch dir"))?;
    // Helper mounts are detached as soon as the overlay holds them, so the
    // only mount left to clean up is `target`, whatever happens next.
    let mut helpers: Vec<PathBuf> = Vec::new();
    let result = (|| {
        mount(
            Some("tmpfs"),
            &scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("size=4m,mode=700"),
        )
        .map_err(nix_sys("mount scratch tmpfs"))?;
        helpers.push(scratch.clone());
        fs::create_dir_all(scratch.join("upper")).map_err(sys("create upper"))?;
        // The upper layer's root is the merged root's inode: give it the
        // top layer's mode and the container root's owner, or container
        // root could not create mount points (and `/` would show as nobody).
        let top = layers.first().ok_or_else(|| RootfsError::Sys {
            op: "overlay without layers".into(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        let top_meta = fs::metadata(top).map_err(sys("stat top layer"))?;
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let shift = |id: u32| {
                if id < range.size {
                    range.host_id + id
                } else {
                    range.host_id
                }
            };
            nix::unistd::chown(
                &scratch.join("upper"),
                Some(nix::unistd::Uid::from_raw(shift(top_meta.uid()))),
                Some(nix::unistd::Gid::from_raw(shift(top_meta.gid()))),
            )
            .map_err(nix_sys("chown upper"))?;
            fs::set_permissions(
                scratch.join("upper"),
                fs::Permissions::from_mode(top_meta.mode() & 0o7777),
            )
            .map_err(sys("chmod upper"))?;
        }
        fs::create_dir_all(scratch.join("work")).map_err(sys("create work"))?;
        let mut lower = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let dir = layer_root.join(i.to_string());
            fs::create_dir_all(&dir).map_err(sys("create layer dir"))?;
            idmapped_bind(layer, &dir, userns)?;
            helpers.push(dir.clone());
            lower.push(dir.display().to_string());
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            scratch.join("upper").display(),
            scratch.join("work").display()
        );
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(nix_sys("mount idmapped overlay"))
    })();
    for h in helpers.iter().rev() {
        let _ = umount2(h, MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_dir_all(&layer_root);
    result
}

/// Unmounts whatever [`prepare`] mounted under `private_dir`. Idempotent:
/// safe after a crash at any point of `prepare`.
pub fn teardown(private_dir: &Path, target: &Path) {
    let target = target.to_path_buf();
    for dir in [private_dir.join("scratch")]
        .into_iter()
        .chain(
            fs::read_dir(private_dir.join("layers"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        )
        .chain([target.clone()])
    {
        // Stacked mounts are possible after a crash mid-prepare.
        detach_mounts_at(&dir, 8);
    }
    let _ = fs::remove_dir_all(private_dir.join("layers"));
    let _ = fs::remove_dir(private_dir.join("scratch"));
    let _ = fs::remove_dir(&target);
    // The container's private directory, once everything in it is gone.
    if let Some(dir) = target
        .parent()
        .filter(|d| d.starts_with(MOUNT_BASE) && *d != Path::new(MOUNT_BASE))
    {
        let _ = fs::remove_dir(dir);
    }
}

/// Writes `data` to `path` atomically (fresh temp file + rename; a link
/// at `path` is replaced, never followed: see `crate::host_file`, T35). No
/// fsync: the state lives under /run (gone at reboot anyway), a crash
/// mid-create is swept by `delete --force`, and fsync cost ~16 ms per
/// container on ext4.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    crate::host_file::write_replacing(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parses_overlay_layers() {
        let text = "36 25 0:32 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/var/lib/docker/overlay2/abc/work\n\
                    22 1 8:1 / / rw - ext4 /dev/vda rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fs_type, "overlay");
        let layers = overlay_layers(&m[0].super_options).unwrap();
        assert_eq!(
            layers,
            vec![
                PathBuf::from("/var/lib/docker/overlay2/abc/diff"),
                PathBuf::from("/var/lib/docker/overlay2/l/A"),
                PathBuf::from("/var/lib/docker/overlay2/l/B"),
            ]
        );
    }

    #[test]
    fn relative_lowerdirs_are_not_guessed() {
        assert_eq!(overlay_layers("lowerdir=l/A:l/B"), None);
        assert_eq!(overlay_layers("rw,upperdir=/u"), None);
    }

    #[test]
    fn mountinfo_unescapes_spaces() {
        let text = "36 25 0:32 / /a\\040b rw - tmpfs tmpfs rw\n";
        assert_eq!(parse_mountinfo(text)[0].mount_point, PathBuf::from("/a b"));
    }

    #[test]
    fn a_plain_directory_is_no_mount_root_and_has_no_mount_of_its_own() {
        use std::os::fd::AsFd;
        let dir = std::env::temp_dir().join(format!("moat-mount-root-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let plain = fs::File::open(&dir).unwrap();
        let proc_root = fs::File::open("/proc").unwrap();
        let (plain_root, proc_is_root) = (
            is_mount_root(plain.as_fd()),
            is_mount_root(proc_root.as_fd()),
        );
        let plain_mount = mount_of_fd(plain.as_fd());
        let proc_mount = mount_of_fd(proc_root.as_fd());
        fs::remove_dir(&dir).unwrap();
        // A kernel without the attribute (before 5.8) answers None for both.
        assert!(matches!(
            (plain_root, proc_is_root),
            (Some(false), Some(true)) | (None, None)
        ));
        assert!(plain_mount.is_none());
        assert_eq!(proc_mount.map(|m| m.fs_type), Some("proc".to_string()));
    }
}
