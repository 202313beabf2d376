//! Devices: the device cgroup rules and nodes a container may have, and the
//! refusal of privileged containers.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};

use super::normalize;
use crate::policy::{parse_capability, Policy};
use crate::refusal::{Refusal, RefusalRule};

/// Device cgroup rules any container may have: the standard pseudo-devices,
/// terminals, and docker's defaults (mknod permission alone is harmless
/// without CAP_MKNOD, which is never granted).
pub const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c 1:3 rwm",    // null
    "c 1:5 rwm",    // zero
    "c 1:7 rwm",    // full
    "c 1:8 rwm",    // random
    "c 1:9 rwm",    // urandom
    "c 5:0 rwm",    // tty
    "c 5:1 rwm",    // console
    "c 5:2 rwm",    // ptmx
    "c 136:* rwm",  // pts
    "c 10:200 rwm", // tun (docker default; no node is created)
    "c *:* m",
    "b *:* m",
];

/// Device nodes a spec may ask to be created.
pub const DEFAULT_DEVICE_NODES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/console", 5, 1),
    ("/dev/ptmx", 5, 2),
];

fn all_devices_rule(rule: &LinuxDeviceCgroup) -> bool {
    rule.allow()
        && matches!(rule.typ(), None | Some(LinuxDeviceType::A))
        && rule.major().is_none()
        && rule.minor().is_none()
}

pub(super) fn refuse_privileged(spec: &Spec, policy: &Policy) -> Result<(), Refusal> {
    if policy.refusals.allow_privileged {
        return Ok(());
    }
    let key = Some("refusals.allow_privileged");
    let linux = spec.linux().clone().unwrap_or_default();
    let all_devices = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default()
        .iter()
        .any(all_devices_rule);
    if all_devices {
        return Err(Refusal::new(
            RefusalRule::Privileged,
            "the spec allows access to every host device (a privileged container)",
            key,
        ));
    }
    let sys_admin = parse_capability("CAP_SYS_ADMIN");
    let has_sys_admin = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .and_then(|c| c.bounding().clone())
        .is_some_and(|b| sys_admin.is_some_and(|s| b.contains(&s)));
    let unmasked = linux.masked_paths().as_ref().is_none_or(|m| m.is_empty())
        && linux.readonly_paths().as_ref().is_none_or(|r| r.is_empty());
    if has_sys_admin && unmasked {
        return Err(Refusal::new(
            RefusalRule::Privileged,
            "the spec asks for CAP_SYS_ADMIN with no masked or read-only paths (a privileged container)",
            key,
        ));
    }
    Ok(())
}

/// "c 1:3 rwm" for a device cgroup rule.
pub fn device_rule_string(rule: &LinuxDeviceCgroup) -> String {
    let typ = match rule.typ() {
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
    let mut access: Vec<char> = rule.access().clone().unwrap_or_default().chars().collect();
    access.sort_by_key(|c| "rwm".find(*c).unwrap_or(3));
    format!(
        "{typ} {}:{} {}",
        num(rule.major()),
        num(rule.minor()),
        access.into_iter().collect::<String>()
    )
}

/// True when `rule` grants no more than `allowed` ("c 1:3 rw" ⊆ "c 1:3 rwm").
fn rule_covered(rule: &str, allowed: &str) -> bool {
    let parse = |s: &str| -> Option<(String, String, String)> {
        let mut it = s.split_whitespace();
        Some((it.next()?.into(), it.next()?.into(), it.next()?.into()))
    };
    let (Some((t, n, a)), Some((at, an, aa))) = (parse(rule), parse(allowed)) else {
        return false;
    };
    t == at && n == an && a.chars().all(|c| aa.contains(c))
}

pub(super) fn refuse_devices(spec: &Spec, policy: &Policy) -> Result<(), Refusal> {
    let key = Some("refusals.allow_devices");
    let linux = spec.linux().clone().unwrap_or_default();
    let allowed: Vec<String> = DEFAULT_DEVICE_RULES
        .iter()
        .map(|s| s.to_string())
        .chain(policy.refusals.allow_devices.iter().cloned())
        .collect();
    for rule in linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default()
    {
        if !rule.allow() {
            continue;
        }
        // Already judged (and allowed) by the privileged rule.
        if policy.refusals.allow_privileged && all_devices_rule(&rule) {
            continue;
        }
        let text = device_rule_string(&rule);
        if !allowed.iter().any(|a| rule_covered(&text, a)) {
            return Err(Refusal::new(
                RefusalRule::Device,
                format!("device cgroup rule \"{text}\" is beyond the default device set"),
                key,
            ));
        }
    }
    for dev in linux.devices().clone().unwrap_or_default() {
        let path = dev.path().display().to_string();
        // In a user namespace libcontainer bind-mounts the host's file at
        // this path instead of creating a node, so the path itself must be
        // a device path: anything else would smuggle in a host file.
        let normal = normalize(dev.path());
        if !normal.starts_with("/dev") || normal == Path::new("/dev") || normal != *dev.path() {
            return Err(Refusal::new(
                RefusalRule::Device,
                format!("device node path {path} is not a plain path under /dev"),
                None,
            ));
        }
        let standard = DEFAULT_DEVICE_NODES
            .iter()
            .any(|(p, maj, min)| *p == path && *maj == dev.major() && *min == dev.minor());
        let typ = match dev.typ() {
            LinuxDeviceType::B => "b",
            _ => "c",
        };
        let as_rule = format!("{typ} {}:{} rwm", dev.major(), dev.minor());
        if !standard && !policy.refusals.allow_devices.contains(&as_rule) {
            return Err(Refusal::new(
                RefusalRule::Device,
                format!("device node {path} ({as_rule}) is beyond the default device set"),
                key,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
