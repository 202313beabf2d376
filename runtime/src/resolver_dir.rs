//! The resolver's directory (`<root>/@moat/resolver`) opened once, and its
//! files created, read, renamed and removed relative to that descriptor
//! (red-team pass 7): never by a name resolved again, never through a
//! symbolic link at a file's name (`O_NOFOLLOW`), and a registration's
//! temporary file made fresh (`O_EXCL`). Each command opens the directory
//! once: one that the supervisor renamed away meanwhile (to remove it) is
//! seen as gone, not written into at its new place.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Largest file of the directory read here (a registration is a few
/// hundred bytes).
const MAX_READ: u64 = 1 << 20;

/// One directory, open.
#[derive(Debug)]
pub struct Dir(OwnedFd);

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Dir {
    /// Opens directory `path`, not following a link at its last name.
    pub fn open(path: &Path) -> std::io::Result<Dir> {
        let fd = openat(
            None,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir(owned(fd)))
    }

    /// The subdirectory `name`, not following a link.
    pub fn sub(&self, name: &str) -> std::io::Result<Dir> {
        let fd = openat(
            Some(self.0.as_raw_fd()),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir(owned(fd)))
    }

    fn open_file(&self, name: &str, flags: OFlag) -> std::io::Result<File> {
        let fd = openat(
            Some(self.0.as_raw_fd()),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        Ok(File::from(owned(fd)))
    }

    /// A lock file, made if missing (0600), opened for writing.
    pub fn lock_file(&self, name: &str) -> std::io::Result<File> {
        self.open_file(name, OFlag::O_WRONLY | OFlag::O_CREAT)
    }

    /// An existing file opened for writing (a lock), never made.
    pub fn existing(&self, name: &str) -> std::io::Result<File> {
        self.open_file(name, OFlag::O_WRONLY)
    }

    /// An existing file opened for reading.
    pub fn reader(&self, name: &str) -> std::io::Result<File> {
        self.open_file(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
    }

    /// The contents of regular file `name` (at most [`MAX_READ`] bytes).
    pub fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        let file = self.reader(name)?;
        let st = fstat(file.as_raw_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(std::io::Error::other(format!(
                "{name} is not a regular file"
            )));
        }
        let mut out = Vec::new();
        file.take(MAX_READ).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Writes `data` to a new file `name` (`O_EXCL`: never an existing one,
    /// never through a link).
    pub fn create_new(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = self.open_file(name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL)?;
        f.write_all(data)
    }

    /// Renames `from` to `to`, both in this directory.
    pub fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        let fd = self.0.as_raw_fd();
        renameat(Some(fd), from, Some(fd), to)?;
        Ok(())
    }

    /// Removes file `name` (a link is removed, not followed).
    pub fn unlink(&self, name: &str) -> std::io::Result<()> {
        unlinkat(Some(self.0.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }

    /// What `name` is, not following a link.
    pub fn stat(&self, name: &str) -> std::io::Result<FileStat> {
        Ok(fstatat(
            Some(self.0.as_raw_fd()),
            OsStr::new(name),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    /// Does this directory hold an entry not starting with `.`?
    pub fn has_visible_entry(&self) -> bool {
        let Ok(mut d) = nix::dir::Dir::openat(
            Some(self.0.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        let found = d
            .iter()
            .flatten()
            .any(|e| !e.file_name().to_bytes().starts_with(b"."));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files are made fresh, never through a link, and removed as links.
    #[test]
    fn files_are_made_and_removed_relative_to_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Dir::open(tmp.path()).unwrap();
        d.create_new(".a.tmp", b"x").unwrap();
        assert!(d.create_new(".a.tmp", b"y").is_err(), "O_EXCL");
        d.rename(".a.tmp", "a").unwrap();
        assert_eq!(d.read("a").unwrap(), b"x");
        assert!(d.has_visible_entry());
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "host").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join(".b.tmp")).unwrap();
        assert!(
            d.create_new(".b.tmp", b"z").is_err(),
            "a link is not written through"
        );
        assert!(d.read(".b.tmp").is_err(), "a link is not read through");
        assert!(d.lock_file(".b.tmp").is_err(), "a link is not opened");
        d.unlink(".b.tmp").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host");
        d.unlink("a").unwrap();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("link")).unwrap();
        assert!(
            Dir::open(&tmp.path().join("link")).is_err(),
            "no link at the name"
        );
        assert!(d.sub("link").is_err());
    }
}
