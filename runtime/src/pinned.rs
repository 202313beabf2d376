//! Host paths pinned by fd: what moat checks is what it mounts and joins.
//!
//! A tenant controls the names in config.json (bind sources, overlay
//! layers, namespace paths, the rootfs) and often the directories they
//! live in. A name checked in one step and used by name in a later one can
//! be swapped in between (a symlink flipped from a harmless directory to
//! /etc), and two steps that resolve a name differently (a relative source
//! against moat's cwd, then against the bundle) disagree outright.
//!
//! So every such path is opened exactly once, in `precheck`, before
//! anything is decided ([`pin`]):
//! - relative paths are relative to the bundle, always, and resolved with
//!   `openat2(bundle_fd, …, RESOLVE_BENEATH)`: a relative source that
//!   climbs out of the bundle (`hostetc -> /etc`) is refused;
//! - no path may go through a magic link (`/proc/self/root/…`);
//! - the checks (sensitive paths, volume storage, staging privacy) look at
//!   the real path of the open fd (`/proc/self/fd/N`), never at the name;
//! - staging mounts from the fd (`/proc/self/fd/N` as the source of
//!   `open_tree`/bind/overlay), so a later swap changes nothing;
//! - namespace files are opened once, their identity (device, inode)
//!   checked against the host's and against the namespaces that may be
//!   joined, and the same fd is handed to `setns` (see [`crate::nsjoin`]).
//!
//! [`PinnedPaths`] owns the fds from precheck until the container is handed
//! off, so the check and the use see the same object. Threat T29.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::harden::is_bind;
use crate::refusal::{Refusal, RefusalRule};

/// Refusals about a host path that escaped or is moat's own (T29).
pub const RULE_HOST_PATH: RefusalRule = RefusalRule::HostPathChanged;
/// Refusals about a namespace that may not be joined (T29, T11).
pub const RULE_NAMESPACE_PATH: RefusalRule = RefusalRule::NamespacePath;

/// Why a path could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("cannot open {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One host path, open (`O_PATH`) since precheck.
#[derive(Debug)]
pub struct PinnedPath {
    fd: OwnedFd,
    /// Where the fd really is, from `/proc/self/fd/N` at open time.
    pub real: PathBuf,
    /// Every other host path of the same file: the fd's mount may be a bind
    /// of another directory (a docker volume with `o=bind,device=/etc`
    /// shows `/etc` at `/var/lib/docker/volumes/v/_data`), or the same
    /// filesystem may be mounted elsewhere too (a disk mounted at a volume
    /// path that is also the host's `/`). See [`mount_aliases`]; filled by
    /// [`pin`] for mount sources, empty for the rootfs.
    pub aliases: Vec<PathBuf>,
    /// Those of `aliases` only a narrower mount shows
    /// ([`MountView::partial`]).
    pub partial_aliases: Vec<PathBuf>,
    /// The mount point of every host mount that shows the file (the fd's
    /// own first; see [`MountView::mounted_at`]). Filled by [`pin`] with
    /// `aliases`.
    pub mounted_at: Vec<PathBuf>,
    /// Host mounts below `real` ([`MountView::submounts`]).
    pub submounts: usize,
    pub is_dir: bool,
}

impl PinnedPath {
    /// A name for the pinned object that any path-taking syscall of this
    /// process resolves to the very same inode and mount.
    pub fn handle(&self) -> PathBuf {
        fd_path(self.fd.as_raw_fd())
    }

    /// The open fd itself, for syscalls that take one.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// One namespace file of the spec, open since precheck.
#[derive(Debug)]
pub struct PinnedNamespace {
    pub typ: LinuxNamespaceType,
    /// The path as the spec wrote it (for messages and the state).
    pub path: PathBuf,
    pub file: File,
    /// The host's own namespace of that type.
    pub is_host: bool,
    /// A network namespace an engine pinned (`namespaces.joinable_netns`)
    /// that is not a moat container's, joined by a container an engine
    /// made: the one case in which moat puts its egress table into a
    /// namespace holding processes it did not start (T10).
    pub engine_pin: bool,
}

/// Everything [`pin`] opened, owned until handoff.
#[derive(Debug, Default)]
pub struct PinnedPaths {
    /// Bind sources and overlay layers, keyed by the path as the spec
    /// wrote it.
    pub sources: HashMap<PathBuf, PinnedPath>,
    pub namespaces: Vec<PinnedNamespace>,
}

impl PinnedPaths {
    /// The pinned object for a path as the spec wrote it.
    pub fn source(&self, written: &Path) -> Option<&PinnedPath> {
        self.sources.get(written)
    }

