//! Unit tests of [`super`] (root.path).

use crate::harden::fixtures::*;

fn with_root(path: &str) -> Spec {
    docker_with(|v| v["root"]["path"] = json!(path))
}

#[test]
fn sensitive_root_paths_are_refused() {
    for path in [
        "/",
        "/etc",
        "/var",
        "/var/lib",
        "/run",
        "/proc/1/root",
        "/usr/lib",
        "/etc/../",
    ] {
        let r = refused(&with_root(path));
        assert_refusal(&r, "sensitive-host-mount", MOUNT_KEY);
        assert!(r.detail.contains("root.path"), "{r}");
    }
}

#[test]
fn root_path_is_judged_by_its_real_path() {
    // A harmless-looking path whose fd says it is /.
    let f = HostFacts {
        rootfs_real: Some(PathBuf::from("/")),
        ..facts()
    };
    let r = refused_with(&with_root("rootfs"), &Policy::default(), &f);
    assert_refusal(&r, "sensitive-host-mount", MOUNT_KEY);
    // Engines' rootfs directories are fine.
    for real in [
        "/var/lib/docker/overlay2/abc/merged",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
        "/tmp/bundle/rootfs",
    ] {
        let f = HostFacts {
            rootfs_real: Some(PathBuf::from(real)),
            ..facts()
        };
        ok_with(&with_root("rootfs"), &Policy::default(), &f);
    }
    // Unknown real path: only the written path is judged.
    ok(&with_root("rootfs"));
}

#[test]
fn root_path_allowed_by_the_operator() {
    let mut p = Policy::default();
    p.refusals.allow_host_mounts = vec!["/srv".into()];
    ok_with(&with_root("/srv"), &p, &facts());
}

#[test]
fn inside_an_engine_tree_only_an_engine_assembled_rootfs_is_allowed() {
    for ok in [
        "/var/lib/docker/overlay2/0a1b/merged",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
    ] {
        harden(&with_root(ok), &Policy::embedded(), &HostFacts::default())
            .unwrap_or_else(|r| panic!("{ok}: {r}"));
    }
    for bad in [
        "/run/docker",
        "/run/docker/libnetwork",
        "/var/lib/docker/containers/abc",
        "/var/lib/docker/overlay2/0a1b/diff",
        "/var/lib/docker/overlay2/0a1b/merged/etc",
        "/run/containerd/s",
        "/var/lib/kubelet/pods/x/volumes",
    ] {
        let r = refused(&with_root(bad));
        assert_refusal(&r, "sensitive-host-mount", MOUNT_KEY);
        assert!(r.detail.contains("engine state tree"), "{bad}: {r}");
    }
}

/// A rootfs another live process or moat container uses as its root is
/// refused (T11); without such a user the same path is fine.
#[test]
fn rootfs_of_another_container_is_refused() {
    let spec = with_root("/var/lib/docker/overlay2/other/merged");
    ok(&spec);
    let f = HostFacts {
        rootfs_in_use: Some("it is the root directory of live process 4242".into()),
        ..facts()
    };
    let r = refused_with(&spec, &Policy::default(), &f);
    assert_refusal(&r, "sensitive-host-mount", None);
    assert!(
        r.detail
            .starts_with("root.path /var/lib/docker/overlay2/other/merged is in use"),
        "{r}"
    );
    assert!(r.detail.contains("live process 4242"), "{r}");
}

/// T11 (red-team R10): only the bundle's own tree and the rootfs engines
/// assemble are idmapped; any other host directory a `root.path` names is
/// mounted unshifted, so container root is not host root on its files.
#[test]
fn only_the_bundles_or_an_engines_rootfs_is_idmapped() {
    let bundle = Path::new("/srv/ci/job-7/bundle");
    for (rootfs, idmapped) in [
        ("/srv/ci/job-7/bundle/rootfs", true),
        ("/srv/ci/job-7/bundle/./rootfs/", true),
        ("/var/lib/docker/overlay2/0a1b/merged", true),
        (
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
            true,
        ),
        ("/root/redteam-rootfs", false),
        ("/home/alice", false),
        ("/srv/ci/job-7/bundle-other/rootfs", false),
        ("/srv/ci/job-7", false),
        ("/var/lib/docker/overlay2/0a1b/diff", false),
    ] {
        assert_eq!(
            super::rootfs_may_be_idmapped(Path::new(rootfs), bundle, &Default::default()),
            idmapped,
            "{rootfs}"
        );
    }
}

/// Red-team pass 7: the rootfs rule knew the default engine roots only. A
/// moved root (`engines.docker_roots`, `containerd_roots`, or dockerd's
/// `data-root` added from daemon.json) holds the engine's rootfs as the
/// default does: accepted and idmapped there, and everything else inside
/// it refused like inside the default.
#[test]
fn engine_rootfs_is_recognised_below_every_engine_root() {
    let mut policy = Policy::default();
    policy
        .engines
        .containerd_roots
        .push("/data/containerd".into());
    let policy = policy.with_docker_data_root(Some(Path::new("/data/docker/")));
    assert!(policy
        .volumes
        .idmap_under
        .iter()
        .any(|p| p == "/data/docker/volumes/*/_data"));
    let bundle = Path::new("/srv/job/bundle");
    for (rootfs, ok) in [
        ("/data/docker/overlay2/0a1b/merged", true),
        (
            "/data/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
            true,
        ),
        ("/var/lib/docker/overlay2/0a1b/merged", true),
        ("/data/docker/overlay2/0a1b/diff", false),
        ("/data/docker/containers/abc", false),
        ("/data/containerd/io.containerd.content.v1.content", false),
    ] {
        assert_eq!(
            super::rootfs_may_be_idmapped(Path::new(rootfs), bundle, &policy.engines),
            ok,
            "{rootfs}"
        );
        let s = runc_with(|v| v["root"]["path"] = json!(rootfs));
        match harden(&s, &policy, &facts()) {
            Ok(_) => assert!(ok, "{rootfs} accepted"),
            Err(r) => {
                assert!(!ok, "{rootfs}: {r}");
                assert!(
                    r.to_string()
                        .contains("is inside the engine state tree /data/"),
                    "{r}"
                );
            }
        }
        // Without the moved roots, a rootfs there is a plain host path.
        assert!(
            !super::rootfs_may_be_idmapped(Path::new(rootfs), bundle, &Default::default())
                || rootfs.starts_with("/var/lib/docker")
        );
    }
}
