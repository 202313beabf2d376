//! Host paths a container may not reach: the sensitive-path list and the
//! refusal of bind and overlay mounts of them.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::{is_bind, normalize, HostFacts};
use crate::engine_bundle::{Origin, CRI_NAMESPACE, DOCKER_NAMESPACE};
use crate::policy::{Engine, Policy};
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

/// The engines' state trees at their default places. Every image's rootfs
/// comes from inside one (`/var/lib/docker/overlay2/<layer>/merged`), so a
/// rootfs may be there; a bind source may not:
/// `/var/lib/docker/containers/<other container>` holds another container's
/// config.v2.json. The only bind sources allowed inside are what the policy
/// lists as engine-provisioned volume storage and per-container files
/// (`volumes.idmap_under`: volumes, hosts, hostname, resolv.conf), which
/// engines hand containers from there (T11, T19). The bind rules judge
/// every root of `engines.*_roots` ([`crate::policy::EnginePolicy`]): these
/// defaults and the moved roots an operator lists (red-team R7-5).
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

/// Annotations that carry the pod's uid on every container of a pod:
/// containerd's CRI sets the first, CRI-O and dockershim the second.
pub const POD_UID_ANNOTATIONS: &[&str] =
    &["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"];

/// The component a `<dir>/*` pair of a `volumes.idmap_under` pattern that
/// `path` matches stands for (`dirs`: the names that may precede the `*`),
/// skipping patterns that hold a `<skip>/*` pair.
fn wildcard_after(
    path: &Path,
    policy: &Policy,
    dirs: &[&str],
    skip: Option<&str>,
) -> Option<String> {
    let comps: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    policy.volumes.idmap_under.iter().find_map(|pattern| {
        if !crate::policy::path_matches(pattern, path) {
            return None;
        }
        let pat: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
        let pair = |w: &[&str], dir: &str| w[0] == dir && w[1] == "*";
        if skip.is_some_and(|d| pat.windows(2).any(|w| pair(w, d))) {
            return None;
        }
        let at = pat
            .windows(2)
            .position(|w| dirs.iter().any(|d| pair(w, d)))?
            + 1;
        comps.get(at).cloned()
    })
}

/// The pod uid a volume path names (kubelet's `<pods>/<pod uid>/volumes/...`).
fn pod_uid_in(path: &Path, policy: &Policy) -> Option<String> {
    wildcard_after(path, policy, &["pods"], None)
}

/// How a host path a mount names was found: as the spec wrote it, as it
/// resolves (the real path of the fd moat opened), or as another place the
/// host shows the same files (a mount alias, [`HostFacts::source_aliases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    Written,
    Resolved,
    Alias,
    /// An alias only a narrower mount shows
    /// ([`HostFacts::source_partial_aliases`]): judged by the
    /// sensitive-path rule, never as evidence of whose storage it is.
    PartialAlias,
}

impl Seen {
    /// Whether a candidate says whose storage the files are: not a place
    /// where only a narrower mount (a tenant's bind volume of a directory
    /// above the source) re-exposes them (review M3).
    fn shows_owner(self) -> bool {
        self != Seen::PartialAlias
    }
}

/// One host path every host-path rule judges for a mount.
pub(super) struct Candidate<'a> {
    pub mount: &'a oci_spec::runtime::Mount,
    /// The path as the spec wrote it (bind source or overlay layer).
    pub source: PathBuf,
    /// The path judged (normalized).
    pub path: PathBuf,
    pub seen: Seen,
}

impl Candidate<'_> {
    /// The judged path for a message: an alias says that it is one.
    fn shown(&self) -> String {
        match self.seen {
            Seen::Alias | Seen::PartialAlias => format!(
                "{} (where the host mounts the same files)",
                self.path.display()
            ),
            _ => self.path.display().to_string(),
        }
    }

    fn what(&self) -> &'static str {
        if is_bind(self.mount) {
            "bind"
        } else {
            "overlay"
        }
    }
}

