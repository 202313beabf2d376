//! Mounts: a read-only root, size-capped scratch tmpfs, nosuid/nodev on
//! workload mounts, read-only /sys and cgroupfs, masked and read-only /proc paths.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use super::{is_bind, normalize};
use crate::policy::{parse_size, Policy};
use crate::refusal::{Refusal, RefusalRule};
use crate::report::{Report, Rule};

/// /proc and /sys paths masked in every container: each leaks host state
/// or reaches host hardware. runc's and docker's lists, plus /sys/firmware.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// /proc paths made read-only: writes there change the host kernel.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub(super) fn make_root_readonly(spec: &mut Spec, report: &mut Report) {
    if let Some(root) = spec.root().clone() {
        if root.readonly() != Some(true) {
            let mut r = root.clone();
            r.set_readonly(Some(true));
            spec.set_root(Some(r));
            report.change(
                Rule::ReadOnlyRoot,
                "root.readonly",
                format!("{:?}", root.readonly()),
                "true",
                "a compromised process must not alter the image's binaries",
            );
        }
    }
}

/// The options that undo a restricting one in libcontainer 0.7: the plain
/// inverse (the flags of `ro`/`rw`, `nosuid`/`suid`, … are set and cleared
/// in order, the last wins) and the recursive one (`rrw`, `rsuid`, `rdev`,
/// `rexec` go into one `mount_setattr(AT_RECURSIVE)` made after the plain
/// flags, whatever their place: `nosuid,rsuid` mounts suid, review L3).
fn undoing(option: &str) -> &'static [&'static str] {
    match option {
        "ro" => &["rw", "rrw"],
        "nosuid" => &["suid", "rsuid"],
        "nodev" => &["dev", "rdev"],
        "noexec" => &["exec", "rexec"],
        _ => &[],
    }
}

/// Adds the options of `add` the mount lacks and removes those of `remove`
/// and every option that would undo one of `add` ([`undoing`]), so the
/// mount is what moat believes it is whatever the spec's order.
fn ensure_options(m: &mut Mount, add: &[&str], remove: &[&str]) -> bool {
    let mut opts = m.options().clone().unwrap_or_default();
    let before = opts.clone();
    opts.retain(|o| {
        !remove.contains(&o.as_str()) && !add.iter().any(|a| undoing(a).contains(&o.as_str()))
    });
    for a in add {
        if !opts.iter().any(|o| o == a) {
            opts.push(a.to_string());
        }
    }
    let changed = opts != before;
    m.set_options(Some(opts));
    changed
}

/// What a container may write through a mount, as libcontainer 0.7 mounts
/// it (`rootfs/mount.rs` `mount_into_container`, `rootfs/utils.rs`
/// `parse_mount`), never guessed from the options' order (red-team R7-1):
/// - `ro`/`rw` set and clear one `MS_RDONLY` flag, the last one wins; it is
///   applied first, to the top mount only (`mount_setattr` without
///   `AT_RECURSIVE`, which only sets attributes), and dropped for a mount
///   at `/dev`;
/// - `rro`/`rrw` go into one `mount_setattr(AT_RECURSIVE)` made after it,
///   whatever their place in the list, over the whole tree: `rro` sets
///   RDONLY, `rrw` clears it, and the kernel clears before it sets, so any
///   `rro` wins over any `rrw`.
///
/// Writable means "may be": `rw` never clears the read-only flag of a
/// source that already has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writability {
    /// The container may write through the mount itself.
    pub top: bool,
    /// ... and through the mounts a recursive bind carries below its source.
    pub below: bool,
}

/// [`Writability`] of a mount with `options` at `destination`, exactly as
/// libcontainer applies them.
pub fn libcontainer_writability(options: &[String], destination: &Path) -> Writability {
    let has = |name: &str| options.iter().any(|o| o == name);
    let recursive_rw = if has("rro") {
        Some(false)
    } else if has("rrw") {
        Some(true)
    } else {
        None
    };
    // Component-wise, as libcontainer compares, and lexically normalised:
    // either way, a /dev it may see loses its `ro`.
    let at_dev = destination == Path::new("/dev") || normalize(destination) == Path::new("/dev");
    let flag_ro = !at_dev
        && options
            .iter()
            .rev()
            .find(|o| *o == "ro" || *o == "rw")
            .is_some_and(|o| o == "ro");
    Writability {
        top: recursive_rw.unwrap_or(!flag_ro),
        below: recursive_rw.unwrap_or(true),
    }
}

