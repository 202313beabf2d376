//! Unit tests of [`super`] (seccomp).

use crate::harden::fixtures::*;

fn clone_allow_rule(p: &LinuxSeccomp) -> Option<LinuxSyscall> {
    rules(p)
        .into_iter()
        .find(|r| r.names() == &["clone"] && lets_through(r.action()))
}

fn assert_moat_clone_rules(p: &LinuxSeccomp) {
    let clone = clone_allow_rule(p).expect("clone is allowed without namespace flags");
    let args = clone.args().clone().unwrap();
    assert_eq!(args.len(), 1);
    assert_eq!(args[0].index(), 0);
    assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!(args[0].value(), CLONE_NAMESPACE_FLAGS);
    assert_eq!(args[0].value_two(), Some(0));
    assert!(!unconditionally_allowed(p, "clone"));
    assert!(denied_with(p, "clone3", libc::ENOSYS as u32));
}

#[test]
fn seccomp_no_profile_gets_the_moat_default() {
    let h = ok(&docker_spec());
    let p = seccomp_of(&h.spec);
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p, seccomp::default_profile().unwrap());
    assert!(unconditionally_allowed(&p, "read"));
    for name in ALWAYS_DENIED {
        assert!(!any_allow_rule_names(&p, name), "{name}");
    }
    assert_moat_clone_rules(&p);
    let l = line(&h.report, Rule::Seccomp, "linux.seccomp");
    assert_eq!(l.before, "no profile");
    assert!(l.after.contains("moat default"), "{}", l.after);
    assert_eq!(lines(&h.report, Rule::Seccomp).len(), 1);
}

#[test]
fn seccomp_unconfined_profile_gets_the_moat_default() {
    for profile in [
        json!({"defaultAction": "SCMP_ACT_ALLOW"}),
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}),
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["bpf", "mount"], "action": "SCMP_ACT_ALLOW"}
        ]}),
        json!({"defaultAction": "SCMP_ACT_LOG"}),
    ] {
        let s = docker_with(|v| v["linux"]["seccomp"] = profile.clone());
        let h = ok(&s);
        let p = seccomp_of(&h.spec);
        assert_eq!(p, seccomp::default_profile().unwrap(), "{profile}");
        let l = line(&h.report, Rule::Seccomp, "linux.seccomp");
        assert_eq!(l.before, "unconfined profile", "{profile}");
    }
}

#[test]
fn seccomp_workload_allowlist_is_kept_minus_always_denied() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "bpf", "ptrace", "mount", "clone"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]
        });
    });
    let h = ok(&s);
    let p = seccomp_of(&h.spec);
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert!(p.architectures().is_some(), "the workload profile is kept");
    for name in ["read", "write", "exit_group"] {
        assert!(unconditionally_allowed(&p, name), "{name}");
    }
    for name in ["bpf", "ptrace", "mount", "clone3"] {
        assert!(!any_allow_rule_names(&p, name), "{name}");
    }
    // Default EPERM already denies the stripped names.
    assert!(!denied_with(&p, "bpf", libc::EPERM as u32));
    // The workload's own denial stays as it is.
    assert!(denied_with(&p, "chmod", 13));
    assert_moat_clone_rules(&p);

    assert!(!has_line(&h.report, Rule::Seccomp, "linux.seccomp"));
    let l = line(&h.report, Rule::Seccomp, "linux.seccomp.syscalls");
    assert_eq!(l.before, "allows bpf,mount,ptrace");
    assert_eq!(l.after, "denied (EPERM)");
    assert_eq!(lines(&h.report, Rule::Seccomp).len(), 1);
}

