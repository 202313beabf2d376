//! The container's standard streams, the pty of terminal containers, and
//! the rootfs mount.
//!
//! Without a terminal, the FIFOs containerd created are opened here and
//! handed to moat, so the container writes straight into them: the shim
//! never reads, parses or copies workload output. The shim keeps a reader
//! open on stdout/stderr (so the workload never gets EPIPE while containerd
//! reattaches) and a writer on stdin (so the workload sees EOF only after
//! CloseIO).
//!
//! With a terminal, moat sends the pty master over a console socket and
//! two small threads copy bytes between it and the FIFOs, without looking
//! at them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::moat::{ChildStdio, Running};

/// Stack of the pty copy threads: one buffer and a few calls.
const COPY_THREAD_STACK: usize = 64 * 1024;

/// What the shim holds on a process's streams while it runs.
#[derive(Default)]
pub struct HeldIo {
    /// Our writer on the stdin FIFO: dropping it (CloseIO) lets the
    /// workload see EOF once containerd closed its end too.
    pub stdin_writer: Option<File>,
    /// Readers that keep stdout/stderr FIFOs from breaking.
    pub keep_open: Vec<File>,
    /// The pty master (terminal processes), for resize.
    pub console: Option<File>,
}

/// Where a stream goes: containerd passes FIFO paths, or `file://` URIs.
fn stream_path(uri: &str) -> io::Result<Option<PathBuf>> {
    if uri.is_empty() {
        return Ok(None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Some(PathBuf::from(path)));
    }
    if uri.contains("://") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("unsupported stdio URI {uri:?} (FIFO paths and file:// only)"),
        ));
    }
    Ok(Some(PathBuf::from(uri)))
}

fn open_nonblocking_reader(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

fn set_blocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An output stream: a writer for the workload plus, for a FIFO, a reader
/// the shim holds.
fn open_output(path: &Path, held: &mut HeldIo) -> io::Result<File> {
    if is_fifo(path) {
        held.keep_open.push(open_nonblocking_reader(path)?);
        OpenOptions::new().write(true).open(path)
    } else {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
    }
}

/// stdin: a blocking reader for the workload and a writer the shim holds.
fn open_input(path: &Path, held: &mut HeldIo) -> io::Result<File> {
    let reader = open_nonblocking_reader(path)?;
    if is_fifo(path) {
        held.stdin_writer = Some(OpenOptions::new().write(true).open(path)?);
        set_blocking(&reader)?;
    }
    Ok(reader)
}

/// Opens a non-terminal process's streams: what moat (and so the workload)
/// inherits, and what the shim keeps.
pub fn open_direct(stdin: &str, stdout: &str, stderr: &str) -> io::Result<(ChildStdio, HeldIo)> {
    let mut held = HeldIo::default();
    let mut child = ChildStdio::default();
    if let Some(p) = stream_path(stdin)? {
        child.stdin = Some(open_input(&p, &mut held)?);
    }
    if let Some(p) = stream_path(stdout)? {
        child.stdout = Some(open_output(&p, &mut held)?);
    }
    if let Some(p) = stream_path(stderr)? {
        child.stderr = Some(if stderr == stdout {
            child
                .stdout
                .as_ref()
                .map(File::try_clone)
                .transpose()?
                .ok_or_else(|| io::Error::other("no stdout"))?
        } else {
            open_output(&p, &mut held)?
        });
    }
    Ok((child, held))
}

/// A listening console socket in a private temporary directory (the
/// bundle path is too long for a socket address).
pub struct ConsoleSocket {
    dir: PathBuf,
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> io::Result<ConsoleSocket> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "moat-shim-pty-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("pty.sock");
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        listener.set_nonblocking(true)?;
        Ok(ConsoleSocket {
            dir,
            path,
            listener,
        })
    }

    /// Waits for moat to send the pty master, or for moat to exit.
    pub fn receive(&self, moat: &mut Running) -> io::Result<File> {
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if moat.poll_exit(Duration::from_millis(50)).is_some() {
                        // One last look: it may have connected, then exited.
                        match self.listener.accept() {
                            Ok((s, _)) => break s,
                            Err(_) => {
                                return Err(io::Error::other(
                                    "moat exited without sending the terminal",
                                ))
                            }
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0u8; 256];
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                let mut fds = fds.into_iter();
                if let Some(fd) = fds.next() {
                    for extra in fds {
                        // SAFETY: received fds are ours to close.
                        drop(unsafe { OwnedFd::from_raw_fd(extra) });
                    }
                    // SAFETY: a fresh fd received with SCM_RIGHTS.
                    return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        Err(io::Error::other("console socket message carried no fd"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copies bytes from `from` to `to` until EOF or an error, on a small
/// thread. The bytes are the workload's: they are only copied.
fn copy_thread(name: &str, mut from: File, mut to: File) {
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(COPY_THREAD_STACK)
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            let mut total = 0usize;
            let end = loop {
                match from.read(&mut buf) {
                    Ok(0) => break "eof".to_string(),
                    Ok(n) => {
                        total += n;
                        if let Err(e) = to.write_all(&buf[..n]) {
                            break format!("write: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EIO: the pty's last slave fd was closed.
                    Err(e) => break format!("read: {e}"),
                }
            };
            containerd_shim::debug!(
                "copy {} ended after {total} bytes: {end}",
                std::thread::current().name().unwrap_or("?")
            );
        });
    if let Err(e) = spawned {
        containerd_shim::error!("cannot start {name} copy thread: {e}");
    }
}

/// Connects a terminal process's pty master to containerd's FIFOs.
pub fn attach_console(master: &File, stdin: &str, stdout: &str) -> io::Result<HeldIo> {
    let mut held = HeldIo::default();
    if let Some(p) = stream_path(stdin)? {
        let reader = open_input(&p, &mut held)?;
        copy_thread("pty-in", reader, master.try_clone()?);
    }
    if let Some(p) = stream_path(stdout)? {
        let writer = open_output(&p, &mut held)?;
        copy_thread("pty-out", master.try_clone()?, writer);
    }
    held.console = Some(master.try_clone()?);
    Ok(held)
}

/// Sets a pty's window size.
pub fn resize(console: &File, width: u32, height: u32) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: u16::try_from(height).unwrap_or(u16::MAX),
        ws_col: u16::try_from(width).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    if unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts everything on `<bundle>/rootfs` (the snapshot the shim mounted).
pub fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    for _ in 0..16 {
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // EINVAL: nothing (more) mounted there; ENOENT: no rootfs dir.
            Err(_) => break,
        }
    }
}