/// Every host path a mount names — a bind's source and each overlay layer
/// (lower, upper, work) — as written, as resolved (normalized), and at
/// every other place the host shows the same files (its mount aliases):
/// the one candidate set EVERY host-path rule judges. Overlay layers are
/// mounted by host root, so a layer reaches what a bind would (red-team
/// pass 4 F6: a kubelet Secret or a docker volume as a `lowerdir`); an
/// alias is what the bind really shows (red-team R7-2: a docker `local`
/// volume `o=bind,device=<another container's shm or another pod's
/// volume>` is a bind of `/var/lib/docker/volumes/<v>/_data` whose files
/// are the other tenant's): a rule that judged only the name passed it.
/// An alias only a narrower mount shows is [`Seen::PartialAlias`]: the
/// ownership rules skip it (review M3: a tenant's `o=bind,device=/srv`
/// volume is no claim on every other tenant's bind below `/srv`).
pub(super) fn host_path_candidates<'a>(
    spec: &'a Spec,
    facts: &'a HostFacts,
) -> impl Iterator<Item = Candidate<'a>> + 'a {
    spec.mounts()
        .as_ref()
        .into_iter()
        .flatten()
        .flat_map(|m| {
            let paths: Vec<PathBuf> = if is_bind(m) {
                m.source().iter().cloned().collect()
            } else if m.typ().as_deref() == Some("overlay") {
                crate::path_syntax::overlay_option_paths(m.options().as_deref().unwrap_or_default())
            } else {
                Vec::new()
            };
            paths.into_iter().map(move |p| (m, p))
        })
        .flat_map(move |(m, source)| {
            let resolved = facts
                .resolved_sources
                .get(&source)
                .map(|p| (normalize(p), Seen::Resolved));
            let partial = facts.source_partial_aliases.get(&source);
            let aliases = facts
                .source_aliases
                .get(&source)
                .into_iter()
                .flatten()
                .map(move |p| {
                    let seen = if partial.is_some_and(|v| v.contains(p)) {
                        Seen::PartialAlias
                    } else {
                        Seen::Alias
                    };
                    (normalize(p), seen)
                });
            std::iter::once((normalize(&source), Seen::Written))
                .chain(resolved)
                .chain(aliases)
                .map(move |(path, seen)| Candidate {
                    mount: m,
                    source: source.clone(),
                    path,
                    seen,
                })
        })
}

/// Refuses a bind of a kubelet pod volume (T19) unless the bundle is a
/// CRI container's, made by the engine for this id, and the volume is its
/// own pod's: kubelet lays a pod's volumes out as
/// `<pods>/<pod uid>/volumes/...`, which moat idmaps, so naming another
/// pod's uid there would hand container root that pod's data (secrets,
/// service-account tokens). The pod uid is taken from the spec's
/// annotations (all of them agreeing) only because the CRI wrote them: a
/// raw-config tenant writes annotations too, and gets no kubelet volume
/// (red-team R13). Judged on every candidate ([`host_path_candidates`]):
/// as written, as resolved and at every mount alias (red-team R7-2: a
/// docker volume binding a pod's volume is that pod's volume). So a
/// volume the host also mounts in another pod's directory (a persistent
/// volume two pods on the node use through separate mounts) is refused
/// for both: another pod's storage is never this one's.
pub(super) fn refuse_other_pods_volumes(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let claimed: Vec<(&str, &String)> = POD_UID_ANNOTATIONS
        .iter()
        .filter_map(|k| annotations.get(*k).map(|v| (*k, v)))
        .collect();
    let origin = facts.origin();
    for c in host_path_candidates(spec, facts).filter(|c| c.seen.shows_owner()) {
        let Some(uid) = pod_uid_in(&c.path, policy) else {
            continue;
        };
        let why = match origin {
            Origin::Raw => origin.describe(),
            Origin::Engine(b) if !b.is_cri() => {
                format!("{}, not the CRI's ({CRI_NAMESPACE})", origin.describe())
            }
            _ if claimed.is_empty() => format!(
                "the spec carries no pod uid ({})",
                POD_UID_ANNOTATIONS.join(", ")
            ),
            _ => match claimed.iter().find(|(_, v)| **v != uid) {
                Some((key, other)) => format!("the spec's {key} is {other}"),
                None => continue,
            },
        };
        return Err(Refusal::new(
            RefusalRule::SensitiveHostMount,
            format!(
                "{} mount of {} at {}: {} is a volume of pod {uid}, and {why}",
                c.what(),
                c.source.display(),
                c.mount.destination().display(),
                c.shown()
            ),
            None,
        ));
    }
    Ok(())
}