#[test]
fn seccomp_workload_denylist_gets_explicit_denials() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        });
    });
    let h = ok(&s);
    let p = seccomp_of(&h.spec);
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
    assert!(denied_with(&p, "chmod", 1));
    for name in ALWAYS_DENIED {
        assert!(denied_with(&p, name, libc::EPERM as u32), "{name}");
    }
    assert!(denied_with(&p, "clone3", libc::ENOSYS as u32));
    // clone with any namespace flag is denied, one rule per flag.
    let clone_denials: Vec<LinuxSyscall> = rules(&p)
        .into_iter()
        .filter(|r| r.names() == &["clone"] && r.action() == LinuxSeccompAction::ScmpActErrno)
        .collect();
    assert_eq!(
        clone_denials.len(),
        CLONE_NAMESPACE_FLAGS.count_ones() as usize
    );
    let mut covered = 0u64;
    for r in &clone_denials {
        let a = r.args().clone().unwrap()[0];
        assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(a.value_two(), Some(a.value()));
        assert_eq!(a.value().count_ones(), 1);
        covered |= a.value();
    }
    assert_eq!(covered, CLONE_NAMESPACE_FLAGS);
    // The workload profile was not replaced.
    assert!(!has_line(&h.report, Rule::Seccomp, "linux.seccomp"));
}

#[test]
fn seccomp_workload_kill_rule_loses_managed_names_only() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mount", "chmod"], "action": "SCMP_ACT_KILL"}
            ]
        });
    });
    let p = seccomp_of(&ok(&s).spec);
    let kill: Vec<LinuxSyscall> = rules(&p)
        .into_iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActKill)
        .collect();
    assert_eq!(kill.len(), 1);
    assert_eq!(kill[0].names(), &["chmod"]);
    assert!(denied_with(&p, "mount", libc::EPERM as u32));
}

#[test]
fn seccomp_workload_profile_that_denies_clone_keeps_its_denial() {
    let s = docker_with(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO"}
            ]
        });
    });
    let p = seccomp_of(&ok(&s).spec);
    assert!(clone_allow_rule(&p).is_none());
}

fn with_listener(profile: Value) -> Spec {
    docker_with(|v| v["linux"]["seccomp"] = profile)
}

fn notify_profile(default: &str) -> Value {
    json!({
        "defaultAction": default,
        "listenerPath": "/run/agent/notify.sock",
        "listenerMetadata": "meta",
        "syscalls": [
            {"names": ["getpid", "mount"], "action": "SCMP_ACT_NOTIFY"}
        ]
    })
}

#[test]
fn seccomp_listener_is_refused_unless_the_policy_lists_it() {
    let r = refused(&with_listener(notify_profile("SCMP_ACT_ALLOW")));
    assert_refusal(&r, "seccomp-listener", Some("seccomp.listener_paths"));
    assert_eq!(r.rule.threat(), "T25");
    for allowed in ["/run/agent/notify.sock", "/run/agent/"] {
        let mut p = Policy::default();
        p.seccomp.listener_paths = vec![allowed.into()];
        ok_with(
            &with_listener(notify_profile("SCMP_ACT_ALLOW")),
            &p,
            &facts(),
        );
    }
    for other in [
        "/run/agent/x/notify.sock",
        "/run/agent/../agent/notify.sock",
    ] {
        let mut p = Policy::default();
        p.seccomp.listener_paths = vec!["/run/agent/".into()];
        let mut v = notify_profile("SCMP_ACT_ALLOW");
        v["listenerPath"] = json!(other);
        assert_refusal(
            &refused_with(&with_listener(v), &p, &facts()),
            "seccomp-listener",
            Some("seccomp.listener_paths"),
        );
    }
}

