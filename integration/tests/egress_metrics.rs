//! What was blocked, where operators look (issue 18 item 4, threat T18):
//! `moat metrics` (Prometheus text) and `moat events` count what moat's
//! egress rules and its resolver did, per container, with real containers.
//!
//! Run with:
//!
//! ```sh
//! cargo build --release -p moat
//! cargo test --release -p moat-integration --test egress_metrics -- --test-threads=1
//! ```
//!
//! Topology: as in `egress_names.rs` (an outside namespace joined by a
//! veth pair to the container's namespace, 10.231.X.1 inside, 10.231.X.2
//! outside); the upstream resolver is this test's own DNS server on
//! 10.231.X.2:53, which answers every A query with 10.231.X.2. Names under
//! `.moat.test` and `.attacker.test` exist only in this test. Traffic only
//! ever goes to the test's own addresses.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use moat::metrics::{parse_exposition, Sample};
use moat_integration::cmd::wait_for;
use moat_integration::network::*;
use moat_integration::*;
use serde_json::Value;

const ALLOWED: &str = "svc.metrics.moat.test";
const REFUSED: &str = "c2VjcmV0.attacker.test";

fn metrics_policy(env: &Env, upstream: Ipv4Addr) -> String {
    policy_file(
        env,
        "metrics.toml",
        // The test upstream answers with its own private address, which the
        // resolver drops unless private_answers names it (DNS rebinding, T18).
        &format!("[egress]\nallow = [\"{ALLOWED} tcp 8080\"]\nresolvers = [\"{upstream}:53\"]\nprivate_answers = [\"{ALLOWED} 10.231.0.0/16\"]\n"),
    )
}

/// `moat metrics`, checked against the exposition format.
fn metrics(env: &Env) -> Vec<Sample> {
    let out = env.moat(&["metrics"]);
    out.assert_ok();
    parse_exposition(&out.stdout).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{out}"))
}

/// Container `id`'s samples: "name" or "name{kind}" -> value.
fn of(samples: &[Sample], id: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.label("id") == Some(id))
        .map(|s| {
            let key = match s.label("kind") {
                Some(k) => format!("{}{{{k}}}", s.name),
                None => s.name.clone(),
            };
            (key, s.value)
        })
        .collect()
}

/// `moat events --interval 1 ID`, its stdout going to a file of the env;
/// killed (by its pid) when dropped.
struct Events {
    child: Child,
    out: PathBuf,
}

