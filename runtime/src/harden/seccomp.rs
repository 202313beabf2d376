//! The syscall filter: every container runs under one; a workload's own
//! profile is kept minus what moat always denies.

use std::path::Path;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSyscall, Spec,
};

use super::normalize;
use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};
use crate::report::{Report, Rule};
use crate::seccomp;

/// Refuses a `linux.seccomp.listenerPath` the policy does not list (threat
/// T25): moat, as host root, connects to that socket and sends it the
/// container's notify fd and the spec's `listenerMetadata`, so a tenant
/// must not choose where.
pub(super) fn refuse_seccomp_listener(spec: &Spec, policy: &Policy) -> Result<(), Refusal> {
    let Some(path) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .and_then(|s| s.listener_path().clone())
    else {
        return Ok(());
    };
    let normal = normalize(&path);
    let allowed = path.is_absolute()
        && normal == path
        && policy.seccomp.listener_paths.iter().any(|a| {
            match a.strip_suffix('/') {
                // A directory: a socket directly inside it.
                Some(dir) => normal.parent() == Some(Path::new(dir)) && !dir.is_empty(),
                None => normal == Path::new(a),
            }
        });
    if allowed {
        return Ok(());
    }
    Err(Refusal::new(
        RefusalRule::SeccompListener,
        format!(
            "linux.seccomp.listenerPath {}: moat would connect to it as host root and hand it the container's seccomp notify fd",
            path.display()
        ),
        Some("seccomp.listener_paths"),
    ))
}

/// The most syscall entries (names summed over rules, a rule without names
/// counting as one) a workload profile may hold. docker's default profile
/// has about 440 before docker drops the entries of capabilities the
/// container lacks (357 for a default `docker run`), containerd's
/// RuntimeDefault about as many, moat's own 304; twice docker's leaves room
/// for hand-written allowlists that name every architecture's calls.
pub(crate) const MAX_SECCOMP_SYSCALL_ENTRIES: usize = 1024;

/// The most argument conditions one rule may hold: a syscall has six
/// arguments, and libseccomp takes at most six comparisons per rule.
pub(crate) const MAX_SECCOMP_RULE_ARGS: usize = 6;

/// The most argument conditions (each rule's conditions times its names,
/// summed) a workload profile may hold: each becomes comparisons in the
/// program, and merging them is what makes libseccomp's compile quadratic.
/// docker's default profile has 8, moat's 5, a learned profile no more
/// than its base.
pub(crate) const MAX_SECCOMP_ARG_CONDITIONS: usize = 256;

/// The most architectures a profile may list (libseccomp knows 20).
pub(crate) const MAX_SECCOMP_ARCHITECTURES: usize = 20;

/// The longest syscall name a profile may hold: the kernel's longest are
/// under 30 bytes; longer ones only make every comparison of rules slower.
pub(crate) const MAX_SECCOMP_NAME_BYTES: usize = 64;

