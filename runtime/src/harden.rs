//! The hardening: a pure function `Spec × Policy × HostFacts → (Spec, Report)`
//! or a [`Refusal`]. No I/O happens here; whatever moat needs to know about
//! the host (the id range it allocated, which namespace paths are the
//! host's, where bind-mount sources really point) comes in as [`HostFacts`],
//! gathered by the caller.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, LinuxPids,
    LinuxResources, Mount, Process, Spec,
};

use crate::policy::{capability_name, parse_capability, Policy};
use crate::refusal::Refusal;
use crate::report::{Report, Rule};
use crate::seccomp;

/// /proc and /sys paths masked in every container: each leaks host state
/// or reaches host hardware. runc's and docker's lists, plus /sys/firmware.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// /proc paths made read-only: writes there change the host kernel.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Namespaces a container must have of its own.
pub const REQUIRED_NAMESPACES: &[LinuxNamespaceType] = &[
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Uts,
];

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

/// Sensitive trees whose insides are sensitive too. The engines' own trees
/// (/var/lib/docker, /run/containerd, …) are not here: engines hand a
/// container its per-container files (hosts, resolv.conf, volumes) from there.
pub const SENSITIVE_HOST_TREES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/boot",
    "/lib/modules",
    "/usr/lib/modules",
    "/run/moat",
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

/// Device cgroup rules any container may have: the standard pseudo-devices,
/// terminals, and docker's defaults (mknod permission alone is harmless
/// without CAP_MKNOD, which is never granted).
pub const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c 1:3 rwm",    // null
    "c 1:5 rwm",    // zero
    "c 1:7 rwm",    // full
    "c 1:8 rwm",    // random
    "c 1:9 rwm",    // urandom
    "c 5:0 rwm",    // tty
    "c 5:1 rwm",    // console
    "c 5:2 rwm",    // ptmx
    "c 136:* rwm",  // pts
    "c 10:200 rwm", // tun (docker default; no node is created)
    "c *:* m",
    "b *:* m",
];

/// Device nodes a spec may ask to be created.
pub const DEFAULT_DEVICE_NODES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/console", 5, 1),
    ("/dev/ptmx", 5, 2),
];

/// The host uid/gid range a container's ids 0..size map onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub host_id: u32,
    pub size: u32,
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
    /// The image's `/etc/passwd` (read inside the rootfs; `None` when it has
    /// none or it is not a plain file), for HOME.
    pub image_passwd: Option<String>,
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
    let (policy, applied) = operator.with_annotations(&annotations)?;
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
    }
    refuse_privileged(spec, &policy)?;
    refuse_host_namespaces(spec, &policy, facts)?;
    refuse_sensitive_mounts(spec, &policy, facts)?;
    refuse_devices(spec, &policy)?;

    let mut out = spec.clone();
    if let Some(process) = out.process().clone() {
        out.set_process(Some(harden_process(&process, &policy, &mut report)));
    }
    add_user_namespace(&mut out, &policy, facts, &mut report);
    let_bind_service_open_low_ports(&mut out, facts, &mut report);
    enforce_seccomp(&mut out, &mut report);
    make_root_readonly(&mut out, &mut report);
    harden_mounts(&mut out, &policy, &mut report);
    mask_paths(&mut out, &mut report);
    limit_pids(&mut out, &policy, &mut report);
    set_home_without_name_service(&mut out, facts, &mut report);
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

/// Gives the container's init a HOME, so nothing inside the container ever
/// asks the C library's name service for it. libcontainer looks up the
/// user's home with `getpwuid_r` when the environment has no HOME (`runc
/// spec` bundles and containerd's `ctr` have none), in the container's init,
/// after pivot_root and before moat loads the seccomp filter: glibc then
/// reads the image's `/etc/nsswitch.conf` and loads `libnss_<service>.so.2`
/// from the image, so a hostile image ran its own code in the runtime's
/// process without seccomp (threat T20). moat reads the image's
/// `/etc/passwd` itself, as plain text, like runc does.
fn set_home_without_name_service(spec: &mut Spec, facts: &HostFacts, report: &mut Report) {
    let Some(mut process) = spec.process().clone() else {
        return;
    };
    let mut env = process.env().clone().unwrap_or_default();
    let has_home = env
        .iter()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|v| !v.is_empty()));
    if has_home {
        return;
    }
    let uid = process.user().uid();
    let home = facts
        .image_passwd
        .as_deref()
        .and_then(|passwd| home_from_passwd(passwd, uid))
        .unwrap_or_else(|| "/".to_string());
    let before = if env.iter().any(|e| e.starts_with("HOME=")) {
        "HOME= (empty)"
    } else {
        "unset"
    };
    env.retain(|e| !e.starts_with("HOME="));
    env.push(format!("HOME={home}"));
    process.set_env(Some(env));
    spec.set_process(Some(process));
    report.change(
        Rule::HomeEnv,
        "process.env.HOME",
        before,
        home,
        "set from the image's /etc/passwd (\"/\" if the uid has no entry), so the container's init never runs the C library's user lookup, which loads libraries named by the image",
    );
}

