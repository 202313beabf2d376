//! The pure parts of learning: the learning filter built from a container's
//! normal (hardened) filter, the learned profile built from what was
//! observed, and the union of several learned profiles. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSyscall};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::logging::rfc3339;
use crate::seccomp::ALWAYS_DENIED;

/// Syscalls that stay plainly allowed in the learning filter, and so are
/// in every learned profile without being observed.
///
/// libcontainer's init loads the filter and only then hands the notify fd
/// to moat (sendmsg over its channel to the parent, which forwards it to
/// the recorder). Until the recorder holds the fd, a notified syscall
/// would wait forever for an answer nobody can give: a deadlock. So
/// whatever the init may call between the filter load and that sendmsg
/// (freeing libseccomp's filter database and allocating the message:
/// memory calls; its log line: write; a clock read; leaving on error)
/// must not be notified. libcontainer itself refuses to notify `write`.
pub const BOOTSTRAP_ALLOWED: &[&str] = &[
    "write",
    "sendmsg",
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "madvise",
    "clock_gettime",
    "gettimeofday",
    "rt_sigreturn",
    "exit",
    "exit_group",
];

/// Syscalls moat's own `exec` makes after loading the filter and before
/// the exec'd program runs. A learning run without `exec` never sees them
/// (the init path differs), but `docker exec` under the learned profile
/// needs them, so every learned profile includes them.
pub const EXEC_PATH: &[&str] = &[
    "close",
    "close_range",
    "rt_sigprocmask",
    "execve",
    "openat",
    "read",
    "fstat",
    "newfstatat",
    "statx",
    "statfs",
    "sigaltstack",
];

/// Syscalls whose use depends on scheduling, not on what the program
/// does: a shell's `wait` needs `rt_sigsuspend` only when the child has
/// not exited yet, a mutex needs `futex` only under contention, a retry
/// loop sleeps only when its first try fails. Learning slows every
/// process, so it sees a different interleaving than production; a
/// profile without these hangs or fails at random (busybox sh spins in
/// `wait` when `rt_sigsuspend` fails). Every learned profile includes them.
pub const TIMING_DEPENDENT: &[&str] = &[
    "futex",
    "rt_sigsuspend",
    "sched_yield",
    "restart_syscall",
    "nanosleep",
    "clock_nanosleep",
];

/// The key of the metadata block in a learned profile. Docker, containerd
/// and oci-spec ignore unknown keys, so the file is usable as it is.
pub const META_KEY: &str = "moatLearned";

/// The metadata block's format version.
pub const META_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LearnError {
    #[error("cannot learn under a seccomp profile whose default action is {0}: learning records only syscalls a filtering profile allows, so the profile must deny by default (moat's default profile does)")]
    PermissiveDefault(String),
    #[error("{origin}: {why}")]
    BadProfile { origin: String, why: String },
    #[error("nothing to merge")]
    NothingToMerge,
    #[error("the profiles disagree on the default action: {0} has {1}, {2} has {3}; merge only profiles learned under the same base profile")]
    DefaultMismatch(String, String, String, String),
}

/// What a learned profile records about how it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LearnedMeta {
    pub format: u32,
    /// Syscalls the workload (and moat's in-container setup) was seen making.
    pub observed: BTreeSet<String>,
    /// Syscalls allowed without being observed (see [`BOOTSTRAP_ALLOWED`],
    /// [`EXEC_PATH`] and [`TIMING_DEPENDENT`]), where the base allows them.
    pub baseline: BTreeSet<String>,
    /// Always-denied syscalls the workload attempted: moat denied them
    /// (EPERM) while learning and no learned profile allows them.
    pub denied_attempts: BTreeSet<String>,
    /// Address families passed to `socket` (AF_* numbers): the profile
    /// allows `socket` for these only.
    pub socket_families: BTreeSet<u64>,
    /// One entry per learning run that went into this profile.
    pub runs: Vec<LearnRun>,
}

