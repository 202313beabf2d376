//! Host paths a container may not reach: the sensitive-path list and the
//! refusal of bind and overlay mounts of them.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::{is_bind, normalize, HostFacts};
use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};

/// Host paths a bind mount may neither be nor contain: each hands a
/// container control of the host or of its container engines.
pub const SENSITIVE_HOST_PATHS: &[&str] = &[
    "/",
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/boot",
    "/lib/modules",
    "/usr/lib/modules",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/run/containerd",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/moat",
];

/// Host trees whose insides are sensitive too: the kernel's interfaces,
/// the host's configuration and boot files, and moat's own state and
/// staging. Neither a bind source nor a rootfs may be inside one.
pub const SENSITIVE_HOST_TREES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/boot",
    "/lib/modules",
    "/usr/lib/modules",
    "/run/moat",
    "/run/moat-rootfs",
];

/// The engines' state trees. Every image's rootfs comes from inside one
/// (`/var/lib/docker/overlay2/<layer>/merged`), so a rootfs may be there;
/// a bind source may not: `/var/lib/docker/containers/<other container>`
/// holds another container's config.v2.json. The only bind sources allowed
/// inside are what the policy lists as engine-provisioned volume storage
/// and per-container files (`volumes.idmap_under`: volumes, hosts,
/// hostname, resolv.conf), which engines hand containers from there (T11,
/// T19).
pub const ENGINE_STATE_TREES: &[&str] = &[
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/run/containerd",
    "/run/docker",
];

/// Engine control sockets, refused wherever they live (rootless engines keep
/// them under $XDG_RUNTIME_DIR).
pub const ENGINE_SOCKET_NAMES: &[&str] = &[
    "docker.sock",
    "containerd.sock",
    "crio.sock",
    "podman.sock",
    "cri-dockerd.sock",
];

fn sensitive_reason(source: &Path, policy: &Policy) -> Option<String> {
    for s in SENSITIVE_HOST_PATHS {
        let s = Path::new(s);
        if source == s {
            return Some(format!("{} is a sensitive host path", source.display()));
        }
        if s.starts_with(source) {
            return Some(format!(
                "{} contains the sensitive host path {}",
                source.display(),
                s.display()
            ));
        }
    }
    if let Some(t) = SENSITIVE_HOST_TREES.iter().find(|t| source.starts_with(t)) {
        return Some(format!("{} is inside the host's {t}", source.display()));
    }
    if let Some(t) = ENGINE_STATE_TREES.iter().find(|t| source.starts_with(t)) {
        if !policy.volumes.is_volume_storage(source) {
            return Some(format!(
                "{} is inside the engine state tree {t} and not volume storage (volumes.idmap_under)",
                source.display()
            ));
        }
    }
    let name = source.file_name()?.to_str()?;
    if ENGINE_SOCKET_NAMES.contains(&name) {
        return Some(format!(
            "{} is a container engine's control socket",
            source.display()
        ));
    }
    None
}

pub(super) fn refuse_sensitive_mounts(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    let allowed_entries: Vec<PathBuf> = policy
        .refusals
        .allow_host_mounts
        .iter()
        .map(|a| normalize(Path::new(a)))
        .collect();
    for m in spec.mounts().as_ref().into_iter().flatten() {
        // Bind sources are host paths; so are an overlay's layer options.
        let host_paths: Vec<PathBuf> = if is_bind(m) {
            m.source().iter().cloned().collect()
        } else if m.typ().as_deref() == Some("overlay") {
            crate::path_syntax::overlay_option_paths(&m.options().clone().unwrap_or_default())
        } else {
            continue;
        };
        for source in &host_paths {
            let lexical = normalize(source);
            let resolved = facts
                .resolved_sources
                .get(source)
                .map(|p| normalize(p))
                .unwrap_or_else(|| lexical.clone());
            // Both the path as written and the path it resolves to are
            // judged: an allowance for /srv/ok does not extend to wherever a
            // symlink there points. An operator allowing the docker socket
            // lists both /var/run/docker.sock and /run/docker.sock.
            // Where the file is mounted too (a docker volume that binds
            // /etc) is judged the same way (T29).
            let aliases = facts
                .source_aliases
                .get(source)
                .cloned()
                .unwrap_or_default();
            for candidate in [lexical.clone(), resolved].iter().chain(&aliases) {
                if allowed_entries.contains(candidate) {
                    continue;
                }
                if let Some(reason) = sensitive_reason(candidate, policy) {
                    return Err(Refusal::new(
                        RefusalRule::SensitiveHostMount,
                        format!(
                            "{} mount of {} at {}: {reason}",
                            if is_bind(m) { "bind" } else { "overlay" },
                            source.display(),
                            m.destination().display()
                        ),
                        Some("refusals.allow_host_mounts"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "host_paths_tests.rs"]
mod tests;
