//! moat's resolver (issue 18, T18): makes the allowlist's name entries
//! (`pypi.org tcp 443`, `*.github.com tcp 443`) work, and logs every
//! container's refused connections. One per node, for every container
//! with egress rules: no process per container.
//!
//! - Refused connections: each served namespace gets a thread holding an
//!   NFLOG socket made in that namespace (`crate::nflog`); each message
//!   the table's log rules send (rate-limited in the kernel) becomes an
//!   `egress-connect` event (`crate::resolver_stats`). A namespace without
//!   name entries gets only this thread (no DNS sockets).
//!
//! - For each network namespace with name entries it holds UDP and TCP
//!   sockets on `127.0.0.1:53` (and `[::1]:53`) made inside that
//!   namespace, and an nfnetlink socket made there too (a socket stays in
//!   the namespace it was made in). moat's DNS chain
//!   (`crate::egress::dns_rules`) redirects every port-53 query of the
//!   namespace there. Containers sharing a namespace (a pod, `--network
//!   container:`) share its table, so they must share its egress policy
//!   (create compares the table's fingerprint): the namespace is served
//!   once, for all of them, until the last one is detached.
//! - TCP (RFC 7766): length-prefixed messages, any number per connection,
//!   answered in order; a connection idle for [`TCP_IDLE`] is closed, and
//!   at most [`MAX_TCP_CONNECTIONS`] are open per namespace (more wait in
//!   the backlog): a tenant holding connections open stalls only its own
//!   namespace's TCP lookups, never another's. Over UDP, an answer larger
//!   than the client takes (512 bytes, or its EDNS size) is sent empty
//!   with TC set, and the client asks again over TCP; a truncated upstream
//!   answer is fetched again over TCP for a TCP client.
//! - What goes upstream is a query moat writes itself from the question
//!   (`crate::dns::message::upstream_query`): the client's EDNS options,
//!   header bits, extra records and the name's letter case never leave.
//!   Answered addresses that are not globally reachable (private,
//!   loopback, link-local, metadata…) are dropped unless the policy's
//!   `egress.private_answers` names them for that name (DNS rebinding,
//!   `crate::dns::answers`).
//! - A name no entry allows is answered REFUSED (counted, logged with the
//!   container and the name) and never leaves. An allowed name is
//!   forwarded to the policy's upstream resolvers from inside the
//!   namespace, on a socket carrying [`crate::egress::RESOLVER_MARK`]
//!   (container root cannot set a mark over a host-owned namespace); the
//!   answer's A/AAAA addresses go into the matching entries' sets with a
//!   timeout (the TTL, bounded by the policy) before the answer is passed
//!   on. An answer whose addresses cannot be added is SERVFAIL.
//! - Fails closed: with the resolver dead, the redirect stays and nothing
//!   listens (queries get ICMP port unreachable); addresses already
//!   answered expire with their timeout.
//! - docker's container names: a docker-made container on a user-defined
//!   network (its resolv.conf names the engine's `127.0.0.11`) gets the
//!   DNS redirect and a DNS thread even without name entries; its
//!   neighbours' names are answered from dockerd's record
//!   (`crate::engine_names`), every other name is REFUSED.
//! - Life cycle: `moat create` writes the container's registration
//!   (`<private root>/resolver/containers/<id>`, under the registry
//!   lock) and, if no resolver answers, starts `moat resolver` detached
//!   (its own session, no inherited descriptors), which holds a lock so
//!   there is one per state root. It runs the worker (`moat resolver
//!   --worker`) and restarts it when it dies; a (re)started worker
//!   attaches every registered container from the registrations. Create
//!   waits for the attach only when the resolver answers the container's
//!   DNS; a container registered for events only costs create a file and
//!   a message. `moat delete` removes the registration and tells the
//!   worker. With nothing registered for [`LINGER`] the worker stops; the
//!   supervisor then removes the directory (its log included) under the
//!   registry lock, or restarts the worker if a create registered
//!   meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use crate::dns::answers::{self, PrivateAnswer};
use crate::dns::message::{self, RCODE_REFUSED, RCODE_SERVFAIL};
use crate::dns::names::{self, NameRule};
use crate::egress::{name_set, Egress, RESOLVER_MARK, RESOLVER_PORT};
use crate::resolver_stats::Outcome;

/// What the resolver needs to serve one container: written by create,
/// read by the resolver (also when it restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// A path of the container's network namespace: moat's pin of the
    /// namespace it made, or the path the container joined (a pod's pin,
    /// `/proc/<pid>/ns/net`).
    pub netns: PathBuf,
    /// The namespace's identity (`<dev>-<ino>` of its nsfs file): the
    /// path is used only while it still names this namespace.
    #[serde(default)]
    pub netns_key: Option<String>,
    /// The name entries' patterns, in the table's order (entry n's
    /// addresses go into sets `name<n>_v4` and `name<n>_v6`).
    pub names: Vec<String>,
    pub resolvers: Vec<SocketAddr>,
    pub ttl_min: u32,
    pub ttl_max: u32,
    /// `egress.private_answers` entries (`PATTERN CIDR`).
    #[serde(default)]
    pub private_answers: Vec<String>,
    /// The docker container id, for a container docker made: its
    /// network's container names are answered from dockerd's record
    /// (`crate::engine_names`).
    #[serde(default)]
    pub docker_container: Option<String>,
}

impl Registration {
    /// Do two registrations ask for the same name service (everything but
    /// the way to the namespace)?
    fn same_service(&self, other: &Registration) -> bool {
        self.names == other.names
            && self.resolvers == other.resolvers
            && self.ttl_min == other.ttl_min
            && self.ttl_max == other.ttl_max
            && self.private_answers == other.private_answers
    }
}

/// The resolver's directory under moat's private root.
pub fn dir(root: &Path) -> PathBuf {
    crate::state::private_root(root).join("resolver")
}

/// The registrations' directory in the resolver's.
const REGISTRATIONS: &str = "containers";

pub(crate) fn registrations(root: &Path) -> PathBuf {
    dir(root).join(REGISTRATIONS)
}

fn control_socket(root: &Path) -> PathBuf {
    dir(root).join("control.sock")
}

const WORKER_PID: &str = "worker.pid";
const SUPERVISOR_PID: &str = "supervisor.pid";

/// The worker's pid (what serves the sockets; killing it fails closed
/// until the supervisor restarts it).
pub fn worker_pid_file(root: &Path) -> PathBuf {
    dir(root).join(WORKER_PID)
}

/// The supervisor's pid.
pub fn supervisor_pid_file(root: &Path) -> PathBuf {
    dir(root).join(SUPERVISOR_PID)
}

/// Writes this process's pid to `name` in the resolver's directory `d`:
/// the old file removed, a new one made (`O_EXCL`, never through a link).
fn write_pid_file(d: &crate::resolver_dir::Dir, name: &str) -> std::io::Result<()> {
    let _ = d.unlink(name);
    d.create_new(name, std::process::id().to_string().as_bytes())
}

/// The resolver's log (refused names, errors).
pub fn log_file(root: &Path) -> PathBuf {
    dir(root).join("log")
}

