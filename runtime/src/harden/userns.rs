//! The user namespace: container ids map to a host range of the pool, and
//! what depends on that mapping (ping_group_range, unprivileged low ports).

use oci_spec::runtime::{
    Capability, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Spec,
};

use super::{HostFacts, IdRange};
use crate::engine_bundle::Origin;
use crate::policy::{Policy, UserNamespacePolicy};
use crate::refusal::{Refusal, RefusalRule};
use crate::report::{Report, Rule};

fn refuse_mapping(detail: String) -> Refusal {
    Refusal::new(RefusalRule::UserNamespaceMapping, detail, None)
}

/// The host range of a mapping the engine already put in the spec
/// (containerd 2 for a `hostUsers: false` pod, whose kubelet chose it),
/// if the spec asks for a user namespace and carries uid and gid mappings.
///
/// moat keeps such a mapping instead of giving its own range, so the ids
/// the kubelet chose (and the idmapped volumes it asked for) stay right,
/// but only if it is as safe as a range of moat's pool (T3): one range
/// from container id 0, the same for uids and gids (libcontainer writes a
/// single range itself), no host id below the pool's first
/// (`user_namespace.host_id_base`, so never host root or a host user), and
/// no overlap with a range another container holds (`held`, gathered at
/// the edge from the pool; `moat::idpool` checks it again when it claims).
///
/// And only from a bundle an engine made (`origin`, red-team R7): a raw
/// tenant's "given" mapping is the tenant's own choice. No larger than the
/// pool's `range_size` and starting at a slot of the pool (kubelet gives
/// 65536-id ranges at multiples of 65536): one container cannot hold many
/// slots, or every id above the pool, and starve every other create.
pub fn engine_id_range(
    spec: &Spec,
    policy: &UserNamespacePolicy,
    origin: Origin,
    held: &[IdRange],
) -> Result<Option<IdRange>, Refusal> {
    let Some(linux) = spec.linux() else {
        return Ok(None);
    };
    let asks_user_namespace = linux
        .namespaces()
        .as_ref()
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    let given = |m: &Option<Vec<LinuxIdMapping>>| m.as_ref().is_some_and(|v| !v.is_empty());
    if !asks_user_namespace || !(given(linux.uid_mappings()) || given(linux.gid_mappings())) {
        return Ok(None);
    }
    let (uids, gids) = (linux.uid_mappings(), linux.gid_mappings());
    if !origin.engine_or_unknown() {
        return Err(refuse_mapping(format!(
            "linux.uidMappings {} and linux.gidMappings {}: moat keeps a given mapping only in a bundle an engine made for this container, and this is {}; leave the mappings out and moat maps the ids to a range of its pool",
            mapping_text(uids),
            mapping_text(gids),
            origin.describe()
        )));
    }
    let one = match (uids.as_deref(), gids.as_deref()) {
        (Some([u]), Some([g]))
            if u == g && u.container_id() == 0 && u.size() > 0 =>
        {
            *u
        }
        _ => {
            return Err(refuse_mapping(format!(
                "linux.uidMappings {} and linux.gidMappings {}: moat keeps an engine's mapping only as one range from container id 0, the same for uids and gids",
                mapping_text(uids),
                mapping_text(gids)
            )))
        }
    };
    let range = IdRange {
        host_id: one.host_id(),
        size: one.size(),
    };
    let last = u64::from(range.host_id) + u64::from(range.size) - 1;
    if range.host_id < policy.host_id_base || last > u64::from(u32::MAX) {
        return Err(refuse_mapping(format!(
            "linux.uidMappings maps container ids to host ids {}-{last}, outside moat's ids (from user_namespace.host_id_base {})",
            range.host_id, policy.host_id_base
        )));
    }
    let slot = u64::from(range.host_id) - u64::from(policy.host_id_base);
    let slot_size = u64::from(policy.range_size.max(1));
    if range.size > policy.range_size
        || slot % slot_size != 0
        || slot / slot_size >= u64::from(policy.ranges)
    {
        return Err(refuse_mapping(format!(
            "linux.uidMappings maps container ids to host ids {}-{last}: moat keeps a given mapping only as one slot of its pool, at most user_namespace.range_size ({}) ids from host id {} plus a multiple of it, below {}",
            range.host_id,
            policy.range_size,
            policy.host_id_base,
            u64::from(policy.host_id_base) + u64::from(policy.ranges) * slot_size
        )));
    }
    if let Some(other) = held.iter().find(|h| overlaps(**h, range)) {
        return Err(refuse_mapping(format!(
            "linux.uidMappings maps container ids to host ids {}-{last}, which overlap host ids {}-{} another container holds",
            range.host_id,
            other.host_id,
            u64::from(other.host_id) + u64::from(other.size) - 1
        )));
    }
    Ok(Some(range))
}

