//! The resolver's log stays small (R6-4, T18): it lives on /run (RAM,
//! shared with containerd, dockerd and systemd), and tenants decide how
//! many lines it gets. Every per-query line is rate-limited per container
//! (`crate::resolver::LogLimit`); the file is rotated once it passes
//! [`LOG_MAX_BYTES`] to `log.1` (one old file kept, the older dropped), so
//! the two take at most twice that plus what is written between two
//! checks ([`CHECK_EVERY`]).

use std::fs::{self, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The log is rotated beyond this size.
pub const LOG_MAX_BYTES: u64 = 1 << 20;

/// How often the worker looks at its log's size.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The rotated log.
pub fn old_log_file(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Opens the log for appending (0600, never through a link).
pub fn open(log: &Path) -> std::io::Result<fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(log)
}

/// If the file on descriptor `fd` (the log: the process's stderr) is
/// larger than `max`, moves `log` to `log.1` and puts a new `log` on `fd`.
/// Returns whether it rotated.
pub fn rotate_if_larger(fd: RawFd, log: &Path, max: u64) -> std::io::Result<bool> {
    // SAFETY: a zeroed stat is a valid value to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into a valid struct.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if (st.st_mode & libc::S_IFMT) != libc::S_IFREG || (st.st_size as u64) <= max {
        return Ok(false);
    }
    // Only the file stderr is on: another process of the resolver may
    // have rotated it already (then stderr is on log.1 or a removed file).
    let current = fs::symlink_metadata(log);
    if current.is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino() == st.st_ino && m.dev() == st.st_dev
    }) {
        fs::rename(log, old_log_file(log))?;
    }
    let new = open(log)?;
    // SAFETY: dup2 of a descriptor we own onto `fd` (atomic: a writer
    // writes to the old file or to the new one).
    if unsafe { libc::dup2(new.as_raw_fd(), fd) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// Starts the thread that keeps the log bounded (the worker's).
pub fn keep_bounded(log: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("log-rotate".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            std::thread::sleep(CHECK_EVERY);
            if let Err(e) = rotate_if_larger(libc::STDERR_FILENO, &log, LOG_MAX_BYTES) {
                if e.kind() == std::io::ErrorKind::NotFound {
                    // The resolver's directory is gone: it is stopping.
                    return;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_log_past_its_bound_is_rotated_once_kept() {
        let dir = std::env::temp_dir().join(format!("moat-rlog-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let mut f = open(&log).unwrap();
        let fd = f.as_raw_fd();
        f.write_all(&[b'x'; 100]).unwrap();
        assert!(!rotate_if_larger(fd, &log, 1000).unwrap());
        f.write_all(&[b'y'; 1000]).unwrap();
        assert!(rotate_if_larger(fd, &log, 1000).unwrap());
        assert_eq!(fs::metadata(old_log_file(&log)).unwrap().len(), 1100);
        // What is written next goes to the new log.
        f.write_all(b"new\n").unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"new\n");
        // A second rotation replaces the old file: two files at most.
        f.write_all(&[b'z'; 2000]).unwrap();
        assert!(rotate_if_larger(fd, &log, 1000).unwrap());
        assert_eq!(fs::metadata(old_log_file(&log)).unwrap().len(), 2004);
        assert_eq!(fs::metadata(&log).unwrap().len(), 0);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        drop(f);
        fs::remove_dir_all(&dir).unwrap();
    }
}
