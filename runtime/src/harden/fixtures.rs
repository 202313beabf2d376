//! Fixtures shared by the hardening's unit tests (one `*_tests.rs` beside
//! each concern). Specs are built from JSON the way docker, containerd and
//! `runc spec` write them, hardened with the default policy, and checked both
//! on the output spec and on the report lines; refusals are checked for their
//! rule, their policy key and a Display text that names the key.

pub(crate) use std::collections::{BTreeSet, HashMap};
pub(crate) use std::path::{Path, PathBuf};

pub(crate) use oci_spec::runtime::{
    LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompOperator, LinuxSyscall, Mount, Process, Spec,
};
pub(crate) use serde_json::{json, Value};

pub(crate) use crate::harden::{
    harden, harden_process, Hardened, HostFacts, IdRange, MASKED_PATHS, READONLY_PATHS,
};
pub(crate) use crate::policy::{capability_name, Policy};
pub(crate) use crate::refusal::Refusal;
pub(crate) use crate::report::{Report, Rule};
pub(crate) use crate::seccomp::{self, ALWAYS_DENIED, CLONE_NAMESPACE_FLAGS};

/// The capabilities docker grants by default.
pub(crate) const DOCKER_CAPS: &[&str] = crate::policy::DOCKER_DEFAULT_CAPABILITIES;

/// What the default policy keeps of docker's capabilities.
pub(crate) const DOCKER_CAPS_KEPT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_KILL",
];

/// What the default policy drops of docker's capabilities.
pub(crate) const DOCKER_CAPS_DROPPED: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SYS_CHROOT",
];

pub(crate) const DOCKER_MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub(crate) const DOCKER_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// docker's default device cgroup list.
pub(crate) fn docker_devices() -> Value {
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"}
    ])
}

/// A config.json shaped like the one dockerd hands its runtime for
/// `docker run alpine sh`.
pub(crate) fn docker_json() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=abc"],
            "cwd": "/",
            "capabilities": {
                "bounding": DOCKER_CAPS,
                "effective": DOCKER_CAPS,
                "permitted": DOCKER_CAPS,
                "inheritable": DOCKER_CAPS
            },
            "apparmorProfile": "docker-default",
            "oomScoreAdj": 0
        },
        "root": {"path": "rootfs"},
        "hostname": "abc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "/var/lib/docker/containers/abc/resolv.conf", "options": ["rbind", "rprivate"]},
            {"destination": "/etc/hostname", "type": "bind", "source": "/var/lib/docker/containers/abc/hostname", "options": ["rbind", "rprivate"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/docker/containers/abc/hosts", "options": ["rbind", "rprivate"]}
        ],
        "linux": {
            "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"},
            "resources": {
                "devices": docker_devices(),
                "memory": {"limit": 536870912},
                "blockIO": {"weight": 0}
            },
            "cgroupsPath": "system.slice:docker:abc",
            "namespaces": [
                {"type": "mount"},
                {"type": "network"},
                {"type": "uts"},
                {"type": "pid"},
                {"type": "ipc"}
            ],
            "maskedPaths": DOCKER_MASKED,
            "readonlyPaths": DOCKER_READONLY
        }
    })
}

/// The config.json `runc spec` writes (rootful), minus rlimits.
pub(crate) fn runc_json() -> Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

pub(crate) fn spec(v: Value) -> Spec {
    serde_json::from_value(v).expect("test spec parses as an OCI spec")
}

pub(crate) fn docker_spec() -> Spec {
    spec(docker_json())
}

pub(crate) fn runc_spec() -> Spec {
    spec(runc_json())
}

/// docker's spec, edited as JSON.
pub(crate) fn docker_with(f: impl FnOnce(&mut Value)) -> Spec {
    let mut v = docker_json();
    f(&mut v);
    spec(v)
}

pub(crate) fn runc_with(f: impl FnOnce(&mut Value)) -> Spec {
    let mut v = runc_json();
    f(&mut v);
    spec(v)
}

