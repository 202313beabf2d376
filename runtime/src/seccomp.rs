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
    "open_tree_attr",
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
    // x86's (32-bit) multiplexer for every socket call: its arguments are
    // in memory, out of seccomp's sight, so socketcall(SYS_SOCKET) would
    // bypass the family allowlist (T26). 32-bit programs use the direct
    // socket syscalls (i386 has them since Linux 4.3) or fail.
    SOCKETCALL,
];

/// See [`ALWAYS_DENIED`]. Always a rule of its own, even where the default
/// action denies too: libseccomp builds `socketcall(SYS_SOCKET, …)` rules
/// from the `socket` rules (without their family condition), which only an
/// explicit denial of `socketcall` overrides.
pub const SOCKETCALL: &str = "socketcall";

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

/// Socket address families a container may create (`socket(2)`'s first
/// argument): local sockets, IPv4, IPv6 and netlink (iproute, getaddrinfo).
/// Every other family is denied whatever the profile says (T26): they
/// bypass the netfilter egress table (AF_PACKET, AF_XDP, AF_VSOCK, AF_KCM,
/// AF_RDS, AF_TIPC, AF_CAN, AF_BLUETOOTH, …) or reach kernel code that
/// workloads almost never need and that has a history of exploitable bugs
/// (AF_ALG, AF_LLC, AF_SMC, …). See docs/seccomp.md, "SOCKET FAMILIES".
pub const ALLOWED_SOCKET_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// `socketpair(2)` only makes sense for local sockets.
pub const ALLOWED_SOCKETPAIR_FAMILIES: &[u64] = &[libc::AF_UNIX as u64];

/// The syscalls whose first argument is an address family, with the
/// families each may use.
const FAMILY_SYSCALLS: &[(&str, &[u64])] = &[
    ("socket", ALLOWED_SOCKET_FAMILIES),
    ("socketpair", ALLOWED_SOCKETPAIR_FAMILIES),
];

/// A denied family is answered EAFNOSUPPORT, what a kernel built without
/// the family answers: C libraries and language runtimes probing a family
/// (IPv6, vsock) treat it as absent and fall back, where EPERM is often
/// reported as a hard error.
const EAFNOSUPPORT: u32 = libc::EAFNOSUPPORT as u32;

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
/// Built once per process (`harden` runs twice per create); the source is
/// the embedded file, so nothing outside the binary can change it.
pub fn default_profile() -> Result<LinuxSeccomp, ProfileError> {
    static BUILT: std::sync::OnceLock<LinuxSeccomp> = std::sync::OnceLock::new();
    if let Some(profile) = BUILT.get() {
        return Ok(profile.clone());
    }
    let mut base: LinuxSeccomp = serde_json::from_str(DEFAULT_PROFILE_JSON)?;
    base.set_architectures(Some(native_architectures()));
    let mut scratch = Report::default();
    let profile = enforce_always_denied(base, &mut scratch);
    Ok(BUILT.get_or_init(|| profile).clone())
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

fn family_arg(op: LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(value)
        .op(op)
        .build()
        .unwrap_or_default()
}

/// Does `family` satisfy one OCI argument condition (OCI semantics:
/// MASKED_EQ is `(arg & value) == valueTwo`)?
fn family_satisfies(family: u64, arg: &LinuxSeccompArg) -> bool {
    let v = arg.value();
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => family == v,
        LinuxSeccompOperator::ScmpCmpNe => family != v,
        LinuxSeccompOperator::ScmpCmpLt => family < v,
        LinuxSeccompOperator::ScmpCmpLe => family <= v,
        LinuxSeccompOperator::ScmpCmpGt => family > v,
        LinuxSeccompOperator::ScmpCmpGe => family >= v,
        LinuxSeccompOperator::ScmpCmpMaskedEq => family & v == arg.value_two().unwrap_or(0),
    }
}

