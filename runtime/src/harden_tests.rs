//! Exhaustive unit tests of the pure hardening ([`crate::harden`]).
//!
//! Specs are built from JSON the way docker, containerd and `runc spec`
//! write them, hardened with the default policy, and checked both on the
//! output spec and on the report lines; refusals are checked for their rule,
//! their policy key and a Display text that names the key.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxIdMapping, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator,
    LinuxSyscall, Mount, Process, Spec,
};
use serde_json::{json, Value};

use crate::harden::{
    harden, harden_process, Hardened, HostFacts, IdRange, MASKED_PATHS, READONLY_PATHS,
};
use crate::policy::{capability_name, Policy};
use crate::refusal::Refusal;
use crate::report::{Report, Rule};
use crate::seccomp::{self, ALWAYS_DENIED, CLONE_NAMESPACE_FLAGS};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// The capabilities docker grants by default.
const DOCKER_CAPS: &[&str] = &[
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

/// What the default policy keeps of docker's capabilities.
const DOCKER_CAPS_KEPT: &[&str] = &[
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
const DOCKER_CAPS_DROPPED: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SYS_CHROOT",
];

const DOCKER_MASKED: &[&str] = &[
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

const DOCKER_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// docker's default device cgroup list.
fn docker_devices() -> Value {
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
fn docker_json() -> Value {
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
fn runc_json() -> Value {
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

fn spec(v: Value) -> Spec {
    serde_json::from_value(v).expect("test spec parses as an OCI spec")
}

fn docker_spec() -> Spec {
    spec(docker_json())
}

fn runc_spec() -> Spec {
    spec(runc_json())
}

/// docker's spec, edited as JSON.
fn docker_with(f: impl FnOnce(&mut Value)) -> Spec {
    let mut v = docker_json();
    f(&mut v);
    spec(v)
}

fn runc_with(f: impl FnOnce(&mut Value)) -> Spec {
    let mut v = runc_json();
    f(&mut v);
    spec(v)
}

const RANGE: IdRange = IdRange {
    host_id: (1 << 30) + 3 * 65536,
    size: 65536,
};

fn facts() -> HostFacts {
    HostFacts {
        id_range: Some(RANGE),
        ..Default::default()
    }
}

fn ok(s: &Spec) -> Hardened {
    ok_with(s, &Policy::default(), &facts())
}

fn ok_with(s: &Spec, policy: &Policy, facts: &HostFacts) -> Hardened {
    match harden(s, policy, facts) {
        Ok(h) => h,
        Err(r) => panic!("expected the spec to be accepted, got: {r}"),
    }
}

fn refused(s: &Spec) -> Refusal {
    refused_with(s, &Policy::default(), &facts())
}

fn refused_with(s: &Spec, policy: &Policy, facts: &HostFacts) -> Refusal {
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
fn assert_refusal(r: &Refusal, rule: &str, key: Option<&str>) {
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

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// One capability set of the spec's process, as sorted names. `None` when
/// the set is absent.
fn cap_set(s: &Spec, which: &str) -> Option<BTreeSet<String>> {
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

const SETS: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];

fn lines(report: &Report, rule: Rule) -> Vec<&crate::report::Change> {
    report.by_rule(rule).collect()
}

fn line<'a>(report: &'a Report, rule: Rule, field: &str) -> &'a crate::report::Change {
    report
        .by_rule(rule)
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no {rule:?} line for {field}; report:\n{report}"))
}

fn has_line(report: &Report, rule: Rule, field: &str) -> bool {
    report.by_rule(rule).any(|c| c.field == field)
}

fn mounts_at<'a>(s: &'a Spec, dest: &str) -> Vec<&'a Mount> {
    s.mounts()
        .as_ref()
        .map(|m| {
            m.iter()
                .filter(|m| m.destination() == Path::new(dest))
                .collect()
        })
        .unwrap_or_default()
}

fn mount_at<'a>(s: &'a Spec, dest: &str) -> &'a Mount {
    let found = mounts_at(s, dest);
    assert_eq!(found.len(), 1, "expected exactly one mount at {dest}");
    found[0]
}

fn opts(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

fn has_opt(m: &Mount, o: &str) -> bool {
    opts(m).iter().any(|x| x == o)
}

fn masked(s: &Spec) -> Vec<String> {
    s.linux()
        .as_ref()
        .unwrap()
        .masked_paths()
        .clone()
        .unwrap_or_default()
}

fn readonly(s: &Spec) -> Vec<String> {
    s.linux()
        .as_ref()
        .unwrap()
        .readonly_paths()
        .clone()
        .unwrap_or_default()
}

fn pids(s: &Spec) -> Option<i64> {
    s.linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .pids()
        .as_ref()
        .map(|p| p.limit())
}

fn namespace_types(s: &Spec) -> Vec<LinuxNamespaceType> {
    s.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect()
}

fn mapping(container: u32, host: u32, size: u32) -> Value {
    json!({"containerID": container, "hostID": host, "size": size})
}

fn id_maps(m: &Option<Vec<LinuxIdMapping>>) -> Vec<(u32, u32, u32)> {
    m.clone()
        .unwrap_or_default()
        .iter()
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn seccomp_of(s: &Spec) -> LinuxSeccomp {
    s.linux()
        .as_ref()
        .unwrap()
        .seccomp()
        .clone()
        .expect("hardened spec has a seccomp profile")
}

fn rules(p: &LinuxSeccomp) -> Vec<LinuxSyscall> {
    p.syscalls().clone().unwrap_or_default()
}

fn lets_through(a: LinuxSeccompAction) -> bool {
    matches!(
        a,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
            | LinuxSeccompAction::ScmpActNotify
    )
}

/// True when some rule lets `name` through (with or without arguments).
fn any_allow_rule_names(p: &LinuxSeccomp, name: &str) -> bool {
    rules(p)
        .iter()
        .any(|r| lets_through(r.action()) && r.names().iter().any(|n| n == name))
}

fn unconditionally_allowed(p: &LinuxSeccomp, name: &str) -> bool {
    rules(p).iter().any(|r| {
        lets_through(r.action()) && r.args().is_none() && r.names().iter().any(|n| n == name)
    })
}

fn denied_with(p: &LinuxSeccomp, name: &str, errno: u32) -> bool {
    rules(p).iter().any(|r| {
        r.action() == LinuxSeccompAction::ScmpActErrno
            && r.args().is_none()
            && r.errno_ret() == Some(errno)
            && r.names().iter().any(|n| n == name)
    })
}

fn to_json(s: &Spec) -> Value {
    serde_json::to_value(s).expect("spec serializes")
}

fn annotated(mut base: Value, pairs: &[(&str, &str)]) -> Spec {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    base["annotations"] = json!(map);
    spec(base)
}

fn add_mount(v: &mut Value, m: Value) {
    v["mounts"].as_array_mut().unwrap().push(m);
}

fn bind(source: &str, dest: &str) -> Value {
    json!({"destination": dest, "type": "bind", "source": source, "options": ["rbind", "ro"]})
}

fn with_bind(source: &str) -> Spec {
    docker_with(|v| add_mount(v, bind(source, "/mnt/host")))
}

// ---------------------------------------------------------------------------
// Sanity of the fixtures
// ---------------------------------------------------------------------------

#[test]
fn fixtures_parse_and_are_accepted() {
    let d = docker_spec();
    assert_eq!(d.version(), "1.0.2");
    assert_eq!(cap_set(&d, "bounding").unwrap(), set(DOCKER_CAPS));
    assert_eq!(cap_set(&d, "ambient"), None);
    ok(&d);
    ok(&runc_spec());
}

// ---------------------------------------------------------------------------
// 1. Capabilities
// ---------------------------------------------------------------------------

#[test]
fn capabilities_docker_sets_are_cut_to_the_allowlist() {
    let h = ok(&docker_spec());
    for which in ["bounding", "effective", "permitted", "inheritable"] {
        assert_eq!(
            cap_set(&h.spec, which).unwrap(),
            set(DOCKER_CAPS_KEPT),
            "{which}"
        );
        let l = line(
            &h.report,
            Rule::Capabilities,
            &format!("process.capabilities.{which}"),
        );
        assert_eq!(
            l.after,
            set(DOCKER_CAPS_KEPT)
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            l.before,
            set(DOCKER_CAPS).into_iter().collect::<Vec<_>>().join(",")
        );
        for dropped in DOCKER_CAPS_DROPPED {
            assert!(l.why.contains(dropped), "{which}: {}", l.why);
        }
        for kept in DOCKER_CAPS_KEPT {
            assert!(
                !l.why.contains(kept),
                "{which} claims to drop {kept}: {}",
                l.why
            );
        }
    }
    // docker asks for no ambient capabilities: the set is empty, and nothing
    // was dropped from it.
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), BTreeSet::new());
    assert!(!has_line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.ambient"
    ));
    assert_eq!(lines(&h.report, Rule::Capabilities).len(), 4);
}

#[test]
fn capabilities_are_never_added() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({"bounding": ["CAP_KILL"]});
    });
    let h = ok(&s);
    assert_eq!(cap_set(&h.spec, "bounding").unwrap(), set(&["CAP_KILL"]));
    for which in ["effective", "permitted", "inheritable", "ambient"] {
        assert_eq!(cap_set(&h.spec, which).unwrap(), BTreeSet::new(), "{which}");
    }
    // Nothing was dropped, so there is nothing to report.
    assert!(
        lines(&h.report, Rule::Capabilities).is_empty(),
        "{}",
        h.report
    );
}

#[test]
fn capabilities_runc_defaults_lose_only_audit_write() {
    let h = ok(&runc_spec());
    for which in ["bounding", "effective", "permitted"] {
        assert_eq!(
            cap_set(&h.spec, which).unwrap(),
            set(&["CAP_KILL", "CAP_NET_BIND_SERVICE"]),
            "{which}"
        );
        let l = line(
            &h.report,
            Rule::Capabilities,
            &format!("process.capabilities.{which}"),
        );
        assert!(l.why.contains("CAP_AUDIT_WRITE"));
    }
    assert_eq!(cap_set(&h.spec, "inheritable").unwrap(), BTreeSet::new());
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), BTreeSet::new());
}

#[test]
fn capabilities_absent_give_empty_sets_not_full_ones() {
    let s = runc_with(|v| {
        v["process"].as_object_mut().unwrap().remove("capabilities");
    });
    assert!(s.process().as_ref().unwrap().capabilities().is_none());
    let h = ok(&s);
    for which in SETS {
        assert_eq!(cap_set(&h.spec, which), Some(BTreeSet::new()), "{which}");
    }
    // Serialized as explicit empty lists, so that no runtime default
    // (oci-spec's or libcontainer's) fills them in.
    let v = to_json(&h.spec);
    for which in SETS {
        assert_eq!(v["process"]["capabilities"][which], json!([]), "{which}");
    }
    assert!(lines(&h.report, Rule::Capabilities).is_empty());
}