/// Registers container `id` with the node's resolver (starting it if it
/// is not running). Every container whose DNS moat's resolver answers is
/// registered (name entries, or docker's container names:
/// [`Egress::redirects_dns`]), and create returns once the resolver
/// serves its namespace (`netns`, opened from `path`; a namespace already
/// served for other containers is shared), so DNS works from the
/// container's first instruction. Every other container is registered
/// when the policy asks for events of refused connections
/// (`egress.connection_events`): that costs create a file and a message,
/// never a wait (the resolver attaches it when it reads the message, or
/// when it starts; refused connections before that are refused and
/// counted, not logged). Without name entries a failure here fails
/// nothing but the events or the neighbours' names (the table refuses
/// what it refuses, and DNS fails closed): a warning.
pub fn attach(
    root: &Path,
    id: &str,
    egress: &Egress,
    path: &Path,
    netns: &File,
    docker_made: bool,
) -> Result<()> {
    let answers_dns = egress.redirects_dns();
    if !answers_dns && !egress.connection_events {
        return Ok(());
    }
    let result = register(root, id, egress, path, netns, docker_made).and_then(|()| {
        if answers_dns {
            wait_attached(root, id)
        } else {
            notify(root, &format!("attach {id}"))
        }
    });
    match result {
        Err(e) if egress.names.is_empty() && answers_dns => {
            tracing::warn!(id, error = %format!("{e:#}"), "moat's resolver does not serve this container: the names of its docker network's containers do not resolve (its DNS fails closed)");
            Ok(())
        }
        Err(e) if egress.names.is_empty() => {
            tracing::warn!(id, error = %format!("{e:#}"), "moat's resolver does not log this container's refused connections (they are still refused and counted)");
            Ok(())
        }
        other => other,
    }
}

/// The lock registrations are written under (shared) and the resolver's
/// directory is removed under (exclusive, [`remove_if_unregistered`]): a
/// registration is never written into a directory being removed.
const REGISTRY_LOCK: &str = "registry.lock";

/// Writes container `id`'s registration.
fn register(
    root: &Path,
    id: &str,
    egress: &Egress,
    path: &Path,
    netns: &File,
    docker_made: bool,
) -> Result<()> {
    let reg = Registration {
        netns: path.to_path_buf(),
        netns_key: Some(crate::netns::ns_key(netns).context("cannot stat the network namespace")?),
        names: egress.names.iter().map(|n| n.pattern.to_string()).collect(),
        resolvers: egress.resolvers.clone(),
        ttl_min: egress.ttl_min,
        ttl_max: egress.ttl_max,
        private_answers: egress
            .private_answers
            .iter()
            .map(|p| p.to_string())
            .collect(),
        docker_container: (docker_made && egress.redirects_dns()).then(|| id.to_string()),
    };
    write_registration(root, id, &serde_json::to_vec(&reg)?)
}

/// Writes registration `text` of container `id` under the registry lock
/// (shared).
fn write_registration(root: &Path, id: &str, text: &[u8]) -> Result<()> {
    let regs = registrations(root);
    // A few rounds at most: each one lost only to a resolver that removed
    // its (unused) directory meanwhile. The directory is opened once per
    // round and every file is made relative to it (`crate::resolver_dir`).
    for _ in 0..100 {
        crate::state::create_private_dir_all(&regs)
            .context("cannot create the resolver's directory")?;
        let Some((d, _held)) = lock_registry(root, nix::fcntl::FlockArg::LockShared) else {
            continue;
        };
        // The very directory whose lock is held, never looked up again.
        let Ok(regs) = d.sub(REGISTRATIONS) else {
            continue;
        };
        let tmp = format!(".{id}.tmp");
        // A create killed after writing it left it: made fresh below.
        let _ = regs.unlink(&tmp);
        match regs
            .create_new(&tmp, text)
            .and_then(|()| regs.rename(&tmp, id))
        {
            Ok(()) => return Ok(()),
            // Removed meanwhile (a resolver's clean-up): another round.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).context("cannot write the resolver registration"),
        }
    }
    bail!("cannot write the resolver registration: its directory kept going away")
}

/// The registry lock of the resolver's directory, taken (`how`: shared to
/// write a registration, exclusive to remove the directory), with that
/// directory opened once: the lock must still be the CURRENT directory's
/// lock (looked up by name once held), because whoever removes the
/// directory renames it away (the lock with it) while holding the lock
/// exclusively, so a lock taken after that is a gone directory's and
/// protects nothing. None: the directory is gone or was replaced meanwhile
/// (look again), or the lock cannot be taken.
fn lock_registry(
    root: &Path,
    how: nix::fcntl::FlockArg,
) -> Option<(crate::resolver_dir::Dir, nix::fcntl::Flock<File>)> {
    use std::os::unix::fs::MetadataExt;
    let d = crate::resolver_dir::Dir::open(&dir(root)).ok()?;
    let lock = d.lock_file(REGISTRY_LOCK).ok()?;
    let held = nix::fcntl::Flock::lock(lock, how).ok()?;
    let ours = nix::sys::stat::fstat(held.as_raw_fd()).ok()?;
    let current = fs::symlink_metadata(dir(root).join(REGISTRY_LOCK));
    if current.is_ok_and(|c| c.dev() == ours.st_dev && c.ino() == ours.st_ino) {
        return Some((d, held));
    }
    // `d` was renamed away: a lock this call made in it would keep the
    // remover's last rmdir from succeeding (a `.resolver.gone.*` left).
    if d.stat(REGISTRY_LOCK)
        .is_ok_and(|s| s.st_dev == ours.st_dev && s.st_ino == ours.st_ino)
    {
        let _ = d.unlink(REGISTRY_LOCK);
    }
    None
}

