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
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
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
/// The shim's own configuration, the operator's: the other moat binaries and
/// state roots a `CreateTask`'s runtime options may name (T37). One entry a
/// line, `binary /abs/path` or `root /abs/path`; `#` starts a comment. It
/// must be a regular file only host root could have written
/// ([`root_controlled`]); a missing file lists nothing.
pub const SHIM_CONFIG: &str = "/etc/moat/shim.conf";
/// Names another file instead of [`SHIM_CONFIG`] (the shim's environment is
/// containerd's, the operator's; the tests use it).
const SHIM_CONFIG_ENV: &str = "MOAT_SHIM_CONFIG";
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
    ///
    /// The options come with each `CreateTask` request, from whichever
    /// containerd client made it (`ctr run --runc-binary`, the Go API), not
    /// only from the operator's handler configuration (threat T37). So a
    /// binary named there must be the installed moat (the file the default
    /// lookup finds, compared by inode) or one the operator listed in the
    /// shim's own configuration ([`SHIM_CONFIG`]): any other root-owned
    /// executable (`/usr/bin/runc`) would give the client an unhardened
    /// runtime behind moat's shim. A state root must be [`DEFAULT_ROOT`] or
    /// listed there too: moat keeps its state at `<Root>/<namespace>`, both
    /// named by the client, so `Root = /run` in namespace `moat` would point
    /// this task's `kill`, `exec` and `delete --force` at docker's moat
    /// containers (`/run/moat`), which containerd's API never reaches.
    /// Both must also be where nothing but host root could have made them
    /// what they are ([`root_controlled`]).
    pub fn from_options(options: Option<&Options>, namespace: &str) -> Result<Moat, String> {
        Moat::from_options_listed(options, namespace, || Listed::load(&shim_config_path()))
    }

    /// [`Moat::from_options`] with the operator's list from `listed`
    /// (read only when an option names a path).
    fn from_options_listed(
        options: Option<&Options>,
        namespace: &str,
        listed: impl FnOnce() -> Result<Listed, String>,
    ) -> Result<Moat, String> {
        let binary_name = options
            .map(|o| o.binary_name.as_str())
            .filter(|n| !n.is_empty());
        let root = options.map(|o| o.root.as_str()).filter(|r| !r.is_empty());
        let binary = find_binary(binary_name.unwrap_or(DEFAULT_BINARY));
        if binary_name.is_some() || root.is_some() {
            let listed = listed()?;
            if binary_name.is_some() {
                root_controlled(&binary, Leaf::Executable)
                    .and_then(|()| open_allowed_binary(&binary, || Ok(listed.clone())).map(drop))
                    .map_err(|why| {
                        format!("runtime option BinaryName {}: {why}", binary.display())
                    })?;
            }
            if let Some(root) = root {
                root_controlled(Path::new(root), Leaf::DirectoryOrMissing)
                    .and_then(|()| listed.allows_root(Path::new(root)))
                    .map_err(|why| format!("runtime option Root {root}: {why}"))?;
            }
        }
        Ok(Moat {
            binary,
            root: Path::new(root.unwrap_or(DEFAULT_ROOT)).join(namespace),
        })
    }

    /// The defaults: `moat` next to the shim or in containerd's `PATH`,
    /// state under [`DEFAULT_ROOT`] (both the operator's installation).
    pub fn defaults(namespace: &str) -> Moat {
        Moat {
            binary: find_binary(DEFAULT_BINARY),
            root: Path::new(DEFAULT_ROOT).join(namespace),
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
                let fallback = Moat::defaults(namespace);
                Moat {
                    binary: field("binary").unwrap_or(fallback.binary),
                    root: field("root").unwrap_or(fallback.root),
                }
            }
            None => Moat::defaults(namespace),
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
        // Run the file that was checked, by its descriptor: a path swapped
        // after the check is never run (T37). The descriptor is
        // close-on-exec; the kernel opens it before closing it.
        // The operator's list is read only for a binary that is not the
        // installed moat: a bad line there must not stop the default
        // binary (deleting running containers included).
        let exe = open_allowed_binary(&self.binary, || Listed::load(&shim_config_path())).map_err(
            |why| MoatError {
                command: command.clone(),
                message: format!("{}: {why}", self.binary.display()),
            },
        )?;
        let mut cmd = Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()));
        cmd.arg0(&self.binary)
            .arg("--root")
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
        drop(exe);
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