/// The mount's read-only options once no read-write option contradicts
/// them: with any of `ro`/`rro` present, `rw` and `rrw` are dropped, so the
/// container gets the read-only result whatever their order (the
/// hardening's rewrite, [`harden_mounts`]; a reader of the options sees one
/// meaning).
pub fn read_only_wins(options: &[String]) -> Vec<String> {
    let read_only = options.iter().any(|o| o == "ro" || o == "rro");
    options
        .iter()
        .filter(|o| !(read_only && (*o == "rw" || *o == "rrw")))
        .cloned()
        .collect()
}

/// What a container may write through `m` once hardened: the one rule every
/// judgement of a mount's writability uses (bind sources' filesystems and
/// their tmpfs caps, the tmpfs total).
pub fn writability(m: &Mount) -> Writability {
    let options = read_only_wins(m.options().as_deref().unwrap_or_default());
    libcontainer_writability(&options, m.destination())
}

/// Drops the read-write options a read-only one contradicts
/// ([`read_only_wins`]) and returns them.
fn drop_contradicted_read_write(m: &mut Mount) -> Vec<String> {
    let Some(options) = m.options().clone() else {
        return Vec::new();
    };
    let kept = read_only_wins(&options);
    let dropped: Vec<String> = options
        .iter()
        .filter(|o| (*o == "rw" || *o == "rrw") && !kept.contains(o))
        .cloned()
        .collect();
    m.set_options(Some(kept));
    dropped
}

pub(super) fn harden_mounts(spec: &mut Spec, policy: &Policy, report: &mut Report) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut() {
        let dest = m.destination().display().to_string();
        let typ = m.typ().clone().unwrap_or_default();
        let before = m.options().clone().unwrap_or_default().join(",");
        let scratch = policy
            .filesystem
            .tmpfs
            .iter()
            .any(|t| normalize(Path::new(t)) == normalize(m.destination()));
        let dropped_atime = if is_bind(m) {
            drop_atime_options(m)
        } else {
            Vec::new()
        };
        let dropped_read_write = drop_contradicted_read_write(m);
        let changed = if typ == "tmpfs" {
            // Every tmpfs (moat's scratch dirs, the spec's own, /dev,
            // /dev/shm, `docker run --tmpfs`) lives in memory: each gets a
            // size cap, and nosuid,nodev. /dev keeps `dev`: libcontainer
            // puts the container's device nodes there.
            let dev = normalize(m.destination()) == Path::new("/dev");
            cap_tmpfs(m, &policy.filesystem.tmpfs_size, dev)
        } else if is_bind(m) || scratch {
            ensure_options(m, &["nosuid", "nodev"], &["suid", "dev"])
        } else if typ == "sysfs" || typ == "cgroup" || typ == "cgroup2" {
            // `rrw` too: libcontainer applies it after `ro`, over the tree.
            ensure_options(m, &["ro", "nosuid", "nodev", "noexec"], &["rw", "rrw"])
        } else if typ == "devpts" {
            cap_devpts(m, policy.filesystem.pty_max)
        } else {
            false
        };
        if changed {
            report.change(
                Rule::MountFlags,
                format!("mounts[{dest}].options"),
                before,
                m.options().clone().unwrap_or_default().join(","),
                if typ == "sysfs" || typ.starts_with("cgroup") {
                    "/sys and cgroupfs are read-only"
                } else if typ == "devpts" {
                    "every devpts but the host's shares one pool of ptys (kernel.pty.max - kernel.pty.reserve): filesystem.pty_max bounds this container's share (red-team R8-2)"
                } else {
                    "workload mounts must not carry setuid binaries or device nodes"
                },
            );
        }
        if !dropped_read_write.is_empty() {
            report.change(
                Rule::MountFlags,
                format!("mounts[{dest}].options"),
                dropped_read_write.join(","),
                "dropped: a read-only option is given too",
                "with ro or rro given, the mount is read-only whatever the order (libcontainer applies rro/rrw after ro/rw, over the whole tree: red-team R7-1)",
            );
        }
        if !dropped_atime.is_empty() {
            report.change(
                Rule::MountFlags,
                format!("mounts[{dest}].options"),
                dropped_atime.join(","),
                "the source mount's atime flags",
                "a bind mount keeps its source's atime flags: the kernel locks them in a user namespace (asking for others fails with EPERM)",
            );
        }
    }
    let size = format!("size={}", policy.filesystem.tmpfs_size);
    let inodes = format!(
        "nr_inodes={}",
        (parse_size(&policy.filesystem.tmpfs_size).unwrap_or(0) / TMPFS_BYTES_PER_INODE).max(1)
    );
    for path in &policy.filesystem.tmpfs {
        if mounts
            .iter()
            .any(|m| normalize(m.destination()) == normalize(Path::new(path)))
        {
            continue;
        }
        let mode = if path == "/tmp" {
            "mode=1777"
        } else {
            "mode=755"
        };
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(path));
        m.set_typ(Some("tmpfs".into()));
        m.set_source(Some(PathBuf::from("tmpfs")));
        m.set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            mode.into(),
            size.clone(),
            inodes.clone(),
        ]));
        report.change(
            Rule::Tmpfs,
            format!("mounts[{path}]"),
            "none",
            format!("tmpfs nosuid,nodev,{mode},{size},{inodes}"),
            "scratch space on a read-only root, size-limited",
        );
        let at = scratch_position(&mounts, Path::new(path));
        mounts.insert(at, m);
    }
    spec.set_mounts(Some(mounts));
}