    /// The real paths of every pinned source, for [`crate::harden::HostFacts`].
    pub fn resolved_sources(&self) -> HashMap<PathBuf, PathBuf> {
        self.sources
            .iter()
            .map(|(k, v)| (k.clone(), v.real.clone()))
            .collect()
    }

    /// The other host paths of every pinned source ([`PinnedPath::aliases`]).
    pub fn source_aliases(&self) -> HashMap<PathBuf, Vec<PathBuf>> {
        self.sources
            .iter()
            .map(|(k, v)| (k.clone(), v.aliases.clone()))
            .collect()
    }

    /// The aliases of every pinned source only a narrower mount shows
    /// ([`PinnedPath::partial_aliases`]).
    pub fn source_partial_aliases(&self) -> HashMap<PathBuf, Vec<PathBuf>> {
        self.sources
            .iter()
            .map(|(k, v)| (k.clone(), v.partial_aliases.clone()))
            .collect()
    }

    /// How many host mounts lie below every pinned source
    /// ([`PinnedPath::submounts`]).
    pub fn source_submounts(&self) -> HashMap<PathBuf, usize> {
        self.sources
            .iter()
            .map(|(k, v)| (k.clone(), v.submounts))
            .collect()
    }

    /// Where the host mounts the file of every pinned source
    /// ([`PinnedPath::mounted_at`]), for [`crate::harden::HostFacts`].
    pub fn source_mounted_at(&self) -> HashMap<PathBuf, Vec<PathBuf>> {
        self.sources
            .iter()
            .map(|(k, v)| (k.clone(), v.mounted_at.clone()))
            .collect()
    }

    /// Namespace types whose path is the host's own namespace.
    pub fn host_namespace_types(&self) -> Vec<LinuxNamespaceType> {
        self.namespaces
            .iter()
            .filter(|n| n.is_host)
            .map(|n| n.typ)
            .collect()
    }

    /// The pinned namespace file of a type, if the spec gave a path.
    pub fn namespace(&self, typ: LinuxNamespaceType) -> Option<&PinnedNamespace> {
        self.namespaces.iter().find(|n| n.typ == typ)
    }
}

fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

/// The real path of an open fd.
pub fn real_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    fs::read_link(fd_path(fd.as_raw_fd()))
}

fn open_how(flags: OFlag, resolve: ResolveFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve)
}

/// Opens the bundle directory (`O_PATH`, no magic links).
pub fn open_bundle(bundle: &Path) -> std::io::Result<OwnedFd> {
    let fd = openat2(
        libc::AT_FDCWD,
        bundle,
        open_how(
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            ResolveFlag::RESOLVE_NO_MAGICLINKS,
        ),
    )?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens one host path of the spec: relative to `bundle` (and beneath it)
/// when relative, never through a magic link.
pub fn pin_path(
    bundle: &OwnedFd,
    written: &Path,
    what: &'static str,
) -> Result<PinnedPath, PinError> {
    let (dirfd, resolve) = if written.is_relative() {
        (
            bundle.as_raw_fd(),
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )
    } else {
        (libc::AT_FDCWD, ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    let fd = match openat2(dirfd, written, open_how(OFlag::O_PATH, resolve)) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::EXDEV) if written.is_relative() => {
            return Err(PinError::Refused(Refusal::new(
                RULE_HOST_PATH,
                format!(
                    "{what} {} is relative to the bundle but resolves outside it",
                    written.display()
                ),
                None,
            )))
        }
        Err(nix::errno::Errno::ELOOP) => {
            return Err(PinError::Refused(Refusal::new(
                RULE_HOST_PATH,
                format!(
                    "{what} {} goes through a magic link or too many symlinks",
                    written.display()
                ),
                None,
            )))
        }
        Err(e) => {
            return Err(PinError::Open {
                what,
                path: written.to_path_buf(),
                source: e.into(),
            })
        }
    };
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let open_err = |source| PinError::Open {
        what,
        path: written.to_path_buf(),
        source,
    };
    let real = real_path(&fd).map_err(open_err)?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| open_err(e.into()))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if !real.is_absolute() {
        // An object outside this mount namespace's tree (another process's
        // root, a detached mount): nothing a container should get.
        return Err(PinError::Refused(Refusal::new(
            RULE_HOST_PATH,
            format!(
                "{what} {} is not reachable from the host's root ({})",
                written.display(),
                real.display()
            ),
            None,
        )));
    }
    Ok(PinnedPath {
        fd,
        real,
        aliases: Vec::new(),
        partial_aliases: Vec::new(),
        submounts: 0,
        mounted_at: Vec::new(),
        is_dir,
    })
}

