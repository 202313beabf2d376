//! Stages bind-mount sources where the container can reach them, idmapped
//! when that is safe.
//!
//! libcontainer 0.7 performs bind mounts from inside the container's new
//! user namespace, where container root is an unprivileged host uid. Engines
//! keep per-container files in directories only host root may traverse
//! (docker's /var/lib/docker/containers is 0710), so those binds fail with
//! EACCES. moat, still host root, bind-mounts each source onto a staging
//! path in the container's private directory under
//! `crate::rootfs::MOUNT_BASE` and points the spec at it.
//!
//! Ownership (T19). A bind source is idmapped with the container's own
//! mapping, as the rootfs is (on-disk id N is container id N, and what
//! container root writes is uid 0 on disk), only when its real path is
//! engine-provisioned volume storage: under a pattern of policy
//! `volumes.idmap_under` (docker's volumes, kubelet's pod volumes, the
//! hosts/hostname/resolv.conf files engines make per container). Engines
//! make those for containers; host root does not use them. Every other
//! source (a host directory such as /srv/data, /root/x/.ssh, a test's /tmp
//! dir) stays unshifted: its files keep their host owners, host-root files
//! appear as `nobody` and cannot be written by container root, and nothing
//! the container creates there is owned by host root or setuid-root. (The
//! earlier rule, "idmap what host users cannot reach", let container root
//! write host root's own files under root-only directories: ssh keys,
//! engine state.) Idmapped volumes are mounted nosuid,nodev. A filesystem
//! that refuses idmapping (EINVAL) falls back to unshifted staging, and the
//! report says so. See docs/threat-model.md (T19, and T6 for nosuid,nodev)
//! and docs/compatibility.md.
//!
//! Staging mounts from the fds `crate::pinned` opened in precheck: the
//! path is resolved once, by host root, checked on the open fd, and the
//! mount made from that fd, so later symlink swaps of the source do not
//! redirect the mount (T29). The staging directories are private (T30).

use std::fs;
use std::path::{Path, PathBuf};

use std::os::fd::OwnedFd;

use nix::dir::Dir;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{Mount, Spec};

use crate::harden::{is_bind, IdRange};
use crate::path_syntax::{smuggled_mount_option, OVERLAY_FLAG_OPTIONS};
use crate::pinned::{PinnedPaths, OVERLAY_PATH_KEYS};
use crate::policy::VolumePolicy;
use crate::rootfs::{idmapped_bind_tree, mapping_userns, MOUNT_ATTR_NOSUID_NODEV};

#[derive(Debug, thiserror::Error)]
#[error("cannot stage bind mount source {source_path} for {destination}: {error}")]
pub struct StageError {
    source_path: PathBuf,
    destination: PathBuf,
    error: String,
}

/// The staging directory for a container's rootfs mount point `rootfs_mount`.
pub fn staging_dir(rootfs_mount: &Path) -> PathBuf {
    let mut s = rootfs_mount.as_os_str().to_owned();
    s.push(".mounts");
    PathBuf::from(s)
}

/// Staging directories live inside the container's private directory
/// under `rootfs::MOUNT_BASE` (see [`crate::rootfs::container_dir`]), which
/// only host root and the container's own root may traverse (T30). The
/// directories themselves are 0711: the container's root, which makes the
/// mounts from inside its user namespace, must traverse them.
fn mkdir_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .mode(0o711)
        .create(path)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o711))
}

/// How one bind source was staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagedAs {
    /// Idmapped with the container's mapping, nosuid,nodev.
    Idmapped,
    /// A plain bind: the source's host owners are kept.
    Unshifted { why: String },
    /// One of moat's own mounts (under `rootfs::MOUNT_BASE`), plain bind.
    Internal,
}

/// What [`stage_bind_mounts`] did, one entry per bind mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staged {
    pub mounts: Vec<(PathBuf, StagedAs)>,
    /// Host mounts made: one per distinct source, fewer than `mounts` when
    /// the spec binds one source at several destinations.
    pub host_mounts: usize,
}

