//! What moat's resolver did, per container, where operators look (issue 18,
//! T18): counts for `moat metrics` and structured events for the log and
//! `moat events`.
//!
//! The resolver (`crate::resolver`) is one process per node and `moat
//! metrics` another, so the counts cross through files: the worker keeps
//! each container's counts in memory and a flusher thread writes those
//! that changed, at most once per [`FLUSH_EVERY`], to
//! `<resolver dir>/stats/<id>` (a temporary file renamed over it: a reader
//! sees the old or the new counts, never half). The directory is under
//! moat's private root (0700, root's). A restarted worker (the supervisor
//! restarts it) starts each container's counts from its file, so they
//! survive a crash, less what the dead worker had not written yet (at most
//! the last [`FLUSH_EVERY`]). Files were chosen over a request on the
//! control socket because they survive the worker and because `moat
//! metrics` then never waits on a busy resolver.
//!
//! Each refused name is an event: one JSON line in the resolver's log and
//! in `<resolver dir>/events/<id>`, which `moat events <id>` follows. The
//! resolver rate-limits them per container (its `LogLimit`); the file is
//! bounded too ([`EVENTS_MAX_BYTES`], then it is rotated to `<id>.1`).
//!
//! Pod, namespace and container names come from the engine's annotations
//! in the container's hardened config.json (`io.kubernetes.cri.*`, CRI-O's
//! `io.kubernetes.pod.*`). They are what the spec says, so for a raw bundle
//! whatever its author wrote: informational only; the `id` label is the
//! container moat knows. Values are bounded and escaped where printed.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// How often the worker writes changed counts (the most a crash loses, and
/// how far `moat metrics` may lag behind).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A container's events file is rotated (to `<id>.1`) beyond this size.
pub const EVENTS_MAX_BYTES: u64 = 256 * 1024;

/// The longest name value a label carries (a Kubernetes name is at most
/// 253 bytes).
const LABEL_MAX: usize = 253;

/// One container's resolver counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCounts {
    /// Queries for names no entry allows: answered REFUSED, never forwarded.
    pub refused: u64,
    /// Queries for allowed names answered from an upstream (their
    /// addresses were in the sets before the answer was delivered).
    pub allowed: u64,
    /// Allowed names answered SERVFAIL because no upstream answered, or its
    /// answer did not answer the question.
    pub upstream_errors: u64,
    /// Allowed names answered SERVFAIL because the answer's addresses
    /// could not be added to the container's nftables sets.
    pub set_errors: u64,
}

/// What the resolver did with one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Refused,
    Allowed,
    UpstreamError,
    SetError,
}

impl DnsCounts {
    fn add(&mut self, outcome: Outcome) {
        let n = match outcome {
            Outcome::Refused => &mut self.refused,
            Outcome::Allowed => &mut self.allowed,
            Outcome::UpstreamError => &mut self.upstream_errors,
            Outcome::SetError => &mut self.set_errors,
        };
        *n = n.saturating_add(1);
    }
}

/// The names an engine gave a container (Kubernetes pod, namespace,
/// container), where it gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Labels {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Labels {
    /// The names from a spec's annotations: containerd's CRI keys first,
    /// then CRI-O's. Empty values count as absent; values are cut to
    /// [`LABEL_MAX`] bytes (at a character boundary).
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Labels {
        let pick = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| annotations.get(*k).filter(|v| !v.is_empty()))
                .map(|v| bounded(v))
        };
        Labels {
            namespace: pick(&[
                "io.kubernetes.cri.sandbox-namespace",
                "io.kubernetes.pod.namespace",
            ]),
            pod: pick(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
            container: pick(&[
                "io.kubernetes.cri.container-name",
                "io.kubernetes.container.name",
            ]),
        }
    }

    /// The labels of container `id` under `root`, from its hardened
    /// config.json (None: no such file or not a spec).
    pub fn of(root: &Path, id: &str) -> Option<Labels> {
        let config = crate::container::paths::ContainerPaths::new(root, id).config;
        let text = fs::read(config).ok()?;
        #[derive(Deserialize)]
        struct Annotated {
            #[serde(default)]
            annotations: Option<HashMap<String, String>>,
        }
        let spec: Annotated = serde_json::from_slice(&text).ok()?;
        Some(Labels::from_annotations(
            &crate::engine_bundle::label_annotations(&spec.annotations.unwrap_or_default()),
        ))
    }

    /// The labels as (key, value) pairs, in a fixed order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("namespace", &self.namespace),
            ("pod", &self.pod),
            ("container", &self.container),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

