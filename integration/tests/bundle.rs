//! Real containers run through the `moat` binary from OCI bundles (no
//! docker). Each test checks the sandbox from INSIDE the container: a
//! busybox `sh -c` script prints what it sees, the test parses it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use moat_integration::*;
use serde_json::{json, Value};

const GREEDY: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_NET_RAW",
    "CAP_SYS_PTRACE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
];

/// A shell snippet printing the sandbox-relevant lines of
/// /proc/self/status as `Key=value`.
const STATUS_SCRIPT: &str =
    "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | sed 's/:[[:space:]]*/=/'";

fn hex(map: &BTreeMap<String, String>, key: &str) -> u64 {
    let v = map
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in container output: {map:?}"));
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("{key}={v}: {e}"))
}

/// Asserts a map is exactly `0 H 65536` with H in moat's pool; returns H.
#[track_caller]
fn assert_private_map(text: &str) -> u64 {
    assert_moat_id_map(text, "map")
}

/// One mountinfo entry as seen inside the container.
#[derive(Debug, Clone)]
struct MountLine {
    mount_point: String,
    options: String,
    fs_type: String,
    super_options: String,
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(MountLine {
                mount_point: pre.get(4)?.to_string(),
                options: pre.get(5)?.to_string(),
                fs_type: post.first()?.to_string(),
                super_options: post.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The topmost mount at `path`.
fn mount_at<'a>(mounts: &'a [MountLine], path: &str) -> &'a MountLine {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == path)
        .unwrap_or_else(|| panic!("nothing mounted at {path}: {mounts:#?}"))
}

/// Text between `BEGIN name` and `END name` marker lines.
fn between_markers<'a>(text: &'a str, name: &str) -> &'a str {
    let begin = format!("BEGIN {name}\n");
    let end = format!("END {name}");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("no section {name} in:\n{text}"))
        + begin.len();
    let len = text[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("section {name} not closed in:\n{text}"));
    &text[start..start + len]
}

