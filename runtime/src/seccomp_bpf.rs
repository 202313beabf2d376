//! A compiled-filter cache for the container's seccomp profile.
//!
//! Why: libcontainer compiles the OCI seccomp section with libseccomp inside
//! every container's init process, on every create (about 10 ms for moat's
//! 289-syscall profile here, the largest single step of `moat create`
//! after the kernel work). The filter depends only on the profile, so moat
//! compiles it once, on the host side, keeps the BPF program in
//! `/run/moat/seccomp-cache/<hash>.bpf` (host root only), hands libcontainer
//! a spec without the seccomp section, and loads the program itself in the
//! self-check executor ([`crate::selfcheck::SelfCheck`]) — at the same point
//! libcontainer would have (after the capability drop and no_new_privs,
//! before the start barrier), followed by the same self-check that requires
//! `Seccomp: 2`. `moat exec` loads the same program.
//!
//! Threat: this is T4 (syscall surface): the program must be the one the
//! profile describes. It is built by the same library libcontainer uses,
//! with the profile's OCI semantics, and the cache is keyed by a hash of the
//! whole profile, libseccomp's version and moat's version; a cache file that
//! is not a whole number of BPF instructions is ignored and rebuilt. The
//! cache directory lives under /run (tmpfs, host root only), which a
//! container never sees.
//!
//! Profiles this path does not handle (notify or trace actions, a listener
//! path) keep libcontainer's own loading.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// Where compiled programs are kept.
pub const CACHE_DIR: &str = "/run/moat/seccomp-cache";

/// Size of one `struct sock_filter`.
const BPF_INSN_LEN: usize = 8;

/// The most instructions the kernel takes in one seccomp program.
pub const BPF_MAXINSNS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("libseccomp: {0}")]
    Libseccomp(String),
    #[error("seccomp action {0:?} is not handled by moat's filter cache")]
    Unsupported(LinuxSeccompAction),
    #[error("seccomp cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("compiled filter is empty or malformed ({0} bytes)")]
    Malformed(usize),
    /// The program has more instructions than the kernel loads
    /// ([`BPF_MAXINSNS`]): libcontainer's compile of the same profile would
    /// not fit either, so it is refused, never compiled again.
    #[error("the compiled filter has {0} instructions, above the kernel's limit of {BPF_MAXINSNS} (BPF_MAXINSNS)")]
    TooLarge(usize),
    #[error("loading the seccomp filter failed: {0}")]
    Load(std::io::Error),
}

impl From<libseccomp::error::SeccompError> for BpfError {
    fn from(e: libseccomp::error::SeccompError) -> Self {
        BpfError::Libseccomp(e.to_string())
    }
}

