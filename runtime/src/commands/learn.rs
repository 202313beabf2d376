//! `moat learn`: run a bundle while recording the syscalls it makes and
//! write a seccomp profile that allows only those (`--bundle B -o FILE`),
//! or merge learned profiles (`--merge A B… [-o FILE]`). Also the hook
//! `create` calls to start learning for a container (`--learn-dir`, the
//! `moat.dev/learn` annotation, or `moat learn` itself).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use moat::learn::profile::{self, learning_filter};
use moat::learn::{Output, RecorderConfig};
use moat::policy::Policy;
use moat::report::Report;

use super::create::{create_container, CreateOpts};
use super::{remove_moat_state, Ctx};

/// Where a learning container's profile goes.
#[derive(Debug, Clone)]
pub enum LearnTarget {
    /// `--learn-dir DIR`: DIR/<container id>.json, merged into if present.
    Dir(PathBuf),
    /// `moat learn -o FILE`: replaced.
    File(PathBuf),
}

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

/// Creates a directory for learned profiles, and the missing directories
/// above it, 0700: a profile lists what a tenant's workload does (its
/// syscalls, named after its container), which no other host user may read
/// (T17). moat's own default is tightened when an older moat left it 0755;
/// a directory the operator made keeps the operator's mode.
fn ensure_dir(dir: &Path) -> Result<PathBuf> {
    let err = || {
        format!(
            "cannot create the learned-profile directory {}",
            dir.display()
        )
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(err)?;
    if dir == Path::new(moat::learn::DEFAULT_LEARN_DIR) {
        moat::idpool::tighten_dir(dir).with_context(err)?;
    }
    fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// Called by `create` after hardening: when this container is to learn,
/// swaps its seccomp filter for the learning filter and starts the
/// recorder. Does nothing otherwise.
pub fn start_for_create(
    ctx: &Ctx,
    spec: &mut Spec,
    policy: &Policy,
    root: &Path,
    private: &Path,
    id: &str,
    report: &mut Report,
) -> Result<()> {
    let output = match (&ctx.learn, &policy.learn.requested) {
        (Some(LearnTarget::File(p)), _) => Output::Replace(p.clone()),
        (Some(LearnTarget::Dir(d)), _) => {
            Output::Accumulate(ensure_dir(d)?.join(format!("{id}.json")))
        }
        (None, Some(name)) => {
            let name = if name == "true" { id } else { name.as_str() };
            Output::Accumulate(
                ensure_dir(Path::new(&policy.learn.dir))?.join(format!("{name}.json")),
            )
        }
        (None, None) => return Ok(()),
    };
    if let Output::Accumulate(path) = &output {
        // Never clobber a file that is not a profile this run can add to.
        if let Ok(text) = fs::read_to_string(path) {
            profile::parse(&text, &path.display().to_string()).with_context(|| {
                format!(
                    "{} exists and is not a seccomp profile moat can merge this run into; move it away",
                    path.display()
                )
            })?;
        }
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let base = linux
        .seccomp()
        .clone()
        .ok_or_else(|| anyhow!("the hardened spec has no seccomp filter to learn under"))?;
    let socket = moat::learn::socket_path(root, id);
    linux.set_seccomp(Some(learning_filter(&base, &socket)?));
    spec.set_linux(Some(linux));
    let record = moat::learn::spawn_recorder(
        root,
        private,
        RecorderConfig {
            container: id.to_string(),
            base,
            output,
        },
    )?;
    tracing::warn!(
        id,
        recorder = record.pid,
        output = %record.output.display(),
        "LEARNING: syscalls are reported to a recorder (slow); the learned profile goes to the output"
    );
    report.notes.push(format!(
        "seccomp: learning: each syscall the filter allows is reported to recorder pid {} and the profile written to {}; always-denied syscalls are still denied",
        record.pid,
        record.output.display()
    ));
    Ok(())
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

    /// Learned profiles name tenants' containers: the directory and the
    /// ones moat creates above it are 0700.
    #[test]
    fn learned_profile_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lib/moat/learned");
        ensure_dir(&dir).unwrap();
        for d in [&dir, &tmp.path().join("lib/moat"), &tmp.path().join("lib")] {
            let mode = fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }
}