impl Events {
    fn follow(env: &Env, id: &str) -> Events {
        let out = env.tmp.path().join(format!("events-{id}.out"));
        let child = Command::new(moat_bin())
            .args(["--root", env.root_str(), "events", "--interval", "1", id])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot spawn moat events");
        let ev = Events { child, out };
        // Its first statistics object: it follows the events from here.
        wait_for("moat events to start", Duration::from_secs(30), || {
            !ev.text().is_empty()
        });
        ev
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The one-line JSON objects of type `egress-dns`.
    fn egress(&self) -> Vec<Value> {
        self.of_type("egress-dns")
    }

    /// The one-line JSON objects of type `kind`.
    fn of_type(&self, kind: &str) -> Vec<Value> {
        BufReader::new(self.text().as_bytes())
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .filter(|v| v["type"] == kind)
            .collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// T18 visibility: a container connects to an allowed address without a
/// lookup (refused by the rules), looks up an allowed name and a name the
/// allowlist does not have; `moat metrics` then shows exactly that for it
/// (one refused packet, one allowed lookup, one refused name, no errors),
/// with its pod and container names, while a second container's counts
/// stay as they were. The refused name is a JSON event in `moat events`
/// and in the resolver's log. The counts survive a killed resolver
/// worker, and after delete the container's lines and files are gone.
#[test]
fn metrics_and_events_show_what_was_refused_per_container() {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = metrics_policy(&env, addrs.outside());
    let ida = env.id("eg-metrics-a");
    let idb = env.id("eg-metrics-b");
    // Pod names label only a bundle the CRI made (R6-5).
    let mut ba = env.engine_bundle("k8s.io", &ida, &["sleep", "300"]);
    ba.annotate("io.kubernetes.cri.sandbox-namespace", "metrics-ns");
    ba.annotate("io.kubernetes.cri.sandbox-name", "metrics-pod");
    ba.annotate("io.kubernetes.cri.container-name", "metrics-ctr");
    let bb = env.bundle(&["sleep", "300"]);
    let leak_a = env.leak_check(&ida);
    let leak_b = env.leak_check(&idb);
    let dir = moat::resolver::dir(&canonical_root(Path::new(env.root_str())));
    {
        let _ga = start_with(&env, &["--policy", &policy], &ba, &ida);
        let _gb = start_with(&env, &["--policy", &policy], &bb, &idb);
        let mut net = Net::with(addrs, init_pid(&env, &ida), false);
        let up = net.outside;
        let srv = net.tcp_server(false, 8080, "hello-metrics\n");
        let upstream = Server::dns(&net.ns_path(), SocketAddr::new(up.into(), 53), up);

        let b_before = of(&metrics(&env), &idb);
        assert_eq!(
            b_before.get("moat_egress_blocked_packets_total"),
            Some(&(blocked(&env, &idb).0 as f64)),
            "{b_before:?}"
        );

        // An allowed address without a lookup: refused by the rules.
        assert_tcp_egress_refused_and_counted(&env, &ida, &net, srv, 8080);

        let events = Events::follow(&env, &ida);
        let (code, text) = nslookup(&env, &ida, ALLOWED, up, Some("a"));
        assert_eq!(code, "0", "{text}");
        assert!(text.contains(&format!("Address: {up}")), "{text}");
        let (_, text) = nslookup(&env, &ida, REFUSED, up, Some("a"));
        assert!(text.contains("REFUSED"), "{text}");
        assert!(!text.contains(&format!("Address: {up}")), "{text}");

        // The resolver writes its counts within a second or so.
        let mut a = BTreeMap::new();
        wait_for("the resolver's counts", Duration::from_secs(30), || {
            a = of(&metrics(&env), &ida);
            a.get("moat_egress_dns_refused_total") == Some(&1.0)
                && a.get("moat_egress_dns_allowed_total") == Some(&1.0)
        });
        let (packets, bytes) = blocked(&env, &ida);
        assert!(packets > 0);
        let want: BTreeMap<String, f64> = [
            ("moat_egress_blocked_packets_total", packets as f64),
            ("moat_egress_blocked_bytes_total", bytes as f64),
            ("moat_egress_dns_refused_total", 1.0),
            ("moat_egress_dns_allowed_total", 1.0),
            ("moat_egress_dns_errors_total{upstream}", 0.0),
            ("moat_egress_dns_errors_total{set}", 0.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(a, want);
        // What the upstream saw agrees: the allowed name once, the other never.
        assert_eq!(upstream.hits(), 1);
        assert!(upstream.asked(ALLOWED));
        assert!(!upstream.asked(REFUSED));
        // Every sample of A carries the engine's names.
        let samples = metrics(&env);
        for s in samples
            .iter()
            .filter(|s| s.label("id") == Some(ida.as_str()))
        {
            assert_eq!(s.label("namespace"), Some("metrics-ns"), "{s:?}");
            assert_eq!(s.label("pod"), Some("metrics-pod"), "{s:?}");
            assert_eq!(s.label("container"), Some("metrics-ctr"), "{s:?}");
        }
        // B: unchanged, no resolver counts (it never asked).
        let b_now = of(&samples, &idb);
        assert_eq!(b_now, b_before);
        assert!(!b_now.contains_key("moat_egress_dns_refused_total"));

        // The refused name is an event of A's, in moat events ...
        wait_for("the event in moat events", Duration::from_secs(30), || {
            !events.egress().is_empty()
        });
        let ev = events.egress();
        assert_eq!(ev.len(), 1, "{}", events.text());
        assert_eq!(ev[0]["id"], ida.as_str());
        let data = &ev[0]["data"];
        assert_eq!(data["name"], REFUSED, "{data}");
        assert_eq!(data["qtype"], "A", "{data}");
        assert_eq!(data["verdict"], "refused", "{data}");
        assert_eq!(data["pod"], "metrics-pod", "{data}");
        assert_eq!(data["namespace"], "metrics-ns", "{data}");
        assert_eq!(data["container"], "metrics-ctr", "{data}");
        drop(events);
        // ... and a JSON line of the resolver's log.
        let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
        let logged: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["name"] == REFUSED)
            .collect();
        assert_eq!(logged.len(), 1, "{log}");
        assert_eq!(logged[0]["id"], ida.as_str());
        assert_eq!(logged[0]["verdict"], "refused");
        assert_eq!(logged[0]["pod"], "metrics-pod");
        assert!(logged[0]["time"].is_string());

        // A killed worker: its successor starts from the written counts.
        let worker_pid = || fs::read_to_string(dir.join("worker.pid")).unwrap_or_default();
        let worker = worker_pid();
        must("kill", &["-KILL", worker.trim()]);
        wait_for("a new worker", Duration::from_secs(30), || {
            let now = worker_pid();
            !now.is_empty() && now != worker
        });
        // Lookups made while nothing listens are not answered (nor counted).
        wait_for("lookups to work again", Duration::from_secs(60), || {
            nslookup(&env, &ida, ALLOWED, up, Some("a")).0 == "0"
        });
        let (_, text) = nslookup(&env, &ida, REFUSED, up, Some("a"));
        assert!(text.contains("REFUSED"), "{text}");
        wait_for(
            "the counts after the restart",
            Duration::from_secs(30),
            || {
                let a = of(&metrics(&env), &ida);
                a.get("moat_egress_dns_refused_total") == Some(&2.0)
                    && a.get("moat_egress_dns_allowed_total") == Some(&2.0)
            },
        );
        assert_eq!(upstream.hits(), 2);

        drop(upstream);
        close_and_delete(&env, net, &ida);
        // A's lines and files are gone; B's lines are still there.
        let samples = metrics(&env);
        assert!(of(&samples, &ida).is_empty(), "{samples:?}");
        assert_eq!(of(&samples, &idb), b_before);
        for f in [
            moat::resolver_stats::stats_dir(&canonical_root(Path::new(env.root_str()))).join(&ida),
            moat::resolver_stats::events_dir(&canonical_root(Path::new(env.root_str()))).join(&ida),
        ] {
            assert!(!f.exists(), "{} is left", f.display());
        }
        env.moat(&["delete", "--force", &idb]).assert_ok();
    }
    verify_gone(&leak_a);
    verify_gone(&leak_b);
    // The supervisor removes its directory as it exits, once nothing has
    // been registered for a while (LeakCheck waited for it).
    assert!(!dir.exists(), "the resolver's directory is left");
}

/// T18 visibility, the error path: with an upstream that does not answer
/// (the test's address, nothing listening on port 53), a lookup of an
/// allowed name gets SERVFAIL and `moat metrics` counts it as an upstream
/// error of that container, not as an allowed lookup.
#[test]
fn an_unanswered_upstream_is_counted_as_a_resolver_error() {
    let env = Env::new();
    let addrs = Addrs::next();
    let policy = metrics_policy(&env, addrs.outside());
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-metrics-err");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &["--policy", &policy], &b, &id);
        let net = Net::with(addrs, init_pid(&env, &id), false);
        let up = net.outside;
        let (code, text) = nslookup(&env, &id, ALLOWED, up, Some("a"));
        assert_ne!(code, "0", "{text}");
        assert!(!text.contains(&format!("Address: {up}")), "{text}");
        let mut c = BTreeMap::new();
        wait_for("the error count", Duration::from_secs(30), || {
            c = of(&metrics(&env), &id);
            c.get("moat_egress_dns_errors_total{upstream}")
                .is_some_and(|n| *n >= 1.0)
        });
        assert_eq!(c.get("moat_egress_dns_allowed_total"), Some(&0.0), "{c:?}");
        assert_eq!(c.get("moat_egress_dns_refused_total"), Some(&0.0), "{c:?}");
        assert_eq!(
            c.get("moat_egress_dns_errors_total{set}"),
            Some(&0.0),
            "{c:?}"
        );
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// The resolver worker's threads named `nflog-…` (one per namespace whose
/// refused connections it logs).
fn nflog_threads(dir: &Path) -> usize {
    let pid = fs::read_to_string(dir.join("worker.pid")).unwrap_or_default();
    let tasks = Path::new("/proc").join(pid.trim()).join("task");
    fs::read_dir(tasks)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| {
            fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("nflog-"))
        })
        .count()
}

/// T18 refused connections as events, for a container with address
/// entries only: a TCP connect to the test's own address on a port the
/// allowlist lacks is refused AND is one `egress-connect` event in `moat
/// events` (destination, port, protocol, container id, the engine's
/// names) and a JSON line of the resolver's log; a flood of connects is
/// refused and counted one by one (`moat_egress_blocked_packets_total`
/// grows by at least the attempts) while the events stay within the
/// table's rate limit; with the resolver's worker killed connections are
/// still refused, and events resume once it is back; deleting one of two
/// containers ends its listener only; nothing is left after delete.
#[test]
fn refused_connections_are_rate_limited_events() {
    use moat::egress::{REFUSED_LOG_BURST, REFUSED_LOG_RATE};
    let env = Env::new();
    let addrs = Addrs::next();
    let out = addrs.outside();
    // Only UDP 9 of the test's own address: TCP 8080 there is refused.
    let policy = policy_file(
        &env,
        "events.toml",
        &format!("[egress]\nallow = [\"{out}/32 udp 9\"]\nconnection_events = true\n"),
    );
    let ida = env.id("eg-events-a");
    // Pod names label only a bundle the CRI made (R6-5).
    let mut ba = env.engine_bundle("k8s.io", &ida, &["sleep", "300"]);
    ba.annotate("io.kubernetes.cri.sandbox-namespace", "events-ns");
    ba.annotate("io.kubernetes.cri.sandbox-name", "events-pod");
    ba.annotate("io.kubernetes.cri.container-name", "events-ctr");
    let bb = env.bundle(&["sleep", "300"]);
    let idb = env.id("eg-events-b");
    let leak_a = env.leak_check(&ida);
    let leak_b = env.leak_check(&idb);
    let dir = moat::resolver::dir(&canonical_root(Path::new(env.root_str())));
    {
        let _ga = start_with(&env, &["--policy", &policy], &ba, &ida);
        let _gb = start_with(&env, &["--policy", &policy], &bb, &idb);
        // Both are served (no name entries: only their refused connections).
        wait_for("two listeners", Duration::from_secs(30), || {
            nflog_threads(&dir) == 2
        });
        let mut net = Net::with(addrs, init_pid(&env, &ida), false);
        let srv = net.tcp_server(false, 8080, "hello-events\n");
        let connect_events = |ev: &Events| ev.of_type("egress-connect");

        // One refused connect: one event with what was refused.
        let events = Events::follow(&env, &ida);
        let before = assert_tcp_egress_refused_and_counted(&env, &ida, &net, srv, 8080);
        wait_for("the connect event", Duration::from_secs(30), || {
            !connect_events(&events).is_empty()
        });
        std::thread::sleep(Duration::from_millis(500));
        let ev = connect_events(&events);
        assert_eq!(ev.len(), 1, "{}", events.text());
        assert_eq!(ev[0]["id"], ida.as_str());
        let data = &ev[0]["data"];
        assert_eq!(data["daddr"], out.to_string(), "{data}");
        assert_eq!(data["dport"], 8080, "{data}");
        assert_eq!(data["proto"], "tcp", "{data}");
        assert_eq!(data["verdict"], "refused", "{data}");
        assert_eq!(data["id"], ida.as_str(), "{data}");
        assert_eq!(data["pod"], "events-pod", "{data}");
        assert_eq!(data["namespace"], "events-ns", "{data}");
        assert_eq!(data["container"], "events-ctr", "{data}");
        let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
        assert!(
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| v["event"] == "egress-connect"
                    && v["id"] == ida.as_str()
                    && v["dport"] == 8080),
            "{log}"
        );

        // A flood: every attempt refused and counted, the events bounded
        // by the limit (a burst, then RATE a second).
        const N: u64 = 300;
        let started = std::time::Instant::now();
        let flood = exec_sh(
            &env,
            &ida,
            &format!("i=0; while [ $i -lt {N} ]; do nc -w 1 {out} 8080 </dev/null >/dev/null 2>&1; i=$((i+1)); done; echo FLOOD=done"),
        );
        let elapsed = started.elapsed().as_secs_f64();
        assert!(flood.stdout.contains("FLOOD=done"), "{flood}");
        assert_eq!(net.hits(srv), 0, "the outside server was reached");
        let after = blocked(&env, &ida).0;
        assert!(
            after >= before + N,
            "blocked {before} -> {after} for {N} attempts"
        );
        let samples = of(&metrics(&env), &ida);
        assert!(
            samples
                .get("moat_egress_blocked_packets_total")
                .is_some_and(|v| *v >= after as f64),
            "{samples:?}"
        );
        // Let the listener catch up, then count.
        let mut seen = 0;
        wait_for(
            "the flood's events to settle",
            Duration::from_secs(30),
            || {
                std::thread::sleep(Duration::from_secs(1));
                let now = connect_events(&events).len();
                let settled = now == seen && now > 1;
                seen = now;
                settled
            },
        );
        let flood_events = (seen - 1) as f64;
        let bound = f64::from(REFUSED_LOG_BURST) + REFUSED_LOG_RATE as f64 * (elapsed + 1.0);
        eprintln!(
            "flood: {N} attempts in {elapsed:.2} s, {flood_events} events (bound {bound:.0})"
        );
        assert!(flood_events >= 1.0, "{}", events.text());
        assert!(
            flood_events <= bound,
            "{flood_events} events for {N} attempts in {elapsed:.2} s"
        );
        assert!(flood_events < N as f64);

        // The worker killed: still refused (the rules do not need it);
        // its successor logs again.
        let worker_pid = || fs::read_to_string(dir.join("worker.pid")).unwrap_or_default();
        let worker = worker_pid();
        must("kill", &["-KILL", worker.trim()]);
        assert_tcp_egress_refused_and_counted(&env, &ida, &net, srv, 8080);
        wait_for("a new worker", Duration::from_secs(30), || {
            let now = worker_pid();
            !now.is_empty() && now != worker && nflog_threads(&dir) == 2
        });
        // The limit's bucket refills at RATE a second.
        std::thread::sleep(Duration::from_secs(3));
        let had = connect_events(&events).len();
        assert_tcp_egress_refused_and_counted(&env, &ida, &net, srv, 8080);
        wait_for("events after the restart", Duration::from_secs(30), || {
            connect_events(&events).len() > had
        });
        drop(events);

        // Deleting A ends A's listener only.
        close_and_delete(&env, net, &ida);
        wait_for("A's listener to end", Duration::from_secs(30), || {
            nflog_threads(&dir) == 1
        });
        // Delete tells the resolver without waiting (events only): its
        // files go when the resolver has read that.
        let events_a =
            moat::resolver_stats::events_dir(&canonical_root(Path::new(env.root_str()))).join(&ida);
        wait_for("A's events file to go", Duration::from_secs(30), || {
            !events_a.exists()
        });
        env.moat(&["delete", "--force", &idb]).assert_ok();
    }
    verify_gone(&leak_a);
    verify_gone(&leak_b);
    assert!(!dir.exists(), "the resolver's directory is left");
}
