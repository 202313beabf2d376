//! `moat metrics` (issue 18, T18): Prometheus text of every container's
//! egress counters under a state root, for node-exporter's textfile
//! collector: packets moat's rules refused (nftables' counter in the
//! container's namespace) and what moat's resolver did with its lookups
//! (`crate::resolver_stats`).
//!
//! Every sample carries `id` (the container) and, where the engine gave
//! them in the spec's annotations, `namespace`, `pod` and `container`
//! (names; see `resolver_stats::Labels`).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::resolver_stats::{DnsCounts, Labels};

/// One container's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMetrics {
    pub id: String,
    pub labels: Labels,
    /// Packets and bytes moat's egress rules refused (None: no moat table,
    /// egress off or the host's network).
    pub blocked: Option<(u64, u64)>,
    /// The resolver's counts (None: no name entries, or nothing counted).
    pub dns: Option<DnsCounts>,
}

/// The counters of every container under `root` that has any.
pub fn gather(root: &Path) -> std::io::Result<Vec<ContainerMetrics>> {
    let mut entries: Vec<_> = fs::read_dir(root)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for entry in entries {
        let id = entry.file_name().to_string_lossy().to_string();
        if id == crate::state::PRIVATE_DIR || !entry.path().join("state.json").exists() {
            continue;
        }
        out.extend(collect(root, &id));
    }
    Ok(out)
}

/// The counters of container `id` under `root`, if it has any (what
/// `gather` reads for each container; `moat metrics ID` and the shim's
/// task metrics read one). Through the init's pinned, proven /proc entry:
/// never another process's namespace after pid reuse.
pub fn collect(root: &Path, id: &str) -> Option<ContainerMetrics> {
    let blocked = crate::pod::init_network_namespace(root, id).and_then(|ns| {
        let netns = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
        crate::netns::blocked(&netns).ok()
    });
    let dns = crate::resolver_stats::read(root, id);
    if blocked.is_none() && dns.is_none() {
        return None;
    }
    Some(ContainerMetrics {
        labels: Labels::of(root, id).unwrap_or_default(),
        id: id.to_string(),
        blocked,
        dns,
    })
}

/// A label value in the exposition format's escaping.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One series of a metric family: the family's name, a fixed label of the
/// series (the errors' `kind`), the family's help text (printed once per
/// name) and the value.
struct Series {
    name: &'static str,
    label: Option<(&'static str, &'static str)>,
    help: &'static str,
    value: fn(&ContainerMetrics) -> Option<u64>,
}

const SERIES: &[Series] = &[
    Series {
        name: "moat_egress_blocked_packets_total",
        label: None,
        help: "Outbound connection attempts refused by moat's egress rules, one per TCP SYN or datagram (connections, DNS, metadata endpoints).",
        value: |c| c.blocked.map(|b| b.0),
    },
    Series {
        name: "moat_egress_blocked_bytes_total",
        label: None,
        help: "Bytes of outbound packets refused by moat's egress rules.",
        value: |c| c.blocked.map(|b| b.1),
    },
    Series {
        name: "moat_egress_dns_refused_total",
        label: None,
        help: "DNS queries for names the egress allowlist does not allow, answered REFUSED by moat's resolver and never forwarded.",
        value: |c| c.dns.map(|d| d.refused),
    },
    Series {
        name: "moat_egress_dns_allowed_total",
        label: None,
        help: "DNS queries for allowed names answered from an upstream resolver (their addresses allowed before the answer was delivered).",
        value: |c| c.dns.map(|d| d.allowed),
    },
    Series {
        name: "moat_egress_dns_errors_total",
        label: Some(("kind", "upstream")),
        help: "DNS queries for allowed names answered SERVFAIL by moat's resolver: kind=upstream no upstream answered (or not to the question), kind=set the answer's addresses could not be added to the container's nftables sets.",
        value: |c| c.dns.map(|d| d.upstream_errors),
    },
    Series {
        name: "moat_egress_dns_errors_total",
        label: Some(("kind", "set")),
        help: "",
        value: |c| c.dns.map(|d| d.set_errors),
    },
];

/// The Prometheus text exposition (version 0.0.4) of the containers'
/// counters. A family without samples still has its HELP and TYPE lines.
pub fn prometheus_text(containers: &[ContainerMetrics]) -> String {
    let mut out = String::new();
    let mut last = "";
    for series in SERIES {
        let (metric, help) = (series.name, series.help);
        if metric != last {
            out.push_str(&format!(
                "# HELP {metric} {help}\n# TYPE {metric} counter\n"
            ));
            last = metric;
        }
        for c in containers {
            let Some(v) = (series.value)(c) else { continue };
            let mut labels = vec![format!("id=\"{}\"", escape(&c.id))];
            for (k, val) in c.labels.pairs() {
                labels.push(format!("{k}=\"{}\"", escape(val)));
            }
            if let Some((k, val)) = series.label {
                labels.push(format!("{k}=\"{val}\""));
            }
            out.push_str(&format!("{metric}{{{}}} {v}\n", labels.join(",")));
        }
    }
    out
}

