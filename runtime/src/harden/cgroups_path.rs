//! `linux.cgroupsPath` (threat T22). libcontainer puts the container's
//! limits on the cgroup the spec names and, on `delete`, SIGKILLs every
//! process in it and removes it. A tenant naming another workload's cgroup
//! (or `/`, or an engine's parent such as `/docker`) would cap or kill
//! processes that are not its own. So the path must be strictly below a
//! parent the operator lists (`cgroups.parents`), be plain (no `..`, `.`
//! or empty component), and name a cgroup that does not exist yet or
//! holds no process in any hierarchy (a host fact, `moat::cgroup_probe`).

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::engine_bundle::Origin;
use crate::policy::CgroupsPolicy;
use crate::refusal::{Refusal, RefusalRule};

/// A `cgroupsPath`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupsPath {
    /// cgroupfs form: the components of "/docker/<id>".
    Path(Vec<String>),
    /// systemd form "slice:prefix:name".
    Systemd {
        slice: String,
        prefix: String,
        name: String,
    },
}

fn plain_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\0'])
}

impl CgroupsPath {
    /// Parses a path, or says why it is not plain.
    pub fn parse(path: &str) -> Result<Self, &'static str> {
        if let Some(rest) = path.strip_prefix('/') {
            let parts: Vec<String> = rest.split('/').map(str::to_string).collect();
            if !parts.iter().all(|c| plain_component(c)) {
                return Err("it has an empty, \".\" or \"..\" component (or is \"/\")");
            }
            return Ok(Self::Path(parts));
        }
        let parts: Vec<&str> = path.split(':').collect();
        match parts.as_slice() {
            [slice, prefix, name]
                if slice.ends_with(".slice")
                    && [slice, prefix, name].iter().all(|c| plain_component(c)) =>
            {
                Ok(Self::Systemd {
                    slice: slice.to_string(),
                    prefix: prefix.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err("it is neither an absolute cgroup path nor a systemd slice:prefix:name"),
        }
    }

    /// Is this exactly one level below `parent` (the engine's own leaf,
    /// no level of its own choosing in between)?
    fn is_child_of(&self, parent: &str) -> bool {
        match self {
            Self::Path(parts) => parent
                .strip_prefix('/')
                .is_some_and(|rest| parts.len() == rest.split('/').count() + 1),
            Self::Systemd { slice, .. } => parent
                .split_once(':')
                .is_some_and(|(pslice, _)| slice == pslice),
        }
    }

    /// Is this strictly below the policy parent `parent`?
    fn is_below(&self, parent: &str) -> bool {
        match self {
            Self::Path(parts) => {
                let Some(rest) = parent.strip_prefix('/') else {
                    return false;
                };
                let parent_parts: Vec<&str> = rest.split('/').collect();
                parts.len() > parent_parts.len()
                    && parts.iter().zip(&parent_parts).all(|(a, b)| a == b)
            }
            Self::Systemd {
                slice,
                prefix,
                name: _,
            } => {
                let Some((pslice, pprefix)) = parent.split_once(':') else {
                    return false;
                };
                let stem = pslice.trim_end_matches(".slice");
                prefix == pprefix
                    && (slice == pslice
                        || slice
                            .strip_prefix(stem)
                            .is_some_and(|s| s.starts_with('-') && s.len() > "-.slice".len()))
            }
        }
    }

    /// The directories (relative to a hierarchy's mount point) this path
    /// may become: on cgroup v1 and hybrid hosts libcgroups joins the path
    /// itself below every hierarchy, a systemd path too; on a unified host
    /// with the systemd driver it becomes the expanded slice and scope.
    pub fn candidate_dirs(&self) -> Vec<PathBuf> {
        match self {
            Self::Path(parts) => vec![parts.iter().collect()],
            Self::Systemd {
                slice,
                prefix,
                name,
            } => {
                let literal = PathBuf::from(format!("{slice}:{prefix}:{name}"));
                let mut expanded = PathBuf::new();
                let stem = slice.trim_end_matches(".slice");
                if stem != "-" {
                    let mut acc = String::new();
                    for part in stem.split('-') {
                        if !acc.is_empty() {
                            acc.push('-');
                        }
                        acc.push_str(part);
                        expanded.push(format!("{acc}.slice"));
                    }
                }
                expanded.push(format!("{prefix}-{name}.scope"));
                vec![literal, expanded]
            }
        }
    }
}

/// The spec's cgroupsPath, if it has one.
pub fn spec_cgroups_path(spec: &Spec) -> Option<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
}

impl CgroupsPath {
    /// The leaf's name: the last component, or a systemd path's name.
    fn leaf(&self) -> &str {
        match self {
            Self::Path(parts) => parts.last().map(String::as_str).unwrap_or(""),
            Self::Systemd { name, .. } => name,
        }
    }
}

/// Refuses a cgroupsPath outside the parents the bundle may use, not
/// plain, or naming a cgroup in use. `occupant` is the host fact: where a
/// process was found in that cgroup or below it (`None`: no process, or no
/// such cgroup). A spec without cgroupsPath gets the cgroup
/// [`place_raw_cgroup`] names.
///
/// Which parents: engines reuse the names below their own parents (docker
/// restarts a stopped container into `/docker/<id>`, a pod's container
/// comes back under `.../pod<uid>/<id>`), and libcontainer's delete kills
/// every process in the cgroup. A raw tenant that squatted a stopped docker
/// container's `/docker/<id>` had the restarted container run under its
/// limits and SIGKILLed it on its own delete (red-team R4). So the engine
/// parents (`cgroups.parents`) are for bundles an engine made for this id,
/// and only for a leaf named after that id; a raw bundle may use only
/// `cgroups.raw_parents` (moat's `/moat`).
pub fn check_cgroups_path(
    spec: &Spec,
    policy: &CgroupsPolicy,
    origin: Origin,
    occupant: Option<&str>,
) -> Result<(), Refusal> {
    let Some(path) = spec_cgroups_path(spec) else {
        return Ok(());
    };
    let parsed = CgroupsPath::parse(&path).map_err(|why| {
        Refusal::new(
            RefusalRule::CgroupsPath,
            format!("linux.cgroupsPath {path:?}: {why}"),
            None,
        )
    })?;
    let raw_parent = policy.raw_parents.iter().find(|p| parsed.is_below(p));
    // The raw parents are moat's level for raw (`moat run`) tenants: an
    // operator's limits there are theirs, and their containers' names
    // (`<tag>@<id>`) are moat's. An engine's container placed there
    // (`docker run --cgroup-parent /moat`) would share those limits and
    // sit among the raw tenants' cgroups (red-team pass 7), so an engine
    // bundle below one is refused, whatever `cgroups.parents` also lists.
    if let (Origin::Engine(_), Some(raw)) = (origin, raw_parent) {
        return Err(Refusal::new(
            RefusalRule::CgroupsPath,
            format!(
                "linux.cgroupsPath {path:?}: {raw:?} is moat's cgroup parent for raw (moat run) tenants' containers, not for an engine's ({}): give the container another cgroup parent",
                origin.describe()
            ),
            None,
        ));
    }
    let below_raw = raw_parent.is_some();
    let engine_parent = policy.parents.iter().find(|p| parsed.is_below(p));
    match (origin, engine_parent) {
        (Origin::Raw | Origin::Unknown, _) if below_raw => {}
        (Origin::Unknown, Some(_)) => {}
        (Origin::Engine(b), Some(parent)) if !parent_belongs_to(parent, &b.namespace) => {
            return Err(Refusal::new(
                RefusalRule::CgroupsPath,
                format!(
                    "linux.cgroupsPath {path:?}: the parent {parent:?} belongs to another engine namespace than this bundle's ({:?})",
                    b.namespace
                ),
                None,
            ))
        }
        (Origin::Engine(b), Some(parent))
            if b.namespace != crate::engine_bundle::CRI_NAMESPACE && !parsed.is_child_of(parent) =>
        {
            return Err(Refusal::new(
                RefusalRule::CgroupsPath,
                format!(
                    "linux.cgroupsPath {path:?}: below {parent:?} a container of namespace {:?} gets exactly {parent}/<its id>, no level in between (another workload's level would share its limits)",
                    b.namespace
                ),
                None,
            ))
        }
        (Origin::Engine(b), Some(_)) if parsed.leaf() == b.id => {}
        (Origin::Engine(b), Some(parent)) => {
            return Err(Refusal::new(
                RefusalRule::CgroupsPath,
                format!(
                    "linux.cgroupsPath {path:?}: below the engine parent {parent:?} a container's cgroup is named after its own id ({}), not {:?}",
                    b.id,
                    parsed.leaf()
                ),
                None,
            ))
        }
        (Origin::Raw, Some(parent)) => {
            return Err(Refusal::new(
                RefusalRule::CgroupsPath,
                format!(
                    "linux.cgroupsPath {path:?}: the engine parent {parent:?} is only for bundles an engine made for this container, and this is {}; a raw bundle's cgroup is below {}",
                    origin.describe(),
                    policy.raw_parents.join(", ")
                ),
                Some("cgroups.raw_parents"),
            ))
        }
        (_, None) => {
            let allowed: Vec<&str> = if origin == Origin::Raw {
                policy.raw_parents.iter().map(String::as_str).collect()
            } else {
                policy
                    .raw_parents
                    .iter()
                    .chain(&policy.parents)
                    .map(String::as_str)
                    .collect()
            };
            return Err(Refusal::new(
                RefusalRule::CgroupsPath,
                format!(
                    "linux.cgroupsPath {path:?} is not below any of the allowed parents ({})",
                    allowed.join(", ")
                ),
                Some(if origin == Origin::Raw {
                    "cgroups.raw_parents"
                } else {
                    "cgroups.parents"
                }),
            ));
        }
    }
    if let Some(found) = occupant {
        return Err(Refusal::new(
            RefusalRule::CgroupsPath,
            format!("linux.cgroupsPath {path:?} names a cgroup that already holds a process ({found}); a container gets a cgroup of its own"),
            None,
        ));
    }
    Ok(())
}

/// Separates the state root's tag from the id in a raw container's cgroup
/// name. No container id contains it (`crate::container_id`), so no
/// engine container's cgroup (named after its id) is ever a raw one's.
pub const RAW_LEAF_SEPARATOR: char = '@';

/// The cgroup moat gives a raw bundle's container `id` created under the
/// state root tagged `root_tag` (`crate::engine_bundle::state_root_tag`):
/// `<raw parent>/<root_tag>@<id>`, one level below the raw parent the
/// spec's path is below (`spec_path`), else below the first raw parent.
/// Ids are unique per state root and tags per state root, so two raw
/// containers never get one name, and a raw tenant never chooses a name
/// (red-team pass 6 R6-1: a raw bundle naming `/moat/<id>` of another
/// tenant's future container made that tenant's create fail; nesting below
/// an operator's level shared its limits). Without a tag (unit fixtures)
/// the leaf is the id.
pub fn raw_cgroups_path(
    spec_path: Option<&str>,
    policy: &CgroupsPolicy,
    root_tag: Option<&str>,
    id: &str,
) -> String {
    let parsed = spec_path.and_then(|p| CgroupsPath::parse(p).ok());
    let parent = parsed
        .and_then(|parsed| policy.raw_parents.iter().find(|p| parsed.is_below(p)))
        .or(policy.raw_parents.first())
        .map(String::as_str)
        .unwrap_or(crate::policy::DEFAULT_RAW_CGROUP_PARENTS[0]);
    let leaf = match root_tag {
        Some(tag) => format!("{tag}{RAW_LEAF_SEPARATOR}{id}"),
        None => id.to_string(),
    };
    if parent.starts_with('/') {
        format!("{parent}/{leaf}")
    } else {
        format!("{parent}:{leaf}")
    }
}

/// The parent of the cgroup moat gives an engine's container whose spec
/// names none (docker, containerd and the CRI always name one; a bundle
/// made by hand in an engine's task directory may not): kept apart from
/// the raw parents, which are the raw tenants' level (red-team pass 7).
pub const ENGINE_FALLBACK_CGROUP_PARENT: &str = "/moat-engines";

/// The cgroup of an engine's container whose spec names none:
/// `/moat-engines/<namespace>/<id>`, unique like containerd's own
/// `/<namespace>/<id>`, outside every raw parent.
pub fn engine_fallback_cgroups_path(b: &crate::engine_bundle::EngineBundle) -> String {
    format!("{ENGINE_FALLBACK_CGROUP_PARENT}/{}/{}", b.namespace, b.id)
}

/// Gives a raw bundle's container the cgroup [`raw_cgroups_path`] names,
/// whatever its spec said (after [`check_cgroups_path`] accepted it), with
/// a report line when the spec named another. An engine bundle keeps its
/// path, or gets [`engine_fallback_cgroups_path`] when it names none;
/// `explain` keeps its path.
pub fn place_raw_cgroup(
    spec: &mut Spec,
    policy: &CgroupsPolicy,
    origin: Origin,
    root_tag: Option<&str>,
    id: Option<&str>,
    report: &mut crate::report::Report,
) {
    let before = spec_cgroups_path(spec);
    let path = match (origin, id) {
        (Origin::Raw, Some(id)) => raw_cgroups_path(before.as_deref(), policy, root_tag, id),
        (Origin::Engine(b), _) if before.is_none() => engine_fallback_cgroups_path(b),
        _ => return,
    };
    if let Some(before) = before.filter(|b| *b != path) {
        report.change(
            crate::report::Rule::CgroupsPath,
            "linux.cgroupsPath",
            before,
            path.clone(),
            "a raw bundle's cgroup is named by moat after its state root and id (a name the tenant chose could be another tenant's)",
        );
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(path)));
    spec.set_linux(Some(linux));
}

