//! The hardening report: one line per change moat made to a spec, with the
//! threat it answers. `moat explain` prints it; `create` logs it and keeps it
//! in the container's state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The hardening rules. Each maps to a threat in docs/threat-model.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    Annotations,
    Capabilities,
    NoNewPrivileges,
    UserNamespace,
    Seccomp,
    ReadOnlyRoot,
    Tmpfs,
    MountFlags,
    MaskedPaths,
    ReadonlyPaths,
    PidsLimit,
    HomeEnv,
    CgroupNamespace,
    DefaultPath,
    OomScoreAdj,
    OomKiller,
    JoinedUts,
    RelativeWeights,
    HookEnv,
    CgroupsPath,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Annotations => "annotations",
            Rule::Capabilities => "capabilities",
            Rule::NoNewPrivileges => "no-new-privileges",
            Rule::UserNamespace => "user-namespace",
            Rule::Seccomp => "seccomp",
            Rule::ReadOnlyRoot => "read-only-root",
            Rule::Tmpfs => "tmpfs",
            Rule::MountFlags => "mount-flags",
            Rule::MaskedPaths => "masked-paths",
            Rule::ReadonlyPaths => "readonly-paths",
            Rule::PidsLimit => "pids-limit",
            Rule::HomeEnv => "home-env",
            Rule::CgroupNamespace => "cgroup-namespace",
            Rule::DefaultPath => "default-path",
            Rule::OomScoreAdj => "oom-score-adj",
            Rule::OomKiller => "oom-killer",
            Rule::JoinedUts => "joined-uts",
            Rule::RelativeWeights => "relative-weights",
            Rule::HookEnv => "hook-env",
            Rule::CgroupsPath => "cgroups-path",
        }
    }

    /// The threat id in docs/threat-model.md.
    pub fn threat(self) -> &'static str {
        match self {
            Rule::Annotations => "T0",
            Rule::Capabilities => "T1",
            Rule::NoNewPrivileges => "T2",
            Rule::UserNamespace => "T3",
            Rule::Seccomp => "T4",
            Rule::ReadOnlyRoot | Rule::Tmpfs => "T5",
            Rule::MountFlags => "T6",
            Rule::MaskedPaths | Rule::ReadonlyPaths | Rule::CgroupNamespace => "T7",
            Rule::PidsLimit | Rule::OomScoreAdj | Rule::OomKiller | Rule::RelativeWeights => "T8",
            Rule::HookEnv => "T21",
            Rule::HomeEnv => "T20",
            Rule::CgroupsPath => "T22",
            Rule::JoinedUts => "T10",
            // A compatibility default, not a mitigation (docs/threat-model.md).
            Rule::DefaultPath => "-",
        }
    }
}

/// One change to the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub rule: Rule,
    /// The spec field, in JSON-pointer-ish form (`process.capabilities.bounding`).
    pub field: String,
    pub before: String,
    pub after: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub changes: Vec<Change>,
    /// Facts about the sandbox that are not spec changes (e.g. the rootfs
    /// mode chosen at create time).
    pub notes: Vec<String>,
}

impl Report {
    pub fn change(
        &mut self,
        rule: Rule,
        field: impl Into<String>,
        before: impl Into<String>,
        after: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.changes.push(Change {
            rule,
            field: field.into(),
            before: before.into(),
            after: after.into(),
            why: why.into(),
        });
    }

    pub fn by_rule(&self, rule: Rule) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.rule == rule)
    }

    pub fn has(&self, rule: Rule) -> bool {
        self.by_rule(rule).next().is_some()
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {} -> {}  ({}; threat {})",
            self.rule.name(),
            self.field,
            self.before,
            self.after,
            self.why,
            self.rule.threat()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}
