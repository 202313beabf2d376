//! The host id pool: one uid/gid range per container, never shared.
//!
//! Each allocated range is a file `<pool_dir>/<slot>` created with O_EXCL,
//! so allocation is atomic across concurrent `moat create`s without a lock
//! daemon. The file names its owner (`<state root>\t<container id>`) on its
//! first line, so a `delete --force` after a crash can find and free a range
//! the state never recorded; a second line records the container's cgroup
//! (JSON), so its processes can be found after its state is gone (T31).
//!
//! A range is free only when nothing uses it (T31): [`IdPool::free_owned_by`]
//! kills the container's processes still running with an id of the range and
//! keeps the slot while any is alive, and [`IdPool::allocate`] skips a range
//! in which any process runs. The pool directory is 0700 and its files 0600:
//! they name containers (T17).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harden::IdRange;
use crate::policy::UserNamespacePolicy;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("id pool {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("id pool {0} is exhausted: every range is in use (policy key user_namespace.ranges)")]
    Exhausted(PathBuf),
    #[error(
        "host ids {}-{} are still used by processes {pids:?} of the container after SIGKILL; the range stays reserved (run delete --force again)",
        range.host_id,
        range.host_id + (range.size - 1)
    )]
    StillInUse { range: IdRange, pids: Vec<i32> },
    #[error("{0}")]
    EngineRange(crate::refusal::Refusal),
}

/// One allocated range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    pub slot: u32,
    pub range: IdRange,
    /// The engine chose the range (containerd 2's `hostUsers: false`): it is
    /// held by an `engine-<host_id>-<size>` file, not a slot of the pool.
    #[serde(default)]
    pub engine: bool,
}

const ENGINE_PREFIX: &str = "engine-";

impl Allocation {
    /// The name of the pool file that holds this range.
    pub fn file_name(&self) -> String {
        if self.engine {
            format!("{ENGINE_PREFIX}{}-{}", self.range.host_id, self.range.size)
        } else {
            self.slot.to_string()
        }
    }
}

/// What a slot file records about its container besides the owner: where
/// its processes are when its state is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimRecord {
    /// The spec's `linux.cgroupsPath` as libcontainer was given it.
    pub cgroups_path: Option<PathBuf>,
    /// Whether the cgroup is managed through systemd (`--systemd-cgroup`).
    #[serde(default)]
    pub systemd: bool,
}

/// One slot owned by a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSlot {
    /// The pool file that holds it.
    pub file: PathBuf,
    pub slot: u32,
    pub range: IdRange,
    pub record: Option<ClaimRecord>,
}

pub struct IdPool<'a> {
    policy: &'a UserNamespacePolicy,
    dir: PathBuf,
}

fn owner_tag(root: &Path, id: &str) -> String {
    format!("{}\t{}\n", root.display(), id)
}

/// Does slot-file `content` belong to `tag` (its first line)?
fn owned_by_tag(content: &str, tag: &str) -> bool {
    content.split_inclusive('\n').next() == Some(tag)
}

/// The record on a slot file's second line, if any.
fn parse_record(content: &str) -> Option<ClaimRecord> {
    let line = content.split_inclusive('\n').nth(1)?;
    serde_json::from_str(line.trim_end()).ok()
}

/// Creates `dir` (and missing ancestors) 0700, and takes group and other
/// access away from `dir` if an older moat left it open.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    tighten_dir(dir)
}

