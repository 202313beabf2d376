//! Did a container engine make this bundle, for this container id?
//!
//! A raw-config tenant writes config.json and picks the container id it
//! passes to `moat create`/`run`, so neither says who made the bundle: a
//! tenant that names its container after docker container V, or writes a
//! victim pod's uid into its annotations, must not get V's engine files,
//! network interface, cgroup or volumes (red-team R3, R4, R5, R7, R12,
//! R13). What a tenant cannot write is where the bundle really lies:
//! containerd (docker's `moby` namespace, the CRI's `k8s.io`) makes every
//! task's bundle at `<state>/io.containerd.runtime.v2.task/<namespace>/<id>`,
//! with directories only host root can create. [`EngineBundle`] is that
//! fact, gathered once at the edge ([`gather`], from the real path of the
//! bundle fd precheck opened) and used by every rule of the pure hardening
//! that grants an engine's privileges.
//!
//! Bounding the task root: containerd's state directory is `/run/containerd`
//! by default, but any containerd may be configured elsewhere (the test
//! harness's private containerds use `/tmp/moat-cri.XXXX/state`). Instead of
//! a list of state directories (which every private containerd would have to
//! be added to), the proof is who could have made the path: every directory
//! from the task directory down to the bundle is owned by root and writable
//! by no one else, and every directory above it is root-owned and either
//! writable by no one else or sticky (`/tmp`: there a non-root user can make
//! entries of its own, never a root-owned one, and cannot rename root's).
//! So only host root (an engine, or an operator's service) can have made a
//! bundle directory that passes. A raw tenant's own bundle fails: either the
//! tenant made a directory on the way (not root-owned), or the directory is
//! writable by others. So does a tenant's symlink to an engine's task
//! directory: the `--bundle` path must reach the bundle through root's
//! symlinks only (red-team pass 4 F5). Residual: a root service that creates directories at
//! paths a tenant names could be made to build such a chain; moat trusts
//! host root's services not to do that.

use std::path::{Component, Path};

/// The directory of containerd's runtime v2 tasks under its state directory.
pub const TASK_DIR: &str = "io.containerd.runtime.v2.task";
/// containerd's namespace for docker's containers.
pub const DOCKER_NAMESPACE: &str = "moby";
/// containerd's namespace for the CRI's (Kubernetes') containers.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A bundle an engine made for the container being created: its real path
/// is `<state>/io.containerd.runtime.v2.task/<namespace>/<id>`, `<id>` is the
/// create id, and only host root could have made the directories.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineBundle {
    /// containerd's namespace: `moby` (docker), `k8s.io` (CRI), or another.
    pub namespace: String,
    /// The container id, equal to the create id.
    pub id: String,
}

impl EngineBundle {
    /// Made by docker (through containerd's `moby` namespace).
    pub fn is_docker(&self) -> bool {
        self.namespace == DOCKER_NAMESPACE
    }

    /// Made by containerd's CRI (Kubernetes' `k8s.io` namespace).
    pub fn is_cri(&self) -> bool {
        self.namespace == CRI_NAMESPACE
    }
}

/// Who made the bundle, as the hardening sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// Not known: `explain` judges a spec alone, with no create id.
    Unknown,
    /// A raw bundle: not made by an engine for this id.
    Raw,
    /// Made by an engine for this id.
    Engine(&'a EngineBundle),
}

impl<'a> Origin<'a> {
    /// The origin a create (with `container_id`) or `explain` (`None`) sees.
    pub fn of(container_id: Option<&str>, engine_bundle: Option<&'a EngineBundle>) -> Self {
        match (container_id, engine_bundle) {
            (None, _) => Origin::Unknown,
            (Some(_), None) => Origin::Raw,
            (Some(_), Some(b)) => Origin::Engine(b),
        }
    }

    /// A bundle an engine made (or `explain`, which cannot tell).
    pub fn engine_or_unknown(&self) -> bool {
        !matches!(self, Origin::Raw)
    }

