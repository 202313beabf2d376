//! A user namespace an engine made and pinned for a pod (T3).
//!
//! containerd 2 runs a `hostUsers: false` pod in a user namespace it makes
//! itself: it writes the kubelet's uid/gid mapping into it, bind-mounts it
//! at `<state>/sandboxes/<id>/pinned-namespaces/user` and names that path
//! (with the mapping) in the sandbox's spec. moat joins such a namespace
//! only when it is as safe as a range of its own pool, judged on what the
//! namespace *is*, never on what the spec says about it:
//!
//! - the path is opened once (`O_PATH`, so a FIFO cannot block) and then
//!   reopened through that descriptor; everything below reads this one
//!   descriptor, and the container joins exactly it (`/proc/self/fd/N`);
//! - it is a user namespace (`NS_GET_NSTYPE`), not the host's, a direct
//!   child of the host's (`NS_GET_PARENT`: a namespace nested in another
//!   container's would be ruled by that container's root), and owned by
//!   host root (`NS_GET_OWNER_UID`: the owner holds every capability in
//!   it, so a namespace a host user made stays that user's);
//! - its real uid_map and gid_map are read from a short-lived child moat
//!   forks into it (a namespace has no map files of its own; a process's
//!   `/proc/<pid>/uid_map` shows its namespace's), and a mapping is written
//!   once and never changes, so what is read is what the container gets;
//! - that mapping must equal the one the spec names, and passes the rule of
//!   engine-given mappings (`moat::harden::engine_id_range`: one range from
//!   container id 0, the same for uids and gids, no host id below the
//!   floor, no overlap with a range another container holds); create then
//!   claims it in the pool like any engine range, and the sandbox's
//!   containers join it as the pod's (`moat::pod`).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder, Spec};

use crate::harden::IdRange;

use crate::refusal::{Refusal, RefusalRule};

/// `ioctl(2)` requests of nsfs (linux/nsfs.h).
const NS_GET_PARENT: libc::c_ulong = 0xb702;
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// An engine's user namespace, open and judged; the container joins it.
#[derive(Debug)]
pub struct EngineUserNamespace {
    file: File,
    /// Its uid mapping, as the kernel has it.
    pub uid_map: Vec<LinuxIdMapping>,
    /// Its gid mapping, as the kernel has it.
    pub gid_map: Vec<LinuxIdMapping>,
}

impl EngineUserNamespace {
    /// A name of the pinned namespace that libcontainer's forked children
    /// (which inherit moat's descriptors) open as this very namespace.
    pub fn handle(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

fn refuse(path: &Path, why: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        RefusalRule::UserNamespacePath,
        format!("user namespace path {}: {why}", path.display()),
        None,
    )
}

fn identity(file: &File) -> std::io::Result<(u64, u64)> {
    file.metadata().map(|m| (m.dev(), m.ino()))
}

impl EngineUserNamespace {
    /// The host range the container runs with: the namespace's own
    /// mapping, which must be the one `spec` names (if it names one), judged
    /// by the rule of engine-given mappings against the ranges other
    /// containers hold now (see `moat::pod::engine_range`).
    pub fn judged_range(
        &self,
        spec: &Spec,
        policy: &crate::policy::Policy,
        origin: crate::engine_bundle::Origin,
        path: &Path,
    ) -> Result<IdRange, Refusal> {
        let linux = spec.linux().clone().unwrap_or_default();
        for (field, named, real) in [
            ("linux.uidMappings", linux.uid_mappings(), &self.uid_map),
            ("linux.gidMappings", linux.gid_mappings(), &self.gid_map),
        ] {
            if named.as_ref().is_some_and(|n| !n.is_empty() && n != real) {
                return Err(Refusal::new(
                    RefusalRule::UserNamespaceMapping,
                    format!(
                        "{field} {} is not the mapping of user namespace {} ({})",
                        map_text(named.as_deref().unwrap_or_default()),
                        path.display(),
                        map_text(real)
                    ),
                    None,
                ));
            }
        }
        let mut real = spec.clone();
        let mut l = linux;
        l.set_uid_mappings(Some(self.uid_map.clone()));
        l.set_gid_mappings(Some(self.gid_map.clone()));
        real.set_linux(Some(l));
        crate::pod::engine_range(&real, policy, origin, None)?.ok_or_else(|| {
            Refusal::new(
                RefusalRule::UserNamespaceMapping,
                format!("user namespace {} maps no ids", path.display()),
                None,
            )
        })
    }
}

fn map_text(m: &[LinuxIdMapping]) -> String {
    m.iter()
        .map(|m| format!("{}:{}:{}", m.container_id(), m.host_id(), m.size()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Opens the user namespace at `path` once and judges it (see the module
/// doc); its mapping is read but judged by the caller, with the rule of
/// engine-given mappings.
pub fn open(path: &Path) -> Result<EngineUserNamespace, Refusal> {
    let named = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| refuse(path, format_args!("cannot be opened ({e})")))?;
    let md = named
        .metadata()
        .map_err(|e| refuse(path, format_args!("cannot stat it ({e})")))?;
    if !crate::pinned::is_nsfs(&md) {
        return Err(refuse(path, "not a namespace file"));
    }
    // An O_PATH descriptor cannot be joined nor asked; reopened through
    // itself, it is the same inode whatever happens to the path.
    let file = File::open(format!("/proc/self/fd/{}", named.as_raw_fd()))
        .map_err(|e| refuse(path, format_args!("cannot be opened ({e})")))?;
    drop(named);
    if identity(&file).ok() != Some((md.dev(), md.ino())) {
        return Err(refuse(path, "changed while moat opened it"));
    }
    // SAFETY: an ioctl without argument on a descriptor we own.
    let nstype = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if nstype != libc::CLONE_NEWUSER {
        return Err(refuse(path, "not a user namespace"));
    }
    let own = File::open("/proc/self/ns/user")
        .and_then(|f| identity(&f))
        .map_err(|e| {
            refuse(
                path,
                format_args!("cannot read moat's own user namespace ({e})"),
            )
        })?;
    if identity(&file).ok() == Some(own) {
        return Err(refuse(path, "it is the host's user namespace"));
    }
    // SAFETY: NS_GET_PARENT takes no argument and returns a new descriptor
    // (or -1), which we own from here.
    let parent = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_PARENT as _) };
    if parent < 0 {
        return Err(refuse(
            path,
            "its parent cannot be read: it is not a child of the host's user namespace",
        ));
    }
    // SAFETY: a new descriptor nothing else owns.
    let parent = File::from(unsafe { OwnedFd::from_raw_fd(parent) });
    if identity(&parent).ok() != Some(own) {
        return Err(refuse(
            path,
            "it is nested in another user namespace, whose root would rule the container",
        ));
    }
    let mut owner: libc::uid_t = libc::uid_t::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer given.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            NS_GET_OWNER_UID as _,
            &mut owner as *mut libc::uid_t,
        )
    };
    if rc < 0 {
        return Err(refuse(path, "its owner cannot be read"));
    }
    if owner != 0 {
        return Err(refuse(
            path,
            format_args!("it is owned by host uid {owner}, who would hold every capability in it; moat joins only one host root made"),
        ));
    }
    let (uid_text, gid_text) = read_maps(&file, (md.dev(), md.ino()))
        .map_err(|e| refuse(path, format_args!("cannot read its id mapping ({e})")))?;
    let uid_map = parse_map(&uid_text).ok_or_else(|| refuse(path, "unreadable uid_map"))?;
    let gid_map = parse_map(&gid_text).ok_or_else(|| refuse(path, "unreadable gid_map"))?;
    if uid_map.is_empty() || gid_map.is_empty() {
        return Err(refuse(path, "it has no uid or gid mapping yet"));
    }
    Ok(EngineUserNamespace {
        file,
        uid_map,
        gid_map,
    })
}

