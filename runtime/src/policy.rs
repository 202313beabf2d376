//! The operator's policy (`/etc/moat/policy.toml`) and the per-container
//! overlay from `moat.dev/…` annotations.
//!
//! The policy is a floor: a workload's annotations may tighten any key, but
//! may loosen only the keys the operator lists in `annotations.overridable`.
//! Everything here is pure: loading the file is the caller's job
//! ([`Policy::from_toml`] takes the text).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oci_spec::runtime::Capability;
use serde::{Deserialize, Serialize};

use crate::refusal::{Refusal, RefusalRule};

/// Where the operator policy lives unless `--policy`/`MOAT_POLICY` says otherwise.
pub const DEFAULT_POLICY_PATH: &str = "/etc/moat/policy.toml";

/// Prefix of the annotations a workload may use to tighten (or, where the
/// operator allows it, loosen) the policy for one container.
pub const ANNOTATION_PREFIX: &str = "moat.dev/";

/// The embedded default policy, identical to `configs/policy.toml`.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../../configs/policy.toml");

/// Capabilities a container may keep by default: enough for a process that
/// starts as root to drop to its own user, own its files and bind low ports.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub capabilities: CapabilityPolicy,
    pub filesystem: FilesystemPolicy,
    pub resources: ResourcePolicy,
    pub user_namespace: UserNamespacePolicy,
    pub refusals: RefusalPolicy,
    pub egress: EgressPolicy,
    pub annotations: AnnotationPolicy,
    pub learn: LearnPolicy,
    pub hooks: HooksPolicy,
    pub cgroups: CgroupsPolicy,
    pub volumes: VolumePolicy,
    pub namespaces: NamespacePolicy,
    pub seccomp: SeccompPolicy,
    pub engines: EnginePolicy,
}

/// OCI hooks (threat T21): refused unless their executable, resolved
/// through symlinks and `/proc/<pid>/exe`, is listed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksPolicy {
    /// Real paths of the executables a `prestart`, `createRuntime`,
    /// `poststart` or `poststop` hook may run (as host root).
    pub allow: Vec<String>,
    /// Executables of `allow` that may only run under these `args[0]`
    /// values. dockerd run as `libnetwork-setkey` only sets up a
    /// container's network; run under any other name it is a daemon
    /// taking the tenant's arguments.
    pub arg0: BTreeMap<String, Vec<String>>,
}

/// The capabilities docker grants a container by default (the request moat
/// is measured and tested against; moat cuts it to `capabilities.allow`).
pub const DOCKER_DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// dockerd's two usual homes (Debian's docker.io: /usr/sbin; Docker's own
/// packages: /usr/bin), allowed by default so docker's network hook works.
pub const DEFAULT_HOOK_EXECUTABLES: &[&str] = &["/usr/sbin/dockerd", "/usr/bin/dockerd"];

/// The only name dockerd's own hook runs under.
pub const DOCKERD_HOOK_ARG0: &str = "libnetwork-setkey";

impl Default for HooksPolicy {
    fn default() -> Self {
        Self {
            allow: DEFAULT_HOOK_EXECUTABLES
                .iter()
                .map(|p| p.to_string())
                .collect(),
            arg0: DEFAULT_HOOK_EXECUTABLES
                .iter()
                .map(|p| (p.to_string(), vec![DOCKERD_HOOK_ARG0.to_string()]))
                .collect(),
        }
    }
}

/// Where a container's cgroup may be (threat T22).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupsPolicy {
    /// Parents a `linux.cgroupsPath` must be strictly below: cgroupfs
    /// paths ("/docker") or systemd `slice:prefix` pairs
    /// ("system.slice:docker"; a slice also covers its sub-slices, so
    /// "kubepods.slice" covers "kubepods-burstable-pod1.slice").
    /// Engine parents: only for bundles an engine made (see
    /// `moat::engine_bundle`), and the leaf must be the container's own id.
    pub parents: Vec<String>,
    /// Parents for raw bundles (a tenant's own config.json and container
    /// id): an engine later reuses the names below its own parents
    /// (`/docker/<stopped id>`), so a tenant may not claim them (T22,
    /// red-team R4). Any leaf (moat names it, `<root tag>@<id>`); a bundle
    /// an engine made is refused below these (`docker run --cgroup-parent
    /// /moat` would share the raw tenants' level and its limits).
    pub raw_parents: Vec<String>,
}

/// moat's own tree: what a raw bundle's cgroupsPath may be below.
pub const DEFAULT_RAW_CGROUP_PARENTS: &[&str] = &["/moat"];

/// docker (cgroupfs and systemd drivers), containerd's default namespaces
/// (`/<namespace>/<id>`), kubelet (cgroupfs and systemd). Not moat's raw
/// parents: an engine's container is refused there (T22, red-team pass 7).
pub const DEFAULT_CGROUP_PARENTS: &[&str] = &[
    "/docker",
    "system.slice:docker",
    "/default",
    "/k8s.io",
    "/moby",
    "/kubepods",
    "kubepods.slice:cri-containerd",
];

impl Default for CgroupsPolicy {
    fn default() -> Self {
        Self {
            parents: DEFAULT_CGROUP_PARENTS
                .iter()
                .map(|p| p.to_string())
                .collect(),
            raw_parents: DEFAULT_RAW_CGROUP_PARENTS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        }
    }
}

/// Where engines provision volumes (T19). Patterns are absolute paths whose
/// components may hold `*`; a path matches when its leading components
/// match every component of a pattern (so it is the pattern's path or
/// below it). See [`path_matches`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumePolicy {
    /// Bind sources idmapped with the container's mapping (container root
    /// owns what host root owns there), and exempt from the sensitive-tree
    /// rule. Every other source is mounted unshifted: host root's files
    /// appear as nobody.
    pub idmap_under: Vec<String>,
    /// Filesystem types (the kernel's names, as in /proc/self/mountinfo:
    /// `nfs4`, `cifs`, `fuse.lxcfs`, `overlay`) a bind source may be besides
    /// local disk filesystems and size-capped tmpfs (T40). A network
    /// filesystem is mounted by the host, so the container's traffic to its
    /// server bypasses the egress rules; an overlay's layers are host
    /// directories moat cannot judge. Kernel and pseudo filesystems (proc,
    /// sysfs, cgroup, ...) and ramfs are refused whatever this lists.
    pub allow_fs_types: Vec<String>,
    /// Filesystem types a driver-mounted volume may be: a bind source
    /// whose filesystem (or the part of it holding the source) the host
    /// shows only at volume storage paths (`idmap_under`), because an
    /// engine or volume driver mounted it there for the volume alone (a
    /// docker `local` volume with `volume-opt=type=…,device=…`, a kubelet
    /// Secret's tmpfs). No host path shows what such a mount holds, so the
    /// path rules cannot judge it: a block device mounted so may be another
    /// tenant's disk, an unmounted host partition or the top level of a
    /// btrfs host's root (red-team R7-3). The types listed must also pass
    /// the filesystem rule (`allow_fs_types` for network and FUSE types);
    /// a tmpfs is also held to T5's caps.
    pub driver_mounted_fs_types: Vec<String>,
}

