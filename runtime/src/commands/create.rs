//! `moat create`: harden the bundle's spec, prepare what libcontainer cannot
//! (id range, idmapped rootfs, namespaces given by path), then hand off.
//!
//! Order matters for "bad input leaves nothing behind": everything that can
//! refuse (id, config.json, policy, the hardening itself, the rootfs and its
//! mount destinations) is checked before the first side effect. After that,
//! a guard undoes every step on error.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use moat::harden::{harden, Hardened};
use moat::idpool::IdPool;
use moat::pinned::{PinError, PinnedPath, PinnedPaths};
use moat::policy::Policy;
use moat::refusal::Refusal;
use moat::report::Report;
use moat::rootfs::{self, RootfsMode};
use moat::selfcheck::{capability_mask, SelfCheck};
use moat::state::{self, MoatState};

use super::{remove_moat_state, validate_id, Ctx, MAX_CONFIG_BYTES};

/// What `create` and `run` pass down.
pub struct CreateOpts<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub detach: bool,
}

pub fn create(ctx: &Ctx, args: liboci_cli::Create) -> Result<()> {
    create_container(
        ctx,
        &CreateOpts {
            id: &args.container_id,
            bundle: &args.bundle,
            pid_file: args.pid_file.as_deref(),
            console_socket: args.console_socket.as_deref(),
            preserve_fds: args.preserve_fds,
            no_pivot: args.no_pivot,
            detach: true,
        },
    )
    .map(|_| ())
}

/// Reads and parses `<bundle>/config.json` with a clear error for each way
/// it can be wrong.
pub fn load_bundle_spec(bundle: &Path) -> Result<Spec> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let path = bundle.join("config.json");
    // Non-blocking, so a FIFO cannot hang moat in open(); not following a
    // symlink, so config.json cannot name a file outside the bundle (T17).
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => anyhow!(
                "{} is a symbolic link; moat reads config.json only as a regular file",
                path.display()
            ),
            _ => anyhow!(e).context(format!("cannot open {}", path.display())),
        })?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        bail!(
            "{} is {what}; moat reads config.json only as a regular file",
            path.display()
        );
    }
    let size = meta.len();
    if size > MAX_CONFIG_BYTES {
        bail!(
            "{} is {size} bytes, larger than the {MAX_CONFIG_BYTES} bytes moat accepts",
            path.display()
        );
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.trim().is_empty() {
        bail!("{} is empty", path.display());
    }
    let spec: Spec =
        serde_json::from_str(&text).with_context(|| format!("malformed {}", path.display()))?;
    if !spec.version().starts_with("1.") {
        bail!(
            "{}: unsupported ociVersion {:?} (moat supports 1.x)",
            path.display(),
            spec.version()
        );
    }
    if spec.process().is_none() {
        bail!("{}: no process to run", path.display());
    }
    Ok(spec)
}

/// The rootfs path of a spec, absolute (relative paths are relative to the
/// bundle), checked to exist.
pub fn bundle_rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json has no root"))?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !path.is_dir() {
        bail!(
            "rootfs {} does not exist or is not a directory",
            path.display()
        );
    }
    fs::canonicalize(&path).with_context(|| format!("cannot resolve rootfs {}", path.display()))
}

/// What [`precheck`] found and opened: everything `create` decides on.
struct Prechecked {
    spec: Spec,
    bundle: PathBuf,
    /// The rootfs, open since precheck (T29).
    rootfs: PinnedPath,
    policy: Policy,
    facts: moat::harden::HostFacts,
    /// Every host path and namespace the spec names, open since precheck:
    /// staging mounts and nsjoin joins these fds, never the names (T29).
    pinned: PinnedPaths,
}

