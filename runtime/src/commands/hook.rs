//! `moat hook` (hidden): how every allowed OCI hook runs (threat T21).
//! `create` rewrites each hook of the hardened spec to
//! `moat hook --kind K --bundle B --expect REAL [--timeout T] -- PATH ARG0 ARGS…`
//! (see `moat::harden::hooks::wrap_allowed_hooks`); libcontainer then runs
//! this command with the container's state on stdin and the hook's `env`.
//!
//! It opens PATH once and checks, on that descriptor, that it is still the
//! executable moat allowed when it checked the spec (same real path, same
//! device and inode): a `/proc/<pid>/exe` whose pid exited and was reused,
//! or a file swapped since, is refused. It replaces the state's `bundle`
//! (libcontainer names moat's private copy) with the real bundle, and runs
//! the hook from that same descriptor with the state on its stdin.
//! For `poststop`, a hook that fails, hangs past its timeout or cannot be
//! checked is logged and reported as success: `delete` must always finish,
//! or the container's state, rootfs mount, id range and cgroup stay.

use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use moat::self_exe::{null_terminated, to_cstrings};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The largest state moat reads from libcontainer (it is a few KiB).
const MAX_STATE_BYTES: u64 = 16 << 20;

#[derive(clap::Args, Debug)]
pub struct HookArgs {
    /// The hook kind (prestart, createRuntime, poststart, poststop).
    #[arg(long)]
    pub kind: String,
    /// The real bundle, given to the hook in its state.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The real executable allowed when the spec was checked.
    #[arg(long)]
    pub expect: PathBuf,
    /// Seconds a poststop hook may run before it is killed.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// The hook's path, its args[0], and its other arguments.
    #[arg(last = true, required = true, num_args = 2..)]
    pub command: Vec<OsString>,
}

pub fn hook(args: HookArgs) -> Result<i32> {
    let result = run(&args);
    if args.kind != "poststop" {
        return result;
    }
    match result {
        Ok(0) => Ok(0),
        Ok(code) => {
            warn_ignored(&args, &format!("exited with status {code}"));
            Ok(0)
        }
        Err(e) => {
            warn_ignored(&args, &format!("{e:#}"));
            Ok(0)
        }
    }
}

fn warn_ignored(args: &HookArgs, why: &str) {
    let path = args.command[0].to_string_lossy();
    tracing::warn!(hook = %path, "poststop hook failed, ignored so that delete completes: {why}");
    eprintln!("moat: poststop hook {path} failed, ignored so that delete completes: {why}");
}

fn run(args: &HookArgs) -> Result<i32> {
    let mut text = Vec::new();
    io::stdin()
        .take(MAX_STATE_BYTES)
        .read_to_end(&mut text)
        .context("cannot read the container state from stdin")?;
    let mut state: serde_json::Value =
        serde_json::from_slice(&text).context("the container state on stdin is not JSON")?;
    let obj = state
        .as_object_mut()
        .ok_or_else(|| anyhow!("the container state on stdin is not a JSON object"))?;
    obj.insert(
        "bundle".into(),
        serde_json::Value::String(args.bundle.to_string_lossy().into_owned()),
    );
    let state = serde_json::to_vec(&state)?;

    let exe = open_checked(&args.command[0], &args.expect)?;
    let stdin = memfd_with(&state)?;
    nix::unistd::dup2(stdin.as_raw_fd(), 0).context("cannot give the hook its state")?;
    drop(stdin);

    let argv = to_cstrings(args.command[1..].iter().cloned())?;
    // The hardening kept only an allowed env on the hook; should anything
    // else reach this process (an older moat's state), it does not reach
    // the hook (T21).
    let envp = to_cstrings(
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .filter(|kv| {
                kv.to_str()
                    .is_some_and(moat::harden::hooks::hook_env_allowed)
            }),
    )?;
    if args.kind != "poststop" {
        // Replaced by the hook: libcontainer's timeout and exit status
        // apply to the hook itself.
        exec_fd(&exe, &argv, &envp);
        bail!(
            "cannot run hook {}: {}",
            args.command[0].to_string_lossy(),
            io::Error::last_os_error()
        );
    }
    // SAFETY: moat hook is single-threaded here; the child only calls
    // execveat and _exit.
    match unsafe { libc::fork() } {
        -1 => bail!("cannot fork: {}", io::Error::last_os_error()),
        0 => {
            exec_fd(&exe, &argv, &envp);
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(127) }
        }
        pid => wait_with_timeout(pid, args.timeout.map(Duration::from_secs)),
    }
}

/// Opens `path` (following symlinks and `/proc/<pid>/exe`) and checks on
/// the descriptor that it is the regular file `expect`. The descriptor is
/// kept across exec (not close-on-exec) so that a script's interpreter can
/// read it through /dev/fd.
fn open_checked(path: &OsString, expect: &std::path::Path) -> Result<OwnedFd> {
    let c = CString::new(path.clone().into_vec())?;
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH) };
    if fd < 0 {
        bail!(
            "cannot open hook {}: {}",
            path.to_string_lossy(),
            io::Error::last_os_error()
        );
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .context("cannot read the hook's descriptor")?;
    let opened = nix::sys::stat::fstat(fd.as_raw_fd()).context("cannot stat the hook")?;
    let allowed = std::fs::metadata(expect)
        .with_context(|| format!("the allowed hook executable {} is gone", expect.display()))?;
    let is_file = opened.st_mode & libc::S_IFMT == libc::S_IFREG;
    if link != expect
        || !is_file
        || (opened.st_dev, opened.st_ino) != (allowed.dev(), allowed.ino())
    {
        bail!(
            "hook {} is now {}, not the {} allowed when the container was created; not run",
            path.to_string_lossy(),
            link.display(),
            expect.display()
        );
    }
    Ok(fd)
}

/// An anonymous file holding `data`, read from its start.
fn memfd_with(data: &[u8]) -> Result<std::fs::File> {
    let name = CString::new("moat-hook-state")?;
    // SAFETY: a valid name; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        bail!("memfd_create: {}", io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(data)?;
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0))?;
    Ok(file)
}

fn exec_fd(exe: &OwnedFd, argv: &[CString], envp: &[CString]) {
    let argv = null_terminated(argv);
    let envp = null_terminated(envp);
    let empty = CString::default();
    // SAFETY: valid NUL-terminated strings and NULL-terminated arrays that
    // outlive the call; on success execveat does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            exe.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
}

/// Waits for the hook; past the timeout it is killed. Returns its exit
/// status (128+signal when a signal ended it).
fn wait_with_timeout(pid: libc::pid_t, timeout: Option<Duration>) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(pid);
    let start = Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::Exited(_, code) => return Ok(code),
            WaitStatus::Signaled(_, sig, _) => return Ok(128 + sig as i32),
            _ => {}
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            bail!("timed out and was killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
