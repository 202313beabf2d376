//! What an exec'd process needs that the container's init gets from
//! libcontainer, done inside the container right before the workload runs:
//!
//! - its working directory resolved inside the container's root only
//!   (T15, the CVE-2024-21626 class; red-team pass 5 G9): a `cwd` such as
//!   `/dev/fd/13` (a symlink to a magic link) named a directory descriptor
//!   moat held at chdir time, a procfs of the host's pid namespace;
//! - the init's LSM confinement (T38; red-team pass 5 G10): the AppArmor
//!   profile and SELinux label the init runs under, so `docker exec` /
//!   `kubectl exec` processes are not unconfined next to a confined init.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use oci_spec::runtime::{Process, Spec};

use crate::refusal::{Refusal, RefusalRule};

/// Changes into `cwd` as the container sees it: resolved from the
/// process's root (the container's, after joining its mount namespace)
/// with every symlink kept inside that root and no magic link followed
/// (`/proc/self/fd/N`, `/proc/<pid>/cwd`, …: the links that name a
/// descriptor or another process's directory). Then, as libcontainer does
/// for the init, the kernel must still name the result from this root:
/// a directory outside it reads back as "(unreachable)…" or ENOENT.
pub fn enter_cwd(cwd: &Path) -> Result<()> {
    let failed = |e: nix::errno::Errno| {
        anyhow!(
            "chdir to cwd ({:?}) set in config.json failed: {}",
            cwd.display().to_string(),
            crate::runc_contract::errno_text(e)
        )
    };
    let root = open_dir(libc::AT_FDCWD, Path::new("/"), ResolveFlag::empty()).map_err(failed)?;
    let dir = open_dir(
        root.as_raw_fd(),
        cwd,
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(failed)?;
    nix::unistd::fchdir(dir.as_raw_fd()).map_err(failed)?;
    verify_cwd_reachable(cwd)
}

fn open_dir(at: i32, path: &Path, resolve: ResolveFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(resolve);
    let fd = openat2(at, path, how)?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The raw `getcwd` answer: the kernel prefixes a directory that is not
/// below the caller's root with "(unreachable)" (glibc turns that into
/// ENOENT; the raw system call shows it).
fn verify_cwd_reachable(cwd: &Path) -> Result<()> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: getcwd writes at most `buf.len()` bytes into our buffer.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n <= 0 {
        bail!(
            "cwd {:?} is outside the container's root (getcwd: {})",
            cwd.display().to_string(),
            std::io::Error::last_os_error()
        );
    }
    if cwd_is_reachable(&buf[..n as usize]) {
        Ok(())
    } else {
        bail!(
            "cwd {:?} is outside the container's root",
            cwd.display().to_string()
        )
    }
}

/// The raw system call's answer (NUL included) names a directory below
/// the caller's root: absolute, not "(unreachable)/…".
fn cwd_is_reachable(raw: &[u8]) -> bool {
    raw.first() == Some(&b'/')
}

/// Whether this host can apply each LSM's labels (gathered at the edge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LsmHost {
    pub apparmor: bool,
    pub selinux: bool,
}

impl LsmHost {
    pub fn probe() -> Self {
        Self {
            apparmor: libcontainer::apparmor::is_enabled().unwrap_or(false),
            selinux: Path::new("/sys/fs/selinux/enforce").exists(),
        }
    }
}

/// The labels an exec'd process runs under: the container's (its init's,
/// from the hardened spec). A label the caller asks for (`--process`'s
/// `apparmorProfile`/`selinuxLabel`, `--apparmor`, `--process-label`) is
/// taken only where the container has none (it can only confine more);
/// a different one would run the process under other confinement than
/// the init's, and a label this host cannot apply would run it unconfined:
/// both are refused (rule `exec-confinement`).
pub fn choose_label(
    lsm: &str,
    container: Option<&str>,
    requested: Option<&str>,
    host_applies: bool,
) -> Result<Option<String>, Refusal> {
    let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    let chosen = match (nonempty(container), nonempty(requested)) {
        (Some(c), Some(r)) if c != r => {
            return Err(Refusal::new(
                RefusalRule::ExecConfinement,
                format!(
                    "exec asks for {lsm} label {r:?}, but the container runs under {c:?}: an exec'd process gets the container's confinement"
                ),
                None,
            ))
        }
        (Some(c), _) => Some(c),
        (None, r) => r,
    };
    if chosen.is_some() && !host_applies {
        return Err(Refusal::new(
            RefusalRule::ExecConfinement,
            format!(
                "the process has {lsm} label {:?}, but {lsm} is not enabled on this host, so moat cannot apply it",
                chosen.as_deref().unwrap_or_default()
            ),
            None,
        ));
    }
    Ok(chosen)
}

