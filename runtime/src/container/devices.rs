//! The container's own device nodes (T34).
//!
//! In a user namespace libcontainer cannot make device nodes (a filesystem
//! mounted there never honours them), so it bind-mounts the host's
//! `/dev/null`, `/dev/zero`, `/dev/tty`, … into the container: the
//! container then shares those inodes with every host process. It can
//! take a flock, lease or OFD lock on them (every close of the host's
//! `/dev/null` walks the inode's lock list, so one held lock slows every
//! `close` on the host; dockerd holds one) and inotify-watch them (a side
//! channel: it sees when a host process opens `/dev/tty` or reads
//! `/dev/urandom`), and a chown/chmod moat lets through would change the
//! host's node.
//!
//! moat, as host root in the host's user namespace, makes the same nodes
//! on a tmpfs of the container's own that no host path reaches (see
//! [`prepare`] for why not on moat's state root), one inode per container,
//! with the host node's numbers, mode and owner (so the container may do with its
//! node exactly what the bind let it do: a root-only 0600 node such as
//! `/dev/console` stays out of its reach). A node is made only when the
//! host's path is itself a device node (not a link) whose numbers are the
//! ones libcontainer was asked to bind. Before the container starts, a
//! thread of moat's in the container's mount namespace detaches
//! libcontainer's binds of the host's nodes at the device paths and
//! attaches clones of moat's in their place.
//!
//! The class is every mount in the container whose root is a host device
//! node, not only the device paths: libcontainer masks a file in
//! `maskedPaths` (`/proc/kcore`, `/proc/keys`, …) by binding the
//! container's `/dev/null` over it before moat's nodes exist, and a spec's
//! bind mount may name a host node. moat reads the container's mount table
//! and gives each such mount a clone of the container's own node for that
//! host node (one inode per host node and container: a masked file is the
//! container's own `/dev/null`). The pty libcontainer binds on
//! `/dev/console` lives on the container's own devpts and stays.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::AtFlags;
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::{fchmodat, lstat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::fchownat;
use oci_spec::runtime::Spec;

use crate::rootfs::open_tree_clone;

const MOUNT_ATTR_NOSUID: libc::c_uint = 0x0000_0002;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x0000_0008;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// The most binds of one host node at one path moat detaches (libcontainer
/// makes one; a few more cost nothing to handle).
const MAX_STACKED: usize = 4;

/// One device node of the container's own, ready to be attached.
#[derive(Debug)]
pub struct OwnDevice {
    /// Where libcontainer bound the host's node (a path in the container).
    pub path: PathBuf,
    /// The host node's (st_dev, st_ino): what libcontainer's bind shows.
    host_inode: (u64, u64),
    /// A detached bind mount of moat's node (nosuid, noexec; dev allowed).
    tree: OwnedFd,
}

/// A device libcontainer bind-mounts from the host: its path and the
/// device number (`makedev(major, minor)`) it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundDevice {
    pub path: PathBuf,
    pub rdev: u64,
}

/// The devices libcontainer bind-mounts from the host: the spec's
/// devices, then its own defaults the spec does not list.
pub fn bound_device_paths(spec: &Spec) -> Vec<BoundDevice> {
    let bound = |d: &oci_spec::runtime::LinuxDevice| BoundDevice {
        path: d.path().clone(),
        rdev: nix::sys::stat::makedev(d.major() as u64, d.minor() as u64),
    };
    let mut devices: Vec<BoundDevice> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(bound)
        .collect();
    for d in libcontainer::rootfs::utils::default_devices() {
        if !devices.iter().any(|b| b.path == *d.path()) {
            devices.push(bound(&d));
        }
    }
    devices
}

