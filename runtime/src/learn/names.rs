//! Syscall numbers ↔ names, per architecture, through libseccomp (the same
//! tables libcontainer builds the filter with, so a number the kernel
//! reports resolves to the name the filter was built from).

use libseccomp::{ScmpArch, ScmpSyscall};
use oci_spec::runtime::Arch;

/// The kernel's AUDIT_ARCH values the notifier reports (libseccomp uses
/// the same values as its architecture tokens).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
const AUDIT_ARCH_RISCV64: u32 = 0xc000_00f3;
/// x32 syscalls arrive as x86_64 with this bit set in the number.
const X32_SYSCALL_BIT: i32 = 0x4000_0000;

/// The libseccomp architecture a notification's (arch, nr) belongs to.
pub fn scmp_arch(audit_arch: u32, nr: i32) -> Option<ScmpArch> {
    match audit_arch {
        AUDIT_ARCH_X86_64 if nr & X32_SYSCALL_BIT != 0 => Some(ScmpArch::X32),
        AUDIT_ARCH_X86_64 => Some(ScmpArch::X8664),
        AUDIT_ARCH_I386 => Some(ScmpArch::X86),
        AUDIT_ARCH_AARCH64 => Some(ScmpArch::Aarch64),
        AUDIT_ARCH_ARM => Some(ScmpArch::Arm),
        AUDIT_ARCH_RISCV64 => Some(ScmpArch::Riscv64),
        _ => None,
    }
}

/// The name of syscall `nr` as the kernel reported it (`audit_arch` from
/// `seccomp_data.arch`), or None for a number libseccomp does not know.
pub fn syscall_name(audit_arch: u32, nr: i32) -> Option<String> {
    let arch = scmp_arch(audit_arch, nr)?;
    ScmpSyscall::from(nr).get_name_by_arch(arch).ok()
}

/// The number of `name` on `arch` (None where it does not exist).
pub fn syscall_number(name: &str, arch: ScmpArch) -> Option<i32> {
    let nr = i32::from(ScmpSyscall::from_name_by_arch(name, arch).ok()?);
    // libseccomp returns negative pseudo numbers for names that exist only
    // on other architectures.
    (nr >= 0).then_some(nr)
}

/// The OCI name of an architecture, as profiles spell it.
pub fn arch_name(arch: Arch) -> String {
    serde_json::to_value(arch)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{arch:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_per_architecture() {
        assert_eq!(syscall_name(AUDIT_ARCH_X86_64, 0).as_deref(), Some("read"));
        assert_eq!(
            syscall_name(AUDIT_ARCH_X86_64, 59).as_deref(),
            Some("execve")
        );
        assert_eq!(syscall_name(AUDIT_ARCH_I386, 3).as_deref(), Some("read"));
        assert_eq!(
            syscall_name(AUDIT_ARCH_I386, 102).as_deref(),
            Some("socketcall")
        );
        assert_eq!(
            syscall_name(AUDIT_ARCH_AARCH64, 63).as_deref(),
            Some("read")
        );
        assert_eq!(syscall_name(0x1234, 0), None);
        assert_eq!(syscall_name(AUDIT_ARCH_X86_64, 100_000), None);
    }

    #[test]
    fn x32_numbers_carry_their_bit() {
        let nr = syscall_number("read", ScmpArch::X32).unwrap();
        assert_ne!(nr & X32_SYSCALL_BIT, 0);
        assert_eq!(syscall_name(AUDIT_ARCH_X86_64, nr).as_deref(), Some("read"));
    }

    #[test]
    fn numbers_round_trip() {
        for name in [
            "read",
            "write",
            "clone",
            "openat",
            "ptrace",
            "io_uring_setup",
        ] {
            for arch in [ScmpArch::X8664, ScmpArch::X86, ScmpArch::Aarch64] {
                let nr = syscall_number(name, arch).unwrap_or_else(|| panic!("{name} on {arch:?}"));
                let audit = match arch {
                    ScmpArch::X8664 => AUDIT_ARCH_X86_64,
                    ScmpArch::X86 => AUDIT_ARCH_I386,
                    _ => AUDIT_ARCH_AARCH64,
                };
                assert_eq!(syscall_name(audit, nr).as_deref(), Some(name), "{arch:?}");
            }
        }
        // open exists on x86_64 but not on aarch64.
        assert!(syscall_number("open", ScmpArch::X8664).is_some());
        assert!(syscall_number("open", ScmpArch::Aarch64).is_none());
        assert_eq!(arch_name(Arch::ScmpArchX86_64), "SCMP_ARCH_X86_64");
    }
}
