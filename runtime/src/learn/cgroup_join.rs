//! The recorder's CPU and memory count against the container it records
//! (T39; red-team pass 5 G8). The recorder is forked by `moat create`
//! before the container's cgroup exists, in the caller's cgroup (the shim's,
//! dockerd's): every allowed syscall of a learning container is a round
//! trip through it, so a container under a small CPU quota made the host
//! do about as much work again outside its quota. At its first
//! notification the recorder joins the resource hierarchies of the process
//! that trapped (a process of the container: it runs under the container's
//! filter, and is blocked in that syscall while the recorder looks).
//!
//! Joined: cpu, cpuacct, memory and pids (what the work costs). Not the
//! devices hierarchy, whose members are what `kill --all` signals (the
//! recorder writes the profile and ends by itself), nor the freezer.
//! A cgroup v2 (unified) host is not handled here yet.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The v1 controllers whose cgroup the recorder joins.
const JOINED: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

static JOINED_ONCE: AtomicBool = AtomicBool::new(false);

/// At the first call, moves this process into the cgroups of `pid` (a
/// trapped process of the container). Later calls do nothing.
pub fn join_once(pid: u32) {
    if JOINED_ONCE.swap(true, Ordering::Relaxed) {
        return;
    }
    let Ok(table) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return;
    };
    for dir in cgroup_dirs(&table) {
        // The cgroup exists (the trapped process is in it): open, never
        // create, so nothing outlives the container's delete.
        let joined = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .and_then(|mut f| f.write_all(b"0"));
        if let Err(e) = joined {
            tracing::warn!(cgroup = %dir.display(), error = %e, "the seccomp recorder cannot join the container's cgroup");
        }
    }
}

/// The cgroupfs directories of the joined controllers in a
/// `/proc/<pid>/cgroup` table (`id:controllers:path` lines, read in the
/// host's cgroup namespace), for the v1 hierarchies mounted under
/// /sys/fs/cgroup by their controller list.
fn cgroup_dirs(table: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in table.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !controllers.split(',').any(|c| JOINED.contains(&c)) {
            continue;
        }
        let path = Path::new(path);
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        // The root cgroup is the host's own: never "joined".
        if !plain || !path.is_absolute() || path == Path::new("/") {
            continue;
        }
        let rel = path.strip_prefix("/").unwrap_or(path);
        out.push(Path::new("/sys/fs/cgroup").join(controllers).join(rel));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_the_resource_hierarchies_only() {
        let table = "12:devices:/moat/c1\n11:cpu,cpuacct:/moat/c1\n10:memory:/moat/c1\n9:pids:/moat/c1\n8:freezer:/moat/c1\n1:name=systemd:/x\n0::/\n";
        assert_eq!(
            cgroup_dirs(table),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/moat/c1"),
                PathBuf::from("/sys/fs/cgroup/memory/moat/c1"),
                PathBuf::from("/sys/fs/cgroup/pids/moat/c1"),
            ]
        );
    }

    #[test]
    fn odd_paths_and_the_root_are_skipped() {
        let table = "9:pids:/\n10:memory:/moat/../x\n11:cpu:relative\n12:cpuacct\n";
        assert!(cgroup_dirs(table).is_empty());
    }
}