/// Everything before the first side effect: opens every host path the
/// spec names once (see `moat::pinned`), checks that the spec hardens
/// (with a placeholder id range) on what those fds are, and returns it
/// with the host facts, or the reason it cannot run.
fn precheck(ctx: &Ctx, opts: &CreateOpts) -> Result<Prechecked> {
    validate_id(opts.id)?;
    let bundle_fd = moat::pinned::open_bundle(opts.bundle)
        .with_context(|| format!("bundle {} does not exist", opts.bundle.display()))?;
    let bundle = moat::pinned::real_path(&bundle_fd)
        .with_context(|| format!("cannot resolve bundle {}", opts.bundle.display()))?;
    let spec = load_bundle_spec(&bundle)?;
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| anyhow!("config.json has no root"))?;
    let rootfs = moat::pinned::pin_path(&bundle_fd, &root_path, "rootfs").map_err(pin_error)?;
    if !rootfs.is_dir {
        bail!(
            "rootfs {} does not exist or is not a directory",
            root_path.display()
        );
    }
    let root = ctx.root()?;
    let state_roots = vec![fs::canonicalize(&root).unwrap_or_else(|_| root.clone())];
    if rootfs.real == Path::new("/")
        || moat::pinned::in_moat_private_tree(&rootfs.real, &state_roots)
    {
        return Err(anyhow!(Refusal::new(
            moat::pinned::RULE_HOST_PATH,
            format!(
                "rootfs {} is {}: the host's root or moat's own state",
                root_path.display(),
                rootfs.real.display()
            ),
            None,
        )));
    }
    let policy = ctx.policy()?;
    let pinned = moat::pinned::pin(&spec, &bundle_fd, &state_roots, || moat::pinned::Joinable {
        moat_containers: moat::pinned::moat_container_namespaces(&root),
        engine_netns: moat::pinned::engine_netns_pins(&policy.namespaces.joinable_netns),
    })
    .map_err(pin_error)?;
    let mut facts = moat::facts::from_pinned(&spec, &pinned, &rootfs.real, None);
    facts.container_id = Some(opts.id.to_string());
    harden(&spec, &policy, &facts).map_err(|r| anyhow!(r))?;
    moat::facts::check_mount_destinations(&spec, &rootfs.real).map_err(|r| anyhow!(r))?;
    Ok(Prechecked {
        spec,
        bundle,
        rootfs,
        policy,
        facts,
        pinned,
    })
}

/// A refusal stays a refusal (one line); an open error keeps its context.
fn pin_error(e: PinError) -> anyhow::Error {
    match e {
        PinError::Refused(r) => anyhow!(r),
        other => anyhow!(other),
    }
}

/// Removes everything a failed create left, unless disarmed.
struct CreateGuard<'a> {
    root: &'a Path,
    id: &'a str,
    policy: &'a moat::policy::Policy,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // libcontainer may have created its state dir, cgroup and processes.
        let lc_dir = self.root.join(self.id);
        if lc_dir.join("state.json").exists() {
            if let Ok(mut c) = Container::load(lc_dir.clone()) {
                let _ = c.delete(true);
            }
        }
        let _ = fs::remove_dir_all(&lc_dir);
        if let Err(e) = remove_moat_state(self.root, self.id, self.policy) {
            tracing::warn!(error = %e, id = self.id, "cleanup after failed create was incomplete");
        }
    }
}