    /// How a refusal names the bundle.
    pub fn describe(&self) -> String {
        match self {
            Origin::Unknown => "a bundle of unknown origin".into(),
            Origin::Raw => format!(
                "a raw bundle (not an engine's task directory <state>/{TASK_DIR}/<namespace>/<this id>, made by root)"
            ),
            Origin::Engine(b) => format!("a bundle of containerd namespace {}", b.namespace),
        }
    }
}

/// A directory on the way to the bundle, as the edge saw it (`lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStat {
    pub uid: u32,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub is_dir: bool,
}

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// The pure core: is `real` (the bundle's real, absolute path) an engine's
/// task directory for `id`, with `stat` giving each directory from `/` down
/// (`None`: could not be examined, which fails closed)? `direct`: the path
/// the caller gave (`--bundle`) reached the bundle following no symlink but
/// root's ([`resolve_through_root_links`]). A tenant's symlink to an
/// engine's task directory is not that engine's bundle (red-team pass 4
/// F5): a pipeline that runs `moat create -b <tenant dir>/bundle V` would
/// otherwise give the tenant V's engine privileges (its setkey hook, engine
/// files, cgroup parent) in a container the tenant controls. Root's own
/// links are followed: dockerd's own containerd keeps its state under
/// `/var/run/docker/containerd`, and `/var/run` is root's link to `/run`.
pub fn judge(
    real: &Path,
    id: &str,
    direct: bool,
    stat: impl Fn(&Path) -> Option<DirStat>,
) -> Option<EngineBundle> {
    if !direct {
        return None;
    }
    if !real.is_absolute()
        || real
            .components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return None;
    }
    fn name(p: &Path) -> Option<&str> {
        p.file_name().and_then(|n| n.to_str())
    }
    let namespace_dir = real.parent()?;
    let task_dir = namespace_dir.parent()?;
    if name(real) != Some(id) || name(task_dir) != Some(TASK_DIR) {
        return None;
    }
    let namespace = name(namespace_dir)?.to_string();
    for dir in real.ancestors() {
        let st = stat(dir)?;
        if !st.is_dir || st.uid != 0 {
            return None;
        }
        let writable_by_others = st.mode & GROUP_OR_OTHER_WRITE != 0;
        // From the task directory down nothing but root may write; above
        // it a sticky directory (/tmp) is fine: only root can have made the
        // root-owned directory below it, and only root can rename it.
        let at_or_below_task_dir = dir.starts_with(task_dir);
        if writable_by_others && (at_or_below_task_dir || st.mode & STICKY == 0) {
            return None;
        }
    }
    Some(EngineBundle {
        namespace,
        id: id.to_string(),
    })
}

/// The edge: [`judge`] with each directory `lstat`ed (a symlink on the way
/// is not a directory, so it fails). `real` is the path the kernel gave for
/// the bundle fd precheck opened from `given` (the `--bundle` path); the
/// directories above it cannot be swapped by anyone but root once they are
/// root-owned and not writable by others, which is what is judged.
pub fn gather(given: &Path, real: &Path, id: &str) -> Option<EngineBundle> {
    use std::os::unix::fs::MetadataExt;
    let cwd = std::env::current_dir().ok()?;
    let resolved = resolve_through_root_links(given, &cwd, lstat_entry);
    judge(real, id, resolved.as_deref() == Some(real), |dir| {
        let md = std::fs::symlink_metadata(dir).ok()?;
        Some(DirStat {
            uid: md.uid(),
            mode: md.mode(),
            is_dir: md.file_type().is_dir(),
        })
    })
}

/// One name on the way to the bundle, as `lstat` (and `readlink`) saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    Symlink {
        uid: u32,
        target: std::path::PathBuf,
    },
    Other,
}

/// `lstat` (and `readlink`) of one name, for [`resolve_through_root_links`].
pub fn lstat_entry(p: &Path) -> Option<Entry> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(p).ok()?;
    Some(if md.file_type().is_symlink() {
        Entry::Symlink {
            uid: md.uid(),
            target: std::fs::read_link(p).ok()?,
        }
    } else if md.is_dir() {
        Entry::Dir
    } else {
        Entry::Other
    })
}

