//! Integration tests of `containerd-shim-moat-v2` under a real containerd.
//!
//! Each test starts its own containerd (root, state and sockets in a
//! temporary directory, CRI disabled) whose PATH starts with
//! `target/release`, so containerd finds the shim there and the shim finds
//! `moat` next to itself. The busybox image is imported from docker's
//! `moat-busybox` (made by hack/docker-image.sh). Containers are driven
//! with `ctr --runtime io.containerd.moat.v2`.
//!
//! ```sh
//! cargo build --release && bash hack/docker-image.sh
//! cargo test --release -p moat-integration --test shim -- --test-threads=1
//! ```
//!
//! Without containerd or the image the tests are skipped with a message,
//! unless `CI` is set: then that is a failure. Every test checks that
//! nothing is left: moat's state under the shim's root, rootfs mounts, the
//! id pool, cgroups, processes, and the shim itself.
//!
//! No network traffic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat_integration::{require_root, wait_timeout, workspace_dir, LeakCheck, Out};

const RUNTIME: &str = "io.containerd.moat.v2";
const SHIM: &str = "containerd-shim-moat-v2";
const IMAGE: &str = "docker.io/library/moat-busybox:latest";
const DOCKER_IMAGE: &str = "moat-busybox";
const NAMESPACE: &str = "moat-shim-test";
/// The shim's default moat state root, one directory per namespace.
const SHIM_ROOT: &str = "/run/containerd/moat";
/// CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE.
const ALLOWED_CAPS: u64 = 0x5fb;
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// containerd-shim-runc-v2 takes about 13 MB per container here; the moat
/// shim must stay well below.
const MAX_SHIM_RSS_KB: u64 = 10 * 1024;

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn skip_or_fail(test: &str, why: &str) {
    if ci() {
        panic!("{test}: {why} (required under CI)");
    }
    eprintln!("SKIPPED {test}: {why}; set CI=true to make this a failure");
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Out {
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

fn read_all(mut r: impl std::io::Read) -> String {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A containerd of the test's own; stopped (by pid) on drop, with every
/// task and container of the test's namespace removed first.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    socket: PathBuf,
}

impl Containerd {
    /// None when the test must be skipped (no containerd, no image).
    fn start(test: &str) -> Option<Containerd> {
        require_root();
        let release = workspace_dir().join("target/release");
        for bin in [SHIM, "moat"] {
            assert!(
                release.join(bin).is_file(),
                "{} missing: run `cargo build --release` first",
                release.join(bin).display()
            );
        }
        if Command::new("containerd")
            .arg("--version")
            .output()
            .is_err()
        {
            skip_or_fail(test, "containerd is not installed");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("moat-shim-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                sock = socket.display(),
            ),
        )
        .expect("write containerd config");
        let child = spawn_containerd(dir.path());
        let containerd = Containerd { dir, child, socket };
        containerd.wait_ready();
        if !containerd.import_image() {
            skip_or_fail(
                test,
                "image moat-busybox is not in docker (run hack/docker-image.sh)",
            );
            return None;
        }
        Some(containerd)
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while !self.ctr(&["version"]).success() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops this containerd (by pid) and starts it again on the same
    /// root and state: running shims must be found again.
    fn restart(&mut self) {
        // SAFETY: signalling the containerd this test started, by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if wait_child(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.child = spawn_containerd(self.dir.path());
        self.wait_ready();
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(NAMESPACE)
            .args(args);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Out {
        run_with_timeout(self.ctr_command(args), CMD_TIMEOUT)
    }

    fn import_image(&self) -> bool {
        let save = Command::new("docker")
            .args(["save", DOCKER_IMAGE])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut save) = save else {
            return false;
        };
        let stdout = save.stdout.take().expect("piped");
        let import = self
            .ctr_command(&["images", "import", "-"])
            .stdin(stdout)
            .output()
            .expect("ctr images import");
        let saved = save.wait().is_ok_and(|s| s.success());
        saved && import.status.success()
    }

    /// `ctr run` with the moat runtime; `extra` goes before the image.
    fn run(&self, extra: &[&str], id: &str, argv: &[&str]) -> Out {
        let mut args = vec!["run", "--runtime", RUNTIME];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.push(id);
        args.extend_from_slice(argv);
        self.ctr(&args)
    }

    /// The status column of `ctr task ls` for `id` ("" when absent).
    fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_default()
            .to_string()
    }

    fn wait_task_status(&self, id: &str, want: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let status = self.task_status(id);
            if want.contains(&status.as_str()) {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "task {id} is {status:?}, expected one of {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Live shim processes started by this containerd.
    fn shims(&self) -> Vec<i32> {
        let sock = self.socket.display().to_string();
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(raw) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.first().is_some_and(|a| a.ends_with(SHIM)) && args.contains(&sock) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The socket files (`-socket`) of this containerd's live shims.
    fn shim_sockets(&self) -> Vec<PathBuf> {
        self.shims()
            .into_iter()
            .filter_map(|pid| {
                let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<String> = raw
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let i = args.iter().position(|a| a == "-socket")?;
                let socket = args.get(i + 1)?;
                Some(PathBuf::from(
                    socket.strip_prefix("unix://").unwrap_or(socket),
                ))
            })
            .collect()
    }

    /// Removes a task and its container whatever state they are in.
    fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        let start = Instant::now();
        while !matches!(self.task_status(id).as_str(), "STOPPED" | "UNKNOWN" | "")
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.ctr(&["task", "delete", id]);
        let _ = self.ctr(&["containers", "delete", id]);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let listed = self.ctr(&["containers", "ls", "-q"]);
        for id in listed.stdout.split_whitespace() {
            self.remove(id);
        }
        let _ = self.ctr(&["images", "rm", IMAGE]);
        // SAFETY: signalling the containerd this test started, by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if wait_child(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Shims this containerd started (only left when a test failed).
        for pid in self.shims() {
            // SAFETY: a shim of this test's containerd, by pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // The namespace's parent cgroups containerd asked for.
        for h in cgroup_hierarchies() {
            let _ = fs::remove_dir(h.join(NAMESPACE));
        }
        let _ = fs::remove_dir_all(Path::new(SHIM_ROOT).join(NAMESPACE));
    }
}

/// containerd on `dir/config.toml`, with target/release first in PATH,
/// appending to `dir/containerd.log`.
fn spawn_containerd(dir: &Path) -> Child {
    let path = format!(
        "{}:{}",
        workspace_dir().join("target/release").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .expect("log file");
    // containerd names a task's cgroup /<namespace>/<id>: the test's
    // namespace must be an allowed cgroup parent (threat T22). The policy
    // reaches moat through containerd's and the shim's environment.
    let mut parents: Vec<String> = moat::policy::DEFAULT_CGROUP_PARENTS
        .iter()
        .map(|p| format!("{p:?}"))
        .collect();
    parents.push(format!("\"/{NAMESPACE}\""));
    let policy = dir.join("policy.toml");
    fs::write(
        &policy,
        format!("[cgroups]\nparents = [{}]\n", parents.join(", ")),
    )
    .expect("policy file");
    Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        .env("MOAT_POLICY", &policy)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("start containerd")
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    moat_integration::cgroup_hierarchies()
}

/// Everything a container of this test may leave, checked after delete.
struct Leaks {
    check: LeakCheck,
    id: String,
    /// Shim sockets seen while the container ran; gone after delete.
    sockets: Vec<PathBuf>,
}

impl Leaks {
    fn snapshot(id: &str) -> Leaks {
        Leaks {
            check: LeakCheck::snapshot(&Path::new(SHIM_ROOT).join(NAMESPACE), id),
            id: id.to_string(),
            sockets: Vec::new(),
        }
    }

    /// Remembers the sockets of the shims running now.
    fn note_shims(&mut self, containerd: &Containerd) {
        self.sockets.extend(containerd.shim_sockets());
    }

    fn verify(&self, containerd: &Containerd) {
        self.check.verify();
        let start = Instant::now();
        loop {
            let mut leaks = Vec::new();
            for h in cgroup_hierarchies() {
                let dir = h.join(NAMESPACE).join(&self.id);
                if dir.exists() {
                    leaks.push(format!("cgroup {} still exists", dir.display()));
                }
            }
            for socket in &self.sockets {
                if fs::symlink_metadata(socket).is_ok() {
                    leaks.push(format!("shim socket {} still exists", socket.display()));
                }
            }
            let shims = containerd.shims();
            if !shims.is_empty() {
                leaks.push(format!("shim processes still running: {shims:?}"));
            }
            let bundle = containerd
                .dir
                .path()
                .join("state/io.containerd.runtime.v2.task")
                .join(NAMESPACE)
                .join(&self.id);
            if bundle.exists() {
                leaks.push(format!("bundle {} still exists", bundle.display()));
            }
            let tmp = containerd.dir.path().display().to_string();
            for line in fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
            {
                if line.contains(&tmp) {
                    leaks.push(format!("mount left: {line}"));
                }
            }
            if leaks.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "container {} leaked:\n  {}",
                self.id,
                leaks.join("\n  ")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn status_hex(text: &str, field: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{text}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or_default(), 16)
        .unwrap_or_else(|e| panic!("bad {field} line {line:?}: {e}"))
}

fn rss_kb(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

#[test]
fn run_is_hardened_prints_output_and_returns_exit_code() {
    let Some(containerd) = Containerd::start("run_is_hardened_prints_output_and_returns_exit_code")
    else {
        return;
    };
    let id = "shim-run";
    let leaks = Leaks::snapshot(id);
    let script = "echo hello-from-moat; grep -E '^(CapEff|Seccomp):' /proc/self/status; \
                  echo uidmap $(cat /proc/self/uid_map); \
                  if touch /probe 2>/dev/null; then echo root-writable; else echo root-readonly; fi; \
                  echo err-line >&2; exit 7";
    let out = containerd.run(&["--rm"], id, &["sh", "-c", script]);
    assert_eq!(out.code, Some(7), "exit code must propagate:\n{out}");
    assert!(out.stdout.contains("hello-from-moat"), "{out}");
    assert!(
        out.stderr.contains("err-line"),
        "stderr must reach ctr:\n{out}"
    );
    let cap_eff = status_hex(&out.stdout, "CapEff");
    assert_eq!(cap_eff & !ALLOWED_CAPS, 0, "CapEff {cap_eff:#x}:\n{out}");
    assert!(out.stdout.contains("Seccomp:\t2"), "{out}");
    let map: Vec<u64> = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("uidmap "))
        .unwrap_or_else(|| panic!("no uid_map:\n{out}"))
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(map.len(), 3, "one uid_map range:\n{out}");
    assert_eq!(map[0], 0);
    assert!(
        map[1] != 0 && map[1] + map[2] > map[1],
        "container root maps to host 0:\n{out}"
    );
    assert!(out.stdout.contains("root-readonly"), "{out}");
    leaks.verify(&containerd);
}

#[test]
fn lifecycle_exec_ps_pause_metrics_kill_delete() {
    let Some(containerd) = Containerd::start("lifecycle_exec_ps_pause_metrics_kill_delete") else {
        return;
    };
    let id = "shim-life";
    let mut leaks = Leaks::snapshot(id);
    containerd.run(&["-d"], id, &["sleep", "1000"]).assert_ok();
    leaks.note_shims(&containerd);
    assert_eq!(containerd.task_status(id), "RUNNING");

    // exec: output and exit code, and the same sandbox as init.
    let out = containerd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "probe",
        id,
        "sh",
        "-c",
        "echo exec-says-hi; grep -E '^(CapEff|Seccomp):' /proc/self/status; exit 5",
    ]);
    assert_eq!(out.code, Some(5), "exec exit code:\n{out}");
    assert!(out.stdout.contains("exec-says-hi"), "{out}");
    assert_eq!(
        status_hex(&out.stdout, "CapEff") & !ALLOWED_CAPS,
        0,
        "{out}"
    );
    assert!(out.stdout.contains("Seccomp:\t2"), "{out}");

    // ps lists the init process.
    let ps = containerd.ctr(&["task", "ps", id]);
    ps.assert_ok();
    let pids: Vec<i32> = ps
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!pids.is_empty(), "no pids:\n{ps}");
    for pid in &pids {
        let cmd = moat_integration::proc_cmdline(*pid);
        assert!(cmd.contains("sleep"), "pid {pid} is {cmd:?}:\n{ps}");
    }

    // An exec that cannot start fails (and does not hang ctr).
    let bad = containerd.ctr(&["task", "exec", "--exec-id", "bad", id, "/nonexistent"]);
    assert!(!bad.success(), "exec of a missing binary must fail:\n{bad}");
    eprintln!("exec of a missing binary: {}", bad.stderr.trim());
    assert_eq!(containerd.task_status(id), "RUNNING");

    // A detached exec'd process, then a signal to it alone.
    containerd
        .ctr(&[
            "task",
            "exec",
            "--detach",
            "--exec-id",
            "sleeper",
            id,
            "sleep",
            "1000",
        ])
        .assert_ok();
    let count_pids = || {
        let ps = containerd.ctr(&["task", "ps", id]);
        ps.assert_ok();
        ps.stdout.lines().skip(1).count()
    };
    let start = Instant::now();
    while count_pids() != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "exec'd sleep not listed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    containerd
        .ctr(&[
            "task",
            "kill",
            "--exec-id",
            "sleeper",
            "--signal",
            "SIGKILL",
            id,
        ])
        .assert_ok();
    let start = Instant::now();
    while count_pids() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "exec'd sleep survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(containerd.task_status(id), "RUNNING", "init must survive");

    // pause / resume.
    containerd.ctr(&["task", "pause", id]).assert_ok();
    assert_eq!(containerd.task_status(id), "PAUSED");
    let freezer = Path::new("/sys/fs/cgroup/freezer").join(NAMESPACE).join(id);
    if freezer.exists() {
        let state = fs::read_to_string(freezer.join("freezer.state")).unwrap_or_default();
        assert_eq!(state.trim(), "FROZEN", "{}", freezer.display());
    }
    containerd.ctr(&["task", "resume", id]).assert_ok();
    assert_eq!(containerd.task_status(id), "RUNNING");

    // metrics: numbers from the container's cgroup.
    let metrics = containerd.ctr(&["task", "metrics", id]);
    metrics.assert_ok();
    let value = |key: &str| -> u64 {
        metrics
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {key}:\n{metrics}"))
    };
    assert!(value("memory.usage_in_bytes") > 0, "{metrics}");
    assert!(value("cpuacct.usage") > 0, "{metrics}");
    assert_eq!(value("pids.current"), 1, "{metrics}");

    // The shim's footprint with one idle container.
    let shims = containerd.shims();
    assert_eq!(shims.len(), 1, "one shim per container: {shims:?}");
    let rss = rss_kb(shims[0]);
    eprintln!("containerd-shim-moat-v2 VmRSS with one idle container: {rss} kB");
    assert!(rss < MAX_SHIM_RSS_KB, "shim RSS {rss} kB");

    // SIGTERM is ignored by sleep as pid 1; SIGKILL stops it.
    containerd
        .ctr(&["task", "kill", "--signal", "SIGKILL", id])
        .assert_ok();
    containerd.wait_task_status(id, &["STOPPED"]);
    let del = containerd.ctr(&["task", "delete", id]);
    del.assert_ok();
    assert!(
        del.stdout.contains("137") || del.stderr.contains("137"),
        "{del}"
    );
    containerd.ctr(&["containers", "delete", id]).assert_ok();
    leaks.verify(&containerd);
}

#[test]
fn stdin_reaches_the_container_and_closes() {
    let Some(containerd) = Containerd::start("stdin_reaches_the_container_and_closes") else {
        return;
    };
    let id = "shim-stdin";
    let leaks = Leaks::snapshot(id);
    // `cat` ends only when the shim passes stdin's EOF on (CloseIO). The
    // input is written once the task runs: ctr asks for CloseIO only when
    // its stdin ends after the task exists (with runc's shim too).
    let mut cmd = containerd.ctr_command(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "sh",
        "-c",
        "cat; echo done",
    ]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ctr run");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));
    let start = Instant::now();
    while containerd.task_status(id) != "RUNNING" {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("task {id} never ran");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stdin
        .write_all(b"line-through-stdin\n")
        .expect("write stdin");
    drop(stdin);
    let status = wait_timeout(&mut child, CMD_TIMEOUT, "ctr run with stdin");
    let out = Out {
        code: status.code(),
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        cmdline: "ctr run (stdin)".into(),
    };
    out.assert_ok();
    assert!(out.stdout.contains("line-through-stdin"), "{out}");
    assert!(out.stdout.contains("done"), "{out}");
    leaks.verify(&containerd);
}

#[test]
fn kill_all_stops_every_process() {
    let Some(containerd) = Containerd::start("kill_all_stops_every_process") else {
        return;
    };
    let id = "shim-killall";
    let mut leaks = Leaks::snapshot(id);
    containerd
        .run(&["-d"], id, &["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
        .assert_ok();
    leaks.note_shims(&containerd);
    let start = Instant::now();
    loop {
        let ps = containerd.ctr(&["task", "ps", id]);
        if ps.stdout.lines().skip(1).count() >= 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{ps}");
        std::thread::sleep(Duration::from_millis(100));
    }
    containerd
        .ctr(&["task", "kill", "--all", "--signal", "SIGKILL", id])
        .assert_ok();
    containerd.wait_task_status(id, &["STOPPED"]);
    containerd.ctr(&["task", "delete", id]).assert_ok();
    containerd.ctr(&["containers", "delete", id]).assert_ok();
    leaks.verify(&containerd);
}

#[test]
fn terminal_container_gets_a_tty() {
    let Some(containerd) = Containerd::start("terminal_container_gets_a_tty") else {
        return;
    };
    if Command::new("script").arg("--version").output().is_err() {
        skip_or_fail(
            "terminal_container_gets_a_tty",
            "script(1) is not installed",
        );
        return;
    }
    let id = "shim-tty";
    let leaks = Leaks::snapshot(id);
    // script(1) gives ctr the terminal it needs for -t.
    let ctr = format!(
        "ctr --address {} --namespace {NAMESPACE} run --rm -t --runtime {RUNTIME} {IMAGE} {id} \
         sh -c 'tty; echo tty-ok; exit 4'",
        containerd.socket.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &ctr, "/dev/null"]);
    let out = run_with_timeout(cmd, CMD_TIMEOUT);
    assert_eq!(out.code, Some(4), "exit code through the terminal:\n{out}");
    assert!(out.stdout.contains("/dev/pts/"), "no pty:\n{out}");
    assert!(out.stdout.contains("tty-ok"), "{out}");
    leaks.verify(&containerd);

    // An exec'd process with a terminal.
    let id = "shim-tty-exec";
    let mut leaks = Leaks::snapshot(id);
    containerd.run(&["-d"], id, &["sleep", "1000"]).assert_ok();
    leaks.note_shims(&containerd);
    let ctr = format!(
        "ctr --address {} --namespace {NAMESPACE} task exec -t --exec-id term {id} \
         sh -c 'tty; echo exec-tty-ok; exit 3'",
        containerd.socket.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &ctr, "/dev/null"]);
    let out = run_with_timeout(cmd, CMD_TIMEOUT);
    assert_eq!(
        out.code,
        Some(3),
        "exec exit code through the terminal:\n{out}"
    );
    assert!(out.stdout.contains("/dev/pts/"), "no pty:\n{out}");
    assert!(out.stdout.contains("exec-tty-ok"), "{out}");
    containerd.remove(id);
    leaks.verify(&containerd);
}

#[test]
fn containers_of_one_pod_share_a_shim() {
    let Some(containerd) = Containerd::start("containers_of_one_pod_share_a_shim") else {
        return;
    };
    let pod = "io.kubernetes.cri.sandbox-id=shim-pod";
    let ids = ["shim-pod-a", "shim-pod-b"];
    let mut leaks: Vec<Leaks> = ids.iter().map(|id| Leaks::snapshot(id)).collect();
    for id in ids {
        containerd
            .run(&["-d", "--annotation", pod], id, &["sleep", "1000"])
            .assert_ok();
    }
    for l in leaks.iter_mut() {
        l.note_shims(&containerd);
    }
    let shims = containerd.shims();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    // Deleting the first container keeps the shim for the second.
    containerd.remove(ids[0]);
    assert_eq!(containerd.shims(), shims, "the pod's shim must stay");
    assert_eq!(containerd.task_status(ids[1]), "RUNNING");
    let out = containerd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x",
        ids[1],
        "echo",
        "still-here",
    ]);
    out.assert_ok();
    assert!(out.stdout.contains("still-here"), "{out}");
    containerd.remove(ids[1]);
    for l in &leaks {
        l.verify(&containerd);
    }
}

#[test]
fn killed_shim_is_cleaned_up() {
    let Some(containerd) = Containerd::start("killed_shim_is_cleaned_up") else {
        return;
    };
    let id = "shim-crash";
    let mut leaks = Leaks::snapshot(id);
    containerd.run(&["-d"], id, &["sleep", "1000"]).assert_ok();
    leaks.note_shims(&containerd);
    let shims = containerd.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    // SAFETY: the shim this test's containerd started, by pid.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };
    let status = containerd.wait_task_status(id, &["STOPPED", "UNKNOWN", ""]);
    eprintln!("task status after the shim was killed: {status:?}");
    let _ = containerd.ctr(&["task", "delete", id]);
    containerd.ctr(&["containers", "delete", id]).assert_ok();
    leaks.verify(&containerd);
}

#[test]
fn oom_kill_is_published() {
    let Some(containerd) = Containerd::start("oom_kill_is_published") else {
        return;
    };
    let id = "shim-oom";
    let leaks = Leaks::snapshot(id);
    let mut events = containerd.ctr_command(&["events"]);
    events
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut events = events.spawn().expect("ctr events");
    let stdout = events.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || read_all(stdout));
    // dd's 64 MiB buffer cannot fit under a 16 MiB limit.
    let out = containerd.run(
        &["--rm", "--memory-limit", "16777216"],
        id,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    assert_eq!(out.code, Some(137), "the OOM killer must end dd:\n{out}");
    // containerd forwards the shim's events; give the last ones a moment.
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let _ = events.wait();
    let seen = reader.join().unwrap_or_default();
    let oom = seen
        .lines()
        .any(|l| l.contains("/tasks/oom") && l.contains(id));
    assert!(oom, "no /tasks/oom event for {id}:\n{seen}");
    leaks.verify(&containerd);
}

#[test]
fn containerd_restart_reconnects_to_the_shim() {
    let Some(mut containerd) = Containerd::start("containerd_restart_reconnects_to_the_shim")
    else {
        return;
    };
    let id = "shim-restart";
    let mut leaks = Leaks::snapshot(id);
    containerd.run(&["-d"], id, &["sleep", "1000"]).assert_ok();
    leaks.note_shims(&containerd);
    let shims = containerd.shims();
    containerd.restart();
    assert_eq!(
        containerd.shims(),
        shims,
        "the shim must outlive containerd"
    );
    assert_eq!(containerd.task_status(id), "RUNNING");
    let out = containerd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        id,
        "echo",
        "reconnected",
    ]);
    out.assert_ok();
    assert!(out.stdout.contains("reconnected"), "{out}");
    containerd.remove(id);
    leaks.verify(&containerd);
}

#[test]
fn refused_container_reports_moat_error_and_leaves_nothing() {
    let Some(containerd) =
        Containerd::start("refused_container_reports_moat_error_and_leaves_nothing")
    else {
        return;
    };
    let id = "shim-refused";
    let leaks = Leaks::snapshot(id);
    // moat refuses privileged containers; the shim passes moat's reason on.
    let out = containerd.run(&["--rm", "--privileged"], id, &["true"]);
    assert!(
        !out.success(),
        "a privileged container must be refused:\n{out}"
    );
    assert!(
        out.stderr.to_lowercase().contains("privileged"),
        "ctr must show moat's reason:\n{out}"
    );
    eprintln!("refusal as ctr shows it:\n{}", out.stderr.trim());
    let _ = containerd.ctr(&["containers", "delete", id]);
    leaks.verify(&containerd);
}
