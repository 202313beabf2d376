//! `moat install`: registers moat with containerd (a CRI runtime handler)
//! and with docker (a runtime entry in daemon.json).
//!
//! The merge functions are pure: they take the current file's text and
//! return the new text, or [`Merge::Unchanged`] when the file already says
//! what moat needs (so a second run neither rewrites the file nor asks for
//! a restart). Only the entry moat owns is touched: every other key, and
//! for containerd's TOML every comment and the user's formatting, is kept.
//! [`apply_to_file`] is the thin I/O edge: backup once, write atomically,
//! never write when the merge fails.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use toml_edit::{DocumentMut, Item, Table};

/// Default containerd configuration file.
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// Default docker daemon configuration file.
pub const DOCKER_CONFIG: &str = "/etc/docker/daemon.json";
/// Where the installed moat binary is expected on a node.
pub const DEFAULT_BINARY: &str = "/usr/local/bin/moat";
/// The state root containerd's runc shim passes to moat (`--root`, with
/// the containerd namespace appended): apart from runc's and from the
/// `/run/moat` of direct use.
pub const DEFAULT_CONTAINERD_ROOT: &str = "/run/containerd/moat";
/// containerd's runc shim, which moat's runc-compatible CLI plugs into.
pub const RUNC_SHIM_TYPE: &str = "io.containerd.runc.v2";
/// The annotations moat reads, as a CRI pass-through pattern.
pub const ANNOTATION_PATTERN: &str = "moat.dev/*";
/// Suffix of the one backup made before the first change.
pub const BACKUP_SUFFIX: &str = ".moat-bak";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path} is not valid TOML, not touching it: {message}")]
    Toml { path: String, message: String },
    #[error("{path} is not valid JSON, not touching it: {message}")]
    Json { path: String, message: String },
    #[error("{path}: {what}, not touching it")]
    Shape { path: String, what: String },
    #[error("{path}: containerd config version {version} is not supported (moat knows versions 1, 2 and 3), not touching it")]
    Version { path: String, version: String },
    #[error("invalid {what}: {value:?} ({why})")]
    Argument {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// What a merge decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// The file already registers the runtime exactly as asked.
    Unchanged,
    /// The new file content.
    Changed(String),
}

/// A containerd CRI runtime handler (`runtimes.<handler>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdRuntime {
    /// The handler name pods select through a RuntimeClass.
    pub handler: String,
    /// The shim: `io.containerd.runc.v2` (moat behind the runc shim), or
    /// `io.containerd.moat.v2` (moat's own shim).
    pub runtime_type: String,
    /// String options of the handler (`options.<key>`), e.g. the runc
    /// shim's `BinaryName` and `Root`.
    pub options: Vec<(String, String)>,
    /// Annotation patterns the CRI plugin passes from pods and containers
    /// to the runtime (`pod_annotations`, `container_annotations`); by
    /// default it passes none, and moat's `moat.dev/<key>` annotations
    /// would never reach moat.
    pub annotations: Vec<String>,
    /// The shim binary by absolute path (`runtime_path`), instead of the
    /// one containerd derives from the runtime type; config version 3 only
    /// (see [`ContainerdRuntime::native_shim`]).
    pub runtime_path: Option<String>,
}

impl ContainerdRuntime {
    /// Handler `handler` running `binary` through containerd's runc shim,
    /// with state under `root`.
    pub fn through_runc_shim(handler: &str, binary: &str, root: &str) -> Self {
        ContainerdRuntime {
            handler: handler.to_string(),
            runtime_type: RUNC_SHIM_TYPE.to_string(),
            options: vec![
                ("BinaryName".to_string(), binary.to_string()),
                ("Root".to_string(), root.to_string()),
            ],
            annotations: vec![ANNOTATION_PATTERN.to_string()],
            runtime_path: None,
        }
    }

