//! Unit tests of [`super`] (host paths).

use crate::harden::fixtures::*;
use crate::harden::HostFacts;

const SENSITIVE_SOURCES: &[&str] = &[
    // Every descendant of an engine's tree that is not volume storage or a
    // per-container file engines hand out (T11, T19).
    "/var/lib/docker/containers/abc",
    "/var/lib/docker/containers/abc/config.v2.json",
    "/var/lib/docker/volumes",
    "/var/lib/docker/overlay2/x/merged",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/x",
    "/run/containerd/io.containerd.runtime.v2.task/k8s.io/x/rootfs",
    "/var/lib/kubelet/pods/uid",
    "/run/moat-rootfs/abc/rootfs.mounts/0",
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
    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/x/resolv.conf",
    "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/cache",
    "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/x/shm",
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
        // The kubelet volume is this pod's (T19).
        let h = ok(&docker_with(|v| {
            add_mount(v, bind(src, "/mnt/host"));
            v["annotations"] = json!({"io.kubernetes.cri.sandbox-uid": "uid"});
        }));
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
            json!({"destination": "/proc", "type": "proc", "source": "/etc"}),
        );
        add_mount(
            v,
            json!({"destination": "/scratch", "type": "tmpfs", "source": "/var/run/docker.sock", "options": ["nosuid"]}),
        );
        add_mount(
            v,
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "/"}),
        );
    });
    let h = ok(&s);
    // And tmpfs outside the policy list gets the same flags and cap.
    assert_eq!(
        opts(mount_at(&h.spec, "/scratch")),
        vec!["nosuid", "nodev", "size=64m", "nr_inodes=16384"]
    );
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

/// kubelet's `<pods>/<pod uid>/volumes/...` is idmapped, so only the
/// spec's own pod (by its pod uid annotations) may bind it (T19); as
/// written or as resolved; other pods' volumes, or no pod uid, refused.
#[test]
fn another_pods_kubelet_volume_is_refused() {
    let vol = "/var/lib/kubelet/pods/other/volumes/kubernetes.io~empty-dir/data";
    let with = |src: &str, annotations: Value| {
        docker_with(|v| {
            add_mount(v, bind(src, "/data"));
            v["annotations"] = annotations;
        })
    };
    let cri = |uid: &str| json!({"io.kubernetes.cri.sandbox-uid": uid});
    ok(&with(vol, cri("other")));
    ok(&with(vol, json!({"io.kubernetes.pod.uid": "other"})));
    ok(&with("/srv/data", json!({})));
    for (annotations, why) in [
        (
            cri("mine"),
            "the spec's io.kubernetes.cri.sandbox-uid is mine",
        ),
        (json!({}), "the spec carries no pod uid"),
        (
            json!({"io.kubernetes.cri.sandbox-uid": "other", "io.kubernetes.pod.uid": "mine"}),
            "the spec's io.kubernetes.pod.uid is mine",
        ),
    ] {
        let r = refused(&with(vol, annotations));
        assert_refusal(&r, "sensitive-host-mount", None);
        assert!(r.detail.contains("is a volume of pod other"), "{r}");
        assert!(r.detail.contains(why), "{r}");
    }
    // Every kubelet layout of the policy: subpaths and container files.
    for src in [
        "/var/lib/kubelet/pods/other/volume-subpaths/v/c/0",
        "/var/lib/kubelet/pods/other/containers/c/x",
        "/var/lib/kubelet/pods/other/etc-hosts",
    ] {
        let r = refused(&with(src, cri("mine")));
        assert!(r.detail.contains("is a volume of pod other"), "{src}: {r}");
    }
    // A symlink in this pod's volume that resolves into another pod's.
    let mine = "/var/lib/kubelet/pods/mine/volumes/kubernetes.io~empty-dir/link";
    let mut f = facts();
    f.resolved_sources
        .insert(PathBuf::from(mine), PathBuf::from(vol));
    let r = refused_with(&with(mine, cri("mine")), &Policy::default(), &f);
    assert!(r.detail.contains("is a volume of pod other"), "{r}");
    // A pods directory the operator lists elsewhere follows the same rule.
    let mut p = Policy::default();
    p.volumes
        .idmap_under
        .push("/srv/k/pods/*/volumes/*/*".into());
    let r = refused_with(
        &with("/srv/k/pods/other/volumes/p/d", cri("mine")),
        &p,
        &facts(),
    );
    assert!(r.detail.contains("is a volume of pod other"), "{r}");
    ok_with(
        &with("/srv/k/pods/mine/volumes/p/d", cri("mine")),
        &p,
        &facts(),
    );
}

