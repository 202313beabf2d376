//! Resources: the pids limit, the OOM killer, relative weights and the
//! cgroup v2 files a spec may write.

use oci_spec::runtime::{
    LinuxPids, LinuxResources, LinuxWeightDevice, LinuxWeightDeviceBuilder, Spec,
};

use std::collections::HashMap;

use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};
use crate::report::{Report, Rule};

pub(super) fn limit_pids(spec: &mut Spec, policy: &Policy, report: &mut Report) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_else(|| {
        let mut r = LinuxResources::default();
        r.set_devices(None);
        r
    });
    let current = resources.pids().as_ref().map(|p| p.limit());
    let limit = match current {
        Some(l) if l > 0 && l <= policy.resources.pids_limit => l,
        _ => policy.resources.pids_limit,
    };
    if current != Some(limit) {
        report.change(
            Rule::PidsLimit,
            "linux.resources.pids.limit",
            current.map_or("unlimited".into(), |l| l.to_string()),
            limit.to_string(),
            "a fork bomb must stay inside its own cgroup",
        );
    }
    let mut pids = LinuxPids::default();
    pids.set_limit(limit);
    resources.set_pids(Some(pids));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
}

/// Keeps the kernel's OOM killer on for the container's memory cgroup
/// (threat T8): `linux.resources.memory.disableOOMKiller` (docker's
/// `--oom-kill-disable`) would make a container that reaches its memory
/// limit freeze instead of being killed (cgroup v1 `memory.oom_control`):
/// its processes sleep holding their memory, pids and any kernel locks
/// they hold, and the engine never sees the OOM event that would restart
/// it. Dropped with a report line, not refused: the container still runs,
/// and is killed at its limit as it would be without the flag.
pub(super) fn keep_oom_killer(spec: &mut Spec, report: &mut Report) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let Some(mut resources) = linux.resources().clone() else {
        return;
    };
    let Some(mut memory) = resources.memory() else {
        return;
    };
    if memory.disable_oom_killer() != Some(true) {
        return;
    }
    memory.set_disable_oom_killer(Some(false));
    resources.set_memory(Some(memory));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    report.change(
        Rule::OomKiller,
        "linux.resources.memory.disableOOMKiller",
        "true",
        "false",
        "a container at its memory limit is killed, not frozen holding its memory and locks where the engine never sees the OOM",
    );
}

/// One relative weight cut to the policy's cap: (field, asked, given).
pub type WeightCut = (String, u64, u64);

/// Cuts the relative weights of `resources` to the policy (threat T8,
/// weights): `cpu.shares` to [`ResourcePolicy::cpu_shares_cap`], and the
/// block-IO weight, leafWeight and each device's weight and leafWeight to
/// `blkio_weight_max`. A weight is not a limit of the container's own
/// cgroup: it is its share against its siblings (other tenants' containers
/// under the same parent), so a raw tenant asking for the kernel's maximum
/// cpu.shares (262144) next to docker's 1024 takes 99.6% of the CPU under
/// contention. Cut, not refused: the container runs as with a weight an
/// engine would give it. Used by `harden` and by `moat update`.
///
/// [`ResourcePolicy::cpu_shares_cap`]: crate::policy::ResourcePolicy::cpu_shares_cap
pub fn cap_relative_weights(
    resources: &mut LinuxResources,
    policy: &Policy,
    online_cpus: Option<u32>,
) -> Vec<WeightCut> {
    let mut cuts = Vec::new();
    let shares_cap = policy.resources.cpu_shares_cap(online_cpus);
    if let Some(mut cpu) = resources.cpu().clone() {
        if let Some(shares) = cpu.shares().filter(|s| *s > shares_cap) {
            cpu.set_shares(Some(shares_cap));
            resources.set_cpu(Some(cpu));
            cuts.push(("linux.resources.cpu.shares".into(), shares, shares_cap));
        }
    }
    let io_cap = policy.resources.blkio_weight_max;
    let mut cut = |field: String, w: Option<u16>| -> Option<u16> {
        match w {
            Some(w) if w > io_cap => {
                cuts.push((field, u64::from(w), u64::from(io_cap)));
                Some(io_cap)
            }
            other => other,
        }
    };
    if let Some(mut blkio) = resources.block_io().clone() {
        let weight = cut("linux.resources.blockIO.weight".into(), blkio.weight());
        blkio.set_weight(weight);
        let leaf = cut(
            "linux.resources.blockIO.leafWeight".into(),
            blkio.leaf_weight(),
        );
        blkio.set_leaf_weight(leaf);
        if let Some(devices) = blkio.weight_device().clone() {
            // LinuxWeightDevice has no setters: each entry is rebuilt; one
            // that cannot be rebuilt is dropped (no weight asked is safe).
            let devices: Vec<LinuxWeightDevice> = devices
                .iter()
                .filter_map(|d| {
                    let at = format!("{}:{}", d.major(), d.minor());
                    let weight = cut(
                        format!("linux.resources.blockIO.weightDevice[{at}].weight"),
                        d.weight(),
                    );
                    let leaf = cut(
                        format!("linux.resources.blockIO.weightDevice[{at}].leafWeight"),
                        d.leaf_weight(),
                    );
                    let mut b = LinuxWeightDeviceBuilder::default()
                        .major(d.major())
                        .minor(d.minor());
                    if let Some(w) = weight {
                        b = b.weight(w);
                    }
                    if let Some(l) = leaf {
                        b = b.leaf_weight(l);
                    }
                    b.build().ok()
                })
                .collect();
            blkio.set_weight_device(Some(devices));
        }
        resources.set_block_io(Some(blkio));
    }
    cuts
}

