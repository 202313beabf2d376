//! Files moat writes as host root at paths its caller names (T35).
//!
//! `--pid-file`, `--log`, `moat learn -o`, `moat spec`: the path comes from
//! the engine or the operator, but the directory it names is often the
//! bundle, which the tenant may own. A plain `open(O_CREAT|O_TRUNC)` there
//! follows whatever symlink the tenant planted at the final name, so host
//! root writes a pid into `cgroup.procs` (the init leaves its cgroup) or
//! appends a log line that quotes tenant text to `/etc/ld.so.preload`.
//!
//! So the final name is never followed: whole files are written by opening
//! the parent directory once, creating a fresh temp name in it with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and renaming it onto the final name (a link
//! planted there is replaced, never written through); the log, appended to
//! by every command, is opened `O_NOFOLLOW` and must be a regular file with
//! one link.
//!
//! The directory part is walked one component at a time on descriptors
//! ([`open_directory`]), and a symbolic link on the way is followed only
//! where nothing but host root could have made it: in a directory owned by
//! root and writable by no one else, the link itself root's. A tenant who
//! owns the bundle could otherwise make `--pid-file <bundle>/run/pid` land
//! in `/etc` by making `run` a link; system links (`/var/run -> /run`)
//! still work.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

/// The directory `path` is in and its last component; `None` when `path`
/// names no file (empty, `/`, ending in `..`).
fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some((dir, name))
}

/// A temp name in the same directory no one else picks: a dot file (runc's
/// shape) with this process's pid and a per-process counter.
fn temp_name(name: &OsStr) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let mut t = b".".to_vec();
    // Long names: keep the temp name within NAME_MAX (255).
    t.extend_from_slice(&name.as_bytes()[..name.len().min(200)]);
    t.extend_from_slice(format!(".moat-{}-{n}-{nanos:x}", std::process::id()).as_bytes());
    t
}

/// Symbolic links [`open_directory`] follows before giving up (the
/// kernel's own limit).
const MAX_LINKS: usize = 40;

/// Opens directory `path` (`O_PATH`) walking it component by component
/// from `/` (or the working directory), never through a symbolic link
/// someone other than host root could have made: a link is followed only
/// when the directory holding it is root's and writable by no one else,
/// and the link is root's (T35). Anything else on the way is refused.
pub fn open_directory(path: &Path) -> std::io::Result<OwnedFd> {
    let mut links = 0;
    let start = if path.is_absolute() { "/" } else { "." };
    let start = open_path_dir(None, OsStr::new(start))?;
    walk(start, path, path, &mut links)
}

/// `name` below `dir` as an `O_PATH` directory descriptor, not following
/// a link at `name`.
fn open_path_dir(dir: Option<&OwnedFd>, name: &OsStr) -> nix::Result<OwnedFd> {
    let fd = openat(
        dir.map(AsRawFd::as_raw_fd),
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Walks `rest` from `dir`; `whole` is the caller's path, for errors.
fn walk(
    mut dir: OwnedFd,
    rest: &Path,
    whole: &Path,
    links: &mut usize,
) -> std::io::Result<OwnedFd> {
    use nix::sys::stat::{fstat, fstatat};
    use std::path::Component;
    let refused = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("refusing {}: {why}", whole.display()),
        )
    };
    for component in rest.components() {
        let name = match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                // `..` is where the directory is now: one others than root
                // can write, others can move (to another parent) between
                // two steps of this walk.
                let here = fstat(dir.as_raw_fd())?;
                if here.st_uid != 0 || here.st_mode & 0o022 != 0 {
                    return Err(refused(
                        "`..` after a directory others than root can write".into(),
                    ));
                }
                OsStr::new("..")
            }
            Component::Normal(name) => name,
        };
        match open_path_dir(Some(&dir), name) {
            Ok(next) => {
                dir = next;
                continue;
            }
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {}
            Err(e) => return Err(e.into()),
        }
        let link = fstatat(
            Some(dir.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if link.st_mode & libc::S_IFMT != libc::S_IFLNK {
            return Err(refused(format!(
                "{} is not a directory",
                name.to_string_lossy()
            )));
        }
        let holder = fstat(dir.as_raw_fd())?;
        if holder.st_uid != 0 || holder.st_mode & 0o022 != 0 || link.st_uid != 0 {
            return Err(refused(format!(
                "{} is a symbolic link in a directory others than root can write",
                name.to_string_lossy()
            )));
        }
        *links += 1;
        if *links > MAX_LINKS {
            return Err(refused("too many symbolic links".into()));
        }
        let target = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)?;
        let target = Path::new(&target);
        let from = if target.is_absolute() {
            open_path_dir(None, OsStr::new("/"))?
        } else {
            dir
        };
        dir = walk(from, target, whole, links)?;
    }
    Ok(dir)
}

