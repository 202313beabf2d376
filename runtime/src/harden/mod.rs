//! The hardening: a pure function `Spec × Policy × HostFacts → (Spec, Report)`
//! or a [`Refusal`]. No I/O happens here; whatever moat needs to know about
//! the host (the id range it allocated, which namespace paths are the
//! host's, where bind-mount sources really point) comes in as [`HostFacts`],
//! gathered by the caller.
//!
//! One file per concern, each with its unit tests beside it:
//! [`process`], [`userns`], [`namespaces`], [`host_paths`], [`mounts`],
//! [`devices`], [`seccomp`], [`resources`].

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::policy::Policy;
use crate::refusal::Refusal;
use crate::report::{Report, Rule};

mod bind_sources;
pub mod cgroups_path;
mod default_path;
mod devices;
pub mod fields;
pub mod hooks;
mod host_paths;
pub mod mount_count;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod root;
mod seccomp;
pub mod selinux_label;
mod userns;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

pub use bind_sources::{LOCAL_DISK_FILESYSTEMS, NETWORK_FILESYSTEMS};
pub use default_path::DEFAULT_PATH;
pub use devices::{device_rule_string, DEFAULT_DEVICE_NODES, DEFAULT_DEVICE_RULES};
pub use host_paths::{
    ENGINE_SOCKET_NAMES, ENGINE_STATE_TREES, SENSITIVE_HOST_PATHS, SENSITIVE_HOST_TREES,
};
pub use mounts::{KERNEL_FILESYSTEMS, MASKED_PATHS, READONLY_PATHS};
pub use namespaces::{namespace_name, REQUIRED_NAMESPACES};
pub use process::{
    clamp_process_oom_score_adj, harden_process, home_from_passwd, refuse_proc_cwd,
    refuse_rlimits_above_ceiling,
};
pub use resources::{
    cap_relative_weights, clamp_pids_limit, refuse_network_classes, refuse_unified, UnifiedCeilings,
};
pub use root::rootfs_may_be_idmapped;
pub use userns::{
    clamp_ping_group_range, engine_id_range, overlaps as userns_overlaps, UNPRIVILEGED_PORT_START,
};

/// The host uid/gid range a container's ids 0..size map onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub host_id: u32,
    pub size: u32,
}

/// One mounted filesystem a bind source shows: what the kernel says it is,
/// not what the spec or the engine calls it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountedFs {
    /// Where it is mounted on the host.
    pub mount_point: PathBuf,
    /// The kernel's name of its type (mountinfo: `ext4`, `tmpfs`,
    /// `fuse.sshfs`), or `unknown (f_type 0x…)` when its mount could not be
    /// found (judged as an unknown filesystem: refused).
    pub fs_type: String,
    /// The most it may hold, in bytes (`None`: no limit).
    pub size_bytes: Option<u64>,
    /// The most inodes it may hold (`None`: no limit).
    pub inodes: Option<u64>,
}