impl Staged {
    pub fn len(&self) -> usize {
        self.mounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// Report lines: a summary, and one line per unshifted mount with why.
    pub fn notes(&self) -> Vec<String> {
        if self.mounts.is_empty() {
            return Vec::new();
        }
        let idmapped: Vec<String> = self
            .mounts
            .iter()
            .filter(|(_, s)| *s == StagedAs::Idmapped)
            .map(|(d, _)| d.display().to_string())
            .collect();
        let mut notes = vec![format!(
            "{} bind mount sources staged where the container's unprivileged root can reach them, as {} host mounts (one per distinct source); {} idmapped with the container's mapping (nosuid,nodev){}",
            self.mounts.len(),
            self.host_mounts,
            idmapped.len(),
            if idmapped.is_empty() {
                String::new()
            } else {
                format!(": {}", idmapped.join(", "))
            }
        )];
        for (dest, how) in &self.mounts {
            if let StagedAs::Unshifted { why } = how {
                notes.push(format!(
                    "bind mount {} not idmapped (host owners kept, host-root files appear as nobody): {why}",
                    dest.display()
                ));
            }
        }
        notes
    }
}

/// Bind-mounts every bind source of `spec` under `dir` and rewrites the
/// spec to use the staged paths. Each source is mounted from the fd
/// `pinned` opened in precheck (never by name again, T29); only moat's own
/// mounts (under `crate::rootfs::MOUNT_BASE`) are mounted by path. With
/// `range` (the container's id range), sources that are engine-provisioned
/// volume storage (`volumes`, policy `volumes.idmap_under`) are idmapped
/// with it (see the module documentation); every other source, and all of
/// them with `None`, is staged unshifted. Overlay mounts are made here too,
/// from the pinned layers, and handed to the container as a bind. On error,
/// what was staged stays mounted for [`unstage`] to remove.
pub fn stage_bind_mounts(
    spec: &mut Spec,
    dir: &Path,
    range: Option<IdRange>,
    pinned: &PinnedPaths,
    volumes: &VolumePolicy,
) -> Result<Staged, StageError> {
    let Some(mounts) = spec.mounts().clone() else {
        return Ok(Staged::default());
    };
    let mut staged = Staged::default();
    // One mapping user namespace for every mount, made on first use.
    let mut userns: Option<Result<OwnedFd, String>> = None;
    // Each distinct source is staged once: a spec naming one source at
    // several destinations gets one host mount (red-team pass 7, T36),
    // keyed by what the pinned fd is (device, inode, the mount it is on
    // as its real path shows it) and how it is bound (recursive or not);
    // how it is staged (idmapped or not) follows from those alone.
    let mut done: std::collections::HashMap<StageKey, (PathBuf, StagedAs)> =
        std::collections::HashMap::new();
    let mut out: Vec<Mount> = Vec::with_capacity(mounts.len());
    for (i, mut m) in mounts.into_iter().enumerate() {
        if m.typ().as_deref() == Some("overlay") && !is_bind(&m) {
            mkdir_private(dir).map_err(|e| overlay_err(&m, e.to_string()))?;
            let target = dir.join(format!("overlay-{i}"));
            stage_overlay(&mut m, &target, pinned)?;
            out.push(m);
            continue;
        }
        let Some(source) = m.source().clone().filter(|_| is_bind(&m)) else {
            out.push(m);
            continue;
        };
        let err = |error: String| StageError {
            source_path: source.clone(),
            destination: m.destination().clone(),
            error,
        };
        mkdir_private(dir).map_err(|e| err(e.to_string()))?;
        // moat's own read-only mounts (the sysfs of a joined network
        // namespace) are the only sources not pinned: moat made them.
        let internal = source.starts_with(crate::rootfs::MOUNT_BASE);
        let (handle, real, aliases, is_dir) = if internal {
            (source.clone(), source.clone(), Vec::new(), source.is_dir())
        } else {
            let p = pinned
                .source(&source)
                .ok_or_else(|| err("the source was not opened and checked in precheck".into()))?;
            (p.handle(), p.real.clone(), p.aliases.clone(), p.is_dir)
        };
        let recursive = m
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "rbind"));
        let key = if internal {
            None
        } else {
            pinned
                .source(&source)
                .and_then(|p| nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&p.fd())).ok())
                .map(|st| StageKey {
                    dev: st.st_dev,
                    ino: st.st_ino,
                    real: real.clone(),
                    recursive,
                })
        };
        if let Some((target, how)) = key.as_ref().and_then(|k| done.get(k)) {
            staged.mounts.push((m.destination().clone(), how.clone()));
            m.set_source(Some(target.clone()));
            out.push(m);
            continue;
        }
        // Volume storage only if every place the file is mounted is: a
        // volume that binds a host directory is that directory (T19).
        let not_storage = std::iter::once(&real)
            .chain(&aliases)
            .find(|p| !volumes.is_volume_storage(p));
        let target = dir.join(i.to_string());
        if is_dir {
            mkdir_private(&target).map_err(|e| err(e.to_string()))?;
        } else {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)
                .map_err(|e| err(e.to_string()))?;
        }
        let how = match range {
            _ if internal => StagedAs::Internal,
            None => StagedAs::Unshifted {
                why: "no id range".into(),
            },
            Some(_) if not_storage.is_some() => StagedAs::Unshifted {
                why: format!(
                    "{} is not engine-provisioned volume storage (policy volumes.idmap_under)",
                    not_storage.unwrap_or(&real).display()
                ),
            },
            Some(range) => try_idmapped(&handle, &real, &target, range, recursive, &mut userns)
                .unwrap_or_else(|why| StagedAs::Unshifted { why }),
        };
        if how != StagedAs::Idmapped {
            let mut flags = MsFlags::MS_BIND;
            if recursive {
                flags |= MsFlags::MS_REC;
            }
            mount(Some(&handle), &target, None::<&str>, flags, None::<&str>)
                .map_err(|e| err(e.to_string()))?;
        }
        // Private: the staged copy must not propagate mounts back to the
        // host's tree, nor receive new ones from it.
        let _ = mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        );
        if let Some(key) = key {
            done.insert(key, (target.clone(), how.clone()));
        }
        staged.host_mounts += 1;
        staged.mounts.push((m.destination().clone(), how));
        m.set_source(Some(target));
        out.push(m);
    }
    spec.set_mounts(Some(out));
    Ok(staged)
}

