//! Unit tests of [`super`] (bind sources judged by their filesystem).

use serde_json::json;

use crate::harden::fixtures::*;
use crate::harden::{HostFacts, MountedFs};
use crate::policy::Policy;

const VOLUME: &str = "/var/lib/docker/volumes/v/_data";
const SHM: &str = "/var/lib/docker/containers/abc/mounts/shm";
const MIB: u64 = 1 << 20;

fn fs(mount_point: &str, fs_type: &str, size: Option<u64>, inodes: Option<u64>) -> MountedFs {
    MountedFs {
        mount_point: mount_point.into(),
        fs_type: fs_type.into(),
        size_bytes: size,
        inodes,
    }
}

/// docker's spec with a bind of `source` (options as given), and facts
/// saying `source` shows `shown`.
fn case(
    source: &str,
    options: &[&str],
    shown: Vec<MountedFs>,
) -> (oci_spec::runtime::Spec, HostFacts) {
    let spec = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/data", "type": "bind", "source": source, "options": options}),
        )
    });
    let mut facts = facts();
    facts.source_filesystems.insert(source.into(), shown);
    (spec, facts)
}

fn refusal_of(source: &str, options: &[&str], shown: Vec<MountedFs>, policy: &Policy) -> String {
    let (spec, facts) = case(source, options, shown);
    let r = refused_with(&spec, policy, &facts);
    assert_eq!(r.rule, "bind-source-filesystem", "{r}");
    assert!(r.to_string().contains("/data"), "{r}");
    r.to_string()
}

fn accepted(source: &str, options: &[&str], shown: Vec<MountedFs>, policy: &Policy) {
    let (spec, facts) = case(source, options, shown);
    ok_with(&spec, policy, &facts);
}

#[test]
fn kernel_filesystems_are_refused_read_only_or_not_and_whatever_the_policy_lists() {
    let mut policy = Policy::default();
    policy.volumes.allow_fs_types = vec!["proc".into(), "sysfs".into(), "ramfs".into()];
    for t in [
        "proc",
        "sysfs",
        "cgroup2",
        "debugfs",
        "bpf",
        "devpts",
        "hugetlbfs",
        "mqueue",
    ] {
        for opts in [&["rbind", "ro"][..], &["rbind", "rw"][..]] {
            let r = refusal_of(VOLUME, opts, vec![fs(VOLUME, t, None, None)], &policy);
            assert!(r.contains(&format!("a kernel filesystem ({t})")), "{r}");
        }
    }
}

#[test]
fn ramfs_is_refused_even_read_only() {
    let r = refusal_of(
        VOLUME,
        &["rbind", "ro"],
        vec![fs(VOLUME, "ramfs", None, None)],
        &Policy::default(),
    );
    assert!(r.contains("ramfs"), "{r}");
}

#[test]
fn overlay_network_fuse_and_unknown_filesystems_need_the_policy() {
    for t in [
        "overlay",
        "nfs4",
        "cifs",
        "9p",
        "fuse.sshfs",
        "somefs",
        "unknown (f_type 0x1234)",
    ] {
        let shown = vec![fs(VOLUME, t, None, None)];
        let r = refusal_of(VOLUME, &["rbind"], shown.clone(), &Policy::default());
        assert!(r.contains("volumes.allow_fs_types"), "{r}");
        assert!(r.contains(t), "{r}");
        let mut policy = Policy::default();
        policy.volumes.allow_fs_types = vec![t.into()];
        accepted(VOLUME, &["rbind"], shown, &policy);
    }
    let r = refusal_of(
        VOLUME,
        &["rbind"],
        vec![fs(VOLUME, "nfs4", None, None)],
        &Policy::default(),
    );
    assert!(r.contains("egress"), "{r}");
    let r = refusal_of(
        VOLUME,
        &["rbind"],
        vec![fs(VOLUME, "overlay", None, None)],
        &Policy::default(),
    );
    assert!(r.contains("overlay"), "{r}");
}

