//! `moat install containerd|docker`: registers moat in a daemon's config
//! file (see moat::install for the merge rules) and says what to restart.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use moat::install::{self, Applied, ContainerdRuntime, DockerRuntime};

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(subcommand)]
    pub target: InstallTarget,
}

#[derive(Subcommand, Debug)]
pub enum InstallTarget {
    /// Register a CRI runtime handler in containerd's config.toml.
    Containerd(ContainerdArgs),
    /// Register a runtime in docker's daemon.json.
    Docker(DockerArgs),
}

#[derive(Args, Debug)]
pub struct ContainerdArgs {
    /// containerd's config file (created if missing).
    #[arg(long, default_value = install::CONTAINERD_CONFIG)]
    pub config: PathBuf,
    /// Runtime handler name (a RuntimeClass's `handler`).
    #[arg(long, default_value = "moat")]
    pub handler: String,
    /// The moat binary containerd's runc shim runs, as seen by containerd
    /// (default /usr/local/bin/moat; runc shim only).
    #[arg(long)]
    pub binary: Option<String>,
    /// moat's state root for this handler; the shim appends the
    /// containerd namespace (default /run/containerd/moat; runc shim only).
    #[arg(long)]
    pub root: Option<String>,
    /// The shim: io.containerd.runc.v2 runs moat through containerd's runc
    /// shim; another type (e.g. io.containerd.moat.v2) is registered as is,
    /// without runc options.
    #[arg(long, default_value = install::RUNC_SHIM_TYPE)]
    pub runtime_type: String,
    /// moat's own shim by absolute path, for containerd 2.x (a version 3
    /// config): registered as type io.containerd.runc.v2 with this
    /// runtime_path, the only form containerd 2 asks for its features
    /// (user namespaces, recursive read-only mounts).
    #[arg(long, conflicts_with_all = ["binary", "root", "runtime_type"])]
    pub shim: Option<String>,
    /// Print the resulting file instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct DockerArgs {
    /// docker's daemon.json (created if missing).
    #[arg(long, default_value = install::DOCKER_CONFIG)]
    pub config: PathBuf,
    /// Runtime name (`docker run --runtime=<name>`).
    #[arg(long, default_value = "moat")]
    pub name: String,
    /// The moat binary dockerd runs, as seen by dockerd.
    #[arg(long, default_value = install::DEFAULT_BINARY)]
    pub binary: String,
    /// moat's policy file, where dockerd's network hook is allowed
    /// (hooks.allow) when the policy does not allow it yet.
    #[arg(long, default_value = moat::policy::DEFAULT_POLICY_PATH)]
    pub policy_file: PathBuf,
    /// dockerd's executable (default: the running dockerd's, else dockerd
    /// on PATH), resolved to its real path.
    #[arg(long)]
    pub dockerd: Option<PathBuf>,
    /// An argument docker passes to moat before the command (repeatable;
    /// stored as runtimeArgs).
    #[arg(long = "runtime-arg", allow_hyphen_values = true)]
    pub runtime_args: Vec<String>,
    /// Print the resulting file instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn install(args: InstallArgs) -> Result<i32> {
    match args.target {
        InstallTarget::Containerd(a) => containerd(a),
        InstallTarget::Docker(a) => docker(a),
    }
}

fn check_paths(binary: &str, root: Option<&str>) -> Result<()> {
    for (what, p) in [("binary", Some(binary)), ("state root", root)] {
        let Some(p) = p else { continue };
        anyhow::ensure!(
            Path::new(p).is_absolute(),
            "the {what} must be an absolute path: {p}"
        );
    }
    // The config may be written for a host whose paths differ from ours
    // (an installer container): a missing binary is worth a warning only.
    if !Path::new(binary).is_file() {
        eprintln!("moat install: warning: {binary} does not exist here; make sure it does on the node before restarting the daemon");
    }
    Ok(())
}

