//! `moat learn`: run a bundle while recording the syscalls it makes and
//! write a seccomp profile that allows only those (`--bundle B -o FILE`),
//! or merge learned profiles (`--merge A B… [-o FILE]`). What `create`
//! does for a learning container is in `moat::container::learn`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use moat::learn::profile;

use super::Ctx;
use moat::container::create::{create_container, CreateOpts};
pub use moat::container::learn::LearnTarget;
use moat::container::remove_moat_state;

#[derive(Args, Debug)]
pub struct LearnArgs {
    /// The bundle to run while learning (config.json and rootfs).
    #[arg(short, long, value_name = "DIR", required_unless_present = "merge")]
    pub bundle: Option<PathBuf>,
    /// Where to write the profile (with --merge: standard output when absent).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Stop the workload after this long (30, 30s, 5m, 1h); by default it
    /// runs to completion.
    #[arg(long, value_parser = parse_duration, conflicts_with = "merge")]
    pub duration: Option<Duration>,
    /// Id of the learning container (default moat-learn-<pid>).
    #[arg(long, conflicts_with = "merge")]
    pub id: Option<String>,
    /// Merge learned profiles into one that allows what any of them allows.
    #[arg(long, num_args = 1.., value_name = "PROFILE", conflicts_with = "bundle")]
    pub merge: Vec<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30, 30s, 5m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?} is not a duration like 30, 30s, 5m or 1h")),
    };
    if secs == 0 {
        return Err("the duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

pub fn learn(ctx: &Ctx, args: LearnArgs) -> Result<i32> {
    if !args.merge.is_empty() {
        return merge_files(&args.merge, args.output.as_deref());
    }
    learn_bundle(ctx, args)
}

fn merge_files(files: &[PathBuf], output: Option<&Path>) -> Result<i32> {
    let mut inputs = Vec::new();
    for f in files {
        let text = fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let origin = f.display().to_string();
        let (p, meta) = profile::parse(&text, &origin)?;
        inputs.push((origin, p, meta));
    }
    let (merged, meta, stripped) = profile::merge(&inputs)?;
    if !stripped.is_empty() {
        eprintln!(
            "moat learn: dropped always-denied syscalls an input allowed: {}",
            stripped.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let mut text = serde_json::to_vec_pretty(&profile::to_json(&merged, &meta))?;
    text.push(b'\n');
    match output {
        Some(path) => {
            moat::rootfs::write_atomic(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "moat learn: merged {} profiles ({} syscalls allowed) into {}",
                files.len(),
                profile::allowed_names(&merged).len(),
                path.display()
            );
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&text)?;
        }
    }
    Ok(0)
}

/// An absolute path for `p` (relative to the working directory), whose
/// parent directory exists.
#[allow(
    clippy::disallowed_methods,
    reason = "the operator's --output file, not a container's path"
)]
fn output_path(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the working directory")?
            .join(p)
    };
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        bail!("--output {} is not a file path", p.display());
    };
    let parent = fs::canonicalize(parent)
        .with_context(|| format!("the directory of --output {} does not exist", p.display()))?;
    let out = parent.join(name);
    if out.is_dir() {
        bail!("--output {} is a directory", p.display());
    }
    Ok(out)
}

