//! Hostile config.json fields through the real `moat` binary (issue 14):
//! each is refused with its rule's one-line error, or hardened as seen from
//! inside the container; every test ends with the leak check.

use moat_integration::*;
use serde_json::json;

/// `create` of `bundle` fails naming `rule` and `detail`, leaving nothing.
fn assert_rule(env: &Env, bundle: &Bundle, rule: &str, detail: &str) {
    let id = env.id("hostile");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let out = env.moat(&["create", "--bundle", bundle.path(), &id]);
        out.assert_fails_with(&format!("refused by moat rule {rule}"));
        out.assert_fails_with(detail);
        leak.verify();
    }
    leak.verify();
}

/// Runs `script` in a bundle changed by `edit`, and returns its stdout,
/// after checking it left nothing behind.
fn run_edited(env: &Env, script: &str, edit: impl FnOnce(&mut Bundle)) -> String {
    let mut b = env.sh_bundle(script);
    edit(&mut b);
    b.write();
    let id = env.id("hostile-run");
    let leak = env.leak_check(&id);
    let out = {
        let _g = env.guard(&id);
        env.run(&b, &id)
    };
    out.assert_ok();
    leak.verify();
    out.stdout.clone()
}

#[test]
fn second_proc_mount_is_refused() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.add_mount(json!({"destination": "/mnt/proc", "type": "proc", "source": "proc"}));
    b.write();
    assert_rule(&env, &b, "kernel-filesystem", "/mnt/proc");
    let mut b = env.bundle(&["true"]);
    b.add_mount(json!({"destination": "/mnt/sys", "type": "sysfs", "source": "sysfs"}));
    b.write();
    assert_rule(&env, &b, "kernel-filesystem", "/mnt/sys");
}

/// `root.path` is pinned by fd before anything else (T29): `/` itself is
/// refused there; a sensitive tree or an ancestor of one by the hardening.
#[test]
fn root_path_slash_is_refused() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.config["root"]["path"] = json!("/");
    b.write();
    assert_rule(&env, &b, "host-path", "rootfs / is /");
    for sensitive in ["/etc", "/var/lib", "/run/containerd"] {
        let mut b = env.bundle(&["true"]);
        b.config["root"]["path"] = json!(sensitive);
        b.write();
        assert_rule(
            &env,
            &b,
            "sensitive-host-mount",
            &format!("root.path {sensitive}"),
        );
    }
}

#[test]
fn root_path_symlink_to_slash_is_refused() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    let link = std::path::Path::new(b.path()).join("hostroot");
    make_symlink("/", &link);
    b.config["root"]["path"] = json!("hostroot");
    b.write();
    // Relative paths are resolved beneath the bundle: a link out is refused.
    assert_rule(&env, &b, "host-path", "resolves outside it");
}

#[test]
fn unified_pids_max_and_paths_are_refused() {
    let env = Env::new();
    for (key, value) in [("pids.max", "max"), ("../cgroup.procs", "1")] {
        let mut b = env.bundle(&["true"]);
        b.config["linux"]["resources"]["unified"] = json!({ key: value });
        b.write();
        assert_rule(&env, &b, "cgroup-resources", key);
    }
}

#[test]
fn seccomp_listener_is_refused_by_default() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/evil.sock",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.write();
    assert_rule(&env, &b, "seccomp-listener", "/run/evil.sock");
}

#[test]
fn miscased_moat_annotation_is_refused() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.annotate("MOAT.DEV/resources.pids_limit", "10");
    b.write();
    assert_rule(&env, &b, "annotation", "MOAT.DEV/resources.pids_limit");
}

#[test]
fn spec_tmpfs_is_capped_nosuid_nodev() {
    let env = Env::new();
    let out = run_edited(&env, "grep ' /data ' /proc/self/mountinfo", |b| {
        b.add_mount(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "suid", "dev"]}))
    });
    let line = out.lines().next().unwrap_or_default();
    assert!(line.contains("size=65536k"), "{out}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{out}");
}

