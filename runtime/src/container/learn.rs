//! Learning a seccomp profile while a container runs (`--learn-dir`, the
//! `moat.dev/learn` annotation, or `moat learn`): `create` swaps the
//! container's filter for the learning filter and starts the recorder.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use oci_spec::runtime::Spec;

use crate::learn::profile::{self, learning_filter};
use crate::learn::{Output, RecorderConfig};
use crate::policy::Policy;
use crate::report::Report;

use super::{ContainerPaths, Ctx};

/// Where a learning container's profile goes.
#[derive(Debug, Clone)]
pub enum LearnTarget {
    /// `--learn-dir DIR`: DIR/<container id>.json, merged into if present.
    Dir(PathBuf),
    /// `moat learn -o FILE`: replaced.
    File(PathBuf),
}

/// Creates a directory for learned profiles, and the missing directories
/// above it, 0700: a profile lists what a tenant's workload does (its
/// syscalls, named after its container), which no other host user may read
/// (T17). moat's own default is tightened when an older moat left it 0755;
/// a directory the operator made keeps the operator's mode.
#[allow(
    clippy::disallowed_methods,
    reason = "the operator's learn directory, not a container's path"
)]
pub(crate) fn ensure_dir(dir: &Path) -> Result<PathBuf> {
    let err = || {
        format!(
            "cannot create the learned-profile directory {}",
            dir.display()
        )
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(err)?;
    if dir == Path::new(crate::learn::DEFAULT_LEARN_DIR) {
        crate::idpool::tighten_dir(dir).with_context(err)?;
    }
    fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// The most profiles the `moat.dev/learn` annotation (a tenant's choice)
/// makes moat keep for one tenant's scope in `learn.dir` (a containerd
/// namespace, a pod's namespace, a raw state root, a docker container:
/// [`tenant_scope`]): each
/// is a file on the host's disk that outlives its container (red-team pass
/// 5 G8), and `true` names one per container id. Per scope, so that one
/// tenant looping learning creates with fresh ids fills only its own
/// (red-team pass 7 note: the cap was node-wide, and then every tenant's
/// learning was refused). Adding to an existing profile is always possible.
pub const MAX_ANNOTATION_PROFILES: usize = 1024;

/// The most such profiles on the whole node, over every scope: the disk
/// bound (a raw tenant may use many state roots, each its own scope).
pub const MAX_ANNOTATION_PROFILES_NODE: usize = 16 * MAX_ANNOTATION_PROFILES;

/// The tenant's part of a scoped profile name (`crate::learn::scoped_profile_name`):
/// `raw/<state root tag>` for a raw bundle (below it, one directory per
/// container id), else the directory the profile is in (`<namespace>`,
/// `k8s.io/<pod namespace>` or docker's `moby/<container id>`).
fn tenant_scope(scoped_name: &str) -> PathBuf {
    let name = Path::new(scoped_name);
    let mut parts = name.components();
    match (parts.next(), parts.next()) {
        (Some(first), Some(tag)) if first.as_os_str() == "raw" => {
            Path::new(first.as_os_str()).join(tag.as_os_str())
        }
        _ => name.parent().map(Path::to_path_buf).unwrap_or_default(),
    }
}

/// `*.json` files in `dir` and its scope directories (at most `cap`; scopes
/// are at most `<ns>/<pod ns>/` or `raw/<id>/` deep).
fn count_profiles(dir: &Path, cap: usize, depth: usize) -> std::io::Result<usize> {
    let mut held = 0;
    for entry in fs::read_dir(dir)? {
        if held >= cap {
            break;
        }
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() && depth < 3 {
            held += count_profiles(&entry.path(), cap - held, depth + 1)?;
        } else if kind.is_file() && entry.path().extension().is_some_and(|x| x == "json") {
            held += 1;
        }
    }
    Ok(held.min(cap))
}

/// Refuses to start a new profile `path` when its tenant's `scope` (below
/// `dir`) already holds `scope_cap` profiles, or `dir` as a whole
/// `node_cap`.
fn refuse_past_profile_cap(
    dir: &Path,
    scope: &Path,
    path: &Path,
    scope_cap: usize,
    node_cap: usize,
) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    refuse_past_scope_cap(dir, scope, scope_cap)?;
    // docker has one containerd namespace for every user of its socket:
    // each docker container is a scope of its own (`moby/<id>`), and docker
    // as a whole is held to one scope's cap too, so a docker user looping
    // new learning containers fills docker's part, never the node's cap
    // every other tenant needs (review of pass 8, M2).
    let mut parts = scope.components();
    if let (Some(first), Some(_)) = (parts.next(), parts.next()) {
        if first.as_os_str() == crate::engine_bundle::DOCKER_NAMESPACE {
            refuse_past_scope_cap(dir, Path::new(first.as_os_str()), scope_cap)?;
        }
    }
    let held = count_profiles(dir, node_cap, 0)
        .with_context(|| format!("cannot list {}", dir.display()))?;
    if held >= node_cap {
        anyhow::bail!(
            "the learned-profile directory {} already holds {node_cap} profiles, the most moat keeps for the moat.dev/learn annotation on this node; the operator may move some away",
            dir.display()
        );
    }
    Ok(())
}

/// Refuses when `scope` (below `dir`) already holds `cap` profiles.
fn refuse_past_scope_cap(dir: &Path, scope: &Path, cap: usize) -> Result<()> {
    let scope_dir = dir.join(scope);
    let depth = scope.components().count();
    let held = match count_profiles(&scope_dir, cap, depth) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", scope_dir.display())),
    };
    if held >= cap {
        anyhow::bail!(
            "the learned-profile directory {} already holds {cap} profiles, the most moat keeps for one scope's moat.dev/learn annotations; the operator may move some away",
            scope_dir.display()
        );
    }
    Ok(())
}

