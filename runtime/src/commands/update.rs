//! `moat update`: change resource limits, never beyond the policy's floor
//! (the pids limit stays at or below `resources.pids_limit`).

use std::fs;
use std::io;

use anyhow::{anyhow, Context, Result};
use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::{LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder};

use super::{load_container, Ctx};

pub fn update(ctx: &Ctx, args: liboci_cli::Update) -> Result<()> {
    let id = &args.container_id;
    let container = load_container(ctx, id)?;
    let policy = ctx.policy()?;
    let mut resources: LinuxResources = match &args.resources {
        Some(path) if path.as_os_str() == "-" => {
            serde_json::from_reader(io::stdin()).context("malformed resources JSON on stdin")?
        }
        Some(path) => serde_json::from_slice(
            &fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("malformed resources JSON in {}", path.display()))?,
        None => LinuxResourcesBuilder::default()
            .build()
            .map_err(|e| anyhow!("{e}"))?,
    };
    // Flags override the JSON, as in runc.
    if args.memory.is_some() || args.memory_swap.is_some() || args.memory_reservation.is_some() {
        let mut mem = resources.memory().unwrap_or_default();
        if let Some(m) = args.memory {
            mem.set_limit(Some(m as i64));
        }
        if let Some(s) = args.memory_swap {
            mem.set_swap(Some(s));
        }
        if let Some(r) = args.memory_reservation {
            mem.set_reservation(Some(r as i64));
        }
        resources.set_memory(Some(mem));
    }
    if args.cpu_quota.is_some() || args.cpu_period.is_some() || args.cpu_share.is_some() {
        let mut cpu = resources.cpu().clone().unwrap_or_default();
        if let Some(q) = args.cpu_quota {
            cpu.set_quota(Some(q as i64));
        }
        if let Some(p) = args.cpu_period {
            cpu.set_period(Some(p));
        }
        if let Some(s) = args.cpu_share {
            cpu.set_shares(Some(s));
        }
        resources.set_cpu(Some(cpu));
    }
    let requested = args
        .pids_limit
        .or_else(|| resources.pids().as_ref().map(|p| p.limit()));
    if requested.is_some() {
        let limit = moat::harden::clamp_pids_limit(requested, &policy);
        if Some(limit) != requested {
            tracing::warn!(id, requested = ?requested, limit, "pids limit clamped to the policy");
        }
        resources.set_pids(Some(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(|e| anyhow!("{e}"))?,
        ));
    }
    // Device rules are fixed at create: update must not widen them.
    resources.set_devices(None);

    let config = container.spec().map_err(|e| anyhow!("{e}"))?;
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.clone(),
    })
    .map_err(|e| anyhow!("{e}"))?;
    manager
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot update container {id}"))
}