/// Asks the resolver to attach registered container `id` and waits until
/// it serves it (starting the resolver if none answers).
fn wait_attached(root: &Path, id: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last_spawn: Option<Instant> = None;
    loop {
        match request(root, &format!("attach {id}")) {
            Ok(answer) if answer == "ok" => return Ok(()),
            // The namespace's previous serving thread has not ended yet
            // (it ends after the query it is answering): the control loop
            // never waits for it, this create does.
            Ok(answer) if answer == BUSY && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(answer) => bail!("moat's resolver cannot serve the container: {answer}"),
            Err(e) => {
                if Instant::now() > deadline {
                    bail!(
                        "moat's resolver does not answer ({e}); see {}",
                        log_file(root).display()
                    );
                }
                // Not running (or stopping): start one. A second one finds
                // the lock taken and exits.
                if last_spawn.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                    spawn_supervisor(root)?;
                    last_spawn = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Sends `line` to the resolver without waiting for its answer; starts
/// the resolver if none listens (it attaches every registered container
/// when it starts). A message to a resolver that is stopping is lost, and
/// harmless: it stops only with nothing registered, and its supervisor
/// looks again under the registry lock and restarts it if a registration
/// came meanwhile.
fn notify(root: &Path, line: &str) -> Result<()> {
    match UnixStream::connect(control_socket(root)) {
        Ok(mut s) => {
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = s.write_all(format!("{line}\n").as_bytes());
            Ok(())
        }
        Err(_) => spawn_supervisor(root),
    }
}

/// Forgets container `id`: removes its registration and tells a running
/// resolver to close its sockets. Waits for the resolver's answer only
/// for a container whose DNS it answers (a joined namespace's DNS must be
/// the remaining containers' at once); never for the resolver to stop:
/// it stops by itself once nothing has been registered for [`LINGER`].
/// Never fails: delete goes on.
pub fn detach(root: &Path, id: &str) {
    // Opened once; the registration read and removed relative to it.
    let regs = crate::resolver_dir::Dir::open(&dir(root))
        .ok()
        .map(|d| (d.sub(REGISTRATIONS).ok(), d));
    let Some(text) = regs
        .as_ref()
        .and_then(|(r, _)| r.as_ref())
        .and_then(|r| r.read(id).ok())
    else {
        // Never registered, or its create was killed while registering
        // (its temporary file written, not yet renamed), perhaps before
        // any resolver started: remove what that create left, and the
        // resolver's directory if no resolver runs and nothing else is
        // registered, so a delete --force leaves nothing behind.
        if let Some((r, _)) = &regs {
            if let Some(r) = r {
                let _ = r.unlink(&format!(".{id}.tmp"));
            }
            cleanup_if_unused(root);
        }
        return;
    };
    let answers_dns = serde_json::from_slice::<Registration>(&text)
        .map(|r| !r.names.is_empty() || r.docker_container.is_some())
        .unwrap_or(true);
    if let Some((Some(r), _)) = &regs {
        let _ = r.unlink(id);
    }
    let line = format!("detach {id}");
    let reached = if answers_dns {
        request(root, &line).map(drop)
    } else {
        UnixStream::connect(control_socket(root)).map(|mut s| {
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = s.write_all(format!("{line}\n").as_bytes());
        })
    };
    if let Err(e) = reached {
        // Not running: nothing holds the container's sockets.
        tracing::debug!(error = %e, id, "resolver not reached for detach");
        crate::resolver_stats::remove_files(root, id);
        cleanup_if_unused(root);
    }
}

/// Removes the resolver's directory when no container is registered and
/// no resolver runs (its lock is free).
fn cleanup_if_unused(root: &Path) {
    let lock = crate::resolver_dir::Dir::open(&dir(root)).and_then(|d| d.reader("lock"));
    if let Ok(lock) = lock {
        if nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err() {
            // A supervisor runs: it removes the directory when it stops.
            return;
        }
    }
    remove_if_unregistered(root);
}

/// Is any container registered?
fn registered(root: &Path) -> bool {
    crate::resolver_dir::Dir::open(&registrations(root)).is_ok_and(|d| d.has_visible_entry())
}

/// Removes the resolver's directory if no container is registered, under
/// the registry lock (held exclusively, the lock registrations are written
/// under, created if the directory has none yet): the directory is first
/// renamed away, so a create that writes a registration after this finds
/// a new directory (and starts a new resolver). Returns false if a
/// container is registered.
fn remove_if_unregistered(root: &Path) -> bool {
    let d = dir(root);
    for _ in 0..100 {
        if fs::symlink_metadata(&d).is_err() {
            // Gone already: nothing is registered in it.
            return true;
        }
        let Some((_, _held)) = lock_registry(root, nix::fcntl::FlockArg::LockExclusive) else {
            continue;
        };
        if registered(root) {
            return false;
        }
        let gone = crate::state::private_root(root).join(format!(
            ".resolver.gone.{}.{}",
            std::process::id(),
            random_query_id()
        ));
        if fs::rename(&d, &gone).is_ok() {
            let _ = fs::remove_dir_all(&gone);
        }
        return true;
    }
    false
}

/// One request on the control socket; the answer line.
fn request(root: &Path, line: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(control_socket(root))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::other("the resolver closed the connection"));
    }
    Ok(answer.trim().to_string())
}

/// Starts `moat resolver` detached from the caller, stderr on its log
/// (`crate::resolver_daemon`: nothing of the caller's is kept).
fn spawn_supervisor(root: &Path) -> Result<()> {
    let log =
        crate::resolver_log::open(&log_file(root)).context("cannot open the resolver's log")?;
    let child = crate::resolver_daemon::command(root, log)
        .spawn()
        .context("cannot start moat's resolver")?;
    // Not waited for: it outlives this command (reaped by whoever
    // inherits it).
    drop(child);
    Ok(())
}

/// `moat resolver`: the supervisor. Holds the lock (one per state root),
/// runs the worker and restarts it when it dies, until it exits cleanly
/// (no container left).
pub fn run_supervisor(root: &Path) -> Result<()> {
    // First: out of the starter's cgroups and limits (R6-7); the worker
    // inherits this.
    crate::resolver_daemon::leave_caller();
    crate::state::create_private_dir_all(&dir(root))?;
    let d = crate::resolver_dir::Dir::open(&dir(root))?;
    let lock = d.lock_file("lock")?;
    let _lock = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        // Another supervisor runs.
        Err(_) => return Ok(()),
    };
    write_pid_file(&d, SUPERVISOR_PID)?;
    loop {
        // A worker dying in a loop writes a line each time.
        let _ = crate::resolver_log::rotate_if_larger(
            libc::STDERR_FILENO,
            &log_file(root),
            crate::resolver_log::LOG_MAX_BYTES,
        );
        let status = Command::new("/proc/self/exe")
            .arg("--root")
            .arg(root)
            .arg("resolver")
            .arg("--worker")
            .stdin(Stdio::null())
            .status();
        let clean = matches!(status, Ok(s) if s.success());
        if !clean {
            tracing::error!(status = ?status, "moat's resolver worker died; restarting it (DNS of its containers fails until it is back)");
        }
        // The worker stops (cleanly) only when nothing has been registered
        // for a while; a create may have registered since: then it runs
        // again, at once. Otherwise the directory goes, under the registry
        // lock (no registration can be written into it meanwhile).
        if remove_if_unregistered(root) {
            return Ok(());
        }
        if !clean {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One served network namespace: its thread, and the containers in it
/// that are attached.
struct Served {
    stop: Arc<AtomicBool>,
    /// The DNS thread, or (without name entries) the refused-connection
    /// listener: the serving is restarted when it has ended.
    thread: std::thread::JoinHandle<()>,
    /// The refused-connection listener beside a DNS thread.
    nflog: Option<std::thread::JoinHandle<()>>,
    /// The registration the thread was started from.
    reg: Registration,
    members: BTreeSet<String>,
}

/// What the worker serves: namespaces by key, and which namespace each
/// attached container is in.
#[derive(Default)]
struct Serving {
    namespaces: HashMap<String, Served>,
    member_of: HashMap<String, String>,
    /// Threads told to stop and not yet ended, by namespace key: the
    /// control loop never joins a running one (R6-2: a tenant's slow
    /// queries would hold every tenant's attach); each ends by itself
    /// after the query it is answering ([`serve`] checks its flag between
    /// queries) and is reaped here.
    stopping: Vec<(String, std::thread::JoinHandle<()>)>,
}

/// The control answer for an attach whose namespace's previous thread is
/// still ending: ask again.
const BUSY: &str = "busy";

/// An attach that must be asked again (see [`BUSY`]).
#[derive(Debug)]
struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(BUSY)
    }
}

impl std::error::Error for Busy {}

impl Serving {
    /// Attaches registered container `id`: joins the serving of its
    /// namespace if that is served (for the same names), else starts it.
    fn attach(&mut self, root: &Path, id: &str) -> Result<()> {
        self.reap();
        if let Some(key) = self.member_of.get(id) {
            if self
                .namespaces
                .get(key)
                .is_some_and(|n| !n.thread.is_finished())
            {
                return Ok(());
            }
            self.detach(id);
        }
        let (reg, netns, key) = read_registration(root, id)?;
        if let Some(served) = self.namespaces.get_mut(&key) {
            if !served.thread.is_finished() {
                if !served.reg.same_service(&reg) {
                    bail!("its network namespace is served for other name entries (containers sharing a network namespace must share its egress policy)");
                }
                served.members.insert(id.to_string());
                self.member_of.insert(id.to_string(), key);
                return Ok(());
            }
        }
        // Its sockets are still held by a thread that is ending.
        if self.stopping.iter().any(|(k, _)| *k == key) {
            return Err(Busy.into());
        }
        // Not served, or its thread ended: (re)start it for every
        // container attached to it.
        let members = self
            .namespaces
            .remove(&key)
            .map(|old| {
                old.stop.store(true, Ordering::SeqCst);
                let _ = old.thread.join();
                if let Some(t) = old.nflog {
                    let _ = t.join();
                }
                old.members
            })
            .unwrap_or_default();
        let (stop, thread, nflog) = start_serving(id, &reg, netns)?;
        let mut served = Served {
            stop,
            thread,
            nflog,
            reg,
            members,
        };
        served.members.insert(id.to_string());
        self.member_of.insert(id.to_string(), key.clone());
        self.namespaces.insert(key, served);
        Ok(())
    }

    /// Detaches container `id`; its namespace stays served while another
    /// attached container is in it.
    fn detach(&mut self, id: &str) {
        let Some(key) = self.member_of.remove(id) else {
            return;
        };
        let Some(served) = self.namespaces.get_mut(&key) else {
            return;
        };
        served.members.remove(id);
        if served.members.is_empty() {
            if let Some(served) = self.namespaces.remove(&key) {
                served.stop.store(true, Ordering::SeqCst);
                if let Some(t) = served.nflog {
                    self.stopping.push((key.clone(), t));
                }
                self.stopping.push((key, served.thread));
            }
        }
        self.reap();
    }

    /// Detaches the attached containers whose registration is gone.
    fn prune(&mut self, root: &Path) {
        let regs = registrations(root);
        let gone: Vec<String> = self
            .member_of
            .keys()
            .filter(|id| fs::symlink_metadata(regs.join(id)).is_err())
            .cloned()
            .collect();
        for id in gone {
            self.detach(&id);
            crate::resolver_stats::forget(&id);
        }
        self.reap();
    }

    /// Joins the stopped threads that have ended (never waits).
    fn reap(&mut self) {
        let (ended, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stopping)
            .into_iter()
            .partition(|(_, t)| t.is_finished());
        self.stopping = running;
        for (_, t) in ended {
            let _ = t.join();
        }
    }
}

/// `moat resolver --worker`: serves every registered container until the
/// last one is detached.
pub fn run_worker(root: &Path) -> Result<()> {
    let d = crate::resolver_dir::Dir::open(&dir(root))?;
    write_pid_file(&d, WORKER_PID)?;
    crate::resolver_log::keep_bounded(log_file(root));
    crate::resolver_stats::init(root);
    let sock = control_socket(root);
    let _ = fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).context("cannot bind the resolver's control socket")?;
    let mut serving = Serving::default();
    // Re-attach what is registered (a restart).
    if let Ok(entries) = fs::read_dir(registrations(root)) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue;
            }
            match serving.attach(root, &id) {
                Ok(()) => tracing::info!(id, "re-attached"),
                Err(err) => tracing::error!(id, error = %format!("{err:#}"), "cannot re-attach"),
            }
        }
    }
    listener.set_nonblocking(true)?;
    let mut idle_since: Option<Instant> = None;
    let mut pruned = Instant::now();
    loop {
        let mut fds = [pollfd(listener.as_raw_fd(), libc::POLLIN)];
        // SAFETY: a valid array of one pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 250) };
        while let Ok((conn, _)) = listener.accept() {
            handle_control(root, &mut serving, conn);
        }
        // A detach that never arrived (its delete found no resolver while
        // this one started): serve no container that is not registered.
        if pruned.elapsed() >= Duration::from_secs(1) {
            serving.prune(root);
            pruned = Instant::now();
        }
        if !serving.namespaces.is_empty() || registered(root) {
            idle_since = None;
            continue;
        }
        // Nothing registered: linger a little (a `moat run` loop does not
        // start a resolver per container), then stop; the supervisor
        // looks again under the registry lock.
        if idle_since.get_or_insert_with(Instant::now).elapsed() >= LINGER {
            let _ = fs::remove_file(&sock);
            let _ = d.unlink(WORKER_PID);
            return Ok(());
        }
    }
}

