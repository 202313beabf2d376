//! `moat update`: change resource limits, never beyond the policy's floor
//! (the pids limit stays at or below `resources.pids_limit`, relative
//! weights at or below `resources.cpu_shares_max`/`blkio_weight_max`).

use std::fs;
use std::io;

use anyhow::{anyhow, Context, Result};
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
    // As in runc: with --resources the other flags are ignored.
    if args.resources.is_none() {
        apply_flags(&args, &mut resources);
    }
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        tracing::warn!(
            id,
            "Intel RDT settings are not supported by moat and were ignored"
        );
    }
    // The container's own limit (operator policy tightened by its
    // annotations) is the ceiling, not just the operator's.
    let root = ctx.root()?;
    let mut ceiling = policy.clone();
    if let Some(limit) = super::load_moat_state(&root, id)?.and_then(|m| m.pids_limit) {
        ceiling.resources.pids_limit = ceiling.resources.pids_limit.min(limit);
    }
    let requested = resources.pids().as_ref().map(|p| p.limit());
    if requested.is_some() {
        let limit = moat::harden::clamp_pids_limit(requested, &ceiling);
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
    // Relative weights are cut as at create (threat T8, weights).
    let cpus = moat::facts::online_cpus();
    for (field, asked, given) in moat::harden::cap_relative_weights(&mut resources, &policy, cpus) {
        tracing::warn!(id, field, asked, given, "weight cut to the policy");
    }
    moat::harden::refuse_network_classes(&resources, &policy).map_err(|r| anyhow!(r))?;
    // cgroup v2 files are checked as at create: an allowlist, pids.max
    // never above the container's limit, weights within the policy's caps
    // (threat T24, T8).
    moat::harden::refuse_unified(
        resources.unified().as_ref(),
        &moat::harden::UnifiedCeilings::of(ceiling.resources.pids_limit, &policy, cpus),
    )
    .map_err(|r| anyhow!(r))?;
    // Device rules are fixed at create: update must not widen them.
    resources.set_devices(None);

    moat::container::cgroup_ops::update(&container, &resources)
        .with_context(|| format!("cannot update container {id}"))
}

/// runc's individual `update` flags, applied over `resources`.
fn apply_flags(args: &liboci_cli::Update, resources: &mut LinuxResources) {
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
    let cpu_flags = args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpu_share.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some();
    if cpu_flags {
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
        if let Some(p) = args.cpu_rt_period {
            cpu.set_realtime_period(Some(p));
        }
        if let Some(r) = args.cpu_rt_runtime {
            cpu.set_realtime_runtime(Some(r as i64));
        }
        if let Some(c) = &args.cpuset_cpus {
            cpu.set_cpus(Some(c.clone()));
        }
        if let Some(m) = &args.cpuset_mems {
            cpu.set_mems(Some(m.clone()));
        }
        resources.set_cpu(Some(cpu));
    }
    if let Some(w) = args.blkio_weight {
        let mut blkio = resources.block_io().clone().unwrap_or_default();
        blkio.set_weight(Some(w as u16));
        resources.set_block_io(Some(blkio));
    }
    if let Some(p) = args.pids_limit {
        if let Ok(pids) = LinuxPidsBuilder::default().limit(p).build() {
            resources.set_pids(Some(pids));
        }
    }
}
