//! OOM events: the kernel's cgroup v1 memory.oom_control notification
//! (an eventfd registered in cgroup.event_control). One small thread per
//! container blocks on the eventfd; the kernel also signals it when the
//! cgroup is removed, which ends the thread.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

const MEMORY_V1: &str = "/sys/fs/cgroup/memory";
const WATCH_THREAD_STACK: usize = 64 * 1024;

/// The v1 memory cgroup directory of `pid`, from /proc/<pid>/cgroup.
/// Called right after `create`, while the container's init is still
/// parked before the workload runs, so the workload cannot have moved it.
fn memory_cgroup(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    })?;
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    let dir = PathBuf::from(MEMORY_V1).join(rel);
    dir.join("memory.oom_control").exists().then_some(dir)
}

/// Starts watching the memory cgroup of `pid`; `on_oom` runs for each OOM.
/// Returns Ok(false) when the container has no v1 memory cgroup.
pub fn watch(pid: u32, on_oom: impl Fn() + Send + 'static) -> io::Result<bool> {
    let Some(dir) = memory_cgroup(pid) else {
        return Ok(false);
    };
    // SAFETY: eventfd with constant flags; the fd is owned below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from eventfd.
    let event = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let oom_control = File::open(dir.join("memory.oom_control"))?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", event.as_raw_fd(), oom_control.as_raw_fd()),
    )?;
    std::thread::Builder::new()
        .name("oom".into())
        .stack_size(WATCH_THREAD_STACK)
        .spawn(move || {
            let _oom_control = oom_control;
            let mut event = event;
            let mut count = [0u8; 8];
            while event.read_exact(&mut count).is_ok() {
                if !dir.join("memory.oom_control").exists() {
                    break; // the cgroup was removed
                }
                on_oom();
            }
        })?;
    Ok(true)
}
