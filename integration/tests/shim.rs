//! Integration tests of `containerd-shim-moat-v2` under a real containerd.
//!
//! Each test starts its own containerd (`Containerd::start_for_ctr` of
//! moat_integration::containerd: root, state and sockets in a temporary
//! directory, CRI disabled) whose PATH starts with `target/release`, so
//! containerd finds the shim there and the shim finds `moat` next to
//! itself. The busybox image is imported from docker's
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
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moat_integration::cmd::skip_unless_ci;
use moat_integration::containerd::{
    containerd_bin, ctr_bin, Containerd, TaskLeakCheck, SHIM_STATE_ROOT,
};
use moat_integration::{
    cap_field, docker, read_all, run_within, status_field, wait_timeout, workspace_dir, Out,
    ALLOWED_CAPS_MASK, DEFAULT_TIMEOUT,
};

const RUNTIME: &str = "io.containerd.moat.v2";
const SHIM: &str = "containerd-shim-moat-v2";
/// docker's moat-busybox as ctr names it once imported.
const CTR_IMAGE: &str = "docker.io/library/moat-busybox:latest";
const NAMESPACE: &str = "moat-shim-test";
/// containerd-shim-runc-v2 takes about 13 MB per container here; the moat
/// shim must stay well below.
const MAX_SHIM_RSS_KB: u64 = 10 * 1024;

/// The test's own containerd (CRI off, target/release first on its PATH)
/// with moat-busybox imported into [`NAMESPACE`]; None when the test must
/// be skipped (no containerd, no image).
fn shim_containerd(test: &str) -> Option<Containerd> {
    shim_containerd_with(test, &[])
}

/// [`shim_containerd`] with `first` ahead of target/release on
/// containerd's PATH.
fn shim_containerd_with(test: &str, first: &[PathBuf]) -> Option<Containerd> {
    let release = workspace_dir().join("target/release");
    for bin in [SHIM, "moat"] {
        assert!(
            release.join(bin).is_file(),
            "{} missing: run `cargo build --release` first",
            release.join(bin).display()
        );
    }
    if Command::new(containerd_bin())
        .arg("--version")
        .output()
        .is_err()
    {
        skip_unless_ci(test, "containerd is not installed");
        return None;
    }
    let dirs: Vec<PathBuf> = first.iter().cloned().chain([release]).collect();
    let containerd = Containerd::start_for_ctr(NAMESPACE, &dirs);
    if !containerd.import_docker_image(docker::IMAGE) {
        skip_unless_ci(
            test,
            "image moat-busybox is not in docker (run hack/docker-image.sh)",
        );
        return None;
    }
    Some(containerd)
}

/// `ctr run` with the moat runtime; `extra` goes before the image.
fn moat_run(containerd: &Containerd, extra: &[&str], id: &str, argv: &[&str]) -> Out {
    containerd.ctr_run(RUNTIME, CTR_IMAGE, extra, id, argv)
}

/// Everything container `id` may leave; moat's state is under the shim's
/// root for the test's namespace.
fn task_leak_check(id: &str) -> TaskLeakCheck {
    TaskLeakCheck::snapshot(&Path::new(SHIM_STATE_ROOT).join(NAMESPACE), id)
}

fn rss_kb(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&status, "VmRSS")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

