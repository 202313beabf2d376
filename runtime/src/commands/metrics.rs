//! `moat metrics`: Prometheus text of every running container's egress
//! counters under --root (issue 18, T18), for node-exporter's textfile
//! collector. The work is in `moat::metrics`.
//!
//! `moat metrics ID` prints one container's (what moat's shim reads for
//! containerd's task metrics): `moat::metrics::collect`, the same samples
//! `gather` gives for it, without entering every other container's
//! network namespace.

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
            moat::metrics::collect(&root, &id).into_iter().collect()
        }
    };
    print!("{}", moat::metrics::prometheus_text(&containers));
    Ok(())
}
