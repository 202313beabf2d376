//! Joins namespaces given by path before libcontainer runs.
//!
//! libcontainer 0.7 unshares the user namespace before it joins namespaces
//! given by path, and joining a network namespace owned by another user
//! namespace from inside a new one fails with EACCES. So moat, still host
//! root in the host user namespace, joins those namespaces itself and hands
//! libcontainer a spec without the paths: the namespaces are inherited by
//! the processes libcontainer forks.
//!
//! Only namespaces a forked child inherits can be handled this way: net,
//! ipc, uts, pid (for children), cgroup, time (for children). Mount
//! namespaces given by path are left to libcontainer, and so is a pod's
//! pid namespace, by the pinned fd (see `join_path_namespaces`).

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::pinned::PinnedPaths;

#[derive(Debug, thiserror::Error)]
#[error("cannot join {kind} namespace {path}: {source}")]
pub struct JoinError {
    kind: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn flag(t: LinuxNamespaceType) -> Option<(CloneFlags, &'static str)> {
    match t {
        LinuxNamespaceType::Network => Some((CloneFlags::CLONE_NEWNET, "network")),
        LinuxNamespaceType::Ipc => Some((CloneFlags::CLONE_NEWIPC, "ipc")),
        LinuxNamespaceType::Uts => Some((CloneFlags::CLONE_NEWUTS, "uts")),
        LinuxNamespaceType::Pid => Some((CloneFlags::CLONE_NEWPID, "pid")),
        LinuxNamespaceType::Cgroup => Some((CloneFlags::CLONE_NEWCGROUP, "cgroup")),
        _ => None,
    }
}

/// The `CLONE_NEW*` flag of a namespace type (what `NS_GET_NSTYPE` reports).
pub fn clone_flag(t: LinuxNamespaceType) -> Option<CloneFlags> {
    match t {
        LinuxNamespaceType::Mount => Some(CloneFlags::CLONE_NEWNS),
        LinuxNamespaceType::User => Some(CloneFlags::CLONE_NEWUSER),
        LinuxNamespaceType::Time => None,
        other => flag(other).map(|(f, _)| f),
    }
}

/// Joins every joinable namespace the spec gives by path and removes it
/// from the spec. Returns the (type, path) pairs joined, for the state.
///
/// Each namespace is joined through the fd `pinned` opened and judged in
/// precheck, never by reopening the path (T29); the only path opened here
/// is `own_netns`, the network namespace moat itself created and pinned in
/// its private staging tree. A path that is neither is an error.
///
/// The process must be single-threaded (setns of a pid namespace affects
/// later children only, which is what libcontainer forks).
pub fn join_path_namespaces(
    spec: &mut Spec,
    pinned: &PinnedPaths,
    own_netns: Option<&Path>,
) -> Result<Vec<(String, PathBuf)>, JoinError> {
    let Some(mut linux) = spec.linux().clone() else {
        return Ok(Vec::new());
    };
    let Some(namespaces) = linux.namespaces().clone() else {
        return Ok(Vec::new());
    };
    let mut joined = Vec::new();
    let mut kept = Vec::new();
    for ns in namespaces {
        match (ns.path(), flag(ns.typ())) {
            (Some(path), Some((flag, kind))) => {
                let err = |source: std::io::Error| JoinError {
                    kind,
                    path: path.clone(),
                    source,
                };
                let opened;
                let mut of_host = false;
                let file: &File = match pinned.namespace(ns.typ()) {
                    Some(p) if &p.path == path => {
                        of_host = p.is_host;
                        &p.file
                    }
                    _ if own_netns == Some(path.as_path())
                        && ns.typ() == LinuxNamespaceType::Network =>
                    {
                        opened = File::open(path).map_err(err)?;
                        &opened
                    }
                    _ => {
                        return Err(err(std::io::Error::other(
                            "the path was not opened and checked in precheck",
                        )))
                    }
                };
                if ns.typ() == LinuxNamespaceType::Pid && !of_host {
                    // A pod's pid namespace is joined by libcontainer's
                    // intermediate process, after it joined the pod's user
                    // namespace (which owns it): joined here, the
                    // intermediate would be born inside it and report the
                    // init's pid as seen there, not the host's. It opens
                    // the pinned fd it inherits, never the spec's name.
                    let mut handle = ns.clone();
                    handle.set_path(Some(PathBuf::from(format!(
                        "/proc/self/fd/{}",
                        std::os::fd::AsRawFd::as_raw_fd(file)
                    ))));
                    kept.push(handle);
                    continue;
                }
                setns(file, flag).map_err(|e| err(e.into()))?;
                tracing::info!(namespace = kind, path = %path.display(), "joined namespace before handing off to libcontainer");
                joined.push((kind.to_string(), path.clone()));
            }
            _ => kept.push(ns),
        }
    }
    linux.set_namespaces(Some(kept));
    spec.set_linux(Some(linux));
    Ok(joined)
}