pub fn create_container(ctx: &Ctx, opts: &CreateOpts) -> Result<Container> {
    let Prechecked {
        spec,
        bundle,
        rootfs: pinned_rootfs,
        policy,
        mut facts,
        pinned,
    } = precheck(ctx, opts)?;
    let root = ctx.root()?;
    let id = opts.id;
    if root.join(id).exists() || state::private_dir(&root, id).exists() {
        bail!("container {id} already exists");
    }

    // First side effect: the private dir doubles as the id's lock.
    fs::create_dir_all(state::private_root(&root))
        .context("cannot create moat's private state directory")?;
    let private = state::private_dir(&root, id);
    state::create_container_dir(&private).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!("container {id} already exists")
        } else {
            anyhow!(e).context(format!("cannot create {}", private.display()))
        }
    })?;
    let mut guard = CreateGuard {
        root: &root,
        id,
        policy: &policy,
        armed: true,
    };

    let pool = IdPool::new(&policy.user_namespace);
    let allocation = pool
        .allocate(&root, id)
        .context("cannot allocate a host id range")?;
    // The facts precheck gathered, now with the range this container got.
    facts.id_range = Some(allocation.range);
    let Hardened {
        spec: mut hardened,
        mut report,
        policy: effective,
    } = harden(&spec, &policy, &facts).map_err(|r| anyhow!(r))?;

    let prepared = rootfs::prepare(
        &pinned_rootfs.real,
        &pinned_rootfs.handle(),
        allocation.range,
        &private,
        &rootfs::mount_point(&root, id),
    )
    .context("cannot prepare the container's rootfs")?;
    report
        .notes
        .push(format!("rootfs: {}", prepared.mode.describe()));
    if let Some(reason) = &prepared.fallback_reason {
        report
            .notes
            .push(format!("rootfs could not be idmapped: {reason}"));
    }
    report.notes.push(format!(
        "user namespace: container ids 0-{} are host ids {}-{}",
        allocation.range.size - 1,
        allocation.range.host_id,
        allocation.range.host_id + (allocation.range.size - 1)
    ));

    let mut moat_state = MoatState {
        id: id.to_string(),
        bundle: bundle.clone(),
        allowed_capabilities: effective.allowed_capabilities().into_iter().collect(),
        allocation: Some(allocation),
        pool_dir: Some(PathBuf::from(&policy.user_namespace.pool_dir)),
        pids_limit: Some(effective.resources.pids_limit),
        rootfs: Some(prepared.clone()),
        report: report.clone(),
    };
    moat_state.save(&root).context("cannot save moat state")?;

    install_egress(&mut hardened, &effective, &pinned, &root, id, &mut report)?;
    super::learn::start_for_create(
        ctx,
        &mut hardened,
        &effective,
        &root,
        &private,
        id,
        &mut report,
    )?;
    // After learning set up its notify filter (which stays with libcontainer).
    let seccomp_filter = precompile_seccomp(&mut hardened, &private);
    prepare_for_libcontainer(
        &mut hardened,
        &pinned,
        &prepared.path,
        id,
        allocation.range,
        &rootfs::mount_point(&root, id),
        &mut report,
    )?;
    moat::hook_exe::wrap_hooks(&mut hardened, &bundle, &facts.hook_executables)?;
    let staged = moat::staging::stage_bind_mounts(
        &mut hardened,
        &moat::staging::staging_dir(&rootfs::mount_point(&root, id)),
        Some(allocation.range),
        &pinned,
        &effective.volumes,
    )?;
    report.notes.extend(staged.notes());
    let populated = moat::staging::stage_scratch_tmpfs(
        &mut hardened,
        &moat::staging::staging_dir(&rootfs::mount_point(&root, id)),
        &effective.filesystem.tmpfs,
        allocation.range,
    )?;
    for dest in populated {
        report.notes.push(format!(
            "scratch tmpfs {} starts with the image's directories there",
            dest.display()
        ));
    }
    moat::staging::give_stdio_to_container(allocation.range);
    let config = serde_json::to_vec_pretty(&hardened).context("cannot serialise spec")?;
    rootfs::write_atomic(&private.join("config.json"), &config)
        .context("cannot write the hardened config.json")?;
    // Where its processes will be, kept with the range: found even when
    // the state directories are removed (T31).
    pool.record(
        &allocation,
        &root,
        id,
        &moat::idpool::ClaimRecord {
            cgroups_path: hardened
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().clone()),
            systemd: ctx.systemd_cgroup,
        },
    )
    .context("cannot record the container's cgroup with its id range")?;
    moat_state.report = report.clone();
    moat_state.save(&root).context("cannot save moat state")?;

    for change in &report.changes {
        tracing::info!(id, rule = change.rule.name(), field = %change.field, before = %change.before, after = %change.after, why = %change.why, "hardened");
    }
    for note in &report.notes {
        tracing::info!(id, "{note}");
    }

    redirect_null_stdio();
    let executor = SelfCheck {
        allowed_caps: capability_mask(&moat_state.allowed_capabilities),
        seccomp: seccomp_filter,
    };
    let container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(executor)
        .with_pid_file(opts.pid_file)
        .context("invalid --pid-file")?
        .with_console_socket(opts.console_socket)
        .with_root_path(&root)
        .context("invalid --root")?
        .with_preserved_fds(opts.preserve_fds)
        .as_init(&private)
        .with_systemd(ctx.systemd_cgroup)
        .with_detach(opts.detach)
        .with_no_pivot(opts.no_pivot)
        .build()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("libcontainer could not create container {id}"))?;

    if let Some(pid) = container.pid() {
        seal_cgroupfs(pid)?;
    }
    guard.armed = false;
    if prepared.mode == RootfsMode::Unshifted {
        tracing::warn!(id, "rootfs is not idmapped; see the report");
    }
    Ok(container)
}