/// What makes two bind mounts one staged source ([`stage_bind_mounts`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StageKey {
    dev: u64,
    ino: u64,
    real: PathBuf,
    recursive: bool,
}

fn overlay_err(m: &Mount, error: String) -> StageError {
    StageError {
        source_path: PathBuf::from("overlay"),
        destination: m.destination().clone(),
        error,
    }
}

/// Mounts the overlay `m` describes at `target`, as host root, with every
/// layer given as the fd pinned in precheck (`/proc/self/fd/N`), and turns
/// `m` into a bind of it: libcontainer would resolve the layer paths again,
/// by name, from inside the container's user namespace.
fn stage_overlay(m: &mut Mount, target: &Path, pinned: &PinnedPaths) -> Result<(), StageError> {
    let opts = m.options().clone().unwrap_or_default();
    let mut data = Vec::new();
    let mut flags = Vec::new();
    for opt in &opts {
        // harden refused these already; the edge does not rely on it
        // (T32: the data string is what the kernel splits on ',').
        if let Some(why) = smuggled_mount_option("overlay", opt) {
            return Err(overlay_err(m, format!("option {opt:?} {why}")));
        }
        if OVERLAY_FLAG_OPTIONS.contains(&opt.as_str()) {
            flags.push(opt.clone());
            continue;
        }
        let Some(key) = OVERLAY_PATH_KEYS.iter().find(|k| opt.starts_with(**k)) else {
            data.push(opt.clone());
            continue;
        };
        let mut handles = Vec::new();
        for layer in opt[key.len()..].split(':').filter(|p| !p.is_empty()) {
            let p = pinned.source(Path::new(layer)).ok_or_else(|| {
                overlay_err(
                    m,
                    format!("layer {layer} was not opened and checked in precheck"),
                )
            })?;
            handles.push(p.handle().display().to_string());
        }
        data.push(format!("{key}{}", handles.join(":")));
    }
    mkdir_private(target).map_err(|e| overlay_err(m, e.to_string()))?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.join(",").as_str()),
    )
    .map_err(|e| overlay_err(m, format!("mount overlay: {e}")))?;
    let _ = mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    );
    let mut bind_opts: Vec<String> = vec!["rbind".into(), "nosuid".into(), "nodev".into()];
    bind_opts.extend(flags);
    m.set_typ(Some("bind".into()));
    m.set_source(Some(target.to_path_buf()));
    m.set_options(Some(bind_opts));
    Ok(())
}

