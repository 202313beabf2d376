//! pause, resume and update: acting on a container's cgroup as it exists,
//! never creating it (T36, the rest of red-team finding G1).
//!
//! libcontainer's `pause`/`resume` go through libcgroups by path, whose v1
//! freezer `apply` is `mkdir -p`: pausing a container whose cgroup its
//! `delete` just removed (the engine looked it up as running a moment
//! before) made the cgroup again, and nothing removed it. Here the
//! container's cgroup directory is opened first (a removed one fails with
//! one line) and written through that descriptor.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use libcgroups::common::{CgroupManager, CgroupSetup, ControllerOpt};
use libcontainer::container::{Container, ContainerStatus};
use oci_spec::runtime::LinuxResources;

use crate::cgroup_join::{CgroupDir, Hierarchy};

/// The container's cgroup path, as libcontainer placed it.
fn cgroup_path(container: &Container) -> Result<PathBuf> {
    Ok(container.spec().map_err(|e| anyhow!("{e}"))?.cgroup_path)
}

/// Freezes every process of the container and records it as paused. The
/// caller has checked that it is running.
pub fn pause(container: &mut Container) -> Result<()> {
    set_frozen(container, true)?;
    container
        .set_status(ContainerStatus::Paused)
        .save()
        .map_err(|e| anyhow!("{e}"))
        .context("cannot record the paused state")
}

/// Thaws the container and records it as running. The caller has checked
/// that it is paused.
pub fn resume(container: &mut Container) -> Result<()> {
    set_frozen(container, false)?;
    container
        .set_status(ContainerStatus::Running)
        .save()
        .map_err(|e| anyhow!("{e}"))
        .context("cannot record the running state")
}

fn set_frozen(container: &Container, frozen: bool) -> Result<()> {
    let path = cgroup_path(container)?;
    crate::cgroup_join::set_frozen(&path, frozen).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "the cgroup of container {} is gone (deleted?): {e}",
                container.id()
            )
        } else {
            anyhow!("{e}")
        }
    })
}

/// The v1 controllers whose files an update of `resources` writes (as
/// libcgroups' v1 manager picks them).
fn v1_controllers_written(resources: &LinuxResources) -> Vec<&'static str> {
    let mut touched = Vec::new();
    if let Some(cpu) = resources.cpu() {
        if cpu.shares().is_some()
            || cpu.quota().is_some()
            || cpu.period().is_some()
            || cpu.realtime_period().is_some()
            || cpu.realtime_runtime().is_some()
            || cpu.idle().is_some()
            || cpu.burst().is_some()
        {
            touched.push("cpu");
        }
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            touched.push("cpuset");
        }
    }
    if resources.memory().is_some() {
        touched.push("memory");
    }
    if resources.pids().is_some() {
        touched.push("pids");
    }
    if resources.block_io().is_some() {
        touched.push("blkio");
    }
    if resources
        .hugepage_limits()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        touched.push("hugetlb");
    }
    touched
}

/// Applies `resources` (already held to the policy) to the container's
/// existing cgroup. On the unified hierarchy (cgroupfs driver) libcgroups'
/// v2 manager writes through the cgroup directory's descriptor; on a v1 or
/// hybrid host every hierarchy the update writes is opened first, so a
/// removed cgroup fails with one line, and libcgroups' v1 `apply` (which
/// creates no directory for an update: only its freezer and `add_task`
/// do) writes by path.
pub fn update(container: &Container, resources: &LinuxResources) -> Result<()> {
    let path = cgroup_path(container)?;
    let id = container.id();
    let gone = |e: std::io::Error| anyhow!("the cgroup of container {id} is gone (deleted?): {e}");
    let opt = ControllerOpt {
        resources,
        disable_oom_killer: false,
        oom_score_adj: None,
        freezer_state: None,
    };
    let unified = matches!(
        libcgroups::common::get_cgroup_setup().map_err(|e| anyhow!("{e}"))?,
        CgroupSetup::Unified
    );
    if unified && !container.systemd() {
        let dir = CgroupDir::open(&path, Hierarchy::Unified).map_err(gone)?;
        let manager = libcgroups::v2::manager::Manager::new(dir.fd_path(), PathBuf::new())
            .map_err(|e| anyhow!("{e}"))?;
        return manager.apply(&opt).map_err(|e| anyhow!("{e}"));
    }
    if !unified {
        for controller in v1_controllers_written(resources) {
            CgroupDir::open(&path, Hierarchy::V1(controller)).map_err(gone)?;
        }
    }
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: path,
        systemd_cgroup: container.systemd(),
        container_name: id.to_string(),
    })
    .map_err(|e| anyhow!("{e}"))?;
    manager.apply(&opt).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    #[test]
    fn an_update_opens_the_hierarchies_it_writes() {
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().shares(512u64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(v1_controllers_written(&r), ["cpu", "pids"]);
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().cpus("0").build().unwrap())
            .build()
            .unwrap();
        assert_eq!(v1_controllers_written(&r), ["cpuset"]);
        let none = LinuxResourcesBuilder::default().build().unwrap();
        assert!(v1_controllers_written(&none).is_empty());
    }
}