/// How long the worker stays after the last registration is gone.
pub const LINGER: Duration = Duration::from_secs(1);

/// One request on the control socket, answered.
fn handle_control(root: &Path, serving: &mut Serving, mut conn: UnixStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let answer = match (words.next(), words.next()) {
        (Some("attach"), Some(id)) if crate::container::validate_id(id).is_ok() => {
            match serving.attach(root, id) {
                Ok(()) => "ok".to_string(),
                Err(e) if e.is::<Busy>() => BUSY.to_string(),
                Err(e) => {
                    tracing::debug!(id, error = %format!("{e:#}"), "attach refused");
                    format!("error: {e:#}")
                }
            }
        }
        (Some("detach"), Some(id)) => {
            serving.detach(id);
            crate::resolver_stats::forget(id);
            "ok".to_string()
        }
        (Some("ping"), None) => "ok".to_string(),
        _ => "error: unknown request".to_string(),
    };
    // The asker may have gone (a notification): nothing to do then.
    let _ = conn.write_all(format!("{answer}\n").as_bytes());
}

/// State of the thread serving one namespace.
struct Namespace {
    /// The container that started the serving (the log's `container`;
    /// others may share the namespace).
    id: String,
    rules: Vec<NameRule>,
    private: Vec<PrivateAnswer>,
    reg: Registration,
    netns: File,
    nft: Option<OwnedFd>,
    refused: AtomicU64,
    log_limit: LogLimit,
    /// The other per-query lines (upstream failures, dropped answers):
    /// rate-limited the same way (R6-4).
    warn_limit: LogLimit,
    /// The docker network's container names (docker's containers only).
    docker: Option<crate::engine_names::DockerNames>,
    /// Which name answered which address, for the refused-connection
    /// events.
    answered: AnsweredNames,
}

/// The name each address was last answered for in one namespace (shared
/// by its DNS thread and its refused-connection listener). Bounded: when
/// full it starts again empty (an event then lacks the name).
#[derive(Clone, Default)]
struct AnsweredNames(Arc<std::sync::Mutex<HashMap<IpAddr, String>>>);

impl AnsweredNames {
    const MAX: usize = 4096;

    fn insert(&self, addr: IpAddr, name: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= Self::MAX && !m.contains_key(&addr) {
            m.clear();
        }
        m.insert(addr, name.to_string());
    }

