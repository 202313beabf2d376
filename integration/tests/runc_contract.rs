//! The runc command-line contract, tried as an engine would: the same
//! lifecycle commands on missing, paused, running and stopped containers
//! under runc (1.1.5 here) and under moat must give the same exit code and
//! the same message (engines match runc's words, e.g. containerd's runc
//! shim reads "container not running" as "already gone"); a spec without
//! PATH runs as under runc (with a report line); and a volume under /tmp
//! or /run is not hidden by moat's scratch tmpfs.
//!
//! cargo test --release -p moat-integration --test runc_contract -- --test-threads=1

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use moat_integration::*;
use serde_json::json;

/// (exit code, message) of one runtime command: runc's `msg="…"`, moat's
/// text after "moat: ".
fn answer(program: &str, root: &str, args: &[&str]) -> (Option<i32>, String) {
    // stderr to a file, stdout to /dev/null: a container made by `run -d`
    // inherits both and would hold a pipe open.
    let err = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new(program)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
    let msg = if let Some(i) = stderr.rfind("msg=\"") {
        let rest = &stderr[i + 5..];
        rest[..rest.find('"').unwrap_or(rest.len())].to_string()
    } else if let Some(i) = stderr.rfind("moat: ") {
        stderr[i + 6..]
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    (status.code(), msg)
}

fn runc() -> Option<String> {
    let found = Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| "runc".to_string())
}

/// Drives one container through missing → running → paused → stopped
/// under `program`, asking at each state what an engine asks; returns
/// (case, exit code, message with the id replaced by ID).
fn contract(
    program: &str,
    root: &str,
    bundle: &str,
    id: &str,
) -> Vec<(String, Option<i32>, String)> {
    let mut seen = Vec::new();
    let mut ask = |case: &str, args: &[&str]| {
        let (code, msg) = answer(program, root, args);
        seen.push((case.to_string(), code, msg.replace(id, "ID")));
    };
    for cmd in ["state", "delete", "kill", "start", "pause", "resume", "ps"] {
        ask(&format!("missing: {cmd}"), &[cmd, id]);
    }
    let (code, msg) = answer(program, root, &["run", "-d", "--bundle", bundle, id]);
    assert_eq!(code, Some(0), "{program} run -d: {msg}");
    ask("running: start", &["start", id]);
    ask("running: resume", &["resume", id]);
    ask("running: delete", &["delete", id]);
    ask("running: pause", &["pause", id]);
    ask("paused: pause", &["pause", id]);
    ask("paused: start", &["start", id]);
    ask("paused: delete", &["delete", id]);
    ask("paused: resume", &["resume", id]);
    ask("running: kill KILL", &["kill", id, "KILL"]);
    // Wait until the state says stopped.
    for _ in 0..100 {
        let out = Command::new(program)
            .args(["--root", root, "state", id])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("\"stopped\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ask("stopped: kill", &["kill", id]);
    ask("stopped: start", &["start", id]);
    ask("stopped: pause", &["pause", id]);
    ask("stopped: resume", &["resume", id]);
    ask("stopped: delete", &["delete", id]);
    ask("deleted: delete", &["delete", id]);
    seen
}

#[test]
fn lifecycle_errors_are_worded_and_coded_as_runcs() {
    let Some(runc) = runc() else {
        panic!("runc is not installed (hack/setup.sh installs it): it is the reference here");
    };
    let env = Env::new();
    let bundle = env.bundle(&["sleep", "300"]);
    let id = env.id("contract");
    let leaks = env.leak_check(&id);
    let _guard = env.guard(&id);
    let runc_root = env.tmp.path().join("runc-root");
    let rid = format!("{id}-runc");
    let theirs = contract(&runc, runc_root.to_str().unwrap(), bundle.path(), &rid);
    let _ = Command::new(&runc)
        .args([
            "--root",
            runc_root.to_str().unwrap(),
            "delete",
            "--force",
            &rid,
        ])
        .stderr(Stdio::null())
        .status();
    let ours = contract(
        moat_bin().to_str().unwrap(),
        env.root_str(),
        bundle.path(),
        &id,
    );
    let mut differences = Vec::new();
    for (r, m) in theirs.iter().zip(&ours) {
        if r != m {
            differences.push(format!(
                "{}: runc {:?} {:?}, moat {:?} {:?}",
                r.0, r.1, r.2, m.1, m.2
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "moat answers differently from runc:\n{}",
        differences.join("\n")
    );
    // The cases that matter to containerd's runc shim are really there.
    assert!(ours
        .iter()
        .any(|c| c.0 == "stopped: kill" && c.2 == "container not running"));
    assert!(ours
        .iter()
        .any(|c| c.0 == "missing: delete" && c.2 == "container does not exist"));
    leaks.verify();
}

#[test]
fn a_spec_without_path_runs_with_dockers_default_and_says_so() {
    let env = Env::new();
    let mut b = env.bundle(&["/bin/sh", "-c", "echo PATH=$PATH"]);
    b.config["process"]["env"] = json!(["TERM=xterm"]);
    b.write();
    let explained = env.moat(&["explain", b.path()]);
    explained.assert_ok();
    assert!(
        explained.stdout.contains("process.env.PATH")
            && explained
                .stdout
                .contains("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "the report does not show the default PATH:\n{explained}"
    );
    let id = env.id("nopath");
    let leaks = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    assert!(
        out.stdout
            .contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{out}"
    );
    leaks.verify();
}

#[test]
fn volumes_under_tmp_and_run_stay_visible() {
    let env = Env::new();
    let vol = env.tmp.path().join("vol");
    fs::create_dir(&vol).unwrap();
    fs::write(vol.join("hello"), "from the volume\n").unwrap();
    let mut b = env.bundle(&[
        "/bin/sh",
        "-c",
        "cat /tmp/data/hello /run/data/hello && grep -c ' /tmp ' /proc/self/mountinfo",
    ]);
    for dest in ["/tmp/data", "/run/data"] {
        b.add_mount(json!({
            "destination": dest, "type": "bind",
            "source": vol.display().to_string(), "options": ["rbind", "ro"]
        }));
    }
    b.write();
    let id = env.id("tmpvol");
    let leaks = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    assert_eq!(
        out.stdout.matches("from the volume").count(),
        2,
        "a volume under /tmp or /run is hidden:\n{out}"
    );
    // moat's /tmp tmpfs is still there (the volume is on it, not instead).
    assert!(out.stdout.trim_end().ends_with('1'), "{out}");
    leaks.verify();
}
