//! Networks a test builds itself, for the egress tests (threat T18): an
//! "outside" network namespace joined by a veth pair to a container's
//! network namespace, servers on the outside (threads whose sockets were
//! made in that namespace), a pod-style namespace as CNI makes one, and
//! the checks of moat's egress rules and counters.
//!
//! Topology: the outside namespace is `moat-eg-<pid>-<n>`; the veth pair
//! is `egc0` inside at 10.231.X.1/30 and `ego0` outside at 10.231.X.2/30
//! (with IPv6, fd00:6d6f:6174:X::1 and ::2 /64), X derived from this
//! process's pid and a per-topology counter ([`Addrs`]).
//!
//! Network rule: traffic only ever goes to loopback or to the addresses of
//! the test's own namespaces and veth pairs. Nothing touches the host's
//! network namespace, routes or firewall. Every namespace is deleted by a
//! Drop guard, also on failure.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{exec_sh, kv, Env, LeakCheck, Out};

/// Interface names: inside the container, and in the outside namespace.
pub const INSIDE_IF: &str = "egc0";
pub const OUTSIDE_IF: &str = "ego0";

/// Runs a host command (with [`crate::DEFAULT_TIMEOUT`]); returns
/// (success, stdout+stderr).
pub fn run_cmd(prog: &str, args: &[&str]) -> (bool, String) {
    let out = crate::cmd::run_cmd(prog, args, crate::DEFAULT_TIMEOUT);
    (out.ok(), format!("{}{}", out.stdout, out.stderr))
}

/// Runs a host command and panics unless it succeeds.
pub fn must(prog: &str, args: &[&str]) -> String {
    let (ok, out) = run_cmd(prog, args);
    assert!(ok, "`{prog} {}` failed:\n{out}", args.join(" "));
    out
}

/// Runs `f` on a fresh thread that has joined the network namespace at
/// `ns` (setns(CLONE_NEWNET) is per thread). Sockets made there stay in
/// that namespace wherever they are used afterwards.
pub fn in_netns<T: Send, F: FnOnce() -> T + Send>(ns: &Path, f: F) -> T {
    let file = fs::File::open(ns).unwrap_or_else(|e| panic!("open {}: {e}", ns.display()));
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a valid namespace fd; only this thread moves.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns {}: {}",
                ns.display(),
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Does this kernel have IPv6 at all?
pub fn kernel_has_ipv6() -> bool {
    Path::new("/proc/sys/net/ipv6").is_dir()
}

// ---------------------------------------------------------------------------
// Servers on the outside (threads)
// ---------------------------------------------------------------------------

/// A server thread; stopped and joined on drop. `hits` counts accepted
/// connections (TCP) or received datagrams (UDP); a DNS responder also
/// logs the name of every query ([`Server::asked`]).
pub struct Server {
    hits: Arc<AtomicUsize>,
    names: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Has a DNS responder been asked for `name` (lowercase, no final dot)?
    pub fn asked(&self, name: &str) -> bool {
        self.names.lock().unwrap().iter().any(|n| n == name)
    }

    /// A TCP server on `addr` (created in namespace `ns`) that writes
    /// `reply` to every connection and closes it.
    pub fn tcp(ns: &Path, addr: SocketAddr, reply: &'static str) -> Server {
        let listener = in_netns(ns, || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind tcp {addr} in {}: {e}", ns.display()));
        listener.set_nonblocking(true).unwrap();
        Server::spawn(move |hits, _| match listener.accept() {
            Ok((mut conn, _)) => {
                hits.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = conn.write_all(reply.as_bytes());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        })
    }

    /// A UDP server on `addr` (created in namespace `ns`) counting datagrams.
    pub fn udp(ns: &Path, addr: SocketAddr) -> Server {
        Server::on_datagrams(ns, addr, |_, _, _, _| {})
    }

    /// A minimal DNS responder on `addr` (UDP, created in namespace `ns`):
    /// every A query gets `answer`, any other query an empty NOERROR
    /// reply. `hits` counts every datagram received; the query names are
    /// logged for [`Server::asked`]. `ns` may be `/proc/self/ns/net` (the
    /// test's own namespace).
    pub fn dns(ns: &Path, addr: SocketAddr, answer: Ipv4Addr) -> Server {
        Server::on_datagrams(ns, addr, move |sock, query, peer, names| {
            if let Some(name) = dns_qname(query) {
                names.lock().unwrap().push(name);
            }
            if let Some(reply) = dns_reply(query, answer) {
                let _ = sock.send_to(&reply, peer);
            }
        })
    }

    /// A UDP socket bound to `addr` in namespace `ns`, and a thread that
    /// counts each datagram and hands it to `answer`.
    fn on_datagrams(
        ns: &Path,
        addr: SocketAddr,
        mut answer: impl FnMut(&UdpSocket, &[u8], SocketAddr, &Mutex<Vec<String>>) + Send + 'static,
    ) -> Server {
        let sock = in_netns(ns, || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("bind udp {addr} in {}: {e}", ns.display()));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 2048];
        Server::spawn(move |hits, names| {
            if let Ok((len, peer)) = sock.recv_from(&mut buf) {
                hits.fetch_add(1, Ordering::SeqCst);
                answer(&sock, &buf[..len], peer, names);
            }
        })
    }

    /// Runs `serve_once` on a thread until the server is dropped (each call
    /// must return within a few tens of milliseconds).
    fn spawn(
        mut serve_once: impl FnMut(&AtomicUsize, &Mutex<Vec<String>>) + Send + 'static,
    ) -> Server {
        let hits = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, n, s) = (hits.clone(), names.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                serve_once(&h, &n);
            }
        });
        Server {
            hits,
            names,
            stop,
            handle: Some(handle),
        }
    }
}