#[test]
fn capabilities_empty_object_gives_empty_sets() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({});
    });
    let h = ok(&s);
    for which in SETS {
        assert_eq!(cap_set(&h.spec, which), Some(BTreeSet::new()), "{which}");
    }
}

#[test]
fn capabilities_ambient_kept_only_if_permitted_and_inheritable() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            "effective": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            "inheritable": ["CAP_KILL", "CAP_SETUID", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_NET_RAW"]
        });
    });
    let h = ok(&s);
    // KILL: allowed, permitted and inheritable. CHOWN: not inheritable.
    // SETUID: not permitted. NET_RAW: permitted and inheritable, but not
    // in the allowlist.
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), set(&["CAP_KILL"]));
    // NET_BIND_SERVICE was never asked for in ambient: not added.
    assert!(!cap_set(&h.spec, "ambient")
        .unwrap()
        .contains("CAP_NET_BIND_SERVICE"));
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.ambient",
    );
    assert_eq!(l.before, "CAP_CHOWN,CAP_KILL,CAP_NET_RAW,CAP_SETUID");
    assert_eq!(l.after, "CAP_KILL");
    assert!(
        l.why.contains("CAP_CHOWN,CAP_NET_RAW,CAP_SETUID"),
        "{}",
        l.why
    );
    assert!(l.why.contains("permitted and inheritable"), "{}", l.why);
    assert_eq!(
        cap_set(&h.spec, "permitted").unwrap(),
        set(&["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(
        cap_set(&h.spec, "inheritable").unwrap(),
        set(&["CAP_KILL", "CAP_SETUID"])
    );
    // effective had nothing outside the allowlist.
    assert!(!has_line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.effective"
    ));
}

#[test]
fn capabilities_ambient_without_permitted_or_inheritable_is_emptied() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
    });
    let h = ok(&s);
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), BTreeSet::new());
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.ambient",
    );
    assert_eq!(l.after, "[]");
}

#[test]
fn capabilities_annotation_tightens_the_allowlist() {
    let s = annotated(
        docker_json(),
        &[("moat.dev/capabilities.allow", "CAP_KILL, chown")],
    );
    let h = ok(&s);
    for which in ["bounding", "effective", "permitted", "inheritable"] {
        assert_eq!(
            cap_set(&h.spec, which).unwrap(),
            set(&["CAP_CHOWN", "CAP_KILL"]),
            "{which}"
        );
    }
    assert_eq!(h.policy.capabilities.allow, vec!["CAP_KILL", "CAP_CHOWN"]);
    let a = line(&h.report, Rule::Annotations, "policy.capabilities.allow");
    assert_eq!(a.after, "CAP_KILL, chown");
    assert!(a.why.contains("tightens"), "{}", a.why);
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.bounding",
    );
    assert!(l.why.contains("CAP_SETUID"), "{}", l.why);
}

#[test]
fn capabilities_annotation_cannot_loosen_unless_overridable() {
    let s = annotated(
        docker_json(),
        &[("moat.dev/capabilities.allow", "CAP_KILL,CAP_NET_RAW")],
    );
    let r = refused(&s);
    assert_refusal(&r, "annotation-loosens-policy", Some("capabilities.allow"));
    assert!(r.to_string().contains("annotations.overridable"));

    let mut p = Policy::default();
    p.annotations.overridable = vec!["capabilities.allow".into()];
    let h = ok_with(&s, &p, &facts());
    assert_eq!(
        cap_set(&h.spec, "bounding").unwrap(),
        set(&["CAP_KILL", "CAP_NET_RAW"])
    );
    let a = line(&h.report, Rule::Annotations, "policy.capabilities.allow");
    assert!(a.why.contains("loosens"), "{}", a.why);
}

#[test]
fn capabilities_operator_allowlist_accepts_short_names() {
    let mut p = Policy::default();
    p.capabilities.allow = vec!["kill".into(), "NET_BIND_SERVICE".into()];
    let h = ok_with(&docker_spec(), &p, &facts());
    assert_eq!(
        cap_set(&h.spec, "bounding").unwrap(),
        set(&["CAP_KILL", "CAP_NET_BIND_SERVICE"])
    );
}

#[test]
fn capabilities_empty_allowlist_drops_everything() {
    let mut p = Policy::default();
    p.capabilities.allow = vec![];
    let h = ok_with(&docker_spec(), &p, &facts());
    for which in SETS {
        assert_eq!(cap_set(&h.spec, which).unwrap(), BTreeSet::new(), "{which}");
    }
}

#[test]
fn capabilities_sys_admin_is_dropped_without_refusal_when_paths_are_masked() {
    let mut caps: Vec<&str> = DOCKER_CAPS.to_vec();
    caps.push("CAP_SYS_ADMIN");
    caps.push("CAP_SYS_MODULE");
    let s = docker_with(|v| {
        for which in ["bounding", "effective", "permitted", "inheritable"] {
            v["process"]["capabilities"][which] = json!(caps);
        }
    });
    let h = ok(&s);
    for which in SETS {
        let c = cap_set(&h.spec, which).unwrap();
        assert!(!c.contains("CAP_SYS_ADMIN"), "{which}");
        assert!(!c.contains("CAP_SYS_MODULE"), "{which}");
    }
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.bounding",
    );
    assert!(l.why.contains("CAP_SYS_ADMIN") && l.why.contains("CAP_SYS_MODULE"));
}

// ---------------------------------------------------------------------------
// 2. noNewPrivileges
// ---------------------------------------------------------------------------

#[test]
fn no_new_privileges_forced_from_absent() {
    let h = ok(&docker_spec());
    assert_eq!(
        h.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    let l = line(&h.report, Rule::NoNewPrivileges, "process.noNewPrivileges");
    assert_eq!(l.before, "None");
    assert_eq!(l.after, "true");
}

#[test]
fn no_new_privileges_forced_from_false() {
    let s = docker_with(|v| v["process"]["noNewPrivileges"] = json!(false));
    let h = ok(&s);
    assert_eq!(
        h.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    let l = line(&h.report, Rule::NoNewPrivileges, "process.noNewPrivileges");
    assert_eq!(l.before, "Some(false)");
    assert_eq!(lines(&h.report, Rule::NoNewPrivileges).len(), 1);
}

#[test]
fn no_new_privileges_already_true_is_not_reported() {
    let h = ok(&runc_spec());
    assert_eq!(
        h.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    assert!(lines(&h.report, Rule::NoNewPrivileges).is_empty());
}

#[test]
fn spec_without_process_is_hardened_without_one() {
    let s = runc_with(|v| {
        v.as_object_mut().unwrap().remove("process");
    });
    let h = ok(&s);
    assert!(h.spec.process().is_none());
    assert!(lines(&h.report, Rule::Capabilities).is_empty());
    assert!(lines(&h.report, Rule::NoNewPrivileges).is_empty());
    // Everything else still applies.
    assert!(h.report.has(Rule::UserNamespace));
    assert!(h.report.has(Rule::Seccomp));
}

// ---------------------------------------------------------------------------
// 3. User namespace
// ---------------------------------------------------------------------------

#[test]
fn user_namespace_added_with_the_allocated_range() {
    let h = ok(&docker_spec());
    let types = namespace_types(&h.spec);
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == LinuxNamespaceType::User)
            .count(),
        1
    );
    let user = h
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
        .unwrap()
        .clone();
    assert!(user.path().is_none());
    // The others are all kept.
    for t in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ] {
        assert!(types.contains(&t), "{t:?}");
    }
    let linux = h.spec.linux().as_ref().unwrap();
    let want = vec![(0, RANGE.host_id, RANGE.size)];
    assert_eq!(id_maps(linux.uid_mappings()), want);
    assert_eq!(id_maps(linux.gid_mappings()), want);

    let ns = line(&h.report, Rule::UserNamespace, "linux.namespaces");
    assert_eq!(ns.before, "no user namespace");
    let text = format!("0:{}:{}", RANGE.host_id, RANGE.size);
    for field in ["linux.uidMappings", "linux.gidMappings"] {
        let l = line(&h.report, Rule::UserNamespace, field);
        assert_eq!(l.before, "none");
        assert_eq!(l.after, text);
        assert!(l.why.contains("no other container"), "{}", l.why);
    }
    assert_eq!(lines(&h.report, Rule::UserNamespace).len(), 3);
}

#[test]
fn user_namespace_without_allocated_range_uses_the_pools_first_range() {
    let h = ok_with(&docker_spec(), &Policy::default(), &HostFacts::default());
    let linux = h.spec.linux().as_ref().unwrap();
    let want = vec![(0, 1 << 30, 65536)];
    assert_eq!(id_maps(linux.uid_mappings()), want);
    assert_eq!(id_maps(linux.gid_mappings()), want);
    let l = line(&h.report, Rule::UserNamespace, "linux.uidMappings");
    assert!(l.why.contains("chosen at create"), "{}", l.why);

    let mut p = Policy::default();
    p.user_namespace.host_id_base = 100_000;
    p.user_namespace.range_size = 1000;
    let h = ok_with(&docker_spec(), &p, &HostFacts::default());
    let linux = h.spec.linux().as_ref().unwrap();
    assert_eq!(id_maps(linux.uid_mappings()), vec![(0, 100_000, 1000)]);
    assert_eq!(id_maps(linux.gid_mappings()), vec![(0, 100_000, 1000)]);
}

#[test]
fn user_namespace_existing_mappings_to_host_root_are_replaced() {
    let s = docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        v["linux"]["uidMappings"] = json!([mapping(0, 0, 65536)]);
        v["linux"]["gidMappings"] = json!([mapping(0, 0, 1), mapping(1, 100000, 65535)]);
    });
    let h = ok(&s);
    let linux = h.spec.linux().as_ref().unwrap();
    let want = vec![(0, RANGE.host_id, RANGE.size)];
    assert_eq!(id_maps(linux.uid_mappings()), want);
    assert_eq!(id_maps(linux.gid_mappings()), want);
    assert_eq!(
        namespace_types(&h.spec)
            .iter()
            .filter(|t| **t == LinuxNamespaceType::User)
            .count(),
        1
    );
    // The namespace was there: only the mappings are reported.
    assert!(!has_line(
        &h.report,
        Rule::UserNamespace,
        "linux.namespaces"
    ));
    assert_eq!(
        line(&h.report, Rule::UserNamespace, "linux.uidMappings").before,
        "0:0:65536"
    );
    assert_eq!(
        line(&h.report, Rule::UserNamespace, "linux.gidMappings").before,
        "0:0:1,1:100000:65535"
    );
}