/// What the last component of a path given in the runtime options must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// A regular, executable file (`BinaryName`).
    Executable,
    /// A directory, or nothing yet (`Root`: moat creates it).
    DirectoryOrMissing,
    /// A regular file ([`SHIM_CONFIG`]).
    File,
}

/// Whether only host root could have made `path` what it is: absolute, no
/// `.`/`..`, and every existing component owned by root and writable by no
/// one else, so no other user can swap a component between this check and
/// the use. A symbolic link on the way (made by root: its directory is
/// root's) is followed, and its target judged the same way. A missing tail
/// is allowed only for [`Leaf::DirectoryOrMissing`]; moat creates it as root.
pub fn root_controlled(path: &Path, leaf: Leaf) -> Result<(), String> {
    root_controlled_at(path, leaf, 0)
}

/// Symbolic links [`root_controlled`] follows before giving up (as ELOOP).
const MAX_LINKS: usize = 16;

fn root_controlled_at(path: &Path, leaf: Leaf, links: usize) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Component;
    if !path.is_absolute() {
        return Err("not an absolute path".into());
    }
    let names: Vec<&std::ffi::OsStr> = path
        .components()
        .skip(1)
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err("holds '.' or '..'".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let mut prefix = PathBuf::from("/");
    for i in 0..=names.len() {
        if i > 0 {
            prefix.push(names[i - 1]);
        }
        let meta = match std::fs::symlink_metadata(&prefix) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if leaf == Leaf::DirectoryOrMissing {
                    return Ok(());
                }
                return Err(format!("{} does not exist", prefix.display()));
            }
            Err(e) => return Err(format!("{}: {e}", prefix.display())),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            if links >= MAX_LINKS {
                return Err(format!("{}: too many symbolic links", path.display()));
            }
            let target =
                std::fs::read_link(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
            let mut resolved = match prefix.parent() {
                Some(dir) => dir.join(target),
                None => target,
            };
            resolved.extend(&names[i..]);
            return root_controlled_at(&normalize(&resolved)?, leaf, links + 1);
        }
        if meta.uid() != 0 {
            return Err(format!("{} is not owned by root", prefix.display()));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "{} is writable by others than root",
                prefix.display()
            ));
        }
        let want_dir = i < names.len() || leaf == Leaf::DirectoryOrMissing;
        if want_dir && !kind.is_dir() {
            return Err(format!("{} is not a directory", prefix.display()));
        }
        if !want_dir && !kind.is_file() {
            return Err(format!("{} is not a regular file", prefix.display()));
        }
        if !want_dir && leaf == Leaf::Executable && meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("{} is not an executable file", prefix.display()));
        }
    }
    Ok(())
}

/// A link target joined onto its directory, with `.` and `..` taken out
/// lexically (every prefix it names is then judged by [`root_controlled`]).
fn normalize(path: &Path) -> Result<PathBuf, String> {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::Prefix(_) => return Err("not a Unix path".into()),
        }
    }
    Ok(out)
}

/// [`SHIM_CONFIG`], or the file [`SHIM_CONFIG_ENV`] names.
fn shim_config_path() -> PathBuf {
    std::env::var_os(SHIM_CONFIG_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(SHIM_CONFIG), PathBuf::from)
}

/// What the operator listed in the shim's configuration ([`SHIM_CONFIG`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listed {
    pub binaries: Vec<PathBuf>,
    pub roots: Vec<PathBuf>,
}

/// Bytes of [`SHIM_CONFIG`] read at most.
const SHIM_CONFIG_MAX: u64 = 64 * 1024;