/// Refuses a workload seccomp profile above moat's size bounds (red-team
/// R7-7, threat T4): moat hardens and compiles the profile as host root in
/// the caller's cgroup (the engine's shim, a raw tenant's pipeline), and
/// both grow faster than the profile (libseccomp's merge of argument
/// conditions is quadratic: 2000 rules cost half a minute of a host core,
/// and then did not fit the kernel's program limit anyway). Counted
/// before any other work on the profile, in one linear pass.
pub(super) fn refuse_oversized_profile(spec: &Spec) -> Result<(), Refusal> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(());
    };
    let refuse = |detail: String| Err(Refusal::new(RefusalRule::Seccomp, detail, None));
    let archs = profile.architectures().as_ref().map_or(0, Vec::len);
    if archs > MAX_SECCOMP_ARCHITECTURES {
        return refuse(format!(
            "linux.seccomp.architectures lists {archs} architectures, above moat's bound of {MAX_SECCOMP_ARCHITECTURES}"
        ));
    }
    let mut entries = 0usize;
    let mut conditions = 0usize;
    for (i, rule) in profile.syscalls().iter().flatten().enumerate() {
        let args = rule.args().as_ref().map_or(0, Vec::len);
        if args > MAX_SECCOMP_RULE_ARGS {
            return refuse(format!(
                "linux.seccomp.syscalls[{i}] has {args} argument conditions, above moat's bound of {MAX_SECCOMP_RULE_ARGS} (a syscall has six arguments)"
            ));
        }
        if let Some(name) = rule
            .names()
            .iter()
            .find(|n| n.len() > MAX_SECCOMP_NAME_BYTES)
        {
            return refuse(format!(
                "linux.seccomp.syscalls[{i}] names a syscall of {} bytes, above moat's bound of {MAX_SECCOMP_NAME_BYTES}",
                name.len()
            ));
        }
        let names = rule.names().len().max(1);
        entries = entries.saturating_add(names);
        conditions = conditions.saturating_add(names.saturating_mul(args));
    }
    if entries > MAX_SECCOMP_SYSCALL_ENTRIES {
        return refuse(format!(
            "linux.seccomp.syscalls holds {entries} syscall entries (names summed over rules), above moat's bound of {MAX_SECCOMP_SYSCALL_ENTRIES}: moat compiles the profile as host root"
        ));
    }
    if conditions > MAX_SECCOMP_ARG_CONDITIONS {
        return refuse(format!(
            "linux.seccomp.syscalls holds {conditions} argument conditions (each rule's conditions times its names, summed), above moat's bound of {MAX_SECCOMP_ARG_CONDITIONS}: moat compiles the profile as host root"
        ));
    }
    Ok(())
}

/// The workload's notify rules, kept on top of moat's default profile when
/// that replaces an otherwise unconfined profile: a listener the operator
/// allowed must receive its fd, never be dropped silently. A notify rule
/// only adds a check, so it is kept for syscalls the default profile lets
/// through unconditionally (they leave that profile's allow rules); on a
/// syscall the default denies or allows only for some arguments it would
/// let the listener decide what moat denies, so those names are dropped and
/// reported.
fn carry_notify_rules(
    workload: &LinuxSeccomp,
    mut profile: LinuxSeccomp,
    report: &mut Report,
) -> LinuxSeccomp {
    let notify: Vec<&LinuxSyscall> = workload
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
        .collect();
    if notify.is_empty() {
        return profile;
    }
    let mut rules = profile.syscalls().clone().unwrap_or_default();
    let unconditional = |name: &str| {
        rules.iter().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args().as_ref().is_none_or(|a| a.is_empty())
                && r.names().iter().any(|n| n == name)
        }) && !rules.iter().any(|r| {
            r.action() != LinuxSeccompAction::ScmpActAllow && r.names().iter().any(|n| n == name)
        })
    };
    let mut carried = Vec::new();
    let mut dropped = Vec::new();
    for rule in notify {
        let (keep, drop): (Vec<String>, Vec<String>) =
            rule.names().iter().cloned().partition(|n| unconditional(n));
        dropped.extend(drop);
        if !keep.is_empty() {
            let mut r = rule.clone();
            r.set_names(keep);
            carried.push(r);
        }
    }
    let names: Vec<String> = carried.iter().flat_map(|r| r.names().clone()).collect();
    for r in rules.iter_mut() {
        let kept: Vec<String> = r
            .names()
            .iter()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        r.set_names(kept);
    }
    rules.retain(|r| !r.names().is_empty());
    let mut all = carried;
    all.extend(rules);
    profile.set_syscalls(Some(all));
    profile.set_listener_path(workload.listener_path().clone());
    profile.set_listener_metadata(workload.listener_metadata().clone());
    if !names.is_empty() {
        report.change(
            Rule::Seccomp,
            "linux.seccomp.syscalls",
            "notify rules of an unconfined profile",
            format!(
                "notify {} on top of the moat default profile",
                names.join(",")
            ),
            "the listener still receives the notify fd",
        );
    }
    dropped.sort();
    dropped.dedup();
    if !dropped.is_empty() {
        report.change(
            Rule::Seccomp,
            "linux.seccomp.syscalls",
            format!("notify {}", dropped.join(",")),
            "denied as in the moat default profile",
            "a listener may not decide syscalls moat denies",
        );
    }
    profile
}