/// Called by `create` after hardening: when this container is to learn,
/// swaps its seccomp filter for the learning filter and starts the
/// recorder. Does nothing otherwise.
pub fn start_for_create(
    ctx: &Ctx,
    spec: &mut Spec,
    policy: &Policy,
    paths: &ContainerPaths,
    report: &mut Report,
) -> Result<()> {
    let id = paths.id.as_str();
    let output = match (&ctx.learn, &policy.learn.requested) {
        (Some(LearnTarget::File(p)), _) => Output::Replace(p.clone()),
        (Some(LearnTarget::Dir(d)), _) => {
            Output::Accumulate(ensure_dir(d)?.join(format!("{id}.json")))
        }
        (None, Some(name)) => {
            // `<scope>/<name>`: the hardening scoped it to the bundle's
            // origin (crate::learn::scoped_profile_name, R8).
            let name = if name == "true" { id } else { name.as_str() };
            let file = Path::new(&policy.learn.dir).join(format!("{name}.json"));
            let dir = file.parent().unwrap_or(Path::new(&policy.learn.dir));
            let path = ensure_dir(dir)?.join(file.file_name().unwrap_or_default());
            // Counted in the tenant's scope (a raw tenant's ids are
            // directories of its state root's scope), and over the node.
            refuse_past_profile_cap(
                Path::new(&policy.learn.dir),
                &tenant_scope(name),
                &path,
                MAX_ANNOTATION_PROFILES,
                MAX_ANNOTATION_PROFILES_NODE,
            )?;
            Output::Accumulate(path)
        }
        (None, None) => return Ok(()),
    };
    if let Output::Accumulate(path) = &output {
        // Never clobber a file that is not a profile this run can add to.
        if let Ok(text) = fs::read_to_string(path) {
            profile::parse(&text, &path.display().to_string()).with_context(|| {
                format!(
                    "{} exists and is not a seccomp profile moat can merge this run into; move it away",
                    path.display()
                )
            })?;
        }
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let base = linux
        .seccomp()
        .clone()
        .ok_or_else(|| anyhow!("the hardened spec has no seccomp filter to learn under"))?;
    let socket = &paths.learn_socket;
    linux.set_seccomp(Some(learning_filter(&base, socket)?));
    spec.set_linux(Some(linux));
    let record = crate::learn::spawn_recorder(
        &paths.root,
        &paths.private_dir,
        RecorderConfig {
            container: id.to_string(),
            base,
            output,
        },
    )?;
    tracing::warn!(
        id,
        recorder = record.pid,
        output = %record.output.display(),
        "LEARNING: syscalls are reported to a recorder (slow); the learned profile goes to the output"
    );
    report.notes.push(format!(
        "seccomp: learning: each syscall the filter allows is reported to recorder pid {} and the profile written to {}; always-denied syscalls are still denied",
        record.pid,
        record.output.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant's annotation cannot fill the host's disk with profiles,
    /// nor use up other tenants' share: the cap is per scope, with a
    /// larger one over the node.
    #[test]
    fn annotation_profiles_are_capped_per_scope_and_per_node() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let cap = |scope: &str, file: &str, node: usize| {
            refuse_past_profile_cap(d, Path::new(scope), &d.join(file), 2, node)
        };
        // A scope that does not exist yet holds nothing.
        cap("raw/t1", "raw/t1/a/a.json", 8).unwrap();
        for id in ["a", "b"] {
            fs::create_dir_all(d.join(format!("raw/t1/{id}"))).unwrap();
            fs::write(d.join(format!("raw/t1/{id}/{id}.json")), "{}").unwrap();
        }
        fs::write(d.join("raw/t1/a/notes.txt"), "").unwrap();
        // One raw tenant (state root t1) with fresh ids: its own scope full…
        let e = cap("raw/t1", "raw/t1/c/c.json", 8).unwrap_err();
        assert!(
            e.to_string()
                .contains("already holds 2 profiles, the most moat keeps for one scope's"),
            "{e}"
        );
        // …and adding to a profile that exists is not a new file.
        cap("raw/t1", "raw/t1/a/a.json", 8).unwrap();
        // Other tenants still learn: another state root, a namespace.
        cap("raw/t2", "raw/t2/c/c.json", 8).unwrap();
        cap("moby", "moby/web.json", 8).unwrap();
        fs::create_dir_all(d.join("k8s.io/ns1")).unwrap();
        fs::write(d.join("k8s.io/ns1/x.json"), "{}").unwrap();
        cap("k8s.io/ns1", "k8s.io/ns1/y.json", 8).unwrap();
        fs::write(d.join("k8s.io/ns1/y.json"), "{}").unwrap();
        cap("k8s.io/ns1", "k8s.io/ns1/z.json", 8).unwrap_err();
        cap("k8s.io/ns2", "k8s.io/ns2/z.json", 8).unwrap();
        // The node-wide bound over every scope (4 profiles held).
        let e = cap("moby", "moby/web.json", 4).unwrap_err();
        assert!(e.to_string().contains("on this node"), "{e}");
    }

    /// Each docker container is a scope of its own, and docker as a whole
    /// is held to one scope's cap: a docker user looping new containers
    /// fills docker's part, never the node's (review of pass 8, M2).
    #[test]
    fn docker_containers_share_one_scopes_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let cap = |scope: &str, file: &str| {
            refuse_past_profile_cap(d, Path::new(scope), &d.join(file), 2, 100)
        };
        for id in ["c1", "c2"] {
            cap(&format!("moby/{id}"), &format!("moby/{id}/p.json")).unwrap();
            fs::create_dir_all(d.join(format!("moby/{id}"))).unwrap();
            fs::write(d.join(format!("moby/{id}/p.json")), "{}").unwrap();
        }
        // A third container's scope is empty, docker's is full.
        let e = cap("moby/c3", "moby/c3/p.json").unwrap_err();
        assert!(e.to_string().contains("/moby already holds 2"), "{e}");
        // Other tenants are not held by docker's part.
        cap("k8s.io/ns1", "k8s.io/ns1/p.json").unwrap();
        cap("raw/t1", "raw/t1/a/a.json").unwrap();
    }

    #[test]
    fn a_scoped_name_has_its_tenants_scope() {
        assert_eq!(
            tenant_scope("raw/0123abcd/web-1/web-1"),
            Path::new("raw/0123abcd")
        );
        assert_eq!(
            tenant_scope("raw/0123abcd/web-1/other"),
            Path::new("raw/0123abcd")
        );
        // A docker container's profiles are its own scope (its cap too).
        assert_eq!(tenant_scope("moby/0a1b2c/web"), Path::new("moby/0a1b2c"));
        assert_eq!(
            tenant_scope("k8s.io/team-a/web"),
            Path::new("k8s.io/team-a")
        );
    }

    /// Learned profiles name tenants' containers: the directory and the
    /// ones moat creates above it are 0700.
    #[test]
    fn learned_profile_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lib/moat/learned");
        ensure_dir(&dir).unwrap();
        for d in [&dir, &tmp.path().join("lib/moat"), &tmp.path().join("lib")] {
            let mode = fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }
}