pub(crate) const RANGE: IdRange = IdRange {
    host_id: (1 << 30) + 3 * 65536,
    size: 65536,
};

pub(crate) fn facts() -> HostFacts {
    HostFacts {
        id_range: Some(RANGE),
        ..Default::default()
    }
}

pub(crate) fn ok(s: &Spec) -> Hardened {
    ok_with(s, &Policy::default(), &facts())
}

pub(crate) fn ok_with(s: &Spec, policy: &Policy, facts: &HostFacts) -> Hardened {
    match harden(s, policy, facts) {
        Ok(h) => h,
        Err(r) => panic!("expected the spec to be accepted, got: {r}"),
    }
}

pub(crate) fn refused(s: &Spec) -> Refusal {
    refused_with(s, &Policy::default(), &facts())
}

pub(crate) fn refused_with(s: &Spec, policy: &Policy, facts: &HostFacts) -> Refusal {
    match harden(s, policy, facts) {
        Ok(h) => panic!(
            "expected a refusal, got a hardened spec; report:\n{}",
            h.report
        ),
        Err(r) => r,
    }
}

/// Checks rule and key, and that the message names the key (so that the
/// operator knows what to change).
pub(crate) fn assert_refusal(r: &Refusal, rule: &str, key: Option<&str>) {
    assert_eq!(r.rule, rule, "wrong rule in refusal: {r}");
    assert_eq!(r.key.as_deref(), key, "wrong key in refusal: {r}");
    let text = r.to_string();
    assert!(
        text.contains(rule),
        "Display does not name the rule: {text}"
    );
    if let Some(key) = key {
        assert!(text.contains(key), "Display does not name the key: {text}");
    }
}

pub(crate) fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// One capability set of the spec's process, as sorted names. `None` when
/// the set is absent.
pub(crate) fn cap_set(s: &Spec, which: &str) -> Option<BTreeSet<String>> {
    let caps = s.process().as_ref()?.capabilities().clone()?;
    let set = match which {
        "bounding" => caps.bounding().clone(),
        "effective" => caps.effective().clone(),
        "permitted" => caps.permitted().clone(),
        "inheritable" => caps.inheritable().clone(),
        "ambient" => caps.ambient().clone(),
        _ => unreachable!(),
    }?;
    Some(set.iter().map(capability_name).collect())
}

pub(crate) const SETS: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];

pub(crate) fn lines(report: &Report, rule: Rule) -> Vec<&crate::report::Change> {
    report.by_rule(rule).collect()
}

pub(crate) fn line<'a>(report: &'a Report, rule: Rule, field: &str) -> &'a crate::report::Change {
    report
        .by_rule(rule)
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no {rule:?} line for {field}; report:\n{report}"))
}

pub(crate) fn has_line(report: &Report, rule: Rule, field: &str) -> bool {
    report.by_rule(rule).any(|c| c.field == field)
}

pub(crate) fn mounts_at<'a>(s: &'a Spec, dest: &str) -> Vec<&'a Mount> {
    s.mounts()
        .as_ref()
        .map(|m| {
            m.iter()
                .filter(|m| m.destination() == Path::new(dest))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn mount_at<'a>(s: &'a Spec, dest: &str) -> &'a Mount {
    let found = mounts_at(s, dest);
    assert_eq!(found.len(), 1, "expected exactly one mount at {dest}");
    found[0]
}