/// Red-team finding: a bind of another container's per-container engine
/// files (docker's containers/<id>/resolv.conf, containerd's
/// sandboxes/<id>/hosts) handed container root that container's DNS. The
/// id must be this container's own or its pod owner's.
#[test]
fn another_containers_engine_files_are_refused() {
    let with = |src: &str| docker_with(|v| add_mount(v, bind(src, "/x")));
    let plain = |src: &str| plain_with(|v| add_mount(v, bind(src, "/x")));
    let mut f = facts();
    // The docker fixture binds its own container abc's files: docker made
    // its bundle for abc.
    f.container_id = Some("abc".into());
    f.engine_bundle = Some(engine("moby", "abc"));
    let mut cri = f.clone();
    cri.engine_bundle = Some(engine("k8s.io", "abc"));
    for (src, facts) in [
        ("/var/lib/docker/containers/other/resolv.conf", &f),
        ("/var/lib/docker/containers/other/mounts/shm", &f),
        (
            "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/other/hosts",
            &cri,
        ),
        (
            "/var/lib/containerd/io.containerd.grpc.v1.cri/containers/other/volumes/v",
            &cri,
        ),
    ] {
        let r = refused_with(&with(src), &Policy::default(), facts);
        assert_refusal(&r, "sensitive-host-mount", None);
        assert!(
            r.detail.contains("belongs to container other"),
            "{src}: {r}"
        );
    }
    ok_with(
        &with("/var/lib/docker/containers/abc/hostname"),
        &Policy::default(),
        &f,
    );
    // The pod's owner: docker's --ipc container:X shm, a CRI sandbox's hosts.
    f.pod_owner = Some("owner".into());
    ok_with(
        &with("/var/lib/docker/containers/owner/mounts/shm"),
        &Policy::default(),
        &f,
    );
    cri.pod_owner = Some("owner".into());
    ok_with(
        &plain("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/owner/hosts"),
        &Policy::default(),
        &cri,
    );
    // Resolved through a symlink into another container's files.
    let link = "/var/lib/docker/volumes/v/_data/link";
    f.resolved_sources.insert(
        PathBuf::from(link),
        PathBuf::from("/var/lib/docker/containers/other/hostname"),
    );
    let r = refused_with(&with(link), &Policy::default(), &f);
    assert!(r.detail.contains("belongs to container other"), "{r}");
}

/// The docker fixture without docker's per-container files (abc's hosts,
/// hostname, resolv.conf), for bundles that are not docker's abc.
fn plain_with(f: impl FnOnce(&mut Value)) -> Spec {
    docker_with(|v| {
        v["mounts"].as_array_mut().unwrap().retain(|m| {
            !m["source"]
                .as_str()
                .unwrap_or("")
                .starts_with("/var/lib/docker/containers/")
        });
        // No cgroup named: moat names one for raw and engine bundles
        // alike (the raw parent is a raw bundle's only, docker's an
        // engine's only).
        v["linux"].as_object_mut().unwrap().remove("cgroupsPath");
        f(v)
    })
}

fn engine(namespace: &str, id: &str) -> crate::engine_bundle::EngineBundle {
    crate::engine_bundle::EngineBundle {
        namespace: namespace.into(),
        id: id.into(),
    }
}