/// A filter program ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    /// `struct sock_filter` instructions, native endian.
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` bits from the profile's `flags`.
    pub flags: libc::c_ulong,
}

/// True when moat can compile and load this profile itself: no notify or
/// trace action (those need libcontainer's listener plumbing) and no
/// listener path.
pub fn is_cacheable(seccomp: &LinuxSeccomp) -> bool {
    let plain = |a: LinuxSeccompAction| {
        !matches!(
            a,
            LinuxSeccompAction::ScmpActNotify | LinuxSeccompAction::ScmpActTrace
        )
    };
    seccomp.listener_path().is_none()
        && plain(seccomp.default_action())
        && seccomp
            .syscalls()
            .iter()
            .flatten()
            .all(|s| plain(s.action()))
}

fn to_action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, BpfError> {
    let errno = errno
        .and_then(|e| i32::try_from(e).ok())
        .unwrap_or(libc::EPERM);
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        // OCI's SCMP_ACT_KILL is libseccomp's SCMP_ACT_KILL (thread).
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        other @ (LinuxSeccompAction::ScmpActNotify | LinuxSeccompAction::ScmpActTrace) => {
            return Err(BpfError::Unsupported(other))
        }
    })
}

fn to_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// One argument condition with OCI semantics: for `SCMP_CMP_MASKED_EQ`,
/// `value` is the mask and `valueTwo` the value the masked argument must
/// equal (as runc and docker's profile read it).
fn to_condition(
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
) -> ScmpArgCompare {
    let op = match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(value), value_two)
        }
    };
    ScmpArgCompare::new(index, op, value)
}

/// The data of the placeholder default action ([`compile`]): a
/// `SECCOMP_RET_TRACE` no cacheable profile can contain (trace actions
/// stay with libcontainer, see [`is_cacheable`]), so every instruction
/// returning it is one of libseccomp's default-action returns.
const DEFAULT_PLACEHOLDER: u16 = 0x5ec;

/// `SECCOMP_RET_*` values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// What the kernel sees for a libseccomp action.
fn ret_value(action: ScmpAction) -> u32 {
    match action {
        ScmpAction::KillProcess => RET_KILL_PROCESS,
        ScmpAction::KillThread => RET_KILL_THREAD,
        ScmpAction::Trap => RET_TRAP,
        ScmpAction::Errno(e) => RET_ERRNO | (e as u32 & 0xffff),
        ScmpAction::Notify => 0x7fc0_0000,
        ScmpAction::Trace(d) => RET_TRACE | u32::from(d),
        ScmpAction::Log => RET_LOG,
        ScmpAction::Allow => RET_ALLOW,
        // A future action: answered like a kill, the strictest.
        _ => RET_KILL_PROCESS,
    }
}

const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;
const RET_EPERM: u32 = RET_ERRNO | libc::EPERM as u32;

/// Syscalls added since Linux 5.1 carry one number on every architecture
/// moat builds filters for (x32 adds its bit), so moat can name those its
/// libseccomp does not know yet (2.5.4 stops at about 450). Numbers from
/// the kernel's syscall tables (include/uapi/asm-generic/unistd.h,
/// arch/x86/entry/syscalls/syscall_64.tbl).
pub const UNIFIED_SYSCALLS: &[(&str, u32)] = &[
    ("pidfd_send_signal", 424),
    ("io_uring_setup", 425),
    ("io_uring_enter", 426),
    ("io_uring_register", 427),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("fspick", 433),
    ("pidfd_open", 434),
    ("clone3", 435),
    ("close_range", 436),
    ("openat2", 437),
    ("pidfd_getfd", 438),
    ("faccessat2", 439),
    ("process_madvise", 440),
    ("epoll_pwait2", 441),
    ("mount_setattr", 442),
    ("quotactl_fd", 443),
    ("landlock_create_ruleset", 444),
    ("landlock_add_rule", 445),
    ("landlock_restrict_self", 446),
    ("memfd_secret", 447),
    ("process_mrelease", 448),
    ("futex_waitv", 449),
    ("set_mempolicy_home_node", 450),
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

/// x32 syscalls are x86_64's token with this bit in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// x32's own (compat) entries start here, above the shared table...
const X32_COMPAT_BASE: u32 = 512;
/// ...and end here (pwritev2; no x32 entry was added since: new syscalls
/// go to the shared table).
const X32_COMPAT_LAST: u32 = 547;
/// ARM's private syscalls (cacheflush, set_tls, …) live up here; they do
/// not say how new a profile is.
const ARM_PRIVATE_BASE: u32 = 0x000f_0000;

/// The newest number in [`UNIFIED_SYSCALLS`]: above it (plus an
/// architecture's offset), moat cannot tell whether a syscall belongs on
/// its always-denied list.
fn newest_known() -> u32 {
    UNIFIED_SYSCALLS
        .iter()
        .map(|(_, nr)| *nr)
        .max()
        .unwrap_or(0)
}

/// Every architecture libseccomp can build a filter for: the AUDIT_ARCH_*
/// token the kernel reports (linux/audit.h) and what is added to a unified
/// number there (the unified numbers carry the MIPS ABIs' bases and x32's
/// bit). Each of them gets the tail, so no architecture a profile lists
/// lets an always-denied syscall through by number.
fn arch_token(arch: ScmpArch) -> Option<(u32, u32)> {
    let arch = if arch == ScmpArch::Native {
        ScmpArch::native()
    } else {
        arch
    };
    Some(match arch {
        ScmpArch::X8664 => (0xc000_003e, 0),
        ScmpArch::X32 => (0xc000_003e, X32_SYSCALL_BIT),
        ScmpArch::X86 => (0x4000_0003, 0),
        ScmpArch::Aarch64 => (0xc000_00b7, 0),
        ScmpArch::Arm => (0x4000_0028, 0),
        ScmpArch::Riscv64 => (0xc000_00f3, 0),
        ScmpArch::Ppc64Le => (0xc000_0015, 0),
        ScmpArch::Ppc64 => (0x8000_0015, 0),
        ScmpArch::Ppc => (0x0000_0014, 0),
        ScmpArch::S390X => (0x8000_0016, 0),
        ScmpArch::S390 => (0x0000_0016, 0),
        ScmpArch::Parisc => (0x0000_000f, 0),
        ScmpArch::Parisc64 => (0x8000_000f, 0),
        ScmpArch::Mips => (0x0000_0008, 4000),
        ScmpArch::Mipsel => (0x4000_0008, 4000),
        ScmpArch::Mips64 => (0x8000_0008, 5000),
        ScmpArch::Mipsel64 => (0xc000_0008, 5000),
        ScmpArch::Mips64N32 => (0xa000_0008, 6000),
        ScmpArch::Mipsel64N32 => (0xe000_0008, 6000),
        ScmpArch::Loongarch64 => (0xc000_0102, 0),
        ScmpArch::M68k => (0x0000_0004, 0),
        // libseccomp's SH is the little-endian one, SHEB the other.
        ScmpArch::Sh => (0x4000_002a, 0),
        ScmpArch::Sheb => (0x0000_002a, 0),
        _ => return None,
    })
}

/// How libseccomp knows `name` on `arch`.
enum Known {
    /// Its number there.
    Number(u32),
    /// Not a syscall of that architecture (a libseccomp pseudo number).
    Absent,
    /// Newer than libseccomp's tables.
    Unknown,
}

fn libseccomp_number(name: &str, arch: ScmpArch) -> Known {
    match ScmpSyscall::from_name_by_arch(name, arch) {
        Ok(s) => match u32::try_from(s.as_raw_syscall()) {
            Ok(nr) => Known::Number(nr),
            Err(_) => Known::Absent,
        },
        Err(_) => Known::Unknown,
    }
}

fn unified_number(name: &str, offset: u32) -> Option<u32> {
    UNIFIED_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| nr + offset)
}

/// The number of `name` on `arch`: libseccomp's, else moat's table of
/// unified numbers.
fn syscall_number(name: &str, arch: ScmpArch, offset: u32) -> Option<u32> {
    match libseccomp_number(name, arch) {
        Known::Number(nr) => Some(nr),
        Known::Absent => None,
        Known::Unknown => unified_number(name, offset),
    }
}

/// The number of an always-denied syscall on `arch`, also where
/// libseccomp's tables call a unified syscall absent (a unified number
/// exists on every architecture; denying one the kernel does not wire up
/// costs nothing).
fn denied_number(name: &str, arch: ScmpArch, offset: u32) -> Option<u32> {
    match libseccomp_number(name, arch) {
        Known::Number(nr) => Some(nr),
        Known::Absent | Known::Unknown => unified_number(name, offset),
    }
}

/// What the tail answers on one architecture (one ABI).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct AbiTail {
    /// Exact answers, tested first: syscalls the profile names that
    /// libseccomp does not know (from [`UNIFIED_SYSCALLS`]), and every
    /// always-denied syscall libseccomp's program does not already deny
    /// and the rest of the tail would not answer EPERM.
    exact: Vec<(u32, u32)>,
    /// Inclusive ranges answered ENOSYS: newer than the profile (or, under
    /// a permissive default, than moat's table).
    enosys: Vec<(u32, u32)>,
}

impl AbiTail {
    /// The answer for `nr` from the ranges and the default (what the tail
    /// gives a number it has no exact answer for).
    fn answer_without_exact(&self, nr: u32, default_ret: u32) -> u32 {
        if self.enosys.iter().any(|(lo, hi)| (*lo..=*hi).contains(&nr)) {
            RET_ENOSYS
        } else {
            default_ret
        }
    }
}

/// The tails for one AUDIT_ARCH token: x86_64's carries x32 too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct TokenTail {
    token: u32,
    native: Option<AbiTail>,
    x32: Option<AbiTail>,
}

/// Files one ABI's tail under its token (x32 beside x86_64's).
fn add_abi(tails: &mut Vec<TokenTail>, token: u32, offset: u32, abi: AbiTail) {
    let entry = match tails.iter().position(|t| t.token == token) {
        Some(i) => &mut tails[i],
        None => {
            tails.push(TokenTail {
                token,
                ..Default::default()
            });
            tails.last_mut().expect("just pushed")
        }
    };
    if offset == X32_SYSCALL_BIT {
        entry.x32 = Some(abi);
    } else {
        entry.native = Some(abi);
    }
}

/// The ENOSYS ranges of one ABI. `newest` is the newest number the
/// profile names (always-denied set aside), `shared` x32's newest in the
/// shared table. Deny-by-default: everything above what the profile names.
/// Permissive default: everything above what moat's table names too (a
/// syscall newer than moat may belong on the always-denied list, as
/// `open_tree_attr` did), except ARM's private calls and x32's compat
/// entries, which are old.
fn enosys_ranges(
    arch: ScmpArch,
    offset: u32,
    newest: u32,
    shared: Option<u32>,
    denies_by_default: bool,
) -> Vec<(u32, u32)> {
    let known = newest_known() + offset;
    let x32 = offset == X32_SYSCALL_BIT;
    let mut ranges = Vec::new();
    let (newest, shared) = if denies_by_default {
        (newest, shared.unwrap_or(X32_SYSCALL_BIT))
    } else if x32 {
        (
            newest.max(X32_SYSCALL_BIT + X32_COMPAT_LAST),
            shared.unwrap_or(0).max(known),
        )
    } else {
        (newest.max(known), 0)
    };
    if x32 && shared < X32_SYSCALL_BIT + X32_COMPAT_BASE - 1 {
        // The shared table ends below the compat entries, so a number
        // between the newest shared one and the compat base is newer too.
        ranges.push((shared + 1, X32_SYSCALL_BIT + X32_COMPAT_BASE - 1));
    }
    if arch == ScmpArch::Arm && !denies_by_default {
        if newest < ARM_PRIVATE_BASE - 1 {
            ranges.push((newest + 1, ARM_PRIVATE_BASE - 1));
        }
    } else if newest < u32::MAX {
        ranges.push((newest + 1, u32::MAX));
    }
    ranges
}

/// The tail the default action goes through, from the profile:
/// per architecture, the ENOSYS ranges and the exact answers.
fn default_tail(
    seccomp: &LinuxSeccomp,
    default_ret: u32,
    denies_by_default: bool,
) -> Result<Vec<TokenTail>, BpfError> {
    let denied = crate::seccomp::ALWAYS_DENIED;
    let mut arches: Vec<ScmpArch> = match seccomp.architectures() {
        Some(a) if !a.is_empty() => a.iter().map(|a| to_arch(*a)).collect(),
        _ => vec![ScmpArch::native()],
    };
    arches.dedup();
    let mut tails: Vec<TokenTail> = Vec::new();
    for arch in arches {
        let Some((token, offset)) = arch_token(arch) else {
            return Err(BpfError::Libseccomp(format!(
                "architecture {arch:?} has no always-denied tail"
            )));
        };
        let mut abi = AbiTail::default();
        let mut newest = 0;
        let mut shared: Option<u32> = None;
        // Names libseccomp's own program answers without reaching the
        // tail: known there, with an unconditional rule that is not the
        // default.
        let mut ruled: Vec<&str> = Vec::new();
        for rule in seccomp.syscalls().iter().flatten() {
            let ret = to_action(rule.action(), rule.errno_ret())
                .map(ret_value)
                .unwrap_or(default_ret);
            let unconditional = rule.args().as_ref().is_none_or(|a| a.is_empty());
            for name in rule.names() {
                let Some(nr) = syscall_number(name, arch, offset) else {
                    continue;
                };
                let known = matches!(libseccomp_number(name, arch), Known::Number(_));
                if known && unconditional && ret != default_ret && ret != RET_ALLOW {
                    ruled.push(name);
                }
                // Unknown to libseccomp, so not in its program: answered
                // here (a conditional rule cannot be: the default stands).
                if !known
                    && unconditional
                    && ret != default_ret
                    && !abi.exact.iter().any(|(n, _)| *n == nr)
                    && !denied.contains(&name.as_str())
                {
                    abi.exact.push((nr, ret));
                }
                if denied.contains(&name.as_str())
                    || (arch == ScmpArch::Arm && nr >= ARM_PRIVATE_BASE)
                {
                    continue;
                }
                newest = newest.max(nr);
                if offset == X32_SYSCALL_BIT && nr < X32_SYSCALL_BIT + X32_COMPAT_BASE {
                    shared = Some(shared.map_or(nr, |s| s.max(nr)));
                }
            }
        }
        abi.enosys = enosys_ranges(arch, offset, newest, shared, denies_by_default);
        // Always denied, by number: EPERM wherever libseccomp's program
        // does not already deny it and the tail would answer otherwise
        // (libseccomp does not know it, the default allows, or the number
        // is in an ENOSYS range).
        for name in denied {
            let Some(nr) = denied_number(name, arch, offset) else {
                continue;
            };
            if ruled.contains(name) && matches!(libseccomp_number(name, arch), Known::Number(_)) {
                continue;
            }
            let otherwise = abi.answer_without_exact(nr, default_ret);
            match abi.exact.iter_mut().find(|(n, _)| *n == nr) {
                Some(e) => e.1 = RET_EPERM,
                None if otherwise != RET_EPERM => abi.exact.push((nr, RET_EPERM)),
                None => {}
            }
        }
        add_abi(&mut tails, token, offset, abi);
    }
    Ok(tails)
}

/// One `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGT_K: u16 = 0x25;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// offsetof(struct seccomp_data, nr / arch).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

fn ret(k: u32) -> Insn {
    insn(BPF_RET_K, 0, 0, k)
}

/// `if nr == n return r` as two instructions (all jumps local).
fn answer_exact(out: &mut Vec<Insn>, exact: &[(u32, u32)]) {
    for (nr, r) in exact {
        out.push(insn(BPF_JEQ_K, 0, 1, *nr));
        out.push(ret(*r));
    }
}

/// The code of one ABI's tail; `nr` is loaded.
fn abi_code(abi: &AbiTail, default_ret: u32) -> Vec<Insn> {
    let mut out = Vec::new();
    answer_exact(&mut out, &abi.exact);
    for (lo, hi) in &abi.enosys {
        if *hi == u32::MAX {
            out.push(insn(BPF_JGE_K, 0, 1, *lo));
        } else {
            out.push(insn(BPF_JGE_K, 0, 2, *lo));
            out.push(insn(BPF_JGT_K, 1, 0, *hi));
        }
        out.push(ret(RET_ENOSYS));
    }
    out.push(ret(default_ret));
    out
}

