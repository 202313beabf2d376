//! Resources: the pids limit.

use oci_spec::runtime::{LinuxPids, LinuxResources, Spec};

use crate::policy::Policy;
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
