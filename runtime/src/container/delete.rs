//! Deleting a container: libcontainer's part, then everything moat set up
//! for it ([`super::remove_moat_state`]).
//!
//! `--force` of a container that does not exist succeeds (containerd and
//! docker rely on that), and also sweeps what a moat killed mid-create left
//! behind: rootfs mounts, the id range and moat's private state. Deleting
//! a pod's owner deletes its members ([`crate::pod`]).

use crate::runc_contract::Op;
use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::{Container, ContainerStatus};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use super::{remove_moat_state, remove_moat_state_after, validate_id, ContainerPaths, Ctx};

/// `moat delete [--force] ID`.
pub fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<()> {
    validate_id(id)?;
    let root = ctx.root()?;
    let policy = ctx.policy_for_cleanup();
    let paths = ContainerPaths::new(&root, id);
    let (lc_dir, private) = (&paths.libcontainer_dir, &paths.private_dir);
    if force {
        // Before the sweep, which would kill the recorder unfinished.
        crate::learn::stop_recorder(private);
        super::sweep_create_leftovers(&root, id);
    }
    let lc_exists = lc_dir.exists();
    if !lc_exists && !private.exists() {
        if force {
            // Still sweep a range a crash may have left in the pool.
            remove_moat_state(&root, id, &policy)?;
            return Ok(());
        }
        bail!(crate::runc_contract::DOES_NOT_EXIST);
    }
    let mut lc_deleted = false;
    if lc_exists {
        match Container::load(lc_dir.clone()) {
            Ok(mut container) => {
                if !force {
                    crate::runc_contract::check(Op::Delete, id, container.status())
                        .map_err(anyhow::Error::msg)?;
                }
                // T39: the recorder sits in the container's cgroups; it
                // ends (profile written) before libcontainer removes them.
                crate::learn::stop_recorder(private);
                let first = delete_libcontainer_part(&mut container, force);
                if first.is_err() && force {
                    // A process may have entered the cgroup while it was
                    // being removed (an interrupted create): kill what is
                    // there and try once more.
                    super::sweep_create_leftovers(&root, id);
                    super::sweep_cgroup(private, id, ctx.systemd_cgroup);
                    if let Ok(mut again) = Container::load(lc_dir.clone()) {
                        again
                            .delete(true)
                            .map_err(|e| anyhow!("{e}"))
                            .with_context(|| format!("cannot delete container {id}"))?;
                    }
                } else {
                    first.with_context(|| format!("cannot delete container {id}"))?;
                    lc_deleted = true;
                }
            }
            Err(e) if force => {
                // A state file cut short by a crash: nothing to signal
                // through libcontainer, so remove its directory directly.
                tracing::warn!(id, error = %e, "container state unreadable; removing it");
                super::sweep_cgroup(private, id, ctx.systemd_cgroup);
                std::fs::remove_dir_all(lc_dir)
                    .with_context(|| format!("cannot remove {}", lc_dir.display()))?;
            }
            Err(e) => {
                return Err(anyhow!("{e}")).with_context(|| {
                    format!("cannot load container {id} (use --force to remove it)")
                })
            }
        }
    }
    crate::phase::done(crate::phase::LIBCONTAINER_DELETE);
    let torn_down = remove_moat_state_after(&root, id, &policy, lc_deleted);
    // Listed after the teardown, which took the range lock: a member whose
    // create recorded this owner meanwhile is listed too (its pod-owner
    // file is its own, not removed with the owner's state).
    let members = crate::pod::members(&root, id);
    // The pod's members do not outlive its owner: their processes were
    // killed and their id range freed above. An engine may never delete
    // them itself (containerd 2.1, when a pod's shim dies, deletes only
    // the sandbox's task and forgets its containers'), which would leave
    // their state and rootfs mounts behind; they are deleted here, and an
    // engine's own later delete finds "container does not exist", which
    // engines take as done.
    for member in members {
        if let Err(e) = delete(ctx, &member, true) {
            tracing::warn!(id, member, error = %format!("{e:#}"), "cannot delete a member of the pod");
        }
    }
    crate::phase::done(crate::phase::TEARDOWN);
    torn_down
}

/// The v1 controllers whose cgroup libcontainer's v1 manager makes and
/// removes (libcgroups 0.7's `CONTROLLERS`), each with the names a
/// mount point of its hierarchy may end in (libcgroups'
/// `get_subsystem_mount_point`: the first `cgroup` mount whose mount point
/// ends in one of them).
const V1_MOUNT_NAMES: &[&[&str]] = &[
    &["cpu,cpuacct", "cpu"],
    &["cpu,cpuacct", "cpuacct"],
    &["cpuset"],
    &["devices"],
    &["hugetlb"],
    &["memory"],
    &["pids"],
    &["perf_event"],
    &["blkio"],
    &["net_cls,net_prio", "net_prio,net_cls", "net_prio"],
    &["net_cls,net_prio", "net_prio,net_cls", "net_cls"],
    &["freezer"],
];