/// The home directory of `uid` in a passwd file (`name:pw:uid:gid:gecos:
/// dir:shell`): the first entry for that uid with an absolute directory.
pub fn home_from_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[2].trim().parse::<u32>().ok()? != uid {
            return None;
        }
        let dir = fields[5];
        (dir.starts_with('/') && !dir.contains('\0')).then(|| dir.to_string())
    })
}

/// Hardens one process: the container's init, or one started by `exec`.
pub fn harden_process(process: &Process, policy: &Policy, report: &mut Report) -> Process {
    let mut p = process.clone();
    let allowed: BTreeSet<String> = policy.allowed_capabilities();
    let caps = p.capabilities().clone().unwrap_or_else(empty_capabilities);
    let mut out = LinuxCapabilities::default();
    let sets: [(&str, &Option<Capabilities>); 5] = [
        ("bounding", caps.bounding()),
        ("effective", caps.effective()),
        ("permitted", caps.permitted()),
        ("inheritable", caps.inheritable()),
        ("ambient", caps.ambient()),
    ];
    // Ambient capabilities can only be raised when also permitted and
    // inheritable; asking for others only makes the raise fail.
    let raisable: Capabilities = caps
        .permitted()
        .clone()
        .unwrap_or_default()
        .intersection(&caps.inheritable().clone().unwrap_or_default())
        .copied()
        .collect();
    for (set, current) in sets {
        let current = current.clone().unwrap_or_default();
        let kept: Capabilities = current
            .iter()
            .filter(|c| allowed.contains(&capability_name(c)))
            .filter(|c| set != "ambient" || raisable.contains(c))
            .copied()
            .collect();
        let dropped: BTreeSet<String> = current
            .iter()
            .filter(|c| !kept.contains(c))
            .map(capability_name)
            .collect();
        if !dropped.is_empty() {
            report.change(
                Rule::Capabilities,
                format!("process.capabilities.{set}"),
                names(&current),
                names(&kept),
                format!(
                    "dropped {} ({})",
                    dropped.into_iter().collect::<Vec<_>>().join(","),
                    if set == "ambient" {
                        "not in capabilities.allow, or not both permitted and inheritable"
                    } else {
                        "not in capabilities.allow"
                    }
                ),
            );
        }
        match set {
            "bounding" => out.set_bounding(Some(kept)),
            "effective" => out.set_effective(Some(kept)),
            "permitted" => out.set_permitted(Some(kept)),
            "inheritable" => out.set_inheritable(Some(kept)),
            _ => out.set_ambient(Some(kept)),
        };
    }
    p.set_capabilities(Some(out));
    if p.no_new_privileges() != Some(true) {
        report.change(
            Rule::NoNewPrivileges,
            "process.noNewPrivileges",
            format!("{:?}", p.no_new_privileges()),
            "true",
            "setuid binaries and file capabilities must not raise privileges",
        );
        p.set_no_new_privileges(Some(true));
    }
    p
}

fn empty_capabilities() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(None);
    c.set_effective(None);
    c.set_permitted(None);
    c.set_inheritable(None);
    c.set_ambient(None);
    c
}

