//! Every field of the OCI runtime spec (oci-spec 0.10) and of `exec`'s
//! process in one class: hardened (rewritten), validated (checked, refused
//! with a rule outside policy), passed (harmless: the reason says why), or
//! refused (not supported: a one-line error names the field). A path covers
//! the field and everything below it; `[]` stands for every array element.

use serde_json::Value;

use oci_spec::runtime::Spec;

use crate::refusal::{Refusal, RefusalRule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldClass {
    /// Rewritten by the named report rule.
    Hardened(&'static str),
    /// Checked; refused with the named refusal rule.
    Validated(&'static str),
    /// Handed to libcontainer as it is, for the reason given.
    Passed(&'static str),
    /// Refused whenever present (rule `unsupported-field`).
    Refused(&'static str),
}

use FieldClass::*;

/// The table. `moat explain --fields` prints it; docs/threat-model.md has it.
pub const FIELDS: &[(&str, FieldClass)] = &[
    ("ociVersion", Passed("checked by libcontainer")),
    ("hostname", Hardened("joined-uts")),
    ("domainname", Hardened("joined-uts")),
    ("annotations", Validated("annotation")),
    ("hooks", Validated("hooks")),
    ("root.path", Validated("sensitive-host-mount")),
    ("root.readonly", Hardened("read-only-root")),
    ("mounts[].destination", Validated("symlink-mount-destination")),
    ("mounts[].type", Validated("kernel-filesystem")),
    ("mounts[].source", Validated("sensitive-host-mount")),
    ("mounts[].options", Hardened("mount-flags")),
    ("mounts[].uidMappings", Hardened("user-namespace")),
    ("mounts[].gidMappings", Hardened("user-namespace")),
    ("process.terminal", Passed("a pty of the container's own devpts")),
    ("process.consoleSize", Passed("a window size")),
    ("process.user", Passed("ids inside the user namespace")),
    ("process.args", Passed("the workload")),
    ("process.commandLine", Passed("Windows only; ignored")),
    ("process.env", Hardened("home-env")),
    ("process.cwd", Validated("cwd")),
    ("process.capabilities", Hardened("capabilities")),
    ("process.rlimits", Passed("limits only lower what the container may use; RLIMIT raises need CAP_SYS_RESOURCE in the host's namespace")),
    ("process.noNewPrivileges", Hardened("no-new-privileges")),
    ("process.apparmorProfile", Passed("only confines more; exec'd processes get the init's (exec-confinement)")),
    ("process.oomScoreAdj", Passed("a higher value only makes the container likelier to be OOM-killed; a lower one needs CAP_SYS_RESOURCE in the host's user namespace, so the write fails and create fails (engines send it)")),
    ("process.selinuxLabel", Validated("selinux-label")),
    ("process.ioPriority", Passed("the container's own io priority")),
    ("process.scheduler", Passed("real-time policies need CAP_SYS_NICE, which is never granted")),
    ("process.execCPUAffinity", Passed("within the container's cpuset")),
    ("linux.uidMappings", Hardened("user-namespace")),
    ("linux.gidMappings", Hardened("user-namespace")),
    ("linux.sysctl", Passed("namespaced sysctls only (libcontainer refuses others); ping_group_range clamped by user-namespace")),
    ("linux.resources.devices", Validated("device")),
    ("linux.resources.pids", Hardened("pids-limit")),
    ("linux.resources.unified", Validated("cgroup-resources")),
    ("linux.resources.memory", Passed("a limit of the container's own cgroup")),
    ("linux.resources.memory.disableOOMKiller", Hardened("oom-killer")),
    ("linux.resources.cpu", Passed("a limit of the container's own cgroup")),
    ("linux.resources.cpu.shares", Hardened("relative-weights")),
    ("linux.resources.blockIO", Passed("a limit of the container's own cgroup")),
    ("linux.resources.blockIO.weight", Hardened("relative-weights")),
    ("linux.resources.blockIO.leafWeight", Hardened("relative-weights")),
    ("linux.resources.blockIO.weightDevice", Hardened("relative-weights")),
    ("linux.resources.hugepageLimits", Passed("a limit of the container's own cgroup")),
    ("linux.resources.network", Validated("cgroup-resources")),
    ("linux.resources.rdma", Passed("a limit of the container's own cgroup")),
    ("linux.cgroupsPath", Validated("cgroups-path")),
    ("linux.namespaces", Validated("host-namespace")),
    ("linux.devices", Validated("device")),
    ("linux.seccomp", Hardened("seccomp")),
    ("linux.seccomp.listenerPath", Validated("seccomp-listener")),
    ("linux.rootfsPropagation", Passed("propagation inside the container's own mount namespace")),
    ("linux.maskedPaths", Hardened("masked-paths")),
    ("linux.readonlyPaths", Hardened("readonly-paths")),
    ("linux.mountLabel", Validated("selinux-label")),
    ("linux.personality", Passed("execution domain; the seccomp profile limits personality()")),
    ("linux.timeOffsets", Passed("offsets of the container's own time namespace")),
    ("linux.memoryPolicy", Passed("NUMA policy of the container's own memory")),
    ("linux.intelRdt", Refused("resctrl is a host-wide resource")),
    ("linux.netDevices", Refused("moves a host network device into the container")),
    ("solaris", Refused("not Linux")),
    ("freebsd", Refused("not Linux; oci-spec 0.10 drops it on parse, so neither moat nor libcontainer ever sees it")),
    ("windows", Refused("not Linux")),
    ("vm", Refused("a VM runtime's field")),
    ("zos", Refused("not Linux")),
];

/// The table's class for a JSON path (`linux.resources.cpu.quota`,
/// `linux.devices[].major`): the longest entry that is the path or one of
/// its ancestors (an array's entry covers its elements).
pub fn class_of(path: &str) -> Option<FieldClass> {
    FIELDS
        .iter()
        .filter(|(p, _)| path == *p || is_below(path, p))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, c)| *c)
}

/// Is `path` strictly below `ancestor` (`ancestor.` or `ancestor[]` then
/// more)? Compared in place: this runs for every leaf of every spec (a
/// seccomp profile has hundreds), and formatting the two prefixes per
/// table entry was most of `harden`'s time (issue 17).
fn is_below(path: &str, ancestor: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
}

/// Every leaf path of `value` (arrays as `[]`) the table does not classify.
pub fn unclassified(value: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(map) if !map.is_empty() && class_of(path).is_none() => {
                for (k, child) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(child, &p, out);
                }
            }
            Value::Array(items) if class_of(path).is_none() => {
                for item in items {
                    walk(item, &format!("{path}[]"), out);
                }
            }
            _ if class_of(path).is_none() => out.push(path.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out.sort();
    out.dedup();
    out
}

/// Refuses a spec that sets a field of class [`FieldClass::Refused`], or one
/// the table does not know (closed by default).
pub fn refuse_unsupported_fields(spec: &Spec) -> Result<(), Refusal> {
    // Closed on failure: a spec moat cannot walk is not run.
    let value = serde_json::to_value(spec).map_err(|e| {
        Refusal::new(
            RefusalRule::UnsupportedField,
            format!("the spec cannot be examined field by field: {e}"),
            None,
        )
    })?;
    let mut paths = Vec::new();
    collect(&value, "", &mut paths);
    for path in paths {
        let why = match class_of(&path) {
            Some(Refused(why)) => why,
            Some(_) => continue,
            None => "moat has no rule for it",
        };
        return Err(Refusal::new(
            RefusalRule::UnsupportedField,
            format!("{path} is not supported: {why}"),
            None,
        ));
    }
    Ok(())
}

/// True when the table classifies something strictly below `path`.
fn has_entries_below(path: &str) -> bool {
    FIELDS.iter().any(|(p, _)| is_below(p, path))
}

/// Every path present in `v` down to the table's entries (nulls skipped).
fn collect(v: &Value, path: &str, out: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    if !path.is_empty() && (class_of(path).is_some() || !v.is_object() && !v.is_array()) {
        out.push(path.to_string());
        if !has_entries_below(path) {
            return;
        }
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                collect(child, &p, out);
            }
        }
        Value::Array(items) => {
            let p = format!("{path}[]");
            for item in items {
                collect(item, &p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
