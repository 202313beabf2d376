//! The recorder: a small single-threaded process that holds the seccomp
//! notify fds of a learning container (its init's, from libcontainer via
//! the listener socket, and one per `moat exec`), records every notified
//! syscall, answers "continue" for the ones the container's normal filter
//! allows and EPERM for everything else, and keeps the learned profile on
//! disk up to date. It ends when every process under those filters is
//! gone (the notify fds hang up) or on SIGTERM/SIGINT.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use oci_spec::runtime::LinuxSeccomp;

use super::names::syscall_name;
use super::profile::{
    self, allowed_names, learned_profile, LearnRun, LearnedMeta, BOOTSTRAP_ALLOWED, EXEC_PATH,
    META_FORMAT, TIMING_DEPENDENT,
};
use crate::seccomp::ALWAYS_DENIED;

/// Where the profile goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Replace this file with this run's profile (`moat learn -o`).
    Replace(PathBuf),
    /// Merge this run into the file (annotation / `--learn-dir`), under a
    /// lock on its directory so concurrent containers do not lose runs.
    Accumulate(PathBuf),
}

impl Output {
    pub fn path(&self) -> &Path {
        match self {
            Output::Replace(p) | Output::Accumulate(p) => p,
        }
    }
}

/// Everything the recorder needs, fixed before it starts.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub container: String,
    /// The container's normal (hardened) filter, in OCI terms.
    pub base: LinuxSeccomp,
    pub output: Output,
}

struct Recorder {
    cfg: RecorderConfig,
    /// Names the base filter allows: the only ones ever continued.
    allowed: BTreeSet<String>,
    baseline: BTreeSet<String>,
    names: HashMap<(u32, i32), Option<String>>,
    observed: BTreeSet<String>,
    socket_families: BTreeSet<u64>,
    run: LearnRun,
}

/// `SECCOMP_IOCTL_NOTIF_RECV` / `_SEND` (libc's constants are typed for
/// its own ioctl wrapper; these are the same numbers).
const NOTIF_RECV: libc::Ioctl = libc::SECCOMP_IOCTL_NOTIF_RECV;
const NOTIF_SEND: libc::Ioctl = libc::SECCOMP_IOCTL_NOTIF_SEND;

enum Verdict {
    Continue,
    Deny,
}

impl Recorder {
    fn new(cfg: RecorderConfig) -> Self {
        let allowed = allowed_names(&cfg.base);
        let baseline: BTreeSet<String> = BOOTSTRAP_ALLOWED
            .iter()
            .chain(EXEC_PATH)
            .chain(TIMING_DEPENDENT)
            .filter(|n| allowed.contains(**n))
            .map(|n| n.to_string())
            .collect();
        let run = LearnRun {
            container: cfg.container.clone(),
            started: profile::now_rfc3339(),
            ..Default::default()
        };
        Recorder {
            cfg,
            allowed,
            baseline,
            names: HashMap::new(),
            observed: BTreeSet::new(),
            socket_families: BTreeSet::new(),
            run,
        }
    }

    fn name_of(&mut self, arch: u32, nr: i32) -> Option<String> {
        self.names
            .entry((arch, nr))
            .or_insert_with(|| syscall_name(arch, nr))
            .clone()
    }

    /// Decides one notified syscall; returns the verdict and whether the
    /// profile changed.
    fn decide(&mut self, arch: u32, nr: i32, arg0: u64) -> (Verdict, bool) {
        match self.name_of(arch, nr) {
            Some(name) if self.allowed.contains(&name) => {
                // socket's family is a register value: what the kernel
                // will act on, not memory the caller could change.
                let new_family = name == "socket" && self.socket_families.insert(arg0);
                let new = self.observed.insert(name);
                (Verdict::Continue, new || new_family)
            }
            Some(name) => {
                // Always-denied (the only other names the filter notifies).
                let count = self.run.denied_attempts.entry(name).or_insert(0);
                *count += 1;
                (Verdict::Deny, *count == 1)
            }
            None => {
                let new = self.run.unknown.insert(format!("{arch:#x}:{nr}"));
                (Verdict::Deny, new)
            }
        }
    }

    fn meta(&self) -> LearnedMeta {
        let mut run = self.run.clone();
        run.syscalls = self.observed.len();
        LearnedMeta {
            format: META_FORMAT,
            observed: self.observed.clone(),
            baseline: self.baseline.clone(),
            socket_families: self.socket_families.clone(),
            denied_attempts: self
                .run
                .denied_attempts
                .keys()
                .filter(|n| ALWAYS_DENIED.contains(&n.as_str()))
                .cloned()
                .collect(),
            runs: vec![run],
        }
    }

