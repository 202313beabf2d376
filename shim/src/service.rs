//! The Task API: containerd's requests, answered by driving moat.
//!
//! State is a map of containers (one shim serves every container of a
//! pod), each with its init process and its exec'd processes. A single
//! exit-watcher thread receives every reaped child from containerd-shim's
//! reaper and records exits; `Wait` blocks on a condition variable.

use std::collections::HashMap;
use std::fmt::Display;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse,
    StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageDyn};
use containerd_shim::protos::shim::oci::{Options, ProcessDetails};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::empty::Empty;
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::convert_to_any;
use containerd_shim::{ExitSignal, TtrpcContext};

use crate::moat::{ChildStdio, Moat, HELPER_PIDS};
use crate::stdio::{self, ConsoleSocket, HeldIo};
use crate::{now, oom, stats};

/// Exits of unknown pids kept at most (see `State::early_exits`).
const MAX_EARLY_EXITS: usize = 1024;

type RpcResult<T> = ttrpc::Result<T>;

fn rpc_error(code: Code, msg: impl Display) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.to_string()))
}

fn not_found(what: impl Display) -> ttrpc::Error {
    rpc_error(Code::NOT_FOUND, what)
}

fn internal(e: impl Display) -> ttrpc::Error {
    rpc_error(Code::UNKNOWN, e)
}

/// One process: a container's init or an exec'd process.
struct Proc {
    pid: u32,
    status: Status,
    exit_status: u32,
    exited_at: Option<Timestamp>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    held: HeldIo,
    /// A pidfd of a running exec'd process: signals cannot reach another
    /// process that reused the pid.
    pidfd: Option<OwnedFd>,
    /// An exec'd process's OCI process JSON, until it is started.
    exec_spec: Option<Vec<u8>>,
}