/// chmod 0700 when `dir` grants group or other any access.
pub fn tighten_dir(dir: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.is_dir() && meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl<'a> IdPool<'a> {
    pub fn new(policy: &'a UserNamespacePolicy) -> Self {
        Self {
            policy,
            dir: PathBuf::from(&policy.pool_dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, source: std::io::Error) -> PoolError {
        PoolError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    pub fn range_of(&self, slot: u32) -> IdRange {
        IdRange {
            host_id: self.policy.host_id_base + slot * self.policy.range_size,
            size: self.policy.range_size,
        }
    }

    /// The pool directory, created 0700 (and tightened when an older moat
    /// created it, or `/run/moat` above it, world-readable).
    fn open_dir(&self) -> Result<(), PoolError> {
        create_private_dir(&self.dir).map_err(|e| self.io(e))?;
        if let Some(parent) = self.dir.parent() {
            if parent == Path::new(DEFAULT_STATE_ROOT) {
                tighten_dir(parent).map_err(|e| self.io(e))?;
            }
        }
        Ok(())
    }

    /// Writes `content` to a fresh 0600 claim file of this process.
    fn write_claim(&self, content: &str) -> Result<PathBuf, PoolError> {
        let claim = self.dir.join(format!(".claim-{}", std::process::id()));
        let _ = fs::remove_file(&claim);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&claim)
            .map_err(|e| self.io(e))?;
        f.write_all(content.as_bytes()).map_err(|e| self.io(e))?;
        Ok(claim)
    }

    /// Allocates the first free range for container `id` of state root `root`.
    ///
    /// The owner tag is written to a claim file first and the slot is taken
    /// by hard-linking it (link fails if the slot exists), so a slot file is
    /// never empty: a moat killed mid-allocation leaves at most a claim file
    /// carrying the tag, which [`IdPool::free_owned_by`] finds and removes.
    /// A range in which a process runs (left by a container whose slot was
    /// freed by an older moat, or a host user inside moat's ids) is skipped.
    ///
    /// Leases whose owner is provably gone ([`IdPool::reclaim_dead_leases`])
    /// are reclaimed when the pool is exhausted (then the search runs once
    /// more) and otherwise at most once per [`RECLAIM_INTERVAL`].
    pub fn allocate(&self, root: &Path, id: &str) -> Result<Allocation, PoolError> {
        self.open_dir()?;
        self.sweep_dead_claims();
        if self.reclaim_due() {
            self.reclaim_dead_leases();
        }
        let claim = self.write_claim(&owner_tag(root, id))?;
        let busy = ids_in_use_for_allocation();
        let mut result = self.take_free_slot(&claim, &busy);
        if matches!(result, Err(PoolError::Exhausted(_))) && self.reclaim_dead_leases() > 0 {
            result = self.take_free_slot(&claim, &ids_in_use());
        }
        let _ = fs::remove_file(&claim);
        result
    }

    /// Links `claim` to the first slot that is free and in whose range no
    /// process of `busy` runs.
    fn take_free_slot(&self, claim: &Path, busy: &BTreeSet<u32>) -> Result<Allocation, PoolError> {
        let mut result = Err(PoolError::Exhausted(self.dir.clone()));
        for slot in 0..self.policy.ranges {
            let range = self.range_of(slot);
            let slot_file = self.dir.join(slot.to_string());
            if busy
                .range(range.host_id..range.host_id + range.size)
                .next()
                .is_some()
            {
                if fs::symlink_metadata(&slot_file).is_err() {
                    tracing::warn!(
                        slot,
                        host_id = range.host_id,
                        "skipping an unclaimed id range: a process still runs with an id in it"
                    );
                }
                continue;
            }
            match fs::hard_link(claim, &slot_file) {
                Ok(()) => {
                    // Published first, then checked: an engine range claimed
                    // at the same time sees this slot, or this sees it.
                    if self
                        .held_ranges(&slot_file)
                        .iter()
                        .any(|h| crate::harden::userns_overlaps(*h, range))
                    {
                        let _ = fs::remove_file(&slot_file);
                        continue;
                    }
                    result = Ok(Allocation {
                        slot,
                        range,
                        engine: false,
                    });
                    break;
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    result = Err(self.io(e));
                    break;
                }
            }
        }
        result
    }

    /// Whether the last reclaim (the mtime of the pool's stamp file) is
    /// older than [`RECLAIM_INTERVAL`]; if so the stamp is renewed, so of
    /// several allocations at once mostly one sweeps. One `stat` otherwise.
    fn reclaim_due(&self) -> bool {
        let stamp = self.dir.join(RECLAIM_STAMP);
        let recent = fs::symlink_metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < RECLAIM_INTERVAL));
        if recent {
            return false;
        }
        let _ = fs::remove_file(&stamp);
        let _ = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&stamp);
        true
    }

    /// Frees every lease (slot or engine range) whose owner is provably
    /// gone: its state (libcontainer's `<root>/<id>` and moat's private
    /// directory) no longer exists, no container of its root names it as
    /// its pod, and — scanned after the state was seen gone — no process
    /// on the host runs with an id of its range (the T31 scan,
    /// [`ids_in_use`]). A lease of a live container, of a container whose
    /// state exists, or whose owner cannot be read, is kept. Returns how
    /// many were freed.
    ///
    /// Why the order makes it safe: a container's private directory exists
    /// before its lease is taken and goes only after its delete freed it,
    /// so a create or delete in progress shows its state; a process that
    /// holds an id of the range after the scan got it from one alive at
    /// the scan (see [`prescan_ids_in_use`]).
    pub fn reclaim_dead_leases(&self) -> usize {
        let mut stateless = Vec::new();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Some(lease) = entry
                .file_name()
                .to_str()
                .and_then(|n| self.range_of_name(n))
            else {
                continue;
            };
            let Ok(content) = fs::read_to_string(entry.path()) else {
                continue;
            };
            let Some((root, id)) = parse_owner(&content) else {
                continue;
            };
            if !owner_state_present(&root, &id) && crate::pod::members(&root, &id).is_empty() {
                stateless.push((entry.path(), lease.range, content));
            }
        }
        if stateless.is_empty() {
            return 0;
        }
        let busy = ids_in_use();
        let mut freed = 0;
        for (file, range, content) in stateless {
            let facts = LeaseFacts {
                state_present: false,
                referenced: false,
                process_in_range: busy
                    .range(range.host_id..=range.host_id.saturating_add(range.size - 1))
                    .next()
                    .is_some(),
            };
            if lease_is_dead(facts) && remove_if_unchanged(&file, &content) {
                tracing::warn!(
                    lease = %file.display(),
                    host_id = range.host_id,
                    owner = content.lines().next().unwrap_or_default(),
                    "reclaimed the id range of a container whose state is gone and whose processes are gone"
                );
                freed += 1;
            }
        }
        freed
    }

    /// The range a pool file name stands for: a slot, or an engine range.
    fn range_of_name(&self, name: &str) -> Option<Allocation> {
        if let Some(rest) = name.strip_prefix(ENGINE_PREFIX) {
            let (host, size) = rest.split_once('-')?;
            // An engine range of no ids is never claimed (harden refuses a
            // mapping of size 0): such a name is no lease, and its
            // `size - 1` would wrap (review L6).
            let size: u32 = size.parse().ok().filter(|s| *s > 0)?;
            return Some(Allocation {
                slot: 0,
                range: IdRange {
                    host_id: host.parse().ok()?,
                    size,
                },
                engine: true,
            });
        }
        let slot = name.parse().ok()?;
        Some(Allocation {
            slot,
            range: self.range_of(slot),
            engine: false,
        })
    }

    /// Every range a container holds (slots and engine ranges), but the
    /// one in the pool file `except`.
    pub fn held_ranges(&self, except: &Path) -> Vec<IdRange> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path() != except)
            .filter_map(|e| e.file_name().to_str().and_then(|n| self.range_of_name(n)))
            .map(|a| a.range)
            .collect()
    }

    /// Claims `range`, which the engine gave container `id` in its spec
    /// (already judged by `moat::harden::engine_id_range`), so that delete
    /// frees what it took and no pool slot nor other engine range overlaps
    /// it. Published (hard link, like a slot), then checked against every
    /// other held range and the ids of live processes: of two overlapping
    /// claims at once, at least one sees the other and gives up.
    pub fn claim_engine_range(
        &self,
        root: &Path,
        id: &str,
        range: IdRange,
    ) -> Result<Allocation, PoolError> {
        self.open_dir()?;
        self.sweep_dead_claims();
        let allocation = Allocation {
            slot: 0,
            range,
            engine: true,
        };
        let file = self.dir.join(allocation.file_name());
        let claim = self.write_claim(&owner_tag(root, id))?;
        let linked = fs::hard_link(&claim, &file);
        let _ = fs::remove_file(&claim);
        let taken = |detail: String| {
            PoolError::EngineRange(crate::refusal::Refusal::new(
                crate::refusal::RefusalRule::UserNamespaceMapping,
                format!(
                    "linux.uidMappings maps container ids to host ids {}-{}, {detail}",
                    range.host_id,
                    u64::from(range.host_id) + u64::from(range.size) - 1
                ),
                None,
            ))
        };
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(taken("which another container holds".into()))
            }
            Err(e) => return Err(self.io(e)),
        }
        let clash = self
            .held_ranges(&file)
            .into_iter()
            .find(|h| crate::harden::userns_overlaps(*h, range));
        let busy = ids_in_use();
        let running = busy
            .range(range.host_id..=range.host_id.saturating_add(range.size - 1))
            .next()
            .copied();
        if clash.is_some() || running.is_some() {
            let _ = fs::remove_file(&file);
            return Err(taken(match clash {
                Some(h) => format!(
                    "which overlap host ids {}-{} another container holds",
                    h.host_id,
                    u64::from(h.host_id) + u64::from(h.size) - 1
                ),
                None => format!(
                    "in which a process already runs (host id {})",
                    running.unwrap_or_default()
                ),
            }));
        }
        Ok(allocation)
    }

    /// Records where the container's processes live (its cgroup) in its
    /// slot file, replacing the file atomically (it is never empty).
    pub fn record(
        &self,
        allocation: &Allocation,
        root: &Path,
        id: &str,
        record: &ClaimRecord,
    ) -> Result<(), PoolError> {
        let tag = owner_tag(root, id);
        let slot_file = self.dir.join(allocation.file_name());
        let current = fs::read_to_string(&slot_file).map_err(|e| self.io(e))?;
        if !owned_by_tag(&current, &tag) {
            return Err(self.io(std::io::Error::other(format!(
                "slot {} is not owned by {id}",
                allocation.slot
            ))));
        }
        let json = serde_json::to_string(record).map_err(|e| self.io(e.into()))?;
        let claim = self.write_claim(&format!("{tag}{json}\n"))?;
        fs::rename(&claim, &slot_file).map_err(|e| {
            let _ = fs::remove_file(&claim);
            self.io(e)
        })
    }

    /// Removes claim files of processes that no longer exist (a moat
    /// killed before it finished claiming a slot), and takes other users'
    /// read access away from slot files an older moat wrote 0644.
    fn sweep_dead_claims(&self) {
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(".claim-")) else {
                if entry
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.mode() & 0o077 != 0)
                {
                    let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600));
                }
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Slots (and claim files) owned by (`root`, `id`), with their records.
    pub fn owned(&self, root: &Path, id: &str) -> Vec<OwnedSlot> {
        let tag = owner_tag(root, id);
        let mut owned = Vec::new();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Ok(content) = fs::read_to_string(entry.path()) else {
                continue;
            };
            if !owned_by_tag(&content, &tag) {
                continue;
            }
            if let Some(a) = entry
                .file_name()
                .to_str()
                .and_then(|n| self.range_of_name(n))
            {
                owned.push(OwnedSlot {
                    file: entry.path(),
                    slot: a.slot,
                    range: a.range,
                    record: parse_record(&content),
                });
            }
        }
        owned.sort_by_key(|s| s.slot);
        owned
    }

    /// Frees every range owned by (`root`, `id`). Returns how many.
    ///
    /// Before a range is freed, the container's processes still running
    /// with an id of it are killed (SIGKILL) and waited for; if any is still
    /// alive after that, the slot is kept and an error returned.
    pub fn free_owned_by(&self, root: &Path, id: &str) -> Result<usize, PoolError> {
        let tag = owner_tag(root, id);
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io(e)),
        };
        let mut freed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if !fs::read_to_string(&path).is_ok_and(|c| owned_by_tag(&c, &tag)) {
                continue;
            }
            if let Some(range) = entry
                .file_name()
                .to_str()
                .and_then(|n| self.range_of_name(n))
                .map(|a| a.range)
            {
                let left = kill_range(range, Duration::from_secs(5));
                if !left.is_empty() {
                    return Err(PoolError::StillInUse { range, pids: left });
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => freed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(freed)
    }

    /// Slots currently owned by (`root`, `id`): used by tests to prove a
    /// range was freed.
    pub fn owned_by(&self, root: &Path, id: &str) -> Vec<u32> {
        self.owned(root, id).into_iter().map(|s| s.slot).collect()
    }
}

