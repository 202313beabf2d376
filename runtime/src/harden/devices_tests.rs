//! Unit tests of [`super`] (devices).

use crate::harden::fixtures::*;

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
