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

use crate::harden::{harden, Hardened};
use crate::idpool::IdPool;
use crate::pinned::{PinError, PinnedPath, PinnedPaths};
use crate::policy::Policy;
use crate::refusal::Refusal;
use crate::report::Report;
use crate::rootfs::{self, RootfsMode};
use crate::selfcheck::{capability_mask, SelfCheck};
use crate::state::{self, MoatState};

use super::{remove_moat_state, validate_id, ContainerPaths, Ctx, MAX_CONFIG_BYTES};

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
#[allow(
    clippy::disallowed_methods,
    reason = "explain only; create pins the rootfs (T29)"
)]
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
    facts: crate::harden::HostFacts,
    /// Every host path and namespace the spec names, open since precheck:
    /// staging mounts and nsjoin joins these fds, never the names (T29).
    pinned: PinnedPaths,
    /// The pod the container joins (its user namespace pinned), if any.
    pod: Option<crate::pod::Pod>,
    /// The user namespace an engine made for a pod whose sandbox this is
    /// (containerd 2, `hostUsers: false`), open and judged, if any.
    engine_userns: Option<crate::engine_userns::EngineUserNamespace>,
}

/// Everything before the first side effect: opens every host path the
/// spec names once (see `crate::pinned`), checks that the spec hardens
/// (with a placeholder id range) on what those fds are, and returns it
/// with the host facts, or the reason it cannot run.
fn precheck(ctx: &Ctx, opts: &CreateOpts) -> Result<Prechecked> {
    validate_id(opts.id)?;
    let bundle_fd = crate::pinned::open_bundle(opts.bundle)
        .with_context(|| format!("bundle {} does not exist", opts.bundle.display()))?;
    let bundle = crate::pinned::real_path(&bundle_fd)
        .with_context(|| format!("cannot resolve bundle {}", opts.bundle.display()))?;
    let spec = load_bundle_spec(&bundle)?;
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| anyhow!("config.json has no root"))?;
    let rootfs = crate::pinned::pin_path(&bundle_fd, &root_path, "rootfs").map_err(pin_error)?;
    if !rootfs.is_dir {
        bail!(
            "rootfs {} does not exist or is not a directory",
            root_path.display()
        );
    }
    let root = ctx.root()?;
    #[allow(clippy::disallowed_methods, reason = "moat's own state root")]
    let state_roots = vec![fs::canonicalize(&root).unwrap_or_else(|_| root.clone())];
    if rootfs.real == Path::new("/")
        || crate::pinned::in_moat_private_tree(&rootfs.real, &state_roots)
    {
        return Err(anyhow!(Refusal::new(
            crate::pinned::RULE_HOST_PATH,
            format!(
                "rootfs {} is {}: the host's root or moat's own state",
                root_path.display(),
                rootfs.real.display()
            ),
            None,
        )));
    }
    let policy = ctx.policy()?;
    crate::harden::mount_count::refuse_too_many_mounts_early(&spec, &policy)
        .map_err(|r| anyhow!(r))?;
    // Whether an engine made the bundle for this id, from the real path of
    // the bundle fd (never the tenant-written id or annotations alone);
    // gathered once, for the join rule and for the hardening.
    let engine_bundle = crate::engine_bundle::gather(opts.bundle, &bundle, opts.id);
    let pinned = crate::pinned::pin(&spec, &bundle_fd, &state_roots, || {
        crate::pinned::Joinable {
            // Only containers that consented at their own create (or all,
            // when the operator says so): joining makes this one a member
            // of that container's pod (its user namespace and range).
            moat_containers: crate::pinned::moat_container_namespaces(
                &root,
                policy.namespaces.join_containers,
            ),
            engine_netns: crate::pinned::engine_netns_pins(&policy.namespaces.joinable_netns),
            joiner_engine_made: engine_bundle.is_some(),
        }
    })
    .map_err(pin_error)?;
    let pod = crate::pod::find(&root, &spec, &pinned).map_err(|r| anyhow!(r))?;
    // A user namespace path of no pod of moat's: an engine's own (T3).
    let engine_userns = match (&pod, crate::pod::user_namespace_path(&spec)) {
        (None, Some(path)) => Some((
            crate::engine_userns::open(&path).map_err(|r| anyhow!(r))?,
            path,
        )),
        _ => None,
    };
    let mut facts = crate::facts::from_pinned(&spec, &pinned, &rootfs.real, None);
    facts.container_id = Some(opts.id.to_string());
    facts.state_root_tag = Some(crate::engine_bundle::state_root_tag(&root));
    facts.engine_bundle = engine_bundle;
    facts.pod_user_namespace = pod
        .as_ref()
        .map(|p| p.user_namespace_handle())
        .or_else(|| engine_userns.as_ref().map(|(u, _)| u.handle()));
    facts.pod_owner = pod.as_ref().map(|p| p.owner.clone());
    facts.rootfs_in_use = crate::facts::rootfs_users(&spec, &bundle, &rootfs.real, &root);
    facts.id_range = match &engine_userns {
        Some((u, path)) => Some(
            u.judged_range(&spec, &policy, facts.origin(), path)
                .map_err(|r| anyhow!(r))?,
        ),
        None => crate::pod::engine_range(&spec, &policy, facts.origin(), pod.as_ref())
            .map_err(|r| anyhow!(r))?,
    };
    harden(&spec, &policy, &facts).map_err(|r| anyhow!(r))?;
    // Walked from the fd opened above (/proc/self/fd/N), never the name:
    // a rootfs swapped since cannot point the walk elsewhere (T29).
    crate::facts::check_mount_destinations(&spec, &rootfs.handle()).map_err(|r| anyhow!(r))?;
    Ok(Prechecked {
        spec,
        bundle,
        rootfs,
        policy,
        facts,
        pinned,
        pod,
        engine_userns: engine_userns.map(|(u, _)| u),
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
    policy: &'a crate::policy::Policy,
    /// The cgroup this create claimed (removed if still empty).
    claimed_cgroup: Option<PathBuf>,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // libcontainer may have created its state dir, cgroup and processes.
        let lc_dir = ContainerPaths::new(self.root, self.id).libcontainer_dir;
        if lc_dir.join("state.json").exists() {
            if let Ok(mut c) = Container::load(lc_dir.clone()) {
                let _ = c.delete(true);
            }
        }
        let _ = fs::remove_dir_all(&lc_dir);
        if let Err(e) = remove_moat_state(self.root, self.id, self.policy) {
            tracing::warn!(error = %e, id = self.id, "cleanup after failed create was incomplete");
        }
        if let Some(dir) = &self.claimed_cgroup {
            // Empty unless libcontainer got as far as joining it, and then
            // libcontainer's delete above removed it.
            let _ = fs::remove_dir(dir);
        }
    }
}