/// Most symlinks followed on the way, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// The pure core of the symlink check: resolves `given` (relative to `cwd`
/// when relative) name by name as the kernel would, with `look` giving each
/// entry, but follows only symlinks owned by root: a tenant's link (or one
/// that cannot be examined, or too many) gives `None`. The result is the
/// real path, compared by the caller with the path of the fd it opened.
pub fn resolve_through_root_links(
    given: &Path,
    cwd: &Path,
    look: impl Fn(&Path) -> Option<Entry>,
) -> Option<std::path::PathBuf> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    fn names(p: &Path) -> impl Iterator<Item = OsString> + '_ {
        p.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
    }
    let start = if given.is_absolute() {
        given.to_path_buf()
    } else {
        cwd.join(given)
    };
    let mut todo: VecDeque<OsString> = names(&start).collect();
    let mut cur = std::path::PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        match look(&next)? {
            Entry::Dir => cur = next,
            Entry::Other if todo.is_empty() => cur = next,
            Entry::Other => return None,
            Entry::Symlink { uid, target } => {
                links += 1;
                if uid != 0 || links > MAX_LINKS {
                    return None;
                }
                if target.is_absolute() {
                    cur = std::path::PathBuf::from("/");
                }
                for n in names(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(n);
                }
            }
        }
    }
    Some(cur)
}