/// Red-team R3: the own-id exemption holds only for the id an engine made
/// the bundle for. A raw bundle created under docker container abc's id
/// (the tenant picks the create id) gets none of abc's files; a bundle of
/// another engine namespace gets none of docker's.
#[test]
fn engine_files_need_the_bundle_the_engine_made_for_that_id() {
    let with = |src: &str| docker_with(|v| add_mount(v, bind(src, "/x")));
    let own = "/var/lib/docker/containers/abc/resolv.conf";
    let raw = HostFacts {
        container_id: Some("abc".into()),
        ..facts()
    };
    // The docker fixture itself binds abc's hosts, hostname, resolv.conf.
    let r = refused_with(&docker_spec(), &Policy::default(), &raw);
    assert_refusal(&r, "sensitive-host-mount", None);
    let r = refused_with(&with(own), &Policy::default(), &raw);
    assert!(r.detail.contains("a raw bundle"), "{r}");
    for ns in ["k8s.io", "default"] {
        let other = HostFacts {
            engine_bundle: Some(engine(ns, "abc")),
            ..raw.clone()
        };
        let r = refused_with(&with(own), &Policy::default(), &other);
        assert!(r.detail.contains("docker's storage"), "{ns}: {r}");
    }
    let docker = HostFacts {
        engine_bundle: Some(engine("moby", "abc")),
        ..raw.clone()
    };
    ok_with(&docker_spec(), &Policy::default(), &docker);
    ok_with(&with(own), &Policy::default(), &docker);
    // A pod owner found from the namespaces does not help a raw bundle.
    let raw_member = HostFacts {
        pod_owner: Some("abc".into()),
        container_id: Some("joiner".into()),
        ..facts()
    };
    assert!(refused_with(&with(own), &Policy::default(), &raw_member)
        .detail
        .contains("a raw bundle"));
}

/// Red-team R5: docker's named volumes only for docker's bundles, the
/// CRI's storage only for the CRI's; a raw bundle gets neither (refused,
/// not mounted unshifted); operator-listed storage stays for everyone.
#[test]
fn engine_volume_storage_is_for_that_engines_bundles() {
    let with = |src: &str| plain_with(|v| add_mount(v, bind(src, "/data")));
    let docker_vol = "/var/lib/docker/volumes/red-vol/_data";
    let cri_vol = "/var/lib/containerd/io.containerd.grpc.v1.cri/containers/abc/volumes/v";
    let raw = HostFacts {
        container_id: Some("abc".into()),
        ..facts()
    };
    let with_engine = |ns: &str| HostFacts {
        engine_bundle: Some(engine(ns, "abc")),
        ..raw.clone()
    };
    let p = Policy::default();
    // Without the fact (a raw bundle): refused.
    let r = refused_with(&with(docker_vol), &p, &raw);
    assert!(r.detail.contains("docker's storage"), "{r}");
    assert!(r.detail.contains("a raw bundle"), "{r}");
    let r = refused_with(&with(cri_vol), &p, &raw);
    assert!(r.detail.contains("a raw bundle"), "{r}");
    let r = refused_with(
        &with("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm"),
        &p,
        &with_engine("moby"),
    );
    assert!(r.detail.contains("the CRI (kubelet)'s storage"), "{r}");
    // Resolved through a symlink from a harmless path.
    let mut linked = raw.clone();
    linked
        .resolved_sources
        .insert(PathBuf::from("/srv/link"), PathBuf::from(docker_vol));
    assert!(refused_with(&with("/srv/link"), &p, &linked)
        .detail
        .contains("docker's storage"));
    // With it: each engine's own.
    ok_with(&with(docker_vol), &p, &with_engine("moby"));
    ok_with(&with(cri_vol), &p, &with_engine("k8s.io"));
    assert!(refused_with(&with(docker_vol), &p, &with_engine("k8s.io"))
        .detail
        .contains("docker's storage"));
    assert!(refused_with(&with(cri_vol), &p, &with_engine("moby"))
        .detail
        .contains("CRI"));
    // Operator-listed storage elsewhere: every bundle.
    let mut p = Policy::default();
    p.volumes.idmap_under.push("/srv/vols/*".into());
    ok_with(&with("/srv/vols/a"), &p, &raw);
    // explain (no id) judges the spec alone.
    ok_with(&with(docker_vol), &Policy::default(), &facts());
}