#[test]
fn user_namespace_already_right_is_not_reported() {
    let s = docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        v["linux"]["uidMappings"] = json!([mapping(0, RANGE.host_id, RANGE.size)]);
        v["linux"]["gidMappings"] = json!([mapping(0, RANGE.host_id, RANGE.size)]);
    });
    let h = ok(&s);
    assert!(
        lines(&h.report, Rule::UserNamespace).is_empty(),
        "{}",
        h.report
    );
}

#[test]
fn user_namespace_path_is_refused() {
    let s = docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": "/proc/4242/ns/user"}));
    });
    let r = refused(&s);
    assert_refusal(&r, "user-namespace-path", None);
    assert!(r.to_string().contains("/proc/4242/ns/user"), "{r}");
}

// ---------------------------------------------------------------------------
// 4. Seccomp
// ---------------------------------------------------------------------------

fn clone_allow_rule(p: &LinuxSeccomp) -> Option<LinuxSyscall> {
    rules(p)
        .into_iter()
        .find(|r| r.names() == &["clone"] && lets_through(r.action()))
}

fn assert_moat_clone_rules(p: &LinuxSeccomp) {
    let clone = clone_allow_rule(p).expect("clone is allowed without namespace flags");
    let args = clone.args().clone().unwrap();
    assert_eq!(args.len(), 1);
    assert_eq!(args[0].index(), 0);
    assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!(args[0].value(), CLONE_NAMESPACE_FLAGS);
    assert_eq!(args[0].value_two(), Some(0));
    assert!(!unconditionally_allowed(p, "clone"));
    assert!(denied_with(p, "clone3", libc::ENOSYS as u32));
}

#[test]
fn seccomp_no_profile_gets_the_moat_default() {
    let h = ok(&docker_spec());
    let p = seccomp_of(&h.spec);
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p, seccomp::default_profile().unwrap());
    assert!(unconditionally_allowed(&p, "read"));
    for name in ALWAYS_DENIED {
        assert!(!any_allow_rule_names(&p, name), "{name}");
    }
    assert_moat_clone_rules(&p);
    let l = line(&h.report, Rule::Seccomp, "linux.seccomp");
    assert_eq!(l.before, "no profile");
    assert!(l.after.contains("moat default"), "{}", l.after);
    assert_eq!(lines(&h.report, Rule::Seccomp).len(), 1);
}

#[test]
fn seccomp_unconfined_profile_gets_the_moat_default() {
    for profile in [
        json!({"defaultAction": "SCMP_ACT_ALLOW"}),
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}),
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["bpf", "mount"], "action": "SCMP_ACT_ALLOW"}
        ]}),
        json!({"defaultAction": "SCMP_ACT_LOG"}),
    ] {
        let s = docker_with(|v| v["linux"]["seccomp"] = profile.clone());
        let h = ok(&s);
        let p = seccomp_of(&h.spec);
        assert_eq!(p, seccomp::default_profile().unwrap(), "{profile}");
        let l = line(&h.report, Rule::Seccomp, "linux.seccomp");
        assert_eq!(l.before, "unconfined profile", "{profile}");
    }
}

#[test]
fn seccomp_workload_allowlist_is_kept_minus_always_denied() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "bpf", "ptrace", "mount", "clone"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]
        });
    });
    let h = ok(&s);
    let p = seccomp_of(&h.spec);
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert!(p.architectures().is_some(), "the workload profile is kept");
    for name in ["read", "write", "exit_group"] {
        assert!(unconditionally_allowed(&p, name), "{name}");
    }
    for name in ["bpf", "ptrace", "mount", "clone3"] {
        assert!(!any_allow_rule_names(&p, name), "{name}");
    }
    // Default EPERM already denies the stripped names.
    assert!(!denied_with(&p, "bpf", libc::EPERM as u32));
    // The workload's own denial stays as it is.
    assert!(denied_with(&p, "chmod", 13));
    assert_moat_clone_rules(&p);

    assert!(!has_line(&h.report, Rule::Seccomp, "linux.seccomp"));
    let l = line(&h.report, Rule::Seccomp, "linux.seccomp.syscalls");
    assert_eq!(l.before, "allows bpf,mount,ptrace");
    assert_eq!(l.after, "denied (EPERM)");
    assert_eq!(lines(&h.report, Rule::Seccomp).len(), 1);
}

#[test]
fn seccomp_workload_denylist_gets_explicit_denials() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        });
    });
    let h = ok(&s);
    let p = seccomp_of(&h.spec);
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
    assert!(denied_with(&p, "chmod", 1));
    for name in ALWAYS_DENIED {
        assert!(denied_with(&p, name, libc::EPERM as u32), "{name}");
    }
    assert!(denied_with(&p, "clone3", libc::ENOSYS as u32));
    // clone with any namespace flag is denied, one rule per flag.
    let clone_denials: Vec<LinuxSyscall> = rules(&p)
        .into_iter()
        .filter(|r| r.names() == &["clone"] && r.action() == LinuxSeccompAction::ScmpActErrno)
        .collect();
    assert_eq!(
        clone_denials.len(),
        CLONE_NAMESPACE_FLAGS.count_ones() as usize
    );
    let mut covered = 0u64;
    for r in &clone_denials {
        let a = r.args().clone().unwrap()[0];
        assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(a.value_two(), Some(a.value()));
        assert_eq!(a.value().count_ones(), 1);
        covered |= a.value();
    }
    assert_eq!(covered, CLONE_NAMESPACE_FLAGS);
    // The workload profile was not replaced.
    assert!(!has_line(&h.report, Rule::Seccomp, "linux.seccomp"));
}

#[test]
fn seccomp_workload_kill_rule_loses_managed_names_only() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mount", "chmod"], "action": "SCMP_ACT_KILL"}
            ]
        });
    });
    let p = seccomp_of(&ok(&s).spec);
    let kill: Vec<LinuxSyscall> = rules(&p)
        .into_iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActKill)
        .collect();
    assert_eq!(kill.len(), 1);
    assert_eq!(kill[0].names(), &["chmod"]);
    assert!(denied_with(&p, "mount", libc::EPERM as u32));
}

#[test]
fn seccomp_workload_profile_that_denies_clone_keeps_its_denial() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO"}
            ]
        });
    });
    let p = seccomp_of(&ok(&s).spec);
    assert!(clone_allow_rule(&p).is_none());
}

// ---------------------------------------------------------------------------
// 5. Root, tmpfs and mount flags
// ---------------------------------------------------------------------------

#[test]
fn root_is_made_read_only() {
    let h = ok(&docker_spec());
    assert_eq!(h.spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(h.spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
    let l = line(&h.report, Rule::ReadOnlyRoot, "root.readonly");
    assert_eq!(l.before, "None");

    let s = docker_with(|v| v["root"]["readonly"] = json!(false));
    let h = ok(&s);
    assert_eq!(h.spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(
        line(&h.report, Rule::ReadOnlyRoot, "root.readonly").before,
        "Some(false)"
    );

    let h = ok(&runc_spec());
    assert!(lines(&h.report, Rule::ReadOnlyRoot).is_empty());
}

#[test]
fn tmpfs_tmp_and_run_are_added() {
    let h = ok(&docker_spec());
    let tmp = mount_at(&h.spec, "/tmp");
    assert_eq!(tmp.typ().as_deref(), Some("tmpfs"));
    assert_eq!(tmp.source().as_deref(), Some(Path::new("tmpfs")));
    assert_eq!(opts(tmp), vec!["nosuid", "nodev", "mode=1777", "size=64m"]);
    let run = mount_at(&h.spec, "/run");
    assert_eq!(run.typ().as_deref(), Some("tmpfs"));
    assert_eq!(opts(run), vec!["nosuid", "nodev", "mode=755", "size=64m"]);

    let l = line(&h.report, Rule::Tmpfs, "mounts[/tmp]");
    assert_eq!(l.before, "none");
    assert_eq!(l.after, "tmpfs nosuid,nodev,mode=1777,size=64m");
    assert!(has_line(&h.report, Rule::Tmpfs, "mounts[/run]"));
    assert_eq!(lines(&h.report, Rule::Tmpfs).len(), 2);
    // Added after the spec's own mounts, so they are not shadowed by /.
    let dests: Vec<PathBuf> = h
        .spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    assert_eq!(
        dests.len(),
        docker_spec().mounts().as_ref().unwrap().len() + 2
    );
}

#[test]
fn tmpfs_size_comes_from_policy() {
    let mut p = Policy::default();
    p.filesystem.tmpfs_size = "128m".into();
    let h = ok_with(&docker_spec(), &p, &facts());
    assert!(has_opt(mount_at(&h.spec, "/tmp"), "size=128m"));
    assert!(has_opt(mount_at(&h.spec, "/run"), "size=128m"));
}

#[test]
fn tmpfs_size_comes_from_annotation() {
    let s = annotated(docker_json(), &[("moat.dev/filesystem.tmpfs_size", "8m")]);
    let h = ok(&s);
    assert!(has_opt(mount_at(&h.spec, "/tmp"), "size=8m"));
    assert!(has_opt(mount_at(&h.spec, "/run"), "size=8m"));
    assert!(!has_opt(mount_at(&h.spec, "/tmp"), "size=64m"));
    assert_eq!(
        line(&h.report, Rule::Annotations, "policy.filesystem.tmpfs_size").after,
        "8m"
    );
    // A bigger size loosens, which the default policy does not allow.
    let s = annotated(docker_json(), &[("moat.dev/filesystem.tmpfs_size", "1g")]);
    assert_refusal(
        &refused(&s),
        "annotation-loosens-policy",
        Some("filesystem.tmpfs_size"),
    );
}

#[test]
fn tmpfs_directories_come_from_policy() {
    let mut p = Policy::default();
    p.filesystem.tmpfs = vec!["/scratch".into()];
    let h = ok_with(&docker_spec(), &p, &facts());
    assert_eq!(
        opts(mount_at(&h.spec, "/scratch")),
        vec!["nosuid", "nodev", "mode=755", "size=64m"]
    );
    assert!(mounts_at(&h.spec, "/tmp").is_empty());
    assert!(mounts_at(&h.spec, "/run").is_empty());
}

#[test]
fn tmpfs_not_duplicated_when_the_spec_mounts_tmp() {
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "exec", "suid", "dev"]}),
        )
    });
    let h = ok(&s);
    let tmp = mount_at(&h.spec, "/tmp");
    assert!(
        has_opt(tmp, "nosuid") && has_opt(tmp, "nodev"),
        "{:?}",
        opts(tmp)
    );
    assert!(
        !has_opt(tmp, "suid") && !has_opt(tmp, "dev"),
        "{:?}",
        opts(tmp)
    );
    assert!(has_opt(tmp, "rw") && has_opt(tmp, "exec"));
    assert!(!has_line(&h.report, Rule::Tmpfs, "mounts[/tmp]"));
    assert!(has_line(&h.report, Rule::Tmpfs, "mounts[/run]"));
    let l = line(&h.report, Rule::MountFlags, "mounts[/tmp].options");
    assert_eq!(l.before, "rw,exec,suid,dev");
    // The spec's own scratch tmpfs also gets the policy's size cap.
    assert_eq!(l.after, "rw,exec,nosuid,nodev,size=64m");
}

