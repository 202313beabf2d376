//! OCI hooks (threat T21). `prestart`, `createRuntime`, `poststart` and
//! `poststop` hooks run as host root in the host's namespaces, started by
//! moat itself, so a hook in a tenant's config.json is code execution on
//! the host. They are refused unless the operator allows the executable
//! (by its real path, `hooks.allow`), and an allowed hook never runs
//! directly: [`wrap_allowed_hooks`] rewrites it to run through `moat hook`
//! (runtime/src/commands/hook.rs), which checks the executable again when
//! it runs, hands the hook the real bundle path, and keeps a failing
//! `poststop` hook from blocking `delete`.
//!
//! `createContainer` and `startContainer` hooks run inside the container's
//! mount namespace (their path resolves in the container's rootfs), where
//! moat can neither check the executable nor run its wrapper: always
//! refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::engine_bundle::Origin;
use crate::policy::HooksPolicy;
use crate::refusal::{Refusal, RefusalRule};
use crate::report::{Report, Rule};

/// The hook kinds, in the spec's order, with their JSON names.
pub const HOOK_KINDS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Kinds whose path resolves inside the container: never allowed.
const IN_CONTAINER_KINDS: &[&str] = &["createContainer", "startContainer"];

/// The only variable a hook's `env` may set (threat T21, red-team R9).
/// A hook runs as host root, so its environment is an allowlist, not a
/// denylist of the variables known today to steer a program: the dynamic
/// loader (`LD_*`), glibc (`GLIBC_TUNABLES`, `GCONV_PATH`, `LOCPATH`,
/// `HOSTALIASES`, …), the Go runtime dockerd is built with (`GODEBUG`,
/// `GOTRACEBACK`, `GOMAXPROCS`), interpreters a hook may be written in
/// (`PYTHON*`, `PERL5*`, `RUBY*`, `NODE_OPTIONS`, `BASH_ENV`, `ENV`), and
/// whatever a library reads next. docker's `libnetwork-setkey` hook and
/// nvidia's hooks are sent with no env at all.
pub const HOOK_ENV_ALLOWED: &[&str] = &["PATH"];

/// The directories a hook's `PATH` may list: host root's system
/// directories. A tenant's directory there would make a hook that runs a
/// helper by name run the tenant's file as host root.
pub const HOOK_PATH_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// May a hook run with `entry` (`NAME=value`) in its environment? Only
/// [`HOOK_ENV_ALLOWED`] names, and a `PATH` of [`HOOK_PATH_DIRS`] only.
/// Used by the hardening and again by `moat hook` when the hook runs.
pub fn hook_env_allowed(entry: &str) -> bool {
    let Some((name, value)) = entry.split_once('=') else {
        return false;
    };
    HOOK_ENV_ALLOWED.contains(&name)
        && (name != "PATH"
            || value
                .split(':')
                .all(|dir| HOOK_PATH_DIRS.contains(&dir.trim_end_matches('/'))))
}

/// Drops from every hook's `env` what [`hook_env_allowed`] does not allow,
/// one report line per hook that lost a variable (rule `hook-env`, T21).
/// Dropped, not refused: the hook still runs, with the environment an
/// engine gives its hooks (none).
pub(super) fn keep_allowed_hook_env(spec: &mut Spec, report: &mut Report) {
    let Some(mut hooks) = spec.hooks().clone() else {
        return;
    };
    let mut changed = false;
    for kind in HOOK_KINDS {
        let Some(mut list) = hooks_of(&hooks, kind).cloned() else {
            continue;
        };
        for (i, hook) in list.iter_mut().enumerate() {
            let Some(env) = hook.env().clone() else {
                continue;
            };
            let (kept, dropped): (Vec<String>, Vec<String>) =
                env.into_iter().partition(|e| hook_env_allowed(e));
            if dropped.is_empty() {
                continue;
            }
            let names: Vec<&str> = dropped
                .iter()
                .map(|e| e.split('=').next().unwrap_or_default())
                .collect();
            report.change(
                Rule::HookEnv,
                format!("hooks.{kind}[{i}].env"),
                names.join(","),
                if kept.is_empty() {
                    "none".to_string()
                } else {
                    kept.join(",")
                },
                "a hook runs as host root: its environment may only set PATH to system directories, never a variable that steers its loader, C library or language runtime",
            );
            hook.set_env(Some(kept));
            changed = true;
        }
        set_hooks_of(&mut hooks, kind, Some(list));
    }
    if changed {
        spec.set_hooks(Some(hooks));
    }
}

