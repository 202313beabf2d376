//! `moat kill`: signal a container's init process (or, with --all, all).

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;

use super::{load_container, Ctx};
use crate::KillArgs;

pub fn kill(ctx: &Ctx, args: KillArgs) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    let signal: Signal = args
        .signal
        .as_str()
        .try_into()
        .map_err(|e| anyhow!("invalid signal {:?}: {e}", args.signal))?;
    // runc's wording: engines match it (containerd's runc shim reads
    // "container not running" as "the process already finished", so a
    // StopContainer racing the container's own exit succeeds).
    if container.status() == ContainerStatus::Stopped {
        bail!("container not running");
    }
    container.kill(signal, args.all).map_err(|e| {
        let e = anyhow!("{e}");
        if container.status() == ContainerStatus::Stopped {
            e.context("container not running")
        } else {
            e.context(format!("cannot signal container {}", args.container_id))
        }
    })?;
    Ok(())
}
