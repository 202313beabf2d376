//! Gathers the [`HostFacts`] the pure hardening needs, and checks the
//! rootfs for hostile mount destinations. All I/O of `create` before the
//! first side effect happens here.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::harden::{is_bind, HostFacts, IdRange};
use crate::refusal::Refusal;

/// The host's own namespace file for a type (PID 1's).
fn host_ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "/proc/1/ns/mnt",
        LinuxNamespaceType::Cgroup => "/proc/1/ns/cgroup",
        LinuxNamespaceType::Uts => "/proc/1/ns/uts",
        LinuxNamespaceType::Ipc => "/proc/1/ns/ipc",
        LinuxNamespaceType::User => "/proc/1/ns/user",
        LinuxNamespaceType::Pid => "/proc/1/ns/pid",
        LinuxNamespaceType::Network => "/proc/1/ns/net",
        LinuxNamespaceType::Time => "/proc/1/ns/time",
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// moat's own namespace file for a type. moat runs in the host's
/// namespaces (engines and their shims do), and unlike PID 1's it is always
/// readable: some hosts deny even root access to /proc/1/ns.
fn own_ns_file(t: LinuxNamespaceType) -> String {
    host_ns_file(t).replace("/proc/1/", "/proc/self/")
}

/// Looks at the host for everything `harden` needs to decide. A namespace
/// path that cannot be examined is treated as the host's (fail closed).
pub fn gather(spec: &Spec, id_range: Option<IdRange>) -> HostFacts {
    let mut facts = HostFacts {
        id_range,
        ..Default::default()
    };
    if let Some(namespaces) = spec.linux().as_ref().and_then(|l| l.namespaces().clone()) {
        for ns in namespaces {
            if let Some(path) = ns.path() {
                let unreadable = fs::metadata(path).is_err();
                if unreadable
                    || same_file(path, Path::new(host_ns_file(ns.typ())))
                    || same_file(path, Path::new(&own_ns_file(ns.typ())))
                {
                    facts.host_namespace_paths.push(ns.typ());
                }
            }
        }
    }
    let mut resolved = HashMap::new();
    for m in spec.mounts().as_ref().into_iter().flatten() {
        if !is_bind(m) {
            continue;
        }
        if let Some(src) = m.source() {
            if let Ok(real) = fs::canonicalize(src) {
                resolved.insert(src.clone(), real);
            }
        }
    }
    facts.resolved_sources = resolved;
    facts
}

/// Refuses mount destinations that traverse a symlink inside the rootfs
/// which climbs out of it (`mnt -> ../../../etc`). Such a link has no
/// legitimate use in an image and is the shape of CVE-2021-30465-style
/// attacks. Absolute symlinks are left alone: libcontainer resolves
/// destinations inside the rootfs, where they stay.
pub fn check_mount_destinations(spec: &Spec, rootfs: &Path) -> Result<(), Refusal> {
    for m in spec.mounts().as_ref().into_iter().flatten() {
        let dest = m.destination();
        let mut inside = PathBuf::new(); // path relative to rootfs
        let mut hops = 0;
        let mut queue: Vec<PathBuf> = dest
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(PathBuf::from(s)),
                Component::ParentDir => Some(PathBuf::from("..")),
                _ => None,
            })
            .rev()
            .collect();
        while let Some(part) = queue.pop() {
            if part.as_os_str() == ".." {
                if !inside.pop() {
                    return Err(escape(dest, "its path climbs above the container root"));
                }
                continue;
            }
            let candidate = inside.join(&part);
            let host = rootfs.join(&candidate);
            match fs::symlink_metadata(&host) {
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(escape(dest, "too many levels of symbolic links"));
                    }
                    let target = fs::read_link(&host).unwrap_or_default();
                    if target.is_absolute() {
                        // Resolved inside the rootfs, as the kernel would
                        // from within the container.
                        inside = PathBuf::new();
                    }
                    let mut depth = inside.components().count() as i64;
                    for c in target.components() {
                        match c {
                            Component::ParentDir => depth -= 1,
                            Component::Normal(_) => depth += 1,
                            _ => {}
                        }
                        if depth < 0 && !target.is_absolute() {
                            return Err(escape(
                                dest,
                                &format!(
                                    "{} is a symlink to {} which points outside the rootfs",
                                    Path::new("/").join(&candidate).display(),
                                    target.display()
                                ),
                            ));
                        }
                    }
                    let parts: Vec<PathBuf> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(s) => Some(PathBuf::from(s)),
                            Component::ParentDir => Some(PathBuf::from("..")),
                            _ => None,
                        })
                        .collect();
                    queue.extend(parts.into_iter().rev());
                }
                _ => inside = candidate,
            }
        }
    }
    Ok(())
}

fn escape(dest: &Path, why: &str) -> Refusal {
    Refusal::new(
        "symlink-mount-destination",
        format!("mount destination {}: {why}", dest.display()),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Mount, Spec};
    use std::os::unix::fs::symlink;

    fn spec_with_dest(dest: &str) -> Spec {
        let mut spec = Spec::default();
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest));
        m.set_typ(Some("tmpfs".into()));
        spec.set_mounts(Some(vec![m]));
        spec
    }

    #[test]
    fn climbing_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        fs::create_dir_all(root.join("var")).unwrap();
        symlink("../../../../etc", root.join("var/evil")).unwrap();
        let err = check_mount_destinations(&spec_with_dest("/var/evil/x"), &root).unwrap_err();
        assert_eq!(err.rule, "symlink-mount-destination");
        assert!(err.detail.contains("/var/evil"), "{err}");
    }

    #[test]
    fn absolute_and_inner_symlinks_are_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        fs::create_dir_all(root.join("run/secrets")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        symlink("/run", root.join("var/run")).unwrap();
        symlink("../run", root.join("var/run2")).unwrap();
        for d in ["/var/run/secrets", "/var/run2/secrets", "/tmp", "/dev/shm"] {
            check_mount_destinations(&spec_with_dest(d), &root).unwrap();
        }
    }

    #[test]
    fn dotdot_in_destination_is_refused_above_root() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check_mount_destinations(&spec_with_dest("/../../etc"), tmp.path()).is_err());
    }

    #[test]
    fn symlink_loop_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        symlink("b", tmp.path().join("a")).unwrap();
        symlink("a", tmp.path().join("b")).unwrap();
        assert!(check_mount_destinations(&spec_with_dest("/a/x"), tmp.path()).is_err());
    }
}
