//! Names of the phases of `create` and `delete`, as structured fields.
//!
//! With `--debug`, moat writes one event with a `phase=<name>` field where
//! each phase ENDS (in the moat process, or in the container's init for the
//! phases that run there; all processes write to the one log file, with the
//! same clock). A phase lasts from the previous phase event (or from the
//! command's launch) to its own. A name may end several intervals (`state`
//! is written more than once); its cost is the sum of them.
//!
//! hack/bench splits `create` and `delete` by these fields, never by the
//! wording of a message, and the integration test `phases.rs` fails when a
//! name in [`CREATE`] or [`DELETE`] no longer appears in a debug log.

/// exec of moat and its re-exec from a read-only mount of the binary
/// (CVE-2019-5736), argument parsing, logging set up.
pub const EXEC: &str = "exec";
/// Bundle and config.json load, policy load, host paths pinned, the spec
/// hardened, moat's private dir created, a host id range leased.
pub const POLICY: &str = "policy";
/// The rootfs prepared (idmapped mount of the bundle's rootfs).
pub const ROOTFS: &str = "rootfs";
/// moat's state written (state file, hardened config.json, id-range record).
pub const STATE: &str = "state";
/// The container's network namespace and its egress table.
pub const NETNS: &str = "netns";
/// The seccomp filter compiled on the host side or taken from the cache.
pub const SECCOMP_CACHE: &str = "seccomp-cache";
/// Namespaces given by path joined, bind sources and scratch tmpfs staged.
pub const STAGING: &str = "staging";
/// The hardening report logged (one event per change and note).
pub const REPORT: &str = "report";
/// libcontainer up to the init's executor: cgroups, user namespace and
/// id maps, the other namespaces, rootfs mounts, pivot_root, capabilities.
pub const LIBCONTAINER: &str = "libcontainer";
/// The init loads moat's compiled seccomp filter.
pub const SECCOMP_LOAD: &str = "seccomp-load";
/// The init checks its own sandbox (capabilities, no_new_privs, seccomp).
pub const SELF_CHECK: &str = "self-check";
/// The init reports ready, libcontainer saves its state and hands the
/// container back to moat.
pub const READY: &str = "ready";
/// The container's own device nodes made in its private dir (mknod as host
/// root) and cloned as detached mounts (T34).
pub const DEVICES: &str = "devices";
/// From a thread of moat's that enters the container's mount namespace:
/// the cgroup hierarchies there remounted read-only (libcontainer 0.7
/// mounts them read-write) and libcontainer's binds of the host's device
/// nodes replaced by the container's own (T34); then `create` returns.
pub const SEAL_CGROUPFS: &str = "seal-cgroupfs";
/// `delete`: libcontainer removes its state and the cgroups.
pub const LIBCONTAINER_DELETE: &str = "libcontainer-delete";
/// `delete`: moat's teardown: processes of the id range, staging, network
/// namespace, sysfs, rootfs mount, id range, private dir.
pub const TEARDOWN: &str = "teardown";

/// Every phase event `moat --debug create` writes, in order.
pub const CREATE: &[&str] = &[
    EXEC,
    POLICY,
    ROOTFS,
    STATE,
    NETNS,
    SECCOMP_CACHE,
    STAGING,
    REPORT,
    LIBCONTAINER,
    SECCOMP_LOAD,
    SELF_CHECK,
    READY,
    DEVICES,
    SEAL_CGROUPFS,
];

/// Every phase event `moat --debug delete` of a stopped container writes.
pub const DELETE: &[&str] = &[EXEC, LIBCONTAINER_DELETE, TEARDOWN];

/// Marks the end of phase `name` (a debug event with a `phase` field).
pub fn done(name: &'static str) {
    tracing::debug!(phase = name, "phase done");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_lower_case() {
        for list in [CREATE, DELETE] {
            let mut seen = std::collections::BTreeSet::new();
            for name in list {
                assert!(seen.insert(*name), "{name} listed twice");
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                    "{name}: hack/bench expects lower-case names with dashes"
                );
            }
        }
        assert_eq!(CREATE.first(), Some(&EXEC));
        assert_eq!(DELETE.last(), Some(&TEARDOWN));
    }
}
