//! The host id pool: one uid/gid range per container, never shared.
//!
//! Each allocated range is a file `<pool_dir>/<slot>` created with O_EXCL,
//! so allocation is atomic across concurrent `moat create`s without a lock
//! daemon. The file names its owner (`<state root>\t<container id>`), so a
//! `delete --force` after a crash can find and free a range the state never
//! recorded.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

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
}

/// One allocated range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    pub slot: u32,
    pub range: IdRange,
}

pub struct IdPool<'a> {
    policy: &'a UserNamespacePolicy,
    dir: PathBuf,
}

fn owner_tag(root: &Path, id: &str) -> String {
    format!("{}\t{}\n", root.display(), id)
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

    /// Allocates the first free range for container `id` of state root `root`.
    ///
    /// The owner tag is written to a claim file first and the slot is taken
    /// by hard-linking it (link fails if the slot exists), so a slot file is
    /// never empty: a moat killed mid-allocation leaves at most a claim file
    /// carrying the tag, which [`IdPool::free_owned_by`] finds and removes.
    pub fn allocate(&self, root: &Path, id: &str) -> Result<Allocation, PoolError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        self.sweep_dead_claims();
        let claim = self.dir.join(format!(".claim-{}", std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&claim)
            .map_err(|e| self.io(e))?;
        f.write_all(owner_tag(root, id).as_bytes())
            .map_err(|e| self.io(e))?;
        drop(f);
        let mut result = Err(PoolError::Exhausted(self.dir.clone()));
        for slot in 0..self.policy.ranges {
            match fs::hard_link(&claim, self.dir.join(slot.to_string())) {
                Ok(()) => {
                    result = Ok(Allocation {
                        slot,
                        range: self.range_of(slot),
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
        let _ = fs::remove_file(&claim);
        result
    }

    /// Removes claim files of processes that no longer exist (a moat
    /// killed before it finished claiming a slot).
    fn sweep_dead_claims(&self) {
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(".claim-")) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Frees every range owned by (`root`, `id`). Returns how many.
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
            if fs::read_to_string(&path).is_ok_and(|c| c == tag) {
                match fs::remove_file(&path) {
                    Ok(()) => freed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io(e)),
                }
            }
        }
        Ok(freed)
    }

    /// Slots currently owned by (`root`, `id`): used by tests to prove a
    /// range was freed.
    pub fn owned_by(&self, root: &Path, id: &str) -> Vec<u32> {
        let tag = owner_tag(root, id);
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| fs::read_to_string(e.path()).is_ok_and(|c| c == tag))
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path, ranges: u32) -> UserNamespacePolicy {
        UserNamespacePolicy {
            host_id_base: 100_000,
            range_size: 1000,
            ranges,
            pool_dir: dir.display().to_string(),
        }
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
        let p = policy(tmp.path(), 1);
        let pool = IdPool::new(&p);
        pool.allocate(Path::new("/r"), "a").unwrap();
        assert!(matches!(
            pool.allocate(Path::new("/r"), "b"),
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
}