/// Sets the exec'd process's labels to what it runs under (see
/// `choose_label`); `apparmor` and `process_label` are exec's flags.
pub fn confine_exec_labels(
    process: &mut Process,
    spec: &Spec,
    apparmor: Option<&str>,
    process_label: Option<&str>,
    host: LsmHost,
) -> Result<(), Refusal> {
    let init = spec.process().as_ref();
    let profile = choose_label(
        "AppArmor",
        init.and_then(|p| p.apparmor_profile().as_deref()),
        apparmor.or(process.apparmor_profile().as_deref()),
        host.apparmor,
    )?;
    let asked = process_label.or(process.selinux_label().as_deref());
    if let Some(asked) = asked {
        crate::harden::selinux_label::check_selinux_label("process.selinuxLabel", asked)?;
    }
    let label = choose_label(
        "SELinux",
        init.and_then(|p| p.selinux_label().as_deref()),
        asked,
        host.selinux,
    )?;
    process.set_apparmor_profile(profile);
    process.set_selinux_label(label);
    Ok(())
}

/// In the workload, inside the container: arms the labels for the coming
/// execve, through a procfs handle the container's mounts cannot steer.
pub fn apply_exec_labels(process: &Process) -> Result<()> {
    if let Some(profile) = process.apparmor_profile() {
        libcontainer::apparmor::apply_profile(profile)
            .map_err(|e| anyhow!("cannot apply AppArmor profile {profile:?}: {e}"))?;
    }
    if let Some(label) = process.selinux_label() {
        use pathrs::flags::OpenFlags;
        use pathrs::procfs::{ProcfsBase, ProcfsHandle};
        ProcfsHandle::new()
            .and_then(|h| {
                h.open(
                    ProcfsBase::ProcThreadSelf,
                    "attr/exec",
                    OpenFlags::O_WRONLY | OpenFlags::O_CLOEXEC,
                )
            })
            .map_err(|e| anyhow!("{e}"))
            .and_then(|mut f| f.write_all(label.as_bytes()).map_err(Into::into))
            .with_context(|| format!("cannot apply SELinux label {label:?}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_cwd_is_absolute_only() {
        assert!(cwd_is_reachable(b"/\0"));
        assert!(cwd_is_reachable(b"/srv/app\0"));
        assert!(!cwd_is_reachable(b"(unreachable)/proc\0"));
        assert!(!cwd_is_reachable(b""));
    }

    #[test]
    fn exec_gets_the_containers_label() {
        let c = choose_label("AppArmor", Some("docker-default"), None, true).unwrap();
        assert_eq!(c.as_deref(), Some("docker-default"));
        let same = choose_label("AppArmor", Some("p"), Some("p"), true).unwrap();
        assert_eq!(same.as_deref(), Some("p"));
        // Nothing asked, nothing to apply: fine on any host.
        assert_eq!(choose_label("SELinux", None, None, false).unwrap(), None);
        assert_eq!(
            choose_label("SELinux", Some(""), Some(""), false).unwrap(),
            None
        );
    }

    #[test]
    fn exec_may_only_add_confinement() {
        let r = choose_label("AppArmor", None, Some("extra"), true).unwrap();
        assert_eq!(r.as_deref(), Some("extra"));
        for asked in ["unconfined", "other"] {
            let e =
                choose_label("AppArmor", Some("docker-default"), Some(asked), true).unwrap_err();
            assert_eq!(e.rule, RefusalRule::ExecConfinement);
            assert!(e.detail.contains(asked), "{e}");
        }
    }

    #[test]
    fn a_label_the_host_cannot_apply_is_refused() {
        let e = choose_label("AppArmor", Some("docker-default"), None, false).unwrap_err();
        assert_eq!(e.rule, RefusalRule::ExecConfinement);
        let e = choose_label(
            "SELinux",
            None,
            Some("system_u:system_r:container_t:s0"),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not enabled on this host"), "{e}");
    }

    #[test]
    fn flags_override_the_process_file_and_land_in_the_process() {
        let mut spec = Spec::default();
        spec.set_process(Some(Process::default()));
        let mut p = Process::default();
        p.set_apparmor_profile(Some("from-file".into()));
        let host = LsmHost {
            apparmor: true,
            selinux: true,
        };
        confine_exec_labels(&mut p, &spec, Some("from-flag"), None, host).unwrap();
        assert_eq!(p.apparmor_profile().as_deref(), Some("from-flag"));
        assert_eq!(p.selinux_label().as_deref(), None);
        // The container's own label wins over the file's when both agree.
        let mut init = Process::default();
        init.set_selinux_label(Some("u:r:t:s0".into()));
        spec.set_process(Some(init));
        let mut p = Process::default();
        confine_exec_labels(&mut p, &spec, None, None, host).unwrap();
        assert_eq!(p.selinux_label().as_deref(), Some("u:r:t:s0"));
    }
}
