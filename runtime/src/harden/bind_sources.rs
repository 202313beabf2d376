//! Bind sources judged by the filesystem they really are (T40, and T5 for
//! tmpfs): an engine hands moat a plain bind of a host path, but what is
//! mounted there may be anything the engine (as host root, in the host's
//! namespaces) was asked to mount: a docker `local` volume with
//! `volume-opt=type=proc` or `type=overlay,o=lowerdir=/etc`, an NFS share,
//! a ramfs, a tmpfs of 100 GiB (red-team R6-8, R6-3). The facts come from
//! the fd moat mounts (`fstatfs`) and its mount's line in mountinfo
//! ([`HostFacts::source_filesystems`]); the rule only decides.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use super::mounts::{writability, TMPFS_BYTES_PER_INODE};
use super::{is_bind, HostFacts, MountedFs};
use crate::policy::{parse_size, Engine, Policy};
use crate::refusal::{Refusal, RefusalRule};

/// Filesystems that keep files on a local disk: a bind of one shows host
/// files, which the path rules (T11, T19) judge at every host path that
/// shows them (the source and its mount aliases). A local disk the host
/// shows nowhere but at volume storage (a docker `local` volume of
/// `type=ext4,device=<disk>`) has no such path: it is a driver-mounted
/// volume, judged by [`refuse_driver_mounted_volumes`] (red-team R7-3).
pub const LOCAL_DISK_FILESYSTEMS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "bcachefs", "jfs", "reiserfs", "nilfs2",
    "vfat", "msdos", "exfat", "ntfs", "ntfs3", "hfs", "hfsplus", "udf", "iso9660", "squashfs",
    "erofs",
];

/// Kernel and pseudo filesystems: views of the kernel's state (a docker
/// volume of `type=proc` is the host pid namespace's procfs), never data a
/// container's volume holds. Refused whatever the policy lists.
const KERNEL_FILESYSTEMS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "bpf",
    "configfs",
    "fusectl",
    "pstore",
    "efivarfs",
    "hugetlbfs",
    "devpts",
    "devtmpfs",
    "mqueue",
    "binfmt_misc",
    "nsfs",
    "autofs",
    "rpc_pipefs",
    "nfsd",
    "selinuxfs",
    "smackfs",
    "apparmorfs",
];

/// Network filesystems (named in messages): mounted by the host, so the
/// container reaches their servers outside its egress rules (T18).
pub const NETWORK_FILESYSTEMS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "ceph",
    "glusterfs",
    "afs",
    "ocfs2",
    "gfs2",
    "lustre",
    "beegfs",
    "gpfs",
];

/// Why a bind source's filesystem may not be mounted into a container, or
/// `None` when it may.
fn judge(
    fs: &MountedFs,
    writable: bool,
    policy: &Policy,
) -> Option<(String, Option<&'static str>)> {
    let t = fs.fs_type.as_str();
    if KERNEL_FILESYSTEMS.contains(&t) {
        return Some((
            format!("a kernel filesystem ({t}): it shows the host's kernel state, not a volume"),
            None,
        ));
    }
    if t == "ramfs" {
        return Some((
            "a ramfs: it has no size limit, and its pages are never reclaimed".into(),
            None,
        ));
    }
    if t == "tmpfs" {
        return writable.then(|| tmpfs_over_cap(fs, policy)).flatten();
    }
    if LOCAL_DISK_FILESYSTEMS.contains(&t) || policy.volumes.allow_fs_types.iter().any(|a| a == t) {
        return None;
    }
    let why = if NETWORK_FILESYSTEMS.contains(&t) || t.starts_with("fuse") {
        format!("a network or FUSE filesystem ({t}): the host mounted it, so the container's traffic to its server bypasses the egress rules")
    } else if t == "overlay" {
        "an overlay: its layers are host directories moat cannot judge".into()
    } else {
        format!("a filesystem moat does not know ({t})")
    };
    Some((why, Some("volumes.allow_fs_types")))
}

/// Why a writable tmpfs is too big for the policy: the engine made it, and
/// moat cannot shrink a mount the engine (and maybe other containers) own.
fn tmpfs_over_cap(fs: &MountedFs, policy: &Policy) -> Option<(String, Option<&'static str>)> {
    let cap = parse_size(&policy.filesystem.tmpfs_size).unwrap_or(0);
    let hint = "lower docker's --shm-size or the volume's size= option, or set a Kubernetes emptyDir sizeLimit";
    match fs.size_bytes {
        Some(size) if size <= cap => {}
        size => {
            let size = size.map_or("no size limit".to_string(), |s| format!("{s} bytes"));
            return Some((
                format!(
                    "a writable tmpfs of {size}, above the policy's filesystem.tmpfs_size of {cap} bytes ({}): {hint}",
                    policy.filesystem.tmpfs_size
                ),
                Some("filesystem.tmpfs_size"),
            ));
        }
    }
    let size = fs.size_bytes.unwrap_or(cap);
    let inodes_cap = (size / TMPFS_BYTES_PER_INODE).max(1);
    if is_engine_shm(&fs.mount_point, policy) {
        // No engine flag sets the inode limit of the /dev/shm it makes for
        // `--ipc shareable` or a pod sandbox: its size is judged, its
        // kernel-default inode limit is a documented residual (T5).
        return None;
    }
    match fs.inodes {
        Some(n) if n <= inodes_cap => None,
        n => Some((
            format!(
                "a writable tmpfs of {size} bytes allowing {} inodes, above the {inodes_cap} its size allows ({TMPFS_BYTES_PER_INODE} bytes each): set nr_inodes= on the volume",
                n.map_or("unlimited".to_string(), |n| n.to_string())
            ),
            None,
        )),
    }
}

