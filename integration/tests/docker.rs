//! Integration tests that drive the real docker daemon with `--runtime=moat`.
//!
//! Run with:
//!
//! ```sh
//! cargo build --release && bash hack/docker-register.sh && bash hack/docker-image.sh
//! cargo test --release -p moat-integration --test docker -- --test-threads=1
//! ```
//!
//! Every test asserts from inside the container by parsing what the
//! container prints, and checks afterwards that moat left nothing behind for
//! the test's containers (id-pool files, mounts under /run/moat-rootfs,
//! runtime state directories).
//!
//! When `docker info` fails the tests are skipped with a message, unless the
//! environment variable `CI` is set: then a missing docker is a failure.
//!
//! Network traffic goes only to 127.0.0.1 on ports published by the tests,
//! or between the tests' own containers.
//!
//! The harness (context, container and volume guards, leftover checks,
//! parsers) is `moat_integration::docker`, shared with the workload tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_integration::cmd::{run_cmd, sh_quote, wait_until, Out};
use moat_integration::docker::*;

// ---------------------------------------------------------------------------
// docker run: the sandbox seen from inside.
// ---------------------------------------------------------------------------

#[test]
fn run_is_hardened_inside() {
    let Some(ctx) = Ctx::new("run_is_hardened_inside") else {
        return;
    };
    let c = ctx.container("c");
    let script = r#"
echo @@status; cat /proc/self/status
echo @@uid_map; cat /proc/self/uid_map
echo @@gid_map; cat /proc/self/gid_map
echo @@uid; id -u
echo @@root_write; if out=$(touch /x 2>&1); then echo WRITABLE; else echo "FAILED $out"; fi
echo @@tmp_write; if echo moat-tmp > /tmp/probe && [ "$(cat /tmp/probe)" = moat-tmp ]; then echo OK; else echo FAILED; fi
echo @@run_write; if echo x > /run/probe; then echo OK; else echo FAILED; fi
echo @@sys_write; if out=$(touch /sys/moat-probe 2>&1); then echo WRITABLE; else echo "FAILED $out"; fi
echo @@masked
for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/timer_stats /proc/latency_stats; do
  if [ -e $p ]; then echo "$p present $(head -c 64 $p 2>/dev/null | wc -c)"; else echo "$p absent"; fi
done
echo @@firmware; ls -A /sys/firmware 2>&1 | wc -l
echo @@mountinfo; cat /proc/self/mountinfo
echo @@end
"#;
    let out = c.run(&["--rm"], &["sh", "-c", script]).expect_ok();
    let s = sections(&out.stdout);
    let status = section(&s, "status");

    // Capabilities: exactly moat's allowlist under docker's defaults.
    assert_eq!(
        cap_field(status, "CapEff"),
        ALLOWED_CAPS,
        "CapEff under docker's default capabilities"
    );
    assert_hardened_status(status, "docker run");

    // User namespace: root inside, an unprivileged range outside.
    assert_eq!(
        section(&s, "uid").trim(),
        "0",
        "container runs as root inside"
    );
    let uid_host = assert_moat_id_map(section(&s, "uid_map"), "uid_map");
    let gid_host = assert_moat_id_map(section(&s, "gid_map"), "gid_map");
    assert_eq!(
        uid_host, gid_host,
        "uid and gid ranges start at the same host id"
    );

    // Filesystem.
    let rw = section(&s, "root_write");
    assert!(
        rw.starts_with("FAILED") && rw.contains("Read-only"),
        "touch /x must fail with Read-only file system: {rw:?}"
    );
    assert_eq!(
        section(&s, "tmp_write").trim(),
        "OK",
        "/tmp must be writable"
    );
    assert_eq!(
        section(&s, "run_write").trim(),
        "OK",
        "/run must be writable"
    );
    let mi = section(&s, "mountinfo");
    let (root_opts, _) = mountinfo_entry(mi, "/").expect("mountinfo has /");
    assert!(
        has_opt(&root_opts, "ro"),
        "/ is not mounted ro: {root_opts}"
    );
    for dir in ["/tmp", "/run"] {
        let (opts, fstype) =
            mountinfo_entry(mi, dir).unwrap_or_else(|| panic!("{dir} is not a mount:\n{mi}"));
        assert_eq!(fstype, "tmpfs", "{dir} fs type");
        for o in ["rw", "nosuid", "nodev"] {
            assert!(has_opt(&opts, o), "{dir} lacks {o}: {opts}");
        }
    }

    // /sys and /proc/sys read-only.
    let sw = section(&s, "sys_write");
    assert!(
        sw.starts_with("FAILED") && sw.contains("Read-only"),
        "touch /sys/x must fail with Read-only file system: {sw:?}"
    );
    let (sys_opts, sys_type) = mountinfo_entry(mi, "/sys").expect("/sys is mounted");
    assert_eq!(sys_type, "sysfs");
    assert!(has_opt(&sys_opts, "ro"), "/sys is not ro: {sys_opts}");
    let (ps_opts, _) = mountinfo_entry(mi, "/proc/sys").expect("/proc/sys is a mount");
    assert!(has_opt(&ps_opts, "ro"), "/proc/sys is not ro: {ps_opts}");

    // Masked /proc paths: absent (this kernel may not have them) or
    // reading nothing.
    let masked = section(&s, "masked");
    let mut present = 0;
    for line in masked.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [_, "absent"] => {}
            [p, "present", n] => {
                present += 1;
                assert_eq!(*n, "0", "{p} is readable (not masked): {line}");
            }
            _ => panic!("unexpected masked-path line {line:?}"),
        }
    }
    assert!(
        present > 0,
        "none of the masked paths exist, check is vacuous: {masked}"
    );
    assert!(
        masked.contains("/proc/kcore"),
        "/proc/kcore not probed: {masked}"
    );
    // /proc/kcore in particular: masked if the kernel has it.
    if Path::new("/proc/kcore").exists() {
        assert!(
            masked.contains("/proc/kcore present 0"),
            "/proc/kcore not masked: {masked}"
        );
    }
    assert_eq!(
        section(&s, "firmware").trim(),
        "0",
        "/sys/firmware is masked (empty)"
    );

    drop(c);
    ctx.finish();
}

