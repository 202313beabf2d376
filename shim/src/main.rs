//! `containerd-shim-moat-v2`: containerd's shim v2 for moat
//! (`runtime_type = "io.containerd.moat.v2"`).
//!
//! The shim serves containerd's Task API over ttrpc and drives the `moat`
//! binary once per operation, the way containerd's runc shim drives runc:
//! libcontainer forks, so it must not run inside this multi-threaded
//! process. The shim is the subreaper of every container process, reaps
//! them and publishes their exits. See docs/shim.md.

mod moat;
mod oom;
mod service;
mod stats;
mod stdio;

use std::path::Path;
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{spawn, Config, ExitSignal, Flags, StartOpts};

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.moat.v2";

/// The annotation CRI puts on every container of a pod: containers with
/// the same sandbox id share one shim process.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

struct MoatShim {
    namespace: String,
    id: String,
    bundle: String,
    /// containerd's address (`-address`), part of the shim socket's name.
    containerd_address: String,
    /// The socket this server listens on (`-socket`), server mode only.
    socket: String,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for MoatShim {
    type T = service::Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        MoatShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            containerd_address: args.address.clone(),
            socket: args.socket.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    /// Starts the long-running shim server (or finds the pod's existing
    /// one) and returns its address. containerd runs this with the
    /// container's bundle as working directory.
    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = sandbox_id(Path::new("config.json")).unwrap_or_else(|| opts.id.clone());
        let (_pid, address) = spawn(opts, &grouping, Vec::new())?;
        write_address(&address)?;
        quiet_signals_before_start_returns();
        Ok(address)
    }

    /// containerd calls `delete` when the shim is gone (crashed or killed)
    /// to clean up what it left: the moat container and the rootfs mount.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        } else {
            self.bundle.clone()
        };
        let runtime = moat::Moat::load(Path::new(&bundle), &self.namespace);
        if let Err(e) = runtime.delete_detached(&self.id, &bundle) {
            containerd_shim::warn!("cleanup of {}: {e}", self.id);
        }
        stdio::unmount_rootfs(Path::new(&bundle));
        // The dead shim's socket, unless a live shim (the pod's, serving
        // other containers) still answers on it.
        let grouping =
            sandbox_id(&Path::new(&bundle).join("config.json")).unwrap_or_else(|| self.id.clone());
        let socket =
            containerd_shim::socket_address(&self.containerd_address, &self.namespace, &grouping);
        let path = socket_path(&socket);
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        Ok(DeleteResponse {
            // The process was killed with the shim: report SIGKILL.
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(now()).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
        // containerd-shim removes the socket named in the `address` file of
        // its working directory, the first container's bundle, which
        // containerd may have deleted already in a pod: remove it here.
        if !self.socket.is_empty() {
            let _ = std::fs::remove_file(socket_path(&self.socket));
        }
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        service::Service::new(&self.namespace, publisher, self.exit.clone())
    }
}

/// The pod a container belongs to, from its bundle's config.json
/// (written by containerd, not by the workload).
fn sandbox_id(config: &Path) -> Option<String> {
    let text = std::fs::read(config).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let id = spec
        .get("annotations")?
        .get(SANDBOX_ID_ANNOTATION)?
        .as_str()?;
    (!id.is_empty()).then(|| id.to_string())
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

pub fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

/// containerd-shim's bootstrap closes its signal self-pipe when `start`
/// returns, while signal-hook's handlers stay installed. A SIGCHLD arriving
/// then (from the server child, which exits at once when the pod's shim
/// already serves the socket) makes the handler write to the closed pipe:
/// EPIPE raises SIGPIPE, whose handler writes again, and `start` spins at
/// 100% CPU until containerd kills it and fails the container's start (a
/// few percent of a pod's second and later containers). `start` has
/// nothing left to do with either signal, so block both; the process exits
/// right after and pending signals die with it.
fn quiet_signals_before_start_returns() {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGPIPE);
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        containerd_shim::warn!("cannot block SIGCHLD/SIGPIPE in start: {e}");
    }
}

/// Protobuf's base-128 varint.
fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// One length-delimited protobuf field.
fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push((number << 3) | 2);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// `-info` (containerd 2): containerd's `RuntimeInfo` message (types/
/// introspection.proto: name = 1, version = 2, features = 4) with moat's
/// own OCI features document (`moat features`, JSON, as the runc shim
/// passes runc's) in a `google.protobuf.Any`, written to stdout. containerd
/// reads it to decide what it may ask of the handler (user namespaces,
/// idmapped mounts) and passes it on to the kubelet. The options containerd
/// writes to stdin name nothing moat's features depend on.
fn print_runtime_info() -> i32 {
    let moat = moat::find_binary(moat::DEFAULT_BINARY);
    let features = match std::process::Command::new(&moat)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => out.stdout,
        Ok(out) => {
            eprintln!(
                "{} features failed: {}",
                moat.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("cannot run {} features: {e}", moat.display());
            return 1;
        }
    };
    let mut version = Vec::new();
    field(1, env!("CARGO_PKG_VERSION").as_bytes(), &mut version);
    let mut any = Vec::new();
    field(
        1,
        b"types.containerd.io/opencontainers/runtime-spec/1/features/Features",
        &mut any,
    );
    field(2, &features, &mut any);
    let mut info = Vec::new();
    field(1, RUNTIME_ID.as_bytes(), &mut info);
    field(2, &version, &mut info);
    field(4, &any, &mut info);
    use std::io::Write;
    match std::io::stdout().write_all(&info) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write the runtime info: {e}");
            1
        }
    }
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| a == "-info" || a == "--info")
    {
        std::process::exit(print_runtime_info());
    }
    // One malloc arena for all threads: the shim's threads mostly sleep,
    // and per-thread arenas would cost resident memory in every pod.
    // SAFETY: mallopt is called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    containerd_shim::run::<MoatShim>(RUNTIME_ID, None);
}