/// The per-container /dev/shm engines mount themselves: docker's for
/// `--ipc shareable` (`<data-root>/containers/<id>/mounts/shm`) and
/// containerd's for a pod sandbox
/// (`<root or state>/io.containerd.grpc.v1.cri/sandboxes/<id>/shm`), only
/// below a root of that engine (`engines.*_roots`, its defaults included):
/// the exemption is never broader than the engine-storage rules, which
/// judge the same roots (red-team R7-5: a tenant's own tmpfs named that way
/// elsewhere escaped the inode rule, and another container's shm below a
/// moved data-root escaped the storage rules).
fn is_engine_shm(path: &Path, policy: &Policy) -> bool {
    let below = |engine: Engine, pattern: &[&str]| {
        policy.engines.roots(engine).iter().any(|root| {
            let Ok(rest) = path.strip_prefix(root) else {
                return false;
            };
            let names: Vec<&std::ffi::OsStr> = rest.iter().collect();
            names.len() == pattern.len()
                && names
                    .iter()
                    .zip(pattern)
                    .all(|(n, p)| *p == "*" || *n == std::ffi::OsStr::new(p))
        })
    };
    below(Engine::Docker, &["containers", "*", "mounts", "shm"])
        || below(
            Engine::Containerd,
            &["io.containerd.grpc.v1.cri", "sandboxes", "*", "shm"],
        )
}

/// Whether the container writes through the mount itself, as
/// [`writability`] says: the one rule of what libcontainer mounts writable
/// (`["rbind", "rrw", "ro"]` is read-write there: red-team R7-1), after
/// the hardening's read-only-wins rewrite.
fn is_writable(m: &Mount) -> bool {
    writability(m).top
}

/// Whether the container writes through the mounts a recursive bind
/// carries below its source: `ro` reaches the top mount only (no
/// `AT_RECURSIVE`); only `rro` reaches them ([`writability`]).
fn is_writable_below(m: &Mount) -> bool {
    writability(m).below
}

fn is_recursive(m: &Mount) -> bool {
    m.options().iter().flatten().any(|o| o == "rbind")
}

/// A host path a mount shows the container.
struct HostSource {
    what: &'static str,
    path: PathBuf,
    /// The container writes through the mount of the path itself.
    writable: bool,
    /// Mounts below the path come along (a recursive bind) ...
    recursive: bool,
    /// ... and the container writes through them.
    writable_below: bool,
}

/// The host paths a mount shows the container: a bind's source, and each
/// layer of an overlay (its upper and work directories written, its lower
/// layers read).
fn host_sources(m: &Mount) -> Vec<HostSource> {
    if is_bind(m) {
        return m
            .source()
            .iter()
            .map(|s| HostSource {
                what: "bind mount",
                path: s.clone(),
                writable: is_writable(m),
                recursive: is_recursive(m),
                writable_below: is_writable_below(m),
            })
            .collect();
    }
    if m.typ().as_deref() != Some("overlay") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for opt in m.options().iter().flatten() {
        for key in crate::path_syntax::OVERLAY_PATH_KEYS {
            let Some(value) = opt.strip_prefix(key) else {
                continue;
            };
            let written = matches!(*key, "upperdir=" | "workdir=");
            out.extend(
                value
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(|p| HostSource {
                        what: "overlay layer",
                        path: PathBuf::from(p),
                        writable: written,
                        recursive: false,
                        writable_below: false,
                    }),
            );
        }
    }
    out
}