/// The tail program: dispatch on the architecture, then per ABI. Only
/// absolute loads of `nr` and `arch`, K-comparisons, `ja` and returns: the
/// kernel's constant-action emulation (kernel/seccomp.c) follows all of
/// them, so a syscall allowed here is still cached as always allowed.
fn tail_code(tails: &[TokenTail], default_ret: u32) -> Vec<Insn> {
    let blocks: Vec<Vec<Insn>> = tails
        .iter()
        .map(|t| {
            let mut b = vec![insn(BPF_LD_W_ABS, 0, 0, DATA_NR)];
            let native = t
                .native
                .as_ref()
                .map(|a| abi_code(a, default_ret))
                .unwrap_or_else(|| vec![ret(default_ret)]);
            if let Some(x32) = &t.x32 {
                // nr >= X32 bit: x32's code, after the native code.
                b.push(insn(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT));
                b.push(insn(BPF_JMP_JA, 0, 0, native.len() as u32));
                b.extend(native);
                b.extend(abi_code(x32, default_ret));
            } else {
                b.extend(native);
            }
            b
        })
        .collect();
    let mut out = vec![insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH)];
    // Dispatch: per token `jeq token; ja block`, then the default.
    let dispatch_len = 2 * tails.len() + 1;
    let mut block_start = dispatch_len;
    for (i, t) in tails.iter().enumerate() {
        let pc = 1 + 2 * i + 1; // the ja
        out.push(insn(BPF_JEQ_K, 0, 1, t.token));
        out.push(insn(BPF_JMP_JA, 0, 0, (block_start - pc) as u32));
        block_start += blocks[i].len();
    }
    out.push(ret(default_ret));
    for b in blocks {
        out.extend(b);
    }
    out
}

