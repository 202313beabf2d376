//! `moat features`: the OCI features document. It tells the truth about
//! what moat enforces: the capabilities listed are the policy's allowlist
//! (a spec may ask for others; they are dropped), seccomp is always on, and
//! the `annotations` describe the sandbox floor.

use anyhow::Result;
use serde_json::json;

use moat::harden::{MASKED_PATHS, READONLY_PATHS};
use moat::seccomp::ALWAYS_DENIED;

use super::Ctx;

pub fn features(ctx: &Ctx) -> Result<()> {
    let policy = ctx.policy()?;
    let caps: Vec<String> = policy.allowed_capabilities().into_iter().collect();
    let doc = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec",
            "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid",
            "private", "rbind", "relatime", "remount", "ro", "rprivate", "rro", "rshared",
            "rslave", "runbindable", "rw", "shared", "silent", "slave", "strictatime",
            "suid", "sync", "tmpcopyup", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            // Enabled: a bind mount may ask for the container's own
            // mapping (containerd 2 does, with the pod's, for every bind
            // mount of a `hostUsers: false` pod); moat idmaps engine volume
            // storage with it and keeps host owners elsewhere (T19), and
            // refuses any other mapping (see the annotation).
            "mountExtensions": { "idmap": { "enabled": true } }
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "dev.moat.enforced.user-namespace": "always; one host id range per pod (its own for a lone container); an engine's own mapping or pinned user namespace (hostUsers: false) only at or above user_namespace.host_id_base and overlapping no range another container holds",
            "dev.moat.enforced.idmapped-mounts": "only with the container's own mapping; engine-provisioned volume storage (volumes.idmap_under) is idmapped, other sources keep their host owners",
            "dev.moat.enforced.seccomp": format!("always; denied whatever the profile says: {}", ALWAYS_DENIED.join(",")),
            "dev.moat.enforced.no-new-privileges": "always",
            "dev.moat.enforced.read-only-rootfs": "always",
            "dev.moat.enforced.masked-paths": MASKED_PATHS.join(","),
            "dev.moat.enforced.readonly-paths": READONLY_PATHS.join(","),
            "dev.moat.enforced.pids-limit": policy.resources.pids_limit.to_string(),
            "dev.moat.refused": "privileged specs, host namespaces, sensitive host mounts, devices beyond the default set"
        }
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
