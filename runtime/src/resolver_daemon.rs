//! The node-wide resolver owes nothing to the process that started it
//! (R6-7, threat T41): the first `moat create` that needs the resolver
//! starts it, and that create runs in some tenant's job, shim or scope.
//! What a process inherits from its parent, and what moat does with each:
//!
//! - cgroups (every v1 hierarchy and v2): the supervisor moves itself into
//!   [`SYSTEM_CGROUP`] before it starts the worker, so killing or
//!   OOM-killing the caller's cgroup, or a small `pids.max`/`cpu` quota on
//!   it, never reaches the resolver. No limits are set there: the resolver
//!   serves every tenant at once, so any limit it hit would be a node-wide
//!   DNS outage; what one tenant can make it do is bounded per namespace
//!   (connections, one query read at a time, rate-limited log lines).
//! - rlimits: set explicitly ([`reset_rlimits`]): a caller's `ulimit -n
//!   12` made the next tenant's create fail.
//! - environment (cleared but `PATH`), working directory (`/`), umask
//!   (022), session (its own), descriptors (none but its log), nice value
//!   and scheduling policy (`SCHED_OTHER`, nice 0), OOM score
//!   ([`OOM_SCORE_ADJ`]: the kernel kills a tenant's process before the
//!   node's DNS).
//! - Not reset (cannot be shed, documented in the threat model):
//!   capabilities, no_new_privs and a seccomp filter the caller carries
//!   (moat create adds none of them to itself before it starts the
//!   resolver; they are logged when present), and the caller's mount and
//!   network namespaces (the resolver must see the same state root and
//!   netns pins as the creates; its serving threads enter each
//!   container's network namespace by descriptor).

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// The cgroup (in every hierarchy) moat's node services run in.
pub const SYSTEM_CGROUP: &str = "moat-system/resolver";

/// The resolver's OOM score adjustment.
pub const OOM_SCORE_ADJ: i32 = -500;

/// Open files allowed to the resolver (a served namespace takes about
/// six, plus a few per TCP client and upstream query).
pub const NOFILE: u64 = 65_536;

/// The command that starts `moat resolver` detached from the caller: its
/// own session, `/` as its directory, umask 022, a clean environment, no
/// descriptor but stderr on `log` (a shim waits for EOF on the pipes it
/// gave `moat create`).
pub fn command(root: &Path, log: fs::File) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(root)
        .arg("resolver")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid, umask and close_range are async-signal-safe; this
    // runs in the forked child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::umask(0o022);
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    cmd
}

/// Run first by the supervisor (its worker inherits all of it): leaves
/// the caller's cgroups, limits, priority and OOM score. What fails is
/// logged and the resolver runs anyway (a create that cannot get DNS at
/// all is worse than one resolver in a caller's cgroup).
pub fn leave_caller() {
    if let Err(e) = join_system_cgroup(std::process::id()) {
        tracing::error!(error = %format!("{e:#}"), cgroup = SYSTEM_CGROUP, "moat resolver: cannot move into its own cgroup; it shares its starter's");
    }
    for e in reset_rlimits() {
        tracing::error!(error = %e, "moat resolver: cannot reset a resource limit");
    }
    // SAFETY: plain syscalls on this process with valid arguments.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 0);
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
    }
    if let Err(e) = fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ.to_string()) {
        tracing::error!(error = %e, "moat resolver: cannot set its oom_score_adj");
    }
    log_inherited_confinement();
}

/// The resource limits the resolver runs with, whatever its starter had:
/// no core dumps (it holds tenants' queries), [`NOFILE`] files, an 8 MiB
/// stack, everything else unlimited.
pub fn rlimits() -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
    let inf = libc::RLIM_INFINITY;
    vec![
        (libc::RLIMIT_NOFILE, NOFILE, NOFILE),
        (libc::RLIMIT_CORE, 0, 0),
        (libc::RLIMIT_STACK, 8 << 20, inf),
        (libc::RLIMIT_CPU, inf, inf),
        (libc::RLIMIT_FSIZE, inf, inf),
        (libc::RLIMIT_DATA, inf, inf),
        (libc::RLIMIT_AS, inf, inf),
        (libc::RLIMIT_RSS, inf, inf),
        (libc::RLIMIT_NPROC, inf, inf),
        (libc::RLIMIT_LOCKS, inf, inf),
        (libc::RLIMIT_SIGPENDING, inf, inf),
        (libc::RLIMIT_MEMLOCK, 8 << 20, 8 << 20),
        (libc::RLIMIT_NICE, 0, 0),
        (libc::RLIMIT_RTPRIO, 0, 0),
        (libc::RLIMIT_RTTIME, inf, inf),
    ]
}

