//! Mounts: a read-only root, size-capped scratch tmpfs, nosuid/nodev on
//! workload mounts, read-only /sys and cgroupfs, masked and read-only /proc paths.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use super::{is_bind, normalize};
use crate::policy::Policy;
use crate::report::{Report, Rule};

/// /proc and /sys paths masked in every container: each leaks host state
/// or reaches host hardware. runc's and docker's lists, plus /sys/firmware.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// /proc paths made read-only: writes there change the host kernel.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub(super) fn make_root_readonly(spec: &mut Spec, report: &mut Report) {
    if let Some(root) = spec.root().clone() {
        if root.readonly() != Some(true) {
            let mut r = root.clone();
            r.set_readonly(Some(true));
            spec.set_root(Some(r));
            report.change(
                Rule::ReadOnlyRoot,
                "root.readonly",
                format!("{:?}", root.readonly()),
                "true",
                "a compromised process must not alter the image's binaries",
            );
        }
    }
}

fn ensure_options(m: &mut Mount, add: &[&str], remove: &[&str]) -> bool {
    let mut opts = m.options().clone().unwrap_or_default();
    let before = opts.clone();
    opts.retain(|o| !remove.contains(&o.as_str()));
    for a in add {
        if !opts.iter().any(|o| o == a) {
            opts.push(a.to_string());
        }
    }
    let changed = opts != before;
    m.set_options(Some(opts));
    changed
}

pub(super) fn harden_mounts(spec: &mut Spec, policy: &Policy, report: &mut Report) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut() {
        let dest = m.destination().display().to_string();
        let typ = m.typ().clone().unwrap_or_default();
        let before = m.options().clone().unwrap_or_default().join(",");
        let scratch = policy
            .filesystem
            .tmpfs
            .iter()
            .any(|t| normalize(Path::new(t)) == normalize(m.destination()));
        let changed = if scratch && typ == "tmpfs" {
            // The spec's own scratch tmpfs: same flags and size cap as moat's.
            // A size larger than the policy's (or unparseable, e.g. a
            // percentage of host memory) is replaced by the policy's.
            let cap = crate::policy::parse_size(&policy.filesystem.tmpfs_size).unwrap_or(0);
            let sizes: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|x| x.starts_with("size="))
                .collect();
            let within = !sizes.is_empty()
                && sizes.iter().all(|x| {
                    crate::policy::parse_size(&x["size=".len()..]).is_some_and(|n| n <= cap)
                });
            let size = format!("size={}", policy.filesystem.tmpfs_size);
            let remove: Vec<&str> = ["suid", "dev"]
                .into_iter()
                .chain(if within {
                    Vec::new()
                } else {
                    sizes.iter().map(String::as_str).collect()
                })
                .collect();
            let extra: Vec<&str> = if within {
                vec!["nosuid", "nodev"]
            } else {
                vec!["nosuid", "nodev", size.as_str()]
            };
            ensure_options(m, &extra, &remove)
        } else if is_bind(m) || scratch {
            ensure_options(m, &["nosuid", "nodev"], &["suid", "dev"])
        } else if typ == "sysfs" || typ == "cgroup" || typ == "cgroup2" {
            ensure_options(m, &["ro", "nosuid", "nodev", "noexec"], &["rw"])
        } else {
            false
        };
        if changed {
            report.change(
                Rule::MountFlags,
                format!("mounts[{dest}].options"),
                before,
                m.options().clone().unwrap_or_default().join(","),
                if typ == "sysfs" || typ.starts_with("cgroup") {
                    "/sys and cgroupfs are read-only"
                } else {
                    "workload mounts must not carry setuid binaries or device nodes"
                },
            );
        }
    }
    let size = format!("size={}", policy.filesystem.tmpfs_size);
    for path in &policy.filesystem.tmpfs {
        if mounts
            .iter()
            .any(|m| normalize(m.destination()) == normalize(Path::new(path)))
        {
            continue;
        }
        let mode = if path == "/tmp" {
            "mode=1777"
        } else {
            "mode=755"
        };
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(path));
        m.set_typ(Some("tmpfs".into()));
        m.set_source(Some(PathBuf::from("tmpfs")));
        m.set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            mode.into(),
            size.clone(),
        ]));
        report.change(
            Rule::Tmpfs,
            format!("mounts[{path}]"),
            "none",
            format!("tmpfs nosuid,nodev,{mode},{size}"),
            "scratch space on a read-only root, size-limited",
        );
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
}

pub(super) fn mask_paths(spec: &mut Spec, report: &mut Report) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    for (rule, list, current) in [
        (
            Rule::MaskedPaths,
            MASKED_PATHS,
            linux.masked_paths().clone(),
        ),
        (
            Rule::ReadonlyPaths,
            READONLY_PATHS,
            linux.readonly_paths().clone(),
        ),
    ] {
        let mut paths = current.unwrap_or_default();
        let added: Vec<&str> = list
            .iter()
            .filter(|p| !paths.iter().any(|x| x == *p))
            .copied()
            .collect();
        if !added.is_empty() {
            paths.extend(added.iter().map(|s| s.to_string()));
            report.change(
                rule,
                if rule == Rule::MaskedPaths {
                    "linux.maskedPaths"
                } else {
                    "linux.readonlyPaths"
                },
                "missing",
                format!("+{}", added.join(",")),
                if rule == Rule::MaskedPaths {
                    "these /proc and /sys files leak host state"
                } else {
                    "writes there would change the host kernel"
                },
            );
        }
        if rule == Rule::MaskedPaths {
            linux.set_masked_paths(Some(paths));
        } else {
            linux.set_readonly_paths(Some(paths));
        }
    }
    spec.set_linux(Some(linux));
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