#[test]
fn run_exit_code_propagates() {
    let Some(ctx) = Ctx::new("run_exit_code_propagates") else {
        return;
    };
    let c = ctx.container("c");
    let out = c.run(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(out.code, Some(3), "{}", out.describe());
    drop(c);
    ctx.finish();
}

#[test]
fn host_sees_unprivileged_uid_and_pids_limit() {
    let Some(ctx) = Ctx::new("host_sees_unprivileged_uid_and_pids_limit") else {
        return;
    };
    let c = ctx.container("c");
    let id = c.start_detached(&[], &["sleep", "60"]);
    let pid = c.pid();

    // The container's init, seen from the host, is an unprivileged uid.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("host status");
    for key in ["Uid", "Gid"] {
        for v in status_field(&status, key)
            .expect("status line")
            .split_whitespace()
        {
            let v: u64 = v.parse().expect("uid number");
            assert!(
                v >= HOST_ID_FLOOR,
                "host {key} of container init is {v}:\n{status}"
            );
        }
    }
    assert_hardened_status(&status, "container init (host view)");
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    assert_moat_id_map(&map, "host view of uid_map");

    // A pids limit is set on its cgroup (v1 pids controller or v2).
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let pids_max = cg
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            let base = if ctrl.split(',').any(|c| c == "pids") {
                "/sys/fs/cgroup/pids"
            } else if ctrl.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "/sys/fs/cgroup"
            } else {
                return None;
            };
            std::fs::read_to_string(format!("{base}{path}/pids.max")).ok()
        })
        .unwrap_or_else(|| panic!("no pids.max for the container's cgroup:\n{cg}"));
    assert_ne!(pids_max.trim(), "max", "no pids limit on the container");
    let limit: u64 = pids_max.trim().parse().expect("pids.max is a number");
    assert!(limit > 0);

    // Positive control for the leftover check: while it runs, moat does
    // keep an id-pool file and a rootfs mount for this id.
    let traces = moat_traces(&id);
    assert!(
        traces.iter().any(|t| t.starts_with("id-pool")),
        "no id-pool file for a running container (leftover check would be vacuous): {traces:?}"
    );
    assert!(
        traces.iter().any(|t| t.starts_with("mount:")),
        "no /run/moat-rootfs mount for a running container (leftover check would be vacuous): {traces:?}"
    );
    drop(c);
    ctx.finish();
}