/// The allow rules for `name` that let through exactly what `rule` let
/// through, restricted to `allowed` families: one rule per allowed family
/// the rule's first-argument conditions admit, with those conditions
/// replaced by `arg0 == family` (conditions on other arguments kept).
/// Exact 64-bit equality, so a family with high bits set (which the kernel
/// truncates to an int) never matches.
fn narrow_to_families(rule: &LinuxSyscall, name: &str, allowed: &[u64]) -> Vec<LinuxSyscall> {
    let args = rule.args().clone().unwrap_or_default();
    let (on_family, others): (Vec<LinuxSeccompArg>, Vec<LinuxSeccompArg>) =
        args.into_iter().partition(|a| a.index() == 0);
    allowed
        .iter()
        .filter(|f| on_family.iter().all(|a| family_satisfies(**f, a)))
        .map(|f| {
            let mut r = rule.clone();
            r.set_names(vec![name.to_string()]);
            let mut conditions = vec![family_arg(LinuxSeccompOperator::ScmpCmpEq, *f)];
            conditions.extend(others.iter().cloned());
            r.set_args(Some(conditions));
            r
        })
        .collect()
}

/// EAFNOSUPPORT rules for `name` covering every first-argument value
/// outside `allowed`: aligned blocks below 64 (one MASKED_EQ each) and one
/// `>= 64` rule for the rest of the 64-bit space (future families, and
/// values with high bits set).
fn deny_other_families(name: &str, allowed: &[u64]) -> Vec<LinuxSyscall> {
    const LIMIT: u64 = 64;
    let mut rules = Vec::new();
    let mut start = 0;
    while start < LIMIT {
        if allowed.contains(&start) {
            start += 1;
            continue;
        }
        // The largest aligned block at `start` holding no allowed family.
        let mut size = 1;
        while start % (size * 2) == 0
            && start + size * 2 <= LIMIT
            && !(start..start + size * 2).any(|f| allowed.contains(&f))
        {
            size *= 2;
        }
        let mut r = errno_rule(vec![name.to_string()], EAFNOSUPPORT);
        // A 32-bit mask: the `>= 64` rule below covers values with high
        // bits set, and libseccomp builds 32-bit architectures too.
        r.set_args(Some(vec![clone_flag_arg(!(size - 1) & 0xffff_ffff, start)]));
        rules.push(r);
        start += size;
    }
    let mut r = errno_rule(vec![name.to_string()], EAFNOSUPPORT);
    r.set_args(Some(vec![family_arg(
        LinuxSeccompOperator::ScmpCmpGe,
        LIMIT,
    )]));
    rules.push(r);
    rules
}

