//! The sandbox self-check: a libcontainer [`Executor`] that, inside the
//! container, verifies the sandbox is really in place before the workload
//! runs, and refuses to exec otherwise (fail closed). It guards against
//! moat's own bugs and against a libcontainer that silently skips a step.
//!
//! libcontainer calls `validate` after pivot_root, the capability drop and
//! the seccomp load, before the start barrier (so a failure fails
//! `create`), and `exec` after `start`; moat checks in both.

use std::fs;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

/// What the check requires. Cloned into the container's init process.
#[derive(Clone, Debug)]
pub struct SelfCheck {
    /// Bit mask of the capabilities the process may hold.
    pub allowed_caps: u64,
    /// The container's seccomp filter, compiled by moat (see
    /// [`crate::seccomp_bpf`]); `validate` loads it before checking. None
    /// when libcontainer loads the profile itself.
    pub seccomp: Option<crate::seccomp_bpf::CompiledFilter>,
}

/// Bit mask for capability names like "CAP_CHOWN".
pub fn capability_mask<S: AsRef<str>>(names: &[S]) -> u64 {
    names
        .iter()
        .filter_map(|n| n.as_ref().parse::<caps::Capability>().ok())
        .fold(0u64, |m, c| m | c.bitmask())
}

/// The parts of /proc/self/status the check reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatusFacts {
    pub cap_eff: u64,
    pub no_new_privs: bool,
    pub seccomp_mode: u32,
}

pub fn parse_status(text: &str) -> StatusFacts {
    let mut f = StatusFacts::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "CapEff" => f.cap_eff = u64::from_str_radix(v, 16).unwrap_or(u64::MAX),
            "NoNewPrivs" => f.no_new_privs = v == "1",
            "Seccomp" => f.seccomp_mode = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    f
}

/// True when some line of a uid_map/gid_map maps onto host id 0.
pub fn maps_host_root(map: &str) -> bool {
    map.lines().any(|l| {
        let mut it = l.split_whitespace();
        let (Some(inside), Some(outside), Some(len)) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        let (Ok(_), Ok(outside), Ok(len)) = (
            inside.parse::<u64>(),
            outside.parse::<u64>(),
            len.parse::<u64>(),
        ) else {
            return true; // unparseable: assume the worst
        };
        outside == 0 && len > 0
    })
}

impl SelfCheck {
    /// Runs every check; returns the failures (empty when the sandbox holds).
    pub fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        match fs::read_to_string("/proc/self/status") {
            Ok(text) => {
                let s = parse_status(&text);
                if s.cap_eff & !self.allowed_caps != 0 {
                    failed.push(format!(
                        "effective capabilities {:#x} exceed the allowlist {:#x}",
                        s.cap_eff, self.allowed_caps
                    ));
                }
                if !s.no_new_privs {
                    failed.push("no_new_privs is not set".into());
                }
                if s.seccomp_mode != 2 {
                    failed.push(format!(
                        "seccomp mode is {}, not 2 (filter)",
                        s.seccomp_mode
                    ));
                }
            }
            Err(e) => failed.push(format!("cannot read /proc/self/status: {e}")),
        }
        for map in ["/proc/self/uid_map", "/proc/self/gid_map"] {
            match fs::read_to_string(map) {
                Ok(text) if maps_host_root(&text) => {
                    failed.push(format!("{map} maps onto host id 0"))
                }
                Ok(_) => {}
                Err(e) => failed.push(format!("cannot read {map}: {e}")),
            }
        }
        match nix::sys::statvfs::statvfs("/") {
            Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => {}
            Ok(_) => failed.push("the root filesystem is writable".into()),
            Err(e) => failed.push(format!("cannot statvfs /: {e}")),
        }
        failed
    }
}

impl Executor for SelfCheck {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let failed = self.failures();
        if !failed.is_empty() {
            return Err(ExecutorError::Other(format!(
                "moat sandbox self-check failed, refusing to run the workload: {}",
                failed.join("; ")
            )));
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // Where libcontainer would have loaded the profile: capabilities
        // dropped, no_new_privs set, before the start barrier.
        crate::phase::done(crate::phase::LIBCONTAINER);
        if let Some(filter) = &self.seccomp {
            crate::seccomp_bpf::load(filter).map_err(|e| {
                ExecutorValidationError::ArgValidationError(format!(
                    "moat could not load the container's seccomp filter: {e}"
                ))
            })?;
        } else if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            // libcontainer loaded this profile without moat's tail: the
            // always-denied syscalls get a filter of their own on top.
            crate::seccomp_bpf::load_always_denied_guard(profile).map_err(|e| {
                ExecutorValidationError::ArgValidationError(format!(
                    "moat could not load its always-denied filter: {e}"
                ))
            })?;
        }
        crate::phase::done(crate::phase::SECCOMP_LOAD);
        let failed = self.failures();
        if !failed.is_empty() {
            return Err(ExecutorValidationError::ArgValidationError(format!(
                "moat sandbox self-check failed, refusing to run the workload: {}",
                failed.join("; ")
            )));
        }
        crate::phase::done(crate::phase::SELF_CHECK);
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_parsed() {
        let s = parse_status("Name:\tsh\nCapEff:\t00000000000000c1\nNoNewPrivs:\t1\nSeccomp:\t2\n");
        assert_eq!(
            s,
            StatusFacts {
                cap_eff: 0xc1,
                no_new_privs: true,
                seccomp_mode: 2
            }
        );
        let bad = parse_status("CapEff:\tzz\n");
        assert_eq!(bad.cap_eff, u64::MAX);
        assert!(!bad.no_new_privs);
    }

    #[test]
    fn identity_and_root_maps_are_detected() {
        assert!(maps_host_root("         0          0 4294967295\n"));
        assert!(maps_host_root("0 1000 1\n1 0 5\n"));
        assert!(!maps_host_root("         0 1073741824      65536\n"));
        assert!(maps_host_root("0 x 1\n"));
    }

    #[test]
    fn masks_follow_names() {
        let m = capability_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NOPE"]);
        assert_eq!(m, (1 << 0) | (1 << 5));
    }
}