/// Compiles the container's seccomp profile on the host side (cached; see
/// `moat::seccomp_bpf`) and takes it out of the spec libcontainer reads, so
/// the container's init loads the ready program instead of compiling it.
/// The profile itself is kept in `<private>/seccomp.json` for `moat exec`.
/// Any failure keeps libcontainer's own loading: slower, never weaker.
fn precompile_seccomp(
    spec: &mut Spec,
    private: &Path,
) -> Option<moat::seccomp_bpf::CompiledFilter> {
    let mut linux = spec.linux().clone()?;
    let seccomp = linux.seccomp().clone()?;
    if !moat::seccomp_bpf::is_cacheable(&seccomp) {
        return None;
    }
    let compiled = match moat::seccomp_bpf::cached(
        &seccomp,
        Path::new(moat::seccomp_bpf::CACHE_DIR),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "seccomp filter not precompiled; libcontainer will compile it");
            return None;
        }
    };
    let saved = serde_json::to_vec(&seccomp)
        .map_err(std::io::Error::other)
        .and_then(|json| rootfs::write_atomic(&private.join(SECCOMP_FILE), &json));
    if let Err(e) = saved {
        tracing::warn!(error = %e, "cannot save the seccomp profile; libcontainer will compile it");
        return None;
    }
    linux.set_seccomp(None);
    spec.set_linux(Some(linux));
    Some(compiled)
}

/// The container's seccomp profile (OCI semantics) when moat loads it
/// itself; read by `moat exec`.
pub const SECCOMP_FILE: &str = "seccomp.json";

/// Turns the hardened (OCI-semantics) spec into what libcontainer 0.7 runs:
/// absolute paths, moat's rootfs, namespaces given by path joined by moat
/// itself, and libcontainer's reading of MASKED_EQ.
fn prepare_for_libcontainer(
    spec: &mut Spec,
    pinned: &PinnedPaths,
    rootfs_path: &Path,
    id: &str,
    range: moat::harden::IdRange,
    mount_point: &Path,
    report: &mut Report,
) -> Result<()> {
    if let Some(mut root) = spec.root().clone() {
        root.set_path(rootfs_path.to_path_buf());
        spec.set_root(Some(root));
    }
    // Bind sources (relative ones too: relative to the bundle) are staged
    // from the fds pinned in precheck; see `moat::staging`.
    let mut linux = spec.linux().clone().unwrap_or_default();
    if linux.cgroups_path().is_none() {
        linux.set_cgroups_path(Some(PathBuf::from(format!("/moat/{id}"))));
    }
    if let Some(mut seccomp) = linux.seccomp().clone() {
        moat::seccomp::to_libcontainer_args(&mut seccomp);
        linux.set_seccomp(Some(seccomp));
    }
    spec.set_linux(Some(linux));

    let own_netns = moat::netns::netns_path(mount_point);
    let joined = moat::nsjoin::join_path_namespaces(spec, pinned, Some(&own_netns))?;
    let joined_net = joined.iter().any(|(k, _)| k == "network");
    if joined_net {
        apply_net_sysctls(spec, range, report)?;
    }
    let joined_ipc = joined.iter().any(|(k, _)| k == "ipc");
    if joined_net || joined_ipc {
        // sysfs and mqueue can only be mounted by the user namespace that
        // owns the net/ipc namespace, and a joined one is owned by the host
        // (moat's egress namespace) or by another container. moat, host root
        // and already inside the joined network namespace, mounts a fresh
        // sysfs for it (so /sys/class/net shows the container's interfaces,
        // not the host's) and the container gets it as a read-only bind.
        // mqueue of a joined ipc namespace is skipped.
        let sysfs = sysfs_path(mount_point);
        if joined_net {
            mount_private_sysfs(&sysfs)?;
        }
        let mounts: Vec<Mount> = spec
            .mounts()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut m| match m.typ().as_deref() {
                Some("sysfs") if joined_net => {
                    m.set_typ(Some("bind".into()));
                    m.set_source(Some(sysfs.clone()));
                    m.set_options(Some(
                        ["rbind", "ro", "nosuid", "nodev", "noexec"]
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                    ));
                    Some(m)
                }
                Some("mqueue") if joined_ipc => None,
                _ => Some(m),
            })
            .collect();
        spec.set_mounts(Some(mounts));
        for (kind, path) in &joined {
            report.notes.push(format!(
                "joined the {kind} namespace {} before creating the container (libcontainer cannot join it from inside a new user namespace)",
                path.display()
            ));
        }
    }
    // A namespace type must still be listed for libcontainer to create it;
    // joined ones are now inherited instead.
    let still_listed = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    debug_assert!(still_listed
        .iter()
        .all(|n| n.path().is_none() || n.typ() == LinuxNamespaceType::Mount));
    Ok(())
}

