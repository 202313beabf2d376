//! `moat exec`: a new process in a running container, sandboxed exactly
//! like the container's init: its user namespace, its seccomp filter, its
//! capability allowlist, no new privileges, its cgroup, and the
//! in-container self-check before execve.
//!
//! moat enters the container itself instead of using libcontainer's tenant
//! builder: libcontainer 0.7 neither joins the container's user namespace
//! nor applies its seccomp filter to exec'd processes (moat's self-check
//! caught this), which would run `docker exec` as real host root in the
//! container's other namespaces.
//!
//! Process tree: moat forks a helper that joins the cgroup and the
//! namespaces (all but the user namespace while still host root, which may
//! join namespaces owned by other containers' user namespaces, e.g. a
//! shared pod network; then the user namespace), then forks the workload so
//! it is born inside the container's pid namespace. The helper exits at
//! once, so the workload is adopted by the caller's subreaper (containerd's
//! shim with `--detach`) or by moat itself (foreground).

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::create_syscall;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::{Process, Spec};

use crate::harden::harden_process;
use crate::policy::{canonical_capability_name, parse_capability, Policy};
use crate::report::Report;
use crate::selfcheck::{capability_mask, SelfCheck};

use super::{load_container, load_moat_state, ContainerPaths, Ctx};

/// Namespaces joined before the user namespace (as host root), in order.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Runs `args` in the container. A process that cannot be started fails
/// as `runc exec` does (exit 255, "exec failed: <cause>", the causes worded
/// as runc's), so engines tell it from a process that ran and failed;
/// moat's own refusals keep their one line and exit code 1.
pub fn exec(ctx: &Ctx, args: liboci_cli::Exec) -> Result<i32> {
    exec_in_container(ctx, args).map_err(|e| {
        if e.downcast_ref::<crate::refusal::Refusal>().is_some() {
            e
        } else {
            e.context(crate::runc_contract::EXEC_FAILED)
        }
    })
}

