//! `moat metrics`: Prometheus text of every running container's egress
//! counters under --root (issue 18, T18), for node-exporter's textfile
//! collector. The work is in `moat::metrics`.

use anyhow::Result;

use super::Ctx;

pub fn metrics(ctx: &Ctx) -> Result<()> {
    let root = ctx.root()?;
    let containers = moat::metrics::gather(&root)?;
    print!("{}", moat::metrics::prometheus_text(&containers));
    Ok(())
}
