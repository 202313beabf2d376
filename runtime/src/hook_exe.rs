//! Host facts and run-time checks for OCI hooks (threat T21): which real
//! executable a hook path names, and which path moat's own binary has, so
//! that allowed hooks can run through `moat hook`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::harden::hooks::{hooks_of, HOOK_KINDS};

/// The real executable behind a hook path: symlinks and `/proc/<pid>/exe`
/// followed to a regular file. `None` when there is none (a pid that
/// exited, a deleted binary, a directory, a dangling link), or when the
/// name does not lead back to the same file: the link text of
/// `/proc/<pid>/exe` of a process in another mount namespace (a container
/// running its own `/usr/sbin/dockerd`) reads like a host path, so the
/// file the link opens and the file its text names must be one inode.
#[allow(
    clippy::disallowed_methods,
    reason = "a hook path is the engine's, judged by the (device, inode) the name and its resolution share; nothing is mounted from it"
)]
pub fn resolve(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let opened = fs::metadata(path).ok()?;
    let real = fs::canonicalize(path).ok()?;
    let named = fs::metadata(&real).ok()?;
    (named.is_file() && (opened.dev(), opened.ino()) == (named.dev(), named.ino())).then_some(real)
}

/// Every hook path of the spec, resolved on the host (see [`resolve`]).
pub fn gather(spec: &Spec) -> HashMap<PathBuf, Option<PathBuf>> {
    let mut out = HashMap::new();
    if let Some(hooks) = spec.hooks() {
        for kind in HOOK_KINDS {
            for hook in hooks_of(hooks, kind).into_iter().flatten() {
                out.entry(hook.path().clone())
                    .or_insert_with(|| resolve(hook.path()));
            }
        }
    }
    out
}

/// A path of the running moat binary that libcontainer can exec for a
/// wrapped hook. moat runs from a detached read-only mount of its binary
/// (self_exe.rs), which has no path, so this is the path it was started
/// by (`argv[0]`, chosen by the engine or operator, never by a tenant),
/// made absolute and real, and checked to be the same file (device and
/// inode) as the running binary.
#[allow(
    clippy::disallowed_methods,
    reason = "moat's own argv[0], checked to be the running binary by (device, inode)"
)]
pub fn moat_binary() -> io::Result<PathBuf> {
    let argv0 = std::env::args_os()
        .next()
        .ok_or_else(|| io::Error::other("moat has no argv[0]"))?;
    let argv0 = PathBuf::from(argv0);
    let found = if argv0.as_os_str().to_string_lossy().contains('/') {
        fs::canonicalize(&argv0)?
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(&argv0))
            .find(|p| p.is_file())
            .ok_or_else(|| io::Error::other(format!("{} is not in PATH", argv0.display())))
            .and_then(fs::canonicalize)?
    };
    let running = fs::metadata("/proc/self/exe")?;
    let named = fs::metadata(&found)?;
    if (running.dev(), running.ino()) != (named.dev(), named.ino()) {
        return Err(io::Error::other(format!(
            "{} is not the running moat binary (it was replaced, or moat runs from a sealed copy)",
            found.display()
        )));
    }
    Ok(found)
}

/// Rewrites the allowed hooks of a hardened spec to run through
/// `moat hook` (see `harden::hooks::wrap_allowed_hooks`), with moat's own
/// binary path and the real bundle. A spec without hooks is left alone.
pub fn wrap_hooks(
    spec: &mut Spec,
    bundle: &Path,
    resolved: &HashMap<PathBuf, Option<PathBuf>>,
) -> io::Result<()> {
    if spec.hooks().is_none() {
        return Ok(());
    }
    let moat = moat_binary()
        .map_err(|e| io::Error::other(format!("cannot find moat's binary for the hooks: {e}")))?;
    crate::harden::hooks::wrap_allowed_hooks(spec, &moat, bundle, resolved);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "test fixture: the expected real path"
    )]
    fn resolve_follows_links_to_a_regular_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let want = fs::canonicalize(&real).unwrap();
        assert_eq!(resolve(&link), Some(want.clone()));
        assert_eq!(resolve(&real), Some(want));
        assert_eq!(resolve(dir.path()), None, "a directory");
        assert_eq!(resolve(&dir.path().join("missing")), None);
        assert_eq!(resolve(Path::new("relative")), None);
        // This process's own executable, through /proc.
        let me = resolve(Path::new("/proc/self/exe"));
        assert!(me.is_some());
    }
}