/// The query name of a DNS message (uncompressed labels), lowercased and
/// without the final dot; None for anything else.
pub fn dns_qname(msg: &[u8]) -> Option<String> {
    let (labels, _) = dns_question_labels(msg)?;
    let labels: Vec<String> = labels
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_lowercase())
        .collect();
    Some(labels.join("."))
}

/// The labels of a DNS message's first question name (uncompressed, as a
/// query writes it) and the offset just past its root label.
fn dns_question_labels(msg: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            return Some((labels, i));
        }
        if len & 0xc0 != 0 {
            return None;
        }
        labels.push(msg.get(i..i + len)?);
        i += len;
    }
}

/// The reply to a one-question DNS `query`, written by hand: the query's
/// id and question, QR and RA set (opcode and RD copied), NOERROR, and for
/// an A/IN question one answer `answer` (name by compression pointer
/// 0xc00c, TTL 60). None for anything that is not such a query.
pub fn dns_reply(query: &[u8], answer: Ipv4Addr) -> Option<Vec<u8>> {
    let u16_at = |i: usize| u16::from_be_bytes([query[i], query[i + 1]]);
    if query.len() < 12 || query[2] & 0x80 != 0 || u16_at(4) != 1 {
        return None;
    }
    let (_, i) = dns_question_labels(query)?;
    let end = i + 4; // QTYPE, QCLASS
    if end > query.len() {
        return None;
    }
    let is_a = u16_at(i) == 1 && u16_at(i + 2) == 1;
    let mut r = Vec::with_capacity(end + 16);
    r.extend_from_slice(&query[..2]); // id
    r.push(0x80 | (query[2] & 0x79)); // QR, opcode and RD of the query
    r.push(0x80); // RA, RCODE 0
    r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(&query[12..end]);
    if is_a {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&answer.octets());
    }
    Some(r)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The test network: an outside namespace and a veth pair into a container
// ---------------------------------------------------------------------------

pub static TOPOLOGIES: AtomicUsize = AtomicUsize::new(0);

/// The addresses of one topology, reserved before the container exists (a
/// policy file may name them).
#[derive(Clone, Copy)]
pub struct Addrs {
    /// Per-process topology number (names the outside namespace).
    pub n: usize,
    /// Third octet X of 10.231.X.0/30, fourth group of fd00:6d6f:6174:X::/64.
    pub x: u8,
}

impl Addrs {
    pub fn next() -> Addrs {
        let n = TOPOLOGIES.fetch_add(1, Ordering::SeqCst);
        let me = std::process::id() as usize;
        Addrs {
            n,
            x: ((me * 7 + n) % 250 + 3) as u8,
        }
    }

    pub fn inside(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.x, 1)
    }

    pub fn outside(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.x, 2)
    }

    pub fn inside6(&self) -> Ipv6Addr {
        format!("fd00:6d6f:6174:{:x}::1", self.x).parse().unwrap()
    }

    pub fn outside6(&self) -> Ipv6Addr {
        format!("fd00:6d6f:6174:{:x}::2", self.x).parse().unwrap()
    }
}