/// Red-team R13: a kubelet pod volume needs a bundle the CRI made; the pod
/// uid annotation of a raw bundle is the tenant's word.
#[test]
fn kubelet_pod_volumes_need_a_cri_bundle() {
    let vol = "/var/lib/kubelet/pods/victim/volumes/kubernetes.io~secret/sa-token";
    let s = plain_with(|v| {
        add_mount(v, bind(vol, "/home"));
        v["annotations"] = json!({"io.kubernetes.pod.uid": "victim"});
    });
    let raw = HostFacts {
        container_id: Some("abc".into()),
        ..facts()
    };
    let r = refused_with(&s, &Policy::default(), &raw);
    assert_refusal(&r, "sensitive-host-mount", None);
    assert!(r.detail.contains("is a volume of pod victim"), "{r}");
    assert!(r.detail.contains("a raw bundle"), "{r}");
    let docker = HostFacts {
        engine_bundle: Some(engine("moby", "abc")),
        ..raw.clone()
    };
    assert!(refused_with(&s, &Policy::default(), &docker)
        .detail
        .contains("not the CRI's"));
    let cri = HostFacts {
        engine_bundle: Some(engine("k8s.io", "abc")),
        ..raw
    };
    ok_with(&s, &Policy::default(), &cri);
}

/// Red-team pass 4 F6: an overlay layer is judged by the engine-scoped
/// rules like a bind source (host root mounts it): a kubelet Secret or a
/// docker named volume as a `lowerdir` of a raw bundle is refused, as
/// written and as resolved; the engine's own bundle may still use its own.
#[test]
fn engine_storage_as_an_overlay_layer_is_judged_like_a_bind() {
    let overlay = |lower: &str| {
        plain_with(|v| {
            add_mount(
                v,
                json!({"destination": "/home", "type": "overlay", "source": "overlay",
                       "options": [format!("lowerdir={lower}:/srv/l1")]}),
            );
            v["annotations"] = json!({"io.kubernetes.pod.uid": "victim"});
        })
    };
    let raw = HostFacts {
        container_id: Some("abc".into()),
        ..facts()
    };
    let p = Policy::default();
    let secret = "/var/lib/kubelet/pods/victim/volumes/kubernetes.io~secret/sa-token";
    let r = refused_with(&overlay(secret), &p, &raw);
    assert!(r.detail.contains("is a volume of pod victim"), "{r}");
    let r = refused_with(&overlay("/var/lib/docker/volumes/red-vol/_data"), &p, &raw);
    assert!(r.detail.contains("docker's storage"), "{r}");
    let mut linked = raw.clone();
    linked
        .resolved_sources
        .insert(PathBuf::from("/srv/link"), PathBuf::from(secret));
    assert!(refused_with(&overlay("/srv/link"), &p, &linked)
        .detail
        .contains("is a volume of pod victim"));
    let cri = HostFacts {
        engine_bundle: Some(engine("k8s.io", "abc")),
        ..raw
    };
    ok_with(&overlay(secret), &p, &cri);
}

