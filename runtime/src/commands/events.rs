//! `moat events`: container events and resource statistics (docker stats).

use anyhow::{Context, Result};

use super::{load_container, Ctx};

pub fn events(ctx: &Ctx, args: liboci_cli::Events) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    container
        .events(args.interval, args.stats)
        .with_context(|| format!("cannot read events of container {}", args.container_id))
}
