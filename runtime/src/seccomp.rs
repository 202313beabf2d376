//! Seccomp: moat's default profile and the always-denied list that wins over
//! any workload profile. Pure functions over `LinuxSeccomp`.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::report::{Report, Rule};

/// moat's default profile, `configs/seccomp/default.json`, embedded.
pub const DEFAULT_PROFILE_JSON: &str = include_str!("../../configs/seccomp/default.json");

/// Syscalls no container may make, whatever its profile says. Each gives a
/// container reach into kernel code or host state that namespaces do not
/// contain (see docs/seccomp.md for the threat behind each one).
pub const ALWAYS_DENIED: &[&str] = &[
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "unshare",
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "syslog",
    "iopl",
    "ioperm",
    "kcmp",
    "fanotify_init",
    "quotactl_fd",
    "uselib",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "vhangup",
    "create_module",
    "get_kernel_syms",
    "query_module",
];

/// clone flags that create namespaces. clone with any of them is denied:
/// new namespaces hand a user-namespace root more kernel surface
/// (CVE-2022-0185 needed exactly that).
pub const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// clone3 passes its flags in a struct seccomp cannot read, so it is answered
/// with ENOSYS: libc then falls back to clone, which is filtered.
const ENOSYS: u32 = libc::ENOSYS as u32;
const EPERM: u32 = libc::EPERM as u32;

#[derive(Debug, thiserror::Error)]
#[error("embedded seccomp profile configs/seccomp/default.json is invalid: {0}")]
pub struct ProfileError(#[from] serde_json::Error);

/// The architectures the filter is built for on this host: the native one
/// and its 32-bit companions. Every listed architecture makes libseccomp
/// build (and the kernel run) another branch of the filter; the benchmark
/// measured ~39 ms per container for the two foreign ones.
pub fn native_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// The default profile with moat's always-denied rules applied, built for
/// this host's architectures.
pub fn default_profile() -> Result<LinuxSeccomp, ProfileError> {
    let mut base: LinuxSeccomp = serde_json::from_str(DEFAULT_PROFILE_JSON)?;
    base.set_architectures(Some(native_architectures()));
    let mut scratch = Report::default();
    Ok(enforce_always_denied(base, &mut scratch))
}

fn allows(action: LinuxSeccompAction) -> bool {
    matches!(
        action,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
            | LinuxSeccompAction::ScmpActNotify
    )
}

/// A profile that filters nothing: no rules and a default action that lets
/// every syscall through. Treated like no profile at all.
pub fn is_unconfined(profile: &LinuxSeccomp) -> bool {
    allows(profile.default_action())
        && profile
            .syscalls()
            .as_ref()
            .is_none_or(|rules| rules.iter().all(|r| allows(r.action())))
}

fn errno_rule(names: Vec<String>, errno: u32) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names);
    rule.set_action(LinuxSeccompAction::ScmpActErrno);
    rule.set_errno_ret(Some(errno));
    rule
}

/// `(clone flags & mask) == value`, in OCI/runc terms: `value` is the mask
/// and `valueTwo` the value compared (see [`to_libcontainer_args`]).
fn clone_flag_arg(mask: u64, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(mask)
        .value_two(value)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .unwrap_or_default()
}

/// libcontainer 0.7 reads SCMP_CMP_MASKED_EQ the other way round from runc
/// and the OCI spec (it takes `valueTwo` as the mask). moat keeps specs in
/// OCI terms and swaps the two only in the copy handed to libcontainer, so
/// that docker's and users' profiles mean what they say.
pub fn to_libcontainer_args(profile: &mut LinuxSeccomp) {
    let Some(rules) = profile.syscalls().clone() else {
        return;
    };
    let swapped: Vec<LinuxSyscall> = rules
        .into_iter()
        .map(|mut rule| {
            if let Some(args) = rule.args().clone() {
                let args = args
                    .into_iter()
                    .map(|a| {
                        if a.op() != LinuxSeccompOperator::ScmpCmpMaskedEq {
                            return a;
                        }
                        LinuxSeccompArgBuilder::default()
                            .index(a.index())
                            .value(a.value_two().unwrap_or(0))
                            .value_two(a.value())
                            .op(a.op())
                            .build()
                            .unwrap_or(a)
                    })
                    .collect();
                rule.set_args(Some(args));
            }
            rule
        })
        .collect();
    profile.set_syscalls(Some(swapped));
}

