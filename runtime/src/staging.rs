//! Stages bind-mount sources where the container can reach them.
//!
//! libcontainer 0.7 performs bind mounts from inside the container's new
//! user namespace, where container root is an unprivileged host uid. Engines
//! keep per-container files in directories only host root may traverse
//! (docker's /var/lib/docker/containers is 0710), so those binds fail with
//! EACCES. moat, still host root, bind-mounts each source onto a staging
//! path under `crate::rootfs::MOUNT_BASE` (0711 directories) and points
//! the spec at it. The source's own permissions still apply; ownership is
//! not shifted (host-root files appear as `nobody`, read-only unless world
//! writable), so a container can never create host-root-owned files.
//!
//! Staging also pins the source: the path is resolved once, by host root,
//! before the container exists, so later symlink swaps of the source do not
//! redirect the mount.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};

use crate::harden::is_bind;
use crate::rootfs::is_mount_point;

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

fn mkdir_traversable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o711))
}

/// Bind-mounts every bind source of `spec` under `dir` and rewrites the
/// spec to use the staged paths. On error, what was staged stays mounted
/// for [`unstage`] to remove.
pub fn stage_bind_mounts(spec: &mut Spec, dir: &Path) -> Result<usize, StageError> {
    let Some(mounts) = spec.mounts().clone() else {
        return Ok(0);
    };
    let mut staged = 0;
    let mut out: Vec<Mount> = Vec::with_capacity(mounts.len());
    for (i, mut m) in mounts.into_iter().enumerate() {
        let Some(source) = m.source().clone().filter(|_| is_bind(&m)) else {
            out.push(m);
            continue;
        };
        let err = |error: String| StageError {
            source_path: source.clone(),
            destination: m.destination().clone(),
            error,
        };
        mkdir_traversable(dir).map_err(|e| err(e.to_string()))?;
        let meta = fs::metadata(&source).map_err(|e| err(e.to_string()))?;
        let target = dir.join(i.to_string());
        if meta.is_dir() {
            mkdir_traversable(&target).map_err(|e| err(e.to_string()))?;
        } else {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)
                .map_err(|e| err(e.to_string()))?;
        }
        let recursive = m
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "rbind"));
        let mut flags = MsFlags::MS_BIND;
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(Some(&source), &target, None::<&str>, flags, None::<&str>)
            .map_err(|e| err(e.to_string()))?;
        // Private: the staged copy must not propagate mounts back to the
        // host's tree, nor receive new ones from it.
        let _ = mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        );
        m.set_source(Some(target));
        staged += 1;
        out.push(m);
    }
    spec.set_mounts(Some(out));
    Ok(staged)
}

/// Removes every staged mount and the staging directory. Idempotent.
pub fn unstage(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        for _ in 0..8 {
            if !is_mount_point(&p) || umount2(&p, MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
        let _ = fs::remove_dir(&p).or_else(|_| fs::remove_file(&p));
    }
    let _ = fs::remove_dir(dir);
}
