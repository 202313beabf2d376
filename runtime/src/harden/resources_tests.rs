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
    assert!(crate::harden::refuse_unified(None, 1).is_ok());
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
