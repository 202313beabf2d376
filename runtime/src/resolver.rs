//! moat's resolver (issue 18, T18): makes the allowlist's name entries
//! (`pypi.org tcp 443`, `*.github.com tcp 443`) work. One per node, for
//! every container with name entries: no process per container.
//!
//! - For each container it holds a UDP socket on `127.0.0.1:53` (and
//!   `[::1]:53`) made inside the container's network namespace, and an
//!   nfnetlink socket made there too (a socket stays in the namespace it
//!   was made in). moat's DNS chain (`crate::egress::dns_rules`) redirects
//!   every port-53 query of the container there.
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
//! - Life cycle: the first `moat create` that needs it writes the
//!   container's registration (`<private root>/resolver/containers/<id>`)
//!   and starts `moat resolver` detached (its own session, no inherited
//!   descriptors), which holds a lock so there is one per state root. It
//!   runs the worker (`moat resolver --worker`) and restarts it when it
//!   dies; a restarted worker re-attaches every registered container from
//!   the registrations. `moat delete` removes the registration and
//!   detaches; the worker stops after the last detach, the supervisor
//!   with it, and the resolver directory (its log included) is removed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use crate::dns::message::{self, RCODE_REFUSED, RCODE_SERVFAIL};
use crate::dns::names::{self, NameRule};
use crate::egress::{name_set, Egress, RESOLVER_MARK, RESOLVER_PORT};
use crate::resolver_stats::Outcome;

/// What the resolver needs to serve one container: written by create,
/// read by the resolver (also when it restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// moat's pin of the container's network namespace.
    pub netns: PathBuf,
    /// The name entries' patterns, in the table's order (entry n's
    /// addresses go into sets `name<n>_v4` and `name<n>_v6`).
    pub names: Vec<String>,
    pub resolvers: Vec<SocketAddr>,
    pub ttl_min: u32,
    pub ttl_max: u32,
}

/// The resolver's directory under moat's private root.
pub fn dir(root: &Path) -> PathBuf {
    crate::state::private_root(root).join("resolver")
}

pub(crate) fn registrations(root: &Path) -> PathBuf {
    dir(root).join("containers")
}

fn control_socket(root: &Path) -> PathBuf {
    dir(root).join("control.sock")
}

/// The worker's pid (what serves the sockets; killing it fails closed
/// until the supervisor restarts it).
pub fn worker_pid_file(root: &Path) -> PathBuf {
    dir(root).join("worker.pid")
}

/// The supervisor's pid.
pub fn supervisor_pid_file(root: &Path) -> PathBuf {
    dir(root).join("supervisor.pid")
}

/// The resolver's log (refused names, errors).
pub fn log_file(root: &Path) -> PathBuf {
    dir(root).join("log")
}

/// Name entries need the container's own, moat-created network namespace:
/// the resolver's sockets live there and go with it. A joined namespace
/// (a pod's, `--network container:`) is refused for now.
pub fn refuse_names_in_joined_netns(egress: &Egress) -> Result<()> {
    if egress.names.is_empty() {
        return Ok(());
    }
    bail!("egress name entries ({}) need the container's own network namespace; this build of moat does not serve them in a joined one (a pod's, --network container:)", egress.names[0].pattern)
}