#[test]
fn run_true_twenty_times_leaks_nothing() {
    let env = Env::new();
    let b = env.bundle(&["/bin/true"]);
    for i in 0..20 {
        let id = env.id("true");
        let leak = env.leak_check(&id);
        let out = env.run(&b, &id);
        assert_eq!(out.code, Some(0), "run #{i}:\n{out}");
        leak.verify();
    }
    // Nothing at all left in the root.
    let root = canonical_root(&env.root);
    let left: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "@moat")
        .collect();
    assert!(left.is_empty(), "left in {}: {left:?}", root.display());
    let private: Vec<_> = fs::read_dir(root.join("@moat"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(private.is_empty(), "left in @moat: {private:?}");
}

#[test]
fn exit_code_propagates() {
    let env = Env::new();
    for code in [0, 3, 42] {
        let out = env.run_sh(&format!("exit {code}"));
        assert_eq!(out.code, Some(code), "{out}");
    }
}

#[test]
fn capabilities_are_cut_to_the_allowlist_with_no_new_privs_and_seccomp() {
    let env = Env::new();
    let mut b = env.sh_bundle(STATUS_SCRIPT);
    let mut caps: Vec<&str> = ALLOWLIST.to_vec();
    caps.extend_from_slice(GREEDY);
    b.set_capabilities(&caps);
    // Ask for privilege escalation too: moat must turn it off.
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.write();
    let id = env.id("caps");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    let st = kv(&out.stdout);
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        let v = hex(&st, set);
        assert_eq!(
            v & !ALLOWED_CAPS_MASK,
            0,
            "{set}={v:#x} has capabilities outside the allowlist {ALLOWED_CAPS_MASK:#x}"
        );
        for (bit, name) in [
            (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
            (CAP_NET_RAW, "CAP_NET_RAW"),
            (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
            (CAP_MKNOD, "CAP_MKNOD"),
            (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        ] {
            assert_eq!(v & bit, 0, "{set}={v:#x} contains {name}");
        }
    }
    // What was asked for and allowed is kept.
    assert_eq!(hex(&st, "CapEff"), ALLOWED_CAPS_MASK, "{out}");
    assert_eq!(st.get("NoNewPrivs").map(String::as_str), Some("1"), "{out}");
    assert_eq!(st.get("Seccomp").map(String::as_str), Some("2"), "{out}");
    leak.verify();
}

#[test]
fn uid_map_is_a_private_range_and_two_containers_never_share_one() {
    let env = Env::new();
    // Inside a one-shot container.
    let out = env.run_sh(
        "echo BEGIN uid; cat /proc/self/uid_map; echo END uid; \
         echo BEGIN gid; cat /proc/self/gid_map; echo END gid; id -u",
    );
    out.assert_ok();
    let h = assert_private_map(between_markers(&out.stdout, "uid"));
    assert_eq!(assert_private_map(between_markers(&out.stdout, "gid")), h);

    // Two at the same time.
    let b = env.bundle(&["sleep", "300"]);
    let (a, _ga) = env.start_sleeper(&b, "ns-a");
    let (c, _gc) = env.start_sleeper(&b, "ns-b");
    let mut hosts = Vec::new();
    for id in [&a, &c] {
        let out = env.moat(&["exec", id, "cat", "/proc/self/uid_map"]);
        out.assert_ok();
        let inside = assert_private_map(&out.stdout);
        let host_view =
            fs::read_to_string(format!("/proc/{}/uid_map", init_pid(&env, id))).unwrap();
        assert_eq!(
            assert_private_map(&host_view),
            inside,
            "exec and init differ"
        );
        hosts.push(inside);
    }
    let (h1, h2) = (hosts[0], hosts[1]);
    assert!(
        h1.abs_diff(h2) >= 65536,
        "two running containers got overlapping host ranges: {h1} and {h2}"
    );
}

#[test]
fn rootfs_is_read_only_and_tmp_run_are_small_nosuid_nodev_tmpfs() {
    let env = Env::new();
    let out = env.run_sh(
        "touch /x 2>&1; echo touch_root=$?; \
         echo hi > /tmp/a && cat /tmp/a >/dev/null; echo write_tmp=$?; \
         echo hi > /run/a && cat /run/a >/dev/null; echo write_run=$?; \
         dd if=/dev/zero of=/tmp/big bs=1M count=100 2>&1; echo dd_tmp=$?; rm -f /tmp/big; \
         dd if=/dev/zero of=/run/big bs=1M count=100 2>&1; echo dd_run=$?; rm -f /run/big; \
         echo BEGIN mountinfo; cat /proc/self/mountinfo; echo END mountinfo",
    );
    out.assert_ok();
    let k = kv(&out.stdout);
    assert_ne!(k["touch_root"], "0", "touch /x succeeded:\n{out}");
    assert!(
        out.stdout.contains("Read-only file system"),
        "touch /x did not fail with EROFS:\n{out}"
    );
    assert_eq!(k["write_tmp"], "0", "{out}");
    assert_eq!(k["write_run"], "0", "{out}");
    assert_ne!(k["dd_tmp"], "0", "100 MB fit in /tmp:\n{out}");
    assert_ne!(k["dd_run"], "0", "100 MB fit in /run:\n{out}");
    assert!(
        out.stdout.contains("No space left on device"),
        "dd did not fail with ENOSPC:\n{out}"
    );

    let mounts = parse_mountinfo(between_markers(&out.stdout, "mountinfo"));
    let root = mount_at(&mounts, "/");
    assert!(has_opt(&root.options, "ro"), "/ is not read-only: {root:?}");
    for dir in ["/tmp", "/run"] {
        let m = mount_at(&mounts, dir);
        assert_eq!(m.fs_type, "tmpfs", "{dir}: {m:?}");
        for o in ["rw", "nosuid", "nodev"] {
            assert!(has_opt(&m.options, o), "{dir} lacks {o}: {m:?}");
        }
        assert!(
            has_opt(&m.super_options, "size=65536k"),
            "{dir} is not limited to 64m: {m:?}"
        );
    }
}

#[test]
fn proc_and_sys_are_masked_and_read_only() {
    let env = Env::new();
    let out = env.run_sh(
        "echo kcore_bytes=$(head -c 4096 /proc/kcore 2>/dev/null | wc -c); \
         echo keys_bytes=$(cat /proc/keys 2>/dev/null | wc -c); \
         echo timer_list_bytes=$(cat /proc/timer_list 2>/dev/null | wc -c); \
         echo firmware_entries=$(ls -A /sys/firmware 2>/dev/null | wc -l); \
         echo moat > /proc/sys/kernel/domainname 2>&1; echo write_proc_sys=$?; \
         echo moat > /proc/sys/kernel/hostname 2>&1; echo write_proc_sys_hostname=$?; \
         echo 1 > /proc/sys/vm/drop_caches 2>&1; echo write_drop_caches=$?; \
         echo h > /proc/sysrq-trigger 2>&1; echo write_sysrq=$?; \
         touch /sys/moat 2>&1; echo touch_sys=$?; \
         echo 1 > /sys/kernel/mm/transparent_hugepage/enabled 2>&1; echo write_sys=$?; \
         echo BEGIN mountinfo; cat /proc/self/mountinfo; echo END mountinfo",
    );
    out.assert_ok();
    let k = kv(&out.stdout);
    assert_eq!(k["kcore_bytes"], "0", "/proc/kcore readable:\n{out}");
    assert_eq!(k["keys_bytes"], "0", "/proc/keys readable:\n{out}");
    assert_eq!(
        k["timer_list_bytes"], "0",
        "/proc/timer_list readable:\n{out}"
    );
    assert_eq!(
        k["firmware_entries"], "0",
        "/sys/firmware not masked:\n{out}"
    );
    for key in [
        "write_proc_sys",
        "write_proc_sys_hostname",
        "write_drop_caches",
        "write_sysrq",
        "touch_sys",
        "write_sys",
    ] {
        assert_ne!(k[key], "0", "{key} succeeded:\n{out}");
    }
    assert!(
        out.stdout.contains("Read-only file system"),
        "no write failed with EROFS:\n{out}"
    );
    let mounts = parse_mountinfo(between_markers(&out.stdout, "mountinfo"));
    let sys = mount_at(&mounts, "/sys");
    assert!(
        has_opt(&sys.options, "ro"),
        "/sys is not read-only: {sys:?}"
    );
    let proc_sys = mount_at(&mounts, "/proc/sys");
    assert!(
        has_opt(&proc_sys.options, "ro"),
        "/proc/sys is not read-only: {proc_sys:?}"
    );
    // Masked files that exist on this kernel are covered by a mount.
    if Path::new("/proc/kcore").exists() {
        mount_at(&mounts, "/proc/kcore");
    }
    if Path::new("/proc/sysrq-trigger").exists() {
        let m = mount_at(&mounts, "/proc/sysrq-trigger");
        assert!(has_opt(&m.options, "ro"), "{m:?}");
    }
    mount_at(&mounts, "/proc/keys");
    mount_at(&mounts, "/sys/firmware");
}

#[test]
fn seccomp_and_missing_capabilities_block_escapes() {
    let env = Env::new();
    // Each probe prints `name=<exit code> <its output>`.
    let probes = [
        ("unshare_user", "unshare -U true"),
        ("unshare_net", "unshare -n true"),
        ("unshare_mount", "unshare -m true"),
        ("mount_tmpfs", "mount -t tmpfs x /tmp"),
        ("nsenter_net", "nsenter -t 1 -n true"),
        ("ping_raw", "ping -c 1 -W 1 127.0.0.1"),
        ("arping_raw", "arping -c 1 -w 1 127.0.0.1"),
        ("ip_link_down", "ip link set lo down"),
        ("mknod", "mknod /tmp/sda b 8 0"),
        ("chroot", "chroot / true"),
    ];
    let script: String = probes
        .iter()
        .map(|(name, cmd)| format!("o=$({cmd} 2>&1); rc=$?; echo \"{name}=$rc\" $o;"))
        .collect::<Vec<_>>()
        .join(" ");
    // `set -f`: the unquoted $o must not be globbed.
    let b = env.sh_bundle(&format!("set -f; {script}"));
    let id = env.id("seccomp");
    let out = env.run(&b, &id);
    out.assert_ok();
    let k = kv(&out.stdout);
    for (name, cmd) in probes {
        let line = k
            .get(name)
            .unwrap_or_else(|| panic!("probe {name} printed nothing:\n{out}"));
        let (code, msg) = line.split_once(' ').unwrap_or((line, ""));
        if name == "chroot" {
            // CAP_SYS_CHROOT is not in the allowlist either.
            assert_ne!(code, "0", "`{cmd}` succeeded:\n{out}");
            continue;
        }
        assert_ne!(code, "0", "`{cmd}` succeeded inside the container:\n{out}");
        assert_ne!(code, "127", "`{cmd}`: applet missing:\n{out}");
        let lower = msg.to_lowercase();
        assert!(
            lower.contains("not permitted") || lower.contains("permission denied"),
            "`{cmd}` failed for another reason than EPERM/EACCES: {msg:?}\n{out}"
        );
    }
}

#[test]
fn pids_limit_defaults_to_4096_keeps_lower_and_clamps_higher() {
    let env = Env::new();
    for (requested, want) in [(None, "4096"), (Some(100), "100"), (Some(100000), "4096")] {
        let mut b = env.bundle(&["sleep", "300"]);
        if let Some(n) = requested {
            b.config["linux"]["resources"]["pids"] = json!({ "limit": n });
            b.write();
        }
        let id = env.id("pids");
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
            assert_eq!(
                pids_max(&id),
                want,
                "created, pids limit asked {requested:?}"
            );
            env.moat(&["start", &id]).assert_ok();
            assert_eq!(
                pids_max(&id),
                want,
                "running, pids limit asked {requested:?}"
            );
            // From inside too.
            let out = env.moat(&["exec", &id, "cat", "/sys/fs/cgroup/pids/pids.max"]);
            out.assert_ok();
            assert_eq!(out.stdout.trim(), want, "{out}");
            env.moat(&["delete", "--force", &id]).assert_ok();
        }
        leak.verify();
    }
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "test harness: the real path moat is expected to report"
)]
fn create_start_state_delete_lifecycle() {
    let env = Env::new();
    let b = env.sh_bundle("sleep 2; exit 0");
    let id = env.id("life");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        let st = env.state(&id);
        assert_eq!(st["status"], "created", "{st}");
        assert_eq!(st["id"], json!(id));
        assert_eq!(
            st["bundle"].as_str().map(Path::new),
            Some(fs::canonicalize(&b.dir).unwrap().as_path()),
            "{st}"
        );
        assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{st}");
        env.moat(&["start", &id]).assert_ok();
        assert_eq!(env.status(&id), "running");
        // A second start is an error.
        assert!(!env.moat(&["start", &id]).success());
        env.wait_status(&id, "stopped", Duration::from_secs(20));
        env.moat(&["delete", &id]).assert_ok();
        env.moat(&["state", &id])
            .assert_fails_with("does not exist");
    }
    leak.verify();
}