impl Proc {
    fn new(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Proc {
        Proc {
            pid: 0,
            status: Status::CREATED,
            exit_status: 0,
            exited_at: None,
            stdin: stdin.to_string(),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            terminal,
            held: HeldIo::default(),
            pidfd: None,
            exec_spec: None,
        }
    }

    fn exited(&self) -> bool {
        self.exited_at.is_some()
    }

    fn record_exit(&mut self, code: i32) {
        self.status = Status::STOPPED;
        self.exit_status = code as u32;
        self.exited_at = Some(now());
        // The workload is gone: no more input. The readers the shim holds
        // on stdout/stderr stay until delete, so output still in a FIFO (or
        // still being copied from a pty) is not lost before containerd
        // reads it; the pty master stays so a late resize is no error.
        self.held.stdin_writer = None;
        self.pidfd = None;
    }
}

struct Container {
    bundle: PathBuf,
    moat: Moat,
    init: Proc,
    execs: HashMap<String, Proc>,
    paused: bool,
}

impl Container {
    fn process(&self, exec_id: &str) -> Option<&Proc> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    fn process_mut(&mut self, exec_id: &str) -> Option<&mut Proc> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Container>,
    /// Exits of pids not known yet: an exec'd process may exit before its
    /// pid file is read. Consumed when the pid is registered.
    early_exits: HashMap<u32, i32>,
}

struct Shared {
    state: Mutex<State>,
    exited: Condvar,
}

pub struct Service {
    namespace: String,
    publisher: Arc<RemotePublisher>,
    exit: Arc<ExitSignal>,
    shared: Arc<Shared>,
}

impl Service {
    pub fn new(namespace: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Service {
        let service = Service {
            namespace: namespace.to_string(),
            publisher: Arc::new(publisher),
            exit,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                exited: Condvar::new(),
            }),
        };
        service.start_exit_watcher();
        service
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `moat pause` (or `resume`) of container `id`, remembered, then
    /// `event` published on `topic`.
    fn freeze(
        &self,
        id: &str,
        paused: bool,
        topic: &str,
        event: Box<dyn MessageDyn>,
    ) -> RpcResult<Empty> {
        let (moat, bundle) = self.container_runtime(id)?;
        let verb = if paused { "pause" } else { "resume" };
        moat.run(&bundle, &[verb, id], ChildStdio::default(), false)
            .map_err(internal)?;
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.paused = paused;
        }
        self.publish(topic, event);
        Ok(Empty::new())
    }

    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        publish(&self.publisher, &self.namespace, topic, event);
    }

    /// Receives every child the reaper collected.
    fn start_exit_watcher(&self) {
        let subscription = match monitor_subscribe(Topic::Pid) {
            Ok(s) => s,
            Err(e) => {
                containerd_shim::error!("cannot watch process exits: {e}");
                return;
            }
        };
        let shared = self.shared.clone();
        let publisher = self.publisher.clone();
        let namespace = self.namespace.clone();
        let spawned = std::thread::Builder::new()
            .name("exits".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for event in subscription.rx.iter() {
                    let Subject::Pid(pid) = event.subject else {
                        continue;
                    };
                    if HELPER_PIDS
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&pid)
                    {
                        continue; // a moat command, waited for by its caller
                    }
                    let Ok(pid) = u32::try_from(pid) else {
                        continue;
                    };
                    let exit = {
                        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                        let exit = record_exit(&mut state, pid, event.exit_code);
                        if exit.is_none() {
                            if state.early_exits.len() >= MAX_EARLY_EXITS {
                                state.early_exits.clear();
                            }
                            state.early_exits.insert(pid, event.exit_code);
                        }
                        exit
                    };
                    shared.exited.notify_all();
                    if let Some(exit) = exit {
                        publish(
                            &publisher,
                            &namespace,
                            topics::TASK_EXIT_EVENT_TOPIC,
                            Box::new(exit),
                        );
                    }
                }
            });
        if let Err(e) = spawned {
            containerd_shim::error!("cannot start the exit watcher: {e}");
        }
    }

    /// Registers a process's pid, unless it already exited: then its exit
    /// is recorded and published now.
    fn register_pid(&self, id: &str, exec_id: &str, pid: u32) -> RpcResult<()> {
        let exit = {
            let mut state = self.lock();
            let early = state.early_exits.remove(&pid);
            let container = state
                .containers
                .get_mut(id)
                .ok_or_else(|| not_found(format!("container {id}")))?;
            let proc = container
                .process_mut(exec_id)
                .ok_or_else(|| not_found(format!("process {exec_id}")))?;
            proc.pid = pid;
            match early {
                Some(code) => {
                    proc.record_exit(code);
                    Some(exit_event(id, exec_id, proc))
                }
                None => {
                    // Not reaped yet (its exit would be in early_exits): the
                    // pid is still this process.
                    proc.pidfd = pidfd_open(pid);
                    None
                }
            }
        };
        if let Some(exit) = exit {
            self.shared.exited.notify_all();
            self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(exit));
        }
        Ok(())
    }

    fn container_runtime(&self, id: &str) -> RpcResult<(Moat, PathBuf)> {
        let state = self.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| not_found(format!("container {id}")))?;
        Ok((c.moat.clone(), c.bundle.clone()))
    }

    /// Runs `moat create` (with a console socket for a terminal) and
    /// returns the init pid and what the shim holds of its streams.
    fn moat_create(
        &self,
        req: &CreateTaskRequest,
        moat: &Moat,
        bundle: &Path,
    ) -> Result<(u32, HeldIo), String> {
        let pid_file = bundle.join("init.pid");
        let bundle_arg = bundle.display().to_string();
        let pid_arg = pid_file.display().to_string();
        let mut args = vec!["create", "--bundle", &bundle_arg, "--pid-file", &pid_arg];
        let console = if req.terminal {
            Some(ConsoleSocket::new().map_err(|e| format!("console socket: {e}"))?)
        } else {
            None
        };
        let console_arg = console
            .as_ref()
            .map(|c| c.path.display().to_string())
            .unwrap_or_default();
        if console.is_some() {
            args.extend(["--console-socket", console_arg.as_str()]);
        }
        args.push(&req.id);
        let (child, mut held) = if req.terminal {
            (ChildStdio::default(), HeldIo::default())
        } else {
            stdio::open_direct(&req.stdin, &req.stdout, &req.stderr)
                .map_err(|e| format!("cannot open stdio: {e}"))?
        };
        let mut running = moat
            .spawn(bundle, &args, child, false)
            .map_err(|e| e.to_string())?;
        let master = console.as_ref().map(|c| c.receive(&mut running));
        running.wait().map_err(|e| e.to_string())?;
        if let Some(master) = master {
            let master = master.map_err(|e| format!("terminal: {e}"))?;
            held = stdio::attach_console(&master, &req.stdin, &req.stdout)
                .map_err(|e| format!("terminal stdio: {e}"))?;
        }
        let pid = read_pid(&pid_file)?;
        Ok((pid, held))
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> RpcResult<u32> {
        let (moat, bundle, spec, stdin, stdout, stderr, terminal) = {
            let mut state = self.lock();
            let c = state
                .containers
                .get_mut(id)
                .ok_or_else(|| not_found(format!("container {id}")))?;
            let (moat, bundle) = (c.moat.clone(), c.bundle.clone());
            let p = c
                .execs
                .get_mut(exec_id)
                .ok_or_else(|| not_found(format!("exec {exec_id} in {id}")))?;
            let spec = p.exec_spec.take().ok_or_else(|| {
                rpc_error(
                    Code::FAILED_PRECONDITION,
                    format!("exec {exec_id} already started"),
                )
            })?;
            (
                moat,
                bundle,
                spec,
                p.stdin.clone(),
                p.stdout.clone(),
                p.stderr.clone(),
                p.terminal,
            )
        };
        let spec_file = bundle.join(format!("{exec_id}.process.json"));
        let pid_file = bundle.join(format!("{exec_id}.pid"));
        let result = (|| -> Result<(u32, HeldIo), String> {
            std::fs::write(&spec_file, &spec).map_err(|e| format!("exec spec: {e}"))?;
            let spec_arg = spec_file.display().to_string();
            let pid_arg = pid_file.display().to_string();
            let mut args = vec![
                "exec",
                "--process",
                &spec_arg,
                "--detach",
                "--pid-file",
                &pid_arg,
            ];
            let console = if terminal {
                Some(ConsoleSocket::new().map_err(|e| format!("console socket: {e}"))?)
            } else {
                None
            };
            let console_arg = console
                .as_ref()
                .map(|c| c.path.display().to_string())
                .unwrap_or_default();
            if console.is_some() {
                args.extend(["--console-socket", console_arg.as_str()]);
            }
            args.push(id);
            let (child, mut held) = if terminal {
                (ChildStdio::default(), HeldIo::default())
            } else {
                stdio::open_direct(&stdin, &stdout, &stderr)
                    .map_err(|e| format!("cannot open stdio: {e}"))?
            };
            let mut running = moat
                .spawn(&bundle, &args, child, false)
                .map_err(|e| e.to_string())?;
            let master = console.as_ref().map(|c| c.receive(&mut running));
            running.wait().map_err(|e| e.to_string())?;
            if let Some(master) = master {
                let master = master.map_err(|e| format!("terminal: {e}"))?;
                held = stdio::attach_console(&master, &stdin, &stdout)
                    .map_err(|e| format!("terminal stdio: {e}"))?;
            }
            Ok((read_pid(&pid_file)?, held))
        })();
        let _ = std::fs::remove_file(&spec_file);
        let _ = std::fs::remove_file(&pid_file);
        let (pid, held) = match result {
            Ok(started) => started,
            Err(e) => {
                // The process will never run: end any Wait on it now.
                if let Some(p) = self
                    .lock()
                    .containers
                    .get_mut(id)
                    .and_then(|c| c.execs.get_mut(exec_id))
                {
                    p.record_exit(255);
                }
                self.shared.exited.notify_all();
                return Err(internal(e));
            }
        };
        {
            let mut state = self.lock();
            if let Some(p) = state
                .containers
                .get_mut(id)
                .and_then(|c| c.execs.get_mut(exec_id))
            {
                p.status = Status::RUNNING;
                p.held = held;
            }
        }
        self.register_pid(id, exec_id, pid)?;
        self.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Box::new(TaskExecStarted {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                pid,
                ..Default::default()
            }),
        );
        Ok(pid)
    }
}

