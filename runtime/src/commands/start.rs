//! `moat start`: run the created container's process.

use anyhow::{Context, Result};

use moat::runc_contract::Op;

use super::{load_container, Ctx};

pub fn start(ctx: &Ctx, args: liboci_cli::Start) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    moat::runc_contract::check(Op::Start, &args.container_id, container.status())
        .map_err(anyhow::Error::msg)?;
    container
        .start()
        .with_context(|| format!("cannot start container {}", args.container_id))
}
