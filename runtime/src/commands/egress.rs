//! `moat egress <id>`: per-container counters of blocked outbound
//! connection attempts (egress blocking, threat T18).

use std::os::fd::AsRawFd;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde_json::json;

use super::{load_container, Ctx};

#[derive(Args, Debug)]
pub struct EgressArgs {
    /// Container id.
    pub container_id: String,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn egress(ctx: &Ctx, args: EgressArgs) -> Result<()> {
    let id = &args.container_id;
    load_container(ctx, id)?;
    // Opened through the init's pinned, proven /proc entry: never another
    // process's namespace after pid reuse.
    let ns = moat::pod::init_network_namespace(&ctx.root()?, id)
        .ok_or_else(|| anyhow!("container {id} has no running process"))?;
    let netns = std::path::PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
    if !moat::netns::has_table(&netns) {
        anyhow::bail!(
            "egress blocking is off for container {id}: its network namespace has no moat rules"
        );
    }
    let (packets, bytes) = moat::netns::blocked(&netns)
        .with_context(|| format!("cannot read the egress counters of {id}"))?;
    match args.format.as_str() {
        "json" => println!(
            "{}",
            json!({"id": id, "blockedPackets": packets, "blockedBytes": bytes})
        ),
        _ => println!("{id}: {packets} blocked outbound packets ({bytes} bytes)"),
    }
    Ok(())
}