/// libcontainer 0.7 re-points stdio fds that refer to the host's /dev/null
/// at the container's /dev/null, but opens it read-only, so a workload
/// whose stdout is /dev/null gets EBADF on every write. /dev/zero discards
/// writes the same way and is not rewritten, so moat swaps it in for
/// output fds. Reading stdin from /dev/null is unaffected.
pub fn redirect_null_stdio() {
    use std::os::fd::AsRawFd;
    let Ok(null) = nix::sys::stat::stat("/dev/null") else {
        return;
    };
    for fd in [1, 2] {
        let Ok(st) = nix::sys::stat::fstat(fd) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == null.st_rdev {
            if let Ok(zero) = fs::OpenOptions::new().write(true).open("/dev/zero") {
                let _ = nix::unistd::dup2(zero.as_raw_fd(), fd);
            }
        }
    }
}

/// Gives the container a moat-owned network namespace with the egress
/// ruleset (or installs the ruleset in the namespace it joins), before the
/// container exists. See netns.rs for why moat owns the namespace.
fn install_egress(
    spec: &mut Spec,
    policy: &moat::policy::Policy,
    pinned: &PinnedPaths,
    root: &Path,
    id: &str,
    report: &mut Report,
) -> Result<()> {
    if !policy.egress.enabled {
        tracing::warn!(
            id,
            "EGRESS BLOCKING IS OFF for this container (policy egress.enabled = false): it may connect anywhere"
        );
        return Ok(());
    }
    let network = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network);
    let joined = pinned.namespace(LinuxNamespaceType::Network);
    let shares_host = match &network {
        None => true,
        Some(n) => n.path().is_some() && joined.is_some_and(|j| j.is_host),
    };
    if shares_host {
        // Only reachable when the operator allows host networking. moat never
        // changes the host's network namespace, so there is nothing to block.
        tracing::warn!(
            id,
            "EGRESS IS NOT BLOCKED for this container: it shares the host's network namespace (refusals.allow_host_namespaces)"
        );
        report
            .notes
            .push("egress: NOT blocked: the container shares the host's network namespace".into());
        return Ok(());
    }
    let allow = moat::egress::Egress::from_policy(&policy.egress).map_err(|e| anyhow!(e))?;
    let ruleset = moat::egress::ruleset(&allow);
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let Some(net) = namespaces
        .iter_mut()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
    else {
        // harden() refuses a spec without its own network namespace.
        bail!("no network namespace to install egress rules in");
    };
    match net.path().clone() {
        None => {
            let path = moat::netns::netns_path(&rootfs::mount_point(root, id));
            moat::netns::create_with_rules(
                &path,
                &moat::egress::fingerprint(&allow),
                &moat::egress::rules(&allow),
            )
            .context("cannot create the network namespace with egress rules")?;
            net.set_path(Some(path.clone()));
            report.notes.push(format!(
                "egress: rules installed in a moat-owned network namespace ({}), which container root cannot administer",
                path.display()
            ));
        }
        Some(path) => {
            // The namespace precheck opened and judged (T11, T29): its
            // rules are read and written through that fd, never the name.
            let joined = joined.filter(|j| j.path == path).ok_or_else(|| {
                anyhow!(
                    "network namespace {} was not opened in precheck",
                    path.display()
                )
            })?;
            let handle = PathBuf::from(format!("/proc/self/fd/{}", joined.file.as_raw_fd()));
            if let Some(existing) = moat::netns::table(&handle) {
                // Containers sharing a namespace share its rules, so they
                // must share the egress policy: never run a container under
                // rules other than the ones its own policy asks for.
                let ours = moat::egress::fingerprint(&allow);
                if moat::egress::parse_fingerprint(&existing).as_deref() != Some(ours.as_str()) {
                    bail!(
                        "the network namespace {} already carries egress rules for a different egress policy; containers sharing a network namespace must share egress.allow (and its moat.dev/egress-allow annotation)",
                        path.display()
                    );
                }
                // Count this container among the users of a table moat put
                // into a namespace it did not create, if it did.
                moat::netns::add_table_user(root, id, &joined.file, &path, false)
                    .context("cannot record the container among the users of the joined namespace's egress rules")?;
                report.notes.push(format!(
                    "egress: the joined network namespace {} already carries moat's rules for this egress policy",
                    path.display()
                ));
            } else {
                moat::netns::add_table_user(root, id, &joined.file, &path, true)
                    .context("cannot record the container among the users of the joined namespace's egress rules")?;
                moat::netns::apply(&handle, &ruleset)
                    .context("cannot install egress rules in the joined network namespace")?;
                report.notes.push(format!(
                    "egress: rules installed in the joined network namespace {}; removed when the last moat container there is deleted",
                    path.display()
                ));
            }
        }
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    Ok(())
}