/// One line of `/proc/self/mountinfo`: mount id, device, the path inside
/// the filesystem that is the mount's root, and the mount point.
struct MountEntry {
    id: u64,
    dev: String,
    root: PathBuf,
    mount_point: PathBuf,
}

fn mount_entries(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let id = f.next()?.parse().ok()?;
            let _parent = f.next()?;
            let dev = f.next()?.to_string();
            let root = PathBuf::from(crate::rootfs::unescape_mountinfo(f.next()?));
            let mount_point = PathBuf::from(crate::rootfs::unescape_mountinfo(f.next()?));
            Some(MountEntry {
                id,
                dev,
                root,
                mount_point,
            })
        })
        .collect()
}

/// The mount id of an open fd (`mnt_id:` of `/proc/self/fdinfo/N`).
fn fd_mount_id(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u64> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no mnt_id in fdinfo"))
}

/// Where the host shows the file an fd names, from mountinfo: every mount
/// of the fd's filesystem (same device) whose root contains the file, moat's
/// own staging mounts left out (copies moat made of a volume another
/// container shares, not where the file is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountView {
    /// Every host path, besides `real`, of the same file: the path inside
    /// the filesystem (the fd's mount root plus the rest of `real`) placed
    /// under each such mount. A sensitive alias makes the source sensitive,
    /// an alias in another tenant's storage makes it that tenant's, and
    /// only a source whose every alias is volume storage is idmapped (T11,
    /// T19, T29, red-team R7-2): what is judged is the file, not the name of
    /// the place it is mounted at.
    pub aliases: Vec<PathBuf>,
    /// The aliases that only a narrower mount shows: one whose root lies
    /// strictly below the root of the fd's own mount, so it shows a part of
    /// what the source's mount shows (a docker `local` volume
    /// `o=bind,device=/srv/a` is such a mount of `/srv/a` for a source
    /// `/srv/a/x` on the host's `/`). Such a place is where someone
    /// re-exposed part of the filesystem, not where the files live: a bind
    /// of the source's parent shows the same files with no alias at all,
    /// so it is no evidence of whose files they are, and counting it let
    /// the tenant who made the mount refuse every other tenant's binds
    /// below `<dir>` (review M3). The ownership rules (another tenant's,
    /// pod's, container's storage) skip these; the sensitive-path rule
    /// still judges them (no tenant mounts at a sensitive path).
    pub partial: Vec<PathBuf>,
    /// The mount point of each such mount, the fd's own first. When every
    /// one is a volume storage path, the filesystem (or the part of it
    /// holding the file) was mounted for a volume alone — a docker `local`
    /// volume of `type=ext4,device=<disk>`, a kubelet Secret's tmpfs — and
    /// no host path shows it for the path rules to judge (red-team R7-3).
    pub mounted_at: Vec<PathBuf>,
    /// How many host mounts lie below `real` (moat's staging left out): a
    /// recursive bind of the source carries each, and staging copies each
    /// into the host's mount namespace (review L4, T36 mounts).
    pub submounts: usize,
}

/// [`MountView`] of the file `fd` names (`real`: its real path), from the
/// text of `/proc/self/mountinfo`.
pub fn mount_view(
    fd: std::os::fd::BorrowedFd<'_>,
    real: &Path,
    mountinfo: &str,
) -> std::io::Result<MountView> {
    let id = fd_mount_id(fd)?;
    Ok(view_in(&mount_entries(mountinfo), id, real))
}

fn view_in(entries: &[MountEntry], id: u64, real: &Path) -> MountView {
    let Some(own) = entries.iter().find(|e| e.id == id) else {
        return MountView::default();
    };
    let Ok(rest) = real.strip_prefix(&own.mount_point) else {
        return MountView::default();
    };
    let inside = own.root.join(rest);
    let staged = |p: &Path| p.starts_with(crate::rootfs::MOUNT_BASE);
    let covering: Vec<(&MountEntry, PathBuf)> = std::iter::once(own)
        .chain(entries.iter().filter(|e| e.id != id))
        .filter(|e| e.dev == own.dev && !staged(&e.mount_point))
        .filter_map(|e| {
            let below = inside.strip_prefix(&e.root).ok()?;
            Some((e, e.mount_point.join(below)))
        })
        .collect();
    let mut aliases: Vec<PathBuf> = covering
        .iter()
        .map(|(_, p)| p.clone())
        .filter(|p| p != real)
        .collect();
    aliases.sort();
    aliases.dedup();
    // A place only a narrower mount shows (no mount at least as wide as the
    // fd's own shows it there).
    let wide = |e: &MountEntry| own.root.starts_with(&e.root);
    let partial: Vec<PathBuf> = aliases
        .iter()
        .filter(|a| !covering.iter().any(|(e, p)| p == *a && wide(e)))
        .cloned()
        .collect();
    let mut mounted_at: Vec<PathBuf> = Vec::new();
    for (e, _) in &covering {
        if !mounted_at.contains(&e.mount_point) {
            mounted_at.push(e.mount_point.clone());
        }
    }
    let submounts = entries
        .iter()
        .filter(|e| e.mount_point != real && e.mount_point.starts_with(real))
        .filter(|e| !staged(&e.mount_point))
        .count();
    MountView {
        aliases,
        partial,
        mounted_at,
        submounts,
    }
}