/// One learning run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LearnRun {
    pub container: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: Option<String>,
    /// True when the run ended because every process of the container
    /// had exited (not by a signal to the recorder).
    pub complete: bool,
    /// Processes that reported to the recorder: the container's init and
    /// each `exec`.
    pub process_trees: u32,
    /// Distinct syscalls observed in this run.
    pub syscalls: usize,
    /// Always-denied syscalls attempted, with how often.
    pub denied_attempts: BTreeMap<String, u64>,
    /// Syscall numbers the recorder could not name ("arch:nr"), denied.
    pub unknown: BTreeSet<String>,
}

impl LearnRun {
    fn key(&self) -> (&str, &str) {
        (&self.container, &self.started)
    }
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

fn action_name(action: LinuxSeccompAction) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{action:?}"))
}

fn rule(names: Vec<String>, action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(names);
    r.set_action(action);
    r.set_errno_ret(errno);
    r
}

fn has_args(r: &LinuxSyscall) -> bool {
    r.args().as_ref().is_some_and(|a| !a.is_empty())
}

/// Every name a profile's rules let through (with or without conditions).
pub fn allowed_names(profile: &LinuxSeccomp) -> BTreeSet<String> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| allows(r.action()))
        .flat_map(|r| r.names().iter().cloned())
        .collect()
}

/// The filter a learning container runs under, built from its normal
/// (hardened) filter `base`: every rule that allows becomes a notify rule
/// with the same conditions, so the recorder sees the call, and the
/// kernel never notifies a call `base` would not allow. Exceptions: the
/// [`BOOTSTRAP_ALLOWED`] names stay allowed (deadlock, see there). The
/// always-denied syscalls get a notify rule too, so their attempts are
/// seen; the recorder answers them EPERM, never "continue" (and were the
/// recorder gone, the kernel fails every notified call with ENOSYS).
/// Every other rule (the denials) is kept as it is.
pub fn learning_filter(base: &LinuxSeccomp, listener: &Path) -> Result<LinuxSeccomp, LearnError> {
    if allows(base.default_action()) {
        return Err(LearnError::PermissiveDefault(action_name(
            base.default_action(),
        )));
    }
    let denied = |n: &str| ALWAYS_DENIED.contains(&n);
    let mut out_rules = Vec::new();
    for r in base.syscalls().iter().flatten() {
        let keep: Vec<String> = r.names().iter().filter(|n| !denied(n)).cloned().collect();
        if !allows(r.action()) {
            if !keep.is_empty() {
                let mut kept = r.clone();
                kept.set_names(keep);
                out_rules.push(kept);
            }
            continue;
        }
        let (plain, notified): (Vec<String>, Vec<String>) = keep
            .into_iter()
            .partition(|n| BOOTSTRAP_ALLOWED.contains(&n.as_str()));
        for (names, action) in [
            (plain, LinuxSeccompAction::ScmpActAllow),
            (notified, LinuxSeccompAction::ScmpActNotify),
        ] {
            if names.is_empty() {
                continue;
            }
            let mut converted = r.clone();
            converted.set_names(names);
            converted.set_action(action);
            converted.set_errno_ret(None);
            out_rules.push(converted);
        }
    }
    out_rules.push(rule(
        ALWAYS_DENIED.iter().map(|s| s.to_string()).collect(),
        LinuxSeccompAction::ScmpActNotify,
        None,
    ));
    let mut out = base.clone();
    out.set_syscalls(Some(out_rules));
    out.set_listener_path(Some(listener.to_path_buf()));
    Ok(out)
}

/// Largest address family number (AF_MAX is 46 on Linux 6.x): a larger
/// first argument to `socket` is not a family worth a rule.
const MAX_FAMILY: u64 = 64;

/// The value `r` requires its first argument to equal, if it does.
fn first_arg_equals(r: &LinuxSyscall) -> Option<u64> {
    r.args().iter().flatten().find_map(|a| {
        (a.index() == 0 && a.op() == oci_spec::runtime::LinuxSeccompOperator::ScmpCmpEq)
            .then(|| a.value())
    })
}

