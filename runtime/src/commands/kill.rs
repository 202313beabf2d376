//! `moat kill`: signal a container's init process (or, with --all, all).

use anyhow::{anyhow, bail, Result};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;

use super::{load_container, load_moat_state, Ctx};
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
    let moat_state = load_moat_state(&ctx.root()?, &args.container_id)?;
    moat::container::refresh_status(&mut container, moat_state.as_ref());
    if container.status() == ContainerStatus::Stopped {
        if args.all {
            // runc signals what is left in the cgroup and succeeds: the
            // init's children in a pod's shared PID namespace outlive it.
            let number = signal_number(&args.signal)
                .ok_or_else(|| anyhow!("invalid signal {:?}", args.signal))?;
            let signal = nix::sys::signal::Signal::try_from(number)
                .map_err(|e| anyhow!("invalid signal {:?}: {e}", args.signal))?;
            // The learn recorder (T39) is spared: it ends by itself once
            // the container's processes are gone, profile written.
            let private =
                moat::container::ContainerPaths::new(&ctx.root()?, &args.container_id).private_dir;
            let recorder = moat::learn::live_recorder_pid(&private);
            moat::container::signal_stopped_container(&container, signal, recorder);
            return Ok(());
        }
        bail!("container not running");
    }
    if !args.all {
        // Through a pidfd of the init moat started, never by the pid alone,
        // which a later process may hold (T33).
        let init = moat::container::live_init(&container, moat_state.as_ref())
            .ok_or_else(|| anyhow!("container not running"))?;
        let number = signal_number(&args.signal)
            .ok_or_else(|| anyhow!("invalid signal {:?}", args.signal))?;
        return match init.send_signal(number) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => bail!("container not running"),
            Err(e) => {
                Err(anyhow!(e).context(format!("cannot signal container {}", args.container_id)))
            }
        };
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

/// The number of a signal given as runc takes it (`9`, `KILL`, `SIGKILL`,
/// any case), already accepted by libcontainer's parser.
fn signal_number(text: &str) -> Option<libc::c_int> {
    if let Ok(n) = text.parse::<libc::c_int>() {
        return Some(n);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as libc::c_int)
}

#[cfg(test)]
mod tests {
    #[test]
    fn signal_numbers() {
        for (text, n) in [("9", 9), ("KILL", 9), ("sigterm", 15), ("SIGUSR1", 10)] {
            assert_eq!(super::signal_number(text), Some(n), "{text}");
        }
        assert_eq!(super::signal_number("NOPE"), None);
    }
}