/// Is `real` inside moat's own state or staging trees, where other
/// containers' files live (staged volumes, netns pins, rootfs)? `roots` are
/// the state roots in use (`--root`); `/run/moat*` covers every sibling
/// (`/run/moat`, `/run/moat-rootfs`, …). Matched on real paths.
pub fn in_moat_private_tree(real: &Path, roots: &[PathBuf]) -> bool {
    use std::path::Component;
    let mut c = real.components();
    let under_run_moat = c.next() == Some(Component::RootDir)
        && c.next() == Some(Component::Normal("run".as_ref()))
        && c.next().is_some_and(|n| {
            n.as_os_str()
                .to_str()
                .is_some_and(|n| n.starts_with(MOAT_NAME_PREFIX))
        });
    under_run_moat || roots.iter().any(|r| real.starts_with(r))
}

pub use crate::path_syntax::{glob_match, overlay_option_paths, OVERLAY_PATH_KEYS};

/// Names under /run that belong to moat (`/run/moat*`).
const MOAT_NAME_PREFIX: &str = "moat";

/// Which namespaces a container may join by path (T10, joins). Identity-based:
/// the (device, inode) of the pinned namespace file must be one of these.
#[derive(Debug, Default, Clone)]
pub struct Joinable {
    /// Namespaces of the inits of containers moat runs under this root,
    /// by type.
    pub moat_containers: HashMap<String, BTreeSet<(u64, u64)>>,
    /// Network namespaces pinned where engines pin theirs (policy
    /// `namespaces.joinable_netns`).
    pub engine_netns: BTreeSet<(u64, u64)>,
    /// Whether the joining container's own bundle was made by an engine
    /// (`moat::engine_bundle::gather`): only such a container may join
    /// an engine's pin. A raw-config tenant naming `/run/docker/netns/<x>`
    /// would otherwise get any docker container's network namespace (its
    /// 127.0.0.1 services), whichever runtime runs it.
    pub joiner_engine_made: bool,
}

/// The name moat uses for a namespace type.
pub fn ns_kind(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The (device, inode) of every file matching one of `patterns` (a
/// directory, then a `*` pattern for the file name), as the engines pin
/// network namespaces (`/run/netns/cni-*`, `/run/docker/netns/*`).
pub fn engine_netns_pins(patterns: &[String]) -> BTreeSet<(u64, u64)> {
    let mut out = BTreeSet::new();
    for pattern in patterns {
        let p = Path::new(pattern);
        let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let file_name = e.file_name();
            let Some(n) = file_name.to_str() else {
                continue;
            };
            if !glob_match(name, n) {
                continue;
            }
            // stat, not lstat: the pin is an nsfs bind mount on a file.
            if let Ok(md) = fs::metadata(e.path()) {
                if is_nsfs(&md) {
                    out.insert((md.dev(), md.ino()));
                }
            }
        }
    }
    out
}

pub(crate) fn is_nsfs(md: &fs::Metadata) -> bool {
    // nsfs inodes live on the single nsfs superblock, whose device is the
    // same as that of moat's own namespace files.
    fs::metadata("/proc/self/ns/net").is_ok_and(|own| own.dev() == md.dev())
}

/// The namespaces held by the init processes of the containers moat runs
/// under `root`. Each init is proven to be that container's: its user
/// namespace maps container root onto the id range moat allocated to it
/// (ranges are exclusive), read through a pinned `/proc/<pid>` directory,
/// so a reused pid cannot pass.
pub fn moat_container_namespaces(
    root: &Path,
    join_any: bool,
) -> HashMap<String, BTreeSet<(u64, u64)>> {
    let mut out: HashMap<String, BTreeSet<(u64, u64)>> = HashMap::new();
    let Ok(entries) = fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if id == crate::state::PRIVATE_DIR {
            continue;
        }
        let Some(pid) = fs::read(e.path().join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("pid").and_then(|p| p.as_i64()))
        else {
            continue;
        };
        let Some(state) = crate::state::MoatState::load(root, &id).ok().flatten() else {
            continue;
        };
        if !(join_any || state.joinable) {
            continue;
        }
        let Some(range) = state.allocation.map(|a| a.range) else {
            continue;
        };
        let Ok(proc_dir) = open_bundle(Path::new(&format!("/proc/{pid}"))) else {
            continue;
        };
        let Ok(map) = read_at(&proc_dir, "uid_map") else {
            continue;
        };
        let first: Vec<u64> = map
            .split_whitespace()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect();
        if first != [0, u64::from(range.host_id), u64::from(range.size)] {
            continue;
        }
        for kind in ["net", "ipc", "uts", "pid", "cgroup", "mnt", "time"] {
            if let Ok(st) = nix::sys::stat::fstatat(
                Some(proc_dir.as_raw_fd()),
                format!("ns/{kind}").as_str(),
                nix::fcntl::AtFlags::empty(),
            ) {
                out.entry(kind.to_string())
                    .or_default()
                    .insert((st.st_dev, st.st_ino));
            }
        }
    }
    out
}

