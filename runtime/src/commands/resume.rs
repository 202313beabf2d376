//! `moat resume`: thaw a paused container.

use anyhow::{Context, Result};

use moat::runc_contract::Op;

use super::{load_container, load_moat_state, Ctx};

pub fn resume(ctx: &Ctx, args: liboci_cli::Resume) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    let moat_state = load_moat_state(&ctx.root()?, &args.container_id)?;
    moat::container::refresh_status(&mut container, moat_state.as_ref());
    moat::runc_contract::check(Op::Resume, &args.container_id, container.status())
        .map_err(anyhow::Error::msg)?;
    moat::container::cgroup_ops::resume(&mut container)
        .with_context(|| format!("cannot resume container {}", args.container_id))
}
