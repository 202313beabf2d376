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