fn read_at(dir: &OwnedFd, name: &str) -> std::io::Result<String> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::read_to_string(f)
}

/// The host's own namespace files of a type: PID 1's and moat's (moat runs
/// in the host's namespaces; some hosts deny even root /proc/1/ns).
fn host_namespace_ids(kind: &str) -> Vec<(u64, u64)> {
    [
        format!("/proc/1/ns/{kind}"),
        format!("/proc/self/ns/{kind}"),
    ]
    .iter()
    .filter_map(|p| fs::metadata(p).ok())
    .map(|m| (m.dev(), m.ino()))
    .collect()
}

/// Opens and judges one namespace path of the spec. The host's own is
/// marked (harden decides with `refusals.allow_host_namespaces`); any other
/// must be in `joinable`, else it is refused here.
pub fn pin_namespace(
    typ: LinuxNamespaceType,
    path: &Path,
    joinable: &Joinable,
) -> Result<PinnedNamespace, PinError> {
    let kind = ns_kind(typ);
    let refuse = |why: String| {
        PinError::Refused(Refusal::new(
            RULE_NAMESPACE_PATH,
            format!("{kind} namespace path {}: {why}", path.display()),
            Some("namespaces.joinable_netns"),
        ))
    };
    if matches!(typ, LinuxNamespaceType::Mount | LinuxNamespaceType::Time) {
        // libcontainer would reopen these by name later; no engine asks
        // for them. A joined mount namespace is another container's files,
        // with this container's root set up (mounts, pivot_root) inside it
        // (T29): no policy key allows it.
        return Err(PinError::Refused(Refusal::new(
            RULE_NAMESPACE_PATH,
            format!(
                "{kind} namespace path {}: moat joins only network, ipc, uts, pid and cgroup namespaces by path; a joined mount namespace would show another container's files and set this container's root up inside it",
                path.display()
            ),
            None,
        )));
    }
    // Namespace files are magic links (/proc/<pid>/ns/net) or nsfs bind
    // mounts: followed once, here; the fd is the namespace from now on.
    let file = File::open(path).map_err(|e| {
        // What cannot be examined is treated as the host's (fail closed).
        PinError::Refused(Refusal::new(
            RefusalRule::HostNamespace,
            format!(
                "{kind} namespace path {} cannot be opened ({e}); treated as the host's",
                path.display()
            ),
            Some("refusals.allow_host_namespaces"),
        ))
    })?;
    let md = file
        .metadata()
        .map_err(|e| refuse(format!("cannot stat it ({e})")))?;
    if !is_nsfs(&md) {
        return Err(refuse("not a namespace file".into()));
    }
    // NS_GET_NSTYPE: the fd must be a namespace of the type the spec says.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl without argument on a descriptor we own.
    let nstype = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    let want = crate::nsjoin::clone_flag(typ).map(|f| f.bits());
    if nstype < 0 || want.is_some_and(|w| w != nstype) {
        return Err(refuse("not a namespace of that type".into()));
    }
    let id = (md.dev(), md.ino());
    let is_host = host_namespace_ids(kind).contains(&id);
    if !is_host {
        let of_moat = joinable
            .moat_containers
            .get(kind)
            .is_some_and(|s| s.contains(&id));
        let of_engine = typ == LinuxNamespaceType::Network && joinable.engine_netns.contains(&id);
        if !of_moat && !of_engine {
            return Err(refuse(
                "neither a namespace of a container moat runs nor one an engine pinned for a pod"
                    .into(),
            ));
        }
        if !of_moat && !joinable.joiner_engine_made {
            return Err(refuse(format!(
                "an engine's network namespace pin is joined only by a container the engine made (a bundle under containerd's {} directory), and this bundle is not one",
                crate::engine_bundle::TASK_DIR
            )));
        }
    }
    let engine_pin = !is_host
        && typ == LinuxNamespaceType::Network
        && joinable.joiner_engine_made
        && joinable.engine_netns.contains(&id);
    Ok(PinnedNamespace {
        typ,
        path: path.to_path_buf(),
        file,
        is_host,
        engine_pin,
    })
}

