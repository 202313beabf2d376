//! Joining a container's cgroups without ever creating one (G1, T36).
//!
//! libcgroups' `add_task` is `mkdir -p` then a write: an exec that passed
//! its alive check while the container ended re-creates the cgroup the
//! engine's `delete` just removed, in every hierarchy, and nothing removes
//! it again. moat instead opens the directories of the cgroups the init is
//! in (read from `/proc/<init>/cgroup` before the caller's alive check, so
//! they are the init's) and joins by writing `cgroup.procs` through those
//! descriptors: a cgroup removed meanwhile fails the join (its directory is
//! dead) and nothing is created.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/<pid>/cgroup`: the hierarchy's controllers (`""` for
/// the unified one, `name=systemd` for a named one) and the path in it.
#[derive(Debug, PartialEq, Eq)]
pub struct Membership {
    pub controllers: String,
    pub path: PathBuf,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let _id = it.next()?;
            let controllers = it.next()?.to_string();
            let path = it.next()?;
            path.starts_with('/').then(|| Membership {
                controllers,
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// A cgroup mount: where it is, which part of the hierarchy it shows, and
/// which hierarchy (v1 by its controllers/name in the super options).
#[derive(Debug, PartialEq, Eq)]
pub struct CgroupMount {
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub v2: bool,
    pub options: Vec<String>,
}

pub fn parse_cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fs_type = post.next()?;
            let _source = post.next()?;
            let options = post.next().unwrap_or("");
            if fs_type != "cgroup" && fs_type != "cgroup2" {
                return None;
            }
            Some(CgroupMount {
                root: PathBuf::from(crate::rootfs::unescape_mountinfo(pre.get(3)?)),
                mount_point: PathBuf::from(crate::rootfs::unescape_mountinfo(pre.get(4)?)),
                v2: fs_type == "cgroup2",
                options: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Where the cgroup `m` is seen in this mount namespace: the first mount of
/// its hierarchy that shows it (mount root at or above its path).
pub fn directory_of(m: &Membership, mounts: &[CgroupMount]) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|mnt| {
            if m.controllers.is_empty() {
                mnt.v2
            } else {
                !mnt.v2
                    && m.controllers
                        .split(',')
                        .all(|c| mnt.options.iter().any(|o| o == c))
            }
        })
        .find_map(|mnt| {
            let below = m.path.strip_prefix(&mnt.root).ok()?;
            Some(mnt.mount_point.join(below))
        })
}

/// Descriptors of the directories of every cgroup a process is in.
pub struct CgroupDirs(Vec<(PathBuf, OwnedFd)>);

impl CgroupDirs {
    /// Opens the cgroups `pid` is in now. Fails if none can be opened.
    pub fn of_process(pid: i32) -> std::io::Result<Self> {
        let memberships =
            parse_proc_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?);
        let mounts = parse_cgroup_mounts(&std::fs::read_to_string("/proc/self/mountinfo")?);
        let mut dirs = Vec::new();
        for m in &memberships {
            let Some(dir) = directory_of(m, &mounts) else {
                continue; // a hierarchy not mounted here
            };
            let fd: OwnedFd = File::options()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&dir)?
                .into();
            dirs.push((dir, fd));
        }
        if dirs.is_empty() {
            return Err(std::io::Error::other(format!(
                "no cgroup of process {pid} is mounted here"
            )));
        }
        Ok(Self(dirs))
    }

    /// Moves `pid` into every one of the cgroups, through the directories
    /// opened before: one removed meanwhile fails (ENOENT), none is created.
    pub fn join(&self, pid: i32) -> std::io::Result<()> {
        for (dir, fd) in &self.0 {
            write_at(fd, dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|(p, _)| p.as_path())
    }
}

/// Opens `name` in the directory `fd` (shown as `dir` in errors) with
/// `flags`, never creating it: in a removed cgroup's directory this fails
/// (ENOENT) and nothing appears.
fn open_at(fd: &OwnedFd, dir: &Path, name: &str, flags: libc::c_int) -> std::io::Result<File> {
    let annotate =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}/{name}: {e}", dir.display()));
    let c = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: openat on a directory descriptor we own with a NUL-terminated
    // relative name; no O_CREAT, so nothing is created.
    let raw = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(annotate(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { File::from_raw_fd(raw) })
}

/// Writes `value` to the file `name` of the directory `fd` in one write.
fn write_at(fd: &OwnedFd, dir: &Path, name: &str, value: &str) -> std::io::Result<()> {
    open_at(fd, dir, name, libc::O_WRONLY)?
        .write_all(value.as_bytes())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}/{name}: {e}", dir.display())))
}

/// One directory of a container's cgroup (the cgroup named by its
/// `cgroupsPath`), opened as it exists: never created. Acting through it
/// (pause, resume, update) on a cgroup that was removed fails and leaves
/// nothing behind, where libcgroups' v1 freezer would `mkdir -p` it (T36).
pub struct CgroupDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// Which hierarchy a [`CgroupDir`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy<'a> {
    /// The v1 hierarchy carrying this controller.
    V1(&'a str),
    /// The unified (v2) hierarchy.
    Unified,
}

impl CgroupDir {
    /// Opens the directory of cgroup `cgroup_path` (absolute in the
    /// hierarchy, as libcontainer places it) in `hierarchy` as mounted in
    /// this mount namespace. Fails when that hierarchy is not mounted here
    /// or the directory does not exist.
    pub fn open(cgroup_path: &Path, hierarchy: Hierarchy) -> std::io::Result<Self> {
        let mounts = parse_cgroup_mounts(&std::fs::read_to_string("/proc/self/mountinfo")?);
        Self::open_in(&mounts, cgroup_path, hierarchy)
    }