/// `uid_map` text ("inside outside count" lines) as mappings.
pub fn parse_map(text: &str) -> Option<Vec<LinuxIdMapping>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<u32> = l
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            match v.as_slice() {
                [c, h, s] => LinuxIdMappingBuilder::default()
                    .container_id(*c)
                    .host_id(*h)
                    .size(*s)
                    .build()
                    .ok(),
                _ => None,
            }
        })
        .collect()
}

/// The uid_map and gid_map of the user namespace `ns` (identity `id`), as
/// seen from moat's (the host's) namespace: a forked child joins it and
/// waits; moat reads the child's map files and proves, by the child's
/// `ns/user`, that they are that namespace's; then the child is ended.
fn read_maps(ns: &File, id: (u64, u64)) -> std::io::Result<(String, String)> {
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (hold_r, hold_w) = nix::unistd::pipe()?;
    // SAFETY: the child calls only async-signal-safe functions (setns,
    // write, read, _exit) on descriptors it inherited, then exits.
    let fork = unsafe { nix::unistd::fork() }?;
    match fork {
        nix::unistd::ForkResult::Child => {
            // SAFETY: raw syscalls on inherited descriptors; no allocation.
            unsafe {
                // Its own copy of the hold pipe's write end would keep the
                // read below from ever seeing moat close it.
                libc::close(hold_w.as_raw_fd());
                let ok: u8 = if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) == 0 {
                    1
                } else {
                    0
                };
                libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
                let mut b = 0u8;
                libc::read(hold_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            drop(hold_r);
            let result = (|| {
                let mut ok = [0u8; 1];
                File::from(ready_r).read_exact(&mut ok)?;
                if ok[0] != 1 {
                    return Err(std::io::Error::other("setns into it failed"));
                }
                let proc_dir = format!("/proc/{}", child.as_raw());
                let joined =
                    File::open(format!("{proc_dir}/ns/user")).and_then(|f| identity(&f))?;
                if joined != id {
                    return Err(std::io::Error::other("the reader is not in it"));
                }
                Ok((
                    std::fs::read_to_string(format!("{proc_dir}/uid_map"))?,
                    std::fs::read_to_string(format!("{proc_dir}/gid_map"))?,
                ))
            })();
            // Closing the hold pipe lets the child exit; it is our own
            // unreaped child until waited for, so its pid names it alone.
            drop(hold_w);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_map;

    #[test]
    fn maps_parse_as_the_kernel_writes_them() {
        let m = parse_map("         0 1073741824      65536\n").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].container_id(), m[0].host_id(), m[0].size()),
            (0, 1 << 30, 65536)
        );
        assert!(parse_map("").unwrap().is_empty());
        assert!(parse_map("0 1\n").is_none());
        assert!(parse_map("0 x 1\n").is_none());
    }
}
