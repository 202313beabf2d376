//! `moat`: a runc-compatible OCI runtime that sandboxes every container.
//! This file only parses arguments, sets up logging and dispatches; each
//! command lives in `commands/<name>.rs`.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// A sandboxed OCI container runtime: every container gets a user
/// namespace, a seccomp filter, a read-only root, dropped capabilities and
/// masked /proc, whatever its config.json asks for.
#[derive(Parser, Debug)]
#[command(name = "moat", version, about, long_about = None)]
struct Opts {
    #[command(flatten)]
    global: liboci_cli::GlobalOpts,

    /// Operator policy file (default /etc/moat/policy.toml; the embedded
    /// default when that is absent).
    #[arg(long, global = true, env = "MOAT_POLICY")]
    policy: Option<PathBuf>,

    /// Learn a seccomp profile for each container created: written to
    /// DIR/<container id>.json (for docker's runtimeArgs; see docs/seccomp.md).
    #[arg(long, global = true, value_name = "DIR")]
    learn_dir: Option<PathBuf>,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container from a bundle (hardened), without starting it.
    Create(liboci_cli::Create),
    /// Start a created container's process.
    Start(liboci_cli::Start),
    /// Create, start and (unless --detach) wait for a container, then delete it.
    Run(liboci_cli::Run),
    /// Print a container's state as JSON.
    State(liboci_cli::State),
    /// Send a signal (default SIGTERM) to a container's init process.
    Kill(KillArgs),
    /// Delete a container and everything moat set up for it.
    Delete(liboci_cli::Delete),
    /// Run a new (hardened) process inside a running container.
    Exec(liboci_cli::Exec),
    /// List the processes of a container.
    Ps(liboci_cli::Ps),
    /// List containers under --root.
    List(liboci_cli::List),
    /// Freeze a container's processes.
    Pause(liboci_cli::Pause),
    /// Thaw a paused container.
    Resume(liboci_cli::Resume),
    /// Print container events and resource statistics.
    Events(liboci_cli::Events),
    /// Change a container's resource limits (within the policy).
    Update(liboci_cli::Update),
    /// Print the OCI features JSON: what moat supports and enforces.
    Features(liboci_cli::Features),
    /// Write a starter config.json.
    Spec(liboci_cli::Spec),
    /// Show, without creating anything, what moat would change in a bundle's config.json.
    Explain(commands::explain::ExplainArgs),
    /// Print the hardening report of a container moat created.
    Report(commands::report::ReportArgs),
    /// Print the count of blocked outbound connection attempts.
    Egress(commands::egress::EgressArgs),
    /// Print egress counters of every container (or one) as Prometheus text.
    Metrics(commands::metrics::MetricsArgs),
    /// Run the escape and abuse probes under moat (and runc) and print a verdict.
    Selftest(commands::selftest::SelftestArgs),
    /// Learn a seccomp profile from a bundle's behaviour, or merge learned profiles.
    Learn(commands::learn::LearnArgs),
    /// Register moat with containerd (CRI runtime handler) or docker.
    Install(commands::install::InstallArgs),
    /// Runs one allowed OCI hook after checking its executable again
    /// (what create rewrites every allowed hook to; not for people).
    #[command(hide = true)]
    Hook(commands::hook::HookArgs),
    /// The node's DNS resolver for egress name entries (started by create;
    /// not for people).
    #[command(hide = true)]
    Resolver(commands::resolver::ResolverArgs),
}

/// runc's `kill`: the signal is optional and defaults to SIGTERM.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Container id.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new(), required = true)]
    pub container_id: String,
    /// Signal name or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Send the signal to every process in the container.
    #[arg(short, long)]
    pub all: bool,
}

/// Commands whose process enters a container (create, run and learn fork
/// the container's init from this binary; exec joins a running container).
/// selftest runs its containers through a child `moat run`, which seals
/// itself.
fn enters_container(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Create(_) | Cmd::Run(_) | Cmd::Exec(_) | Cmd::Learn(_)
    )
}

/// The CVE-2019-5736 defence (see `moat::self_exe`): re-execute from a
/// read-only, detached mount of the binary; on kernels without
/// open_tree/mount_setattr, from a sealed memfd copy instead.
fn protect_self_exe() -> std::io::Result<()> {
    match moat::self_exe::reexec_from_read_only_mount() {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EINVAL | libc::EPERM)
            ) =>
        {
            seal_self()
        }
        Err(e) => Err(e),
    }
}