/// An outside network namespace joined by a veth pair to a container's
/// network namespace. Dropping it stops its servers and deletes the
/// namespace (the veth pair goes with it).
pub struct Net {
    /// `ip netns` name of the outside namespace.
    pub name: String,
    /// Third octet X of 10.231.X.0/30 (also the IPv6 /64's fourth group).
    pub x: u8,
    pub inside: Ipv4Addr,
    pub outside: Ipv4Addr,
    /// Set when the topology has IPv6 addresses.
    pub inside6: Option<Ipv6Addr>,
    pub outside6: Option<Ipv6Addr>,
    /// The container's network namespace (`/proc/<pid>/ns/net`, or the
    /// `/var/run/netns/<name>` of a [`PodNetns`]).
    pub container_ns: PathBuf,
    pub servers: Vec<Server>,
    pub deleted: bool,
}

impl Net {
    /// [`Net::with`] fresh addresses.
    pub fn new(pid: i32, ipv6: bool) -> Net {
        Net::with(Addrs::next(), pid, ipv6)
    }

    /// Connects the network namespace of process `pid` (a container's
    /// init) to a new outside namespace. Without `ipv6`, IPv6 is turned
    /// off on the container's veth end, so that no router solicitation or
    /// MLD report lands in moat's `blocked` counter.
    pub fn with(addrs: Addrs, pid: i32, ipv6: bool) -> Net {
        let container_ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        Net::with_ns(addrs, container_ns, &pid.to_string(), ipv6)
    }

    /// [`Net::with`] for any network namespace: `container_ns` is a file
    /// of it (for setns and nsenter), `target` what `ip link set … netns`
    /// takes for it (a pid, or an `ip netns` name).
    pub fn with_ns(addrs: Addrs, container_ns: PathBuf, target: &str, ipv6: bool) -> Net {
        let Addrs { n, x } = addrs;
        let name = format!("moat-eg-{}-{n}", std::process::id());
        assert!(
            container_ns.exists(),
            "{} does not exist",
            container_ns.display()
        );
        // Stale one from a crashed earlier run with the same pid.
        let _ = run_cmd("ip", &["netns", "del", &name]);
        must("ip", &["netns", "add", &name]);
        // From here on the guard deletes the namespace, also on panic.
        let mut net = Net {
            name: name.clone(),
            x,
            inside: addrs.inside(),
            outside: addrs.outside(),
            inside6: None,
            outside6: None,
            container_ns: container_ns.clone(),
            servers: Vec::new(),
            deleted: false,
        };
        let ns_arg = format!("--net={}", container_ns.display());
        let inside_cmd = |args: &[&str]| {
            let mut v = vec![ns_arg.as_str(), "ip"];
            v.extend_from_slice(args);
            must("nsenter", &v)
        };
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        must(
            "ip",
            &[
                "-n", &name, "link", "add", OUTSIDE_IF, "type", "veth", "peer", "name", INSIDE_IF,
            ],
        );
        must(
            "ip",
            &["-n", &name, "link", "set", INSIDE_IF, "netns", target],
        );

        let v6_knob = format!("/proc/sys/net/ipv6/conf/{INSIDE_IF}/disable_ipv6");
        if kernel_has_ipv6() {
            let want = if ipv6 { "0" } else { "1" };
            let knob = v6_knob.clone();
            in_netns(&container_ns, move || fs::write(&knob, want))
                .unwrap_or_else(|e| panic!("write {v6_knob} in the container's netns: {e}"));
        }
        let cidr = format!("{}/30", net.inside);
        inside_cmd(&["addr", "add", &cidr, "dev", INSIDE_IF]);
        let cidr = format!("{}/30", net.outside);
        must(
            "ip",
            &["-n", &name, "addr", "add", &cidr, "dev", OUTSIDE_IF],
        );
        if ipv6 {
            assert!(kernel_has_ipv6(), "IPv6 topology on a kernel without IPv6");
            let (in6, out6) = (addrs.inside6(), addrs.outside6());
            let cidr = format!("{in6}/64");
            inside_cmd(&["-6", "addr", "add", &cidr, "dev", INSIDE_IF, "nodad"]);
            let cidr = format!("{out6}/64");
            must(
                "ip",
                &[
                    "-n", &name, "-6", "addr", "add", &cidr, "dev", OUTSIDE_IF, "nodad",
                ],
            );
            net.inside6 = Some(in6);
            net.outside6 = Some(out6);
        }
        inside_cmd(&["link", "set", INSIDE_IF, "up"]);
        must("ip", &["-n", &name, "link", "set", OUTSIDE_IF, "up"]);
        net
    }