/// moat's name for the state root `root` (its canonical path, as
/// `Ctx::root` gives it) in node-wide namespaces: the first 16 hex digits
/// of its SHA-256. A raw tenant has no identity moat can check but the
/// state root it creates under (ids are unique only there, and whoever
/// may use a state root may already delete its containers), so a raw
/// container's cgroup and learned-profile scope are derived from this tag
/// and its id, never from a name the tenant writes (red-team pass 6 R6-1,
/// R6-6). 64 bits: no tenant finds another root path of the same tag.
pub fn state_root_tag(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The annotation moat writes into every hardened config.json with the
/// bundle's origin ([`record_origin`]): `raw`, or `engine/<namespace>`. A
/// tenant cannot write it: an unknown `moat.dev/` key is refused, and moat
/// overwrites it anyway.
pub const ORIGIN_ANNOTATION: &str = "moat.dev/origin";

/// Records `origin` in the hardened spec, for what later reads only the
/// hardened config (metrics and event labels, [`label_annotations`]).
/// `explain` (origin unknown) records nothing.
pub fn record_origin(spec: &mut oci_spec::runtime::Spec, origin: Origin<'_>) {
    let value = match origin {
        Origin::Unknown => return,
        Origin::Raw => "raw".to_string(),
        Origin::Engine(b) => format!("engine/{}", b.namespace),
    };
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(ORIGIN_ANNOTATION.to_string(), value);
    spec.set_annotations(Some(annotations));
}

/// The annotations Kubernetes' names are taken from for metrics and event
/// labels (`moat::resolver_stats::Labels::from_annotations`), given a
/// hardened config's annotations (red-team pass 6 R6-5): only a bundle the
/// CRI made (`engine/k8s.io`, recorded by [`record_origin`]) has pod names
/// its engine wrote; any other bundle's `io.kubernetes.*` annotations are
/// the tenant's own text (a raw tenant reporting as `kube-system/coredns`),
/// so they are dropped and the namespace label says what made the bundle
/// (`raw`, `moby`, another containerd namespace; `unknown` for a config
/// hardened before moat recorded origins).
pub fn label_annotations(
    annotations: &std::collections::HashMap<String, String>,
) -> std::collections::HashMap<String, String> {
    let origin = annotations.get(ORIGIN_ANNOTATION).map(String::as_str);
    if origin == Some(&format!("engine/{CRI_NAMESPACE}")[..]) {
        return annotations.clone();
    }
    let namespace = match origin {
        Some("raw") => "raw",
        Some(o) => o.strip_prefix("engine/").unwrap_or("unknown"),
        None => "unknown",
    };
    let mut labels = std::collections::HashMap::new();
    labels.insert(
        "io.kubernetes.cri.sandbox-namespace".to_string(),
        namespace.to_string(),
    );
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    const DIR: u32 = 0o040000;

    fn tree(entries: &[(&str, u32, u32)]) -> HashMap<PathBuf, DirStat> {
        entries
            .iter()
            .map(|(p, uid, mode)| {
                (
                    PathBuf::from(p),
                    DirStat {
                        uid: *uid,
                        mode: DIR | mode,
                        is_dir: true,
                    },
                )
            })
            .collect()
    }

    fn docker_tree() -> HashMap<PathBuf, DirStat> {
        tree(&[
            ("/", 0, 0o755),
            ("/run", 0, 0o755),
            ("/run/containerd", 0, 0o711),
            ("/run/containerd/io.containerd.runtime.v2.task", 0, 0o711),
            (
                "/run/containerd/io.containerd.runtime.v2.task/moby",
                0,
                0o711,
            ),
            (
                "/run/containerd/io.containerd.runtime.v2.task/moby/abc",
                0,
                0o700,
            ),
        ])
    }

    fn judged(t: &HashMap<PathBuf, DirStat>, real: &str, id: &str) -> Option<EngineBundle> {
        judge(Path::new(real), id, true, |p| t.get(p).copied())
    }

    const DOCKER: &str = "/run/containerd/io.containerd.runtime.v2.task/moby/abc";

    #[test]
    fn an_engine_task_directory_for_this_id_is_an_engine_bundle() {
        let b = judged(&docker_tree(), DOCKER, "abc").unwrap();
        assert!(b.is_docker() && !b.is_cri());
        assert_eq!(b.id, "abc");
        // A private containerd's state under a root-owned dir in /tmp.
        let t = tree(&[
            ("/", 0, 0o755),
            ("/tmp", 0, 0o1777),
            ("/tmp/moat-cri.x", 0, 0o700),
            ("/tmp/moat-cri.x/state", 0, 0o711),
            (
                "/tmp/moat-cri.x/state/io.containerd.runtime.v2.task",
                0,
                0o711,
            ),
            (
                "/tmp/moat-cri.x/state/io.containerd.runtime.v2.task/k8s.io",
                0,
                0o711,
            ),
            (
                "/tmp/moat-cri.x/state/io.containerd.runtime.v2.task/k8s.io/p1",
                0,
                0o711,
            ),
        ]);
        let b = judged(
            &t,
            "/tmp/moat-cri.x/state/io.containerd.runtime.v2.task/k8s.io/p1",
            "p1",
        )
        .unwrap();
        assert!(b.is_cri());
    }

    #[test]
    fn anything_else_is_a_raw_bundle() {
        let t = docker_tree();
        // Another id than the create's: a tenant naming itself after abc
        // from elsewhere, or abc's bundle created under another id.
        assert_eq!(judged(&t, DOCKER, "other"), None);
        // Not the task layout.
        assert_eq!(judged(&t, "/run/containerd/moby/abc", "abc"), None);
        assert_eq!(judged(&t, "/srv/b/abc", "abc"), None);
        assert_eq!(
            judged(&t, "relative/io.containerd.runtime.v2.task/moby/abc", "abc"),
            None
        );
        // A directory on the way owned by a user, writable by others, not
        // examinable, or sticky below the task directory.
        for (dir, uid, mode) in [
            (
                "/run/containerd/io.containerd.runtime.v2.task/moby/abc",
                1000,
                0o700,
            ),
            (
                "/run/containerd/io.containerd.runtime.v2.task/moby",
                0,
                0o775,
            ),
            ("/run/containerd/io.containerd.runtime.v2.task", 0, 0o1777),
            ("/run/containerd", 0, 0o757),
            ("/run", 1000, 0o755),
        ] {
            let mut t = docker_tree();
            t.insert(
                PathBuf::from(dir),
                DirStat {
                    uid,
                    mode: DIR | mode,
                    is_dir: true,
                },
            );
            assert_eq!(judged(&t, DOCKER, "abc"), None, "{dir} {uid} {mode:o}");
        }
        let mut t = docker_tree();
        t.remove(Path::new("/run/containerd"));
        assert_eq!(judged(&t, DOCKER, "abc"), None);
        // A symlink on the way is not a directory.
        let mut t = docker_tree();
        t.get_mut(Path::new("/run")).unwrap().is_dir = false;
        assert_eq!(judged(&t, DOCKER, "abc"), None);
        // A tenant's own dir under /tmp holding the layout.
        let t = tree(&[
            ("/", 0, 0o755),
            ("/tmp", 0, 0o1777),
            ("/tmp/x", 1000, 0o755),
            ("/tmp/x/io.containerd.runtime.v2.task", 0, 0o711),
            ("/tmp/x/io.containerd.runtime.v2.task/moby", 0, 0o711),
            ("/tmp/x/io.containerd.runtime.v2.task/moby/abc", 0, 0o711),
        ]);
        assert_eq!(
            judged(&t, "/tmp/x/io.containerd.runtime.v2.task/moby/abc", "abc"),
            None
        );
    }

    /// F5: the engine's own task directory reached through a tenant's
    /// symlink is a raw bundle.
    #[test]
    fn a_task_directory_reached_through_a_symlink_is_raw() {
        let t = docker_tree();
        assert!(judge(Path::new(DOCKER), "abc", true, |p| t.get(p).copied()).is_some());
        assert_eq!(
            judge(Path::new(DOCKER), "abc", false, |p| t.get(p).copied()),
            None
        );
    }

    /// Root's links (`/var/run` → `/run`) are followed; a tenant's link,
    /// anywhere on the way (also inside a root link's target), is not.
    #[test]
    fn only_roots_symlinks_are_followed_to_the_bundle() {
        let task = "/run/containerd/io.containerd.runtime.v2.task/moby/abc";
        let look = |p: &Path| -> Option<Entry> {
            let link = |uid, target: &str| Entry::Symlink {
                uid,
                target: PathBuf::from(target),
            };
            Some(match p.to_str()? {
                "/var/run" => link(0, "/run"),
                "/srv/rootlink" => link(0, "../tmp/t"),
                "/tmp/t/b" => link(1000, task),
                "/tmp/t/rel" => link(0, "../../run/containerd"),
                "/tmp/loop" => link(0, "/tmp/loop"),
                "/etc/passwd" => Entry::Other,
                p if p.starts_with("/run")
                    || ["/", "/var", "/tmp", "/tmp/t", "/srv", "/etc"].contains(&p) =>
                {
                    Entry::Dir
                }
                _ => return None,
            })
        };
        let resolve = |given: &str| {
            resolve_through_root_links(Path::new(given), Path::new("/tmp/t"), look)
                .map(|p| p.display().to_string())
        };
        let expect = Some(task.to_string());
        assert_eq!(resolve(task), expect);
        assert_eq!(
            resolve("/var/run/containerd/io.containerd.runtime.v2.task/moby/abc"),
            expect
        );
        assert_eq!(
            resolve("/tmp/t/rel/io.containerd.runtime.v2.task/moby/abc"),
            expect
        );
        assert_eq!(
            resolve("rel/./io.containerd.runtime.v2.task/moby/x/../abc"),
            expect
        );
        // The tenant's link, directly, relative, or behind root's link.
        assert_eq!(resolve("/tmp/t/b"), None);
        assert_eq!(resolve("b"), None);
        assert_eq!(resolve("/srv/rootlink/b"), None);
        // A loop, a file on the way, a name that cannot be examined.
        assert_eq!(resolve("/tmp/loop"), None);
        assert_eq!(resolve("/etc/passwd/x"), None);
        assert_eq!(resolve("/nonexistent/abc"), None);
    }

    /// The edge, on real files: a link this test (root) makes is followed,
    /// the same link owned by a user is not.
    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "test: the real path the resolver must reach"
    )]
    fn gather_follows_root_links_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        std::fs::create_dir(&dir).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap();
        let resolved = |p: &Path| resolve_through_root_links(p, Path::new("/"), lstat_entry);
        assert_eq!(resolved(&dir), Some(real.clone()));
        if nix::unistd::geteuid().is_root() {
            assert_eq!(resolved(&link), Some(real.clone()));
            std::os::unix::fs::lchown(&link, Some(1000), Some(1000)).unwrap();
            assert_eq!(resolved(&link), None);
        }
    }

    #[test]
    fn origin_names_explain_raw_and_engine() {
        let b = EngineBundle {
            namespace: "moby".into(),
            id: "abc".into(),
        };
        assert_eq!(Origin::of(None, Some(&b)), Origin::Unknown);
        assert_eq!(Origin::of(Some("abc"), None), Origin::Raw);
        assert_eq!(Origin::of(Some("abc"), Some(&b)), Origin::Engine(&b));
        assert!(!Origin::Raw.engine_or_unknown());
        assert!(Origin::Unknown.engine_or_unknown());
    }

    #[test]
    fn state_root_tags_are_stable_and_distinct() {
        let a = state_root_tag(Path::new("/run/moat"));
        assert_eq!(a, state_root_tag(Path::new("/run/moat")));
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, state_root_tag(Path::new("/tmp/tenant-a/root")));
    }

    /// R6-5: Kubernetes names label a container only when the CRI made
    /// its bundle; otherwise the namespace label names the origin.
    #[test]
    fn labels_come_from_the_cri_only() {
        use std::collections::HashMap;
        let forged: HashMap<String, String> = [
            ("io.kubernetes.cri.sandbox-namespace", "kube-system"),
            ("io.kubernetes.cri.sandbox-name", "coredns-1"),
            ("io.kubernetes.cri.container-name", "coredns"),
            ("io.kubernetes.pod.namespace", "kube-system"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let with_origin = |origin: Origin<'_>| {
            let mut spec = oci_spec::runtime::Spec::default();
            spec.set_annotations(Some(forged.clone()));
            record_origin(&mut spec, origin);
            label_annotations(&spec.annotations().clone().unwrap())
        };
        let engine = |ns: &str| EngineBundle {
            namespace: ns.into(),
            id: "c".into(),
        };
        let (cri, moby, ci) = (
            engine(CRI_NAMESPACE),
            engine(DOCKER_NAMESPACE),
            engine("ci"),
        );
        let cri_labels = with_origin(Origin::Engine(&cri));
        assert_eq!(cri_labels["io.kubernetes.cri.sandbox-name"], "coredns-1");
        assert_eq!(
            cri_labels["io.kubernetes.cri.sandbox-namespace"],
            "kube-system"
        );
        for (origin, namespace) in [
            (Origin::Raw, "raw"),
            (Origin::Engine(&moby), "moby"),
            (Origin::Engine(&ci), "ci"),
        ] {
            let labels = with_origin(origin);
            assert_eq!(labels.len(), 1, "{origin:?}: {labels:?}");
            assert_eq!(labels["io.kubernetes.cri.sandbox-namespace"], namespace);
        }
        // A tenant's own "moat.dev/origin" is overwritten.
        let mut spec = oci_spec::runtime::Spec::default();
        let mut ann = forged.clone();
        ann.insert(ORIGIN_ANNOTATION.into(), "engine/k8s.io".into());
        spec.set_annotations(Some(ann));
        record_origin(&mut spec, Origin::Raw);
        let labels = label_annotations(&spec.annotations().clone().unwrap());
        assert_eq!(labels["io.kubernetes.cri.sandbox-namespace"], "raw");
        // No recorded origin (a config hardened before): no pod names.
        assert_eq!(
            label_annotations(&forged)["io.kubernetes.cri.sandbox-namespace"],
            "unknown"
        );
    }
}