/// [`cap_relative_weights`] on the spec, one report line per weight cut.
pub(super) fn cap_spec_weights(
    spec: &mut Spec,
    policy: &Policy,
    online_cpus: Option<u32>,
    report: &mut Report,
) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let Some(mut resources) = linux.resources().clone() else {
        return;
    };
    let cuts = cap_relative_weights(&mut resources, policy, online_cpus);
    if cuts.is_empty() {
        return;
    }
    for (field, asked, given) in cuts {
        report.change(
            Rule::RelativeWeights,
            field,
            asked.to_string(),
            given.to_string(),
            "a weight is a share against other tenants' containers: no container may outweigh the policy's cap (resources.cpu_shares_max, resources.blkio_weight_max)",
        );
    }
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
}

/// Refuses `linux.resources.network` (net_cls `classID`, net_prio
/// `priorities`) unless the policy allows it (threat T8, weights): a class
/// id is a host-wide label that the host's tc filters and iptables
/// `cgroup` matches act on (a tenant would pick another workload's class
/// and its bandwidth or firewall treatment), and net_prio resolves the
/// interface names in the host's network namespace. Docker and kubelet
/// never set either.
pub fn refuse_network_classes(resources: &LinuxResources, policy: &Policy) -> Result<(), Refusal> {
    let Some(network) = resources.network().as_ref() else {
        return Ok(());
    };
    let field = if network.class_id().is_some() {
        "classID"
    } else if network.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
        "priorities"
    } else {
        return Ok(());
    };
    if policy.resources.allow_network_classes {
        return Ok(());
    }
    Err(Refusal::new(
        RefusalRule::CgroupResources,
        format!(
            "linux.resources.network.{field}: a net_cls class id or net_prio priority map acts on host-wide traffic classes and the host's interfaces, not the container's own cgroup"
        ),
        Some("resources.allow_network_classes"),
    ))
}

/// [`refuse_network_classes`] on a spec.
pub(super) fn refuse_spec_network_classes(spec: &Spec, policy: &Policy) -> Result<(), Refusal> {
    match spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        Some(resources) => refuse_network_classes(resources, policy),
        None => Ok(()),
    }
}

