//! Unit tests of the whole hardening: the fixtures are accepted, annotations,
//! and purity (no input touched, deterministic, a fixed point).

use crate::harden::fixtures::*;

#[test]
fn fixtures_parse_and_are_accepted() {
    let d = docker_spec();
    assert_eq!(d.version(), "1.0.2");
    assert_eq!(cap_set(&d, "bounding").unwrap(), set(DOCKER_CAPS));
    assert_eq!(cap_set(&d, "ambient"), None);
    ok(&d);
    ok(&runc_spec());
}

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
                // An engine's mapping is kept only when safe (see userns).
                v["linux"]["uidMappings"] = json!([mapping(0, RANGE.host_id, RANGE.size)]);
                v["linux"]["gidMappings"] = json!([mapping(0, RANGE.host_id, RANGE.size)]);
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

#[test]
fn miscased_moat_annotations_are_refused() {
    for name in [
        "Moat.dev/resources.pids_limit",
        "MOAT.DEV/egress.enabled",
        "moat.DEV/x",
    ] {
        let r = refused(&annotated(docker_json(), &[(name, "1")]));
        assert_refusal(&r, "annotation", None);
        assert!(r.detail.contains(name), "{r}");
    }
    // An unknown key under the right prefix is refused with its name too.
    let r = refused(&annotated(
        docker_json(),
        &[("moat.dev/Resources.pids_limit", "1")],
    ));
    assert!(r.detail.contains("moat.dev/Resources.pids_limit"), "{r}");
    // Other prefixes stay ignored.
    ok(&annotated(
        docker_json(),
        &[("moat.devx/a", "1"), ("m", "1")],
    ));
}