fn exec_in_container(ctx: &Ctx, args: liboci_cli::Exec) -> Result<i32> {
    let id = args.container_id.clone();
    let mut container = load_container(ctx, &id)?;
    let root = ctx.root()?;
    let moat_state = load_moat_state(&root, &id)?
        .ok_or_else(|| anyhow!("container {id} was not created by moat"))?;
    crate::container::refresh_status(&mut container, Some(&moat_state));
    match container.status() {
        ContainerStatus::Running => {}
        ContainerStatus::Paused if args.ignore_paused => {}
        // runc's words.
        ContainerStatus::Paused => {
            bail!("cannot exec in a paused container (use --ignore-paused to override)")
        }
        ContainerStatus::Stopped => bail!("cannot exec in a stopped container"),
        other => bail!("container {id} is not running (status {other})"),
    }
    let init = container
        .pid()
        .ok_or_else(|| anyhow!("container {id} has no init process"))?;
    // Held until the namespaces are open: they are the init's only if it
    // is still alive then (T33).
    let init_fd = crate::container::live_init(&container, Some(&moat_state))
        .ok_or_else(|| anyhow!("container {id} is not running (status stopped)"))?;
    let paths = ContainerPaths::new(&root, &id);
    let private = paths.private_dir.clone();
    let spec = Spec::load(&paths.config)
        .map_err(|e| anyhow!("{e}"))
        .context("cannot load the container's hardened spec")?;

    if args.cgroup.is_some() {
        tracing::warn!(
            id,
            flag = "--cgroup",
            "ignored: moat runs exec'd processes in the container's own cgroup"
        );
    }
    let preserve_fds = u32::try_from(args.preserve_fds.max(0)).unwrap_or(0);
    let mut process = build_process(
        &args,
        &spec,
        &moat_state.allowed_capabilities,
        crate::facts::own_oom_score_adj(),
    )?;
    // T38: the init's AppArmor profile / SELinux label, applied in the workload.
    let (apparmor, label) = (args.apparmor.as_deref(), args.process_label.as_deref());
    super::exec_confine::confine_exec_labels(
        &mut process,
        &spec,
        apparmor,
        label,
        super::exec_confine::LsmHost::probe(),
    )?;
    let seccomp = exec_seccomp(&spec, &paths.seccomp)?;
    let check = SelfCheck {
        allowed_caps: capability_mask(&moat_state.allowed_capabilities),
        seccomp: None,
    };

    // Everything that can fail for ordinary reasons is opened before forking.
    let mut ns_files = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{init}/ns/{name}");
        if same_ns(&theirs, &format!("/proc/self/ns/{name}")) {
            continue; // shared with us (e.g. no cgroup namespace)
        }
        let f = File::open(&theirs).with_context(|| format!("cannot open {theirs}"))?;
        ns_files.push((*name, *flag, f));
    }
    let userns = File::open(format!("/proc/{init}/ns/user"))
        .with_context(|| format!("cannot open /proc/{init}/ns/user"))?;
    // The init's cgroups, opened while it is alive (checked next): joined
    // through these descriptors, never re-created (libcgroups' add_task is
    // mkdir -p: an exec racing delete left the cgroups behind, T36).
    let cgroup = crate::cgroup_join::CgroupDirs::of_process(init.as_raw())
        .with_context(|| format!("cannot open the cgroups of container {id}"))?;
    if !init_fd.is_alive() {
        bail!("container {id} is not running (its init exited)");
    }
    let console = match (&args.console_socket, process.terminal().unwrap_or(false)) {
        (Some(socket), true) => {
            // libcontainer links the socket under this name and connects to
            // the name: one name per exec, removed only by this exec, so
            // concurrent execs never connect to each other's socket (G5).
            let link = exec_console_link_name();
            // Never through a tenant's link (T35, red-team R8-3).
            let socket = crate::host_file::ConsoleSocket::open(socket)
                .context("cannot use the console socket")?;
            let connected =
                libcontainer::tty::setup_console_socket(&private, &socket.path(), &link);
            let _ = fs::remove_file(private.join(&link));
            Some(
                connected
                    .map_err(|e| anyhow!("{e}"))
                    .context("cannot connect to the console socket")?,
            )
        }
        (None, true) => bail!("exec with a terminal needs --console-socket"),
        _ => None,
    };
    // A learning container: the exec'd process's filter reports to the
    // container's recorder, connected from here (the host side).
    let learn_conn = crate::learn::connect_for_exec(&private)?;

    super::create::redirect_null_stdio();
    // As for create: `docker exec c sh -c 'echo hi > /dev/stdout'` reopens
    // the engine's pipe by path, which container root may only do if it
    // owns the pipe.
    if let Some(allocation) = &moat_state.allocation {
        crate::staging::give_stdio_to_container(allocation.range);
    }
    // Foreground: become the workload's reaper once the helper exits, and
    // hold signals for forwarding. Detached: the caller's subreaper adopts it.
    let signals = SigSet::all();
    let old_mask = SigSet::thread_get_mask().unwrap_or_else(|_| SigSet::empty());
    if !args.detach {
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        signals.thread_block().context("cannot block signals")?;
    }

    let (pid_r, pid_w) = nix::unistd::pipe()?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let entry = Entry {
        process: &process,
        seccomp: &seccomp,
        check: &check,
        console: console.as_ref(),
        old_mask: &old_mask,
        preserve_fds,
        learn_conn: learn_conn.as_ref(),
    };
    // SAFETY: moat is single-threaded; the children only run the entry code
    // below and then exec or _exit.
    let helper = match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(pid_r);
            drop(err_r);
            let code = match helper_main(&cgroup, &ns_files, &userns, &entry, pid_w, &err_w) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&err_w, format!("{e:#}").as_bytes());
                    1
                }
            };
            // SAFETY: leaving a fork child without running destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(pid_w);
    drop(err_w);
    drop(ns_files);
    let mut pid_text = String::new();
    let _ = File::from(pid_r).read_to_string(&mut pid_text);
    let _ = waitpid(helper, None);
    let mut err_text = String::new();
    let _ = File::from(err_r).read_to_string(&mut err_text);
    if !err_text.is_empty() {
        bail!("unable to start container process: {err_text}");
    }
    let workload = Pid::from_raw(
        pid_text
            .trim()
            .parse()
            .map_err(|_| anyhow!("unable to start container process: it did not start"))?,
    );
    if let Some(pid_file) = &args.pid_file {
        // Replaced, never followed: the bundle may be the tenant's (T35).
        crate::host_file::write_replacing(pid_file, workload.to_string().as_bytes())
            .with_context(|| format!("cannot write pid file {}", pid_file.display()))?;
    }
    tracing::info!(id, pid = workload.as_raw(), "exec'd a hardened process");
    if args.detach {
        return Ok(0);
    }
    wait_forwarding(workload, &signals)
}

