//! `moat run`: create, start, wait (forwarding signals), delete.

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SigSet;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{create_container, CreateOpts};
use super::{remove_moat_state, Ctx};

pub fn run(ctx: &Ctx, args: liboci_cli::Run) -> Result<i32> {
    let signals = SigSet::all();
    let mut container = create_container(ctx, &create_opts!(args, detach: args.detach))?;
    // Block signals for forwarding only now: the container's init was
    // forked during create and must not inherit a blocked mask (its
    // workload would never see SIGTERM or its own signals).
    if !args.detach {
        signals
            .thread_block()
            .context("cannot block signals for forwarding")?;
    }
    let root = ctx.root()?;
    let policy = ctx.policy()?;
    let started = container
        .start()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot start container {}", args.container_id));
    if let Err(e) = started {
        let _ = container.delete(true);
        let _ = remove_moat_state(&root, &args.container_id, &policy);
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    let pid = container
        .pid()
        .ok_or_else(|| anyhow!("container {} has no init pid", args.container_id))?;
    let code = wait_forwarding(pid, &signals);
    if !args.keep {
        moat::container::delete::delete_libcontainer_part(&mut container, true)
            .with_context(|| format!("cannot delete container {}", args.container_id))?;
        super::remove_moat_state_after(&root, &args.container_id, &policy, true)?;
    }
    code
}

/// Waits for `init` to exit, forwarding every signal moat receives to it.
/// Returns its exit code (128+signal when killed, like a shell).
fn wait_forwarding(init: Pid, signals: &SigSet) -> Result<i32> {
    loop {
        match signals.wait().context("sigwait")? {
            Signal::SIGCHLD => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, code)) if p == init => return Ok(code),
                    Ok(WaitStatus::Signaled(p, sig, _)) if p == init => return Ok(128 + sig as i32),
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            },
            // Window changes and Go-runtime preemption signals are not the
            // container's business.
            Signal::SIGWINCH | Signal::SIGURG => {}
            sig => {
                let _ = kill(init, sig);
            }
        }
    }
}