/// At most how often an allocation that is not short of ranges looks for
/// dead leases ([`IdPool::reclaim_dead_leases`]).
pub const RECLAIM_INTERVAL: Duration = Duration::from_secs(60);

/// The pool file whose mtime is the last reclaim.
const RECLAIM_STAMP: &str = ".reclaimed";

/// What the host shows of a lease's owner, gathered by
/// [`IdPool::reclaim_dead_leases`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseFacts {
    /// Its state (`<root>/<id>` or `<root>/@moat/<id>`) exists, or could
    /// not be looked at.
    pub state_present: bool,
    /// A container of its root records it as its pod's owner.
    pub referenced: bool,
    /// A process on the host runs with an id of the range.
    pub process_in_range: bool,
}

/// A lease may be reclaimed only when its owner is provably gone: no
/// state, no pod member naming it, no process in its range.
pub fn lease_is_dead(facts: LeaseFacts) -> bool {
    !facts.state_present && !facts.referenced && !facts.process_in_range
}

/// The owner (`root`, `id`) a pool file's first line names, when `root`
/// is absolute and `id` one plain path component (anything else is kept).
fn parse_owner(content: &str) -> Option<(PathBuf, String)> {
    let line = content.split_inclusive('\n').next()?.strip_suffix('\n')?;
    let (root, id) = line.rsplit_once('\t')?;
    let root = PathBuf::from(root);
    let plain = {
        let mut parts = Path::new(id).components();
        matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        )
    };
    (root.is_absolute() && plain).then(|| (root, id.to_string()))
}