/// The process to run: the caller's `--process` JSON, or the container's
/// own process with the command-line overrides; then hardened.
fn build_process(
    args: &liboci_cli::Exec,
    spec: &Spec,
    allowed: &[String],
    oom_floor: Option<i32>,
) -> Result<Process> {
    let mut policy = Policy::default();
    policy.capabilities.allow = allowed.to_vec();
    let mut process: Process = match &args.process {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read process file {}", path.display()))?;
            let raw: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("malformed process file {}", path.display()))?;
            crate::harden::hooks::check_process_keys(&raw)?;
            serde_json::from_value(raw)
                .with_context(|| format!("malformed process file {}", path.display()))?
        }
        None => {
            let mut p = spec
                .process()
                .clone()
                .ok_or_else(|| anyhow!("the container's spec has no process"))?;
            if args.command.is_empty() {
                bail!("exec needs a command or --process");
            }
            p.set_args(Some(args.command.clone()));
            let mut env = p.env().clone().unwrap_or_default();
            for (k, v) in &args.env {
                env.retain(|e| !e.starts_with(&format!("{k}=")));
                env.push(format!("{k}={v}"));
            }
            p.set_env(Some(env));
            if let Some(cwd) = &args.cwd {
                p.set_cwd(cwd.clone());
            }
            p.set_terminal(Some(args.tty));
            let mut user = p.user().clone();
            if let Some((uid, gid)) = args.user {
                user.set_uid(uid);
                if let Some(gid) = gid {
                    user.set_gid(gid);
                }
            }
            if !args.additional_gids.is_empty() {
                user.set_additional_gids(Some(args.additional_gids.clone()));
            }
            p.set_user(user);
            // --cap adds to the container's sets, only within the allowlist.
            if !args.cap.is_empty() {
                let mut caps = p.capabilities().clone().unwrap_or_default();
                for name in &args.cap {
                    let canonical = canonical_capability_name(name);
                    let Some(cap) = parse_capability(&canonical) else {
                        bail!("unknown capability {name:?}");
                    };
                    if !allowed.contains(&canonical) {
                        tracing::warn!(capability = %canonical, "exec --cap dropped: not in the container's allowlist");
                        continue;
                    }
                    for set in [
                        caps.bounding().clone(),
                        caps.effective().clone(),
                        caps.permitted().clone(),
                    ]
                    .iter()
                    .enumerate()
                    {
                        let mut s = set.1.clone().unwrap_or_default();
                        s.insert(cap);
                        match set.0 {
                            0 => caps.set_bounding(Some(s)),
                            1 => caps.set_effective(Some(s)),
                            _ => caps.set_permitted(Some(s)),
                        };
                    }
                }
                p.set_capabilities(Some(caps));
            }
            p
        }
    };
    crate::harden::refuse_proc_cwd(process.cwd())?;
    // As at create: an rlimit above moat's own would fail in the exec'd
    // process with a bare EPERM.
    crate::harden::refuse_rlimits_above_ceiling(
        &process,
        &crate::facts::own_rlimit_ceilings(),
        "exec process",
    )?;
    let mut report = Report::default();
    process = harden_process(&process, &policy, &mut report);
    // As for the container's init (T8): never below moat's own value; the
    // helper writes it before entering the container.
    crate::harden::clamp_process_oom_score_adj(&mut process, oom_floor, &mut report);
    for c in &report.changes {
        tracing::info!(rule = c.rule.name(), field = %c.field, before = %c.before, after = %c.after, "hardened exec");
    }
    Ok(process)
}

/// A name for this exec's console-socket link no other exec uses: pid (one
/// exec per process at a time) and the time, in case the pid is reused
/// while a killed exec's link is still there.
fn exec_console_link_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("exec-console-{}-{nanos:x}", std::process::id())
}

