//! Open-file headroom, checked once when moat starts.
//!
//! A create opens a few dozen descriptors at once (the pinned bundle and
//! rootfs, namespace files, pipes and sockets of libcontainer's channels,
//! procfs handles). When the caller's `RLIMIT_NOFILE` is too small for
//! that, some of those opens fail deep inside libcontainer, whose procfs
//! library (pathrs) panics on EMFILE and then aborts in a destructor
//! (red-team pass 6): no one-line error, and cleanup never runs. So moat
//! checks first, before touching anything: with fewer than [`MIN_FREE`]
//! descriptors left it raises its soft limit towards the hard one (that
//! grants nothing: any process may raise its own soft limit up to the hard
//! one), and when even the hard limit leaves too few it refuses to start
//! with one line.
//!
//! Why not always raise the soft limit to the hard one, as Go's runtime
//! does: a container whose spec sets no `RLIMIT_NOFILE` inherits moat's
//! limits (as under runc), and hard limits are often 524288 or more;
//! programs that close every descriptor up to the soft limit at start then
//! take seconds. Go restores the caller's soft limit in the processes it
//! starts for that reason; moat keeps the caller's limit whenever it
//! leaves enough room, so containers see what they saw before.

use std::fs;

/// Descriptors a command may need at once, with room to spare: a create of
/// a bundle with no extra mounts needs about 20 (measured: it fails under a
/// limit of 16 and passes under 20); mounts, namespaces by path and pods
/// add a few each.
pub const MIN_FREE: u64 = 64;

/// Why moat cannot start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FdLimitError {
    #[error("too few open files allowed: RLIMIT_NOFILE is {limit} (hard limit {hard}) and {open} are open; moat needs {MIN_FREE} free (raise it, e.g. `ulimit -n 1024`)")]
    TooFew { limit: u64, hard: u64, open: u64 },
    #[error("cannot read RLIMIT_NOFILE: {0}")]
    Unreadable(String),
}

/// The pure decision: with soft limit `limit` (after raising) and `open`
/// descriptors already open, is there room?
pub fn check(limit: u64, hard: u64, open: u64) -> Result<(), FdLimitError> {
    if limit.saturating_sub(open) < MIN_FREE {
        return Err(FdLimitError::TooFew { limit, hard, open });
    }
    Ok(())
}

/// The soft limit to run with: `soft` when it leaves [`MIN_FREE`] beyond
/// the `open` descriptors, otherwise raised to leave four times that (at
/// most `hard`).
pub fn wanted_soft_limit(soft: u64, hard: u64, open: u64) -> u64 {
    if soft.saturating_sub(open) >= MIN_FREE {
        soft
    } else {
        open.saturating_add(4 * MIN_FREE).min(hard).max(soft)
    }
}

/// Raises the soft `RLIMIT_NOFILE` when it leaves too little room (see the
/// module), then checks the headroom. Called first thing in `main`.
pub fn prepare() -> Result<(), FdLimitError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(FdLimitError::Unreadable(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    let open = open_descriptors();
    let wanted = wanted_soft_limit(lim.rlim_cur, lim.rlim_max, open);
    if wanted != lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from the struct we own; a
        // failure leaves the limit as it was, which the check below judges.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    check(lim.rlim_cur, lim.rlim_max, open)
}

/// How many descriptors are open now (the one reading /proc/self/fd not
/// counted). Unreadable (no descriptor left to read it with): all of them.
fn open_descriptors() -> u64 {
    match fs::read_dir("/proc/self/fd") {
        Ok(dir) => (dir.count() as u64).saturating_sub(1),
        Err(_) => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_is_required() {
        check(1024, 1024, 3).unwrap();
        check(67, 67, 3).unwrap();
        let err = check(66, 66, 3).unwrap_err();
        assert_eq!(
            err,
            FdLimitError::TooFew {
                limit: 66,
                hard: 66,
                open: 3
            }
        );
        assert!(err.to_string().contains("moat needs 64 free"), "{err}");
        check(12, 12, 3).unwrap_err();
        check(1024, 1024, u64::MAX).unwrap_err();
        check(1024, 4096, 1000).unwrap_err();
    }

    #[test]
    fn the_soft_limit_is_raised_only_when_it_leaves_too_little() {
        assert_eq!(wanted_soft_limit(1024, 1048576, 3), 1024);
        assert_eq!(wanted_soft_limit(67, 1048576, 3), 67);
        assert_eq!(wanted_soft_limit(12, 1048576, 3), 259);
        assert_eq!(wanted_soft_limit(12, 100, 3), 100);
        assert_eq!(wanted_soft_limit(12, 12, 3), 12);
        assert_eq!(wanted_soft_limit(12, 12, u64::MAX), 12);
    }

    #[test]
    fn prepare_passes_with_the_test_runner_limits() {
        prepare().unwrap();
    }
}