#[test]
fn tmpfs_not_duplicated_when_the_spec_binds_tmp() {
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/tmp", "type": "bind", "source": "/srv/scratch", "options": ["rbind", "rw"]}),
        )
    });
    let h = ok(&s);
    let tmp = mount_at(&h.spec, "/tmp");
    assert_eq!(tmp.typ().as_deref(), Some("bind"));
    assert_eq!(opts(tmp), vec!["rbind", "rw", "nosuid", "nodev"]);
}

#[test]
fn tmpfs_spec_mount_with_unnormalized_destination_still_gets_nosuid_nodev() {
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/tmp/", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "suid", "dev"]}),
        )
    });
    let h = ok(&s);
    // moat does not add its own /tmp: the spec's one counts.
    assert!(mounts_at(&h.spec, "/tmp").len() <= 1);
    assert!(!has_line(&h.report, Rule::Tmpfs, "mounts[/tmp]"));
    let tmp = h
        .spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/tmp/"))
        .unwrap();
    assert!(
        has_opt(tmp, "nosuid") && has_opt(tmp, "nodev"),
        "{:?}",
        opts(tmp)
    );
    assert!(
        !has_opt(tmp, "suid") && !has_opt(tmp, "dev"),
        "{:?}",
        opts(tmp)
    );
}

#[test]
fn bind_mounts_get_nosuid_nodev() {
    let h = ok(&docker_spec());
    for dest in ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"] {
        let m = mount_at(&h.spec, dest);
        assert_eq!(
            opts(m),
            vec!["rbind", "rprivate", "nosuid", "nodev"],
            "{dest}"
        );
        let l = line(
            &h.report,
            Rule::MountFlags,
            &format!("mounts[{dest}].options"),
        );
        assert_eq!(l.before, "rbind,rprivate");
        assert_eq!(l.after, "rbind,rprivate,nosuid,nodev");
        assert!(l.why.contains("setuid"), "{}", l.why);
    }
}

#[test]
fn bind_mounts_lose_suid_and_dev() {
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rw", "suid", "dev", "exec"]}),
        );
        // Bind mounts by option only (type "none", as podman writes them).
        add_mount(
            v,
            json!({"destination": "/cache", "type": "none", "source": "/srv/cache", "options": ["bind", "dev"]}),
        );
        // And without any options at all.
        add_mount(
            v,
            json!({"destination": "/plain", "type": "bind", "source": "/srv/plain"}),
        );
    });
    let h = ok(&s);
    assert_eq!(
        opts(mount_at(&h.spec, "/data")),
        vec!["rbind", "rw", "exec", "nosuid", "nodev"]
    );
    assert_eq!(
        opts(mount_at(&h.spec, "/cache")),
        vec!["bind", "nosuid", "nodev"]
    );
    assert_eq!(opts(mount_at(&h.spec, "/plain")), vec!["nosuid", "nodev"]);
    assert!(has_line(
        &h.report,
        Rule::MountFlags,
        "mounts[/plain].options"
    ));
}

#[test]
fn sysfs_and_cgroup_mounts_are_read_only() {
    let s = runc_with(|v| {
        for m in v["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/sys" {
                m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
            }
            if m["destination"] == "/sys/fs/cgroup" {
                m["options"] = json!(["rw", "relatime"]);
            }
        }
        add_mount(
            v,
            json!({"destination": "/sys/fs/cgroup/unified", "type": "cgroup2", "source": "cgroup2", "options": ["rw"]}),
        );
    });
    let h = ok(&s);
    for dest in ["/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let m = mount_at(&h.spec, dest);
        assert!(has_opt(m, "ro"), "{dest}: {:?}", opts(m));
        assert!(!has_opt(m, "rw"), "{dest}: {:?}", opts(m));
        for o in ["nosuid", "nodev", "noexec"] {
            assert!(has_opt(m, o), "{dest} lacks {o}");
        }
        let l = line(
            &h.report,
            Rule::MountFlags,
            &format!("mounts[{dest}].options"),
        );
        assert!(l.why.contains("read-only"), "{}", l.why);
    }
    assert_eq!(
        opts(mount_at(&h.spec, "/sys/fs/cgroup")),
        vec!["relatime", "ro", "nosuid", "nodev", "noexec"]
    );
}

#[test]
fn already_hardened_system_mounts_are_not_reported() {
    let h = ok(&docker_spec());
    for dest in [
        "/sys",
        "/sys/fs/cgroup",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/mqueue",
        "/dev/shm",
    ] {
        assert!(
            !has_line(
                &h.report,
                Rule::MountFlags,
                &format!("mounts[{dest}].options")
            ),
            "{dest}"
        );
    }
    // The docker spec's own mounts are unchanged apart from the binds.
    let before = docker_spec();
    for dest in [
        "/sys",
        "/sys/fs/cgroup",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/mqueue",
        "/dev/shm",
    ] {
        assert_eq!(mount_at(&h.spec, dest), mount_at(&before, dest), "{dest}");
    }
}

#[test]
fn dev_tmpfs_is_not_given_nodev() {
    let h = ok(&runc_spec());
    let dev = mount_at(&h.spec, "/dev");
    assert!(!has_opt(dev, "nodev"), "{:?}", opts(dev));
    assert_eq!(
        opts(dev),
        vec!["nosuid", "strictatime", "mode=755", "size=65536k"]
    );
    // proc (with no options at all) is left as it is.
    assert!(mount_at(&h.spec, "/proc").options().is_none());
}

// ---------------------------------------------------------------------------
// 6. Masked and read-only paths
// ---------------------------------------------------------------------------

#[test]
fn masked_paths_are_a_union_without_duplicates() {
    let h = ok(&docker_spec());
    let m = masked(&h.spec);
    for p in MASKED_PATHS {
        assert_eq!(m.iter().filter(|x| x == p).count(), 1, "{p}");
    }
    for p in ["/proc/kcore", "/proc/keys", "/sys/firmware"] {
        assert!(m.iter().any(|x| x == p), "{p}");
    }
    // docker's order is kept, moat's additions come after.
    assert_eq!(&m[..DOCKER_MASKED.len()], DOCKER_MASKED);
    assert_eq!(m.len(), DOCKER_MASKED.len() + 1);
    let l = line(&h.report, Rule::MaskedPaths, "linux.maskedPaths");
    assert_eq!(l.after, "+/proc/interrupts");
    // docker already has every read-only path.
    assert_eq!(readonly(&h.spec), DOCKER_READONLY);
    assert!(lines(&h.report, Rule::ReadonlyPaths).is_empty());
}

#[test]
fn masked_paths_added_to_runc_list() {
    let h = ok(&runc_spec());
    let l = line(&h.report, Rule::MaskedPaths, "linux.maskedPaths");
    assert_eq!(l.after, "+/proc/interrupts,/sys/devices/virtual/powercap");
    assert_eq!(masked(&h.spec).len(), 12);
}

#[test]
fn masked_and_readonly_paths_added_when_absent() {
    let s = docker_with(|v| {
        let l = v["linux"].as_object_mut().unwrap();
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    });
    let h = ok(&s);
    assert_eq!(masked(&h.spec), MASKED_PATHS);
    assert_eq!(readonly(&h.spec), READONLY_PATHS);
    for p in ["/proc/sys", "/proc/sysrq-trigger"] {
        assert!(readonly(&h.spec).iter().any(|x| x == p), "{p}");
    }
    let l = line(&h.report, Rule::ReadonlyPaths, "linux.readonlyPaths");
    assert_eq!(l.before, "missing");
    assert_eq!(l.after, format!("+{}", READONLY_PATHS.join(",")));
    assert!(has_line(&h.report, Rule::MaskedPaths, "linux.maskedPaths"));
}

#[test]
fn extra_masked_and_readonly_paths_are_kept() {
    let s = docker_with(|v| {
        v["linux"]["maskedPaths"] = json!(["/proc/custom", "/proc/kcore"]);
        v["linux"]["readonlyPaths"] = json!(["/proc/sys", "/proc/extra"]);
    });
    let h = ok(&s);
    let m = masked(&h.spec);
    assert_eq!(m[0], "/proc/custom");
    assert_eq!(m.iter().filter(|x| *x == "/proc/kcore").count(), 1);
    assert_eq!(m.len(), 1 + MASKED_PATHS.len());
    let r = readonly(&h.spec);
    assert_eq!(&r[..2], ["/proc/sys", "/proc/extra"]);
    assert_eq!(r.iter().filter(|x| *x == "/proc/sys").count(), 1);
    assert_eq!(r.len(), 1 + READONLY_PATHS.len());
    let l = line(&h.report, Rule::ReadonlyPaths, "linux.readonlyPaths");
    assert!(
        !l.after.contains("/proc/sys,") && !l.after.ends_with("/proc/sys"),
        "{}",
        l.after
    );
}

// ---------------------------------------------------------------------------
// 7. Pids limit
// ---------------------------------------------------------------------------

fn with_pids(limit: i64) -> Spec {
    docker_with(|v| v["linux"]["resources"]["pids"] = json!({"limit": limit}))
}

#[test]
fn pids_absent_gets_the_policy_limit() {
    let h = ok(&docker_spec());
    assert_eq!(pids(&h.spec), Some(4096));
    let l = line(&h.report, Rule::PidsLimit, "linux.resources.pids.limit");
    assert_eq!(l.before, "unlimited");
    assert_eq!(l.after, "4096");
    // The other resources are kept.
    let res = h
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap();
    assert_eq!(res.memory().as_ref().unwrap().limit(), Some(536870912));
    assert_eq!(
        res.devices(),
        docker_spec()
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .devices()
    );
}

#[test]
fn pids_without_any_resources_gets_the_policy_limit() {
    let s = runc_with(|v| {
        v["linux"].as_object_mut().unwrap().remove("resources");
    });
    let h = ok(&s);
    assert_eq!(pids(&h.spec), Some(4096));
    // No device rules appear out of nowhere.
    assert!(h
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .is_none());
}

#[test]
fn pids_higher_than_policy_is_lowered() {
    let h = ok(&with_pids(100_000));
    assert_eq!(pids(&h.spec), Some(4096));
    let l = line(&h.report, Rule::PidsLimit, "linux.resources.pids.limit");
    assert_eq!(l.before, "100000");
    assert_eq!(l.after, "4096");
}

