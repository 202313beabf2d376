//! The process: capabilities cut to the policy's allowlist, no_new_privs,
//! a HOME that needs no name service, and a working directory outside /proc.

use std::collections::BTreeSet;
use std::path::Path;

use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType, Process, Spec};

use super::{normalize, HostFacts};
use crate::policy::{capability_name, Policy};
use crate::refusal::{Refusal, RefusalRule};
use crate::report::{Report, Rule};

/// Hardens one process: the container's init, or one started by `exec`.
pub fn harden_process(process: &Process, policy: &Policy, report: &mut Report) -> Process {
    let mut p = process.clone();
    let allowed: BTreeSet<String> = policy.allowed_capabilities();
    let caps = p.capabilities().clone().unwrap_or_else(empty_capabilities);
    let mut out = LinuxCapabilities::default();
    let sets: [(&str, &Option<Capabilities>); 5] = [
        ("bounding", caps.bounding()),
        ("effective", caps.effective()),
        ("permitted", caps.permitted()),
        ("inheritable", caps.inheritable()),
        ("ambient", caps.ambient()),
    ];
    // Ambient capabilities can only be raised when also permitted and
    // inheritable; asking for others only makes the raise fail.
    let raisable: Capabilities = caps
        .permitted()
        .clone()
        .unwrap_or_default()
        .intersection(&caps.inheritable().clone().unwrap_or_default())
        .copied()
        .collect();
    for (set, current) in sets {
        let current = current.clone().unwrap_or_default();
        let kept: Capabilities = current
            .iter()
            .filter(|c| allowed.contains(&capability_name(c)))
            .filter(|c| set != "ambient" || raisable.contains(c))
            .copied()
            .collect();
        let dropped: BTreeSet<String> = current
            .iter()
            .filter(|c| !kept.contains(c))
            .map(capability_name)
            .collect();
        if !dropped.is_empty() {
            report.change(
                Rule::Capabilities,
                format!("process.capabilities.{set}"),
                names(&current),
                names(&kept),
                format!(
                    "dropped {} ({})",
                    dropped.into_iter().collect::<Vec<_>>().join(","),
                    if set == "ambient" {
                        "not in capabilities.allow, or not both permitted and inheritable"
                    } else {
                        "not in capabilities.allow"
                    }
                ),
            );
        }
        match set {
            "bounding" => out.set_bounding(Some(kept)),
            "effective" => out.set_effective(Some(kept)),
            "permitted" => out.set_permitted(Some(kept)),
            "inheritable" => out.set_inheritable(Some(kept)),
            _ => out.set_ambient(Some(kept)),
        };
    }
    p.set_capabilities(Some(out));
    if p.no_new_privileges() != Some(true) {
        report.change(
            Rule::NoNewPrivileges,
            "process.noNewPrivileges",
            format!("{:?}", p.no_new_privileges()),
            "true",
            "setuid binaries and file capabilities must not raise privileges",
        );
        p.set_no_new_privileges(Some(true));
    }
    p
}

fn empty_capabilities() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(None);
    c.set_effective(None);
    c.set_permitted(None);
    c.set_inheritable(None);
    c.set_ambient(None);
    c
}

fn names(set: &Capabilities) -> String {
    let sorted: BTreeSet<String> = set.iter().map(capability_name).collect();
    if sorted.is_empty() {
        "[]".into()
    } else {
        sorted.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// Gives the container's init a HOME, so nothing inside the container ever
/// asks the C library's name service for it. libcontainer looks up the
/// user's home with `getpwuid_r` when the environment has no HOME (`runc
/// spec` bundles and containerd's `ctr` have none), in the container's init,
/// after pivot_root and before moat loads the seccomp filter: glibc then
/// reads the image's `/etc/nsswitch.conf` and loads `libnss_<service>.so.2`
/// from the image, so a hostile image ran its own code in the runtime's
/// process without seccomp (threat T20). moat reads the image's
/// `/etc/passwd` itself, as plain text, like runc does.
pub(super) fn set_home_without_name_service(
    spec: &mut Spec,
    facts: &HostFacts,
    report: &mut Report,
) {
    let Some(mut process) = spec.process().clone() else {
        return;
    };
    let mut env = process.env().clone().unwrap_or_default();
    let has_home = env
        .iter()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|v| !v.is_empty()));
    if has_home {
        return;
    }
    let uid = process.user().uid();
    let home = facts
        .image_passwd
        .as_deref()
        .and_then(|passwd| home_from_passwd(passwd, uid))
        .unwrap_or_else(|| "/".to_string());
    let before = if env.iter().any(|e| e.starts_with("HOME=")) {
        "HOME= (empty)"
    } else {
        "unset"
    };
    env.retain(|e| !e.starts_with("HOME="));
    env.push(format!("HOME={home}"));
    process.set_env(Some(env));
    spec.set_process(Some(process));
    report.change(
        Rule::HomeEnv,
        "process.env.HOME",
        before,
        home,
        "set from the image's /etc/passwd (\"/\" if the uid has no entry), so the container's init never runs the C library's user lookup, which loads libraries named by the image",
    );
}

