//! A refusal: moat will not run this spec, and says which rule and which
//! policy key would allow it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The refusal rules. Each maps to a threat in docs/threat-model.md; the
/// kebab-case name is what the one-line error prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalRule {
    /// A `moat.dev/` annotation that is unknown or malformed.
    Annotation,
    /// A `moat.dev/` annotation that would loosen a key the operator keeps.
    AnnotationLoosensPolicy,
    /// `process.cwd` under /proc or not absolute (CVE-2024-21626).
    Cwd,
    /// A device cgroup rule or node beyond the default set.
    Device,
    /// The host's net, pid, ipc, uts or mount namespace.
    HostNamespace,
    /// Every host device, or CAP_SYS_ADMIN with nothing masked.
    Privileged,
    /// A bind, overlay layer or rootfs that is or holds a sensitive host path.
    SensitiveHostMount,
    /// A mount destination whose symlinks climb out of the rootfs.
    SymlinkMountDestination,
    /// Joining an existing user namespace.
    UserNamespacePath,
    /// An engine-given uid/gid mapping moat cannot keep (below the pool's
    /// floor, overlapping another container's range, or not one range).
    UserNamespaceMapping,
    /// OCI hooks outside the operator's allowlist.
    Hooks,
    /// A `linux.cgroupsPath` outside the policy's parents, or a live cgroup.
    CgroupsPath,
    /// A namespace path moat may not join.
    NamespacePath,
    /// A host path that changed between its check and its use.
    #[serde(rename = "host-path")]
    HostPathChanged,
    /// proc, sysfs, cgroup, mqueue or devpts away from its canonical place.
    KernelFilesystem,
    /// A mount option element holding more than one option (a `,`), or an
    /// overlay option moat does not pass on.
    MountOptions,
    /// The sum of a container's tmpfs size caps above the policy's.
    TmpfsTotal,
    /// A `linux.resources.unified` key or value outside the allowlist.
    CgroupResources,
    /// A seccomp `listenerPath` the policy does not allow.
    SeccompListener,
    /// A spec field moat does not support.
    UnsupportedField,
    /// An SELinux label (`linux.mountLabel`, `process.selinuxLabel`)
    /// outside the label grammar: it is spliced into mount data.
    SelinuxLabel,
    /// An exec'd process that would run under other LSM confinement than
    /// the container's init, or under a label the host cannot apply.
    ExecConfinement,
    /// A bind source whose filesystem is a kernel or pseudo filesystem, an
    /// overlay, a network or unknown filesystem, ramfs, or a writable tmpfs
    /// above the policy's tmpfs caps.
    BindSourceFilesystem,
    /// More mounts (overlay layers counted) than `filesystem.max_mounts`.
    MountCount,
    /// A workload seccomp profile beyond moat's size bounds, or one whose
    /// compiled filter does not fit the kernel's program limit.
    Seccomp,
    /// A `process.rlimits` hard limit above moat's own (a user namespace
    /// cannot raise it), or a soft limit above its hard one.
    Rlimit,
}

