//! Namespaces: the ones a container must have of its own, and refusals of
//! the host's.

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

use super::HostFacts;
use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};
use crate::report::{Report, Rule};

/// Namespaces a container must have of its own.
pub const REQUIRED_NAMESPACES: &[LinuxNamespaceType] = &[
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Uts,
];

/// The policy's name for a namespace type.
pub fn namespace_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

pub(super) fn refuse_host_namespaces(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let allowed = |t: LinuxNamespaceType| {
        policy
            .refusals
            .allow_host_namespaces
            .iter()
            .any(|a| a == namespace_name(t))
    };
    for t in REQUIRED_NAMESPACES {
        let ns = namespaces.iter().find(|n| n.typ() == *t);
        let shares_host = match ns {
            None => true,
            Some(n) => n.path().is_some() && facts.host_namespace_paths.contains(t),
        };
        if shares_host && !allowed(*t) {
            return Err(Refusal::new(
                RefusalRule::HostNamespace,
                format!(
                    "the container would share the host's {} namespace",
                    namespace_name(*t)
                ),
                Some("refusals.allow_host_namespaces"),
            ));
        }
    }
    for n in &namespaces {
        if n.path().is_some() && facts.host_namespace_paths.contains(&n.typ()) && !allowed(n.typ())
        {
            return Err(Refusal::new(
                RefusalRule::HostNamespace,
                format!(
                    "namespace path {} is the host's {} namespace",
                    n.path()
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    namespace_name(n.typ())
                ),
                Some("refusals.allow_host_namespaces"),
            ));
        }
    }
    if let Some(user) = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
    {
        // A pod's user namespace is joined by the fd moat pinned (T5);
        // moat::pod has checked that a path the spec gives is that one.
        if let Some(path) = user
            .path()
            .as_ref()
            .filter(|_| facts.pod_user_namespace.is_none())
        {
            return Err(Refusal::new(
                RefusalRule::UserNamespacePath,
                format!(
                    "joining an existing user namespace ({}) is not supported: moat gives every container its own id range",
                    path.display()
                ),
                None,
            ));
        }
    }
    Ok(())
}

/// A container that joins another's uts namespace by path (its pod's)
/// takes that namespace's names: its own `hostname`/`domainname` are
/// dropped and reported (T10). runc would write them into the shared
/// namespace, renaming the owner; libcontainer refuses the spec instead.
pub(super) fn keep_joined_uts_names(spec: &mut Spec, report: &mut Report) {
    let joined = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Uts && n.path().is_some());
    if !joined {
        return;
    }
    if let Some(name) = spec.hostname().clone() {
        spec.set_hostname(None);
        report.change(
            Rule::JoinedUts,
            "hostname",
            name,
            "the joined uts namespace's",
            "a container joining another's uts namespace must not rename it",
        );
    }
    if let Some(name) = spec.domainname().clone() {
        spec.set_domainname(None);
        report.change(
            Rule::JoinedUts,
            "domainname",
            name,
            "the joined uts namespace's",
            "a container joining another's uts namespace must not rename it",
        );
    }
}

#[cfg(test)]
#[path = "namespaces_tests.rs"]
mod tests;

/// Gives the container a cgroup namespace of its own (threat T7): without
/// one, /proc/self/cgroup and the cgroup mounts show the host's cgroup
/// tree, which names every other workload. docker's `--cgroupns=host` (its
/// default on cgroup v1) omits it; moat adds it, as it adds the user
/// namespace, unless the operator lets containers share the host's
/// (`refusals.allow_host_namespaces = ["cgroup"]`). A path to the host's
/// own cgroup namespace is refused by [`refuse_host_namespaces`]; another
/// container's is joined as asked.
pub(super) fn add_cgroup_namespace(spec: &mut Spec, policy: &Policy, report: &mut Report) {
    if policy
        .refusals
        .allow_host_namespaces
        .iter()
        .any(|a| a == namespace_name(LinuxNamespaceType::Cgroup))
    {
        return;
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    if namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    {
        return;
    }
    let mut ns = LinuxNamespace::default();
    ns.set_typ(LinuxNamespaceType::Cgroup);
    namespaces.push(ns);
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    report.change(
        Rule::CgroupNamespace,
        "linux.namespaces",
        "no cgroup namespace (the host's)",
        "new cgroup namespace",
        "the host's cgroup tree names every other workload",
    );
}