/// Opens every host path `spec` names, once: bind sources and overlay
/// layers (relative ones beneath `bundle`), and namespace paths (judged
/// against `joinable`, computed only when the spec has any). Refuses
/// sources inside moat's private trees (`state_roots` and `/run/moat*`).
pub fn pin(
    spec: &Spec,
    bundle: &OwnedFd,
    state_roots: &[PathBuf],
    joinable: impl FnOnce() -> Joinable,
) -> Result<PinnedPaths, PinError> {
    let mut pinned = PinnedPaths::default();
    for m in spec.mounts().as_ref().into_iter().flatten() {
        let (what, paths): (&'static str, Vec<PathBuf>) = if is_bind(m) {
            ("bind source", m.source().iter().cloned().collect())
        } else if m.typ().as_deref() == Some("overlay") {
            (
                "overlay layer",
                overlay_option_paths(&m.options().clone().unwrap_or_default()),
            )
        } else {
            continue;
        };
        for written in paths {
            if pinned.sources.contains_key(&written) {
                continue;
            }
            let p = pin_path(bundle, &written, what)?;
            if in_moat_private_tree(&p.real, state_roots) {
                return Err(PinError::Refused(Refusal::new(
                    RULE_HOST_PATH,
                    format!(
                        "{what} {} is {}, inside moat's own state and staging: other containers' files live there",
                        written.display(),
                        p.real.display()
                    ),
                    None,
                )));
            }
            pinned.sources.insert(written, p);
        }
    }
    // One read of the mount table for every source (create's hot path),
    // after all of them are open: an alias judged is one that exists while
    // the fds are held.
    if !pinned.sources.is_empty() {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(|source| PinError::Open {
                what: "mount table",
                path: PathBuf::from("/proc/self/mountinfo"),
                source,
            })?;
        for (written, p) in pinned.sources.iter_mut() {
            use std::os::fd::AsFd;
            let view =
                mount_view(p.fd.as_fd(), &p.real, &mountinfo).map_err(|source| PinError::Open {
                    what: "bind source",
                    path: written.clone(),
                    source,
                })?;
            p.aliases = view.aliases;
            p.partial_aliases = view.partial;
            p.submounts = view.submounts;
            p.mounted_at = view.mounted_at;
        }
    }
    let namespaces: Vec<_> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.path().clone().map(|p| (n.typ(), p)))
        .collect();
    if !namespaces.is_empty() {
        let joinable = joinable();
        for (typ, path) in namespaces {
            if typ == LinuxNamespaceType::User {
                // harden refuses it with its own rule; nothing to open.
                continue;
            }
            pinned
                .namespaces
                .push(pin_namespace(typ, &path, &joinable)?);
        }
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bind_mount_is_judged_by_the_directory_it_shows() {
        let text = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 0:50 / /var/lib/docker/volumes/tmp/_data rw - tmpfs tmpfs rw
41 22 254:1 /etc /var/lib/docker/volumes/v/_data rw - ext4 /dev/vda1 rw
42 22 254:1 / /var/lib/docker/volumes/disk/_data rw - ext4 /dev/vda1 rw
43 22 254:1 /var/lib/docker/volumes/ok/_data /run/moat-rootfs/ab/rootfs.mounts/0 rw - ext4 /dev/vda1 rw
";
        let e = super::mount_entries(text);
        let p = |s: &str| std::path::PathBuf::from(s);
        let aliases_in =
            |e: &[super::MountEntry], id, real: &Path| super::view_in(e, id, real).aliases;
        // A volume that is a bind of /etc: its files are /etc's.
        assert_eq!(
            aliases_in(&e, 41, &p("/var/lib/docker/volumes/v/_data/sub")),
            [
                p("/etc/sub"),
                p("/var/lib/docker/volumes/disk/_data/etc/sub")
            ]
        );
        // The host's disk mounted again at a volume path is the host's /.
        assert!(aliases_in(&e, 42, &p("/var/lib/docker/volumes/disk/_data")).contains(&p("/")));
        // A plain volume directory on the root filesystem has no other name
        // but moat's own staging copies, which do not count.
        assert_eq!(
            aliases_in(&e, 22, &p("/var/lib/docker/volumes/ok/_data")),
            [p(
                "/var/lib/docker/volumes/disk/_data/var/lib/docker/volumes/ok/_data"
            )]
        );
        // A tmpfs volume is only itself.
        assert!(aliases_in(&e, 40, &p("/var/lib/docker/volumes/tmp/_data")).is_empty());
    }

    use super::*;
    use std::os::unix::fs::symlink;

    /// Red-team R7-3: where the host shows a source's file. A volume
    /// directory on the root filesystem is shown by `/` too; a block device
    /// mounted for a volume alone (nowhere else, or only a subdirectory of
    /// it elsewhere, as a btrfs host mounts `subvol=@`) only at the volume;
    /// two volumes of the same device only at volumes; moat's own staging
    /// copies never count.
    #[test]
    fn a_source_is_shown_where_a_mount_of_its_filesystem_covers_it() {
        let text = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 7:0 /sub /srv/hostview rw - ext4 /dev/loop0 rw
31 22 7:0 / /var/lib/docker/volumes/a/_data rw - ext4 /dev/loop0 rw
32 22 7:0 / /var/lib/docker/volumes/b/_data rw - ext4 /dev/loop0 rw
33 22 7:0 / /run/moat-rootfs/ab/rootfs.mounts/0 rw - ext4 /dev/loop0 rw
34 22 0:60 / /var/lib/docker/containers/v/mounts/shm rw - tmpfs shm rw
35 22 0:60 / /var/lib/docker/volumes/s/_data rw - tmpfs shm rw
";
        let e = mount_entries(text);
        let p = |s: &str| PathBuf::from(s);
        let plain = view_in(&e, 22, &p("/var/lib/docker/volumes/ok/_data"));
        assert_eq!(plain.mounted_at, [p("/")]);
        assert!(plain.aliases.is_empty());
        let whole = view_in(&e, 31, &p("/var/lib/docker/volumes/a/_data"));
        assert_eq!(
            whole.mounted_at,
            [
                p("/var/lib/docker/volumes/a/_data"),
                p("/var/lib/docker/volumes/b/_data")
            ]
        );
        assert_eq!(whole.aliases, [p("/var/lib/docker/volumes/b/_data")]);
        // Below the subdirectory the host mounts, the host shows it too.
        let sub = view_in(&e, 31, &p("/var/lib/docker/volumes/a/_data/sub/x"));
        assert!(sub.mounted_at.contains(&p("/srv/hostview")));
        assert!(sub.aliases.contains(&p("/srv/hostview/x")));
        // Another container's shm bound by a volume: its alias names it.
        let shm = view_in(&e, 35, &p("/var/lib/docker/volumes/s/_data"));
        assert_eq!(shm.aliases, [p("/var/lib/docker/containers/v/mounts/shm")]);
        assert!(shm.partial.is_empty());
        // The host's /srv/hostview shows only a part of the volume's disk.
        assert_eq!(sub.partial, [p("/srv/hostview/x")]);
    }

    /// Review M3: a docker `local` volume `o=bind,device=/srv/a` (a tenant's
    /// choice) is a narrower mount of the host's disk: for a source below
    /// `/srv/a` on `/` its place is a partial alias, while for a source
    /// whose own mount is that volume, `/` (wider) is a full one (R7-2).
    #[test]
    fn a_narrower_mount_is_a_partial_alias_only() {
        let text = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
50 22 254:1 /srv/a /var/lib/docker/volumes/va/_data rw - ext4 /dev/vda1 rw
51 22 254:1 /var/lib/kubelet/pods/u/volumes/d /var/lib/docker/volumes/vb/_data rw - ext4 /dev/vda1 rw
";
        let e = mount_entries(text);
        let p = |s: &str| PathBuf::from(s);
        let other = view_in(&e, 22, &p("/srv/a/b/x"));
        assert_eq!(other.aliases, [p("/var/lib/docker/volumes/va/_data/b/x")]);
        assert_eq!(other.partial, other.aliases);
        // An unrelated path is no alias at all.
        assert!(view_in(&e, 22, &p("/srv/c/x")).aliases.is_empty());
        // The R7-2 attack: the volume's own mount shows the pod's volume,
        // which `/` shows at its real place (wider: a full alias).
        let attack = view_in(&e, 51, &p("/var/lib/docker/volumes/vb/_data/f"));
        assert_eq!(attack.aliases, [p("/var/lib/kubelet/pods/u/volumes/d/f")]);
        assert!(attack.partial.is_empty());
        // Review L4: the mounts below a source (an rbind carries them).
        assert_eq!(view_in(&e, 22, &p("/var/lib/docker")).submounts, 2);
        assert_eq!(view_in(&e, 22, &p("/srv/a")).submounts, 0);
    }

    #[test]
    fn glob_matches_prefix_suffix_and_middle() {
        assert!(glob_match("cni-*", "cni-1234"));
        assert!(!glob_match("cni-*", "test-1234"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn moat_private_trees_include_every_run_moat_sibling() {
        let roots = [PathBuf::from("/var/run/docker/runtime-moat")];
        for p in [
            "/run/moat",
            "/run/moat/x",
            "/run/moat-rootfs",
            "/run/moat-rootfs/abc.mounts/0",
            "/run/moat-learn",
            "/var/run/docker/runtime-moat/moby/@moat/x",
        ] {
            assert!(in_moat_private_tree(Path::new(p), &roots), "{p}");
        }
        for p in [
            "/run",
            "/run/mo",
            "/srv/moat",
            "/var/run/docker/runtime-runc",
        ] {
            assert!(!in_moat_private_tree(Path::new(p), &roots), "{p}");
        }
    }

    #[test]
    fn overlay_paths_are_every_layer() {
        let opts = vec![
            "lowerdir=/a:/b".to_string(),
            "upperdir=/u".into(),
            "workdir=/w".into(),
            "ro".into(),
        ];
        assert_eq!(
            overlay_option_paths(&opts),
            ["/a", "/b", "/u", "/w"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "test fixture: the expected real path"
    )]
    fn relative_paths_stay_beneath_the_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("bundle");
        fs::create_dir_all(bundle.join("data/sub")).unwrap();
        symlink("/etc", bundle.join("hostetc")).unwrap();
        symlink("../../", bundle.join("up")).unwrap();
        symlink("data/sub", bundle.join("inner")).unwrap();
        let fd = open_bundle(&bundle).unwrap();
        let real_bundle = fs::canonicalize(&bundle).unwrap();

        let ok = pin_path(&fd, Path::new("inner"), "bind source").unwrap();
        assert_eq!(ok.real, real_bundle.join("data/sub"));
        assert!(ok.is_dir);
        // The handle names the pinned directory even after the link moves.
        fs::remove_file(bundle.join("inner")).unwrap();
        symlink("/etc", bundle.join("inner")).unwrap();
        assert_eq!(
            fs::read_link(ok.handle()).unwrap(),
            real_bundle.join("data/sub")
        );

        for escape in ["hostetc", "up", "../", "data/../../x"] {
            match pin_path(&fd, Path::new(escape), "bind source") {
                Err(PinError::Refused(r)) => assert_eq!(r.rule, RULE_HOST_PATH, "{escape}"),
                other => panic!("{escape}: {other:?}"),
            }
        }
    }

    #[test]
    fn absolute_paths_resolve_symlinks_but_no_magic_links() {
        let tmp = tempfile::tempdir().unwrap();
        symlink("/etc", tmp.path().join("to-etc")).unwrap();
        let fd = open_bundle(tmp.path()).unwrap();
        let p = pin_path(&fd, &tmp.path().join("to-etc"), "bind source").unwrap();
        assert_eq!(p.real, PathBuf::from("/etc"));
        assert!(matches!(
            pin_path(&fd, Path::new("/proc/self/root/etc"), "bind source"),
            Err(PinError::Refused(_))
        ));
    }

    /// An engine's network namespace pin is joined only by a container
    /// whose bundle an engine made; a raw bundle naming it is refused with
    /// one line (T10). The namespace here is a fresh one of a thread of the
    /// test, listed as an engine pin.
    #[test]
    fn an_engine_pin_is_joined_only_from_an_engine_made_bundle() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            tx.send(File::open("/proc/thread-self/ns/net").unwrap())
                .unwrap();
            let _ = done_rx.recv();
        });
        let ns = rx.recv().unwrap();
        let md = ns.metadata().unwrap();
        let path = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
        let mut joinable = Joinable {
            engine_netns: [(md.dev(), md.ino())].into(),
            ..Joinable::default()
        };
        let raw = pin_namespace(LinuxNamespaceType::Network, &path, &joinable);
        match raw {
            Err(PinError::Refused(r)) => {
                let line = r.to_string();
                assert!(!line.contains('\n'), "{line}");
                assert!(
                    line.contains("refused by moat rule namespace-path")
                        && line.contains("only by a container the engine made"),
                    "{line}"
                );
            }
            other => panic!("a raw bundle joined an engine pin: {other:?}"),
        }
        joinable.joiner_engine_made = true;
        let joined = pin_namespace(LinuxNamespaceType::Network, &path, &joinable).unwrap();
        assert!(joined.engine_pin && !joined.is_host);
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