/// Whether the state of container `id` of `root` exists: libcontainer's
/// directory or moat's private one. Anything but "not found" counts as
/// present.
fn owner_state_present(root: &Path, id: &str) -> bool {
    [root.join(id), crate::state::private_dir(root, id)]
        .iter()
        .any(|dir| !matches!(fs::symlink_metadata(dir), Err(e) if e.kind() == ErrorKind::NotFound))
}

/// Removes pool file `file` if it still is the very file that held
/// `content`: opened and locked (exclusively, without waiting: a pod
/// member's create or a delete holds it otherwise), the same inode as the
/// name, the same text.
fn remove_if_unchanged(file: &Path, content: &str) -> bool {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let Ok(mut f) = fs::File::open(file) else {
        return false;
    };
    // SAFETY: flock on a descriptor this function owns; no memory passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    let same_inode = match (f.metadata(), fs::symlink_metadata(file)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    let mut now = String::new();
    if !same_inode || f.read_to_string(&mut now).is_err() || now != content {
        return false;
    }
    fs::remove_file(file).is_ok()
}

/// Does the slot file of `slot` in the pool directory `dir` name
/// (`root`, `id`) as its owner? A pod's members check that their sandbox
/// still holds the range they are about to run with.
pub fn slot_owned_by(dir: &Path, allocation: &Allocation, root: &Path, id: &str) -> bool {
    fs::read_to_string(dir.join(allocation.file_name()))
        .is_ok_and(|c| owned_by_tag(&c, &owner_tag(root, id)))
}

/// Does the content of a pool file name (`root`, `id`) as its owner?
pub fn claim_names(content: &str, root: &Path, id: &str) -> bool {
    owned_by_tag(content, &owner_tag(root, id))
}

/// moat's default state root (`/run/moat`), which holds the default pool.
const DEFAULT_STATE_ROOT: &str = "/run/moat";

/// Every host uid and gid that owns a live process: the owner of
/// `/proc/<pid>`, which is the process's effective uid and gid, or, for a
/// non-dumpable process, the root of its user namespace. For a process of a
/// container both lie in the container's range (every id of a user
/// namespace maps into it), so one `stat` per process is enough to see that
/// a range is used (measured: 0.22 ms for 92 processes, 2.4 µs each; a
/// full `status` read of each is 2.0 ms, 22 µs each).
pub fn ids_in_use() -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !entry.file_name().to_str().is_some_and(is_pid) {
            continue;
        }
        if let Ok(meta) = fs::symlink_metadata(entry.path()) {
            ids.insert(meta.uid());
            ids.insert(meta.gid());
        }
    }
    ids
}

