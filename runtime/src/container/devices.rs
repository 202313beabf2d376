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
//! in the container's private directory (0700, under moat's state root:
//! no container reaches it by name), one inode per container, with the
//! host node's numbers, mode and owner (so the container may do with its
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
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::{lstat, mknod, Mode, SFlag};
use oci_spec::runtime::Spec;

use crate::rootfs::{open_tree_clone, set_mount_attr, MountAttr};

const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

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
/// the host (`devices`), in `dir` (created, 0700), with the host node's
/// type, numbers, permissions and owner, and clones each as a detached
/// mount. A path whose host entry is not a device node (a link, a file)
/// or has other numbers than the spec asked for is skipped
/// (libcontainer's bind of it stays as it is, owned as on the host).
///
/// Then every other mount in the container (`init`'s mount namespace)
/// whose root is a device node of the host (a masked file, a spec's bind
/// of a node, a device path whose host entry was skipped above) gets a
/// clone of the container's own node for that host node, made with what
/// the mount shows (type, numbers, mode, owner: no more than the bind
/// gave), so no mount leaves the container a host device inode.
pub fn prepare(
    devices: &[BoundDevice],
    dir: &Path,
    init: nix::unistd::Pid,
) -> Result<Vec<OwnDevice>> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut own = Vec::with_capacity(devices.len());
    // The container's node made for each host node, by the host node's
    // (st_dev, st_ino).
    let mut nodes: Vec<((u64, u64), PathBuf)> = Vec::new();
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
        let node = dir.join(i.to_string());
        make_node_like(&node, kind, &host)
            .with_context(|| format!("cannot make {}'s node", path.display()))?;
        nodes.push(((host.dev(), host.ino()), node.clone()));
        own.push(OwnDevice {
            path: path.clone(),
            host_inode: (host.dev(), host.ino()),
            tree: detached_device_mount(&node)?,
        });
    }
    for (path, shown) in host_device_mounts(init)? {
        if own.iter().any(|d| d.path == path) {
            continue;
        }
        let host_inode = (shown.dev(), shown.ino());
        let node = match nodes.iter().find(|(inode, _)| *inode == host_inode) {
            Some((_, node)) => node.clone(),
            None => {
                let node = dir.join(format!("m{}", nodes.len()));
                let kind = if shown.file_type().is_char_device() {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                make_node_like(&node, kind, &shown)
                    .with_context(|| format!("cannot make {}'s node", path.display()))?;
                nodes.push((host_inode, node.clone()));
                node
            }
        };
        own.push(OwnDevice {
            path,
            host_inode,
            tree: detached_device_mount(&node)?,
        });
    }
    Ok(own)
}

/// Makes a device node at `node` with `like`'s numbers, permissions and
/// owner.
fn make_node_like(node: &Path, kind: SFlag, like: &fs::Metadata) -> Result<()> {
    let perm = like.mode() & 0o777;
    mknod(node, kind, Mode::from_bits_truncate(perm), like.rdev())
        .with_context(|| format!("cannot make {}", node.display()))?;
    // mknod's mode went through the umask; set it exactly.
    fs::set_permissions(node, fs::Permissions::from_mode(perm))
        .with_context(|| format!("cannot chmod {}", node.display()))?;
    std::os::unix::fs::lchown(node, Some(like.uid()), Some(like.gid()))
        .with_context(|| format!("cannot chown {}", node.display()))
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
    use std::os::fd::FromRawFd;
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

/// A detached bind mount of the node at `node`: nosuid and noexec, with
/// nodev cleared (moat's state root may be on a nodev mount such as /run;
/// a bind keeps its source mount's flags).
fn detached_device_mount(node: &Path) -> Result<OwnedFd> {
    let c = CString::new(node.as_os_str().as_bytes()).context("device node path holds NUL")?;
    let tree = open_tree_clone(&c).with_context(|| format!("open_tree {}", node.display()))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        attr_clr: MOUNT_ATTR_NODEV,
        propagation: 0,
        userns_fd: 0,
    };
    set_mount_attr(&tree, &attr, 0).with_context(|| format!("mount_setattr {}", node.display()))?;
    Ok(tree)
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
        let target =
            CString::new(d.path.as_os_str().as_bytes()).context("device path holds NUL")?;
        let empty = CString::default();
        // SAFETY: a detached mount's descriptor, an empty path with
        // MOVE_MOUNT_F_EMPTY_PATH and a valid NUL-terminated target.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                d.tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot attach moat's node at {}", d.path.display()));
        }
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
        let node = fs::metadata(dir.join("0")).unwrap();
        assert!(node.file_type().is_char_device());
        assert_eq!(node.rdev(), host.rdev());
        assert_eq!(node.mode() & 0o777, host.mode() & 0o777);
        assert_eq!(
            (node.uid(), node.gid()),
            (host.uid(), host.gid()),
            "the host's owner"
        );
        assert_ne!((node.dev(), node.ino()), (host.dev(), host.ino()));
        assert_eq!(own[0].host_inode, (host.dev(), host.ino()));
        assert_eq!(
            fs::metadata(&dir).unwrap().mode() & 0o777,
            0o700,
            "no one but host root reaches the nodes by name"
        );
    }
}