/// Red-team R7-2: every host-path rule judges the same candidates — the
/// source as written, as resolved, and every mount alias (another place
/// the host shows the same files: a docker `local` volume with
/// `o=bind,device=<P>` is a bind of `/var/lib/docker/volumes/<v>/_data`
/// whose alias is P). Each rule × {written, resolved, alias}.
#[test]
fn every_host_path_rule_judges_the_source_as_written_resolved_and_aliased() {
    let cri_pod = json!({"io.kubernetes.cri.sandbox-uid": "mine"});
    let rules: [(&str, &str, &str, Value); 4] = [
        (
            "sensitive",
            "/etc",
            "/etc is a sensitive host path",
            json!({}),
        ),
        (
            "k8s.io",
            "/var/lib/kubelet/pods/other/volumes/kubernetes.io~empty-dir/data",
            "is a volume of pod other",
            cri_pod.clone(),
        ),
        (
            "moby",
            "/var/lib/docker/containers/other/mounts/shm",
            "belongs to container other",
            json!({}),
        ),
        (
            "moby",
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
            "the CRI (kubelet)'s storage",
            json!({}),
        ),
    ];
    for (ns, target, why, annotations) in rules {
        let base = HostFacts {
            container_id: Some("abc".into()),
            engine_bundle: Some(engine(if ns == "sensitive" { "moby" } else { ns }, "abc")),
            ..facts()
        };
        let spec = |src: &str| {
            let annotations = annotations.clone();
            plain_with(|v| {
                add_mount(v, bind(src, "/x"));
                v["annotations"] = annotations;
            })
        };
        // As written.
        let r = refused_with(&spec(target), &Policy::default(), &base);
        assert!(
            r.to_string()
                .contains("refused by moat rule sensitive-host-mount"),
            "{ns}: {r}"
        );
        assert!(r.detail.contains(why), "{ns} written: {r}");
        // As resolved (a symlink from a harmless path).
        let mut resolved = base.clone();
        resolved
            .resolved_sources
            .insert(PathBuf::from("/srv/link"), PathBuf::from(target));
        let r = refused_with(&spec("/srv/link"), &Policy::default(), &resolved);
        assert!(r.detail.contains(why), "{ns} resolved: {r}");
        // As an alias: the source is a plain directory, the host shows the
        // same files at the target.
        let mut aliased = base.clone();
        aliased
            .source_aliases
            .insert(PathBuf::from("/srv/data"), vec![PathBuf::from(target)]);
        let r = refused_with(&spec("/srv/data"), &Policy::default(), &aliased);
        assert!(r.detail.contains(why), "{ns} alias: {r}");
        assert!(
            r.to_string().contains("/srv/data") && !r.to_string().contains('\n'),
            "{ns} alias: {r}"
        );
        // Without the alias the plain directory passes.
        ok_with(&spec("/srv/data"), &Policy::default(), &base);
    }
}

/// Red-team R7-2 as docker hands it: a named volume whose mount is a bind
/// of another container's /dev/shm, or of a kubelet pod's volume, is that
/// container's or that pod's (refused, so never idmapped); a volume whose
/// alias is this container's own shm or a host directory passes.
#[test]
fn a_docker_volume_is_judged_by_what_its_mount_shows() {
    let vol = "/var/lib/docker/volumes/v/_data";
    let spec = plain_with(|v| add_mount(v, bind(vol, "/s")));
    let docker = HostFacts {
        container_id: Some("abc".into()),
        engine_bundle: Some(engine("moby", "abc")),
        ..facts()
    };
    let aliased = |alias: &str| {
        let mut f = docker.clone();
        f.source_aliases
            .insert(PathBuf::from(vol), vec![PathBuf::from(alias)]);
        f
    };
    let r = refused_with(
        &spec,
        &Policy::default(),
        &aliased("/var/lib/docker/containers/victim/mounts/shm"),
    );
    assert!(r.detail.contains("belongs to container victim"), "{r}");
    assert!(
        r.detail.contains("where the host mounts the same files"),
        "{r}"
    );
    let r = refused_with(
        &spec,
        &Policy::default(),
        &aliased("/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/data"),
    );
    assert!(r.detail.contains("is a volume of pod u"), "{r}");
    ok_with(
        &spec,
        &Policy::default(),
        &aliased("/var/lib/docker/containers/abc/mounts/shm"),
    );
    ok_with(&spec, &Policy::default(), &aliased("/srv/data"));
}

