//! dockerd's `data-root` from `/etc/docker/daemon.json`, as one more docker
//! state root (T11/T19, engine roots): a host whose docker keeps its state
//! on another disk is protected and recognised there without the operator
//! repeating the path in `engines.docker_roots`. Only an addition (the
//! policy's roots and the defaults stay), and only from a file no tenant
//! can have written: reached from `/` through directories and links only
//! host root can change (`crate::host_file::open_directory`), opened
//! without following a link, a regular file of root's that neither group
//! nor others may write, at most [`MAX_BYTES`].

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode};

/// Where dockerd reads its configuration by default.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Larger is not a daemon.json moat reads.
pub const MAX_BYTES: u64 = 1 << 20;

/// The `data-root` a daemon.json text names, if it is a clean absolute
/// path (the pure part).
pub fn data_root_of(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let root = v.get("data-root")?.as_str()?.trim_end_matches('/');
    crate::policy::is_clean_absolute_path(root).then(|| root.to_string())
}

/// The `data-root` of the daemon.json at `path`, when it is host root's
/// alone (see the module documentation); `None` otherwise or when it names
/// none.
pub fn data_root(path: &Path) -> Option<PathBuf> {
    let dir = crate::host_file::open_directory(path.parent()?).ok()?;
    let dir_stat = fstat(dir.as_raw_fd()).ok()?;
    if dir_stat.st_uid != 0 || dir_stat.st_mode & 0o022 != 0 {
        return None;
    }
    let fd = openat(
        Some(dir.as_raw_fd()),
        path.file_name()?,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let st = fstat(file.as_raw_fd()).ok()?;
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    if !regular || st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return None;
    }
    let mut text = String::new();
    (&mut file).take(MAX_BYTES).read_to_string(&mut text).ok()?;
    data_root_of(&text).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clean_absolute_data_root_is_taken() {
        assert_eq!(
            data_root_of(r#"{"data-root": "/data/docker/"}"#).as_deref(),
            Some("/data/docker")
        );
        for bad in [
            r#"{"data-root": "data/docker"}"#,
            r#"{"data-root": "/data/../etc"}"#,
            r#"{"data-root": 7}"#,
            r#"{"runtimes": {}}"#,
            "not json",
        ] {
            assert_eq!(data_root_of(bad), None, "{bad}");
        }
    }

    /// A daemon.json others may write, or a link to one, is not read.
    #[test]
    fn a_file_others_could_write_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("daemon.json");
        std::fs::write(&file, r#"{"data-root": "/data/docker"}"#).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let as_root = nix::unistd::geteuid().is_root();
        assert_eq!(
            data_root(&file).is_some(),
            as_root,
            "a root-owned 0644 file in a 0755 directory is read (as root)"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(data_root(&file), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(data_root(&link), None);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(data_root(&file), None);
    }
}
