//! Gathers the [`HostFacts`] the pure hardening needs, and checks the
//! rootfs for hostile mount destinations. All I/O of `create` before the
//! first side effect happens here.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::harden::{is_bind, HostFacts, IdRange, MountedFs};
use crate::refusal::{Refusal, RefusalRule};

/// The host's own namespace file for a type (PID 1's).
fn host_ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "/proc/1/ns/mnt",
        LinuxNamespaceType::Cgroup => "/proc/1/ns/cgroup",
        LinuxNamespaceType::Uts => "/proc/1/ns/uts",
        LinuxNamespaceType::Ipc => "/proc/1/ns/ipc",
        LinuxNamespaceType::User => "/proc/1/ns/user",
        LinuxNamespaceType::Pid => "/proc/1/ns/pid",
        LinuxNamespaceType::Network => "/proc/1/ns/net",
        LinuxNamespaceType::Time => "/proc/1/ns/time",
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// moat's own namespace file for a type. moat runs in the host's
/// namespaces (engines and their shims do), and unlike PID 1's it is always
/// readable: some hosts deny even root access to /proc/1/ns.
fn own_ns_file(t: LinuxNamespaceType) -> String {
    host_ns_file(t).replace("/proc/1/", "/proc/self/")
}

/// Looks at the host for everything `harden` needs to decide. A namespace
/// path that cannot be examined is treated as the host's (fail closed).
#[allow(
    clippy::disallowed_methods,
    reason = "explain only: nothing is mounted from these names; create uses from_pinned (T29)"
)]
pub fn gather(spec: &Spec, rootfs: &Path, id_range: Option<IdRange>) -> HostFacts {
    let mut facts = HostFacts {
        id_range,
        image_passwd: read_image_passwd(rootfs),
        hook_executables: crate::hook_exe::gather(spec),
        cgroup_occupant: crate::cgroup_probe::occupant(spec),
        rootfs_real: rootfs_real_path(rootfs),
        oom_score_adj_floor: own_oom_score_adj(),
        rlimit_ceilings: own_rlimit_ceilings(),
        online_cpus: online_cpus(),
        ..Default::default()
    };
    if let Some(namespaces) = spec.linux().as_ref().and_then(|l| l.namespaces().clone()) {
        for ns in namespaces {
            if let Some(path) = ns.path() {
                let unreadable = fs::metadata(path).is_err();
                if unreadable
                    || same_file(path, Path::new(host_ns_file(ns.typ())))
                    || same_file(path, Path::new(&own_ns_file(ns.typ())))
                {
                    facts.host_namespace_paths.push(ns.typ());
                }
            }
        }
    }
    let mut resolved = HashMap::new();
    for m in spec.mounts().as_ref().into_iter().flatten() {
        if !is_bind(m) {
            continue;
        }
        if let Some(src) = m.source() {
            if let Ok(real) = fs::canonicalize(src) {
                resolved.insert(src.clone(), real);
            }
        }
    }
    facts.resolved_sources = resolved;
    let mounts = read_mounts();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for src in spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| is_bind(m))
        .filter_map(|m| m.source().clone())
    {
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(file) = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&src)
        else {
            continue;
        };
        let file = std::os::fd::OwnedFd::from(file);
        // The path of the file just opened, from its fd: a name resolved
        // again could be another file by now.
        let Ok(real) = crate::pinned::real_path(&file) else {
            continue;
        };
        let fd = std::os::fd::AsFd::as_fd(&file);
        // Where else the host shows it, as create learns from the pinned fd.
        if let Ok(view) = crate::pinned::mount_view(fd, &real, &mountinfo) {
            facts.source_aliases.insert(src.clone(), view.aliases);
            facts
                .source_partial_aliases
                .insert(src.clone(), view.partial);
            facts.source_submounts.insert(src.clone(), view.submounts);
            facts.source_mounted_at.insert(src.clone(), view.mounted_at);
        }
        let found = filesystems_of(fd, &real, &mounts);
        facts.source_filesystems.insert(src, found);
    }
    facts
}

/// One line of `/proc/self/mountinfo`, the parts [`filesystems_of`] needs.
struct MountLine {
    id: u64,
    mount_point: PathBuf,
    fs_type: String,
    super_options: String,
}