/// CVE-2019-5736 (T14): a created container's init still runs moat's own
/// binary. Opened through /proc/<init>/exe and reopened for writing after
/// moat is gone (the attack's order), the binary must refuse the write, even
/// to host root: moat runs from a read-only, detached mount of itself.
#[test]
fn runtime_binary_cannot_be_reopened_for_writing_through_proc_exe() {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{FromRawFd, OwnedFd};

    let env = Env::new();
    let b = env.sh_bundle("exit 0");
    let id = env.id("exe");
    let leak = env.leak_check(&id);
    let on_disk = fs::read(moat_bin()).expect("read the moat binary");
    let held = {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        let pid = init_pid(&env, &id);
        let exe = format!("/proc/{pid}/exe");
        let target = fs::read_link(&exe).expect("readlink exe");
        assert!(
            !target.to_string_lossy().contains("memfd:"),
            "moat fell back to a sealed memfd copy ({}) on a kernel with open_tree/mount_setattr",
            target.display()
        );
        let st = nix::sys::statvfs::statvfs(exe.as_str()).expect("statvfs exe");
        assert!(
            st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
            "the container's init runs moat from a writable mount"
        );
        let fd = open(
            exe.as_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open exe O_PATH");
        // SAFETY: open returned a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        env.moat(&["delete", "--force", &id]).assert_ok();
        fd
    };
    leak.verify();
    use std::os::fd::AsRawFd;
    let reopen = format!("/proc/self/fd/{}", held.as_raw_fd());
    // O_APPEND and nothing written: if the open wrongly succeeds, the
    // binary is still untouched. ETXTBSY (checked by the kernel before the
    // mount's read-only flag) only means the killed init has not finished
    // exiting yet: retry until the answer is about the mount.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match open(
            reopen.as_str(),
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let _ = nix::unistd::close(fd);
                panic!(
                    "host root reopened moat's binary for writing through the init's /proc/PID/exe"
                );
            }
            Err(nix::errno::Errno::ETXTBSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                assert_eq!(e, nix::errno::Errno::EROFS, "reopen for writing");
                break;
            }
        }
    }
    assert_eq!(fs::read(moat_bin()).expect("reread"), on_disk);
}

