//! Unit tests of [`super`] (userns).

use crate::harden::fixtures::*;

const PORT_START: &str = crate::harden::UNPRIVILEGED_PORT_START;

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
    let users: Vec<_> = h
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|n| n.typ() == LinuxNamespaceType::User)
        .cloned()
        .collect();
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