/// Do two host ranges share an id?
pub fn overlaps(a: IdRange, b: IdRange) -> bool {
    let end = |r: IdRange| u64::from(r.host_id) + u64::from(r.size);
    u64::from(a.host_id) < end(b) && u64::from(b.host_id) < end(a)
}

fn mapping_text(m: &Option<Vec<LinuxIdMapping>>) -> String {
    match m {
        None => "none".into(),
        Some(v) if v.is_empty() => "none".into(),
        Some(v) => v
            .iter()
            .map(|m| format!("{}:{}:{}", m.container_id(), m.host_id(), m.size()))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The range the container runs with: create's (`facts.id_range`), else an
/// engine's own mapping that passed [`engine_id_range`] (`explain` shows it
/// rather than the pool's), else the pool's first.
fn container_range(spec: &Spec, policy: &Policy, facts: &HostFacts) -> IdRange {
    // An engine's own mapping that passed `engine_id_range` is kept (create
    // puts it in `id_range` too); `explain` shows it rather than the pool's.
    let engine = engine_id_range(spec, &policy.user_namespace, facts.origin(), &[])
        .ok()
        .flatten();
    facts.id_range.or(engine).unwrap_or(IdRange {
        host_id: policy.user_namespace.host_id_base,
        size: policy.user_namespace.range_size,
    })
}

/// Idmapped mounts an engine asks for (`mounts[].uidMappings` and
/// `gidMappings`, or the `idmap`/`ridmap` options: containerd 2 for every
/// bind mount of a `hostUsers: false` pod, with the pod's mapping). moat
/// makes its idmapped mounts itself (libcontainer 0.7 refuses them), with
/// the container's own mapping and only for engine-provisioned volume
/// storage (`moat::staging`, T19): so a mount mapping is accepted only when
/// it is exactly the container's own (one range from container id 0 onto
/// the container's host range, for uids and gids), which asks for nothing
/// moat would not do anyway, and is then taken out of the spec. Any other
/// mapping could show a tenant's files as another container's, or host
/// root's as its own: refused.
pub(super) fn take_mount_id_mappings(
    spec: &mut Spec,
    policy: &Policy,
    facts: &HostFacts,
    report: &mut Report,
) -> Result<(), Refusal> {
    let Some(mut mounts) = spec.mounts().clone() else {
        return Ok(());
    };
    let range = container_range(spec, policy, facts);
    let own = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(range.host_id)
        .size(range.size)
        .build()
        .unwrap_or_default();
    let mut changed = false;
    for m in mounts.iter_mut() {
        let idmap_option = |o: &String| o == "idmap" || o == "ridmap";
        let has_option = m
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(idmap_option));
        let given = |v: &Option<Vec<LinuxIdMapping>>| v.as_ref().is_some_and(|v| !v.is_empty());
        if !given(m.uid_mappings()) && !given(m.gid_mappings()) && !has_option {
            continue;
        }
        let (uids, gids) = (m.uid_mappings().clone(), m.gid_mappings().clone());
        for (field, v) in [("uidMappings", &uids), ("gidMappings", &gids)] {
            if v.as_deref() != Some(std::slice::from_ref(&own)) {
                return Err(refuse_mapping(format!(
                    "mount {} asks for {field} {}, not the container's own mapping {}: moat idmaps volumes only with the container's own range",
                    m.destination().display(),
                    mapping_text(v),
                    mapping_text(&Some(vec![own]))
                )));
            }
        }
        m.set_uid_mappings(None);
        m.set_gid_mappings(None);
        if has_option {
            let kept: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !idmap_option(o))
                .collect();
            m.set_options(Some(kept));
        }
        report.change(
            Rule::UserNamespace,
            format!("mounts[{}].uidMappings", m.destination().display()),
            mapping_text(&uids),
            "moat's own idmapping",
            "the container's own mapping: moat idmaps engine-provisioned volume storage with it (volumes.idmap_under); other sources keep their host owners (T19)",
        );
        changed = true;
    }
    if changed {
        spec.set_mounts(Some(mounts));
    }
    Ok(())
}

