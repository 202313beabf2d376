//! What an exec'd process gets that the init gets from libcontainer:
//! a working directory inside the container's root (T15, red-team pass 5
//! G9), the init's LSM confinement (T38, G10); and SELinux labels that are
//! labels (T32, G6).

use std::fs;

use moat_integration::*;
use serde_json::json;

/// Writes an exec process file with `cwd` and `extra` keys; the command
/// prints a marker, then lists its cwd.
fn process_file(env: &Env, name: &str, cwd: &str, extra: serde_json::Value) -> String {
    let mut p = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": cwd,
        "args": ["/bin/sh", "-c", "echo RAN-IN; pwd; ls ."],
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    let path = env.tmp.path().join(name);
    fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Red-team pass 5 G9 (CVE-2024-21626 class): `cwd: /dev/fd/N` is a
/// symlink to a magic link; the exec'd process started with its cwd in a
/// directory descriptor moat held (a procfs of the host's pid namespace).
/// Every N a tenant can try fails before the workload runs; an ordinary
/// cwd still works.
#[test]
fn exec_cwd_through_a_descriptor_is_refused() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("cwd-fd");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        env.moat(&["start", &id]).assert_ok();
        for n in 3..=40 {
            let cwd = format!("/dev/fd/{n}");
            let pf = process_file(&env, "p.json", &cwd, json!({}));
            let out = env.moat(&["exec", "--process", &pf, &id]);
            assert!(
                !out.success() && !out.stdout.contains("RAN-IN"),
                "exec with cwd {cwd} ran:\n{out}"
            );
            let out = env.moat(&["exec", "--cwd", &cwd, &id, "/bin/sh", "-c", "echo RAN-IN"]);
            assert!(
                !out.success() && !out.stdout.contains("RAN-IN"),
                "exec --cwd {cwd} ran:\n{out}"
            );
        }
        // Through other links to the same magic links.
        for cwd in ["/dev/stdin/..", "/proc/../dev/fd/0/..", "/dev/fd/0/../.."] {
            let pf = process_file(&env, "p.json", cwd, json!({}));
            let out = env.moat(&["exec", "--process", &pf, &id]);
            assert!(!out.stdout.contains("RAN-IN"), "cwd {cwd} ran:\n{out}");
        }
        let out = env.moat(&["exec", "--cwd", "/tmp", &id, "/bin/pwd"]);
        out.assert_ok();
        assert_eq!(out.stdout.trim(), "/tmp", "{out}");
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}

/// Red-team pass 5 G10: an exec'd process runs under the init's AppArmor
/// profile / SELinux label, never under one moat cannot apply. This host
/// may have no LSM: a label it cannot apply is refused (the process never
/// runs); with the LSM, a label other than the container's is refused.
#[test]
fn exec_lsm_label_moat_cannot_apply_is_refused() {
    let env = Env::new();
    let apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'));
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("exec-lsm");
    let leak = env.leak_check(&id);
    let _g = env.guard(&id);
    env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
    env.moat(&["start", &id]).assert_ok();
    let cases = [
        (
            json!({"apparmorProfile": "moat-test-profile"}),
            vec![],
            apparmor,
        ),
        (
            json!({"selinuxLabel": "system_u:system_r:container_t:s0:c1,c2"}),
            vec![],
            selinux,
        ),
        (json!({}), vec!["--apparmor", "moat-test-profile"], apparmor),
        (
            json!({}),
            vec!["--process-label", "system_u:system_r:container_t:s0"],
            selinux,
        ),
    ];
    for (extra, flags, host_has_it) in cases {
        let pf = process_file(&env, "p.json", "/", extra.clone());
        let mut args = vec!["exec"];
        args.extend(flags.iter().copied());
        args.extend(["--process", &pf, &id]);
        let out = env.moat(&args);
        assert!(
            !out.success() && !out.stdout.contains("RAN-IN"),
            "{extra} {flags:?} ran:\n{out}"
        );
        if !host_has_it {
            out.assert_fails_with("refused by moat rule exec-confinement");
        }
    }
    // A malformed label is refused whatever the host.
    let pf = process_file(
        &env,
        "p.json",
        "/",
        json!({"selinuxLabel": "a:b:c:s0,size=0"}),
    );
    env.moat(&["exec", "--process", &pf, &id])
        .assert_fails_with("refused by moat rule selinux-label");
    // No label asked: exec runs as before.
    let pf = process_file(&env, "p.json", "/", json!({}));
    let out = env.moat(&["exec", "--process", &pf, &id]);
    out.assert_ok();
    assert!(out.stdout.contains("RAN-IN"), "{out}");
    env.moat(&["delete", "--force", &id]).assert_ok();
    leak.verify();
}

/// Red-team pass 5 G6: `linux.mountLabel` is spliced into mount data by
/// libcontainer; a "label" carrying mount options is refused at create,
/// and so is a malformed `process.selinuxLabel`.
#[test]
fn malformed_selinux_labels_are_refused() {
    let env = Env::new();
    for (field, label) in [
        ("mountLabel", "\",size=0,nr_inodes=0,\""),
        ("mountLabel", "system_u:object_r:t:s0,mode=777"),
        ("selinuxLabel", "u:r:t:s0:c1,context=x"),
    ] {
        let mut b = env.bundle(&["true"]);
        if field == "mountLabel" {
            b.config["linux"]["mountLabel"] = json!(label);
        } else {
            b.config["process"]["selinuxLabel"] = json!(label);
        }
        b.write();
        for cmd in ["create", "run"] {
            let id = env.id("selinux-label");
            let leak = env.leak_check(&id);
            {
                let _g = env.guard(&id);
                env.moat(&[cmd, "--bundle", b.path(), &id])
                    .assert_fails_with("refused by moat rule selinux-label");
                leak.verify();
            }
        }
    }
}