#[test]
fn cgroup_namespace_is_private() {
    let env = Env::new();
    // The bundle's spec has no cgroup namespace (as --cgroupns=host).
    let out = run_edited(&env, "cat /proc/self/cgroup", |b| {
        if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "cgroup");
        }
    });
    assert!(!out.trim().is_empty(), "no /proc/self/cgroup lines");
    for line in out.lines() {
        assert!(
            line.ends_with(":/"),
            "host cgroup path visible: {line}\n{out}"
        );
    }
}

/// kubelet sends `oomScoreAdj: -997` for Guaranteed pods: the container's
/// init cannot lower its score below moat's (no CAP_SYS_RESOURCE in the
/// host's user namespace), so moat raises it to its own value and says so
/// in the report (T8); before, create failed inside libcontainer.
#[test]
fn negative_oom_score_adj_is_raised_to_moats_own() {
    let env = Env::new();
    // moat inherits the test's value.
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let own = own.trim();
    assert!(own.parse::<i32>().unwrap() > -997, "the test runs at {own}");
    let mut b = env.bundle(&["sleep", "300"]);
    b.config["process"]["oomScoreAdj"] = json!(-997);
    b.write();
    let leak;
    {
        let (id, _g) = env.start_sleeper(&b, "oom");
        leak = env.leak_check(&id);
        let inside = env.moat(&["exec", &id, "cat", "/proc/1/oom_score_adj"]);
        inside.assert_ok();
        assert_eq!(inside.stdout.trim(), own, "{inside}");
        let report = env.moat(&["report", &id]);
        report.assert_ok();
        assert!(
            report.stdout.contains(&format!(
                "[oom-score-adj] process.oomScoreAdj: -997 -> {own}"
            )),
            "{report}"
        );
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
    // A value at or above moat's passes as it is.
    let out = run_edited(&env, "cat /proc/self/oom_score_adj", |b| {
        b.config["process"]["oomScoreAdj"] = json!(500)
    });
    assert_eq!(out.trim(), "500", "{out}");
}

/// A raw-config tenant names another container's rootfs as `root.path`
/// (an engine rootfs pattern such as overlay2/<id>/merged passes the
/// sensitive-path rule): the idmapped rootfs would give its root the other
/// container's files. Refused while another container uses it, as the
/// directory itself and as a directory holding it (T11).
#[test]
fn rootfs_of_a_running_container_is_refused() {
    let env = Env::new();
    let victim = env.bundle(&["sleep", "300"]);
    let (victim_id, _victim_guard) = env.start_sleeper(&victim, "victim");
    let victim_rootfs = victim.rootfs();
    for (root_path, detail) in [
        (victim_rootfs.clone(), "is in use: it is the root"),
        (
            std::path::PathBuf::from(victim.path()),
            "is in use: it is the r",
        ),
    ] {
        let mut b = env.bundle(&["true"]);
        b.config["root"]["path"] = json!(root_path.to_str().unwrap());
        b.write();
        assert_rule(
            &env,
            &b,
            "sensitive-host-mount",
            &format!("root.path {} {detail}", root_path.display()),
        );
    }
    // Once the victim is gone, its directory may be a rootfs again.
    let leak = env.leak_check(&victim_id);
    env.moat(&["delete", "--force", &victim_id]).assert_ok();
    leak.verify();
    let mut b = env.bundle(&["true"]);
    b.config["root"]["path"] = json!(victim_rootfs.to_str().unwrap());
    b.write();
    let id = env.id("reuse");
    let leak = env.leak_check(&id);
    env.run(&b, &id).assert_ok();
    leak.verify();
}

/// kubelet's pod volumes (`<pods>/<pod uid>/volumes/...`, idmapped by the
/// default `volumes.idmap_under`): a spec may bind only its own pod's, by
/// its pod uid annotation (T19). Another pod's volume is refused; the
/// pod's own is mounted and readable inside.
#[test]
fn another_pods_kubelet_volume_is_refused() {
    let env = Env::new();
    let kubelet = std::path::Path::new("/var/lib/kubelet");
    let made_kubelet = !kubelet.exists();
    let pods = kubelet.join("pods");
    let made_pods = !pods.exists();
    let other = format!("other-{}", std::process::id());
    let pod_dir = pods.join(&other);
    let vol = pod_dir.join("volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("probe"), "pod data\n").unwrap();
    struct Cleanup(Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    let mut dirs = vec![pod_dir.clone()];
    if made_pods {
        dirs.push(pods.clone());
    }
    if made_kubelet {
        dirs.push(kubelet.to_path_buf());
    }
    let _cleanup = Cleanup(dirs);
    let id = env.id("podvol");
    let with_uid = |uid: &str, script: &str| {
        // The CRI made the bundle for `id` (the pod uid annotation counts
        // only there, red-team R13).
        let mut b = env.engine_bundle("k8s.io", &id, &["/bin/sh", "-c", script]);
        b.add_mount(json!({"destination": "/data", "type": "bind",
            "source": vol.to_str().unwrap(), "options": ["rbind", "ro"]}));
        b.annotate("io.kubernetes.cri.sandbox-uid", uid);
        b.write();
        b
    };
    // A raw bundle naming the pod's own uid: refused (R13).
    let mut raw = env.sh_bundle("cat /data/probe");
    raw.add_mount(json!({"destination": "/data", "type": "bind",
        "source": vol.to_str().unwrap(), "options": ["rbind", "ro"]}));
    raw.annotate("io.kubernetes.cri.sandbox-uid", &other);
    raw.write();
    assert_rule(&env, &raw, "sensitive-host-mount", "and a raw bundle");
    let b = with_uid(&other, "cat /data/probe");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    assert!(out.stdout.contains("pod data"), "{out}");
    leak.verify();
}

/// Directories moat creates for tenant data are private (T17): the
/// learned-profile directory and the ones above it it makes, and the
/// state root with its private directory.
#[test]
fn learned_profile_and_state_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let learned = env.tmp.path().join("var/lib/moat/learned");
    let b = env.bundle(&["true"]);
    let id = env.id("modes");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&[
            "--learn-dir",
            learned.to_str().unwrap(),
            "run",
            "--bundle",
            b.path(),
            &id,
        ])
        .assert_ok();
    }
    leak.verify();
    assert!(learned.join(format!("{id}.json")).exists(), "no profile");
    let root = canonical_root(&env.root);
    for d in [
        learned.clone(),
        env.tmp.path().join("var/lib/moat"),
        env.tmp.path().join("var"),
        root.clone(),
        moat::state::private_root(&root),
    ] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
    }
}