/// moat's mount table (the host's: moat runs in its mount namespace).
/// Unreadable: empty, and every source's type is then unknown (refused).
fn read_mounts() -> Vec<MountLine> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let mut f = head.split(' ');
            let id = f.next()?.parse().ok()?;
            let mount_point = PathBuf::from(crate::rootfs::unescape_mountinfo(f.nth(3)?));
            let mut t = tail.split(' ');
            let fs_type = crate::rootfs::unescape_mountinfo(t.next()?);
            let _source = t.next()?;
            let super_options = t.next().unwrap_or_default().to_string();
            Some(MountLine {
                id,
                mount_point,
                fs_type,
                super_options,
            })
        })
        .collect()
}

/// The mount id of an open fd (`mnt_id:` of `/proc/self/fdinfo/N`).
fn mount_id_of(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A super option's value (`size=65536k` → 64 MiB) from mountinfo.
fn super_option(options: &str, key: &str) -> Option<u64> {
    options
        .split(',')
        .filter_map(|o| o.strip_prefix(key))
        .filter_map(crate::policy::parse_size)
        .next_back()
        .filter(|n| *n > 0)
}

/// What a bind source is (T40): the filesystem of the fd's own mount, as
/// `fstatfs` and the mount's mountinfo line say, then every mount below
/// `real` (a recursive bind carries them), from mountinfo.
fn filesystems_of(
    fd: std::os::fd::BorrowedFd<'_>,
    real: &Path,
    mounts: &[MountLine],
) -> Vec<MountedFs> {
    use std::os::fd::AsRawFd;
    // SAFETY: statfs is plain data; fstatfs only writes into it, and `fd`
    // is an open descriptor (O_PATH descriptors are accepted).
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `st` outlives the call.
    let statted = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } == 0;
    let own = mount_id_of(fd).and_then(|id| mounts.iter().find(|m| m.id == id));
    let fs_type = match own {
        Some(m) if statted => m.fs_type.clone(),
        _ if statted => format!("unknown (f_type {:#x})", st.f_type),
        _ => "unknown (fstatfs failed)".to_string(),
    };
    let bsize = u64::try_from(st.f_bsize).unwrap_or(0);
    #[allow(clippy::unnecessary_cast, reason = "the field types differ per target")]
    let (blocks, files) = (st.f_blocks as u64, st.f_files as u64);
    let mut out = vec![MountedFs {
        mount_point: own.map_or_else(|| real.to_path_buf(), |m| m.mount_point.clone()),
        fs_type,
        size_bytes: (blocks > 0).then(|| blocks.saturating_mul(bsize)),
        inodes: (files > 0).then_some(files),
    }];
    out.extend(
        mounts
            .iter()
            .filter(|m| m.mount_point != real && m.mount_point.starts_with(real))
            .map(|m| MountedFs {
                mount_point: m.mount_point.clone(),
                fs_type: m.fs_type.clone(),
                size_bytes: super_option(&m.super_options, "size="),
                inodes: super_option(&m.super_options, "nr_inodes="),
            }),
    );
    out
}

/// The filesystems every pinned bind source shows ([`filesystems_of`] on
/// the fd moat mounts), for [`HostFacts::source_filesystems`].
pub fn pinned_source_filesystems(
    pinned: &crate::pinned::PinnedPaths,
) -> HashMap<PathBuf, Vec<MountedFs>> {
    // No bind source, nothing to judge: the mount table (whose read costs
    // grow with the host's mount count) is not read.
    if pinned.sources.is_empty() {
        return HashMap::new();
    }
    let mounts = read_mounts();
    pinned
        .sources
        .iter()
        .map(|(written, p)| (written.clone(), filesystems_of(p.fd(), &p.real, &mounts)))
        .collect()
}