    /// Handler `handler` served by moat's own shim at `shim`, for
    /// containerd 2.x: registered as `runtime_type = "io.containerd.runc.v2"`
    /// with `runtime_path = shim`, because containerd 2's CRI plugin asks a
    /// handler for its features (the shim's `-info`: user namespaces,
    /// recursive read-only mounts, which decide what the kubelet sends it)
    /// only when its type is the runc shim's; the path makes containerd run
    /// moat's shim, which takes the runc shim's options (`BinaryName`,
    /// `Root`, checked against the operator's list). containerd 1.x's CRI
    /// starts a pod's sandbox with the type's own shim whatever the path
    /// says (the pause container would run under runc): [`merge_containerd`]
    /// writes this form only into a version 3 config, which only
    /// containerd 2.x reads.
    pub fn native_shim(handler: &str, shim: &str) -> Self {
        ContainerdRuntime {
            handler: handler.to_string(),
            runtime_type: RUNC_SHIM_TYPE.to_string(),
            options: Vec::new(),
            annotations: vec![ANNOTATION_PATTERN.to_string()],
            runtime_path: Some(shim.to_string()),
        }
    }
}

/// A docker runtime entry (`runtimes.<name>` in daemon.json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRuntime {
    pub name: String,
    pub path: String,
    /// Arguments docker passes before the command (`runtimeArgs`); none
    /// means the key is absent.
    pub runtime_args: Vec<String>,
}

/// A runtime name is used as a TOML/JSON key and on command lines, and
/// RuntimeClass handlers must be DNS labels: keep to that alphabet.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), InstallError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InstallError::Argument {
            what,
            value: name.to_string(),
            why: "use 1-63 lowercase letters, digits and '-', not starting or ending with '-'",
        })
    }
}

fn validate_absolute(what: &'static str, path: &str) -> Result<(), InstallError> {
    if Path::new(path).is_absolute() && !path.contains('\0') {
        Ok(())
    } else {
        Err(InstallError::Argument {
            what,
            value: path.to_string(),
            why: "must be an absolute path",
        })
    }
}

/// The table path of the CRI runtimes for each containerd config version.
fn runtimes_path(version: i64) -> Option<&'static [&'static str]> {
    match version {
        1 => Some(&["plugins", "cri", "containerd", "runtimes"]),
        2 => Some(&[
            "plugins",
            "io.containerd.grpc.v1.cri",
            "containerd",
            "runtimes",
        ]),
        3 => Some(&[
            "plugins",
            "io.containerd.cri.v1.runtime",
            "containerd",
            "runtimes",
        ]),
        _ => None,
    }
}

/// Walks (creating where missing) the standard tables `keys` below
/// `table`. Intermediate tables moat creates are implicit, so the file
/// gains only the headers of the tables that hold values.
fn subtable<'t>(
    mut table: &'t mut Table,
    keys: &[&str],
    file: &str,
) -> Result<&'t mut Table, InstallError> {
    let mut walked = String::new();
    for key in keys {
        if !walked.is_empty() {
            walked.push('.');
        }
        if key.contains('.') {
            walked.push_str(&format!("{key:?}"));
        } else {
            walked.push_str(key);
        }
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = match item {
            Item::Table(t) => t,
            Item::Value(toml_edit::Value::InlineTable(_)) => {
                return Err(InstallError::Shape {
                    path: file.to_string(),
                    what: format!(
                        "{walked} is an inline table; moat edits only standard [tables], rewrite it as one"
                    ),
                })
            }
            _ => {
                return Err(InstallError::Shape {
                    path: file.to_string(),
                    what: format!("{walked} is not a table"),
                })
            }
        };
    }
    Ok(table)
}

/// Makes the string array `table.key` contain every one of `wanted`
/// (appending what is missing, keeping what is there). Returns whether it
/// changed anything.
fn ensure_in_array(
    table: &mut Table,
    key: &str,
    wanted: &[String],
    file: &str,
) -> Result<bool, InstallError> {
    if wanted.is_empty() {
        return Ok(false);
    }
    let item = table
        .entry(key)
        .or_insert_with(|| toml_edit::value(toml_edit::Array::new()));
    let Some(array) = item.as_array_mut() else {
        return Err(InstallError::Shape {
            path: file.to_string(),
            what: format!("{key} of the runtime handler is not an array"),
        });
    };
    let mut changed = false;
    for w in wanted {
        if !array.iter().any(|v| v.as_str() == Some(w.as_str())) {
            array.push(w.as_str());
            changed = true;
        }
    }
    Ok(changed)
}