/// Every mount option that sets atime behaviour, plain and recursive
/// (libcontainer's names).
const ATIME_OPTIONS: &[&str] = &[
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "ratime",
    "rnoatime",
    "rdiratime",
    "rnodiratime",
    "rrelatime",
    "rnorelatime",
    "rstrictatime",
    "rnostrictatime",
];

/// Removes a bind mount's atime options and returns them. The container's
/// mount namespace belongs to its user namespace, so the kernel locks the
/// atime flags of every mount it inherits (MNT_LOCK_ATIME) and of binds of
/// them: a remount asking for other atime flags fails with EPERM, one
/// asking for none keeps the source's. Fresh mounts (tmpfs, proc) are not
/// locked and keep theirs.
fn drop_atime_options(m: &mut Mount) -> Vec<String> {
    let mut opts = m.options().clone().unwrap_or_default();
    let dropped: Vec<String> = opts
        .iter()
        .filter(|o| ATIME_OPTIONS.contains(&o.as_str()))
        .cloned()
        .collect();
    if !dropped.is_empty() {
        opts.retain(|o| !ATIME_OPTIONS.contains(&o.as_str()));
        m.set_options(Some(opts));
    }
    dropped
}

/// Where a scratch tmpfs at `path` goes in the mount list: before the first
/// mount below it (a volume at /tmp/x must land on the tmpfs, not be hidden
/// by it: mounts are made in list order), else last.
fn scratch_position(mounts: &[Mount], path: &Path) -> usize {
    let path = normalize(path);
    mounts
        .iter()
        .position(|m| {
            let dest = normalize(m.destination());
            dest != path && dest.starts_with(&path)
        })
        .unwrap_or(mounts.len())
}

/// Bytes per inode a tmpfs may have at most: a page. Every non-empty file
/// takes at least a page of the size cap, so only empty files, directories
/// and symlinks could use more inodes than that, and each inode is kernel
/// memory the size cap does not count.
pub const TMPFS_BYTES_PER_INODE: u64 = 4096;

