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
        logfmt_string(&stderr[i + 5..])
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

/// A logfmt quoted value (runc's `msg="…"`, after the opening quote) up to
/// its closing quote, with `\"` and `\\` unescaped.
fn logfmt_string(rest: &str) -> String {
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
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
fn contract(program: &str, root: &str, bundle: &str, id: &str) -> Vec<Answer> {
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
    // What containerd's runc shim sends when an init exits in a pod that
    // shares its PID namespace: runc signals what is left and succeeds.
    ask("stopped: kill --all", &["kill", "--all", id, "KILL"]);
    ask("stopped: start", &["start", id]);
    ask("stopped: pause", &["pause", id]);
    ask("stopped: resume", &["resume", id]);
    ask("stopped: delete", &["delete", id]);
    ask("deleted: delete", &["delete", id]);
    seen
}

/// One engine-style conversation (`ask`: program, root, bundle, id →
/// (case, exit code, message)) held with runc and then with moat on the
/// same bundle; returns moat's answers, asserting each equals runc's.
fn same_as_runc(env: &Env, prefix: &str, ask: Contract) -> Vec<Answer> {
    let Some(runc) = runc() else {
        panic!("runc is not installed (hack/setup.sh installs it): it is the reference here");
    };
    let bundle = env.bundle(&["sleep", "300"]);
    let id = env.id(prefix);
    let leaks = env.leak_check(&id);
    let _guard = env.guard(&id);
    let runc_root = env.tmp.path().join(format!("runc-root-{prefix}"));
    let rid = format!("{id}-runc");
    let theirs = ask(&runc, runc_root.to_str().unwrap(), bundle.path(), &rid);
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
    let ours = ask(
        moat_bin().to_str().unwrap(),
        env.root_str(),
        bundle.path(),
        &id,
    );
    let differences: Vec<String> = theirs
        .iter()
        .zip(&ours)
        .filter(|(r, m)| r != m)
        .map(|(r, m)| {
            format!(
                "{}: runc {:?} {:?}, moat {:?} {:?}",
                r.0, r.1, r.2, m.1, m.2
            )
        })
        .collect();
    assert!(
        differences.is_empty() && theirs.len() == ours.len(),
        "moat answers differently from runc:\n{}",
        differences.join("\n")
    );
    leaks.verify();
    ours
}

/// (case, exit code, message with the id replaced by ID).
type Answer = (String, Option<i32>, String);
type Contract = fn(&str, &str, &str, &str) -> Vec<Answer>;

#[test]
fn lifecycle_errors_are_worded_and_coded_as_runcs() {
    let env = Env::new();
    let ours = same_as_runc(&env, "contract", contract);
    // The cases that matter to containerd's runc shim are really there.
    assert!(ours
        .iter()
        .any(|c| c.0 == "stopped: kill" && c.2 == "container not running"));
    assert!(ours
        .iter()
        .any(|c| c.0 == "missing: delete" && c.2 == "container does not exist"));
    assert!(ours
        .iter()
        .any(|c| c.0 == "stopped: kill --all" && c.1 == Some(0)));
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

/// What an engine sees from `exec` that cannot start a process, per case:
/// (case, exit code, message with the id replaced by ID).
fn exec_contract(program: &str, root: &str, bundle: &str, id: &str) -> Vec<Answer> {
    let mut seen = Vec::new();
    let mut ask = |case: &str, args: &[&str]| {
        let (code, msg) = answer(program, root, args);
        seen.push((case.to_string(), code, msg.replace(id, "ID")));
    };
    ask("missing container", &["exec", id, "true"]);
    let (code, msg) = answer(program, root, &["run", "-d", "--bundle", bundle, id]);
    assert_eq!(code, Some(0), "{program} run -d: {msg}");
    ask("bare name not in PATH", &["exec", id, "no-such-program"]);
    ask(
        "path that does not exist",
        &["exec", id, "/no/such/program"],
    );
    ask("file without execute bit", &["exec", id, "/etc/passwd"]);
    ask("directory", &["exec", id, "/etc"]);
    ask(
        "cwd missing",
        &["exec", "--cwd", "/no/such/dir", id, "true"],
    );
    ask(
        "cwd not a directory",
        &["exec", "--cwd", "/etc/passwd", id, "true"],
    );
    ask("process exits 3", &["exec", id, "sh", "-c", "exit 3"]);
    ask("pause", &["pause", id]);
    ask("paused container", &["exec", id, "true"]);
    ask("resume", &["resume", id]);
    ask("kill", &["kill", id, "KILL"]);
    for _ in 0..200 {
        let out = Command::new(program)
            .args(["--root", root, "state", id])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("\"stopped\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ask("stopped container", &["exec", id, "true"]);
    ask("delete", &["delete", id]);
    seen
}

/// `exec` that cannot start its process exits 255 with "exec failed: …"
/// worded as runc 1.1.5's (docker turns "executable file not found" into
/// exit 127 and "permission denied" into 126 by these words), and a
/// process that ran keeps its own exit code; moat's own refusals keep
/// their one line and exit 1.
#[test]
fn exec_failures_are_worded_and_coded_as_runcs() {
    let env = Env::new();
    let ours = same_as_runc(&env, "execfail", exec_contract);
    // The words engines act on are really there.
    let msg = |case: &str| ours.iter().find(|c| c.0 == case).unwrap().clone();
    assert_eq!(
        msg("bare name not in PATH"),
        (
            "bare name not in PATH".to_string(),
            Some(255),
            "exec failed: unable to start container process: exec: \"no-such-program\": executable file not found in $PATH".to_string()
        )
    );
    assert_eq!(msg("process exits 3").1, Some(3));
    assert!(msg("file without execute bit")
        .2
        .ends_with("permission denied"));

    // moat's own refusal: one line, exit 1, no "exec failed" prefix.
    let (sleeper, _g2) = env.start_sleeper(&env.bundle(&["sleep", "300"]), "execrefuse");
    let leaks = env.leak_check(&sleeper);
    let process = env.tmp.path().join("proc-cwd.json");
    fs::write(
        &process,
        json!({"args": ["true"], "cwd": "/proc/1", "user": {"uid": 0, "gid": 0}}).to_string(),
    )
    .unwrap();
    let out = env.moat(&["exec", "--process", process.to_str().unwrap(), &sleeper]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("moat: refused by moat rule cwd:"),
        "{out}"
    );
    env.moat(&["delete", "--force", &sleeper]).assert_ok();
    leaks.verify();
}

/// An `exec --process` with an oomScoreAdj below moat's own is raised to
/// moat's own and logged under rule oom-score-adj (T8), as the container's
/// init is at create; a higher value is applied. (runc 1.1.5 ignores the
/// field for exec; moat applies it, clamped.)
#[test]
fn exec_oom_score_adj_is_applied_and_never_below_moats_own() {
    let env = Env::new();
    let (id, _guard) = env.start_sleeper(&env.bundle(&["sleep", "300"]), "execoom");
    let leaks = env.leak_check(&id);
    // moat inherits this test's value: that is the floor it reads.
    let own: i32 = fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let exec_with = |adj: i32| {
        let process = env.tmp.path().join(format!("oom{adj}.json"));
        fs::write(
            &process,
            json!({
                "args": ["/bin/cat", "/proc/self/oom_score_adj"],
                "env": ["PATH=/bin"], "cwd": "/",
                "user": {"uid": 0, "gid": 0}, "oomScoreAdj": adj
            })
            .to_string(),
        )
        .unwrap();
        let log = env.tmp.path().join(format!("oom{adj}.log"));
        let out = env.moat(&[
            "--log",
            log.to_str().unwrap(),
            "exec",
            "--process",
            process.to_str().unwrap(),
            &id,
        ]);
        out.assert_ok();
        (out.stdout.trim().to_string(), read_or_empty(&log))
    };
    let (seen, log) = exec_with(-1000);
    assert_eq!(
        seen,
        own.to_string(),
        "an exec'd process went below moat's own"
    );
    if own > -1000 {
        assert!(
            log.contains("oom-score-adj") && log.contains("-1000"),
            "the raise is not logged:\n{log}"
        );
    }
    let (seen, log) = exec_with(500);
    assert_eq!(seen, "500", "a higher oomScoreAdj is not applied");
    assert!(!log.contains("oom-score-adj"), "{log}");
    env.moat(&["delete", "--force", &id]).assert_ok();
    leaks.verify();
}

/// docker's --oom-kill-disable (`disableOOMKiller`): the OOM killer stays
/// on (T8): the report says so, and the container's memory cgroup has
/// oom_kill_disable 0 (runc writes 1).
#[test]
fn disable_oom_killer_is_reported_and_the_oom_killer_stays_on() {
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "300"]);
    b.config["linux"]["resources"]["memory"] = json!({"limit": 67108864, "disableOOMKiller": true});
    b.write();
    let explained = env.moat(&["explain", b.path()]);
    explained.assert_ok();
    assert!(
        explained
            .stdout
            .contains("[oom-killer] linux.resources.memory.disableOOMKiller: true -> false"),
        "{explained}"
    );
    let (id, _guard) = env.start_sleeper(&b, "oomkill");
    let leaks = env.leak_check(&id);
    let control = cgroup_dirs(&id)
        .into_iter()
        .map(|d| d.join("memory.oom_control"))
        .find(|p| p.exists());
    // cgroup v1 (this suite's hosts): the file must be there.
    if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        let control = control.expect("the container has no memory.oom_control");
        let text = fs::read_to_string(&control).unwrap();
        assert!(
            text.lines().any(|l| l == "oom_kill_disable 0"),
            "{}: {text}",
            control.display()
        );
        let limit = fs::read_to_string(control.with_file_name("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), "67108864", "the memory limit itself is kept");
    }
    let report = env.moat(&["report", &id]);
    assert!(report.stdout.contains("oom-killer"), "{report}");
    env.moat(&["delete", "--force", &id]).assert_ok();
    leaks.verify();
}

/// atime options: a bind mount keeps its source's atime flags (the kernel
/// locks them in the container's user namespace; asking for others used to
/// fail the create with EPERM), reported; a tmpfs gets the ones asked for;
/// `rro` makes a bind read-only recursively, as under runc.
#[test]
fn atime_mount_options_are_accepted_and_applied_as_the_kernel_allows() {
    let env = Env::new();
    let vol = env.tmp.path().join("atime-vol");
    fs::create_dir(&vol).unwrap();
    let mut b = env.sh_bundle("grep -E ' /(bind|bindro|scratch|scratch2) ' /proc/self/mountinfo");
    let source = vol.display().to_string();
    for (dest, opts) in [
        (
            "/bind",
            json!(["rbind", "noatime", "nodiratime", "strictatime"]),
        ),
        ("/bindro", json!(["rbind", "rro", "rnoatime", "relatime"])),
    ] {
        b.add_mount(
            json!({"destination": dest, "type": "bind", "source": source, "options": opts}),
        );
    }
    b.add_mount(
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                       "options": ["noatime", "nodiratime", "size=1m"]}),
    );
    b.add_mount(
        json!({"destination": "/scratch2", "type": "tmpfs", "source": "tmpfs",
                       "options": ["strictatime", "size=1m"]}),
    );
    b.write();
    let explained = env.moat(&["explain", b.path()]);
    explained.assert_ok();
    assert!(
        explained
            .stdout
            .contains("mounts[/bind].options: noatime,nodiratime,strictatime -> the source mount's atime flags"),
        "{explained}"
    );
    let id = env.id("atime");
    let leaks = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    // mountinfo field 6: the per-mount options.
    let options = |dest: &str| -> Vec<String> {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dest))
            .unwrap_or_else(|| panic!("{dest} is not mounted:\n{out}"));
        line.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let host_atime: Vec<String> = {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        // The host mount holding the volume: the longest mount point above it.
        let best = mountinfo
            .lines()
            .filter(|l| {
                let mp = l.split(' ').nth(4).unwrap_or("");
                vol.starts_with(mp)
            })
            .max_by_key(|l| l.split(' ').nth(4).unwrap_or("").len())
            .unwrap()
            .to_string();
        best.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .filter(|o| o.contains("atime"))
            .map(str::to_string)
            .collect()
    };
    for dest in ["/bind", "/bindro"] {
        let got: Vec<String> = options(dest)
            .into_iter()
            .filter(|o| o.contains("atime"))
            .collect();
        assert_eq!(
            got, host_atime,
            "{dest} does not keep its source's atime flags:\n{out}"
        );
    }
    assert!(options("/bindro").contains(&"ro".to_string()), "{out}");
    let scratch = options("/scratch");
    assert!(
        scratch.contains(&"noatime".to_string()) && scratch.contains(&"nodiratime".to_string()),
        "{out}"
    );
    assert!(
        !options("/scratch2").iter().any(|o| o.contains("atime")),
        "strictatime tmpfs:\n{out}"
    );
    leaks.verify();
}

