//! Id-range leases whose container's state was removed without a delete
//! (a killed test run, an `rm -rf` of a `--root`) are reclaimed once their
//! owner is provably gone (T3): no state, no process with an id of the
//! range. Each test ends with the leak check.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use moat_integration::*;

const BASE: u32 = 2_000_000_000;
const SIZE: u32 = 65536;

/// A policy whose pool is the env's own, with room for one container, far
/// from the default pool's ids.
fn one_range_policy(env: &Env) -> (String, std::path::PathBuf) {
    let pool = env.tmp.path().join("pool");
    let pf = policy_file(
        env,
        "one-range.toml",
        &format!(
            "[user_namespace]\nhost_id_base = {BASE}\nrange_size = {SIZE}\nranges = 1\npool_dir = {:?}\n",
            pool.display().to_string()
        ),
    );
    (pf, pool)
}

/// Lease files of `pool` (slot and engine files, not stamps or claims)
/// and their first line.
fn leases(pool: &Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = fs::read_dir(pool)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let text = fs::read_to_string(e.path()).ok()?;
            Some((name, text.lines().next().unwrap_or_default().to_string()))
        })
        .collect();
    found.sort();
    found
}

/// Processes (zombies too) whose `/proc/<pid>` owner is in the policy's
/// one range.
fn processes_in_range() -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let uid = fs::symlink_metadata(e.path()).ok()?.uid();
            let pid = e.file_name().to_str()?.parse().ok()?;
            (BASE..BASE + SIZE)
                .contains(&uid)
                .then(|| format!("{pid} {}", proc_cmdline(pid)))
        })
        .collect()
}

/// What a killed test run leaves: the container's processes are killed by
/// pid, its mounts and cgroups dropped and its whole `--root` removed, with
/// no `moat delete`.
fn remove_by_hand(env: &Env, id: &str) {
    let pids: Vec<i32> = processes_in_cgroup(id)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(!pids.is_empty(), "the container runs");
    for pid in &pids {
        // SAFETY: kill takes a pid and a signal; these pids were just read
        // from the container's own cgroup.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    // Until reaped: a zombie's ids count as in use (for allocation too).
    let start = Instant::now();
    loop {
        let left = processes_in_range();
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "killed processes stayed: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let paths = moat::container::ContainerPaths::new(&canonical_root(&env.root), id);
    let dir = paths.rootfs_dir.display().to_string();
    let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect();
    for m in mounts.iter().rev() {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    fs::remove_dir_all(&paths.rootfs_dir).unwrap();
    for cg in cgroup_dirs(id) {
        if cg.exists() {
            fs::remove_dir(&cg).unwrap_or_else(|e| panic!("rmdir {}: {e}", cg.display()));
        }
    }
    fs::remove_dir_all(&env.root).unwrap();
}

/// The lease of a container whose state and processes are gone is
/// reclaimed by the next create that finds the pool exhausted, and
/// nothing of either container is left.
#[test]
fn a_dead_containers_lease_is_reclaimed_by_the_next_create() {
    let env = Env::new();
    let (pf, pool) = one_range_policy(&env);
    let b = env.bundle(&["sleep", "300"]);
    let first = env.id("gone");
    let leak_first = env.leak_check(&first);
    let _g1 = env.guard(&first);
    env.moat(&["--policy", &pf, "create", "--bundle", b.path(), &first])
        .assert_ok();
    env.moat(&["--policy", &pf, "start", &first]).assert_ok();
    env.wait_status(&first, "running", Duration::from_secs(30));
    let root = canonical_root(&env.root);
    let owner = |id: &str| format!("{}\t{id}", root.display());
    assert_eq!(leases(&pool), vec![("0".to_string(), owner(&first))]);

    // While it runs, the only range is its: the next create is refused.
    let second = env.id("next");
    let _g2 = env.guard(&second);
    env.moat(&["--policy", &pf, "create", "--bundle", b.path(), &second])
        .assert_fails_with("exhausted");

    remove_by_hand(&env, &first);
    assert_eq!(
        leases(&pool),
        vec![("0".to_string(), owner(&first))],
        "nothing freed the lease by itself"
    );

    let leak_second = env.leak_check(&second);
    env.moat(&["--policy", &pf, "create", "--bundle", b.path(), &second])
        .assert_ok();
    assert_eq!(leases(&pool), vec![("0".to_string(), owner(&second))]);
    env.moat(&["--policy", &pf, "delete", "--force", &second])
        .assert_ok();
    assert!(leases(&pool).is_empty(), "{:?}", leases(&pool));
    leak_second.verify();
    leak_first.verify();
}