#[test]
fn pids_lower_than_policy_is_kept() {
    for limit in [1, 100, 4096] {
        let h = ok(&with_pids(limit));
        assert_eq!(pids(&h.spec), Some(limit));
        assert!(lines(&h.report, Rule::PidsLimit).is_empty(), "{limit}");
    }
}

#[test]
fn pids_zero_or_negative_gets_the_policy_limit() {
    for limit in [0, -1, i64::MIN] {
        let h = ok(&with_pids(limit));
        assert_eq!(pids(&h.spec), Some(4096), "{limit}");
        assert_eq!(
            line(&h.report, Rule::PidsLimit, "linux.resources.pids.limit").before,
            limit.to_string()
        );
    }
}

#[test]
fn pids_annotation_tightens() {
    let s = annotated(docker_json(), &[("moat.dev/resources.pids_limit", "100")]);
    let h = ok(&s);
    assert_eq!(pids(&h.spec), Some(100));
    assert_eq!(h.policy.resources.pids_limit, 100);
    assert_eq!(
        line(&h.report, Rule::Annotations, "policy.resources.pids_limit").after,
        "100"
    );
    assert_eq!(
        line(&h.report, Rule::PidsLimit, "linux.resources.pids.limit").after,
        "100"
    );

    // …also below what the spec asks for.
    let mut v = docker_json();
    v["linux"]["resources"]["pids"] = json!({"limit": 1000});
    let h = ok(&annotated(v, &[("moat.dev/resources.pids_limit", "100")]));
    assert_eq!(pids(&h.spec), Some(100));
}

#[test]
fn pids_annotation_loosening_is_refused_unless_overridable() {
    let s = annotated(
        docker_json(),
        &[("moat.dev/resources.pids_limit", "100000")],
    );
    let r = refused(&s);
    assert_refusal(
        &r,
        "annotation-loosens-policy",
        Some("resources.pids_limit"),
    );
    assert!(r.to_string().contains("annotations.overridable"), "{r}");
    assert!(
        r.to_string().contains("moat.dev/resources.pids_limit"),
        "{r}"
    );

    let mut p = Policy::default();
    p.annotations.overridable = vec!["resources.pids_limit".into()];
    let h = ok_with(&s, &p, &facts());
    assert_eq!(pids(&h.spec), Some(100_000));
    let a = line(&h.report, Rule::Annotations, "policy.resources.pids_limit");
    assert!(a.why.contains("loosens"), "{}", a.why);
}

#[test]
fn pids_annotation_malformed_is_refused() {
    for bad in ["0", "-5", "many"] {
        let s = annotated(docker_json(), &[("moat.dev/resources.pids_limit", bad)]);
        assert_refusal(&refused(&s), "annotation", None);
    }
}

// ---------------------------------------------------------------------------
// 8. Refusals
// ---------------------------------------------------------------------------

const PRIV_KEY: Option<&str> = Some("refusals.allow_privileged");
const NS_KEY: Option<&str> = Some("refusals.allow_host_namespaces");
const MOUNT_KEY: Option<&str> = Some("refusals.allow_host_mounts");
const DEV_KEY: Option<&str> = Some("refusals.allow_devices");

fn all_devices_spec(rule: Value) -> Spec {
    docker_with(|v| v["linux"]["resources"]["devices"] = json!([rule]))
}

/// `docker run --privileged`: every capability, no masked or read-only
/// paths. `devices` picks the device cgroup rules.
fn privileged_spec(devices: Value) -> Spec {
    let mut caps: Vec<&str> = DOCKER_CAPS.to_vec();
    caps.extend([
        "CAP_SYS_ADMIN",
        "CAP_SYS_MODULE",
        "CAP_SYS_PTRACE",
        "CAP_NET_ADMIN",
    ]);
    docker_with(|v| {
        for which in ["bounding", "effective", "permitted", "inheritable"] {
            v["process"]["capabilities"][which] = json!(caps);
        }
        let l = v["linux"].as_object_mut().unwrap();
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
        l.get_mut("resources").unwrap()["devices"] = devices;
    })
}

#[test]
fn privileged_all_devices_is_refused() {
    for rule in [
        json!({"allow": true, "access": "rwm"}),
        json!({"allow": true, "type": "a", "access": "rwm"}),
        json!({"allow": true, "type": "a"}),
    ] {
        let r = refused(&all_devices_spec(rule.clone()));
        assert_refusal(&r, "privileged", PRIV_KEY);
    }
    // A deny-all rule is harmless.
    ok(&all_devices_spec(json!({"allow": false, "access": "rwm"})));
}

#[test]
fn privileged_sys_admin_without_masked_paths_is_refused() {
    // Both lists absent.
    let r = refused(&privileged_spec(docker_devices()));
    assert_refusal(&r, "privileged", PRIV_KEY);
    // Both lists present but empty.
    let s = docker_with(|v| {
        v["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
        v["linux"]["maskedPaths"] = json!([]);
        v["linux"]["readonlyPaths"] = json!([]);
    });
    assert_refusal(&refused(&s), "privileged", PRIV_KEY);
    // Masked paths present, read-only paths empty: not the privileged shape.
    let s = docker_with(|v| {
        v["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
        v["linux"]["readonlyPaths"] = json!([]);
    });
    let h = ok(&s);
    assert!(!cap_set(&h.spec, "bounding")
        .unwrap()
        .contains("CAP_SYS_ADMIN"));
}

#[test]
fn privileged_sys_admin_allowed_by_policy_still_cuts_capabilities() {
    let mut p = Policy::default();
    p.refusals.allow_privileged = true;
    let h = ok_with(&privileged_spec(docker_devices()), &p, &facts());
    for which in SETS {
        let c = cap_set(&h.spec, which).unwrap();
        assert!(c.is_subset(&set(DOCKER_CAPS_KEPT)), "{which}: {c:?}");
        assert!(!c.contains("CAP_SYS_ADMIN"), "{which}");
    }
    // …and it gets moat's masked and read-only paths.
    assert_eq!(masked(&h.spec), MASKED_PATHS);
    assert_eq!(readonly(&h.spec), READONLY_PATHS);
    assert_eq!(
        h.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
}

#[test]
fn privileged_all_devices_allowed_by_policy() {
    let mut p = Policy::default();
    p.refusals.allow_privileged = true;
    let s = privileged_spec(json!([{"allow": true, "access": "rwm"}]));
    let h = ok_with(&s, &p, &facts());
    for which in SETS {
        assert!(!cap_set(&h.spec, which).unwrap().contains("CAP_SYS_ADMIN"));
    }
}

#[test]
fn privileged_annotation_is_a_loosening() {
    let mut v = docker_json();
    v["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    let s = annotated(v, &[("moat.dev/refusals.allow_privileged", "true")]);
    assert_refusal(
        &refused(&s),
        "annotation-loosens-policy",
        Some("refusals.allow_privileged"),
    );
    // "false" tightens (it is the default) and changes nothing.
    let s = annotated(
        docker_json(),
        &[("moat.dev/refusals.allow_privileged", "false")],
    );
    let h = ok(&s);
    assert!(has_line(
        &h.report,
        Rule::Annotations,
        "policy.refusals.allow_privileged"
    ));
}

const REQUIRED: [(&str, LinuxNamespaceType); 5] = [
    ("pid", LinuxNamespaceType::Pid),
    ("network", LinuxNamespaceType::Network),
    ("ipc", LinuxNamespaceType::Ipc),
    ("uts", LinuxNamespaceType::Uts),
    ("mount", LinuxNamespaceType::Mount),
];

fn without_namespace(name: &str) -> Spec {
    docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != name);
    })
}

#[test]
fn host_namespace_each_missing_type_is_refused() {
    for (name, _) in REQUIRED {
        let r = refused(&without_namespace(name));
        assert_refusal(&r, "host-namespace", NS_KEY);
        assert!(r.detail.contains(name), "{name}: {r}");
    }
}

#[test]
fn host_namespace_missing_type_allowed_when_listed() {
    for (name, t) in REQUIRED {
        let mut p = Policy::default();
        p.refusals.allow_host_namespaces = vec![name.into()];
        let h = ok_with(&without_namespace(name), &p, &facts());
        // Not silently re-added, and the others still there.
        let types = namespace_types(&h.spec);
        assert!(!types.contains(&t), "{name}");
        assert!(types.contains(&LinuxNamespaceType::User), "{name}");
        assert_eq!(types.len(), 5, "{name}: {types:?}");
        // Allowing one type does not allow another.
        for (other, _) in REQUIRED {
            if other != name {
                let mut v = docker_json();
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != other);
                assert_refusal(
                    &refused_with(&spec(v), &p, &facts()),
                    "host-namespace",
                    NS_KEY,
                );
            }
        }
    }
}

#[test]
fn host_namespace_no_namespaces_at_all_is_refused() {
    let s = docker_with(|v| {
        v["linux"].as_object_mut().unwrap().remove("namespaces");
    });
    assert_refusal(&refused(&s), "host-namespace", NS_KEY);
}

#[test]
fn cgroup_namespace_is_not_required() {
    // docker's spec (cgroup v1 hosts) has no cgroup namespace.
    let h = ok(&docker_spec());
    assert!(!namespace_types(&h.spec).contains(&LinuxNamespaceType::Cgroup));
}

fn with_namespace_path(name: &str, path: &str) -> Spec {
    docker_with(|v| {
        for n in v["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == name {
                n["path"] = json!(path);
            }
        }
    })
}

#[test]
fn host_namespace_path_is_refused() {
    for (name, t) in REQUIRED {
        let s = with_namespace_path(name, "/proc/1/ns/whatever");
        let f = HostFacts {
            host_namespace_paths: vec![t],
            ..facts()
        };
        let r = refused_with(&s, &Policy::default(), &f);
        assert_refusal(&r, "host-namespace", NS_KEY);
        assert!(r.detail.contains(name), "{r}");

        let mut p = Policy::default();
        p.refusals.allow_host_namespaces = vec![name.into()];
        let h = ok_with(&s, &p, &f);
        let kept = h
            .spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == t)
            .unwrap()
            .path()
            .clone();
        assert_eq!(kept.as_deref(), Some(Path::new("/proc/1/ns/whatever")));
    }
}

#[test]
fn host_namespace_path_of_an_optional_type_is_refused() {
    // The cgroup namespace is not required, but joining the host's is still
    // sharing it.
    let s = docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup", "path": "/proc/1/ns/cgroup"}));
    });
    let f = HostFacts {
        host_namespace_paths: vec![LinuxNamespaceType::Cgroup],
        ..facts()
    };
    let r = refused_with(&s, &Policy::default(), &f);
    assert_refusal(&r, "host-namespace", NS_KEY);
    assert!(r.to_string().contains("/proc/1/ns/cgroup"), "{r}");
}