/// The container or sandbox id a per-container engine file names: for a
/// `volumes.idmap_under` pattern with a `containers/*` or `sandboxes/*`
/// pair (docker's `containers/<id>/resolv.conf`, containerd's CRI
/// `containers/<id>/volumes/...`, `sandboxes/<id>/hosts`) that `path`
/// matches, the component the `*` stands for.
fn engine_owner_in(path: &Path, policy: &Policy) -> Option<String> {
    // kubelet's `pods/<uid>/containers/<name>` is the pod uid rule's.
    wildcard_after(path, policy, &["containers", "sandboxes"], Some("pods"))
}

/// The CRI plugin's directory under each of containerd's roots.
const CRI_PLUGIN_DIR: &str = "io.containerd.grpc.v1.cri";

/// Which engine's storage a (normalized) host path is in: `Some(true)`
/// docker's (below a docker root: its volumes and per-container files are
/// for bundles docker made, containerd namespace `moby`), `Some(false)` the
/// CRI's and kubelet's (below a kubelet root or a containerd root's CRI
/// plugin directory: pod volumes and sandbox files, namespace `k8s.io`),
/// `None` neither. Every root of `engines.*_roots` counts.
fn storage_engine(path: &Path, policy: &Policy) -> Option<bool> {
    let engines = &policy.engines;
    if engines
        .roots(Engine::Docker)
        .iter()
        .any(|d| path.starts_with(d))
    {
        return Some(true);
    }
    let cri = engines.roots(Engine::Kubelet).into_iter().chain(
        engines
            .roots(Engine::Containerd)
            .into_iter()
            .map(|c| c.join(CRI_PLUGIN_DIR)),
    );
    cri.into_iter()
        .any(|d| path.starts_with(d))
        .then_some(false)
}

/// Refuses a bind of an engine's storage (its named volumes, pod volumes,
/// per-container files) from a bundle that engine did not make for this
/// id (T19, red-team R5): docker's `/var/lib/docker/...` only for docker's
/// bundles (namespace `moby`), the CRI's and kubelet's only for the CRI's
/// (`k8s.io`). Such storage is idmapped (container root owns what host root
/// owns there) and exempt from the engine-tree rule; a raw-config tenant is
/// none of the engine's users and gets none of it (docker volume names,
/// like `<project>_<name>`, are guessable). Other `volumes.idmap_under`
/// entries an operator lists are for every bundle. Judged on every
/// candidate: as written, as resolved and at every mount alias (a docker
/// volume binding the CRI's storage is the CRI's storage, red-team R7-2).
pub(super) fn refuse_other_engines_storage(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    let origin = facts.origin();
    if origin == Origin::Unknown {
        return Ok(());
    }
    for c in host_path_candidates(spec, facts).filter(|c| c.seen.shows_owner()) {
        {
            let Some(docker) = storage_engine(&c.path, policy) else {
                continue;
            };
            let mine = match origin {
                Origin::Engine(b) => b.is_docker() == docker && (b.is_docker() || b.is_cri()),
                _ => false,
            };
            if mine {
                continue;
            }
            let (engine, ns) = if docker {
                ("docker", DOCKER_NAMESPACE)
            } else {
                ("the CRI (kubelet)", CRI_NAMESPACE)
            };
            return Err(Refusal::new(
                RefusalRule::SensitiveHostMount,
                format!(
                    "{} mount of {} at {}: {} is {engine}'s storage, only for bundles {engine} made (containerd namespace {ns}), and this is {}",
                    c.what(),
                    c.source.display(),
                    c.mount.destination().display(),
                    c.shown(),
                    origin.describe()
                ),
                None,
            ));
        }
    }
    Ok(())
}

