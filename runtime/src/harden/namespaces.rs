//! Namespaces: the ones a container must have of its own, and refusals of
//! the host's.

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::HostFacts;
use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};

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
        if let Some(path) = user.path() {
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

#[cfg(test)]
#[path = "namespaces_tests.rs"]
mod tests;
