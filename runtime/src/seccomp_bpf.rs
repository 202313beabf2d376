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

/// Builds the libseccomp filter for an OCI seccomp section (OCI argument
/// semantics, not libcontainer's swapped MASKED_EQ).
fn build_context(seccomp: &LinuxSeccomp) -> Result<ScmpFilterContext, BpfError> {
    let default = to_action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default)?;
    for arch in seccomp.architectures().iter().flatten() {
        ctx.add_arch(to_arch(*arch))?;
    }
    // moat sets no_new_privs itself (the spec always has it); the filter
    // must not do it behind the spec's back.
    ctx.set_ctl_nnp(false)?;
    for rule in seccomp.syscalls().iter().flatten() {
        let action = to_action(rule.action(), rule.errno_ret())?;
        if action == default {
            // libseccomp refuses a rule that repeats the default action.
            continue;
        }
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
            // A name this libseccomp does not know is a syscall this kernel
            // generation lacks; there is nothing to allow or deny.
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                tracing::debug!(name, "seccomp: unknown syscall name skipped");
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
    Ok(ctx)
}

/// Compiles the profile into a BPF program (no cache).
pub fn compile(seccomp: &LinuxSeccomp, scratch_dir: &Path) -> Result<CompiledFilter, BpfError> {
    let ctx = build_context(seccomp)?;
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
    Ok(CompiledFilter {
        program,
        flags: filter_flags(seccomp),
    })
}

fn check_program(program: &[u8]) -> Result<(), BpfError> {
    // BPF_MAXINSNS is 4096.
    if program.is_empty()
        || !program.len().is_multiple_of(BPF_INSN_LEN)
        || program.len() > 4096 * BPF_INSN_LEN
    {
        return Err(BpfError::Malformed(program.len()));
    }
    Ok(())
}

/// The cache key: the profile, libseccomp's version, moat's version.
pub fn cache_key(seccomp: &LinuxSeccomp) -> String {
    let profile = serde_json::to_vec(seccomp).unwrap_or_default();
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    // FNV-1a over the three parts; collisions only matter against a
    // deliberate attacker, who would need write access to /run/moat.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        &profile[..],
        lib.as_bytes(),
        env!("CARGO_PKG_VERSION").as_bytes(),
    ] {
        for b in part.iter().chain(std::iter::once(&0xffu8)) {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}-{}", profile.len())
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
    let file = cache_dir.join(format!("{}.bpf", cache_key(seccomp)));
    if let Ok(program) = fs::read(&file) {
        if check_program(&program).is_ok() {
            return Ok(CompiledFilter {
                program,
                flags: filter_flags(seccomp),
            });
        }
        tracing::warn!(file = %file.display(), "malformed seccomp cache entry; rebuilding");
    }
    let compiled = compile(seccomp, cache_dir)?;
    let tmp = cache_dir.join(format!(".{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&compiled.program)?;
        fs::rename(&tmp, &file)
    };
    if let Err(e) = write() {
        // A cache that cannot be written only costs time.
        let _ = fs::remove_file(&tmp);
        tracing::warn!(file = %file.display(), error = %e, "cannot store compiled seccomp filter");
    }
    Ok(compiled)
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

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
}