pub fn create_container(ctx: &Ctx, opts: &CreateOpts) -> Result<Container> {
    // Until libcontainer has joined the cgroups (dropped after its build).
    let attach_warmer = (!ctx.systemd_cgroup).then(crate::cgroup_probe::warm_attach_lock);
    // The id range allocation's /proc scan (T31) runs while precheck loads
    // the bundle and the policy; see `idpool::prescan_ids_in_use`.
    crate::idpool::prescan_ids_in_use();
    let Prechecked {
        spec,
        bundle,
        rootfs: pinned_rootfs,
        policy,
        mut facts,
        pinned,
        pod,
        // Kept open until libcontainer has joined it (facts name its fd).
        engine_userns,
    } = precheck(ctx, opts)?;
    // Before the first side effect: opened without following a tenant's
    // link; libcontainer connects to it from this process through the
    // descriptor (T35, red-team R8-3).
    let console = opts
        .console_socket
        .map(crate::host_file::ConsoleSocket::open)
        .transpose()
        .context("cannot use the console socket")?;
    let root = ctx.root()?;
    let id = opts.id;
    let paths = ContainerPaths::new(&root, id);
    if paths.libcontainer_dir.exists() || paths.private_dir.exists() {
        bail!("container {id} already exists");
    }

    // First side effect: the private dir doubles as the id's lock.
    fs::create_dir_all(state::private_root(&root))
        .context("cannot create moat's private state directory")?;
    let private = &paths.private_dir;
    state::create_container_dir(private).map_err(|e| {
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
        claimed_cgroup: None,
        armed: true,
    };

    let pool = IdPool::new(&policy.user_namespace);
    let allocation = crate::pod::allocation(&pool, pod.as_ref(), facts.id_range, &root, id)
        .map_err(crate::pod::refusal_or_context)?;
    crate::pod::record_membership(private, pod.as_ref()).context("cannot record the pod")?;
    // The facts precheck gathered, now with the range this container got.
    facts.id_range = Some(allocation.range);
    // A container of its own runs in a user namespace moat makes, owned by
    // its range's base host uid, so its kernel counters are charged to that
    // uid and not to host root (T8); a pod member joins its pod's, and an
    // engine's namespace is kept. Open until libcontainer has joined it.
    let own_userns = if pod.is_none() && engine_userns.is_none() {
        Some(
            rootfs::container_userns(allocation.range)
                .context("cannot make the container's user namespace")?,
        )
    } else {
        None
    };
    facts.own_user_namespace = own_userns
        .as_ref()
        .map(|fd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())));
    let Hardened {
        spec: mut hardened,
        mut report,
        policy: effective,
    } = harden(&spec, &policy, &facts).map_err(|r| anyhow!(r))?;
    refuse_unfit_seccomp(&hardened)?;
    crate::phase::done(crate::phase::POLICY);

    let prepared = rootfs::prepare(
        &pinned_rootfs.real,
        pinned_rootfs.fd(),
        allocation.range,
        private,
        &paths.mount_point,
        crate::harden::rootfs_may_be_idmapped(&pinned_rootfs.real, &bundle, &policy.engines),
    )
    .context("cannot prepare the container's rootfs")?;
    crate::phase::done(crate::phase::ROOTFS);
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
        joinable: crate::state::consents_to_joins(
            &spec.annotations().clone().unwrap_or_default(),
            facts.engine_bundle.is_some(),
        ),
        init_start_time: None,
    };
    moat_state.save(&root).context("cannot save moat state")?;
    crate::phase::done(crate::phase::STATE);

    let docker_made = facts.engine_bundle.as_ref().is_some_and(|e| e.is_docker());
    install_egress(
        &mut hardened,
        &effective,
        &pinned,
        &paths,
        docker_made,
        &mut report,
    )?;
    crate::phase::done(crate::phase::NETNS);
    super::learn::start_for_create(ctx, &mut hardened, &effective, &paths, &mut report)?;
    // After learning set up its notify filter (which stays with libcontainer).
    let seccomp_filter = precompile_seccomp(&mut hardened, &paths.seccomp)?;
    crate::phase::done(crate::phase::SECCOMP_CACHE);
    prepare_for_libcontainer(
        &mut hardened,
        &pinned,
        &prepared.path,
        allocation.range,
        &paths,
        &mut report,
    )?;
    // The cgroup is now final (prepare_for_libcontainer set the default):
    // claim it before anything can join it (T22).
    if !ctx.systemd_cgroup {
        if let Some(path) = hardened
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
        {
            // One read of the mount table for both questions below.
            let hierarchies = crate::cgroup_probe::Hierarchies::read();
            if let Some(dir) = crate::cgroup_probe::leaf_to_claim(&path, &hierarchies) {
                // The leaf, then the directories above it this create will
                // make (NUL-separated: no path holds a NUL). Recorded before
                // the mkdir, so a moat killed right after it still leaves
                // teardown their names (rmdir: only while empty); dropped
                // again if the leaf turns out to be someone else's.
                let mut record = dir.as_os_str().as_encoded_bytes().to_vec();
                for above in crate::cgroup_probe::missing_ancestors(&path, &hierarchies) {
                    record.push(0);
                    record.extend_from_slice(above.as_os_str().as_encoded_bytes());
                }
                fs::write(&paths.cgroup_claim, record)
                    .context("cannot record the claimed cgroup")?;
                if let Err(e) = crate::cgroup_probe::claim_leaf(&dir) {
                    return Err(match e {
                        crate::cgroup_probe::ClaimError::Taken(dir) => {
                            // Someone else's leaf (so no level above it was
                            // missing): nothing of it is this create's.
                            let _ = fs::remove_file(&paths.cgroup_claim);
                            anyhow!(Refusal::new(
                                crate::refusal::RefusalRule::CgroupsPath,
                                format!(
                                    "linux.cgroupsPath {}: {} (claimed by a concurrent create?)",
                                    path.display(),
                                    crate::cgroup_probe::ClaimError::Taken(dir)
                                ),
                                None,
                            ))
                        }
                        // The levels above it that mkdir made stay recorded
                        // for the failed create's teardown.
                        other => anyhow!(other),
                    });
                }
                guard.claimed_cgroup = Some(dir);
            }
        }
    }
    crate::hook_exe::wrap_hooks(&mut hardened, &bundle, &facts.hook_executables)?;
    let staged = crate::staging::stage_bind_mounts(
        &mut hardened,
        &paths.staging,
        Some(allocation.range),
        &pinned,
        &effective.volumes,
    )?;
    report.notes.extend(staged.notes());
    let populated = crate::staging::stage_scratch_tmpfs(
        &mut hardened,
        &paths.staging,
        &effective.filesystem.tmpfs,
        allocation.range,
    )?;
    for dest in populated {
        report.notes.push(format!(
            "scratch tmpfs {} starts with the image's directories there",
            dest.display()
        ));
    }
    crate::staging::give_stdio_to_container(allocation.range);
    crate::phase::done(crate::phase::STAGING);
    let config = serde_json::to_vec_pretty(&hardened).context("cannot serialise spec")?;
    rootfs::write_atomic(&paths.config, &config)
        .context("cannot write the hardened config.json")?;
    // Where its processes will be, kept with the range: found even when
    // the state directories are removed (T31).
    crate::pod::record_claim(
        &pool,
        pod.as_ref(),
        &allocation,
        &root,
        id,
        &crate::idpool::ClaimRecord {
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
    crate::phase::done(crate::phase::STATE);

    for change in &report.changes {
        tracing::info!(id, rule = change.rule.name(), field = %change.field, before = %change.before, after = %change.after, why = %change.why, "hardened");
    }
    for note in &report.notes {
        tracing::info!(id, "{note}");
    }
    crate::phase::done(crate::phase::REPORT);

    redirect_null_stdio();
    // No thread but the warmer (allocation-free) runs across libcontainer's
    // fork.
    crate::idpool::finish_prescan();
    let executor = SelfCheck {
        allowed_caps: capability_mask(&moat_state.allowed_capabilities),
        seccomp: seccomp_filter,
    };
    let console_path = console.as_ref().map(crate::host_file::ConsoleSocket::path);
    let container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(executor)
        .with_console_socket(console_path.as_deref())
        .with_root_path(&root)
        .context("invalid --root")?
        .with_preserved_fds(opts.preserve_fds)
        .as_init(private)
        .with_systemd(ctx.systemd_cgroup)
        .with_detach(opts.detach)
        .with_no_pivot(opts.no_pivot)
        .build()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("libcontainer could not create container {id}"))?;
    drop(attach_warmer);
    crate::phase::done(crate::phase::READY);

    if let Some(pid) = container.pid() {
        let devices = super::devices::prepare(
            &super::devices::bound_device_paths(&hardened),
            &paths.devices,
            pid,
        )
        .context("cannot make the container's own device nodes")?;
        crate::phase::done(crate::phase::DEVICES);
        seal_container_mounts(pid, devices)?;
        // moat writes it, not libcontainer (whose fs::write follows a link
        // the bundle's owner planted at that name: T35).
        if let Some(pid_file) = opts.pid_file {
            crate::host_file::write_replacing(pid_file, pid.to_string().as_bytes())
                .with_context(|| format!("cannot write pid file {}", pid_file.display()))?;
        }
        // Read once the init exists: exec, kill and state act on the pid
        // only while it still names this process (T33).
        moat_state.init_start_time = crate::pidfd::start_time(pid.as_raw());
        moat_state
            .save(&root)
            .context("cannot record the container's init")?;
    }
    crate::phase::done(crate::phase::SEAL_CGROUPFS);
    guard.armed = false;
    if prepared.mode == RootfsMode::Unshifted {
        tracing::warn!(id, "rootfs is not idmapped; see the report");
    }
    Ok(container)
}