impl RefusalRule {
    /// Every rule, for docs and tests.
    pub const ALL: &'static [RefusalRule] = &[
        RefusalRule::Annotation,
        RefusalRule::AnnotationLoosensPolicy,
        RefusalRule::Cwd,
        RefusalRule::Device,
        RefusalRule::HostNamespace,
        RefusalRule::Privileged,
        RefusalRule::SensitiveHostMount,
        RefusalRule::SymlinkMountDestination,
        RefusalRule::UserNamespacePath,
        RefusalRule::UserNamespaceMapping,
        RefusalRule::Hooks,
        RefusalRule::CgroupsPath,
        RefusalRule::NamespacePath,
        RefusalRule::HostPathChanged,
        RefusalRule::KernelFilesystem,
        RefusalRule::MountOptions,
        RefusalRule::TmpfsTotal,
        RefusalRule::CgroupResources,
        RefusalRule::SeccompListener,
        RefusalRule::UnsupportedField,
        RefusalRule::SelinuxLabel,
        RefusalRule::ExecConfinement,
        RefusalRule::BindSourceFilesystem,
        RefusalRule::MountCount,
        RefusalRule::Seccomp,
        RefusalRule::Rlimit,
    ];

    /// The name the one-line error prints.
    pub fn name(self) -> &'static str {
        match self {
            RefusalRule::Annotation => "annotation",
            RefusalRule::AnnotationLoosensPolicy => "annotation-loosens-policy",
            RefusalRule::Cwd => "cwd",
            RefusalRule::Device => "device",
            RefusalRule::HostNamespace => "host-namespace",
            RefusalRule::Privileged => "privileged",
            RefusalRule::SensitiveHostMount => "sensitive-host-mount",
            RefusalRule::SymlinkMountDestination => "symlink-mount-destination",
            RefusalRule::UserNamespacePath => "user-namespace-path",
            RefusalRule::UserNamespaceMapping => "user-namespace-mapping",
            RefusalRule::Hooks => "hooks",
            RefusalRule::CgroupsPath => "cgroups-path",
            RefusalRule::NamespacePath => "namespace-path",
            RefusalRule::HostPathChanged => "host-path",
            RefusalRule::KernelFilesystem => "kernel-filesystem",
            RefusalRule::MountOptions => "mount-options",
            RefusalRule::TmpfsTotal => "tmpfs-total",
            RefusalRule::CgroupResources => "cgroup-resources",
            RefusalRule::SeccompListener => "seccomp-listener",
            RefusalRule::UnsupportedField => "unsupported-field",
            RefusalRule::SelinuxLabel => "selinux-label",
            RefusalRule::ExecConfinement => "exec-confinement",
            RefusalRule::BindSourceFilesystem => "bind-source-filesystem",
            RefusalRule::MountCount => "mount-count",
            RefusalRule::Seccomp => "seccomp",
            RefusalRule::Rlimit => "rlimit",
        }
    }

    /// The threat id in docs/threat-model.md.
    pub fn threat(self) -> &'static str {
        match self {
            RefusalRule::Annotation | RefusalRule::AnnotationLoosensPolicy => "T0",
            RefusalRule::UnsupportedField => "T0",
            RefusalRule::UserNamespacePath | RefusalRule::UserNamespaceMapping => "T3",
            RefusalRule::TmpfsTotal => "T5",
            RefusalRule::Privileged => "T9",
            RefusalRule::HostNamespace => "T10",
            RefusalRule::SensitiveHostMount => "T11",
            RefusalRule::Device => "T12",
            RefusalRule::SymlinkMountDestination => "T13",
            RefusalRule::Cwd => "T15",
            RefusalRule::Hooks => "T21",
            RefusalRule::CgroupsPath => "T22",
            RefusalRule::KernelFilesystem => "T23",
            RefusalRule::CgroupResources => "T24",
            RefusalRule::SeccompListener => "T25",
            RefusalRule::NamespacePath | RefusalRule::HostPathChanged => "T29",
            RefusalRule::MountOptions | RefusalRule::SelinuxLabel => "T32",
            RefusalRule::ExecConfinement => "T38",
            RefusalRule::BindSourceFilesystem => "T40",
            RefusalRule::MountCount => "T36",
            RefusalRule::Seccomp => "T4",
            RefusalRule::Rlimit => "T17",
        }
    }
}

impl fmt::Display for RefusalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Lets tests and callers compare a rule with its printed name.
impl PartialEq<&str> for RefusalRule {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// Why moat will not create a container. Returned before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule, printed as its short name, e.g. `host-namespace`.
    pub rule: RefusalRule,
    /// What in the spec triggered it.
    pub detail: String,
    /// The policy key that would allow it, if any may.
    pub key: Option<String>,
}

impl Refusal {
    pub fn new(rule: RefusalRule, detail: impl Into<String>, key: Option<&str>) -> Self {
        Self {
            rule,
            detail: detail.into(),
            key: key.map(str::to_string),
        }
    }

    pub(crate) fn annotation(name: &str, why: String) -> Self {
        Self::new(
            RefusalRule::Annotation,
            format!("annotation {name}: {why}"),
            None,
        )
    }

    pub(crate) fn loosening(name: &str, key: &str) -> Self {
        Self {
            rule: RefusalRule::AnnotationLoosensPolicy,
            detail: format!(
                "annotation {name} would loosen the operator policy, and the operator has not listed {key:?} in annotations.overridable"
            ),
            key: Some(key.to_string()),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by moat rule {}: {}", self.rule, self.detail)?;
        match &self.key {
            Some(key) if self.rule == RefusalRule::AnnotationLoosensPolicy => write!(
                f,
                " (the operator may allow it by adding {key:?} to annotations.overridable in the policy)"
            ),
            Some(key) => write!(f, " (the operator may allow it with policy key {key})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_unique_and_match_serde() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RefusalRule::ALL {
            assert!(seen.insert(r.name()), "duplicate name {}", r.name());
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.name()),
                "serde name of {r:?}"
            );
            assert!(r.threat().starts_with('T'), "{r:?}");
        }
    }

    #[test]
    fn display_prints_the_kebab_case_name() {
        let r = Refusal::new(RefusalRule::SensitiveHostMount, "x", Some("refusals.k"));
        assert_eq!(
            r.to_string(),
            "refused by moat rule sensitive-host-mount: x (the operator may allow it with policy key refusals.k)"
        );
    }
}