/// The mount points of the v1 hierarchies libcontainer's v1 manager uses,
/// found as it finds them, each once.
fn v1_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    let mounts: Vec<PathBuf> = crate::cgroup_join::parse_cgroup_mounts(mountinfo)
        .into_iter()
        .filter(|m| !m.v2)
        .map(|m| m.mount_point)
        .collect();
    let mut points: Vec<PathBuf> = Vec::new();
    for names in V1_MOUNT_NAMES {
        let found = mounts
            .iter()
            .find(|mp| names.iter().any(|n| mp.ends_with(n)));
        if let Some(mp) = found {
            if !points.contains(mp) {
                points.push(mp.clone());
            }
        }
    }
    points
}

/// `cgroup_path` (absolute in the hierarchy, as libcontainer saved it)
/// split into its parent, relative, and its last name; `None` when it has
/// anything but plain names (`..`, `.`), which moat's hardening never
/// lets through but which are then left to libcontainer.
fn split_cgroup_path(cgroup_path: &Path) -> Option<(PathBuf, CString)> {
    let mut names = Vec::new();
    for c in cgroup_path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => names.push(n),
            _ => return None,
        }
    }
    let leaf = names.pop()?;
    use std::os::unix::ffi::OsStrExt;
    let leaf = CString::new(leaf.as_bytes()).ok()?;
    Some((names.iter().collect(), leaf))
}

/// What removing the container's cgroup in one hierarchy came to.
#[derive(Debug, PartialEq, Eq)]
enum Removed {
    /// Removed, or there was none (never made, or already removed).
    Gone,
    /// Still there (processes left in it, or child cgroups): libcontainer's
    /// delete handles it as it always did (kills what is left, retries).
    Busy,
}

/// Removes the (empty) cgroup `leaf` of directory `parent` below the
/// hierarchy mounted at `mount_point`: the parent is opened beneath the
/// mount point, never through a link or onto another mount, and the
/// cgroup is removed by name in that directory, so nothing a tenant named
/// is resolved again.
fn remove_cgroup_dir(
    mount_point: &Path,
    parent: &Path,
    leaf: &CString,
) -> std::io::Result<Removed> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let how = |flags: OFlag, resolve: ResolveFlag| {
        OpenHow::new()
            .flags(flags | OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(resolve)
    };
    let hierarchy = match openat2(
        libc::AT_FDCWD,
        mount_point,
        how(OFlag::O_NOFOLLOW, ResolveFlag::RESOLVE_NO_MAGICLINKS),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(Removed::Gone),
        Err(e) => return Err(e.into()),
    };
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let hierarchy = unsafe { OwnedFd::from_raw_fd(hierarchy) };
    let dir = if parent.as_os_str().is_empty() {
        hierarchy
    } else {
        let fd = match openat2(
            hierarchy.as_raw_fd(),
            parent,
            how(
                OFlag::empty(),
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            ),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(Removed::Gone),
            Err(e) => return Err(e.into()),
        };
        // SAFETY: as above.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    // SAFETY: unlinkat on a directory descriptor we own with a
    // NUL-terminated single name; AT_REMOVEDIR removes only an empty
    // directory (a cgroup with processes or children stays: EBUSY).
    let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), leaf.as_ptr(), libc::AT_REMOVEDIR) };
    if rc == 0 {
        return Ok(Removed::Gone);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(Removed::Gone),
        Some(libc::EBUSY | libc::ENOTEMPTY) => Ok(Removed::Busy),
        _ => Err(e),
    }
}

/// libcontainer's part of a delete: the container's cgroups and
/// libcontainer's state directory. A stopped container's go the cheap way
/// ([`delete_stopped`]) when they can; everything else, and whatever that
/// leaves, goes through libcontainer's `delete` as it always did.
pub fn delete_libcontainer_part(container: &mut Container, force: bool) -> Result<()> {
    // The init may have ended since the container was loaded (`run`
    // waited for it).
    container.refresh_status().map_err(|e| anyhow!("{e}"))?;
    if matches!(container.status(), ContainerStatus::Stopped) {
        match delete_stopped(container) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::debug!(
                id = container.id(),
                error = %format!("{e:#}"),
                "moat's own removal stopped; libcontainer's delete follows"
            ),
        }
    }
    container.delete(force).map_err(|e| anyhow!("{e}"))
}