fn bounded(v: &str) -> String {
    if v.len() <= LABEL_MAX {
        return v.to_string();
    }
    let mut end = LABEL_MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_string()
}

/// `<resolver dir>/stats`.
pub fn stats_dir(root: &Path) -> PathBuf {
    crate::resolver::dir(root).join("stats")
}

/// `<resolver dir>/events`.
pub fn events_dir(root: &Path) -> PathBuf {
    crate::resolver::dir(root).join("events")
}

/// Container `id`'s counts as last written by the resolver (None: the
/// resolver does not serve it, or has not counted anything for it yet).
pub fn read(root: &Path, id: &str) -> Option<DnsCounts> {
    let text = fs::read(stats_dir(root).join(id)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The worker's counts, per container.
struct Entry {
    counts: DnsCounts,
    /// What the file holds.
    written: DnsCounts,
    labels: Option<Labels>,
}

struct Stats {
    root: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
}

static STATS: OnceLock<Stats> = OnceLock::new();

/// Sets the counting up in the resolver worker (once): makes the
/// directories, removes files of containers no longer registered (deleted
/// while no worker ran), and starts the flusher thread. Before it, the
/// other functions of this module do nothing.
pub fn init(root: &Path) {
    let stats = Stats {
        root: root.to_path_buf(),
        entries: Mutex::new(HashMap::new()),
    };
    if STATS.set(stats).is_err() {
        return;
    }
    let registrations = crate::resolver::registrations(root);
    for dir in [stats_dir(root), events_dir(root)] {
        if let Err(e) = crate::state::create_private_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "moat resolver: cannot create its statistics directory");
        }
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // `<id>`, `.<id>.tmp` (stats) or `<id>.1` (events).
            let ids = [
                Some(name.as_str()),
                name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")),
                name.strip_suffix(".1"),
            ];
            let registered = ids
                .into_iter()
                .flatten()
                .any(|id| !id.is_empty() && registrations.join(id).exists());
            if !registered {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let spawned = std::thread::Builder::new()
        .name("resolver-stats".into())
        .stack_size(128 * 1024)
        .spawn(|| loop {
            std::thread::sleep(FLUSH_EVERY);
            flush();
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "moat resolver: cannot start the statistics thread; counts are not written");
    }
}

/// Counts one query of container `id`.
pub fn count(id: &str, outcome: Outcome) {
    with_entry(id, |_, e| e.counts.add(outcome));
}

/// Runs `f` on container `id`'s entry (made from its file on first use).
fn with_entry<T>(id: &str, f: impl FnOnce(&Path, &mut Entry) -> T) -> Option<T> {
    let stats = STATS.get()?;
    let mut entries = stats.entries.lock().unwrap_or_else(|p| p.into_inner());
    let entry = entries.entry(id.to_string()).or_insert_with(|| {
        let counts = read(&stats.root, id).unwrap_or_default();
        Entry {
            counts,
            written: counts,
            labels: None,
        }
    });
    Some(f(&stats.root, entry))
}

/// Writes the counts that changed since they were last written. Holds the
/// lock while writing, so that [`forget`] cannot be undone by a late write.
fn flush() {
    let Some(stats) = STATS.get() else { return };
    let mut entries = stats.entries.lock().unwrap_or_else(|p| p.into_inner());
    let dir = stats_dir(&stats.root);
    for (id, e) in entries.iter_mut() {
        if e.counts == e.written {
            continue;
        }
        match write_atomic(&dir, id, &serde_json::to_vec(&e.counts).unwrap_or_default()) {
            Ok(()) => e.written = e.counts,
            Err(err) => {
                tracing::error!(container = %id, error = %err, "moat resolver: cannot write its counts")
            }
        }
    }
}

fn write_atomic(dir: &Path, id: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{id}.tmp"));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, dir.join(id))
}

/// Forgets container `id` (detached): its counts and its files.
pub fn forget(id: &str) {
    let Some(stats) = STATS.get() else { return };
    let mut entries = stats.entries.lock().unwrap_or_else(|p| p.into_inner());
    entries.remove(id);
    remove_files(&stats.root, id);
}

/// Removes container `id`'s counts and events files.
pub fn remove_files(root: &Path, id: &str) {
    // Ids name files here: never a path.
    if crate::container::validate_id(id).is_err() {
        return;
    }
    let _ = fs::remove_file(stats_dir(root).join(id));
    let _ = fs::remove_file(events_dir(root).join(id));
    let _ = fs::remove_file(events_dir(root).join(format!("{id}.1")));
}

/// The usual name of a query type (RFC 3597's `TYPEn` for others).
pub fn qtype_name(qtype: u16) -> String {
    match qtype {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

/// The event of one refused name: the `data` of a `moat events` line and
/// the fields of a resolver log line.
pub fn refused_event_data(id: &str, labels: &Labels, name: &str, qtype: u16) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("id".into(), Value::from(id));
    for (k, v) in labels.pairs() {
        data.insert(k.into(), Value::from(v));
    }
    data.insert("name".into(), Value::from(name));
    data.insert("qtype".into(), Value::from(qtype_name(qtype)));
    data.insert("verdict".into(), Value::from("refused"));
    data
}

/// Records that container `id` asked for `name` (type `qtype`), which no
/// entry allows: one JSON line in the resolver's log (its stderr) and one
/// in the container's events file. The caller rate-limits.
pub fn refused_event(id: &str, name: &str, qtype: u16, refused_total: u64) {
    let labels = labels_of(id);
    let data = refused_event_data(id, &labels, name, qtype);
    let mut extra = Map::new();
    extra.insert("refused_total".into(), Value::from(refused_total));
    write_event(
        id,
        "egress-dns",
        "moat resolver: name refused (not in the egress allowlist)",
        data,
        extra,
    );
}

/// The event of one refused connection attempt: the `data` of a `moat
/// events` line and the fields of a resolver log line. `name` is the name
/// this namespace last looked up that answered `daddr`, if any.
pub fn refused_connection_data(
    id: &str,
    labels: &Labels,
    refused: &crate::nflog::Refused,
    name: Option<&str>,
) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("id".into(), Value::from(id));
    for (k, v) in labels.pairs() {
        data.insert(k.into(), Value::from(v));
    }
    data.insert("daddr".into(), Value::from(refused.daddr.to_string()));
    if let Some(port) = refused.dport {
        data.insert("dport".into(), Value::from(port));
    }
    data.insert("proto".into(), Value::from(refused.proto_name()));
    if let Some(name) = name {
        data.insert("name".into(), Value::from(name));
    }
    data.insert("verdict".into(), Value::from("refused"));
    data
}

/// Records a connection attempt of container `id` that moat's table
/// refused (logged by the kernel within the table's rate limit): one JSON
/// line in the resolver's log and one in the container's events file.
pub fn refused_connection_event(id: &str, refused: &crate::nflog::Refused, name: Option<&str>) {
    let labels = labels_of(id);
    let data = refused_connection_data(id, &labels, refused, name);
    write_event(
        id,
        "egress-connect",
        "moat: connection refused (not in the egress allowlist)",
        data,
        Map::new(),
    );
}

/// Container `id`'s labels, read once from its config.json.
fn labels_of(id: &str) -> Labels {
    with_entry(id, |root, e| {
        if e.labels.is_none() {
            e.labels = Labels::of(root, id);
        }
        e.labels.clone().unwrap_or_default()
    })
    .unwrap_or_default()
}

/// Writes one event of container `id`: a line in the resolver's log
/// (runc's JSON log keys, the event's fields, `extra`) and a line of `moat
/// events`'s shape in the container's events file.
fn write_event(
    id: &str,
    kind: &str,
    msg: &str,
    data: Map<String, Value>,
    extra: Map<String, Value>,
) {
    let time = crate::logging::rfc3339_now();
    let mut line = Map::new();
    line.insert("level".into(), Value::from("warning"));
    line.insert("msg".into(), Value::from(msg));
    line.insert("time".into(), Value::from(time.clone()));
    line.insert("event".into(), Value::from(kind));
    for (k, v) in data.iter().chain(extra.iter()) {
        line.insert(k.clone(), v.clone());
    }
    let _ = std::io::stderr().write_all(format!("{}\n", Value::Object(line)).as_bytes());

    let Some(stats) = STATS.get() else { return };
    let event = json!({"type": kind, "id": id, "time": time, "data": data});
    if let Err(e) = append_event(&events_dir(&stats.root), id, &event.to_string()) {
        tracing::error!(container = %id, error = %e, "moat resolver: cannot write the event");
    }
}

fn append_event(dir: &Path, id: &str, line: &str) -> std::io::Result<()> {
    let path = dir.join(id);
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    if f.metadata()?.len() > EVENTS_MAX_BYTES {
        fs::rename(&path, dir.join(format!("{id}.1")))?;
    }
    Ok(())
}

/// Follows container `id`'s events file from its end as of this call:
/// returns a function that, called repeatedly, returns the complete lines
/// written since (the file may not exist yet, and may be rotated).
pub fn follow_events(root: &Path, id: &str) -> impl FnMut() -> Vec<String> {
    let path = events_dir(root).join(id);
    let start = fs::metadata(&path).map(|m| (m.ino(), m.len())).ok();
    let mut ino = start.map(|s| s.0);
    let mut offset = start.map(|s| s.1).unwrap_or(0);
    let mut partial = String::new();
    move || {
        let Ok(mut f) = fs::File::open(&path) else {
            return Vec::new();
        };
        let Ok(md) = f.metadata() else {
            return Vec::new();
        };
        if ino != Some(md.ino()) || md.len() < offset {
            // A new file (first event, or rotated): from its start.
            ino = Some(md.ino());
            offset = 0;
            partial.clear();
        }
        let mut text = String::new();
        if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_string(&mut text).is_err() {
            return Vec::new();
        }
        offset += text.len() as u64;
        partial.push_str(&text);
        let mut lines: Vec<String> = partial.split('\n').map(str::to_string).collect();
        partial = lines.pop().unwrap_or_default();
        lines.retain(|l| !l.is_empty());
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_count_where_they_belong() {
        let mut c = DnsCounts::default();
        for o in [
            Outcome::Refused,
            Outcome::Refused,
            Outcome::Allowed,
            Outcome::UpstreamError,
            Outcome::SetError,
            Outcome::SetError,
            Outcome::SetError,
        ] {
            c.add(o);
        }
        assert_eq!(
            c,
            DnsCounts {
                refused: 2,
                allowed: 1,
                upstream_errors: 1,
                set_errors: 3
            }
        );
        let text = serde_json::to_vec(&c).unwrap();
        assert_eq!(serde_json::from_slice::<DnsCounts>(&text).unwrap(), c);
    }

    #[test]
    fn labels_come_from_the_engines_annotations() {
        let a = |kv: &[(&str, &str)]| -> HashMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cri = Labels::from_annotations(&a(&[
            ("io.kubernetes.cri.sandbox-namespace", "ci"),
            ("io.kubernetes.cri.sandbox-name", "job-7"),
            ("io.kubernetes.cri.container-name", "build"),
            ("io.kubernetes.pod.name", "ignored"),
        ]));
        assert_eq!(
            cri.pairs(),
            vec![
                ("namespace", "ci"),
                ("pod", "job-7"),
                ("container", "build")
            ]
        );
        let crio = Labels::from_annotations(&a(&[
            ("io.kubernetes.pod.name", "p"),
            ("io.kubernetes.cri.sandbox-name", ""),
        ]));
        assert_eq!(crio.pairs(), vec![("pod", "p")]);
        assert!(Labels::from_annotations(&HashMap::new()).pairs().is_empty());
        let long = "é".repeat(200);
        let l = Labels::from_annotations(&a(&[("io.kubernetes.pod.name", &long)]));
        let pod = l.pod.unwrap();
        assert!(pod.len() <= LABEL_MAX && long.starts_with(&pod), "{pod}");
    }

    #[test]
    fn a_refused_name_is_a_structured_event() {
        let labels = Labels {
            pod: Some("job-7".into()),
            ..Default::default()
        };
        let data = refused_event_data("c1", &labels, "x.attacker.test", 28);
        assert_eq!(
            Value::Object(data),
            json!({"id": "c1", "pod": "job-7", "name": "x.attacker.test", "qtype": "AAAA", "verdict": "refused"})
        );
        assert_eq!(qtype_name(1), "A");
        assert_eq!(qtype_name(999), "TYPE999");
    }

    #[test]
    fn events_are_followed_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let events = events_dir(root);
        fs::create_dir_all(&events).unwrap();
        append_event(&events, "c1", "old").unwrap();
        let mut next = follow_events(root, "c1");
        assert!(next().is_empty(), "only what comes after");
        append_event(&events, "c1", "one").unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(events.join("c1"))
            .unwrap()
            .write_all(b"tw")
            .unwrap();
        assert_eq!(next(), vec!["one"]);
        fs::OpenOptions::new()
            .append(true)
            .open(events.join("c1"))
            .unwrap()
            .write_all(b"o\n")
            .unwrap();
        assert_eq!(next(), vec!["two"]);
        // Rotated: the new file is read from its start.
        fs::rename(events.join("c1"), events.join("c1.1")).unwrap();
        append_event(&events, "c1", "three").unwrap();
        assert_eq!(next(), vec!["three"]);
        // The size bound rotates.
        let big = "x".repeat(EVENTS_MAX_BYTES as usize);
        append_event(&events, "c1", &big).unwrap();
        assert!(events.join("c1.1").exists() && !events.join("c1").exists());
    }
}