/// T32 (red-team R1, R2): a mount option element holding a `,` would
/// reach the kernel as several options: an overlay's smuggled second
/// `lowerdir=/etc` showed the host's /etc, and a scratch tmpfs's
/// `mode=1777,size=0` undid the size cap. Both refused before anything is
/// made; the same overlay with one option per element still runs.
#[test]
fn options_smuggled_after_a_comma_are_refused() {
    let env = Env::new();
    let layers = |b: &Bundle| {
        for d in ["l1", "l2", "u", "w"] {
            std::fs::create_dir_all(format!("{}/{d}", b.path())).unwrap();
        }
        std::fs::write(format!("{}/l1/layer-file", b.path()), "from-l1\n").unwrap();
        let p = b.path().to_string();
        move |extra: &str| {
            json!({"destination": "/home", "type": "overlay", "source": "overlay",
                   "options": [format!("lowerdir={p}/l1:{p}/l2"), format!("upperdir={p}/u"),
                               format!("workdir={p}/w"), extra]})
        }
    };
    let mut b = env.bundle(&["true"]);
    let overlay = layers(&b);
    b.add_mount(overlay(&format!("xino=off,lowerdir=/etc:{}/l2", b.path())));
    b.write();
    assert_rule(&env, &b, "mount-options", "holds a ','");

    let mut b = env.bundle(&["true"]);
    b.add_mount(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["size=1m", "mode=1777,size=0,nr_inodes=0"]}),
    );
    b.write();
    assert_rule(&env, &b, "mount-options", "mode=1777,size=0");

    let out = run_edited(
        &env,
        "cat /home/layer-file; test -e /home/hostname || echo no-host-etc",
        |b| {
            let overlay = layers(b);
            b.add_mount(overlay("xino=off"));
        },
    );
    assert_eq!(out, "from-l1\nno-host-etc\n");
}

