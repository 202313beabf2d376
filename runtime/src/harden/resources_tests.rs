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
