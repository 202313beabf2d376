//! A container's lifecycle: create (harden, prepare the host side, hand
//! off to libcontainer), exec, delete and the teardown of everything moat
//! set up for it. The CLI (`commands/`) only parses arguments, calls these
//! and prints.

use std::fs;
use std::path::{Path, PathBuf};

use crate::policy::{Policy, DEFAULT_POLICY_PATH};
use crate::state::MoatState;
use anyhow::{bail, Context, Result};
use libcontainer::container::Container;

pub mod cgroup_ops;
pub mod create;
pub mod delete;
pub mod devices;
pub mod exec;
mod exec_confine;
pub mod learn;
pub mod paths;

pub use paths::ContainerPaths;

/// Where container state lives unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/moat";

/// Largest config.json accepted: far above any real spec, small enough that
/// a hostile bundle cannot make moat allocate without bound.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Settings every command shares.
pub struct Ctx {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    pub policy_path: Option<PathBuf>,
    /// Learn a seccomp profile for containers this invocation creates
    /// (`--learn-dir`, or `moat learn`).
    pub learn: Option<learn::LearnTarget>,
    /// The policy [`Ctx::policy`] read, kept for the rest of the command:
    /// `run` needs it again after create (and cleans up with the policy the
    /// container was created under). Only this process's memory.
    pub policy_read: std::cell::OnceCell<Policy>,
}

impl Ctx {
    /// The operator policy: `--policy`, else /etc/moat/policy.toml, else the
    /// embedded default. A file that exists but is invalid is an error, never
    /// silently replaced by the default.
    ///
    /// dockerd's `data-root` in /etc/docker/daemon.json, when host root's
    /// alone, is one more docker root (`Policy::with_docker_data_root`).
    pub fn policy(&self) -> Result<Policy> {
        if let Some(policy) = self.policy_read.get() {
            return Ok(policy.clone());
        }
        let policy = self.read_policy()?;
        Ok(self.policy_read.get_or_init(|| policy).clone())
    }

    fn read_policy(&self) -> Result<Policy> {
        let data_root =
            crate::docker_config::data_root(Path::new(crate::docker_config::DAEMON_JSON));
        Ok(self
            .policy_file()?
            .with_docker_data_root(data_root.as_deref()))
    }

    fn policy_file(&self) -> Result<Policy> {
        let (path, explicit) = match &self.policy_path {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_POLICY_PATH), false),
        };
        match fs::read_to_string(&path) {
            Ok(text) => Policy::from_toml(&text)
                .with_context(|| format!("invalid policy file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Policy::embedded())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read policy {}", path.display())),
        }
    }

    /// The policy for cleaning up: a broken policy file must not stop
    /// `delete` from removing a container, so it falls back to the default.
    pub fn policy_for_cleanup(&self) -> Policy {
        self.policy().unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "using the default policy to clean up");
            Policy::embedded()
        })
    }

    /// The state root, created 0700 if missing, canonicalised; moat's
    /// private directory in it is 0700 too. Directory names there are
    /// container ids, which no other host user may list (T17). moat's own
    /// default root is tightened when an older moat left it 0755; a root
    /// the caller made (`--root`) keeps the caller's mode.
    ///
    /// Canonical: the path of the directory opened once, read from its fd
    /// (`/proc/self/fd/N`), so `/run/moat/`, `/run/moat`, `/run/x/../moat`
    /// and a symlink to it are one root, with one tag
    /// (`crate::engine_bundle::state_root_tag`) in every verb that derives
    /// it (red-team pass 7: a tag of the spelling gave one directory
    /// several raw-tenant scopes).
    pub fn root(&self) -> Result<PathBuf> {
        let root_err = || format!("cannot create state root {}", self.root.display());
        crate::state::create_private_dir_all(&self.root).with_context(root_err)?;
        let resolve_err = || format!("cannot resolve state root {}", self.root.display());
        let fd = crate::pinned::open_bundle(&self.root).with_context(resolve_err)?;
        let root = crate::pinned::real_path(&fd).with_context(resolve_err)?;
        if root == Path::new(DEFAULT_ROOT) {
            crate::idpool::tighten_dir(&root).with_context(root_err)?;
        }
        crate::state::create_private_dir_all(&crate::state::private_root(&root))
            .context("cannot create moat's private state directory")?;
        Ok(root)
    }
}

pub fn validate_id(id: &str) -> Result<()> {
    crate::container_id::validate(id).map_err(|e| anyhow::anyhow!(e))
}