/// The filesystems a driver-mounted volume may be by default: a tmpfs (its
/// size and inodes are capped, T5) holds only what was written to it.
pub const DEFAULT_DRIVER_MOUNTED_FS_TYPES: &[&str] = &["tmpfs"];

/// Engine-provisioned volume storage and per-container files.
pub const DEFAULT_IDMAP_UNDER: &[&str] = &[
    "/var/lib/docker/volumes/*/_data",
    "/var/lib/docker/containers/*/hosts",
    "/var/lib/docker/containers/*/hostname",
    "/var/lib/docker/containers/*/resolv.conf",
    "/var/lib/docker/containers/*/mounts/shm",
    "/var/lib/kubelet/pods/*/volumes/*/*",
    "/var/lib/kubelet/pods/*/etc-hosts",
    "/var/lib/kubelet/pods/*/containers/*/*",
    "/var/lib/kubelet/pods/*/volume-subpaths/*/*/*",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/containers/*/volumes/*",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/*/hosts",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/*/hostname",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/*/resolv.conf",
    "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/*/shm",
];

impl Default for VolumePolicy {
    fn default() -> Self {
        Self {
            idmap_under: DEFAULT_IDMAP_UNDER.iter().map(|s| s.to_string()).collect(),
            allow_fs_types: Vec::new(),
            driver_mounted_fs_types: DEFAULT_DRIVER_MOUNTED_FS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl VolumePolicy {
    /// Is `real` (a real, absolute path) engine-provisioned volume storage?
    pub fn is_volume_storage(&self, real: &std::path::Path) -> bool {
        self.idmap_under.iter().any(|p| path_matches(p, real))
    }
}

/// Which namespaces a container may join by path besides the namespaces of
/// containers moat runs (T11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespacePolicy {
    /// Network namespace pins engines make for pods (a directory, then a
    /// `*` pattern for the file name).
    pub joinable_netns: Vec<String>,
    /// Whether a container may join the namespaces of ANY other container
    /// moat runs under the same root, and so become a member of its pod:
    /// its user namespace and id range (T10). Off (the default), only
    /// containers that consented at their own create are joinable: a CRI
    /// sandbox, a bundle an engine made (docker's and containerd's), or a
    /// spec annotated `moat.dev/joinable: "true"`.
    pub join_containers: bool,
}

/// Where engines pin the network namespaces they make for pods and
/// containers: CNI (containerd CRI) and docker.
pub const DEFAULT_JOINABLE_NETNS: &[&str] = &["/run/netns/cni-*", "/run/docker/netns/*"];

impl Default for NamespacePolicy {
    fn default() -> Self {
        Self {
            joinable_netns: DEFAULT_JOINABLE_NETNS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            join_containers: false,
        }
    }
}

/// Does `path` lie at or below `pattern` (absolute; `*` within a component
/// matches any run of characters)? Pure, lexical: callers pass real paths.
pub fn path_matches(pattern: &str, path: &std::path::Path) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let mut comps = path.components().filter_map(|c| match c {
        std::path::Component::Normal(s) => s.to_str(),
        _ => None,
    });
    !pat.is_empty()
        && pattern.starts_with('/')
        && pat.iter().all(|p| {
            comps
                .next()
                .is_some_and(|c| crate::path_syntax::glob_match(p, c))
        })
}

/// What a spec may ask of the syscall filter beyond moat's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeccompPolicy {
    /// Unix sockets a spec's `linux.seccomp.listenerPath` may name: moat
    /// (host root) connects there and hands over the container's notify fd.
    /// An entry ending in `/` allows any socket directly inside that
    /// directory. Empty: every listenerPath is refused.
    pub listener_paths: Vec<String>,
}

/// Learning seccomp profiles (`moat learn`, docs/seccomp.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnPolicy {
    /// Directory of the profiles learned for containers that carry the
    /// `moat.dev/learn` annotation. Empty: that annotation is refused.
    pub dir: String,
    /// Set by a container's `moat.dev/learn` annotation (never read from
    /// the file): the learned profile's name, or "true" for the container id.
    #[serde(skip)]
    pub requested: Option<String>,
}

impl Default for LearnPolicy {
    fn default() -> Self {
        Self {
            dir: DEFAULT_LEARN_DIR.into(),
            requested: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressPolicy {
    /// Block new outbound connections (except the allowlist). Turning this
    /// off is logged loudly for every container it applies to.
    pub enabled: bool,
    /// Destinations a container may still connect to:
    /// `CIDR [tcp|udp|icmp] [PORTS]`, e.g. "10.96.0.10/32 udp 53". DNS
    /// (ports 53, 853) and the metadata endpoints are reachable only
    /// through an entry naming their exact address.
    pub allow: Vec<String>,
    /// Metadata endpoints refused like the built-in ones
    /// (`moat::egress::METADATA_ENDPOINTS`) even under a wide entry.
    pub metadata: Vec<String>,
    /// Upstream resolvers (`ADDRESS[:PORT]`) moat's resolver forwards the
    /// names the allowlist's name entries permit to; needed by any name
    /// entry (`pypi.org tcp 443`).
    pub resolvers: Vec<String>,
    /// Bounds (seconds) on how long an answered address stays allowed:
    /// the record's TTL, clamped to these.
    pub name_ttl_min: u32,
    pub name_ttl_max: u32,
    /// `"PATTERN CIDR"`: names matching PATTERN may be answered with
    /// addresses in CIDR that are not globally reachable (private,
    /// loopback, link-local…); every other such answer is dropped (DNS
    /// rebinding, `moat::dns::answers`).
    pub private_answers: Vec<String>,
    /// Log every refused connection as an event (`moat events`), also for
    /// containers without name entries. A container with name entries is
    /// served by moat's resolver anyway and always gets them; one without
    /// is registered without waiting for the resolver (create writes a file
    /// and sends a message, delete sends one; measured +0.34 ms median per
    /// lone `moat run`, 30 interleaved pairs), so on by default. Refused
    /// connections are counted (`moat metrics`) either way.
    pub connection_events: bool,
    /// At most this many conntrack entries for new flows a container's
    /// network namespace may hold (flows past it are refused, counted in
    /// `blocked`): conntrack entries are kernel memory no memory cgroup is
    /// charged for (T18, red-team R8-4). Loopback is not tracked at all
    /// (except DNS, which the redirects need).
    pub max_tracked_connections: u32,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
            metadata: Vec::new(),
            resolvers: Vec::new(),
            name_ttl_min: crate::egress::DEFAULT_TTL_MIN,
            name_ttl_max: crate::egress::DEFAULT_TTL_MAX,
            private_answers: Vec::new(),
            connection_events: true,
            max_tracked_connections: crate::egress::DEFAULT_MAX_TRACKED,
        }
    }
}

/// `filesystem.max_mounts` by default: docker's and Kubernetes' specs carry
/// tens of mounts (defaults, volumes, a pod's projected files).
pub const DEFAULT_MAX_MOUNTS: u32 = 256;

/// `filesystem.pty_max` by default: a shell, `docker exec -t` or sshd
/// sessions take one pty each; twelve containers at the cap still leave
/// the kernel's shared pool (3072 by default) to nobody but them.
pub const DEFAULT_PTY_MAX: u32 = 256;

/// The engines' state roots where they are by default: docker's data-root
/// and exec-root, containerd's root and state, kubelet's root-dir.
pub const DEFAULT_DOCKER_ROOTS: &[&str] = &["/var/lib/docker", "/run/docker"];
pub const DEFAULT_CONTAINERD_ROOTS: &[&str] = &["/var/lib/containerd", "/run/containerd"];
pub const DEFAULT_KUBELET_ROOTS: &[&str] = &["/var/lib/kubelet"];

/// A container engine whose state moat protects and whose objects it
/// recognises (T11, T19, T5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Containerd,
    Kubelet,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Docker, Engine::Containerd, Engine::Kubelet];

    fn defaults(self) -> &'static [&'static str] {
        match self {
            Engine::Docker => DEFAULT_DOCKER_ROOTS,
            Engine::Containerd => DEFAULT_CONTAINERD_ROOTS,
            Engine::Kubelet => DEFAULT_KUBELET_ROOTS,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Engine::Docker => "docker_roots",
            Engine::Containerd => "containerd_roots",
            Engine::Kubelet => "kubelet_roots",
        }
    }
}