/// What the caller learned about the host for this spec.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The id range allocated to this container (`None` in `explain`, which
    /// allocates nothing; the first range of the pool is shown instead).
    pub id_range: Option<IdRange>,
    /// Namespace types whose `path` in the spec is the host's own namespace.
    pub host_namespace_paths: Vec<LinuxNamespaceType>,
    /// Bind-mount sources resolved through symlinks (source → real path).
    pub resolved_sources: HashMap<PathBuf, PathBuf>,
    /// The other host paths where each bind source's file is mounted too
    /// (source → aliases; see `moat::pinned::mount_aliases`): judged like
    /// the source itself.
    pub source_aliases: HashMap<PathBuf, Vec<PathBuf>>,
    /// Those of `source_aliases` only a narrower mount shows (a mount whose
    /// root is strictly below the root of the source's own mount; see
    /// `moat::pinned::MountView::partial`): no evidence of whose files
    /// they are, so the ownership rules skip them (review M3).
    pub source_partial_aliases: HashMap<PathBuf, Vec<PathBuf>>,
    /// How many host mounts lie below each bind source (source → count;
    /// `moat::pinned::MountView::submounts`): an `rbind` carries them all,
    /// each one more host mount (filesystem.max_mounts, review L4).
    pub source_submounts: HashMap<PathBuf, usize>,
    /// The mount point of every host mount that shows each bind source's
    /// file (source → mount points, its own mount's first; see
    /// `moat::pinned::MountView`): a source shown only at volume storage
    /// paths is a driver-mounted volume (red-team R7-3).
    pub source_mounted_at: HashMap<PathBuf, Vec<PathBuf>>,
    /// The filesystem each bind source really is (source as written → its
    /// own mount first, read from the fd moat mounts, then every mount
    /// below it, which a recursive bind carries along): judged by
    /// `bind_sources`, whatever the engine called the mount (R6-8, R6-3).
    pub source_filesystems: HashMap<PathBuf, Vec<MountedFs>>,
    /// The id of the container being created (`None` in `explain`): an
    /// engine's hook must name this container and no other.
    pub container_id: Option<String>,
    /// The id of the pod's owner (sandbox) container this one joined
    /// (`moat::pod`, found from the namespaces it joins, never from a name
    /// it gives); `None`: a container of its own.
    pub pod_owner: Option<String>,
    /// The image's `/etc/passwd` (read inside the rootfs; `None` when it has
    /// none or it is not a plain file), for HOME.
    pub image_passwd: Option<String>,
    /// Each hook path of the spec resolved to its real executable (`None`:
    /// unresolvable), see `moat::hook_exe`.
    pub hook_executables: HashMap<PathBuf, Option<PathBuf>>,
    /// Where a process lives in the cgroup the spec's cgroupsPath names,
    /// if anywhere (see `moat::cgroup_probe`).
    pub cgroup_occupant: Option<String>,
    /// The real path of the rootfs, read from the fd it was opened by
    /// (`None` when it could not be opened), so `root.path` is judged where
    /// it really points.
    pub rootfs_real: Option<PathBuf>,
    /// The user namespace of the pod the container joins, pinned by moat
    /// (`/proc/self/fd/N`, see `moat::pod`), or the one an engine made for
    /// the pod this sandbox starts (`moat::engine_userns`, its mapping read
    /// and judged): the container joins it and runs with its range
    /// (`id_range`). `None`: a user namespace of its own.
    pub pod_user_namespace: Option<PathBuf>,
    /// The user namespace moat made for this container (not a pod member,
    /// not an engine's), owned by its range's base host uid and mapped to
    /// `id_range` (`moat::rootfs::container_userns`, T8): the container
    /// joins it by this handle (`/proc/self/fd/N`) instead of libcontainer
    /// unsharing one as host root. `None`: libcontainer makes it (`explain`,
    /// the precheck before the range is chosen).
    pub own_user_namespace: Option<PathBuf>,
    /// moat's own `oom_score_adj` at create (`None`: unreadable): the
    /// lowest value the container's init can be given (T8).
    pub oom_score_adj_floor: Option<i32>,
    /// moat's own hard limit of each rlimit at create: the most a
    /// container's `process.rlimits` may ask (see
    /// `process::refuse_rlimits_above_ceiling`). Empty: not judged.
    pub rlimit_ceilings: Vec<(oci_spec::runtime::PosixRlimitType, u64)>,
    /// Who else uses the rootfs (or a directory above it) as its root, when
    /// `root.path` is outside the bundle: a live process outside this
    /// create, or another moat container (see `moat::facts::rootfs_users`).
    pub rootfs_in_use: Option<String>,
    /// The engine that made the bundle for this container id (see
    /// `moat::engine_bundle`): `None` for a raw bundle. Every rule that
    /// grants an engine's privileges (its per-container files, its volume
    /// storage, dockerd's setkey hook, its cgroup parents, a mapping it
    /// chose) asks this, never the tenant-written id or annotations.
    pub engine_bundle: Option<crate::engine_bundle::EngineBundle>,
    /// The host's online CPUs (`None`: unknown, counted as one): with
    /// `resources.cpu_shares_max = 0` a container's CPU weight is capped at
    /// 1024 per CPU.
    pub online_cpus: Option<u32>,
    /// The tag of the state root the container is created under
    /// (`moat::engine_bundle::state_root_tag`; `None` in `explain`): with
    /// the id, moat's own name for a raw tenant's container (its cgroup,
    /// its learned profiles' scope), never a name the tenant chose (R6-1).
    pub state_root_tag: Option<String>,
}

impl HostFacts {
    /// Who made the bundle: an engine, a raw tenant, or unknown (`explain`).
    pub fn origin(&self) -> crate::engine_bundle::Origin<'_> {
        crate::engine_bundle::Origin::of(self.container_id.as_deref(), self.engine_bundle.as_ref())
    }
}

/// The outcome of hardening a spec.
#[derive(Debug, Clone)]
pub struct Hardened {
    pub spec: Spec,
    pub report: Report,
    /// The operator policy with the container's annotations applied.
    pub policy: Policy,
}