/// T11 (red-team R10): a `root.path` naming a host directory that is
/// neither inside the bundle nor a rootfs an engine assembles is mounted
/// unshifted: container root (even with CAP_DAC_OVERRIDE) cannot read
/// host root's 0600 file there, which it could through an idmapped mount,
/// and no mount point is created in the host's tree as host root.
#[test]
fn a_host_directory_as_rootfs_is_not_idmapped() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let host_dir = env.tmp.path().join("host-dir");
    copy_rootfs(&host_dir);
    let ssh = host_dir.join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(ssh.join("id_test"), "host-root-only-secret\n").unwrap();
    std::fs::set_permissions(ssh.join("id_test"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let root_path = host_dir.to_str().unwrap().to_string();
    let out = run_edited(&env, "cat /.ssh/id_test 2>&1; echo rc=$?", |b| {
        b.config["root"]["path"] = json!(root_path);
    });
    assert!(!out.contains("host-root-only-secret"), "{out}");
    assert!(out.contains("rc=1"), "{out}");

    // A missing mount point is not made in the host's directory.
    std::fs::remove_dir_all(host_dir.join("tmp")).unwrap();
    let mut b = env.sh_bundle("true");
    b.config["root"]["path"] = json!(root_path);
    b.write();
    let id = env.id("host-dir-rootfs");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let out = env.moat(&["create", "--bundle", b.path(), &id]);
        let _ = env.moat(&["delete", "--force", &id]);
        assert!(
            !host_dir.join("tmp").exists(),
            "create made /tmp in the host directory: {out:?}"
        );
    }
    leak.verify();
}

/// T8, weights (red-team pass 4 F3): a raw tenant's `cpu.shares` of
/// 262144 (the kernel's largest; docker gives 1024) is cut to the policy's
/// cap, seen from inside the container's own cgroup; a net_cls class id,
/// a host-wide label, is refused.
#[test]
fn relative_weights_are_capped_and_network_classes_refused() {
    let env = Env::new();
    let cap = effective_policy()
        .resources
        .cpu_shares_cap(moat::facts::online_cpus());
    assert!(cap < 262_144, "the cap must be below what the tenant asks");
    let out = run_edited(
        &env,
        "cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct/cpu.shares",
        |b| b.config["linux"]["resources"]["cpu"] = json!({"shares": 262144}),
    );
    assert_eq!(out.trim(), cap.to_string(), "cpu.shares inside: {out}");

    let mut b = env.bundle(&["true"]);
    b.config["linux"]["resources"]["network"] = json!({"classID": 1048577});
    b.write();
    assert_rule(
        &env,
        &b,
        "cgroup-resources",
        "linux.resources.network.classID",
    );
}