/// Refuses a hardened profile that names a listener but has no notify rule
/// left: libcontainer would never contact the listener, and whatever waits
/// for its fd would wait forever.
pub(super) fn refuse_orphan_listener(spec: &Spec) -> Result<(), Refusal> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) else {
        return Ok(());
    };
    let has_notify = profile
        .syscalls()
        .iter()
        .flatten()
        .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    match profile.listener_path() {
        Some(path) if !has_notify => Err(Refusal::new(
            RefusalRule::SeccompListener,
            format!(
                "linux.seccomp.listenerPath {} would never receive a notify fd: no SCMP_ACT_NOTIFY rule survives moat's profile (notify cannot be the default action, nor apply to syscalls moat denies)",
                path.display()
            ),
            None,
        )),
        _ => Ok(()),
    }
}

pub(super) fn enforce_seccomp(spec: &mut Spec, report: &mut Report) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let current = linux.seccomp().clone();
    let hardened = match current {
        Some(profile) if !seccomp::is_unconfined(&profile) => {
            seccomp::enforce_always_denied(profile, report)
        }
        other => {
            let workload = other.clone();
            let before = if other.is_some() {
                "unconfined profile"
            } else {
                "no profile"
            };
            // The embedded profile is checked by unit tests; should it ever
            // fail to parse, fall back to denying everything rather than
            // running unfiltered.
            let profile = seccomp::default_profile().unwrap_or_else(|_| {
                let mut p = oci_spec::runtime::LinuxSeccomp::default();
                p.set_default_action(oci_spec::runtime::LinuxSeccompAction::ScmpActErrno);
                p
            });
            report.change(
                Rule::Seccomp,
                "linux.seccomp",
                before,
                "moat default profile (configs/seccomp/default.json)",
                "every container runs under a syscall filter",
            );
            match &workload {
                Some(w) => carry_notify_rules(w, profile, report),
                None => profile,
            }
        }
    };
    linux.set_seccomp(Some(hardened));
    spec.set_linux(Some(linux));
}

/// Drops `SECCOMP_FILTER_FLAG_SPEC_ALLOW` from the profile's `flags` (red-
/// team R9, threat T4): installing a filter makes the kernel turn the
/// speculative store bypass mitigation on for the task (with
/// `spec_store_bypass_disable=seccomp`: the kernel's default before 5.16,
/// a boot option since), and this flag keeps it off, so the
/// workload runs with a hardware side channel open that its filter would
/// have closed. Dropped with a report line, not refused: the profile is the
/// tenant's own and stays in force. The other flags are kept: `TSYNC`
/// applies the filter to every thread (only stricter), `LOG` logs what the
/// filter denies, `WAIT_KILLABLE_RECV` only changes how a notifying task
/// waits for its listener.
pub(super) fn drop_unsafe_filter_flags(spec: &mut Spec, report: &mut Report) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let Some(mut profile) = linux.seccomp().clone() else {
        return;
    };
    let Some(flags) = profile.flags().clone() else {
        return;
    };
    let unsafe_flag = |f: &LinuxSeccompFilterFlag| {
        matches!(f, LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow)
    };
    if !flags.iter().any(unsafe_flag) {
        return;
    }
    let name = |f: &LinuxSeccompFilterFlag| f.to_string();
    let kept: Vec<LinuxSeccompFilterFlag> =
        flags.iter().filter(|f| !unsafe_flag(f)).cloned().collect();
    report.change(
        Rule::Seccomp,
        "linux.seccomp.flags",
        flags.iter().map(name).collect::<Vec<_>>().join(","),
        if kept.is_empty() {
            "none".to_string()
        } else {
            kept.iter().map(name).collect::<Vec<_>>().join(",")
        },
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW would keep the speculative store bypass mitigation that installing the filter turns on switched off",
    );
    profile.set_flags(Some(kept));
    linux.set_seccomp(Some(profile));
    spec.set_linux(Some(linux));
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