    /// The outside namespace's pin, for setns.
    pub fn ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Starts a TCP server on the outside address (`v6`: the IPv6 one).
    pub fn tcp_server(&mut self, v6: bool, port: u16, reply: &'static str) -> usize {
        let ip: IpAddr = if v6 {
            self.outside6.expect("IPv6 topology").into()
        } else {
            self.outside.into()
        };
        let s = Server::tcp(&self.ns_path(), SocketAddr::new(ip, port), reply);
        self.servers.push(s);
        self.servers.len() - 1
    }

    /// Starts a UDP server on the outside IPv4 address.
    pub fn udp_server(&mut self, port: u16) -> usize {
        let s = Server::udp(&self.ns_path(), SocketAddr::new(self.outside.into(), port));
        self.servers.push(s);
        self.servers.len() - 1
    }

    /// Starts a DNS responder ([`Server::dns`]) on the outside IPv4 address.
    pub fn dns_server(&mut self, port: u16, answer: Ipv4Addr) -> usize {
        let addr = SocketAddr::new(self.outside.into(), port);
        let s = Server::dns(&self.ns_path(), addr, answer);
        self.servers.push(s);
        self.servers.len() - 1
    }

    pub fn hits(&self, server: usize) -> usize {
        self.servers[server].hits()
    }

