//! `moat exec`: a new process in a running container, hardened like the
//! init process: capabilities cut to the container's allowlist, no new
//! privileges, the container's seccomp filter, and the in-container
//! self-check before execve.

use std::fs;

use anyhow::{anyhow, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::Process;

use moat::harden::harden_process;
use moat::policy::{canonical_capability_name, Policy};
use moat::report::Report;
use moat::selfcheck::{capability_mask, SelfCheck};

use super::{load_container, load_moat_state, Ctx};

pub fn exec(ctx: &Ctx, args: liboci_cli::Exec) -> Result<i32> {
    let id = &args.container_id;
    let container = load_container(ctx, id)?;
    let root = ctx.root()?;
    let moat_state = load_moat_state(&root, id)?
        .ok_or_else(|| anyhow!("container {id} was not created by moat"))?;
    // The container's effective allowlist (operator policy + its annotations).
    let mut policy = Policy::default();
    policy.capabilities.allow = moat_state.allowed_capabilities.clone();
    let mut report = Report::default();

    let process_path = match &args.process {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read process file {}", path.display()))?;
            let process: Process = serde_json::from_str(&text)
                .with_context(|| format!("malformed process file {}", path.display()))?;
            let hardened = harden_process(&process, &policy, &mut report);
            let private = moat::state::private_dir(&root, id);
            let out = private.join(format!("exec-{}.json", std::process::id()));
            moat::rootfs::write_atomic(&out, &serde_json::to_vec(&hardened)?)
                .context("cannot write hardened process file")?;
            Some(out)
        }
        None => None,
    };
    for c in &report.changes {
        tracing::info!(id, rule = c.rule.name(), field = %c.field, before = %c.before, after = %c.after, "hardened exec");
    }
    let allowed: Vec<String> = moat_state.allowed_capabilities.clone();
    let extra_caps: Vec<String> = args
        .cap
        .iter()
        .filter(|c| {
            let keep = allowed.contains(&canonical_capability_name(c));
            if !keep {
                tracing::warn!(id, capability = %c, "exec --cap dropped: not in the container's allowlist");
            }
            keep
        })
        .cloned()
        .collect();

    let user = args.user.map(|(u, _)| u);
    let group = args.user.and_then(|(_, g)| g);
    let executor = SelfCheck {
        allowed_caps: capability_mask(&allowed),
    };
    super::create::redirect_null_stdio();
    let result = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(&root)
        .context("invalid --root")?
        .with_console_socket(args.console_socket.as_ref())
        .with_pid_file(args.pid_file.as_ref())
        .context("invalid --pid-file")?
        .with_preserved_fds(args.preserve_fds)
        .as_tenant()
        .with_detach(args.detach)
        .with_cwd(args.cwd.as_ref())
        .with_env(args.env.clone().into_iter().collect())
        .with_process(process_path.as_ref())
        .with_no_new_privs(true)
        .with_container_args(args.command.clone())
        .with_additional_gids(args.additional_gids.clone())
        .with_user(user)
        .with_group(group)
        .with_capabilities(extra_caps)
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup.clone())
        .build();
    if let Some(p) = &process_path {
        let _ = fs::remove_file(p);
    }
    drop(container);
    let pid = result
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot exec in container {id}"))?;
    if args.detach {
        return Ok(0);
    }
    Ok(match waitpid(pid, None)? {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 0,
    })
}
