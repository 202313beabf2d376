//! Unit tests of [`super`] (namespaces).

use crate::harden::fixtures::*;

const REQUIRED: [(&str, LinuxNamespaceType); 5] = [
    ("pid", LinuxNamespaceType::Pid),
    ("network", LinuxNamespaceType::Network),
    ("ipc", LinuxNamespaceType::Ipc),
    ("uts", LinuxNamespaceType::Uts),
    ("mount", LinuxNamespaceType::Mount),
];

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
        // Five left, plus the user and cgroup namespaces moat adds.
        assert_eq!(types.len(), 6, "{name}: {types:?}");
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
fn cgroup_namespace_is_added_when_missing() {
    // docker's spec (cgroup v1 hosts, or --cgroupns=host) has none.
    let h = ok(&docker_spec());
    assert_eq!(namespaces_of(&h.spec, LinuxNamespaceType::Cgroup).len(), 1);
    let c = line(&h.report, Rule::CgroupNamespace, "linux.namespaces");
    assert_eq!(c.after, "new cgroup namespace");
    assert_eq!(Rule::CgroupNamespace.threat(), "T7");
    // Already private: nothing to report.
    let again = ok(&h.spec);
    assert!(!has_line(
        &again.report,
        Rule::CgroupNamespace,
        "linux.namespaces"
    ));
}

#[test]
fn cgroup_namespace_host_is_kept_only_when_the_operator_allows_it() {
    let mut p = Policy::default();
    p.refusals.allow_host_namespaces = vec!["cgroup".into()];
    let h = ok_with(&docker_spec(), &p, &facts());
    assert!(!namespace_types(&h.spec).contains(&LinuxNamespaceType::Cgroup));
}

/// A docker spec that joins `/proc/1/ns/cgroup`, hardened on a host whose
/// facts say that path is the host's cgroup namespace.
fn refusal_of_the_hosts_cgroup_namespace_path() -> Refusal {
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
    refused_with(&s, &Policy::default(), &f)
}

#[test]
fn cgroup_namespace_path_of_the_host_is_refused() {
    let r = refusal_of_the_hosts_cgroup_namespace_path();
    assert_refusal(&r, "host-namespace", NS_KEY);
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
        let kept = namespace_of(&h.spec, t).path().clone();
        assert_eq!(kept.as_deref(), Some(Path::new("/proc/1/ns/whatever")));
    }
}

#[test]
fn host_namespace_path_of_an_optional_type_is_refused() {
    // The cgroup namespace is not required, but joining the host's is still
    // sharing it.
    let r = refusal_of_the_hosts_cgroup_namespace_path();
    assert_refusal(&r, "host-namespace", NS_KEY);
    assert!(r.to_string().contains("/proc/1/ns/cgroup"), "{r}");
}

#[test]
fn non_host_namespace_path_is_accepted_and_kept() {
    let s = with_namespace_path("network", "/proc/123/ns/net");
    let h = ok(&s);
    let net = namespace_of(&h.spec, LinuxNamespaceType::Network);
    assert_eq!(net.path().as_deref(), Some(Path::new("/proc/123/ns/net")));
    // Facts about another type do not matter.
    let f = HostFacts {
        host_namespace_paths: vec![LinuxNamespaceType::Pid],
        ..facts()
    };
    ok_with(&s, &Policy::default(), &f);
}