#[test]
fn local_disks_pass() {
    for t in ["ext4", "xfs", "btrfs", "zfs"] {
        accepted(
            VOLUME,
            &["rbind", "rw"],
            vec![fs(VOLUME, t, Some(1 << 40), Some(1 << 30))],
            &Policy::default(),
        );
    }
}

#[test]
fn a_writable_tmpfs_above_the_size_cap_is_refused_with_the_numbers() {
    // The policy's default cap is 64m.
    let r = refusal_of(
        VOLUME,
        &["rbind", "rw"],
        vec![fs(VOLUME, "tmpfs", Some(100 << 30), Some(4096))],
        &Policy::default(),
    );
    assert!(r.contains(&format!("{} bytes", 100u64 << 30)), "{r}");
    assert!(r.contains(&format!("{} bytes (64m)", 64 * MIB)), "{r}");
    assert!(r.contains("--shm-size"), "{r}");
    assert!(r.contains("filesystem.tmpfs_size"), "{r}");
    // No size limit at all.
    let r = refusal_of(
        VOLUME,
        &["rbind"],
        vec![fs(VOLUME, "tmpfs", None, Some(16))],
        &Policy::default(),
    );
    assert!(r.contains("no size limit"), "{r}");
    // Engine shm too: the cap is the operator's.
    let r = refusal_of(
        SHM,
        &["rbind", "rw"],
        vec![fs(SHM, "tmpfs", Some(8 << 30), Some(3_000_000))],
        &Policy::default(),
    );
    assert!(r.contains("--shm-size"), "{r}");
    // Read-only: the container cannot fill it (kubelet's secrets and
    // projected tokens are such tmpfs, sized by the pod's memory).
    accepted(
        VOLUME,
        &["rbind", "ro"],
        vec![fs(VOLUME, "tmpfs", Some(8 << 30), None)],
        &Policy::default(),
    );
}

#[test]
fn a_writable_tmpfs_needs_an_inode_limit_within_its_size() {
    let r = refusal_of(
        VOLUME,
        &["rbind"],
        vec![fs(VOLUME, "tmpfs", Some(64 * MIB), Some(3_000_000))],
        &Policy::default(),
    );
    assert!(r.contains("3000000 inodes, above the 16384"), "{r}");
    let r = refusal_of(
        VOLUME,
        &["rbind"],
        vec![fs(VOLUME, "tmpfs", Some(MIB), None)],
        &Policy::default(),
    );
    assert!(r.contains("unlimited inodes, above the 256"), "{r}");
    accepted(
        VOLUME,
        &["rbind"],
        vec![fs(VOLUME, "tmpfs", Some(MIB), Some(256))],
        &Policy::default(),
    );
    // The engine's own shm: its size is judged, its inode limit (no engine
    // flag sets it) is not.
    accepted(
        SHM,
        &["rbind"],
        vec![fs(SHM, "tmpfs", Some(64 * MIB), Some(3_000_000))],
        &Policy::default(),
    );
    let cri = "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm";
    accepted(
        cri,
        &["rbind"],
        vec![fs(cri, "tmpfs", Some(64 * MIB), Some(3_000_000))],
        &Policy::default(),
    );
    // Below a moved engine root (a test's private containerd, docker's
    // data-root elsewhere) only when the policy lists that root
    // (engines.*_roots, R7-5): the same shapes, the size still capped;
    // elsewhere the name alone exempts nothing.
    let mut moved = Policy::default();
    moved.engines.containerd_roots = vec!["/tmp/moat-cri.x/state".into()];
    moved.engines.docker_roots = vec!["/data/docker".into()];
    // As Policy::from_toml does: volume storage at the moved roots.
    moved.volumes.idmap_under = moved.engines.rerooted(&moved.volumes.idmap_under);
    for shm in [
        "/tmp/moat-cri.x/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
        "/data/docker/containers/abc/mounts/shm",
    ] {
        let r = refusal_of(
            shm,
            &["rbind"],
            vec![fs(shm, "tmpfs", Some(64 * MIB), Some(3_000_000))],
            &Policy::default(),
        );
        assert!(r.contains("allowing 3000000 inodes"), "{r}");
        accepted(
            shm,
            &["rbind"],
            vec![fs(shm, "tmpfs", Some(64 * MIB), Some(3_000_000))],
            &moved,
        );
        let r = refusal_of(
            shm,
            &["rbind"],
            vec![fs(shm, "tmpfs", Some(8 << 30), Some(3_000_000))],
            &moved,
        );
        assert!(r.contains("--shm-size"), "{r}");
    }
    // The shape elsewhere is not the engine's: the inode rule applies; one
    // level off a root, or docker's shape under containerd's root, is
    // engine state that is not volume storage (refused before).
    let elsewhere = "/srv/x/containers/abc/mounts/shm";
    refusal_of(
        elsewhere,
        &["rbind"],
        vec![fs(elsewhere, "tmpfs", Some(64 * MIB), Some(3_000_000))],
        &moved,
    );
    for shm in [
        "/data/docker/x/containers/abc/mounts/shm",
        "/tmp/moat-cri.x/state/containers/abc/mounts/shm",
    ] {
        let (spec, facts) = case(
            shm,
            &["rbind"],
            vec![fs(shm, "tmpfs", Some(64 * MIB), Some(3_000_000))],
        );
        let r = refused_with(&spec, &moved, &facts);
        assert!(
            r.to_string().contains("inside the engine state tree"),
            "{r}"
        );
    }
    // Not the shape: the inode rule applies.
    let other = "/srv/sandboxes/abc/shm";
    refusal_of(
        other,
        &["rbind"],
        vec![fs(other, "tmpfs", Some(64 * MIB), Some(3_000_000))],
        &Policy::default(),
    );
}