/// Registers `rt` in containerd's config (`text`; empty for a new file).
/// `file` names the file in errors.
pub fn merge_containerd(
    text: &str,
    rt: &ContainerdRuntime,
    file: &str,
) -> Result<Merge, InstallError> {
    validate_name("runtime handler name", &rt.handler)?;
    if rt.runtime_type.is_empty() {
        return Err(InstallError::Argument {
            what: "runtime type",
            value: rt.runtime_type.clone(),
            why: "must not be empty",
        });
    }
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| InstallError::Toml {
                path: file.to_string(),
                message: e.to_string().trim().replace('\n', " "),
            })?;
    let new_file = doc.as_table().is_empty();
    // containerd reads a file without `version` as version 1; a new file
    // gets the version every supported containerd (1.5+) reads: 2.
    let version = match doc.get("version") {
        None if new_file => {
            doc.insert("version", toml_edit::value(2));
            2
        }
        None => 1,
        Some(item) => match item.as_integer() {
            Some(v) => v,
            None => {
                return Err(InstallError::Version {
                    path: file.to_string(),
                    version: item.to_string().trim().to_string(),
                })
            }
        },
    };
    let Some(path) = runtimes_path(version) else {
        return Err(InstallError::Version {
            path: file.to_string(),
            version: version.to_string(),
        });
    };
    if let Some(shim) = &rt.runtime_path {
        validate_absolute("shim path", shim)?;
        if version < 3 {
            return Err(InstallError::Shape {
                path: file.to_string(),
                what: format!(
                    "a shim by path (runtime_path) needs containerd 2's config version 3, this is version {version}: containerd 1.x would start a pod's sandbox with the runc shim and runc; register moat's shim with --runtime-type io.containerd.moat.v2 there"
                ),
            });
        }
    }
    let runtimes = subtable(doc.as_table_mut(), path, file)?;
    let entry = subtable(runtimes, &[rt.handler.as_str()], file)?;
    let mut changed = false;
    if entry.get("runtime_type").and_then(|i| i.as_str()) != Some(rt.runtime_type.as_str()) {
        entry.insert("runtime_type", toml_edit::value(rt.runtime_type.clone()));
        changed = true;
    }
    // A handler without a path keeps the user's (the user's own shim).
    if let Some(shim) = &rt.runtime_path {
        if entry.get("runtime_path").and_then(|i| i.as_str()) != Some(shim.as_str()) {
            entry.insert("runtime_path", toml_edit::value(shim.clone()));
            changed = true;
        }
    }
    for key in ["pod_annotations", "container_annotations"] {
        changed |= ensure_in_array(entry, key, &rt.annotations, file)?;
    }
    if !rt.options.is_empty() {
        let options = subtable(entry, &["options"], file)?;
        for (key, value) in &rt.options {
            if options.get(key).and_then(|i| i.as_str()) != Some(value.as_str()) {
                options.insert(key, toml_edit::value(value.clone()));
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(Merge::Unchanged);
    }
    let mut out = doc.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(Merge::Changed(out))
}

/// Registers `rt` in docker's daemon.json (`text`; empty for a new file).
/// Sets `runtimes.<name>.path` and `runtimeArgs` (removed when `rt` has
/// none); every other key is kept. The output is pretty-printed JSON.
pub fn merge_docker(text: &str, rt: &DockerRuntime, file: &str) -> Result<Merge, InstallError> {
    validate_name("docker runtime name", &rt.name)?;
    validate_absolute("runtime path", &rt.path)?;
    let mut root: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(text).map_err(|e| InstallError::Json {
            path: file.to_string(),
            message: e.to_string(),
        })?
    };
    let shape = |what: &str| InstallError::Shape {
        path: file.to_string(),
        what: what.to_string(),
    };
    let top = root
        .as_object_mut()
        .ok_or_else(|| shape("the top level is not a JSON object"))?;
    let runtimes = top
        .entry("runtimes")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| shape("\"runtimes\" is not a JSON object"))?;
    let entry = runtimes
        .entry(rt.name.clone())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| shape(&format!("\"runtimes\".{:?} is not a JSON object", rt.name)))?;
    let want_path = Value::String(rt.path.clone());
    let want_args = (!rt.runtime_args.is_empty()).then(|| {
        Value::Array(
            rt.runtime_args
                .iter()
                .map(|a| Value::String(a.clone()))
                .collect(),
        )
    });
    if entry.get("path") == Some(&want_path) && entry.get("runtimeArgs") == want_args.as_ref() {
        return Ok(Merge::Unchanged);
    }
    entry.insert("path".to_string(), want_path);
    match want_args {
        Some(args) => {
            entry.insert("runtimeArgs".to_string(), args);
        }
        None => {
            entry.remove("runtimeArgs");
        }
    }
    let mut out = serde_json::to_string_pretty(&root).map_err(|e| InstallError::Json {
        path: file.to_string(),
        message: e.to_string(),
    })?;
    out.push('\n');
    Ok(Merge::Changed(out))
}