    fn open_in(
        mounts: &[CgroupMount],
        cgroup_path: &Path,
        hierarchy: Hierarchy,
    ) -> std::io::Result<Self> {
        let membership = Membership {
            controllers: match hierarchy {
                Hierarchy::V1(c) => c.to_string(),
                Hierarchy::Unified => String::new(),
            },
            path: Path::new("/").join(cgroup_path),
        };
        let path = directory_of(&membership, mounts).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {hierarchy:?} cgroup hierarchy is mounted here"),
            )
        })?;
        let fd: OwnedFd = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?
            .into();
        Ok(Self { path, fd })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A name that resolves to this directory through its descriptor
    /// (`/proc/self/fd/N`): for code that takes a path, such as
    /// libcgroups' v2 manager; what it names never changes, and a file
    /// under it is looked up in this directory, removed or not.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn write(&self, name: &str, value: &str) -> std::io::Result<()> {
        write_at(&self.fd, &self.path, name, value)
    }

    pub fn read(&self, name: &str) -> std::io::Result<String> {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut open_at(&self.fd, &self.path, name, libc::O_RDONLY)?,
            &mut text,
        )?;
        Ok(text)
    }
}

/// Whether a v1 hierarchy carries `controller` in this mount namespace (a
/// legacy or hybrid host, where libcontainer uses the v1 manager).
pub fn v1_controller_mounted(controller: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| {
        parse_cgroup_mounts(&text)
            .iter()
            .any(|m| !m.v2 && m.options.iter().any(|o| o == controller))
    })
}

/// Freezes (`frozen`) or thaws the container cgroup `cgroup_path` through
/// its existing directory: the v1 freezer where one is mounted (as
/// libcontainer's manager on a legacy or hybrid host), else the unified
/// hierarchy's `cgroup.freeze`. A freeze is confirmed (the kernel reports
/// FROZEN) or undone.
pub fn set_frozen(cgroup_path: &Path, frozen: bool) -> std::io::Result<()> {
    if v1_controller_mounted("freezer") {
        let dir = CgroupDir::open(cgroup_path, Hierarchy::V1("freezer"))?;
        freeze_v1(&dir, frozen)
    } else {
        let dir = CgroupDir::open(cgroup_path, Hierarchy::Unified)?;
        freeze_unified(&dir, frozen)
    }
}

/// How long a freeze may take to settle before it is undone and reported.
const FREEZE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