    /// Writes the profile as it stands (atomically: a reader sees the old
    /// or the new file, never half of one).
    fn write(&self) -> std::io::Result<()> {
        let used: BTreeSet<String> = self.observed.union(&self.baseline).cloned().collect();
        let mut prof = learned_profile(&self.cfg.base, &used, &self.socket_families);
        let mut meta = self.meta();
        let path = self.cfg.output.path();
        let dir = path.parent().unwrap_or(Path::new("/"));
        let _lock = match &self.cfg.output {
            Output::Replace(_) => None,
            Output::Accumulate(_) => {
                let lock = fs::File::open(dir)?;
                // SAFETY: flock on a descriptor we own; released on close.
                if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Ok(text) = fs::read_to_string(path) {
                    let origin = path.display().to_string();
                    if let Ok((theirs, their_meta)) = profile::parse(&text, &origin) {
                        if let Ok((merged, merged_meta, _)) = profile::merge(&[
                            (origin.clone(), theirs, their_meta),
                            ("this run".into(), prof.clone(), Some(meta.clone())),
                        ]) {
                            prof = merged;
                            meta = merged_meta;
                        }
                    }
                }
                Some(lock)
            }
        };
        let json = profile::to_json(&prof, &meta);
        let mut text = serde_json::to_vec_pretty(&json).map_err(std::io::Error::other)?;
        text.push(b'\n');
        // A fresh temp name, a link at `path` replaced (T35).
        crate::host_file::write_replacing(path, &text)
    }
}

/// Receives one notify fd from a connection (libcontainer's container
/// state, or moat exec's marker, as the data).
fn receive_fd(conn: BorrowedFd) -> Option<OwnedFd> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut first = None;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed these descriptors for us.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if first.is_none() {
                    first = Some(owned);
                }
            }
        }
    }
    first
}

/// Serves one pending notification on `fd`. Returns false when the fd is
/// no longer usable.
fn serve(rec: &mut Recorder, fd: BorrowedFd) -> bool {
    // SAFETY: an all-zero seccomp_notif is valid (the kernel requires it).
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: fd is a seccomp listener; req is the struct the ioctl fills.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut req) };
    if rc != 0 {
        let err = nix::errno::Errno::last();
        // ENOENT: the caller was interrupted or died meanwhile.
        return matches!(err, nix::errno::Errno::ENOENT | nix::errno::Errno::EINTR);
    }
    // T39: from now on the recorder's work is charged to the container.
    super::cgroup_join::join_once(req.pid);
    let (verdict, changed) = rec.decide(req.data.arch, req.data.nr, req.data.args[0]);
    if changed {
        // On disk before the syscall goes on: once a workload has run, its
        // profile is complete, whatever happens to the recorder afterwards.
        let _ = rec.write();
    }
    let resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 0,
        error: match verdict {
            Verdict::Continue => 0,
            Verdict::Deny => -libc::EPERM,
        },
        flags: match verdict {
            Verdict::Continue => libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Verdict::Deny => 0,
        },
    };
    // SAFETY: as above; resp is the response struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &resp) };
    rc == 0 || nix::errno::Errno::last() == nix::errno::Errno::ENOENT
}

/// The recorder's main loop. `listener` accepts the notify fds. Returns
/// the exit code.
pub fn run(listener: UnixListener, cfg: RecorderConfig) -> i32 {
    let mut rec = Recorder::new(cfg);
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    if mask.thread_block().is_err() {
        return 1;
    }
    let Ok(sigfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    else {
        return 1;
    };
    if listener.set_nonblocking(true).is_err() {
        return 1;
    }
    let _ = rec.write();
    let mut conns: Vec<OwnedFd> = Vec::new();
    let mut notify: Vec<OwnedFd> = Vec::new();
    let mut complete = false;
    loop {
        let mut fds: Vec<PollFd> = Vec::with_capacity(2 + conns.len() + notify.len());
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
        for c in &conns {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        for n in &notify {
            fds.push(PollFd::new(n.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if !ready[1].is_empty() {
            break; // SIGTERM/SIGINT
        }
        // Notifications first: a blocked process is waiting on each.
        let base = 2 + conns.len();
        let mut gone = Vec::new();
        for (i, fd) in notify.iter().enumerate() {
            let r = ready[base + i];
            if r.contains(PollFlags::POLLIN) {
                if !serve(&mut rec, fd.as_fd()) {
                    gone.push(i);
                }
            } else if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                // Every process under this filter has exited.
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            notify.remove(i);
        }
        let mut done_conns = Vec::new();
        for (i, c) in conns.iter().enumerate() {
            if ready[2 + i].is_empty() {
                continue;
            }
            if let Some(fd) = receive_fd(c.as_fd()) {
                rec.run.process_trees += 1;
                notify.push(fd);
            }
            done_conns.push(i);
        }
        for i in done_conns.into_iter().rev() {
            conns.remove(i);
        }
        if ready[0].contains(PollFlags::POLLIN) {
            while let Ok((stream, _)) = listener.accept() {
                conns.push(OwnedFd::from(stream));
            }
        }
        if rec.run.process_trees > 0 && notify.is_empty() && conns.is_empty() {
            complete = true;
            break;
        }
    }
    rec.run.finished = Some(profile::now_rfc3339());
    rec.run.complete = complete;
    match rec.write() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