fn names(set: &Capabilities) -> String {
    let sorted: BTreeSet<String> = set.iter().map(capability_name).collect();
    if sorted.is_empty() {
        "[]".into()
    } else {
        sorted.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn all_devices_rule(rule: &LinuxDeviceCgroup) -> bool {
    rule.allow()
        && matches!(rule.typ(), None | Some(LinuxDeviceType::A))
        && rule.major().is_none()
        && rule.minor().is_none()
}

fn refuse_privileged(spec: &Spec, policy: &Policy) -> Result<(), Refusal> {
    if policy.refusals.allow_privileged {
        return Ok(());
    }
    let key = Some("refusals.allow_privileged");
    let linux = spec.linux().clone().unwrap_or_default();
    let all_devices = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default()
        .iter()
        .any(all_devices_rule);
    if all_devices {
        return Err(Refusal::new(
            "privileged",
            "the spec allows access to every host device (a privileged container)",
            key,
        ));
    }
    let sys_admin = parse_capability("CAP_SYS_ADMIN");
    let has_sys_admin = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .and_then(|c| c.bounding().clone())
        .is_some_and(|b| sys_admin.is_some_and(|s| b.contains(&s)));
    let unmasked = linux.masked_paths().as_ref().is_none_or(|m| m.is_empty())
        && linux.readonly_paths().as_ref().is_none_or(|r| r.is_empty());
    if has_sys_admin && unmasked {
        return Err(Refusal::new(
            "privileged",
            "the spec asks for CAP_SYS_ADMIN with no masked or read-only paths (a privileged container)",
            key,
        ));
    }
    Ok(())
}

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

fn refuse_host_namespaces(spec: &Spec, policy: &Policy, facts: &HostFacts) -> Result<(), Refusal> {
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
                "host-namespace",
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
                "host-namespace",
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
                "user-namespace-path",
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

fn sensitive_reason(source: &Path) -> Option<String> {
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
    for t in SENSITIVE_HOST_TREES {
        if source.starts_with(t) {
            return Some(format!("{} is inside the host's {t}", source.display()));
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

fn refuse_sensitive_mounts(spec: &Spec, policy: &Policy, facts: &HostFacts) -> Result<(), Refusal> {
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
            overlay_option_paths(m)
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
            for candidate in [&lexical, &resolved] {
                if allowed_entries.contains(candidate) {
                    continue;
                }
                if let Some(reason) = sensitive_reason(candidate) {
                    return Err(Refusal::new(
                        "sensitive-host-mount",
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

/// The host paths an overlay mount's options name (lowerdir, upperdir,
/// workdir; ':'-separated lower layers).
fn overlay_option_paths(m: &Mount) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for opt in m.options().clone().unwrap_or_default() {
        for key in [
            "lowerdir=",
            "upperdir=",
            "workdir=",
            "lowerdir+=",
            "datadir+=",
        ] {
            if let Some(v) = opt.strip_prefix(key) {
                out.extend(v.split(':').filter(|p| !p.is_empty()).map(PathBuf::from));
            }
        }
    }
    out
}

/// "c 1:3 rwm" for a device cgroup rule.
pub fn device_rule_string(rule: &LinuxDeviceCgroup) -> String {
    let typ = match rule.typ() {
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
    let mut access: Vec<char> = rule.access().clone().unwrap_or_default().chars().collect();
    access.sort_by_key(|c| "rwm".find(*c).unwrap_or(3));
    format!(
        "{typ} {}:{} {}",
        num(rule.major()),
        num(rule.minor()),
        access.into_iter().collect::<String>()
    )
}

/// True when `rule` grants no more than `allowed` ("c 1:3 rw" ⊆ "c 1:3 rwm").
fn rule_covered(rule: &str, allowed: &str) -> bool {
    let parse = |s: &str| -> Option<(String, String, String)> {
        let mut it = s.split_whitespace();
        Some((it.next()?.into(), it.next()?.into(), it.next()?.into()))
    };
    let (Some((t, n, a)), Some((at, an, aa))) = (parse(rule), parse(allowed)) else {
        return false;
    };
    t == at && n == an && a.chars().all(|c| aa.contains(c))
}

fn refuse_devices(spec: &Spec, policy: &Policy) -> Result<(), Refusal> {
    let key = Some("refusals.allow_devices");
    let linux = spec.linux().clone().unwrap_or_default();
    let allowed: Vec<String> = DEFAULT_DEVICE_RULES
        .iter()
        .map(|s| s.to_string())
        .chain(policy.refusals.allow_devices.iter().cloned())
        .collect();
    for rule in linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default()
    {
        if !rule.allow() {
            continue;
        }
        // Already judged (and allowed) by the privileged rule.
        if policy.refusals.allow_privileged && all_devices_rule(&rule) {
            continue;
        }
        let text = device_rule_string(&rule);
        if !allowed.iter().any(|a| rule_covered(&text, a)) {
            return Err(Refusal::new(
                "device",
                format!("device cgroup rule \"{text}\" is beyond the default device set"),
                key,
            ));
        }
    }
    for dev in linux.devices().clone().unwrap_or_default() {
        let path = dev.path().display().to_string();
        // In a user namespace libcontainer bind-mounts the host's file at
        // this path instead of creating a node, so the path itself must be
        // a device path: anything else would smuggle in a host file.
        let normal = normalize(dev.path());
        if !normal.starts_with("/dev") || normal == Path::new("/dev") || normal != *dev.path() {
            return Err(Refusal::new(
                "device",
                format!("device node path {path} is not a plain path under /dev"),
                None,
            ));
        }
        let standard = DEFAULT_DEVICE_NODES
            .iter()
            .any(|(p, maj, min)| *p == path && *maj == dev.major() && *min == dev.minor());
        let typ = match dev.typ() {
            LinuxDeviceType::B => "b",
            _ => "c",
        };
        let as_rule = format!("{typ} {}:{} rwm", dev.major(), dev.minor());
        if !standard && !policy.refusals.allow_devices.contains(&as_rule) {
            return Err(Refusal::new(
                "device",
                format!("device node {path} ({as_rule}) is beyond the default device set"),
                key,
            ));
        }
    }
    Ok(())
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

fn add_user_namespace(spec: &mut Spec, policy: &Policy, facts: &HostFacts, report: &mut Report) {
    let range = facts.id_range.unwrap_or(IdRange {
        host_id: policy.user_namespace.host_id_base,
        size: policy.user_namespace.range_size,
    });
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    if !namespaces
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
                if facts.id_range.is_some() {
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
fn let_bind_service_open_low_ports(spec: &mut Spec, facts: &HostFacts, report: &mut Report) {
    let keeps_capability = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&Capability::NetBindService));
    let is_pod_sandbox = spec
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

fn enforce_seccomp(spec: &mut Spec, report: &mut Report) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let current = linux.seccomp().clone();
    let hardened = match current {
        Some(profile) if !seccomp::is_unconfined(&profile) => {
            seccomp::enforce_always_denied(profile, report)
        }
        other => {
            let before = if other.is_some() {
                "unconfined profile"
            } else {
                "no profile"
            };
            // The embedded profile is checked by unit tests; should it ever
            // fail to parse, fall back to denying everything rather than
            // running unfiltered.
            let profile = seccomp::default_profile().unwrap_or_else(|_| {
                let mut p = oci_spec::runtime::LinuxSeccomp::default();
                p.set_default_action(oci_spec::runtime::LinuxSeccompAction::ScmpActErrno);
                p
            });
            report.change(
                Rule::Seccomp,
                "linux.seccomp",
                before,
                "moat default profile (configs/seccomp/default.json)",
                "every container runs under a syscall filter",
            );
            profile
        }
    };
    linux.set_seccomp(Some(hardened));
    spec.set_linux(Some(linux));
}

fn make_root_readonly(spec: &mut Spec, report: &mut Report) {
    if let Some(root) = spec.root().clone() {
        if root.readonly() != Some(true) {
            let mut r = root.clone();
            r.set_readonly(Some(true));
            spec.set_root(Some(r));
            report.change(
                Rule::ReadOnlyRoot,
                "root.readonly",
                format!("{:?}", root.readonly()),
                "true",
                "a compromised process must not alter the image's binaries",
            );
        }
    }
}

fn ensure_options(m: &mut Mount, add: &[&str], remove: &[&str]) -> bool {
    let mut opts = m.options().clone().unwrap_or_default();
    let before = opts.clone();
    opts.retain(|o| !remove.contains(&o.as_str()));
    for a in add {
        if !opts.iter().any(|o| o == a) {
            opts.push(a.to_string());
        }
    }
    let changed = opts != before;
    m.set_options(Some(opts));
    changed
}

fn harden_mounts(spec: &mut Spec, policy: &Policy, report: &mut Report) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut() {
        let dest = m.destination().display().to_string();
        let typ = m.typ().clone().unwrap_or_default();
        let before = m.options().clone().unwrap_or_default().join(",");
        let scratch = policy
            .filesystem
            .tmpfs
            .iter()
            .any(|t| normalize(Path::new(t)) == normalize(m.destination()));
        let changed = if scratch && typ == "tmpfs" {
            // The spec's own scratch tmpfs: same flags and size cap as moat's.
            // A size larger than the policy's (or unparseable, e.g. a
            // percentage of host memory) is replaced by the policy's.
            let cap = crate::policy::parse_size(&policy.filesystem.tmpfs_size).unwrap_or(0);
            let sizes: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|x| x.starts_with("size="))
                .collect();
            let within = !sizes.is_empty()
                && sizes.iter().all(|x| {
                    crate::policy::parse_size(&x["size=".len()..]).is_some_and(|n| n <= cap)
                });
            let size = format!("size={}", policy.filesystem.tmpfs_size);
            let remove: Vec<&str> = ["suid", "dev"]
                .into_iter()
                .chain(if within {
                    Vec::new()
                } else {
                    sizes.iter().map(String::as_str).collect()
                })
                .collect();
            let extra: Vec<&str> = if within {
                vec!["nosuid", "nodev"]
            } else {
                vec!["nosuid", "nodev", size.as_str()]
            };
            ensure_options(m, &extra, &remove)
        } else if is_bind(m) || scratch {
            ensure_options(m, &["nosuid", "nodev"], &["suid", "dev"])
        } else if typ == "sysfs" || typ == "cgroup" || typ == "cgroup2" {
            ensure_options(m, &["ro", "nosuid", "nodev", "noexec"], &["rw"])
        } else {
            false
        };
        if changed {
            report.change(
                Rule::MountFlags,
                format!("mounts[{dest}].options"),
                before,
                m.options().clone().unwrap_or_default().join(","),
                if typ == "sysfs" || typ.starts_with("cgroup") {
                    "/sys and cgroupfs are read-only"
                } else {
                    "workload mounts must not carry setuid binaries or device nodes"
                },
            );
        }
    }
    let size = format!("size={}", policy.filesystem.tmpfs_size);
    for path in &policy.filesystem.tmpfs {
        if mounts
            .iter()
            .any(|m| normalize(m.destination()) == normalize(Path::new(path)))
        {
            continue;
        }
        let mode = if path == "/tmp" {
            "mode=1777"
        } else {
            "mode=755"
        };
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(path));
        m.set_typ(Some("tmpfs".into()));
        m.set_source(Some(PathBuf::from("tmpfs")));
        m.set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            mode.into(),
            size.clone(),
        ]));
        report.change(
            Rule::Tmpfs,
            format!("mounts[{path}]"),
            "none",
            format!("tmpfs nosuid,nodev,{mode},{size}"),
            "scratch space on a read-only root, size-limited",
        );
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
}

fn mask_paths(spec: &mut Spec, report: &mut Report) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    for (rule, list, current) in [
        (
            Rule::MaskedPaths,
            MASKED_PATHS,
            linux.masked_paths().clone(),
        ),
        (
            Rule::ReadonlyPaths,
            READONLY_PATHS,
            linux.readonly_paths().clone(),
        ),
    ] {
        let mut paths = current.unwrap_or_default();
        let added: Vec<&str> = list
            .iter()
            .filter(|p| !paths.iter().any(|x| x == *p))
            .copied()
            .collect();
        if !added.is_empty() {
            paths.extend(added.iter().map(|s| s.to_string()));
            report.change(
                rule,
                if rule == Rule::MaskedPaths {
                    "linux.maskedPaths"
                } else {
                    "linux.readonlyPaths"
                },
                "missing",
                format!("+{}", added.join(",")),
                if rule == Rule::MaskedPaths {
                    "these /proc and /sys files leak host state"
                } else {
                    "writes there would change the host kernel"
                },
            );
        }
        if rule == Rule::MaskedPaths {
            linux.set_masked_paths(Some(paths));
        } else {
            linux.set_readonly_paths(Some(paths));
        }
    }
    spec.set_linux(Some(linux));
}

fn limit_pids(spec: &mut Spec, policy: &Policy, report: &mut Report) {
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

/// Refuses a working directory under /proc: `cwd: /proc/self/fd/N` is how
/// CVE-2024-21626 reached a runtime's leaked descriptor of a host
/// directory. No workload needs to start there.
pub fn refuse_proc_cwd(cwd: &Path) -> Result<(), Refusal> {
    if !cwd.is_absolute() {
        return Err(Refusal::new(
            "cwd",
            format!("process.cwd {} is not an absolute path", cwd.display()),
            None,
        ));
    }
    if normalize(cwd).starts_with("/proc") {
        return Err(Refusal::new(
            "cwd",
            format!(
                "process.cwd {} is under /proc (the shape of CVE-2024-21626)",
                cwd.display()
            ),
            None,
        ));
    }
    Ok(())
}