/// Gives a tmpfs mount nosuid (and nodev unless it is /dev), a size no
/// larger than `cap`, and no more inodes than pages of its size. A larger
/// size, none (half the host's memory), 0 (unlimited), a percentage, or
/// `nr_blocks=` is replaced by `size=<cap>`; a larger `nr_inodes`, none
/// (the kernel's default: half the host's pages, whatever the size), or 0
/// (unlimited: red-team R2, pass 4 F5) by `nr_inodes=<size / 4 KiB>`.
fn cap_tmpfs(m: &mut Mount, cap_text: &str, dev: bool) -> bool {
    let cap = parse_size(cap_text).unwrap_or(0);
    let opts = m.options().clone().unwrap_or_default();
    let sizes: Vec<&String> = opts.iter().filter(|x| x.starts_with("size=")).collect();
    let within = !sizes.is_empty()
        && sizes
            .iter()
            .all(|x| parse_size(&x["size=".len()..]).is_some_and(|n| n <= cap));
    let mut remove: Vec<String> = vec!["suid".into()];
    if !dev {
        remove.push("dev".into());
    }
    remove.extend(
        opts.iter()
            .filter(|x| x.starts_with("nr_blocks=") || (!within && x.starts_with("size=")))
            .cloned(),
    );
    let size = format!("size={cap_text}");
    let mut add = vec!["nosuid"];
    if !dev {
        add.push("nodev");
    }
    if !within {
        add.push(size.as_str());
    }
    let size_bytes = if within {
        sizes
            .iter()
            .filter_map(|x| parse_size(&x["size=".len()..]))
            .next_back()
            .unwrap_or(cap)
    } else {
        cap
    };
    let inodes_cap = (size_bytes / TMPFS_BYTES_PER_INODE).max(1);
    let inodes: Vec<&String> = opts
        .iter()
        .filter(|x| x.starts_with("nr_inodes="))
        .collect();
    let inodes_within = !inodes.is_empty()
        && inodes
            .iter()
            .all(|x| parse_size(&x["nr_inodes=".len()..]).is_some_and(|n| n <= inodes_cap));
    let nr_inodes = format!("nr_inodes={inodes_cap}");
    if !inodes_within {
        remove.extend(inodes.iter().map(|x| x.to_string()));
        add.push(nr_inodes.as_str());
    }
    let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
    ensure_options(m, &add, &remove)
}

/// Gives a devpts mount a `max=` no larger than `cap` (policy
/// `filesystem.pty_max`): a larger, unparsable or missing `max=` is
/// replaced. The kernel's pty count is one pool for every devpts instance
/// but the host's (`kernel.pty.max - kernel.pty.reserve`, 3072 by
/// default), so without a per-instance bound one container holding every
/// pty made every other container's `/dev/ptmx` fail with ENOSPC
/// (red-team R8-2, threat T5).
fn cap_devpts(m: &mut Mount, cap: u32) -> bool {
    let opts = m.options().clone().unwrap_or_default();
    let maxes: Vec<&String> = opts.iter().filter(|o| o.starts_with("max=")).collect();
    let within = !maxes.is_empty()
        && maxes
            .iter()
            .all(|o| o["max=".len()..].parse::<u32>().is_ok_and(|n| n <= cap));
    if within {
        return false;
    }
    let remove: Vec<&str> = maxes.iter().map(|o| o.as_str()).collect();
    let max = format!("max={cap}");
    ensure_options(m, &[max.as_str()], &remove)
}

/// The size a hardened tmpfs mount holds at most (its last `size=`).
fn tmpfs_size(m: &Mount) -> u64 {
    m.options()
        .iter()
        .flatten()
        .filter_map(|o| o.strip_prefix("size="))
        .filter_map(parse_size)
        .next_back()
        .unwrap_or(u64::MAX)
}