/// Applies the always-denied list to a profile: strips those syscalls (and
/// moat-managed clone/clone3) from every rule that would let them through,
/// then appends moat's own rules for them. Rules that deny are kept as they
/// are, so a workload can always deny more.
pub fn enforce_always_denied(mut profile: LinuxSeccomp, report: &mut Report) -> LinuxSeccomp {
    let mut rules = profile.syscalls().clone().unwrap_or_default();
    let managed = |n: &str| ALWAYS_DENIED.contains(&n) || n == "clone" || n == "clone3";

    // Rules identical to the ones moat appends below are moat's own from an
    // earlier pass: drop them so they are re-added in moat's order and
    // hardening stays a fixed point.
    let per_flag_clone: Vec<LinuxSyscall> = (0..64)
        .map(|bit| 1u64 << bit)
        .filter(|flag| CLONE_NAMESPACE_FLAGS & flag != 0)
        .map(|flag| {
            let mut rule = errno_rule(vec!["clone".into()], EPERM);
            rule.set_args(Some(vec![clone_flag_arg(flag, flag)]));
            rule
        })
        .collect();
    rules.retain(|r| !per_flag_clone.contains(r));
    let mut workload_denies_clone = false;
    let mut stripped: Vec<String> = Vec::new();
    rules.retain_mut(|rule| {
        if !allows(rule.action()) {
            if rule.names().iter().any(|n| n == "clone") && rule.args().is_none() {
                workload_denies_clone = true;
            }
            // moat's own rules below cover these; two rules with different
            // actions for one syscall make libseccomp refuse the filter.
            let names: Vec<String> = rule
                .names()
                .iter()
                .filter(|n| n.as_str() == "clone" || !managed(n))
                .cloned()
                .collect();
            rule.set_names(names);
            return !rule.names().is_empty();
        }
        let before = rule.names().len();
        let names: Vec<String> = rule
            .names()
            .iter()
            .filter(|n| {
                let m = managed(n);
                if m && ALWAYS_DENIED.contains(&n.as_str()) {
                    stripped.push(n.to_string());
                }
                !m
            })
            .cloned()
            .collect();
        if names.len() != before {
            rule.set_names(names);
        }
        !rule.names().is_empty()
    });
    stripped.sort();
    stripped.dedup();
    if !stripped.is_empty() {
        report.change(
            Rule::Seccomp,
            "linux.seccomp.syscalls",
            format!("allows {}", stripped.join(",")),
            "denied (EPERM)",
            "always-denied syscalls win over a workload profile",
        );
    }

    // Listed explicitly even when the default action already denies, so
    // that a profile with a permissive default still gets them.
    // With a default of EPERM the stripped syscalls are already denied, and
    // libcontainer drops rules identical to the default action anyway.
    let default_is_eperm = profile.default_action() == LinuxSeccompAction::ScmpActErrno
        && profile.default_errno_ret().unwrap_or(EPERM) == EPERM;
    if !default_is_eperm {
        rules.push(errno_rule(
            ALWAYS_DENIED.iter().map(|s| s.to_string()).collect(),
            EPERM,
        ));
    }
    rules.push(errno_rule(vec!["clone3".into()], ENOSYS));

    if !workload_denies_clone {
        if allows(profile.default_action()) {
            // Permissive default: deny each namespace flag separately
            // (MASKED_EQ tests one pattern, and rules for one syscall OR).
            rules.extend(per_flag_clone);
        } else {
            let mut rule = LinuxSyscall::default();
            rule.set_names(vec!["clone".into()]);
            rule.set_action(LinuxSeccompAction::ScmpActAllow);
            rule.set_args(Some(vec![clone_flag_arg(CLONE_NAMESPACE_FLAGS, 0)]));
            rules.push(rule);
        }
    }
    // Hardening twice must change nothing: drop exact repeats of rules
    // (moat's own, appended again), keeping the first.
    let mut unique: Vec<LinuxSyscall> = Vec::with_capacity(rules.len());
    for r in rules {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    profile.set_syscalls(Some(unique));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
        let mut r = LinuxSyscall::default();
        r.set_names(names.iter().map(|s| s.to_string()).collect());
        r.set_action(action);
        r
    }

    fn allowed_unconditionally(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().as_ref().unwrap().iter().any(|r| {
            allows(r.action()) && r.args().is_none() && r.names().iter().any(|n| n == name)
        })
    }

    fn denied_explicitly(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().as_ref().unwrap().iter().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActErrno
                && r.args().is_none()
                && r.names().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_profile_parses_and_denies_by_default() {
        let p = default_profile().unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert!(allowed_unconditionally(&p, "read"));
        assert!(allowed_unconditionally(&p, "execve"));
        assert_eq!(p.default_errno_ret().unwrap_or(EPERM), EPERM);
        for name in ALWAYS_DENIED {
            // Denied by the default action: no rule may let it through.
            assert!(
                !p.syscalls()
                    .as_ref()
                    .unwrap()
                    .iter()
                    .any(|r| allows(r.action()) && r.names().iter().any(|n| n == name)),
                "{name} allowed"
            );
        }
    }

    #[test]
    fn default_profile_json_never_allows_the_always_denied_list() {
        let raw: LinuxSeccomp = serde_json::from_str(DEFAULT_PROFILE_JSON).unwrap();
        for r in raw.syscalls().as_ref().unwrap() {
            for n in r.names() {
                assert!(
                    !ALWAYS_DENIED.contains(&n.as_str()) && n != "clone" && n != "clone3",
                    "{n} must not be in configs/seccomp/default.json"
                );
            }
        }
    }

    #[test]
    fn workload_allowlist_loses_always_denied_syscalls() {
        let mut p = LinuxSeccomp::default();
        p.set_default_action(LinuxSeccompAction::ScmpActErrno);
        p.set_syscalls(Some(vec![
            rule(&["read", "bpf", "ptrace"], LinuxSeccompAction::ScmpActAllow),
            rule(&["io_uring_setup"], LinuxSeccompAction::ScmpActLog),
            rule(&["clone"], LinuxSeccompAction::ScmpActAllow),
        ]));
        let mut report = Report::default();
        let out = enforce_always_denied(p, &mut report);
        assert!(allowed_unconditionally(&out, "read"));
        // Default EPERM: the stripped names fall to it, no redundant rule.
        assert!(!denied_explicitly(&out, "bpf"));
        for n in ["bpf", "ptrace", "io_uring_setup", "clone"] {
            assert!(!allowed_unconditionally(&out, n), "{n}");
        }
        // clone is allowed only with no namespace flags.
        let clone = out
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.names() == &["clone"] && allows(r.action()))
            .unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.value(), CLONE_NAMESPACE_FLAGS);
        assert_eq!(arg.value_two(), Some(0));
        // …and swapped for libcontainer, which takes valueTwo as the mask.
        let mut lc = out.clone();
        to_libcontainer_args(&mut lc);
        let swapped = lc
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.names() == &["clone"] && allows(r.action()))
            .unwrap()
            .args()
            .as_ref()
            .unwrap()[0];
        assert_eq!(swapped.value(), 0);
        assert_eq!(swapped.value_two(), Some(CLONE_NAMESPACE_FLAGS));
        let line = report.by_rule(Rule::Seccomp).next().unwrap();
        assert!(line.before.contains("bpf") && line.before.contains("io_uring_setup"));
    }

    #[test]
    fn permissive_workload_profile_gets_per_flag_clone_denials() {
        let mut p = LinuxSeccomp::default();
        p.set_default_action(LinuxSeccompAction::ScmpActAllow);
        p.set_syscalls(Some(vec![rule(
            &["chmod"],
            LinuxSeccompAction::ScmpActErrno,
        )]));
        let out = enforce_always_denied(p, &mut Report::default());
        let rules = out.syscalls().as_ref().unwrap();
        let clone_denials: Vec<_> = rules
            .iter()
            .filter(|r| r.names() == &["clone"] && r.action() == LinuxSeccompAction::ScmpActErrno)
            .collect();
        assert_eq!(clone_denials.len(), 7);
        assert!(denied_explicitly(&out, "chmod"));
        assert!(denied_explicitly(&out, "unshare"));
    }

    #[test]
    fn workload_denial_of_clone_is_kept() {
        let mut p = LinuxSeccomp::default();
        p.set_default_action(LinuxSeccompAction::ScmpActErrno);
        p.set_syscalls(Some(vec![rule(
            &["clone"],
            LinuxSeccompAction::ScmpActErrno,
        )]));
        let out = enforce_always_denied(p, &mut Report::default());
        assert!(!out
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .any(|r| r.names() == &["clone"] && allows(r.action())));
    }

    #[test]
    fn default_profile_is_built_for_this_host_only() {
        let p = default_profile().unwrap();
        let archs = p.architectures().clone().unwrap();
        assert_eq!(archs, native_architectures());
        if cfg!(target_arch = "x86_64") {
            assert!(!archs.contains(&Arch::ScmpArchAarch64));
        }
    }

    #[test]
    fn clone3_answers_enosys() {
        let out = default_profile().unwrap();
        let r = out
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.names() == &["clone3"])
            .unwrap();
        assert_eq!(r.errno_ret(), Some(ENOSYS));
    }

    #[test]
    fn unconfined_detection() {
        let mut p = LinuxSeccomp::default();
        p.set_default_action(LinuxSeccompAction::ScmpActAllow);
        assert!(is_unconfined(&p));
        p.set_syscalls(Some(vec![rule(
            &["read"],
            LinuxSeccompAction::ScmpActAllow,
        )]));
        assert!(is_unconfined(&p));
        p.set_syscalls(Some(vec![rule(
            &["read"],
            LinuxSeccompAction::ScmpActErrno,
        )]));
        assert!(!is_unconfined(&p));
        p.set_default_action(LinuxSeccompAction::ScmpActErrno);
        assert!(!is_unconfined(&p));
    }
}