thread_local! {
    /// The [`ids_in_use`] scan `create` starts at its top
    /// ([`prescan_ids_in_use`]), for the next [`IdPool::allocate`] of the
    /// same thread to take.
    static PRESCAN: std::cell::RefCell<Option<std::thread::JoinHandle<BTreeSet<u32>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Starts the `/proc` scan of [`IdPool::allocate`] on a thread of its own,
/// so it runs while `create` loads the bundle and the policy (one `stat`
/// per host process; 0.5 ms with 100 processes, more on a busy host).
///
/// Why an earlier scan keeps T31's guarantee: the scan is a snapshot either
/// way (the readdir of `/proc` is not atomic), and moving it earlier only
/// lets it see processes that have died since, which makes a range look
/// busy, never free. A process that holds an id of a range after the
/// snapshot got it from a process of that range (fork keeps the ids; only
/// host root or a process inside the range's user namespace can take such
/// an id otherwise): that process was alive at the snapshot, so the range
/// is marked busy, or it is a container that holds the range's slot file,
/// which allocation never takes (the slot file goes only after
/// [`IdPool::free_owned_by`] found no process left in the range).
pub fn prescan_ids_in_use() {
    let Ok(handle) = std::thread::Builder::new()
        .name("ids-scan".into())
        .stack_size(64 * 1024)
        .spawn(ids_in_use)
    else {
        return;
    };
    PRESCAN.with(|p| *p.borrow_mut() = Some(handle));
}

/// Waits for the scan [`prescan_ids_in_use`] started when no allocation
/// took it (a create without an id range): called before libcontainer
/// forks with a raw `clone3`, whose child allocates before it execs, so no
/// thread of moat's allocates across that fork (a malloc lock held then
/// would stay held in the child; see `cgroup_probe::warm_attach_lock`).
pub fn finish_prescan() {
    if let Some(h) = PRESCAN.with(|p| p.borrow_mut().take()) {
        let _ = h.join();
    }
}

/// The scan [`prescan_ids_in_use`] started, taken once; otherwise (or if
/// that thread failed) a scan now.
fn ids_in_use_for_allocation() -> BTreeSet<u32> {
    PRESCAN
        .with(|p| p.borrow_mut().take())
        .and_then(|h| h.join().ok())
        .unwrap_or_else(ids_in_use)
}

fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// The ids of a process, from its `/proc/<pid>/status` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIds {
    /// Real, effective, saved and filesystem uids, then the same gids.
    pub ids: Vec<u32>,
    pub zombie: bool,
}

pub fn parse_status(text: &str) -> ProcessIds {
    let mut ids = Vec::new();
    let mut zombie = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Uid" | "Gid" => ids.extend(
                value
                    .split_whitespace()
                    .filter_map(|v| v.parse::<u32>().ok()),
            ),
            "State" => zombie = value.trim_start().starts_with(['Z', 'X']),
            _ => {}
        }
    }
    ProcessIds { ids, zombie }
}

fn in_range(range: IdRange, id: u32) -> bool {
    id >= range.host_id && id - range.host_id < range.size
}

/// Live processes that belong to `range`: some id in the range (from
/// `status`, all eight ids) and a user namespace other than the host's (a
/// host user whose uid the policy put inside moat's ids is not the
/// container's to kill; `allocate` skips such a range instead).
pub fn container_processes_in(range: IdRange) -> Vec<i32> {
    let host_userns = fs::read_link("/proc/self/ns/user").ok();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .filter(|n| is_pid(n))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        // The cheap test first: the owner of /proc/<pid> (see ids_in_use).
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !in_range(range, meta.uid()) && !in_range(range, meta.gid()) {
            continue;
        }
        if belongs_to(pid, range, host_userns.as_deref()) {
            found.push(pid);
        }
    }
    found
}

/// Is `pid` alive, running with an id of `range`, in a user namespace that
/// is not the host's?
fn belongs_to(pid: i32, range: IdRange, host_userns: Option<&Path>) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let ids = parse_status(&text);
    if ids.zombie || !ids.ids.iter().any(|id| in_range(range, *id)) {
        return false;
    }
    let userns = fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    userns.is_some() && userns.as_deref() != host_userns
}

