//! moat's own per-container state, beside libcontainer's.
//!
//! libcontainer keeps `<root>/<id>/state.json`. moat keeps
//! `<root>/@moat/<id>/`: the hardened `config.json` (libcontainer loads the
//! spec from a bundle directory, and moat never writes into the caller's
//! bundle), `moat.json` (what to undo on delete), and the rootfs mount
//! point. `@` cannot appear in a container id, so the two never collide.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::idpool::Allocation;
use crate::report::Report;
use crate::rootfs::PreparedRootfs;

pub const PRIVATE_DIR: &str = "@moat";
pub const STATE_FILE: &str = "moat.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoatState {
    pub id: String,
    /// The caller's bundle (docker's or containerd's), reported by `state`.
    pub bundle: PathBuf,
    /// Capabilities the container may hold, for the in-container self-check
    /// of exec'd processes.
    pub allowed_capabilities: Vec<String>,
    pub allocation: Option<Allocation>,
    /// The id pool the range came from (the policy may change later).
    #[serde(default)]
    pub pool_dir: Option<PathBuf>,
    /// The container's effective pids limit: `update` may not raise it.
    #[serde(default)]
    pub pids_limit: Option<i64>,
    pub rootfs: Option<PreparedRootfs>,
    pub report: Report,
    /// Whether other containers may join this one's namespaces, and so its
    /// pod (user namespace and id range): decided at its own create by
    /// [`consents_to_joins`], never by the joiner (T10).
    #[serde(default)]
    pub joinable: bool,
    /// When the container's init started (see `crate::pidfd::start_time`),
    /// recorded once it exists: with its pid it tells the init from a
    /// later process that reuses the pid (T33). `None`: never recorded,
    /// and then the init is never taken as alive.
    #[serde(default)]
    pub init_start_time: Option<u64>,
}

/// The annotation by which a container's own spec lets others join its
/// namespaces (its pod).
pub const JOINABLE_ANNOTATION: &str = "moat.dev/joinable";

/// Does a container consent to others joining its namespaces (its pod, its
/// user namespace and id range)? Only what the joiner cannot write counts:
/// its own spec (a CRI sandbox, or `moat.dev/joinable: "true"`), or a
/// bundle an engine made for it (`engine_made`: `moat::engine_bundle`,
/// containerd's task directory, where docker's and the CRI's containers
/// live, made by root; a tenant's config.json cannot move it, and a
/// directory a tenant names `io.containerd.runtime.v2.task` does not pass).
/// A raw bundle elsewhere is a container of its own unless it says so, so a
/// tenant cannot join another tenant's container by naming its namespaces.
pub fn consents_to_joins(
    annotations: &std::collections::HashMap<String, String>,
    engine_made: bool,
) -> bool {
    annotations
        .get(crate::pod::CRI_CONTAINER_TYPE)
        .map(String::as_str)
        == Some("sandbox")
        || annotations.get(JOINABLE_ANNOTATION).map(String::as_str) == Some("true")
        || engine_made
}

pub fn private_root(root: &Path) -> PathBuf {
    root.join(PRIVATE_DIR)
}

pub fn private_dir(root: &Path, id: &str) -> PathBuf {
    private_root(root).join(id)
}

/// Creates `dir` and its missing ancestors 0700 (whatever the umask), and
/// tightens `dir` itself to 0700 if an older moat left it open: moat's
/// state names containers, which other host users may not see (T17).
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    crate::idpool::create_private_dir(dir)
}

/// Creates the private directory of one container, 0700; fails with
/// `AlreadyExists` when it exists (it doubles as the id's lock).
pub fn create_container_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(dir)
}

impl MoatState {
    pub fn load(root: &Path, id: &str) -> std::io::Result<Option<MoatState>> {
        match fs::read(private_dir(root, id).join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, root: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::rootfs::write_atomic(&private_dir(root, &self.id).join(STATE_FILE), &data)
    }
}
