//! Unit tests of [`super`] (process).

use crate::harden::fixtures::*;

#[test]
fn capabilities_docker_sets_are_cut_to_the_allowlist() {
    let h = ok(&docker_spec());
    for which in ["bounding", "effective", "permitted", "inheritable"] {
        assert_eq!(
            cap_set(&h.spec, which).unwrap(),
            set(DOCKER_CAPS_KEPT),
            "{which}"
        );
        let l = line(
            &h.report,
            Rule::Capabilities,
            &format!("process.capabilities.{which}"),
        );
        assert_eq!(
            l.after,
            set(DOCKER_CAPS_KEPT)
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            l.before,
            set(DOCKER_CAPS).into_iter().collect::<Vec<_>>().join(",")
        );
        for dropped in DOCKER_CAPS_DROPPED {
            assert!(l.why.contains(dropped), "{which}: {}", l.why);
        }
        for kept in DOCKER_CAPS_KEPT {
            assert!(
                !l.why.contains(kept),
                "{which} claims to drop {kept}: {}",
                l.why
            );
        }
    }
    // docker asks for no ambient capabilities: the set is empty, and nothing
    // was dropped from it.
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), BTreeSet::new());
    assert!(!has_line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.ambient"
    ));
    assert_eq!(lines(&h.report, Rule::Capabilities).len(), 4);
}

#[test]
fn capabilities_are_never_added() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({"bounding": ["CAP_KILL"]});
    });
    let h = ok(&s);
    assert_eq!(cap_set(&h.spec, "bounding").unwrap(), set(&["CAP_KILL"]));
    for which in ["effective", "permitted", "inheritable", "ambient"] {
        assert_eq!(cap_set(&h.spec, which).unwrap(), BTreeSet::new(), "{which}");
    }
    // Nothing was dropped, so there is nothing to report.
    assert!(
        lines(&h.report, Rule::Capabilities).is_empty(),
        "{}",
        h.report
    );
}

#[test]
fn capabilities_runc_defaults_lose_only_audit_write() {
    let h = ok(&runc_spec());
    for which in ["bounding", "effective", "permitted"] {
        assert_eq!(
            cap_set(&h.spec, which).unwrap(),
            set(&["CAP_KILL", "CAP_NET_BIND_SERVICE"]),
            "{which}"
        );
        let l = line(
            &h.report,
            Rule::Capabilities,
            &format!("process.capabilities.{which}"),
        );
        assert!(l.why.contains("CAP_AUDIT_WRITE"));
    }
    assert_eq!(cap_set(&h.spec, "inheritable").unwrap(), BTreeSet::new());
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), BTreeSet::new());
}

#[test]
fn capabilities_absent_give_empty_sets_not_full_ones() {
    let s = runc_with(|v| {
        v["process"].as_object_mut().unwrap().remove("capabilities");
    });
    assert!(s.process().as_ref().unwrap().capabilities().is_none());
    let h = ok(&s);
    for which in SETS {
        assert_eq!(cap_set(&h.spec, which), Some(BTreeSet::new()), "{which}");
    }
    // Serialized as explicit empty lists, so that no runtime default
    // (oci-spec's or libcontainer's) fills them in.
    let v = to_json(&h.spec);
    for which in SETS {
        assert_eq!(v["process"]["capabilities"][which], json!([]), "{which}");
    }
    assert!(lines(&h.report, Rule::Capabilities).is_empty());
}

#[test]
fn capabilities_empty_object_gives_empty_sets() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({});
    });
    let h = ok(&s);
    for which in SETS {
        assert_eq!(cap_set(&h.spec, which), Some(BTreeSet::new()), "{which}");
    }
}