#[test]
fn exec_gets_the_same_sandbox_as_init() {
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "300"]);
    let mut caps: Vec<&str> = ALLOWLIST.to_vec();
    caps.extend_from_slice(GREEDY);
    b.set_capabilities(&caps);
    let (id, _g) = env.start_sleeper(&b, "exec");
    let leak = env.leak_check(&id);
    let init = init_pid(&env, &id);
    let init_map = fs::read_to_string(format!("/proc/{init}/uid_map")).unwrap();
    let host = assert_private_map(&init_map);

    // Plain exec.
    let script = format!("echo BEGIN uid; cat /proc/self/uid_map; echo END uid; {STATUS_SCRIPT}");
    let out = env.moat(&["exec", &id, "sh", "-c", &script]);
    out.assert_ok();
    assert_eq!(
        assert_private_map(between_markers(&out.stdout, "uid")),
        host,
        "{out}"
    );
    let st = kv(&out.stdout);
    assert_eq!(st["NoNewPrivs"], "1", "{out}");
    assert_eq!(st["Seccomp"], "2", "{out}");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let v = hex(&st, set);
        assert_eq!(v & !ALLOWED_CAPS_MASK, 0, "exec {set}={v:#x}\n{out}");
    }

    // --cap asks for more: still capped.
    let out = env.moat(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        &id,
        "sh",
        "-c",
        STATUS_SCRIPT,
    ]);
    out.assert_ok();
    {
        let st = kv(&out.stdout);
        assert_eq!(hex(&st, "CapEff") & CAP_SYS_ADMIN, 0, "{out}");
        assert_eq!(hex(&st, "CapBnd") & CAP_SYS_ADMIN, 0, "{out}");
    }

    // --process JSON asking for CAP_SYS_ADMIN and privilege escalation.
    let process = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["/bin/sh", "-c", STATUS_SCRIPT],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_RAW"],
            "effective": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_RAW"],
            "inheritable": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_RAW"],
            "ambient": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_RAW"]
        },
        "noNewPrivileges": false
    });
    let pfile = env.tmp.path().join("process.json");
    fs::write(&pfile, serde_json::to_vec(&process).unwrap()).unwrap();
    let out = env.moat(&["exec", "--process", pfile.to_str().unwrap(), &id]);
    out.assert_ok();
    let st = kv(&out.stdout);
    let eff = hex(&st, "CapEff");
    assert_eq!(
        eff & CAP_SYS_ADMIN,
        0,
        "--process got CAP_SYS_ADMIN: {eff:#x}\n{out}"
    );
    assert_eq!(
        eff & CAP_NET_RAW,
        0,
        "--process got CAP_NET_RAW: {eff:#x}\n{out}"
    );
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
        let v = hex(&st, set);
        assert_eq!(v & !ALLOWED_CAPS_MASK, 0, "--process {set}={v:#x}\n{out}");
    }
    assert_eq!(st["NoNewPrivs"], "1", "{out}");
    assert_eq!(st["Seccomp"], "2", "{out}");

    // Exit codes propagate.
    for code in [0, 7, 255] {
        let out = env.moat(&["exec", &id, "sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.code, Some(code), "{out}");
    }

    env.moat(&["delete", "--force", &id]).assert_ok();
    leak.verify();
}

#[test]
fn kill_ps_pause_resume_list() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let (id, _g) = env.start_sleeper(&b, "ctl");
    let leak = env.leak_check(&id);
    let pid = init_pid(&env, &id);

    let ps = env.moat(&["ps", "--format", "json", &id]);
    ps.assert_ok();
    let pids: Vec<i64> = serde_json::from_value(ps.json()).expect("ps json is a list of pids");
    assert!(pids.contains(&(pid as i64)), "ps {pids:?} lacks init {pid}");

    let list = env.moat(&["list", "--format", "json"]);
    list.assert_ok();
    let rows = list.json();
    let row = rows
        .as_array()
        .expect("list json is an array")
        .iter()
        .find(|r| r["id"] == json!(id))
        .unwrap_or_else(|| panic!("list lacks {id}: {rows}"));
    assert_eq!(row["status"], "running", "{row}");
    assert_eq!(row["pid"], json!(pid), "{row}");

    env.moat(&["pause", &id]).assert_ok();
    assert_eq!(env.status(&id), "paused");
    let freezer = cgroup_dir(Path::new("/sys/fs/cgroup/freezer"), &id).join("freezer.state");
    if freezer.exists() {
        assert_eq!(read_or_empty(&freezer).trim(), "FROZEN");
    }
    env.moat(&["resume", &id]).assert_ok();
    assert_eq!(env.status(&id), "running");

    env.moat(&["kill", &id, "SIGKILL"]).assert_ok();
    env.wait_status(&id, "stopped", Duration::from_secs(10));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || read_or_empty(Path::new(&format!("/proc/{pid}/stat"))).contains(") Z"),
        "init {pid} survived SIGKILL"
    );
    // A stopped container answers kill in runc's words, which containerd's
    // runc shim reads as "already finished" (StopContainer then succeeds).
    let again = env.moat(&["kill", &id, "SIGTERM"]);
    assert_eq!(again.code, Some(1), "{again}");
    assert!(again.stderr.contains("container not running"), "{again}");
    env.moat(&["delete", &id]).assert_ok();
    leak.verify();
}