    fn get(&self, addr: &IpAddr) -> Option<String> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(addr).cloned()
    }
}

/// Refused names are logged at most [`LogLimit::PER_WINDOW`] times per
/// 10 s per container (a tenant's query flood must not fill the log on a
/// tmpfs); the rest are counted and summed up when the window ends.
struct LogLimit {
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    const PER_WINDOW: u32 = 20;

    fn new() -> LogLimit {
        LogLimit {
            window: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// May this refusal be logged? (Logs the count the last window
    /// suppressed, once it is over.)
    fn allow(&mut self, id: &str) -> bool {
        if self.window.elapsed() >= Duration::from_secs(10) {
            if self.suppressed > 0 {
                tracing::warn!(container = %id, suppressed = self.suppressed, "moat resolver: more lines for this container than logged (names refused, upstream failures)");
            }
            *self = LogLimit::new();
        }
        if self.logged < Self::PER_WINDOW {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Container `id`'s registration, its namespace (opened by the
/// registered path and checked to be a network namespace, and the one
/// registered) and that namespace's key.
fn read_registration(root: &Path, id: &str) -> Result<(Registration, File, String)> {
    let text = fs::read(registrations(root).join(id)).context("no registration")?;
    let reg: Registration = serde_json::from_slice(&text).context("bad registration")?;
    let netns =
        File::open(&reg.netns).with_context(|| format!("cannot open {}", reg.netns.display()))?;
    // The path must still be a network namespace (nsfs), and the one
    // registered, not whatever it names now (a `/proc/<pid>` of a reused
    // pid).
    let fs = nix::sys::statfs::fstatfs(netns.as_fd())?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        bail!("{} is not a namespace", reg.netns.display());
    }
    let key = crate::netns::ns_key(&netns)?;
    if reg.netns_key.as_ref().is_some_and(|k| *k != key) {
        bail!(
            "{} is no longer the network namespace registered",
            reg.netns.display()
        );
    }
    Ok((reg, netns, key))
}

/// The sockets of one served namespace.
struct Sockets {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    nft: OwnedFd,
}

/// Opens the sockets in the namespace `netns` (the calling thread enters
/// it for good): UDP and TCP on 127.0.0.1:53 (required) and [::1]:53
/// (where the namespace has IPv6), and nfnetlink.
fn open_sockets(netns: &File) -> Result<Sockets> {
    nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
        .context("cannot enter the container's network namespace")?;
    let mut udp = vec![UdpSocket::bind((Ipv4Addr::LOCALHOST, RESOLVER_PORT))
        .context("cannot listen on 127.0.0.1:53 (udp) in the container's namespace")?];
    let mut tcp = vec![TcpListener::bind((Ipv4Addr::LOCALHOST, RESOLVER_PORT))
        .context("cannot listen on 127.0.0.1:53 (tcp) in the container's namespace")?];
    udp.extend(UdpSocket::bind((Ipv6Addr::LOCALHOST, RESOLVER_PORT)).ok());
    tcp.extend(TcpListener::bind((Ipv6Addr::LOCALHOST, RESOLVER_PORT)).ok());
    for l in &tcp {
        l.set_nonblocking(true)?;
    }
    let nft = crate::nft::socket_in_current_netns()
        .context("cannot open nf_tables in the container's namespace")?;
    Ok(Sockets { udp, tcp, nft })
}

/// The entries of container `id`'s registration, parsed.
fn parse_registered<T: std::str::FromStr>(id: &str, entries: &[String]) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    entries
        .iter()
        .map(|e| {
            e.parse::<T>()
                .map_err(|err| anyhow!("registration of {id}: {err}"))
        })
        .collect()
}

/// The threads serving one namespace: the DNS thread (name entries or
/// docker's container names only), and the refused-connection listener.
type ServingThreads = (
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
    Option<std::thread::JoinHandle<()>>,
);

/// Starts the threads serving namespace `netns` for the containers of
/// `reg` (`id` the first): the DNS thread if there are name entries or
/// docker's container names to answer, and the refused-connection
/// listener; returns once their sockets are open. Without a DNS thread
/// the listener's socket is required (it is all
/// there is to serve); beside a DNS thread a listener that cannot start is
/// logged and left out.
fn start_serving(id: &str, reg: &Registration, netns: File) -> Result<ServingThreads> {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = AnsweredNames::default();
    if reg.names.is_empty() && reg.docker_container.is_none() {
        let listener = start_nflog(id, &netns, &stop, &answered)?;
        return Ok((stop, listener, None));
    }
    let nflog = match start_nflog(id, &netns, &stop, &answered) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(container = %id, error = %format!("{e:#}"), "moat resolver: refused connections of this namespace are not logged");
            None
        }
    };
    match start_dns(id, reg, netns, &stop, answered) {
        Ok(dns) => Ok((stop, dns, nflog)),
        Err(e) => {
            stop.store(true, Ordering::SeqCst);
            if let Some(t) = nflog {
                let _ = t.join();
            }
            Err(e)
        }
    }
}

/// Starts the thread that turns namespace `netns`'s NFLOG messages into
/// refused-connection events of container `id`, until `stop`.
fn start_nflog(
    id: &str,
    netns: &File,
    stop: &Arc<AtomicBool>,
    answered: &AnsweredNames,
) -> Result<std::thread::JoinHandle<()>> {
    let netns = netns.try_clone()?;
    let stop = stop.clone();
    let answered = answered.clone();
    let id2 = id.to_string();
    spawn_serving(
        format!("nflog-{id}"),
        128 * 1024,
        move || {
            nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)
                .context("cannot enter the container's network namespace")?;
            crate::nflog::socket_in_current_netns()
                .context("cannot listen to the namespace's refused-connection log")
        },
        move |sock| listen_refused(&sock, &id2, &stop, &answered),
    )
}

/// Starts thread `name`, which opens what it serves with (`open`: in the
/// thread, which enters the container's namespace for it) and then
/// serves (`run`); returns once `open` succeeded, or its error.
fn spawn_serving<S: 'static>(
    name: String,
    stack_size: usize,
    open: impl FnOnce() -> Result<S> + Send + 'static,
    run: impl FnOnce(S) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(stack_size)
        .spawn(move || match open() {
            Ok(opened) => {
                let _ = tx.send(Ok(()));
                drop(tx);
                run(opened);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })?;
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => bail!("the resolver's thread {name} did not start"),
    }
}

/// The listener's loop: each refused packet the kernel logged is an event
/// of container `id`. A receive error (the socket's buffer overran, when
/// the kernel logged faster than this thread read) loses those messages
/// and goes on.
fn listen_refused(sock: &OwnedFd, id: &str, stop: &AtomicBool, answered: &AnsweredNames) {
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [pollfd(sock.as_raw_fd(), libc::POLLIN)];
        // SAFETY: a valid array of one pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 250) };
        if n <= 0 || fds[0].revents & libc::POLLIN == 0 {
            continue;
        }
        // SAFETY: buf is a valid writable buffer of its length.
        let len = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        let Ok(len) = usize::try_from(len) else {
            continue;
        };
        for refused in crate::nflog::parse(&buf[..len.min(buf.len())]) {
            let name = answered.get(&refused.daddr);
            crate::resolver_stats::refused_connection_event(id, &refused, name.as_deref());
        }
    }
}

