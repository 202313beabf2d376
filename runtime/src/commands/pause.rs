//! `moat pause`: freeze every process of a container.

use anyhow::{Context, Result};

use moat::runc_contract::Op;

use super::{load_container, Ctx};

pub fn pause(ctx: &Ctx, args: liboci_cli::Pause) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    moat::runc_contract::check(Op::Pause, &args.container_id, container.status())
        .map_err(anyhow::Error::msg)?;
    container
        .pause()
        .with_context(|| format!("cannot pause container {}", args.container_id))
}
