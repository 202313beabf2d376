//! Capability masks the tests compare `/proc/<pid>/status` lines with,
//! computed from moat's own lists ([`moat::policy::DEFAULT_CAPABILITIES`]),
//! so a change to the policy is a change to the tests' expectations.

/// Capability names by number, as in linux/capability.h (kernel ABI).
const CAPABILITY_NUMBERS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The CapEff bit of capability `name` ("CAP_NET_ADMIN"); an unknown name
/// fails the build.
pub const fn cap_bit(name: &str) -> u64 {
    let mut n = 0;
    while n < CAPABILITY_NUMBERS.len() {
        if same(CAPABILITY_NUMBERS[n], name) {
            return 1 << n;
        }
        n += 1;
    }
    panic!("unknown capability name")
}

/// The CapEff mask of a list of capability names.
pub const fn caps_mask(names: &[&str]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < names.len() {
        mask |= cap_bit(names[i]);
        i += 1;
    }
    mask
}

/// The default policy's capability allowlist (moat's own list).
pub const ALLOWLIST: &[&str] = moat::policy::DEFAULT_CAPABILITIES;

/// [`ALLOWLIST`] as a CapEff mask.
pub const ALLOWED_CAPS_MASK: u64 = caps_mask(ALLOWLIST);

/// CapEff bits of capabilities tests grant or look for.
pub const CAP_KILL: u64 = cap_bit("CAP_KILL");
pub const CAP_NET_ADMIN: u64 = cap_bit("CAP_NET_ADMIN");
pub const CAP_NET_RAW: u64 = cap_bit("CAP_NET_RAW");
pub const CAP_SYS_PTRACE: u64 = cap_bit("CAP_SYS_PTRACE");
pub const CAP_SYS_ADMIN: u64 = cap_bit("CAP_SYS_ADMIN");
pub const CAP_MKNOD: u64 = cap_bit("CAP_MKNOD");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_kernels() {
        for (n, name) in CAPABILITY_NUMBERS.iter().enumerate() {
            let cap: caps::Capability = name.parse().expect(name);
            assert_eq!(cap.index() as usize, n, "{name}");
            assert_eq!(cap_bit(name), cap.bitmask(), "{name}");
        }
    }
}