/// Compiles the container's seccomp profile on the host side (cached; see
/// `crate::seccomp_bpf`) and takes it out of the spec libcontainer reads, so
/// the container's init loads the ready program instead of compiling it.
/// The profile itself is kept in [`ContainerPaths::seccomp`] for `moat
/// exec`. A program too large for the kernel is refused (libcontainer's
/// compile would be as large: R7-7); any other failure keeps libcontainer's
/// own loading: slower, never weaker.
fn precompile_seccomp(
    spec: &mut Spec,
    profile: &Path,
) -> Result<Option<crate::seccomp_bpf::CompiledFilter>> {
    let Some(mut linux) = spec.linux().clone() else {
        return Ok(None);
    };
    let Some(seccomp) = linux.seccomp().clone() else {
        return Ok(None);
    };
    if !crate::seccomp_bpf::is_cacheable(&seccomp) {
        return Ok(None);
    }
    let compiled = match crate::seccomp_bpf::cached(
        &seccomp,
        Path::new(crate::seccomp_bpf::CACHE_DIR),
    ) {
        Ok(c) => c,
        Err(crate::seccomp_bpf::BpfError::TooLarge(n)) => return Err(unfit_seccomp(n)),
        Err(e) => {
            tracing::warn!(error = %e, "seccomp filter not precompiled; libcontainer will compile it");
            return Ok(None);
        }
    };
    let saved = serde_json::to_vec(&seccomp)
        .map_err(std::io::Error::other)
        .and_then(|json| rootfs::write_atomic(profile, &json));
    if let Err(e) = saved {
        tracing::warn!(error = %e, "cannot save the seccomp profile; libcontainer will compile it");
        return Ok(None);
    }
    linux.set_seccomp(None);
    spec.set_linux(Some(linux));
    Ok(Some(compiled))
}