#[test]
fn capabilities_ambient_kept_only_if_permitted_and_inheritable() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            "effective": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            "inheritable": ["CAP_KILL", "CAP_SETUID", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_NET_RAW"]
        });
    });
    let h = ok(&s);
    // KILL: allowed, permitted and inheritable. CHOWN: not inheritable.
    // SETUID: not permitted. NET_RAW: permitted and inheritable, but not
    // in the allowlist.
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), set(&["CAP_KILL"]));
    // NET_BIND_SERVICE was never asked for in ambient: not added.
    assert!(!cap_set(&h.spec, "ambient")
        .unwrap()
        .contains("CAP_NET_BIND_SERVICE"));
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.ambient",
    );
    assert_eq!(l.before, "CAP_CHOWN,CAP_KILL,CAP_NET_RAW,CAP_SETUID");
    assert_eq!(l.after, "CAP_KILL");
    assert!(
        l.why.contains("CAP_CHOWN,CAP_NET_RAW,CAP_SETUID"),
        "{}",
        l.why
    );
    assert!(l.why.contains("permitted and inheritable"), "{}", l.why);
    assert_eq!(
        cap_set(&h.spec, "permitted").unwrap(),
        set(&["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(
        cap_set(&h.spec, "inheritable").unwrap(),
        set(&["CAP_KILL", "CAP_SETUID"])
    );
    // effective had nothing outside the allowlist.
    assert!(!has_line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.effective"
    ));
}

#[test]
fn capabilities_ambient_without_permitted_or_inheritable_is_emptied() {
    let s = runc_with(|v| {
        v["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
    });
    let h = ok(&s);
    assert_eq!(cap_set(&h.spec, "ambient").unwrap(), BTreeSet::new());
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.ambient",
    );
    assert_eq!(l.after, "[]");
}

#[test]
fn capabilities_annotation_tightens_the_allowlist() {
    let s = annotated(
        docker_json(),
        &[("moat.dev/capabilities.allow", "CAP_KILL, chown")],
    );
    let h = ok(&s);
    for which in ["bounding", "effective", "permitted", "inheritable"] {
        assert_eq!(
            cap_set(&h.spec, which).unwrap(),
            set(&["CAP_CHOWN", "CAP_KILL"]),
            "{which}"
        );
    }
    assert_eq!(h.policy.capabilities.allow, vec!["CAP_KILL", "CAP_CHOWN"]);
    let a = line(&h.report, Rule::Annotations, "policy.capabilities.allow");
    assert_eq!(a.after, "CAP_KILL, chown");
    assert!(a.why.contains("tightens"), "{}", a.why);
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.bounding",
    );
    assert!(l.why.contains("CAP_SETUID"), "{}", l.why);
}

#[test]
fn capabilities_annotation_cannot_loosen_unless_overridable() {
    let s = annotated(
        docker_json(),
        &[("moat.dev/capabilities.allow", "CAP_KILL,CAP_NET_RAW")],
    );
    let r = refused(&s);
    assert_refusal(&r, "annotation-loosens-policy", Some("capabilities.allow"));
    assert!(r.to_string().contains("annotations.overridable"));

    let mut p = Policy::default();
    p.annotations.overridable = vec!["capabilities.allow".into()];
    let h = ok_with(&s, &p, &facts());
    assert_eq!(
        cap_set(&h.spec, "bounding").unwrap(),
        set(&["CAP_KILL", "CAP_NET_RAW"])
    );
    let a = line(&h.report, Rule::Annotations, "policy.capabilities.allow");
    assert!(a.why.contains("loosens"), "{}", a.why);
}

#[test]
fn capabilities_operator_allowlist_accepts_short_names() {
    let mut p = Policy::default();
    p.capabilities.allow = vec!["kill".into(), "NET_BIND_SERVICE".into()];
    let h = ok_with(&docker_spec(), &p, &facts());
    assert_eq!(
        cap_set(&h.spec, "bounding").unwrap(),
        set(&["CAP_KILL", "CAP_NET_BIND_SERVICE"])
    );
}

#[test]
fn capabilities_empty_allowlist_drops_everything() {
    let mut p = Policy::default();
    p.capabilities.allow = vec![];
    let h = ok_with(&docker_spec(), &p, &facts());
    for which in SETS {
        assert_eq!(cap_set(&h.spec, which).unwrap(), BTreeSet::new(), "{which}");
    }
}