/// Re-executes from a sealed copy of the binary. Sealing a memfd against
/// writes fails with EBUSY while the kernel still holds references to the
/// pages the copy just wrote (seen under load, about once in a few hundred
/// runs); a fresh copy a moment later succeeds, so retry a few times.
fn seal_self() -> std::io::Result<()> {
    let mut attempt = 0;
    loop {
        match pentacle::ensure_sealed() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
            }
            other => return other,
        }
    }
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    // Enough descriptors, or one line now rather than an abort mid-create.
    if let Err(e) = moat::fd_limit::prepare() {
        eprintln!("moat: {e}");
        return ExitCode::FAILURE;
    }
    // CVE-2019-5736: a container process could reopen /proc/<moat>/exe and
    // overwrite the runtime binary. Re-exec from a read-only mount first,
    // for the commands whose processes a container can reach. The others
    // (start, state, kill, delete, …) never enter a container and skip
    // the extra exec.
    if enters_container(&opts.cmd) {
        if let Err(e) = protect_self_exe() {
            eprintln!("moat: cannot protect /proc/self/exe (CVE-2019-5736): {e}");
            return ExitCode::FAILURE;
        }
    }
    let format = match moat::logging::LogFormat::parse(opts.global.log_format.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("moat: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = moat::logging::init(opts.global.log.as_deref(), format, opts.global.debug) {
        eprintln!("moat: cannot open log file: {e}");
        return ExitCode::FAILURE;
    }
    tracing::debug!(phase = moat::phase::EXEC, args = ?std::env::args().collect::<Vec<_>>(), "moat started");

    let ctx = commands::Ctx {
        root: opts
            .global
            .root
            .clone()
            .unwrap_or_else(|| PathBuf::from(commands::DEFAULT_ROOT)),
        systemd_cgroup: opts.global.systemd_cgroup,
        policy_path: opts.policy.clone(),
        learn: opts
            .learn_dir
            .clone()
            .map(commands::learn::LearnTarget::Dir),
        policy_read: Default::default(),
    };
    let result: anyhow::Result<i32> = match opts.cmd {
        Cmd::Create(a) => commands::create::create(&ctx, a).map(|_| 0),
        Cmd::Start(a) => commands::start::start(&ctx, a).map(|_| 0),
        Cmd::Run(a) => commands::run::run(&ctx, a),
        Cmd::State(a) => commands::state::state(&ctx, a).map(|_| 0),
        Cmd::Kill(a) => commands::kill::kill(&ctx, a).map(|_| 0),
        Cmd::Delete(a) => commands::delete::delete(&ctx, a).map(|_| 0),
        Cmd::Exec(a) => commands::exec::exec(&ctx, a),
        Cmd::Ps(a) => commands::ps::ps(&ctx, a).map(|_| 0),
        Cmd::List(a) => commands::list::list(&ctx, a).map(|_| 0),
        Cmd::Pause(a) => commands::pause::pause(&ctx, a).map(|_| 0),
        Cmd::Resume(a) => commands::resume::resume(&ctx, a).map(|_| 0),
        Cmd::Events(a) => commands::events::events(&ctx, a).map(|_| 0),
        Cmd::Update(a) => commands::update::update(&ctx, a).map(|_| 0),
        Cmd::Features(_) => commands::features::features(&ctx).map(|_| 0),
        Cmd::Spec(a) => commands::spec::spec(a).map(|_| 0),
        Cmd::Explain(a) => commands::explain::explain(&ctx, a),
        Cmd::Report(a) => commands::report::report(&ctx, a).map(|_| 0),
        Cmd::Egress(a) => commands::egress::egress(&ctx, a).map(|_| 0),
        Cmd::Metrics(a) => commands::metrics::metrics(&ctx, a).map(|_| 0),
        Cmd::Selftest(a) => commands::selftest::selftest(&ctx, a),
        Cmd::Learn(a) => commands::learn::learn(&ctx, a),
        Cmd::Install(a) => commands::install::install(a),
        Cmd::Hook(a) => commands::hook::hook(a),
        Cmd::Resolver(a) => commands::resolver::resolver(&ctx, a).map(|_| 0),
    }
    .context("moat");
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // One line, runc-style, so containerd shows it to the user.
            let msg = format!("{e:#}");
            tracing::error!("{msg}");
            if opts.global.log.is_some() {
                eprintln!("{msg}");
            }
            // runc's own code where it has one (`exec` failures: 255).
            moat::runc_contract::exit_code(&e).map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}