/// Restricts `socket` and `socketpair` to their allowed families (T26).
/// Under a deny-by-default profile, every rule allowing them is narrowed to
/// those families (the others get the default errno); under a permissive
/// default, the other families get EAFNOSUPPORT rules (unless the profile
/// denies the syscall outright). Never both for one syscall: libseccomp
/// builds x86's socketcall(SYS_SOCKET) from the socket rules, without the
/// family, and refuses two actions for it. Rules are returned to be
/// appended; `rules` loses the names.
fn enforce_socket_families(
    rules: &mut Vec<LinuxSyscall>,
    permissive_default: bool,
    report: &mut Report,
) -> Vec<LinuxSyscall> {
    let mut appended = Vec::new();
    for (name, allowed) in FAMILY_SYSCALLS {
        let denials = deny_other_families(name, allowed);
        rules.retain(|r| !denials.contains(r));
        let denied_outright = rules.iter().any(|r| {
            !allows(r.action()) && r.args().is_none() && r.names().iter().any(|n| n == name)
        });
        let mut narrowed = Vec::new();
        let mut changed = false;
        for rule in rules.iter_mut() {
            if !allows(rule.action()) || !rule.names().iter().any(|n| n == name) {
                continue;
            }
            let kept = narrow_to_families(rule, name, allowed);
            changed |= !(kept.len() == 1 && kept[0] == *rule);
            narrowed.extend(kept);
            let names: Vec<String> = rule.names().iter().filter(|n| n != name).cloned().collect();
            rule.set_names(names);
        }
        rules.retain(|r| !r.names().is_empty());
        if changed {
            report.change(
                Rule::Seccomp,
                "linux.seccomp.syscalls",
                format!("allows {name} beyond families {allowed:?}"),
                format!("{name} only for families {allowed:?}; others EAFNOSUPPORT"),
                "socket families that bypass netfilter or reach rarely used kernel code are always denied",
            );
        }
        if !permissive_default {
            appended.extend(narrowed);
        } else if !denied_outright {
            appended.extend(denials);
        }
    }
    appended
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
    let family_rules =
        enforce_socket_families(&mut rules, allows(profile.default_action()), report);
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
            ALWAYS_DENIED
                .iter()
                .filter(|n| **n != SOCKETCALL)
                .map(|s| s.to_string())
                .collect(),
            EPERM,
        ));
    }
    rules.push(errno_rule(vec![SOCKETCALL.into()], EPERM));
    rules.push(errno_rule(vec!["clone3".into()], ENOSYS));
    rules.extend(family_rules);

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

    /// Would some rule of `p` with `action` match `name(family, …)`
    /// (looking at first-argument conditions only)?
    fn matches(
        p: &LinuxSeccomp,
        name: &str,
        family: u64,
        action: fn(&LinuxSyscall) -> bool,
    ) -> bool {
        p.syscalls().iter().flatten().any(|r| {
            action(r)
                && r.names().iter().any(|n| n == name)
                && r.args()
                    .iter()
                    .flatten()
                    .filter(|a| a.index() == 0)
                    .all(|a| family_satisfies(family, a))
        })
    }

    fn allow_rule(r: &LinuxSyscall) -> bool {
        allows(r.action())
    }

    fn eafnosupport_rule(r: &LinuxSyscall) -> bool {
        r.action() == LinuxSeccompAction::ScmpActErrno && r.errno_ret() == Some(EAFNOSUPPORT)
    }

    /// Families to probe: every small one, future ones, and values whose
    /// low 32 bits name an allowed or denied family (the kernel truncates).
    fn probe_families() -> Vec<u64> {
        let mut v: Vec<u64> = (0..200).collect();
        v.extend([
            1 << 32 | 1,
            1 << 32 | 2,
            1 << 32 | 40,
            u64::MAX,
            u64::MAX - 39,
        ]);
        v
    }

    fn vsock_profile(default: LinuxSeccompAction, socket_rule: LinuxSyscall) -> LinuxSeccomp {
        let mut p = LinuxSeccomp::default();
        p.set_default_action(default);
        p.set_syscalls(Some(vec![
            socket_rule,
            rule(&["read"], LinuxSeccompAction::ScmpActAllow),
        ]));
        p
    }

    #[test]
    fn default_profile_allows_only_the_listed_socket_families() {
        let p = default_profile().unwrap();
        for (name, allowed) in FAMILY_SYSCALLS {
            assert!(!allowed_unconditionally(&p, name), "{name}");
            for f in probe_families() {
                assert_eq!(
                    matches(&p, name, f, allow_rule),
                    allowed.contains(&f),
                    "{name}({f:#x})"
                );
            }
        }
        assert!(matches(&p, "socket", libc::AF_INET as u64, allow_rule));
        assert!(!matches(&p, "socket", libc::AF_VSOCK as u64, allow_rule));
        assert!(!matches(&p, "socket", libc::AF_PACKET as u64, allow_rule));
        // The embedded JSON says so itself (already narrowed: no change).
        let raw: LinuxSeccomp = serde_json::from_str(DEFAULT_PROFILE_JSON).unwrap();
        let mut report = Report::default();
        enforce_always_denied(raw, &mut report);
        assert!(report.changes.is_empty(), "{report}");
    }

    #[test]
    fn a_workload_profile_allowing_any_family_is_narrowed() {
        // docker's form: socket allowed when the family is not AF_VSOCK.
        let mut docker_like = rule(&["socket", "connect"], LinuxSeccompAction::ScmpActAllow);
        docker_like.set_args(Some(vec![family_arg(LinuxSeccompOperator::ScmpCmpNe, 40)]));
        // A learned profile that recorded AF_VSOCK and AF_INET.
        let mut learned_vsock = rule(&["socket"], LinuxSeccompAction::ScmpActAllow);
        learned_vsock.set_args(Some(vec![family_arg(LinuxSeccompOperator::ScmpCmpEq, 40)]));
        let mut learned_inet = rule(&["socket"], LinuxSeccompAction::ScmpActAllow);
        learned_inet.set_args(Some(vec![family_arg(LinuxSeccompOperator::ScmpCmpEq, 2)]));
        for (socket_rule, expect) in [
            (
                rule(&["socket"], LinuxSeccompAction::ScmpActAllow),
                ALLOWED_SOCKET_FAMILIES,
            ),
            (docker_like, ALLOWED_SOCKET_FAMILIES),
            (learned_vsock, &[][..]),
            (learned_inet, &[2][..]),
        ] {
            let p = vsock_profile(LinuxSeccompAction::ScmpActErrno, socket_rule.clone());
            let mut report = Report::default();
            let once = enforce_always_denied(p, &mut report);
            for f in probe_families() {
                assert_eq!(
                    matches(&once, "socket", f, allow_rule),
                    expect.contains(&f),
                    "{socket_rule:?}: socket({f:#x})"
                );
            }
            // Other names of a split rule keep their conditions.
            if socket_rule.names().len() > 1 {
                assert!(matches(&once, "connect", 2, allow_rule));
                assert!(!matches(&once, "connect", 40, allow_rule));
            }
            let twice = enforce_always_denied(once.clone(), &mut Report::default());
            assert_eq!(once, twice, "a fixed point");
        }
    }

    #[test]
    fn a_permissive_profile_gets_eafnosupport_for_other_families() {
        let p = vsock_profile(
            LinuxSeccompAction::ScmpActAllow,
            rule(&["write"], LinuxSeccompAction::ScmpActAllow),
        );
        let once = enforce_always_denied(p, &mut Report::default());
        for (name, allowed) in FAMILY_SYSCALLS {
            for f in probe_families() {
                assert_eq!(
                    matches(&once, name, f, eafnosupport_rule),
                    !allowed.contains(&f),
                    "{name}({f:#x})"
                );
            }
        }
        // Never two actions for one of these syscalls (libseccomp's x86
        // socketcall would refuse the filter).
        for (name, _) in FAMILY_SYSCALLS {
            assert!(!once
                .syscalls()
                .iter()
                .flatten()
                .any(|r| allows(r.action()) && r.names().iter().any(|n| n == name)));
        }
        assert_eq!(
            once,
            enforce_always_denied(once.clone(), &mut Report::default())
        );
        // And it compiles for this host's architectures.
        let mut built = once;
        built.set_architectures(Some(native_architectures()));
        let dir = tempfile::tempdir().unwrap();
        crate::seccomp_bpf::compile(&built, dir.path()).unwrap();
    }

    #[test]
    fn a_profile_denying_socket_outright_keeps_its_denial() {
        let p = vsock_profile(
            LinuxSeccompAction::ScmpActAllow,
            rule(&["socket"], LinuxSeccompAction::ScmpActErrno),
        );
        let once = enforce_always_denied(p, &mut Report::default());
        assert!(denied_explicitly(&once, "socket"));
        assert!(!matches(&once, "socket", 40, eafnosupport_rule));
        assert!(matches(&once, "socketpair", 40, eafnosupport_rule));
    }
}