/// Refuses a container whose tmpfs caps add up to more than the policy's
/// `filesystem.tmpfs_total` (threat T5: memory, not disk, is what a tmpfs
/// fills). Judged on the hardened spec, where every tmpfs has a cap, plus
/// every writable tmpfs its binds show (docker tmpfs volumes, an engine's
/// /dev/shm, an emptyDir `medium: Memory`: red-team R7-4), by the size the
/// kernel reports for it.
pub(super) fn refuse_tmpfs_total(
    spec: &Spec,
    policy: &Policy,
    facts: &super::HostFacts,
) -> Result<(), Refusal> {
    let limit = parse_size(&policy.filesystem.tmpfs_total).unwrap_or(0);
    let tmpfs: Vec<&Mount> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .collect();
    let mounted = tmpfs
        .iter()
        .fold(0u64, |sum, m| sum.saturating_add(tmpfs_size(m)));
    let bound = super::bind_sources::writable_tmpfs_sources(spec, facts);
    let bound_total = bound
        .iter()
        .fold(0u64, |sum, (_, size)| sum.saturating_add(*size));
    let total = mounted.saturating_add(bound_total);
    if total > limit {
        let binds = if bound.is_empty() {
            String::new()
        } else {
            format!(
                " and {} writable tmpfs bind sources of {} MiB ({})",
                bound.len(),
                bound_total >> 20,
                bound
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(Refusal::new(
            RefusalRule::TmpfsTotal,
            format!(
                "{} tmpfs mounts of {} MiB{binds}, {} MiB in all, above filesystem.tmpfs_total ({})",
                tmpfs.len(),
                mounted >> 20,
                total >> 20,
                policy.filesystem.tmpfs_total
            ),
            Some("filesystem.tmpfs_total"),
        ));
    }
    Ok(())
}

/// Refuses a mount option element that would reach the kernel as more
/// than the one option every check judged it as (threat T32): a `,` in
/// an element adds options (a second `lowerdir=/etc`, a `size=0` after
/// the capped one), and an overlay key moat does not know is passed to
/// overlayfs unjudged. Runs before the checks that read options.
pub(super) fn refuse_smuggled_mount_options(spec: &Spec) -> Result<(), Refusal> {
    for m in spec.mounts().iter().flatten() {
        let typ = m.typ().clone().unwrap_or_default();
        for opt in m.options().iter().flatten() {
            if let Some(why) = crate::path_syntax::smuggled_mount_option(&typ, opt) {
                return Err(Refusal::new(
                    RefusalRule::MountOptions,
                    format!(
                        "mounts[{}].options: {opt:?} {why}",
                        m.destination().display()
                    ),
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// Where each kernel filesystem may be mounted: elsewhere a second proc or
/// sysfs escapes the masked and read-only paths (threat T23).
pub const KERNEL_FILESYSTEMS: &[(&str, &str)] = &[
    ("proc", "/proc"),
    ("sysfs", "/sys"),
    ("cgroup", "/sys/fs/cgroup"),
    ("cgroup2", "/sys/fs/cgroup"),
    ("mqueue", "/dev/mqueue"),
    ("devpts", "/dev/pts"),
];

/// Refuses a kernel filesystem away from its canonical destination, and any
/// filesystem type other than those, tmpfs, overlay and bind mounts
/// (securityfs, debugfs, bpf, …: each reaches kernel state).
pub(super) fn refuse_misplaced_kernel_filesystems(spec: &Spec) -> Result<(), Refusal> {
    for m in spec.mounts().iter().flatten() {
        if is_bind(m) {
            continue;
        }
        let typ = m.typ().clone().unwrap_or_default();
        let dest = normalize(m.destination());
        if typ == "tmpfs" || typ == "overlay" {
            continue;
        }
        match KERNEL_FILESYSTEMS.iter().find(|(t, _)| *t == typ) {
            Some((_, canonical)) if dest == Path::new(canonical) => {}
            // cgroup v1 hierarchies and the hybrid unified one sit below
            // /sys/fs/cgroup; they are made read-only like it.
            Some((t, canonical)) if t.starts_with("cgroup") && dest.starts_with(canonical) => {}
            Some((_, canonical)) => {
                return Err(Refusal::new(
                    RefusalRule::KernelFilesystem,
                    format!(
                        "{typ} mounted at {}: only at {canonical}, where moat masks it",
                        m.destination().display()
                    ),
                    None,
                ))
            }
            None => {
                return Err(Refusal::new(
                    RefusalRule::KernelFilesystem,
                    format!(
                        "mount type {:?} at {} is not supported (bind, tmpfs, overlay, {} only)",
                        typ,
                        m.destination().display(),
                        KERNEL_FILESYSTEMS
                            .iter()
                            .map(|(t, _)| *t)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ))
            }
        }
    }
    Ok(())
}

pub(super) fn mask_paths(spec: &mut Spec, report: &mut Report) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    for (rule, list, current) in [
        (
            Rule::MaskedPaths,
            MASKED_PATHS,
            linux.masked_paths().clone(),
        ),
        (
            Rule::ReadonlyPaths,
            READONLY_PATHS,
            linux.readonly_paths().clone(),
        ),
    ] {
        let mut paths = current.unwrap_or_default();
        let added: Vec<&str> = list
            .iter()
            .filter(|p| !paths.iter().any(|x| x == *p))
            .copied()
            .collect();
        if !added.is_empty() {
            paths.extend(added.iter().map(|s| s.to_string()));
            report.change(
                rule,
                if rule == Rule::MaskedPaths {
                    "linux.maskedPaths"
                } else {
                    "linux.readonlyPaths"
                },
                "missing",
                format!("+{}", added.join(",")),
                if rule == Rule::MaskedPaths {
                    "these /proc and /sys files leak host state"
                } else {
                    "writes there would change the host kernel"
                },
            );
        }
        if rule == Rule::MaskedPaths {
            linux.set_masked_paths(Some(paths));
        } else {
            linux.set_readonly_paths(Some(paths));
        }
    }
    spec.set_linux(Some(linux));
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