/// Compiles the hardened profile into the seccomp cache before anything of
/// the container is made, so that a profile whose program does not fit the
/// kernel is refused at once, in one line (red-team R7-7, T4); the
/// compile's cost is bounded by the hardening's profile bounds, a refused
/// profile's failure is remembered by the cache, and [`precompile_seccomp`]
/// later finds the program there. Other failures are left to it.
fn refuse_unfit_seccomp(hardened: &Spec) -> Result<()> {
    let Some(seccomp) = hardened.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(());
    };
    if !crate::seccomp_bpf::is_cacheable(seccomp) {
        return Ok(());
    }
    match crate::seccomp_bpf::cached(seccomp, Path::new(crate::seccomp_bpf::CACHE_DIR)) {
        Err(crate::seccomp_bpf::BpfError::TooLarge(n)) => Err(unfit_seccomp(n)),
        _ => Ok(()),
    }
}

fn unfit_seccomp(instructions: usize) -> anyhow::Error {
    anyhow!(Refusal::new(
        crate::refusal::RefusalRule::Seccomp,
        format!(
            "linux.seccomp compiles to {instructions} BPF instructions, above the kernel's limit of {} (BPF_MAXINSNS); fewer rules or argument conditions would fit",
            crate::seccomp_bpf::BPF_MAXINSNS
        ),
        None,
    ))
}