/// Where the engines keep their state besides their default places
/// (red-team R7-5): a host with docker's `data-root` on another disk
/// (`/data/docker`), containerd's `root`/`state` or kubelet's `--root-dir`
/// moved. The one source of truth for every engine-storage rule: each root
/// listed here (and each default) is an engine state tree no raw bind may
/// reach, its storage is only for the engine's own bundles, the
/// `volumes.idmap_under` patterns under a default root hold under it too,
/// and an engine's own objects (its per-container /dev/shm) are recognised
/// only below one of its roots. Entries add to the defaults, never replace
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnginePolicy {
    /// dockerd's `data-root` (and `exec-root`) beyond /var/lib/docker and
    /// /run/docker.
    pub docker_roots: Vec<String>,
    /// containerd's `root` and `state` beyond /var/lib/containerd and
    /// /run/containerd.
    pub containerd_roots: Vec<String>,
    /// kubelet's `--root-dir` beyond /var/lib/kubelet.
    pub kubelet_roots: Vec<String>,
}

impl EnginePolicy {
    fn extra(&self, engine: Engine) -> &[String] {
        match engine {
            Engine::Docker => &self.docker_roots,
            Engine::Containerd => &self.containerd_roots,
            Engine::Kubelet => &self.kubelet_roots,
        }
    }

    /// Every state root of `engine`: its defaults, then what the policy adds.
    pub fn roots(&self, engine: Engine) -> Vec<std::path::PathBuf> {
        engine
            .defaults()
            .iter()
            .map(std::path::PathBuf::from)
            .chain(self.extra(engine).iter().map(std::path::PathBuf::from))
            .collect()
    }

    /// Adds `root` to `engine`'s roots unless it is one already (a host
    /// fact, such as dockerd's `data-root`: only ever an addition).
    /// Returns whether it was added; the caller re-roots volume storage.
    pub fn add_root(&mut self, engine: Engine, root: &str) -> bool {
        let root = root.trim_end_matches('/');
        if !is_clean_absolute_path(root)
            || self
                .roots(engine)
                .iter()
                .any(|r| r == std::path::Path::new(root))
        {
            return false;
        }
        match engine {
            Engine::Docker => self.docker_roots.push(root.into()),
            Engine::Containerd => self.containerd_roots.push(root.into()),
            Engine::Kubelet => self.kubelet_roots.push(root.into()),
        }
        true
    }

    /// Every engine's state roots.
    pub fn all_roots(&self) -> Vec<std::path::PathBuf> {
        Engine::ALL.iter().flat_map(|e| self.roots(*e)).collect()
    }

    fn validate(&self) -> Result<(), PolicyError> {
        for engine in Engine::ALL {
            for root in self.extra(engine) {
                if !is_clean_absolute_path(root) {
                    return Err(PolicyError::EngineRoot(engine.key(), root.clone()));
                }
            }
        }
        Ok(())
    }