/// Starts the DNS thread of namespace `netns`; returns once its sockets
/// are open.
fn start_dns(
    id: &str,
    reg: &Registration,
    netns: File,
    stop: &Arc<AtomicBool>,
    answered: AnsweredNames,
) -> Result<std::thread::JoinHandle<()>> {
    let rules: Vec<NameRule> = parse_registered(id, &reg.names)?;
    let private: Vec<PrivateAnswer> = parse_registered(id, &reg.private_answers)?;
    let stop = stop.clone();
    let id2 = id.to_string();
    let reg = reg.clone();
    // Its fetching thread starts here, in the worker's own namespace.
    let docker = reg
        .docker_container
        .as_deref()
        .map(crate::engine_names::DockerNames::new);
    spawn_serving(
        format!("dns-{id}"),
        256 * 1024,
        move || open_sockets(&netns).map(|socks| (socks, netns)),
        move |(Sockets { udp, tcp, nft }, netns)| {
            let mut ns = Namespace {
                id: id2,
                rules,
                private,
                reg,
                netns,
                nft: Some(nft),
                refused: AtomicU64::new(0),
                log_limit: LogLimit::new(),
                warn_limit: LogLimit::new(),
                docker,
                answered,
            };
            let limits = TcpLimits {
                connections: MAX_TCP_CONNECTIONS,
                idle: TCP_IDLE,
            };
            serve(&udp, &tcp, limits, &stop, |query, via| {
                answer(&mut ns, query, via)
            });
        },
    )
}

/// At most this many TCP connections are open per served namespace.
pub const MAX_TCP_CONNECTIONS: usize = 16;
/// A TCP connection with nothing read or written for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Answers queued for a TCP client that does not read them; beyond this
/// its queries are not read either.
const MAX_TCP_QUEUED: usize = 256 * 1024;

/// Bounds on one namespace's TCP clients.
#[derive(Debug, Clone, Copy)]
struct TcpLimits {
    connections: usize,
    idle: Duration,
}

/// An answered address and its TTL.
type Answered = (IpAddr, u32);

/// TTL of an answer for a docker neighbour's name: short, containers come
/// and go.
const DOCKER_NAME_TTL: u32 = 10;

/// How a query came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// One TCP client connection (non-blocking).
struct TcpClient {
    stream: TcpStream,
    /// Bytes read and not yet answered (length-prefixed messages).
    input: Vec<u8>,
    /// Length-prefixed answers not yet written.
    output: Vec<u8>,
    last_active: Instant,
    eof: bool,
    failed: bool,
}

impl TcpClient {
    fn new(stream: TcpStream) -> TcpClient {
        TcpClient {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            last_active: Instant::now(),
            eof: false,
            failed: false,
        }
    }

    /// Should the connection be closed?
    fn done(&self, idle: Duration) -> bool {
        self.failed
            || self.last_active.elapsed() > idle
            || (self.eof && self.output.is_empty() && next_message(&self.input).is_none())
    }

    /// Reads the client's next query, and no more: pipelined queries
    /// beyond it wait in the kernel's socket buffer (R6-2: one connection
    /// buffered ~1900 queries in moat, each a forward to answer before its
    /// thread looked at its stop flag).
    fn read_available(&mut self) {
        let mut chunk = [0u8; 4096];
        while !self.eof {
            let want = match self.input.len() {
                n @ 0..=1 => 2 - n,
                n => {
                    let len = usize::from(u16::from_be_bytes([self.input[0], self.input[1]]));
                    2 + len - n
                }
            };
            if want == 0 {
                break;
            }
            match self.stream.read(&mut chunk[..want.min(4096)]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.failed = true;
                    break;
                }
            }
        }
    }

    /// Writes what the socket takes now.
    fn write_available(&mut self) {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => {
                    self.failed = true;
                    break;
                }
                Ok(n) => {
                    self.output.drain(..n);
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.failed = true;
                    break;
                }
            }
        }
    }
}

