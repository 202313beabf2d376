//! Every host path moat keeps for one container, derived in one place.
//!
//! create, delete, `delete --force`'s sweep and the integration tests' leak
//! check all name a container's files through [`ContainerPaths`], so what
//! create makes is exactly what teardown removes and what the leak check
//! looks for.

use std::path::{Path, PathBuf};

/// The host paths of container `id` under state root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPaths {
    /// The state root (`--root`, `/run/moat` by default).
    pub root: PathBuf,
    pub id: String,
    /// libcontainer's state directory (`<root>/<id>`, state.json).
    pub libcontainer_dir: PathBuf,
    /// moat's private state directory (0700): moat.json, the hardened
    /// config.json, the seccomp profile, the learn record.
    pub private_dir: PathBuf,
    /// The hardened spec libcontainer reads.
    pub config: PathBuf,
    /// The container's seccomp profile when moat loads it itself (read by
    /// `moat exec`).
    pub seccomp: PathBuf,
    /// The container's directory under `/run/moat-rootfs` (0700, owned by
    /// the container's root): the mount point and everything derived from
    /// it live there.
    pub rootfs_dir: PathBuf,
    /// Where the container's rootfs is mounted.
    pub mount_point: PathBuf,
    /// Where bind sources and scratch tmpfs are staged.
    pub staging: PathBuf,
    /// The bind-mounted pin of the moat-owned network namespace.
    pub netns: PathBuf,
    /// The sysfs moat mounts for a joined network namespace.
    pub sysfs: PathBuf,
    /// The learn recorder's socket (a short name under the socket dir).
    pub learn_socket: PathBuf,
    /// Names the cgroup directory create claimed exclusively (T22), so a
    /// teardown after a killed create removes it.
    pub cgroup_claim: PathBuf,
    /// The container's own device nodes (T34), mounted in its /dev.
    pub devices: PathBuf,
}

/// The hardened config.json's name in the private directory.
pub const CONFIG_FILE: &str = "config.json";

/// The seccomp profile's name in the private directory.
pub const SECCOMP_FILE: &str = "seccomp.json";

impl ContainerPaths {
    pub fn new(root: &Path, id: &str) -> Self {
        let private_dir = crate::state::private_dir(root, id);
        let mount_point = crate::rootfs::mount_point(root, id);
        ContainerPaths {
            root: root.to_path_buf(),
            id: id.to_string(),
            libcontainer_dir: root.join(id),
            config: private_dir.join(CONFIG_FILE),
            cgroup_claim: private_dir.join("cgroup.claim"),
            devices: private_dir.join("dev"),
            seccomp: private_dir.join(SECCOMP_FILE),
            private_dir,
            rootfs_dir: crate::rootfs::container_dir(root, id),
            staging: crate::staging::staging_dir(&mount_point),
            netns: crate::netns::netns_path(&mount_point),
            sysfs: with_suffix(&mount_point, ".sysfs"),
            learn_socket: crate::learn::socket_path(root, id),
            mount_point,
        }
    }

    /// Every path a container leaves on the host while it exists; none of
    /// them may remain after its delete.
    pub fn all(&self) -> [&Path; 11] {
        [
            &self.libcontainer_dir,
            &self.private_dir,
            &self.config,
            &self.seccomp,
            &self.rootfs_dir,
            &self.mount_point,
            &self.staging,
            &self.netns,
            &self.sysfs,
            &self.learn_socket,
            &self.devices,
        ]
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_distinct_and_private_ones_under_their_dirs() {
        let p = ContainerPaths::new(Path::new("/run/moat"), "c1");
        let all = p.all();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(p.config.starts_with(&p.private_dir));
        assert!(p.seccomp.starts_with(&p.private_dir));
        assert!(p.devices.starts_with(&p.private_dir));
        for under in [&p.mount_point, &p.staging, &p.netns, &p.sysfs] {
            assert!(under.starts_with(&p.rootfs_dir), "{}", under.display());
        }
        assert_ne!(p, ContainerPaths::new(Path::new("/run/moat"), "c2"));
        assert_ne!(
            p.rootfs_dir,
            ContainerPaths::new(Path::new("/tmp/other"), "c1").rootfs_dir
        );
    }
}
