//! `moat pause`: freeze every process of a container.

use anyhow::{Context, Result};

use super::{load_container, Ctx};

pub fn pause(ctx: &Ctx, args: liboci_cli::Pause) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    container
        .pause()
        .with_context(|| format!("cannot pause container {}", args.container_id))
}