/// Allows docker's network hook in moat's policy (`text`: the policy
/// file's content, empty when there is none): dockerd's real path `exe`
/// goes into `hooks.allow`, restricted to the name docker runs it under
/// (`hooks.arg0`). Unchanged when the policy (for an empty text: the
/// embedded default) already allows it; otherwise the result is the file
/// (or the embedded default) with that one entry added, comments kept.
pub fn merge_policy_hook(text: &str, exe: &str, file: &str) -> Result<Merge, InstallError> {
    use crate::policy::{Policy, DEFAULT_POLICY_TOML, DOCKERD_HOOK_ARG0};
    validate_absolute("dockerd path", exe)?;
    let base = if text.trim().is_empty() {
        DEFAULT_POLICY_TOML
    } else {
        text
    };
    let invalid = |message: String| InstallError::Toml {
        path: file.to_string(),
        message,
    };
    let policy = Policy::from_toml(base).map_err(|e| invalid(e.to_string()))?;
    let allowed = policy.hooks.allow.iter().any(|p| p == exe)
        && policy
            .hooks
            .arg0
            .get(exe)
            .is_none_or(|names| names.iter().any(|n| n == DOCKERD_HOOK_ARG0));
    if allowed {
        return Ok(Merge::Unchanged);
    }
    let mut doc: DocumentMut = base
        .parse()
        .map_err(|e: toml_edit::TomlError| invalid(e.to_string()))?;
    let shape = |what: &str| InstallError::Shape {
        path: file.to_string(),
        what: what.to_string(),
    };
    let hooks = doc
        .entry("hooks")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| shape("[hooks] is not a table"))?;
    let allow = hooks
        .entry("allow")
        .or_insert(toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .ok_or_else(|| shape("hooks.allow is not an array"))?;
    if !allow.iter().any(|v| v.as_str() == Some(exe)) {
        allow.push(exe);
    }
    let arg0 = hooks
        .entry("arg0")
        .or_insert(toml_edit::value(toml_edit::InlineTable::new()))
        .as_table_like_mut()
        .ok_or_else(|| shape("hooks.arg0 is not a table"))?;
    let names = arg0
        .entry(exe)
        .or_insert(toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .ok_or_else(|| shape("a hooks.arg0 entry is not an array"))?;
    names.push(DOCKERD_HOOK_ARG0);
    let out = doc.to_string();
    Policy::from_toml(&out).map_err(|e| invalid(e.to_string()))?;
    Ok(Merge::Changed(out))
}

/// What [`apply_to_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing written: the file already said it.
    Unchanged,
    /// The file was written; `backup` is the copy made of the previous
    /// content (None when the file is new or a backup existed already).
    Written {
        path: PathBuf,
        backup: Option<PathBuf>,
        created: bool,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.display().to_string();
    move |source| InstallError::Io { op, path, source }
}

/// The backup path of `path` (`<path>.moat-bak`).
pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Reads `path` (missing = empty), runs `merge` on it and, if that changes
/// anything, writes the result: first a backup of the old file (once: an
/// existing backup is the pristine original and is kept), then the new
/// content through a temporary file renamed over the old one, keeping its
/// mode. A symlink is followed: the file it points to is updated. With
/// `dry_run` nothing is written and the result says what would be.
#[allow(
    clippy::disallowed_methods,
    reason = "the operator's daemon config, named on the command line: a symlinked config is updated where it points"
)]
pub fn apply_to_file(
    path: &Path,
    dry_run: bool,
    merge: impl FnOnce(&str, &str) -> Result<Merge, InstallError>,
) -> Result<(Applied, Option<String>), InstallError> {
    let target = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(io("cannot resolve", path)(e)),
    };
    let (text, existing_mode) = match fs::read(&target) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| InstallError::Shape {
                path: target.display().to_string(),
                what: "the file is not UTF-8 text".to_string(),
            })?;
            let mode = fs::metadata(&target)
                .map_err(io("cannot stat", &target))?
                .permissions()
                .mode()
                & 0o7777;
            (text, Some(mode))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(io("cannot read", &target)(e)),
    };
    let new_text = match merge(&text, &target.display().to_string())? {
        Merge::Unchanged => return Ok((Applied::Unchanged, None)),
        Merge::Changed(t) => t,
    };
    let created = existing_mode.is_none();
    let backup = backup_path(&target);
    let make_backup = !created && !backup.exists();
    if dry_run {
        return Ok((
            Applied::Written {
                path: target,
                backup: make_backup.then_some(backup),
                created,
            },
            Some(new_text),
        ));
    }
    let dir = target.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(io("cannot create directory", dir))?;
    if make_backup {
        fs::copy(&target, &backup).map_err(io("cannot back up to", &backup))?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".moat-install.")
        .tempfile_in(dir)
        .map_err(io("cannot create a temporary file in", dir))?;
    tmp.write_all(new_text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io("cannot write", tmp.path()))?;
    let mode = existing_mode.unwrap_or(0o644);
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .map_err(io("cannot set the mode of", tmp.path()))?;
    tmp.persist(&target)
        .map_err(|e| io("cannot replace", &target)(e.error))?;
    Ok((
        Applied::Written {
            path: target,
            backup: make_backup.then_some(backup),
            created,
        },
        Some(new_text),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moat() -> ContainerdRuntime {
        ContainerdRuntime::through_runc_shim("moat", "/usr/local/bin/moat", "/run/containerd/moat")
    }

    fn changed(m: Merge) -> String {
        match m {
            Merge::Changed(t) => t,
            Merge::Unchanged => panic!("expected a change"),
        }
    }

    #[test]
    fn containerd_new_file_gets_version_2_and_the_handler() {
        let out = changed(merge_containerd("", &moat(), "f").unwrap());
        let doc: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(doc["version"].as_integer(), Some(2));
        let h = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["moat"];
        assert_eq!(h["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(
            h["options"]["BinaryName"].as_str(),
            Some("/usr/local/bin/moat")
        );
        assert_eq!(h["options"]["Root"].as_str(), Some("/run/containerd/moat"));
        for key in ["pod_annotations", "container_annotations"] {
            assert_eq!(h[key].as_array().map(|a| a.len()), Some(1), "{key}: {out}");
            assert_eq!(h[key][0].as_str(), Some("moat.dev/*"));
        }
        // Only the tables holding values get headers.
        assert!(!out.contains("[plugins]\n"), "{out}");
        assert!(out.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat]"));
        // And a second merge sees nothing to do.
        assert_eq!(
            merge_containerd(&out, &moat(), "f").unwrap(),
            Merge::Unchanged
        );
    }

    const USER_CONFIG: &str = r#"# my node's containerd
version = 2
root = "/var/lib/containerd"   # keep this comment

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
"#;

    #[test]
    fn containerd_keeps_everything_else_byte_for_byte() {
        let out = changed(merge_containerd(USER_CONFIG, &moat(), "f").unwrap());
        assert!(out.starts_with(USER_CONFIG), "user text changed:\n{out}");
        let doc: toml::Value = toml::from_str(&out).unwrap();
        let rts = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert_eq!(
            rts["runc"]["options"]["SystemdCgroup"].as_bool(),
            Some(true)
        );
        assert_eq!(
            rts["moat"]["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
        assert_eq!(
            merge_containerd(&out, &moat(), "f").unwrap(),
            Merge::Unchanged
        );
    }

    #[test]
    fn containerd_updates_a_stale_entry_and_keeps_its_extra_options() {
        let text = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.moat]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.moat.options]
    BinaryName = "/opt/old/moat"
    SystemdCgroup = true
"#;
        let text = text.replace(
            "runtime_type = \"io.containerd.runc.v2\"\n",
            "runtime_type = \"io.containerd.runc.v2\"\n  pod_annotations = [\"example.com/*\"]\n",
        );
        let text = text.as_str();
        let out = changed(merge_containerd(text, &moat(), "f").unwrap());
        let doc: toml::Value = toml::from_str(&out).unwrap();
        let o = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["moat"]
            ["options"];
        assert_eq!(o["BinaryName"].as_str(), Some("/usr/local/bin/moat"));
        assert_eq!(o["Root"].as_str(), Some("/run/containerd/moat"));
        assert_eq!(o["SystemdCgroup"].as_bool(), Some(true));
        let h = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["moat"];
        let pod: Vec<_> = h["pod_annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(pod, ["example.com/*", "moat.dev/*"]);
    }

    #[test]
    fn containerd_versions_1_and_3_use_their_own_plugin_paths() {
        let v1 = changed(merge_containerd("oom_score = 0\n", &moat(), "f").unwrap());
        let doc: toml::Value = toml::from_str(&v1).unwrap();
        assert!(doc.get("version").is_none());
        assert_eq!(
            doc["plugins"]["cri"]["containerd"]["runtimes"]["moat"]["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
        let v3 = changed(merge_containerd("version = 3\n", &moat(), "f").unwrap());
        let doc: toml::Value = toml::from_str(&v3).unwrap();
        assert!(
            doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["moat"]
                .is_table()
        );
    }

    #[test]
    fn containerd_own_shim_handler_has_no_options() {
        let rt = ContainerdRuntime {
            handler: "moat-shim".into(),
            runtime_type: "io.containerd.moat.v2".into(),
            options: vec![],
            annotations: vec![],
            runtime_path: None,
        };
        let out = changed(merge_containerd("version = 2\n", &rt, "f").unwrap());
        assert!(!out.contains("options"), "{out}");
        assert!(out.contains("runtimes.moat-shim]"), "{out}");
        assert_eq!(merge_containerd(&out, &rt, "f").unwrap(), Merge::Unchanged);
    }

    /// containerd 2's CRI plugin reports a handler's features only for the
    /// runc shim's type: moat's shim goes in as that type with its path,
    /// and only into a version 3 config (containerd 1.x would start the
    /// pod's sandbox with runc).
    #[test]
    fn containerd_native_shim_by_path_only_in_version_3() {
        let rt =
            ContainerdRuntime::native_shim("moat-shim", "/usr/local/bin/containerd-shim-moat-v2");
        let out = changed(merge_containerd("version = 3\n", &rt, "f").unwrap());
        let doc: toml::Value = toml::from_str(&out).unwrap();
        let h =
            &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["moat-shim"];
        assert_eq!(h["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(
            h["runtime_path"].as_str(),
            Some("/usr/local/bin/containerd-shim-moat-v2")
        );
        assert!(h.get("options").is_none(), "{out}");
        assert_eq!(merge_containerd(&out, &rt, "f").unwrap(), Merge::Unchanged);
        // A moved shim is updated.
        let moved =
            ContainerdRuntime::native_shim("moat-shim", "/opt/moat/containerd-shim-moat-v2");
        let out = changed(merge_containerd(&out, &moved, "f").unwrap());
        assert!(
            out.contains("runtime_path = \"/opt/moat/containerd-shim-moat-v2\""),
            "{out}"
        );
        for text in ["version = 2\n", "", "oom_score = 0\n"] {
            let err = merge_containerd(text, &rt, "f").unwrap_err().to_string();
            assert!(
                err.contains("needs containerd 2's config version 3"),
                "{text:?}: {err}"
            );
        }
        let relative = ContainerdRuntime::native_shim("moat-shim", "containerd-shim-moat-v2");
        let err = merge_containerd("version = 3\n", &relative, "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn containerd_refuses_what_it_cannot_edit_safely() {
        let cases = [
            ("version = 2\n[plugins\n", "not valid TOML"),
            ("version = 9\n", "version 9 is not supported"),
            ("version = \"2\"\n", "is not supported"),
            ("version = 2\nplugins = 3\n", "plugins is not a table"),
            (
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncontainerd = { snapshotter = \"overlayfs\" }\n",
                "inline table",
            ),
            (
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = []\n",
                "runtimes is not a table",
            ),
            (
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat]\npod_annotations = \"x\"\n",
                "pod_annotations of the runtime handler is not an array",
            ),
        ];
        for (text, phrase) in cases {
            let e = merge_containerd(text, &moat(), "/etc/x.toml").unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(phrase), "{text:?}: {msg}");
            assert!(msg.contains("not touching it"), "{msg}");
        }
        let mut bad = moat();
        bad.handler = "Moat!".into();
        assert!(merge_containerd("", &bad, "f").is_err());
    }

    fn docker(args: &[&str]) -> DockerRuntime {
        DockerRuntime {
            name: "moat".into(),
            path: "/usr/local/bin/moat".into(),
            runtime_args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn docker_merge_keeps_other_keys_and_is_idempotent() {
        let text =
            r#"{"log-driver": "json-file", "runtimes": {"runc2": {"path": "/usr/bin/runc"}}}"#;
        let out = changed(merge_docker(text, &docker(&[]), "f").unwrap());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["log-driver"], "json-file");
        assert_eq!(v["runtimes"]["runc2"]["path"], "/usr/bin/runc");
        assert_eq!(
            v["runtimes"]["moat"],
            serde_json::json!({"path": "/usr/local/bin/moat"})
        );
        assert_eq!(
            merge_docker(&out, &docker(&[]), "f").unwrap(),
            Merge::Unchanged
        );
    }

    #[test]
    fn docker_runtime_args_are_set_and_removed() {
        let learn = DockerRuntime {
            name: "moat-learn".into(),
            ..docker(&["--learn", "/var/lib/moat/learn"])
        };
        let out = changed(merge_docker("", &learn, "f").unwrap());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["runtimes"]["moat-learn"]["runtimeArgs"],
            serde_json::json!(["--learn", "/var/lib/moat/learn"])
        );
        assert_eq!(merge_docker(&out, &learn, "f").unwrap(), Merge::Unchanged);
        let plain = DockerRuntime {
            runtime_args: vec![],
            ..learn
        };
        let out = changed(merge_docker(&out, &plain, "f").unwrap());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["runtimes"]["moat-learn"].get("runtimeArgs").is_none());
    }

    #[test]
    fn docker_refuses_malformed_input() {
        let cases = [
            ("{\"runtimes\": ", "not valid JSON"),
            ("[1, 2]", "top level is not a JSON object"),
            ("{\"runtimes\": []}", "\"runtimes\" is not a JSON object"),
            (
                "{\"runtimes\": {\"moat\": \"x\"}}",
                "\"moat\" is not a JSON object",
            ),
        ];
        for (text, phrase) in cases {
            let msg = merge_docker(text, &docker(&[]), "f")
                .unwrap_err()
                .to_string();
            assert!(msg.contains(phrase), "{text}: {msg}");
        }
        let mut relative = docker(&[]);
        relative.path = "moat".into();
        assert!(merge_docker("", &relative, "f").is_err());
    }

    #[test]
    fn apply_backs_up_once_and_leaves_bad_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "version = 2\n# mine\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let rt = moat();
        let merge = |t: &str, f: &str| merge_containerd(t, &rt, f);
        let (first, _) = apply_to_file(&path, false, merge).unwrap();
        let backup = backup_path(&path);
        assert_eq!(
            first,
            Applied::Written {
                path: path.clone(),
                backup: Some(backup.clone()),
                created: false
            }
        );
        assert_eq!(
            fs::read_to_string(&backup).unwrap(),
            "version = 2\n# mine\n"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (second, _) = apply_to_file(&path, false, merge).unwrap();
        assert_eq!(second, Applied::Unchanged);
        // A different binary: written again, the original backup kept.
        let other = ContainerdRuntime::through_runc_shim("moat", "/opt/moat", "/run/x");
        let (third, _) = apply_to_file(&path, false, |t: &str, f: &str| {
            merge_containerd(t, &other, f)
        })
        .unwrap();
        assert!(matches!(third, Applied::Written { backup: None, .. }));
        assert_eq!(
            fs::read_to_string(&backup).unwrap(),
            "version = 2\n# mine\n"
        );

        let bad = dir.path().join("bad.toml");
        fs::write(&bad, "version = [").unwrap();
        assert!(apply_to_file(&bad, false, merge).is_err());
        assert_eq!(fs::read_to_string(&bad).unwrap(), "version = [");
        assert!(!backup_path(&bad).exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn policy_hook_merge_allows_dockerd_once_and_keeps_the_rest() {
        // Debian's dockerd: the embedded default allows it, no file needed.
        assert_eq!(
            merge_policy_hook("", "/usr/sbin/dockerd", "p").unwrap(),
            Merge::Unchanged
        );
        // Elsewhere: the default plus that path, restricted to its hook name.
        let Merge::Changed(new) = merge_policy_hook("", "/opt/docker/dockerd", "p").unwrap() else {
            panic!("no change");
        };
        let p = crate::policy::Policy::from_toml(&new).unwrap();
        assert!(p.hooks.allow.contains(&"/opt/docker/dockerd".to_string()));
        assert_eq!(
            p.hooks.arg0["/opt/docker/dockerd"],
            vec!["libnetwork-setkey".to_string()]
        );
        assert!(new.contains("# moat operator policy"), "comments kept");
        assert_eq!(
            merge_policy_hook(&new, "/opt/docker/dockerd", "p").unwrap(),
            Merge::Unchanged
        );
        // An operator file without [hooks] gets one; its other keys stay.
        let Merge::Changed(new) =
            merge_policy_hook("[resources]\npids_limit = 10\n", "/opt/docker/dockerd", "p")
                .unwrap()
        else {
            panic!("no change");
        };
        let p = crate::policy::Policy::from_toml(&new).unwrap();
        assert_eq!(p.resources.pids_limit, 10);
        assert_eq!(p.hooks.allow, vec!["/opt/docker/dockerd".to_string()]);
        assert!(merge_policy_hook("[hooks]\nallow = 1\n", "/usr/sbin/dockerd", "p").is_err());
        assert!(merge_policy_hook("", "dockerd", "p").is_err());
    }

    #[test]
    fn apply_dry_run_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        let rt = docker(&[]);
        let (applied, text) =
            apply_to_file(&path, true, |t: &str, f: &str| merge_docker(t, &rt, f)).unwrap();
        assert!(matches!(applied, Applied::Written { created: true, .. }));
        assert!(text.unwrap().contains("/usr/local/bin/moat"));
        assert!(!path.exists());
    }
}
