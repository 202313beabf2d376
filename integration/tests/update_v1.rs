//! `moat update` on cgroup v1 (T36): every value is written through the
//! container's own cgroup directories, opened once as they exist (moat's
//! own writer, not libcgroups' by-path one), and lands in the container's
//! files; memory and memory+swap limits are raised and lowered in the order
//! the kernel accepts. Ends with the leak check.

use std::fs;
use std::path::PathBuf;

use moat_integration::*;

/// The container's v1 file `file` of controller `controller`, trimmed.
fn read_v1(id: &str, controller: &str, file: &str) -> Option<String> {
    let dir = cgroup_dir(&PathBuf::from("/sys/fs/cgroup").join(controller), id);
    fs::read_to_string(dir.join(file))
        .ok()
        .map(|t| t.trim().to_string())
}

const MIB: u64 = 1 << 20;

#[test]
fn update_writes_through_the_containers_own_v1_cgroup_files() {
    let env = Env::new();
    if !PathBuf::from("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        eprintln!("skipped: no cgroup v1 memory hierarchy");
        return;
    }
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "updv1");
    let leak = env.leak_check(&id);
    let swap = read_v1(&id, "memory", "memory.memsw.limit_in_bytes").is_some();
    let mem = |limit: u64, total: u64| {
        let mut args = vec![
            "update".to_string(),
            "--memory".into(),
            (limit * MIB).to_string(),
        ];
        if swap {
            args.extend(["--memory-swap".into(), (total * MIB).to_string()]);
        }
        args.push(id.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.moat(&args).assert_ok();
        assert_eq!(
            read_v1(&id, "memory", "memory.limit_in_bytes"),
            Some((limit * MIB).to_string())
        );
        if swap {
            assert_eq!(
                read_v1(&id, "memory", "memory.memsw.limit_in_bytes"),
                Some((total * MIB).to_string())
            );
        }
    };
    // Set, raised (memory+swap first), lowered (memory first).
    mem(64, 128);
    mem(256, 512);
    mem(32, 48);

    env.moat(&[
        "update",
        "--memory-reservation",
        &(16 * MIB).to_string(),
        "--cpu-share",
        "256",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "50000",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "42",
        &id,
    ])
    .assert_ok();
    for (controller, file, want) in [
        (
            "memory",
            "memory.soft_limit_in_bytes",
            (16 * MIB).to_string(),
        ),
        ("cpu", "cpu.shares", "256".into()),
        ("cpu", "cpu.cfs_period_us", "100000".into()),
        ("cpu", "cpu.cfs_quota_us", "50000".into()),
        ("cpuset", "cpuset.cpus", "0".into()),
        ("pids", "pids.max", "42".into()),
    ] {
        assert_eq!(
            read_v1(&id, controller, file).as_deref(),
            Some(want.as_str()),
            "{controller}/{file}"
        );
    }
    // A value the kernel refuses fails with one line naming the file, and
    // the limit stays.
    env.moat(&["update", "--cpu-quota", "1", &id])
        .assert_fails_with("cpu.cfs_quota_us");
    assert_eq!(
        read_v1(&id, "cpu", "cpu.cfs_quota_us").as_deref(),
        Some("50000")
    );
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}

/// Review L8: an update on v1 drops nothing silently. `memory.kernel` (the
/// kernel accepts the write and keeps no limit; runc ignores it) is refused
/// with one line and nothing of that update is written; `memory.kernelTCP`
/// lands in `memory.kmem.tcp.limit_in_bytes`; network classes the policy
/// does not allow are refused naming the policy key.
#[test]
fn update_v1_kernel_memory_is_refused_and_kernel_tcp_applied() {
    let env = Env::new();
    if !PathBuf::from("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes").exists() {
        eprintln!("skipped: no cgroup v1 kernel TCP memory file");
        return;
    }
    let b = env.bundle(&["sleep", "300"]);
    let (id, guard) = env.start_sleeper(&b, "updkm");
    let leak = env.leak_check(&id);
    let resources = env.tmp.path().join("resources.json");
    let update = |json: &str| {
        fs::write(&resources, json).unwrap();
        env.moat(&["update", "--resources", resources.to_str().unwrap(), &id])
    };
    let pids_before = read_v1(&id, "pids", "pids.max");
    let out = update(r#"{"memory": {"kernel": 16777216}, "pids": {"limit": 7}}"#);
    out.assert_fails_with("memory.kernel");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("memory.kernel") && l.contains("nothing was changed")),
        "{out}"
    );
    assert_eq!(read_v1(&id, "pids", "pids.max"), pids_before);
    update(r#"{"memory": {"kernelTCP": 11534336}}"#).assert_ok();
    assert_eq!(
        read_v1(&id, "memory", "memory.kmem.tcp.limit_in_bytes").as_deref(),
        Some("11534336")
    );
    update(r#"{"network": {"classID": 1048577}}"#)
        .assert_fails_with("resources.allow_network_classes");
    env.moat(&["delete", "--force", &id]).assert_ok();
    drop(guard);
    leak.verify();
}