/// Replaces `path` with a file holding `data` (mode 0644), atomically: a
/// reader sees the old or the new file. A symlink (or anything else) at
/// `path` is replaced, never followed. No fsync: see `rootfs::write_atomic`.
pub fn write_replacing(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let (dir, name) = split(path).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let dir = open_directory(dir)?;
    let tmp = temp_name(name);
    let tmp = OsStr::from_bytes(&tmp);
    let dirfd = Some(dir.as_raw_fd());
    let fd = openat(
        dirfd,
        tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let written = file
        .write_all(data)
        .and_then(|()| renameat(dirfd, tmp, dirfd, name).map_err(Into::into));
    if written.is_err() {
        let _ = unlinkat(dirfd, tmp, UnlinkatFlags::NoRemoveDir);
    }
    written
}

/// `refusing <what> <path>: <why>`, the one line of a host path moat will
/// not use.
fn refusal(what: &str, path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("refusing {what} {}: {why}", path.display()),
    )
}

/// Opens the final name of `path` with `flags` (which hold `O_NOFOLLOW`)
/// in its directory walked by [`open_directory`]; a link there (ELOOP) is
/// refused as `refusing <what> <path>: it is a symbolic link`.
fn open_final(path: &Path, what: &str, flags: OFlag, mode: Mode) -> std::io::Result<OwnedFd> {
    let (dir, name) = split(path).ok_or_else(|| refusal(what, path, "it names no file"))?;
    let dir = open_directory(dir)?;
    let fd = openat(Some(dir.as_raw_fd()), name, flags, mode).map_err(|e| match e {
        nix::errno::Errno::ELOOP => refusal(what, path, "it is a symbolic link"),
        e => e.into(),
    })?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A console socket named by the caller (`--console-socket` of create, run
/// and exec), opened `O_PATH` without following a link: its directory part
/// walked as [`open_directory`] does, its final name not a symbolic link,
/// and what is there a socket. moat connects as host root and hands the
/// container's pty master to whatever listens: by name, a link a tenant
/// planted in a directory it can write made moat connect to a root-only
/// socket (red-team R8-3, T35). Connect through [`ConsoleSocket::path`],
/// the descriptor's `/proc/self/fd/N` name, in this process.
pub struct ConsoleSocket(OwnedFd);

impl ConsoleSocket {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let refused = |why: &str| refusal("console socket", path, why);
        let fd = open_final(
            path,
            "console socket",
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFSOCK => Ok(Self(fd)),
            libc::S_IFLNK => Err(refused("it is a symbolic link")),
            _ => Err(refused("not a socket")),
        }
    }

    /// The name to connect to: this process's descriptor of the socket.
    pub fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }
}