#[test]
fn concurrent_containers_get_distinct_id_ranges() {
    let Some(ctx) = Ctx::new("concurrent_containers_get_distinct_id_ranges") else {
        return;
    };
    let a = ctx.container("a");
    let b = ctx.container("b");
    let id_a = a.start_detached(&[], &["sleep", "60"]);
    let id_b = b.start_detached(&[], &["sleep", "60"]);
    let map = |c: &Container| {
        let out = c.exec(&[], &["cat", "/proc/1/uid_map"]).expect_ok();
        assert_moat_id_map(&out.stdout, &format!("{} uid_map", c.name))
    };
    let (ha, hb) = (map(&a), map(&b));
    assert_ne!(ha, hb, "two running containers share a host id range");
    assert!(
        ha.abs_diff(hb) >= RANGE_SIZE,
        "host ranges overlap: {ha} and {hb} (size {RANGE_SIZE})"
    );
    // Each owns exactly one id-pool slot.
    for id in [&id_a, &id_b] {
        let slots: Vec<_> = moat_traces(id)
            .into_iter()
            .filter(|t| t.starts_with("id-pool"))
            .collect();
        assert_eq!(slots.len(), 1, "id-pool slots of {id}: {slots:?}");
    }
    drop(a);
    drop(b);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// docker exec.
// ---------------------------------------------------------------------------

/// Starts `sleep 60` and returns the host view of its uid_map.
fn sleeper(c: &Container) -> String {
    c.start_detached(&[], &["sleep", "60"]);
    let pid = c.pid();
    std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("container uid_map")
}

#[test]
fn exec_is_hardened() {
    let Some(ctx) = Ctx::new("exec_is_hardened") else {
        return;
    };
    let c = ctx.container("c");
    let init_map = sleeper(&c);
    let init_host = assert_moat_id_map(&init_map, "init uid_map");
    let out = c.exec(&[], &["sh", "-c", PROBE_SELF]).expect_ok();
    let s = sections(&out.stdout);
    assert_hardened_status(section(&s, "status"), "docker exec");
    let host = assert_moat_id_map(section(&s, "uid_map"), "exec uid_map");
    assert_eq!(
        host, init_host,
        "exec runs in the container's user namespace"
    );
    assert_eq!(section(&s, "uid").trim(), "0");
    // The exec'd process may reopen its stdio pipes by path (images log
    // through links to /dev/stdout): moat hands docker's pipes to
    // container root, as create does for the init.
    let out = c
        .exec(
            &[],
            &[
                "sh",
                "-c",
                "echo to-stdout > /dev/stdout; echo to-stderr > /proc/self/fd/2",
            ],
        )
        .expect_ok();
    assert_eq!(out.stdout.trim(), "to-stdout", "stderr: {}", out.stderr);
    assert!(out.stderr.contains("to-stderr"), "stderr: {}", out.stderr);
    drop(c);
    ctx.finish();
}

#[test]
fn exec_privileged_is_still_capped() {
    let Some(ctx) = Ctx::new("exec_privileged_is_still_capped") else {
        return;
    };
    let c = ctx.container("c");
    let init_host = assert_moat_id_map(&sleeper(&c), "init uid_map");
    let out = c
        .exec(&["--privileged"], &["sh", "-c", PROBE_SELF])
        .expect_ok();
    let s = sections(&out.stdout);
    assert_hardened_status(section(&s, "status"), "docker exec --privileged");
    let host = assert_moat_id_map(section(&s, "uid_map"), "exec --privileged uid_map");
    assert_eq!(host, init_host);
    drop(c);
    ctx.finish();
}

#[test]
fn exec_user_1000() {
    let Some(ctx) = Ctx::new("exec_user_1000") else {
        return;
    };
    let c = ctx.container("c");
    let init_host = assert_moat_id_map(&sleeper(&c), "init uid_map");
    let out = c
        .exec(&["--user", "1000"], &["sh", "-c", PROBE_SELF])
        .expect_ok();
    let s = sections(&out.stdout);
    assert_eq!(section(&s, "uid").trim(), "1000", "exec --user 1000");
    let status = section(&s, "status");
    assert_hardened_status(status, "docker exec --user 1000");
    let uids: Vec<&str> = status_field(status, "Uid")
        .expect("Uid line")
        .split_whitespace()
        .collect();
    assert!(uids.iter().all(|u| *u == "1000"), "Uid line: {uids:?}");
    let host = assert_moat_id_map(section(&s, "uid_map"), "exec --user uid_map");
    assert_eq!(host, init_host);
    drop(c);
    ctx.finish();
}

#[test]
fn exec_exit_code_propagates() {
    let Some(ctx) = Ctx::new("exec_exit_code_propagates") else {
        return;
    };
    let c = ctx.container("c");
    sleeper(&c);
    let out = c.exec(&[], &["sh", "-c", "exit 7"]);
    assert_eq!(out.code, Some(7), "{}", out.describe());
    drop(c);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// Terminals.
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_tty_output(out: &Out) {
    assert!(out.ok(), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "tty did not print a /dev/pts device: {}",
        out.describe()
    );
    assert!(lines.contains(&"ok"), "{}", out.describe());
}

#[test]
fn run_it_gets_a_pty() {
    let Some(ctx) = Ctx::new("run_it_gets_a_pty") else {
        return;
    };
    let c = ctx.container("c");
    let args = c.run_args(&["--rm", "-it"], &["sh", "-c", "tty; echo ok"]);
    let out = under_pty(&args);
    c.learn_id();
    assert_tty_output(&out);
    drop(c);
    ctx.finish();
}

#[test]
fn exec_it_gets_a_pty() {
    let Some(ctx) = Ctx::new("exec_it_gets_a_pty") else {
        return;
    };
    let c = ctx.container("c");
    sleeper(&c);
    let args: Vec<String> = ["exec", "-it", &c.name, "sh", "-c", "tty; echo ok"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_tty_output(&under_pty(&args));
    drop(c);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// Lifecycle.
// ---------------------------------------------------------------------------

#[test]
fn logs_show_stdout_and_stderr() {
    let Some(ctx) = Ctx::new("logs_show_stdout_and_stderr") else {
        return;
    };
    let c = ctx.container("c");
    c.start_detached(&[], &["sh", "-c", "echo line1; echo line2 >&2; sleep 30"]);
    let mut last = None;
    let ok = wait_until(Duration::from_secs(10), || {
        let out = docker(&["logs", &c.name]);
        let good = out.ok()
            && out.stdout.lines().any(|l| l == "line1")
            && out.stderr.lines().any(|l| l == "line2");
        last = Some(out);
        good
    });
    assert!(
        ok,
        "docker logs lacks line1 (stdout) / line2 (stderr): {}",
        last.map(|o| o.describe()).unwrap_or_default()
    );
    drop(c);
    ctx.finish();
}

#[test]
fn stop_ends_the_container() {
    let Some(ctx) = Ctx::new("stop_ends_the_container") else {
        return;
    };
    let c = ctx.container("c");
    let id = c.start_detached(&[], &["sleep", "1000"]);
    c.wait_status("running", Duration::from_secs(5));
    let t = Instant::now();
    docker(&["stop", "-t", "2", &c.name]).expect_ok();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "docker stop -t 2 took {:?}",
        t.elapsed()
    );
    c.wait_status("exited", Duration::from_secs(10));
    // The container still exists in docker, but moat's runtime state is gone.
    assert_no_leftovers(&id, "after docker stop");
    drop(c);
    ctx.finish();
}

#[test]
fn kill_ends_the_container() {
    let Some(ctx) = Ctx::new("kill_ends_the_container") else {
        return;
    };
    let c = ctx.container("c");
    let id = c.start_detached(&[], &["sleep", "1000"]);
    c.wait_status("running", Duration::from_secs(5));
    docker(&["kill", &c.name]).expect_ok();
    c.wait_status("exited", Duration::from_secs(10));
    assert_eq!(
        c.inspect("{{.State.ExitCode}}").as_deref(),
        Some("137"),
        "exit code after SIGKILL"
    );
    assert_no_leftovers(&id, "after docker kill");
    drop(c);
    ctx.finish();
}

#[test]
fn restart_runs_again_and_exec_works() {
    let Some(ctx) = Ctx::new("restart_runs_again_and_exec_works") else {
        return;
    };
    let c = ctx.container("c");
    let id = c.start_detached(&[], &["sleep", "1000"]);
    c.wait_status("running", Duration::from_secs(5));
    let pid1 = c.pid();
    docker(&["restart", "-t", "1", &c.name]).expect_ok();
    c.wait_status("running", Duration::from_secs(10));
    let pid2 = c.pid();
    assert_ne!(pid1, pid2, "restart did not start a new init");
    let host_map = std::fs::read_to_string(format!("/proc/{pid2}/uid_map")).expect("uid_map");
    let init_host = assert_moat_id_map(&host_map, "uid_map after restart");
    let out = c.exec(&[], &["sh", "-c", PROBE_SELF]).expect_ok();
    let s = sections(&out.stdout);
    assert_hardened_status(section(&s, "status"), "exec after restart");
    assert_eq!(
        assert_moat_id_map(section(&s, "uid_map"), "exec uid_map after restart"),
        init_host
    );
    // The first run's range was freed: exactly one slot for this id.
    let slots: Vec<_> = moat_traces(&id)
        .into_iter()
        .filter(|t| t.starts_with("id-pool"))
        .collect();
    assert_eq!(slots.len(), 1, "id-pool slots after restart: {slots:?}");
    drop(c);
    ctx.finish();
}

#[test]
fn pause_and_unpause() {
    let Some(ctx) = Ctx::new("pause_and_unpause") else {
        return;
    };
    let c = ctx.container("c");
    c.start_detached(&[], &["sleep", "1000"]);
    c.wait_status("running", Duration::from_secs(5));
    docker(&["pause", &c.name]).expect_ok();
    c.wait_status("paused", Duration::from_secs(5));
    assert_eq!(c.inspect("{{.State.Paused}}").as_deref(), Some("true"));
    docker(&["unpause", &c.name]).expect_ok();
    c.wait_status("running", Duration::from_secs(5));
    assert_eq!(c.inspect("{{.State.Paused}}").as_deref(), Some("false"));
    let out = c
        .exec(&[], &["sh", "-c", "echo exec-after-unpause"])
        .expect_ok();
    assert_eq!(out.stdout.trim(), "exec-after-unpause");
    drop(c);
    ctx.finish();
}

#[test]
fn rm_flag_removes_container_after_exit() {
    let Some(ctx) = Ctx::new("rm_flag_removes_container_after_exit") else {
        return;
    };
    let c = ctx.container("c");
    let out = c.run(&["--rm"], &["sh", "-c", "echo bye"]).expect_ok();
    assert_eq!(out.stdout.trim(), "bye");
    assert!(c.id().is_some(), "cidfile was not written");
    let mut names = String::new();
    let gone = wait_until(Duration::from_secs(10), || {
        names = docker(&["ps", "-a", "--format", "{{.Names}}"])
            .expect_ok()
            .stdout;
        !names.lines().any(|n| n.trim() == c.name)
    });
    assert!(gone, "{} still listed by docker ps -a:\n{names}", c.name);
    assert!(
        !docker(&["inspect", &c.name]).ok(),
        "docker inspect still finds it"
    );
    drop(c);
    ctx.finish();
}

#[test]
fn top_lists_the_process() {
    let Some(ctx) = Ctx::new("top_lists_the_process") else {
        return;
    };
    let c = ctx.container("c");
    c.start_detached(&[], &["sleep", "1000"]);
    let out = docker(&["top", &c.name]).expect_ok();
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.contains("PID") && header.contains("CMD"),
        "{}",
        out.describe()
    );
    let pid = c.pid().to_string();
    assert!(
        lines.any(|l| l.contains("sleep 1000") && l.split_whitespace().any(|f| f == pid)),
        "docker top does not list `sleep 1000` with pid {pid}:\n{}",
        out.stdout
    );
    drop(c);
    ctx.finish();
}

#[test]
fn stats_no_stream() {
    let Some(ctx) = Ctx::new("stats_no_stream") else {
        return;
    };
    let c = ctx.container("c");
    c.start_detached(&[], &["sleep", "1000"]);
    let out = docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.PIDs}}|{{.MemUsage}}",
        &c.name,
    ])
    .expect_ok();
    let line = out.stdout.trim();
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), 3, "stats line {line:?}");
    assert_eq!(f[0], c.name);
    let pids: u64 = f[1].trim().parse().unwrap_or(0);
    assert!(pids >= 1, "stats shows {pids} pids: {line:?}");
    drop(c);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// Networking (127.0.0.1 and container-to-container only).