fn publish(publisher: &RemotePublisher, namespace: &str, topic: &str, event: Box<dyn MessageDyn>) {
    if let Err(e) = publisher.publish(Context::default(), topic, namespace, event) {
        containerd_shim::warn!("cannot publish {topic}: {e}");
    }
}

fn exit_event(id: &str, exec_id: &str, p: &Proc) -> TaskExit {
    TaskExit {
        container_id: id.to_string(),
        id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
        pid: p.pid,
        exit_status: p.exit_status,
        exited_at: p.exited_at.clone().into(),
        ..Default::default()
    }
}

/// Records `pid`'s exit on the process it belongs to; the TaskExit event.
fn record_exit(state: &mut State, pid: u32, code: i32) -> Option<TaskExit> {
    for (id, c) in state.containers.iter_mut() {
        if c.init.pid == pid && !c.init.exited() {
            c.init.record_exit(code);
            c.paused = false;
            return Some(exit_event(id, "", &c.init));
        }
        for (exec_id, p) in c.execs.iter_mut() {
            if p.pid == pid && !p.exited() {
                p.record_exit(code);
                return Some(exit_event(id, exec_id, p));
            }
        }
    }
    None
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: a fresh fd from pidfd_open.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_pid(path: &Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad pid file {}", path.display()))
}

/// Exec ids become file names in the bundle: keep them plain.
fn check_exec_id(exec_id: &str) -> RpcResult<()> {
    let ok = !exec_id.is_empty()
        && exec_id.len() <= 128
        && !exec_id.starts_with('.')
        && exec_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(rpc_error(
            Code::INVALID_ARGUMENT,
            format!("invalid exec id {exec_id:?}"),
        ))
    }
}