/// Writes the spec's `net.*` sysctls into the network namespace moat has
/// joined, and removes them from the spec: libcontainer refuses net sysctls
/// for a container without a network namespace entry of its own (the
/// joined one is inherited, not listed). moat writes them as host root, so
/// the gids of ping_group_range are translated into the container's host
/// range (the kernel reads them in the writer's user namespace).
fn apply_net_sysctls(
    spec: &mut Spec,
    range: moat::harden::IdRange,
    report: &mut Report,
) -> Result<()> {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let Some(mut sysctl) = linux.sysctl().clone() else {
        return Ok(());
    };
    let net: Vec<(String, String)> = sysctl
        .iter()
        .filter(|(k, _)| k.starts_with("net."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in &net {
        if key.contains('/') || key.contains("..") {
            bail!("invalid sysctl name {key:?}");
        }
        let value = if key == "net.ipv4.ping_group_range" {
            let mut it = value
                .split_whitespace()
                .filter_map(|v| v.parse::<u64>().ok());
            match (it.next(), it.next()) {
                (Some(lo), Some(hi)) if lo <= hi => format!(
                    "{} {}",
                    u64::from(range.host_id) + lo,
                    u64::from(range.host_id) + hi
                ),
                _ => "1 0".to_string(),
            }
        } else {
            value.clone()
        };
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, &value).with_context(|| {
            format!("cannot set sysctl {key}={value} in the container's network namespace")
        })?;
        sysctl.remove(key);
    }
    if !net.is_empty() {
        report.notes.push(format!(
            "{} net sysctls set by moat in the container's network namespace",
            net.len()
        ));
    }
    linux.set_sysctl(Some(sysctl));
    spec.set_linux(Some(linux));
    Ok(())
}

/// Where moat mounts the sysfs of a container's joined network namespace.
pub fn sysfs_path(rootfs_mount: &Path) -> PathBuf {
    let mut s = rootfs_mount.as_os_str().to_owned();
    s.push(".sysfs");
    PathBuf::from(s)
}

/// Mounts a sysfs instance for the network namespace moat is in now.
fn mount_private_sysfs(path: &Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    mount(
        Some("sysfs"),
        path,
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .with_context(|| format!("cannot mount sysfs at {}", path.display()))
}

/// libcontainer 0.7 mounts cgroup v1 hierarchies read-write whatever the
/// spec says, under a writable tmpfs with no size limit, owned by container
/// root (found by the isolation probes). Before the container starts, moat
/// enters its mount namespace and remounts /sys/fs/cgroup and everything
/// below it read-only, from a thread of its own, so moat's own mount
/// namespace never changes.
fn seal_cgroupfs(init: nix::unistd::Pid) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{setns, unshare, CloneFlags};
    let ns = fs::File::open(format!("/proc/{init}/ns/mnt"))
        .context("cannot open the container's mount namespace")?;
    // Read from the host: inside, /proc belongs to a pid namespace moat is
    // not in, so /proc/self does not resolve there.
    let text = fs::read_to_string(format!("/proc/{init}/mountinfo"))
        .context("cannot read the container's mount table")?;
    let mut points: Vec<PathBuf> = rootfs::parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with("/sys/fs/cgroup"))
        .collect();
    points.dedup();
    // A thread of its own enters the container's mount namespace: setns
    // needs a filesystem context no other thread shares, which unshare
    // (CLONE_FS) gives this thread alone, so moat's main thread never
    // changes namespace. Cheaper than forking a copy of moat for it.
    let remount = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_FS).context("unshare the filesystem context")?;
        setns(&ns, CloneFlags::CLONE_NEWNS)
            .context("cannot enter the container's mount namespace")?;
        for p in &points {
            mount(
                None::<&str>,
                p.as_path(),
                None::<&str>,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .with_context(|| format!("cannot remount {} read-only", p.display()))?;
        }
        Ok(())
    });
    remount
        .join()
        .map_err(|_| anyhow!("the thread making the container's cgroupfs read-only panicked"))?
        .context("cannot make the container's cgroupfs read-only")
}
