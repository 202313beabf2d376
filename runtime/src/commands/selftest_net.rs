//! The target of selftest's `egress_tcp_connect` probe: an address the
//! selftest itself makes, so the probe gives a verdict (blocked under moat,
//! allowed under runc) and never sends a packet anywhere else.
//!
//! A network namespace of its own (`ip netns add moat-selftest-<pid>`)
//! holds a TCP listener on port [`PORT`]; for each probe container a veth
//! pair links it to the container's own network namespace (moved in after
//! `create`, before `start`), a /30 from 10.216.0.0/16 that no host route or
//! address uses. Dropping [`EgressNet`] stops the listener and deletes the
//! namespace, and with it every veth end still in it.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The listener's port (inside the selftest's own namespace).
const PORT: u16 = 8080;

pub struct EgressNet {
    netns: String,
    /// The /30's first three octets and its base (last octet).
    prefix: [u8; 3],
    base: u8,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    pairs: AtomicU32,
}

impl EgressNet {
    pub fn new() -> Result<EgressNet> {
        let (prefix, base) = free_slash30()?;
        let netns = format!("moat-selftest-{}", std::process::id());
        ip(&["netns", "add", &netns])?;
        let mut net = EgressNet {
            netns,
            prefix,
            base,
            stop: Arc::new(AtomicBool::new(false)),
            listener: None,
            pairs: AtomicU32::new(0),
        };
        ip(&["-n", &net.netns, "link", "set", "lo", "up"])?;
        net.listener = Some(net.listen()?);
        Ok(net)
    }

    /// Where the probe connects: the namespace's end of the veth.
    pub fn target(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr(1), PORT)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, self.base + host)
    }

    /// A listener bound in the selftest's namespace, accepting (and
    /// closing) connections until the EgressNet is dropped.
    fn listen(&self) -> Result<JoinHandle<()>> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.netns))
            .with_context(|| format!("cannot open network namespace {}", self.netns))?;
        let stop = self.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
        let handle = std::thread::spawn(move || {
            // Only this thread enters the namespace; the listening socket
            // stays in it.
            let bound = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| anyhow!("setns: {e}"))
                .and_then(|()| {
                    TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT))
                        .map_err(|e| anyhow!("bind: {e}"))
                })
                .and_then(|l| {
                    l.set_nonblocking(true)
                        .map_err(|e| anyhow!("nonblocking: {e}"))?;
                    Ok(l)
                });
            let listener = match bound {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow!("the egress listener did not start"))??;
        Ok(handle)
    }

    /// Links the container whose init is `pid` to the namespace: a new
    /// veth pair, one end here with the target address, the other in the
    /// container's network namespace with the /30's other address.
    pub fn attach(&self, pid: i32) -> Result<()> {
        let n = self.pairs.fetch_add(1, Ordering::Relaxed);
        let (ours, theirs) = (
            format!("mst{}o{n}", std::process::id() % 100_000),
            format!("mst{}c{n}", std::process::id() % 100_000),
        );
        // The previous pair (if its container's namespace is still there)
        // would hold the same addresses.
        if n > 0 {
            let prev = format!("mst{}o{}", std::process::id() % 100_000, n - 1);
            let _ = ip(&["-n", &self.netns, "link", "del", &prev]);
        }
        ip(&[
            "link", "add", &ours, "type", "veth", "peer", "name", &theirs,
        ])?;
        let set_up = || -> Result<()> {
            ip(&["link", "set", &ours, "netns", &self.netns])?;
            let here = format!("{}/30", self.addr(1));
            ip(&["-n", &self.netns, "addr", "add", &here, "dev", &ours])?;
            ip(&["-n", &self.netns, "link", "set", &ours, "up"])?;
            ip(&["link", "set", &theirs, "netns", &pid.to_string()])?;
            let there = format!("{}/30", self.addr(2));
            in_netns(pid, &["addr", "add", &there, "dev", &theirs])?;
            in_netns(pid, &["link", "set", &theirs, "up"])
        };
        set_up().inspect_err(|_| {
            let _ = ip(&["link", "del", &ours]);
            let _ = ip(&["-n", &self.netns, "link", "del", &ours]);
        })
    }
}

impl Drop for EgressNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip ARGS` inside the network namespace of process `pid`.
fn in_netns(pid: i32, args: &[&str]) -> Result<()> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("ip")
        .args(args)
        .output()
        .context("cannot run nsenter (util-linux)")?;
    if !out.status.success() {
        bail!(
            "ip {} in the container's network namespace: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A /30 under 10.216.0.0/16 that no host route or address mentions.
fn free_slash30() -> Result<([u8; 3], u8)> {
    let seen = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let used =
        seen(&["-4", "route", "show", "table", "all"]) + &seen(&["-4", "-o", "addr", "show"]);
    let start = std::process::id() % 250;
    for i in 0..250 {
        let c = u8::try_from((start + i) % 250 + 1).unwrap_or(1);
        if !used.contains(&format!("10.216.{c}.")) {
            return Ok(([10, 216, c], 0));
        }
    }
    bail!("no free /30 in 10.216.0.0/16 for the egress probe")
}