/// Checks `text` against the exposition format as far as moat writes it:
/// every sample `name{label="value",…} value` belongs to a family whose
/// `# TYPE` came before it, families are contiguous and declared once,
/// label names are valid and values properly escaped, no two samples
/// share name and labels, values are numbers. Returns the samples as
/// (name, labels, value). For tests of `moat metrics` (unit and
/// integration).
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let valid_name = |s: &str, colon: bool| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    let mut typed: Vec<String> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: &str| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (kind, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if !valid_name(name, true) {
                return Err(at("bad metric name"));
            }
            match kind {
                "HELP" => {
                    if helped.iter().any(|h| h == name) {
                        return Err(at("second HELP"));
                    }
                    helped.push(name.to_string());
                }
                "TYPE" => {
                    if typed.iter().any(|t| t == name) {
                        return Err(at("second TYPE"));
                    }
                    if !matches!(
                        words.next(),
                        Some("counter" | "gauge" | "histogram" | "summary" | "untyped")
                    ) {
                        return Err(at("bad type"));
                    }
                    if samples.iter().any(|s| s.name == name) {
                        return Err(at("TYPE after its samples"));
                    }
                    typed.push(name.to_string());
                }
                _ => {}
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(at("no value")),
        };
        if !valid_name(name, true) {
            return Err(at("bad metric name"));
        }
        if typed.last().map(String::as_str) != Some(name) {
            return Err(at("sample outside its family (no TYPE just before)"));
        }
        let mut labels = Vec::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                // label name
                let start = chars
                    .peek()
                    .map(|(i, _)| *i)
                    .ok_or_else(|| at("unterminated labels"))?;
                if body[start..].starts_with('}') {
                    break start;
                }
                let eq = body[start..]
                    .find('=')
                    .ok_or_else(|| at("label without ="))?
                    + start;
                let key = &body[start..eq];
                if !valid_name(key, false) {
                    return Err(at("bad label name"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(at("bad escape")),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) | None => return Err(at("unterminated label value")),
                        Some((_, c)) => value.push(c),
                    }
                }
                labels.push((key.to_string(), value));
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => break i,
                    _ => return Err(at("expected , or }")),
                }
            };
            rest = &body[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value"))?;
        let value: f64 = value.trim().parse().map_err(|_| at("value not a number"))?;
        let sample = Sample {
            name: name.to_string(),
            labels,
            value,
        };
        if samples
            .iter()
            .any(|s| s.name == sample.name && s.labels == sample.labels)
        {
            return Err(at("duplicate sample"));
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// One sample of the exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Vec<ContainerMetrics> {
        vec![
            ContainerMetrics {
                id: "a\"b".into(),
                labels: Labels {
                    namespace: Some("ci".into()),
                    pod: Some("job\\7\n".into()),
                    container: Some("build".into()),
                },
                blocked: Some((3, 180)),
                dns: Some(DnsCounts {
                    refused: 2,
                    allowed: 5,
                    upstream_errors: 1,
                    set_errors: 0,
                }),
            },
            ContainerMetrics {
                id: "plain".into(),
                blocked: Some((0, 0)),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn metrics_are_valid_prometheus_text() {
        let text = prometheus_text(&two());
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let find = |name: &str, id: &str, kind: Option<&str>| {
            samples
                .iter()
                .find(|s| s.name == name && s.label("id") == Some(id) && s.label("kind") == kind)
                .map(|s| s.value)
        };
        assert_eq!(
            find("moat_egress_blocked_packets_total", "a\"b", None),
            Some(3.0)
        );
        assert_eq!(
            find("moat_egress_blocked_bytes_total", "a\"b", None),
            Some(180.0)
        );
        assert_eq!(
            find("moat_egress_dns_refused_total", "a\"b", None),
            Some(2.0)
        );
        assert_eq!(
            find("moat_egress_dns_allowed_total", "a\"b", None),
            Some(5.0)
        );
        assert_eq!(
            find("moat_egress_dns_errors_total", "a\"b", Some("upstream")),
            Some(1.0)
        );
        assert_eq!(
            find("moat_egress_dns_errors_total", "a\"b", Some("set")),
            Some(0.0)
        );
        assert_eq!(
            find("moat_egress_blocked_packets_total", "plain", None),
            Some(0.0)
        );
        assert_eq!(find("moat_egress_dns_refused_total", "plain", None), None);
        let s = samples
            .iter()
            .find(|s| s.label("id") == Some("a\"b"))
            .unwrap();
        assert_eq!(s.label("pod"), Some("job\\7\n"));
        assert_eq!(s.label("namespace"), Some("ci"));
        assert_eq!(s.label("container"), Some("build"));
        assert!(text.contains("# TYPE moat_egress_dns_errors_total counter\n"));
        assert_eq!(
            text.matches("# TYPE moat_egress_dns_errors_total").count(),
            1
        );
        // Families are declared even without containers.
        let empty = prometheus_text(&[]);
        assert!(parse_exposition(&empty).unwrap().is_empty());
        assert_eq!(empty.matches("# TYPE ").count(), 5);
    }

    #[test]
    fn the_parser_rejects_what_prometheus_would() {
        for bad in [
            "x_total 1\n",
            "# TYPE x_total counter\nx_total{id=\"a} 1\n",
            "# TYPE x_total counter\nx_total{id=a} 1\n",
            "# TYPE x_total counter\nx_total{id=\"a\\q\"} 1\n",
            "# TYPE x_total counter\nx_total{id=\"a\"} one\n",
            "# TYPE x_total counter\nx_total{id=\"a\"} 1\nx_total{id=\"a\"} 2\n",
            "# TYPE x_total counter\n# TYPE y_total counter\nx_total 1\n",
            "# TYPE x_total counter\n# TYPE x_total counter\n",
            "# TYPE x_total countr\n",
            "# TYPE x_total counter\nx_total{1d=\"a\"} 1\n",
        ] {
            assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
        }
        let ok =
            "# HELP x_total h\n# TYPE x_total counter\nx_total{a=\"1\",b=\"x,}\"} 2\nx_total 3\n";
        assert_eq!(parse_exposition(ok).unwrap().len(), 2);
    }
}
