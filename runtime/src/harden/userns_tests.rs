//! Unit tests of [`super`] (userns).

use crate::engine_bundle::Origin;
use crate::harden::fixtures::*;

const PORT_START: &str = crate::harden::UNPRIVILEGED_PORT_START;

#[test]
fn user_namespace_added_with_the_allocated_range() {
    let h = ok(&docker_spec());
    let types = namespace_types(&h.spec);
    assert_eq!(namespaces_of(&h.spec, LinuxNamespaceType::User).len(), 1);
    let user = namespace_of(&h.spec, LinuxNamespaceType::User);
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

fn with_engine_mappings(uid: Value, gid: Value) -> Spec {
    docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        v["linux"]["uidMappings"] = uid;
        v["linux"]["gidMappings"] = gid;
    })
}

#[test]
fn user_namespace_engine_mappings_below_the_floor_are_refused() {
    // Host root, a host user's ids (docker's userns-remap 100000), and a
    // range that starts above the floor's predecessor but below it.
    for host in [0, 100_000, (1 << 30) - 1] {
        let s = with_engine_mappings(
            json!([mapping(0, host, 65536)]),
            json!([mapping(0, host, 65536)]),
        );
        let r = refused(&s);
        assert_refusal(&r, "user-namespace-mapping", None);
        assert!(r.detail.contains("host_id_base"), "{r}");
        assert!(r.detail.contains(&format!("host ids {host}-")), "{r}");
    }
}

#[test]
fn user_namespace_engine_mappings_must_be_one_equal_range_from_zero() {
    let ok_map = || json!([mapping(0, RANGE.host_id, RANGE.size)]);
    for (uid, gid) in [
        (
            ok_map(),
            json!([mapping(0, 0, 1), mapping(1, RANGE.host_id, 65535)]),
        ),
        (
            ok_map(),
            json!([mapping(0, RANGE.host_id + 65536, RANGE.size)]),
        ),
        (
            json!([mapping(1, RANGE.host_id, RANGE.size)]),
            json!([mapping(1, RANGE.host_id, RANGE.size)]),
        ),
        (ok_map(), json!([])),
        (
            json!([mapping(0, u32::MAX - 10, 65536)]),
            json!([mapping(0, u32::MAX - 10, 65536)]),
        ),
    ] {
        let r = refused(&with_engine_mappings(uid.clone(), gid));
        assert_refusal(&r, "user-namespace-mapping", None);
    }
}

#[test]
fn user_namespace_engine_mapping_is_kept_and_not_reported() {
    let engine = IdRange {
        host_id: (1 << 30) + 7 * 65536,
        size: 65536,
    };
    let m = || json!([mapping(0, engine.host_id, engine.size)]);
    let s = with_engine_mappings(m(), m());
    // What precheck does: the rule, with the ranges others hold, names the
    // range create then claims and puts in `id_range`.
    let policy = Policy::default();
    assert_eq!(
        crate::harden::engine_id_range(&s, &policy.user_namespace, Origin::Unknown, &[RANGE])
            .unwrap(),
        Some(engine)
    );
    let facts = HostFacts {
        id_range: Some(engine),
        ..Default::default()
    };
    let h = ok_with(&s, &policy, &facts);
    let linux = h.spec.linux().as_ref().unwrap();
    let want = vec![(0, engine.host_id, engine.size)];
    assert_eq!(id_maps(linux.uid_mappings()), want);
    assert_eq!(id_maps(linux.gid_mappings()), want);
    assert!(!has_line(
        &h.report,
        Rule::UserNamespace,
        "linux.uidMappings"
    ));
    // explain (no range allocated) shows the engine's, not the pool's first.
    let h = ok_with(&s, &policy, &HostFacts::default());
    let linux = h.spec.linux().as_ref().unwrap();
    assert_eq!(id_maps(linux.uid_mappings()), want);
    // No user namespace asked for: the mappings are the engine's leftovers,
    // replaced by moat's range as before.
    let s = docker_with(|v| {
        v["linux"]["uidMappings"] = json!([mapping(0, 0, 65536)]);
        v["linux"]["gidMappings"] = json!([mapping(0, 0, 65536)]);
    });
    assert_eq!(
        crate::harden::engine_id_range(&s, &policy.user_namespace, Origin::Unknown, &[]).unwrap(),
        None
    );
    let h = ok(&s);
    let linux = h.spec.linux().as_ref().unwrap();
    assert_eq!(
        id_maps(linux.uid_mappings()),
        vec![(0, RANGE.host_id, RANGE.size)]
    );
}