/// Registers container `id` (network namespace pinned at `netns`) with
/// the node's resolver, starting the resolver if it is not running, and
/// returns once the resolver serves it. Nothing to do without name
/// entries.
pub fn attach(root: &Path, id: &str, egress: &Egress, netns: &Path) -> Result<()> {
    if egress.names.is_empty() {
        return Ok(());
    }
    let reg = Registration {
        netns: netns.to_path_buf(),
        names: egress.names.iter().map(|n| n.pattern.to_string()).collect(),
        resolvers: egress.resolvers.clone(),
        ttl_min: egress.ttl_min,
        ttl_max: egress.ttl_max,
    };
    let regs = registrations(root);
    crate::state::create_private_dir_all(&regs)
        .context("cannot create the resolver's directory")?;
    let tmp = regs.join(format!(".{id}.tmp"));
    fs::write(&tmp, serde_json::to_vec(&reg)?).context("cannot write the resolver registration")?;
    fs::rename(&tmp, regs.join(id)).context("cannot write the resolver registration")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last_spawn: Option<Instant> = None;
    loop {
        match request(root, &format!("attach {id}")) {
            Ok(answer) if answer == "ok" => return Ok(()),
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

/// Forgets container `id`: removes its registration and asks a running
/// resolver to close its sockets (and to stop if it was the last). Never
/// fails: delete goes on.
pub fn detach(root: &Path, id: &str) {
    let reg = registrations(root).join(id);
    if fs::symlink_metadata(&reg).is_err() {
        return;
    }
    let _ = fs::remove_file(&reg);
    match request(root, &format!("detach {id}")) {
        Ok(answer) if answer == "ok last" => {
            // The resolver stops: wait (briefly) for it to remove its
            // directory, so a delete leaves nothing behind when it returns.
            let deadline = Instant::now() + Duration::from_secs(5);
            while dir(root).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(_) => {}
        Err(e) => {
            // Not running: nothing holds the container's sockets.
            tracing::debug!(error = %e, id, "resolver not reached for detach");
            crate::resolver_stats::remove_files(root, id);
            cleanup_if_unused(root);
        }
    }
}

/// Removes the resolver's directory when no container is registered and
/// no resolver runs (its lock is free).
fn cleanup_if_unused(root: &Path) {
    let regs = registrations(root);
    if fs::read_dir(&regs).is_ok_and(|mut d| d.next().is_some()) {
        return;
    }
    let Ok(lock) = File::open(dir(root).join("lock")) else {
        let _ = fs::remove_dir_all(dir(root));
        return;
    };
    if nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
        let _ = fs::remove_dir_all(dir(root));
    }
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

/// Starts `moat resolver` detached: its own session, stdio on its log,
/// no descriptor of the caller (a shim waits for EOF on the pipes it gave
/// `moat create`).
fn spawn_supervisor(root: &Path) -> Result<()> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file(root))
        .context("cannot open the resolver's log")?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(root)
        .arg("resolver")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid and close_range are async-signal-safe; this runs in
    // the forked child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start moat's resolver")?;
    // Not waited for: it outlives this command (reaped by whoever
    // inherits it).
    drop(child);
    Ok(())
}

/// `moat resolver`: the supervisor. Holds the lock (one per state root),
/// runs the worker and restarts it when it dies, until it exits cleanly
/// (no container left).
pub fn run_supervisor(root: &Path) -> Result<()> {
    crate::state::create_private_dir_all(&dir(root))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir(root).join("lock"))?;
    let _lock = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        // Another supervisor runs.
        Err(_) => return Ok(()),
    };
    fs::write(supervisor_pid_file(root), std::process::id().to_string())?;
    loop {
        let status = Command::new("/proc/self/exe")
            .arg("--root")
            .arg(root)
            .arg("resolver")
            .arg("--worker")
            .stdin(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => break,
            other => {
                tracing::error!(status = ?other, "moat's resolver worker died; restarting it (DNS of its containers fails until it is back)");
            }
        }
        let registered = fs::read_dir(registrations(root)).is_ok_and(|mut d| d.next().is_some());
        if !registered {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = fs::remove_dir_all(dir(root));
    Ok(())
}

/// One attached container.
struct Attached {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// `moat resolver --worker`: serves every registered container until the
/// last one is detached.
pub fn run_worker(root: &Path) -> Result<()> {
    fs::write(worker_pid_file(root), std::process::id().to_string())?;
    crate::resolver_stats::init(root);
    let sock = control_socket(root);
    let _ = fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).context("cannot bind the resolver's control socket")?;
    let mut attached: HashMap<String, Attached> = HashMap::new();
    // Re-attach what is registered (a restart).
    if let Ok(entries) = fs::read_dir(registrations(root)) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue;
            }
            match attach_registered(root, &id) {
                Ok(a) => {
                    tracing::info!(id, "re-attached");
                    attached.insert(id, a);
                }
                Err(err) => tracing::error!(id, error = %format!("{err:#}"), "cannot re-attach"),
            }
        }
    }
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (Some("attach"), Some(id)) if crate::container::validate_id(id).is_ok() => {
                if attached.get(id).is_some_and(|a| !a.thread.is_finished()) {
                    "ok".to_string()
                } else {
                    match attach_registered(root, id) {
                        Ok(a) => {
                            attached.insert(id.to_string(), a);
                            "ok".to_string()
                        }
                        Err(e) => format!("error: {e:#}"),
                    }
                }
            }
            (Some("detach"), Some(id)) => {
                if let Some(a) = attached.remove(id) {
                    a.stop.store(true, Ordering::SeqCst);
                    let _ = a.thread.join();
                }
                crate::resolver_stats::forget(id);
                "ok".to_string()
            }
            (Some("ping"), None) => "ok".to_string(),
            _ => "error: unknown request".to_string(),
        };
        let registered = fs::read_dir(registrations(root)).is_ok_and(|mut d| d.next().is_some());
        let last = attached.is_empty() && !registered;
        if last {
            // Stop taking requests before saying so: a create after this
            // starts a new resolver once this one has gone.
            let _ = fs::remove_file(&sock);
            let _ = fs::remove_file(worker_pid_file(root));
        }
        let answer = if last && answer == "ok" {
            "ok last".to_string()
        } else {
            answer
        };
        let _ = conn.write_all(format!("{answer}\n").as_bytes());
        drop(conn);
        if last {
            return Ok(());
        }
    }
    Ok(())
}