#[test]
fn non_host_namespace_path_is_accepted_and_kept() {
    let s = with_namespace_path("network", "/proc/123/ns/net");
    let h = ok(&s);
    let net = h
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .unwrap()
        .clone();
    assert_eq!(net.path().as_deref(), Some(Path::new("/proc/123/ns/net")));
    // Facts about another type do not matter.
    let f = HostFacts {
        host_namespace_paths: vec![LinuxNamespaceType::Pid],
        ..facts()
    };
    ok_with(&s, &Policy::default(), &f);
}

const SENSITIVE_SOURCES: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/",
    "/etc",
    "/etc/shadow",
    "/etc/kubernetes/admin.conf",
    "/proc",
    "/proc/1/root",
    "/proc/sys/kernel",
    "/sys",
    "/sys/kernel/security",
    "/dev",
    "/dev/sda",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/lib",
    "/var",
    "/run",
    "/run/containerd",
    "/run/moat",
    "/run/moat/id-pool",
    "/boot",
    "/lib/modules",
    "/usr/lib/modules/6.1.0",
    "/usr/lib",
    "/usr",
    "/lib",
    "/home/u/.docker/run/docker.sock",
    "/run/user/1000/podman/podman.sock",
    "/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
    // Lexical tricks.
    "/tmp/../etc",
    "/srv/data/../../etc/shadow",
    "/../../etc",
    "//etc",
    "/etc/.",
    "/var/run/../lib/docker",
    "/var/lib/docker/containers/abc/../../",
];

#[test]
fn sensitive_bind_mounts_are_refused() {
    for src in SENSITIVE_SOURCES {
        let r = refused(&with_bind(src));
        assert_refusal(&r, "sensitive-host-mount", MOUNT_KEY);
        assert!(r.to_string().contains(src), "{src}: {r}");
        assert!(r.to_string().contains("/mnt/host"), "{src}: {r}");
    }
}

#[test]
fn sensitive_bind_mounts_by_option_only_are_refused() {
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/mnt/host", "type": "none", "source": "/etc", "options": ["rbind", "ro"]}),
        )
    });
    assert_refusal(&refused(&s), "sensitive-host-mount", MOUNT_KEY);
    // No type at all.
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/mnt/host", "source": "/var/run/docker.sock", "options": ["bind"]}),
        )
    });
    assert_refusal(&refused(&s), "sensitive-host-mount", MOUNT_KEY);
}

#[test]
fn sensitive_bind_mount_via_symlink_is_refused() {
    for (src, real) in [
        ("/tmp/innocent", "/run/docker.sock"),
        ("/srv/link", "/var/run/docker.sock"),
        ("/home/u/etc-link", "/etc"),
        ("/srv/data/x", "/proc/1/root"),
    ] {
        let s = with_bind(src);
        // Without the fact it looks harmless…
        ok(&s);
        // …with it, it is refused.
        let mut f = facts();
        f.resolved_sources
            .insert(PathBuf::from(src), PathBuf::from(real));
        let r = refused_with(&s, &Policy::default(), &f);
        assert_refusal(&r, "sensitive-host-mount", MOUNT_KEY);
    }
}

const HARMLESS_SOURCES: &[&str] = &[
    "/var/lib/docker/containers/abc/hosts",
    "/var/lib/docker/containers/abc/resolv.conf",
    "/var/lib/docker/volumes/v/_data",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/x",
    "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/cache",
    "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/x/shm",
    "/run/containerd/io.containerd.runtime.v2.task/k8s.io/x/rootfs",
    "/srv/data",
    "/home/u/project",
    "/home/u/docker.sock.d",
    "/opt/etc",
    "/etcetera",
    "/var/log/app",
    "/tmp/../srv/data",
];

#[test]
fn harmless_bind_mounts_are_accepted() {
    for src in HARMLESS_SOURCES {
        let h = ok(&with_bind(src));
        let m = mount_at(&h.spec, "/mnt/host");
        assert_eq!(m.source().as_deref(), Some(Path::new(src)), "{src}");
        assert!(has_opt(m, "nosuid") && has_opt(m, "nodev"), "{src}");
    }
}

#[test]
fn harmless_bind_mount_resolving_to_harmless_path_is_accepted() {
    let s = with_bind("/srv/link");
    let mut f = facts();
    f.resolved_sources
        .insert(PathBuf::from("/srv/link"), PathBuf::from("/data/real"));
    ok_with(&s, &Policy::default(), &f);
}

#[test]
fn operator_allow_host_mounts_admits_a_sensitive_mount() {
    for (allowed, src) in [
        ("/var/run/docker.sock", "/var/run/docker.sock"),
        ("/etc/ssl/certs", "/etc/ssl/certs"),
        ("/etc/ssl/certs/", "/etc/ssl/certs"),
        ("/var/lib/docker", "/var/lib/docker/"),
    ] {
        let mut p = Policy::default();
        p.refusals.allow_host_mounts = vec![allowed.into()];
        let h = ok_with(&with_bind(src), &p, &facts());
        assert!(has_opt(mount_at(&h.spec, "/mnt/host"), "nosuid"));
        // Only that path: its neighbours are still refused.
        assert_refusal(
            &refused_with(&with_bind("/etc/shadow"), &p, &facts()),
            "sensitive-host-mount",
            MOUNT_KEY,
        );
    }
    // An allowed path that resolves elsewhere is judged by where it resolves.
    let mut p = Policy::default();
    p.refusals.allow_host_mounts = vec!["/srv/ok".into()];
    let mut f = facts();
    f.resolved_sources
        .insert(PathBuf::from("/srv/ok"), PathBuf::from("/etc"));
    assert_refusal(
        &refused_with(&with_bind("/srv/ok"), &p, &f),
        "sensitive-host-mount",
        MOUNT_KEY,
    );
}

#[test]
fn operator_allow_host_mounts_judges_both_spellings() {
    let mut p = Policy::default();
    p.refusals.allow_host_mounts = vec!["/var/run/docker.sock".into()];
    let mut f = facts();
    // What facts::gather reports on any host where /var/run -> /run.
    f.resolved_sources.insert(
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/docker.sock"),
    );
    // Naming only the spelling in the spec is not enough: the allowance must
    // cover where it resolves (the error names that path)…
    let r = refused_with(&with_bind("/var/run/docker.sock"), &p, &f);
    assert!(r.detail.contains("/run/docker.sock"), "{r}");
    // …and naming both is.
    p.refusals.allow_host_mounts.push("/run/docker.sock".into());
    ok_with(&with_bind("/var/run/docker.sock"), &p, &f);
}

#[test]
fn allow_host_mounts_annotation_is_a_loosening() {
    let mut v = docker_json();
    add_mount(&mut v, bind("/var/run/docker.sock", "/var/run/docker.sock"));
    let s = annotated(
        v,
        &[(
            "moat.dev/refusals.allow_host_mounts",
            "/var/run/docker.sock",
        )],
    );
    assert_refusal(
        &refused(&s),
        "annotation-loosens-policy",
        Some("refusals.allow_host_mounts"),
    );
    let mut p = Policy::default();
    p.annotations.overridable = vec!["refusals.allow_host_mounts".into()];
    ok_with(&s, &p, &facts());
}

#[test]
fn non_bind_mounts_with_odd_sources_are_not_refused() {
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/proc2", "type": "proc", "source": "/etc"}),
        );
        add_mount(
            v,
            json!({"destination": "/scratch", "type": "tmpfs", "source": "/var/run/docker.sock", "options": ["nosuid"]}),
        );
        add_mount(
            v,
            json!({"destination": "/mq", "type": "mqueue", "source": "/"}),
        );
    });
    let h = ok(&s);
    // And tmpfs outside the policy list is left as the spec has it.
    assert_eq!(opts(mount_at(&h.spec, "/scratch")), vec!["nosuid"]);
}

#[test]
fn overlay_mount_of_a_sensitive_host_path_is_refused() {
    let s = docker_with(|v| {
        add_mount(
            v,
            json!({
                "destination": "/mnt/host",
                "type": "overlay",
                "source": "overlay",
                "options": ["lowerdir=/etc:/var/lib/docker", "upperdir=/srv/u", "workdir=/srv/w"]
            }),
        )
    });
    assert_refusal(&refused(&s), "sensitive-host-mount", MOUNT_KEY);
}

#[test]
fn docker_default_device_rules_are_accepted() {
    let h = ok(&docker_spec());
    // Untouched.
    assert_eq!(
        h.spec
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .devices(),
        docker_spec()
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .devices()
    );
}

fn with_device_rule(rule: Value) -> Spec {
    docker_with(|v| {
        v["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(rule)
    })
}

#[test]
fn device_rule_beyond_the_default_set_is_refused() {
    for (rule, text) in [
        (
            json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rwm"}),
            "b 8:0 rwm",
        ),
        (
            json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "r"}),
            "b 8:0 r",
        ),
        (
            json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}),
            "c 10:229 rwm",
        ),
        (
            json!({"allow": true, "type": "c", "access": "rw"}),
            "c *:* rw",
        ),
        (
            json!({"allow": true, "type": "b", "access": "rwm"}),
            "b *:* rwm",
        ),
        (
            json!({"allow": true, "type": "c", "major": 1, "access": "rwm"}),
            "c 1:* rwm",
        ),
        (
            json!({"allow": true, "type": "a", "major": 1, "minor": 3, "access": "rwm"}),
            "a 1:3 rwm",
        ),
    ] {
        let r = refused(&with_device_rule(rule));
        assert_refusal(&r, "device", DEV_KEY);
        assert!(r.to_string().contains(text), "{text}: {r}");
    }
}

#[test]
fn device_rule_allowed_by_policy() {
    let mut p = Policy::default();
    p.refusals.allow_devices = vec!["b 8:0 rwm".into()];
    let s = with_device_rule(
        json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rwm"}),
    );
    ok_with(&s, &p, &facts());
    // A subset of the allowed access is allowed too.
    let s = with_device_rule(
        json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "r"}),
    );
    ok_with(&s, &p, &facts());
    // But not the neighbour.
    let s = with_device_rule(
        json!({"allow": true, "type": "b", "major": 8, "minor": 1, "access": "r"}),
    );
    assert_refusal(&refused_with(&s, &p, &facts()), "device", DEV_KEY);
}

#[test]
fn device_rule_subsets_of_defaults_are_covered() {
    for rule in [
        json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"}),
        json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "mwr"}),
        json!({"allow": true, "type": "c", "major": 136, "access": "rw"}),
        json!({"allow": true, "type": "u", "major": 1, "minor": 9, "access": "rw"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ] {
        ok(&with_device_rule(rule));
    }
}