#[test]
fn user_namespace_engine_mapping_overlapping_a_held_range_is_refused() {
    let policy = Policy::default();
    let engine = RANGE;
    let m = || json!([mapping(0, engine.host_id, engine.size)]);
    let s = with_engine_mappings(m(), m());
    let r = crate::harden::engine_id_range(&s, &policy.user_namespace, Origin::Unknown, &[RANGE])
        .unwrap_err();
    assert_refusal(&r, "user-namespace-mapping", None);
    assert!(r.detail.contains("another container holds"), "{r}");
    // Adjacent ranges do not overlap.
    let next = IdRange {
        host_id: RANGE.host_id + RANGE.size,
        size: 1,
    };
    assert!(!crate::harden::userns_overlaps(RANGE, next));
    assert!(crate::harden::userns_overlaps(
        RANGE,
        IdRange {
            host_id: next.host_id - 1,
            size: 1
        }
    ));
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

fn sysctl_of(s: &Spec, key: &str) -> Option<String> {
    s.linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .and_then(|m| m.get(key).cloned())
}

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

/// A container of its own joins the user namespace moat made for it (owned
/// by the range's host uid, T8) instead of a new one libcontainer would
/// unshare as host root; its mapping is still the range.
#[test]
fn own_user_namespace_is_joined_by_its_handle() {
    let s = docker_with(|_| {});
    let f = HostFacts {
        own_user_namespace: Some(std::path::PathBuf::from("/proc/self/fd/9")),
        id_range: Some(IdRange {
            host_id: 300_000,
            size: 65536,
        }),
        ..facts()
    };
    let h = ok_with(&s, &Policy::default(), &f);
    let users = namespaces_of(&h.spec, LinuxNamespaceType::User);
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0].path().as_deref(),
        Some(std::path::Path::new("/proc/self/fd/9"))
    );
    let linux = h.spec.linux().as_ref().unwrap();
    for m in [linux.uid_mappings(), linux.gid_mappings()] {
        let m = m.clone().unwrap();
        assert_eq!(
            (m[0].container_id(), m[0].host_id(), m[0].size()),
            (0, 300_000, 65536)
        );
    }
    // Without the fact (explain, precheck) libcontainer makes it.
    let h = ok_with(
        &s,
        &Policy::default(),
        &HostFacts {
            own_user_namespace: None,
            ..f
        },
    );
    let users = namespaces_of(&h.spec, LinuxNamespaceType::User);
    assert_eq!((users.len(), users[0].path().clone()), (1, None));
}

/// A pod member joins the user namespace moat pinned (the facts' handle),
/// whatever user namespace path the spec named, with the pod's range.
#[test]
fn pod_member_joins_the_pinned_user_namespace() {
    let s = docker_with(|v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": "/proc/4242/ns/user"}));
    });
    let f = HostFacts {
        pod_user_namespace: Some(std::path::PathBuf::from("/proc/self/fd/7")),
        id_range: Some(IdRange {
            host_id: 200_000,
            size: 65536,
        }),
        ..facts()
    };
    let h = ok_with(&s, &Policy::default(), &f);
    let users = namespaces_of(&h.spec, LinuxNamespaceType::User);
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0].path().as_deref(),
        Some(std::path::Path::new("/proc/self/fd/7"))
    );
    let uid = h
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .uid_mappings()
        .clone()
        .unwrap();
    assert_eq!((uid[0].host_id(), uid[0].size()), (200_000, 65536));
    assert!(has_line(&h.report, Rule::UserNamespace, "linux.namespaces"));
    // Without the pinned namespace the same spec is refused.
    assert_refusal(&refused(&s), "user-namespace-path", None);
}

/// Red-team R7: a raw bundle's "engine-given" mapping is the tenant's
/// choice (refused), and an engine's is at most one slot of the pool,
/// aligned: one container cannot hold the whole pool.
#[test]
fn given_mappings_only_from_engine_bundles_and_one_aligned_slot() {
    let policy = Policy::default();
    let ns = &policy.user_namespace;
    let base = ns.host_id_base;
    let with = |host: u32, size: u32| {
        let m = || json!([mapping(0, host, size)]);
        with_engine_mappings(m(), m())
    };
    // The docker fixture binds docker container abc's files.
    let cri = crate::engine_bundle::EngineBundle {
        namespace: "moby".into(),
        id: "abc".into(),
    };
    let engine = Origin::Engine(&cri);
    let slot = base + 40 * 65536;
    assert_eq!(
        crate::harden::engine_id_range(&with(slot, 65536), ns, engine, &[]).unwrap(),
        Some(IdRange {
            host_id: slot,
            size: 65536
        })
    );
    // Smaller than a slot is fine too.
    crate::harden::engine_id_range(&with(slot, 1000), ns, engine, &[]).unwrap();
    // The same mapping from a raw bundle: refused, whatever it is.
    let r = crate::harden::engine_id_range(&with(slot, 65536), ns, Origin::Raw, &[]).unwrap_err();
    assert_refusal(&r, "user-namespace-mapping", None);
    assert!(r.detail.contains("only in a bundle an engine made"), "{r}");
    // Through harden, with the facts docker's create of abc has.
    let made = HostFacts {
        container_id: Some("abc".into()),
        engine_bundle: Some(cri.clone()),
        ..facts()
    };
    ok_with(&with(slot, 65536), &policy, &made);
    // The red team's: everything from a slot to u32::MAX; more than a
    // slot; unaligned; beyond the pool.
    for (host, size) in [
        (slot, u32::MAX - slot),
        (slot, 2 * 65536),
        (slot + 100, 65536),
        (base + ns.ranges * 65536, 65536),
    ] {
        let r = crate::harden::engine_id_range(&with(host, size), ns, engine, &[]).unwrap_err();
        assert!(
            r.detail.contains("one slot of its pool"),
            "{host} {size}: {r}"
        );
    }
}