/// Per-container state of a serving thread.
struct Serving {
    id: String,
    rules: Vec<NameRule>,
    reg: Registration,
    netns: File,
    nft: Option<std::os::fd::OwnedFd>,
    refused: AtomicU64,
    log_limit: LogLimit,
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
                tracing::warn!(container = %id, suppressed = self.suppressed, "moat resolver: more names refused than logged");
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

/// Opens container `id`'s sockets in its namespace and starts serving.
fn attach_registered(root: &Path, id: &str) -> Result<Attached> {
    let text = fs::read(registrations(root).join(id)).context("no registration")?;
    let reg: Registration = serde_json::from_slice(&text).context("bad registration")?;
    let rules = reg
        .names
        .iter()
        .map(|n| {
            n.parse::<NameRule>()
                .map_err(|e| anyhow!("registration of {id}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let netns =
        File::open(&reg.netns).with_context(|| format!("cannot open {}", reg.netns.display()))?;
    // The pin must still be a network namespace (nsfs), not whatever a
    // path names now.
    let fs = nix::sys::statfs::fstatfs(netns.as_fd())?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        bail!("{} is not a namespace", reg.netns.display());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
    let stop2 = stop.clone();
    let id2 = id.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("dns-{id}"))
        .stack_size(256 * 1024)
        .spawn(move || {
            let opened = (|| -> Result<(UdpSocket, Option<UdpSocket>, std::os::fd::OwnedFd)> {
                nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)
                    .context("cannot enter the container's network namespace")?;
                let v4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, RESOLVER_PORT))
                    .context("cannot listen on 127.0.0.1:53 in the container's namespace")?;
                let v6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, RESOLVER_PORT)).ok();
                let nft = crate::nft::socket_in_current_netns()
                    .context("cannot open nf_tables in the container's namespace")?;
                Ok((v4, v6, nft))
            })();
            let (v4, v6, nft) = match opened {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut serving = Serving {
                id: id2,
                rules,
                reg,
                netns,
                nft: Some(nft),
                refused: AtomicU64::new(0),
                log_limit: LogLimit::new(),
            };
            serve(&mut serving, &v4, v6.as_ref(), &stop2);
        })?;
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(Attached { stop, thread }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => bail!("the resolver's thread for {id} did not start"),
    }
}

