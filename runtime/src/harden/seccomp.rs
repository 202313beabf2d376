//! The syscall filter: every container runs under one; a workload's own
//! profile is kept minus what moat always denies.

use oci_spec::runtime::Spec;

use crate::report::{Report, Rule};
use crate::seccomp;

pub(super) fn enforce_seccomp(spec: &mut Spec, report: &mut Report) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let current = linux.seccomp().clone();
    let hardened = match current {
        Some(profile) if !seccomp::is_unconfined(&profile) => {
            seccomp::enforce_always_denied(profile, report)
        }
        other => {
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
            profile
        }
    };
    linux.set_seccomp(Some(hardened));
    spec.set_linux(Some(linux));
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