/// Loads a container, or fails with runc's "does not exist" wording.
pub fn load_container(ctx: &Ctx, id: &str) -> Result<Container> {
    validate_id(id)?;
    let root = ctx.root()?;
    let dir = ContainerPaths::new(&root, id).libcontainer_dir;
    if !dir.join("state.json").exists() {
        bail!(crate::runc_contract::DOES_NOT_EXIST);
    }
    Container::load(dir).with_context(|| format!("cannot load state of container {id}"))
}

/// The container's init, if its pid still names the process moat started
/// (T33): libcontainer trusts any live process with the recorded pid, so
/// after the init exits, a process of another tenant (or the host) that
/// reuses the pid would be exec'd into and signalled. The returned pidfd
/// stays with the init whatever happens to the pid later.
pub fn live_init(
    container: &Container,
    moat_state: Option<&MoatState>,
) -> Option<crate::pidfd::Pidfd> {
    let pid = container.pid()?;
    let started = moat_state?.init_start_time?;
    crate::pidfd::open_if_started_at(pid.as_raw(), started)
}

/// libcontainer's `refresh_status`, then stopped if the pid no longer
/// names the init moat started ([`live_init`]). Only the in-memory
/// status changes: every command that acts on the init reads it this way.
pub fn refresh_status(container: &mut Container, moat_state: Option<&MoatState>) {
    use libcontainer::container::ContainerStatus;
    let _ = container.refresh_status();
    let acts_on_init = matches!(
        container.status(),
        ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused
    );
    if acts_on_init && live_init(container, moat_state).is_none() {
        container.set_status(ContainerStatus::Stopped);
    }
}

/// Undoes everything moat itself set up for `id`: its processes left
/// running, the rootfs mounts, the id range and the private state
/// directory. Safe to call at any point after a crash, and when nothing is
/// left, also when the state directories are gone (T31: the pool claim
/// still records the cgroup, and the range finds the processes).
pub fn remove_moat_state(root: &Path, id: &str, policy: &Policy) -> Result<()> {
    remove_moat_state_after(root, id, policy, false)
}