#[test]
fn mounts_below_a_source_count_for_recursive_binds_only() {
    let dir = "/srv/data";
    let shown = vec![
        fs(dir, "ext4", Some(1 << 40), None),
        fs("/srv/data/p", "proc", None, None),
    ];
    let r = refusal_of(dir, &["rbind", "ro"], shown.clone(), &Policy::default());
    assert!(r.contains("has /srv/data/p mounted below it"), "{r}");
    assert!(r.contains("kernel filesystem (proc)"), "{r}");
    accepted(dir, &["bind", "ro"], shown, &Policy::default());
}

#[test]
fn writability_is_what_libcontainer_mounts_once_read_only_wins() {
    let big = || vec![fs(VOLUME, "tmpfs", Some(100 << 30), Some(4096))];
    for options in [&["rbind", "rw"][..], &["rbind", "rrw"], &["rbind"]] {
        let r = refusal_of(VOLUME, options, big(), &Policy::default());
        assert!(r.contains("--shm-size"), "{r}");
    }
    // Any read-only option wins: the hardening drops the read-write ones
    // (libcontainer would mount ["rrw", "ro"] read-write: R7-1).
    for options in [
        &["rbind", "ro", "rw"][..],
        &["rbind", "rrw", "ro"],
        &["rbind", "ro", "rrw"],
        &["rbind", "rro", "rrw"],
        &["rbind", "rrw", "rro"],
        &["rbind", "rw", "ro"],
        &["rbind", "rro"],
    ] {
        accepted(VOLUME, options, big(), &Policy::default());
    }
}