impl Listed {
    /// The entries of `path`; nothing when it does not exist. A file that
    /// someone other than root could have written, or a line that is not
    /// an entry, is an error (so every option naming a path is refused).
    pub fn load(path: &Path) -> Result<Listed, String> {
        if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(Listed::default());
        }
        let bad = |why: String| format!("shim configuration {}: {why}", path.display());
        root_controlled(path, Leaf::File).map_err(bad)?;
        let mut text = String::new();
        File::open(path)
            .and_then(|f| f.take(SHIM_CONFIG_MAX).read_to_string(&mut text))
            .map_err(|e| bad(e.to_string()))?;
        Listed::parse(&text).map_err(bad)
    }

    fn parse(text: &str) -> Result<Listed, String> {
        let mut listed = Listed::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .unwrap_or((line, ""));
            let path = PathBuf::from(value);
            if !path.is_absolute() {
                return Err(format!("line {}: not an absolute path: {value:?}", n + 1));
            }
            match key {
                "binary" => listed.binaries.push(path),
                "root" => listed.roots.push(normalize(&path)?),
                _ => return Err(format!("line {}: unknown entry {key:?}", n + 1)),
            }
        }
        Ok(listed)
    }

    /// `root` is the default state root or a listed one.
    fn allows_root(&self, root: &Path) -> Result<(), String> {
        let root = normalize(root)?;
        if root == Path::new(DEFAULT_ROOT) || self.roots.contains(&root) {
            return Ok(());
        }
        Err(format!(
            "neither {DEFAULT_ROOT} nor a root listed in the shim's configuration ({})",
            shim_config_path().display()
        ))
    }
}