/// Clamps a pids limit asked for by `moat update` to the policy.
pub fn clamp_pids_limit(requested: Option<i64>, policy: &Policy) -> i64 {
    match requested {
        Some(l) if l > 0 && l <= policy.resources.pids_limit => l,
        _ => policy.resources.pids_limit,
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;

/// cgroup v2 files a spec's `linux.resources.unified` (or `moat update
/// --resources`) may write, each with the shape of value it accepts. Only
/// limits of the container's own cgroup: nothing that reaches a sibling
/// (`cpuset.cpus.partition`), the kernel's memory reclaim of others, or a
/// file outside the cgroup (threat T24).
const UNIFIED_ALLOWED: &[(&str, ValueShape)] = &[
    ("memory.max", ValueShape::BytesOrMax),
    ("memory.high", ValueShape::BytesOrMax),
    ("memory.low", ValueShape::BytesOrMax),
    ("memory.min", ValueShape::BytesOrMax),
    ("memory.swap.max", ValueShape::BytesOrMax),
    ("memory.swap.high", ValueShape::BytesOrMax),
    ("memory.zswap.max", ValueShape::BytesOrMax),
    ("memory.oom.group", ValueShape::Flag),
    ("cpu.max", ValueShape::CpuMax),
    ("cpu.weight", ValueShape::CpuWeight),
    ("cpu.weight.nice", ValueShape::CpuWeightNice),
    ("cpu.idle", ValueShape::Flag),
    ("cpuset.cpus", ValueShape::CpuList),
    ("cpuset.mems", ValueShape::CpuList),
    ("io.weight", ValueShape::IoWeight),
    ("io.bfq.weight", ValueShape::IoWeight),
    ("io.max", ValueShape::IoMax),
    ("pids.max", ValueShape::Pids),
];

#[derive(Debug, Clone, Copy)]
enum ValueShape {
    /// A byte count or "max".
    BytesOrMax,
    /// 0 or 1.
    Flag,
    /// "$MAX $PERIOD" or "$MAX", $MAX a number or "max".
    CpuMax,
    /// 1..=10000, at most the container's CPU weight cap.
    CpuWeight,
    /// -20..=19, a nice value whose scheduler weight is at most the cap.
    CpuWeightNice,
    /// "0-3,5".
    CpuList,
    /// "N", "default N" or "MAJ:MIN N" lines, N in 1 to the container's
    /// io weight cap.
    IoWeight,
    /// "MAJ:MIN rbps=N wbps=N riops=N wiops=N" lines (N or "max").
    IoMax,
    /// A number of tasks, at most the container's pids limit.
    Pids,
}

fn is_number(v: &str) -> bool {
    !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit())
}

fn is_device(v: &str) -> bool {
    v.split_once(':')
        .is_some_and(|(a, b)| is_number(a) && is_number(b))
}

fn weight(v: &str, cap: u64) -> bool {
    v.parse::<u64>()
        .is_ok_and(|n| (1..=10000).contains(&n) && n <= cap)
}

/// The kernel's scheduler weight of each nice value, -20 to 19
/// (`sched_prio_to_weight`); nice 0 is 1024, one CPU's `cpu.shares`.
const NICE_WEIGHTS: [u64; 40] = [
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904,
    3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87,
    70, 56, 45, 36, 29, 23, 18, 15,
];

/// The ceilings a `linux.resources.unified` value is judged against: the
/// container's own pids limit, and the policy's weight caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnifiedCeilings {
    /// `pids.max` at most this (the container's pids limit).
    pub pids_limit: i64,
    /// `cpu.shares` equivalent of `cpu.weight`/`cpu.weight.nice` at most this.
    pub cpu_shares: u64,
    /// `io.weight`/`io.bfq.weight` at most this (cgroup v2 scale, default 100).
    pub io_weight: u64,
}

impl UnifiedCeilings {
    /// The ceilings of a container with pids limit `pids_limit` under
    /// `policy` on a host with `online_cpus` CPUs.
    pub fn of(pids_limit: i64, policy: &Policy, online_cpus: Option<u32>) -> Self {
        Self {
            pids_limit,
            cpu_shares: policy.resources.cpu_shares_cap(online_cpus),
            // cgroup v1's default 500 is v2's default 100.
            io_weight: (u64::from(policy.resources.blkio_weight_max) / 5).max(1),
        }
    }
}

impl UnifiedCeilings {
    /// The same ceilings with no weight cap (to tell a weight above its
    /// cap from a malformed value).
    fn without_weight_caps(&self) -> Self {
        Self {
            cpu_shares: u64::MAX,
            io_weight: u64::MAX,
            ..*self
        }
    }
}

