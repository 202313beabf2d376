//! Egress blocking (threat T18), tested with real containers through the
//! `moat` binary and a network the test builds itself.
//!
//! Run with:
//!
//! ```sh
//! cd /work/main && cargo build --release
//! cargo test --release -p moat-integration --test egress -- --test-threads=1
//! ```
//!
//! Topology of every test: the container is created and started (its init
//! sleeps, or listens), then the test makes an "outside" network namespace
//! `moat-eg-<pid>-<n>` and a veth pair between it and the container's
//! network namespace (`egc0` inside at 10.231.X.1/30, `ego0` outside at
//! 10.231.X.2/30; with IPv6, fd00:6d6f:6174:X::1 and ::2 /64). X is derived
//! from this process's pid and a per-topology counter. Servers on the
//! outside are threads of this test process whose sockets were created
//! after `setns` into the outside namespace. Probes run inside the
//! container with `moat exec … sh -c` (busybox `nc` for TCP, busybox `tftp`
//! for UDP: this busybox's `nc` has no `-u`).
//!
//! One test plays CNI instead: it makes a pod-style namespace
//! `moat-eg-cni-<pid>-<n>` with `ip netns add` ([`PodNetns`]) and wires it
//! to the outside the same way before the container exists, then hands
//! moat its `/var/run/netns/…` path in config.json, as containerd does for
//! a pod sandbox.
//!
//! Network rule: traffic only ever goes to loopback or to the addresses of
//! the test's own namespaces and veth pairs. Nothing touches the host's
//! network namespace, routes or firewall. Every outside namespace (which
//! takes its veth pair with it) is deleted by a Drop guard, also on
//! failure.
//!
//! After every test: the containers are deleted, [`LeakCheck`] passes, and
//! no `/run/moat-rootfs/<hash>.netns` pin (file or mount) remains for them.
//!
//! The network harness (namespaces, veth pairs, servers, the egress
//! checks) is `moat_integration::network`.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_integration::network::*;
use moat_integration::*;
use serde_json::json;

/// A refused connection must fail well before busybox nc's 3 s timeout.
const FAST: Duration = Duration::from_secs(2);

/// A policy file allowing moat's default capabilities and CAP_NET_ADMIN,
/// and a `sleep 300` bundle that asks for all of them.
fn net_admin_policy_and_sleeper(env: &Env) -> (String, Bundle) {
    let mut caps: Vec<&str> = ALLOWLIST.to_vec();
    caps.push("CAP_NET_ADMIN");
    let owned: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    let pf = policy_file(
        env,
        "netadmin.toml",
        &format!("[capabilities]\nallow = {}\n", toml_list(&owned)),
    );
    let mut b = env.bundle(&["sleep", "300"]);
    b.set_capabilities(&caps);
    (pf, b)
}