fn same_ns(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// How an exec'd process gets the container's filter: the program moat
/// compiled at create (the usual case), or libcontainer's loader when the
/// profile stayed in config.json (notify/trace actions).
enum ExecSeccomp {
    Compiled(crate::seccomp_bpf::CompiledFilter),
    Libcontainer(oci_spec::runtime::LinuxSeccomp),
    /// No profile: the self-check (Seccomp must be 2) refuses to run.
    Missing,
}

fn exec_seccomp(spec: &Spec, path: &std::path::Path) -> Result<ExecSeccomp> {
    if let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        return Ok(ExecSeccomp::Libcontainer(s));
    }
    let json = match fs::read(path) {
        Ok(j) => j,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ExecSeccomp::Missing),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_slice(&json)
        .with_context(|| format!("cannot parse {}", path.display()))?;
    let compiled = crate::seccomp_bpf::cached(
        &profile,
        std::path::Path::new(crate::seccomp_bpf::CACHE_DIR),
    )
    .context("cannot compile the container's seccomp filter")?;
    Ok(ExecSeccomp::Compiled(compiled))
}

struct Entry<'a> {
    process: &'a Process,
    seccomp: &'a ExecSeccomp,
    check: &'a SelfCheck,
    console: Option<&'a OwnedFd>,
    old_mask: &'a SigSet,
    /// Descriptors 3..3+n the caller passes on (--preserve-fds).
    preserve_fds: u32,
    /// The recorder's connection, when the container is learning.
    learn_conn: Option<&'a OwnedFd>,
}

/// In the helper: join, fork the workload, report its pid, exit.
fn helper_main(
    cgroup: &crate::cgroup_join::CgroupDirs,
    ns_files: &[(&str, CloneFlags, File)],
    userns: &File,
    entry: &Entry,
    pid_w: OwnedFd,
    err_w: &OwnedFd,
) -> Result<()> {
    if let Some(adj) = entry.process.oom_score_adj() {
        // Still host root in moat's own namespaces: the value is already
        // clamped to moat's own, and the workload inherits it.
        fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context("cannot set the process's oom_score_adj")?;
    }
    cgroup
        .join(nix::unistd::getpid().as_raw())
        .map_err(|e| anyhow!("cannot join the container's cgroup: {e}"))?;
    for (name, flag, f) in ns_files {
        setns(f, *flag).with_context(|| format!("cannot join the {name} namespace"))?;
    }
    setns(userns, CloneFlags::CLONE_NEWUSER).context("cannot join the user namespace")?;
    // SAFETY: single-threaded fork child.
    match unsafe { fork() }.context("fork into the pid namespace")? {
        ForkResult::Child => {
            drop(pid_w);
            let err = workload_main(entry);
            let _ = nix::unistd::write(err_w, format!("{err:#}").as_bytes());
            // SAFETY: see above.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            let _ = File::from(pid_w).write_all(child.to_string().as_bytes());
            Ok(())
        }
    }
}