fn reset_rlimits() -> Vec<String> {
    let mut errors = Vec::new();
    for (resource, soft, hard) in rlimits() {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: plain setrlimit with a valid struct.
        if unsafe { libc::setrlimit(resource, &lim) } == 0 {
            continue;
        }
        // Without CAP_SYS_RESOURCE no hard limit can be raised: take the
        // hard limit the starter had as the soft one too (a caller's
        // `ulimit -Sn 12` is still undone).
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain getrlimit into a valid struct.
        let fallback = unsafe { libc::getrlimit(resource, &mut cur) } == 0 && {
            let lim = libc::rlimit {
                rlim_cur: soft.min(cur.rlim_max),
                rlim_max: hard.min(cur.rlim_max),
            };
            // SAFETY: plain setrlimit with a valid struct.
            unsafe { libc::setrlimit(resource, &lim) == 0 }
        };
        if !fallback {
            errors.push(format!(
                "resource {resource}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    errors
}

/// The directories of [`SYSTEM_CGROUP`] in every cgroup hierarchy mounted
/// here (one per v1 hierarchy, named ones included, and the v2 one).
pub fn system_cgroup_dirs() -> Result<Vec<PathBuf>> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut seen: Vec<(bool, Vec<String>)> = Vec::new();
    let mut dirs = Vec::new();
    for m in crate::cgroup_join::parse_cgroup_mounts(&mountinfo) {
        // The hierarchy's identity: v2, or the v1 controllers/name.
        let mut id: Vec<String> = m
            .options
            .iter()
            .filter(|o| !matches!(o.as_str(), "rw" | "ro") && !o.starts_with("release_agent"))
            .cloned()
            .collect();
        id.sort();
        if seen.contains(&(m.v2, id.clone())) {
            continue;
        }
        seen.push((m.v2, id));
        dirs.push(m.mount_point.join(SYSTEM_CGROUP));
    }
    Ok(dirs)
}

/// Moves `pid` into [`SYSTEM_CGROUP`] of every hierarchy, creating it.
fn join_system_cgroup(pid: u32) -> Result<()> {
    let mut errors = Vec::new();
    for dir in system_cgroup_dirs()? {
        if let Err(e) = join_one(&dir, pid) {
            errors.push(format!("{}: {e:#}", dir.display()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", errors.join("; "))
    }
}

fn join_one(dir: &Path, pid: u32) -> Result<()> {
    // Another state root's resolver may remove nothing here (moat never
    // removes this cgroup), but its creation may race ours: mkdir -p.
    fs::create_dir_all(dir).context("mkdir")?;
    // cpuset (v1) takes no task before it has cpus and mems: the parent's.
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(f);
        if own.exists() && fs::read_to_string(&own).is_ok_and(|s| s.trim().is_empty()) {
            let mut from = dir.to_path_buf();
            let mut value = String::new();
            while from.pop() {
                value = fs::read_to_string(from.join(f)).unwrap_or_default();
                if !value.trim().is_empty() {
                    break;
                }
            }
            // Fill the parent (moat-system) first, then the leaf.
            if let Some(parent) = dir.parent() {
                let _ = fs::write(parent.join(f), value.trim());
            }
            fs::write(&own, value.trim()).with_context(|| format!("write {f}"))?;
        }
    }
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
        .context("write cgroup.procs")
}

/// Logs the confinement a starter left on the resolver that a process
/// cannot shed (a seccomp filter, no_new_privs, missing capabilities).
fn log_inherited_confinement() {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let seccomp = field("Seccomp:").unwrap_or_default();
    let nnp = field("NoNewPrivs:").unwrap_or_default();
    let cap_eff = field("CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0);
    // CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_SYS_ADMIN.
    let needed: u64 = (1 << 10) | (1 << 12) | (1 << 21);
    if seccomp != "0" || nnp != "0" || cap_eff & needed != needed {
        tracing::warn!(seccomp, no_new_privs = nnp, cap_eff = format!("{cap_eff:x}"), "moat resolver: started by a confined caller; it keeps that confinement (start moat from an unconfined service for a node-wide resolver)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_explicitly_and_cap_files() {
        let l = rlimits();
        let get = |r| l.iter().find(|(x, _, _)| *x == r).copied().unwrap();
        assert_eq!(
            get(libc::RLIMIT_NOFILE),
            (libc::RLIMIT_NOFILE, NOFILE, NOFILE)
        );
        assert_eq!(get(libc::RLIMIT_CORE).1, 0);
        assert_eq!(get(libc::RLIMIT_CPU).1, libc::RLIM_INFINITY);
    }

    #[test]
    fn the_system_cgroup_is_in_every_hierarchy_once() {
        let dirs = system_cgroup_dirs().unwrap();
        assert!(!dirs.is_empty());
        let mut unique = dirs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), dirs.len(), "{dirs:?}");
        assert!(dirs.iter().all(|d| d.ends_with(SYSTEM_CGROUP)), "{dirs:?}");
    }
}
