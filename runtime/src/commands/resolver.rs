//! `moat resolver`: the node's DNS resolver for egress name entries (see
//! `moat::resolver`). Started detached by the first `moat create` that
//! needs it; `--worker` is the process the supervisor runs and restarts.

use anyhow::Result;
use clap::Args;

use super::Ctx;

#[derive(Args, Debug)]
pub struct ResolverArgs {
    /// Serve (the supervisor runs this and restarts it when it dies).
    #[arg(long)]
    pub worker: bool,
}

pub fn resolver(ctx: &Ctx, args: ResolverArgs) -> Result<()> {
    let root = ctx.root()?;
    if args.worker {
        moat::resolver::run_worker(&root)
    } else {
        moat::resolver::run_supervisor(&root)
    }
}
