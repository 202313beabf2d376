//! Pods: one user namespace and one id range per pod (T5, T7).
//!
//! A pod is a sandbox container and the containers that join its
//! namespaces: containerd's CRI containers of one sandbox (they join its
//! ipc and uts namespaces, its network namespace, and its pid namespace
//! when the pod shares one), or docker's `--pid/--network/--ipc
//! container:X`. A pid namespace can only get a `/proc` from a process
//! whose user namespace owns it, so a container that joins the sandbox's
//! pid namespace must also be in the sandbox's user namespace: every
//! container of a pod joins the sandbox's user namespace and runs with its
//! id range, and the range is freed when the sandbox is deleted (its
//! members' processes still running with ids of it are killed then, as a
//! Kubernetes pod's containers do not outlive its sandbox).
//!
//! Which pod a container belongs to is decided by what it joins, never by a
//! name it gives: each namespace path of the spec was opened and judged
//! once ([`crate::pinned`]); its identity (device, inode) is looked up among
//! the namespaces of the inits of moat's containers under the same state
//! root, each proven to be that container's by its uid_map (its recorded
//! range), read through a pinned `/proc/<pid>` directory. Every namespace a
//! container joins must be of one pod; the user namespace it then joins is
//! opened from that same pinned `/proc/<pid>` directory, so it is the pod's
//! own, never a path the tenant named. A user namespace path in the spec is
//! accepted only when it is that very namespace. containerd's annotations
//! (`io.kubernetes.cri.sandbox-id`) must agree with what the namespaces say.

use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::idpool::{Allocation, IdPool, PoolError};
use crate::pinned::{PinnedPaths, RULE_NAMESPACE_PATH};
use crate::refusal::{Refusal, RefusalRule};
use crate::state::MoatState;

/// containerd's CRI annotation: "sandbox" or "container".
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// containerd's CRI annotation: the pod's sandbox id (the id of its
/// sandbox container).
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The file in a member's private state directory naming its pod's owner.
const OWNER_FILE: &str = "pod-owner";

/// The pod a container joins, found and pinned in precheck.
#[derive(Debug)]
pub struct Pod {
    /// The id of the pod's sandbox container, which owns the range.
    pub owner: String,
    /// The pod's range (the owner's allocation).
    pub allocation: Allocation,
    /// The pool the owner's range came from.
    pub pool_dir: Option<PathBuf>,
    /// The pod's user namespace, opened from the pinned `/proc/<pid>` of
    /// a container of the pod.
    userns: File,
    /// The pod's range, locked shared from [`find`] until the member's
    /// create ends (its init exists in its cgroup by then, or the create
    /// failed): the owner's delete cannot kill the pod and free the range
    /// in between, which would start the member in a freed range.
    _range_lock: RangeLock,
}

/// A lock on a pod's id range: its pool file, `flock`ed. A member's create
/// holds it shared from [`find`] until its init exists; the owner's delete
/// holds it exclusive from before it kills the pod's processes until the
/// range is freed. So a member either starts before the delete (and is
/// killed by it, through its cgroup) or finds the range gone (refused).
/// The pool file is replaced (rename) only at the owner's own create, and
/// removed only under the exclusive lock.
#[derive(Debug)]
pub struct RangeLock(Option<File>);

