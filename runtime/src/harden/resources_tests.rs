//! Unit tests of [`super`] (resources).

use crate::harden::fixtures::*;

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

fn with_unified(pairs: Value) -> Spec {
    docker_with(|v| v["linux"]["resources"]["unified"] = pairs)
}

#[test]
fn unified_allowlisted_keys_with_valid_values_are_kept() {
    let s = with_unified(json!({
        "memory.max": "1073741824", "memory.high": "max", "memory.swap.max": "0",
        "cpu.max": "50000 100000", "cpu.weight": "100", "io.weight": "default 100",
        "io.max": "8:0 rbps=1048576 wiops=max", "cpuset.cpus": "0-1,3", "pids.max": "100",
        "memory.oom.group": "1"
    }));
    let h = ok(&s);
    let unified = h
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap()
        .unified()
        .clone();
    assert_eq!(unified.unwrap().len(), 10);
}

#[test]
fn unified_unknown_keys_paths_and_bad_values_are_refused() {
    for (key, value) in [
        ("../../cgroup.procs", "1"),
        ("foo/memory.max", "1"),
        ("cgroup.procs", "1"),
        ("cgroup.subtree_control", "+memory"),
        ("cpuset.cpus.partition", "root"),
        ("memory.max", "lots"),
        ("cpu.weight", "0"),
        ("io.max", "8:0 foo=1"),
        ("pids.max", "max"),
        ("pids.max", "4097"),
        ("pids.max", "0"),
    ] {
        let r = refused(&with_unified(json!({ key: value })));
        assert_refusal(
            &r,
            "cgroup-resources",
            (key == "pids.max").then_some("resources.pids_limit"),
        );
        assert!(r.detail.contains(key), "{key}: {r}");
        assert_eq!(r.rule.threat(), "T24");
    }
}

#[test]
fn unified_pids_max_is_judged_against_the_containers_own_limit() {
    // The spec lowers its pids limit to 100: pids.max may not exceed it.
    let s = docker_with(|v| {
        v["linux"]["resources"]["pids"] = json!({"limit": 100});
        v["linux"]["resources"]["unified"] = json!({"pids.max": "101"});
    });
    assert_refusal(
        &refused(&s),
        "cgroup-resources",
        Some("resources.pids_limit"),
    );
    let caps = crate::harden::UnifiedCeilings::of(1, &Policy::default(), None);
    assert!(crate::harden::refuse_unified(None, &caps).is_ok());
}

/// docker's --oom-kill-disable: the OOM killer stays on, reported (T8).
#[test]
fn disable_oom_killer_is_turned_back_off_and_reported() {
    let with = |disable: bool| {
        docker_with(|v| {
            v["linux"]["resources"]["memory"] =
                json!({"limit": 67108864, "disableOOMKiller": disable})
        })
    };
    let h = ok(&with(true));
    let memory = h
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .and_then(|r| *r.memory())
        .unwrap();
    assert_eq!(memory.disable_oom_killer(), Some(false));
    assert_eq!(memory.limit(), Some(67108864));
    let l = line(
        &h.report,
        Rule::OomKiller,
        "linux.resources.memory.disableOOMKiller",
    );
    assert_eq!((l.before.as_str(), l.after.as_str()), ("true", "false"));
    assert_eq!(Rule::OomKiller.threat(), "T8");
    assert_eq!(
        crate::harden::fields::class_of("linux.resources.memory.disableOOMKiller"),
        Some(crate::harden::fields::FieldClass::Hardened("oom-killer"))
    );
    let h = ok(&with(false));
    assert!(lines(&h.report, Rule::OomKiller).is_empty());
}

// ---- relative weights (red-team pass 4 F3; threat T8, weights)

fn with_resources(resources: Value) -> Spec {
    docker_with(|v| {
        for (k, val) in resources.as_object().unwrap() {
            v["linux"]["resources"][k] = val.clone();
        }
    })
}

fn cpus(n: u32) -> HostFacts {
    HostFacts {
        online_cpus: Some(n),
        ..facts()
    }
}

fn resources_of(h: &Hardened) -> oci_spec::runtime::LinuxResources {
    h.spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap()
}

/// A raw tenant asking for the kernel's largest cpu.shares next to
/// docker's 1024 is cut to 1024 per CPU of the host (kubelet's most), and
/// a weight within the cap is kept.
#[test]
fn cpu_shares_above_the_cap_are_cut_to_1024_per_cpu() {
    let s = with_resources(json!({"cpu": {"shares": 262144, "quota": 50000}}));
    let h = ok_with(&s, &Policy::default(), &cpus(4));
    let cpu = resources_of(&h).cpu().clone().unwrap();
    assert_eq!(cpu.shares(), Some(4096));
    assert_eq!(cpu.quota(), Some(50000), "other cpu settings are kept");
    let l = line(
        &h.report,
        Rule::RelativeWeights,
        "linux.resources.cpu.shares",
    );
    assert_eq!((l.before.as_str(), l.after.as_str()), ("262144", "4096"));
    assert_eq!(Rule::RelativeWeights.threat(), "T8");
    // Unknown CPU count: one CPU's worth (docker's default).
    let h = ok(&s);
    assert_eq!(resources_of(&h).cpu().clone().unwrap().shares(), Some(1024));
    // Within the cap (kubelet's 2-CPU pod on a 4-CPU host): kept, no line.
    let s = with_resources(json!({"cpu": {"shares": 2048}}));
    let h = ok_with(&s, &Policy::default(), &cpus(4));
    assert_eq!(resources_of(&h).cpu().clone().unwrap().shares(), Some(2048));
    assert!(lines(&h.report, Rule::RelativeWeights).is_empty());
    // The operator's own cap wins over the CPU count.
    let mut p = Policy::default();
    p.resources.cpu_shares_max = 512;
    let h = ok_with(&s, &p, &cpus(64));
    assert_eq!(resources_of(&h).cpu().clone().unwrap().shares(), Some(512));
    assert_eq!(
        crate::harden::fields::class_of("linux.resources.cpu.shares"),
        Some(crate::harden::fields::FieldClass::Hardened(
            "relative-weights"
        ))
    );
}