/// Tries to listen on port 80 inside the container; prints
/// PORTSTART=<sysctl> and LISTEN=yes|no.
const LOW_PORT_SCRIPT: &str = r#"
echo "PORTSTART=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
nc -l -p 80 >/dev/null 2>&1 &
sleep 0.5
if grep -q ':0050 [0-9A-F]*:[0-9A-F]* 0A' /proc/net/tcp /proc/net/tcp6; then echo LISTEN=yes; else echo LISTEN=no; fi
kill $! 2>/dev/null
exit 0
"#;

/// The container's network namespace belongs to the host's user namespace,
/// where CAP_NET_BIND_SERVICE held in the container's does not act: moat
/// makes the ports of the namespace it creates unprivileged, so container
/// root can listen on port 80. A container that narrowed its capabilities
/// away from CAP_NET_BIND_SERVICE keeps privileged ports and cannot.
#[test]
fn port_80_listens_with_bind_service_and_not_without() {
    let env = Env::new();
    let b = env.sh_bundle(LOW_PORT_SCRIPT);
    let id = env.id("port80");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    let st = kv(&out.stdout);
    assert_eq!(st.get("PORTSTART").map(String::as_str), Some("0"), "{out}");
    assert_eq!(st.get("LISTEN").map(String::as_str), Some("yes"), "{out}");
    leak.verify();

    let mut b = env.sh_bundle(LOW_PORT_SCRIPT);
    b.annotate("moat.dev/capabilities.allow", "CAP_KILL");
    let id = env.id("port80-nocap");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    let st = kv(&out.stdout);
    assert_eq!(
        st.get("PORTSTART").map(String::as_str),
        Some("1024"),
        "{out}"
    );
    assert_eq!(st.get("LISTEN").map(String::as_str), Some("no"), "{out}");
    leak.verify();
}