/// How long a lock is waited for before giving up: a create or delete
/// holding it runs for seconds at most.
const RANGE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls a non-blocking `flock(op)` on `file` until it is taken or
/// [`RANGE_LOCK_WAIT`] has passed.
fn flock_within(file: &File, op: libc::c_int) -> bool {
    let start = std::time::Instant::now();
    loop {
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
            return true;
        }
        if start.elapsed() > RANGE_LOCK_WAIT {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl RangeLock {
    /// The owner's delete: the exclusive lock on its pool file `file`. A
    /// file that cannot be opened or locked in time leaves no lock (the
    /// teardown still kills the range and keeps it while anything runs
    /// in it).
    pub fn for_teardown(file: &Path) -> RangeLock {
        let Ok(f) = File::open(file) else {
            return RangeLock(None);
        };
        if flock_within(&f, libc::LOCK_EX) {
            RangeLock(Some(f))
        } else {
            tracing::warn!(file = %file.display(), "a create of a pod member still holds the pod's range; tearing down without its lock");
            RangeLock(None)
        }
    }

    /// A member's create: the shared lock on the pod's pool file, then,
    /// under it, proof that the file is still the owner's (the very file
    /// locked is the one at the path, and names the owner).
    fn for_member(file: &Path, root: &Path, owner: &str) -> Result<RangeLock, Refusal> {
        let gone = || {
            refuse(format!(
                "pod {owner} no longer holds its id range (its sandbox was deleted)"
            ))
        };
        let f = File::open(file).map_err(|_| gone())?;
        if !flock_within(&f, libc::LOCK_SH) {
            return Err(refuse(format!(
                "pod {owner} is being deleted (its id range stayed locked)"
            )));
        }
        let same = match (f.metadata(), fs::metadata(file)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        let text = std::io::read_to_string(&f).unwrap_or_default();
        if !same || !crate::idpool::claim_names(&text, root, owner) {
            return Err(gone());
        }
        Ok(RangeLock(Some(f)))
    }
}

impl Drop for RangeLock {
    /// Unlocks explicitly: libcontainer's forked init inherits the
    /// descriptor (closed only when it execs the workload at `start`), and
    /// a lock held by that open file would keep the owner's delete waiting.
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            // SAFETY: flock on a descriptor we own.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// The containers of `root` that recorded `owner` as their pod's owner
/// (not the owner itself).
pub fn members(root: &Path, owner: &str) -> Vec<String> {
    fs::read_dir(crate::state::private_root(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|id| id != owner && owner_of(root, id) == owner)
        .collect()
}

impl Pod {
    /// A name of the pinned user namespace that libcontainer's forked
    /// children (which inherit moat's descriptors) open as this very
    /// namespace, whatever happens to any path on the host.
    pub fn user_namespace_handle(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.userns.as_raw_fd()))
    }
}

/// One container of the state root, with what it is proven to hold.
struct Candidate {
    id: String,
    owner: String,
    state: MoatState,
    proc_dir: OwnedFd,
}

fn refuse(detail: String) -> Refusal {
    Refusal::new(RULE_NAMESPACE_PATH, detail, None)
}

fn ns_identity(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// The owner of the pod `id` belongs to (itself when it is a sandbox or
/// alone).
pub fn owner_of(root: &Path, id: &str) -> String {
    fs::read_to_string(crate::state::private_dir(root, id).join(OWNER_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| id.to_string())
}

/// Records in the member's private state which pod it belongs to.
pub fn record_membership(private: &Path, pod: Option<&Pod>) -> std::io::Result<()> {
    match pod {
        Some(p) => crate::rootfs::write_atomic(&private.join(OWNER_FILE), p.owner.as_bytes()),
        None => Ok(()),
    }
}

/// The range of a new container: the pod's when it joins one (nothing is
/// allocated), else the engine's (`engine`, see [`engine_range`]) claimed
/// in the pool, else a fresh one from the pool.
pub fn allocation(
    pool: &IdPool,
    pod: Option<&Pod>,
    engine: Option<crate::harden::IdRange>,
    root: &Path,
    id: &str,
) -> Result<Allocation, PoolError> {
    match (pod, engine) {
        (Some(p), _) => Ok(p.allocation),
        (None, Some(range)) => pool.claim_engine_range(root, id, range),
        (None, None) => pool.allocate(root, id),
    }
}

/// An engine range another container took since precheck stays the
/// one-line refusal; any other pool error says what failed.
pub fn refusal_or_context(e: PoolError) -> anyhow::Error {
    match e {
        PoolError::EngineRange(r) => anyhow::anyhow!(r),
        other => anyhow::Error::new(other).context("cannot allocate a host id range"),
    }
}

/// The range an engine's mapping in `spec` names, judged at the edge
/// (`moat::harden::engine_id_range`) against the ranges other containers
/// hold now; for a pod member, the pod's range, which the engine's mapping
/// (containerd 2 repeats the sandbox's in every container) must equal.
/// `None`: moat gives a range from its pool. Put in `HostFacts::id_range`
/// by precheck and claimed by [`allocation`].
pub fn engine_range(
    spec: &Spec,
    policy: &crate::policy::Policy,
    origin: crate::engine_bundle::Origin,
    pod: Option<&Pod>,
) -> Result<Option<crate::harden::IdRange>, Refusal> {
    let pool = IdPool::new(&policy.user_namespace);
    let held = match pod {
        Some(_) => Vec::new(),
        None => pool.held_ranges(Path::new("")),
    };
    let engine = crate::harden::engine_id_range(spec, &policy.user_namespace, origin, &held)?;
    match (pod, engine) {
        (Some(p), Some(range)) if range != p.allocation.range => Err(Refusal::new(
            RefusalRule::UserNamespaceMapping,
            format!(
                "linux.uidMappings maps container ids to host ids from {}, but pod {} runs with host ids from {}",
                range.host_id, p.owner, p.allocation.range.host_id
            ),
            None,
        )),
        (Some(p), _) => Ok(Some(p.allocation.range)),
        (None, e) => Ok(e),
    }
}

/// Records the container's cgroup with its range (see
/// [`IdPool::record`]); a pod member's range is its sandbox's, which keeps
/// the sandbox's record.
pub fn record_claim(
    pool: &IdPool,
    pod: Option<&Pod>,
    allocation: &Allocation,
    root: &Path,
    id: &str,
    record: &crate::idpool::ClaimRecord,
) -> Result<(), PoolError> {
    match pod {
        Some(_) => Ok(()),
        None => pool.record(allocation, root, id, record),
    }
}

/// The network namespace of container `id`'s init, opened through its
/// proven `/proc/<pid>` (see [`proven_init`]) while a pidfd opened first
/// shows the process alive: a pid the init left and the host reused cannot
/// show another namespace (its uid_map is not the container's range, and a
/// `/proc/<pid>` opened before the reuse no longer resolves). `None`: no
/// running init of that container. For `moat egress` and `moat metrics`.
pub fn init_network_namespace(root: &Path, id: &str) -> Option<File> {
    let state = MoatState::load(root, id).ok().flatten()?;
    let pid = recorded_pid(root, id)?;
    let pidfd = crate::pidfd::Pidfd::open(i32::try_from(pid).ok()?).ok()?;
    let proc_dir = proven_init(root, id, &state)?;
    let ns = open_at(&proc_dir, "ns/net").ok()?;
    pidfd.is_alive().then_some(ns)
}

/// The init pid libcontainer recorded for `id`.
fn recorded_pid(root: &Path, id: &str) -> Option<i64> {
    fs::read(root.join(id).join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("pid").and_then(|p| p.as_i64()))
}

/// Opens `/proc/<pid>` of a container's init and proves it is that
/// container's: its uid_map maps container root onto the recorded range.
fn proven_init(root: &Path, id: &str, state: &MoatState) -> Option<OwnedFd> {
    let pid = recorded_pid(root, id)?;
    let range = state.allocation?.range;
    let proc_dir = crate::pinned::open_bundle(Path::new(&format!("/proc/{pid}"))).ok()?;
    let map = read_at(&proc_dir, "uid_map").ok()?;
    let first: Vec<u64> = map
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    (first == [0, u64::from(range.host_id), u64::from(range.size)]).then_some(proc_dir)
}

fn read_at(dir: &OwnedFd, name: &str) -> std::io::Result<String> {
    let f = open_at(dir, name)?;
    std::io::read_to_string(f)
}

fn open_at(dir: &OwnedFd, name: &str) -> std::io::Result<File> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn fstat_at(dir: &OwnedFd, name: &str) -> Option<(u64, u64)> {
    nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, nix::fcntl::AtFlags::empty())
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

/// The user namespace path the spec names, if any.
pub fn user_namespace_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
        .and_then(|n| n.path().clone())
}

/// The pod whose namespaces `spec` joins, if any (see the module doc).
/// Refuses a spec that joins namespaces of two pods, one whose CRI
/// annotations name another pod than its namespaces do, a sandbox that
/// joins another pod, and a user namespace path that is not its pod's.
pub fn find(root: &Path, spec: &Spec, pinned: &PinnedPaths) -> Result<Option<Pod>, Refusal> {
    let joined: Vec<(LinuxNamespaceType, (u64, u64))> = pinned
        .namespaces
        .iter()
        .filter(|n| !n.is_host)
        .filter_map(|n| ns_identity(&n.file).map(|id| (n.typ, id)))
        .collect();
    let user_path = user_namespace_path(spec);
    if joined.is_empty() && user_path.is_none() {
        return Ok(None);
    }
    // Every proven container of the root holding one of the joined
    // namespaces.
    let mut holders: Vec<(Candidate, Vec<LinuxNamespaceType>)> = Vec::new();
    for e in fs::read_dir(root).into_iter().flatten().flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if id == crate::state::PRIVATE_DIR {
            continue;
        }
        let Some(state) = MoatState::load(root, &id).ok().flatten() else {
            continue;
        };
        let Some(proc_dir) = proven_init(root, &id, &state) else {
            continue;
        };
        let held: Vec<LinuxNamespaceType> = joined
            .iter()
            .filter(|(t, ident)| {
                fstat_at(&proc_dir, &format!("ns/{}", crate::pinned::ns_kind(*t))) == Some(*ident)
            })
            .map(|(t, _)| *t)
            .collect();
        if !held.is_empty() {
            let owner = owner_of(root, &id);
            holders.push((
                Candidate {
                    id,
                    owner,
                    state,
                    proc_dir,
                },
                held,
            ));
        }
    }
    let mut owners: Vec<&str> = holders.iter().map(|(c, _)| c.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    let annotations = spec.annotations().clone().unwrap_or_default();
    let cri_type = annotations.get(CRI_CONTAINER_TYPE).map(String::as_str);
    let cri_sandbox = annotations.get(CRI_SANDBOX_ID).map(String::as_str);
    let owner = match owners.as_slice() {
        // A user namespace path of no pod of moat's is judged as an
        // engine's own (crate::engine_userns) by the caller.
        [] => return Ok(None),
        [one] => one.to_string(),
        many => {
            return Err(refuse(format!(
                "the spec joins namespaces of {} pods ({}): a container belongs to one pod",
                many.len(),
                many.join(", ")
            )))
        }
    };
    if cri_type == Some("sandbox") {
        return Err(refuse(format!(
            "a pod sandbox joins no other pod's namespaces, and these are pod {owner}'s"
        )));
    }
    if let Some(sandbox) = cri_sandbox.filter(|_| cri_type == Some("container")) {
        if sandbox != owner {
            return Err(refuse(format!(
                "the container belongs to pod {sandbox} ({CRI_SANDBOX_ID}) but its namespaces are pod {owner}'s"
            )));
        }
    }
    // The pod's user namespace, from a proven init of the pod (all must
    // agree), and its range, which the owner must still hold.
    let mut userns: Option<(File, (u64, u64))> = None;
    for (c, _) in &holders {
        let f = open_at(&c.proc_dir, "ns/user")
            .map_err(|e| refuse(format!("cannot open the user namespace of {}: {e}", c.id)))?;
        let ident = ns_identity(&f);
        match &userns {
            None => userns = ident.map(|i| (f, i)),
            Some((_, first)) if Some(*first) != ident => {
                return Err(refuse(format!(
                    "the containers of pod {owner} whose namespaces the spec joins are in different user namespaces"
                )))
            }
            Some(_) => {}
        }
    }
    let Some((userns, userns_id)) = userns else {
        return Err(refuse(format!(
            "cannot identify the user namespace of pod {owner}"
        )));
    };
    let host_userns = fs::metadata("/proc/self/ns/user").map(|m| (m.dev(), m.ino()));
    if host_userns.is_ok_and(|h| h == userns_id) {
        return Err(refuse(format!(
            "pod {owner} runs in the host's user namespace"
        )));
    }
    if let Some(path) = &user_path {
        // O_PATH: only its identity is read, and a FIFO cannot block.
        let named = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
            .ok()
            .and_then(|f| ns_identity(&f))
            .ok_or_else(|| {
                Refusal::new(
                    RefusalRule::UserNamespacePath,
                    format!("user namespace path {} cannot be opened", path.display()),
                    None,
                )
            })?;
        if named != userns_id {
            return Err(Refusal::new(
                RefusalRule::UserNamespacePath,
                format!(
                    "user namespace path {} is not the user namespace of pod {owner}, whose other namespaces the container joins",
                    path.display()
                ),
                None,
            ));
        }
    }
    let (first, _) = &holders[0];
    let Some(allocation) = first.state.allocation else {
        return Err(refuse(format!("pod {owner} has no id range")));
    };
    let pool_dir = first.state.pool_dir.clone();
    let range_lock = match &pool_dir {
        Some(dir) => RangeLock::for_member(&dir.join(allocation.file_name()), root, &owner)?,
        None => RangeLock(None),
    };
    Ok(Some(Pod {
        owner,
        allocation,
        pool_dir,
        userns,
        _range_lock: range_lock,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded init pid that now names another process (here the test
    /// itself, in the host's user namespace: as after the init exited and
    /// the host reused its pid) shows no namespace: its uid_map is not the
    /// container's range. The same state with the process's real map does.
    #[test]
    fn a_reused_init_pid_shows_no_network_namespace() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let id = "c";
        fs::create_dir_all(root.join(id)).unwrap();
        fs::write(
            root.join(id).join("state.json"),
            format!("{{\"pid\": {}}}", std::process::id()),
        )
        .unwrap();
        fs::create_dir_all(crate::state::private_dir(root, id)).unwrap();
        let state = |host_id, size| MoatState {
            id: id.into(),
            bundle: PathBuf::from("/nonexistent"),
            allowed_capabilities: Vec::new(),
            allocation: Some(Allocation {
                slot: 0,
                range: crate::harden::IdRange { host_id, size },
                engine: false,
            }),
            pool_dir: None,
            pids_limit: None,
            rootfs: None,
            report: Default::default(),
            joinable: false,
            init_start_time: None,
        };
        state(3_000_000_000, 65536).save(root).unwrap();
        assert!(init_network_namespace(root, id).is_none());
        // The map this process really has (the host's: 0 0 4294967295).
        state(0, u32::MAX).save(root).unwrap();
        let ns = init_network_namespace(root, id).expect("the proven init's namespace");
        let own = fs::metadata("/proc/self/ns/net").unwrap();
        assert_eq!(ns_identity(&ns), Some((own.dev(), own.ino())));
    }
}