/// A TCP connect from container `id` to server `srv` outside is refused
/// fast (moat's reset, within [`FAST`] with the exec), the server's hits
/// stay at `hits_before`, and the drop is counted in packets and bytes.
/// Returns the blocked packets counted.
#[track_caller]
fn assert_connect_refused_fast(
    env: &Env,
    id: &str,
    net: &Net,
    srv: usize,
    hits_before: usize,
) -> u64 {
    let start = Instant::now();
    let out = exec_sh(env, id, &nc_probe("NC", net.outside, 8080));
    let took = start.elapsed();
    out.assert_ok();
    assert_ne!(exit_of(&out, "NC"), "0", "egress connect succeeded:\n{out}");
    assert!(
        out.stdout.contains("Connection refused"),
        "expected a fast ECONNREFUSED from moat's reset:\n{out}"
    );
    assert!(!out.stdout.contains("hello"), "{out}");
    assert!(
        took < FAST,
        "refusal took {took:?} (exec included), expected < {FAST:?}:\n{out}"
    );
    assert_eq!(net.hits(srv), hits_before, "the outside server was reached");
    let (packets, bytes) = blocked(env, id);
    assert!(packets >= 1, "blockedPackets = {packets}");
    assert!(bytes >= 40, "blockedBytes = {bytes} for {packets} packets");
    packets
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Test 1: Default policy: an outbound TCP connection is refused at once (TCP
/// reset from moat's rules, not a timeout) and counted; loopback works.
#[test]
fn tcp_egress_is_refused_fast_and_counted_while_loopback_works() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-tcp");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &[], &b, &id);
        let pid = init_pid(&env, &id);
        let pin = netns_pin(&leak);
        assert!(
            pin.exists(),
            "no network namespace pin at {}",
            pin.display()
        );
        let mut net = Net::new(pid, false);
        let srv = net.tcp_server(false, 8080, "hello\n");
        assert_eq!(blocked(&env, &id).0, 0, "counter not zero before any probe");

        let packets = assert_connect_refused_fast(&env, &id, &net, srv, 0);

        // Loopback inside the container still works.
        assert_loopback_works(&env, &id);
        // Loopback is not counted.
        assert_eq!(
            blocked(&env, &id).0,
            packets,
            "loopback traffic was counted"
        );

        // The ruleset moat installed is what the docs describe.
        let table = moat_table(&net.container_ns).expect("inet moat table in the container netns");
        for want in [
            "oif \"lo\" accept",
            "ct state established,related accept",
            "reject with tcp reset",
            "admin-prohibited",
        ] {
            assert!(table.contains(want), "ruleset lacks {want:?}:\n{table}");
        }
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// A TCP server on the container's own 127.0.0.1 answers a client there.
#[track_caller]
fn assert_loopback_works(env: &Env, id: &str) {
    let script = "nc -ll -p 9000 -e /bin/echo loopback-ok & L=$!; \
                  got=''; for i in 1 2 3 4 5 6 7 8 9 10; do \
                    got=$(nc -w 2 127.0.0.1 9000 2>&1) && [ -n \"$got\" ] && break; \
                    sleep 0.2; done; \
                  kill $L; echo \"LOOP=$got\"";
    let out = exec_sh(env, id, script);
    out.assert_ok();
    assert_eq!(
        kv(&out.stdout).get("LOOP").map(String::as_str),
        Some("loopback-ok"),
        "loopback inside the container:\n{out}"
    );
}

/// The conntrack entries in the network namespace of process `pid`.
fn conntrack_count(pid: i32) -> u64 {
    let out = std::process::Command::new("nsenter")
        .args(["-n", "-t", &pid.to_string(), "cat"])
        .arg("/proc/sys/net/netfilter/nf_conntrack_count")
        .output()
        .expect("nsenter");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("nf_conntrack_count: {out:?}"))
}

/// R8-4 (T18 conntrack): conntrack entries are kernel memory no memory
/// cgroup is charged for. Loopback traffic makes none (100 connects to
/// closed loopback ports leave the count at 0, where a tracked namespace
/// holds one per connect), and new flows out are capped at
/// `egress.max_tracked_connections`: with 3, five UDP flows to an allowed
/// server leave 3 entries, the other two refused and counted; loopback
/// still works past the cap.
#[test]
fn loopback_is_untracked_and_new_flows_are_capped() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-ct");
    let leak = env.leak_check(&id);
    {
        let addrs = Addrs::next();
        let dest = addrs.outside();
        let pf = policy_file(
            &env,
            "ctcap.toml",
            &format!("[egress]\nallow = [\"{dest}/32 udp 5353\"]\nmax_tracked_connections = 3\n"),
        );
        let _g = start_with(&env, &["--policy", &pf], &b, &id);
        let pid = init_pid(&env, &id);
        let mut net = Net::with(addrs, pid, false);
        let udp = net.udp_server(5353);

        let out = exec_sh(
            &env,
            &id,
            "i=0; while [ $i -lt 100 ]; do nc -w 1 127.0.0.1 $((20000 + i)) </dev/null >/dev/null 2>&1; \
             i=$((i + 1)); done; echo LOOPS=$i",
        );
        out.assert_ok();
        assert_eq!(
            kv(&out.stdout).get("LOOPS").map(String::as_str),
            Some("100"),
            "{out}"
        );
        assert_eq!(conntrack_count(pid), 0, "loopback connects were tracked");

        // Five UDP flows (each tftp run has its own source port) to the
        // allowed port: 3 tracked, the other 2 refused and counted. (UDP:
        // connlimit forgets TCP flows once closed, see the threat row.)
        for _ in 0..5 {
            let script = format!(
                "timeout 2 tftp -g -r x -l /tmp/x {} 5353 2>&1; echo \"TFTP=$?\"",
                net.outside
            );
            exec_sh(&env, &id, &script);
        }
        assert!(net.hits(udp) >= 1, "the allowed UDP server got nothing");
        assert!(
            blocked(&env, &id).0 >= 2,
            "refusals past the cap not counted"
        );
        assert_eq!(conntrack_count(pid), 3, "entries beyond the cap");

        assert_loopback_works(&env, &id);
        let table = moat_table(&net.container_ns).expect("inet moat table");
        assert!(table.contains("ct count over 3"), "{table}");
        assert!(table.contains("iif \"lo\" notrack"), "{table}");
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 2: UDP is blocked too: the datagram never reaches the outside server,
/// and the counter grows.
#[test]
fn udp_egress_is_dropped_and_counted() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-udp");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &[], &b, &id);
        let mut net = Net::new(init_pid(&env, &id), false);
        let srv = net.udp_server(5353);
        let before = blocked(&env, &id).0;
        let script = format!(
            "tftp -g -r x -l /tmp/x {} 5353 2>&1; echo \"TFTP=$?\"",
            net.outside
        );
        let start = Instant::now();
        let out = exec_sh(&env, &id, &script);
        let took = start.elapsed();
        out.assert_ok();
        assert_ne!(exit_of(&out, "TFTP"), "0", "{out}");
        assert!(took < FAST, "UDP refusal took {took:?}:\n{out}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            net.hits(srv),
            0,
            "the outside UDP server received a datagram:\n{out}"
        );
        let after = blocked(&env, &id).0;
        assert!(
            after > before,
            "blockedPackets did not grow ({before} -> {after}):\n{out}"
        );
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 3: IPv6 is blocked like IPv4.
#[test]
fn ipv6_egress_is_refused() {
    if !kernel_has_ipv6() {
        eprintln!(
            "SKIPPED ipv6_egress_is_refused: this kernel has IPv6 disabled (no /proc/sys/net/ipv6)"
        );
        return;
    }
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-v6");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &[], &b, &id);
        let mut net = Net::new(init_pid(&env, &id), true);
        let srv = net.tcp_server(true, 8080, "hello\n");
        let before = blocked(&env, &id).0;
        let start = Instant::now();
        let out = exec_sh(&env, &id, &nc_probe("NC", net.outside6.unwrap(), 8080));
        let took = start.elapsed();
        out.assert_ok();
        assert_ne!(exit_of(&out, "NC"), "0", "IPv6 egress connected:\n{out}");
        assert!(out.stdout.contains("Connection refused"), "{out}");
        assert!(took < FAST, "IPv6 refusal took {took:?}:\n{out}");
        assert_eq!(net.hits(srv), 0, "the outside IPv6 server was reached");
        let after = blocked(&env, &id).0;
        assert!(after > before, "blockedPackets {before} -> {after}");
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 3b: IPv6 that the policy allows must work: an allowlisted IPv6
/// destination, and replies to an inbound IPv6 connection. Both need
/// neighbour discovery (ICMPv6 NS/NA), which conntrack leaves untracked.
///
/// Regression test: moat's first ruleset rejected neighbour solicitations
/// and advertisements (neither `oif lo` nor `ct state established,related`),
/// so an allowlisted IPv6 destination timed out and inbound IPv6 got "No
/// route to host". The ruleset now accepts them before the rejects.
#[test]
fn ipv6_allowlisted_and_inbound_connections_work() {
    if !kernel_has_ipv6() {
        eprintln!(
            "SKIPPED ipv6_allowlisted_and_inbound_connections_work: this kernel has IPv6 disabled"
        );
        return;
    }
    let env = Env::new();
    // Inbound listener as init; outbound probes by exec.
    let b = env.bundle(&["nc", "-ll", "-p", "7000", "-e", "/bin/echo", "inside"]);
    let id = env.id("eg-v6ok");
    let leak = env.leak_check(&id);
    {
        let addrs = Addrs::next();
        let pf = policy_file(
            &env,
            "v6.toml",
            &format!(
                "[egress]\nallow = [\"{}/128 tcp 8080\"]\n",
                addrs.outside6()
            ),
        );
        let _g = start_with(&env, &["--policy", &pf], &b, &id);
        let mut net = Net::with(addrs, init_pid(&env, &id), true);
        let srv = net.tcp_server(true, 8080, "hello\n");
        let out = exec_sh(&env, &id, &nc_probe("NC", net.outside6.unwrap(), 8080));
        let outbound_ok = out.stdout.contains("hello") && net.hits(srv) == 1;
        let inbound = net.connect_from_outside(
            SocketAddr::new(net.inside6.unwrap().into(), 7000),
            Duration::from_secs(6),
        );
        let neigh = run_cmd("ip", &["-n", &net.name, "-6", "neigh"]).1;
        let table = moat_table(&net.container_ns).unwrap_or_default();
        assert!(
            outbound_ok && inbound.as_deref().map(str::trim) == Ok("inside"),
            "IPv6 traffic the policy allows does not flow.\n\
             allowlisted outbound to [{}]:8080: {}\n{out}\n\
             inbound to [{}]:7000: {inbound:?}\n\
             outside neighbour table:\n{neigh}\nruleset:\n{table}",
            net.outside6.unwrap(),
            if outbound_ok { "ok" } else { "FAILED" },
            net.inside6.unwrap(),
        );
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 4: An operator allowlist entry opens exactly that destination: TCP 8080
/// and UDP 5353 on the outside host; TCP 8081 and UDP 5354 on the same
/// host stay blocked (servers listen there too, so a refusal is moat's).
#[test]
fn allowlisted_destination_is_reachable_and_nothing_else() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-allow");
    let leak = env.leak_check(&id);
    {
        let addrs = Addrs::next();
        let dest = addrs.outside();
        let pf = policy_file(
            &env,
            "allow.toml",
            &format!("[egress]\nallow = [\"{dest}/32 tcp 8080\", \"{dest}/32 udp 5353\"]\n"),
        );
        let _g = start_with(&env, &["--policy", &pf], &b, &id);
        let mut net = Net::with(addrs, init_pid(&env, &id), false);
        let ok = net.tcp_server(false, 8080, "hello\n");
        let other = net.tcp_server(false, 8081, "other\n");
        let udp_ok = net.udp_server(5353);
        let udp_other = net.udp_server(5354);

        let out = exec_sh(&env, &id, &nc_probe("NC", net.outside, 8080));
        out.assert_ok();
        assert_eq!(exit_of(&out, "NC"), "0", "{out}");
        assert!(out.stdout.contains("hello"), "allowlisted connect:\n{out}");
        assert_eq!(net.hits(ok), 1);
        let before = blocked(&env, &id).0;
        assert_eq!(before, 0, "an allowed connection was counted as blocked");

        let start = Instant::now();
        let out = exec_sh(&env, &id, &nc_probe("NC", net.outside, 8081));
        let took = start.elapsed();
        assert_ne!(exit_of(&out, "NC"), "0", "{out}");
        assert!(out.stdout.contains("Connection refused"), "{out}");
        assert!(!out.stdout.contains("other"), "{out}");
        assert!(took < FAST, "refusal took {took:?}");
        assert_eq!(net.hits(other), 0, "port 8081 was reached");

        // UDP: the allowed port receives the datagram, the other does not.
        for port in [5353, 5354] {
            let script = format!(
                "timeout 2 tftp -g -r x -l /tmp/x {} {port} 2>&1; echo \"TFTP=$?\"",
                net.outside
            );
            exec_sh(&env, &id, &script);
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            net.hits(udp_ok) >= 1,
            "allowlisted UDP 5353 received nothing"
        );
        assert_eq!(net.hits(udp_other), 0, "UDP 5354 was reached");
        let after = blocked(&env, &id).0;
        assert!(after >= before + 2, "blockedPackets {before} -> {after}");
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 4b: DNS to a resolver the operator allowlists (`udp 53`) works: busybox
/// `nslookup` in the container gets the answer of a tiny responder on the
/// outside. Under the default policy the same lookup fails, no query
/// reaches the responder, and the attempt is counted.
#[test]
fn dns_to_an_allowlisted_resolver_works() {
    let env = Env::new();
    let (a_allow, a_default) = (Addrs::next(), Addrs::next());
    let pf = policy_file(
        &env,
        "dns.toml",
        &format!("[egress]\nallow = [\"{}/32 udp 53\"]\n", a_allow.outside()),
    );
    let b_allow = env.bundle(&["sleep", "300"]);
    let b_default = env.bundle(&["sleep", "300"]);
    let id_allow = env.id("eg-dns");
    let id_default = env.id("eg-dns-default");
    let leak_allow = env.leak_check(&id_allow);
    let leak_default = env.leak_check(&id_default);
    // The A record each responder hands out.
    let answer = |a: &Addrs| Ipv4Addr::new(10, 231, a.x, 99);
    // `nslookup` output: the addresses of the answer section (the lines
    // after "Name:"; the server's own address comes before it).
    let answers = |out: &Out| -> Vec<String> {
        out.stdout
            .lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .filter_map(|l| l.strip_prefix("Address:"))
            .map(|v| v.trim().to_string())
            .collect()
    };
    {
        let _g1 = start_with(&env, &["--policy", &pf], &b_allow, &id_allow);
        let _g2 = start_with(&env, &[], &b_default, &id_default);

        // Allowlisted: the lookup is answered.
        let mut net = Net::with(a_allow, init_pid(&env, &id_allow), false);
        let dns = net.dns_server(53, answer(&a_allow));
        let script = format!(
            "timeout 20 nslookup moat.test {} 2>&1; echo \"NS=$?\"",
            net.outside
        );
        let out = exec_sh(&env, &id_allow, &script);
        out.assert_ok();
        assert_eq!(exit_of(&out, "NS"), "0", "lookup failed:\n{out}");
        assert_eq!(
            answers(&out),
            vec![answer(&a_allow).to_string()],
            "nslookup did not print the responder's answer:\n{out}"
        );
        assert!(net.hits(dns) >= 1, "the responder saw no query:\n{out}");
        assert_eq!(
            blocked(&env, &id_allow).0,
            0,
            "allowlisted DNS traffic was counted as blocked"
        );

        // Default policy: no query leaves the container.
        let mut net_default = Net::with(a_default, init_pid(&env, &id_default), false);
        let dns_default = net_default.dns_server(53, answer(&a_default));
        let before = blocked(&env, &id_default).0;
        let script = format!(
            "timeout 20 nslookup moat.test {} 2>&1; echo \"NS=$?\"",
            net_default.outside
        );
        let out = exec_sh(&env, &id_default, &script);
        out.assert_ok();
        assert_ne!(exit_of(&out, "NS"), "0", "lookup succeeded:\n{out}");
        assert!(
            !out.stdout.contains(&answer(&a_default).to_string()),
            "the container got the answer:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            net_default.hits(dns_default),
            0,
            "the responder received a query under the default policy:\n{out}"
        );
        let after = blocked(&env, &id_default).0;
        assert!(
            after > before,
            "blockedPackets did not grow ({before} -> {after}):\n{out}"
        );

        net.close();
        net_default.close();
        env.moat(&["delete", "--force", &id_allow]).assert_ok();
        env.moat(&["delete", "--force", &id_default]).assert_ok();
    }
    verify_gone(&leak_allow);
    verify_gone(&leak_default);
}

/// Test 5a: The annotation `moat.dev/egress-allow` narrows the operator's
/// allowlist: a container without it reaches both ports the operator
/// allows, one with it only the port it names.
#[test]
fn annotation_narrows_the_allowlist() {
    let env = Env::new();
    // The operator allows TCP to the whole /30 of each topology.
    let (a_plain, a_narrow) = (Addrs::next(), Addrs::next());
    let pf = policy_file(
        &env,
        "wide.toml",
        &format!(
            "[egress]\nallow = [\"10.231.{}.0/30 tcp\", \"10.231.{}.0/30 tcp\"]\n",
            a_plain.x, a_narrow.x
        ),
    );
    let plain = env.bundle(&["sleep", "300"]);
    let mut narrowed = env.bundle(&["sleep", "300"]);
    narrowed.annotate(
        "moat.dev/egress-allow",
        &format!("{}/32 tcp 8080", a_narrow.outside()),
    );
    let id_plain = env.id("eg-wide");
    let id_narrow = env.id("eg-narrow");
    let leak_plain = env.leak_check(&id_plain);
    let leak_narrow = env.leak_check(&id_narrow);
    {
        let _g1 = start_with(&env, &["--policy", &pf], &plain, &id_plain);
        let _g2 = start_with(&env, &["--policy", &pf], &narrowed, &id_narrow);
        let mut net_plain = Net::with(a_plain, init_pid(&env, &id_plain), false);
        let mut net_narrow = Net::with(a_narrow, init_pid(&env, &id_narrow), false);
        for net in [&mut net_plain, &mut net_narrow] {
            net.tcp_server(false, 8080, "hello\n");
            net.tcp_server(false, 8081, "other\n");
        }

        // Operator policy alone: both ports.
        let script = format!(
            "{}; {}",
            nc_probe("A", net_plain.outside, 8080),
            nc_probe("B", net_plain.outside, 8081)
        );
        let out = exec_sh(&env, &id_plain, &script);
        assert_eq!(exit_of(&out, "A"), "0", "{out}");
        assert_eq!(exit_of(&out, "B"), "0", "{out}");
        assert!(
            out.stdout.contains("hello") && out.stdout.contains("other"),
            "{out}"
        );

        // Narrowed by the annotation: 8080 only.
        let script = format!(
            "{}; {}",
            nc_probe("A", net_narrow.outside, 8080),
            nc_probe("B", net_narrow.outside, 8081)
        );
        let out = exec_sh(&env, &id_narrow, &script);
        assert_eq!(exit_of(&out, "A"), "0", "{out}");
        assert!(out.stdout.contains("hello"), "{out}");
        assert_ne!(
            exit_of(&out, "B"),
            "0",
            "narrowed-away port reachable:\n{out}"
        );
        assert!(out.stdout.contains("Connection refused"), "{out}");
        assert!(!out.stdout.contains("other"), "{out}");
        assert_eq!(net_narrow.hits(1), 0);
        assert!(blocked(&env, &id_narrow).0 >= 1);

        net_plain.close();
        net_narrow.close();
        env.moat(&["delete", "--force", &id_plain]).assert_ok();
        env.moat(&["delete", "--force", &id_narrow]).assert_ok();
    }
    verify_gone(&leak_plain);
    verify_gone(&leak_narrow);
}

/// Test 5b: Widening the allowlist (or turning blocking off) by annotation is
/// refused at create unless the operator lists the key as overridable, and
/// a refused create leaves nothing, network namespace pin included.
#[test]
fn annotation_may_not_widen_egress_and_a_refusal_leaves_nothing() {
    let env = Env::new();
    // No traffic in this test: the addresses only appear in rules.
    let a = Addrs::next();
    let (dest, x) = (a.outside(), a.x);
    let strict = policy_file(
        &env,
        "strict.toml",
        &format!("[egress]\nallow = [\"{dest}/32 tcp 8080\"]\n"),
    );
    let cases: Vec<(&str, String, &str)> = vec![
        // A wider network, every port, another protocol, another host.
        (
            "moat.dev/egress-allow",
            format!("10.231.{x}.0/30 tcp 8080"),
            "egress.allow",
        ),
        (
            "moat.dev/egress-allow",
            format!("{dest}/32 tcp"),
            "egress.allow",
        ),
        (
            "moat.dev/egress.allow",
            format!("{dest}/32 udp 8080"),
            "egress.allow",
        ),
        (
            "moat.dev/egress-allow",
            format!("{dest}/32 tcp 8080; {}/32 tcp 8080", a.inside()),
            "egress.allow",
        ),
        (
            "moat.dev/egress.enabled",
            "false".to_string(),
            "egress.enabled",
        ),
    ];
    for (key, value, policy_key) in &cases {
        let mut b = env.bundle(&["sleep", "300"]);
        b.annotate(key, value);
        for cmd in ["create", "run"] {
            let id = env.id("eg-widen");
            let leak = env.leak_check(&id);
            let out = {
                let _g = env.guard(&id);
                let mut args = vec!["--policy", strict.as_str(), cmd, "--bundle", b.path()];
                if cmd == "run" {
                    args.push("--detach");
                }
                args.push(&id);
                env.moat(&args)
            };
            out.assert_fails_with("annotations.overridable");
            assert!(
                out.stderr.contains(policy_key),
                "{key}={value}: the refusal does not name {policy_key}:\n{out}"
            );
            verify_gone(&leak);
        }
    }

    // Listed as overridable, the same widening is accepted.
    let open = policy_file(
        &env,
        "open.toml",
        &format!(
            "[egress]\nallow = [\"{dest}/32 tcp 8080\"]\n\
             [annotations]\noverridable = [\"egress.allow\"]\n"
        ),
    );
    let mut b = env.bundle(&["sleep", "300"]);
    b.annotate("moat.dev/egress-allow", &format!("10.231.{x}.0/30 tcp"));
    let id = env.id("eg-widen-ok");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["--policy", &open, "create", "--bundle", b.path(), &id])
            .assert_ok();
        assert!(netns_pin(&leak).exists());
        let pid = init_pid(&env, &id);
        let table = moat_table(Path::new(&format!("/proc/{pid}/ns/net"))).expect("moat table");
        assert!(
            table.contains(&format!("ip daddr 10.231.{x}.0/30 meta l4proto tcp accept")),
            "widened rule not installed:\n{table}"
        );
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    verify_gone(&leak);
}

/// Test 6: `egress.enabled = false`: the connection succeeds, and create logs a
/// loud warning.
#[test]
fn disabled_egress_connects_and_warns_loudly() {
    let env = Env::new();
    let pf = policy_file(&env, "off.toml", "[egress]\nenabled = false\n");
    let log = env.tmp.path().join("create.log");
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-off");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(
            &env,
            &["--policy", &pf, "--log", log.to_str().unwrap()],
            &b,
            &id,
        );
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("EGRESS BLOCKING IS OFF") && text.contains(&id),
            "no loud warning naming {id} in the create log:\n{text}"
        );
        // Without --log the warning is on stderr.
        let id2 = env.id("eg-off-stderr");
        let leak2 = env.leak_check(&id2);
        {
            let _g2 = env.guard(&id2);
            let out = env.moat(&["--policy", &pf, "create", "--bundle", b.path(), &id2]);
            out.assert_ok();
            assert!(
                out.stderr.contains("EGRESS BLOCKING IS OFF"),
                "no loud warning on stderr:\n{out}"
            );
            env.moat(&["delete", "--force", &id2]).assert_ok();
        }
        verify_gone(&leak2);
        assert!(
            !netns_pin(&leak).exists(),
            "moat pinned a network namespace with egress blocking off"
        );
        let mut net = Net::new(init_pid(&env, &id), false);
        let srv = net.tcp_server(false, 8080, "hello\n");
        let out = exec_sh(&env, &id, &nc_probe("NC", net.outside, 8080));
        assert_eq!(exit_of(&out, "NC"), "0", "{out}");
        assert!(out.stdout.contains("hello"), "{out}");
        assert_eq!(net.hits(srv), 1);
        assert!(
            moat_table(&net.container_ns).is_none(),
            "a moat table exists with egress off"
        );
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 7: Container root holding CAP_NET_ADMIN (granted by the policy and the
/// bundle) still cannot administer moat's network namespace: it belongs to
/// the host's user namespace.
#[test]
fn container_root_with_cap_net_admin_cannot_touch_the_rules() {
    let env = Env::new();
    let (pf, b) = net_admin_policy_and_sleeper(&env);
    let id = env.id("eg-netadmin");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &["--policy", &pf], &b, &id);
        let pid = init_pid(&env, &id);
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert_ne!(
            cap_field(&status, "CapEff") & CAP_NET_ADMIN,
            0,
            "init lacks CAP_NET_ADMIN; the test proves nothing:\n{status}"
        );
        let mut net = Net::new(pid, false);
        let srv = net.tcp_server(false, 8080, "hello\n");
        let table_before = moat_table(&net.container_ns).expect("moat table");
        let x = net.x;
        let script = format!(
            "grep CapEff /proc/self/status | sed 's/:[[:space:]]*/=/'; \
             ip link set lo down 2>&1; echo \"LO=$?\"; \
             ip addr add 10.231.{x}.5/32 dev lo 2>&1; echo \"ADDR=$?\"; \
             ip route add blackhole 10.231.{x}.6 2>&1; echo \"ROUTE=$?\"; \
             ip link set {INSIDE_IF} down 2>&1; echo \"VETH=$?\"; \
             {}",
            nc_probe("NC", net.outside, 8080)
        );
        let out = exec_sh(&env, &id, &script);
        let got = kv(&out.stdout);
        let eff = u64::from_str_radix(got.get("CapEff").map(String::as_str).unwrap_or("0"), 16)
            .unwrap_or(0);
        assert_ne!(
            eff & CAP_NET_ADMIN,
            0,
            "the probing shell lacks CAP_NET_ADMIN:\n{out}"
        );
        for tag in ["LO", "ADDR", "ROUTE", "VETH"] {
            assert_ne!(
                got.get(tag).map(String::as_str),
                Some("0"),
                "{tag}: container root changed its network:\n{out}"
            );
        }
        // The kernel says no (ioctl for link flags, rtnetlink for
        // addresses and routes), not seccomp at socket creation.
        let ioctl = out
            .stdout
            .matches("SIOCSIFFLAGS: Operation not permitted")
            .count();
        let netlink = out
            .stdout
            .matches("RTNETLINK answers: Operation not permitted")
            .count();
        assert!(
            ioctl == 2 && netlink == 2,
            "expected 2 SIOCSIFFLAGS and 2 RTNETLINK EPERMs, got {ioctl} and {netlink}:\n{out}"
        );
        assert_ne!(exit_of(&out, "NC"), "0", "{out}");
        assert!(out.stdout.contains("Connection refused"), "{out}");
        assert_eq!(net.hits(srv), 0);

        // Nothing changed, seen from the host.
        let table_after = moat_table(&net.container_ns).expect("moat table");
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.contains("packets"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&table_before), strip(&table_after), "rules changed");
        let arg = format!("--net={}", net.container_ns.display());
        let links = must("nsenter", &[&arg, "ip", "-o", "link", "show", "up"]);
        assert!(
            links.contains(" lo:") && links.contains(INSIDE_IF),
            "an interface went down:\n{links}"
        );
        let addrs = must("nsenter", &[&arg, "ip", "-o", "addr"]);
        assert!(!addrs.contains(&format!("10.231.{x}.5")), "{addrs}");
        let routes = must("nsenter", &[&arg, "ip", "route", "show", "table", "all"]);
        assert!(!routes.contains("blackhole"), "{routes}");
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 8: Inbound connections work: replies are established traffic.
#[test]
fn inbound_connections_get_replies() {
    let env = Env::new();
    let b = env.bundle(&["nc", "-ll", "-p", "7000", "-e", "/bin/echo", "inside"]);
    let id = env.id("eg-in");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &[], &b, &id);
        let net = Net::new(init_pid(&env, &id), false);
        let got = net.connect_from_outside(
            SocketAddr::new(net.inside.into(), 7000),
            Duration::from_secs(6),
        );
        assert_eq!(
            got.as_deref().map(str::trim),
            Ok("inside"),
            "inbound connection to the container"
        );
        // And again (the listener is persistent): replies are never counted.
        let got = net.connect_from_outside(
            SocketAddr::new(net.inside.into(), 7000),
            Duration::from_secs(3),
        );
        assert_eq!(got.as_deref().map(str::trim), Ok("inside"));
        assert_eq!(blocked(&env, &id).0, 0, "reply packets were blocked");
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// Test 9: A second container joining the first's network namespace by path is
/// blocked by the same rules, and deleting it leaves the rules in place.
#[test]
fn container_joining_the_netns_is_blocked_and_its_delete_keeps_the_rules() {
    let env = Env::new();
    let mut first_b = env.bundle(&["sleep", "300"]);
    // A raw bundle is joinable only with its own consent (T10).
    first_b.annotate("moat.dev/joinable", "true");
    let id1 = env.id("eg-first");
    let id2 = env.id("eg-second");
    let leak1 = env.leak_check(&id1);
    {
        let _g1 = start_with(&env, &[], &first_b, &id1);
        // Snapshot after the first exists: its state is not the second's leak.
        let leak2 = env.leak_check(&id2);
        let pid1 = init_pid(&env, &id1);
        let ns1 = format!("/proc/{pid1}/ns/net");
        let mut second_b = env.bundle(&["sleep", "300"]);
        second_b.join_namespace("network", &ns1);
        let mut net = Net::new(pid1, false);
        let srv = net.tcp_server(false, 8080, "hello\n");
        {
            let _g2 = start_with(&env, &[], &second_b, &id2);
            let pid2 = init_pid(&env, &id2);
            let a = fs::read_link(&ns1).unwrap();
            let b = fs::read_link(format!("/proc/{pid2}/ns/net")).unwrap();
            assert_eq!(a, b, "the second container is not in the first's netns");
            assert!(
                !netns_pin(&leak2).exists(),
                "a pin was made for the joining container"
            );

            assert_tcp_egress_refused_and_counted(&env, &id2, &net, srv, 8080);
            env.moat(&["delete", "--force", &id2]).assert_ok();
        }
        verify_gone(&leak2);

        // The first container keeps its namespace, pin and rules.
        assert!(netns_pin(&leak1).exists(), "first container's pin is gone");
        assert!(
            moat_table(Path::new(&ns1)).is_some(),
            "the rules went away with the second container"
        );
        let before = blocked(&env, &id1).0;
        assert!(before >= 1, "the counter was reset: {before}");
        assert_tcp_egress_refused_and_counted(&env, &id1, &net, srv, 8080);
        close_and_delete(&env, net, &id1);
    }
    verify_gone(&leak1);
}

/// Test 10: A pod network namespace made by CNI and given by path (as
/// containerd does for a pod sandbox) gets moat's rules at create: the
/// test makes it with `ip netns add`, wires it to the outside and gives it
/// its addresses before moat sees it. Egress from the container is refused
/// fast and counted; deleting the container leaves nothing of moat's (its
/// table included: it was the namespace's last moat container), and the
/// namespace (the pod's, not moat's) is left to its owner.
#[test]
fn cni_style_netns_path_gets_the_rules() {
    let env = Env::new();
    let addrs = Addrs::next();
    let pod = PodNetns::new(addrs.n);
    let pod_path = pod.path();
    // CNI's part: a veth pair to the outside, addresses on both ends.
    let mut net = Net::with_ns(addrs, pod_path.clone(), &pod.name, false);
    let srv = net.tcp_server(false, 8080, "hello\n");
    // Before moat: no table, and the outside answers from the pod netns,
    // so a refusal later is moat's and not a broken topology.
    assert!(
        moat_table(&pod_path).is_none(),
        "a fresh namespace has a moat table"
    );
    let dest = SocketAddr::new(net.outside.into(), 8080);
    let got = in_netns(&pod_path, move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&dest, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    });
    assert_eq!(
        got.as_ref().map(|t| t.trim()).ok(),
        Some("hello"),
        "the outside server is not reachable from the pod namespace before moat: {got:?}"
    );
    let hits_before = net.hits(srv);

    // An engine's pin is joined only by a container an engine made (T10).
    let id = env.id("eg-cni");
    let mut b = env.engine_bundle("moat-it", &id, &["sleep", "300"]);
    b.join_namespace("network", pod_path.to_str().unwrap());
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        let (ok, table) = run_cmd(
            "ip",
            &[
                "netns", "exec", &pod.name, "nft", "list", "table", "inet", "moat",
            ],
        );
        assert!(
            ok,
            "no moat table in the pod namespace after create:\n{table}"
        );
        for want in [
            "chain output",
            "type filter hook output",
            "oif \"lo\" accept",
            "reject with tcp reset",
            "admin-prohibited",
        ] {
            assert!(table.contains(want), "ruleset lacks {want:?}:\n{table}");
        }
        assert!(
            !netns_pin(&leak).exists(),
            "moat pinned a namespace of its own for a container given one by path"
        );
        env.moat(&["start", &id]).assert_ok();
        env.wait_status(&id, "running", Duration::from_secs(10));
        let pid = init_pid(&env, &id);
        let ino = |p: &str| fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_eq!(
            ino(&format!("/proc/{pid}/ns/net")).unwrap(),
            ino(pod_path.to_str().unwrap()).unwrap(),
            "the container is not in the pod namespace"
        );
        assert_eq!(blocked(&env, &id).0, 0, "counter not zero before any probe");

        assert_connect_refused_fast(&env, &id, &net, srv, hits_before);
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    verify_gone(&leak);
    // The namespace is the pod's: moat neither deleted nor unpinned it,
    // but moat's table goes with the last moat container in it (T10).
    assert!(
        pod.exists(),
        "deleting the container removed the pod namespace {}",
        pod.name
    );
    assert!(
        moat_table(&pod_path).is_none(),
        "deleting the pod's last moat container left moat's rules in the pod namespace"
    );
    net.close();
    pod.close();
}

/// The host's `nft` and the directories of every library it loads (as
/// `ldd` resolves them, the ELF interpreter included): what a container
/// needs bind-mounted to run it.
fn nft_bind_sources() -> Vec<PathBuf> {
    let nft = PathBuf::from("/usr/sbin/nft");
    assert!(nft.is_file(), "{} is missing", nft.display());
    let ldd = must("ldd", &[nft.to_str().unwrap()]);
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            assert!(!line.contains("not found"), "ldd: {line}");
            continue;
        };
        let dir = Path::new(path).parent().unwrap().to_path_buf();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    assert!(
        dirs.iter()
            .any(|d| d.starts_with("/lib64") || d.starts_with("/lib")),
        "ldd found no system library directory for nft:\n{ldd}"
    );
    let mut v = vec![nft];
    v.extend(dirs);
    v
}

/// Test 11: Container root holding CAP_NET_ADMIN runs the real `nft` (the
/// host's binary and libraries, bind-mounted read-only): `nft list
/// ruleset` and `nft flush ruleset` both fail with EPERM from the kernel's
/// nfnetlink (the namespace belongs to the host's user namespace), and the
/// rules and the refusal are unchanged afterwards.
#[test]
fn nft_flush_ruleset_from_inside_fails_even_with_cap_net_admin() {
    let env = Env::new();
    let (pf, mut b) = net_admin_policy_and_sleeper(&env);
    // The root is read-only: mount points are made in the bundle's own
    // copy of the rootfs (new entries; the cached rootfs is untouched).
    let sources = nft_bind_sources();
    for src in &sources {
        let dest = b.rootfs().join(src.strip_prefix("/").unwrap());
        if src.is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::write(&dest, b"").unwrap();
        }
        b.add_mount(json!({
            "destination": src,
            "type": "bind",
            "source": src,
            "options": ["rbind", "ro"]
        }));
    }
    let id = env.id("eg-nft");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &["--policy", &pf], &b, &id);
        let pid = init_pid(&env, &id);
        let mut net = Net::new(pid, false);
        let srv = net.tcp_server(false, 8080, "hello\n");
        let table_before = moat_table(&net.container_ns).expect("moat table");

        // Each command: its exit code as TAG=, its output on one line as
        // TAG_OUT=.
        let run = |tag: &str, cmd: &str| {
            format!(
                "out=$({cmd} 2>&1); rc=$?; echo \"{tag}=$rc\"; \
                 echo \"{tag}_OUT=$(echo \"$out\" | tr '\\n' ' ')\"; "
            )
        };
        let script = format!(
            "grep CapEff /proc/self/status | sed 's/:[[:space:]]*/=/'; {}{}{}{}",
            run("VERSION", "nft --version"),
            run("LIST", "nft list ruleset"),
            run("FLUSH", "nft flush ruleset"),
            run("DELETE", "nft delete table inet moat"),
        );
        let out = exec_sh(&env, &id, &script);
        out.assert_ok();
        let got = kv(&out.stdout);
        let eff = u64::from_str_radix(got.get("CapEff").map(String::as_str).unwrap_or("0"), 16)
            .unwrap_or(0);
        assert_ne!(
            eff & CAP_NET_ADMIN,
            0,
            "the probing shell lacks CAP_NET_ADMIN; the test proves nothing:\n{out}"
        );
        let field = |k: &str| got.get(k).cloned().unwrap_or_default();
        assert!(
            field("VERSION") == "0" && field("VERSION_OUT").starts_with("nftables v"),
            "nft does not run in the container: fix the bind list {sources:?}\n{out}"
        );
        for tag in ["LIST", "FLUSH", "DELETE"] {
            let text = field(&format!("{tag}_OUT"));
            // 1 is nft's NFT_EXIT_FAILURE (the kernel said no); a netlink
            // socket that cannot be opened (seccomp) exits 3 and says
            // "Unable to initialize Netlink socket".
            assert_eq!(
                field(tag),
                "1",
                "{tag}: expected nft to fail with the kernel's EPERM:\n{out}"
            );
            assert!(
                text.contains("Operation not permitted") && !text.contains("Unable to initialize"),
                "{tag}: not a netlink EPERM:\n{out}"
            );
        }

        // From the host: the rules are all there, and still refuse.
        let table_after = moat_table(&net.container_ns).expect("moat table gone");
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.contains("packets"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&table_before), strip(&table_after), "rules changed");
        let arg = format!("--net=/proc/{pid}/ns/net");
        let listed = must("nsenter", &[&arg, "nft", "list", "table", "inet", "moat"]);
        assert!(
            listed.contains("chain output") && listed.contains("reject with tcp reset"),
            "{listed}"
        );
        assert_tcp_egress_refused_and_counted(&env, &id, &net, srv, 8080);
        close_and_delete(&env, net, &id);
    }
    verify_gone(&leak);
}

