//! Driving the `moat` binary, one process per operation.
//!
//! The shim's reaper thread (containerd-shim's SIGCHLD handler) reaps every
//! child, so `std::process::Child::wait` cannot be used: a command's exit
//! status arrives through the crate's exit monitor instead. The pids of
//! moat commands are registered in [`HELPER_PIDS`] while they run so the
//! service's exit watcher does not take them for container processes.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use containerd_shim::monitor::{monitor_subscribe, ExitEvent, Subject, Subscription, Topic};
use containerd_shim::protos::shim::oci::Options;

/// Default state root of moat under the shim, one directory per containerd
/// namespace below it (runc's shim uses /run/containerd/runc/<ns>).
pub const DEFAULT_ROOT: &str = "/run/containerd/moat";
/// Default binary, looked up next to the shim, then in PATH.
pub const DEFAULT_BINARY: &str = "moat";
/// Where the shim records which moat and root a container uses, so that
/// `containerd-shim-moat-v2 delete` (run when the shim died) finds them.
const RUNTIME_FILE: &str = "moat-runtime.json";
/// moat's log for this container (runc's JSON log shape).
const LOG_FILE: &str = "moat-log.json";

/// Pids of moat commands still running; see the module comment.
pub static HELPER_PIDS: LazyLock<Mutex<HashSet<i32>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// A failed moat command.
#[derive(Debug)]
pub struct MoatError {
    pub command: String,
    pub message: String,
}

impl fmt::Display for MoatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "moat {}: {}", self.command, self.message)
    }
}

impl std::error::Error for MoatError {}

/// Which moat binary and state root a container is driven with.
#[derive(Debug, Clone)]
pub struct Moat {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// Standard streams for a moat command; the container inherits them.
#[derive(Default)]
pub struct ChildStdio {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// A moat command that was started.
pub struct Running {
    pub pid: i32,
    command: String,
    subscription: Subscription,
    stdout: Option<std::process::ChildStdout>,
    log: PathBuf,
    log_start: u64,
    exit_code: Option<i32>,
}

impl Moat {
    /// From the runtime options containerd passes (runc's `Options`:
    /// `BinaryName`, `Root`), else the defaults.
    pub fn from_options(options: Option<&Options>, namespace: &str) -> Moat {
        let binary_name = options
            .map(|o| o.binary_name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_BINARY);
        let root = options
            .map(|o| o.root.as_str())
            .filter(|r| !r.is_empty())
            .unwrap_or(DEFAULT_ROOT);
        Moat {
            binary: find_binary(binary_name),
            root: Path::new(root).join(namespace),
        }
    }

    /// What `save` recorded in the bundle, else the defaults.
    pub fn load(bundle: &Path, namespace: &str) -> Moat {
        let recorded = std::fs::read(bundle.join(RUNTIME_FILE))
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok());
        match recorded {
            Some(v) => {
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(PathBuf::from);
                let fallback = Moat::from_options(None, namespace);
                Moat {
                    binary: field("binary").unwrap_or(fallback.binary),
                    root: field("root").unwrap_or(fallback.root),
                }
            }
            None => Moat::from_options(None, namespace),
        }
    }

    pub fn save(&self, bundle: &Path) -> std::io::Result<()> {
        let v = serde_json::json!({
            "binary": self.binary.display().to_string(),
            "root": self.root.display().to_string(),
        });
        std::fs::write(bundle.join(RUNTIME_FILE), v.to_string())
    }

    /// Starts `moat --root R --log B/moat-log.json --log-format json ARGS`.
    /// With `capture_stdout`, stdout is a pipe read by [`Running::wait`].
    pub fn spawn(
        &self,
        bundle: &Path,
        args: &[&str],
        stdio: ChildStdio,
        capture_stdout: bool,
    ) -> Result<Running, MoatError> {
        let command = args.first().copied().unwrap_or_default().to_string();
        let log = bundle.join(LOG_FILE);
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .args(args)
            .current_dir(bundle)
            .stdin(stdio.stdin.map_or_else(Stdio::null, Stdio::from))
            .stderr(stdio.stderr.map_or_else(Stdio::null, Stdio::from));
        if capture_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(stdio.stdout.map_or_else(Stdio::null, Stdio::from));
        }
        let subscription = monitor_subscribe(Topic::Pid).map_err(|e| MoatError {
            command: command.clone(),
            message: format!("cannot watch exits: {e}"),
        })?;
        // Held across spawn so the exit watcher cannot see this pid's exit
        // before it is registered.
        let mut helpers = HELPER_PIDS.lock().unwrap_or_else(|p| p.into_inner());
        let mut child = cmd.spawn().map_err(|e| MoatError {
            command: command.clone(),
            message: format!("cannot run {}: {e}", self.binary.display()),
        })?;
        let pid = child.id() as i32;
        helpers.insert(pid);
        drop(helpers);
        Ok(Running {
            pid,
            command,
            subscription,
            stdout: child.stdout.take(),
            log,
            log_start,
            exit_code: None,
        })
    }

    /// Runs a command to completion; returns its stdout (if captured).
    pub fn run(
        &self,
        bundle: &Path,
        args: &[&str],
        stdio: ChildStdio,
        capture_stdout: bool,
    ) -> Result<Vec<u8>, MoatError> {
        self.spawn(bundle, args, stdio, capture_stdout)?.wait()
    }

    /// `moat delete --force`, tolerating a container that is already gone.
    pub fn delete_detached(&self, id: &str, bundle: &str) -> Result<(), MoatError> {
        let bundle = Path::new(bundle);
        let dir = if bundle.is_dir() {
            bundle
        } else {
            Path::new("/")
        };
        match self.run(
            dir,
            &["delete", "--force", id],
            ChildStdio::default(),
            false,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.message.contains("not found") || e.message.contains("does not exist") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Running {
    /// Returns the exit code if the command has exited, waiting at most
    /// `timeout`.
    pub fn poll_exit(&mut self, timeout: Duration) -> Option<i32> {
        if self.exit_code.is_none() {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.subscription.rx.recv_timeout(left) {
                    Ok(ExitEvent {
                        subject: Subject::Pid(pid),
                        exit_code,
                    }) if pid == self.pid => {
                        self.exit_code = Some(exit_code);
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        self.exit_code
    }

    /// Waits for the command; its stdout on success, else the error moat
    /// logged.
    pub fn wait(mut self) -> Result<Vec<u8>, MoatError> {
        let mut out = Vec::new();
        if let Some(mut stdout) = self.stdout.take() {
            // moat's own output (state, ps, stats JSON), never the workload's.
            let _ = stdout.read_to_end(&mut out);
        }
        let code = loop {
            if let Some(code) = self.poll_exit(Duration::from_secs(3600)) {
                break code;
            }
        };
        if code == 0 {
            return Ok(out);
        }
        let message = last_logged_error(&self.log, self.log_start)
            .unwrap_or_else(|| format!("exited with status {code}"));
        Err(MoatError {
            command: self.command.clone(),
            message,
        })
    }
}

/// The last `"level":"error"` message moat appended to its log after
/// `start` (a byte offset), so that old errors are not reported again.
fn last_logged_error(log: &Path, start: u64) -> Option<String> {
    let mut file = File::open(log).ok()?;
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut text = String::new();
    // Bounded: moat's log of one command is small.
    file.take(1 << 20).read_to_string(&mut text).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("level")?.as_str()? != "error" {
            return None;
        }
        Some(v.get("msg")?.as_str()?.to_string())
    })
}

/// `name` with a slash is a path; otherwise next to this shim, then PATH.
pub fn find_binary(name: &str) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(name)
}