#[test]
fn capabilities_sys_admin_is_dropped_without_refusal_when_paths_are_masked() {
    let mut caps: Vec<&str> = DOCKER_CAPS.to_vec();
    caps.push("CAP_SYS_ADMIN");
    caps.push("CAP_SYS_MODULE");
    let s = docker_with(|v| {
        for which in ["bounding", "effective", "permitted", "inheritable"] {
            v["process"]["capabilities"][which] = json!(caps);
        }
    });
    let h = ok(&s);
    for which in SETS {
        let c = cap_set(&h.spec, which).unwrap();
        assert!(!c.contains("CAP_SYS_ADMIN"), "{which}");
        assert!(!c.contains("CAP_SYS_MODULE"), "{which}");
    }
    let l = line(
        &h.report,
        Rule::Capabilities,
        "process.capabilities.bounding",
    );
    assert!(l.why.contains("CAP_SYS_ADMIN") && l.why.contains("CAP_SYS_MODULE"));
}

#[test]
fn no_new_privileges_forced_from_absent() {
    let h = ok(&docker_spec());
    assert_eq!(
        h.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    let l = line(&h.report, Rule::NoNewPrivileges, "process.noNewPrivileges");
    assert_eq!(l.before, "None");
    assert_eq!(l.after, "true");
}

#[test]
fn no_new_privileges_forced_from_false() {
    let s = docker_with(|v| v["process"]["noNewPrivileges"] = json!(false));
    let h = ok(&s);
    assert_eq!(
        h.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    let l = line(&h.report, Rule::NoNewPrivileges, "process.noNewPrivileges");
    assert_eq!(l.before, "Some(false)");
    assert_eq!(lines(&h.report, Rule::NoNewPrivileges).len(), 1);
}

#[test]
fn no_new_privileges_already_true_is_not_reported() {
    let h = ok(&runc_spec());
    assert_eq!(
        h.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    assert!(lines(&h.report, Rule::NoNewPrivileges).is_empty());
}

#[test]
fn spec_without_process_is_hardened_without_one() {
    let s = runc_with(|v| {
        v.as_object_mut().unwrap().remove("process");
    });
    let h = ok(&s);
    assert!(h.spec.process().is_none());
    assert!(lines(&h.report, Rule::Capabilities).is_empty());
    assert!(lines(&h.report, Rule::NoNewPrivileges).is_empty());
    // Everything else still applies.
    assert!(h.report.has(Rule::UserNamespace));
    assert!(h.report.has(Rule::Seccomp));
}

fn exec_process() -> Process {
    serde_json::from_value(json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "id"],
        "env": ["PATH=/usr/bin:/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_NET_RAW", "CAP_CHOWN"],
            "effective": ["CAP_SYS_ADMIN", "CAP_KILL"],
            "permitted": ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_SYS_ADMIN", "CAP_KILL"],
            "ambient": ["CAP_SYS_ADMIN", "CAP_KILL"]
        },
        "noNewPrivileges": false
    }))
    .expect("exec process parses")
}

fn process_caps(p: &Process, which: &str) -> BTreeSet<String> {
    let c = p.capabilities().clone().unwrap();
    let s = match which {
        "bounding" => c.bounding().clone(),
        "effective" => c.effective().clone(),
        "permitted" => c.permitted().clone(),
        "inheritable" => c.inheritable().clone(),
        _ => c.ambient().clone(),
    };
    s.unwrap().iter().map(capability_name).collect()
}