fn mount_rootfs(req: &CreateTaskRequest, bundle: &Path) -> Result<(), String> {
    if req.rootfs.is_empty() {
        return Ok(());
    }
    let rootfs = bundle.join("rootfs");
    if let Err(e) = std::fs::create_dir(&rootfs) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(format!("cannot create {}: {e}", rootfs.display()));
        }
    }
    for m in &req.rootfs {
        // containerd 2 asks for idmapped layers (`uidmap=`/`gidmap=`, the
        // pod's mapping) for a `hostUsers: false` pod, which the kernel's
        // overlay does not take as options: the layers are mounted as
        // they are, and moat idmaps the rootfs with the container's own
        // range (the pod's, which moat has checked is that mapping) as it
        // does for every container.
        let options: Vec<String> = m
            .options
            .iter()
            .filter(|o| !o.starts_with("uidmap=") && !o.starts_with("gidmap="))
            .cloned()
            .collect();
        if let Err(e) = containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()),
            Some(m.source.as_str()),
            &options,
            &rootfs,
        ) {
            stdio::unmount_rootfs(bundle);
            return Err(format!("cannot mount rootfs: {e}"));
        }
    }
    Ok(())
}

impl containerd_shim::Task for Service {
    fn create(&self, _ctx: &TtrpcContext, req: CreateTaskRequest) -> RpcResult<CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(rpc_error(Code::INVALID_ARGUMENT, "empty container id"));
        }
        if !req.checkpoint.is_empty() {
            return Err(rpc_error(
                Code::UNIMPLEMENTED,
                "moat does not restore checkpoints",
            ));
        }
        if self.lock().containers.contains_key(&req.id) {
            return Err(rpc_error(
                Code::ALREADY_EXISTS,
                format!("container {}", req.id),
            ));
        }
        let options = req
            .options
            .as_ref()
            .filter(|any| any.type_url.ends_with("containerd.runc.v1.Options"))
            .map(|any| Options::parse_from_bytes(&any.value))
            .transpose()
            .map_err(|e| rpc_error(Code::INVALID_ARGUMENT, format!("runtime options: {e}")))?;
        let moat = Moat::from_options(options.as_ref(), &self.namespace)
            .map_err(|e| rpc_error(Code::INVALID_ARGUMENT, e))?;
        let bundle = PathBuf::from(&req.bundle);
        moat.save(&bundle)
            .map_err(|e| internal(format!("cannot write to bundle: {e}")))?;
        mount_rootfs(&req, &bundle).map_err(internal)?;
        let (pid, held) = match self.moat_create(&req, &moat, &bundle) {
            Ok(created) => created,
            Err(e) => {
                // moat leaves nothing behind on a failed create; make sure.
                let _ = moat.delete_detached(&req.id, &req.bundle);
                stdio::unmount_rootfs(&bundle);
                return Err(internal(e));
            }
        };
        let mut init = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        init.held = held;
        self.lock().containers.insert(
            req.id.clone(),
            Container {
                bundle: bundle.clone(),
                moat,
                init,
                execs: HashMap::new(),
                paused: false,
            },
        );
        self.register_pid(&req.id, "", pid)?;
        let (publisher, namespace, id) = (
            self.publisher.clone(),
            self.namespace.clone(),
            req.id.clone(),
        );
        let watching = oom::watch(pid, move || {
            publish(
                &publisher,
                &namespace,
                topics::TASK_OOM_EVENT_TOPIC,
                Box::new(TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                }),
            )
        });
        if let Err(e) = watching {
            containerd_shim::warn!("no OOM events for {}: {e}", req.id);
        }
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                })
                .into(),
                pid,
                ..Default::default()
            }),
        );
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> RpcResult<StartResponse> {
        if !req.exec_id.is_empty() {
            let pid = self.start_exec(&req.id, &req.exec_id)?;
            return Ok(StartResponse {
                pid,
                ..Default::default()
            });
        }
        let (moat, bundle) = self.container_runtime(&req.id)?;
        moat.run(&bundle, &["start", &req.id], ChildStdio::default(), false)
            .map_err(internal)?;
        let pid = {
            let mut state = self.lock();
            let c = state
                .containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            if !c.init.exited() {
                c.init.status = Status::RUNNING;
            }
            c.init.pid
        };
        self.publish(
            topics::TASK_START_EVENT_TOPIC,
            Box::new(TaskStart {
                container_id: req.id.clone(),
                pid,
                ..Default::default()
            }),
        );
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> RpcResult<StateResponse> {
        let state = self.lock();
        let c = state
            .containers
            .get(&req.id)
            .ok_or_else(|| not_found(format!("container {}", req.id)))?;
        let p = c
            .process(&req.exec_id)
            .ok_or_else(|| not_found(format!("exec {} in {}", req.exec_id, req.id)))?;
        let status = if p.exited() {
            Status::STOPPED
        } else if req.exec_id.is_empty() && c.paused {
            Status::PAUSED
        } else {
            p.status
        };
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.display().to_string(),
            pid: p.pid,
            status: status.into(),
            stdin: p.stdin.clone(),
            stdout: p.stdout.clone(),
            stderr: p.stderr.clone(),
            terminal: p.terminal,
            exit_status: p.exit_status,
            exited_at: p.exited_at.clone().into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> RpcResult<Empty> {
        if !req.exec_id.is_empty() {
            let state = self.lock();
            let p = state
                .containers
                .get(&req.id)
                .and_then(|c| c.execs.get(&req.exec_id))
                .ok_or_else(|| not_found(format!("exec {} in {}", req.exec_id, req.id)))?;
            if p.exited() || p.pid == 0 {
                return Err(not_found("process already finished"));
            }
            let signal = i32::try_from(req.signal)
                .map_err(|_| rpc_error(Code::INVALID_ARGUMENT, "bad signal"))?;
            let sent = match &p.pidfd {
                // SAFETY: pidfd_send_signal with a pidfd we own and no siginfo.
                Some(fd) => unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                },
                // No pidfd (old kernel): the pid is the shim's unreaped child.
                // SAFETY: kill(2) with a pid and signal number.
                None => libc::c_long::from(unsafe { libc::kill(p.pid as i32, signal) }),
            };
            if sent != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    return Err(not_found("process already finished"));
                }
                return Err(internal(e));
            }
            return Ok(Empty::new());
        }
        let (moat, bundle) = self.container_runtime(&req.id)?;
        let init_exited = |svc: &Service| {
            svc.lock()
                .containers
                .get(&req.id)
                .is_none_or(|c| c.init.exited())
        };
        if init_exited(self) && !req.all {
            return Err(not_found("process already finished"));
        }
        let signal = req.signal.to_string();
        let mut args = vec!["kill"];
        if req.all {
            args.push("--all");
        }
        args.push(&req.id);
        args.push(&signal);
        match moat.run(&bundle, &args, ChildStdio::default(), false) {
            Ok(_) => Ok(Empty::new()),
            Err(_) if init_exited(self) => Err(not_found("process already finished")),
            Err(e) => Err(internal(e)),
        }
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> RpcResult<DeleteResponse> {
        if !req.exec_id.is_empty() {
            let p = {
                let mut state = self.lock();
                let c = state
                    .containers
                    .get_mut(&req.id)
                    .ok_or_else(|| not_found(format!("container {}", req.id)))?;
                match c.execs.get(&req.exec_id) {
                    None => return Err(not_found(format!("exec {}", req.exec_id))),
                    Some(p) if !p.exited() && p.pid != 0 => {
                        return Err(rpc_error(
                            Code::FAILED_PRECONDITION,
                            format!("exec {} is still running", req.exec_id),
                        ))
                    }
                    Some(_) => {}
                }
                c.execs
                    .remove(&req.exec_id)
                    .ok_or_else(|| not_found("exec"))?
            };
            // A Wait still blocked on it ends with NotFound.
            self.shared.exited.notify_all();
            self.publish(
                topics::TASK_DELETE_EVENT_TOPIC,
                Box::new(TaskDelete {
                    container_id: req.id.clone(),
                    id: req.exec_id.clone(),
                    pid: p.pid,
                    exit_status: p.exit_status,
                    exited_at: p.exited_at.clone().into(),
                    ..Default::default()
                }),
            );
            return Ok(DeleteResponse {
                pid: p.pid,
                exit_status: p.exit_status,
                exited_at: p.exited_at.into(),
                ..Default::default()
            });
        }
        let (moat, bundle) = {
            let state = self.lock();
            let c = state
                .containers
                .get(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            if c.init.status == Status::RUNNING && !c.init.exited() {
                return Err(rpc_error(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is running", req.id),
                ));
            }
            (c.moat.clone(), c.bundle.clone())
        };
        moat.delete_detached(&req.id, &bundle.display().to_string())
            .map_err(internal)?;
        stdio::unmount_rootfs(&bundle);
        let _ = std::fs::remove_file(bundle.join("init.pid"));
        let c = self
            .lock()
            .containers
            .remove(&req.id)
            .ok_or_else(|| not_found(format!("container {}", req.id)))?;
        self.shared.exited.notify_all();
        // A created (never started) init was killed by the delete.
        let exited_at = c.init.exited_at.clone().unwrap_or_else(now);
        let exit_status = if c.init.exited() {
            c.init.exit_status
        } else {
            128 + libc::SIGKILL as u32
        };
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid: c.init.pid,
                exit_status,
                exited_at: Some(exited_at.clone()).into(),
                ..Default::default()
            }),
        );
        Ok(DeleteResponse {
            pid: c.init.pid,
            exit_status,
            exited_at: Some(exited_at).into(),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> RpcResult<PidsResponse> {
        let (moat, bundle) = self.container_runtime(&req.id)?;
        let out = moat
            .run(
                &bundle,
                &["ps", "--format", "json", &req.id],
                ChildStdio::default(),
                true,
            )
            .map_err(internal)?;
        let pids: Vec<u32> =
            serde_json::from_slice(&out).map_err(|e| internal(format!("moat ps output: {e}")))?;
        let exec_ids: HashMap<u32, String> = {
            let state = self.lock();
            state
                .containers
                .get(&req.id)
                .map(|c| {
                    c.execs
                        .iter()
                        .filter(|(_, p)| p.pid != 0)
                        .map(|(id, p)| (p.pid, id.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut processes = Vec::with_capacity(pids.len());
        for pid in pids {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            if let Some(exec_id) = exec_ids.get(&pid) {
                let details = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                info.info = Some(convert_to_any(Box::new(details)).map_err(internal)?).into();
            }
            processes.push(info);
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> RpcResult<Empty> {
        let event = TaskPaused {
            container_id: req.id.clone(),
            ..Default::default()
        };
        self.freeze(
            &req.id,
            true,
            topics::TASK_PAUSED_EVENT_TOPIC,
            Box::new(event),
        )
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> RpcResult<Empty> {
        let event = TaskResumed {
            container_id: req.id.clone(),
            ..Default::default()
        };
        self.freeze(
            &req.id,
            false,
            topics::TASK_RESUMED_EVENT_TOPIC,
            Box::new(event),
        )
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> RpcResult<Empty> {
        check_exec_id(&req.exec_id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| rpc_error(Code::INVALID_ARGUMENT, "exec without a process spec"))?;
        {
            let mut state = self.lock();
            let c = state
                .containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(format!("container {}", req.id)))?;
            if c.init.exited() {
                return Err(rpc_error(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is not running", req.id),
                ));
            }
            if c.execs.contains_key(&req.exec_id) {
                return Err(rpc_error(
                    Code::ALREADY_EXISTS,
                    format!("exec {}", req.exec_id),
                ));
            }
            let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
            p.exec_spec = Some(spec);
            c.execs.insert(req.exec_id.clone(), p);
        }
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }),
        );
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> RpcResult<Empty> {
        let state = self.lock();
        let p = state
            .containers
            .get(&req.id)
            .and_then(|c| c.process(&req.exec_id))
            .ok_or_else(|| not_found(format!("process {} in {}", req.exec_id, req.id)))?;
        let console = p
            .held
            .console
            .as_ref()
            .ok_or_else(|| rpc_error(Code::FAILED_PRECONDITION, "process has no terminal"))?;
        stdio::resize(console, req.width, req.height).map_err(internal)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> RpcResult<Empty> {
        let mut state = self.lock();
        let p = state
            .containers
            .get_mut(&req.id)
            .and_then(|c| c.process_mut(&req.exec_id))
            .ok_or_else(|| not_found(format!("process {} in {}", req.exec_id, req.id)))?;
        if req.stdin {
            p.held.stdin_writer = None;
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> RpcResult<Empty> {
        let (moat, bundle) = self.container_runtime(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .ok_or_else(|| rpc_error(Code::INVALID_ARGUMENT, "update without resources"))?;
        // containerd encodes the OCI LinuxResources as JSON; moat checks it.
        let file = bundle.join("moat-update.json");
        std::fs::write(&file, &resources.value).map_err(internal)?;
        let file_arg = file.display().to_string();
        let result = moat.run(
            &bundle,
            &["update", "--resources", &file_arg, &req.id],
            ChildStdio::default(),
            false,
        );
        let _ = std::fs::remove_file(&file);
        result.map_err(internal)?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> RpcResult<WaitResponse> {
        let mut state = self.lock();
        loop {
            let p = state
                .containers
                .get(&req.id)
                .and_then(|c| c.process(&req.exec_id))
                .ok_or_else(|| not_found(format!("process {} in {}", req.exec_id, req.id)))?;
            if p.exited() {
                return Ok(WaitResponse {
                    exit_status: p.exit_status,
                    exited_at: p.exited_at.clone().into(),
                    ..Default::default()
                });
            }
            state = self
                .shared
                .exited
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> RpcResult<StatsResponse> {
        let (moat, bundle) = self.container_runtime(&req.id)?;
        let out = moat
            .run(
                &bundle,
                &["events", "--stats", &req.id],
                ChildStdio::default(),
                true,
            )
            .map_err(internal)?;
        let mut metrics = stats::metrics_from_moat(&out)
            .map_err(|e| internal(format!("moat events output: {e}")))?;
        // The egress counts (T18) ride along; their absence (egress off, or
        // moat failing to read them) leaves the cgroup statistics intact.
        match moat.run(&bundle, &["metrics", &req.id], ChildStdio::default(), true) {
            Ok(text) => metrics.network = stats::egress_from_moat(&text),
            Err(e) => containerd_shim::warn!("no egress counts for {}: {e}", req.id),
        }
        Ok(StatsResponse {
            stats: Some(convert_to_any(Box::new(metrics)).map_err(internal)?).into(),
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> RpcResult<ConnectResponse> {
        let task_pid = self
            .lock()
            .containers
            .get(&req.id)
            .map(|c| c.init.pid)
            .unwrap_or_default();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> RpcResult<Empty> {
        // One shim serves a whole pod: stay while any container is left.
        if self.lock().containers.is_empty() {
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}