/// [`remove_moat_state`], told whether libcontainer has just deleted the
/// container (its cgroup with it): then the recorded cgroup is not swept
/// again (building a cgroup manager costs a few milliseconds).
pub fn remove_moat_state_after(
    root: &Path,
    id: &str,
    policy: &Policy,
    libcontainer_deleted: bool,
) -> Result<()> {
    let paths = ContainerPaths::new(root, id);
    let dir = &paths.private_dir;
    crate::learn::stop_recorder(dir);
    // The id range: in the pool the state recorded, and in the current
    // policy's pool (the state is missing after a crash before it was saved).
    let recorded = MoatState::load(root, id)
        .ok()
        .flatten()
        .and_then(|m| m.pool_dir);
    let mut pools = vec![policy.user_namespace.clone()];
    if let Some(dir) = recorded {
        if dir != Path::new(&policy.user_namespace.pool_dir) {
            let mut p = policy.user_namespace.clone();
            p.pool_dir = dir.display().to_string();
            pools.push(p);
        }
    }
    // Kill first, then unmount: nothing of the container may still run
    // when its rootfs goes and its range is freed. A range's lock is held
    // from here until it is freed, so no member of the pod starts in it
    // meanwhile (see `crate::pod::RangeLock`). Freeing a range kills what
    // still runs with its ids (one /proc scan, right before the slot file
    // goes: T31), so the ranges are freed before the unmounts and that one
    // scan serves both.
    let mut range_locks = Vec::new();
    let mut freed = Ok(());
    for pool_policy in &pools {
        let pool = crate::idpool::IdPool::new(pool_policy);
        for owned in pool.owned(root, id) {
            range_locks.push(crate::pod::RangeLock::for_teardown(&owned.file));
            let systemd = owned.record.as_ref().is_some_and(|r| r.systemd);
            if let Some(record) = owned.record.as_ref().filter(|_| !libcontainer_deleted) {
                if record.cgroups_path.is_some() {
                    sweep_cgroup_path(&record.cgroups_path, id, record.systemd);
                }
            }
            // The pod's members run with this range: killed through their
            // cgroups, frozen, which no fork loop outruns; the scan of the
            // range in `free_owned_by` is the last resort.
            for member in crate::pod::members(root, id) {
                let config = ContainerPaths::new(root, &member).config;
                if let Ok(spec) = oci_spec::runtime::Spec::load(config) {
                    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
                    kill_cgroup_path(&cgroups_path, &member, systemd);
                }
            }
        }
        if let Err(e) = pool.free_owned_by(root, id) {
            // Still in use: the slot stays; the other pools' ranges are
            // still killed and freed, and the mounts go all the same.
            if freed.is_ok() {
                freed = Err(e);
            }
        }
    }
    crate::staging::unstage(&paths.staging);
    crate::resolver::detach(root, id);
    crate::netns::remove(&paths.netns);
    crate::netns::release_table_user(root, id);
    let sysfs = &paths.sysfs;
    for _ in 0..4 {
        if nix::mount::umount2(sysfs, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    let _ = fs::remove_dir(sysfs);
    crate::rootfs::teardown(dir, &paths.mount_point);
    // The cgroup create claimed, if this create was killed before
    // libcontainer took it over, then the directories above it that create
    // made (deepest first); rmdir only removes them empty (T22).
    if let Ok(claimed) = fs::read(&paths.cgroup_claim) {
        use std::os::unix::ffi::OsStrExt;
        for dir in claimed.split(|b| *b == 0).filter(|d| !d.is_empty()) {
            let _ = fs::remove_dir(Path::new(std::ffi::OsStr::from_bytes(dir)));
        }
    }
    freed.with_context(|| format!("cannot free the id range of {id}"))?;
    drop(range_locks);
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
    Ok(())
}

/// Loads moat's own state of a container, if it has one.
pub fn load_moat_state(root: &Path, id: &str) -> Result<Option<MoatState>> {
    MoatState::load(root, id).with_context(|| format!("cannot read moat state of {id}"))
}

/// Kills and removes the cgroup named in moat's hardened config.json, for a
/// container whose libcontainer state is unreadable (a crash mid-create).
pub fn sweep_cgroup(private_dir: &Path, id: &str, systemd: bool) {
    let Ok(spec) = oci_spec::runtime::Spec::load(private_dir.join(paths::CONFIG_FILE)) else {
        return;
    };
    sweep_cgroup_path(
        &spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()),
        id,
        systemd,
    );
}

/// Kills the processes of the cgroup libcontainer made for `id` from
/// `cgroups_path` (the spec's `linux.cgroupsPath`) and removes it.
pub fn sweep_cgroup_path(cgroups_path: &Option<PathBuf>, id: &str, systemd: bool) {
    let Some(manager) = cgroup_manager(cgroups_path, id, systemd) else {
        return;
    };
    use libcgroups::common::CgroupManager;
    kill_frozen(&manager, cgroups_path, id, systemd);
    if let Err(e) = manager.remove() {
        tracing::warn!(id, error = %e, "cannot remove the container's cgroup");
    }
}

/// Kills every process of the cgroup libcontainer made for `id` from
/// `cgroups_path`, frozen first, and leaves the cgroup (its container's own
/// delete removes it). For the members of a pod whose owner is deleted.
pub fn kill_cgroup_path(cgroups_path: &Option<PathBuf>, id: &str, systemd: bool) {
    if let Some(manager) = cgroup_manager(cgroups_path, id, systemd) {
        kill_frozen(&manager, cgroups_path, id, systemd);
    }
}

fn cgroup_manager(
    cgroups_path: &Option<PathBuf>,
    id: &str,
    systemd: bool,
) -> Option<libcgroups::common::AnyCgroupManager> {
    let cgroup_path = libcontainer::utils::get_cgroup_path(cgroups_path, id);
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path,
        systemd_cgroup: systemd,
        container_name: id.to_string(),
    })
    .ok()
}

/// Sends `signal` to every process left in the cgroup of a stopped
/// container (`kill --all` after its init exited), as runc does: in a pod
/// that shares its PID namespace, the init's children outlive it,
/// reparented to the pod's init, and hold the container's stdio; the
/// engine's kill of "all" is what ends them (containerd's runc shim sends
/// it when the init exits, and its CRI then waits for the stdio to close).
/// A missing or empty cgroup has nothing to signal. `spare` is the
/// container's `moat.dev/learn` recorder, if one runs (T39): it sits in the
/// container's resource cgroups, ends by itself once the container's
/// processes are gone, and must write its profile first.
pub fn signal_stopped_container(
    container: &Container,
    signal: nix::sys::signal::Signal,
    spare: Option<i32>,
) {
    let Ok(config) = container.spec() else {
        return;
    };
    let systemd = container.systemd();
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: config.cgroup_path.clone(),
        systemd_cgroup: systemd,
        container_name: container.id().to_string(),
    });
    if let Ok(manager) = manager {
        let by_fd = (!systemd).then_some(config.cgroup_path.as_path());
        signal_frozen(&manager, by_fd, signal, spare);
    }
}

/// SIGKILLs every process of a cgroup (see [`signal_frozen`]).
fn kill_frozen(
    manager: &libcgroups::common::AnyCgroupManager,
    cgroups_path: &Option<PathBuf>,
    id: &str,
    systemd: bool,
) {
    let path = libcontainer::utils::get_cgroup_path(cgroups_path, id);
    let by_fd = (!systemd).then_some(path.as_path());
    signal_frozen(manager, by_fd, nix::sys::signal::Signal::SIGKILL, None);
}