/// The length of the first complete length-prefixed message in `input`.
fn next_message(input: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*input.first()?, *input.get(1)?]));
    (input.len() >= 2 + len).then_some(len)
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The serving loop of one namespace (its thread is in that namespace):
/// every query read from the UDP sockets and the TCP clients of the
/// listeners (non-blocking) is handed to `answer`, until `stop`.
fn serve(
    udp: &[UdpSocket],
    tcp: &[TcpListener],
    limits: TcpLimits,
    stop: &AtomicBool,
    mut answer: impl FnMut(&[u8], Transport) -> Option<Vec<u8>>,
) {
    let mut buf = vec![0u8; 4096];
    let mut clients: Vec<TcpClient> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let accepting = clients.len() < limits.connections;
        let mut fds: Vec<libc::pollfd> = udp
            .iter()
            .map(|u| pollfd(u.as_raw_fd(), libc::POLLIN))
            .chain(
                tcp.iter()
                    .map(|l| pollfd(l.as_raw_fd(), if accepting { libc::POLLIN } else { 0 })),
            )
            .collect();
        for c in &clients {
            let mut events = 0;
            if !c.eof && c.output.len() < MAX_TCP_QUEUED && next_message(&c.input).is_none() {
                events |= libc::POLLIN;
            }
            if !c.output.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(pollfd(c.stream.as_raw_fd(), events));
        }
        // SAFETY: a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 250) };
        if n > 0 {
            let ready = |i: usize| fds[i].revents;
            for (i, sock) in udp.iter().enumerate() {
                if ready(i) & libc::POLLIN == 0 || stop.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..len], Transport::Udp) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
            for (j, c) in clients.iter_mut().enumerate() {
                let revents = ready(udp.len() + tcp.len() + j);
                if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                    c.failed = true;
                } else if revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                    c.read_available();
                }
            }
            for (i, l) in tcp.iter().enumerate() {
                if ready(udp.len() + i) & libc::POLLIN == 0 {
                    continue;
                }
                while clients.len() < limits.connections {
                    match l.accept() {
                        Ok((stream, _)) if stream.set_nonblocking(true).is_ok() => {
                            clients.push(TcpClient::new(stream));
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        }
        // Answer each client's query (one per client per round, so one
        // client's pipeline does not starve the others; also one left
        // while its answers queued up), then write. The stop flag is
        // looked at between queries: a stopped thread ends after the
        // query it is answering.
        for c in clients.iter_mut().filter(|c| !c.failed) {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if c.output.len() < MAX_TCP_QUEUED {
                if let Some(len) = next_message(&c.input) {
                    let query: Vec<u8> = c.input.drain(..2 + len).skip(2).collect();
                    if let Some(reply) = answer(&query, Transport::Tcp) {
                        if let Ok(rlen) = u16::try_from(reply.len()) {
                            c.output.extend_from_slice(&rlen.to_be_bytes());
                            c.output.extend_from_slice(&reply);
                        }
                    }
                }
            }
            c.write_available();
        }
        clients.retain(|c| !c.done(limits.idle));
    }
}

/// The reply to one query of the namespace (None: not a query, dropped).
fn answer(s: &mut Namespace, query: &[u8], via: Transport) -> Option<Vec<u8>> {
    let q = message::parse_query(query)?;
    // A container on a docker network: its neighbours' names are answered
    // from dockerd's record, never forwarded anywhere.
    if let Some(addrs) = s.docker.as_ref().and_then(|d| d.lookup(&q.name)) {
        let records: Vec<(IpAddr, u32)> = addrs.into_iter().map(|a| (a, DOCKER_NAME_TTL)).collect();
        return Some(message::records_reply(query, &q, 0, &records));
    }
    let entries = names::matching(&s.rules, &q.name);
    if entries.is_empty() {
        let n = s.refused.fetch_add(1, Ordering::Relaxed) + 1;
        crate::resolver_stats::count(&s.id, Outcome::Refused);
        if s.log_limit.allow(&s.id) {
            crate::resolver_stats::refused_event(&s.id, &q.name, q.qtype, n);
        }
        return Some(message::error_reply(query, &q, RCODE_REFUSED));
    }
    let servfail = || Some(message::error_reply(query, &q, RCODE_SERVFAIL));
    // The upstream sees a query moat wrote, with an id moat chose, not the
    // container's: the container knows its own query's id, and could
    // otherwise forge the answer to moat's query from inside its
    // namespace (red-team pass 4 F2); its other bytes could carry data out
    // (F5).
    let id = random_query_id();
    let upstream_query = message::upstream_query(&q, id);
    let Some(mut response) = forward(&s.reg.resolvers, &upstream_query, id, Transport::Udp) else {
        if s.warn_limit.allow(&s.id) {
            tracing::warn!(container = %s.id, name = %q.name, "moat resolver: no upstream answered");
        }
        crate::resolver_stats::count(&s.id, Outcome::UpstreamError);
        return servfail();
    };
    if message::is_truncated(&response) {
        if via == Transport::Udp {
            // The client asks again over TCP; nothing of a partial answer
            // goes into a set.
            return Some(message::truncated_reply(query, &q));
        }
        let Some(full) = forward(&s.reg.resolvers, &upstream_query, id, Transport::Tcp) else {
            if s.warn_limit.allow(&s.id) {
                tracing::warn!(container = %s.id, name = %q.name, "moat resolver: no upstream answered over TCP");
            }
            crate::resolver_stats::count(&s.id, Outcome::UpstreamError);
            return servfail();
        };
        response = full;
    }
    let Some(addrs) = message::answered_addresses(&upstream_query, &q, &response) else {
        crate::resolver_stats::count(&s.id, Outcome::UpstreamError);
        return servfail();
    };
    let (kept, dropped): (Vec<Answered>, Vec<Answered>) = addrs
        .into_iter()
        .partition(|(a, _)| answers::allowed(*a, &q.name, &s.private));
    if !dropped.is_empty() && s.warn_limit.allow(&s.id) {
        tracing::warn!(container = %s.id, name = %q.name, dropped = ?dropped, "moat resolver: answered addresses that are not globally reachable dropped (DNS rebinding; egress.private_answers does not name them for this name)");
    }
    for family_v6 in [false, true] {
        let batch: Vec<(IpAddr, u32)> = kept
            .iter()
            .filter(|(a, _)| a.is_ipv6() == family_v6)
            .map(|(a, ttl)| (*a, message::bounded_ttl(*ttl, s.reg.ttl_min, s.reg.ttl_max)))
            .collect();
        for &entry in &entries {
            let set = name_set(entry, family_v6).name;
            if let Err(e) = add_to_set(s, &set, &batch) {
                if s.warn_limit.allow(&s.id) {
                    tracing::error!(container = %s.id, name = %q.name, set, error = %e, "moat resolver: cannot add the answer to the set (full at crate::nft::NAME_SET_SIZE, or refused); answering SERVFAIL");
                }
                crate::resolver_stats::count(&s.id, Outcome::SetError);
                return servfail();
            }
        }
    }
    for (a, _) in &kept {
        s.answered.insert(*a, &q.name);
    }
    tracing::debug!(container = %s.id, name = %q.name, addresses = ?kept, "moat resolver: allowed");
    crate::resolver_stats::count(&s.id, Outcome::Allowed);
    let reply = if dropped.is_empty() {
        message::reply_for_client(query, &q, &response)
    } else {
        message::addresses_reply(query, &q, &response, &kept)
    };
    if via == Transport::Udp && reply.len() > message::client_udp_limit(&q) {
        return Some(message::truncated_reply(query, &q));
    }
    Some(reply)
}

/// Adds addresses to a set of the namespace's table; on error the
/// nfnetlink socket is replaced (a late answer must not be read as the
/// next batch's).
fn add_to_set(s: &mut Namespace, set: &str, addrs: &[(IpAddr, u32)]) -> std::io::Result<()> {
    let Some((batch, acks)) = crate::nft::add_elements_batch(set, addrs) else {
        return Ok(());
    };
    if s.nft.is_none() {
        // This thread is in the container's namespace already.
        nix::sched::setns(&s.netns, CloneFlags::CLONE_NEWNET)?;
        s.nft = Some(crate::nft::socket_in_current_netns()?);
    }
    let result = crate::nft::send_batch(s.nft.as_ref().expect("opened above"), &batch, acks);
    if result.is_err() {
        s.nft = None;
    }
    result
}

/// A socket of `kind` for talking to `up`, made in the calling thread's
/// namespace (the container's) and marked, so moat's rules let it out
/// unredirected.
fn marked_socket(up: &SocketAddr, kind: nix::sys::socket::SockType) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag};
    let family = if up.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, kind, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::Mark, &RESOLVER_MARK)?;
    Ok(fd)
}

/// Asks the upstreams in turn (2 s each, over UDP or TCP); the first
/// response carrying moat's query id `id`.
fn forward(upstreams: &[SocketAddr], query: &[u8], id: u16, via: Transport) -> Option<Vec<u8>> {
    use nix::sys::socket::SockType;
    let timeout = Duration::from_secs(2);
    for up in upstreams {
        let response = match via {
            Transport::Udp => marked_socket(up, SockType::Datagram)
                .ok()
                .and_then(|fd| ask_udp(UdpSocket::from(fd), up, query, id, timeout)),
            Transport::Tcp => marked_socket(up, SockType::Stream)
                .ok()
                .and_then(|fd| ask_tcp(fd, up, query, timeout)),
        };
        match response {
            Some(r) if r.len() >= 2 && r[..2] == id.to_be_bytes() => return Some(r),
            _ => continue,
        }
    }
    None
}

fn ask_udp(
    sock: UdpSocket,
    up: &SocketAddr,
    query: &[u8],
    id: u16,
    timeout: Duration,
) -> Option<Vec<u8>> {
    sock.connect(up).ok()?;
    sock.send(query).ok()?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; usize::from(message::UPSTREAM_UDP_SIZE).max(4096)];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match sock.recv(&mut buf) {
            Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes() => return Some(buf[..n].to_vec()),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    None
}