/// The facts of a spec whose host paths `pinned` opened (what `create`
/// uses): the host namespaces and real source paths are those of the open
/// fds, so what harden judges is what moat later mounts and joins (T29).
/// [`gather`] looks the same things up by name, for `explain`, which
/// creates nothing.
pub fn from_pinned(
    spec: &Spec,
    pinned: &crate::pinned::PinnedPaths,
    rootfs: &Path,
    id_range: Option<IdRange>,
) -> HostFacts {
    HostFacts {
        id_range,
        image_passwd: read_image_passwd(rootfs),
        host_namespace_paths: pinned.host_namespace_types(),
        resolved_sources: pinned.resolved_sources(),
        source_aliases: pinned.source_aliases(),
        source_partial_aliases: pinned.source_partial_aliases(),
        source_submounts: pinned.source_submounts(),
        source_mounted_at: pinned.source_mounted_at(),
        source_filesystems: pinned_source_filesystems(pinned),
        container_id: None,
        pod_owner: None,
        hook_executables: crate::hook_exe::gather(spec),
        cgroup_occupant: crate::cgroup_probe::occupant(spec),
        rootfs_real: Some(rootfs.to_path_buf()),
        pod_user_namespace: None,
        own_user_namespace: None,
        oom_score_adj_floor: own_oom_score_adj(),
        rlimit_ceilings: own_rlimit_ceilings(),
        // Asked by create, which knows the bundle and the state root.
        rootfs_in_use: None,
        // Asked by create, which knows the bundle's real path and the id.
        engine_bundle: None,
        online_cpus: online_cpus(),
        // Asked by create, which knows the state root.
        state_root_tag: None,
    }
}

/// The host's online CPUs (`None` when the kernel does not say).
pub fn online_cpus() -> Option<u32> {
    // SAFETY: sysconf has no memory effects; -1 is its error.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|n| *n > 0)
}

/// moat's own `oom_score_adj`: the lowest value its container's init may
/// ask for (see `harden::process`).
/// moat's own hard limit of every rlimit type (those `getrlimit` answers),
/// for [`HostFacts::rlimit_ceilings`]: what the container's processes
/// inherit, and the most their user namespace lets them set.
pub fn own_rlimit_ceilings() -> Vec<(oci_spec::runtime::PosixRlimitType, u64)> {
    use oci_spec::runtime::PosixRlimitType as T;
    [
        (T::RlimitCpu, libc::RLIMIT_CPU),
        (T::RlimitFsize, libc::RLIMIT_FSIZE),
        (T::RlimitData, libc::RLIMIT_DATA),
        (T::RlimitStack, libc::RLIMIT_STACK),
        (T::RlimitCore, libc::RLIMIT_CORE),
        (T::RlimitRss, libc::RLIMIT_RSS),
        (T::RlimitNproc, libc::RLIMIT_NPROC),
        (T::RlimitNofile, libc::RLIMIT_NOFILE),
        (T::RlimitMemlock, libc::RLIMIT_MEMLOCK),
        (T::RlimitAs, libc::RLIMIT_AS),
        (T::RlimitLocks, libc::RLIMIT_LOCKS),
        (T::RlimitSigpending, libc::RLIMIT_SIGPENDING),
        (T::RlimitMsgqueue, libc::RLIMIT_MSGQUEUE),
        (T::RlimitNice, libc::RLIMIT_NICE),
        (T::RlimitRtprio, libc::RLIMIT_RTPRIO),
        (T::RlimitRttime, libc::RLIMIT_RTTIME),
    ]
    .into_iter()
    .filter_map(|(t, resource)| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        (unsafe { libc::getrlimit(resource, &mut lim) } == 0).then_some((t, lim.rlim_max))
    })
    .collect()
}