#[test]
fn a_read_only_bind_at_dev_is_still_written() {
    // libcontainer drops `ro` for a mount at /dev; only `rro` holds there.
    let judged = |options: &[&str]| {
        let spec = docker_with(|v| {
            let mounts = v["mounts"].as_array_mut().unwrap();
            mounts.retain(|m| m["destination"] != "/dev");
            mounts.push(
                json!({"destination": "/dev", "type": "bind", "source": VOLUME, "options": options}),
            );
        });
        let mut facts = facts();
        facts.source_filesystems.insert(
            VOLUME.into(),
            vec![fs(VOLUME, "tmpfs", Some(100 << 30), Some(4096))],
        );
        crate::harden::harden(&spec, &Policy::default(), &facts).map(|_| ())
    };
    let r = judged(&["rbind", "ro"]).unwrap_err();
    assert_eq!(r.rule, "bind-source-filesystem", "{r}");
    judged(&["rbind", "rro"]).unwrap();
}

#[test]
fn a_read_only_rbind_still_writes_the_mounts_below_it() {
    // "ro" reaches the top mount only (no AT_RECURSIVE); "rro" all of them.
    let dir = "/srv/data";
    let shown = || {
        vec![
            fs(dir, "ext4", Some(1 << 40), None),
            fs("/srv/data/t", "tmpfs", Some(8 << 30), Some(4096)),
        ]
    };
    let r = refusal_of(dir, &["rbind", "ro"], shown(), &Policy::default());
    assert!(r.contains("has /srv/data/t mounted below it"), "{r}");
    accepted(dir, &["rbind", "rro"], shown(), &Policy::default());
}

#[test]
fn a_source_without_facts_is_left_to_the_other_rules() {
    let spec = docker_with(|v| add_mount(v, bind("/srv/data", "/data")));
    ok_with(&spec, &Policy::default(), &facts());
}

#[test]
fn overlay_layers_are_judged_too_upper_and_work_as_written() {
    let (lower, upper, work) = ("/srv/lower", "/srv/up", "/srv/work");
    let overlay = |lowers: &str| {
        docker_with(|v| {
            add_mount(
                v,
                json!({"destination": "/ov", "type": "overlay", "source": "overlay",
                       "options": [format!("lowerdir={lowers}"), format!("upperdir={upper}"), format!("workdir={work}")]}),
            )
        })
    };
    let big_tmpfs = |p: &str| vec![fs(p, "tmpfs", Some(8 << 30), None)];
    let mut facts = facts();
    facts
        .source_filesystems
        .insert(lower.into(), big_tmpfs(lower));
    facts
        .source_filesystems
        .insert(work.into(), vec![fs(work, "ext4", None, None)]);
    facts
        .source_filesystems
        .insert(upper.into(), big_tmpfs(upper));
    let r = refused_with(&overlay(lower), &Policy::default(), &facts);
    assert_eq!(r.rule, "bind-source-filesystem", "{r}");
    assert!(
        r.detail.starts_with("overlay layer of /srv/up at /ov"),
        "{r}"
    );
    // A big tmpfs as a lower layer only is read: accepted.
    facts
        .source_filesystems
        .insert(upper.into(), vec![fs(upper, "ext4", None, None)]);
    ok_with(&overlay(lower), &Policy::default(), &facts);
    // A lower layer that is the host's procfs is not.
    facts
        .source_filesystems
        .insert("/p".into(), vec![fs("/p", "proc", None, None)]);
    let r = refused_with(&overlay("/srv/lower:/p"), &Policy::default(), &facts);
    assert!(r.detail.contains("kernel filesystem (proc)"), "{r}");
}

/// docker's spec (four capped tmpfs: /dev, /dev/shm, /tmp, /run: 256m)
/// with `n` binds of tmpfs volumes of `size` each, `options` as given.
fn with_tmpfs_volumes(
    n: usize,
    size: u64,
    options: &[&str],
) -> (oci_spec::runtime::Spec, HostFacts) {
    let mut facts = facts();
    let spec = docker_with(|v| {
        for i in 0..n {
            let source = format!("/var/lib/docker/volumes/t{i}/_data");
            add_mount(
                v,
                json!({"destination": format!("/t{i}"), "type": "bind", "source": source, "options": options}),
            );
            facts.source_filesystems.insert(
                source.clone().into(),
                vec![fs(&source, "tmpfs", Some(size), Some(size / 4096))],
            );
        }
    });
    (spec, facts)
}