/// Review M3: a tenant's docker `local` volume `o=bind,device=/srv` is a
/// narrower mount of the host's disk; a raw or CRI tenant's bind of
/// `/srv/b/x` (on `/`) shows up there only as a partial alias, which is no
/// claim of docker's or a pod's on those files: not refused. The same
/// place as a full alias (a source whose own mount is that volume, R7-2)
/// still is, and a partial alias at a sensitive path is still judged.
#[test]
fn a_narrower_mount_elsewhere_claims_no_tenants_files() {
    let src = "/srv/b/x";
    let spec = plain_with(|v| add_mount(v, bind(src, "/x")));
    let raw = || HostFacts {
        container_id: Some("b".into()),
        ..facts()
    };
    for alias in [
        "/var/lib/docker/volumes/a_vol/_data/b/x",
        "/var/lib/docker/containers/victim/mounts/shm/b/x",
        "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/d/b/x",
    ] {
        let mut f = raw();
        f.source_aliases
            .insert(PathBuf::from(src), vec![PathBuf::from(alias)]);
        // Before M3 every alias counted: refused (as a full alias still is).
        refused_with(&spec, &Policy::default(), &f);
        f.source_partial_aliases
            .insert(PathBuf::from(src), vec![PathBuf::from(alias)]);
        ok_with(&spec, &Policy::default(), &f);
    }
    let mut f = raw();
    f.source_aliases
        .insert(PathBuf::from(src), vec![PathBuf::from("/etc/ssl")]);
    f.source_partial_aliases
        .insert(PathBuf::from(src), vec![PathBuf::from("/etc/ssl")]);
    let r = refused_with(&spec, &Policy::default(), &f);
    assert!(r.detail.contains("/etc"), "{r}");
}

/// Red-team R7-5: with docker's data-root and containerd's state moved
/// (policy `engines.*_roots`), every engine-storage protection covers the
/// moved roots as it does the defaults: a raw bundle reaches neither
/// another container's files nor a volume there, nor a directory holding
/// a root; the engine's own bundles keep their storage; with the roots not
/// listed, nothing there is volume storage (mounted unshifted).
#[test]
fn moved_engine_roots_are_protected_like_the_defaults() {
    let mut p = Policy::from_toml(
        "[engines]\ndocker_roots = [\"/data/docker\"]\ncontainerd_roots = [\"/srv/ctrd/state\"]\n",
    )
    .unwrap();
    assert!(p
        .volumes
        .idmap_under
        .contains(&"/data/docker/volumes/*/_data".to_string()));
    let bind = |source: &str| {
        plain_with(|v| {
            add_mount(
                v,
                json!({"destination": "/x", "type": "bind", "source": source, "options": ["rbind", "rw"]}),
            )
        })
    };
    let raw = HostFacts {
        container_id: Some("abc".into()),
        ..facts()
    };
    for (source, why) in [
        ("/data/docker/volumes/v/_data", "docker's storage"),
        (
            "/data/docker/containers/V/mounts/shm",
            "belongs to container V",
        ),
        (
            "/data/docker/overlay2/l/diff",
            "inside the engine state tree /data/docker",
        ),
        ("/data", "contains the engine state tree /data/docker"),
        (
            "/srv/ctrd/state/io.containerd.grpc.v1.cri/sandboxes/S/shm",
            "belongs to container S",
        ),
    ] {
        let r = refused_with(&bind(source), &p, &raw);
        assert!(r.detail.contains(why), "{source}: {r}");
    }
    let docker = HostFacts {
        engine_bundle: Some(engine("moby", "abc")),
        ..raw.clone()
    };
    ok_with(&bind("/data/docker/volumes/v/_data"), &p, &docker);
    ok_with(&bind("/data/docker/containers/abc/mounts/shm"), &p, &docker);
    let r = refused_with(&bind("/data/docker/containers/V/mounts/shm"), &p, &docker);
    assert!(r.detail.contains("belongs to container V"), "{r}");
    // An operator's own list of patterns is re-rooted, not the defaults.
    p.volumes.idmap_under = vec!["/var/lib/docker/volumes/*/_data".into()];
    assert_eq!(
        p.engines.rerooted(&p.volumes.idmap_under),
        vec![
            "/var/lib/docker/volumes/*/_data".to_string(),
            "/data/docker/volumes/*/_data".to_string()
        ]
    );
}