/// The hooks of one kind, by JSON name.
#[allow(deprecated)] // prestart: deprecated by the OCI spec, still sent by docker 20.10
pub fn hooks_of<'a>(hooks: &'a Hooks, kind: &str) -> Option<&'a Vec<Hook>> {
    match kind {
        "prestart" => hooks.prestart().as_ref(),
        "createRuntime" => hooks.create_runtime().as_ref(),
        "createContainer" => hooks.create_container().as_ref(),
        "startContainer" => hooks.start_container().as_ref(),
        "poststart" => hooks.poststart().as_ref(),
        "poststop" => hooks.poststop().as_ref(),
        _ => None,
    }
}

#[allow(deprecated)]
fn set_hooks_of(hooks: &mut Hooks, kind: &str, list: Option<Vec<Hook>>) {
    match kind {
        "prestart" => hooks.set_prestart(list),
        "createRuntime" => hooks.set_create_runtime(list),
        "createContainer" => hooks.set_create_container(list),
        "startContainer" => hooks.set_start_container(list),
        "poststart" => hooks.set_poststart(list),
        "poststop" => hooks.set_poststop(list),
        _ => hooks,
    };
}

fn refuse(detail: String) -> Refusal {
    Refusal::new(RefusalRule::Hooks, detail, Some("hooks.allow"))
}

/// The name a hook runs under: `args[0]`, or its path when it has no args.
fn arg0(hook: &Hook) -> String {
    hook.args()
        .as_ref()
        .and_then(|a| a.first().cloned())
        .unwrap_or_else(|| hook.path().display().to_string())
}

/// dockerd run as `libnetwork-setkey` acts, as host root, on the
/// container its arguments name: docker sends exactly
/// `libnetwork-setkey -exec-root=<docker's exec root> <container id>
/// <12-hex controller id>`, and dockerd moves that container's interfaces
/// into the namespace of the process that runs the hook. So the hook is
/// allowed only in a bundle docker made for this id ([`Origin::Engine`] of
/// namespace `moby`), naming that id: a raw tenant naming itself after
/// docker container V took V's eth0 (red-team R12). Anything else (another
/// container's id, an exec root that points dockerd at a socket the tenant
/// chose) is refused: the executable being allowed does not make every
/// argument list safe. The origin is unknown only in `explain`.
pub fn check_setkey_arguments(spec: &Spec, origin: Origin) -> Result<(), Refusal> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    for kind in HOOK_KINDS {
        for (i, hook) in hooks_of(hooks, kind).into_iter().flatten().enumerate() {
            if arg0(hook) != crate::policy::DOCKERD_HOOK_ARG0 {
                continue;
            }
            let docker_id = match origin {
                Origin::Engine(b) if b.is_docker() => Some(b.id.as_str()),
                Origin::Unknown => None,
                _ => {
                    return Err(refuse(format!(
                        "hooks.{kind}[{i}] ({}): {} runs only in a bundle docker made for this container (containerd namespace {}), and this is {}",
                        hook.path().display(),
                        crate::policy::DOCKERD_HOOK_ARG0,
                        crate::engine_bundle::DOCKER_NAMESPACE,
                        origin.describe()
                    )))
                }
            };
            let args = hook.args().clone().unwrap_or_default();
            let exec_root_ok = args.get(1).is_some_and(|a| {
                matches!(
                    a.as_str(),
                    "-exec-root=/var/run/docker" | "-exec-root=/run/docker"
                )
            });
            let id_ok = args
                .get(2)
                .is_some_and(|a| docker_id.is_none_or(|id| a == id));
            let controller_ok = args
                .get(3)
                .is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_hexdigit()));
            if args.len() != 4 || !exec_root_ok || !id_ok || !controller_ok {
                return Err(refuse(format!(
                    "hooks.{kind}[{i}] ({}): {} must be exactly [{}, -exec-root=/var/run/docker, <this container's id>, <12-hex controller id>], not {args:?}",
                    hook.path().display(),
                    crate::policy::DOCKERD_HOOK_ARG0,
                    crate::policy::DOCKERD_HOOK_ARG0,
                )));
            }
        }
    }
    Ok(())
}

