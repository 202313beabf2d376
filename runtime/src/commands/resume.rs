//! `moat resume`: thaw a paused container.

use anyhow::{Context, Result};

use super::{load_container, Ctx};

pub fn resume(ctx: &Ctx, args: liboci_cli::Resume) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    container
        .resume()
        .with_context(|| format!("cannot resume container {}", args.container_id))
}