#[test]
fn deny_device_rules_are_never_refused() {
    for rule in [
        json!({"allow": false, "type": "b", "major": 8, "minor": 0, "access": "rwm"}),
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": false, "type": "a"}),
    ] {
        ok(&with_device_rule(rule));
    }
}

fn with_device_node(dev: Value) -> Spec {
    docker_with(|v| v["linux"]["devices"] = json!([dev]))
}

#[test]
fn device_nodes_beyond_the_default_set_are_refused() {
    let r = refused(&with_device_node(
        json!({"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 432, "uid": 0, "gid": 6}),
    ));
    assert_refusal(&r, "device", DEV_KEY);
    assert!(r.to_string().contains("/dev/sda"), "{r}");
    assert!(r.to_string().contains("b 8:0 rwm"), "{r}");
    // A standard name with the wrong numbers is not the standard device.
    let r = refused(&with_device_node(
        json!({"path": "/dev/null", "type": "b", "major": 8, "minor": 0}),
    ));
    assert_refusal(&r, "device", DEV_KEY);
}

#[test]
fn standard_device_nodes_are_accepted() {
    for (path, major, minor) in [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ] {
        let h = ok(&with_device_node(
            json!({"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 438}),
        ));
        assert_eq!(
            h.spec
                .linux()
                .as_ref()
                .unwrap()
                .devices()
                .as_ref()
                .unwrap()
                .len(),
            1
        );
    }
}

#[test]
fn device_node_allowed_by_policy() {
    let mut p = Policy::default();
    p.refusals.allow_devices = vec!["c 10:229 rwm".into()];
    let s = docker_with(|v| {
        v["linux"]["devices"] =
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
        v["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}));
    });
    ok_with(&s, &p, &facts());
    assert_refusal(&refused(&s), "device", DEV_KEY);
}

#[test]
fn device_node_outside_dev_is_refused_even_with_allowed_numbers() {
    let mut p = Policy::default();
    p.refusals.allow_devices = vec!["c 10:229 rwm".into()];
    let s =
        with_device_node(json!({"path": "/etc/shadow", "type": "c", "major": 10, "minor": 229}));
    let r = refused_with(&s, &p, &facts());
    assert!(
        r.rule == "device" || r.rule == "sensitive-host-mount",
        "{r}"
    );
}

// ---------------------------------------------------------------------------
// 9. Annotations
// ---------------------------------------------------------------------------

#[test]
fn unknown_moat_annotation_is_refused() {
    let s = annotated(docker_json(), &[("moat.dev/foo", "bar")]);
    let r = refused(&s);
    assert_refusal(&r, "annotation", None);
    assert!(r.to_string().contains("moat.dev/foo"), "{r}");
    // Even when it would mean nothing harmful (a typo of a real key).
    let s = annotated(docker_json(), &[("moat.dev/resources.pid_limit", "10")]);
    assert_refusal(&refused(&s), "annotation", None);
}

#[test]
fn non_moat_annotations_are_ignored() {
    let s = annotated(
        docker_json(),
        &[
            ("io.kubernetes.cri.container-type", "container"),
            ("org.opencontainers.image.ref.name", "alpine"),
            ("moat.dev", "not a moat key"),
            ("example.com/moat.dev/foo", "x"),
        ],
    );
    let h = ok(&s);
    assert!(
        lines(&h.report, Rule::Annotations).is_empty(),
        "{}",
        h.report
    );
    assert_eq!(h.policy, Policy::default());
    // Annotations are passed through untouched.
    assert_eq!(h.spec.annotations(), s.annotations());
}

#[test]
fn one_annotations_line_per_applied_key() {
    let s = annotated(
        docker_json(),
        &[
            ("moat.dev/resources.pids_limit", "50"),
            ("moat.dev/filesystem.tmpfs_size", "16m"),
            ("moat.dev/capabilities.allow", "CAP_KILL"),
            ("io.kubernetes.cri.sandbox-id", "abc"),
        ],
    );
    let h = ok(&s);
    let fields: Vec<&str> = lines(&h.report, Rule::Annotations)
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    // Sorted by annotation name, so deterministic.
    assert_eq!(
        fields,
        vec![
            "policy.capabilities.allow",
            "policy.filesystem.tmpfs_size",
            "policy.resources.pids_limit"
        ]
    );
    for c in lines(&h.report, Rule::Annotations) {
        assert_eq!(c.before, "operator policy");
    }
    assert_eq!(pids(&h.spec), Some(50));
    assert!(has_opt(mount_at(&h.spec, "/tmp"), "size=16m"));
    assert_eq!(cap_set(&h.spec, "bounding").unwrap(), set(&["CAP_KILL"]));
    // The report starts with the annotations.
    assert_eq!(h.report.changes[0].rule, Rule::Annotations);
}

#[test]
fn annotation_tightening_a_refusal_list_applies() {
    // The operator allows fuse; the workload says it needs no device.
    let mut p = Policy::default();
    p.refusals.allow_devices = vec!["c 10:229 rwm".into()];
    let mut v = docker_json();
    v["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}));
    ok_with(&spec(v.clone()), &p, &facts());
    let s = annotated(v, &[("moat.dev/refusals.allow_devices", "")]);
    assert_refusal(&refused_with(&s, &p, &facts()), "device", DEV_KEY);
}

// ---------------------------------------------------------------------------
// 10. Purity and idempotence
// ---------------------------------------------------------------------------

fn interesting_specs() -> Vec<(&'static str, Spec)> {
    vec![
        ("docker", docker_spec()),
        ("runc", runc_spec()),
        (
            "no caps, no masks, no resources",
            runc_with(|v| {
                v["process"].as_object_mut().unwrap().remove("capabilities");
                let l = v["linux"].as_object_mut().unwrap();
                l.remove("maskedPaths");
                l.remove("readonlyPaths");
                l.remove("resources");
            }),
        ),
        (
            "binds, tmp and user namespace",
            docker_with(|v| {
                add_mount(
                    v,
                    json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["suid"]}),
                );
                add_mount(
                    v,
                    json!({"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "suid", "dev"]}),
                );
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                v["linux"]["uidMappings"] = json!([mapping(0, 0, 65536)]);
                v["linux"]["resources"]["pids"] = json!({"limit": -1});
                v["process"]["capabilities"]["ambient"] = json!(["CAP_KILL", "CAP_NET_RAW"]);
            }),
        ),
        (
            "workload allowlist profile",
            docker_with(|v| {
                v["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [
                        {"names": ["read", "write", "bpf", "clone"], "action": "SCMP_ACT_ALLOW"}
                    ]
                });
            }),
        ),
        (
            "workload allowlist profile, ENOSYS default",
            docker_with(|v| {
                v["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "defaultErrnoRet": 38,
                    "syscalls": [
                        {"names": ["read", "ptrace"], "action": "SCMP_ACT_ALLOW"}
                    ]
                });
            }),
        ),
    ]
}

fn denylist_spec() -> Spec {
    docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}
            ]
        });
    })
}

#[test]
fn harden_does_not_touch_its_input() {
    let mut all = interesting_specs();
    all.push(("denylist", denylist_spec()));
    for (name, s) in all {
        let before = to_json(&s);
        let copy = s.clone();
        let h = ok(&s);
        assert_eq!(to_json(&s), before, "{name}");
        assert_eq!(s, copy, "{name}");
        assert_ne!(to_json(&h.spec), before, "{name}: nothing hardened?");
    }
    // Refusals do not touch it either.
    let s = without_namespace("pid");
    let before = to_json(&s);
    refused(&s);
    assert_eq!(to_json(&s), before);
}

#[test]
fn harden_is_deterministic() {
    for (name, s) in interesting_specs() {
        let a = ok(&s);
        let b = ok(&s);
        assert_eq!(a.spec, b.spec, "{name}");
        assert_eq!(a.report, b.report, "{name}");
    }
}

#[test]
fn hardening_is_a_fixed_point() {
    for (name, s) in interesting_specs() {
        let once = ok(&s);
        let twice = ok(&once.spec);
        assert!(
            twice.report.changes.is_empty(),
            "{name}: second pass changed:\n{}",
            twice.report
        );
        assert_eq!(twice.spec, once.spec, "{name}");
    }
}

#[test]
fn hardening_a_denylist_profile_twice_reports_nothing_new() {
    let once = ok(&denylist_spec());
    let twice = ok(&once.spec);
    assert!(twice.report.changes.is_empty(), "{}", twice.report);
}

#[test]
fn hardening_a_denylist_profile_twice_is_a_fixed_point() {
    let once = ok(&denylist_spec());
    let twice = ok(&once.spec);
    assert_eq!(
        rules(&seccomp_of(&twice.spec)).len(),
        rules(&seccomp_of(&once.spec)).len()
    );
    assert_eq!(twice.spec, once.spec);
}

#[test]
fn hardening_with_annotations_twice_reports_only_the_annotations() {
    let s = annotated(
        docker_json(),
        &[
            ("moat.dev/resources.pids_limit", "100"),
            ("moat.dev/filesystem.tmpfs_size", "8m"),
        ],
    );
    let once = ok(&s);
    let twice = ok(&once.spec);
    assert!(
        twice
            .report
            .changes
            .iter()
            .all(|c| c.rule == Rule::Annotations),
        "{}",
        twice.report
    );
    assert_eq!(lines(&twice.report, Rule::Annotations).len(), 2);
    assert_eq!(twice.spec, once.spec);
}

// ---------------------------------------------------------------------------
// 11. harden_process (exec)
// ---------------------------------------------------------------------------

fn exec_process() -> Process {
    serde_json::from_value(json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "id"],
        "env": ["PATH=/usr/bin:/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_RAW", "CAP_CHOWN"],
            "effective": ["CAP_SYS_ADMIN", "CAP_KILL"],
            "permitted": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_SYS_ADMIN", "CAP_KILL"],
            "ambient": ["CAP_SYS_ADMIN", "CAP_KILL"]
        },
        "noNewPrivileges": false
    }))
    .expect("exec process parses")
}

fn process_caps(p: &Process, which: &str) -> BTreeSet<String> {
    let c = p.capabilities().clone().unwrap();
    let s = match which {
        "bounding" => c.bounding().clone(),
        "effective" => c.effective().clone(),
        "permitted" => c.permitted().clone(),
        "inheritable" => c.inheritable().clone(),
        _ => c.ambient().clone(),
    };
    s.unwrap().iter().map(capability_name).collect()
}