#[test]
fn writable_tmpfs_bind_sources_count_in_the_tmpfs_total() {
    // Red-team R7-4: ten 64m tmpfs volumes, each within the 64m cap, 640m
    // past the 512m total with docker's own 256m.
    let (spec, facts) = with_tmpfs_volumes(10, 64 * MIB, &["rbind"]);
    let r = refused_with(&spec, &Policy::default(), &facts);
    assert_refusal(&r, "tmpfs-total", Some("filesystem.tmpfs_total"));
    assert!(
        r.detail
            .contains("and 10 writable tmpfs bind sources of 640 MiB"),
        "{r}"
    );
    assert!(r.detail.contains("896 MiB in all"), "{r}");
    assert!(r.detail.contains("/var/lib/docker/volumes/t9/_data"), "{r}");
    // Four fit: 256m + 256m.
    let (spec, facts) = with_tmpfs_volumes(4, 64 * MIB, &["rbind"]);
    ok_with(&spec, &Policy::default(), &facts);
    // Read-only ones cannot be filled; contradicting options are read-only.
    for options in [
        &["rbind", "ro"][..],
        &["rbind", "rrw", "ro"],
        &["rbind", "rro"],
    ] {
        let (spec, facts) = with_tmpfs_volumes(10, 64 * MIB, options);
        ok_with(&spec, &Policy::default(), &facts);
    }
    // The same tmpfs bound twice is counted once.
    let (mut spec, facts) = with_tmpfs_volumes(4, 64 * MIB, &["rbind"]);
    let mut mounts = spec.mounts().clone().unwrap();
    let mut again = mounts.last().unwrap().clone();
    again.set_destination("/again".into());
    mounts.push(again);
    spec.set_mounts(Some(mounts));
    ok_with(&spec, &Policy::default(), &facts);
}

#[test]
fn an_engine_shm_counts_in_the_total_and_the_defaults_still_fit() {
    // docker --ipc shareable: the spec's /dev/shm tmpfs becomes a bind of
    // the engine's 64m shm; with /dev, /tmp, /run: 256m of 512m.
    let mut facts = facts();
    let spec = docker_with(|v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev/shm");
        mounts.push(json!({"destination": "/dev/shm", "type": "bind", "source": SHM, "options": ["rbind", "nosuid", "nodev", "noexec"]}));
    });
    facts.source_filesystems.insert(
        SHM.into(),
        vec![fs(SHM, "tmpfs", Some(64 * MIB), Some(3_000_000))],
    );
    ok_with(&spec, &Policy::default(), &facts);
    // Counted: with a 256m total it no longer fits.
    let mut policy = Policy::default();
    policy.filesystem.tmpfs_total = "256m".into();
    ok_with(&docker_spec(), &policy, &crate::harden::fixtures::facts());
    policy.filesystem.tmpfs_total = "255m".into();
    let r = refused_with(&spec, &policy, &facts);
    assert_refusal(&r, "tmpfs-total", Some("filesystem.tmpfs_total"));
    assert!(r.detail.contains(SHM), "{r}");
    // A tmpfs below a recursive bind counts when it is written.
    policy.filesystem.tmpfs_total = "256m".into();
    let dir = "/srv/data";
    let mut facts = crate::harden::fixtures::facts();
    facts.source_filesystems.insert(
        dir.into(),
        vec![
            fs(dir, "ext4", Some(1 << 40), None),
            fs("/srv/data/t", "tmpfs", Some(64 * MIB), Some(16384)),
        ],
    );
    let spec = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/d", "type": "bind", "source": dir, "options": ["rbind", "ro"]}),
        )
    });
    let r = refused_with(&spec, &policy, &facts);
    assert!(r.detail.contains("/srv/data/t"), "{r}");
    let spec = docker_with(|v| {
        add_mount(
            v,
            json!({"destination": "/d", "type": "bind", "source": dir, "options": ["rbind", "rro"]}),
        )
    });
    ok_with(&spec, &policy, &facts);
}

