//! Structured logs in runc's shapes.
//!
//! `--log-format json` writes one JSON object per line with runc's keys
//! (`level`, `msg`, `time`) plus the event's fields, so containerd's runc
//! shim can show moat's last error to the user. `text` writes
//! `time level msg key=value…`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("text") {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

enum Sink {
    Stderr,
    File(File),
}

struct RuncLayer {
    format: LogFormat,
    max: Level,
    sink: Mutex<Sink>,
}

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// Date and time of day, UTC, of `since_epoch`, without pulling in a date
/// crate: "YYYY-MM-DDTHH:MM:SS", no zone suffix.
fn utc_datetime(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// RFC 3339 (UTC, whole seconds) for a time since the epoch.
pub fn rfc3339(since_epoch: std::time::Duration) -> String {
    format!("{}Z", utc_datetime(since_epoch))
}

/// RFC 3339 UTC time now, with nanoseconds (runc's log timestamps).
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}Z", utc_datetime(d), d.subsec_nanos())
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        // libcgroups warns once per absent v1 controller on every command;
        // that is host trivia, not the user's problem.
        if level > Level::ERROR
            && self.max < Level::DEBUG
            && event.metadata().target().starts_with("libcgroups")
        {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut map = fields.0;
        let msg = map
            .remove("message")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let level_name = level.as_str().to_ascii_lowercase();
        let line = match self.format {
            LogFormat::Json => {
                let mut out = Map::new();
                out.insert("level".into(), Value::from(level_name));
                out.insert("msg".into(), Value::from(msg));
                out.insert("time".into(), Value::from(rfc3339_now()));
                for (k, v) in map {
                    out.entry(k).or_insert(v);
                }
                let mut s = Value::Object(out).to_string();
                s.push('\n');
                s
            }
            LogFormat::Text => {
                let mut s = format!("{} {:5} {}", rfc3339_now(), level.as_str(), msg);
                for (k, v) in map {
                    let _ = match v {
                        Value::String(v) => write!(s, " {k}={v:?}"),
                        v => write!(s, " {k}={v}"),
                    };
                }
                s.push('\n');
                s
            }
        };
        if let Ok(mut sink) = self.sink.lock() {
            let _ = match &mut *sink {
                Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
                Sink::File(f) => f.write_all(line.as_bytes()),
            };
        }
    }
}

/// Installs the global subscriber. With a log file, info and above go to
/// it (containerd keeps it per container); on stderr only warnings, so
/// interactive use stays quiet. `--debug` lowers both to debug.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let (sink, max) = match log {
        Some(path) => (
            // Never through a link the bundle's owner planted (T35).
            Sink::File(crate::host_file::open_log_append(path)?),
            Level::INFO,
        ),
        None => (Sink::Stderr, Level::WARN),
    };
    let max = if debug { Level::DEBUG } else { max };
    let layer = RuncLayer {
        format,
        max,
        sink: Mutex::new(sink),
    };
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 30, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], "T");
        assert!(t.ends_with('Z'));
        assert!(t.starts_with("20"));
    }

    #[test]
    fn formats_parse() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        assert!(LogFormat::parse(Some("xml")).is_err());
    }
}
