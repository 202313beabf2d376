//! A process handle that cannot be confused with a later process of the
//! same pid (pidfd_open(2)).
//!
//! moat acts on processes it found by pid (a container's init, processes
//! still holding an id range): between finding the pid and acting on it the
//! process may exit and the pid be handed to an unrelated host process. A
//! pidfd opened first stays with the original process: signalling it after
//! the process is gone fails with ESRCH instead of reaching the newcomer, so
//! anything read through `/proc/<pid>` in between can be confirmed as the
//! original's by [`Pidfd::is_alive`] afterwards.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An open pidfd.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a pidfd for `pid`.
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or
        // -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd =
            libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: the kernel just returned this fd to us and nothing else
        // owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `signal` (0: only check) to the process this pidfd was opened
    /// for, never to a later process that reuses its pid.
    pub fn send_signal(&self, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: the fd is a pidfd this value owns; a null siginfo is
        // allowed and means a plain kill.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the process this pidfd was opened for still exists (and so
    /// still owns its pid).
    pub fn is_alive(&self) -> bool {
        self.send_signal(0).is_ok()
    }
}

/// When `pid` started (field 22 of `/proc/<pid>/stat`, clock ticks since
/// boot): with the pid, it names one process for the life of the host.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields after
    // the last ')' are fixed. starttime is field 22, the 20th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A pidfd for `pid` only if it is still the process that started at
/// `started`. The pidfd is opened first and the start time read after:
/// if that process is still alive once the time is read, the time was its
/// own, so a reuse of the pid at any point cannot pass.
pub fn open_if_started_at(pid: i32, started: u64) -> Option<Pidfd> {
    let fd = Pidfd::open(pid).ok()?;
    let now = start_time(pid)?;
    (fd.is_alive() && now == started).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_an_exited_child_is_not() {
        let me = Pidfd::open(std::process::id() as i32).expect("pidfd of self");
        assert!(me.is_alive());
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let fd = Pidfd::open(child.id() as i32).expect("pidfd of child");
        child.wait().expect("wait");
        assert!(!fd.is_alive(), "a reaped child must not look alive");
    }
}