fn learn_bundle(ctx: &Ctx, args: LearnArgs) -> Result<i32> {
    let bundle = args
        .bundle
        .ok_or_else(|| anyhow!("moat learn needs --bundle (or --merge)"))?;
    let output = output_path(
        args.output
            .as_deref()
            .ok_or_else(|| anyhow!("moat learn --bundle needs --output FILE"))?,
    )?;
    let id = args
        .id
        .unwrap_or_else(|| format!("moat-learn-{}", std::process::id()));
    let lctx = Ctx {
        root: ctx.root.clone(),
        systemd_cgroup: ctx.systemd_cgroup,
        policy_path: ctx.policy_path.clone(),
        learn: Some(LearnTarget::File(output.clone())),
        policy_read: ctx.policy_read.clone(),
    };
    let signals = SigSet::all();
    let mut container = create_container(
        &lctx,
        &CreateOpts {
            id: &id,
            bundle: &bundle,
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            no_pivot: false,
            detach: false,
        },
    )?;
    let root = lctx.root()?;
    let policy = lctx.policy_for_cleanup();
    // Blocked only now: the container's init must not inherit the mask.
    signals
        .thread_block()
        .context("cannot block signals for forwarding")?;
    let ended = match container.start() {
        Ok(()) => match container.pid() {
            Some(pid) => wait_for(pid, &signals, args.duration),
            None => Err(anyhow!("container {id} has no init pid")),
        },
        Err(e) => Err(anyhow!("{e}")).with_context(|| format!("cannot start container {id}")),
    };
    let _ = container.delete(true);
    // Stops the recorder, which writes the final profile.
    let cleaned = remove_moat_state(&root, &id, &policy);
    let _ = signals.thread_unblock();
    let ended = ended?;
    cleaned?;

    let text = fs::read_to_string(&output)
        .with_context(|| format!("the recorder wrote no profile to {}", output.display()))?;
    let (learned, meta) = profile::parse(&text, &output.display().to_string())?;
    let meta = meta.unwrap_or_default();
    println!("moat learn: {ended}");
    println!(
        "moat learn: {} syscalls observed, {} allowed in all ({} more that moat itself needs); profile written to {}",
        meta.observed.len(),
        profile::allowed_names(&learned).len(),
        meta.baseline.difference(&meta.observed).count(),
        output.display()
    );
    if let Some(run) = meta.runs.last() {
        if !run.denied_attempts.is_empty() {
            let list: Vec<String> = run
                .denied_attempts
                .iter()
                .map(|(n, c)| format!("{n} ({c}x)"))
                .collect();
            println!("moat learn: attempted, denied by moat: {}", list.join(", "));
        }
        if !run.unknown.is_empty() {
            println!(
                "moat learn: unknown syscall numbers, denied: {}",
                run.unknown.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(0)
}

/// How the workload of a learning run ended.
enum Ended {
    Exited(i32),
    Signaled(Signal),
    Stopped(Duration),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(c) => write!(f, "the workload exited with code {c}"),
            Ended::Signaled(s) => write!(f, "the workload was killed by {s}"),
            Ended::Stopped(d) => write!(
                f,
                "the workload was stopped after --duration {}s",
                d.as_secs()
            ),
        }
    }
}

/// Waits for `init`, forwarding signals; after `duration`, stops it
/// (SIGTERM, then SIGKILL two seconds later).
fn wait_for(init: Pid, signals: &SigSet, duration: Option<Duration>) -> Result<Ended> {
    let start = Instant::now();
    let mut stopping: Option<Instant> = None;
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == init => {
                    return Ok(match stopping {
                        Some(_) => Ended::Stopped(duration.unwrap_or_default()),
                        None => Ended::Exited(code),
                    })
                }
                Ok(WaitStatus::Signaled(p, sig, _)) if p == init => {
                    return Ok(match stopping {
                        Some(_) => Ended::Stopped(duration.unwrap_or_default()),
                        None => Ended::Signaled(sig),
                    })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        if let Some(d) = duration {
            if stopping.is_none() && start.elapsed() >= d {
                let _ = kill(init, Signal::SIGTERM);
                stopping = Some(Instant::now());
            }
        }
        if stopping.is_some_and(|s| s.elapsed() >= Duration::from_secs(2)) {
            let _ = kill(init, Signal::SIGKILL);
        }
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: sigtimedwait with a valid set, no info, a valid timeout.
        let sig = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
        if sig <= 0 {
            continue;
        }
        match Signal::try_from(sig) {
            Ok(Signal::SIGCHLD | Signal::SIGWINCH | Signal::SIGURG) | Err(_) => {}
            Ok(other) => {
                let _ = kill(init, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