pub fn own_oom_score_adj() -> Option<i32> {
    fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Who else has `rootfs` (or a directory above or below it) as its root,
/// for [`HostFacts::rootfs_in_use`]: a live process (by `/proc/<pid>/root`)
/// or a moat container under `state_root` (by its bundle's `root.path`).
/// Only asked when `root.path` lies outside the bundle: a bundle's own
/// rootfs is the caller's (engines and tests run several containers from
/// one bundle). Costs one stat per process.
pub fn rootfs_users(
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    state_root: &Path,
) -> Option<String> {
    let written = spec.root().as_ref()?.path();
    if !written.is_absolute() || rootfs.starts_with(bundle) {
        return None;
    }
    let mut ours: Vec<((u64, u64), &Path)> = Vec::new();
    for dir in rootfs.ancestors().filter(|d| *d != Path::new("/")) {
        if let Ok(md) = fs::metadata(dir) {
            ours.push(((md.dev(), md.ino()), dir));
        }
    }
    let used = |md: &fs::Metadata, real: Option<&Path>| -> Option<String> {
        if let Some((_, dir)) = ours.iter().find(|(k, _)| *k == (md.dev(), md.ino())) {
            return Some(if *dir == rootfs {
                String::new()
            } else {
                format!(" ({} above it)", dir.display())
            });
        }
        let real = real.filter(|r| *r != Path::new("/") && r.starts_with(rootfs))?;
        Some(format!(" ({} below it)", real.display()))
    };
    let me = std::process::id().to_string();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let link = entry.path().join("root");
        let Ok(md) = fs::metadata(&link) else {
            continue;
        };
        let real = fs::read_link(&link).ok();
        if let Some(where_) = used(&md, real.as_deref()) {
            return Some(format!(
                "it is the root directory of live process {pid}{where_}"
            ));
        }
    }
    let private = crate::state::private_root(state_root);
    for entry in fs::read_dir(private).into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let Ok(Some(state)) = crate::state::MoatState::load(state_root, &id) else {
            continue;
        };
        let Some(other) = bundle_rootfs(&state.bundle) else {
            continue;
        };
        if let Ok(md) = fs::metadata(&other) {
            if let Some(where_) = used(&md, Some(&other)) {
                return Some(format!("it is the rootfs of moat container {id}{where_}"));
            }
        }
    }
    None
}

/// The rootfs a bundle's config.json names (relative to the bundle). The
/// bundle is another tenant's: its config.json is opened without blocking
/// or following a symlink, and read only when a regular file (1 MiB at most).
fn bundle_rootfs(bundle: &Path) -> Option<PathBuf> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(bundle.join("config.json"))
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(PASSWD_MAX).read_to_string(&mut text).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let root = Path::new(v.get("root")?.get("path")?.as_str()?);
    Some(bundle.join(root))
}

/// The real path of the rootfs directory: opened once (no magic links, no
/// blocking), then named by the kernel from the fd.
pub fn rootfs_real_path(rootfs: &Path) -> Option<PathBuf> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{FromRawFd, OwnedFd};

    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(nix::libc::AT_FDCWD, rootfs, how).ok()?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::pinned::real_path(&fd)
        .ok()
        .filter(|p| p.is_absolute())
}

/// The largest `/etc/passwd` moat reads from an image.
const PASSWD_MAX: u64 = 1 << 20;

/// Reads the image's `/etc/passwd` as host root without letting the image
/// steer the read: symlinks resolve inside the rootfs (`RESOLVE_IN_ROOT`),
/// magic links are refused, the open never blocks (a FIFO planted there
/// would hang `create`), only a regular file is read, and at most 1 MiB.
/// Anything else is `None`: HOME then defaults to "/".
pub fn read_image_passwd(rootfs: &Path) -> Option<String> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};

    let root = fs::File::open(rootfs).ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(std::os::fd::AsRawFd::as_raw_fd(&root), "etc/passwd", how).ok()?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let file = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(PASSWD_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Refuses mount destinations that traverse a symlink inside the rootfs
/// which climbs out of it (`mnt -> ../../../etc`). Such a link has no
/// legitimate use in an image and is the shape of CVE-2021-30465-style
/// attacks. Absolute symlinks are left alone: libcontainer resolves
/// destinations inside the rootfs, where they stay.
pub fn check_mount_destinations(spec: &Spec, rootfs: &Path) -> Result<(), Refusal> {
    for m in spec.mounts().as_ref().into_iter().flatten() {
        let dest = m.destination();
        let mut inside = PathBuf::new(); // path relative to rootfs
        let mut hops = 0;
        let mut queue: Vec<PathBuf> = dest
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(PathBuf::from(s)),
                Component::ParentDir => Some(PathBuf::from("..")),
                _ => None,
            })
            .rev()
            .collect();
        while let Some(part) = queue.pop() {
            if part.as_os_str() == ".." {
                if !inside.pop() {
                    return Err(escape(dest, "its path climbs above the container root"));
                }
                continue;
            }
            let candidate = inside.join(&part);
            let host = rootfs.join(&candidate);
            match fs::symlink_metadata(&host) {
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(escape(dest, "too many levels of symbolic links"));
                    }
                    let target = fs::read_link(&host).unwrap_or_default();
                    if target.is_absolute() {
                        // Resolved inside the rootfs, as the kernel would
                        // from within the container.
                        inside = PathBuf::new();
                    }
                    let mut depth = inside.components().count() as i64;
                    for c in target.components() {
                        match c {
                            Component::ParentDir => depth -= 1,
                            Component::Normal(_) => depth += 1,
                            _ => {}
                        }
                        if depth < 0 && !target.is_absolute() {
                            return Err(escape(
                                dest,
                                &format!(
                                    "{} is a symlink to {} which points outside the rootfs",
                                    Path::new("/").join(&candidate).display(),
                                    target.display()
                                ),
                            ));
                        }
                    }
                    let parts: Vec<PathBuf> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(s) => Some(PathBuf::from(s)),
                            Component::ParentDir => Some(PathBuf::from("..")),
                            _ => None,
                        })
                        .collect();
                    queue.extend(parts.into_iter().rev());
                }
                _ => inside = candidate,
            }
        }
    }
    Ok(())
}

