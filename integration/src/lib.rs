//! Shared helpers for the integration tests that run real containers
//! through the `moat` binary (no docker): locating the binary, building
//! busybox bundles, running moat with a timeout, deleting containers on
//! drop, and checking that nothing a container had is left behind.
//!
//! Every test gets its own [`Env`]: a temporary directory holding a unique
//! `--root` and its bundles, so tests may run in parallel.

pub mod caps;
pub mod cmd;
pub mod containerd;
pub mod docker;
pub mod http;
pub mod network;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use caps::{
    ALLOWED_CAPS_MASK, ALLOWLIST, CAP_KILL, CAP_MKNOD, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN,
    CAP_SYS_PTRACE,
};
pub use http::http_get;

/// First host id of the default policy's id pool
/// (`user_namespace.host_id_base`; a unit test keeps them equal).
pub const HOST_ID_BASE: u64 = 1_073_741_824;

/// Size of one container's id range in the default policy
/// (`user_namespace.range_size`; a unit test keeps them equal).
pub const RANGE_SIZE: u64 = 65_536;

/// Where the busybox rootfs is built once and copied from.
pub const ROOTFS_CACHE: &str = "/var/cache/moat/busybox-rootfs";

/// How long one moat invocation may take before the test gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (`integration/..`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration crate has a parent directory")
        .to_path_buf()
}

/// `<workspace>/target/release/moat`; panics with instructions if missing.
pub fn moat_bin() -> PathBuf {
    let bin = workspace_dir().join("target/release/moat");
    if !bin.is_file() {
        panic!(
            "moat binary not found at {}: build it first with `cd {} && cargo build --release`",
            bin.display(),
            workspace_dir().display()
        );
    }
    bin
}

/// Panics unless the tests run as root (moat needs it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the moat integration tests must run as root");
}

/// Builds the busybox rootfs into [`ROOTFS_CACHE`] with `hack/mkrootfs.sh`
/// (idempotent), once per test process and under a file lock, so parallel
/// test binaries do not build it concurrently.
pub fn cached_rootfs() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        require_root();
        let cache = Path::new(ROOTFS_CACHE);
        let parent = cache.parent().unwrap();
        fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        let lock_path = parent.join(".busybox-rootfs.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
        use std::os::fd::AsRawFd;
        // SAFETY: a valid fd; the lock is released when `lock` is closed.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", lock_path.display());
        let script = workspace_dir().join("hack/mkrootfs.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(cache)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} {} failed: {}{}",
            script.display(),
            cache.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(cache.join("bin/busybox").is_file());
        drop(lock);
    });
    PathBuf::from(ROOTFS_CACHE)
}

