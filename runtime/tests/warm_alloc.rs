//! L1: the cgroup attach-lock warmer (`cgroup_probe::warm_attach_lock`)
//! runs while libcontainer forks its intermediate process with a raw
//! `clone3`, whose child allocates before exec: the warmer thread must not
//! allocate or free while it runs. A test binary of its own: its global
//! allocator counts the allocations of one thread (found by its name).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The thread whose allocations are counted (0: none).
static WATCHED: AtomicI64 = AtomicI64::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);

struct Counting;

impl Counting {
    fn note(&self) {
        let watched = WATCHED.load(Ordering::Relaxed);
        // SAFETY: gettid takes no argument and cannot fail.
        if watched != 0 && unsafe { libc::syscall(libc::SYS_gettid) } == watched {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The tid of this process's thread named `name`, and its write syscall
/// count (`/proc/self/task/<tid>/io`).
fn thread_named(name: &str) -> Option<(i64, u64)> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            let tid = t.file_name().to_str()?.parse().ok()?;
            Some((tid, syscw(tid)))
        })
}

fn syscw(tid: i64) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("syscw: ")?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_warmer_neither_allocates_nor_frees_while_it_runs() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the warmer writes cgroup.procs (root only)");
        return;
    }
    let warmer = moat::cgroup_probe::warm_attach_lock();
    // warm_attach_lock returns once the thread is in its loop.
    let (tid, writes_before) = thread_named("cgroup-warm").expect("no warmer thread");
    WATCHED.store(tid, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    WATCHED.store(0, Ordering::SeqCst);
    let writes = syscw(tid) - writes_before;
    let allocations = COUNT.load(Ordering::SeqCst);
    drop(warmer);
    assert!(
        thread_named("cgroup-warm").is_none(),
        "the warmer outlived its guard"
    );
    // It did work (at least one write: a loaded machine wakes the thread
    // late, so no lower rate is promised), and at most one no-op
    // migration per period (3 ms), not one per millisecond.
    assert!((1..=150).contains(&writes), "{writes} writes in 300 ms");
    assert_eq!(
        allocations, 0,
        "the warmer allocated or freed {allocations} times"
    );
}