/// Sends `signal` to every process of a cgroup but `spare` with the cgroup
/// frozen (v1 freezer, v2 `cgroup.freeze`), so a process forking in a loop
/// cannot put a new child beyond the list being signalled; thawed after,
/// which delivers the signals. An empty or missing cgroup is left alone.
/// With `by_fd` (the cgroupfs driver's cgroup path) the freezer is written
/// through the cgroup's existing directory, so a cgroup removed meanwhile
/// is never made again (libcgroups' v1 freezer is `mkdir -p`, T36).
fn signal_frozen(
    manager: &libcgroups::common::AnyCgroupManager,
    by_fd: Option<&Path>,
    signal: nix::sys::signal::Signal,
    spare: Option<i32>,
) {
    use libcgroups::common::{CgroupManager, FreezerState};
    use nix::sys::signal::kill;
    if !manager.get_all_pids().is_ok_and(|p| !p.is_empty()) {
        return;
    }
    let freeze = |frozen: bool| match by_fd {
        Some(path) => crate::cgroup_join::set_frozen(path, frozen).is_ok(),
        None => manager
            .freeze(if frozen {
                FreezerState::Frozen
            } else {
                FreezerState::Thawed
            })
            .is_ok(),
    };
    let frozen = freeze(true);
    for pid in manager.get_all_pids().unwrap_or_default() {
        if Some(pid.as_raw()) != spare {
            let _ = kill(pid, signal);
        }
    }
    if frozen {
        freeze(false);
    }
}

/// runc's lowercase status names ("created", "running", …), which
/// containerd's runc shim parses.
pub fn status_name(status: libcontainer::container::ContainerStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| status.to_string().to_lowercase())
}

/// Kills processes left by a `moat create`/`run` of (`root`, `id`) that was
/// itself killed: libcontainer's intermediate and init processes are forks
/// of that moat and outlive it. They are found by their command line (a
/// fork keeps its parent's), which names the subcommand, the root and the id.
pub fn sweep_create_leftovers(root: &Path, id: &str) {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    let mut victims = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if is_create_of(&argv, root, id) {
            victims.push(nix::unistd::Pid::from_raw(pid));
        }
    }
    for pid in &victims {
        tracing::warn!(
            id,
            pid = pid.as_raw(),
            "killing a process forked by a create of this container (its init before start, or a leftover of an interrupted create)"
        );
        let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
    }
    // They are not our children: wait until /proc says they are gone.
    for _ in 0..100 {
        if victims.iter().all(|p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        }) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Does this argv run `moat … create|run … <id>` under `root`?
#[allow(
    clippy::disallowed_methods,
    reason = "moat's own state root, given by the engine"
)]
pub fn is_create_of(argv: &[String], root: &Path, id: &str) -> bool {
    let Some(first) = argv.first() else {
        return false;
    };
    if !Path::new(first)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("moat"))
    {
        return false;
    }
    let sub = argv.iter().position(|a| a == "create" || a == "run");
    let Some(sub) = sub else { return false };
    if argv.last().map(String::as_str) != Some(id) || argv.len() <= sub + 1 {
        return false;
    }
    let mut their_root = PathBuf::from(DEFAULT_ROOT);
    for (i, a) in argv[..sub].iter().enumerate() {
        if let Some(v) = a.strip_prefix("--root=") {
            their_root = PathBuf::from(v);
        } else if a == "--root" {
            if let Some(v) = argv.get(i + 1) {
                their_root = PathBuf::from(v);
            }
        }
    }
    fs::canonicalize(&their_root).unwrap_or(their_root) == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn create_leftovers_are_recognised_by_root_and_id() {
        let root = Path::new("/run/moat");
        assert!(is_create_of(
            &argv("/usr/local/bin/moat create --bundle /b c1"),
            root,
            "c1"
        ));
        assert!(is_create_of(
            &argv("moat --root /run/moat run -b /b c1"),
            root,
            "c1"
        ));
        assert!(!is_create_of(
            &argv("moat create --bundle /b c2"),
            root,
            "c1"
        ));
        assert!(!is_create_of(
            &argv("moat --root /other create --bundle /b c1"),
            root,
            "c1"
        ));
        assert!(!is_create_of(&argv("moat delete c1"), root, "c1"));
        assert!(!is_create_of(&argv("sleep create c1"), root, "c1"));
        assert!(!is_create_of(&[], root, "c1"));
    }
}