/// Idmaps the pinned source (`handle`) onto `target`; the error says why it
/// stays unshifted.
fn try_idmapped(
    handle: &Path,
    real: &Path,
    target: &Path,
    range: IdRange,
    recursive: bool,
    userns: &mut Option<Result<OwnedFd, String>>,
) -> Result<StagedAs, String> {
    let ns = userns
        .get_or_insert_with(|| mapping_userns(range).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| format!("no mapping user namespace: {e}"))?;
    idmapped_bind_tree(handle, target, ns, recursive, MOUNT_ATTR_NOSUID_NODEV).map_err(|e| {
        tracing::warn!(source = %real.display(), error = %e, "bind source cannot be idmapped; staging it unshifted");
        format!("the filesystem refuses idmapping ({e})")
    })?;
    Ok(StagedAs::Idmapped)
}

/// The most entries (directories and symlinks) copied into one scratch
/// tmpfs, and how deep: an image's /run or /tmp skeleton is a handful.
const SKELETON_MAX_ENTRIES: usize = 1024;
const SKELETON_MAX_DEPTH: usize = 8;

/// Gives moat's own scratch tmpfs mounts (`filesystem.tmpfs`, /tmp and /run
/// by default) the image's directory skeleton at that path.
///
/// moat adds those tmpfs mounts to every container; an empty one would hide
/// what the image has there, and images do ship directories under /run
/// (postgres' /run/postgresql, owned by postgres, is where it puts its
/// socket and lock file; redis has /run/redis) which their non-root users
/// cannot recreate in a root-owned tmpfs. For each such mount whose image
/// directory is not empty, moat (host root) mounts the tmpfs itself under
/// `dir` (same size and mode, nosuid,nodev, owned by container root),
/// copies the image's directories and symlinks there with their owners and
/// modes (regular files are not copied: scratch space starts empty), and
/// hands the container a bind mount of it. Owners are copied as the
/// prepared (idmapped) rootfs shows them, which is already the container's
/// host range. Returns the destinations it populated.
pub fn stage_scratch_tmpfs(
    spec: &mut Spec,
    dir: &Path,
    scratch_paths: &[String],
    range: IdRange,
) -> Result<Vec<PathBuf>, StageError> {
    let Some(rootfs) = spec.root().as_ref().map(|r| r.path().clone()) else {
        return Ok(Vec::new());
    };
    let Some(mounts) = spec.mounts().clone() else {
        return Ok(Vec::new());
    };
    let mut populated = Vec::new();
    let mut out = Vec::with_capacity(mounts.len());
    for (i, mut m) in mounts.into_iter().enumerate() {
        let dest = m.destination().clone();
        let ours = m.typ().as_deref() == Some("tmpfs")
            && scratch_paths
                .iter()
                .any(|p| crate::harden::normalize(Path::new(p)) == crate::harden::normalize(&dest));
        let image_dir = rootfs.join(dest.strip_prefix("/").unwrap_or(&dest));
        // Only a real directory of the image with something in it, reached
        // without following any symlink (the image's symlinks point
        // wherever the image likes, and moat reads here as host root),
        // opened once and then walked by descriptor (T29): a name checked
        // and then read again could be swapped for a symlink in between.
        let image = ours.then(|| open_image_dir(&rootfs, &dest)).flatten();
        let Some(mut image) = image.filter(dir_has_entries) else {
            out.push(m);
            continue;
        };
        let err = |error: String| StageError {
            source_path: image_dir.clone(),
            destination: dest.clone(),
            error,
        };
        mkdir_private(dir).map_err(|e| err(e.to_string()))?;
        let target = dir.join(format!("tmpfs-{i}"));
        mkdir_private(&target).map_err(|e| err(e.to_string()))?;
        let opts = m.options().clone().unwrap_or_default();
        let mut data: Vec<String> = opts
            .iter()
            .filter(|o| {
                smuggled_mount_option("tmpfs", o).is_none()
                    && (o.starts_with("size=")
                        || o.starts_with("mode=")
                        || o.starts_with("nr_inodes="))
            })
            .cloned()
            .collect();
        data.push(format!("uid={}", range.host_id));
        data.push(format!("gid={}", range.host_id));
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.join(",").as_str()),
        )
        .map_err(|e| err(format!("mount tmpfs: {e}")))?;
        let mut budget = SKELETON_MAX_ENTRIES;
        copy_skeleton(&mut image, &target, SKELETON_MAX_DEPTH, &mut budget)
            .map_err(|e| err(format!("copy the image's directories: {e}")))?;
        let _ = mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        );
        let mut bind_opts: Vec<String> = vec!["rbind".into(), "nosuid".into(), "nodev".into()];
        bind_opts.extend(
            opts.iter()
                .filter(|o| matches!(o.as_str(), "ro" | "rw" | "noexec" | "exec"))
                .cloned(),
        );
        m.set_typ(Some("bind".into()));
        m.set_source(Some(target));
        m.set_options(Some(bind_opts));
        populated.push(dest);
        out.push(m);
    }
    spec.set_mounts(Some(out));
    Ok(populated)
}