fn decode(program: &[u8]) -> Vec<Insn> {
    program
        .chunks_exact(BPF_INSN_LEN)
        .map(|c| Insn {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

fn encode(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * BPF_INSN_LEN);
    for i in insns {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

/// Replaces every return of the placeholder default with a jump to the
/// tail, appended after libseccomp's program. Only the paths that end in
/// the default action get longer; every rule's path is unchanged.
fn route_default_through_tail(
    program: &[u8],
    tails: &[TokenTail],
    default_ret: u32,
) -> Result<Vec<u8>, BpfError> {
    let placeholder = RET_TRACE | u32::from(DEFAULT_PLACEHOLDER);
    let mut insns = decode(program);
    let tail_start = insns.len();
    let mut routed = 0;
    for (pc, i) in insns.iter_mut().enumerate() {
        if i.code == BPF_RET_K && i.k == placeholder {
            *i = insn(BPF_JMP_JA, 0, 0, (tail_start - pc - 1) as u32);
            routed += 1;
        }
    }
    if routed == 0 {
        return Err(BpfError::Malformed(program.len()));
    }
    insns.extend(tail_code(tails, default_ret));
    Ok(encode(&insns))
}

fn filter_flags(seccomp: &LinuxSeccomp) -> libc::c_ulong {
    // Values from linux/seccomp.h.
    seccomp
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
        })
        .fold(0, |a, b| a | b)
}

/// The name libseccomp multiplexes the socket calls through on x86 (and
/// s390, ppc, mips o32). moat denies it outright (T26); see
/// [`crate::seccomp::ALWAYS_DENIED`].
const SOCKETCALL: &str = "socketcall";

/// Does `arch` have a real `socketcall` syscall (not a libseccomp pseudo
/// number)?
fn has_socketcall(arch: ScmpArch) -> bool {
    ScmpSyscall::from_name_by_arch(SOCKETCALL, arch).is_ok_and(|s| s.as_raw_syscall() >= 0)
}

/// Builds the libseccomp filter for an OCI seccomp section (OCI argument
/// semantics, not libcontainer's swapped MASKED_EQ), with `default` as the
/// filter's default action (the profile's own, or the placeholder
/// [`DEFAULT_PLACEHOLDER`] that [`route_default_through_tail`] replaces).
///
/// The architectures with a real `socketcall` (x86) get their own
/// libseccomp context, merged in: there the profile's `socketcall` denial
/// is a rule; on x86_64 and x32 the name is only a libseccomp pseudo
/// number, and a rule for it would cost every filtered syscall one more
/// comparison.
fn build_context(
    seccomp: &LinuxSeccomp,
    default: ScmpAction,
) -> Result<ScmpFilterContext, BpfError> {
    let profile_default = to_action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let arches: Vec<ScmpArch> = match seccomp.architectures() {
        Some(a) if !a.is_empty() => a.iter().map(|a| to_arch(*a)).collect(),
        _ => vec![ScmpArch::native()],
    };
    let (muxed, direct): (Vec<ScmpArch>, Vec<ScmpArch>) =
        arches.into_iter().partition(|a| has_socketcall(*a));
    let mut merged: Option<ScmpFilterContext> = None;
    for group in [direct, muxed] {
        if group.is_empty() {
            continue;
        }
        let with_socketcall = group.iter().any(|a| has_socketcall(*a));
        let ctx = group_context(seccomp, default, profile_default, &group, with_socketcall)?;
        merged = Some(match merged {
            None => ctx,
            Some(mut m) => {
                m.merge(ctx)?;
                m
            }
        });
    }
    match merged {
        Some(ctx) => Ok(ctx),
        None => Err(BpfError::Libseccomp("no architecture".into())),
    }
}

/// One libseccomp context for `arches`, all sharing whether they have a
/// real `socketcall`.
fn group_context(
    seccomp: &LinuxSeccomp,
    default: ScmpAction,
    profile_default: ScmpAction,
    arches: &[ScmpArch],
    with_socketcall: bool,
) -> Result<ScmpFilterContext, BpfError> {
    let mut ctx = ScmpFilterContext::new(default)?;
    for arch in arches {
        ctx.add_arch(*arch)?;
    }
    let native = ScmpArch::native();
    if !arches.contains(&native) {
        ctx.remove_arch(native)?;
    }
    // moat sets no_new_privs itself (the spec always has it); the filter
    // must not do it behind the spec's back.
    ctx.set_ctl_nnp(false)?;
    // socketcall's rules last: libseccomp refuses (EEXIST) a rule for a
    // syscall after an unconditional one with another action, and only an
    // unconditional socketcall rule added after the socket rules replaces
    // the socketcall(SYS_SOCKET) rules they bring along.
    for socketcall_pass in [false, true] {
        for rule in seccomp.syscalls().iter().flatten() {
            let action = to_action(rule.action(), rule.errno_ret())?;
            let conditions: Vec<ScmpArgCompare> = rule
                .args()
                .iter()
                .flatten()
                .map(|a| {
                    to_condition(
                        a.index() as u32,
                        a.op(),
                        a.value(),
                        a.value_two().unwrap_or(0),
                    )
                })
                .collect();
            let mut indices: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
            indices.sort_unstable();
            let repeated_index = indices.windows(2).any(|w| w[0] == w[1]);
            for name in rule.names() {
                if (name == SOCKETCALL) != socketcall_pass
                    || (name == SOCKETCALL && !with_socketcall)
                {
                    continue;
                }
                // A rule repeating the profile's default adds nothing (and
                // libseccomp refuses one repeating the filter's default)...
                // except socketcall's: libseccomp would otherwise let
                // socketcall(SYS_SOCKET) through on x86 from the socket rules,
                // without their family condition (T26).
                if action == default || (action == profile_default && name != SOCKETCALL) {
                    continue;
                }
                // A name this libseccomp does not know: a syscall newer than
                // its tables. [`route_default_through_tail`] handles those moat
                // knows the number of; the rest answer ENOSYS.
                let Ok(nr) = ScmpSyscall::from_name(name) else {
                    tracing::debug!(name, "seccomp: syscall name unknown to libseccomp");
                    continue;
                };
                if conditions.is_empty() {
                    ctx.add_rule(action, nr)?;
                } else if repeated_index {
                    // Two conditions on one argument can't share a rule
                    // (seccomp_rule_add(3)): each becomes its own rule, i.e.
                    // they are OR-ed, as runc does.
                    for c in &conditions {
                        ctx.add_rule_conditional(action, nr, std::slice::from_ref(c))?;
                    }
                } else {
                    ctx.add_rule_conditional(action, nr, &conditions)?;
                }
            }
        }
    }
    Ok(ctx)
}

/// Compiles the profile into a BPF program (no cache).
///
/// Whatever the profile's default action, libseccomp builds the program
/// with a placeholder default, and every path that ends in it goes through
/// moat's tail ([`default_tail`]): always-denied syscalls answer EPERM by
/// number there (also those libseccomp cannot name, and under a permissive
/// default), newer ones ENOSYS, the rest the profile's default.
pub fn compile(seccomp: &LinuxSeccomp, scratch_dir: &Path) -> Result<CompiledFilter, BpfError> {
    let profile_default = to_action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let denies_by_default = !matches!(profile_default, ScmpAction::Allow | ScmpAction::Log);
    let ctx = build_context(seccomp, ScmpAction::Trace(DEFAULT_PLACEHOLDER))?;
    // libseccomp 2.5 exports to a file descriptor only.
    let io = |source| BpfError::Io {
        path: scratch_dir.to_path_buf(),
        source,
    };
    let mut file = tempfile::tempfile_in(scratch_dir).map_err(io)?;
    ctx.export_bpf(&file)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut program = Vec::new();
    file.read_to_end(&mut program).map_err(io)?;
    check_program(&program)?;
    let default_ret = ret_value(profile_default);
    let tails = default_tail(seccomp, default_ret, denies_by_default)?;
    program = route_default_through_tail(&program, &tails, default_ret)?;
    check_program(&program)?;
    Ok(CompiledFilter {
        program,
        flags: filter_flags(seccomp),
    })
}

fn check_program(program: &[u8]) -> Result<(), BpfError> {
    if program.is_empty() || !program.len().is_multiple_of(BPF_INSN_LEN) {
        return Err(BpfError::Malformed(program.len()));
    }
    let instructions = program.len() / BPF_INSN_LEN;
    if instructions > BPF_MAXINSNS {
        return Err(BpfError::TooLarge(instructions));
    }
    Ok(())
}

/// A filter of its own for a profile libcontainer loads (notify or trace
/// actions, or one moat could not compile): every always-denied syscall
/// answers EPERM by number on the profile's architectures, everything else
/// is left to the profile's filter (ALLOW here; the kernel runs every
/// stacked filter and the strictest answer wins, so EPERM beats the
/// profile's ALLOW, LOG, TRACE or NOTIFY). Only `nr` and `arch` are read:
/// the kernel's constant-action cache keeps working.
pub fn always_denied_guard(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, BpfError> {
    let mut arches: Vec<ScmpArch> = match seccomp.architectures() {
        Some(a) if !a.is_empty() => a.iter().map(|a| to_arch(*a)).collect(),
        _ => vec![ScmpArch::native()],
    };
    // The ABIs of this host run whatever the profile lists.
    arches.extend(
        crate::seccomp::native_architectures()
            .into_iter()
            .map(to_arch),
    );
    let mut tails: Vec<TokenTail> = Vec::new();
    for arch in arches {
        let Some((token, offset)) = arch_token(arch) else {
            continue;
        };
        let mut abi = AbiTail::default();
        for name in crate::seccomp::ALWAYS_DENIED {
            if let Some(nr) = denied_number(name, arch, offset) {
                if !abi.exact.iter().any(|(n, _)| *n == nr) {
                    abi.exact.push((nr, RET_EPERM));
                }
            }
        }
        add_abi(&mut tails, token, offset, abi);
    }
    let program = encode(&tail_code(&tails, RET_ALLOW));
    check_program(&program)?;
    Ok(CompiledFilter { program, flags: 0 })
}

/// Does a profile libcontainer loads need [`always_denied_guard`]? Only
/// under a permissive default: under a denying one, a syscall no rule
/// names (one libseccomp cannot name among them) gets that default, and
/// the profile need not allow `seccomp(2)` for a second filter. Not a
/// `moat learn` profile: it notifies the always-denied syscalls so the
/// recorder can count the attempts (and answers them EPERM itself); a
/// hardened workload profile never lets one through.
pub fn needs_always_denied_guard(seccomp: &LinuxSeccomp) -> bool {
    let permissive = matches!(
        seccomp.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
            | LinuxSeccompAction::ScmpActNotify
    );
    permissive
        && !seccomp.syscalls().iter().flatten().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActNotify
                && r.names()
                    .iter()
                    .any(|n| crate::seccomp::ALWAYS_DENIED.contains(&n.as_str()))
        })
}

/// Loads [`always_denied_guard`] on top of a profile libcontainer loaded,
/// unless it is a `moat learn` profile ([`needs_always_denied_guard`]).
pub fn load_always_denied_guard(seccomp: &LinuxSeccomp) -> Result<(), BpfError> {
    if !needs_always_denied_guard(seccomp) {
        return Ok(());
    }
    load(&always_denied_guard(seccomp)?)
}

/// The version of what [`compile`] makes of a profile: bump it whenever a
/// change here (the tail, the always-denied list's numbers) changes the
/// program for a profile, so that a cache /run/moat kept across an upgrade
/// of moat is not reused (`the_program_format_is_pinned` fails until then).
const FILTER_FORMAT: &str = "tail-2";

/// The cache key: the profile, libseccomp's version, moat's version and
/// the program format.
pub fn cache_key(seccomp: &LinuxSeccomp) -> String {
    let profile = serde_json::to_vec(seccomp).unwrap_or_default();
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    // SHA-256, not a fast hash: a tenant writes the profile, and moat
    // itself stores the tenant's compiled program under this key, so a
    // second preimage of another profile's key (the public default one)
    // would plant a program for every later container using that profile
    // (red-team R11). Each part is length-prefixed, so parts cannot shift.
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [
        &profile[..],
        lib.as_bytes(),
        env!("CARGO_PKG_VERSION").as_bytes(),
        FILTER_FORMAT.as_bytes(),
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The compiled program for a profile, from `cache_dir` when present,
/// compiled and stored there otherwise.
pub fn cached(seccomp: &LinuxSeccomp, cache_dir: &Path) -> Result<CompiledFilter, BpfError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BpfError::Io { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .map_err(io(cache_dir))?;
    let key = cache_key(seccomp);
    let file = cache_dir.join(format!("{key}.bpf"));
    let too_large = cache_dir.join(format!("{key}{TOO_LARGE_SUFFIX}"));
    if let Some(instructions) = fs::read_to_string(&too_large)
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
        .filter(|n| *n > BPF_MAXINSNS)
    {
        // A profile that did not fit is not compiled again (R7-7).
        touch(&too_large);
        return Err(BpfError::TooLarge(instructions));
    }
    if let Ok(program) = fs::read(&file) {
        if check_program(&program).is_ok() {
            touch(&file);
            return Ok(CompiledFilter {
                program,
                flags: filter_flags(seccomp),
            });
        }
        tracing::warn!(file = %file.display(), "malformed seccomp cache entry; rebuilding");
    }
    let compiled = match compile(seccomp, cache_dir) {
        Err(BpfError::TooLarge(instructions)) => {
            store(cache_dir, &too_large, instructions.to_string().as_bytes());
            return Err(BpfError::TooLarge(instructions));
        }
        other => other?,
    };
    store(cache_dir, &file, &compiled.program);
    Ok(compiled)
}

/// Marks a cache entry recently used: the last to be evicted.
fn touch(entry: &Path) {
    let _ = fs::File::open(entry).and_then(|f| f.set_modified(std::time::SystemTime::now()));
}

/// Stores `bytes` as the cache entry `file` (a temp file renamed over it),
/// then bounds the cache. A cache that cannot be written only costs time.
fn store(cache_dir: &Path, file: &Path, bytes: &[u8]) {
    let tmp = cache_dir.join(format!(".{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, file)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        tracing::warn!(file = %file.display(), error = %e, "cannot store a seccomp cache entry");
    }
    bound_cache(cache_dir, file, CACHE_MAX_ENTRIES, CACHE_MAX_BYTES);
}

/// At most this many compiled programs are kept ([`bound_cache`]).
pub const CACHE_MAX_ENTRIES: usize = 64;
/// And at most this many bytes of them (a program is at most 32 KiB).
pub const CACHE_MAX_BYTES: u64 = 2 << 20;

/// The suffix of a cache entry that remembers a profile whose program did
/// not fit ([`BpfError::TooLarge`]); it holds the instruction count.
const TOO_LARGE_SUFFIX: &str = ".toolarge";

/// Whether `name` is an entry of the current cache format (`<sha256>.bpf`,
/// or `<sha256>.toolarge` for a profile that did not fit).
fn is_cache_entry_name(name: &str) -> bool {
    let key = name
        .strip_suffix(".bpf")
        .or_else(|| name.strip_suffix(TOO_LARGE_SUFFIX));
    key.is_some_and(|key| {
        key.len() == 64
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Keeps the cache bounded (T36): the key covers the whole profile, which a
/// tenant writes, so every distinct tenant profile adds an entry that no
/// container owns. Run after each store (a miss already paid a compile):
/// removes names of older formats and temp files left by a crash (older
/// than a minute), then the least recently used entries (mtime, bumped on
/// each hit) until at most `max_entries` and `max_bytes` remain. `keep`,
/// the entry just stored, stays. An evicted entry is only compiled again.
pub fn bound_cache(cache_dir: &Path, keep: &Path, max_entries: usize, max_bytes: u64) {
    let Ok(dir) = fs::read_dir(cache_dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut entries = Vec::new();
    for e in dir.flatten() {
        let path = e.path();
        let Ok(md) = e.metadata() else { continue };
        let mtime = md.modified().unwrap_or(now);
        let name = e.file_name();
        let name = name.to_string_lossy();
        if md.is_file() && is_cache_entry_name(&name) {
            if path != keep {
                entries.push((mtime, md.len(), path));
            }
            continue;
        }
        let stale = now
            .duration_since(mtime)
            .is_ok_and(|age| age > std::time::Duration::from_secs(60));
        if md.is_file() && (!name.starts_with('.') || stale) {
            let _ = fs::remove_file(&path);
        }
    }
    let keep_len = fs::metadata(keep).map(|m| m.len()).unwrap_or(0);
    let mut count = entries.len() + 1;
    let mut bytes = keep_len + entries.iter().map(|e| e.1).sum::<u64>();
    // Oldest first.
    entries.sort();
    for (_, len, path) in entries {
        if count <= max_entries && bytes <= max_bytes {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            count -= 1;
            bytes = bytes.saturating_sub(len);
        }
    }
}

/// Installs the program on the calling thread. The caller must hold
/// no_new_privs (or CAP_SYS_ADMIN in its user namespace).
pub fn load(filter: &CompiledFilter) -> Result<(), BpfError> {
    check_program(&filter.program)?;
    let prog = libc::sock_fprog {
        len: (filter.program.len() / BPF_INSN_LEN) as libc::c_ushort,
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` whole sock_filter instructions that
    // outlive the call; the kernel copies them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            filter.flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(BpfError::Load(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// What the compiled `program` answers for syscall `nr` (zero arguments)
/// on the architecture with AUDIT_ARCH `token`: for other modules' tests.
#[cfg(test)]
pub(crate) fn answer(program: &[u8], token: u32, nr: u32) -> u32 {
    tests::run(program, token, nr, [0; 6]).ret
}

#[cfg(test)]
pub(crate) const TEST_RET_ENOSYS: u32 = RET_ENOSYS;

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscall, LinuxSyscallBuilder,
    };

    fn default_profile() -> LinuxSeccomp {
        crate::seccomp::default_profile().expect("embedded profile parses")
    }

    #[test]
    fn default_profile_is_cacheable_and_compiles() {
        let p = default_profile();
        assert!(is_cacheable(&p));
        let dir = tempfile::tempdir().unwrap();
        let f = compile(&p, dir.path()).unwrap();
        assert_eq!(f.program.len() % BPF_INSN_LEN, 0);
        assert!(
            f.program.len() > 100 * BPF_INSN_LEN,
            "{} bytes",
            f.program.len()
        );
    }

    /// A profile whose program exceeds BPF_MAXINSNS: 85 rules of six
    /// 64-bit conditions on three architectures (beyond the hardening's
    /// bounds, which keep tenants' profiles far from it).
    fn too_large_profile() -> LinuxSeccomp {
        let rules: Vec<serde_json::Value> = (0..85u64)
            .map(|i| {
                let args: Vec<serde_json::Value> = (0..6u64)
                    .map(|j| {
                        let value = 1000 + i * 7 + j;
                        if j % 2 == 1 {
                            serde_json::json!({"index": j, "value": value, "op": "SCMP_CMP_GT"})
                        } else {
                            serde_json::json!({"index": j, "value": value, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"})
                        }
                    })
                    .collect();
                serde_json::json!({"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": args})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules,
        }))
        .unwrap()
    }

    /// R7-7: a program too large for the kernel is an error of its own
    /// (create refuses it rather than letting libcontainer compile it
    /// again), and the cache remembers it: the next lookup does not compile.
    #[test]
    fn a_program_too_large_is_refused_and_remembered() {
        let p = too_large_profile();
        let dir = tempfile::tempdir().unwrap();
        let n = match compile(&p, dir.path()) {
            Err(BpfError::TooLarge(n)) => n,
            Ok(f) => panic!("fits: {} instructions", f.program.len() / BPF_INSN_LEN),
            Err(e) => panic!("{e}"),
        };
        assert!(n > BPF_MAXINSNS, "{n}");
        let err = cached(&p, dir.path()).unwrap_err();
        assert!(matches!(err, BpfError::TooLarge(m) if m == n), "{err}");
        assert!(err.to_string().contains("above the kernel's limit of 4096"));
        let marker = dir
            .path()
            .join(format!("{}{TOO_LARGE_SUFFIX}", cache_key(&p)));
        assert_eq!(fs::read_to_string(&marker).unwrap(), n.to_string());
        assert!(is_cache_entry_name(
            &marker.file_name().unwrap().to_string_lossy()
        ));
        // Remembered: a marker with another count is what the lookup answers.
        fs::write(&marker, "5000").unwrap();
        assert!(matches!(
            cached(&p, dir.path()),
            Err(BpfError::TooLarge(5000))
        ));
        // A marker that says nothing sensible is ignored.
        fs::write(&marker, "12").unwrap();
        assert!(matches!(
            cached(&p, dir.path()),
            Err(BpfError::TooLarge(m)) if m == n
        ));
        // And a program of 4097 instructions is not loadable.
        assert!(matches!(
            check_program(&vec![0u8; (BPF_MAXINSNS + 1) * BPF_INSN_LEN]),
            Err(BpfError::TooLarge(4097))
        ));
        check_program(&vec![0u8; BPF_MAXINSNS * BPF_INSN_LEN]).unwrap();
    }

    #[test]
    fn cache_returns_the_same_program_and_rebuilds_a_corrupt_entry() {
        let p = default_profile();
        let dir = tempfile::tempdir().unwrap();
        let first = cached(&p, dir.path()).unwrap();
        let file = dir.path().join(format!("{}.bpf", cache_key(&p)));
        assert_eq!(fs::read(&file).unwrap(), first.program);
        assert_eq!(cached(&p, dir.path()).unwrap(), first);
        fs::write(&file, b"short").unwrap();
        assert_eq!(cached(&p, dir.path()).unwrap(), first);
        assert_eq!(fs::read(&file).unwrap(), first.program);
    }

    #[test]
    fn different_profiles_have_different_keys() {
        let a = default_profile();
        let mut b = a.clone();
        let mut calls = b.syscalls().clone().unwrap_or_default();
        calls.pop();
        b.set_syscalls(Some(calls));
        assert_ne!(cache_key(&a), cache_key(&b));
    }

    /// R11: the key is a SHA-256 (64 hex digits) of the exact inputs, not
    /// a fast hash a tenant could find a second preimage of.
    #[test]
    fn the_cache_is_bounded_oldest_first_and_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let name = |i: u8| dir.join(format!("{}.bpf", format!("{i:02x}").repeat(32)));
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(1000);
        for i in 0..10u8 {
            fs::write(name(i), vec![0u8; 100]).unwrap();
            let f = fs::File::open(name(i)).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(u64::from(i)))
                .unwrap();
        }
        // An older format's name, a fresh and an old temp file.
        fs::write(dir.join("0123456789abcdef.bpf"), b"old").unwrap();
        fs::write(dir.join(".77.tmp"), b"busy").unwrap();
        fs::write(dir.join(".78.tmp"), b"dead").unwrap();
        fs::File::open(dir.join(".78.tmp"))
            .unwrap()
            .set_modified(t0)
            .unwrap();
        // Entry 0 was just stored (kept though oldest); 4 entries at most.
        bound_cache(dir, &name(0), 4, 1 << 20);
        let mut left: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![".77.tmp".to_string()];
        want.extend([0u8, 7, 8, 9].map(|i| format!("{}.bpf", format!("{i:02x}").repeat(32))));
        want.sort();
        assert_eq!(left, want);
        // The byte bound: 250 bytes keep two of 100.
        bound_cache(dir, &name(0), 64, 250);
        assert!(name(0).exists() && name(9).exists());
        assert!(!name(7).exists() && !name(8).exists());
        assert!(is_cache_entry_name(&format!("{}.bpf", "ab".repeat(32))));
        assert!(!is_cache_entry_name(&format!("{}.bpf", "AB".repeat(32))));
    }

    #[test]
    fn cache_key_is_a_sha256_of_the_profile() {
        let p = default_profile();
        let key = cache_key(&p);
        assert_eq!(key.len(), 64, "{key}");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        assert_eq!(key, cache_key(&p));
    }

    #[test]
    fn notify_and_listener_profiles_stay_with_libcontainer() {
        let notify = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["getpid".to_string()])
                .action(LinuxSeccompAction::ScmpActNotify)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        assert!(!is_cacheable(&notify));
        let mut listener = default_profile();
        listener.set_listener_path(Some(PathBuf::from("/run/x.sock")));
        assert!(!is_cacheable(&listener));
    }

    #[test]
    fn masked_eq_uses_oci_semantics() {
        // value = mask, valueTwo = datum.
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .value(0x1000_0000u64)
            .value_two(0u64)
            .build()
            .unwrap();
        let c = to_condition(0, arg.op(), arg.value(), arg.value_two().unwrap_or(0));
        let expected = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0x1000_0000), 0);
        assert_eq!(format!("{c:?}"), format!("{expected:?}"));
    }

    /// The errno of a raw syscall with zero arguments (0 when it worked).
    fn errno_of(nr: libc::c_long) -> i32 {
        // SAFETY: raw syscalls with null/zero arguments; the filter or the
        // kernel refuses them before they touch memory.
        let rc = unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) };
        if rc < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    /// Runs `probe` in a forked child under the compiled filter; returns its
    /// exit code.
    fn under_filter(filter: &CompiledFilter, probe: fn() -> i32) -> i32 {
        // SAFETY: the child only makes raw syscalls and exits.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: raw syscalls in the forked child, then _exit.
                unsafe {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        libc::_exit(100);
                    }
                    if load(filter).is_err() {
                        libc::_exit(101);
                    }
                    libc::_exit(probe())
                }
            }
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child died: {status:#x}");
                libc::WEXITSTATUS(status)
            }
            _ => panic!("fork failed"),
        }
    }

    /// Raw clone with `flags`: 0 = allowed (child reaped), 1 = EPERM, 2 = other.
    fn try_clone(flags: libc::c_long) -> i32 {
        // SAFETY: a fork-like clone (no new stack); the new child exits at once.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as libc::c_long,
                0,
                0,
                0,
                0,
            )
        };
        if pid == 0 {
            // SAFETY: exiting the cloned child.
            unsafe { libc::_exit(0) };
        }
        if pid > 0 {
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) };
            return 0;
        }
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            1
        } else {
            2
        }
    }

    #[test]
    fn compiled_default_filter_behaves_like_the_profile() {
        let mut report = crate::report::Report::default();
        let profile = crate::seccomp::enforce_always_denied(default_profile(), &mut report);
        let dir = tempfile::tempdir().unwrap();
        let filter = compile(&profile, dir.path()).unwrap();
        // A plain fork-style clone passes the masked clone-flags rule...
        assert_eq!(under_filter(&filter, || try_clone(0)), 0);
        // ...a clone that asks for a new user namespace does not (this is
        // where reading MASKED_EQ's operands the wrong way round shows).
        assert_eq!(
            under_filter(&filter, || try_clone(libc::CLONE_NEWUSER as libc::c_long)),
            1
        );
        // An always-denied syscall fails with EPERM; an allowed one works.
        assert_eq!(
            under_filter(&filter, || {
                // SAFETY: unshare with a flag; denied by the filter.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
                let eperm = std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
                i32::from(rc == -1 && eperm)
            }),
            1
        );
        assert_eq!(
            // SAFETY: getppid has no preconditions.
            under_filter(&filter, || i32::from(unsafe { libc::getppid() } > 0)),
            1
        );
    }

    #[test]
    fn flags_map_to_kernel_bits() {
        let mut p = default_profile();
        p.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        ]));
        assert_eq!(filter_flags(&p), 6);
    }

    // ---- the default action's tail: ENOSYS for what the profile does not know

    /// What the kernel's filter run gives for one call: the return value,
    /// the instructions executed, and whether only `nr`/`arch` were read
    /// (the kernel's constant-action cache emulates exactly those).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Run {
        pub(crate) ret: u32,
        steps: usize,
        constant: bool,
    }

    /// A classic-BPF interpreter for seccomp programs (the instructions
    /// libseccomp and the tail use).
    pub(crate) fn run(program: &[u8], token: u32, nr: u32, args: [u64; 6]) -> Run {
        let insns = decode(program);
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&token.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut pc, mut steps, mut constant) = (0u32, 0usize, 0usize, true);
        let mut mem = [0u32; 16];
        let mut x = 0u32;
        loop {
            let i = insns[pc];
            steps += 1;
            pc += 1;
            let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
            // The kernel's constant-action emulation (kernel/seccomp.c,
            // seccomp_is_const_allow) follows only these instructions;
            // any other on the path makes the result not cacheable.
            constant &= matches!(
                i.code,
                0x20 | 0x05 | 0x15 | 0x25 | 0x35 | 0x45 | 0x54 | 0x06
            );
            match i.code {
                0x20 => {
                    constant &= i.k == DATA_NR || i.k == DATA_ARCH;
                    let k = i.k as usize;
                    a = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x00 => a = i.k,
                0x60 => a = mem[i.k as usize],
                0x61 => x = mem[i.k as usize],
                0x02 => mem[i.k as usize] = a,
                0x03 => mem[i.k as usize] = x,
                0x87 => a = x,
                0x07 => x = a,
                0x54 => a &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += jump(a == i.k),
                0x25 => pc += jump(a > i.k),
                0x35 => pc += jump(a >= i.k),
                0x45 => pc += jump(a & i.k != 0),
                0x06 => {
                    return Run {
                        ret: i.k,
                        steps,
                        constant,
                    }
                }
                other => panic!("unexpected BPF opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;
    const AARCH64: u32 = 0xc000_00b7;
    const ARM: u32 = 0x4000_0028;

    /// The ABIs under test: token, libseccomp arch, nr offset.
    fn abis() -> Vec<(u32, ScmpArch, u32)> {
        vec![
            (X86_64, ScmpArch::X8664, 0),
            (X86_64, ScmpArch::X32, X32_SYSCALL_BIT),
            (I386, ScmpArch::X86, 0),
            (AARCH64, ScmpArch::Aarch64, 0),
            (ARM, ScmpArch::Arm, 0),
        ]
    }

    fn all_arches(mut p: LinuxSeccomp) -> LinuxSeccomp {
        p.set_architectures(Some(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
            Arch::ScmpArchAarch64,
            Arch::ScmpArchArm,
        ]));
        p
    }

    fn hardened(p: LinuxSeccomp) -> LinuxSeccomp {
        crate::seccomp::enforce_always_denied(p, &mut crate::report::Report::default())
    }

    fn unified(name: &str) -> u32 {
        UNIFIED_SYSCALLS.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn nr_of(name: &str, arch: ScmpArch, offset: u32) -> u32 {
        syscall_number(name, arch, offset).unwrap_or_else(|| panic!("{name} on {arch:?}"))
    }

    /// The moat default profile, for all five architectures, as compiled.
    fn compiled_default() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        compile(&all_arches(default_profile()), dir.path())
            .unwrap()
            .program
    }

    #[test]
    fn unknown_new_syscalls_answer_enosys_on_every_architecture() {
        let program = compiled_default();
        for (token, arch, offset) in abis() {
            let at = |nr: u32| run(&program, token, nr, [0; 6]).ret;
            // Newer than everything the profile names.
            for nr in 470..=520 {
                if offset == X32_SYSCALL_BIT && nr >= X32_COMPAT_BASE {
                    continue;
                }
                assert_eq!(at(nr + offset), RET_ENOSYS, "{arch:?} {nr}");
            }
            // Allowed by the profile, unknown to this libseccomp.
            for name in [
                "fchmodat2",
                "futex_wake",
                "mseal",
                "file_setattr",
                "getxattrat",
            ] {
                assert_eq!(at(nr_of(name, arch, offset)), RET_ALLOW, "{arch:?} {name}");
            }
            // Answered ENOSYS on purpose (callers fall back to /proc).
            for name in [
                "statmount",
                "listmount",
                "lsm_get_self_attr",
                "lsm_list_modules",
            ] {
                assert_eq!(at(nr_of(name, arch, offset)), RET_ENOSYS, "{arch:?} {name}");
            }
            // Always denied: EPERM, also the ones newer than libseccomp.
            for name in ["open_tree_attr", "io_uring_setup", "mount_setattr", "bpf"] {
                assert_eq!(at(nr_of(name, arch, offset)), RET_EPERM, "{arch:?} {name}");
            }
            // Known to the profile and left out: the default, EPERM.
            for name in ["memfd_secret", "cachestat", "personality"] {
                // (memfd_secret is not a syscall of every architecture.)
                if let Some(nr) = syscall_number(name, arch, offset) {
                    assert_eq!(at(nr), RET_EPERM, "{arch:?} {name}");
                }
            }
            assert_eq!(at(nr_of("read", arch, offset)), RET_ALLOW, "{arch:?} read");
        }
        // x32: the shared table's new numbers up to its compat entries.
        let at = |nr: u32| run(&program, X86_64, nr, [0; 6]).ret;
        assert_eq!(at(X32_SYSCALL_BIT + 511), RET_ENOSYS);
        assert_eq!(at(X32_SYSCALL_BIT + 515), RET_ALLOW, "x32 readv");
    }

    /// docker's default profile as of docker 20.10 stops at epoll_pwait2
    /// (441): that is where its "unknown" starts under moat too.
    fn docker_like() -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .default_errno_ret(1u32)
            .architectures(vec![
                Arch::ScmpArchX86_64,
                Arch::ScmpArchX86,
                Arch::ScmpArchX32,
            ])
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(
                    [
                        "read",
                        "write",
                        "openat",
                        "mmap",
                        "socket",
                        "connect",
                        "socketcall",
                        "epoll_pwait2",
                        "faccessat2",
                        "io_uring_setup",
                    ]
                    .map(String::from)
                    .to_vec(),
                )
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn a_workload_profile_is_unknown_above_its_own_newest_syscall() {
        let dir = tempfile::tempdir().unwrap();
        let program = compile(&hardened(docker_like()), dir.path())
            .unwrap()
            .program;
        for (token, arch, offset) in &abis()[..3] {
            let at = |name: &str| run(&program, *token, nr_of(name, *arch, *offset), [0; 6]).ret;
            for name in ["fchmodat2", "landlock_create_ruleset", "mseal", "statmount"] {
                assert_eq!(at(name), RET_ENOSYS, "{arch:?} {name}");
            }
            // moat's always-denied list keeps EPERM above the profile's
            // newest syscall as below it.
            for name in [
                "mount_setattr",
                "quotactl_fd",
                "open_tree_attr",
                "io_uring_setup",
            ] {
                assert_eq!(at(name), RET_EPERM, "{arch:?} {name}");
            }
            assert_eq!(at("personality"), RET_EPERM, "{arch:?}");
            assert_eq!(at("epoll_pwait2"), RET_ALLOW, "{arch:?}");
        }
    }

    #[test]
    fn the_tail_follows_the_profiles_default_action() {
        let dir = tempfile::tempdir().unwrap();
        // A killing default: ENOSYS above, the kill below.
        let mut kill = docker_like();
        kill.set_default_action(LinuxSeccompAction::ScmpActKillProcess);
        let program = compile(&hardened(kill), dir.path()).unwrap().program;
        assert_eq!(run(&program, X86_64, 452, [0; 6]).ret, RET_ENOSYS);
        assert_eq!(run(&program, X86_64, 135, [0; 6]).ret, RET_KILL_PROCESS);
        assert_eq!(run(&program, X86_64, 442, [0; 6]).ret, RET_EPERM);
        // A permissive default: what moat's table names passes, the
        // always-denied list answers EPERM (open_tree_attr too, which
        // libseccomp cannot name), and what is newer than moat's table
        // answers ENOSYS (it may belong on the always-denied list).
        let mut allow = docker_like();
        allow.set_default_action(LinuxSeccompAction::ScmpActAllow);
        allow.set_syscalls(Some(vec![LinuxSyscallBuilder::default()
            .names(vec!["chroot".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .build()
            .unwrap()]));
        let program = compile(&hardened(allow), dir.path()).unwrap().program;
        assert_eq!(run(&program, X86_64, 470, [0; 6]).ret, RET_ENOSYS);
        assert_eq!(run(&program, X86_64, 452, [0; 6]).ret, RET_ALLOW);
        assert_eq!(run(&program, X86_64, 469, [0; 6]).ret, RET_ALLOW);
        assert_eq!(run(&program, X86_64, 425, [0; 6]).ret, RET_EPERM);
        assert_eq!(run(&program, X86_64, 467, [0; 6]).ret, RET_EPERM);
        assert_eq!(run(&program, X86_64, 161, [0; 6]).ret, RET_EPERM, "chroot");
    }

    /// libseccomp's program for the profile with its own default action
    /// (what moat compiled before the tail).
    fn without_tail(p: &LinuxSeccomp) -> Vec<u8> {
        let default = to_action(p.default_action(), p.default_errno_ret()).unwrap();
        let ctx = build_context(p, default).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut f = tempfile::tempfile_in(dir.path()).unwrap();
        ctx.export_bpf(&f).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn the_tail_keeps_every_rules_path_and_the_constant_action_cache() {
        let p = default_profile();
        let before = without_tail(&p);
        let dir = tempfile::tempdir().unwrap();
        let after = compile(&p, dir.path()).unwrap().program;
        let args = [2, 1, 0, 0, 0, 0];
        for (token, _, offset) in &abis()[..3] {
            for nr in (0..600).map(|n| n + offset) {
                let (b, a) = (
                    run(&before, *token, nr, args),
                    run(&after, *token, nr, args),
                );
                if *token == I386 && nr == 102 {
                    // socketcall: the one deliberate change (T26), below.
                    assert_eq!(a.ret, RET_EPERM);
                } else if b.ret == RET_ALLOW && *token == I386 {
                    // i386 tests socketcall's rule too: at most one more
                    // comparison on some of its paths.
                    assert!(
                        a.ret == b.ret && a.constant == b.constant && a.steps <= b.steps + 1,
                        "{token:#x} {nr}: {a:?} {b:?}"
                    );
                } else if b.ret == RET_ALLOW {
                    // Same answer, same instructions, still cacheable.
                    assert_eq!(a, b, "{token:#x} {nr}");
                } else {
                    assert!(a.ret != RET_ALLOW || a.constant, "{token:#x} {nr}");
                }
            }
        }
        // What the tail allows (newer than libseccomp) is constant too:
        // the kernel caches it as always allowed.
        let fchmodat2 = run(&after, X86_64, unified("fchmodat2"), [0; 6]);
        assert_eq!(fchmodat2.ret, RET_ALLOW);
        assert!(fchmodat2.constant);
        let native = run(&after, I386, unified("mseal"), [0; 6]);
        assert!(native.constant && native.ret == RET_ALLOW);
    }

    #[test]
    fn x86_socketcall_is_denied_outright() {
        const SYS_SOCKET: u64 = 1;
        const SYS_CONNECT: u64 = 3;
        let dir = tempfile::tempdir().unwrap();
        let docker = compile(&hardened(docker_like()), dir.path())
            .unwrap()
            .program;
        let permissive = {
            let mut p = docker_like();
            p.set_default_action(LinuxSeccompAction::ScmpActAllow);
            p.set_syscalls(None);
            compile(&hardened(p), dir.path()).unwrap().program
        };
        // i386's direct socket syscall (libseccomp names it by its
        // multiplexed pseudo number).
        let socket32 = 359;
        for program in [compiled_default(), docker, permissive] {
            // socketcall(SYS_SOCKET, [AF_VSOCK, …]): the family is in
            // memory, so the whole multiplexer is denied.
            for call in [SYS_SOCKET, SYS_CONNECT] {
                let r = run(&program, I386, 102, [call, 0x1000, 0, 0, 0, 0]);
                assert_eq!(r.ret, RET_EPERM, "socketcall({call})");
            }
            // The direct socket syscall keeps its family check.
            assert_ne!(
                run(&program, I386, socket32, [40, 1, 0, 0, 0, 0]).ret,
                RET_ALLOW
            );
        }
        let p = compiled_default();
        assert_eq!(run(&p, I386, socket32, [2, 1, 0, 0, 0, 0]).ret, RET_ALLOW);
        assert_eq!(run(&p, X86_64, 41, [2, 1, 0, 0, 0, 0]).ret, RET_ALLOW);
        assert_eq!(run(&p, X86_64, 41, [40, 1, 0, 0, 0, 0]).ret, RET_EPERM);
    }

    #[test]
    fn loaded_filter_answers_enosys_for_unknown_and_eperm_for_denied() {
        let profile = crate::seccomp::enforce_always_denied(
            default_profile(),
            &mut crate::report::Report::default(),
        );
        let dir = tempfile::tempdir().unwrap();
        let filter = compile(&profile, dir.path()).unwrap();
        // 1 = as expected.
        assert_eq!(
            under_filter(&filter, || i32::from(errno_of(470) == libc::ENOSYS)),
            1
        );
        assert_eq!(
            under_filter(&filter, || i32::from(errno_of(457) == libc::ENOSYS)),
            1
        );
        assert_eq!(
            under_filter(&filter, || i32::from(errno_of(425) == libc::EPERM)),
            1
        );
        assert_eq!(
            under_filter(&filter, || i32::from(errno_of(467) == libc::EPERM)),
            1
        );
        // fchmodat2(0, NULL, 0, 0) reaches the kernel: EFAULT/EBADF, not EPERM.
        assert_eq!(
            under_filter(&filter, || {
                let e = errno_of(452);
                i32::from(e != libc::EPERM && e != libc::ENOSYS)
            }),
            1
        );
    }

    // ---- always denied by number, whatever the default (issue 20)

    /// Every architecture libseccomp 2.5 can build a filter for, in the
    /// groups one filter can hold (libseccomp keeps one byte order per
    /// filter).
    fn every_libseccomp_arch() -> Vec<Vec<Arch>> {
        vec![
            vec![
                Arch::ScmpArchX86_64,
                Arch::ScmpArchX86,
                Arch::ScmpArchX32,
                Arch::ScmpArchAarch64,
                Arch::ScmpArchArm,
                Arch::ScmpArchRiscv64,
                Arch::ScmpArchPpc64le,
                Arch::ScmpArchMipsel,
                Arch::ScmpArchMipsel64,
                Arch::ScmpArchMipsel64n32,
            ],
            vec![
                Arch::ScmpArchPpc64,
                Arch::ScmpArchPpc,
                Arch::ScmpArchS390x,
                Arch::ScmpArchS390,
                Arch::ScmpArchParisc,
                Arch::ScmpArchParisc64,
                Arch::ScmpArchMips,
                Arch::ScmpArchMips64,
                Arch::ScmpArchMips64n32,
            ],
        ]
    }

    /// (token, libseccomp arch, offset) for each architecture of `arches`.
    fn abis_of(arches: &[Arch]) -> Vec<(u32, ScmpArch, u32)> {
        arches
            .iter()
            .map(|a| {
                let arch = to_arch(*a);
                let (token, offset) = arch_token(arch).unwrap();
                (token, arch, offset)
            })
            .collect()
    }

    fn profile_with(default: LinuxSeccompAction, rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
        let mut p = LinuxSeccomp::default();
        p.set_default_action(default);
        p.set_syscalls(Some(rules));
        p
    }

    fn deny_rule(names: &[&str]) -> LinuxSyscall {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(LinuxSeccompAction::ScmpActErrno)
            .build()
            .unwrap()
    }

    fn allow_rule(names: &[&str]) -> LinuxSyscall {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(LinuxSeccompAction::ScmpActAllow)
            .build()
            .unwrap()
    }

    #[test]
    fn moats_offsets_are_libseccomps() {
        // The unified numbers moat adds for names libseccomp cannot name
        // sit where libseccomp puts the ones it can.
        for (_, arch, offset) in abis_of(&every_libseccomp_arch().concat()) {
            for name in ["pidfd_send_signal", "open_tree", "mount_setattr"] {
                match libseccomp_number(name, arch) {
                    Known::Number(nr) => assert_eq!(nr, unified(name) + offset, "{arch:?} {name}"),
                    _ => panic!("libseccomp does not know {name} on {arch:?}"),
                }
            }
        }
    }

    #[test]
    fn always_denied_syscalls_answer_eperm_by_number_under_any_default() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = [
            LinuxSeccompAction::ScmpActAllow,
            LinuxSeccompAction::ScmpActLog,
            LinuxSeccompAction::ScmpActErrno,
            LinuxSeccompAction::ScmpActKillProcess,
            LinuxSeccompAction::ScmpActTrap,
        ];
        // Every little-endian architecture in one filter (the hosts moat
        // builds for among them). A filter for the big-endian ones cannot
        // be built on a little-endian host (libseccomp starts from the
        // native architecture and keeps one byte order); their tokens and
        // numbers are checked in `moats_offsets_are_libseccomps`.
        let arch_sets = [
            every_libseccomp_arch()[0].clone(),
            native_set(),
            vec![Arch::ScmpArchX86_64],
        ];
        for default in defaults {
            for arches in &arch_sets {
                let tenant = |rules| {
                    let mut p = profile_with(default, rules);
                    p.set_architectures(Some(arches.clone()));
                    p
                };
                let profiles = [
                    // A tenant's permissive profile with a few denials, and
                    // one that names always-denied calls among its allowed
                    // ones, both as moat hardens them...
                    hardened(tenant(vec![deny_rule(&["chmod", "chroot"])])),
                    hardened(tenant(vec![allow_rule(&[
                        "read",
                        "open_tree_attr",
                        "mount_setattr",
                        "bpf",
                        "execve",
                        "ioctl",
                    ])])),
                    // ...and one compiled as it comes: the program's tail
                    // denies by number even without moat's rules.
                    tenant(vec![deny_rule(&["chmod"])]),
                ];
                for p in profiles {
                    let program = compile(&p, dir.path())
                        .unwrap_or_else(|e| panic!("{default:?} {arches:?}: {e}"))
                        .program;
                    for (token, arch, offset) in abis_of(arches) {
                        for name in crate::seccomp::ALWAYS_DENIED {
                            let Some(nr) = denied_number(name, arch, offset) else {
                                continue;
                            };
                            for args in [[0; 6], [u64::MAX; 6]] {
                                let r = run(&program, token, nr, args).ret;
                                assert_eq!(
                                    r, RET_EPERM,
                                    "{default:?} {arch:?} {name} ({nr:#x}): {r:#x}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn native_set() -> Vec<Arch> {
        crate::seccomp::native_architectures()
    }

    #[test]
    fn every_always_denied_syscall_has_a_number_where_the_kernel_has_it() {
        // A name libseccomp cannot resolve on an architecture must be in
        // moat's unified table, or it could not be denied by number there.
        for (_, arch, offset) in abis_of(&every_libseccomp_arch().concat()) {
            for name in crate::seccomp::ALWAYS_DENIED {
                if matches!(libseccomp_number(name, arch), Known::Unknown) {
                    assert!(
                        unified_number(name, offset).is_some(),
                        "{name} on {arch:?}: neither libseccomp nor moat's table has it"
                    );
                }
            }
        }
        // The ones libseccomp 2.5.4 cannot name, at least.
        assert!(
            matches!(
                libseccomp_number("open_tree_attr", ScmpArch::X8664),
                Known::Unknown
            ) || ScmpVersionAtLeast::v2_6()
        );
    }

    /// libseccomp 2.6 knows names up to Linux 6.x; the test above only
    /// insists on `open_tree_attr` being unknown for 2.5.
    struct ScmpVersionAtLeast;
    impl ScmpVersionAtLeast {
        fn v2_6() -> bool {
            libseccomp::ScmpVersion::current()
                .map(|v| (v.major, v.minor) >= (2, 6))
                .unwrap_or(false)
        }
    }

    #[test]
    fn x32_always_denied_calls_below_the_compat_entries_answer_eperm() {
        // A profile that names x32 compat entries (execve 520, ioctl 514)
        // but stops short in the shared table (epoll_pwait2, 441): the
        // always-denied calls between 441 and 512 must not answer ENOSYS.
        let mut p = docker_like();
        p.set_architectures(Some(vec![Arch::ScmpArchX86_64, Arch::ScmpArchX32]));
        let mut rules = p.syscalls().clone().unwrap();
        rules.push(allow_rule(&["execve", "ioctl", "readv"]));
        p.set_syscalls(Some(rules));
        let dir = tempfile::tempdir().unwrap();
        let program = compile(&hardened(p), dir.path()).unwrap().program;
        let at = |name: &str| {
            let nr = nr_of(name, ScmpArch::X32, X32_SYSCALL_BIT);
            run(&program, X86_64, nr, [0; 6]).ret
        };
        for name in ["mount_setattr", "quotactl_fd", "open_tree_attr"] {
            assert_eq!(at(name), RET_EPERM, "x32 {name}");
        }
        // Newer than the profile and not denied: ENOSYS, as before.
        assert_eq!(at("fchmodat2"), RET_ENOSYS);
        assert_eq!(at("landlock_create_ruleset"), RET_ENOSYS);
        assert_eq!(at("execve"), RET_ALLOW);
        assert_eq!(at("ptrace"), RET_EPERM, "x32's own ptrace (521)");
    }

    /// The syscalls a profile allows with no argument condition.
    fn allowed_without_args(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|r| {
                r.action() == LinuxSeccompAction::ScmpActAllow
                    && r.args().as_ref().is_none_or(|a| a.is_empty())
            })
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn every_syscall_allowed_without_args_is_cached_by_the_kernel() {
        // The kernel caches "always allow this nr on this arch" (native and
        // 32-bit compat, kernel/seccomp.c: seccomp_cache_prepare) only when
        // the filter's path for it reads nothing but nr and arch: then such a
        // syscall costs what it costs under an allow-all filter.
        let p = default_profile();
        let dir = tempfile::tempdir().unwrap();
        let program = compile(&p, dir.path()).unwrap().program;
        let names = allowed_without_args(&p);
        for hot in [
            "read",
            "write",
            "futex",
            "getpid",
            "getppid",
            "clock_gettime",
            "openat",
            "close",
            "epoll_wait",
            "sched_yield",
            "nanosleep",
            "mmap",
            "fchmodat2",
        ] {
            assert!(names.iter().any(|n| n == hot), "{hot} not allowed");
        }
        let arg_sets = [
            [0; 6],
            [u64::MAX; 6],
            [2, 1, 0, 0, 0, 0],
            [40, 0x1000, 7, 1 << 33, 3, 9],
        ];
        let mut checked = 0;
        for (token, arch, offset) in abis_of(&native_set()) {
            for name in &names {
                let Some(nr) = syscall_number(name, arch, offset) else {
                    continue;
                };
                for args in arg_sets {
                    let r = run(&program, token, nr, args);
                    assert_eq!(r.ret, RET_ALLOW, "{arch:?} {name}");
                    assert!(r.constant, "{arch:?} {name} depends on more than nr/arch");
                }
                checked += 1;
            }
        }
        assert!(checked > 500, "{checked}");
        // The interpreter tells the two apart: socket's allow depends on
        // its family, and an allow-all filter is constant everywhere.
        let socket = run(&program, X86_64, 41, [2, 1, 0, 0, 0, 0]);
        assert!(socket.ret == RET_ALLOW && !socket.constant);
        let mut all = profile_with(LinuxSeccompAction::ScmpActAllow, vec![]);
        all.set_architectures(Some(native_set()));
        let allow_all = without_tail(&all);
        for nr in 0..470 {
            assert!(run(&allow_all, X86_64, nr, [0; 6]).constant);
        }
    }

    /// FNV-1a of the programs compiled for two fixed profiles, one per
    /// kind of default: with [`FILTER_FORMAT`], so a change to what
    /// [`compile`] makes of a profile cannot keep the old cache key.
    #[test]
    fn the_program_format_is_pinned() {
        let lib = libseccomp::ScmpVersion::current().unwrap();
        if (lib.major, lib.minor, lib.micro) != (2, 5, 4) {
            return; // the pin is for the libseccomp moat is tested with
        }
        let dir = tempfile::tempdir().unwrap();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for default in [
            LinuxSeccompAction::ScmpActErrno,
            LinuxSeccompAction::ScmpActAllow,
        ] {
            let mut p = docker_like();
            p.set_default_action(default);
            p.set_architectures(Some(vec![
                Arch::ScmpArchX86_64,
                Arch::ScmpArchX86,
                Arch::ScmpArchX32,
            ]));
            for b in compile(&hardened(p), dir.path()).unwrap().program {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        assert_eq!(
            (FILTER_FORMAT, format!("{hash:016x}")),
            ("tail-2", "6a69e7fa274646d0".to_string()),
            "the compiled program changed: bump FILTER_FORMAT, then pin the new hash"
        );
    }

    #[test]
    fn the_guard_denies_every_always_denied_number_and_nothing_else() {
        let mut notify = docker_like();
        notify.set_default_action(LinuxSeccompAction::ScmpActAllow);
        notify.set_syscalls(Some(vec![LinuxSyscallBuilder::default()
            .names(vec!["getpid".to_string()])
            .action(LinuxSeccompAction::ScmpActNotify)
            .build()
            .unwrap()]));
        assert!(needs_always_denied_guard(&notify));
        let guard = always_denied_guard(&notify).unwrap();
        for (token, arch, offset) in abis_of(&native_set()) {
            let denied: Vec<u32> = crate::seccomp::ALWAYS_DENIED
                .iter()
                .filter_map(|n| denied_number(n, arch, offset))
                .collect();
            assert!(denied.contains(&(unified("open_tree_attr") + offset)));
            for nr in (0..600).map(|n| n + offset) {
                let r = run(&guard.program, token, nr, [u64::MAX; 6]);
                let want = if denied.contains(&nr) {
                    RET_EPERM
                } else {
                    RET_ALLOW
                };
                assert_eq!(r.ret, want, "{arch:?} {nr:#x}");
                assert!(r.constant, "{arch:?} {nr:#x}");
            }
        }
        // A learning run's profile notifies the always-denied calls to
        // count them: no guard there.
        let mut learning = notify.clone();
        learning.set_syscalls(Some(vec![LinuxSyscallBuilder::default()
            .names(vec!["bpf".to_string(), "open_tree_attr".to_string()])
            .action(LinuxSeccompAction::ScmpActNotify)
            .build()
            .unwrap()]));
        assert!(!needs_always_denied_guard(&learning));
        // A denying default answers what no rule names.
        let mut denying = notify.clone();
        denying.set_default_action(LinuxSeccompAction::ScmpActErrno);
        assert!(!needs_always_denied_guard(&denying));
        // Loaded for real: EPERM by number, the rest reaches the kernel.
        let guard = always_denied_guard(&notify).unwrap();
        assert_eq!(
            under_filter(&guard, || i32::from(
                errno_of(467) == libc::EPERM
                    && errno_of(425) == libc::EPERM
                    && errno_of(libc::SYS_bpf) == libc::EPERM
            )),
            1
        );
        assert_eq!(
            under_filter(&guard, || {
                let e = errno_of(452);
                // SAFETY: getppid has no preconditions.
                i32::from(e != libc::EPERM && e != libc::ENOSYS && unsafe { libc::getppid() } > 0)
            }),
            1
        );
    }
}