/// connect(2) of a socket made by [`marked_socket`] (std makes no
/// unconnected TCP socket, and nix's address types need its `net`
/// feature).
fn connect(fd: &OwnedFd, to: &SocketAddr) -> std::io::Result<()> {
    let rc = match to {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a valid socket and a sockaddr_in of the given size.
            unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: a valid socket and a sockaddr_in6 of the given size.
            unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn ask_tcp(fd: OwnedFd, up: &SocketAddr, query: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    use nix::sys::socket::{setsockopt, sockopt};
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as libc::time_t, 0);
    // A blocking connect gives up after the send timeout (SO_SNDTIMEO).
    setsockopt(&fd, sockopt::SendTimeout, &tv).ok()?;
    connect(&fd, up).ok()?;
    let mut stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(timeout)).ok()?;
    let len = u16::try_from(query.len()).ok()?;
    let mut msg = len.to_be_bytes().to_vec();
    msg.extend_from_slice(query);
    stream.write_all(&msg).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut response = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut response).ok()?;
    Some(response)
}

/// A query id from the kernel's random pool (getrandom(2)); the clock's
/// nanoseconds if that fails, which never happens on a kernel moat runs on.
fn random_query_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 2 {
        return u16::from_ne_bytes(b);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u16)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ids_are_random() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_query_id()).collect();
        assert!(ids.len() > 32, "{ids:?}");
    }

    #[test]
    fn refusals_are_logged_at_a_bounded_rate() {
        let mut l = LogLimit::new();
        let logged = (0..1000).filter(|_| l.allow("c")).count();
        assert_eq!(logged, LogLimit::PER_WINDOW as usize);
        assert_eq!(l.suppressed, 1000 - u64::from(LogLimit::PER_WINDOW));
        // A new window logs again.
        l.window -= Duration::from_secs(11);
        assert!(l.allow("c"));
        assert_eq!(l.suppressed, 0);
    }

    /// L5: the directory is removed only under the registry lock the
    /// registrations are written under, re-checked once held: creates
    /// registering while resolvers remove the (unused) directory never
    /// lose a registration they were told is written.
    #[test]
    fn no_registration_is_lost_to_a_concurrent_removal() {
        let root = std::env::temp_dir().join(format!("moat-reglock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let stop = AtomicBool::new(false);
        let (written, lost) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            for t in 0..2 {
                let (root, stop, written, lost) = (&root, &stop, &written, &lost);
                s.spawn(move || {
                    let id = format!("c{t}");
                    while !stop.load(Ordering::Relaxed) {
                        if write_registration(root, &id, b"{}").is_err() {
                            continue;
                        }
                        written.fetch_add(1, Ordering::Relaxed);
                        let reg = registrations(root).join(&id);
                        if fs::symlink_metadata(&reg).is_err() {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = fs::remove_file(&reg);
                    }
                });
            }
            for _ in 0..2 {
                let (root, stop) = (&root, &stop);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        remove_if_unregistered(root);
                    }
                });
            }
            std::thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::Relaxed);
        });
        let _ = fs::remove_dir_all(&root);
        let (written, lost) = (written.into_inner(), lost.into_inner());
        assert!(written > 100, "only {written} registrations written");
        assert_eq!(lost, 0, "{lost} of {written} registrations lost");
    }

    /// Runs `f` on a thread in a new network namespace with its loopback
    /// up (nothing of the host's network is touched).
    fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare netns");
                crate::netns::loopback_up().expect("lo up");
                f()
            })
            .join()
            .expect("netns thread")
        })
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn read_framed(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 2];
        c.read_exact(&mut len)?;
        let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut m)?;
        Ok(m)
    }

    /// RFC 7766 serving: several queries on one connection, answered in
    /// order, also after the client half-closes; at most `connections`
    /// clients at once (the next waits in the backlog), and an idle one is
    /// closed, which lets the waiting one in.
    #[test]
    fn tcp_clients_are_served_in_order_and_bounded() {
        in_new_netns(|| {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let limits = TcpLimits {
                connections: 2,
                idle: Duration::from_secs(3),
            };
            let stop2 = stop.clone();
            let server = std::thread::spawn(move || {
                serve(&[], &[listener], limits, &stop2, |q, via| {
                    assert_eq!(via, Transport::Tcp);
                    let mut r = b"re:".to_vec();
                    r.extend_from_slice(q);
                    Some(r)
                })
            });
            let timeout = Some(Duration::from_secs(20));
            // Two queries in one write, then a half-close.
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(timeout).unwrap();
            let mut both = framed(b"one");
            both.extend(framed(b"two"));
            c.write_all(&both).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            assert_eq!(read_framed(&mut c).unwrap(), b"re:one");
            assert_eq!(read_framed(&mut c).unwrap(), b"re:two");
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "{rest:?}");
            // Two idle clients take the two places.
            let idle: Vec<TcpStream> = (0..2)
                .map(|_| {
                    let s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(timeout).unwrap();
                    s
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            let mut late = TcpStream::connect(addr).unwrap();
            late.write_all(&framed(b"late")).unwrap();
            late.set_read_timeout(Some(Duration::from_millis(700)))
                .unwrap();
            let early = read_framed(&mut late);
            assert!(early.is_err(), "a third client was served: {early:?}");
            // The idle ones are closed; then the late one is answered.
            late.set_read_timeout(timeout).unwrap();
            let started = Instant::now();
            assert_eq!(read_framed(&mut late).unwrap(), b"re:late");
            assert!(started.elapsed() < Duration::from_secs(10));
            for mut s in idle {
                let mut rest = Vec::new();
                assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "not closed");
            }
            stop.store(true, Ordering::SeqCst);
            server.join().unwrap();
        });
    }

    /// R6-2: a client's pipelined queries are read one at a time (the
    /// rest wait in the kernel), and a stopped serving loop ends after the
    /// query it is answering, not after everything the client sent.
    #[test]
    fn a_stopped_loop_ends_after_the_query_it_answers() {
        in_new_netns(|| {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let answered = Arc::new(AtomicU64::new(0));
            let limits = TcpLimits {
                connections: 2,
                idle: Duration::from_secs(30),
            };
            let (stop2, answered2) = (stop.clone(), answered.clone());
            let server = std::thread::spawn(move || {
                serve(&[], &[listener], limits, &stop2, |q, _| {
                    // A slow upstream.
                    std::thread::sleep(Duration::from_millis(300));
                    answered2.fetch_add(1, Ordering::SeqCst);
                    Some(q.to_vec())
                })
            });
            let mut c = TcpStream::connect(addr).unwrap();
            let pipelined: Vec<u8> = (0..100u8).flat_map(|i| framed(&[i; 12])).collect();
            c.write_all(&pipelined).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            assert_eq!(read_framed(&mut c).unwrap(), [0u8; 12]);
            let started = Instant::now();
            stop.store(true, Ordering::SeqCst);
            server.join().unwrap();
            // 100 × 300 ms if it answered what it had buffered.
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            assert!(answered.load(Ordering::SeqCst) < 10);
        });
    }

    #[test]
    fn a_message_is_complete_with_its_length() {
        assert_eq!(next_message(&[]), None);
        assert_eq!(next_message(&[0]), None);
        assert_eq!(next_message(&[0, 0]), Some(0));
        assert_eq!(next_message(&[0, 3, 1, 2]), None);
        assert_eq!(next_message(&[0, 3, 1, 2, 3, 9]), Some(3));
    }
}