#[test]
fn annotation_may_tighten_capabilities() {
    let env = Env::new();
    let mut b = env.sh_bundle(STATUS_SCRIPT);
    b.annotate("moat.dev/capabilities.allow", "CAP_KILL");
    let id = env.id("ann-caps");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    let st = kv(&out.stdout);
    assert_eq!(hex(&st, "CapEff"), CAP_KILL, "{out}");
    assert_eq!(hex(&st, "CapBnd") & !CAP_KILL, 0, "{out}");
    leak.verify();
}

#[test]
fn annotation_may_lower_the_pids_limit() {
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "300"]);
    b.annotate("moat.dev/resources.pids_limit", "50");
    let id = env.id("ann-pids");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        assert_eq!(pids_max(&id), "50");
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}

#[test]
fn annotation_may_not_raise_the_pids_limit() {
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "300"]);
    b.annotate("moat.dev/resources.pids_limit", "99999");
    let id = env.id("ann-loosen");
    let leak = env.leak_check(&id);
    let out = {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id])
    };
    out.assert_fails_with("annotations.overridable");
    leak.verify();
    let out = env.run(&b, &id);
    out.assert_fails_with("annotations.overridable");
    leak.verify();
}

#[test]
fn json_log_of_a_failing_create() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    fs::remove_dir_all(b.rootfs()).unwrap();
    let log = env.tmp.path().join("moat.log");
    let id = env.id("log");
    let leak = env.leak_check(&id);
    let out = env.moat_raw(&[
        "--root",
        env.root_str(),
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.path(),
        &id,
    ]);
    assert!(!out.success(), "{out}");
    let text = fs::read_to_string(&log).expect("log file written");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?} is not JSON: {e}"))
        })
        .collect();
    assert!(!lines.is_empty(), "empty log");
    for l in &lines {
        assert!(l["level"].is_string(), "no level: {l}");
        assert!(l["msg"].is_string(), "no msg: {l}");
        assert!(l["time"].is_string(), "no time: {l}");
    }
    let err = lines
        .iter()
        .find(|l| l["level"] == "error")
        .unwrap_or_else(|| panic!("no error line in log:\n{text}"));
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.contains("rootfs"),
        "error msg does not say what failed: {msg}"
    );
    leak.verify();
}

