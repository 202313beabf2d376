//! Host fact for `linux.cgroupsPath` (threat T22): does the cgroup a spec
//! names already hold a process, in any hierarchy (every cgroup v1
//! hierarchy and the unified one)? Read-only: moat never mounts, unmounts
//! or rebinds anything here.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::harden::cgroups_path::{spec_cgroups_path, CgroupsPath};

/// How many cgroup directories the walk below one cgroup visits at most;
/// a larger tree counts as occupied (fail closed).
const MAX_WALK: usize = 10_000;

/// The cgroup and cgroup2 mounts of this mount namespace, read from
/// /proc/self/mountinfo once and asked several questions (a create's claim
/// asks for the leaf and for the levels above it that are missing).
pub struct Hierarchies(Vec<crate::rootfs::MountInfo>);

impl Hierarchies {
    /// Reads /proc/self/mountinfo (no hierarchies when it cannot be read).
    pub fn read() -> Self {
        Self::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// The cgroup and cgroup2 mounts of a mountinfo text.
    pub fn parse(mountinfo: &str) -> Self {
        Self(
            crate::rootfs::parse_mountinfo(mountinfo)
                .into_iter()
                .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
                .collect(),
        )
    }

    /// Every mount point, sorted, each once (a hierarchy mounted twice is
    /// looked at twice, which is harmless).
    pub fn mount_points(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.0.iter().map(|m| m.mount_point.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The hierarchy whose leaf moat claims for a container: the v1 `pids`
    /// hierarchy (libcontainer's v1 manager creates and removes the cgroup
    /// in every v1 controller, pids among them), else the unified one.
    fn claim_hierarchy(&self) -> Option<&Path> {
        self.0
            .iter()
            .find(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "pids"))
            .or_else(|| self.0.iter().find(|m| m.fs_type == "cgroup2"))
            .map(|m| m.mount_point.as_path())
    }
}

/// The mount points of every cgroup and cgroup2 filesystem of this mount
/// namespace, from /proc/self/mountinfo.
pub fn hierarchy_mounts() -> Vec<PathBuf> {
    Hierarchies::read().mount_points()
}

/// Where a process lives in `dir` or below it, if anywhere.
fn first_process(dir: &Path) -> Option<String> {
    let mut stack = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(d) = stack.pop() {
        visited += 1;
        if visited > MAX_WALK {
            return Some(format!(
                "more than {MAX_WALK} cgroups below {}",
                dir.display()
            ));
        }
        match fs::read_to_string(d.join("cgroup.procs")) {
            Ok(procs) => {
                if let Some(pid) = procs.lines().find(|l| !l.trim().is_empty()) {
                    return Some(format!("pid {} in {}", pid.trim(), d.display()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d == dir => return None,
            Err(e) => return Some(format!("cannot read {}: {e}", d.display())),
        }
        let Ok(entries) = fs::read_dir(&d) else {
            return Some(format!("cannot list {}", d.display()));
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    None
}

/// Where a process lives in the cgroup the spec's cgroupsPath names (or
/// below it), in any hierarchy; `None` when none does, the cgroup does not
/// exist, or the spec has no cgroupsPath or one the rule refuses anyway.
pub fn occupant(spec: &Spec) -> Option<String> {
    let path = spec_cgroups_path(spec)?;
    let parsed = CgroupsPath::parse(&path).ok()?;
    let mounts = hierarchy_mounts();
    for rel in parsed.candidate_dirs() {
        for mount in &mounts {
            if let Some(found) = first_process(&mount.join(&rel)) {
                return Some(found);
            }
            if let Some(found) = process_in_ancestor(mount, &rel) {
                return Some(found);
            }
        }
    }
    None
}

/// Where a process lives in a cgroup strictly between the hierarchy's root
/// and `rel`: a container's cgroup nested below another workload's would
/// count against that workload's limits, and deleting that workload would
/// kill the nested container (its cgroup is swept recursively). The
/// hierarchy's root itself holds the host's processes and is not a
/// workload's.
fn process_in_ancestor(mount: &Path, rel: &Path) -> Option<String> {
    let mut ancestor = rel.parent();
    while let Some(a) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
        let dir = mount.join(a);
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            if let Some(pid) = procs.lines().find(|l| !l.trim().is_empty()) {
                return Some(format!("pid {} in {}, above it", pid.trim(), dir.display()));
            }
        }
        ancestor = a.parent();
    }
    None
}

/// The cgroup directories above the leaf of a cgroupfs-form `cgroupsPath`
/// that do not exist yet, in every cgroup hierarchy mounted here, deepest
/// first: what this create's `mkdir -p` (moat's claim, libcontainer's
/// cgroup managers) will make, and its teardown removes again while empty,
/// so a tenant's `cgroupsPath` of many new levels leaves nothing behind.
pub fn missing_ancestors(cgroups_path: &Path, hierarchies: &Hierarchies) -> Vec<PathBuf> {
    let Ok(rel) = cgroups_path.strip_prefix("/") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in &hierarchies.0 {
        let mut above: Vec<&Path> = rel.ancestors().skip(1).collect();
        above.retain(|a| !a.as_os_str().is_empty());
        for a in above {
            let dir = m.mount_point.join(a);
            if !dir.exists() {
                out.push(dir);
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Why a container's cgroup could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The leaf exists already: another create (or workload) has it.
    #[error("cgroup {0} already exists: another container or workload has it")]
    Taken(PathBuf),
    #[error("cannot create cgroup {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The leaf directory moat claims for a cgroupfs-form `cgroupsPath`, or
/// `None` for a systemd-form path (systemd creates the scope) or a host
/// without a cgroup hierarchy.
pub fn leaf_to_claim(cgroups_path: &Path, hierarchies: &Hierarchies) -> Option<PathBuf> {
    let rel = cgroups_path.strip_prefix("/").ok()?;
    Some(hierarchies.claim_hierarchy()?.join(rel))
}

/// Creates the leaf cgroup `dir` (from [`leaf_to_claim`]) exclusively
/// (mkdir, EEXIST is an error), before libcontainer creates (and joins) it
/// with `mkdir -p`. The check in precheck (T22: no process there) cannot
/// see a second create racing for the same path; the exclusive mkdir can:
/// of two creates naming one cgroup, exactly one gets it.
pub fn claim_leaf(dir: &Path) -> Result<(), ClaimError> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(|e| ClaimError::Io(parent.to_path_buf(), e))?;
    }
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(ClaimError::Taken(dir.to_path_buf()))
        }
        Err(e) => Err(ClaimError::Io(dir.to_path_buf(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 25 0:27 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";

    /// One parse answers both of a claim's questions: the leaf lies in the
    /// v1 pids hierarchy, and only cgroup filesystems count.
    #[test]
    fn claim_uses_the_pids_hierarchy_of_one_parsed_table() {
        let h = Hierarchies::parse(MOUNTINFO);
        assert_eq!(
            h.mount_points(),
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/unified"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            leaf_to_claim(Path::new("/moat/c1"), &h),
            Some(PathBuf::from("/sys/fs/cgroup/pids/moat/c1"))
        );
        // A systemd-form path names no leaf to claim.
        assert_eq!(leaf_to_claim(Path::new("system.slice:moat:c1"), &h), None);
        // Without v1 pids, the unified hierarchy.
        let v2 = Hierarchies::parse(
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            leaf_to_claim(Path::new("/a/b"), &v2),
            Some(PathBuf::from("/sys/fs/cgroup/a/b"))
        );
        assert_eq!(
            leaf_to_claim(Path::new("/a/b"), &Hierarchies::parse("")),
            None
        );
    }
}

/// Keeps the kernel's cgroup attach lock on its fast path from the start
/// of `create` until libcontainer has joined the container's cgroups: a
/// background thread moves moat's own process into the cgroup it is
/// already in (a no-op migration) every [`WARM_PERIOD`], until the
/// returned guard is dropped (or [`WARM_LIMIT`] has passed).
///
/// Why: any write of a pid to a `cgroup.procs` takes the kernel's global
/// `cgroup_threadgroup_rwsem` for writing; a writer that finds the lock's
/// `rcu_sync` idle waits for a whole RCU grace period, and the state goes
/// idle again one grace period after the last writer left. A single
/// warm-up at the top of create (the previous version) had expired by the
/// time libcontainer's intermediate process wrote its first
/// `cgroup.procs`, about 15 ms later. Measured on this host (2026-12-06,
/// load 3–5, 12 moves of a `sleep` between two cgroups 50 ms apart, each
/// run twice): 5.9 ms median per move cold (4.7–21.9), 0.06–0.08 ms with
/// a no-op migration every 1 ms, 0.07 every 3 ms, 0.10 every 5 ms.
///
/// What it changes: nothing moves (moat's pid is written only to the
/// `cgroup.procs` that lists it, re-checked against `/proc/self/cgroup`
/// before every write, stopping at the first difference); each write
/// holds the lock for writing a few microseconds, as any container's
/// attach does. At most `WARM_LIMIT / WARM_PERIOD` writes per create,
/// whatever the spec (the limit is time, not progress). Errors stop the
/// writes silently.
///
/// Fork safety (L1): libcontainer forks its intermediate process with a
/// raw `clone3` while this thread runs, and that child allocates before it
/// execs (it clones its cgroup config and builds a cgroup manager first).
/// A raw clone runs none of libc's fork handlers, so a malloc lock held by
/// another thread at that instant stays held in the child for good. So the
/// thread never allocates or frees while it can overlap a fork: everything
/// is opened and allocated here, on the caller's thread; this returns only
/// once the thread is in its loop (std's thread start has run); the loop
/// is raw syscalls on those descriptors and buffers; and the thread ends
/// (dropping what it owns) only when the guard is dropped, whose drop
/// waits for it, never at its deadline or on an error.
pub fn warm_attach_lock() -> AttachLockWarmer {
    let state = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(WARM_STARTING));
    let thread = WarmFiles::open().and_then(|files| {
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("cgroup-warm".into())
            .stack_size(64 * 1024)
            .spawn(move || files.run(&shared))
            .ok()?;
        // In its loop before create goes on (towards libcontainer's fork).
        while state.load(std::sync::atomic::Ordering::Acquire) == WARM_STARTING
            && !thread.is_finished()
        {
            futex_wait(
                &state,
                WARM_STARTING,
                Some(std::time::Duration::from_millis(100)),
            );
        }
        Some(thread)
    });
    AttachLockWarmer { state, thread }
}

/// How often the warmer re-enters the attach lock: inside one grace
/// period (at least about 4 ms here at HZ=250, longer under load; 3 ms
/// measured as warm as 1 ms).
pub const WARM_PERIOD: std::time::Duration = std::time::Duration::from_millis(3);
/// The warmer stops writing after this, whatever happens to create: an
/// idle host reaches libcontainer's join in about 15–50 ms, a busy one in
/// hundreds; a create slower than this loses the warm-up (a few ms of a
/// second), never more.
pub const WARM_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The warmer's state word: starting, in its loop, told to stop.
const WARM_STARTING: u32 = 0;
const WARM_RUNNING: u32 = 1;
const WARM_STOP: u32 = 2;

/// What the warmer's loop works with, made before it starts.
struct WarmFiles {
    /// `/proc/self/cgroup`, read again (at offset 0) before each write.
    self_cgroup: fs::File,
    /// Its text when the warmer started.
    expected: Vec<u8>,
    /// Room for one more byte than that (a longer text is a change).
    buf: Vec<u8>,
    /// `cgroup.procs` of the cgroup moat is in, open for writing.
    procs: fs::File,
    /// moat's pid, as written there.
    me: Vec<u8>,
}

impl WarmFiles {
    /// Opens and reads what the loop needs (None: moat is not listed in
    /// the `cgroup.procs` of its own cgroup, or it cannot be opened).
    fn open() -> Option<WarmFiles> {
        let (cgroup, procs) = own_cgroup()?;
        let me = std::process::id().to_string();
        let listed = fs::read_to_string(&procs)
            .map(|t| t.lines().any(|l| l.trim() == me))
            .unwrap_or(false);
        if !listed {
            return None;
        }
        let expected = cgroup.into_bytes();
        Some(WarmFiles {
            self_cgroup: fs::File::open("/proc/self/cgroup").ok()?,
            buf: vec![0; expected.len() + 1],
            expected,
            procs: fs::OpenOptions::new().write(true).open(&procs).ok()?,
            me: me.into_bytes(),
        })
    }

    /// The loop: no allocation, no free, until told to stop.
    fn run(mut self, state: &std::sync::atomic::AtomicU32) {
        use std::sync::atomic::Ordering;
        let _ = state.compare_exchange(
            WARM_STARTING,
            WARM_RUNNING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        futex_wake(state);
        let deadline = std::time::Instant::now() + WARM_LIMIT;
        let mut writing = true;
        while state.load(Ordering::Acquire) != WARM_STOP {
            if writing {
                writing = std::time::Instant::now() < deadline && self.write_once();
            }
            // Writing: until the next write (or the guard's wake);
            // otherwise until the guard's wake only.
            futex_wait(state, WARM_RUNNING, writing.then_some(WARM_PERIOD));
        }
        // `self` is freed as this returns, while the guard's drop waits.
    }

    /// One no-op migration, if moat is still where it was (false: it is
    /// not, or the write failed: no more writes).
    fn write_once(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: buf is a valid writable buffer of its length; the fd is
        // open for the life of self.
        let n = unsafe {
            libc::pread(
                self.self_cgroup.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                0,
            )
        };
        // Still where it was: the write cannot move moat anywhere.
        if usize::try_from(n).ok().and_then(|n| self.buf.get(..n)) != Some(&self.expected[..]) {
            return false;
        }
        // SAFETY: me is a valid buffer of its length; the fd is open.
        let written = unsafe {
            libc::write(
                self.procs.as_raw_fd(),
                self.me.as_ptr().cast(),
                self.me.len(),
            )
        };
        usize::try_from(written) == Ok(self.me.len())
    }
}

/// Waits while `word` holds `expected` (at most `timeout`): a raw futex
/// wait, no allocation.
fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: word is a valid aligned u32 for the duration of the call;
    // ts_ptr is null or points to a timespec that outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
        );
    }
}

/// Wakes every waiter on `word`.
fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: word is a valid aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Stops the warmer thread of [`warm_attach_lock`] when dropped (and waits
/// for it, so no write of it outlives the guard, and it frees what it
/// holds only while the guard waits).
pub struct AttachLockWarmer {
    state: std::sync::Arc<std::sync::atomic::AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AttachLockWarmer {
    fn drop(&mut self) {
        self.state
            .store(WARM_STOP, std::sync::atomic::Ordering::Release);
        futex_wake(&self.state);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// moat's `/proc/self/cgroup` and the `cgroup.procs` of its cgroup.
fn own_cgroup() -> Option<(String, PathBuf)> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let procs = own_cgroup_procs_file_in(
        &text,
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
    )?;
    Some((text, procs))
}

/// `cgroup.procs` of the cgroup moat is in: in the v1 `pids` hierarchy,
/// or on a unified (v2 only) host in `/sys/fs/cgroup`.
fn own_cgroup_procs_file_in(proc_self_cgroup: &str, unified_only: bool) -> Option<PathBuf> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.strip_prefix('/')?;
        if path.split('/').any(|c| c == "..") {
            return None;
        }
        let base = if unified_only && controllers.is_empty() {
            PathBuf::from("/sys/fs/cgroup")
        } else if !unified_only && controllers.split(',').any(|c| c == "pids") {
            PathBuf::from("/sys/fs/cgroup/pids")
        } else {
            return None;
        };
        Some(base.join(path).join("cgroup.procs"))
    })
}

#[cfg(test)]
mod warm_tests {
    use super::*;

    #[test]
    fn the_procs_file_is_moats_own_cgroup_in_pids_or_the_unified_tree() {
        let hybrid = "12:pids:/system.slice/x.service\n0::/system.slice/x.service\n";
        assert_eq!(
            own_cgroup_procs_file_in(hybrid, false),
            Some(PathBuf::from(
                "/sys/fs/cgroup/pids/system.slice/x.service/cgroup.procs"
            ))
        );
        assert_eq!(
            own_cgroup_procs_file_in("0::/a/b\n", true),
            Some(PathBuf::from("/sys/fs/cgroup/a/b/cgroup.procs"))
        );
        assert_eq!(own_cgroup_procs_file_in("0::/a\n", false), None);
        assert_eq!(own_cgroup_procs_file_in("3:pids:/../x\n", false), None);
        assert_eq!(own_cgroup_procs_file_in("3:pids:relative\n", false), None);
    }
}