/// The filesystems `m` shows the container, each with whether the
/// container writes through it: a bind's source (and, for a recursive bind,
/// every mount below it), an overlay's layers. Sources without facts are
/// left out.
fn shown_filesystems<'a>(
    m: &Mount,
    facts: &'a HostFacts,
) -> Vec<(HostSource, Vec<(&'a MountedFs, bool)>)> {
    host_sources(m)
        .into_iter()
        .filter_map(|source| {
            let filesystems = facts.source_filesystems.get(&source.path)?;
            let shown = if source.recursive {
                filesystems.len()
            } else {
                filesystems.len().min(1)
            };
            let judged = filesystems[..shown]
                .iter()
                .enumerate()
                .map(|(i, fs)| {
                    (
                        fs,
                        if i == 0 {
                            source.writable
                        } else {
                            source.writable_below
                        },
                    )
                })
                .collect();
            Some((source, judged))
        })
        .collect()
}

/// Every writable tmpfs the spec's binds and overlay layers show the
/// container, once each (by mount point), with the most it holds
/// (`u64::MAX`: no limit): memory a tenant fills like a spec tmpfs, so it
/// counts in `filesystem.tmpfs_total` (red-team R7-4). An engine's own
/// /dev/shm counts too (it is real memory); a pod's shared one is counted
/// in each of its containers.
pub(super) fn writable_tmpfs_sources(spec: &Spec, facts: &HostFacts) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = Vec::new();
    for m in spec.mounts().iter().flatten() {
        for (_, filesystems) in shown_filesystems(m, facts) {
            for (fs, writable) in filesystems {
                if writable
                    && fs.fs_type == "tmpfs"
                    && !out.iter().any(|(p, _)| *p == fs.mount_point)
                {
                    out.push((fs.mount_point.clone(), fs.size_bytes.unwrap_or(u64::MAX)));
                }
            }
        }
    }
    out
}

/// Refuses a bind whose source is (or, for a recursive bind, has mounted
/// below it) a filesystem no container volume may be: a kernel filesystem,
/// ramfs, an overlay, a network, FUSE or unknown filesystem the policy does
/// not list, or a writable tmpfs above the policy's tmpfs caps (T40, T5).
/// An overlay mount's layers are judged the same way (its upper directory
/// on a host tmpfs would be written past the caps). A source without facts
/// (`explain` could not open it) is not judged here; `create` has facts for
/// every source it pinned.
pub(super) fn refuse_bind_source_filesystems(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    for m in spec.mounts().iter().flatten() {
        for (source, filesystems) in shown_filesystems(m, facts) {
            for (i, (fs, written)) in filesystems.into_iter().enumerate() {
                let Some((why, key)) = judge(fs, written, policy) else {
                    continue;
                };
                let which = if i == 0 {
                    String::new()
                } else {
                    format!(
                        " has {} mounted below it, and that",
                        fs.mount_point.display()
                    )
                };
                return Err(Refusal::new(
                    RefusalRule::BindSourceFilesystem,
                    format!(
                        "{} of {} at {}: its source{which} is {why}",
                        source.what,
                        source.path.display(),
                        m.destination().display()
                    ),
                    key,
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a driver-mounted volume whose filesystem type the policy does
/// not list in `volumes.driver_mounted_fs_types` (default: tmpfs only,
/// which T5's caps judge). A source is driver-mounted when every host mount
/// showing its file ([`HostFacts::source_mounted_at`]) is mounted at a
/// volume storage path (`volumes.idmap_under`): an engine or volume driver
/// mounted that filesystem, or the part of it holding the source, there
/// for the volume alone (dockerd, as host root, for a `local` volume with
/// `volume-opt=type=…,device=…`). The path rules judge host paths; no host
/// path shows such a mount, and the one it has says "volume storage",
/// which is idmapped: a block device mounted nowhere (another tenant's
/// persistent volume, an unmounted partition) or mounted only by a
/// subdirectory (a btrfs host's top level, holding its `/` as `@`) was
/// read and written as host root (red-team R7-3). A plain volume, a
/// directory of a filesystem the host mounts elsewhere (`/` shows it), and
/// a host directory on a disk of its own are not driver-mounted.
pub(super) fn refuse_driver_mounted_volumes(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    let allowed = &policy.volumes.driver_mounted_fs_types;
    for m in spec.mounts().iter().flatten() {
        for HostSource {
            what, path: source, ..
        } in host_sources(m)
        {
            let Some(mounted_at) = facts.source_mounted_at.get(&source) else {
                continue;
            };
            let driver_mounted = !mounted_at.is_empty()
                && mounted_at
                    .iter()
                    .all(|p| policy.volumes.is_volume_storage(p));
            if !driver_mounted {
                continue;
            }
            let fs_type = facts
                .source_filesystems
                .get(&source)
                .and_then(|f| f.first())
                .map_or("unknown (no facts)", |f| f.fs_type.as_str());
            if allowed.iter().any(|a| a == fs_type) {
                continue;
            }
            let places: Vec<String> = mounted_at.iter().map(|p| p.display().to_string()).collect();
            return Err(Refusal::new(
                RefusalRule::BindSourceFilesystem,
                format!(
                    "{what} of {} at {}: its source is a driver-mounted volume ({fs_type}): the host shows that filesystem only at volume storage ({}), where it was mounted for the volume alone (a docker local volume with volume-opt=type=…,device=…), so no host path shows what it holds for the path rules to judge (a block device may be another tenant's disk or the host's own); driver-mounted volumes may be: {}",
                    source.display(),
                    m.destination().display(),
                    places.join(", "),
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
                Some("volumes.driver_mounted_fs_types"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "bind_sources_tests.rs"]
mod tests;