#[test]
fn blkio_weights_above_the_cap_are_cut_everywhere() {
    let s = with_resources(json!({"blockIO": {
        "weight": 1000, "leafWeight": 900,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 1000, "leafWeight": 100}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]
    }}));
    let h = ok(&s);
    let blkio = resources_of(&h).block_io().clone().unwrap();
    assert_eq!(blkio.weight(), Some(500));
    assert_eq!(blkio.leaf_weight(), Some(500));
    let d = blkio.weight_device().clone().unwrap()[0];
    assert_eq!((d.weight(), d.leaf_weight()), (Some(500), Some(100)));
    assert_eq!(
        blkio.throttle_read_bps_device().clone().unwrap()[0].rate(),
        1048576,
        "limits are kept"
    );
    let fields: Vec<&str> = lines(&h.report, Rule::RelativeWeights)
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "linux.resources.blockIO.weight",
            "linux.resources.blockIO.leafWeight",
            "linux.resources.blockIO.weightDevice[8:0].weight",
        ]
    );
    // docker's --blkio-weight 300 is within the default cap.
    let h = ok(&with_resources(json!({"blockIO": {"weight": 300}})));
    assert_eq!(
        resources_of(&h).block_io().clone().unwrap().weight(),
        Some(300)
    );
    assert!(lines(&h.report, Rule::RelativeWeights).is_empty());
}

/// cgroup v2 weights written through `unified` are judged against the same
/// caps (refused, as pids.max is: unified is checked, not rewritten).
#[test]
fn unified_weights_above_the_caps_are_refused() {
    for (key, value, policy_key) in [
        ("cpu.weight", "10000", "resources.cpu_shares_max"),
        ("cpu.weight", "101", "resources.cpu_shares_max"),
        ("cpu.weight.nice", "-1", "resources.cpu_shares_max"),
        ("io.weight", "101", "resources.blkio_weight_max"),
        ("io.weight", "default 10000", "resources.blkio_weight_max"),
        ("io.bfq.weight", "8:0 1000", "resources.blkio_weight_max"),
    ] {
        let r = refused(&with_unified(json!({ key: value })));
        assert_refusal(&r, "cgroup-resources", Some(policy_key));
        assert!(r.detail.contains("above the cap"), "{key}={value}: {r}");
    }
    for (key, value) in [
        ("cpu.weight", "100"),
        ("cpu.weight.nice", "0"),
        ("cpu.weight.nice", "19"),
        ("io.weight", "default 100"),
        ("io.bfq.weight", "8:0 50"),
    ] {
        ok(&with_unified(json!({ key: value })));
    }
    // With 4 CPUs the cap is 4096: cpu.weight 400 (4096 * 100 / 1024) and
    // nice -6 (3906) fit, 401 and nice -7 (4904) do not.
    let caps = crate::harden::UnifiedCeilings::of(4096, &Policy::default(), Some(4));
    let unified = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
    let judge = |k: &str, v: &str| crate::harden::refuse_unified(Some(&unified(k, v)), &caps);
    assert!(judge("cpu.weight", "400").is_ok());
    assert!(judge("cpu.weight", "401").is_err());
    assert!(judge("cpu.weight.nice", "-6").is_ok());
    assert!(judge("cpu.weight.nice", "-7").is_err());
    assert!(judge("cpu.weight.nice", "-21").is_err());
}

#[test]
fn network_class_ids_and_priorities_are_refused_unless_allowed() {
    for network in [
        json!({"classID": 1048577}),
        json!({"priorities": [{"name": "eth0", "priority": 7}]}),
    ] {
        let s = with_resources(json!({ "network": network }));
        let r = refused(&s);
        assert_refusal(
            &r,
            "cgroup-resources",
            Some("resources.allow_network_classes"),
        );
        assert!(r.detail.contains("linux.resources.network"), "{r}");
        let mut p = Policy::default();
        p.resources.allow_network_classes = true;
        ok_with(&s, &p, &facts());
    }
    // An empty network section asks for nothing.
    ok(&with_resources(json!({"network": {"priorities": []}})));
}

#[test]
fn policy_weight_caps_are_validated() {
    assert!(Policy::from_toml("[resources]\ncpu_shares_max = 1\n").is_err());
    assert!(Policy::from_toml("[resources]\ncpu_shares_max = 262145\n").is_err());
    assert!(Policy::from_toml("[resources]\nblkio_weight_max = 9\n").is_err());
    assert!(Policy::from_toml("[resources]\nblkio_weight_max = 1001\n").is_err());
    let p =
        Policy::from_toml("[resources]\ncpu_shares_max = 2048\nblkio_weight_max = 1000\n").unwrap();
    assert_eq!(p.resources.cpu_shares_cap(Some(64)), 2048);
    let d = Policy::default();
    assert_eq!(d.resources.cpu_shares_cap(None), 1024);
    assert_eq!(d.resources.cpu_shares_cap(Some(2)), 2048);
    assert_eq!(d.resources.cpu_shares_cap(Some(1000)), 262_144);
}