#[test]
fn run_is_hardened_prints_output_and_returns_exit_code() {
    let Some(containerd) = shim_containerd("run_is_hardened_prints_output_and_returns_exit_code")
    else {
        return;
    };
    let id = "shim-run";
    let leaks = task_leak_check(id);
    let script = "echo hello-from-moat; grep -E '^(CapEff|Seccomp):' /proc/self/status; \
                  echo uidmap $(cat /proc/self/uid_map); \
                  if touch /probe 2>/dev/null; then echo root-writable; else echo root-readonly; fi; \
                  echo err-line >&2; exit 7";
    let out = moat_run(&containerd, &["--rm"], id, &["sh", "-c", script]);
    assert_eq!(out.code, Some(7), "exit code must propagate:\n{out}");
    assert!(out.stdout.contains("hello-from-moat"), "{out}");
    assert!(
        out.stderr.contains("err-line"),
        "stderr must reach ctr:\n{out}"
    );
    let cap_eff = cap_field(&out.stdout, "CapEff");
    assert_eq!(
        cap_eff & !ALLOWED_CAPS_MASK,
        0,
        "CapEff {cap_eff:#x}:\n{out}"
    );
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
    let Some(containerd) = shim_containerd("lifecycle_exec_ps_pause_metrics_kill_delete") else {
        return;
    };
    let id = "shim-life";
    let mut leaks = task_leak_check(id);
    moat_run(&containerd, &["-d"], id, &["sleep", "1000"]).assert_ok();
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
        cap_field(&out.stdout, "CapEff") & !ALLOWED_CAPS_MASK,
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
    let shims = containerd.shim_pids();
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
    let Some(containerd) = shim_containerd("stdin_reaches_the_container_and_closes") else {
        return;
    };
    let id = "shim-stdin";
    let leaks = task_leak_check(id);
    // `cat` ends only when the shim passes stdin's EOF on (CloseIO). The
    // input is written once the task runs: ctr asks for CloseIO only when
    // its stdin ends after the task exists (with runc's shim too).
    let mut cmd = containerd.ctr_command(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        CTR_IMAGE,
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
    let status = wait_timeout(&mut child, DEFAULT_TIMEOUT, "ctr run with stdin");
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
    let Some(containerd) = shim_containerd("kill_all_stops_every_process") else {
        return;
    };
    let id = "shim-killall";
    let mut leaks = task_leak_check(id);
    moat_run(
        &containerd,
        &["-d"],
        id,
        &["sh", "-c", "sleep 1000 & sleep 1000 & wait"],
    )
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
    let Some(containerd) = shim_containerd("terminal_container_gets_a_tty") else {
        return;
    };
    if Command::new("script").arg("--version").output().is_err() {
        skip_unless_ci(
            "terminal_container_gets_a_tty",
            "script(1) is not installed",
        );
        return;
    }
    let id = "shim-tty";
    let leaks = task_leak_check(id);
    // script(1) gives ctr the terminal it needs for -t.
    let ctr = format!(
        "{} --address {} --namespace {NAMESPACE} run --rm -t --runtime {RUNTIME} {CTR_IMAGE} {id} \
         sh -c 'tty; echo tty-ok; exit 4'",
        ctr_bin().display(),
        containerd.layout.socket.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &ctr, "/dev/null"]);
    let out = run_within(cmd, DEFAULT_TIMEOUT);
    assert_eq!(out.code, Some(4), "exit code through the terminal:\n{out}");
    assert!(out.stdout.contains("/dev/pts/"), "no pty:\n{out}");
    assert!(out.stdout.contains("tty-ok"), "{out}");
    leaks.verify(&containerd);

    // An exec'd process with a terminal.
    let id = "shim-tty-exec";
    let mut leaks = task_leak_check(id);
    moat_run(&containerd, &["-d"], id, &["sleep", "1000"]).assert_ok();
    leaks.note_shims(&containerd);
    let ctr = format!(
        "{} --address {} --namespace {NAMESPACE} task exec -t --exec-id term {id} \
         sh -c 'tty; echo exec-tty-ok; exit 3'",
        ctr_bin().display(),
        containerd.layout.socket.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &ctr, "/dev/null"]);
    let out = run_within(cmd, DEFAULT_TIMEOUT);
    assert_eq!(
        out.code,
        Some(3),
        "exec exit code through the terminal:\n{out}"
    );
    assert!(out.stdout.contains("/dev/pts/"), "no pty:\n{out}");
    assert!(out.stdout.contains("exec-tty-ok"), "{out}");
    containerd.remove_task(id);
    leaks.verify(&containerd);
}

