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

use super::mounts::TMPFS_BYTES_PER_INODE;
use super::{is_bind, HostFacts, MountedFs};
use crate::policy::{parse_size, Engine, Policy};
use crate::refusal::{Refusal, RefusalRule};

/// Filesystems that keep files on a local disk: a bind of one shows host
/// files, which the path rules (T11, T19) judge.
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

/// Whether the container writes through the mount itself: libcontainer
/// applies the options in order, so the last of `ro`/`rw`/`rro`/`rrw`
/// decides (`["rbind", "ro", "rw"]` is mounted read-write).
fn is_writable(m: &Mount) -> bool {
    last_of(m, &["ro", "rw", "rro", "rrw"]).is_none_or(|o| o == "rw" || o == "rrw")
}

/// Whether the container writes through the mounts a recursive bind
/// carries below its source: `ro` is applied to the top mount only
/// (`mount_setattr` without `AT_RECURSIVE`); only `rro` reaches them.
fn is_writable_below(m: &Mount) -> bool {
    last_of(m, &["rro", "rrw"]).is_none_or(|o| o == "rrw")
}

fn last_of<'a>(m: &'a Mount, options: &[&str]) -> Option<&'a str> {
    m.options()
        .iter()
        .flatten()
        .rev()
        .find(|o| options.contains(&o.as_str()))
        .map(String::as_str)
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
        for HostSource {
            what,
            path: source,
            writable,
            recursive,
            writable_below,
        } in host_sources(m)
        {
            let Some(filesystems) = facts.source_filesystems.get(&source) else {
                continue;
            };
            let shown = if recursive {
                filesystems.len()
            } else {
                filesystems.len().min(1)
            };
            for (i, fs) in filesystems[..shown].iter().enumerate() {
                let written = if i == 0 { writable } else { writable_below };
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
                        "{what} of {} at {}: its source{which} is {why}",
                        source.display(),
                        m.destination().display()
                    ),
                    key,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "bind_sources_tests.rs"]
mod tests;
