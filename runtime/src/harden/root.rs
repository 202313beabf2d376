//! The rootfs: never the host's root, a sensitive host path, or a directory
//! that holds one (threat T11). With a user namespace the rootfs is
//! idmapped so that host uid 0 is container uid 0: `root.path: "/"` would
//! hand container root the host's /etc/shadow.

use std::path::Path;

use oci_spec::runtime::Spec;

use super::{normalize, HostFacts, SENSITIVE_HOST_PATHS, SENSITIVE_HOST_TREES};
use crate::policy::{Engine, EnginePolicy, Policy};
use crate::refusal::{Refusal, RefusalRule};

/// Why `path` may not be a rootfs: it is `/`, a sensitive host path, an
/// ancestor of one, or inside a sensitive tree. Engines' own trees
/// (every root of `engines.*_roots`: /var/lib/docker, /run/containerd and
/// the moved ones the operator lists) hold every image's rootfs, so only
/// they themselves and their ancestors are refused, not what is inside.
fn rootfs_reason(path: &Path, engines: &EnginePolicy) -> Option<String> {
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
    if let Some(t) = SENSITIVE_HOST_TREES.iter().find(|t| path.starts_with(t)) {
        return Some(format!("{} is inside the host's {t}", path.display()));
    }
    // Inside an engine's state tree only the rootfs an engine assembles for
    // a container: the rest there holds the engines' sockets (/run/docker,
    // /run/containerd/s), other containers' configs and shared image layers,
    // which an idmapped rootfs would hand to container root.
    let tree = engines
        .all_roots()
        .into_iter()
        .find(|t| path.starts_with(t))?;
    let assembled = engine_rootfs(engines);
    if assembled.iter().any(|p| matches_exactly(p, path)) {
        return None;
    }
    Some(format!(
        "{} is inside the engine state tree {} but not a container rootfs an engine assembles there ({})",
        path.display(),
        tree.display(),
        assembled.join(", ")
    ))
}

/// Where engines assemble a container's rootfs inside their state trees,
/// below each root of theirs ([`engine_rootfs`]): docker's overlay2 mount,
/// and containerd's task bundles (its CRI, `ctr`, and docker through
/// containerd).
pub const ENGINE_ROOTFS: &[(Engine, &str)] = &[
    (Engine::Docker, "overlay2/*/merged"),
    (
        Engine::Containerd,
        "io.containerd.runtime.v2.task/*/*/rootfs",
    ),
    (
        Engine::Containerd,
        "io.containerd.runtime.v1.linux/*/*/rootfs",
    ),
];

/// [`ENGINE_ROOTFS`] below every root of its engine the policy knows
/// (`engines.*_roots`, the defaults included): a docker data-root moved to
/// `/data/docker` assembles at `/data/docker/overlay2/*/merged` (red-team
/// pass 7: only the default roots were recognised here).
pub fn engine_rootfs(engines: &EnginePolicy) -> Vec<String> {
    ENGINE_ROOTFS
        .iter()
        .flat_map(|(engine, rest)| {
            engines.roots(*engine).into_iter().map(move |root| {
                format!(
                    "{}/{rest}",
                    root.display().to_string().trim_end_matches('/')
                )
            })
        })
        .collect()
}

/// May the rootfs at `rootfs_real` be idmapped (container root owning
/// host root's files there)? Only the tenant's own tree, inside the
/// bundle, or a rootfs an engine assembled ([`engine_rootfs`]). Any other
/// host directory a `root.path` names (`/root/x`, `/home/…`) is mounted
/// unshifted (T11, red-team R10): idmapped, container root read host
/// root's 0600 files there, and libcontainer created mount points in the
/// host's tree as host root. Unshifted, its files are only what any host
/// user may read, and nothing can be created in root's directories.
/// Both paths are real ones, read from the fds precheck opened.
pub fn rootfs_may_be_idmapped(
    rootfs_real: &Path,
    bundle_real: &Path,
    engines: &EnginePolicy,
) -> bool {
    let rootfs = normalize(rootfs_real);
    rootfs.starts_with(normalize(bundle_real))
        || engine_rootfs(engines)
            .iter()
            .any(|p| matches_exactly(p, &rootfs))
}

/// `path` has exactly the components of `pattern` (`*` within one).
fn matches_exactly(pattern: &str, path: &Path) -> bool {
    let want: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let have: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    want.len() == have.len()
        && want
            .iter()
            .zip(&have)
            .all(|(w, h)| crate::path_syntax::glob_match(w, h))
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
        if let Some(reason) = rootfs_reason(&candidate, &policy.engines) {
            return Err(Refusal::new(
                RefusalRule::SensitiveHostMount,
                format!("root.path {}: {reason}", written.display()),
                Some("refusals.allow_host_mounts"),
            ));
        }
    }
    Ok(())
}

/// Refuses a rootfs that is another container's (T11): a tenant writing
/// raw config names `/var/lib/docker/overlay2/<other>/merged` (a pattern
/// engines assemble, so [`refuse_sensitive_root`] lets it through), and the
/// idmapped rootfs would hand container root the other container's files.
/// The edge finds the users ([`HostFacts::rootfs_in_use`]); no override:
/// two containers never share a writable rootfs moat idmaps.
pub(super) fn refuse_rootfs_in_use(spec: &Spec, facts: &HostFacts) -> Result<(), Refusal> {
    let (Some(root), Some(user)) = (spec.root(), &facts.rootfs_in_use) else {
        return Ok(());
    };
    Err(Refusal::new(
        RefusalRule::SensitiveHostMount,
        format!(
            "root.path {} is in use: {user}; a rootfs outside the bundle may not be another container's",
            root.path().display()
        ),
        None,
    ))
}

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