/// A bind of `source` whose filesystem is `fs_type`, shown by host mounts
/// at `mounted_at` (its own first).
fn driver_case(
    source: &str,
    fs_type: &str,
    mounted_at: &[&str],
) -> (oci_spec::runtime::Spec, HostFacts) {
    let (spec, mut facts) = case(
        source,
        &["rbind"],
        vec![fs(mounted_at[0], fs_type, Some(MIB), Some(256))],
    );
    facts.source_mounted_at.insert(
        source.into(),
        mounted_at.iter().map(std::path::PathBuf::from).collect(),
    );
    (spec, facts)
}

/// Red-team R7-3: a local-disk filesystem the host shows only at volume
/// storage — a docker `local` volume of `type=ext4,device=<disk>` mounted
/// nowhere else, or only by a subdirectory elsewhere (the btrfs `subvol=@`
/// layout), or at two volumes — is a driver-mounted volume: refused unless
/// the policy lists its type; a tmpfs (capped by T5) passes by default.
/// A plain volume directory (`/` shows it), a host directory on a disk of
/// its own, and a disk the host mounts elsewhere too are not driver-mounted.
#[test]
fn driver_mounted_volumes_need_the_policy() {
    let p = Policy::default();
    for mounted_at in [
        &[VOLUME][..],
        &[VOLUME, "/var/lib/docker/volumes/other/_data"][..],
        &["/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount"][..],
    ] {
        let (spec, facts) = driver_case(VOLUME, "ext4", mounted_at);
        let r = refused_with(&spec, &p, &facts);
        assert_refusal(
            &r,
            "bind-source-filesystem",
            Some("volumes.driver_mounted_fs_types"),
        );
        let line = r.to_string();
        assert!(
            line.contains("a driver-mounted volume (ext4)")
                && line.contains(mounted_at[0])
                && line.contains("may be: tmpfs")
                && !line.contains('\n'),
            "{line}"
        );
    }
    // tmpfs volumes (docker's tmpfs volumes, its shareable shm, a
    // kubelet Secret) pass; their caps are T5's.
    for (source, at) in [(VOLUME, VOLUME), (SHM, SHM)] {
        let (spec, facts) = driver_case(source, "tmpfs", &[at]);
        ok_with(&spec, &p, &facts);
    }
    // Not driver-mounted: a plain volume (shown by / and by the mount of
    // /var/lib/docker), a host directory on its own disk, a disk the host
    // mounts at a host path too (whose alias the path rules judge).
    for mounted_at in [
        &["/var/lib/docker", "/"][..],
        &["/srv/data"][..],
        &[VOLUME, "/srv/data"][..],
    ] {
        let source = if mounted_at[0] == "/srv/data" {
            "/srv/data/x"
        } else {
            VOLUME
        };
        let (spec, facts) = driver_case(source, "ext4", mounted_at);
        ok_with(&spec, &p, &facts);
    }
    // The operator may list more types.
    let mut listed = Policy::default();
    listed.volumes.driver_mounted_fs_types = vec!["tmpfs".into(), "xfs".into()];
    let (spec, facts) = driver_case(VOLUME, "xfs", &[VOLUME]);
    ok_with(&spec, &listed, &facts);
    // An empty list refuses tmpfs volumes too.
    listed.volumes.driver_mounted_fs_types.clear();
    let (spec, facts) = driver_case(VOLUME, "tmpfs", &[VOLUME]);
    assert!(refused_with(&spec, &listed, &facts)
        .to_string()
        .contains("may be: none"));
    // explain without the facts judges nothing here.
    let (spec, mut facts) = driver_case(VOLUME, "ext4", &[VOLUME]);
    facts.source_mounted_at.clear();
    ok_with(&spec, &p, &facts);
}