/// Makes the container's own node for each device libcontainer binds from
/// the host (`devices`), with the host node's type, numbers, permissions
/// and owner, and clones each as a detached mount. A path whose host entry
/// is not a device node (a link, a file) or has other numbers than the
/// spec asked for is skipped (libcontainer's bind of it stays as it is,
/// owned as on the host).
///
/// Then every other mount in the container (`init`'s mount namespace)
/// whose root is a device node of the host (a masked file, a spec's bind
/// of a node, a device path whose host entry was skipped above) gets a
/// clone of the container's own node for that host node, made with what
/// the mount shows (type, numbers, mode, owner: no more than the bind
/// gave), so no mount leaves the container a host device inode.
///
/// The nodes live on a tmpfs of their own that moat mounts for this
/// container and never attaches to a host path, not on the filesystem of
/// moat's state root: the kernel runs its fsnotify path on every read and
/// open of a file whose filesystem anyone watches with inotify or fanotify
/// (a watch on any other file of it is enough; containerd watches one on
/// the state root's), which cost 23 ns per read of `/dev/zero` and about
/// 60 ns per open+close of `/dev/null` (issue 17). Nobody on the host can
/// watch, or open, a filesystem no host path reaches. `dir` (created,
/// 0700) is used only where the kernel cannot clone from a detached mount.
pub fn prepare(
    devices: &[BoundDevice],
    dir: &Path,
    init: nix::unistd::Pid,
) -> Result<Vec<OwnDevice>> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mounts = host_device_mounts(init)?;
    // One inode per node at most, and the root's.
    let nodes = private_tmpfs(devices.len() + mounts.len() + 1)
        .context("cannot make the device nodes' tmpfs")?;
    // (path in the container, host node's (st_dev, st_ino), node's name,
    // whether the clone is nodev).
    let mut wanted: Vec<(PathBuf, (u64, u64), String, bool)> = Vec::new();
    // The container's node made for each host node, by the host node's
    // (st_dev, st_ino).
    let mut made: Vec<((u64, u64), String)> = Vec::new();
    for (i, BoundDevice { path, rdev }) in devices.iter().enumerate() {
        // The name libcontainer's mount(2) resolves in the host's view
        // (its init is in a copy of the host's mount table then). Not
        // followed: a link (`/dev/stdin` -> moat's own stdin, a pty) would
        // give the container a node of whatever it names.
        let Ok(host) = fs::symlink_metadata(path) else {
            continue;
        };
        if host.rdev() != *rdev {
            continue;
        }
        let kind = if host.file_type().is_char_device() {
            SFlag::S_IFCHR
        } else if host.file_type().is_block_device() {
            SFlag::S_IFBLK
        } else {
            continue;
        };
        let name = i.to_string();
        make_node_like(&nodes, &name, kind, &host)
            .with_context(|| format!("cannot make {}'s node", path.display()))?;
        let host_inode = (host.dev(), host.ino());
        made.push((host_inode, name.clone()));
        wanted.push((path.clone(), host_inode, name, false));
    }
    for (path, shown) in mounts {
        if wanted.iter().any(|(p, _, _, _)| *p == path) {
            continue;
        }
        let host_inode = (shown.dev(), shown.ino());
        let name = match made.iter().find(|(inode, _)| *inode == host_inode) {
            Some((_, name)) => name.clone(),
            None => {
                let name = format!("m{}", made.len());
                let kind = if shown.file_type().is_char_device() {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                make_node_like(&nodes, &name, kind, &shown)
                    .with_context(|| format!("cannot make {}'s node", path.display()))?;
                made.push((host_inode, name.clone()));
                name
            }
        };
        // A mount found in the table is a spec's bind of a node (which
        // the hardening made nodev: unusable as a device) or a masked
        // file (libcontainer's bind of `/dev/null`, read as empty). Only
        // the null device keeps working: every other clone is nodev, so
        // the swap never makes a node usable that was not.
        let nodev = shown.rdev() != libc::makedev(1, 3);
        wanted.push((path, host_inode, name, nodev));
    }
    let names: Vec<&str> = wanted.iter().map(|(_, _, name, _)| name.as_str()).collect();
    let trees = clone_nodes(&nodes, &names, dir)?;
    wanted
        .into_iter()
        .zip(trees)
        .map(|((path, host_inode, _, nodev), tree)| {
            if nodev {
                let attr = crate::rootfs::MountAttr {
                    attr_set: MOUNT_ATTR_NODEV,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                crate::rootfs::set_mount_attr(&tree, &attr, 0)
                    .with_context(|| format!("cannot make {}'s node nodev", path.display()))?;
            }
            Ok(OwnDevice {
                path,
                host_inode,
                tree,
            })
        })
        .collect()
}

/// Makes a device node `name` in the directory `at` with `like`'s numbers,
/// permissions and owner.
fn make_node_like(at: &OwnedFd, name: &str, kind: SFlag, like: &fs::Metadata) -> Result<()> {
    let perm = Mode::from_bits_truncate(like.mode() & 0o777);
    let at = Some(at.as_raw_fd());
    mknodat(at, name, kind, perm, like.rdev()).with_context(|| format!("cannot make {name}"))?;
    // mknod's mode went through the umask; set it exactly.
    fchmodat(at, name, perm, FchmodatFlags::FollowSymlink)
        .with_context(|| format!("cannot chmod {name}"))?;
    fchownat(
        at,
        name,
        Some(like.uid().into()),
        Some(like.gid().into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("cannot chown {name}"))
}

/// The mount points in `init`'s mount namespace whose mount shows a device
/// node, with what it shows, once each (a mount point stacked twice is
/// listed once; [`attach_in_container`] detaches every layer showing the
/// host's node). A node on a devpts is left out: that is the container's
/// own pty instance (libcontainer binds the console's pty on
/// `/dev/console`), and a pty node works only on its devpts.
///
/// Each mount point is opened through the init's root without following
/// any link (`RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`), the mount table's
/// names being the real paths; the container has not started, so nothing
/// of the tenant's runs in it yet. A name that no longer resolves that way
/// is not reachable by it either and is skipped.
fn host_device_mounts(init: nix::unistd::Pid) -> Result<Vec<(PathBuf, fs::Metadata)>> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let text = fs::read_to_string(format!("/proc/{init}/mountinfo"))
        .context("cannot read the container's mount table")?;
    let root =
        fs::File::open(format!("/proc/{init}/root")).context("cannot open the container's root")?;
    let mut found: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    for m in crate::rootfs::parse_mountinfo(&text) {
        // A FUSE mount is skipped: its server (perhaps a tenant's) answers
        // the stat, and could stall create; its nodes are not the host's.
        if m.fs_type == "devpts"
            || m.fs_type.starts_with("fuse")
            || found.iter().any(|(p, _)| *p == m.mount_point)
        {
            continue;
        }
        let Ok(rel) = m.mount_point.strip_prefix("/") else {
            continue;
        };
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_IN_ROOT
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let Ok(fd) = openat2(root.as_raw_fd(), rel, how) else {
            continue;
        };
        // SAFETY: openat2 returned a new descriptor we now own.
        let file = unsafe { fs::File::from_raw_fd(fd) };
        let shown = file
            .metadata()
            .with_context(|| format!("cannot stat {}", m.mount_point.display()))?;
        let kind = shown.file_type();
        if kind.is_char_device() || kind.is_block_device() {
            found.push((m.mount_point, shown));
        }
    }
    Ok(found)
}

/// A descriptor a syscall returned (`rc`), or the error it set.
fn owned_fd(rc: libc::c_long) -> std::io::Result<OwnedFd> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// A new tmpfs (root 0700, room for `inodes` inodes and no blocks to speak
/// of), mounted nosuid and noexec with devices allowed, attached nowhere:
/// the returned descriptor is its root.
fn private_tmpfs(inodes: usize) -> std::io::Result<OwnedFd> {
    let cstr = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let tmpfs = cstr("tmpfs")?;
    // SAFETY: a valid NUL-terminated filesystem name.
    let fs = owned_fd(unsafe { libc::syscall(libc::SYS_fsopen, tmpfs.as_ptr(), FSOPEN_CLOEXEC) })?;
    let inodes = inodes.to_string();
    for (key, value) in [("mode", "0700"), ("nr_inodes", &inodes), ("size", "4k")] {
        let (key, value) = (cstr(key)?, cstr(value)?);
        // SAFETY: fsopen's descriptor and valid NUL-terminated strings.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let none: *const libc::c_char = std::ptr::null();
    // SAFETY: fsopen's descriptor; CMD_CREATE takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            none,
            none,
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a created filesystem context's descriptor.
    owned_fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        )
    })
}