/// libcontainer's delete of a stopped container, without building its
/// cgroup manager: libcgroups 0.7's v1 `Manager::new` looks up each of its
/// 12 controllers separately, each reading the mount table through a new
/// procfs handle (about 3.7 ms of a 5 ms delete on an idle machine).
/// moat removes the container's cgroups itself, when they are empty (the
/// init is dead), through descriptors of their parents
/// ([`remove_cgroup_dir`]), then libcontainer's state directory.
///
/// `Ok(false)`: nothing here can be done the cheap way and nothing but
/// empty cgroups was removed; the caller runs libcontainer's delete, which
/// does exactly what it always did (kills what is left in a cgroup,
/// retries, runs the poststop hooks). That is the case for a cgroup with
/// processes or children left (a pod sharing a PID namespace, a frozen
/// cgroup), poststop hooks, Intel RDT, and the unified hierarchy (whose
/// manager is cheap).
fn delete_stopped(container: &Container) -> Result<bool> {
    use libcgroups::common::CgroupSetup;
    let lc_dir = container.root.as_path();
    if !matches!(container.status(), ContainerStatus::Stopped)
        || container.intel_rdt_dir().is_some()
        || container.intel_rdt_monitoring_dir().is_some()
        || container.clean_up_intel_rdt_subdirectory() == Some(true)
    {
        return Ok(false);
    }
    let config = container.spec().map_err(|e| anyhow!("{e}"))?;
    if config
        .hooks
        .as_ref()
        .and_then(|h| h.poststop().as_ref())
        .is_some_and(|p| !p.is_empty())
    {
        return Ok(false);
    }
    let setup = libcgroups::common::get_cgroup_setup().map_err(|e| anyhow!("{e}"))?;
    if !matches!(setup, CgroupSetup::Legacy | CgroupSetup::Hybrid) {
        return Ok(false);
    }
    let Some((parent, leaf)) = split_cgroup_path(&config.cgroup_path) else {
        return Ok(false);
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    for mount_point in v1_mount_points(&mountinfo) {
        if remove_cgroup_dir(&mount_point, &parent, &leaf)? == Removed::Busy {
            return Ok(false);
        }
    }
    std::fs::remove_dir_all(lc_dir)
        .with_context(|| format!("cannot remove {}", lc_dir.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
";

    #[test]
    fn the_hierarchies_are_the_ones_libcgroups_v1_uses() {
        let points = v1_mount_points(HYBRID);
        let names: Vec<&str> = points.iter().map(|p| p.to_str().unwrap()).collect();
        // Neither name=systemd nor the unified hierarchy: libcgroups' v1
        // manager never makes a cgroup there; a shared mount once.
        assert_eq!(
            names,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/net_cls,net_prio",
                "/sys/fs/cgroup/freezer",
            ]
        );
    }

    #[test]
    fn a_cgroup_is_removed_only_empty_and_never_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let mp = tmp.path().join("memory");
        let leaf = CString::new("ab@c1").unwrap();
        std::fs::create_dir_all(mp.join("moat/ab@c1")).unwrap();
        // Not empty (a cgroup with processes or children): left to
        // libcontainer, nothing removed.
        std::fs::create_dir(mp.join("moat/ab@c1/child")).unwrap();
        assert_eq!(
            remove_cgroup_dir(&mp, Path::new("moat"), &leaf).unwrap(),
            Removed::Busy
        );
        assert!(mp.join("moat/ab@c1/child").is_dir());
        std::fs::remove_dir(mp.join("moat/ab@c1/child")).unwrap();
        assert_eq!(
            remove_cgroup_dir(&mp, Path::new("moat"), &leaf).unwrap(),
            Removed::Gone
        );
        assert!(!mp.join("moat/ab@c1").exists());
        // Already gone, or its parent never made: nothing to do.
        assert_eq!(
            remove_cgroup_dir(&mp, Path::new("moat"), &leaf).unwrap(),
            Removed::Gone
        );
        assert_eq!(
            remove_cgroup_dir(&mp, Path::new("absent"), &leaf).unwrap(),
            Removed::Gone
        );
        // A parent that is a link (to a directory holding a cgroup of that
        // name) is never followed.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("ab@c1")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, mp.join("link")).unwrap();
        assert!(remove_cgroup_dir(&mp, Path::new("link"), &leaf).is_err());
        assert!(elsewhere.join("ab@c1").is_dir());
    }

    #[test]
    fn only_plain_cgroup_paths_are_removed_by_moat() {
        let (parent, leaf) = split_cgroup_path(Path::new("/moat/ab@c1")).unwrap();
        assert_eq!(parent, Path::new("moat"));
        assert_eq!(leaf.to_str().unwrap(), "ab@c1");
        let (parent, _) = split_cgroup_path(Path::new("/top")).unwrap();
        assert_eq!(parent, Path::new(""));
        assert!(split_cgroup_path(Path::new("/moat/../x")).is_none());
        assert!(split_cgroup_path(Path::new("/")).is_none());
    }
}