#[test]
fn harden_process_cuts_capabilities_and_sets_nnp() {
    let input = exec_process();
    let before = serde_json::to_value(&input).unwrap();
    let mut report = Report::default();
    let out = harden_process(&input, &Policy::default(), &mut report);
    assert_eq!(
        serde_json::to_value(&input).unwrap(),
        before,
        "input untouched"
    );

    assert_eq!(
        process_caps(&out, "bounding"),
        set(&["CAP_KILL", "CAP_CHOWN"])
    );
    assert_eq!(process_caps(&out, "effective"), set(&["CAP_KILL"]));
    assert_eq!(
        process_caps(&out, "permitted"),
        set(&["CAP_KILL", "CAP_CHOWN"])
    );
    assert_eq!(process_caps(&out, "inheritable"), set(&["CAP_KILL"]));
    assert_eq!(process_caps(&out, "ambient"), set(&["CAP_KILL"]));
    assert_eq!(out.no_new_privileges(), Some(true));
    // Everything else is the caller's.
    assert_eq!(out.args(), input.args());
    assert_eq!(out.env(), input.env());
    assert_eq!(out.cwd(), input.cwd());

    for which in SETS {
        let l = line(
            &report,
            Rule::Capabilities,
            &format!("process.capabilities.{which}"),
        );
        assert!(l.why.contains("CAP_SYS_ADMIN"), "{which}: {}", l.why);
    }
    assert_eq!(
        line(&report, Rule::NoNewPrivileges, "process.noNewPrivileges").before,
        "Some(false)"
    );
    // Only capability and nnp lines: exec changes nothing else.
    assert!(report
        .changes
        .iter()
        .all(|c| c.rule == Rule::Capabilities || c.rule == Rule::NoNewPrivileges));

    // A second pass is a no-op.
    let mut again = Report::default();
    let out2 = harden_process(&out, &Policy::default(), &mut again);
    assert_eq!(out2, out);
    assert!(again.changes.is_empty(), "{again}");
}

#[test]
fn harden_process_uses_the_effective_policy() {
    let s = annotated(
        docker_json(),
        &[("moat.dev/capabilities.allow", "CAP_KILL")],
    );
    let h = ok(&s);
    let mut report = Report::default();
    let out = harden_process(&exec_process(), &h.policy, &mut report);
    for which in SETS {
        assert_eq!(process_caps(&out, which), set(&["CAP_KILL"]), "{which}");
    }
}

#[test]
fn harden_process_without_capabilities_gets_empty_sets() {
    let p: Process = serde_json::from_value(json!({
        "user": {"uid": 0, "gid": 0},
        "args": ["true"],
        "cwd": "/"
    }))
    .unwrap();
    assert!(p.capabilities().is_none());
    let mut report = Report::default();
    let out = harden_process(&p, &Policy::default(), &mut report);
    for which in SETS {
        assert_eq!(process_caps(&out, which), BTreeSet::new(), "{which}");
    }
    assert_eq!(out.no_new_privileges(), Some(true));
    assert_eq!(lines(&report, Rule::NoNewPrivileges).len(), 1);
    assert!(lines(&report, Rule::Capabilities).is_empty());
}

#[test]
fn cwd_under_proc_is_refused() {
    for cwd in [
        "/proc/self/fd/7",
        "/proc/1/cwd",
        "/tmp/../proc/self/cwd",
        "relative",
    ] {
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        v["process"]["cwd"] = serde_json::json!(cwd);
        let s: Spec = serde_json::from_value(v).unwrap();
        let r = harden(&s, &Policy::default(), &HostFacts::default()).unwrap_err();
        assert_eq!(r.rule, "cwd", "{cwd}: {r}");
    }
    let mut v = serde_json::to_value(Spec::default()).unwrap();
    v["process"]["cwd"] = serde_json::json!("/srv/app");
    let s: Spec = serde_json::from_value(v).unwrap();
    assert!(harden(&s, &Policy::default(), &HostFacts::default()).is_ok());
}

fn env_of(s: &Spec) -> Vec<String> {
    s.process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default()
}

