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