/// A container must never run under egress rules other than the ones its
/// own policy asks for: joining a network namespace whose `inet moat` table
/// was made for another allowlist (or by someone else) is refused, and the
/// refusal leaves nothing behind. No traffic is sent.
#[test]
fn joining_a_namespace_with_foreign_rules_is_refused() {
    let env = Env::new();
    let addrs = Addrs::next();
    let pod = PodNetns::new(addrs.n);
    let pod_path = pod.path();
    must(
        "ip",
        &[
            "netns", "exec", &pod.name, "nft", "add", "table", "inet", "moat",
        ],
    );
    // An engine's pin is joined only by a container an engine made (T10).
    let id = env.id("eg-foreign");
    let mut b = env.engine_bundle("moat-it", &id, &["sleep", "300"]);
    b.join_namespace("network", pod_path.to_str().unwrap());
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id])
            .assert_fails_with("different egress policy");
    }
    leak.verify();
    pod.close();
}

// ---------------------------------------------------------------------------
// Issue 18: metadata endpoints and DNS as a side channel
// ---------------------------------------------------------------------------

/// The metadata endpoint the tests give to their own outside namespace.
/// Traffic to it can only reach that namespace: the container's only
/// route to it is the test's veth.
const TEST_METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Puts [`TEST_METADATA`] on the outside end of `net` and routes it from
/// the container's namespace through the veth, then starts a TCP server
/// there on port 80.
fn metadata_server(net: &mut Net) -> usize {
    let cidr = format!("{TEST_METADATA}/32");
    must(
        "ip",
        &["-n", &net.name, "addr", "add", &cidr, "dev", OUTSIDE_IF],
    );
    let ns_arg = format!("--net={}", net.container_ns.display());
    must(
        "nsenter",
        &[&ns_arg, "ip", "route", "add", &cidr, "dev", INSIDE_IF],
    );
    let s = Server::tcp(
        &net.ns_path(),
        SocketAddr::new(TEST_METADATA.into(), 80),
        "metadata\n",
    );
    net.servers.push(s);
    net.servers.len() - 1
}