fn containerd(a: ContainerdArgs) -> Result<i32> {
    let rt = if let Some(shim) = &a.shim {
        check_paths(shim, None)?;
        ContainerdRuntime::native_shim(&a.handler, shim)
    } else if a.runtime_type == install::RUNC_SHIM_TYPE {
        let binary = a.binary.as_deref().unwrap_or(install::DEFAULT_BINARY);
        let root = a
            .root
            .as_deref()
            .unwrap_or(install::DEFAULT_CONTAINERD_ROOT);
        check_paths(binary, Some(root))?;
        ContainerdRuntime::through_runc_shim(&a.handler, binary, root)
    } else {
        anyhow::ensure!(
            a.binary.is_none() && a.root.is_none(),
            "--binary and --root are options of the runc shim; runtime type {} finds its shim binary on containerd's PATH",
            a.runtime_type
        );
        ContainerdRuntime {
            handler: a.handler.clone(),
            runtime_type: a.runtime_type.clone(),
            options: Vec::new(),
            annotations: vec![install::ANNOTATION_PATTERN.to_string()],
            runtime_path: None,
        }
    };
    let (applied, text) = install::apply_to_file(&a.config, a.dry_run, |t, f| {
        install::merge_containerd(t, &rt, f)
    })
    .with_context(|| {
        format!(
            "cannot register handler {} in containerd's config",
            a.handler
        )
    })?;
    report(
        &applied,
        text,
        a.dry_run,
        &a.config,
        &format!("runtime handler {:?}", a.handler),
    );
    if matches!(applied, Applied::Written { .. }) && !a.dry_run {
        println!(
            "Restart containerd to load it (systemctl restart containerd); running containers keep running.\n\
             Then create the RuntimeClass: kubectl apply -f configs/kubernetes/runtimeclass.yaml (handler: {})",
            a.handler
        );
    }
    Ok(0)
}

/// dockerd's real path: the running daemon's executable, else dockerd on
/// PATH.
#[allow(
    clippy::disallowed_methods,
    reason = "the host's dockerd, for the operator's policy file"
)]
fn find_dockerd() -> Option<PathBuf> {
    let running = std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "dockerd")
            .then(|| std::fs::canonicalize(e.path().join("exe")).ok())
            .flatten()
    });
    running.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("dockerd"))
            .find(|p| p.is_file())
            .and_then(|p| std::fs::canonicalize(p).ok())
    })
}

/// Allows docker's network hook (prestart, /proc/<dockerd>/exe run as
/// libnetwork-setkey) in moat's policy file, if it does not yet.
#[allow(
    clippy::disallowed_methods,
    reason = "the operator's --dockerd, for the operator's policy file"
)]
fn allow_dockerd_hook(a: &DockerArgs) -> Result<()> {
    let dockerd = match &a.dockerd {
        Some(p) => std::fs::canonicalize(p)
            .with_context(|| format!("cannot resolve dockerd {}", p.display()))?,
        None => match find_dockerd() {
            Some(p) => p,
            None => {
                eprintln!("moat install: warning: no dockerd found; make sure hooks.allow in {} lists it, or docker's network hook is refused", a.policy_file.display());
                return Ok(());
            }
        },
    };
    let exe = dockerd.display().to_string();
    let (applied, text) = install::apply_to_file(&a.policy_file, a.dry_run, |t, f| {
        install::merge_policy_hook(t, &exe, f)
    })
    .with_context(|| format!("cannot allow dockerd's hook in {}", a.policy_file.display()))?;
    report(
        &applied,
        text,
        a.dry_run,
        &a.policy_file,
        &format!("docker's network hook ({exe} as libnetwork-setkey) in hooks.allow"),
    );
    Ok(())
}

fn docker(a: DockerArgs) -> Result<i32> {
    check_paths(&a.binary, None)?;
    allow_dockerd_hook(&a)?;
    let rt = DockerRuntime {
        name: a.name.clone(),
        path: a.binary.clone(),
        runtime_args: a.runtime_args.clone(),
    };
    let (applied, text) = install::apply_to_file(&a.config, a.dry_run, |t, f| {
        install::merge_docker(t, &rt, f)
    })
    .with_context(|| format!("cannot register runtime {} in docker's config", a.name))?;
    report(
        &applied,
        text,
        a.dry_run,
        &a.config,
        &format!("docker runtime {:?}", a.name),
    );
    if matches!(applied, Applied::Written { .. }) && !a.dry_run {
        println!(
            "Reload dockerd to load it (systemctl reload docker, or kill -HUP <dockerd pid>); no container is restarted.\n\
             Then: docker run --runtime={} ...",
            a.name
        );
    }
    Ok(0)
}

fn report(applied: &Applied, text: Option<String>, dry_run: bool, config: &Path, what: &str) {
    match applied {
        Applied::Unchanged => println!(
            "{} already registers {what}; nothing changed, nothing to restart.",
            config.display()
        ),
        Applied::Written {
            path,
            backup,
            created,
        } => {
            if dry_run {
                println!("# --dry-run: {} would become:", path.display());
                print!("{}", text.unwrap_or_default());
                return;
            }
            let verb = if *created { "created" } else { "updated" };
            println!("{verb} {}: registered {what}.", path.display());
            if let Some(b) = backup {
                println!("The previous version is saved as {}.", b.display());
            }
        }
    }
}