pub(super) fn add_user_namespace(
    spec: &mut Spec,
    policy: &Policy,
    facts: &HostFacts,
    report: &mut Report,
) {
    let range = container_range(spec, policy, facts);
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    if let Some(pod) = &facts.pod_user_namespace {
        // A member of a pod joins the pod's user namespace (which owns the
        // pod's pid, ipc and uts namespaces, so it can mount /proc there)
        // through the descriptor moat pinned, never a path the spec names.
        let before = join_user_namespace(&mut namespaces, pod);
        report.change(
            Rule::UserNamespace,
            "linux.namespaces",
            before,
            "the pod's user namespace",
            "containers of a pod share its user namespace and id range, which own its pid, ipc and uts namespaces",
        );
    } else if let Some(own) = &facts.own_user_namespace {
        // moat made the container's user namespace itself, owned by the
        // range's base host uid, so the kernel charges the container's
        // per-user counters to that uid, not to host root (T8).
        let before = join_user_namespace(&mut namespaces, own);
        report.change(
            Rule::UserNamespace,
            "linux.namespaces",
            before,
            "a new user namespace owned by the range's host uid",
            "container root must not be host root, and the container's kernel counters (inotify, mqueue, signals) are charged to its own host uid, not host root's",
        );
    } else if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User)
    {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(LinuxNamespaceType::User);
        namespaces.push(ns);
        report.change(
            Rule::UserNamespace,
            "linux.namespaces",
            "no user namespace",
            "new user namespace",
            "container root must not be host root",
        );
    }
    linux.set_namespaces(Some(namespaces));
    let mapping = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(range.host_id)
        .size(range.size)
        .build()
        .unwrap_or_default();
    // One range only: libcontainer writes a single range itself, and needs
    // the setuid newuidmap helper for more.
    let wanted = Some(vec![mapping]);
    for (field, current) in [
        ("linux.uidMappings", linux.uid_mappings().clone()),
        ("linux.gidMappings", linux.gid_mappings().clone()),
    ] {
        if current != wanted {
            report.change(
                Rule::UserNamespace,
                field,
                mapping_text(&current),
                mapping_text(&wanted),
                if facts.pod_user_namespace.is_some() {
                    "ids map to the pod's host range, which no other pod uses"
                } else if facts.id_range.is_some() {
                    "ids map to a host range no other container uses"
                } else {
                    "ids map to a free host range of the pool, chosen at create"
                },
            );
        }
    }
    linux.set_uid_mappings(wanted.clone());
    linux.set_gid_mappings(wanted);
    // ping_group_range names gids, which must exist in the user namespace:
    // docker asks for "0 2147483647", which the kernel rejects (EINVAL)
    // once only `range.size` gids are mapped. Clamp it to the mapped gids.
    if let Some(mut sysctl) = linux.sysctl().clone() {
        if let Some(value) = sysctl.get("net.ipv4.ping_group_range").cloned() {
            let clamped = clamp_ping_group_range(&value, range.size);
            if clamped != value {
                report.change(
                    Rule::UserNamespace,
                    "linux.sysctl[net.ipv4.ping_group_range]",
                    value,
                    clamped.clone(),
                    "only the container's mapped gids exist in its user namespace",
                );
                sysctl.insert("net.ipv4.ping_group_range".into(), clamped);
                linux.set_sysctl(Some(sysctl));
            }
        }
    }
    spec.set_linux(Some(linux));
}