/// Copies the cached busybox rootfs to `dest` (hardlinks where possible:
/// containers see their root read-only, so sharing the inodes is safe).
pub fn copy_rootfs(dest: &Path) {
    let cache = cached_rootfs();
    let linked = Command::new("cp")
        .arg("-al")
        .arg(&cache)
        .arg(dest)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !linked {
        let _ = fs::remove_dir_all(dest);
        let out = Command::new("cp")
            .arg("-a")
            .arg(&cache)
            .arg(dest)
            .output()
            .expect("cannot run cp");
        assert!(
            out.status.success(),
            "cp -a {} {}: {}",
            cache.display(),
            dest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The config.json every test bundle starts from: what `runc spec` writes
/// (terminal off), with `args` as the process.
pub fn base_config(args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "moat-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A bundle directory: `rootfs/` (busybox) and a `config.json` written
/// from [`Bundle::config`] by [`Bundle::write`].
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Puts the busybox rootfs and a config.json running `args` into the
    /// existing directory `dir`.
    fn fill(dir: PathBuf, args: &[&str]) -> Bundle {
        copy_rootfs(&dir.join("rootfs"));
        let b = Bundle {
            dir,
            config: base_config(args),
        };
        b.write();
        b
    }

    /// The bundle path as a string, for command lines.
    pub fn path(&self) -> &str {
        self.dir.to_str().expect("utf-8 bundle path")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Writes `config` to `config.json`.
    pub fn write(&self) {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .expect("write config.json");
    }

    /// Writes raw bytes as `config.json` (for malformed-input tests).
    pub fn write_raw(&self, data: &[u8]) {
        fs::write(self.config_path(), data).expect("write config.json");
    }

    /// Sets an annotation (and rewrites config.json).
    pub fn annotate(&mut self, key: &str, value: &str) {
        let obj = self.config.as_object_mut().unwrap();
        let ann = obj.entry("annotations").or_insert_with(|| json!({}));
        ann[key] = json!(value);
        self.write();
    }

    /// Sets all four capability sets of the process (and rewrites
    /// config.json).
    pub fn set_capabilities(&mut self, caps: &[&str]) {
        let caps = json!(caps);
        self.config["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
            "ambient": caps, "inheritable": caps
        });
        self.write();
    }

    /// Appends a mount (and rewrites config.json).
    pub fn add_mount(&mut self, mount: Value) {
        self.config["mounts"].as_array_mut().unwrap().push(mount);
        self.write();
    }

    /// Makes the `typ` namespace join `path` (replacing the spec's entry of
    /// that type, or adding one), and rewrites config.json.
    pub fn join_namespace(&mut self, typ: &str, path: &str) {
        let list = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        list.retain(|n| n["type"] != typ);
        list.push(json!({"type": typ, "path": path}));
        self.write();
    }
}

/// A bind mount entry for config.json (`rbind`, and `rw` or `ro`).
pub fn bind(source: impl AsRef<Path>, dest: &str, rw: bool) -> Value {
    json!({
        "destination": dest, "type": "bind", "source": source.as_ref(),
        "options": ["rbind", if rw { "rw" } else { "ro" }]
    })
}

/// Is `o` one of the comma-separated mount options `opts`?
pub fn has_opt(opts: &str, o: &str) -> bool {
    opts.split(',').any(|x| x == o)
}

/// What one moat invocation did.
#[derive(Debug)]
pub struct Out {
    /// The exit code, or None when killed by a signal.
    pub code: Option<i32>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics unless the command exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics unless the command failed (non-zero exit) and its stderr
    /// contains `phrase` (case-insensitive).
    pub fn assert_fails_with(&self, phrase: &str) -> &Self {
        assert!(
            !self.success(),
            "expected failure mentioning {phrase:?}:\n{self}"
        );
        assert!(
            self.stderr.to_lowercase().contains(&phrase.to_lowercase()),
            "stderr does not mention {phrase:?}:\n{self}"
        );
        self
    }

    /// The stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| -> String {
            if s.len() > 4000 {
                format!(
                    "{}… ({} bytes)",
                    &s[..s.floor_char_boundary_compat(4000)],
                    s.len()
                )
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            cut(&self.cmdline),
            self.status,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Waits for `child` up to `timeout`; kills it (and panics) after that.
pub fn wait_timeout(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` (stdin from /dev/null, output captured) to its end, within
/// `timeout` (see [`wait_timeout`]).
pub fn run_within(mut cmd: Command, timeout: Duration) -> Out {
    let cmdline = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));
    let status = wait_timeout(&mut child, timeout, &cmdline);
    Out {
        code: status.code(),
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        cmdline,
    }
}

/// Everything `r` yields, as text (lossy); what it read before an error.
pub fn read_all(mut r: impl std::io::Read) -> String {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn short_cmdline(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.len() > 80 {
                format!(
                    "{}…({} chars)",
                    &a[..a.floor_char_boundary_compat(40)],
                    a.len()
                )
            } else if a.is_empty() || a.contains(' ') {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One test's world: a temporary directory holding its `--root`, its
/// bundles and the captured output of every moat invocation.
pub struct Env {
    pub tmp: tempfile::TempDir,
    /// The `--root` every command of this env uses.
    pub root: PathBuf,
    counter: AtomicUsize,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        require_root();
        moat_bin();
        cached_rootfs();
        let tmp = tempfile::Builder::new()
            .prefix("moat-it-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("root");
        Env {
            tmp,
            root,
            counter: AtomicUsize::new(0),
        }
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// A container id unique to this test process and env.
    pub fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}-{}", std::process::id(), self.next())
    }

    pub fn root_str(&self) -> &str {
        self.root.to_str().expect("utf-8 root")
    }

    /// A new bundle running `args` (config.json written).
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        let dir = self.tmp.path().join(format!("bundle-{}", self.next()));
        fs::create_dir(&dir).expect("create bundle dir");
        Bundle::fill(dir, args)
    }

    /// A bundle running `/bin/sh -c script`.
    pub fn sh_bundle(&self, script: &str) -> Bundle {
        self.bundle(&["/bin/sh", "-c", script])
    }

    /// The full argv of `moat --root <root> args…`.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec!["--root".to_string(), self.root_str().to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Runs `moat --root <root> args…` and captures its output.
    pub fn moat(&self, args: &[&str]) -> Out {
        self.moat_argv(&self.argv(args), DEFAULT_TIMEOUT)
    }

    /// Runs `moat args…` (no `--root` added).
    pub fn moat_raw(&self, args: &[&str]) -> Out {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.moat_argv(&argv, DEFAULT_TIMEOUT)
    }

    /// Runs moat with exactly `argv`. Output goes to files, not pipes: a
    /// container created by `create` inherits moat's stdio and would keep
    /// a pipe open long after moat exits.
    pub fn moat_argv(&self, argv: &[String], timeout: Duration) -> Out {
        let n = self.next();
        let out_path = self.tmp.path().join(format!("out-{n}.stdout"));
        let err_path = self.tmp.path().join(format!("out-{n}.stderr"));
        let mut child = self.spawn_argv(argv, &out_path, &err_path);
        let cmdline = format!("moat {}", short_cmdline(argv));
        let status = wait_timeout(&mut child, timeout, &cmdline);
        let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).to_string();
        Out {
            code: status.code(),
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
            cmdline,
        }
    }

    /// Spawns `moat --root <root> args…` with stdin from /dev/null and
    /// stdout/stderr to files in the env; the caller waits.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let n = self.next();
        self.spawn_argv(
            &self.argv(args),
            &self.tmp.path().join(format!("spawn-{n}.stdout")),
            &self.tmp.path().join(format!("spawn-{n}.stderr")),
        )
    }

    fn spawn_argv(&self, argv: &[String], out: &Path, err: &Path) -> Child {
        let stdout = fs::File::create(out).expect("create stdout file");
        let stderr = fs::File::create(err).expect("create stderr file");
        Command::new(moat_bin())
            .args(argv)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("cannot spawn moat")
    }

    /// `moat run` of `bundle` as container `id`; deleted on error too.
    pub fn run(&self, bundle: &Bundle, id: &str) -> Out {
        let _guard = self.guard(id);
        self.moat(&["run", "--bundle", bundle.path(), id])
    }

    /// Runs `sh -c script` in a fresh container and returns moat's output
    /// (the container's stdout and stderr are moat's).
    pub fn run_sh(&self, script: &str) -> Out {
        let b = self.sh_bundle(script);
        let id = self.id("sh");
        self.run(&b, &id)
    }

    /// A guard that force-deletes container `id` when dropped.
    pub fn guard(&self, id: &str) -> ContainerGuard {
        ContainerGuard {
            root: self.root.clone(),
            id: id.to_string(),
        }
    }

    /// A [`LeakCheck`] snapshot for container `id` of this env's root.
    pub fn leak_check(&self, id: &str) -> LeakCheck {
        LeakCheck::snapshot(&self.root, id)
    }

    /// `moat CMD --bundle B ID` (`create` or `run`) of a new container
    /// `prefix-…` is refused with every one of `phrases` in its error and
    /// leaves nothing: checked before the guard's `delete --force` could
    /// hide a leak, and after it. Returns moat's output.
    #[track_caller]
    pub fn assert_refused(
        &self,
        cmd: &str,
        bundle: &Bundle,
        prefix: &str,
        phrases: &[&str],
    ) -> Out {
        let id = self.id(prefix);
        let leak = self.leak_check(&id);
        let out = {
            let _g = self.guard(&id);
            let out = self.moat(&[cmd, "--bundle", bundle.path(), &id]);
            for phrase in phrases {
                out.assert_fails_with(phrase);
            }
            leak.verify();
            out
        };
        leak.verify();
        out
    }

    /// `moat state` JSON of `id`.
    pub fn state(&self, id: &str) -> Value {
        let out = self.moat(&["state", id]);
        out.assert_ok();
        out.json()
    }

    /// The `status` field of `moat state`.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `moat state` until the status is `want` (or panics).
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let s = self.status(id);
            if s == want {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "container {id} stayed {s:?}, expected {want:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates and starts a container running `sleep 300` (for exec and
    /// host-side checks). Returns its id; the guard deletes it.
    pub fn start_sleeper(&self, bundle: &Bundle, prefix: &str) -> (String, ContainerGuard) {
        let id = self.id(prefix);
        let guard = self.guard(&id);
        self.moat(&["create", "--bundle", bundle.path(), &id])
            .assert_ok();
        self.moat(&["start", &id]).assert_ok();
        self.wait_status(&id, "running", Duration::from_secs(10));
        (id, guard)
    }
}

/// Runs `moat --root R delete --force ID` when dropped (errors ignored).
pub struct ContainerGuard {
    pub root: PathBuf,
    pub id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let Some(root) = self.root.to_str() else {
            return;
        };
        if let Ok(mut child) = Command::new(moat_bin())
            .args(["--root", root, "delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses `KEY=value` lines (e.g. a container script's report).
pub fn kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A `/proc/<pid>/status` field (e.g. `CapEff`) from status text.
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == field).then(|| v.trim())
    })
}

/// A hex capability mask from status text.
pub fn cap_field(status: &str, field: &str) -> u64 {
    let v =
        status_field(status, field).unwrap_or_else(|| panic!("no {field} in status:\n{status}"));
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("{field}={v}: {e}"))
}

/// The canonical form of a state root, as moat records it (the root may
/// not exist yet: its parent is resolved then).
#[allow(
    clippy::disallowed_methods,
    reason = "test harness: computes what moat records, to compare"
)]
pub fn canonical_root(root: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(root) {
        return p;
    }
    match (root.parent(), root.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or_else(|_| root.to_path_buf()),
        _ => root.to_path_buf(),
    }
}

/// Is `id` exactly one ordinary path component (so `<dir>/<id>` names a
/// child of `<dir>`)?
fn single_component(id: &str) -> bool {
    let mut c = Path::new(id).components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None)) && !id.contains('/')
}

/// The operator policy moat would use (for the id pool's directory).
pub fn effective_policy() -> moat::policy::Policy {
    match fs::read_to_string(moat::policy::DEFAULT_POLICY_PATH) {
        Ok(text) => moat::policy::Policy::from_toml(&text).expect("valid /etc/moat/policy.toml"),
        Err(_) => moat::policy::Policy::embedded(),
    }
}

fn list_dir(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

fn mountinfo_lines(needle: &str) -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Every id-pool entry (slot file name → content).
fn pool_entries(pool_dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(pool_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let content = fs::read_to_string(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().to_string(), content))
        })
        .collect()
}

/// The v1 controller (and v2 unified) hierarchies under /sys/fs/cgroup.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut v: Vec<PathBuf> = fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()))
        .filter(|p| p.is_dir())
        .collect();
    if v.is_empty() || base.join("cgroup.controllers").exists() {
        v.push(base.to_path_buf());
    }
    v.sort();
    v
}

/// Is cgroup name `leaf` (below `/moat`) container `id`'s: `<id>` or
/// `<state root tag>@<id>` (a raw bundle's,
/// `moat::harden::cgroups_path::raw_cgroups_path`).
fn is_leaf_of(leaf: &str, id: &str) -> bool {
    leaf == id || leaf.split_once('@').is_some_and(|(_, rest)| rest == id)
}

/// The cgroup directories of container `id` moat names: below `/moat`
/// (`/moat/<root tag>@<id>` for a raw bundle) or, for an engine bundle
/// whose spec names none, `/moat-engines/<namespace>/<id>`
/// (`moat::harden::cgroups_path::engine_fallback_cgroups_path`): the
/// existing ones, or `/moat/<id>` in each hierarchy when none exists.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let engines = moat::harden::cgroups_path::ENGINE_FALLBACK_CGROUP_PARENT.trim_start_matches('/');
    cgroup_hierarchies()
        .into_iter()
        .flat_map(|h| {
            let parent = h.join("moat");
            let mut found: Vec<PathBuf> = fs::read_dir(&parent)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| is_leaf_of(&e.file_name().to_string_lossy(), id))
                .map(|e| e.path())
                .chain(
                    fs::read_dir(h.join(engines))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|ns| ns.path().join(id))
                        .filter(|d| d.exists()),
                )
                .collect();
            if found.is_empty() {
                found.push(parent.join(id));
            }
            found
        })
        .collect()
}

/// Container `id`'s cgroup directory in `hierarchy` (see [`cgroup_dirs`];
/// `<hierarchy>/moat/<id>` when none exists).
pub fn cgroup_dir(hierarchy: &Path, id: &str) -> PathBuf {
    cgroup_dirs(id)
        .into_iter()
        .find(|d| d.starts_with(hierarchy) && d.parent() != Some(hierarchy))
        .unwrap_or_else(|| hierarchy.join("moat").join(id))
}

/// The container's `pids.max` (its cgroup below `/moat`), trimmed.
pub fn pids_max(id: &str) -> String {
    let file = cgroup_dirs(id)
        .into_iter()
        .map(|d| d.join("pids.max"))
        .find(|f| f.exists())
        .unwrap_or_else(|| panic!("no pids cgroup for {id}"));
    fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
        .trim()
        .to_string()
}

/// Pids of processes in container `id`'s cgroup (or below it) of any
/// hierarchy: `/moat/<leaf>` (raw bundles) or
/// `/moat-engines/<namespace>/<id>` (an engine's container that named no
/// cgroup).
pub fn processes_in_cgroup(id: &str) -> Vec<(i32, String)> {
    let engines = format!(
        "{}/",
        moat::harden::cgroups_path::ENGINE_FALLBACK_CGROUP_PARENT
    );
    let mut found = Vec::new();
    for pid in all_pids() {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let hit = text.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            let leaf = match path.strip_prefix(engines.as_str()) {
                // skip the namespace level
                Some(rest) => rest.split('/').nth(1),
                None => path
                    .strip_prefix("/moat/")
                    .and_then(|r| r.split('/').next()),
            };
            leaf.is_some_and(|leaf| is_leaf_of(leaf, id))
        });
        if hit {
            found.push((pid, proc_cmdline(pid)));
        }
    }
    found
}

/// `/proc/<pid>/cmdline`, NULs as spaces.
pub fn proc_cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// Processes (other than this one) whose argv has `root` as an argument:
/// moat processes, or forks of them, still working on this state root.
pub fn processes_using_root(root: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let roots: BTreeSet<String> = [root.to_path_buf(), canonical_root(root)]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    processes_with_argv()
        .into_iter()
        .filter(|(pid, argv)| *pid != me && argv.iter().any(|a| roots.contains(a)))
        // Zombies are reaped by their parent; only live ones count.
        .filter(|(pid, _)| process_alive(*pid))
        .map(|(pid, argv)| (pid, argv.join(" ")))
        .collect()
}

/// Every process's pid and argv (a process that ends meanwhile is left
/// out).
pub fn processes_with_argv() -> Vec<(i32, Vec<String>)> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv = raw
                .strip_suffix(b"\0")
                .unwrap_or(&raw)
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, argv))
        })
        .collect()
}

/// Every process's pid, from /proc.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A snapshot of everything moat keeps for container `id` of state root
/// `root`, to be compared with [`LeakCheck::verify`] after the container
/// is gone (deleted, or refused):
///
/// - libcontainer's state `<root>/<id>/` and moat's `<root>/@moat/<id>/`
///   (and any new entry in `<root>` or `<root>/@moat`);
/// - the container's directory `/run/moat-rootfs/<hash>/` with its rootfs
///   mount point, bind staging, netns pin and sysfs: no mountinfo line
///   naming them, no directory left;
/// - moat's table in any network namespace the test let it join
///   ([`LeakCheck::touching_netns`]);
/// - id-pool files owned by (`root`, `id`) (and any new one owned by
///   `root`);
/// - cgroup directories `/sys/fs/cgroup/<hierarchy>/moat/<id>` (or
///   `<root tag>@<id>`);
/// - processes in that cgroup, and processes with `root` in their argv.
pub struct LeakCheck {
    pub root: PathBuf,
    pub canonical_root: PathBuf,
    pub id: String,
    pool_dir: PathBuf,
    root_entries: BTreeSet<String>,
    private_entries: BTreeSet<String>,
    pool_before: BTreeMap<String, String>,
    /// Network namespaces (by path) the test let the container join: after
    /// delete, none may still hold moat's `inet moat` table.
    touched_netns: Vec<PathBuf>,
}

impl LeakCheck {
    pub fn snapshot(root: &Path, id: &str) -> LeakCheck {
        let canonical = canonical_root(root);
        let pool_dir = PathBuf::from(&effective_policy().user_namespace.pool_dir);
        LeakCheck {
            root: root.to_path_buf(),
            canonical_root: canonical.clone(),
            id: id.to_string(),
            root_entries: list_dir(&canonical),
            private_entries: list_dir(&moat::state::private_root(&canonical)),
            pool_before: pool_entries(&pool_dir),
            pool_dir,
            touched_netns: Vec::new(),
        }
    }

    /// Also checks that the network namespace at `path` (one the container
    /// joined, which outlives it) holds no `inet moat` table afterwards.
    pub fn touching_netns(mut self, path: &Path) -> LeakCheck {
        self.touched_netns.push(path.to_path_buf());
        self
    }

    /// The container's rootfs mount point.
    pub fn mount_point(&self) -> PathBuf {
        moat::container::ContainerPaths::new(&self.canonical_root, &self.id).mount_point
    }

    /// Everything left behind right now (empty when clean).
    pub fn leaks(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        let root = canonical_root(&self.root);
        let id = &self.id;
        let per_id = single_component(id);
        // Every host path of the container, as moat itself derives them.
        let paths = moat::container::ContainerPaths::new(&root, id);

        // State directories.
        if per_id {
            for dir in [&paths.libcontainer_dir, &paths.private_dir] {
                if fs::symlink_metadata(dir).is_ok() {
                    leaks.push(format!("state directory {} still exists", dir.display()));
                }
            }
        }
        for name in list_dir(&root).difference(&self.root_entries) {
            if name != moat::state::PRIVATE_DIR && !(per_id && name == id) {
                leaks.push(format!(
                    "new entry {name:?} in state root {}",
                    root.display()
                ));
            }
        }
        let private_root = moat::state::private_root(&root);
        // moat's resolver is the root's, shared by every container with
        // egress rules: its directory and processes are this container's
        // leak only once no other container is registered with it; this
        // container's registration is.
        let registered = moat::resolver::dir(&root).join("containers");
        if per_id && fs::symlink_metadata(registered.join(id)).is_ok() {
            leaks.push(format!(
                "resolver registration {} left",
                registered.join(id).display()
            ));
        }
        let resolver_shared = list_dir(&registered)
            .iter()
            .any(|n| !n.starts_with('.') && n != id);
        let resolver_name = moat::resolver::dir(&root)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        for name in list_dir(&private_root).difference(&self.private_entries) {
            if resolver_shared && Some(name) == resolver_name.as_ref() {
                continue;
            }
            if !(per_id && name == id) {
                leaks.push(format!(
                    "new entry {name:?} in moat's private root {}",
                    private_root.display()
                ));
            }
        }

        // Rootfs mount and bind staging.
        let mp_str = paths.mount_point.display().to_string();
        for line in mountinfo_lines(&mp_str) {
            leaks.push(format!("mount left for {mp_str}: {line}"));
        }
        for dir in [
            &paths.mount_point,
            &paths.staging,
            &paths.netns,
            &paths.sysfs,
            &paths.rootfs_dir,
            &paths.learn_socket,
        ] {
            if fs::symlink_metadata(dir).is_ok() {
                leaks.push(format!("rootfs directory {} still exists", dir.display()));
            }
        }
        for ns in &self.touched_netns {
            if fs::symlink_metadata(ns).is_err() {
                continue;
            }
            let listed = Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args(["nft", "list", "table", "inet", "moat"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if listed.is_ok_and(|s| s.success()) {
                leaks.push(format!(
                    "network namespace {} still holds moat's table",
                    ns.display()
                ));
            }
        }

        // Id pool.
        // A slot's first line names its owner (state root, tab, id); a
        // second line may record the container's cgroup.
        let tag = format!("{}\t{}", root.display(), id);
        let now = pool_entries(&self.pool_dir);
        for (slot, content) in &now {
            if content.lines().next() == Some(tag.as_str()) {
                leaks.push(format!(
                    "id-pool entry {} still owned by this container",
                    self.pool_dir.join(slot).display()
                ));
            } else if content.starts_with(&format!("{}\t", root.display()))
                && self.pool_before.get(slot) != Some(content)
            {
                leaks.push(format!(
                    "new id-pool entry {} owned by this state root: {content:?}",
                    self.pool_dir.join(slot).display()
                ));
            }
        }

        // Cgroups and processes.
        if per_id {
            for dir in cgroup_dirs(id) {
                if dir.exists() {
                    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                    leaks.push(format!(
                        "cgroup {} still exists (procs: {:?})",
                        dir.display(),
                        procs.split_whitespace().collect::<Vec<_>>()
                    ));
                }
            }
            for (pid, cmd) in processes_in_cgroup(id) {
                leaks.push(format!(
                    "process {pid} ({cmd}) still in container {id}'s cgroup"
                ));
            }
        }
        for (pid, cmd) in processes_using_root(&self.root) {
            let resolver = cmd.ends_with(" resolver") || cmd.ends_with(" resolver --worker");
            if resolver_shared && resolver {
                continue;
            }
            leaks.push(format!("process {pid} still working on this root: {cmd}"));
        }
        leaks
    }

    /// Panics with the list of leaks unless everything is gone (waiting up
    /// to a few seconds for exiting processes to be reaped).
    pub fn verify(&self) {
        let start = Instant::now();
        loop {
            let leaks = self.leaks();
            if leaks.is_empty() {
                return;
            }
            // Generous: moat's resolver stops by itself a moment after
            // the last container is gone (`moat::resolver::LINGER`).
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "container {:?} of root {} leaked:\n  {}",
                    if self.id.len() > 80 {
                        format!("{}…({} chars)", &self.id[..40], self.id.len())
                    } else {
                        self.id.clone()
                    },
                    self.root.display(),
                    leaks.join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `argv` on the host as uid/gid 65534 with no groups (stdin from
/// /dev/null, output captured).
pub fn as_nobody(argv: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
}

/// Makes `link` a symlink to `target` (test convenience).
pub fn make_symlink(target: &str, link: &Path) {
    let _ = fs::remove_file(link);
    symlink(target, link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}

/// Reads a file, "" when missing.
pub fn read_or_empty(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

/// A policy file in the env's temp dir (everything not named is default).
pub fn policy_file(env: &Env, name: &str, text: &str) -> String {
    let p = env.tmp.path().join(name);
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// TOML list of strings.
pub fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The container's init pid from `moat state`.
pub fn init_pid(env: &Env, id: &str) -> i32 {
    let pid = env.state(id)["pid"].as_i64().unwrap_or(0) as i32;
    assert!(pid > 0, "container {id} has no pid");
    pid
}

/// `create` (with the given global options before it) and `start`; the
/// returned guard force-deletes the container.
pub fn start_with(env: &Env, global: &[&str], bundle: &Bundle, id: &str) -> ContainerGuard {
    let guard = env.guard(id);
    let mut args: Vec<&str> = global.to_vec();
    args.extend_from_slice(&["create", "--bundle", bundle.path(), id]);
    env.moat(&args).assert_ok();
    env.moat(&["start", id]).assert_ok();
    env.wait_status(id, "running", Duration::from_secs(10));
    guard
}

/// Runs `sh -c script` in the container (stderr folded into stdout by
/// the script itself where it matters).
pub fn exec_sh(env: &Env, id: &str, script: &str) -> Out {
    env.moat(&["exec", id, "sh", "-c", script])
}

/// Asserts the map is moat's single unprivileged range; returns the host
/// start.
#[track_caller]
pub fn assert_moat_id_map(text: &str, what: &str) -> u64 {
    let m = containerd::id_map(text);
    assert_eq!(m.len(), 1, "{what}: expected one range, got {text:?}");
    let (inside, host, size) = m[0];
    assert_eq!(
        inside, 0,
        "{what}: range must start at container id 0: {text:?}"
    );
    assert_ne!(
        host, 0,
        "{what}: identity mapping (container root is host root): {text:?}"
    );
    assert!(
        host >= HOST_ID_BASE,
        "{what}: host start {host} < {HOST_ID_BASE}: {text:?}"
    );
    assert_eq!(size, RANGE_SIZE, "{what}: range size: {text:?}");
    host
}

impl Env {
    /// A bundle where containerd makes a task's (namespace `moby` for
    /// docker, `k8s.io` for the CRI): `<tmp>/engine-state/
    /// io.containerd.runtime.v2.task/<namespace>/<id>`, every directory
    /// root-owned and writable by root alone, so moat takes it for a bundle
    /// an engine made for `id` (`moat::engine_bundle`). Create it under
    /// that id; any other id makes it a raw bundle.
    pub fn engine_bundle(&self, namespace: &str, id: &str, args: &[&str]) -> Bundle {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self
            .tmp
            .path()
            .join("engine-state")
            .join(moat::engine_bundle::TASK_DIR)
            .join(namespace)
            .join(id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&dir)
            .expect("create engine bundle dir");
        copy_rootfs(&dir.join("rootfs"));
        let b = Bundle {
            dir,
            config: base_config(args),
        };
        b.write();
        b
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn id_pool_constants_are_the_default_policys() {
        let ns = moat::policy::Policy::default().user_namespace;
        assert_eq!(super::HOST_ID_BASE, u64::from(ns.host_id_base));
        assert_eq!(super::RANGE_SIZE, u64::from(ns.range_size));
    }
}