pub(crate) fn opts(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

pub(crate) fn has_opt(m: &Mount, o: &str) -> bool {
    opts(m).iter().any(|x| x == o)
}

pub(crate) fn masked(s: &Spec) -> Vec<String> {
    s.linux()
        .as_ref()
        .unwrap()
        .masked_paths()
        .clone()
        .unwrap_or_default()
}

pub(crate) fn readonly(s: &Spec) -> Vec<String> {
    s.linux()
        .as_ref()
        .unwrap()
        .readonly_paths()
        .clone()
        .unwrap_or_default()
}

pub(crate) fn pids(s: &Spec) -> Option<i64> {
    s.linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .pids()
        .as_ref()
        .map(|p| p.limit())
}

pub(crate) fn namespace_types(s: &Spec) -> Vec<LinuxNamespaceType> {
    s.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect()
}

/// The spec's namespace entries of type `typ`.
pub(crate) fn namespaces_of(s: &Spec, typ: LinuxNamespaceType) -> Vec<LinuxNamespace> {
    s.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.typ() == typ)
        .collect()
}

/// The spec's (first) namespace entry of type `typ`; panics without one.
pub(crate) fn namespace_of(s: &Spec, typ: LinuxNamespaceType) -> LinuxNamespace {
    namespaces_of(s, typ)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {typ:?} namespace in the spec"))
}

pub(crate) fn mapping(container: u32, host: u32, size: u32) -> Value {
    json!({"containerID": container, "hostID": host, "size": size})
}

pub(crate) fn id_maps(m: &Option<Vec<LinuxIdMapping>>) -> Vec<(u32, u32, u32)> {
    m.clone()
        .unwrap_or_default()
        .iter()
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .collect()
}

pub(crate) fn seccomp_of(s: &Spec) -> LinuxSeccomp {
    s.linux()
        .as_ref()
        .unwrap()
        .seccomp()
        .clone()
        .expect("hardened spec has a seccomp profile")
}

pub(crate) fn rules(p: &LinuxSeccomp) -> Vec<LinuxSyscall> {
    p.syscalls().clone().unwrap_or_default()
}

pub(crate) fn lets_through(a: LinuxSeccompAction) -> bool {
    matches!(
        a,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
            | LinuxSeccompAction::ScmpActNotify
    )
}

/// True when some rule lets `name` through (with or without arguments).
pub(crate) fn any_allow_rule_names(p: &LinuxSeccomp, name: &str) -> bool {
    rules(p)
        .iter()
        .any(|r| lets_through(r.action()) && r.names().iter().any(|n| n == name))
}

pub(crate) fn unconditionally_allowed(p: &LinuxSeccomp, name: &str) -> bool {
    rules(p).iter().any(|r| {
        lets_through(r.action()) && r.args().is_none() && r.names().iter().any(|n| n == name)
    })
}

pub(crate) fn denied_with(p: &LinuxSeccomp, name: &str, errno: u32) -> bool {
    rules(p).iter().any(|r| {
        r.action() == LinuxSeccompAction::ScmpActErrno
            && r.args().is_none()
            && r.errno_ret() == Some(errno)
            && r.names().iter().any(|n| n == name)
    })
}

pub(crate) fn to_json(s: &Spec) -> Value {
    serde_json::to_value(s).expect("spec serializes")
}

pub(crate) fn annotated(mut base: Value, pairs: &[(&str, &str)]) -> Spec {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    base["annotations"] = json!(map);
    spec(base)
}

pub(crate) fn add_mount(v: &mut Value, m: Value) {
    v["mounts"].as_array_mut().unwrap().push(m);
}

pub(crate) fn bind(source: &str, dest: &str) -> Value {
    json!({"destination": dest, "type": "bind", "source": source, "options": ["rbind", "ro"]})
}

pub(crate) fn with_bind(source: &str) -> Spec {
    docker_with(|v| add_mount(v, bind(source, "/mnt/host")))
}

/// The policy keys refusals name.
pub(crate) const PRIV_KEY: Option<&str> = Some("refusals.allow_privileged");
pub(crate) const NS_KEY: Option<&str> = Some("refusals.allow_host_namespaces");
pub(crate) const MOUNT_KEY: Option<&str> = Some("refusals.allow_host_mounts");
pub(crate) const DEV_KEY: Option<&str> = Some("refusals.allow_devices");

pub(crate) fn without_namespace(name: &str) -> Spec {
    docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != name);
    })
}