/// `binary` opened (`O_PATH`, close-on-exec) when it is the installed moat
/// (the file `find_binary(DEFAULT_BINARY)` finds) or a binary `listed`
/// names: the same file, compared by device and inode on the descriptor
/// that is then run, so neither a copy of another program nor a path
/// swapped after the check is run.
fn open_allowed_binary(
    binary: &Path,
    listed: impl FnOnce() -> Result<Listed, String>,
) -> Result<OwnedFd, String> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fstat, Mode};
    let identity = |path: &Path| -> Result<(OwnedFd, (u64, u64)), String> {
        let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("cannot open: {e}"))?;
        // SAFETY: `open` just returned this descriptor; nothing else owns it.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let st = fstat(fd.as_raw_fd()).map_err(|e| format!("cannot stat: {e}"))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err("not a regular file".into());
        }
        Ok((fd, (st.st_dev, st.st_ino)))
    };
    let (fd, id) = identity(binary)?;
    let installed = find_binary(DEFAULT_BINARY);
    let same = |path: &Path| identity(path).is_ok_and(|(_, other)| other == id);
    if same(&installed) {
        return Ok(fd);
    }
    if listed()?
        .binaries
        .iter()
        .any(|b| root_controlled(b, Leaf::Executable).is_ok() && same(b))
    {
        return Ok(fd);
    }
    Err(format!(
        "neither the installed moat ({}) nor a binary listed in the shim's configuration ({})",
        installed.display(),
        shim_config_path().display()
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        // Under /tmp (sticky and world-writable): never root-controlled.
        let dir =
            std::env::temp_dir().join(format!("moat-shim-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn system_binaries_and_directories_are_root_controlled() {
        // /bin/sh may be a link (usrmerge: /bin -> usr/bin); it is followed.
        assert_eq!(
            root_controlled(Path::new("/bin/sh"), Leaf::Executable),
            Ok(())
        );
        assert_eq!(
            root_controlled(Path::new("/usr"), Leaf::DirectoryOrMissing),
            Ok(())
        );
        assert_eq!(
            root_controlled(
                Path::new("/usr/moat-no-such-dir/x"),
                Leaf::DirectoryOrMissing
            ),
            Ok(())
        );
    }

    #[test]
    fn client_chosen_paths_outside_root_controlled_trees_are_refused() {
        let dir = scratch("refused");
        let exe = dir.join("evil");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // The file is root's (the test runs as root) but /tmp is not.
        let err = root_controlled(&exe, Leaf::Executable).expect_err("under /tmp");
        assert!(err.contains("writable by others than root"), "{err}");
        let err =
            root_controlled(&dir.join("state"), Leaf::DirectoryOrMissing).expect_err("under /tmp");
        assert!(err.contains("writable by others than root"), "{err}");
        // A link root made in a root-controlled place is judged by its target.
        let link = Path::new("/run").join(format!("moat-shim-test-link-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link).expect("symlink");
        let verdict = root_controlled(&link, Leaf::Executable);
        let _ = std::fs::remove_file(&link);
        let err = verdict.expect_err("link to /tmp");
        assert!(err.contains("writable by others than root"), "{err}");
        assert!(root_controlled(Path::new("relative/moat"), Leaf::Executable).is_err());
        assert!(root_controlled(Path::new("/usr/../tmp"), Leaf::DirectoryOrMissing).is_err());
        assert!(root_controlled(Path::new("/usr/moat-missing"), Leaf::Executable).is_err());
        assert!(root_controlled(Path::new("/etc/passwd"), Leaf::Executable).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn options_naming_a_client_file_fail_and_defaults_do_not_look() {
        let dir = scratch("options");
        let exe = dir.join("moat");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let nothing = || Ok(Listed::default());
        let mut o = Options::new();
        o.binary_name = exe.display().to_string();
        let err =
            Moat::from_options_listed(Some(&o), "k8s.io", nothing).expect_err("client binary");
        assert!(err.starts_with("runtime option BinaryName"), "{err}");
        let mut o = Options::new();
        o.root = dir.join("root").display().to_string();
        let err = Moat::from_options_listed(Some(&o), "k8s.io", nothing).expect_err("client root");
        assert!(err.starts_with("runtime option Root"), "{err}");
        let mut o = Options::new();
        o.root = "/run/containerd/moat".into();
        let m = Moat::from_options_listed(Some(&o), "default", nothing).expect("default root");
        assert_eq!(m.root, Path::new("/run/containerd/moat/default"));
        let m =
            Moat::from_options_listed(None, "default", || Err("unread".into())).expect("defaults");
        assert_eq!(m.root, Path::new(DEFAULT_ROOT).join("default"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_installed_or_listed_binary_and_root_pass() {
        // A root-owned executable in a root-owned directory, but neither
        // the installed moat nor listed: refused (the T37 residual).
        let mut o = Options::new();
        o.binary_name = "/bin/sh".into();
        let err = Moat::from_options_listed(Some(&o), "ns", || Ok(Listed::default()))
            .expect_err("another program");
        assert!(err.contains("neither the installed moat"), "{err}");
        // Listed by the operator (through a link: the same file).
        let listed = Listed {
            binaries: vec![PathBuf::from("/bin/sh")],
            roots: vec![PathBuf::from("/run/moat-listed-root")],
        };
        let l = listed.clone();
        let m = Moat::from_options_listed(Some(&o), "ns", || Ok(l)).expect("listed");
        assert_eq!(m.binary, Path::new("/bin/sh"));
        let fd = open_allowed_binary(Path::new("/bin/sh"), || Ok(listed.clone())).expect("listed");
        drop(fd);
        // A root-owned directory that is not listed: refused.
        let mut o = Options::new();
        o.root = "/run".into();
        let l = listed.clone();
        let err = Moat::from_options_listed(Some(&o), "moat", || Ok(l)).expect_err("/run");
        assert!(
            err.starts_with("runtime option Root /run: neither"),
            "{err}"
        );
        o.root = "/run/moat-listed-root/".into();
        let l = listed.clone();
        let m = Moat::from_options_listed(Some(&o), "ns", || Ok(l)).expect("listed root");
        assert_eq!(m.root, Path::new("/run/moat-listed-root/ns"));
        // A broken configuration refuses every option naming a path.
        let err = Moat::from_options_listed(Some(&o), "ns", || Err("bad".into()))
            .expect_err("broken configuration");
        assert_eq!(err, "bad");
    }

    #[test]
    fn shim_configuration_is_parsed_and_must_be_roots() {
        let listed = Listed::parse(
            "# operator's list\nbinary /opt/moat/bin/moat\n\nroot /run/moat-k8s/../k8s # comment\n",
        )
        .expect("parse");
        assert_eq!(listed.binaries, vec![PathBuf::from("/opt/moat/bin/moat")]);
        assert_eq!(listed.roots, vec![PathBuf::from("/run/k8s")]);
        assert!(Listed::parse("binary moat\n").is_err());
        assert!(Listed::parse("runtime /x\n").is_err());
        assert!(Listed::parse("binary\n").is_err());
        assert_eq!(
            Listed::load(Path::new("/etc/moat-no-such-shim.conf")),
            Ok(Listed::default())
        );
        // Under /tmp: anyone could have made it; never trusted.
        let dir = scratch("config");
        let conf = dir.join("shim.conf");
        std::fs::write(&conf, "binary /bin/sh\n").expect("write");
        let err = Listed::load(&conf).expect_err("under /tmp");
        assert!(err.contains("writable by others than root"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