/// Hardens a container spec. Refuses what cannot be made safe.
pub fn harden(spec: &Spec, operator: &Policy, facts: &HostFacts) -> Result<Hardened, Refusal> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let (mut policy, applied) = operator.with_annotations(&annotations)?;
    if let Some(requested) = &policy.learn.requested {
        // Scoped to the bundle's origin (R8): see crate::learn.
        policy.learn.requested = Some(crate::learn::scoped_profile_name(
            requested,
            facts.origin(),
            facts.container_id.as_deref(),
            facts.state_root_tag.as_deref(),
            &annotations,
        )?);
    }
    fields::refuse_unsupported_fields(spec)?;
    mount_count::refuse_too_many_mounts(spec, &policy, &facts.source_submounts)?;
    let mut report = Report::default();
    for a in &applied {
        report.change(
            Rule::Annotations,
            format!("policy.{}", a.key),
            "operator policy",
            a.value.clone(),
            if a.loosens {
                "annotation loosens an overridable key"
            } else {
                "annotation tightens the policy"
            },
        );
    }

    if let Some(process) = spec.process() {
        refuse_proc_cwd(process.cwd())?;
        process::refuse_rlimits_above_ceiling(process, &facts.rlimit_ceilings, "process")?;
    }
    devices::refuse_privileged(spec, &policy)?;
    namespaces::refuse_host_namespaces(spec, &policy, facts)?;
    mounts::refuse_smuggled_mount_options(spec)?;
    host_paths::refuse_sensitive_mounts(spec, &policy, facts)?;
    host_paths::refuse_other_pods_volumes(spec, &policy, facts)?;
    host_paths::refuse_other_containers_files(spec, &policy, facts)?;
    host_paths::refuse_other_engines_storage(spec, &policy, facts)?;
    bind_sources::refuse_bind_source_filesystems(spec, &policy, facts)?;
    bind_sources::refuse_driver_mounted_volumes(spec, &policy, facts)?;
    root::refuse_sensitive_root(spec, &policy, facts)?;
    root::refuse_rootfs_in_use(spec, facts)?;
    devices::refuse_devices(spec, &policy)?;
    hooks::check_hooks(spec, &policy.hooks, &facts.hook_executables)?;
    hooks::check_setkey_arguments(spec, facts.origin())?;
    cgroups_path::check_cgroups_path(
        spec,
        &policy.cgroups,
        facts.origin(),
        facts.cgroup_occupant.as_deref(),
    )?;
    mounts::refuse_misplaced_kernel_filesystems(spec)?;
    seccomp::refuse_oversized_profile(spec)?;
    seccomp::refuse_seccomp_listener(spec, &policy)?;
    resources::refuse_spec_network_classes(spec, &policy)?;
    selinux_label::refuse_malformed_selinux_labels(spec)?;

    let mut out = spec.clone();
    if let Some(process) = out.process().clone() {
        out.set_process(Some(harden_process(&process, &policy, &mut report)));
    }
    userns::engine_id_range(spec, &operator.user_namespace, facts.origin(), &[])?;
    userns::take_mount_id_mappings(&mut out, &policy, facts, &mut report)?;
    userns::add_user_namespace(&mut out, &policy, facts, &mut report);
    namespaces::add_cgroup_namespace(&mut out, &policy, &mut report);
    cgroups_path::place_raw_cgroup(
        &mut out,
        &policy.cgroups,
        facts.origin(),
        facts.state_root_tag.as_deref(),
        facts.container_id.as_deref(),
        &mut report,
    );
    crate::engine_bundle::record_origin(&mut out, facts.origin());
    namespaces::keep_joined_uts_names(&mut out, &mut report);
    userns::let_bind_service_open_low_ports(&mut out, facts, &mut report);
    seccomp::enforce_seccomp(&mut out, &mut report);
    seccomp::drop_unsafe_filter_flags(&mut out, &mut report);
    hooks::keep_allowed_hook_env(&mut out, &mut report);
    seccomp::refuse_orphan_listener(&out)?;
    mounts::make_root_readonly(&mut out, &mut report);
    mounts::harden_mounts(&mut out, &policy, &mut report);
    mounts::refuse_tmpfs_total(&out, &policy, facts)?;
    mounts::mask_paths(&mut out, &mut report);
    resources::limit_pids(&mut out, &policy, &mut report);
    resources::keep_oom_killer(&mut out, &mut report);
    resources::cap_spec_weights(&mut out, &policy, facts.online_cpus, &mut report);
    resources::refuse_spec_unified(&out, &policy, facts.online_cpus)?;
    process::set_home_without_name_service(&mut out, facts, &mut report);
    default_path::set_default_path(&mut out, &mut report);
    process::clamp_oom_score_adj(&mut out, facts, &mut report);
    // Egress rules live in the network namespace, not the spec: the edge
    // (netns.rs) installs them; the report says what they will be.
    report.notes.push(if policy.egress.enabled {
        if policy.egress.allow.is_empty() {
            "egress: every new outbound connection is refused (threat T18)".to_string()
        } else {
            format!(
                "egress: new outbound connections refused except to {} (threat T18)",
                policy.egress.allow.join("; ")
            )
        }
    } else {
        "egress: NOT blocked: the policy turns egress blocking off (egress.enabled = false)"
            .to_string()
    });
    Ok(Hardened {
        spec: out,
        report,
        policy,
    })
}

/// Removes `.` and `..` lexically, so `/var/run/../lib/docker` is seen as
/// `/var/lib/docker`. Symlinks are the caller's job ([`HostFacts`]).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// True for bind mounts: the only mounts whose source is a host path.
pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}