#[test]
fn explain_describes_changes_and_refuses_privileged() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    let out = env.moat(&["explain", b.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    for word in ["capabilities", "seccomp", "user-namespace"] {
        assert!(
            out.stdout.contains(word),
            "explain does not mention {word}:\n{out}"
        );
    }

    let mut p = env.bundle(&["true"]);
    p.config["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    p.write();
    let out = env.moat(&["explain", p.path()]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stdout.contains("would refuse"), "{out}");
    assert!(out.stdout.contains("refusals.allow_privileged"), "{out}");

    // explain creates nothing.
    assert!(
        !env.root.exists() || fs::read_dir(&env.root).unwrap().next().is_none(),
        "explain wrote into the state root"
    );
}

#[test]
fn features_is_json_with_seccomp_enabled() {
    let env = Env::new();
    let out = env.moat(&["features"]);
    out.assert_ok();
    let doc = out.json();
    assert_eq!(doc["linux"]["seccomp"]["enabled"], json!(true), "{doc}");
    let caps: Vec<String> =
        serde_json::from_value(doc["linux"]["capabilities"].clone()).expect("capabilities list");
    let mut want: Vec<String> = ALLOWLIST.iter().map(|s| s.to_string()).collect();
    let mut got = caps.clone();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "features lists capabilities beyond the allowlist"
    );
}

/// T20: a hostile image names its own NSS module in /etc/nsswitch.conf.
/// Without a HOME in the spec (as `runc spec` writes it), libcontainer asked
/// glibc for the user's home inside the container's init, which loaded the
/// image's `libnss_*.so.2` into the runtime's process before the seccomp
/// filter was on (seen here: the module ran with `Seccomp: 0`). moat sets
/// HOME from the image's passwd itself, so the module must never run. A
/// host-side control proves the planted module does load when glibc is
/// asked, so the test can fail.
#[test]
fn image_name_service_module_never_runs_in_the_runtime() {
    const MARK: &str = "MOAT-TEST-NSS-MODULE-RAN";
    let cc = |args: &[&str]| cmd::run_cmd("cc", args, Duration::from_secs(60)).expect_ok();
    let env = Env::new();
    let b = env.sh_bundle("echo HOME=$HOME; grep '^Seccomp:' /proc/self/status");
    let rootfs = b.rootfs();
    let work = tempfile::tempdir().unwrap();

    let module_src = work.path().join("nss.c");
    fs::write(
        &module_src,
        format!(
            "#include <unistd.h>\n\
             __attribute__((constructor)) static void ran(void) {{\n\
             static const char m[] = \"{MARK}\\n\";\n\
             (void)!write(2, m, sizeof m - 1);\n}}\n"
        ),
    )
    .unwrap();
    let multiarch = cc(&["-print-multiarch"]).stdout.trim().to_string();
    let module = work.path().join("libnss_moattest.so.2");
    cc(&[
        "-shared",
        "-fPIC",
        "-o",
        module.to_str().unwrap(),
        module_src.to_str().unwrap(),
    ]);
    for dir in ["lib", "usr/lib", "lib64"]
        .into_iter()
        .map(String::from)
        .chain([format!("lib/{multiarch}"), format!("usr/lib/{multiarch}")])
    {
        let d = rootfs.join(dir);
        fs::create_dir_all(&d).unwrap();
        fs::copy(&module, d.join("libnss_moattest.so.2")).unwrap();
    }
    fs::write(
        rootfs.join("etc/nsswitch.conf"),
        "passwd: moattest\ngroup: moattest\nshadow: moattest\n",
    )
    .unwrap();

    // Control: glibc, asked for a user inside this rootfs, loads the module.
    let lookup_src = work.path().join("lookup.c");
    fs::write(
        &lookup_src,
        "#include <pwd.h>\n#include <unistd.h>\n\
         int main(int c, char **v) { (void)c; if (chroot(v[1]) || chdir(\"/\")) return 2;\n\
         getpwuid(0); return 0; }\n",
    )
    .unwrap();
    let lookup = work.path().join("lookup");
    cc(&["-o", lookup.to_str().unwrap(), lookup_src.to_str().unwrap()]);
    let control = cmd::run_cmd(
        lookup.to_str().unwrap(),
        &[rootfs.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(
        control.stderr.contains(MARK),
        "control: glibc did not load the planted module, so this test proves nothing:\n{}",
        control.describe()
    );

    let id = env.id("nss");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        !out.stderr.contains(MARK) && !out.stdout.contains(MARK),
        "the image's NSS module ran inside the runtime:\n{out}"
    );
    assert!(out.stdout.contains("HOME=/root"), "{out}");
    assert!(out.stdout.contains("Seccomp:\t2"), "{out}");
    leak.verify();
}

/// Clears `FS_IMMUTABLE_FL` on drop, so the temporary directory holding the
/// file can be removed also when the test fails.
struct ImmutableFile(std::path::PathBuf);

impl ImmutableFile {
    fn set(path: &Path, on: bool) -> nix::Result<()> {
        use std::os::fd::AsRawFd;
        let file = fs::File::open(path)
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one int through a pointer to a
        // live c_int; the descriptor is open for the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } < 0 {
            return Err(nix::errno::Errno::last());
        }
        if on {
            flags |= moat::self_exe::FS_IMMUTABLE_FL;
        } else {
            flags &= !moat::self_exe::FS_IMMUTABLE_FL;
        }
        // SAFETY: FS_IOC_SETFLAGS reads one int through a pointer to a
        // live c_int; the descriptor is open for the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } < 0 {
            return Err(nix::errno::Errno::last());
        }
        Ok(())
    }
}

