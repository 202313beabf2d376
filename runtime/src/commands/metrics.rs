//! `moat metrics`: Prometheus text of every running container's egress
//! counters under --root (issue 18, T18), for node-exporter's textfile
//! collector.

use std::fs;

use anyhow::Result;
use libcontainer::container::Container;

use super::Ctx;

pub fn metrics(ctx: &Ctx) -> Result<()> {
    let root = ctx.root()?;
    let mut entries: Vec<_> = fs::read_dir(&root)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    let mut counters = Vec::new();
    for entry in entries {
        let id = entry.file_name().to_string_lossy().to_string();
        if id == moat::state::PRIVATE_DIR || !entry.path().join("state.json").exists() {
            continue;
        }
        let Ok(mut c) = Container::load(entry.path()) else {
            continue;
        };
        let _ = c.refresh_status();
        let Some(pid) = c.pid() else {
            continue;
        };
        let netns = std::path::PathBuf::from(format!("/proc/{}/ns/net", pid.as_raw()));
        // A container without moat's table (egress off, host network) has
        // no counters to report.
        if let Ok((packets, bytes)) = moat::netns::blocked(&netns) {
            counters.push(moat::egress::ContainerCounters {
                id,
                blocked_packets: packets,
                blocked_bytes: bytes,
            });
        }
    }
    print!("{}", moat::egress::prometheus_text(&counters));
    Ok(())
}