/// One rule allowing `socket(family, …)`.
fn socket_family_rule(family: u64) -> LinuxSyscall {
    let mut r = rule(
        vec!["socket".into()],
        LinuxSeccompAction::ScmpActAllow,
        None,
    );
    let arg = oci_spec::runtime::LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(family)
        .op(oci_spec::runtime::LinuxSeccompOperator::ScmpCmpEq)
        .build()
        .unwrap_or_default();
    r.set_args(Some(vec![arg]));
    r
}

/// The learned profile: `base`'s allowing rules cut down to the names in
/// `used` (conditions kept, so it never allows more than `base`), `base`'s
/// denials that differ from its default (e.g. clone3 → ENOSYS), and an
/// explicit denial of `clone` when the workload never cloned (otherwise
/// moat would add its own rule allowing flag-free clone). Where `base`
/// allows `socket` unconditionally and the families used are known, it
/// is allowed for those families only.
pub fn learned_profile(
    base: &LinuxSeccomp,
    used: &BTreeSet<String>,
    socket_families: &BTreeSet<u64>,
) -> LinuxSeccomp {
    let narrow_socket = !socket_families.is_empty()
        && socket_families.iter().all(|f| *f < MAX_FAMILY)
        && used.contains("socket");
    let default = (base.default_action(), base.default_errno_ret().unwrap_or(1));
    let mut rules = Vec::new();
    let mut base_allows_clone = false;
    for r in base.syscalls().iter().flatten() {
        if allows(r.action()) {
            base_allows_clone |= r.names().iter().any(|n| n == "clone");
            let names: Vec<String> = r
                .names()
                .iter()
                .filter(|n| used.contains(n.as_str()) && !ALWAYS_DENIED.contains(&n.as_str()))
                .filter(|n| !(narrow_socket && n.as_str() == "socket" && !has_args(r)))
                // base's own per-family socket rules (moat's default has
                // them): only the families the workload used.
                .filter(|n| {
                    !(narrow_socket
                        && n.as_str() == "socket"
                        && first_arg_equals(r).is_some_and(|f| !socket_families.contains(&f)))
                })
                .cloned()
                .collect();
            if narrow_socket && !has_args(r) && r.names().iter().any(|n| n == "socket") {
                rules.extend(socket_families.iter().map(|f| socket_family_rule(*f)));
            }
            if names.is_empty() {
                continue;
            }
            let mut kept = r.clone();
            kept.set_names(names);
            kept.set_action(LinuxSeccompAction::ScmpActAllow);
            kept.set_errno_ret(None);
            rules.push(kept);
        } else if (r.action(), r.errno_ret().unwrap_or(1)) != default {
            rules.push(r.clone());
        }
    }
    if base_allows_clone && !used.contains("clone") {
        rules.push(rule(
            vec!["clone".into()],
            LinuxSeccompAction::ScmpActErrno,
            Some(libc::EPERM as u32),
        ));
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(base.default_action());
    out.set_default_errno_ret(base.default_errno_ret());
    out.set_architectures(base.architectures().clone());
    out.set_syscalls(Some(rules));
    normalize(&[out]).0
}

/// The union of profiles' rules, in a canonical shape: one unconditional
/// allow rule (sorted), then conditional allow rules, then denials; names
/// an allow rule covers are dropped from denials and from conditional
/// rules. Always-denied names are dropped from allow rules; they are
/// returned. The caller has checked the default actions agree.
fn normalize(profiles: &[LinuxSeccomp]) -> (LinuxSeccomp, BTreeSet<String>) {
    let mut stripped = BTreeSet::new();
    let mut unconditional: BTreeSet<String> = BTreeSet::new();
    let mut conditional: Vec<LinuxSyscall> = Vec::new();
    let mut denials: Vec<LinuxSyscall> = Vec::new();
    let mut arches = Vec::new();
    for p in profiles {
        for a in p.architectures().iter().flatten() {
            if !arches.contains(a) {
                arches.push(*a);
            }
        }
        for r in p.syscalls().iter().flatten() {
            if !allows(r.action()) {
                if !denials.contains(r) {
                    denials.push(r.clone());
                }
                continue;
            }
            let mut names = Vec::new();
            for n in r.names() {
                if ALWAYS_DENIED.contains(&n.as_str()) {
                    stripped.insert(n.clone());
                } else {
                    names.push(n.clone());
                }
            }
            if has_args(r) {
                let mut c = r.clone();
                c.set_names(names);
                c.set_action(LinuxSeccompAction::ScmpActAllow);
                c.set_errno_ret(None);
                if !conditional.contains(&c) {
                    conditional.push(c);
                }
            } else {
                unconditional.extend(names);
            }
        }
    }
    let mut rules = Vec::new();
    if !unconditional.is_empty() {
        rules.push(rule(
            unconditional.iter().cloned().collect(),
            LinuxSeccompAction::ScmpActAllow,
            None,
        ));
    }
    let mut allowed = unconditional.clone();
    for mut c in conditional {
        let names: Vec<String> = c
            .names()
            .iter()
            .filter(|n| !unconditional.contains(n.as_str()))
            .cloned()
            .collect();
        if names.is_empty() {
            continue;
        }
        allowed.extend(names.iter().cloned());
        c.set_names(names);
        if !rules.contains(&c) {
            rules.push(c);
        }
    }
    for mut d in denials {
        let names: Vec<String> = d
            .names()
            .iter()
            .filter(|n| !allowed.contains(n.as_str()))
            .cloned()
            .collect();
        if names.is_empty() {
            continue;
        }
        d.set_names(names);
        if !rules.contains(&d) {
            rules.push(d);
        }
    }
    let mut out = LinuxSeccomp::default();
    if let Some(first) = profiles.first() {
        out.set_default_action(first.default_action());
        out.set_default_errno_ret(first.default_errno_ret());
    }
    out.set_architectures((!arches.is_empty()).then_some(arches));
    out.set_syscalls(Some(rules));
    (out, stripped)
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The profile as the JSON file users get: the OCI/docker seccomp object
/// with a human comment and the metadata block.
pub fn to_json(profile: &LinuxSeccomp, meta: &LearnedMeta) -> Value {
    let mut v = serde_json::to_value(profile).unwrap_or_else(|_| Value::Object(Default::default()));
    drop_nulls(&mut v);
    if let Value::Object(map) = &mut v {
        let when = meta
            .runs
            .iter()
            .map(|r| r.started.as_str())
            .min()
            .unwrap_or("?");
        let mut comment = format!(
            "Learned by moat from {} run(s) starting {when}: allows only the {} syscalls observed (plus {} moat needs in every container); everything else fails with EPERM, except syscalls newer than the profile, which answer ENOSYS (as on an older kernel).",
            meta.runs.len(),
            meta.observed.len(),
            meta.baseline.difference(&meta.observed).count(),
        );
        if !meta.denied_attempts.is_empty() {
            let names: Vec<&str> = meta.denied_attempts.iter().map(String::as_str).collect();
            comment.push_str(&format!(
                " Attempted, denied by moat: {}.",
                names.join(", ")
            ));
        }
        map.insert("comment".into(), Value::String(comment));
        map.insert(
            META_KEY.into(),
            serde_json::to_value(meta).unwrap_or(Value::Null),
        );
    }
    v
}

/// Parses a profile file (learned by moat or any OCI/docker profile that
/// denies by default and uses no docker-only keys). `origin` names it in
/// errors.
pub fn parse(text: &str, origin: &str) -> Result<(LinuxSeccomp, Option<LearnedMeta>), LearnError> {
    let bad = |why: String| LearnError::BadProfile {
        origin: origin.to_string(),
        why,
    };
    if text.trim().is_empty() {
        return Err(bad("empty file, not a seccomp profile".into()));
    }
    let mut v: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(map) = &mut v else {
        return Err(bad("not a seccomp profile: expected a JSON object".into()));
    };
    if !map.contains_key("defaultAction") {
        return Err(bad("not a seccomp profile: no \"defaultAction\" key".into()));
    }
    for key in ["archMap", "includes", "excludes"] {
        if map.get(key).is_some_and(|x| !x.is_null()) {
            return Err(bad(format!(
                "uses docker's {key:?}, which moat cannot evaluate; give a profile in OCI form (as moat learn writes it)"
            )));
        }
    }
    if let Some(Value::Array(rules)) = map.get("syscalls") {
        for (i, r) in rules.iter().enumerate() {
            if r.get("includes")
                .is_some_and(|x| !x.is_null() && x != &Value::Object(Default::default()))
                || r.get("excludes")
                    .is_some_and(|x| !x.is_null() && x != &Value::Object(Default::default()))
            {
                return Err(bad(format!(
                    "syscalls[{i}] uses docker's includes/excludes, which moat cannot evaluate"
                )));
            }
            if r.get("names").is_none() {
                return Err(bad(format!("syscalls[{i}] has no \"names\" list")));
            }
        }
    }
    let meta = match map.remove(META_KEY) {
        Some(m) => Some(
            serde_json::from_value::<LearnedMeta>(m)
                .map_err(|e| bad(format!("malformed {META_KEY:?} block: {e}")))?,
        ),
        None => None,
    };
    map.remove("comment");
    let profile: LinuxSeccomp =
        serde_json::from_value(v).map_err(|e| bad(format!("not a seccomp profile: {e}")))?;
    if allows(profile.default_action()) {
        return Err(bad(format!(
            "default action {} lets every unlisted syscall through; only profiles that deny by default can be merged",
            action_name(profile.default_action())
        )));
    }
    Ok((profile, meta))
}

/// Merges the metadata of several learned profiles (runs are identified by
/// container and start time; a later copy of the same run wins).
pub fn merge_meta(metas: &[LearnedMeta]) -> LearnedMeta {
    let mut out = LearnedMeta {
        format: META_FORMAT,
        ..Default::default()
    };
    for m in metas {
        out.observed.extend(m.observed.iter().cloned());
        out.baseline.extend(m.baseline.iter().cloned());
        out.denied_attempts
            .extend(m.denied_attempts.iter().cloned());
        out.socket_families
            .extend(m.socket_families.iter().copied());
        for run in &m.runs {
            match out.runs.iter_mut().find(|r| r.key() == run.key()) {
                Some(existing) => *existing = run.clone(),
                None => out.runs.push(run.clone()),
            }
        }
    }
    out
}

/// The union of learned profiles (`origin` names each one in errors).
/// Returns the merged profile, its metadata, and the always-denied names
/// some input allowed (dropped).
pub fn merge(
    inputs: &[(String, LinuxSeccomp, Option<LearnedMeta>)],
) -> Result<(LinuxSeccomp, LearnedMeta, BTreeSet<String>), LearnError> {
    let Some((first_origin, first, _)) = inputs.first() else {
        return Err(LearnError::NothingToMerge);
    };
    let default_of = |p: &LinuxSeccomp| {
        format!(
            "{} (errno {})",
            action_name(p.default_action()),
            p.default_errno_ret().unwrap_or(1)
        )
    };
    for (origin, p, _) in inputs {
        if default_of(p) != default_of(first) {
            return Err(LearnError::DefaultMismatch(
                first_origin.clone(),
                default_of(first),
                origin.clone(),
                default_of(p),
            ));
        }
    }
    let profiles: Vec<LinuxSeccomp> = inputs.iter().map(|(_, p, _)| p.clone()).collect();
    let (profile, stripped) = normalize(&profiles);
    let metas: Vec<LearnedMeta> = inputs
        .iter()
        .map(|(_, _, m)| m.clone().unwrap_or_default())
        .collect();
    let mut meta = merge_meta(&metas);
    meta.observed
        .retain(|n| !ALWAYS_DENIED.contains(&n.as_str()));
    meta.denied_attempts.extend(stripped.iter().cloned());
    Ok((profile, meta, stripped))
}

/// Now, in RFC 3339.
pub fn now_rfc3339() -> String {
    rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;
    use oci_spec::runtime::LinuxSeccompOperator;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn base() -> LinuxSeccomp {
        crate::seccomp::default_profile().unwrap()
    }

    fn actions_of(p: &LinuxSeccomp, name: &str) -> Vec<LinuxSeccompAction> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == name))
            .map(|r| r.action())
            .collect()
    }

    #[test]
    fn learning_filter_notifies_only_what_base_allows() {
        let b = base();
        let f = learning_filter(&b, Path::new("/run/x.sock")).unwrap();
        assert_eq!(f.listener_path().as_deref(), Some(Path::new("/run/x.sock")));
        assert_eq!(f.default_action(), b.default_action());
        assert_eq!(actions_of(&f, "read"), [LinuxSeccompAction::ScmpActNotify]);
        assert_eq!(actions_of(&f, "write"), [LinuxSeccompAction::ScmpActAllow]);
        assert_eq!(
            actions_of(&f, "sendmsg"),
            [LinuxSeccompAction::ScmpActAllow]
        );
        // Always-denied: notified (so attempts are seen), nowhere allowed.
        for n in ALWAYS_DENIED {
            assert_eq!(
                actions_of(&f, n),
                [LinuxSeccompAction::ScmpActNotify],
                "{n}"
            );
        }
        // clone keeps moat's flag condition; clone3 keeps ENOSYS.
        let clone: Vec<_> = f
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names() == &["clone"])
            .collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].action(), LinuxSeccompAction::ScmpActNotify);
        assert_eq!(
            clone[0].args().as_ref().unwrap()[0].op(),
            LinuxSeccompOperator::ScmpCmpMaskedEq
        );
        assert_eq!(actions_of(&f, "clone3"), [LinuxSeccompAction::ScmpActErrno]);
        // A name the base denies by default is not notified.
        assert!(actions_of(&f, "chroot").is_empty());
        // No rule for one name with two actions (libseccomp refuses that),
        // except clone's conditional one.
        let mut seen: BTreeMap<String, LinuxSeccompAction> = BTreeMap::new();
        for r in f.syscalls().iter().flatten() {
            for n in r.names() {
                if let Some(a) = seen.insert(n.clone(), r.action()) {
                    assert_eq!(a, r.action(), "{n} has two actions");
                }
            }
        }
        // libcontainer refuses to notify write.
        assert!(!f
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify
                && r.names().iter().any(|n| n == "write")));
    }

    #[test]
    fn learning_refuses_a_permissive_default() {
        let mut p = LinuxSeccomp::default();
        p.set_default_action(LinuxSeccompAction::ScmpActAllow);
        assert!(matches!(
            learning_filter(&p, Path::new("/x")),
            Err(LearnError::PermissiveDefault(_))
        ));
    }

    #[test]
    fn learned_profile_is_a_subset_of_base() {
        let b = base();
        let used = set(&["read", "write", "openat", "ptrace", "chroot", "execve"]);
        let p = learned_profile(&b, &used, &BTreeSet::new());
        let allowed = allowed_names(&p);
        assert_eq!(allowed, set(&["execve", "openat", "read", "write"]));
        // Never-cloned: explicit denial, so moat adds no clone rule.
        assert_eq!(actions_of(&p, "clone"), [LinuxSeccompAction::ScmpActErrno]);
        let enforced = crate::seccomp::enforce_always_denied(p.clone(), &mut Report::default());
        assert!(!allowed_names(&enforced).contains("clone"));
        assert_eq!(actions_of(&p, "clone3"), [LinuxSeccompAction::ScmpActErrno]);
        assert_eq!(p.architectures(), b.architectures());
        // Cloned: moat's conditional rule survives, and moat's enforcement
        // keeps it a fixed point.
        let p2 = learned_profile(&b, &set(&["read", "clone"]), &BTreeSet::new());
        let clone: Vec<_> = p2
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names() == &["clone"])
            .collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].action(), LinuxSeccompAction::ScmpActAllow);
        assert!(clone[0].args().is_some());
        let e2 = crate::seccomp::enforce_always_denied(p2.clone(), &mut Report::default());
        assert_eq!(
            crate::seccomp::enforce_always_denied(e2.clone(), &mut Report::default()),
            e2
        );
    }

    #[test]
    fn socket_is_narrowed_to_the_families_used() {
        let b = base();
        let used = set(&["read", "socket"]);
        let families: BTreeSet<u64> = [1, 2].into_iter().collect();
        let p = learned_profile(&b, &used, &families);
        let socket_rules: Vec<_> = p
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == "socket"))
            .collect();
        assert_eq!(socket_rules.len(), 2);
        for r in &socket_rules {
            let arg = r.args().as_ref().unwrap()[0];
            assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpEq);
            assert!(families.contains(&arg.value()));
        }
        // Without known families (or with a bogus one) socket stays as in
        // base (moat's default: one rule per allowed family).
        let socket_of = |p: &LinuxSeccomp| -> Vec<LinuxSyscall> {
            p.syscalls()
                .iter()
                .flatten()
                .filter(|r| r.names().iter().any(|n| n == "socket"))
                .cloned()
                .collect()
        };
        for fams in [BTreeSet::new(), [2u64, 999].into_iter().collect()] {
            let p = learned_profile(&b, &used, &fams);
            assert_eq!(socket_of(&p), socket_of(&b));
        }
        // Merging a narrowed profile with an unnarrowed one: unconditional wins.
        let wide = learned_profile(&b, &used, &BTreeSet::new());
        let (m, _, _) = merge(&[
            ("n".into(), p.clone(), None),
            ("w".into(), wide.clone(), None),
        ])
        .unwrap();
        assert_eq!(m, wide);
        let other = learned_profile(&b, &used, &[10u64].into_iter().collect());
        let (m, _, _) = merge(&[("n".into(), p, None), ("o".into(), other, None)]).unwrap();
        let n = m
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names() == &["socket"])
            .count();
        assert_eq!(n, 3);
    }

    #[test]
    fn json_round_trips_and_names_denied_attempts() {
        let p = learned_profile(&base(), &set(&["read", "write"]), &BTreeSet::new());
        let meta = LearnedMeta {
            format: META_FORMAT,
            observed: set(&["read"]),
            baseline: set(&["write"]),
            denied_attempts: set(&["ptrace"]),
            socket_families: [2u64].into_iter().collect(),
            runs: vec![LearnRun {
                container: "c1".into(),
                started: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            }],
        };
        let v = to_json(&p, &meta);
        assert!(v["comment"]
            .as_str()
            .unwrap()
            .contains("denied by moat: ptrace"));
        assert!(v.get("listenerPath").is_none());
        let text = serde_json::to_string_pretty(&v).unwrap();
        let (back, back_meta) = parse(&text, "x.json").unwrap();
        assert_eq!(back, p);
        assert_eq!(back_meta.unwrap(), meta);
        // docker-shaped keys are all there.
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(v["architectures"].is_array());
        assert_eq!(v["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn merge_is_a_union_and_strips_always_denied() {
        let b = base();
        let a = learned_profile(&b, &set(&["read", "write"]), &BTreeSet::new());
        let c = learned_profile(&b, &set(&["read", "openat", "clone"]), &BTreeSet::new());
        let mut hand = a.clone();
        let mut rules = hand.syscalls().clone().unwrap();
        rules.push(rule(
            vec!["ptrace".into()],
            LinuxSeccompAction::ScmpActAllow,
            None,
        ));
        hand.set_syscalls(Some(rules));
        let (m, meta, stripped) = merge(&[
            ("a".into(), a.clone(), None),
            ("c".into(), c, None),
            ("hand".into(), hand, None),
        ])
        .unwrap();
        assert_eq!(
            allowed_names(&m),
            set(&["clone", "openat", "read", "write"])
        );
        assert_eq!(stripped, set(&["ptrace"]));
        assert!(meta.denied_attempts.contains("ptrace"));
        // a denied clone, c allowed it: the allow wins, no conflicting rule.
        assert!(!actions_of(&m, "clone").contains(&LinuxSeccompAction::ScmpActErrno));
        // Merging with itself changes nothing.
        let (again, _, _) = merge(&[
            ("a".into(), a.clone(), None),
            ("a2".into(), a.clone(), None),
        ])
        .unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn merge_refuses_bad_input_clearly() {
        let e = parse("", "e.json").unwrap_err().to_string();
        assert!(e.contains("e.json") && e.contains("empty"), "{e}");
        let e = parse("{not json", "x.json").unwrap_err().to_string();
        assert!(e.contains("x.json: not valid JSON"), "{e}");
        let e = parse("[1,2]", "x.json").unwrap_err().to_string();
        assert!(e.contains("expected a JSON object"), "{e}");
        let e = parse("{\"syscalls\": []}", "x.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("defaultAction"), "{e}");
        let e = parse(
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": []}",
            "x.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("lets every unlisted syscall through"), "{e}");
        let e = parse(
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"action\": \"SCMP_ACT_ALLOW\"}]}",
            "x.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("syscalls[0]") && e.contains("names"), "{e}");
        let e = parse(
            "{\"defaultAction\": \"SCMP_ACT_NOPE\", \"syscalls\": []}",
            "x.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.json: not a seccomp profile"), "{e}");
        let mut kill = LinuxSeccomp::default();
        kill.set_default_action(LinuxSeccompAction::ScmpActKillProcess);
        let e = merge(&[("a".into(), base(), None), ("k".into(), kill, None)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("disagree on the default action"), "{e}");
        assert_eq!(merge(&[]).unwrap_err(), LearnError::NothingToMerge);
    }

    #[test]
    fn merged_metadata_keeps_the_latest_copy_of_a_run() {
        let run = |finished: Option<&str>| LearnRun {
            container: "c".into(),
            started: "t0".into(),
            finished: finished.map(str::to_string),
            ..Default::default()
        };
        let m1 = LearnedMeta {
            runs: vec![run(None)],
            observed: set(&["read"]),
            ..Default::default()
        };
        let m2 = LearnedMeta {
            runs: vec![run(Some("t1"))],
            observed: set(&["write"]),
            ..Default::default()
        };
        let m = merge_meta(&[m1, m2]);
        assert_eq!(m.runs.len(), 1);
        assert_eq!(m.runs[0].finished.as_deref(), Some("t1"));
        assert_eq!(m.observed, set(&["read", "write"]));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        use std::time::Duration;
        assert_eq!(rfc3339(Duration::from_secs(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    /// A learned profile names only what its base names, and keeps the
    /// base's non-default denials (statmount … → ENOSYS), so whatever the
    /// base answers ENOSYS (newer than it, or on purpose) the learned
    /// profile answers ENOSYS too, never EPERM: checked on the compiled
    /// filters, every number up to 600 on x86_64 and i386, for several
    /// observed sets.
    #[test]
    fn a_learned_profile_never_turns_an_unknown_syscall_into_eperm() {
        use crate::seccomp_bpf::{answer, compile, TEST_RET_ENOSYS};
        let base = crate::seccomp::default_profile().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base_prog = compile(&base, dir.path()).unwrap().program;
        let sets: Vec<Vec<&str>> = vec![
            vec!["read", "write"],
            vec!["read", "openat", "fchmodat2", "mseal", "file_setattr"],
            vec!["futex_wake", "socket", "clone", "statmount"],
        ];
        for used in sets {
            let used: BTreeSet<String> = used.into_iter().map(String::from).collect();
            let learned = learned_profile(&base, &used, &BTreeSet::from([2u64]));
            // As moat enforces it.
            let enforced = crate::seccomp::enforce_always_denied(
                learned,
                &mut crate::report::Report::default(),
            );
            let prog = compile(&enforced, dir.path()).unwrap().program;
            for token in [0xc000_003e_u32, 0x4000_0003] {
                for nr in 0..600 {
                    if answer(&base_prog, token, nr) == TEST_RET_ENOSYS {
                        assert_eq!(
                            answer(&prog, token, nr),
                            TEST_RET_ENOSYS,
                            "{used:?}: {token:#x} {nr}"
                        );
                    }
                }
                assert_eq!(answer(&prog, token, 470), TEST_RET_ENOSYS);
                assert_eq!(answer(&prog, token, 457), TEST_RET_ENOSYS, "statmount");
            }
        }
    }
}