// ---------------------------------------------------------------------------

/// sh script serving `body` with busybox httpd on port 8080 from /tmp/www
/// (the rootfs is read-only).
fn httpd_script(body: &str) -> String {
    format!(
        "mkdir -p /tmp/www && echo {} > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        sh_quote(body)
    )
}

#[test]
fn port_publishing_on_localhost() {
    let Some(ctx) = Ctx::new("port_publishing_on_localhost") else {
        return;
    };
    let c = ctx.container("web");
    let port = free_port();
    let body = format!("moat-it-port-{}", std::process::id());
    let publish = format!("127.0.0.1:{port}:8080");
    c.start_detached(&["-p", &publish], &["sh", "-c", &httpd_script(&body)]);
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(5), || match http_get_localhost(port) {
        Ok((status, got)) => {
            last = format!("{status} / {got:?}");
            status.contains(" 200") && got.trim() == body
        }
        Err(e) => {
            last = e.to_string();
            false
        }
    });
    let logs = docker(&["logs", &c.name]);
    assert!(
        ok,
        "GET http://127.0.0.1:{port}/ did not return {body:?}; last: {last}\n{}",
        logs.describe()
    );
    drop(c);
    ctx.finish();
}

#[test]
fn network_container_mode_shares_netns_and_is_hardened() {
    let Some(ctx) = Ctx::new("network_container_mode_shares_netns_and_is_hardened") else {
        return;
    };
    let web = ctx.container("web");
    let body = format!("moat-it-netns-{}", std::process::id());
    web.start_detached(&[], &["sh", "-c", &httpd_script(&body)]);
    let web_pid = web.pid();
    let web_host = assert_moat_id_map(
        &std::fs::read_to_string(format!("/proc/{web_pid}/uid_map")).expect("uid_map"),
        "web uid_map",
    );
    let client = ctx.container("client");
    let net = format!("container:{}", web.name);
    let script = format!(
        "echo @@body; i=0; while [ $i -lt 50 ]; do wget -qO- http://127.0.0.1:8080/ && break; i=$((i+1)); sleep 0.1; done; {PROBE_SELF}"
    );
    let out = client
        .run(&["--rm", "--network", &net], &["sh", "-c", &script])
        .expect_ok();
    let s = sections(&out.stdout);
    assert_eq!(
        section(&s, "body").trim(),
        body,
        "wget through the shared netns: {}",
        out.describe()
    );
    assert_hardened_status(section(&s, "status"), "--network container:X");
    let host = assert_moat_id_map(section(&s, "uid_map"), "client uid_map");
    // One user namespace and id range per pod (T3): the joiner is a member
    // of X's pod.
    assert_eq!(
        host, web_host,
        "the joining container must run with its pod owner's id range"
    );
    drop(client);
    drop(web);
    ctx.finish();
}

#[test]
fn network_none_has_only_lo() {
    let Some(ctx) = Ctx::new("network_none_has_only_lo") else {
        return;
    };
    let c = ctx.container("c");
    let out = c
        .run(&["--rm", "--network", "none"], &["ls", "/sys/class/net"])
        .expect_ok();
    let ifaces: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(ifaces, vec!["lo"], "{}", out.describe());
    drop(c);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// Refusals.
// ---------------------------------------------------------------------------

/// `docker run OPTS IMAGE true` must fail with moat's refusal naming `key`,
/// and leave nothing behind.
#[track_caller]
fn assert_docker_run_refused(test: &'static str, opts: &[&str], key: &str) {
    let Some(ctx) = Ctx::new(test) else {
        return;
    };
    let c = ctx.container("c");
    let out = c.run(opts, &["true"]);
    assert!(
        !out.ok(),
        "moat did not refuse `docker run {}`: the container ran: {}",
        opts.join(" "),
        out.describe()
    );
    let text = out.combined();
    assert!(
        text.contains("refused"),
        "error does not say 'refused': {}",
        out.describe()
    );
    assert!(
        text.contains(key),
        "error does not name policy key {key}: {}",
        out.describe()
    );
    let id = c
        .id()
        .expect("docker created the container before the runtime refused it (cidfile)");
    assert_ne!(
        c.inspect("{{.State.Running}}").as_deref(),
        Some("true"),
        "refused container is running"
    );
    // Before docker removes it: moat must not have left anything.
    assert_no_leftovers(&id, &format!("{test}: right after the refusal"));
    drop(c);
    ctx.finish();
}

#[test]
fn refuses_privileged() {
    assert_docker_run_refused(
        "refuses_privileged",
        &["--privileged"],
        "refusals.allow_privileged",
    );
}

#[test]
fn refuses_network_host() {
    assert_docker_run_refused(
        "refuses_network_host",
        &["--network", "host"],
        "refusals.allow_host_namespaces",
    );
}

#[test]
fn refuses_pid_host() {
    assert_docker_run_refused(
        "refuses_pid_host",
        &["--pid", "host"],
        "refusals.allow_host_namespaces",
    );
}

#[test]
fn refuses_ipc_host() {
    assert_docker_run_refused(
        "refuses_ipc_host",
        &["--ipc", "host"],
        "refusals.allow_host_namespaces",
    );
}

#[test]
fn refuses_docker_sock_mount() {
    assert_docker_run_refused(
        "refuses_docker_sock_mount",
        &["-v", "/var/run/docker.sock:/sock"],
        "refusals.allow_host_mounts",
    );
}

#[test]
fn refuses_etc_mount() {
    assert_docker_run_refused(
        "refuses_etc_mount",
        &["-v", "/etc:/hostetc"],
        "refusals.allow_host_mounts",
    );
}

#[test]
fn refuses_device() {
    // Any existing device beyond docker's default set; /dev/null under
    // another name as a last resort (docker adds it as a device node).
    let dev = ["/dev/loop0", "/dev/fuse", "/dev/net/tun"]
        .into_iter()
        .find(|d| Path::new(d).exists())
        .unwrap_or("/dev/null:/dev/moat-it-null");
    assert_docker_run_refused(
        "refuses_device",
        &["--device", dev],
        "refusals.allow_devices",
    );
}

/// `docker run OPTS IMAGE true` must fail with moat's one-line refusal of
/// rule `rule` holding `phrase`, and leave nothing behind (the cgroup
/// included: none is named after the container in any hierarchy).
#[track_caller]
fn assert_docker_run_refused_by(test: &'static str, opts: &[&str], rule: &str, phrase: &str) {
    let Some(ctx) = Ctx::new(test) else {
        return;
    };
    let c = ctx.container("c");
    let out = c.run(opts, &["true"]);
    assert!(!out.ok(), "the container ran: {}", out.describe());
    let text = out.combined();
    assert!(
        text.contains(&format!("refused by moat rule {rule}: ")) && text.contains(phrase),
        "no refusal of rule {rule} saying {phrase:?}: {}",
        out.describe()
    );
    let id = c.id().expect("cidfile");
    assert_no_leftovers(&id, &format!("{test}: right after the refusal"));
    let cgroups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|h| ["moat", "docker"].map(|p| h.path().join(p).join(&id)))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    drop(c);
    ctx.finish();
}