#[test]
fn containers_of_one_pod_share_a_shim() {
    let Some(containerd) = shim_containerd("containers_of_one_pod_share_a_shim") else {
        return;
    };
    let pod = "io.kubernetes.cri.sandbox-id=shim-pod";
    let ids = ["shim-pod-a", "shim-pod-b"];
    let mut leaks: Vec<TaskLeakCheck> = ids.iter().map(|id| task_leak_check(id)).collect();
    for id in ids {
        moat_run(
            &containerd,
            &["-d", "--annotation", pod],
            id,
            &["sleep", "1000"],
        )
        .assert_ok();
    }
    for l in leaks.iter_mut() {
        l.note_shims(&containerd);
    }
    let shims = containerd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    // Deleting the first container keeps the shim for the second.
    containerd.remove_task(ids[0]);
    assert_eq!(containerd.shim_pids(), shims, "the pod's shim must stay");
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
    containerd.remove_task(ids[1]);
    for l in &leaks {
        l.verify(&containerd);
    }
}

#[test]
fn killed_shim_is_cleaned_up() {
    let Some(containerd) = shim_containerd("killed_shim_is_cleaned_up") else {
        return;
    };
    let id = "shim-crash";
    let mut leaks = task_leak_check(id);
    moat_run(&containerd, &["-d"], id, &["sleep", "1000"]).assert_ok();
    leaks.note_shims(&containerd);
    let shims = containerd.shim_pids();
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
    let Some(containerd) = shim_containerd("oom_kill_is_published") else {
        return;
    };
    let id = "shim-oom";
    let leaks = task_leak_check(id);
    let mut events = containerd.ctr_command(&["events"]);
    events
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut events = events.spawn().expect("ctr events");
    let stdout = events.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || read_all(stdout));
    // dd's 64 MiB buffer cannot fit under a 16 MiB limit.
    let out = moat_run(
        &containerd,
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
    let Some(containerd) = shim_containerd("containerd_restart_reconnects_to_the_shim") else {
        return;
    };
    let id = "shim-restart";
    let mut leaks = task_leak_check(id);
    moat_run(&containerd, &["-d"], id, &["sleep", "1000"]).assert_ok();
    leaks.note_shims(&containerd);
    let shims = containerd.shim_pids();
    containerd.restart();
    assert_eq!(
        containerd.shim_pids(),
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
    containerd.remove_task(id);
    leaks.verify(&containerd);
}

#[test]
fn refused_container_reports_moat_error_and_leaves_nothing() {
    let Some(containerd) =
        shim_containerd("refused_container_reports_moat_error_and_leaves_nothing")
    else {
        return;
    };
    let id = "shim-refused";
    let leaks = task_leak_check(id);
    // moat refuses privileged containers; the shim passes moat's reason on.
    let out = moat_run(&containerd, &["--rm", "--privileged"], id, &["true"]);
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

/// T37: a containerd client's `BinaryName` runs only when it is the
/// installed moat. ctr passes `--runc-binary` only to a runtime named
/// `io.containerd.runc.v2`, so a directory first on containerd's PATH names
/// moat's shim so: the client's options then reach moat's shim as they
/// reach runc's.
#[test]
fn binary_name_must_be_the_installed_moat() {
    let test = "binary_name_must_be_the_installed_moat";
    // Root-owned and writable by no one else: the copy below passed the
    // old check (any root-controlled executable).
    let alias = tempfile::Builder::new()
        .prefix("moat-shim-t37.")
        .tempdir_in("/run")
        .expect("a directory under /run");
    let release = workspace_dir().join("target/release");
    std::os::unix::fs::symlink(
        release.join(SHIM),
        alias.path().join("containerd-shim-runc-v2"),
    )
    .expect("symlink");
    let copy = alias.path().join("moat");
    fs::copy("/bin/true", &copy).expect("copy /bin/true");
    let Some(containerd) = shim_containerd_with(test, &[alias.path().to_path_buf()]) else {
        return;
    };
    let id = "shim-binary-name";
    let leaks = task_leak_check(id);
    let copy_arg = copy.display().to_string();
    let out = containerd.ctr_run(
        "io.containerd.runc.v2",
        CTR_IMAGE,
        &["--rm", "--runc-binary", &copy_arg],
        id,
        &["true"],
    );
    assert!(!out.success(), "another program as BinaryName ran:\n{out}");
    assert!(
        out.stderr.contains(&format!(
            "runtime option BinaryName {copy_arg}: neither the installed moat"
        )),
        "the create must fail with the shim's reason:\n{out}"
    );
    let _ = containerd.ctr(&["containers", "delete", id]);
    // The installed moat (beside the shim), named by path, runs hardened.
    let installed = release.join("moat").display().to_string();
    let out = containerd.ctr_run(
        "io.containerd.runc.v2",
        CTR_IMAGE,
        &["--rm", "--runc-binary", &installed],
        id,
        &["grep", "^Seccomp:", "/proc/self/status"],
    );
    out.assert_ok();
    assert!(out.stdout.contains("Seccomp:\t2"), "{out}");
    leaks.verify(&containerd);
}

/// Issue 18: a task's metrics carry moat's egress counts. containerd's
/// clients decode task metrics only as cgroup `Metrics`, so they ride in its
/// `network` list as the pseudo-interface `moat-egress-blocked` (shim's
/// stats.rs). The container's own namespace gets a test-made veth pair
/// (both ends inside it, 10.231.254.1/24) so its packets reach moat's
/// rules; nothing leaves the namespace.
#[test]
fn task_metrics_carry_the_egress_counts() {
    let Some(containerd) = shim_containerd("task_metrics_carry_the_egress_counts") else {
        return;
    };
    let id = "shim-egress-metrics";
    let leaks = task_leak_check(id);
    moat_run(&containerd, &["-d"], id, &["sleep", "1000"]).assert_ok();
    let tasks = containerd.ctr(&["task", "ls"]);
    let pid: i32 = tasks
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid for {id}:\n{tasks}"));
    let pid = pid.to_string();
    for ip in [
        &[
            "link",
            "add",
            "moat-t18",
            "type",
            "veth",
            "peer",
            "name",
            "moat-t18p",
        ][..],
        &["addr", "add", "10.231.254.1/24", "dev", "moat-t18"],
        &["link", "set", "moat-t18p", "up"],
        &["link", "set", "moat-t18", "up"],
    ] {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid, "-n", "ip"]).args(ip);
        run_within(cmd, DEFAULT_TIMEOUT).assert_ok();
    }
    // Refused by moat's egress rules (the default allowlist is empty).
    let probe = containerd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "probe",
        id,
        "sh",
        "-c",
        "for i in 1 2 3; do nc -w 1 10.231.254.2 8080 </dev/null; done; true",
    ]);
    probe.assert_ok();
    let metrics = containerd.ctr(&["task", "metrics", "--format", "json", id]);
    metrics.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&metrics.stdout)
        .unwrap_or_else(|e| panic!("ctr task metrics is not JSON: {e}\n{metrics}"));
    let blocked = v["network"]
        .as_array()
        .and_then(|n| n.iter().find(|i| i["name"] == "moat-egress-blocked"))
        .unwrap_or_else(|| panic!("no moat-egress-blocked entry:\n{metrics}"));
    let dropped = blocked["tx_dropped"].as_u64().unwrap_or(0);
    assert!(
        dropped >= 3,
        "three refused connects at least:\n{metrics}\n{probe}"
    );
    assert!(blocked["tx_bytes"].as_u64().unwrap_or(0) > 0, "{metrics}");
    // The cgroup numbers are still there.
    assert!(
        v["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{metrics}"
    );
    containerd.remove_task(id);
    leaks.verify(&containerd);
}