    /// `patterns` plus each pattern that lies under a default root of an
    /// engine, re-rooted under every root the policy adds for that engine
    /// (`/var/lib/docker/volumes/*/_data` → `/data/docker/volumes/*/_data`).
    pub fn rerooted(&self, patterns: &[String]) -> Vec<String> {
        let mut out = patterns.to_vec();
        for engine in Engine::ALL {
            for pattern in patterns {
                for default in engine.defaults() {
                    let Some(rest) = pattern
                        .strip_prefix(default)
                        .filter(|r| r.is_empty() || r.starts_with('/'))
                    else {
                        continue;
                    };
                    for root in self.extra(engine) {
                        let moved = format!("{}{rest}", root.trim_end_matches('/'));
                        if !out.contains(&moved) {
                            out.push(moved);
                        }
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapabilityPolicy {
    /// The most a container may hold, in every one of the five sets.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemPolicy {
    /// Writable scratch directories mounted as tmpfs over the read-only root.
    pub tmpfs: Vec<String>,
    /// Size of each of those tmpfs mounts, in tmpfs's `size=` syntax; also
    /// the cap of every other tmpfs of a container (/dev, /dev/shm, a spec's
    /// own), unless it asks for less.
    pub tmpfs_size: String,
    /// The most all of a container's tmpfs mounts may hold together.
    pub tmpfs_total: String,
    /// The most mounts a container's spec may have, each overlay layer
    /// counted as one more (threat T36, red-team R7-6): every bind is a
    /// mount in the host's mount namespace for the container's life, and
    /// the kernel allows 100 000 there (`fs.mount-max`) for the whole node.
    pub max_mounts: u32,
    /// The most ptys the container's devpts may hand out (its `max=`,
    /// red-team R8-2): every devpts but the host's draws from one pool of
    /// `kernel.pty.max - kernel.pty.reserve` (3072 by default), so one
    /// container holding them all broke every other container's terminals.
    pub pty_max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcePolicy {
    /// Upper bound on tasks in the container's cgroup (fork bombs).
    pub pids_limit: i64,
    /// The most CPU weight a container may ask for
    /// (`linux.resources.cpu.shares`, cgroup v1 `cpu.shares`, docker
    /// `--cpu-shares`; the same cap bounds cgroup v2 `cpu.weight` and
    /// `cpu.weight.nice`). 0: 1024 per online CPU of the host, the most
    /// kubelet ever sets (1024 per requested CPU, and a pod's request fits
    /// the node). A larger weight is cut to this (threat T8, weights).
    pub cpu_shares_max: u64,
    /// The most block-IO weight a container may ask for, on cgroup v1's
    /// scale 10..1000 (`linux.resources.blockIO` weight, leafWeight and
    /// per-device weights, docker `--blkio-weight`); cgroup v2's
    /// `io.weight`/`io.bfq.weight` (default 100) are bounded by a fifth of
    /// it. Default 500, the kernel's default weight: no container outweighs
    /// one that asked for nothing.
    pub blkio_weight_max: u16,
    /// Let a spec set `linux.resources.network` (net_cls `classID`, net_prio
    /// `priorities`): a class id is a host-wide label the host's tc and
    /// iptables rules act on, and the priorities name interfaces of the
    /// host's network namespace. Refused unless true.
    pub allow_network_classes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserNamespacePolicy {
    /// First host uid/gid of the pool that container ids are mapped into.
    pub host_id_base: u32,
    /// How many ids each container gets (container ids 0..size).
    pub range_size: u32,
    /// How many ranges the pool has, so how many containers at once.
    pub ranges: u32,
    /// Directory holding one lock file per allocated range. Shared by every
    /// `--root`, so that docker's and containerd's containers never overlap.
    pub pool_dir: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefusalPolicy {
    /// Accept privileged-shaped specs (all devices, CAP_SYS_ADMIN without
    /// masked paths). Capabilities are still cut to the allowlist.
    pub allow_privileged: bool,
    /// Namespace types a container may share with the host
    /// ("network", "pid", "ipc", "uts", "mount").
    pub allow_host_namespaces: Vec<String>,
    /// Host paths a bind mount may use even though they are sensitive.
    pub allow_host_mounts: Vec<String>,
    /// Extra device cgroup rules ("c 10:229 rwm") a spec may allow.
    pub allow_devices: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnnotationPolicy {
    /// Policy keys that `moat.dev/<key>` annotations may loosen.
    pub overridable: Vec<String>,
}

impl Default for CapabilityPolicy {
    fn default() -> Self {
        Self {
            allow: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl Default for FilesystemPolicy {
    fn default() -> Self {
        Self {
            tmpfs: vec!["/tmp".into(), "/run".into()],
            tmpfs_size: "64m".into(),
            tmpfs_total: "512m".into(),
            max_mounts: DEFAULT_MAX_MOUNTS,
            pty_max: DEFAULT_PTY_MAX,
        }
    }
}

impl Default for ResourcePolicy {
    fn default() -> Self {
        Self {
            pids_limit: 4096,
            cpu_shares_max: 0,
            blkio_weight_max: DEFAULT_BLKIO_WEIGHT,
            allow_network_classes: false,
        }
    }
}

impl Default for UserNamespacePolicy {
    fn default() -> Self {
        Self {
            host_id_base: 1 << 30,
            range_size: 65536,
            ranges: 4096,
            pool_dir: "/run/moat/id-pool".into(),
        }
    }
}

/// Errors in the operator's policy file. These are the operator's mistakes,
/// so they name the file's key.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not valid TOML or has an unknown key: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("policy key capabilities.allow: unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("policy key user_namespace: {0}")]
    IdRange(String),
    #[error("policy key filesystem.tmpfs: {0:?} is not an absolute path")]
    TmpfsPath(String),
    #[error("policy key filesystem.tmpfs_size: {0:?} is not a size like 64m")]
    TmpfsSize(String),
    #[error("policy key filesystem.tmpfs_total: {0:?} is not a size like 512m")]
    TmpfsTotal(String),
    #[error("policy key filesystem.max_mounts must be positive")]
    MaxMounts,
    #[error("policy key filesystem.pty_max must be positive")]
    PtyMax,
    #[error("policy key engines.{0}: {1:?} is not an absolute path other than / without . or .. components")]
    EngineRoot(&'static str, String),
    #[error("policy key seccomp.listener_paths: {0:?} is not an absolute path")]
    ListenerPath(String),
    #[error("policy key resources.pids_limit must be positive, got {0}")]
    PidsLimit(i64),
    #[error("policy key resources.cpu_shares_max must be 0 (1024 per CPU) or 2..=262144, got {0}")]
    CpuSharesMax(u64),
    #[error("policy key resources.blkio_weight_max must be 10..=1000, got {0}")]
    BlkioWeightMax(u16),
    #[error("policy key refusals.allow_host_namespaces: unknown namespace type {0:?}")]
    NamespaceType(String),
    #[error("policy section [egress]: {0}")]
    Egress(String),
    #[error("policy key annotations.overridable: {0:?} is not a key annotations can set")]
    OverridableKey(String),
    #[error("policy key learn.dir: {0:?} is not an absolute path (or empty)")]
    LearnDir(String),
    #[error("policy key hooks.allow: {0:?} is not an absolute path without . or .. components")]
    HookPath(String),
    #[error("policy key cgroups.parents (or raw_parents): {0:?} is neither a cgroup path like /docker nor a systemd slice:prefix like system.slice:docker")]
    CgroupParent(String),
}

/// Policy keys that a `moat.dev/<key>` annotation may set.
pub const ANNOTATION_KEYS: &[&str] = &[
    "capabilities.allow",
    "filesystem.tmpfs_size",
    "filesystem.max_mounts",
    "resources.pids_limit",
    "refusals.allow_privileged",
    "refusals.allow_host_namespaces",
    "refusals.allow_host_mounts",
    "refusals.allow_devices",
    "egress.enabled",
    "egress.allow",
    "egress.max_tracked_connections",
];

const NAMESPACE_TYPES: &[&str] = &["network", "pid", "ipc", "uts", "mount", "cgroup", "time"];

impl Policy {
    /// Parses and validates a policy file's text.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let mut policy: Policy = toml::from_str(text)?;
        policy.validate()?;
        // Engine storage at a moved root is volume storage as at the default
        // (one source of truth: engines.*_roots).
        policy.volumes.idmap_under = policy.engines.rerooted(&policy.volumes.idmap_under);
        Ok(policy)
    }

    /// Adds dockerd's `data-root` (from a daemon.json only host root can
    /// have written, see `crate::docker_config`) to the docker roots, with
    /// its volume storage, as if the policy listed it.
    pub fn with_docker_data_root(mut self, root: Option<&std::path::Path>) -> Self {
        let Some(root) = root.and_then(|r| r.to_str()) else {
            return self;
        };
        if self.engines.add_root(Engine::Docker, root) {
            self.volumes.idmap_under = self.engines.rerooted(&self.volumes.idmap_under);
        }
        self
    }

    /// The embedded default policy.
    pub fn embedded() -> Self {
        // The embedded file is tested in `embedded_policy_is_the_default`,
        // so a parse failure here is a build defect, not user input.
        Self::from_toml(DEFAULT_POLICY_TOML).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        for cap in &self.capabilities.allow {
            parse_capability(cap).ok_or_else(|| PolicyError::UnknownCapability(cap.clone()))?;
        }
        let ns = &self.user_namespace;
        if ns.range_size == 0 || ns.ranges == 0 {
            return Err(PolicyError::IdRange(
                "range_size and ranges must be positive".into(),
            ));
        }
        if ns.host_id_base == 0 {
            return Err(PolicyError::IdRange(
                "host_id_base 0 would map container root to host root".into(),
            ));
        }
        let end = u64::from(ns.host_id_base) + u64::from(ns.range_size) * u64::from(ns.ranges);
        if end > u64::from(u32::MAX) {
            return Err(PolicyError::IdRange(format!(
                "the pool ends at {end}, beyond the largest uid"
            )));
        }
        for path in &self.filesystem.tmpfs {
            if !path.starts_with('/') {
                return Err(PolicyError::TmpfsPath(path.clone()));
            }
        }
        parse_size(&self.filesystem.tmpfs_size)
            .ok_or_else(|| PolicyError::TmpfsSize(self.filesystem.tmpfs_size.clone()))?;
        parse_size(&self.filesystem.tmpfs_total)
            .ok_or_else(|| PolicyError::TmpfsTotal(self.filesystem.tmpfs_total.clone()))?;
        if self.filesystem.max_mounts == 0 {
            return Err(PolicyError::MaxMounts);
        }
        if self.filesystem.pty_max == 0 {
            return Err(PolicyError::PtyMax);
        }
        self.engines.validate()?;
        for path in &self.seccomp.listener_paths {
            if !path.starts_with('/') {
                return Err(PolicyError::ListenerPath(path.clone()));
            }
        }
        if self.resources.pids_limit <= 0 {
            return Err(PolicyError::PidsLimit(self.resources.pids_limit));
        }
        let shares = self.resources.cpu_shares_max;
        if shares != 0 && !(2..=MAX_CPU_SHARES).contains(&shares) {
            return Err(PolicyError::CpuSharesMax(shares));
        }
        if !(10..=1000).contains(&self.resources.blkio_weight_max) {
            return Err(PolicyError::BlkioWeightMax(self.resources.blkio_weight_max));
        }
        for t in &self.refusals.allow_host_namespaces {
            if !NAMESPACE_TYPES.contains(&t.as_str()) {
                return Err(PolicyError::NamespaceType(t.clone()));
            }
        }
        crate::egress::Egress::from_policy(&self.egress)
            .map_err(|e| PolicyError::Egress(e.to_string()))?;
        for key in &self.annotations.overridable {
            if !ANNOTATION_KEYS.contains(&key.as_str()) {
                return Err(PolicyError::OverridableKey(key.clone()));
            }
        }
        if !self.learn.dir.is_empty() && !self.learn.dir.starts_with('/') {
            return Err(PolicyError::LearnDir(self.learn.dir.clone()));
        }
        for path in &self.hooks.allow {
            if !is_clean_absolute_path(path) {
                return Err(PolicyError::HookPath(path.clone()));
            }
        }
        for parent in self.cgroups.parents.iter().chain(&self.cgroups.raw_parents) {
            if !is_cgroup_parent(parent) {
                return Err(PolicyError::CgroupParent(parent.clone()));
            }
        }
        Ok(())
    }

    /// The capability allowlist as typed values.
    pub fn allowed_capabilities(&self) -> BTreeSet<String> {
        self.capabilities
            .allow
            .iter()
            .filter_map(|c| parse_capability(c).map(|_| canonical_capability_name(c)))
            .collect()
    }

    fn is_overridable(&self, key: &str) -> bool {
        self.annotations.overridable.iter().any(|k| k == key)
    }

    /// Applies the `moat.dev/…` annotations of one container to this
    /// (operator) policy. Tightening is always allowed; loosening a key the
    /// operator has not marked overridable is refused, as is an unknown key
    /// (a typo must not silently leave a container looser than intended).
    /// Returns the effective policy and one line per key applied.
    pub fn with_annotations(
        &self,
        annotations: &HashMap<String, String>,
    ) -> Result<(Policy, Vec<AnnotationChange>), Refusal> {
        let mut effective = self.clone();
        let mut applied = Vec::new();
        // Sorted, so the report and the first refusal are deterministic.
        let sorted: BTreeMap<_, _> = annotations.iter().collect();
        for (name, value) in sorted {
            let Some(key) = moat_annotation_key(name)? else {
                continue;
            };
            if key == "learn" {
                // Not a loosening: learning allows nothing the container's
                // normal filter would not (docs/seccomp.md).
                effective.learn.requested = learn_annotation(name, value, &self.learn)?;
                continue;
            }
            if key == "joinable" {
                // Not a policy key: the container lets others join its
                // namespaces (its pod); read at its create
                // (moat::state::consents_to_joins), T10.
                if value != "true" && value != "false" {
                    return Err(Refusal::annotation(
                        name,
                        format!("{value:?} is neither \"true\" nor \"false\""),
                    ));
                }
                continue;
            }
            // The name the egress issue gave the allowlist annotation.
            let key = if key == "egress-allow" {
                "egress.allow"
            } else {
                key
            };
            let loosens = match key {
                "capabilities.allow" => {
                    let mut wanted = Vec::new();
                    for cap in split_list(value) {
                        if parse_capability(&cap).is_none() {
                            return Err(Refusal::annotation(
                                name,
                                format!("unknown capability {cap:?}"),
                            ));
                        }
                        wanted.push(canonical_capability_name(&cap));
                    }
                    let current = self.allowed_capabilities();
                    let loosens = wanted.iter().any(|c| !current.contains(c));
                    effective.capabilities.allow = wanted;
                    loosens
                }
                "filesystem.tmpfs_size" => {
                    let wanted = parse_size(value).ok_or_else(|| {
                        Refusal::annotation(name, format!("{value:?} is not a size like 64m"))
                    })?;
                    let current = parse_size(&self.filesystem.tmpfs_size).unwrap_or(0);
                    effective.filesystem.tmpfs_size = value.trim().to_string();
                    wanted > current
                }
                "filesystem.max_mounts" => {
                    let wanted = positive_u32_annotation(name, value)?;
                    effective.filesystem.max_mounts = wanted;
                    wanted > self.filesystem.max_mounts
                }
                "egress.max_tracked_connections" => {
                    let wanted = positive_u32_annotation(name, value)?;
                    effective.egress.max_tracked_connections = wanted;
                    wanted > self.egress.max_tracked_connections
                }
                "resources.pids_limit" => {
                    let wanted = positive_annotation(name, value)?;
                    effective.resources.pids_limit = wanted;
                    wanted > self.resources.pids_limit
                }
                "refusals.allow_privileged" => {
                    let wanted = parse_bool(value).ok_or_else(|| {
                        Refusal::annotation(name, format!("{value:?} is not true or false"))
                    })?;
                    effective.refusals.allow_privileged = wanted;
                    wanted && !self.refusals.allow_privileged
                }
                "refusals.allow_host_namespaces"
                | "refusals.allow_host_mounts"
                | "refusals.allow_devices" => {
                    let wanted = split_list(value);
                    let (current, slot) = match key {
                        "refusals.allow_host_namespaces" => (
                            &self.refusals.allow_host_namespaces,
                            &mut effective.refusals.allow_host_namespaces,
                        ),
                        "refusals.allow_host_mounts" => (
                            &self.refusals.allow_host_mounts,
                            &mut effective.refusals.allow_host_mounts,
                        ),
                        _ => (
                            &self.refusals.allow_devices,
                            &mut effective.refusals.allow_devices,
                        ),
                    };
                    let loosens = wanted.iter().any(|w| !current.contains(w));
                    *slot = wanted;
                    loosens
                }
                "egress.enabled" => {
                    let wanted = parse_bool(value).ok_or_else(|| {
                        Refusal::annotation(name, format!("{value:?} is not true or false"))
                    })?;
                    effective.egress.enabled = wanted;
                    !wanted && self.egress.enabled
                }
                "egress.allow" => {
                    // Entries are separated by ';' (an entry's ports use ',').
                    let wanted: Vec<String> = value
                        .split(';')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    let (parsed, names) = crate::dns::names::split_entries(&wanted)
                        .map_err(|e| Refusal::annotation(name, e.to_string()))?;
                    let current =
                        crate::egress::Egress::from_policy(&self.egress).unwrap_or_default();
                    // A name entry must lie within one of the operator's.
                    let loosens =
                        !crate::egress::narrows(&parsed, &current.allow, &current.metadata)
                            || !crate::dns::names::names_narrow(&names, &current.names);
                    effective.egress.allow = wanted;
                    loosens
                }
                _ => {
                    return Err(Refusal::annotation(
                        name,
                        format!(
                            "unknown moat annotation; known keys: {}",
                            ANNOTATION_KEYS.join(", ")
                        ),
                    ))
                }
            };
            if loosens && !self.is_overridable(key) {
                return Err(Refusal::loosening(name, key));
            }
            applied.push(AnnotationChange {
                key: key.to_string(),
                value: value.clone(),
                loosens,
            });
        }
        effective.validate().map_err(|e| Refusal {
            rule: RefusalRule::Annotation,
            detail: e.to_string(),
            key: None,
        })?;
        Ok((effective, applied))
    }
}

/// The positive whole number below 2^32 an annotation's value is.
fn positive_u32_annotation(name: &str, value: &str) -> Result<u32, Refusal> {
    u32::try_from(positive_annotation(name, value)?)
        .map_err(|_| Refusal::annotation(name, format!("{value:?} is too large")))
}

/// The positive whole number an annotation's value is.
fn positive_annotation(name: &str, value: &str) -> Result<i64, Refusal> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Refusal::annotation(name, format!("{value:?} is not a positive number")))
}

/// The policy key a `moat.dev/<key>` annotation names, or `None` for
/// another prefix. The prefix is compared case-insensitively, as domain
/// names are: `Moat.dev/…` or `MOAT.DEV/…` is a moat annotation spelled
/// wrongly, refused rather than ignored, so a mistyped tightening never
/// silently does nothing.
pub fn moat_annotation_key(name: &str) -> Result<Option<&str>, Refusal> {
    let Some(prefix) = name.get(..ANNOTATION_PREFIX.len()) else {
        return Ok(None);
    };
    if !prefix.eq_ignore_ascii_case(ANNOTATION_PREFIX) {
        return Ok(None);
    }
    if prefix != ANNOTATION_PREFIX {
        return Err(Refusal::annotation(
            name,
            format!("moat annotations are spelled {ANNOTATION_PREFIX}<key>, in lower case"),
        ));
    }
    Ok(Some(&name[ANNOTATION_PREFIX.len()..]))
}

/// Checks a `moat.dev/learn` value: "false" (no learning), "true" (name
/// the profile after the container) or a plain file name.
fn learn_annotation(
    name: &str,
    value: &str,
    policy: &LearnPolicy,
) -> Result<Option<String>, Refusal> {
    let value = value.trim();
    if parse_bool(value) == Some(false) {
        return Ok(None);
    }
    if policy.dir.is_empty() {
        return Err(Refusal::annotation(
            name,
            "learning seccomp profiles by annotation is turned off by the operator (policy key learn.dir is empty)".to_string(),
        ));
    }
    if parse_bool(value) == Some(true) || valid_profile_name(value) {
        return Ok(Some(value.to_string()));
    }
    Err(Refusal::annotation(
        name,
        format!("{value:?} is not true, false or a plain file name ([A-Za-z0-9_+.-], at most 128 characters, not starting with '.')"),
    ))
}

/// One annotation that changed the effective policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnotationChange {
    pub key: String,
    pub value: String,
    pub loosens: bool,
}

/// Parses "CAP_SYS_ADMIN", "sys_admin" or "SYS_ADMIN".
pub fn parse_capability(name: &str) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(canonical_capability_name(name))).ok()
}

/// "sys_admin" → "CAP_SYS_ADMIN".
pub fn canonical_capability_name(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// "CAP_SYS_ADMIN" for a typed capability.
pub fn capability_name(cap: &Capability) -> String {
    serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("CAP_{cap}"))
}

/// "/a/b": absolute, not "/", no empty, "." or ".." component, no NUL.
pub fn is_clean_absolute_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !path.contains('\0')
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A cgroupfs parent ("/docker") or a systemd "slice:prefix" pair.
fn is_cgroup_parent(parent: &str) -> bool {
    if parent.starts_with('/') {
        return is_clean_absolute_path(parent);
    }
    match parent.split_once(':') {
        Some((slice, prefix)) => {
            slice.ends_with(".slice")
                && [slice, prefix]
                    .iter()
                    .all(|s| !s.is_empty() && !s.contains(['/', ':', '\0']) && *s != "..")
        }
        None => false,
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses tmpfs sizes: "65536", "64k", "64m", "1g". Percentages are not
/// accepted: they scale with host memory, which a floor must not.
pub fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let (digits, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        c if c.is_ascii_digit() => (&v[..], 1),
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(mult).filter(|n| *n > 0)
}

/// The kernel's default (and docker's) cgroup v1 `cpu.shares`: one CPU's worth.
pub const CPU_SHARES_PER_CPU: u64 = 1024;

/// The largest cgroup v1 `cpu.shares` the kernel takes.
pub const MAX_CPU_SHARES: u64 = 262_144;

/// The kernel's default cgroup v1 `blkio.weight`.
pub const DEFAULT_BLKIO_WEIGHT: u16 = 500;

impl ResourcePolicy {
    /// The most `cpu.shares` a container gets on a host with `online_cpus`
    /// CPUs (`None`: unknown, counted as one).
    pub fn cpu_shares_cap(&self, online_cpus: Option<u32>) -> u64 {
        if self.cpu_shares_max != 0 {
            return self.cpu_shares_max;
        }
        (CPU_SHARES_PER_CPU * u64::from(online_cpus.unwrap_or(1).max(1))).min(MAX_CPU_SHARES)
    }
}

/// Directory for profiles learned through the `moat.dev/learn` annotation
/// unless the policy says otherwise.
pub const DEFAULT_LEARN_DIR: &str = "/var/lib/moat/learned";

/// Is `name` usable as a learned profile's file name (without `.json`)?
pub fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_policy_is_the_default() {
        let parsed = Policy::from_toml(DEFAULT_POLICY_TOML).expect("configs/policy.toml parses");
        assert_eq!(parsed, Policy::default());
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Policy::from_toml("").unwrap(), Policy::default());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Policy::from_toml("[capabilities]\nallowed = []\n").unwrap_err();
        assert!(err.to_string().contains("unknown"), "{err}");
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let err = Policy::from_toml("[capabilities]\nallow = [\"CAP_FLY\"]\n").unwrap_err();
        assert!(matches!(err, PolicyError::UnknownCapability(_)));
    }

    #[test]
    fn id_pool_must_fit_and_not_start_at_root() {
        // Review L6: an empty pool (no ranges, or ranges of no ids) is
        // refused with one line naming the key; nothing computes `size - 1`
        // of a policy range.
        for zero in ["range_size = 0", "ranges = 0"] {
            let err = Policy::from_toml(&format!("[user_namespace]\n{zero}\n")).unwrap_err();
            let line = err.to_string();
            assert!(
                line.contains("user_namespace") && line.contains("must be positive"),
                "{zero}: {line}"
            );
        }
        assert!(Policy::from_toml("[user_namespace]\nhost_id_base = 0\n").is_err());
        assert!(
            Policy::from_toml("[user_namespace]\nhost_id_base = 4294000000\nranges = 100\n")
                .is_err()
        );
    }

    #[test]
    fn bad_sizes_and_limits_are_errors() {
        assert!(Policy::from_toml("[filesystem]\ntmpfs_size = \"50%\"\n").is_err());
        assert!(Policy::from_toml("[filesystem]\ntmpfs = [\"tmp\"]\n").is_err());
        assert!(Policy::from_toml("[resources]\npids_limit = 0\n").is_err());
        assert!(Policy::from_toml("[refusals]\nallow_host_namespaces = [\"nett\"]\n").is_err());
        assert!(Policy::from_toml("[annotations]\noverridable = [\"seccomp\"]\n").is_err());
    }

    #[test]
    fn capability_names_are_normalised() {
        assert!(parse_capability("sys_admin").is_some());
        assert!(parse_capability("CAP_NET_RAW").is_some());
        assert!(parse_capability("CAP_NOPE").is_none());
        assert_eq!(canonical_capability_name("kill"), "CAP_KILL");
        assert_eq!(
            capability_name(&parse_capability("chown").unwrap()),
            "CAP_CHOWN"
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("m"), None);
        assert_eq!(parse_size("10%"), None);
        assert_eq!(parse_size("99999999999999999999g"), None);
    }

    #[test]
    fn annotations_may_tighten_without_permission() {
        let base = Policy::default();
        let (p, applied) = base
            .with_annotations(&ann(&[
                ("moat.dev/capabilities.allow", "CAP_KILL, chown"),
                ("moat.dev/resources.pids_limit", "100"),
                ("moat.dev/filesystem.tmpfs_size", "8m"),
                ("unrelated/annotation", "x"),
            ]))
            .unwrap();
        assert_eq!(p.capabilities.allow, vec!["CAP_KILL", "CAP_CHOWN"]);
        assert_eq!(p.resources.pids_limit, 100);
        assert_eq!(p.filesystem.tmpfs_size, "8m");
        assert_eq!(applied.len(), 3);
        assert!(applied.iter().all(|a| !a.loosens));
    }

    #[test]
    fn annotations_may_not_loosen_unless_overridable() {
        let base = Policy::default();
        for (k, v) in [
            ("moat.dev/capabilities.allow", "CAP_SYS_ADMIN"),
            ("moat.dev/resources.pids_limit", "100000"),
            ("moat.dev/filesystem.tmpfs_size", "10g"),
            ("moat.dev/refusals.allow_privileged", "true"),
            ("moat.dev/refusals.allow_host_namespaces", "network"),
            (
                "moat.dev/refusals.allow_host_mounts",
                "/var/run/docker.sock",
            ),
            ("moat.dev/refusals.allow_devices", "c 10:229 rwm"),
        ] {
            let err = base.with_annotations(&ann(&[(k, v)])).unwrap_err();
            let key = k.strip_prefix("moat.dev/").unwrap();
            assert_eq!(err.key.as_deref(), Some(key), "{k}");
            assert!(err.to_string().contains("annotations.overridable"), "{err}");
        }
    }

    #[test]
    fn overridable_keys_may_loosen() {
        let mut base = Policy::default();
        base.annotations.overridable = vec!["capabilities.allow".into()];
        let (p, applied) = base
            .with_annotations(&ann(&[("moat.dev/capabilities.allow", "CAP_NET_RAW")]))
            .unwrap();
        assert_eq!(p.capabilities.allow, vec!["CAP_NET_RAW"]);
        assert!(applied[0].loosens);
        // Other keys stay closed.
        assert!(base
            .with_annotations(&ann(&[("moat.dev/resources.pids_limit", "999999")]))
            .is_err());
    }

    #[test]
    fn unknown_and_malformed_annotations_are_refused() {
        let base = Policy::default();
        for (k, v) in [
            ("moat.dev/seccomp", "unconfined"),
            ("moat.dev/capabilities.allow", "CAP_FLY"),
            ("moat.dev/resources.pids_limit", "-1"),
            ("moat.dev/resources.pids_limit", "lots"),
            ("moat.dev/filesystem.tmpfs_size", "huge"),
            ("moat.dev/refusals.allow_privileged", "yes"),
        ] {
            assert!(base.with_annotations(&ann(&[(k, v)])).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn loosening_subset_of_operator_list_is_tightening() {
        let mut base = Policy::default();
        base.refusals.allow_host_mounts = vec!["/srv/a".into(), "/srv/b".into()];
        let (p, _) = base
            .with_annotations(&ann(&[("moat.dev/refusals.allow_host_mounts", "/srv/a")]))
            .unwrap();
        assert_eq!(p.refusals.allow_host_mounts, vec!["/srv/a"]);
    }
}

#[cfg(test)]
mod egress_annotation_tests {
    use super::*;

    fn ann(k: &str, v: &str) -> HashMap<String, String> {
        [(k.to_string(), v.to_string())].into_iter().collect()
    }

    #[test]
    fn egress_is_on_by_default() {
        assert!(Policy::default().egress.enabled);
        assert!(Policy::default().egress.allow.is_empty());
    }

    #[test]
    fn egress_allow_may_narrow_but_not_widen() {
        let mut p = Policy::default();
        p.egress.allow = vec!["10.0.0.0/8 tcp".into()];
        let (e, _) = p
            .with_annotations(&ann(
                "moat.dev/egress-allow",
                "10.1.0.0/16 tcp 443; 10.2.0.1 tcp 80",
            ))
            .unwrap();
        assert_eq!(
            e.egress.allow,
            vec!["10.1.0.0/16 tcp 443", "10.2.0.1 tcp 80"]
        );
        let err = p
            .with_annotations(&ann("moat.dev/egress.allow", "192.0.2.0/24"))
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("egress.allow"));
        p.annotations.overridable = vec!["egress.allow".into()];
        assert!(p
            .with_annotations(&ann("moat.dev/egress.allow", "192.0.2.0/24"))
            .is_ok());
    }

    #[test]
    fn egress_off_is_a_loosening() {
        let p = Policy::default();
        let err = p
            .with_annotations(&ann("moat.dev/egress.enabled", "false"))
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("egress.enabled"));
        assert!(p
            .with_annotations(&ann("moat.dev/egress.enabled", "true"))
            .is_ok());
    }

    #[test]
    fn bad_egress_entries_are_errors() {
        assert!(Policy::from_toml("[egress]\nallow = [\"10.0.0.1/8\"]\n").is_err());
        assert!(Policy::default()
            .with_annotations(&ann("moat.dev/egress.allow", "nonsense"))
            .is_err());
    }
}

#[cfg(test)]
mod learn_annotation_tests {
    use super::*;

    #[test]
    fn learn_annotation_takes_a_plain_name_and_never_loosens() {
        let p = Policy::embedded();
        let ann = |v: &str| {
            let mut a = HashMap::new();
            a.insert("moat.dev/learn".to_string(), v.to_string());
            p.with_annotations(&a)
        };
        let (eff, applied) = ann("web").unwrap();
        assert_eq!(eff.learn.requested.as_deref(), Some("web"));
        assert!(applied.is_empty());
        assert_eq!(
            ann("true").unwrap().0.learn.requested.as_deref(),
            Some("true")
        );
        assert_eq!(ann("false").unwrap().0.learn.requested, None);
        for bad in ["../x", "a/b", ".x", ""] {
            assert!(ann(bad).is_err(), "{bad:?}");
        }
        let mut off = Policy::embedded();
        off.learn.dir.clear();
        let mut a = HashMap::new();
        a.insert("moat.dev/learn".to_string(), "web".to_string());
        let e = off.with_annotations(&a).unwrap_err().to_string();
        assert!(e.contains("learn.dir is empty"), "{e}");
        assert!(Policy::from_toml("[learn]\ndir = \"rel\"\n").is_err());
        assert_eq!(Policy::embedded().learn.dir, "/var/lib/moat/learned");
    }

    #[test]
    fn max_mounts_annotation_may_only_tighten() {
        let p = Policy::embedded();
        assert_eq!(p.filesystem.max_mounts, DEFAULT_MAX_MOUNTS);
        let ann = |v: &str| {
            let mut a = HashMap::new();
            a.insert("moat.dev/filesystem.max_mounts".to_string(), v.to_string());
            p.with_annotations(&a)
        };
        assert_eq!(ann("32").unwrap().0.filesystem.max_mounts, 32);
        let e = ann("100000").unwrap_err();
        assert_eq!(e.rule, RefusalRule::AnnotationLoosensPolicy, "{e}");
        for bad in ["0", "-1", "many"] {
            assert!(ann(bad).is_err(), "{bad:?}");
        }
        assert!(Policy::from_toml("[filesystem]\nmax_mounts = 0\n").is_err());
    }

    #[test]
    fn max_tracked_connections_annotation_may_only_tighten() {
        let p = Policy::embedded();
        assert_eq!(
            p.egress.max_tracked_connections,
            crate::egress::DEFAULT_MAX_TRACKED
        );
        let ann = |v: &str| {
            let mut a = HashMap::new();
            a.insert(
                "moat.dev/egress.max_tracked_connections".to_string(),
                v.to_string(),
            );
            p.with_annotations(&a)
        };
        assert_eq!(ann("16").unwrap().0.egress.max_tracked_connections, 16);
        let e = ann("100000").unwrap_err();
        assert_eq!(e.rule, RefusalRule::AnnotationLoosensPolicy, "{e}");
        for bad in ["0", "-1", "many", "99999999999"] {
            assert!(ann(bad).is_err(), "{bad:?}");
        }
        assert!(Policy::from_toml("[egress]\nmax_tracked_connections = 0\n").is_err());
    }

    #[test]
    fn engine_roots_add_to_the_defaults_and_reroot_volume_storage() {
        let p = Policy::from_toml(
            "[engines]\ndocker_roots = [\"/data/docker\"]\nkubelet_roots = [\"/k\"]\n",
        )
        .unwrap();
        let roots = p.engines.all_roots();
        for r in ["/var/lib/docker", "/run/containerd", "/data/docker", "/k"] {
            assert!(roots.contains(&std::path::PathBuf::from(r)), "{r}");
        }
        let storage = |path: &str| p.volumes.is_volume_storage(std::path::Path::new(path));
        assert!(storage("/data/docker/volumes/v/_data"));
        assert!(storage("/data/docker/containers/c/resolv.conf"));
        assert!(storage("/k/pods/u/volumes/kubernetes.io~secret/s"));
        assert!(!storage("/data/docker/overlay2/l/diff"));
        // Not a prefix by characters: /var/lib/dockerx is no docker root.
        let q = EnginePolicy {
            docker_roots: vec!["/d".into()],
            ..Default::default()
        };
        assert_eq!(
            q.rerooted(&["/var/lib/dockerx/volumes/*".to_string()]),
            vec!["/var/lib/dockerx/volumes/*".to_string()]
        );
        // Loading twice (a saved, expanded policy) adds nothing.
        let again = p.engines.rerooted(&p.volumes.idmap_under);
        assert_eq!(again, p.volumes.idmap_under);
        for bad in ["rel", "/", "/a/../b", "/a/"] {
            let text = format!("[engines]\ncontainerd_roots = [{bad:?}]\n");
            assert!(Policy::from_toml(&text).is_err(), "{bad:?}");
        }
    }
}