/// Opens `dest` (an absolute container path, no `..`) of the image under
/// `rootfs` as a directory: resolved from one descriptor of the rootfs,
/// never above it, and following no symlink at any component (red-team
/// pass 5 G7: the check used to be by name, the read by name again).
fn open_image_dir(rootfs: &Path, dest: &Path) -> Option<Dir> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::AsRawFd;
    use std::path::Component;
    let rel = dest.strip_prefix("/").ok()?;
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let root = fs::File::open(rootfs).ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let fd = openat2(root.as_raw_fd(), rel, how).ok()?;
    Dir::from_fd(fd).ok()
}

/// The names in an open directory, without `.` and `..`.
fn dir_names(dir: &mut Dir) -> Vec<std::ffi::CString> {
    dir.iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| !matches!(n.to_bytes(), b"." | b".."))
        .collect()
}

fn dir_has_entries(dir: &Dir) -> bool {
    use std::os::fd::AsRawFd;
    // A second descriptor of the same directory: reading does not move
    // the first one's position.
    Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .is_ok_and(|mut d| !dir_names(&mut d).is_empty())
}

/// Copies the directories and symlinks under `from` (an open directory)
/// into `to` (an existing directory), with owners and modes; `to` itself
/// gets `from`'s mode. Every entry is reached from its parent's descriptor
/// without following a symlink, and a directory's owner and mode are read
/// from the descriptor that is then walked.
fn copy_skeleton(
    from: &mut Dir,
    to: &Path,
    depth: usize,
    budget: &mut usize,
) -> std::io::Result<()> {
    use nix::fcntl::{readlinkat, AtFlags, OFlag};
    use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let md = fstat(from.as_raw_fd())?;
    fs::set_permissions(to, fs::Permissions::from_mode(md.st_mode & 0o7777))?;
    if depth == 0 {
        return Ok(());
    }
    let fd = from.as_raw_fd();
    for name in dir_names(from) {
        if *budget == 0 {
            return Ok(());
        }
        let dst = to.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let st = fstatat(Some(fd), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        match SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) {
            SFlag::S_IFDIR => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let mut sub = Dir::openat(Some(fd), name.as_c_str(), flags, Mode::empty())?;
                let st = fstat(sub.as_raw_fd())?;
                *budget -= 1;
                fs::create_dir(&dst)?;
                std::os::unix::fs::lchown(&dst, Some(st.st_uid), Some(st.st_gid))?;
                copy_skeleton(&mut sub, &dst, depth - 1, budget)?;
                // chown clears setuid/setgid bits: set the mode after it.
                fs::set_permissions(&dst, fs::Permissions::from_mode(st.st_mode & 0o7777))?;
            }
            SFlag::S_IFLNK => {
                *budget -= 1;
                std::os::unix::fs::symlink(readlinkat(Some(fd), name.as_c_str())?, &dst)?;
                std::os::unix::fs::lchown(&dst, Some(st.st_uid), Some(st.st_gid))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Hands the container's stdio pipes and sockets (docker's and containerd's
/// shims pass pipes) to container root. They belong to host root, so a
/// workload that reopens its own stdout by path (/dev/stdout,
/// /proc/self/fd/1: the official nginx image logs through
/// /var/log/nginx/access.log -> /dev/stdout) got EACCES. Only pipes and
/// sockets owned by moat's own uid are changed; terminals, /dev/null and
/// files are left alone.
pub fn give_stdio_to_container(range: IdRange) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for fd in 0..=2 {
        let Ok(st) = nix::sys::stat::fstat(fd) else {
            continue;
        };
        let kind = st.st_mode & libc::S_IFMT;
        if (kind == libc::S_IFIFO || kind == libc::S_IFSOCK) && st.st_uid == me {
            // SAFETY: fchown on an open descriptor we were handed.
            let rc = unsafe { libc::fchown(fd, range.host_id, range.host_id) };
            if rc != 0 {
                tracing::warn!(fd, error = %std::io::Error::last_os_error(), "cannot hand a stdio pipe to container root");
            }
        }
    }
}

/// Removes every staged mount and the staging directory. Idempotent.
pub fn unstage(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        crate::rootfs::detach_mounts_at(&p, 8);
        let _ = fs::remove_dir(&p).or_else(|_| fs::remove_file(&p));
    }
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn only_engine_volume_storage_is_idmapped() {
        let v = VolumePolicy::default();
        for yes in [
            "/var/lib/docker/volumes/pgdata/_data",
            "/var/lib/docker/volumes/pgdata/_data/sub",
            "/var/lib/docker/containers/abc/hosts",
            "/var/lib/docker/containers/abc/resolv.conf",
            "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/cache",
            "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/hostname",
        ] {
            assert!(v.is_volume_storage(Path::new(yes)), "{yes}");
        }
        for no in [
            "/root/x/.ssh",
            "/var/lib/docker",
            "/var/lib/docker/volumes",
            // docker's volume database and a volume's own opts.json (its
            // mount options, which dockerd re-reads at start).
            "/var/lib/docker/volumes/metadata.db",
            "/var/lib/docker/volumes/pgdata",
            "/var/lib/docker/volumes/pgdata/opts.json",
            "/var/lib/docker/containers/abc",
            "/var/lib/docker/containers/abc/config.v2.json",
            "/var/lib/kubelet/pods/uid",
            "/tmp/x",
            "/srv/data",
        ] {
            assert!(!v.is_volume_storage(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn skeleton_copies_directories_and_symlinks_with_owners_not_files() {
        use std::os::unix::fs::PermissionsExt;
        // chown needs root; the test suite runs as root, skip otherwise.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let pg = src.path().join("postgresql");
        fs::create_dir(&pg).unwrap();
        std::os::unix::fs::chown(&pg, Some(102), Some(104)).unwrap();
        fs::set_permissions(&pg, fs::Permissions::from_mode(0o2777)).unwrap();
        fs::create_dir_all(src.path().join("lock/sub")).unwrap();
        fs::write(src.path().join("nginx.pid"), "1\n").unwrap();
        std::os::unix::fs::symlink("/run/lock", src.path().join("link")).unwrap();
        fs::set_permissions(src.path(), fs::Permissions::from_mode(0o755)).unwrap();

        let mut budget = SKELETON_MAX_ENTRIES;
        let mut from = open_image_dir(src.path(), Path::new("/")).unwrap();
        copy_skeleton(&mut from, dst.path(), SKELETON_MAX_DEPTH, &mut budget).unwrap();
        let md = fs::metadata(dst.path().join("postgresql")).unwrap();
        assert!(md.is_dir());
        assert_eq!((md.uid(), md.gid()), (102, 104));
        assert_eq!(md.mode() & 0o7777, 0o2777, "setgid survives the chown");
        assert!(dst.path().join("lock/sub").is_dir());
        assert_eq!(
            fs::read_link(dst.path().join("link")).unwrap(),
            PathBuf::from("/run/lock")
        );
        assert!(
            !dst.path().join("nginx.pid").exists(),
            "files are not copied"
        );
        assert_eq!(budget, SKELETON_MAX_ENTRIES - 4);

        // The budget caps how much an image can make moat copy.
        let dst2 = tempfile::tempdir().unwrap();
        let mut small = 1;
        let mut from = open_image_dir(src.path(), Path::new("/")).unwrap();
        copy_skeleton(&mut from, dst2.path(), SKELETON_MAX_DEPTH, &mut small).unwrap();
        assert_eq!(fs::read_dir(dst2.path()).unwrap().count(), 1);
    }

    #[test]
    fn image_symlinks_are_not_followed_to_the_host() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("run/postgresql")).unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("var")).unwrap();
        let opens = |dest: &str| open_image_dir(root.path(), Path::new(dest)).is_some();
        assert!(opens("/run"));
        assert!(opens("/run/postgresql"));
        assert!(!opens("/var/tmp"));
        assert!(!opens("/var"));
        assert!(!opens("/run/../var"));
        assert!(!opens("/run/../run"));
        assert!(!opens("/missing"));
        // A symlinked directory below is copied as the link, never walked.
        std::os::unix::fs::symlink("/etc", root.path().join("run/etc")).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let mut budget = SKELETON_MAX_ENTRIES;
        let mut run = open_image_dir(root.path(), Path::new("/run")).unwrap();
        assert!(dir_has_entries(&run));
        copy_skeleton(&mut run, dst.path(), SKELETON_MAX_DEPTH, &mut budget).unwrap();
        assert_eq!(
            fs::read_link(dst.path().join("etc")).unwrap(),
            PathBuf::from("/etc")
        );
        assert!(dst.path().join("postgresql").is_dir());
        let empty = tempfile::tempdir().unwrap();
        let d = open_image_dir(empty.path(), Path::new("/")).unwrap();
        assert!(!dir_has_entries(&d));
    }

    #[test]
    fn notes_name_idmapped_and_explain_unshifted_mounts() {
        let staged = Staged {
            mounts: vec![
                (PathBuf::from("/data"), StagedAs::Idmapped),
                (
                    PathBuf::from("/src"),
                    StagedAs::Unshifted {
                        why: "reachable by host users".into(),
                    },
                ),
            ],
            host_mounts: 2,
        };
        let notes = staged.notes();
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("2 bind mount sources"), "{notes:?}");
        assert!(notes[0].contains("1 idmapped"), "{notes:?}");
        assert!(notes[0].contains("/data"), "{notes:?}");
        assert!(notes[1].contains("/src not idmapped"), "{notes:?}");
        assert!(Staged::default().notes().is_empty());
    }
}