    /// Connects from the outside namespace to `addr`, retrying for up to
    /// `within`, and returns what the peer sent (or why it failed).
    pub fn connect_from_outside(
        &self,
        addr: SocketAddr,
        within: Duration,
    ) -> Result<String, String> {
        in_netns(&self.ns_path(), move || {
            let start = Instant::now();
            let mut last = String::new();
            while start.elapsed() < within {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(mut s) => {
                        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                        let mut text = String::new();
                        return match s.read_to_string(&mut text) {
                            Ok(_) => Ok(text),
                            Err(e) => Err(format!("read from {addr}: {e} (got {text:?})")),
                        };
                    }
                    Err(e) => {
                        last = format!("connect {addr}: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            Err(last)
        })
    }

    /// Deletes the outside namespace now and checks it is gone.
    pub fn close(mut self) {
        self.teardown();
        let (_, list) = run_cmd("ip", &["netns", "list"]);
        assert!(
            !list.split_whitespace().any(|w| w == self.name),
            "outside namespace {} still listed:\n{list}",
            self.name
        );
    }

    pub fn teardown(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        // Servers first: their sockets hold the namespace.
        self.servers.clear();
        let _ = run_cmd("ip", &["netns", "del", &self.name]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A network namespace made the way a CNI runtime makes a pod's: `ip netns
/// add moat-eg-cni-<pid>-<n>` (pinned at `/var/run/netns/<name>`), loopback
/// up. It belongs to the test, not to moat: dropping it deletes it, also
/// on failure.
pub struct PodNetns {
    pub name: String,
    pub deleted: bool,
}

impl PodNetns {
    pub fn new(n: usize) -> PodNetns {
        let name = format!("cni-moat-eg-{}-{n}", std::process::id());
        // Stale one from a crashed earlier run with the same pid.
        let _ = run_cmd("ip", &["netns", "del", &name]);
        must("ip", &["netns", "add", &name]);
        let pod = PodNetns {
            name,
            deleted: false,
        };
        must("ip", &["-n", &pod.name, "link", "set", "lo", "up"]);
        pod
    }

    /// The path a CRI runtime puts in the spec.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// Is the pin still there, as a namespace mount?
    pub fn exists(&self) -> bool {
        let pin = PathBuf::from(format!("/run/netns/{}", self.name));
        let needle = format!(" {} ", pin.display());
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&needle) && l.contains(" nsfs "))
    }

    /// Deletes the namespace now and checks it is gone.
    pub fn close(mut self) {
        self.deleted = true;
        must("ip", &["netns", "del", &self.name]);
        assert!(!self.exists(), "pod namespace {} still pinned", self.name);
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        if !self.deleted {
            self.deleted = true;
            let _ = run_cmd("ip", &["netns", "del", &self.name]);
        }
    }
}

/// `moat egress ID --format json`: (blockedPackets, blockedBytes).
pub fn blocked(env: &Env, id: &str) -> (u64, u64) {
    let out = env.moat(&["egress", id, "--format", "json"]);
    out.assert_ok();
    let doc = out.json();
    assert_eq!(doc["id"], json!(id), "{out}");
    let packets = doc["blockedPackets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no blockedPackets:\n{out}"));
    let bytes = doc["blockedBytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no blockedBytes:\n{out}"));
    (packets, bytes)
}

/// The pin moat makes for a container's network namespace.
pub fn netns_pin(leak: &LeakCheck) -> PathBuf {
    moat::netns::netns_path(&leak.mount_point())
}

/// Is anything left of the container's network namespace pin?
pub fn netns_leaks(leak: &LeakCheck) -> Vec<String> {
    let pin = netns_pin(leak);
    let mut v = Vec::new();
    if fs::symlink_metadata(&pin).is_ok() {
        v.push(format!("{} still exists", pin.display()));
    }
    let needle = pin.display().to_string();
    for line in fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
    {
        v.push(format!("still mounted: {line}"));
    }
    v
}

/// After a container is gone: nothing leaked, netns pin included.
pub fn verify_gone(leak: &LeakCheck) {
    leak.verify();
    let left = netns_leaks(leak);
    assert!(
        left.is_empty(),
        "network namespace pin of {} leaked:\n  {}",
        leak.id,
        left.join("\n  ")
    );
}

/// The `nft list table inet moat` of a namespace (None when absent).
pub fn moat_table(ns: &Path) -> Option<String> {
    let arg = format!("--net={}", ns.display());
    let (ok, out) = run_cmd("nsenter", &[&arg, "nft", "list", "table", "inet", "moat"]);
    ok.then_some(out)
}

/// A busybox nc probe printing what it got and `<TAG>=<exit code>`.
pub fn nc_probe(tag: &str, host: impl std::fmt::Display, port: u16) -> String {
    format!("nc -w 3 {host} {port} 2>&1; echo \"{tag}=$?\"")
}

/// `nslookup [-type=QTYPE] NAME SERVER` in container `id` (busybox; without
/// a type it asks for A and AAAA); (exit code, output).
pub fn nslookup(
    env: &crate::Env,
    id: &str,
    name: &str,
    server: Ipv4Addr,
    qtype: Option<&str>,
) -> (String, String) {
    let qtype = qtype.map(|t| format!("-type={t} ")).unwrap_or_default();
    let out = crate::exec_sh(
        env,
        id,
        &format!("timeout 10 nslookup {qtype}{name} {server} 2>&1; echo \"NS=$?\""),
    );
    (exit_of(&out, "NS"), out.stdout.clone())
}

pub fn exit_of(out: &Out, tag: &str) -> String {
    kv(&out.stdout)
        .get(tag)
        .cloned()
        .unwrap_or_else(|| panic!("no {tag}= in probe output:\n{out}"))
}

/// The check most egress tests end with: a TCP probe from container `id`
/// to `net`'s outside address on `port` is refused (TCP reset from moat's
/// rules), never reaches server `srv` of `net`, and moat's counter grows.
/// Returns the counter after the probe.
#[track_caller]
pub fn assert_tcp_egress_refused_and_counted(
    env: &Env,
    id: &str,
    net: &Net,
    srv: usize,
    port: u16,
) -> u64 {
    let before = blocked(env, id).0;
    let hits = net.hits(srv);
    let out = exec_sh(env, id, &nc_probe("NC", net.outside, port));
    assert_ne!(exit_of(&out, "NC"), "0", "egress connected:\n{out}");
    assert!(out.stdout.contains("Connection refused"), "{out}");
    assert_eq!(net.hits(srv), hits, "the outside server was reached");
    let after = blocked(env, id).0;
    assert!(
        after > before,
        "the refusal was not counted: blockedPackets {before} -> {after}"
    );
    after
}

/// Deletes `net`'s outside namespace (checking it is gone), then
/// force-deletes container `id`.
#[track_caller]
pub fn close_and_delete(env: &Env, net: Net, id: &str) {
    net.close();
    env.moat(&["delete", "--force", id]).assert_ok();
}