/// T4 (red-team R9): a tenant profile's SECCOMP_FILTER_FLAG_SPEC_ALLOW
/// (which keeps the speculative store bypass mitigation that installing a
/// filter turns on switched off) is dropped with a report line; the
/// tenant's own filter stays in force. Where the kernel forces the
/// mitigation for filtered tasks (`spec_store_bypass_disable=seccomp`),
/// the container's init is seen mitigated.
#[test]
fn seccomp_spec_allow_flag_is_dropped() {
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "300"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]
    });
    b.write();
    let leak;
    {
        let (id, _g) = env.start_sleeper(&b, "specallow");
        leak = env.leak_check(&id);
        let report = env.moat(&["report", &id]);
        report.assert_ok();
        assert!(
            report.stdout.contains(
                "[seccomp] linux.seccomp.flags: SECCOMP_FILTER_FLAG_SPEC_ALLOW,SECCOMP_FILTER_FLAG_LOG -> SECCOMP_FILTER_FLAG_LOG"
            ),
            "{report}"
        );
        let status = env.moat(&["exec", &id, "cat", "/proc/1/status"]);
        status.assert_ok();
        assert_eq!(
            status_field(&status.stdout, "Seccomp"),
            Some("2"),
            "{status}"
        );
        let mode =
            std::fs::read_to_string("/sys/devices/system/cpu/vulnerabilities/spec_store_bypass")
                .unwrap_or_default();
        if mode.contains("seccomp") {
            let ssb = status_field(&status.stdout, "Speculation_Store_Bypass").unwrap_or("");
            assert!(ssb.contains("force mitigated"), "{ssb} under {mode}");
        }
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}

/// Red-team pass 4 F5: a tenant's symlink to an engine's task directory
/// does not give the tenant that engine's privileges (here: the engine
/// namespace's cgroup parent, refused for a raw bundle); root's own link
/// to it (as `/var/run` -> `/run`) still does.
#[test]
fn an_engine_bundle_reached_through_a_tenants_symlink_is_raw() {
    let env = Env::new();
    let id = env.id("via-link");
    let mut b = env.engine_bundle("default", &id, &["true"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("/default/{id}"));
    b.write();
    let tenant_link = env.tmp.path().join("tenant-link");
    std::os::unix::fs::symlink(b.path(), &tenant_link).unwrap();
    std::os::unix::fs::lchown(&tenant_link, Some(1000), Some(1000)).unwrap();
    let root_link = env.tmp.path().join("root-link");
    std::os::unix::fs::symlink(b.path(), &root_link).unwrap();
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let out = env.moat(&["create", "--bundle", tenant_link.to_str().unwrap(), &id]);
        out.assert_fails_with("refused by moat rule cgroups-path");
        out.assert_fails_with("raw bundle");
    }
    leak.verify();
    {
        let _g = env.guard(&id);
        env.moat(&["run", "--bundle", root_link.to_str().unwrap(), &id])
            .assert_ok();
    }
    leak.verify();
}

/// R2 / red-team pass 4 F5: a tmpfs's `nr_inodes=0` (unlimited inodes,
/// kernel memory its size cap does not count) is capped at one inode per
/// 4 KiB of its size, seen from inside with statfs.
#[test]
fn tmpfs_unlimited_inodes_are_capped() {
    let env = Env::new();
    let out = run_edited(&env, "stat -f -c %c /scratch", |b| {
        b.add_mount(
            json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                           "options": ["size=1m", "nr_inodes=0"]}),
        );
    });
    assert_eq!(out.trim(), "256", "inodes of /scratch: {out}");
}

/// T8, weights: `moat update --cpu-share` is cut to the same cap as at
/// create, seen in the container's own cgroup.
#[test]
fn update_cpu_share_is_capped() {
    let env = Env::new();
    let cap = effective_policy()
        .resources
        .cpu_shares_cap(moat::facts::online_cpus());
    let b = env.bundle(&["sleep", "300"]);
    let leak;
    {
        let (id, _g) = env.start_sleeper(&b, "upd-shares");
        leak = env.leak_check(&id);
        env.moat(&["update", "--cpu-share", "262144", &id])
            .assert_ok();
        let shares = exec_sh(
            &env,
            &id,
            "cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct/cpu.shares",
        );
        shares.assert_ok();
        assert_eq!(shares.stdout.trim(), cap.to_string(), "{shares}");
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}
