//! Resources: the pids limit.

use oci_spec::runtime::{LinuxPids, LinuxResources, Spec};

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
    ("cpu.weight", ValueShape::Range(1, 10000)),
    ("cpu.weight.nice", ValueShape::Range(-20, 19)),
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
    /// An integer in the range.
    Range(i64, i64),
    /// "0-3,5".
    CpuList,
    /// "N", "default N" or "MAJ:MIN N" lines, N in 1..=10000.
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

fn weight(v: &str) -> bool {
    v.parse::<i64>().is_ok_and(|n| (1..=10000).contains(&n))
}

impl ValueShape {
    fn accepts(self, value: &str, pids_limit: i64) -> bool {
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
            ValueShape::Range(lo, hi) => v.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)),
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
                    [n] => weight(n),
                    [d, n] => (*d == "default" || is_device(d)) && weight(n),
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
/// shape, and `pids.max` never above `pids_limit` (never "max"), which is
/// the container's own limit. Used by `harden` and by `moat update`.
pub fn refuse_unified(
    unified: Option<&HashMap<String, String>>,
    pids_limit: i64,
) -> Result<(), Refusal> {
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
        if !shape.accepts(value, pids_limit) {
            return Err(Refusal::new(
                RefusalRule::CgroupResources,
                if matches!(shape, ValueShape::Pids) {
                    format!(
                        "linux.resources.unified[{key}] = {value:?}: must be a number from 1 to the container's pids limit {pids_limit}"
                    )
                } else {
                    format!("linux.resources.unified[{key}] = {value:?} is not a valid value")
                },
                Some("resources.pids_limit").filter(|_| matches!(shape, ValueShape::Pids)),
            ));
        }
    }
    Ok(())
}

/// [`refuse_unified`] on a hardened spec, against its own pids limit.
pub(super) fn refuse_spec_unified(spec: &Spec) -> Result<(), Refusal> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    let limit = resources
        .as_ref()
        .and_then(|r| r.pids().as_ref().map(|p| p.limit()))
        .unwrap_or(0);
    refuse_unified(resources.as_ref().and_then(|r| r.unified().as_ref()), limit)
}