/// Does the policy parent `parent` belong to containerd namespace `ns`
/// (red-team pass 4 F4: a `ctr`/nerdctl client of any namespace used
/// docker's parent to squat a docker container's cgroup)? docker's parents
/// are `moby`'s, kubelet's are `k8s.io`'s, another cgroupfs parent `/<name>` is namespace `<name>`'s (containerd
/// names a task's cgroup `/<namespace>/<id>`); another systemd parent an
/// operator lists is every engine's.
fn parent_belongs_to(parent: &str, ns: &str) -> bool {
    const DOCKER: &[&str] = &["/docker", "/moby", "system.slice:docker"];
    const KUBELET: &[&str] = &["/kubepods", "kubepods.slice:cri-containerd", "/k8s.io"];
    if DOCKER.contains(&parent) {
        return ns == crate::engine_bundle::DOCKER_NAMESPACE;
    }
    if KUBELET.contains(&parent) {
        return ns == crate::engine_bundle::CRI_NAMESPACE;
    }
    match parent.strip_prefix('/') {
        Some(name) => name == ns,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Rule;
    use oci_spec::runtime::Linux;

    fn spec(path: &str) -> Spec {
        let mut linux = Linux::default();
        linux.set_cgroups_path(Some(PathBuf::from(path)));
        let mut spec = Spec::default();
        spec.set_linux(Some(linux));
        spec
    }

    fn check(path: &str) -> Result<(), Refusal> {
        check_cgroups_path(
            &spec(path),
            &CgroupsPolicy::default(),
            Origin::Unknown,
            None,
        )
    }

    #[test]
    fn engines_paths_pass() {
        for ok in [
            "/docker/0123abcd",
            "system.slice:docker:0123abcd",
            "/default/web",
            "/k8s.io/0123",
            "/moby/0123",
            "/kubepods/burstable/pod1234/0123",
            "/kubepods/pod1234/0123",
            "kubepods-burstable-pod1234.slice:cri-containerd:0123",
            "kubepods.slice:cri-containerd:0123",
            "/moat/web",
        ] {
            check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let mut none = spec("/x");
        none.linux_mut().as_mut().unwrap().set_cgroups_path(None);
        check_cgroups_path(&none, &CgroupsPolicy::default(), Origin::Raw, None).unwrap();
    }

    #[test]
    fn paths_outside_parents_or_not_plain_are_refused() {
        for bad in [
            "/",
            "/docker",
            "/docker/",
            "/docker/../init.scope",
            "/docker/./x",
            "/docker//x",
            "../x",
            "docker/x",
            "x",
            "/system.slice/x",
            "/dockerx/y",
            "/user.slice/user-0.slice",
            "system.slice:sshd:x",
            "user.slice:docker:x",
            "system.slice:docker",
            "system.slice:docker:..",
            "system.slice:docker:a:b",
            "kubepods.slice:crio:x",
            "kubepodsx.slice:cri-containerd:x",
            "kubepods-.slice:cri-containerd:x",
        ] {
            let err = check(bad).expect_err(bad);
            assert_eq!(err.rule, RefusalRule::CgroupsPath, "{bad}");
            assert!(err.to_string().contains("cgroupsPath"), "{err}");
        }
    }

    #[test]
    fn a_cgroup_holding_a_process_is_refused() {
        let err = check_cgroups_path(
            &spec("/docker/abc"),
            &CgroupsPolicy::default(),
            Origin::Unknown,
            Some("pid 42 in /sys/fs/cgroup/pids/docker/abc"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("pid 42"), "{err}");
    }

    /// Red-team R4: engine parents are for bundles an engine made for this
    /// id, and the leaf is that id; a raw bundle stays below /moat.
    #[test]
    fn engine_parents_are_for_engine_bundles_and_their_own_id() {
        let policy = CgroupsPolicy::default();
        let docker = crate::engine_bundle::EngineBundle {
            namespace: "moby".into(),
            id: "abc".into(),
        };
        let check = |path: &str, origin| check_cgroups_path(&spec(path), &policy, origin, None);
        for ok in ["/docker/abc", "/moby/abc", "system.slice:docker:abc"] {
            check(ok, Origin::Engine(&docker)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for raw_ok in ["/moat/abc", "/moat/a/b/c"] {
            check(raw_ok, Origin::Raw).unwrap_or_else(|e| panic!("{raw_ok}: {e}"));
        }
        for (path, phrase) in [
            ("/docker/abc", "only for bundles an engine made"),
            ("/kubepods/pod1/abc", "only for bundles an engine made"),
            ("system.slice:docker:abc", "only for bundles an engine made"),
            (
                "/user.slice/x",
                "not below any of the allowed parents (/moat)",
            ),
        ] {
            let err = check(path, Origin::Raw).unwrap_err();
            assert!(err.to_string().contains(phrase), "{path}: {err}");
        }
        for path in ["/docker/victim", "system.slice:docker:victim"] {
            let err = check(path, Origin::Engine(&docker)).unwrap_err();
            assert!(
                err.to_string().contains("named after its own id (abc)"),
                "{path}: {err}"
            );
        }
        // Red-team pass 4 F4: each engine namespace has its own parents;
        // F1: docker's container gets exactly <parent>/<id>, never a level
        // of another workload in between (kubelet's pod levels are kept).
        let engine = |ns: &str| crate::engine_bundle::EngineBundle {
            namespace: ns.into(),
            id: "abc".into(),
        };
        let (tenant, cri) = (engine("tenantns"), engine("k8s.io"));
        for (path, origin, phrase) in [
            (
                "/docker/abc",
                Origin::Engine(&tenant),
                "another engine namespace",
            ),
            (
                "/kubepods/pod1/abc",
                Origin::Engine(&docker),
                "another engine namespace",
            ),
            (
                "/k8s.io/abc",
                Origin::Engine(&tenant),
                "another engine namespace",
            ),
            (
                "/default/abc",
                Origin::Engine(&tenant),
                "another engine namespace",
            ),
            (
                "/docker/red2pod/abc",
                Origin::Engine(&docker),
                "no level in between",
            ),
            (
                "/docker/abc/x",
                Origin::Engine(&docker),
                "no level in between",
            ),
            (
                "system-x.slice:docker:abc",
                Origin::Engine(&docker),
                "no level in between",
            ),
        ] {
            let err = check(path, origin).unwrap_err();
            assert!(err.to_string().contains(phrase), "{path}: {err}");
        }
        check("/kubepods/burstable/pod1/abc", Origin::Engine(&cri)).unwrap();
        check(
            "kubepods-burstable-pod1.slice:cri-containerd:abc",
            Origin::Engine(&cri),
        )
        .unwrap();
        let mut p = CgroupsPolicy::default();
        p.parents.push("/tenantns".into());
        check_cgroups_path(&spec("/tenantns/abc"), &p, Origin::Engine(&tenant), None).unwrap();
        // An operator parent reserved for raw tenants.
        let mut p = CgroupsPolicy::default();
        p.raw_parents.push("/tenants".into());
        check_cgroups_path(&spec("/tenants/t1"), &p, Origin::Raw, None).unwrap();
    }

    /// R6-1: a raw container's cgroup is `<raw parent>/<root tag>@<id>`,
    /// whatever its spec names below the raw parents; engines' stay theirs.
    #[test]
    fn raw_bundles_get_the_cgroup_moat_names() {
        let policy = CgroupsPolicy::default();
        let placed = |path: Option<&str>, origin, tag: Option<&str>| {
            let mut s = spec("/x");
            s.linux_mut()
                .as_mut()
                .unwrap()
                .set_cgroups_path(path.map(PathBuf::from));
            let mut report = crate::report::Report::default();
            place_raw_cgroup(&mut s, &policy, origin, tag, Some("job-42"), &mut report);
            (spec_cgroups_path(&s), report)
        };
        // The red team's squat: another tenant's future /moat/<id>, or a
        // level below it or below an operator's level.
        for squat in [
            "/moat/job-42",
            "/moat/victim",
            "/moat/teamA/evil",
            "/moat/a/b/c",
        ] {
            check_cgroups_path(&spec(squat), &policy, Origin::Raw, None).unwrap();
            let (path, report) = placed(Some(squat), Origin::Raw, Some("0123456789abcdef"));
            assert_eq!(path.as_deref(), Some("/moat/0123456789abcdef@job-42"));
            let line = report
                .by_rule(crate::report::Rule::CgroupsPath)
                .next()
                .unwrap();
            assert_eq!(line.before, squat);
            assert_eq!(Rule::CgroupsPath.threat(), "T22");
        }
        // No path: the same name, no report line.
        let (path, report) = placed(None, Origin::Raw, Some("0123456789abcdef"));
        assert_eq!(path.as_deref(), Some("/moat/0123456789abcdef@job-42"));
        assert!(report.changes.is_empty());
        // Two state roots, one id: two names.
        assert_ne!(
            placed(None, Origin::Raw, Some("aaaa")).0,
            placed(None, Origin::Raw, Some("bbbb")).0
        );
        // An operator's raw parent the spec chose is kept.
        let mut p = CgroupsPolicy::default();
        p.raw_parents.push("/tenants".into());
        assert_eq!(
            raw_cgroups_path(Some("/tenants/x/y"), &p, Some("t"), "c"),
            "/tenants/t@c"
        );
        assert_eq!(raw_cgroups_path(None, &p, Some("t"), "c"), "/moat/t@c");
        // Engines and explain keep theirs.
        let docker = crate::engine_bundle::EngineBundle {
            namespace: "moby".into(),
            id: "job-42".into(),
        };
        for origin in [Origin::Engine(&docker), Origin::Unknown] {
            let (path, report) = placed(Some("/docker/job-42"), origin, Some("t"));
            assert_eq!(path.as_deref(), Some("/docker/job-42"));
            assert!(report.changes.is_empty());
        }
        // An engine bundle naming no cgroup gets one outside the raw
        // parents, apart from every raw container's.
        let (path, report) = placed(None, Origin::Engine(&docker), Some("t"));
        assert_eq!(path.as_deref(), Some("/moat-engines/moby/job-42"));
        assert!(report.changes.is_empty());
    }

    /// Red-team pass 7: `docker run --cgroup-parent /moat` put an engine's
    /// container at the raw tenants' level (and under their limits). Every
    /// engine bundle below a raw parent is refused, an operator's raw
    /// parent too, whatever `cgroups.parents` also lists, and any leaf.
    #[test]
    fn engine_bundles_below_a_raw_parent_are_refused() {
        let engine = |ns: &str| crate::engine_bundle::EngineBundle {
            namespace: ns.into(),
            id: "job-42".into(),
        };
        let (docker, cri) = (engine("moby"), engine("k8s.io"));
        let mut policy = CgroupsPolicy::default();
        policy.raw_parents.push("/tenants".into());
        policy.parents.push("/moat".into());
        policy.parents.push("/tenants".into());
        for (path, b) in [
            ("/moat/job-42", &docker),
            ("/moat/t@job-42", &docker),
            ("/moat/x", &docker),
            ("/moat/t/job-42", &docker),
            ("/moat/pod1/job-42", &cri),
            ("/tenants/job-42", &docker),
        ] {
            let err =
                check_cgroups_path(&spec(path), &policy, Origin::Engine(b), None).expect_err(path);
            assert_eq!(err.rule, RefusalRule::CgroupsPath);
            let text = err.to_string();
            assert!(
                text.contains("cgroup parent for raw (moat run) tenants' containers"),
                "{path}: {text}"
            );
            assert!(!text.contains('\n'), "{text}");
        }
        // The same paths stay a raw bundle's (moat names the leaf), and
        // moat's fallback for an engine is outside them.
        check_cgroups_path(&spec("/moat/job-42"), &policy, Origin::Raw, None).unwrap();
        let fallback = CgroupsPath::parse(&engine_fallback_cgroups_path(&docker)).unwrap();
        assert!(!policy.raw_parents.iter().any(|p| fallback.is_below(p)));
        assert!(!crate::policy::DEFAULT_CGROUP_PARENTS.contains(&"/moat"));
    }

    #[test]
    fn candidate_dirs_cover_both_systemd_layouts() {
        let p = CgroupsPath::parse("kubepods-burstable-pod1.slice:cri-containerd:abc").unwrap();
        assert_eq!(
            p.candidate_dirs(),
            vec![
                PathBuf::from("kubepods-burstable-pod1.slice:cri-containerd:abc"),
                PathBuf::from(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"
                ),
            ]
        );
        let p = CgroupsPath::parse("/docker/abc").unwrap();
        assert_eq!(p.candidate_dirs(), vec![PathBuf::from("docker/abc")]);
    }
}
