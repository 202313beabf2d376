//! `moat resume`: thaw a paused container.

use anyhow::{Context, Result};

use moat::runc_contract::Op;

use super::{load_container, Ctx};

pub fn resume(ctx: &Ctx, args: liboci_cli::Resume) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    moat::runc_contract::check(Op::Resume, &args.container_id, container.status())
        .map_err(anyhow::Error::msg)?;
    container
        .resume()
        .with_context(|| format!("cannot resume container {}", args.container_id))
}