/// T18 (metadata): under `0.0.0.0/0` every metadata endpoint is refused
/// in the table before the wide accept; a connection to 169.254.169.254
/// (a test-made address on the test's own veth) is refused fast and
/// counted and never reaches the listener, while the wide entry still
/// reaches the test's other host. An entry naming the exact address
/// allows it.
#[test]
fn metadata_endpoints_are_refused_under_a_wide_allowlist() {
    let env = Env::new();
    let wide = policy_file(&env, "wide.toml", "[egress]\nallow = [\"0.0.0.0/0\"]\n");
    let exact = policy_file(
        &env,
        "exact.toml",
        "[egress]\nallow = [\"0.0.0.0/0\", \"169.254.169.254 tcp 80\"]\n",
    );
    let b_wide = env.bundle(&["sleep", "300"]);
    let b_exact = env.bundle(&["sleep", "300"]);
    let id_wide = env.id("eg-md");
    let id_exact = env.id("eg-md-exact");
    let leak_wide = env.leak_check(&id_wide);
    let leak_exact = env.leak_check(&id_exact);
    {
        let _g1 = start_with(&env, &["--policy", &wide], &b_wide, &id_wide);
        let _g2 = start_with(&env, &["--policy", &exact], &b_exact, &id_exact);
        let ns = PathBuf::from(format!("/proc/{}/ns/net", init_pid(&env, &id_wide)));
        let table = moat_table(&ns).expect("no moat table");
        let accept_all = table
            .find("ip daddr 0.0.0.0/0 accept")
            .unwrap_or_else(|| panic!("no wide accept:\n{table}"));
        for m in [
            "ip daddr 169.254.169.254 ",
            "ip daddr 169.254.170.2 ",
            "ip6 daddr fd00:ec2::254 ",
            "ip daddr 100.100.100.200 ",
        ] {
            let at = table
                .find(&format!(
                    "{m}meta l4proto tcp counter name \"blocked\" reject with tcp reset"
                ))
                .unwrap_or_else(|| panic!("no TCP refusal `{m}`:\n{table}"));
            assert!(
                at < accept_all,
                "{m} refused after the wide accept:\n{table}"
            );
            assert!(
                table.contains(&format!(
                    "{m}counter name \"blocked\" reject with icmpx admin-prohibited"
                )),
                "no refusal of other protocols `{m}`:\n{table}"
            );
        }

        let mut net = Net::new(init_pid(&env, &id_wide), false);
        let md = metadata_server(&mut net);
        let other = net.tcp_server(false, 8080, "other\n");
        let out = exec_sh(&env, &id_wide, &nc_probe("OK", net.outside, 8080));
        assert!(
            out.stdout.contains("other"),
            "the wide entry does not work:\n{out}"
        );
        assert_eq!(net.hits(other), 1);
        let before = blocked(&env, &id_wide).0;
        let start = Instant::now();
        let out = exec_sh(&env, &id_wide, &nc_probe("MD", TEST_METADATA, 80));
        let took = start.elapsed();
        assert_ne!(
            exit_of(&out, "MD"),
            "0",
            "metadata connect succeeded:\n{out}"
        );
        assert!(!out.stdout.contains("metadata"), "{out}");
        assert!(
            took < FAST,
            "refusal took {took:?} (a timeout, not a reset):\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(net.hits(md), 0, "the metadata listener got a connection");
        let after = blocked(&env, &id_wide).0;
        assert!(after > before, "not counted ({before} -> {after})");

        let mut net_exact = Net::new(init_pid(&env, &id_exact), false);
        let md_exact = metadata_server(&mut net_exact);
        let out = exec_sh(&env, &id_exact, &nc_probe("MD", TEST_METADATA, 80));
        assert!(
            out.stdout.contains("metadata"),
            "exact entry did not allow it:\n{out}"
        );
        assert_eq!(net_exact.hits(md_exact), 1);

        net.close();
        net_exact.close();
        env.moat(&["delete", "--force", &id_wide]).assert_ok();
        env.moat(&["delete", "--force", &id_exact]).assert_ok();
    }
    verify_gone(&leak_wide);
    verify_gone(&leak_exact);
}

/// T18 (DNS side channel): under `0.0.0.0/0` a DNS query to a resolver
/// the allowlist does not name exactly is refused and counted, and so is
/// one to a resolver on the container's loopback at 127.0.0.11 (where an
/// engine's embedded resolver sits; here a test responder in the
/// container's namespace); DNS over TLS (853) too. A container whose
/// allowlist names the loopback resolver exactly gets its answer.
#[test]
fn dns_leaves_only_to_an_exactly_allowlisted_resolver() {
    let env = Env::new();
    let wide = policy_file(&env, "wide.toml", "[egress]\nallow = [\"0.0.0.0/0\"]\n");
    let named = policy_file(
        &env,
        "named.toml",
        "[egress]\nallow = [\"0.0.0.0/0\", \"127.0.0.11 udp 53\"]\n",
    );
    let b_wide = env.bundle(&["sleep", "300"]);
    let b_named = env.bundle(&["sleep", "300"]);
    let id_wide = env.id("eg-dns-wide");
    let id_named = env.id("eg-dns-named");
    let leak_wide = env.leak_check(&id_wide);
    let leak_named = env.leak_check(&id_named);
    let engine = Ipv4Addr::new(127, 0, 0, 11);
    let lookup = |server: &dyn std::fmt::Display| {
        format!("timeout 10 nslookup moat.test {server} 2>&1; echo \"NS=$?\"")
    };
    {
        let _g1 = start_with(&env, &["--policy", &wide], &b_wide, &id_wide);
        let _g2 = start_with(&env, &["--policy", &named], &b_named, &id_named);
        let mut net = Net::new(init_pid(&env, &id_wide), false);
        let answer = Ipv4Addr::new(10, 231, net.x, 99);
        let outside_dns = net.dns_server(53, answer);
        let tls = net.tcp_server(false, 853, "tls\n");
        // The "engine's" resolver, inside the container's own namespace.
        let ns_wide = net.container_ns.clone();
        let loop_dns = Server::dns(&ns_wide, SocketAddr::new(engine.into(), 53), answer);

        let before = blocked(&env, &id_wide).0;
        let out = exec_sh(&env, &id_wide, &lookup(&net.outside));
        assert_ne!(
            exit_of(&out, "NS"),
            "0",
            "lookup through a wide entry worked:\n{out}"
        );
        let out = exec_sh(&env, &id_wide, &lookup(&engine));
        assert_ne!(
            exit_of(&out, "NS"),
            "0",
            "lookup on loopback worked:\n{out}"
        );
        assert!(!out.stdout.contains(&answer.to_string()), "{out}");
        let out = exec_sh(&env, &id_wide, &nc_probe("TLS", net.outside, 853));
        assert_ne!(exit_of(&out, "TLS"), "0", "DNS over TLS connected:\n{out}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(net.hits(outside_dns), 0, "the outside resolver got a query");
        assert_eq!(loop_dns.hits(), 0, "the loopback resolver got a query");
        assert_eq!(net.hits(tls), 0, "port 853 got a connection");
        let after = blocked(&env, &id_wide).0;
        assert!(after >= before + 3, "not counted ({before} -> {after})");
        drop(loop_dns);

        // Named exactly: allowed.
        let ns_named = PathBuf::from(format!("/proc/{}/ns/net", init_pid(&env, &id_named)));
        let loop_named = Server::dns(&ns_named, SocketAddr::new(engine.into(), 53), answer);
        let out = exec_sh(&env, &id_named, &lookup(&engine));
        assert_eq!(
            exit_of(&out, "NS"),
            "0",
            "named resolver lookup failed:\n{out}"
        );
        assert!(out.stdout.contains(&answer.to_string()), "{out}");
        assert!(loop_named.hits() >= 1);
        drop(loop_named);

        net.close();
        env.moat(&["delete", "--force", &id_wide]).assert_ok();
        env.moat(&["delete", "--force", &id_named]).assert_ok();
    }
    verify_gone(&leak_wide);
    verify_gone(&leak_named);
}

/// Issue 18 (visibility): `moat metrics` prints Prometheus text with the
/// container's blocked-packet count, the same number `moat egress` reads.
#[test]
fn metrics_print_blocked_counts_as_prometheus_text() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id = env.id("eg-metrics");
    let leak = env.leak_check(&id);
    {
        let _g = start_with(&env, &[], &b, &id);
        let mut net = Net::new(init_pid(&env, &id), false);
        let srv = net.tcp_server(false, 8080, "hello\n");
        let out = exec_sh(&env, &id, &nc_probe("NC", net.outside, 8080));
        assert_ne!(exit_of(&out, "NC"), "0", "{out}");
        assert_eq!(net.hits(srv), 0);
        let (packets, bytes) = blocked(&env, &id);
        assert!(packets > 0);
        let out = env.moat(&["metrics"]);
        out.assert_ok();
        assert!(
            out.stdout
                .contains("# TYPE moat_egress_blocked_packets_total counter"),
            "{out}"
        );
        let line =
            format!("moat_egress_blocked_packets_total{{id=\"{id}\",namespace=\"raw\"}} {packets}");
        assert!(out.stdout.lines().any(|l| l == line), "no `{line}`:\n{out}");
        let line =
            format!("moat_egress_blocked_bytes_total{{id=\"{id}\",namespace=\"raw\"}} {bytes}");
        assert!(out.stdout.lines().any(|l| l == line), "no `{line}`:\n{out}");
        net.close();
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    verify_gone(&leak);
}