#[test]
fn harden_process_cuts_capabilities_and_sets_nnp() {
    let input = exec_process();
    let before = serde_json::to_value(&input).unwrap();
    let mut report = Report::default();
    let out = harden_process(&input, &Policy::default(), &mut report);
    assert_eq!(
        serde_json::to_value(&input).unwrap(),
        before,
        "input untouched"
    );

    assert_eq!(
        process_caps(&out, "bounding"),
        set(&["CAP_KILL", "CAP_CHOWN"])
    );
    assert_eq!(process_caps(&out, "effective"), set(&["CAP_KILL"]));
    assert_eq!(
        process_caps(&out, "permitted"),
        set(&["CAP_KILL", "CAP_CHOWN"])
    );
    assert_eq!(process_caps(&out, "inheritable"), set(&["CAP_KILL"]));
    assert_eq!(process_caps(&out, "ambient"), set(&["CAP_KILL"]));
    assert_eq!(out.no_new_privileges(), Some(true));
    // Everything else is the caller's.
    assert_eq!(out.args(), input.args());
    assert_eq!(out.env(), input.env());
    assert_eq!(out.cwd(), input.cwd());

    for which in SETS {
        let l = line(
            &report,
            Rule::Capabilities,
            &format!("process.capabilities.{which}"),
        );
        assert!(l.why.contains("CAP_SYS_ADMIN"), "{which}: {}", l.why);
    }
    assert_eq!(
        line(&report, Rule::NoNewPrivileges, "process.noNewPrivileges").before,
        "Some(false)"
    );
    // Only capability and nnp lines: exec changes nothing else.
    assert!(report
        .changes
        .iter()
        .all(|c| c.rule == Rule::Capabilities || c.rule == Rule::NoNewPrivileges));

    // A second pass is a no-op.
    let mut again = Report::default();
    let out2 = harden_process(&out, &Policy::default(), &mut again);
    assert_eq!(out2, out);
    assert!(again.changes.is_empty(), "{again}");
}

#[test]
fn harden_process_uses_the_effective_policy() {
    let s = annotated(
        docker_json(),
        &[("moat.dev/capabilities.allow", "CAP_KILL")],
    );
    let h = ok(&s);
    let mut report = Report::default();
    let out = harden_process(&exec_process(), &h.policy, &mut report);
    for which in SETS {
        assert_eq!(process_caps(&out, which), set(&["CAP_KILL"]), "{which}");
    }
}

#[test]
fn harden_process_without_capabilities_gets_empty_sets() {
    let p: Process = serde_json::from_value(json!({
        "user": {"uid": 0, "gid": 0},
        "args": ["true"],
        "cwd": "/"
    }))
    .unwrap();
    assert!(p.capabilities().is_none());
    let mut report = Report::default();
    let out = harden_process(&p, &Policy::default(), &mut report);
    for which in SETS {
        assert_eq!(process_caps(&out, which), BTreeSet::new(), "{which}");
    }
    assert_eq!(out.no_new_privileges(), Some(true));
    assert_eq!(lines(&report, Rule::NoNewPrivileges).len(), 1);
    assert!(lines(&report, Rule::Capabilities).is_empty());
}

#[test]
fn cwd_under_proc_is_refused() {
    for cwd in [
        "/proc/self/fd/7",
        "/proc/1/cwd",
        "/tmp/../proc/self/cwd",
        "relative",
    ] {
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        v["process"]["cwd"] = serde_json::json!(cwd);
        let s: Spec = serde_json::from_value(v).unwrap();
        let r = harden(&s, &Policy::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(r.rule, "cwd", "{cwd}: {r}");
    }
    let mut v = serde_json::to_value(Spec::default()).unwrap();
    v["process"]["cwd"] = serde_json::json!("/srv/app");
    let s: Spec = serde_json::from_value(v).unwrap();
    assert!(harden(&s, &Policy::default(), &HostFacts::default()).is_ok());
}

fn sysctl_of(s: &Spec, key: &str) -> Option<String> {
    s.linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .and_then(|m| m.get(key).cloned())
}

const PORT_START: &str = crate::harden::UNPRIVILEGED_PORT_START;

#[test]
fn bind_service_opens_low_ports_in_the_containers_own_netns() {
    // runc's spec keeps CAP_NET_BIND_SERVICE and has a network namespace.
    let h = ok(&runc_spec());
    assert_eq!(sysctl_of(&h.spec, PORT_START).as_deref(), Some("0"));
    let field = format!("linux.sysctl[{PORT_START}]");
    assert_eq!(line(&h.report, Rule::UserNamespace, &field).after, "0");
}

#[test]
fn low_ports_keep_what_the_workload_set() {
    let s = runc_with(|v| {
        v["linux"]["sysctl"] = json!({ PORT_START: "1024" });
    });
    let h = ok(&s);
    assert_eq!(sysctl_of(&h.spec, PORT_START).as_deref(), Some("1024"));
    let field = format!("linux.sysctl[{PORT_START}]");
    assert!(!has_line(&h.report, Rule::UserNamespace, &field));
}

#[test]
fn low_ports_stay_privileged_without_bind_service() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({"bounding": ["CAP_KILL"]});
    });
    assert_eq!(sysctl_of(&ok(&s).spec, PORT_START), None);
    // Narrowed away by an annotation, too.
    let s = annotated(runc_json(), &[("moat.dev/capabilities.allow", "CAP_KILL")]);
    assert_eq!(sysctl_of(&ok(&s).spec, PORT_START), None);
}

#[test]
fn low_ports_untouched_in_the_hosts_netns() {
    // The operator lets this container share the host's network namespace:
    // moat must not change a host sysctl.
    let mut p = Policy::default();
    p.refusals.allow_host_namespaces = vec!["network".into()];
    let s = runc_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
    });
    let h = ok_with(&s, &p, &facts());
    assert_eq!(sysctl_of(&h.spec, PORT_START), None);
    // A path that is the host's namespace (facts say so).
    let s = runc_with(|v| {
        for n in v["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!("/proc/1/ns/net");
            }
        }
    });
    let f = HostFacts {
        host_namespace_paths: vec![LinuxNamespaceType::Network],
        ..facts()
    };
    let h = ok_with(&s, &p, &f);
    assert_eq!(sysctl_of(&h.spec, PORT_START), None);
}

#[test]
fn low_ports_are_decided_by_the_first_container_of_a_netns() {
    let joining = |annotations: &[(&str, &str)]| {
        let mut v = runc_json();
        for n in v["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!("/var/run/netns/cni-1234");
            }
        }
        annotated(v, annotations)
    };
    // A pod's sandbox is the first in the pod's (CNI-made) namespace.
    let sandbox = joining(&[("io.kubernetes.cri.container-type", "sandbox")]);
    assert_eq!(
        sysctl_of(&ok(&sandbox).spec, PORT_START).as_deref(),
        Some("0")
    );
    // The pod's other containers, and any other joiner, leave it as the
    // first one set it (a pod's own sysctl is not overwritten).
    let app = joining(&[("io.kubernetes.cri.container-type", "container")]);
    assert_eq!(sysctl_of(&ok(&app).spec, PORT_START), None);
    assert_eq!(sysctl_of(&ok(&joining(&[])).spec, PORT_START), None);
}

// ---------------------------------------------------------------------------
// HOME without the name service (T20)
// ---------------------------------------------------------------------------

fn env_of(s: &Spec) -> Vec<String> {
    s.process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default()
}

fn homes(s: &Spec) -> Vec<String> {
    env_of(s)
        .into_iter()
        .filter(|e| e.starts_with("HOME="))
        .collect()
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      broken-line\n\
                      nohome:x:7:7::relative/dir:/bin/sh\n\
                      app:x:1000:1000:App:/home/app:/bin/sh\n\
                      dup:x:1000:1000::/home/second:/bin/sh\n";

fn facts_with_passwd(passwd: Option<&str>) -> HostFacts {
    HostFacts {
        image_passwd: passwd.map(str::to_string),
        ..facts()
    }
}

#[test]
fn home_is_set_from_the_image_passwd_when_the_spec_has_none() {
    // `runc spec` has no HOME: libcontainer would look it up through NSS.
    let s = runc_spec();
    assert!(homes(&s).is_empty());
    let h = ok_with(&s, &Policy::default(), &facts_with_passwd(Some(PASSWD)));
    assert_eq!(homes(&h.spec), vec!["HOME=/root".to_string()]);
    let l = line(&h.report, Rule::HomeEnv, "process.env.HOME");
    assert_eq!((l.before.as_str(), l.after.as_str()), ("unset", "/root"));
    assert_eq!(Rule::HomeEnv.threat(), "T20");
    // The rest of the environment is kept, in order.
    let before = env_of(&s);
    assert_eq!(&env_of(&h.spec)[..before.len()], &before[..]);
}

#[test]
fn home_follows_the_process_uid_and_defaults_to_root_dir() {
    for (uid, passwd, want) in [
        (1000, Some(PASSWD), "/home/app"), // first entry wins
        (7, Some(PASSWD), "/"),            // relative dir is ignored
        (4242, Some(PASSWD), "/"),         // no entry
        (0, None, "/"),                    // image has no passwd
        (0, Some(""), "/"),
        (0, Some("root:x:0:0"), "/"), // too few fields
    ] {
        let s = runc_with(|v| v["process"]["user"]["uid"] = json!(uid));
        let h = ok_with(&s, &Policy::default(), &facts_with_passwd(passwd));
        assert_eq!(homes(&h.spec), vec![format!("HOME={want}")], "uid {uid}");
    }
}

fn runc_with_env(entry: &str) -> Spec {
    runc_with(|v| {
        v["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(entry))
    })
}

#[test]
fn a_spec_home_is_kept_and_an_empty_one_replaced() {
    let s = runc_with_env("HOME=/data");
    let h = ok_with(&s, &Policy::default(), &facts_with_passwd(Some(PASSWD)));
    assert_eq!(homes(&h.spec), vec!["HOME=/data".to_string()]);
    assert!(lines(&h.report, Rule::HomeEnv).is_empty());

    let s = runc_with_env("HOME=");
    let h = ok_with(&s, &Policy::default(), &facts_with_passwd(Some(PASSWD)));
    assert_eq!(homes(&h.spec), vec!["HOME=/root".to_string()]);
    assert_eq!(
        line(&h.report, Rule::HomeEnv, "process.env.HOME").before,
        "HOME= (empty)"
    );
}

#[test]
fn home_from_passwd_parses_only_well_formed_entries() {
    use crate::harden::home_from_passwd;
    assert_eq!(home_from_passwd(PASSWD, 0).as_deref(), Some("/root"));
    assert_eq!(home_from_passwd(PASSWD, 1000).as_deref(), Some("/home/app"));
    assert_eq!(home_from_passwd(PASSWD, 7), None);
    assert_eq!(
        home_from_passwd(" x:x: 5 :5::/five:/bin/sh", 5).as_deref(),
        Some("/five")
    );
    assert_eq!(home_from_passwd("x:x:-1:0::/neg:/bin/sh", u32::MAX), None);
    assert_eq!(home_from_passwd("x:x:99999999999:0::/big:/bin/sh", 0), None);
}