impl ValueShape {
    fn accepts(self, value: &str, caps: &UnifiedCeilings) -> bool {
        let pids_limit = caps.pids_limit;
        let v = value.trim();
        match self {
            ValueShape::BytesOrMax => v == "max" || is_number(v),
            ValueShape::Flag => v == "0" || v == "1",
            ValueShape::CpuMax => {
                let parts: Vec<&str> = v.split_whitespace().collect();
                matches!(parts.len(), 1 | 2)
                    && (parts[0] == "max" || is_number(parts[0]))
                    && parts.get(1).is_none_or(|p| is_number(p))
            }
            // The kernel turns cpu.weight w into the scheduler weight
            // w * 1024 / 100 (cpu.shares' scale).
            ValueShape::CpuWeight => v
                .parse::<u64>()
                .is_ok_and(|w| (1..=10000).contains(&w) && w * 1024 / 100 <= caps.cpu_shares),
            ValueShape::CpuWeightNice => v.parse::<i64>().is_ok_and(|n| {
                usize::try_from(n + 20)
                    .ok()
                    .and_then(|i| NICE_WEIGHTS.get(i))
                    .is_some_and(|w| *w <= caps.cpu_shares)
            }),
            ValueShape::CpuList => {
                !v.is_empty()
                    && v.split(',').all(|r| match r.split_once('-') {
                        Some((a, b)) => is_number(a) && is_number(b),
                        None => is_number(r),
                    })
            }
            ValueShape::IoWeight => v.lines().all(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                match parts.as_slice() {
                    [n] => weight(n, caps.io_weight),
                    [d, n] => (*d == "default" || is_device(d)) && weight(n, caps.io_weight),
                    _ => false,
                }
            }),
            ValueShape::IoMax => v.lines().all(|line| {
                let mut parts = line.split_whitespace();
                parts.next().is_some_and(is_device)
                    && parts.all(|kv| {
                        kv.split_once('=').is_some_and(|(k, n)| {
                            ["rbps", "wbps", "riops", "wiops"].contains(&k)
                                && (n == "max" || is_number(n))
                        })
                    })
            }),
            ValueShape::Pids => v.parse::<i64>().is_ok_and(|n| n > 0 && n <= pids_limit),
        }
    }
}

/// Checks `linux.resources.unified` against [`UNIFIED_ALLOWED`]: every key
/// a known cgroup file (never a path: no `/`, no `..`), every value of its
/// shape, `pids.max` never above the container's own pids limit (never
/// "max"), and the weights (`cpu.weight`, `cpu.weight.nice`, `io.weight`,
/// `io.bfq.weight`) never above the policy's caps (T8, weights). Used by
/// `harden` and by `moat update`.
pub fn refuse_unified(
    unified: Option<&HashMap<String, String>>,
    caps: &UnifiedCeilings,
) -> Result<(), Refusal> {
    let pids_limit = caps.pids_limit;
    let mut keys: Vec<(&String, &String)> = unified.into_iter().flatten().collect();
    keys.sort();
    for (key, value) in keys {
        let shape = UNIFIED_ALLOWED
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, shape)| *shape);
        let Some(shape) = shape else {
            return Err(Refusal::new(
                RefusalRule::CgroupResources,
                format!(
                    "linux.resources.unified key {key:?} is not a cgroup file moat allows ({})",
                    UNIFIED_ALLOWED
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            ));
        };
        if !shape.accepts(value, caps) {
            // Well-formed but above a weight cap, or malformed.
            let above_cap = shape.accepts(value, &caps.without_weight_caps());
            let (detail, key_name) = match shape {
                ValueShape::Pids => (
                    format!(
                        "linux.resources.unified[{key}] = {value:?}: must be a number from 1 to the container's pids limit {pids_limit}"
                    ),
                    Some("resources.pids_limit"),
                ),
                ValueShape::CpuWeight | ValueShape::CpuWeightNice if above_cap => (
                    format!(
                        "linux.resources.unified[{key}] = {value:?}: a CPU weight above the cap (cpu.shares {}): a weight is a share against other tenants' containers",
                        caps.cpu_shares
                    ),
                    Some("resources.cpu_shares_max"),
                ),
                ValueShape::IoWeight if above_cap => (
                    format!(
                        "linux.resources.unified[{key}] = {value:?}: an io weight above the cap {}: a weight is a share against other tenants' containers",
                        caps.io_weight
                    ),
                    Some("resources.blkio_weight_max"),
                ),
                _ => (
                    format!("linux.resources.unified[{key}] = {value:?} is not a valid value"),
                    None,
                ),
            };
            return Err(Refusal::new(RefusalRule::CgroupResources, detail, key_name));
        }
    }
    Ok(())
}

/// [`refuse_unified`] on a hardened spec, against its own pids limit and
/// the policy's weight caps.
pub(super) fn refuse_spec_unified(
    spec: &Spec,
    policy: &Policy,
    online_cpus: Option<u32>,
) -> Result<(), Refusal> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    let limit = resources
        .as_ref()
        .and_then(|r| r.pids().as_ref().map(|p| p.limit()))
        .unwrap_or(0);
    refuse_unified(
        resources.as_ref().and_then(|r| r.unified().as_ref()),
        &UnifiedCeilings::of(limit, policy, online_cpus),
    )
}