/// In the workload process, inside every namespace: set up and exec.
/// Returns only on failure.
fn workload_main(entry: &Entry) -> anyhow::Error {
    match workload_setup(entry) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn workload_setup(entry: &Entry) -> Result<Never> {
    let p = entry.process;
    let syscall = create_syscall();
    nix::unistd::setsid().context("setsid")?;
    if let Some(console) = entry.console {
        libcontainer::tty::setup_console(syscall.as_ref(), console.as_raw_fd(), false)
            .map_err(|e| anyhow!("cannot set up the terminal: {e}"))?;
    }
    // T15 (CVE-2024-21626 class): resolved inside the container's root only.
    super::exec_confine::enter_cwd(p.cwd())?;
    super::exec_confine::apply_exec_labels(p)?;
    for rl in p.rlimits().clone().unwrap_or_default() {
        let lim = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: plain setrlimit with a valid struct.
        unsafe { libc::setrlimit(rl.typ() as libc::__rlimit_resource_t, &lim) };
    }
    let user = p.user();
    let gids: Vec<Gid> = user
        .additional_gids()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(Gid::from_raw)
        .collect();
    syscall
        .set_groups(&gids)
        .map_err(|e| anyhow!("setgroups: {e}"))?;
    syscall
        .set_id(Uid::from_raw(user.uid()), Gid::from_raw(user.gid()))
        .map_err(|e| {
            anyhow!(
                "cannot switch to uid {} gid {}: {e}",
                user.uid(),
                user.gid()
            )
        })?;
    libcontainer::capabilities::reset_effective(syscall.as_ref())
        .map_err(|e| anyhow!("reset capabilities: {e}"))?;
    if let Some(caps) = p.capabilities() {
        libcontainer::capabilities::drop_privileges(caps, syscall.as_ref())
            .map_err(|e| anyhow!("drop capabilities: {e}"))?;
    }
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!("cannot set no_new_privs");
    }
    match entry.seccomp {
        ExecSeccomp::Compiled(filter) => crate::seccomp_bpf::load(filter)
            .map_err(|e| anyhow!("cannot load the seccomp filter: {e}"))?,
        ExecSeccomp::Libcontainer(seccomp) => {
            let notify_fd = libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| anyhow!("cannot load the seccomp filter: {e}"))?;
            if let Some(fd) = notify_fd {
                // Learning: nothing but sendmsg until the recorder has the fd.
                let conn = entry
                    .learn_conn
                    .ok_or_else(|| anyhow!("learning filter without a recorder"))?;
                crate::learn::hand_over_notify_fd(conn, fd)?;
                // SAFETY: the fd is ours and the recorder has its own copy.
                unsafe { libc::close(fd) };
            }
            crate::seccomp_bpf::load_always_denied_guard(seccomp)
                .map_err(|e| anyhow!("cannot load moat's always-denied filter: {e}"))?;
        }
        ExecSeccomp::Missing => {}
    }
    let failed = entry.check.failures();
    if !failed.is_empty() {
        bail!(
            "moat sandbox self-check failed, refusing to run the workload: {}",
            failed.join("; ")
        );
    }
    // No descriptor of moat's may reach the workload (CVE-2024-21626); only
    // the ones the caller explicitly passes with --preserve-fds.
    let first = 3u32.saturating_add(entry.preserve_fds);
    // SAFETY: close_range with CLOEXEC only marks descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let args = p
        .args()
        .clone()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("no command to run"))?;
    let env: Vec<CString> = p
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| CString::new(e).ok())
        .collect();
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .context("argument contains NUL")?;
    let program = resolve_program(&args[0], p.env().as_deref().unwrap_or(&[]))?;
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(entry.old_mask), None);
    let e = nix::unistd::execve(&program, &argv, &env).unwrap_err();
    Err(anyhow!(
        "exec {}: {}",
        program.to_string_lossy(),
        crate::runc_contract::errno_text(e)
    ))
}

/// The program to execve: runc's lookup (Go's `exec.LookPath`) with the
/// container's PATH, not moat's, and its error wording.
fn resolve_program(name: &str, env: &[String]) -> Result<CString> {
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let found =
        crate::runc_contract::look_path(name, path, is_executable).map_err(|e| anyhow!(e))?;
    CString::new(found).context("argument contains NUL")
}

/// Go's test for an executable file: it exists, is not a directory and has
/// an execute bit (execve itself decides the rest).
fn is_executable(path: &str) -> std::result::Result<(), String> {
    match nix::sys::stat::stat(Path::new(path)) {
        Err(e) => Err(format!(
            "stat {path}: {}",
            crate::runc_contract::errno_text(e)
        )),
        Ok(st) => {
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if !is_dir && st.st_mode & 0o111 != 0 {
                Ok(())
            } else {
                Err("permission denied".to_string())
            }
        }
    }
}

/// Waits for the workload, forwarding signals; returns its exit code.
fn wait_forwarding(workload: Pid, signals: &SigSet) -> Result<i32> {
    loop {
        // Reap first: the workload may already have exited.
        loop {
            match waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == workload => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == workload => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        match signals.wait().context("sigwait")? {
            Signal::SIGCHLD | Signal::SIGWINCH | Signal::SIGURG => {}
            sig => {
                let _ = kill(workload, sig);
            }
        }
    }
}
