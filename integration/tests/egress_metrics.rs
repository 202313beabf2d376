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
        BufReader::new(self.text().as_bytes())
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .filter(|v| v["type"] == "egress-dns")
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
    // The supervisor removes its directory as it exits (delete waits for it).
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