/// Opens the log file for appending as host root: created 0644 if absent;
/// refused when it is a symlink (O_NOFOLLOW), not a regular file, or has
/// other hard links (a name for some other file).
pub fn open_log_append(path: &Path) -> std::io::Result<File> {
    let refused = |why: &str| refusal("log file", path, why);
    let fd = open_final(
        path,
        "log file",
        // O_NONBLOCK: a FIFO planted there must not hang moat (it fails
        // with ENXIO without a reader, or is refused below).
        OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_NOCTTY
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let file = File::from(fd);
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Err(refused("not a regular file"));
    }
    if md.nlink() > 1 {
        return Err(refused("it has other hard links"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn split_names_the_directory_and_file() {
        assert_eq!(
            split(Path::new("/a/b/pid")),
            Some((Path::new("/a/b"), OsStr::new("pid")))
        );
        assert_eq!(
            split(Path::new("pid")),
            Some((Path::new("."), OsStr::new("pid")))
        );
        assert_eq!(split(Path::new("/")), None);
        assert_eq!(split(Path::new("/a/..")), None);
        assert_eq!(split(Path::new("")), None);
    }

    #[test]
    fn temp_names_are_dot_files_and_differ() {
        let a = temp_name(OsStr::new("pid"));
        let b = temp_name(OsStr::new("pid"));
        assert!(a.starts_with(b".pid.moat-"));
        assert_ne!(a, b);
        assert!(temp_name(OsStr::new(&"x".repeat(255))).len() < 255);
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, "keep").unwrap();
        let link = tmp.path().join("pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_replacing(&link, b"42").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&link).unwrap(), "42");
        // Nothing else left in the directory.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_dangling_symlink_does_not_create_its_target() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("created-through-link");
        let link = tmp.path().join("pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_replacing(&link, b"7").unwrap();
        assert!(!target.exists());
        assert_eq!(fs::read_to_string(&link).unwrap(), "7");
    }

    #[test]
    fn a_directory_at_the_name_fails_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("pid")).unwrap();
        assert!(write_replacing(&tmp.path().join("pid"), b"1").is_err());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_log_refuses_links_and_appends_to_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, "").unwrap();
        let link = tmp.path().join("log.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_log_append(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let hard = tmp.path().join("hard");
        fs::hard_link(&target, &hard).unwrap();
        let e = open_log_append(&hard).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(fs::read(&target).unwrap(), b"");

        let log = tmp.path().join("fresh.json");
        open_log_append(&log).unwrap().write_all(b"a\n").unwrap();
        open_log_append(&log).unwrap().write_all(b"b\n").unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "a\nb\n");
    }

    #[test]
    fn the_log_refuses_a_fifo_without_hanging() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("log.json");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_log_append(&fifo).is_err());
    }

    #[test]
    fn a_link_in_a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // The bundle's owner (any user but root) may write the directory.
        fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let away = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(away.path(), tmp.path().join("run")).unwrap();
        let e = write_replacing(&tmp.path().join("run/pid"), b"1").unwrap_err();
        assert!(
            e.to_string()
                .contains("run is a symbolic link in a directory others"),
            "{e}"
        );
        let e = open_log_append(&tmp.path().join("run/log.json")).unwrap_err();
        assert!(
            e.to_string().contains("symbolic link in a directory"),
            "{e}"
        );
        assert_eq!(fs::read_dir(away.path()).unwrap().count(), 0);
        // A real directory there is fine, also reached through `..`.
        fs::create_dir(tmp.path().join("real")).unwrap();
        write_replacing(&tmp.path().join("real/../real/pid"), b"2").unwrap();
        assert_eq!(fs::read(tmp.path().join("real/pid")).unwrap(), b"2");
        // `..` out of a directory others can write (and so move) is not.
        fs::create_dir(tmp.path().join("open")).unwrap();
        fs::set_permissions(
            tmp.path().join("open"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let e = write_replacing(&tmp.path().join("open/../real/pid3"), b"3").unwrap_err();
        assert!(e.to_string().contains("`..` after a directory"), "{e}");
        assert!(!tmp.path().join("real/pid3").exists());
    }

    #[test]
    fn root_s_own_links_are_followed() {
        // Under a root-owned 0755 directory (not /tmp): made by root.
        let dir = tempfile::Builder::new()
            .prefix("moat-host-file-test.")
            .tempdir_in("/run")
            .unwrap();
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("rel")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("abs")).unwrap();
        write_replacing(&dir.path().join("rel/a"), b"a").unwrap();
        write_replacing(&dir.path().join("abs/b"), b"b").unwrap();
        assert_eq!(fs::read(dir.path().join("real/a")).unwrap(), b"a");
        assert_eq!(fs::read(dir.path().join("real/b")).unwrap(), b"b");
        // A loop ends.
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert!(write_replacing(&dir.path().join("loop/x"), b"x").is_err());
    }
}