/// T22, red-team pass 7: `--cgroup-parent /moat` put a docker container at
/// the level moat keeps for raw (`moat run`) tenants, under their limits.
/// Refused with one line; below it too.
#[test]
fn cgroup_parent_in_moats_raw_tree_is_refused() {
    for parent in ["/moat", "/moat/team-a"] {
        assert_docker_run_refused_by(
            "cgroup_parent_in_moats_raw_tree_is_refused",
            &["--cgroup-parent", parent],
            "cgroups-path",
            "is moat's cgroup parent for raw (moat run) tenants' containers",
        );
    }
}

/// T17 (rlimits), red-team pass 7: `--ulimit nofile=…` above moat's own
/// hard limit (here above the kernel's `fs.nr_open`, so above any) failed
/// create with a bare EPERM from the container's init. Refused with one
/// line naming the limit, before anything is made; a limit within the
/// ceiling is what the container sees.
#[test]
fn ulimit_above_the_hosts_hard_limit_is_refused() {
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1 << 20);
    let too_high = format!("nofile=1024:{}", nr_open + 1);
    assert_docker_run_refused_by(
        "ulimit_above_the_hosts_hard_limit_is_refused",
        &["--ulimit", &too_high],
        "rlimit",
        &format!(
            "RLIMIT_NOFILE: hard limit {} is above the host's",
            nr_open + 1
        ),
    );
    let Some(ctx) = Ctx::new("ulimit_above_the_hosts_hard_limit_is_refused") else {
        return;
    };
    let c = ctx.container("ok");
    let out = c.run(
        &["--rm", "--ulimit", "nofile=512:1024"],
        &["sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "512\n1024", "{}", out.describe());
    drop(c);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// Volumes and bind mounts.
// ---------------------------------------------------------------------------

#[test]
fn named_volume_is_mounted() {
    let Some(ctx) = Ctx::new("named_volume_is_mounted") else {
        return;
    };
    let vol = Volume::new(&ctx, "vol");
    let c = ctx.container("c");
    let spec = format!("{}:/data", vol.name);
    let out = c.run(
        &["--rm", "-v", &spec],
        &[
            "sh",
            "-c",
            "echo @@ls; ls -ld /data; echo @@mountinfo; cat /proc/self/mountinfo; echo @@end",
        ],
    );
    assert!(
        out.ok(),
        "container with named volume {spec} did not run: {}",
        out.describe()
    );
    let s = sections(&out.stdout);
    assert!(section(&s, "ls").contains("/data"), "{}", out.describe());
    assert!(
        mountinfo_entry(section(&s, "mountinfo"), "/data").is_some(),
        "/data is not a mount point inside: {}",
        out.describe()
    );
    drop(c);
    ctx.finish();
    let rm = docker(&["volume", "rm", &vol.name]);
    assert!(rm.ok(), "volume removal: {}", rm.describe());
}

#[test]
fn bind_mount_of_host_dir() {
    let Some(ctx) = Ctx::new("bind_mount_of_host_dir") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("hello"), "from-the-host\n").expect("write");
    std::fs::set_permissions(
        dir.path().join("hello"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let c = ctx.container("c");
    let spec = format!("{}:/data:ro", dir.path().display());
    let out = c.run(&["--rm", "-v", &spec], &["cat", "/data/hello"]);
    assert!(
        out.ok(),
        "container with bind mount {spec} did not run: {}",
        out.describe()
    );
    assert_eq!(out.stdout.trim(), "from-the-host");
    drop(c);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// Egress.
// ---------------------------------------------------------------------------

/// A moat container cannot open a connection to a host on docker's bridge
/// (a runc container this test starts): it is refused at once (TCP reset,
/// not a timeout) and counted, while a runc container reaches the same
/// server, so the refusal is moat's. Traffic stays on the test's own
/// containers.
#[test]
fn egress_to_a_bridge_host_is_refused_fast_and_counted() {
    let Some(ctx) = Ctx::new("egress_to_a_bridge_host_is_refused_fast_and_counted") else {
        return;
    };
    let server = ctx.container("srv");
    docker(&[
        "run",
        "-d",
        "--name",
        &server.name,
        "--runtime=runc",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo hello | nc -l -p 8080; done",
    ])
    .expect_ok();
    let ip = server
        .inspect("{{.NetworkSettings.IPAddress}}")
        .filter(|s| !s.is_empty())
        .expect("server container has a bridge address");

    // Control: plain runc reaches the server.
    let control = ctx.container("control");
    let reached = wait_until(Duration::from_secs(5), || {
        let out = docker(&[
            "run",
            "--rm",
            "--name",
            &control.name,
            "--runtime=runc",
            IMAGE,
            "nc",
            "-w",
            "2",
            &ip,
            "8080",
        ]);
        out.ok() && out.stdout.contains("hello")
    });
    assert!(
        reached,
        "runc container could not reach the test server at {ip}"
    );

    let c = ctx.container("moat");
    let id = c.start_detached(&[], &["sleep", "60"]);
    let started = Instant::now();
    let out = c.exec(&[], &["nc", "-w", "5", &ip, "8080"]);
    let took = started.elapsed();
    assert!(!out.ok(), "moat container reached {ip}: {}", out.describe());
    assert!(
        out.stderr.contains("refused") || out.stdout.contains("refused"),
        "expected a fast refusal: {}",
        out.describe()
    );
    assert!(took < Duration::from_secs(3), "refusal took {took:?}");
    let counters = run_cmd(
        &moat_bin(),
        &[
            "--root",
            "/var/run/docker/runtime-runc/moby",
            "egress",
            "--format",
            "json",
            &id,
        ],
        Duration::from_secs(10),
    )
    .expect_ok();
    let v: serde_json::Value = serde_json::from_str(counters.stdout.trim()).expect("json");
    assert!(
        v["blockedPackets"].as_u64().unwrap_or(0) >= 1,
        "no blocked packets counted: {}",
        counters.stdout
    );
    drop(c);
    drop(control);
    drop(server);
    ctx.finish();
}

/// The operator policy file moat reads at every `create` (no `--policy`
/// under docker).
const POLICY_FILE: &str = "/etc/moat/policy.toml";

/// Replaces [`POLICY_FILE`] while it lives. Dropping it, also during a
/// panic, puts the previous file back (same bytes and mode), or removes the
/// file (and its directory, if the guard made it) when there was none.
struct PolicyFileGuard {
    path: PathBuf,
    previous: Option<(Vec<u8>, std::fs::Permissions)>,
    made_dir: bool,
}

impl PolicyFileGuard {
    #[track_caller]
    fn install(text: &str) -> PolicyFileGuard {
        let path = PathBuf::from(POLICY_FILE);
        let dir = path.parent().expect("policy file has a directory");
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            assert!(
                m.file_type().is_file(),
                "{POLICY_FILE} is not a regular file; not replacing it"
            );
        }
        let previous = match std::fs::read(&path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&path)
                    .unwrap_or_else(|e| panic!("stat {POLICY_FILE}: {e}"))
                    .permissions();
                Some((bytes, mode))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {POLICY_FILE}: {e}"),
        };
        let made_dir = !dir.exists();
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        // From here on the guard restores, also if writing fails half-way.
        let guard = PolicyFileGuard {
            path,
            previous,
            made_dir,
        };
        replace_file(
            &guard.path,
            text.as_bytes(),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap_or_else(|e| panic!("write {POLICY_FILE}: {e}"));
        guard
    }
}

impl Drop for PolicyFileGuard {
    fn drop(&mut self) {
        let restored = match self.previous.take() {
            Some((bytes, mode)) => replace_file(&self.path, &bytes, mode),
            None => std::fs::remove_file(&self.path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        };
        if let Err(e) = restored {
            // No panic in drop (it may run during one): say it loudly.
            eprintln!("WARNING: could not restore {}: {e}", self.path.display());
        }
        if self.made_dir {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Writes `bytes` to `path` by a rename over it, so a concurrent reader sees
/// the old or the new file, never half of one.
fn replace_file(path: &Path, bytes: &[u8], mode: std::fs::Permissions) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.moat-it-{}", std::process::id()));
    let written = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::set_permissions(&tmp, mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// An operator allowlist entry in /etc/moat/policy.toml opens exactly that
/// destination: a moat container reads "hello" from port 8080 of a runc
/// container on docker's bridge, while port 8081 of the same server (a
/// runc container reaches it) is still refused at once and counted. The
/// moat container's own published port keeps working meanwhile. The policy
/// file is put back as it was, also when the test fails.
#[test]
fn egress_allowlisted_bridge_host_is_reachable() {
    let Some(ctx) = Ctx::new("egress_allowlisted_bridge_host_is_reachable") else {
        return;
    };
    let policy_before = std::fs::read(POLICY_FILE).ok();
    let server = ctx.container("srv");
    docker(&[
        "run",
        "-d",
        "--name",
        &server.name,
        "--runtime=runc",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo hello | nc -l -p 8080; done & \
         while true; do echo other | nc -l -p 8081; done",
    ])
    .expect_ok();
    let ip = server
        .inspect("{{.NetworkSettings.IPAddress}}")
        .filter(|s| !s.is_empty())
        .expect("server container has a bridge address");

    // Control: plain runc reaches both ports of the server.
    let control = ctx.container("control");
    for (port, want) in [("8080", "hello"), ("8081", "other")] {
        let mut last = String::new();
        let reached = wait_until(Duration::from_secs(5), || {
            let out = docker(&[
                "run",
                "--rm",
                "--name",
                &control.name,
                "--runtime=runc",
                IMAGE,
                "nc",
                "-w",
                "2",
                &ip,
                port,
            ]);
            last = out.describe();
            out.ok() && out.stdout.contains(want)
        });
        assert!(
            reached,
            "runc container could not reach the test server at {ip}:{port}: {last}"
        );
    }

    let policy = PolicyFileGuard::install(&format!("[egress]\nallow = [\"{ip}/32 tcp 8080\"]\n"));
    let c = ctx.container("moat");
    let port = free_port();
    let body = format!("moat-it-egress-allow-{}", std::process::id());
    let publish = format!("127.0.0.1:{port}:8080");
    let id = c.start_detached(&["-p", &publish], &["sh", "-c", &httpd_script(&body)]);
    let ns = format!("--net=/proc/{}/ns/net", c.pid());
    let table = run_cmd(
        "nsenter",
        &[ns.as_str(), "nft", "list", "table", "inet", "moat"],
        Duration::from_secs(10),
    );

    // The allowlisted port answers.
    let out = c.exec(&[], &["nc", "-w", "5", &ip, "8080"]);
    assert!(
        out.ok() && out.stdout.contains("hello"),
        "moat container did not reach allowlisted {ip}:8080: {}\nruleset: {}",
        out.describe(),
        table.describe()
    );
    let egress = || {
        let counters = run_cmd(
            &moat_bin(),
            &[
                "--root",
                RUNTIME_STATE_DIR,
                "egress",
                "--format",
                "json",
                &id,
            ],
            Duration::from_secs(10),
        )
        .expect_ok();
        let v: serde_json::Value = serde_json::from_str(counters.stdout.trim()).expect("json");
        v["blockedPackets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no blockedPackets: {}", counters.stdout))
    };
    assert_eq!(egress(), 0, "the allowed connection was counted as blocked");

    // Another port of the same host is still refused fast.
    let started = Instant::now();
    let out = c.exec(&[], &["nc", "-w", "5", &ip, "8081"]);
    let took = started.elapsed();
    assert!(
        !out.ok(),
        "moat container reached {ip}:8081: {}",
        out.describe()
    );
    assert!(
        out.combined().contains("refused"),
        "expected a fast refusal of {ip}:8081: {}",
        out.describe()
    );
    assert!(!out.stdout.contains("other"), "{}", out.describe());
    assert!(took < Duration::from_secs(3), "refusal took {took:?}");
    assert!(egress() >= 1, "the refused connection was not counted");

    // Inbound through the published port still works.
    let mut last = String::new();
    let served = wait_until(Duration::from_secs(5), || match http_get_localhost(port) {
        Ok((status, got)) => {
            last = format!("{status} / {got:?}");
            status.contains(" 200") && got.trim() == body
        }
        Err(e) => {
            last = e.to_string();
            false
        }
    });
    assert!(
        served,
        "GET http://127.0.0.1:{port}/ did not return {body:?}; last: {last}"
    );

    drop(c);
    drop(policy);
    assert_eq!(
        std::fs::read(POLICY_FILE).ok(),
        policy_before,
        "{POLICY_FILE} was not restored"
    );
    drop(control);
    drop(server);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// docker's own prestart hook (threat T21): /proc/<dockerd>/exe run as
// libnetwork-setkey, allowed by the default policy, run through `moat hook`.
// ---------------------------------------------------------------------------

#[test]
fn docker_network_hook_still_works() {
    let Some(ctx) = Ctx::new("docker_network_hook_still_works") else {
        return;
    };
    let c = ctx.container("net");
    c.start_detached(&[], &["sleep", "300"]);
    let ip = c
        .inspect("{{.NetworkSettings.IPAddress}}")
        .unwrap_or_default();
    assert!(!ip.is_empty(), "docker gave the container no address");
    // eth0 exists inside only when the hook told dockerd the namespace.
    let out = c
        .exec(&[], &["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        .expect_ok();
    assert!(
        out.stdout.contains(&format!("inet {ip}/")),
        "eth0 has no {ip}: {}",
        out.stdout
    );
    drop(c);
    ctx.finish();
}

/// `docker run -v /root/<dir>/.ssh:/x` (a root-only host directory) is not
/// idmapped (T19): container root cannot append to host root's 0600
/// `authorized_keys`, and no root-owned or setuid file appears on the host.
#[test]
fn bind_of_a_root_only_dir_stays_host_roots() {
    let Some(ctx) = Ctx::new("bind_of_a_root_only_dir_stays_host_roots") else {
        return;
    };
    let top = PathBuf::from(format!("/root/moat-it-docker-{}", std::process::id()));
    let dir = top.join(".ssh");
    let _ = std::fs::remove_dir_all(&top);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let keys = dir.join("authorized_keys");
    std::fs::write(&keys, "ssh-ed25519 AAAA host\n").expect("write");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let c = ctx.container("c");
    let spec = format!("{}:/x", dir.display());
    let out = c.run(
        &["--rm", "-v", &spec],
        &[
            "sh",
            "-c",
            "echo evil >> /x/authorized_keys; echo new > /x/planted; cp /bin/busybox /x/suid && chmod 4755 /x/suid; ls -lnd /x; true",
        ],
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let content = std::fs::read_to_string(&keys).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&top);
    assert!(out.ok(), "container did not run: {}", out.describe());
    assert_eq!(
        content,
        "ssh-ed25519 AAAA host\n",
        "host root's authorized_keys was changed: {}",
        out.describe()
    );
    assert_eq!(
        names,
        ["authorized_keys"],
        "files appeared on the host: {}",
        out.describe()
    );
    assert!(
        out.stdout.contains(" 65534 "),
        "host root's directory does not appear as nobody: {}",
        out.describe()
    );
    drop(c);
    ctx.finish();
}

// Issue 14: every tmpfs capped, a private cgroup namespace.

#[test]
fn tmpfs_flag_is_capped_and_cgroupns_host_is_made_private() {
    let Some(ctx) = Ctx::new("tmpfs_flag_is_capped_and_cgroupns_host_is_made_private") else {
        return;
    };
    let c = ctx.container("c");
    let script = "grep ' /data ' /proc/self/mountinfo; echo @@cgroup; cat /proc/self/cgroup";
    let out = c
        .run(
            &["--rm", "--tmpfs", "/data", "--cgroupns=host"],
            &["sh", "-c", script],
        )
        .expect_ok();
    let (data, cgroup) = out.stdout.split_once("@@cgroup").unwrap_or_default();
    assert!(
        data.contains("size=65536k"),
        "--tmpfs /data not capped:\n{data}"
    );
    assert!(data.contains("nosuid") && data.contains("nodev"), "{data}");
    let lines: Vec<&str> = cgroup.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no /proc/self/cgroup:\n{}", out.stdout);
    for l in lines {
        assert!(
            l.ends_with(":/"),
            "host cgroup path visible with --cgroupns=host: {l}"
        );
    }
    drop(c);
    ctx.finish();
}

/// T15 (red-team pass 5 G9): `docker exec -w /dev/fd/N` started the
/// process with its cwd in a directory descriptor moat held (a procfs of
/// the host's pid namespace). Every N a tenant can try fails before the
/// command runs; an ordinary `-w` still works.
#[test]
fn exec_workdir_through_a_descriptor_is_refused() {
    let Some(ctx) = Ctx::new("exec_workdir_through_a_descriptor_is_refused") else {
        return;
    };
    let c = ctx.container("c");
    sleeper(&c);
    for n in 3..=40 {
        let w = format!("/dev/fd/{n}");
        let out = c.exec(&["-w", &w], &["sh", "-c", "echo RAN-IN; ls ."]);
        assert!(
            !out.ok() && !out.stdout.contains("RAN-IN"),
            "docker exec -w {w} ran: {}",
            out.describe()
        );
    }
    let out = c.exec(&["-w", "/tmp"], &["pwd"]).expect_ok();
    assert_eq!(out.stdout.trim(), "/tmp");
    drop(c);
    ctx.finish();
}

// ---------------------------------------------------------------------------
// T40 / T5 (red-team R6-8, R6-3): bind sources judged by their filesystem.
// ---------------------------------------------------------------------------

/// `out` is moat's one-line refusal by the bind-source rule, saying `why`.
#[track_caller]
fn assert_bind_source_refused(out: &Out, what: &str, why: &str) {
    let text = out.combined();
    assert!(!out.ok(), "{what} was accepted: {}", out.describe());
    assert!(
        text.contains("refused by moat rule bind-source-filesystem") && text.contains(why),
        "{what}: not refused by bind-source-filesystem with {why:?}: {}",
        out.describe()
    );
}

/// No mount of the volume's directory is left on the host.
#[track_caller]
fn assert_not_mounted(volume: &Volume) {
    let dir = volume.host_path().display().to_string();
    let left: Vec<String> = host_mounts()
        .into_iter()
        .filter(|(mp, _)| mp.starts_with(&dir))
        .map(|(_, l)| l)
        .collect();
    assert!(left.is_empty(), "{dir} still mounted: {left:?}");
}

/// R6-8: a docker volume that dockerd mounts as an overlay of the host's
/// /etc, as the host's procfs or as a ramfs is refused, whatever path it is
/// bound from; a tmpfs volume above the policy's 64m cap too (R6-3), with
/// the numbers. A plain named volume and a small tmpfs volume with an inode
/// limit still work, and write.
#[test]
fn driver_mounted_volumes_are_judged_by_their_filesystem() {
    let Some(ctx) = Ctx::new("driver_mounted_volumes_are_judged_by_their_filesystem") else {
        return;
    };
    let refused: &[(&str, &[&str], &str)] = &[
        (
            "overlay",
            &["type=overlay", "device=overlay", "o=lowerdir=/etc:/usr/share"],
            "its source is an overlay",
        ),
        (
            "proc",
            &["type=proc", "device=proc"],
            "its source is a kernel filesystem (proc)",
        ),
        (
            "ramfs",
            &["type=ramfs", "device=ramfs", "o=mode=1777"],
            "its source is a ramfs",
        ),
        (
            "bigtmpfs",
            &["type=tmpfs", "device=tmpfs", "o=size=100g"],
            "a writable tmpfs of 107374182400 bytes, above the policy's filesystem.tmpfs_size of 67108864 bytes",
        ),
    ];
    for (suffix, opts, why) in refused {
        let volume = Volume::local(&ctx, suffix, opts);
        let c = ctx.container(suffix);
        let mount = format!("{}:/v", volume.name);
        let out = c.run(&["-v", &mount], &["sh", "-c", "echo RAN; ls /v | head -3"]);
        assert_bind_source_refused(&out, suffix, why);
        assert!(!out.stdout.contains("RAN"), "{suffix}: {}", out.describe());
        drop(c);
        assert_not_mounted(&volume);
    }

    let small = Volume::local(
        &ctx,
        "smalltmpfs",
        &["type=tmpfs", "device=tmpfs", "o=size=1m,nr_inodes=256"],
    );
    let plain = ctx.volume("plain");
    let c = ctx.container("ok");
    let (s, p) = (format!("{}:/s", small.name), format!("{}:/p", plain.name));
    let out = c
        .run(
            &["--rm", "-v", &s, "-v", &p],
            &[
                "sh",
                "-c",
                "echo x > /s/f && echo y > /p/f && cat /s/f /p/f",
            ],
        )
        .expect_ok();
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["x", "y"]
    );
    drop(c);
    ctx.finish();
}

/// R6-3: `--ipc shareable` makes /dev/shm a tmpfs dockerd mounts with
/// `--shm-size` and binds in: above the policy's tmpfs cap it is refused,
/// and the message says to lower --shm-size; docker's default 64m works.
#[test]
fn shareable_ipc_shm_is_held_to_the_tmpfs_cap() {
    let Some(ctx) = Ctx::new("shareable_ipc_shm_is_held_to_the_tmpfs_cap") else {
        return;
    };
    let c = ctx.container("big");
    let out = c.run(
        &["--rm", "--ipc", "shareable", "--shm-size", "8g"],
        &["echo", "RAN"],
    );
    assert_bind_source_refused(
        &out,
        "--shm-size 8g",
        "a writable tmpfs of 8589934592 bytes",
    );
    assert!(out.combined().contains("--shm-size"), "{}", out.describe());
    drop(c);
    let c = ctx.container("small");
    let out = c
        .run(
            &["--rm", "--ipc", "shareable"],
            &[
                "sh",
                "-c",
                "echo z > /dev/shm/f && cat /dev/shm/f && grep ' /dev/shm ' /proc/mounts",
            ],
        )
        .expect_ok();
    assert!(out.stdout.starts_with("z\n"), "{}", out.describe());
    assert!(out.stdout.contains("size=65536k"), "{}", out.describe());
    drop(c);
    ctx.finish();
}

/// R7-4: docker tmpfs volumes were judged one by one against the 64m cap,
/// never summed: five of 64m each over docker's own 256m (/dev, /dev/shm,
/// /tmp, /run) are refused by `tmpfs-total` with the sum, and left
/// unmounted; four fit exactly (512m) and write, with `--ipc shareable`
/// too (the engine's 64m shm counts instead of the spec's /dev/shm).
#[test]
fn tmpfs_volumes_count_in_the_tmpfs_total() {
    let Some(ctx) = Ctx::new("tmpfs_volumes_count_in_the_tmpfs_total") else {
        return;
    };
    let volumes: Vec<Volume> = (0..5)
        .map(|i| {
            Volume::local(
                &ctx,
                &format!("t{i}"),
                &["type=tmpfs", "device=tmpfs", "o=size=64m,nr_inodes=16384"],
            )
        })
        .collect();
    let args = |n: usize| -> Vec<String> {
        volumes[..n]
            .iter()
            .enumerate()
            .flat_map(|(i, v)| ["-v".to_string(), format!("{}:/tt{i}", v.name)])
            .collect()
    };
    let c = ctx.container("five");
    let five = args(5);
    let five: Vec<&str> = five.iter().map(String::as_str).collect();
    let out = c.run(&five, &["echo", "RAN"]);
    let text = out.combined();
    assert!(
        !out.ok(),
        "five 64m tmpfs volumes accepted: {}",
        out.describe()
    );
    assert!(
        text.contains("refused by moat rule tmpfs-total")
            && text.contains("and 5 writable tmpfs bind sources of 320 MiB")
            && text.contains("576 MiB in all"),
        "{}",
        out.describe()
    );
    drop(c);
    for v in &volumes {
        assert_not_mounted(v);
    }
    for (name, extra) in [("four", &[][..]), ("shareable", &["--ipc", "shareable"])] {
        let c = ctx.container(name);
        let mut all: Vec<String> = vec!["--rm".into()];
        all.extend(extra.iter().map(|s| s.to_string()));
        all.extend(args(4));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = c
            .run(
                &all,
                &[
                    "sh",
                    "-c",
                    "for d in /tt*; do echo x > $d/f && echo W; done",
                ],
            )
            .expect_ok();
        assert_eq!(out.stdout.matches('W').count(), 4, "{}", out.describe());
        drop(c);
    }
    ctx.finish();
}
