//! `moat metrics`: Prometheus text of every running container's egress
//! counters under --root (issue 18, T18), for node-exporter's textfile
//! collector.

use std::fs;
use std::os::fd::AsRawFd;

use anyhow::Result;

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
        // Through the init's pinned, proven /proc entry: never another
        // process's namespace after pid reuse.
        let Some(ns) = moat::pod::init_network_namespace(&root, &id) else {
            continue;
        };
        let netns = std::path::PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
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
