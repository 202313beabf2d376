//! The rootfs: never the host's root, a sensitive host path, or a directory
//! that holds one (threat T11). With a user namespace the rootfs is
//! idmapped so that host uid 0 is container uid 0: `root.path: "/"` would
//! hand container root the host's /etc/shadow.

use std::path::Path;

use oci_spec::runtime::Spec;

use super::{normalize, HostFacts, SENSITIVE_HOST_PATHS, SENSITIVE_HOST_TREES};
use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};

/// Why `path` may not be a rootfs: it is `/`, a sensitive host path, an
/// ancestor of one, or inside a sensitive tree. Engines' own trees
/// (/var/lib/docker, /run/containerd) hold every image's rootfs, so only
/// they themselves and their ancestors are refused, not what is inside.
fn rootfs_reason(path: &Path) -> Option<String> {
    for s in SENSITIVE_HOST_PATHS.iter().map(Path::new) {
        if s == path {
            return Some(format!("{} is a sensitive host path", path.display()));
        }
        if s.starts_with(path) {
            return Some(format!(
                "{} contains the sensitive host path {}",
                path.display(),
                s.display()
            ));
        }
    }
    SENSITIVE_HOST_TREES
        .iter()
        .find(|t| path.starts_with(t))
        .map(|t| format!("{} is inside the host's {t}", path.display()))
}

/// Refuses a sensitive `root.path`, judged both as the spec writes it
/// (when absolute) and as the rootfs opened by fd really is
/// ([`HostFacts::rootfs_real`]), so a symlink to `/` is seen. An unknown
/// real path (nothing gathered, e.g. `explain` without the rootfs) refuses
/// only what the spec's own path shows.
pub(super) fn refuse_sensitive_root(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    let Some(root) = spec.root() else {
        return Ok(());
    };
    let written = root.path();
    let lexical = written.is_absolute().then(|| normalize(written));
    let allowed: Vec<_> = policy
        .refusals
        .allow_host_mounts
        .iter()
        .map(|a| normalize(Path::new(a)))
        .collect();
    for candidate in lexical.iter().chain(facts.rootfs_real.iter()) {
        let candidate = normalize(candidate);
        if allowed.contains(&candidate) {
            continue;
        }
        if let Some(reason) = rootfs_reason(&candidate) {
            return Err(Refusal::new(
                RefusalRule::SensitiveHostMount,
                format!("root.path {}: {reason}", written.display()),
                Some("refusals.allow_host_mounts"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