/// A detached bind mount of each of `names` in the tmpfs `nodes` (its
/// flags: nosuid, noexec, devices allowed). Kernels before 6.15 refuse to
/// clone from a mount attached nowhere (EINVAL): there [`clone_attached`].
fn clone_nodes(nodes: &OwnedFd, names: &[&str], dir: &Path) -> Result<Vec<OwnedFd>> {
    let detached: std::io::Result<Vec<OwnedFd>> = names
        .iter()
        .map(|name| {
            let name = CString::new(*name).map_err(std::io::Error::other)?;
            // SAFETY: a valid descriptor and NUL-terminated name.
            owned_fd(unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    nodes.as_raw_fd(),
                    name.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
                )
            })
        })
        .collect();
    match detached {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => clone_attached(nodes, names, dir),
        other => other.context("cannot clone the container's device nodes"),
    }
}

/// [`clone_nodes`] where the kernel clones only from an attached mount:
/// attaches the tmpfs at `dir` (moat's private 0700 directory: nobody else
/// reaches it by name) while the clones are made, then detaches it.
fn clone_attached(nodes: &OwnedFd, names: &[&str], dir: &Path) -> Result<Vec<OwnedFd>> {
    move_mount_to(nodes, dir)
        .with_context(|| format!("cannot attach the device nodes' tmpfs at {}", dir.display()))?;
    let clones: std::io::Result<Vec<OwnedFd>> = names
        .iter()
        .map(|name| {
            let path = CString::new(dir.join(name).as_os_str().as_bytes())
                .map_err(std::io::Error::other)?;
            open_tree_clone(&path)
        })
        .collect();
    umount2(dir, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
        .with_context(|| format!("cannot detach the device nodes' tmpfs at {}", dir.display()))?;
    clones.context("cannot clone the container's device nodes")
}

/// Attaches the detached mount `tree` at `target` (move_mount(2)).
fn move_mount_to(tree: &OwnedFd, target: &Path) -> std::io::Result<()> {
    let target = CString::new(target.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let empty = CString::default();
    // SAFETY: a detached mount's descriptor, an empty path with
    // MOVE_MOUNT_F_EMPTY_PATH and a valid NUL-terminated target.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs in the container's mount namespace (a thread of moat's that
/// entered it before the container starts): at each device's path,
/// detaches libcontainer's bind of the host's node and attaches moat's.
/// A path that does not show the host's node, or shows it without a mount
/// of the node itself, is left alone (libcontainer did not bind it there).
/// Fails when the host's node is still there after a detach.
pub fn attach_in_container(devices: Vec<OwnDevice>) -> Result<()> {
    let shows_host_node = |d: &OwnDevice| {
        lstat(&d.path)
            .map(|st| (st.st_dev, st.st_ino) == d.host_inode)
            .unwrap_or(false)
    };
    for d in devices {
        let mut detached = 0;
        while detached < MAX_STACKED && shows_host_node(&d) {
            match umount2(&d.path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) => detached += 1,
                // Not a mount point: the host's node is there through a
                // mount of a whole directory the spec asked for (a policy
                // that allows binding the host's /dev), not through
                // libcontainer's bind of the node; left as the spec says.
                Err(nix::errno::Errno::EINVAL) if detached == 0 => break,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot detach the host's node at {}", d.path.display())
                    })
                }
            }
        }
        if detached == 0 {
            continue;
        }
        if shows_host_node(&d) {
            bail!(
                "{} still shows the host's device node after {MAX_STACKED} detaches",
                d.path.display()
            );
        }
        move_mount_to(&d.tree, &d.path)
            .with_context(|| format!("cannot attach moat's node at {}", d.path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceType, SpecBuilder};

    #[test]
    fn bound_paths_are_the_specs_devices_then_libcontainers_defaults_once() {
        let spec = SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .devices(vec![
                        LinuxDeviceBuilder::default()
                            .path("/dev/zero")
                            .typ(LinuxDeviceType::C)
                            .major(1)
                            .minor(5)
                            .build()
                            .unwrap(),
                        LinuxDeviceBuilder::default()
                            .path("/dev/fuse")
                            .typ(LinuxDeviceType::C)
                            .major(10)
                            .minor(229)
                            .build()
                            .unwrap(),
                    ])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let paths = bound_device_paths(&spec);
        let names: Vec<&str> = paths.iter().map(|d| d.path.to_str().unwrap()).collect();
        assert_eq!(&names[..2], ["/dev/zero", "/dev/fuse"]);
        for default in [
            "/dev/null",
            "/dev/full",
            "/dev/tty",
            "/dev/urandom",
            "/dev/random",
        ] {
            assert_eq!(
                names.iter().filter(|n| **n == default).count(),
                1,
                "{default} in {names:?}"
            );
        }
        assert_eq!(names.iter().filter(|n| **n == "/dev/zero").count(), 1);
    }

    #[test]
    fn own_nodes_copy_the_host_nodes_numbers_mode_and_owner() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        let null = fs::metadata("/dev/null").unwrap().rdev();
        let bound = |p: &str, rdev: u64| BoundDevice {
            path: PathBuf::from(p),
            rdev,
        };
        // A link whose target has the asked numbers is not followed either.
        let link = tmp.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let paths = [
            bound("/dev/null", null),
            bound("/etc/hostname", 0),
            // Numbers other than the spec asked for: libcontainer's bind
            // of the host's node stays.
            bound("/dev/zero", null),
            bound(link.to_str().unwrap(), null),
        ];
        // The mount table scanned is this test's own (the host's): only a
        // mount showing a device node there would add an entry.
        let own = prepare(&paths, &dir, nix::unistd::getpid()).unwrap();
        let made: Vec<&Path> = own
            .iter()
            .map(|d| d.path.as_path())
            .filter(|p| paths.iter().any(|b| b.path == *p))
            .collect();
        assert_eq!(
            made,
            [Path::new("/dev/null")],
            "only the device node with the asked numbers"
        );
        let host = fs::metadata("/dev/null").unwrap();
        // The node is reached only through its clone's descriptor.
        let node = nix::sys::stat::fstat(own[0].tree.as_raw_fd()).unwrap();
        assert_eq!(
            SFlag::from_bits_truncate(node.st_mode) & SFlag::S_IFMT,
            SFlag::S_IFCHR
        );
        assert_eq!(node.st_rdev, host.rdev());
        assert_eq!(node.st_mode & 0o777, host.mode() & 0o777);
        assert_eq!(
            (node.st_uid, node.st_gid),
            (host.uid(), host.gid()),
            "the host's owner"
        );
        assert_ne!((node.st_dev, node.st_ino), (host.dev(), host.ino()));
        assert_eq!(own[0].host_inode, (host.dev(), host.ino()));
        let state = fs::metadata(&dir).unwrap();
        assert_ne!(
            node.st_dev,
            state.dev(),
            "the node is on a filesystem of its own, not the state root's"
        );
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "no node in the private directory"
        );
        assert_eq!(state.mode() & 0o777, 0o700);
    }

    /// The way kernels before 6.15 take (they cannot clone from a mount
    /// attached nowhere): the clones show the tmpfs's nodes, and the tmpfs
    /// is no longer attached at `dir` afterwards.
    #[test]
    fn nodes_clone_through_the_private_directory_where_the_kernel_needs_it() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let nodes = private_tmpfs(4).unwrap();
        let host = fs::metadata("/dev/zero").unwrap();
        make_node_like(&nodes, "0", SFlag::S_IFCHR, &host).unwrap();
        let clones = clone_attached(&nodes, &["0", "0"], &dir).unwrap();
        assert_eq!(clones.len(), 2);
        for clone in &clones {
            let node = nix::sys::stat::fstat(clone.as_raw_fd()).unwrap();
            assert_eq!(node.st_rdev, host.rdev());
            assert_ne!(node.st_dev, host.dev());
        }
        let parent = fs::metadata(tmp.path()).unwrap().dev();
        assert_eq!(
            fs::metadata(&dir).unwrap().dev(),
            parent,
            "the tmpfs is still attached at the private directory"
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }
}