#[test]
fn seccomp_notify_rules_survive_the_default_profile() {
    let mut p = Policy::default();
    p.seccomp.listener_paths = vec!["/run/agent/".into()];
    let h = ok_with(
        &with_listener(notify_profile("SCMP_ACT_ALLOW")),
        &p,
        &facts(),
    );
    let out = seccomp_of(&h.spec);
    // The moat default, with the listener and a notify rule for getpid
    // (allowed by the default), not for mount (denied by it).
    assert_eq!(out.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(
        out.listener_path().as_deref(),
        Some(Path::new("/run/agent/notify.sock"))
    );
    assert_eq!(out.listener_metadata().as_deref(), Some("meta"));
    let notify: Vec<String> = rules(&out)
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
        .flat_map(|r| r.names().clone())
        .collect();
    assert_eq!(notify, vec!["getpid"]);
    assert!(!any_allow_rule_names(&out, "getpid") || notify.contains(&"getpid".into()));
    // A fixed point.
    let again = ok_with(&h.spec, &p, &facts());
    assert_eq!(seccomp_of(&again.spec), out);
}

#[test]
fn seccomp_listener_without_a_surviving_notify_rule_is_refused() {
    let mut p = Policy::default();
    p.seccomp.listener_paths = vec!["/run/agent/".into()];
    let mut v = notify_profile("SCMP_ACT_ALLOW");
    v["syscalls"] = json!([{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]);
    let r = refused_with(&with_listener(v), &p, &facts());
    assert_refusal(&r, "seccomp-listener", None);
    assert!(r.detail.contains("never receive"), "{r}");
}

/// R9: a tenant profile's SECCOMP_FILTER_FLAG_SPEC_ALLOW is dropped with a
/// report line; TSYNC, LOG and WAIT_KILLABLE_RECV stay.
#[test]
fn seccomp_spec_allow_flag_is_dropped_and_safe_flags_kept() {
    use oci_spec::runtime::LinuxSeccompFilterFlag as F;
    let with_flags = |flags: Value| {
        docker_with(|v| {
            v["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "flags": flags,
                "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
            })
        })
    };
    let h = ok(&with_flags(json!([
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_LOG"
    ])));
    let p = seccomp_of(&h.spec);
    assert_eq!(
        p.flags().clone().unwrap(),
        vec![F::SeccompFilterFlagTsync, F::SeccompFilterFlagLog]
    );
    let l = line(&h.report, Rule::Seccomp, "linux.seccomp.flags");
    assert_eq!(
        l.before,
        "SECCOMP_FILTER_FLAG_TSYNC,SECCOMP_FILTER_FLAG_SPEC_ALLOW,SECCOMP_FILTER_FLAG_LOG"
    );
    assert_eq!(l.after, "SECCOMP_FILTER_FLAG_TSYNC,SECCOMP_FILTER_FLAG_LOG");
    // Alone: no flag left.
    let h = ok(&with_flags(json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"])));
    assert_eq!(seccomp_of(&h.spec).flags().clone().unwrap(), vec![]);
    assert_eq!(
        line(&h.report, Rule::Seccomp, "linux.seccomp.flags").after,
        "none"
    );
    // Only safe flags: kept, no line.
    let h = ok(&with_flags(json!([
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
    ])));
    assert_eq!(seccomp_of(&h.spec).flags().clone().unwrap().len(), 2);
    assert!(!h
        .report
        .by_rule(Rule::Seccomp)
        .any(|c| c.field == "linux.seccomp.flags"));
}

/// A profile of `rules` rules, each naming `names` syscalls with `args`
/// argument conditions.
fn sized_profile(rules: usize, names: usize, args: usize) -> Value {
    let rule = |i: usize| {
        json!({
            "names": (0..names).map(|n| ["read", "write", "openat", "ioctl"][n % 4]).collect::<Vec<_>>(),
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": (0..args).map(|a| json!({"index": a, "value": i * 8 + a, "op": "SCMP_CMP_EQ"})).collect::<Vec<_>>(),
        })
    };
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": (0..rules).map(rule).collect::<Vec<_>>(),
    })
}

/// R7-7: a workload profile is bounded before moat does any work on it.
#[test]
fn seccomp_oversized_profiles_are_refused_naming_the_count_and_the_bound() {
    use super::{
        MAX_SECCOMP_ARCHITECTURES, MAX_SECCOMP_ARG_CONDITIONS, MAX_SECCOMP_NAME_BYTES,
        MAX_SECCOMP_RULE_ARGS, MAX_SECCOMP_SYSCALL_ENTRIES,
    };
    let with = |p: Value| docker_with(|v| v["linux"]["seccomp"] = p);
    // At each bound: accepted.
    ok(&with(sized_profile(MAX_SECCOMP_SYSCALL_ENTRIES / 4, 4, 0)));
    ok(&with(sized_profile(MAX_SECCOMP_ARG_CONDITIONS / 2, 1, 2)));
    ok(&with(sized_profile(4, 1, MAX_SECCOMP_RULE_ARGS)));
    // The repro's shape (2000 rules of 4 names and 2 conditions).
    let r = refused(&with(sized_profile(2000, 4, 2)));
    assert_refusal(&r, "seccomp", None);
    assert!(
        r.detail.contains("8000 syscall entries")
            && r.detail
                .contains(&format!("bound of {MAX_SECCOMP_SYSCALL_ENTRIES}")),
        "{r}"
    );
    // One entry past the bound; rules without names count too.
    let mut p = sized_profile(MAX_SECCOMP_SYSCALL_ENTRIES / 4, 4, 0);
    p["syscalls"]
        .as_array_mut()
        .unwrap()
        .push(json!({"names": [], "action": "SCMP_ACT_ERRNO"}));
    let r = refused(&with(p));
    assert!(
        r.detail.contains(&format!(
            "{} syscall entries",
            MAX_SECCOMP_SYSCALL_ENTRIES + 1
        )),
        "{r}"
    );
    let r = refused(&with(sized_profile(
        MAX_SECCOMP_ARG_CONDITIONS / 2 + 1,
        1,
        2,
    )));
    assert_refusal(&r, "seccomp", None);
    assert!(
        r.detail.contains(&format!(
            "{} argument conditions",
            MAX_SECCOMP_ARG_CONDITIONS + 2
        )) && r
            .detail
            .contains(&format!("bound of {MAX_SECCOMP_ARG_CONDITIONS}")),
        "{r}"
    );
    let r = refused(&with(sized_profile(1, 1, MAX_SECCOMP_RULE_ARGS + 1)));
    assert!(
        r.detail
            .starts_with("linux.seccomp.syscalls[0] has 7 argument conditions"),
        "{r}"
    );
    let mut p = sized_profile(1, 1, 0);
    p["syscalls"][0]["names"] = json!(["x".repeat(MAX_SECCOMP_NAME_BYTES + 1)]);
    let r = refused(&with(p));
    assert!(r.detail.contains("names a syscall of 65 bytes"), "{r}");
    let mut p = sized_profile(1, 1, 0);
    p["architectures"] = json!(vec!["SCMP_ARCH_X86_64"; MAX_SECCOMP_ARCHITECTURES + 1]);
    let r = refused(&with(p));
    assert!(r.detail.contains("architectures"), "{r}");
    // Whatever its default action (an unconfined one too: its notify
    // rules would be carried).
    let mut p = sized_profile(2000, 1, 0);
    p["syscalls"] = json!(vec![
        json!({"names": ["read"], "action": "SCMP_ACT_ALLOW"});
        2000
    ]);
    assert_refusal(&refused(&with(p)), "seccomp", None);
}

/// moat's own default profile and docker's default profile (the form
/// docker hands the runtime) are well inside the bounds.
#[test]
fn seccomp_default_profiles_are_inside_the_bounds() {
    let moat: Value = serde_json::from_str(seccomp::DEFAULT_PROFILE_JSON).unwrap();
    ok(&docker_with(|v| v["linux"]["seccomp"] = moat));
    // The hardened default (moat's rules added) is too.
    let hardened = serde_json::to_value(seccomp::default_profile().unwrap()).unwrap();
    ok(&docker_with(|v| v["linux"]["seccomp"] = hardened));
    // docker's full default profile's shape: about 440 names, most in one
    // rule, and 8 single-condition rules (personality, socket, clone).
    let mut rules = vec![json!({
        "names": (0..430).map(|i| format!("call{i}")).collect::<Vec<_>>(),
        "action": "SCMP_ACT_ALLOW",
    })];
    for value in [0u64, 8, 131072, 131080, 4294967295, 40, 2114060288, 7] {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]}));
    }
    let docker = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules});
    ok(&docker_with(|v| v["linux"]["seccomp"] = docker));
}