/// Turns the hardened (OCI-semantics) spec into what libcontainer 0.7 runs:
/// absolute paths, moat's rootfs, namespaces given by path joined by moat
/// itself, and libcontainer's reading of MASKED_EQ.
fn prepare_for_libcontainer(
    spec: &mut Spec,
    pinned: &PinnedPaths,
    rootfs_path: &Path,
    range: crate::harden::IdRange,
    paths: &ContainerPaths,
    report: &mut Report,
) -> Result<()> {
    let id = paths.id.as_str();
    if let Some(mut root) = spec.root().clone() {
        root.set_path(rootfs_path.to_path_buf());
        spec.set_root(Some(root));
    }
    // Bind sources (relative ones too: relative to the bundle) are staged
    // from the fds pinned in precheck; see `crate::staging`.
    // The hardening named the cgroup of every raw and engine bundle
    // (`harden::cgroups_path::place_raw_cgroup`); libcontainer's own
    // default would be a level moat does not judge.
    let mut linux = spec.linux().clone().unwrap_or_default();
    if linux.cgroups_path().is_none() {
        bail!("the hardened spec of {id} names no cgroup");
    }
    if let Some(mut seccomp) = linux.seccomp().clone() {
        crate::seccomp::to_libcontainer_args(&mut seccomp);
        linux.set_seccomp(Some(seccomp));
    }
    spec.set_linux(Some(linux));

    let joined = crate::nsjoin::join_path_namespaces(spec, pinned, Some(&paths.netns))?;
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
        let sysfs = paths.sysfs.clone();
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
    debug_assert!(still_listed.iter().all(|n| n.path().is_none()
        || matches!(
            n.typ(),
            LinuxNamespaceType::Mount | LinuxNamespaceType::User | LinuxNamespaceType::Pid
        )));
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
    policy: &crate::policy::Policy,
    pinned: &PinnedPaths,
    paths: &ContainerPaths,
    docker_made: bool,
    report: &mut Report,
) -> Result<()> {
    let (root, id) = (paths.root.as_path(), paths.id.as_str());
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
    let mut allow = crate::egress::Egress::from_policy(&policy.egress).map_err(|e| anyhow!(e))?;
    allow.engine_dns = docker_made && crate::engine_names::uses_embedded_resolver(spec, pinned);
    let ruleset = crate::egress::ruleset(&allow);
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
            let path = paths.netns.clone();
            crate::netns::create_with_rules(&path, &crate::egress::table(&allow))
                .context("cannot create the network namespace with egress rules")?;
            let pinned_ns =
                fs::File::open(&path).context("cannot open the network namespace moat made")?;
            crate::resolver::attach(root, id, &allow, &path, &pinned_ns, docker_made)?;
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
            if let Some(existing) = crate::netns::table(&handle) {
                // Containers sharing a namespace share its rules, so they
                // must share the egress policy: never run a container under
                // rules other than the ones its own policy asks for.
                let ours = crate::egress::fingerprint(&allow);
                if crate::egress::parse_fingerprint(&existing).as_deref() != Some(ours.as_str()) {
                    bail!(
                        "the network namespace {} already carries egress rules for a different egress policy; containers sharing a network namespace must share egress.allow (and its moat.dev/egress-allow annotation)",
                        path.display()
                    );
                }
                // Count this container among the users of a table moat put
                // into a namespace it did not create, if it did.
                crate::netns::add_table_user(root, id, &joined.file, &path, false)
                    .context("cannot record the container among the users of the joined namespace's egress rules")?;
                report.notes.push(format!(
                    "egress: the joined network namespace {} already carries moat's rules for this egress policy",
                    path.display()
                ));
            } else {
                if !joined.engine_pin {
                    // A moat container's namespace carries moat's table
                    // unless it ran with egress off: never put one into a
                    // namespace moat did not make, except an engine's pin
                    // for a container the engine made (T10).
                    return Err(anyhow!(Refusal::new(
                        crate::pinned::RULE_NAMESPACE_PATH,
                        format!(
                            "network namespace {} carries no egress rules of moat's, and moat installs them only in namespaces it made or an engine pinned for the container it runs",
                            path.display()
                        ),
                        None,
                    )));
                }
                crate::netns::add_table_user(root, id, &joined.file, &path, true)
                    .context("cannot record the container among the users of the joined namespace's egress rules")?;
                crate::netns::apply(&handle, &ruleset)
                    .context("cannot install egress rules in the joined network namespace")?;
                report.notes.push(format!(
                    "egress: rules installed in the joined network namespace {}; removed when the last moat container there is deleted",
                    path.display()
                ));
            }
            // Name entries: the namespace's one table has one set of name
            // sets, so its containers share one service (the fingerprint
            // check above made their policies equal); the resolver serves
            // the namespace once, for all of them.
            crate::resolver::attach(root, id, &allow, &path, &joined.file, docker_made)?;
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
    range: crate::harden::IdRange,
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
/// root (found by the isolation probes), and binds the host's device nodes
/// (T34, see [`super::devices`]). Before the container starts, moat enters
/// its mount namespace, from a thread of its own so moat's own mount
/// namespace never changes, remounts /sys/fs/cgroup and everything below
/// it read-only, and puts the container's own device nodes in place of the
/// host's.
///
/// The namespace is found through the init's pid, so it is confirmed twice
/// before anything is remounted: the pid still names the process moat
/// created (a pidfd opened first outlives a reuse of the pid), and the
/// namespace is not moat's own — remounting there would make the host's
/// cgroup hierarchies read-only.
fn seal_container_mounts(
    init: nix::unistd::Pid,
    devices: Vec<super::devices::OwnDevice>,
) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{setns, unshare, CloneFlags};
    use std::os::unix::fs::MetadataExt;
    let pidfd = crate::pidfd::Pidfd::open(init.as_raw())
        .context("cannot open a pidfd for the container's init")?;
    let ns = fs::File::open(format!("/proc/{init}/ns/mnt"))
        .context("cannot open the container's mount namespace")?;
    // Read from the host: inside, /proc belongs to a pid namespace moat is
    // not in, so /proc/self does not resolve there.
    let text = fs::read_to_string(format!("/proc/{init}/mountinfo"))
        .context("cannot read the container's mount table")?;
    if !pidfd.is_alive() {
        bail!("the container's init (pid {init}) exited before its cgroupfs was sealed");
    }
    let own = fs::metadata("/proc/self/ns/mnt").context("cannot stat moat's mount namespace")?;
    let target = ns
        .metadata()
        .context("cannot stat the container's mount namespace")?;
    if (own.dev(), own.ino()) == (target.dev(), target.ino()) {
        bail!(
            "the container's init (pid {init}) is in moat's own mount namespace; \
             refusing to remount the host's cgroup hierarchies"
        );
    }
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
        super::devices::attach_in_container(devices)
    });
    remount
        .join()
        .map_err(|_| anyhow!("the thread sealing the container's mounts panicked"))?
        .context("cannot seal the container's mounts")
}