fn freeze_v1(dir: &CgroupDir, frozen: bool) -> std::io::Result<()> {
    const STATE: &str = "freezer.state";
    if !frozen {
        return dir.write(STATE, "THAWED");
    }
    let start = std::time::Instant::now();
    let mut round = 0u32;
    let result = loop {
        // A task stuck in FREEZING may need the write repeated (the kernel
        // walks the tasks again on each write).
        if let Err(e) = dir.write(STATE, "FROZEN") {
            break Err(e);
        }
        match dir.read(STATE).map(|s| s.trim().to_string()) {
            Ok(s) if s == "FROZEN" => break Ok(()),
            Ok(s) if s == "FREEZING" && start.elapsed() < FREEZE_DEADLINE => {}
            Ok(s) => {
                break Err(std::io::Error::other(format!(
                    "{}: freezer state {s} after {:?}",
                    dir.path.display(),
                    start.elapsed()
                )))
            }
            Err(e) => break Err(e),
        }
        round += 1;
        if round.is_multiple_of(25) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    if result.is_err() {
        // Never leave a cgroup half frozen.
        let _ = dir.write(STATE, "THAWED");
    }
    result
}

fn freeze_unified(dir: &CgroupDir, frozen: bool) -> std::io::Result<()> {
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let result = dir
        .write("cgroup.freeze", if frozen { "1" } else { "0" })
        .and_then(|()| {
            let start = std::time::Instant::now();
            loop {
                if dir.read("cgroup.events")?.lines().any(|l| l.trim() == want) {
                    return Ok(());
                }
                if start.elapsed() > FREEZE_DEADLINE {
                    return Err(std::io::Error::other(format!(
                        "{}: cgroup.events never showed {want}",
                        dir.path.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
    if frozen && result.is_err() {
        let _ = dir.write("cgroup.freeze", "0");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/pids rw,nosuid shared:15 - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
36 24 0:30 /moat /mnt/pids\\040moat rw - cgroup cgroup rw,pids
";

    #[test]
    fn proc_cgroup_parses_v1_v2_and_named() {
        let m =
            parse_proc_cgroup("4:cpu,cpuacct:/moat/c\n1:name=systemd:/x\n0::/user.slice\nbad\n");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].controllers, "cpu,cpuacct");
        assert_eq!(m[0].path, PathBuf::from("/moat/c"));
        assert_eq!(m[2].controllers, "");
    }

    #[test]
    fn each_hierarchy_maps_to_its_mount() {
        let mounts = parse_cgroup_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        let dir = |c: &str, p: &str| {
            directory_of(
                &Membership {
                    controllers: c.into(),
                    path: p.into(),
                },
                &mounts,
            )
        };
        assert_eq!(
            dir("cpu,cpuacct", "/moat/c"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/moat/c"))
        );
        assert_eq!(
            dir("pids", "/moat/c"),
            Some(PathBuf::from("/sys/fs/cgroup/pids/moat/c"))
        );
        assert_eq!(
            dir("name=systemd", "/a"),
            Some(PathBuf::from("/sys/fs/cgroup/systemd/a"))
        );
        assert_eq!(
            dir("", "/u"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/u"))
        );
        // A hierarchy not mounted here.
        assert_eq!(dir("memory", "/moat/c"), None);
    }

    #[test]
    fn a_mount_of_a_subtree_maps_only_what_it_shows() {
        let mounts: Vec<_> = parse_cgroup_mounts(MOUNTINFO)
            .into_iter()
            .filter(|m| m.root == Path::new("/moat"))
            .collect();
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/pids moat"));
        let m = |p: &str| Membership {
            controllers: "pids".into(),
            path: p.into(),
        };
        assert_eq!(
            directory_of(&m("/moat/c"), &mounts),
            Some(PathBuf::from("/mnt/pids moat/c"))
        );
        assert_eq!(directory_of(&m("/other"), &mounts), None);
    }

    #[test]
    fn a_container_cgroup_opens_in_its_hierarchy_and_a_missing_one_is_not_made() {
        let tmp = tempfile::tempdir().unwrap();
        let freezer = tmp.path().join("freezer");
        std::fs::create_dir_all(freezer.join("moat/c")).unwrap();
        std::fs::write(freezer.join("moat/c/freezer.state"), "THAWED").unwrap();
        let mounts = vec![CgroupMount {
            root: "/".into(),
            mount_point: freezer.clone(),
            v2: false,
            options: vec!["rw".into(), "freezer".into()],
        }];
        let dir =
            CgroupDir::open_in(&mounts, Path::new("moat/c"), Hierarchy::V1("freezer")).unwrap();
        assert_eq!(dir.path(), freezer.join("moat/c"));
        assert_eq!(dir.read("freezer.state").unwrap(), "THAWED");
        // A hierarchy not mounted, a cgroup that does not exist: errors,
        // and nothing is created.
        assert!(
            CgroupDir::open_in(&mounts, Path::new("/moat/c"), Hierarchy::V1("memory")).is_err()
        );
        let gone = CgroupDir::open_in(&mounts, Path::new("/moat/gone"), Hierarchy::V1("freezer"));
        assert_eq!(
            gone.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
        assert!(!freezer.join("moat/gone").exists());
        // Removed after it was opened: writes fail, nothing is re-created.
        std::fs::remove_dir_all(freezer.join("moat/c")).unwrap();
        assert!(dir.write("freezer.state", "FROZEN").is_err());
        assert!(!freezer.join("moat/c").exists());
    }

    #[test]
    fn a_removed_cgroup_fails_the_join_and_is_not_recreated() {
        // A plain directory stands in for a cgroup: once removed, the held
        // descriptor's openat fails and nothing appears again.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        let fd: OwnedFd = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&dir)
            .unwrap()
            .into();
        let dirs = CgroupDirs(vec![(dir.clone(), fd)]);
        dirs.join(1).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
            "1"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(dirs.join(1).is_err());
        assert!(!dir.exists());
    }
}