/// Refuses every hook the policy does not allow. `resolved` maps each hook
/// path to the real executable it named when moat looked (`None`: it could
/// not be resolved), gathered by `moat::hook_exe`.
pub fn check_hooks(
    spec: &Spec,
    policy: &HooksPolicy,
    resolved: &HashMap<PathBuf, Option<PathBuf>>,
) -> Result<(), Refusal> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    for kind in HOOK_KINDS {
        for (i, hook) in hooks_of(hooks, kind).into_iter().flatten().enumerate() {
            let path = hook.path();
            let name = format!("hooks.{kind}[{i}] ({})", path.display());
            if IN_CONTAINER_KINDS.contains(kind) {
                return Err(Refusal::new(
                    RefusalRule::Hooks,
                    format!("{name}: {kind} hooks run inside the container's mount namespace, where moat cannot check their executable"),
                    None,
                ));
            }
            let Some(real) = resolved.get(path).cloned().flatten() else {
                return Err(refuse(format!(
                    "{name}: the executable cannot be resolved on the host"
                )));
            };
            let real_str = real.display().to_string();
            if !policy.allow.contains(&real_str) {
                return Err(refuse(format!(
                    "{name}: runs {real_str} as host root, which is not in hooks.allow"
                )));
            }
            if let Some(names) = policy.arg0.get(&real_str) {
                let a0 = arg0(hook);
                if !names.contains(&a0) {
                    return Err(Refusal::new(
                        RefusalRule::Hooks,
                        format!(
                            "{name}: {real_str} may only run as {} (hooks.arg0), not as {a0:?}",
                            names.join(", ")
                        ),
                        Some("hooks.arg0"),
                    ));
                }
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(Refusal::new(
                    RefusalRule::Hooks,
                    format!("{name}: timeout must be greater than zero"),
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// Rewrites every hook of a checked spec to run through `moat hook`:
/// `<moat> hook --kind K --bundle B --expect REAL [--timeout T] -- PATH
/// ARGS…`. `env` stays on the rewritten hook (libcontainer gives the hook
/// exactly that environment, and `moat hook` passes it on); `timeout`
/// stays too, except for `poststop`, whose timeout `moat hook` enforces
/// itself so that a hook that hangs is killed and `delete` still
/// completes. Hook paths missing from `resolved` are left alone
/// (`check_hooks` refused them already).
pub fn wrap_allowed_hooks(
    spec: &mut Spec,
    moat: &Path,
    bundle: &Path,
    resolved: &HashMap<PathBuf, Option<PathBuf>>,
) {
    let Some(mut hooks) = spec.hooks().clone() else {
        return;
    };
    for kind in HOOK_KINDS {
        let Some(list) = hooks_of(&hooks, kind).cloned() else {
            continue;
        };
        let wrapped = list
            .into_iter()
            .map(|hook| {
                let Some(real) = resolved.get(hook.path()).cloned().flatten() else {
                    return hook;
                };
                let mut args = vec![
                    "moat".to_string(),
                    "hook".into(),
                    "--kind".into(),
                    kind.to_string(),
                    "--bundle".into(),
                    bundle.display().to_string(),
                    "--expect".into(),
                    real.display().to_string(),
                ];
                let mut out = hook.clone();
                if *kind == "poststop" {
                    if let Some(t) = hook.timeout() {
                        args.extend(["--timeout".into(), t.to_string()]);
                    }
                    out.set_timeout(None);
                }
                args.extend(["--".into(), hook.path().display().to_string(), arg0(&hook)]);
                args.extend(hook.args().iter().flatten().skip(1).cloned());
                out.set_path(moat.to_path_buf());
                out.set_args(Some(args));
                out
            })
            .collect();
        set_hooks_of(&mut hooks, kind, Some(wrapped));
    }
    spec.set_hooks(Some(hooks));
}

/// The JSON keys of an OCI `Process` (oci-spec 0.10). `exec --process`
/// JSON is checked against them before it is parsed, because the parser
/// drops unknown keys silently: a `hooks` key there (or any field moat does
/// not know) would look accepted and do nothing, or something else in a
/// newer runtime.
pub const PROCESS_KEYS: &[&str] = &[
    "terminal",
    "consoleSize",
    "user",
    "args",
    "commandLine",
    "env",
    "cwd",
    "capabilities",
    "rlimits",
    "noNewPrivileges",
    "apparmorProfile",
    "oomScoreAdj",
    "selinuxLabel",
    "ioPriority",
    "scheduler",
    "execCPUAffinity",
];

/// Refuses `exec --process` JSON with hooks or a key `Process` lacks.
pub fn check_process_keys(raw: &serde_json::Value) -> Result<(), Refusal> {
    let Some(obj) = raw.as_object() else {
        return Ok(()); // not an object: the parser's own error says so
    };
    if obj.contains_key("hooks") {
        return Err(Refusal::new(
            RefusalRule::Hooks,
            "exec --process: a process has no hooks (hooks belong to config.json, where moat checks them)",
            None,
        ));
    }
    if let Some(key) = obj.keys().find(|k| !PROCESS_KEYS.contains(&k.as_str())) {
        return Err(Refusal::new(
            RefusalRule::UnsupportedField,
            format!("exec --process: unknown key {key:?} (moat refuses process fields it does not know)"),
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod setkey_tests {
    use super::*;
    use oci_spec::runtime::{Hook, Hooks};

    fn with_args(args: &[&str]) -> Spec {
        let mut h = Hook::default();
        h.set_path(PathBuf::from("/proc/1/exe"));
        h.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        let mut hooks = Hooks::default();
        hooks.set_prestart(Some(vec![h]));
        let mut spec = Spec::default();
        spec.set_hooks(Some(hooks));
        spec
    }

    #[test]
    fn setkey_hook_must_name_this_container() {
        let ok = [
            "libnetwork-setkey",
            "-exec-root=/var/run/docker",
            "abc",
            "0123456789ab",
        ];
        let docker = crate::engine_bundle::EngineBundle {
            namespace: "moby".into(),
            id: "abc".into(),
        };
        check_setkey_arguments(&with_args(&ok), Origin::Engine(&docker)).unwrap();
        check_setkey_arguments(&with_args(&ok), Origin::Unknown).unwrap();
        // Red-team R12: a raw bundle (whatever id it was created under) or
        // a bundle of another containerd namespace gets no setkey hook.
        let cri = crate::engine_bundle::EngineBundle {
            namespace: "k8s.io".into(),
            id: "abc".into(),
        };
        for origin in [Origin::Raw, Origin::Engine(&cri)] {
            let err = check_setkey_arguments(&with_args(&ok), origin).unwrap_err();
            assert!(
                err.detail.contains("runs only in a bundle docker made"),
                "{err}"
            );
        }
        for bad in [
            vec![
                "libnetwork-setkey",
                "-exec-root=/var/run/docker",
                "victim",
                "0123456789ab",
            ],
            vec![
                "libnetwork-setkey",
                "-exec-root=/tmp/x",
                "abc",
                "0123456789ab",
            ],
            vec![
                "libnetwork-setkey",
                "-exec-root=/var/run/docker",
                "abc",
                "xyz",
            ],
            vec![
                "libnetwork-setkey",
                "-exec-root=/var/run/docker",
                "abc",
                "0123456789ab",
                "more",
            ],
            vec!["libnetwork-setkey"],
        ] {
            let err =
                check_setkey_arguments(&with_args(&bad), Origin::Engine(&docker)).unwrap_err();
            assert_eq!(err.rule.name(), "hooks", "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(path: &str, args: &[&str]) -> Hook {
        let mut h = Hook::default();
        h.set_path(PathBuf::from(path));
        if !args.is_empty() {
            h.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        }
        h
    }

    fn spec_with(kind: &str, h: Hook) -> Spec {
        let mut hooks = Hooks::default();
        set_hooks_of(&mut hooks, kind, Some(vec![h]));
        let mut spec = Spec::default();
        spec.set_hooks(Some(hooks));
        spec
    }

    fn resolved(pairs: &[(&str, Option<&str>)]) -> HashMap<PathBuf, Option<PathBuf>> {
        pairs
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.map(PathBuf::from)))
            .collect()
    }

    fn docker_hook() -> Hook {
        hook(
            "/proc/42/exe",
            &[
                "libnetwork-setkey",
                "-exec-root=/var/run/docker",
                "abc",
                "def",
            ],
        )
    }

    #[test]
    fn every_kind_is_refused_by_default_naming_kind_and_path() {
        let policy = HooksPolicy::default();
        for kind in HOOK_KINDS {
            let spec = spec_with(kind, hook("/tmp/evil", &[]));
            let r = resolved(&[("/tmp/evil", Some("/tmp/evil"))]);
            let err = check_hooks(&spec, &policy, &r).unwrap_err();
            assert_eq!(err.rule, RefusalRule::Hooks);
            let text = err.to_string();
            assert!(text.contains(&format!("hooks.{kind}[0]")), "{text}");
            assert!(text.contains("/tmp/evil"), "{text}");
        }
    }

    #[test]
    fn dockers_setkey_hook_is_allowed_by_its_resolved_path() {
        let spec = spec_with("prestart", docker_hook());
        let r = resolved(&[("/proc/42/exe", Some("/usr/sbin/dockerd"))]);
        check_hooks(&spec, &HooksPolicy::default(), &r).unwrap();
        // The same pid resolving to anything else is refused.
        let r = resolved(&[("/proc/42/exe", Some("/usr/bin/python3"))]);
        assert!(check_hooks(&spec, &HooksPolicy::default(), &r).is_err());
        // Unresolvable (the pid exited): refused.
        let r = resolved(&[("/proc/42/exe", None)]);
        assert!(check_hooks(&spec, &HooksPolicy::default(), &r).is_err());
        assert!(check_hooks(&spec, &HooksPolicy::default(), &HashMap::new()).is_err());
    }

    #[test]
    fn dockerd_under_another_name_is_refused() {
        let spec = spec_with(
            "prestart",
            hook("/usr/sbin/dockerd", &["dockerd", "-H", "x"]),
        );
        let r = resolved(&[("/usr/sbin/dockerd", Some("/usr/sbin/dockerd"))]);
        let err = check_hooks(&spec, &HooksPolicy::default(), &r).unwrap_err();
        assert!(err.to_string().contains("hooks.arg0"), "{err}");
        // No args: arg0 is the path, also not libnetwork-setkey.
        let spec = spec_with("prestart", hook("/usr/sbin/dockerd", &[]));
        assert!(check_hooks(&spec, &HooksPolicy::default(), &r).is_err());
    }

    #[test]
    fn in_container_kinds_are_refused_even_when_allowed() {
        let policy = HooksPolicy {
            allow: vec!["/bin/true".into()],
            ..Default::default()
        };
        let r = resolved(&[("/bin/true", Some("/bin/true"))]);
        for kind in ["createContainer", "startContainer"] {
            let err = check_hooks(&spec_with(kind, hook("/bin/true", &[])), &policy, &r);
            assert!(err.unwrap_err().to_string().contains("mount namespace"));
        }
        for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
            check_hooks(&spec_with(kind, hook("/bin/true", &[])), &policy, &r).unwrap();
        }
    }

    #[test]
    fn bad_timeouts_are_refused_and_env_is_not_judged_by_the_check() {
        let policy = HooksPolicy {
            allow: vec!["/bin/true".into()],
            ..Default::default()
        };
        let r = resolved(&[("/bin/true", Some("/bin/true"))]);
        // The env is cut by keep_allowed_hook_env, not refused.
        let mut h = hook("/bin/true", &[]);
        h.set_env(Some(vec!["LD_PRELOAD=/x.so".into(), "PATH=/bin".into()]));
        check_hooks(&spec_with("poststop", h.clone()), &policy, &r).unwrap();
        h.set_timeout(Some(0));
        assert!(check_hooks(&spec_with("poststop", h), &policy, &r).is_err());
    }

    /// R9: a hook's environment is an allowlist (PATH of system
    /// directories), not a denylist: GLIBC_TUNABLES, Go and interpreter
    /// knobs, and names nobody has thought of yet are dropped.
    #[test]
    fn hook_env_keeps_only_a_system_path() {
        for ok in [
            "PATH=/usr/bin:/bin",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PATH=/usr/bin/",
        ] {
            assert!(hook_env_allowed(ok), "{ok}");
        }
        for bad in [
            "LD_PRELOAD=/x.so",
            "LD_LIBRARY_PATH=/x",
            "GLIBC_TUNABLES=glibc.malloc.mxfast=0",
            "GCONV_PATH=/x",
            "GODEBUG=x=1",
            "GOTRACEBACK=crash",
            "PYTHONPATH=/x",
            "PERL5OPT=-Mx",
            "NODE_OPTIONS=--require=/x",
            "BASH_ENV=/x",
            "HOME=/root",
            "A=1",
            "PATH=/tmp/tenant:/usr/bin",
            "PATH=",
            "PATH=/usr/bin:",
            "PATH=/usr/../tmp",
            "PATH",
        ] {
            assert!(!hook_env_allowed(bad), "{bad}");
        }
        let mut h = hook("/bin/true", &[]);
        h.set_env(Some(vec![
            "GLIBC_TUNABLES=glibc.malloc.mxfast=0".into(),
            "PATH=/usr/bin:/bin".into(),
            "GODEBUG=x=1".into(),
        ]));
        let mut spec = spec_with("poststart", h);
        let mut report = Report::default();
        keep_allowed_hook_env(&mut spec, &mut report);
        let kept = &hooks_of(spec.hooks().as_ref().unwrap(), "poststart").unwrap()[0];
        assert_eq!(kept.env().clone().unwrap(), vec!["PATH=/usr/bin:/bin"]);
        let line = report.by_rule(Rule::HookEnv).next().unwrap();
        assert_eq!(line.field, "hooks.poststart[0].env");
        assert_eq!(line.before, "GLIBC_TUNABLES,GODEBUG");
        assert_eq!(Rule::HookEnv.threat(), "T21");
        // Nothing to drop: no line, the spec unchanged.
        let before = spec.clone();
        let mut report = Report::default();
        keep_allowed_hook_env(&mut spec, &mut report);
        assert_eq!(spec, before);
        assert!(report.changes.is_empty());
    }

    #[test]
    fn wrapping_runs_hooks_through_moat_and_keeps_env_and_timeout() {
        let mut h = docker_hook();
        h.set_env(Some(vec!["A=1".into()]));
        h.set_timeout(Some(5));
        let mut spec = spec_with("prestart", h.clone());
        let r = resolved(&[("/proc/42/exe", Some("/usr/sbin/dockerd"))]);
        wrap_allowed_hooks(&mut spec, Path::new("/usr/bin/moat"), Path::new("/b"), &r);
        let w = &hooks_of(spec.hooks().as_ref().unwrap(), "prestart").unwrap()[0];
        assert_eq!(w.path(), Path::new("/usr/bin/moat"));
        assert_eq!(w.env(), h.env());
        assert_eq!(w.timeout(), Some(5));
        assert_eq!(
            w.args().as_ref().unwrap().join(" "),
            "moat hook --kind prestart --bundle /b --expect /usr/sbin/dockerd -- /proc/42/exe libnetwork-setkey -exec-root=/var/run/docker abc def"
        );
        // poststop: moat hook enforces the timeout, libcontainer does not.
        let mut spec = spec_with("poststop", h);
        wrap_allowed_hooks(&mut spec, Path::new("/usr/bin/moat"), Path::new("/b"), &r);
        let w = &hooks_of(spec.hooks().as_ref().unwrap(), "poststop").unwrap()[0];
        assert_eq!(w.timeout(), None);
        assert!(w
            .args()
            .as_ref()
            .unwrap()
            .join(" ")
            .contains("--timeout 5 --"));
        // No args: arg0 is the path.
        let mut spec = spec_with("poststart", hook("/proc/42/exe", &[]));
        wrap_allowed_hooks(&mut spec, Path::new("/m"), Path::new("/b"), &r);
        let w = &hooks_of(spec.hooks().as_ref().unwrap(), "poststart").unwrap()[0];
        assert!(w
            .args()
            .as_ref()
            .unwrap()
            .join(" ")
            .ends_with("-- /proc/42/exe /proc/42/exe"));
    }

    #[test]
    fn exec_process_json_with_hooks_or_unknown_keys_is_refused() {
        let ok = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sh"]});
        check_process_keys(&ok).unwrap();
        let mut hooks = ok.clone();
        hooks["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/sh"}]});
        assert!(check_process_keys(&hooks)
            .unwrap_err()
            .to_string()
            .contains("hooks"));
        let mut other = ok.clone();
        other["futureField"] = serde_json::json!(1);
        assert!(check_process_keys(&other)
            .unwrap_err()
            .to_string()
            .contains("futureField"));
        // Every key a Process serialises is known.
        let full: oci_spec::runtime::Process = serde_json::from_value(ok).unwrap();
        check_process_keys(&serde_json::to_value(full).unwrap()).unwrap();
    }
}