/// The sysctl that makes ports below it privileged, per network namespace.
pub const UNPRIVILEGED_PORT_START: &str = "net.ipv4.ip_unprivileged_port_start";

/// The annotation containerd's CRI plugin puts on a pod's sandbox
/// container (the first in the pod's network namespace).
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// CAP_NET_BIND_SERVICE, which moat's allowlist keeps, acts only in the
/// user namespace that owns the network namespace; the container's network
/// namespace belongs to the host's (moat makes it, or CNI does, before the
/// container's user namespace exists), so container root could not bind
/// port 80. When the container keeps the capability and sets nothing
/// itself, moat makes every port unprivileged in the network namespace the
/// container is the first in, as docker does for its containers: one moat
/// creates (no path), or a pod's (its sandbox container). Containers that
/// join a namespace later (a pod's other containers, docker's
/// `--network container:X`) leave it as its first container set it, so a
/// pod's own sysctl is never overwritten; the host's namespace is never
/// touched. A container that dropped the capability is left as it asked.
pub(super) fn let_bind_service_open_low_ports(
    spec: &mut Spec,
    facts: &HostFacts,
    report: &mut Report,
) {
    let keeps_capability = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&Capability::NetBindService));
    // The CRI's annotation counts only in a bundle an engine made: a raw
    // tenant that joins a namespace writes it too.
    let is_pod_sandbox = facts.origin().engine_or_unknown()
        && spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(CRI_CONTAINER_TYPE))
            .is_some_and(|t| t == "sandbox");
    let mut linux = spec.linux().clone().unwrap_or_default();
    let first_in_netns = linux
        .namespaces()
        .as_ref()
        .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network))
        .is_some_and(|n| n.path().is_none() || is_pod_sandbox)
        && !facts
            .host_namespace_paths
            .contains(&LinuxNamespaceType::Network);
    let mut sysctl = linux.sysctl().clone().unwrap_or_default();
    if !keeps_capability || !first_in_netns || sysctl.contains_key(UNPRIVILEGED_PORT_START) {
        return;
    }
    sysctl.insert(UNPRIVILEGED_PORT_START.into(), "0".into());
    report.change(
        Rule::UserNamespace,
        format!("linux.sysctl[{UNPRIVILEGED_PORT_START}]"),
        "(unset)",
        "0",
        "CAP_NET_BIND_SERVICE cannot act in a network namespace the host's user namespace owns; every port of the container's own namespace is unprivileged instead (as docker sets it)",
    );
    linux.set_sysctl(Some(sysctl));
    spec.set_linux(Some(linux));
}

/// "0 2147483647" with 65536 mapped gids → "0 65535".
pub fn clamp_ping_group_range(value: &str, mapped: u32) -> String {
    let max = u64::from(mapped.saturating_sub(1));
    let mut it = value.split_whitespace().map(|v| v.parse::<u64>());
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => {
            let hi = hi.min(max);
            let lo = lo.min(hi);
            format!("{lo} {hi}")
        }
        _ => "1 0".to_string(), // unparseable: the kernel's "nobody may" value
    }
}

/// Replaces the spec's user namespace entry (if any) by one joining the
/// namespace at `handle` (a descriptor moat holds); what the spec had, in
/// words, for the report.
fn join_user_namespace(namespaces: &mut Vec<LinuxNamespace>, handle: &std::path::Path) -> String {
    let before = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
        .map(|n| match n.path() {
            Some(p) => p.display().to_string(),
            None => "new user namespace".into(),
        })
        .unwrap_or_else(|| "no user namespace".into());
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::User);
    let mut ns = LinuxNamespace::default();
    ns.set_typ(LinuxNamespaceType::User);
    ns.set_path(Some(handle.to_path_buf()));
    namespaces.push(ns);
    before
}

#[cfg(test)]
#[path = "userns_tests.rs"]
mod tests;
