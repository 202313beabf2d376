//! `moat metrics`: Prometheus text of every running container's egress
//! counters under --root (issue 18, T18), for node-exporter's textfile
//! collector. The work is in `moat::metrics`.
//!
//! `moat metrics ID` prints one container's (what moat's shim reads for
//! containerd's task metrics): the same samples `gather` gives for it,
//! without entering every other container's network namespace.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{load_container, Ctx};

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Only this container (default: every container under --root).
    pub container_id: Option<String>,
}

pub fn metrics(ctx: &Ctx, args: MetricsArgs) -> Result<()> {
    let root = ctx.root()?;
    let containers = match args.container_id {
        None => moat::metrics::gather(&root)?,
        Some(id) => {
            load_container(ctx, &id)?;
            // As `moat::metrics::gather` reads each container: the init's
            // pinned, proven /proc entry, never another process's
            // namespace after pid reuse.
            let blocked = moat::pod::init_network_namespace(&root, &id).and_then(|ns| {
                let netns = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
                moat::netns::blocked(&netns).ok()
            });
            let dns = moat::resolver_stats::read(&root, &id);
            match (blocked, dns) {
                (None, None) => Vec::new(),
                // Fields `gather` may add later stay at their defaults.
                #[allow(clippy::needless_update)]
                (blocked, dns) => vec![moat::metrics::ContainerMetrics {
                    labels: moat::resolver_stats::Labels::of(&root, &id).unwrap_or_default(),
                    id,
                    blocked,
                    dns,
                    ..Default::default()
                }],
            }
        }
    };
    print!("{}", moat::metrics::prometheus_text(&containers));
    Ok(())
}