fn escape(dest: &Path, why: &str) -> Refusal {
    Refusal::new(
        RefusalRule::SymlinkMountDestination,
        format!("mount destination {}: {why}", dest.display()),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Mount, Spec};
    use std::os::unix::fs::symlink;

    fn spec_with_dest(dest: &str) -> Spec {
        let mut spec = Spec::default();
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest));
        m.set_typ(Some("tmpfs".into()));
        spec.set_mounts(Some(vec![m]));
        spec
    }

    #[test]
    fn image_passwd_is_read_inside_the_rootfs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        assert_eq!(read_image_passwd(&root), None);
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(
            read_image_passwd(&root).as_deref(),
            Some("root:x:0:0::/root:/bin/sh\n")
        );

        // A symlink to an absolute path resolves inside the rootfs, never
        // to the host's file.
        let outside = tmp.path().join("host-passwd");
        fs::write(&outside, "host:x:0:0::/host-secret:/bin/sh\n").unwrap();
        fs::remove_file(root.join("etc/passwd")).unwrap();
        symlink(&outside, root.join("etc/passwd")).unwrap();
        assert_eq!(read_image_passwd(&root), None);
        fs::remove_file(root.join("etc/passwd")).unwrap();
        symlink("../../../../../../host-passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(read_image_passwd(&root), None);

        // A FIFO would block a plain open: refused at once instead.
        fs::remove_file(root.join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(&root.join("etc/passwd"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_image_passwd(&root), None);

        // A directory is not a passwd file.
        fs::remove_file(root.join("etc/passwd")).unwrap();
        fs::create_dir(root.join("etc/passwd")).unwrap();
        assert_eq!(read_image_passwd(&root), None);
    }

    #[test]
    fn climbing_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        fs::create_dir_all(root.join("var")).unwrap();
        symlink("../../../../etc", root.join("var/evil")).unwrap();
        let err = check_mount_destinations(&spec_with_dest("/var/evil/x"), &root).unwrap_err();
        assert_eq!(err.rule, "symlink-mount-destination");
        assert!(err.detail.contains("/var/evil"), "{err}");
    }

    #[test]
    fn absolute_and_inner_symlinks_are_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        fs::create_dir_all(root.join("run/secrets")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        symlink("/run", root.join("var/run")).unwrap();
        symlink("../run", root.join("var/run2")).unwrap();
        for d in ["/var/run/secrets", "/var/run2/secrets", "/tmp", "/dev/shm"] {
            check_mount_destinations(&spec_with_dest(d), &root).unwrap();
        }
    }

    #[test]
    fn dotdot_in_destination_is_refused_above_root() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check_mount_destinations(&spec_with_dest("/../../etc"), tmp.path()).is_err());
    }

    #[test]
    fn symlink_loop_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        symlink("b", tmp.path().join("a")).unwrap();
        symlink("a", tmp.path().join("b")).unwrap();
        assert!(check_mount_destinations(&spec_with_dest("/a/x"), tmp.path()).is_err());
    }
}