/// The serving loop of one container (its thread is in the container's
/// network namespace).
fn serve(s: &mut Serving, v4: &UdpSocket, v6: Option<&UdpSocket>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = vec![libc::pollfd {
            fd: v4.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(v6) = v6 {
            fds.push(libc::pollfd {
                fd: v6.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 250) };
        if n <= 0 {
            continue;
        }
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            let sock = if i == 0 { v4 } else { v6.unwrap_or(v4) };
            let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = answer(s, &buf[..len]) {
                let _ = sock.send_to(&reply, peer);
            }
        }
    }
}

/// The reply to one query of the container (None: not a query, dropped).
fn answer(s: &mut Serving, query: &[u8]) -> Option<Vec<u8>> {
    let q = message::parse_query(query)?;
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
    let Some(response) = forward(&s.reg.resolvers, query, &q) else {
        tracing::warn!(container = %s.id, name = %q.name, "moat resolver: no upstream answered");
        crate::resolver_stats::count(&s.id, Outcome::UpstreamError);
        return servfail();
    };
    let Some(addrs) = message::answered_addresses(query, &q, &response) else {
        crate::resolver_stats::count(&s.id, Outcome::UpstreamError);
        return servfail();
    };
    for family_v6 in [false, true] {
        let batch: Vec<(IpAddr, u32)> = addrs
            .iter()
            .filter(|(a, _)| a.is_ipv6() == family_v6)
            .map(|(a, ttl)| (*a, message::bounded_ttl(*ttl, s.reg.ttl_min, s.reg.ttl_max)))
            .collect();
        for &entry in &entries {
            let set = name_set(entry, family_v6).name;
            if let Err(e) = add_to_set(s, &set, &batch) {
                tracing::error!(container = %s.id, name = %q.name, set, error = %e, "moat resolver: cannot add the answer to the set; answering SERVFAIL");
                crate::resolver_stats::count(&s.id, Outcome::SetError);
                return servfail();
            }
        }
    }
    tracing::debug!(container = %s.id, name = %q.name, addresses = ?addrs, "moat resolver: allowed");
    crate::resolver_stats::count(&s.id, Outcome::Allowed);
    Some(response)
}

/// Adds addresses to a set of the container's table; on error the
/// nfnetlink socket is replaced (a late answer must not be read as the
/// next batch's).
fn add_to_set(s: &mut Serving, set: &str, addrs: &[(IpAddr, u32)]) -> std::io::Result<()> {
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

/// Asks the upstreams in turn (2 s each); the first response to this
/// query. Sockets are made in the calling thread's namespace (the
/// container's) and marked, so moat's rules let them out unredirected.
fn forward(upstreams: &[SocketAddr], query: &[u8], q: &message::Query) -> Option<Vec<u8>> {
    // The upstream sees an id moat chose, not the container's: the
    // container knows its own query's id, and could otherwise forge the
    // answer to moat's query from inside its namespace (red-team pass 4
    // F2). The container's id is put back into the answer it gets.
    let id = random_query_id();
    let mut query = query.to_vec();
    if query.len() < 2 {
        return None;
    }
    query[..2].copy_from_slice(&id.to_be_bytes());
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(bind) else {
            continue;
        };
        let mark = RESOLVER_MARK;
        // SAFETY: a valid socket and a u32 option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&mark as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc != 0 || sock.connect(up).is_err() || sock.send(&query).is_err() {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = vec![0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match sock.recv(&mut buf) {
                Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes() => {
                    let mut answer = buf[..n].to_vec();
                    answer[..2].copy_from_slice(&q.id.to_be_bytes());
                    return Some(answer);
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    None
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

    #[test]
    fn name_entries_in_a_joined_namespace_are_refused() {
        let policy = crate::policy::EgressPolicy {
            allow: vec!["pypi.org tcp 443".into()],
            resolvers: vec!["192.0.2.53".into()],
            ..Default::default()
        };
        let e = Egress::from_policy(&policy).unwrap();
        let err = refuse_names_in_joined_netns(&e).unwrap_err().to_string();
        assert!(err.contains("pypi.org"), "{err}");
        assert!(refuse_names_in_joined_netns(&Egress::default()).is_ok());
    }
}