/// Joining namespaces by path under the consent rule: a container that
/// consented (`moat.dev/joinable`) may have its pid and uts namespaces
/// joined (the joiner joins its pod and sees the owner's hostname), but
/// never its mount namespace: that is refused with one line naming no
/// policy key (T29); a container that did not consent is not joined.
#[test]
fn pid_and_uts_namespaces_of_a_consenting_container_join_and_mount_is_refused() {
    let env = Env::new();
    let join = |b: &mut Bundle, typ: &str, path: String| {
        let list = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        list.retain(|n| n["type"] != typ);
        list.push(json!({"type": typ, "path": path}));
        b.write();
    };
    let mut owner_bundle = env.bundle(&["sleep", "300"]);
    owner_bundle.annotate("moat.dev/joinable", "true");
    let owner_leaks = env.leak_check("nsowner");
    let (owner, owner_guard) = env.start_sleeper(&owner_bundle, "nsowner");
    let pid = init_pid(&env, &owner);

    let mut mnt = env.bundle(&["true"]);
    join(&mut mnt, "mount", format!("/proc/{pid}/ns/mnt"));
    let id = env.id("mntjoin");
    let leaks = env.leak_check(&id);
    env.moat(&["create", "--bundle", mnt.path(), &id])
        .assert_fails_with(&format!(
            "refused by moat rule namespace-path: mnt namespace path /proc/{pid}/ns/mnt: moat joins only network, ipc, uts, pid and cgroup namespaces by path; a joined mount namespace would show another container's files"
        ));
    leaks.verify();

    let mut member =
        env.sh_bundle("hostname; for p in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $p; echo; done");
    // Dropped and reported (rule joined-uts): runc would rename the owner,
    // libcontainer 0.7 refused the spec.
    member.config["hostname"] = json!("joiner");
    join(&mut member, "pid", format!("/proc/{pid}/ns/pid"));
    join(&mut member, "uts", format!("/proc/{pid}/ns/uts"));
    let id = env.id("utsjoin");
    let leaks = env.leak_check(&id);
    let out = env.run(&member, &id);
    out.assert_ok();
    assert!(
        out.stdout.contains("sleep 300"),
        "not in the owner's pid namespace:\n{out}"
    );
    assert_eq!(out.stdout.lines().next(), Some("moat-test"), "{out}");
    let owner_name = env.moat(&["exec", &owner, "hostname"]);
    assert_eq!(
        owner_name.stdout.trim(),
        "moat-test",
        "the joiner renamed the owner:\n{owner_name}"
    );
    leaks.verify();

    // A container that did not consent: its pid namespace is not joined.
    let (private, _private_guard) = env.start_sleeper(&env.bundle(&["sleep", "300"]), "nsprivate");
    let private_pid = init_pid(&env, &private);
    let mut intruder = env.bundle(&["true"]);
    join(&mut intruder, "pid", format!("/proc/{private_pid}/ns/pid"));
    let id = env.id("intruder");
    let leaks = env.leak_check(&id);
    env.moat(&["create", "--bundle", intruder.path(), &id])
        .assert_fails_with("refused by moat rule namespace-path");
    leaks.verify();
    env.moat(&["delete", "--force", &private]).assert_ok();

    env.moat(&["delete", "--force", &owner]).assert_ok();
    drop(owner_guard);
    owner_leaks.verify();
}