/// Refuses a bind of another container's per-container engine files (T19,
/// T11): `containers/<id>/{hosts,hostname,resolv.conf,mounts/shm}` and
/// `sandboxes/<id>/...` are idmapped, so naming another container's would
/// hand container root that container's files (its resolv.conf: its DNS).
/// The id must be the one the engine made the bundle for
/// ([`HostFacts::engine_bundle`], never the tenant-chosen create id: a raw
/// tenant naming itself after docker container V got V's resolv.conf,
/// red-team R3) or its pod owner's (found from the namespaces it joins:
/// docker's `--ipc container:X` hands the joiner X's shm, a CRI container
/// gets its sandbox's hosts and resolv.conf). Judged on every candidate:
/// as written, as resolved and at every mount alias (red-team R7-2: a
/// docker volume binding another container's `/dev/shm` is that shm).
pub(super) fn refuse_other_containers_files(
    spec: &Spec,
    policy: &Policy,
    facts: &HostFacts,
) -> Result<(), Refusal> {
    let origin = facts.origin();
    let own: Vec<&String> = match origin {
        Origin::Engine(b) => std::iter::once(&b.id)
            .chain(facts.pod_owner.iter())
            .collect(),
        _ => Vec::new(),
    };
    for c in host_path_candidates(spec, facts).filter(|c| c.seen.shows_owner()) {
        let Some(owner) = engine_owner_in(&c.path, policy) else {
            continue;
        };
        // explain (no container id) judges the spec alone.
        if origin == Origin::Unknown || own.contains(&&owner) {
            continue;
        }
        let whose = match origin {
            Origin::Engine(_) => "neither this container nor its pod's owner".to_string(),
            _ => format!("and this is {}", origin.describe()),
        };
        return Err(Refusal::new(
            RefusalRule::SensitiveHostMount,
            format!(
                "{} mount of {} at {}: {} belongs to container {owner}, {whose}",
                c.what(),
                c.source.display(),
                c.mount.destination().display(),
                c.shown()
            ),
            None,
        ));
    }
    Ok(())
}

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
    for root in policy.engines.all_roots() {
        if source != root && root.starts_with(source) {
            return Some(format!(
                "{} contains the engine state tree {}",
                source.display(),
                root.display()
            ));
        }
        if source.starts_with(&root) && !policy.volumes.is_volume_storage(source) {
            return Some(format!(
                "{} is inside the engine state tree {} and not volume storage (volumes.idmap_under)",
                source.display(),
                root.display()
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

/// Refuses a bind or overlay layer that is, contains or lies inside a
/// sensitive host path (T11), judged on every candidate: as written (an
/// allowance for /srv/ok does not extend to wherever a symlink there
/// points), as resolved, and wherever the host shows the same files (a
/// docker volume that binds /etc, T29). An operator allowing the docker
/// socket lists both /var/run/docker.sock and /run/docker.sock.
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
    for c in host_path_candidates(spec, facts) {
        if allowed_entries.contains(&c.path) {
            continue;
        }
        if let Some(reason) = sensitive_reason(&c.path, policy) {
            return Err(Refusal::new(
                RefusalRule::SensitiveHostMount,
                format!(
                    "{} mount of {} at {}: {reason}",
                    c.what(),
                    c.source.display(),
                    c.mount.destination().display()
                ),
                Some("refusals.allow_host_mounts"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "host_paths_tests.rs"]
mod tests;
