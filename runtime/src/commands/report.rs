//! `moat report <id>`: the hardening report of a container moat created:
//! every change made to its spec and why, and how the sandbox was built.

use anyhow::{anyhow, bail, Result};
use clap::Args;

use super::{load_moat_state, validate_id, Ctx};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Container id.
    pub container_id: String,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn report(ctx: &Ctx, args: ReportArgs) -> Result<()> {
    validate_id(&args.container_id)?;
    let root = ctx.root()?;
    let state = load_moat_state(&root, &args.container_id)?
        .ok_or_else(|| anyhow!("container {} does not exist", args.container_id))?;
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&state.report)?),
        "text" => {
            println!(
                "moat hardening report for {} (bundle {}): {} changes",
                state.id,
                state.bundle.display(),
                state.report.changes.len()
            );
            print!("{}", state.report);
        }
        other => bail!("unknown format {other:?} (expected text or json)"),
    }
    Ok(())
}