/// Raises a `process.oomScoreAdj` below moat's own to moat's own (T8).
/// Lowering it needs CAP_SYS_RESOURCE in the host's user namespace, which
/// the container's init does not hold, so the write would fail `create`;
/// yet engines send low values (kubelet: -997 for Guaranteed pods), and a
/// container must never be harder for the OOM killer to pick than the
/// runtime that started it. An unknown floor is taken as 0.
pub(super) fn clamp_oom_score_adj(spec: &mut Spec, facts: &HostFacts, report: &mut Report) {
    let Some(mut process) = spec.process().clone() else {
        return;
    };
    clamp_process_oom_score_adj(&mut process, facts.oom_score_adj_floor, report);
    spec.set_process(Some(process));
}

/// [`clamp_oom_score_adj`] for one process: the container's init at create,
/// or a process `moat exec` starts (`floor`: moat's own value then).
pub fn clamp_process_oom_score_adj(process: &mut Process, floor: Option<i32>, report: &mut Report) {
    let Some(asked) = process.oom_score_adj() else {
        return;
    };
    let floor = floor.unwrap_or(0);
    if asked >= floor {
        return;
    }
    process.set_oom_score_adj(Some(floor));
    report.change(
        Rule::OomScoreAdj,
        "process.oomScoreAdj",
        asked.to_string(),
        floor.to_string(),
        "raised to moat's own oom_score_adj: a lower value needs CAP_SYS_RESOURCE in the host's user namespace, which the container does not have",
    );
}

/// The most a container's process may ask of each rlimit: moat's own hard
/// limit for it, read at create (`HostFacts::rlimit_ceilings`; a type
/// missing there is not judged). The container's init (and an exec'd
/// process) sets its rlimits inside its user namespace, where raising a
/// hard limit above the one it inherited from moat needs CAP_SYS_RESOURCE
/// in the host's: the write fails with a bare EPERM deep in libcontainer's
/// init (red-team pass 7). A soft limit above its hard one fails with
/// EINVAL. Both are refused here with one line, before anything is made.
/// Refused, not clamped: the workload asked for a limit it would silently
/// not get (what `ulimit -n` shows), and no policy key grants more than
/// the host's own ceiling, which only the operator can raise (the engine's
/// `LimitNOFILE=`, `ulimit -H` of whoever starts moat).
pub fn refuse_rlimits_above_ceiling(
    process: &Process,
    ceilings: &[(PosixRlimitType, u64)],
    what: &str,
) -> Result<(), Refusal> {
    for r in process.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        if r.soft() > r.hard() {
            return Err(Refusal::new(
                RefusalRule::Rlimit,
                format!(
                    "{what}.rlimits {name}: soft limit {} is above its hard limit {}",
                    r.soft(),
                    r.hard()
                ),
                None,
            ));
        }
        let Some((_, ceiling)) = ceilings.iter().find(|(t, _)| *t == r.typ()) else {
            continue;
        };
        if r.hard() > *ceiling {
            return Err(Refusal::new(
                RefusalRule::Rlimit,
                format!(
                    "{what}.rlimits {name}: hard limit {} is above the host's {} (moat's own hard limit, which a container's user namespace cannot raise; ask for at most that, e.g. docker run --ulimit {}=<soft>:{})",
                    show_rlimit(r.hard()),
                    show_rlimit(*ceiling),
                    docker_ulimit_name(r.typ()),
                    show_rlimit(*ceiling)
                ),
                None,
            ));
        }
    }
    Ok(())
}

fn show_rlimit(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// docker's `--ulimit` name of an rlimit (`RLIMIT_NOFILE` is `nofile`).
fn docker_ulimit_name(t: PosixRlimitType) -> String {
    t.to_string()
        .trim_start_matches("RLIMIT_")
        .to_ascii_lowercase()
}

/// The home directory of `uid` in a passwd file (`name:pw:uid:gid:gecos:
/// dir:shell`): the first entry for that uid with an absolute directory.
pub fn home_from_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[2].trim().parse::<u32>().ok()? != uid {
            return None;
        }
        let dir = fields[5];
        (dir.starts_with('/') && !dir.contains('\0')).then(|| dir.to_string())
    })
}

/// Refuses a working directory under /proc: `cwd: /proc/self/fd/N` is how
/// CVE-2024-21626 reached a runtime's leaked descriptor of a host
/// directory. No workload needs to start there.
pub fn refuse_proc_cwd(cwd: &Path) -> Result<(), Refusal> {
    if !cwd.is_absolute() {
        return Err(Refusal::new(
            RefusalRule::Cwd,
            format!("process.cwd {} is not an absolute path", cwd.display()),
            None,
        ));
    }
    if normalize(cwd).starts_with("/proc") {
        return Err(Refusal::new(
            RefusalRule::Cwd,
            format!(
                "process.cwd {} is under /proc (the shape of CVE-2024-21626)",
                cwd.display()
            ),
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