/// SIGKILLs every process of the container running with an id of `range`
/// and waits up to `timeout` for them to be gone. Returns those still alive.
///
/// Each is signalled through a pidfd opened before its ids are checked, so a
/// pid reused between the check and the signal is never hit.
pub fn kill_range(range: IdRange, timeout: Duration) -> Vec<i32> {
    let host_userns = fs::read_link("/proc/self/ns/user").ok();
    let start = Instant::now();
    loop {
        let pids = container_processes_in(range);
        if pids.is_empty() {
            return pids;
        }
        if start.elapsed() > timeout {
            return pids;
        }
        for pid in &pids {
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd
            // or -1; no memory is passed.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, *pid, 0) };
            if fd < 0 {
                continue;
            }
            let fd = fd as libc::c_int;
            if belongs_to(*pid, range, host_userns.as_deref()) {
                tracing::warn!(
                    pid,
                    host_id = range.host_id,
                    "killing a process still running with an id of a range being freed"
                );
                // SAFETY: the fd is the pidfd opened above; a null siginfo
                // is allowed and means a plain kill.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd,
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    );
                }
            }
            // SAFETY: closing the fd this loop opened, exactly once.
            unsafe { libc::close(fd) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path, ranges: u32) -> UserNamespacePolicy {
        UserNamespacePolicy {
            // Far above any real pool, so no live process is in these ranges.
            host_id_base: 3_000_000_000,
            range_size: 1000,
            ranges,
            pool_dir: dir.display().to_string(),
        }
    }

    /// A host process (`sleep 30`) running with an id of `pool`'s first range.
    fn sleep_in_first_range(pool: &IdPool) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("30")
            .uid(pool.range_of(0).host_id + 7)
            .spawn()
            .unwrap()
    }

    /// A state root under `tmp` in which containers `ids` have state, so
    /// their leases are never reclaimed.
    fn live_root(tmp: &Path, ids: &[&str]) -> PathBuf {
        let root = tmp.join("state");
        for id in ids {
            fs::create_dir_all(root.join(id)).unwrap();
        }
        root
    }

    #[test]
    fn engine_ranges_are_claimed_checked_and_freed() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(&tmp.path().join("pool"), 4);
        let pool = IdPool::new(&p);
        let root = &live_root(tmp.path(), &["a", "b", "c", "e"]);
        let a = pool.allocate(root, "a").unwrap();
        // The engine gives slot 1's range (plus a bit): claimed, not a slot.
        let given = IdRange {
            host_id: p.host_id_base + 1000,
            size: 1500,
        };
        let e = pool.claim_engine_range(root, "e", given).unwrap();
        assert!(e.engine);
        assert_eq!(e.range, given);
        assert_eq!(pool.owned(root, "e")[0].range, given);
        assert!(slot_owned_by(pool.dir(), &e, root, "e"));
        pool.record(&e, root, "e", &ClaimRecord::default()).unwrap();
        // The same or an overlapping range is refused, also over a slot.
        for (id, r) in [
            ("f", given),
            (
                "g",
                IdRange {
                    host_id: given.host_id + 1499,
                    size: 10,
                },
            ),
            ("h", a.range),
        ] {
            let err = pool.claim_engine_range(root, id, r).unwrap_err();
            assert!(matches!(err, PoolError::EngineRange(_)), "{err}");
            assert!(err.to_string().contains("user-namespace-mapping"), "{err}");
            assert!(pool.owned(root, id).is_empty());
        }
        // The pool skips the slots the engine's range overlaps (1 and 2).
        assert_eq!(pool.allocate(root, "b").unwrap().slot, 3);
        assert!(matches!(
            pool.allocate(root, "c"),
            Err(PoolError::Exhausted(_))
        ));
        // Delete frees exactly what was taken: the engine file, no slot.
        assert_eq!(pool.free_owned_by(root, "e").unwrap(), 1);
        assert!(pool.owned(root, "e").is_empty());
        assert_eq!(pool.owned_by(root, "a"), vec![0]);
        assert_eq!(pool.allocate(root, "c").unwrap().slot, 1);
    }

    /// Review L6: a pool file naming an engine range of no ids is no
    /// lease (its last id, `size - 1`, would wrap in the reclaim's scan).
    #[test]
    fn an_engine_range_of_no_ids_is_no_lease() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(&tmp.path().join("pool"), 3);
        let pool = IdPool::new(&p);
        assert!(pool.range_of_name("engine-5000-0").is_none());
        let r = pool.range_of_name("engine-5000-10").unwrap();
        assert_eq!((r.range.host_id, r.range.size, r.engine), (5000, 10, true));
        fs::create_dir_all(tmp.path().join("pool")).unwrap();
        fs::write(
            tmp.path().join("pool/engine-5000-0"),
            owner_tag(Path::new("/gone"), "x"),
        )
        .unwrap();
        assert_eq!(pool.reclaim_dead_leases(), 0);
    }

    #[test]
    fn ranges_are_distinct_and_freed() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(&tmp.path().join("pool"), 3);
        let pool = IdPool::new(&p);
        let root = Path::new("/run/x");
        let a = pool.allocate(root, "a").unwrap();
        let b = pool.allocate(root, "b").unwrap();
        assert_ne!(a.range.host_id, b.range.host_id);
        assert_eq!(b.range.host_id, a.range.host_id + 1000);
        assert_eq!(pool.owned_by(root, "a"), vec![a.slot]);
        assert_eq!(pool.free_owned_by(root, "a").unwrap(), 1);
        assert!(pool.owned_by(root, "a").is_empty());
        // The freed slot is reused.
        assert_eq!(pool.allocate(root, "c").unwrap().slot, a.slot);
    }

    #[test]
    fn slot_files_always_carry_their_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(tmp.path(), 4);
        let pool = IdPool::new(&p);
        for id in ["a", "b", "c"] {
            pool.allocate(Path::new("/r"), id).unwrap();
        }
        let names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != RECLAIM_STAMP)
            .collect();
        // No claim file is left, and no slot file is empty.
        assert_eq!(names.len(), 3, "{names:?}");
        for n in &names {
            assert!(!fs::read_to_string(tmp.path().join(n)).unwrap().is_empty());
        }
        // A claim file left by a crash is freed with its owner.
        fs::write(tmp.path().join(".claim-1"), owner_tag(Path::new("/r"), "d")).unwrap();
        assert_eq!(pool.free_owned_by(Path::new("/r"), "d").unwrap(), 1);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(&tmp.path().join("pool"), 1);
        let pool = IdPool::new(&p);
        let r = live_root(tmp.path(), &["a"]);
        pool.allocate(&r, "a").unwrap();
        assert!(matches!(
            pool.allocate(&r, "b"),
            Err(PoolError::Exhausted(_))
        ));
    }

    #[test]
    fn free_only_touches_the_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(tmp.path(), 4);
        let pool = IdPool::new(&p);
        pool.allocate(Path::new("/r1"), "a").unwrap();
        pool.allocate(Path::new("/r2"), "a").unwrap();
        assert_eq!(pool.free_owned_by(Path::new("/r1"), "a").unwrap(), 1);
        assert_eq!(pool.owned_by(Path::new("/r2"), "a").len(), 1);
    }

    #[test]
    fn records_survive_and_ownership_is_the_first_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(tmp.path(), 4);
        let pool = IdPool::new(&p);
        let a = pool.allocate(Path::new("/r"), "a").unwrap();
        let rec = ClaimRecord {
            cgroups_path: Some(PathBuf::from("/docker/a\n/r\tb")),
            systemd: false,
        };
        pool.record(&a, Path::new("/r"), "a", &rec).unwrap();
        let owned = pool.owned(Path::new("/r"), "a");
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].record.as_ref(), Some(&rec));
        // A cgroup path holding a newline and a tab names no other owner.
        assert!(pool.owned(Path::new("/r"), "b").is_empty());
        // Only the owner may record.
        assert!(pool.record(&a, Path::new("/r"), "b", &rec).is_err());
        assert_eq!(pool.free_owned_by(Path::new("/r"), "a").unwrap(), 1);
        assert!(pool.owned(Path::new("/r"), "a").is_empty());
    }

    #[test]
    fn pool_dir_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pool");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        // A slot file an older moat wrote world-readable.
        let r = live_root(tmp.path(), &["old"]);
        fs::write(dir.join("3"), owner_tag(&r, "old")).unwrap();
        fs::set_permissions(dir.join("3"), fs::Permissions::from_mode(0o644)).unwrap();
        let p = policy(&dir, 4);
        let pool = IdPool::new(&p);
        let a = pool.allocate(&r, "a").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(a.slot.to_string())), 0o600);
        assert_eq!(mode(&dir.join("3")), 0o600);
        pool.record(&a, &r, "a", &ClaimRecord::default()).unwrap();
        assert_eq!(mode(&dir.join(a.slot.to_string())), 0o600);
        assert_eq!(mode(&dir.join(RECLAIM_STAMP)), 0o600);
    }

    #[test]
    fn a_lease_is_dead_only_when_state_members_and_processes_are_gone() {
        for bits in 0..8u8 {
            let facts = LeaseFacts {
                state_present: bits & 1 != 0,
                referenced: bits & 2 != 0,
                process_in_range: bits & 4 != 0,
            };
            assert_eq!(lease_is_dead(facts), bits == 0, "{facts:?}");
        }
    }

    #[test]
    fn only_an_absolute_root_and_a_plain_id_name_a_reclaimable_owner() {
        assert_eq!(
            parse_owner("/run/moat\tabc\n{}\n"),
            Some((PathBuf::from("/run/moat"), "abc".into()))
        );
        // A root holding a tab: the id is after the last one.
        assert_eq!(
            parse_owner("/a\tb\tc\n"),
            Some((PathBuf::from("/a\tb"), "c".into()))
        );
        for kept in [
            "run/moat\tabc\n",
            "/run/moat\t..\n",
            "/run/moat\ta/b\n",
            "/run/moat\t\n",
            "/run/moat\tabc",
            "/run/moat abc\n",
            "",
        ] {
            assert_eq!(parse_owner(kept), None, "{kept:?}");
        }
    }

    /// An exhausted pool reclaims the leases whose owner's state is gone
    /// (and only those): not one whose state exists, nor a pod owner a
    /// member still names, nor one whose owner cannot be read.
    #[test]
    fn an_exhausted_pool_reclaims_only_leases_whose_owner_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(&tmp.path().join("pool"), 4);
        let pool = IdPool::new(&p);
        let r = live_root(
            tmp.path(),
            &["live", "gone", "pod", "member", "odd", "next", "more"],
        );
        let live = pool.allocate(&r, "live").unwrap();
        let gone = pool.allocate(&r, "gone").unwrap();
        let owner = pool.allocate(&r, "pod").unwrap();
        let odd = pool.allocate(Path::new("relative"), "odd").unwrap();
        // The pod member names its owner (pod.rs's OWNER_FILE).
        let member = crate::state::private_dir(&r, "member");
        fs::create_dir_all(&member).unwrap();
        fs::write(member.join("pod-owner"), "pod").unwrap();
        for id in ["gone", "pod"] {
            fs::remove_dir(r.join(id)).unwrap();
        }
        // Not due yet: the first allocation stamped the pool.
        assert!(!pool.reclaim_due());
        let next = pool.allocate(&r, "next").unwrap();
        assert_eq!(next.slot, gone.slot, "the dead lease is reused");
        assert!(pool.owned(&r, "gone").is_empty());
        assert_eq!(pool.owned_by(&r, "live"), vec![live.slot]);
        assert_eq!(pool.owned_by(&r, "pod"), vec![owner.slot]);
        assert_eq!(pool.owned_by(Path::new("relative"), "odd"), vec![odd.slot]);
        assert!(matches!(
            pool.allocate(&r, "more"),
            Err(PoolError::Exhausted(_))
        ));
        // Once the member is gone too, the pod's lease is dead.
        fs::remove_dir_all(crate::state::private_root(&r)).unwrap();
        assert_eq!(pool.allocate(&r, "more").unwrap().slot, owner.slot);
    }

    /// Without exhaustion, the sweep runs at most once per interval.
    #[test]
    fn the_periodic_reclaim_is_stamped() {
        let tmp = tempfile::tempdir().unwrap();
        let p = policy(&tmp.path().join("pool"), 4);
        let pool = IdPool::new(&p);
        let r = live_root(tmp.path(), &["a"]);
        pool.allocate(&r, "a").unwrap();
        assert!(!pool.reclaim_due(), "stamped by the first allocation");
        let stamp = pool.dir().join(RECLAIM_STAMP);
        let old = std::time::SystemTime::now() - RECLAIM_INTERVAL - Duration::from_secs(1);
        fs::File::options()
            .write(true)
            .open(&stamp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::remove_dir(r.join("a")).unwrap();
        // Due again: the next allocation (not short of ranges) frees "a".
        assert_eq!(pool.allocate(&r, "b").unwrap().slot, 0);
        assert!(pool.owned(&r, "a").is_empty());
        assert!(!pool.reclaim_due());
    }

    /// A lease whose state is gone but in whose range a process still runs
    /// (of any user namespace) is kept; once the process is gone it is
    /// reclaimed.
    #[test]
    fn a_lease_with_a_live_process_is_not_reclaimed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = UserNamespacePolicy {
            host_id_base: 3_300_000_000,
            ..policy(&tmp.path().join("pool"), 1)
        };
        let pool = IdPool::new(&p);
        let r = live_root(tmp.path(), &["a"]);
        pool.allocate(&r, "a").unwrap();
        fs::remove_dir(r.join("a")).unwrap();
        let mut child = sleep_in_first_range(&pool);
        let kept = pool.reclaim_dead_leases();
        let owned = pool.owned_by(&r, "a");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(kept, 0);
        assert_eq!(owned, vec![0]);
        assert_eq!(pool.reclaim_dead_leases(), 1);
        assert!(pool.owned_by(&r, "a").is_empty());
    }

    #[test]
    fn status_ids_and_zombies_are_parsed() {
        let text = "Name:\tsleep\nState:\tS (sleeping)\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\n";
        assert_eq!(
            parse_status(text),
            ProcessIds {
                ids: vec![1, 2, 3, 4, 5, 6, 7, 8],
                zombie: false
            }
        );
        assert!(parse_status("State:\tZ (zombie)\n").zombie);
        let r = IdRange {
            host_id: 10,
            size: 5,
        };
        assert!(in_range(r, 10) && in_range(r, 14));
        assert!(!in_range(r, 9) && !in_range(r, 15));
    }

    /// A range in which a live process runs is never handed out, and a
    /// host process (host user namespace) is not the container's to kill.
    #[test]
    fn a_range_with_a_live_process_is_skipped() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        // Its own base: the other tests run in parallel.
        let p = UserNamespacePolicy {
            host_id_base: 3_100_000_000,
            ..policy(tmp.path(), 3)
        };
        let pool = IdPool::new(&p);
        let mut child = sleep_in_first_range(&pool);
        let a = pool.allocate(Path::new("/r"), "a");
        let left = container_processes_in(pool.range_of(0));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(a.unwrap().slot, 1, "range 0 has a live process");
        assert!(left.is_empty(), "a host process is not the container's");
        assert_eq!(pool.allocate(Path::new("/r"), "b").unwrap().slot, 0);
    }

    /// `allocate` takes the scan `prescan_ids_in_use` started (once): a
    /// range busy when the scan ran is skipped even though its process has
    /// gone since (busy, never free, by mistake), and the next allocation
    /// scans afresh.
    #[test]
    fn allocate_takes_the_prescan_once() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = UserNamespacePolicy {
            host_id_base: 3_200_000_000,
            ..policy(tmp.path(), 3)
        };
        let pool = IdPool::new(&p);
        let mut child = sleep_in_first_range(&pool);
        prescan_ids_in_use();
        // Let the scan finish before the process goes.
        let scanned = PRESCAN
            .with(|p| p.borrow_mut().take())
            .unwrap()
            .join()
            .unwrap();
        assert!(scanned.contains(&(pool.range_of(0).host_id + 7)));
        PRESCAN.with(|p| *p.borrow_mut() = Some(std::thread::spawn(move || scanned)));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(pool.allocate(Path::new("/r"), "a").unwrap().slot, 1);
        assert_eq!(pool.allocate(Path::new("/r"), "b").unwrap().slot, 0);
    }
}