fn homes(s: &Spec) -> Vec<String> {
    env_of(s)
        .into_iter()
        .filter(|e| e.starts_with("HOME="))
        .collect()
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      broken-line\n\
                      nohome:x:7:7::relative/dir:/bin/sh\n\
                      app:x:1000:1000:App:/home/app:/bin/sh\n\
                      dup:x:1000:1000::/home/second:/bin/sh\n";

fn facts_with_passwd(passwd: Option<&str>) -> HostFacts {
    HostFacts {
        image_passwd: passwd.map(str::to_string),
        ..facts()
    }
}

#[test]
fn home_is_set_from_the_image_passwd_when_the_spec_has_none() {
    // `runc spec` has no HOME: libcontainer would look it up through NSS.
    let s = runc_spec();
    assert!(homes(&s).is_empty());
    let h = ok_with(&s, &Policy::default(), &facts_with_passwd(Some(PASSWD)));
    assert_eq!(homes(&h.spec), vec!["HOME=/root".to_string()]);
    let l = line(&h.report, Rule::HomeEnv, "process.env.HOME");
    assert_eq!((l.before.as_str(), l.after.as_str()), ("unset", "/root"));
    assert_eq!(Rule::HomeEnv.threat(), "T20");
    // The rest of the environment is kept, in order.
    let before = env_of(&s);
    assert_eq!(&env_of(&h.spec)[..before.len()], &before[..]);
}

#[test]
fn home_follows_the_process_uid_and_defaults_to_root_dir() {
    for (uid, passwd, want) in [
        (1000, Some(PASSWD), "/home/app"), // first entry wins
        (7, Some(PASSWD), "/"),            // relative dir is ignored
        (4242, Some(PASSWD), "/"),         // no entry
        (0, None, "/"),                    // image has no passwd
        (0, Some(""), "/"),
        (0, Some("root:x:0:0"), "/"), // too few fields
    ] {
        let s = runc_with(|v| v["process"]["user"]["uid"] = json!(uid));
        let h = ok_with(&s, &Policy::default(), &facts_with_passwd(passwd));
        assert_eq!(homes(&h.spec), vec![format!("HOME={want}")], "uid {uid}");
    }
}

fn runc_with_env(entry: &str) -> Spec {
    runc_with(|v| {
        v["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(entry))
    })
}

#[test]
fn a_spec_home_is_kept_and_an_empty_one_replaced() {
    let s = runc_with_env("HOME=/data");
    let h = ok_with(&s, &Policy::default(), &facts_with_passwd(Some(PASSWD)));
    assert_eq!(homes(&h.spec), vec!["HOME=/data".to_string()]);
    assert!(lines(&h.report, Rule::HomeEnv).is_empty());

    let s = runc_with_env("HOME=");
    let h = ok_with(&s, &Policy::default(), &facts_with_passwd(Some(PASSWD)));
    assert_eq!(homes(&h.spec), vec!["HOME=/root".to_string()]);
    assert_eq!(
        line(&h.report, Rule::HomeEnv, "process.env.HOME").before,
        "HOME= (empty)"
    );
}

#[test]
fn home_from_passwd_parses_only_well_formed_entries() {
    use crate::harden::home_from_passwd;
    assert_eq!(home_from_passwd(PASSWD, 0).as_deref(), Some("/root"));
    assert_eq!(home_from_passwd(PASSWD, 1000).as_deref(), Some("/home/app"));
    assert_eq!(home_from_passwd(PASSWD, 7), None);
    assert_eq!(
        home_from_passwd(" x:x: 5 :5::/five:/bin/sh", 5).as_deref(),
        Some("/five")
    );
    assert_eq!(home_from_passwd("x:x:-1:0::/neg:/bin/sh", u32::MAX), None);
    assert_eq!(home_from_passwd("x:x:99999999999:0::/big:/bin/sh", 0), None);
}

/// kubelet sends -997 for Guaranteed pods: raised to moat's own value
/// (which the container's init can set) and reported; values at or above
/// it pass untouched (T8).
#[test]
fn oom_score_adj_below_moats_own_is_raised_to_it() {
    let with_adj = |adj: i32| docker_with(|v| v["process"]["oomScoreAdj"] = json!(adj));
    let mut f = facts();
    f.oom_score_adj_floor = Some(-500);
    let h = ok_with(&with_adj(-997), &Policy::default(), &f);
    assert_eq!(
        h.spec.process().as_ref().unwrap().oom_score_adj(),
        Some(-500)
    );
    let l = line(&h.report, Rule::OomScoreAdj, "process.oomScoreAdj");
    assert_eq!((l.before.as_str(), l.after.as_str()), ("-997", "-500"));
    assert_eq!(Rule::OomScoreAdj.threat(), "T8");
    for passed in [-500, -499, 0, 1000] {
        let h = ok_with(&with_adj(passed), &Policy::default(), &f);
        assert_eq!(
            h.spec.process().as_ref().unwrap().oom_score_adj(),
            Some(passed)
        );
        assert!(!has_line(
            &h.report,
            Rule::OomScoreAdj,
            "process.oomScoreAdj"
        ));
    }
    // An unknown floor is 0: a negative value is raised to it.
    let h = ok(&with_adj(-1));
    assert_eq!(h.spec.process().as_ref().unwrap().oom_score_adj(), Some(0));
    // No value: nothing set.
    let h = ok(&docker_with(|v| {
        v["process"].as_object_mut().unwrap().remove("oomScoreAdj");
    }));
    assert_eq!(h.spec.process().as_ref().unwrap().oom_score_adj(), None);
}

/// Red-team pass 7: `docker run --ulimit nofile=…` above moat's own hard
/// limit failed create with a bare EPERM from the container's init. It is
/// refused with one line naming the limit and the host's; at or below the
/// ceiling it passes unchanged; a soft limit above its hard one is refused
/// too (EINVAL otherwise); a type the host did not report is not judged.
#[test]
fn rlimits_above_the_hosts_hard_limit_are_refused_with_one_line() {
    use oci_spec::runtime::PosixRlimitType as T;
    let with = |typ: &str, soft: u64, hard: u64| {
        docker_with(|v| {
            v["process"]["rlimits"] =
                serde_json::json!([{"type": typ, "soft": soft, "hard": hard}]);
        })
    };
    let mut f = facts();
    f.rlimit_ceilings = vec![(T::RlimitNofile, 1_048_576), (T::RlimitNproc, u64::MAX)];
    let policy = crate::policy::Policy::default();
    let r = refused_with(&with("RLIMIT_NOFILE", 1024, 2_000_000), &policy, &f);
    assert_refusal(&r, "rlimit", None);
    let text = r.to_string();
    assert!(
        text.contains("RLIMIT_NOFILE: hard limit 2000000 is above the host's 1048576"),
        "{text}"
    );
    assert!(text.contains("--ulimit nofile=<soft>:1048576"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(crate::refusal::RefusalRule::Rlimit.threat(), "T17");
    // At the ceiling, below it, unlimited where the host is: unchanged.
    for (typ, soft, hard) in [
        ("RLIMIT_NOFILE", 1_048_576, 1_048_576),
        ("RLIMIT_NOFILE", 1024, 4096),
        ("RLIMIT_NPROC", u64::MAX, u64::MAX),
        ("RLIMIT_CORE", 0, u64::MAX),
    ] {
        let h = ok_with(&with(typ, soft, hard), &policy, &f);
        let r = &h
            .spec
            .process()
            .as_ref()
            .unwrap()
            .rlimits()
            .clone()
            .unwrap()[0];
        assert_eq!((r.soft(), r.hard()), (soft, hard), "{typ}");
    }
    let r = refused_with(&with("RLIMIT_NOFILE", 4096, 1024), &policy, &f);
    assert_refusal(&r, "rlimit", None);
    assert!(
        r.to_string()
            .contains("soft limit 4096 is above its hard limit 1024"),
        "{r}"
    );
    // The exec path judges the same way.
    let p = with("RLIMIT_NOFILE", 1, 2_000_000)
        .process()
        .clone()
        .unwrap();
    let r = crate::harden::refuse_rlimits_above_ceiling(&p, &f.rlimit_ceilings, "exec process")
        .unwrap_err();
    assert!(
        r.to_string().contains("exec process.rlimits RLIMIT_NOFILE"),
        "{r}"
    );
}