impl Drop for ImmutableFile {
    fn drop(&mut self) {
        let _ = Self::set(&self.0, false);
    }
}

/// T14 without the re-exec: a moat binary whose inode is immutable (as
/// hack/docker-register.sh installs it) runs the container's init from its
/// own path, and neither then nor after the init is gone can anyone, host
/// root included, reopen `/proc/<pid>/exe` for writing (EPERM). The
/// mutable binary's mode is
/// `runtime_binary_cannot_be_reopened_for_writing_through_proc_exe`.
#[test]
fn immutable_runtime_binary_skips_the_reexec_and_cannot_be_reopened_for_writing() {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::PermissionsExt;

    let env = Env::new();
    let b = env.sh_bundle("exit 0");
    let id = env.id("immexe");
    let leak = env.leak_check(&id);
    let bin = env.tmp.path().join("moat-immutable");
    fs::copy(moat_bin(), &bin).expect("copy the moat binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    let on_disk = fs::read(&bin).expect("read the copy");
    let _immutable = ImmutableFile(bin.clone());
    ImmutableFile::set(&bin, true).expect("set FS_IMMUTABLE_FL on the copy (chattr +i)");
    let write_open = |path: &str| {
        open(
            path,
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let held = {
        let _g = env.guard(&id);
        let status = std::process::Command::new(&bin)
            .args(env.argv(&["create", "--bundle", b.path(), &id]))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the immutable moat");
        assert!(
            status.success(),
            "create with the immutable binary: {status}"
        );
        let pid = init_pid(&env, &id);
        let exe = format!("/proc/{pid}/exe");
        assert_eq!(
            fs::read_link(&exe).expect("readlink exe"),
            bin,
            "an immutable moat still re-executed itself"
        );
        match write_open(exe.as_str()) {
            Ok(fd) => {
                let _ = nix::unistd::close(fd);
                panic!("host root opened the running init's binary for writing");
            }
            Err(e) => assert_eq!(
                e,
                nix::errno::Errno::EPERM,
                "open the init's exe for writing"
            ),
        }
        let fd = open(
            exe.as_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open exe O_PATH");
        // SAFETY: open returned a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        env.moat(&["delete", "--force", &id]).assert_ok();
        fd
    };
    leak.verify();
    // The CVE-2019-5736 step: reopen the held exe after moat is gone.
    match write_open(&format!("/proc/self/fd/{}", held.as_raw_fd())) {
        Ok(fd) => {
            let _ = nix::unistd::close(fd);
            panic!("host root reopened moat's binary for writing through the init's /proc/PID/exe");
        }
        Err(e) => assert_eq!(e, nix::errno::Errno::EPERM, "reopen for writing"),
    }
    assert_eq!(fs::read(&bin).expect("reread"), on_disk);
}
