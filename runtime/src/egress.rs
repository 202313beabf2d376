//! Egress blocking: the pure part. Parses allowlist entries and renders the
//! nftables ruleset moat installs in a container's network namespace.
//!
//! Threat (T18 in docs/threat-model.md): a compromised container calls out
//! (exfiltration, command and control, lateral movement). Every new
//! outbound connection is refused unless an allowlist entry matches, while
//! loopback and replies to inbound connections keep working. Refused
//! connections fail fast in the application (TCP: a reset, so
//! ECONNREFUSED; UDP and ICMP: the send itself fails with EPERM, as the
//! packet is rejected on its way out), and are counted.
//!
//! The rules are data ([`rules`]) rendered two ways: as nft text
//! ([`ruleset`], what operators read in `nft list ruleset`, applied by
//! `nft -f` when moat adds its table to a namespace it joins) and as an
//! nfnetlink batch (`crate::nft`, sent by moat itself when it creates a
//! container's namespace: no exec of `nft` on the hot path). A test in
//! `crate::netns` checks both give the same table in the kernel.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::dns::names::NameRule;

use serde::{Deserialize, Serialize};

/// Name of moat's nftables table (family inet: IPv4 and IPv6).
pub const TABLE: &str = "moat";
/// Priority of moat's output chain: -150 (nft's `mangle`), after
/// conntrack (-200) and before destination NAT (-100), so the rules see
/// the address the workload asked for, not the one an engine rewrote it
/// to (docker DNATs `127.0.0.11:53` to its resolver's real port).
pub const CHAIN_PRIORITY: i32 = -150;
/// Name of the counter of blocked connection attempts: packets that
/// reached a refusing rule. Replies are accepted before any refusal, so
/// each is a new connection attempt: a TCP SYN (answered with a reset, so
/// one per `connect`), a UDP datagram or another protocol's packet (each
/// datagram to a refused address counts, as nothing is established).
pub const BLOCKED_COUNTER: &str = "blocked";
/// Name of the table's limit object that bounds the refused connections
/// sent to [`REFUSED_LOG_GROUP`]: one per table, so per network
/// namespace (a pod's containers share it).
pub const REFUSED_LOG_LIMIT: &str = "refused_log";
/// Refused connections logged per second, after a burst of
/// [`REFUSED_LOG_BURST`]: the kernel drops the rest before they cost the
/// listener anything (they are still refused and counted).
pub const REFUSED_LOG_RATE: u64 = 10;
pub const REFUSED_LOG_BURST: u32 = 20;
/// The NFLOG group refused connections are logged to. NFLOG groups are
/// per network namespace, so one number serves every container; moat's
/// resolver listens on it in each namespace it serves
/// (`crate::nflog`).
pub const REFUSED_LOG_GROUP: u16 = 7707;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

/// One allowlist entry: `CIDR [tcp|udp|icmp] [PORTS]`, e.g.
/// `10.96.0.10/32 udp 53`, `203.0.113.0/24 tcp 443,8443`,
/// `2001:db8::/32 tcp 8000-8100`, `192.0.2.7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub addr: IpAddr,
    pub prefix: u8,
    pub protocol: Option<Protocol>,
    /// Port ranges (inclusive); empty means every port.
    pub ports: Vec<(u16, u16)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("egress allow entry {entry:?}: {why}")]
pub struct ParseError {
    pub entry: String,
    pub why: String,
}

impl FromStr for AllowRule {
    type Err = ParseError;

    fn from_str(entry: &str) -> Result<Self, ParseError> {
        let err = |why: &str| ParseError {
            entry: entry.to_string(),
            why: why.to_string(),
        };
        let mut parts = entry.split_whitespace();
        let cidr = parts.next().ok_or_else(|| err("empty entry"))?;
        let (addr_text, prefix_text) = match cidr.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (cidr, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| err("not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| err("bad prefix length"))?,
            None => max,
        };
        if !host_bits_clear(addr, prefix) {
            return Err(err("address has bits set beyond the prefix length"));
        }
        let (protocol, ports) = parse_service(&mut parts, &err, "CIDR")?;
        Ok(AllowRule {
            addr,
            prefix,
            protocol,
            ports,
        })
    }
}

/// A protocol (none: any) and port ranges (none: every port).
pub(crate) type Service = (Option<Protocol>, Vec<(u16, u16)>);

/// The `[tcp|udp|icmp] [PORTS]` that follows an entry's destination
/// (`what`, for the error message); nothing may follow it.
pub(crate) fn parse_service<'a>(
    parts: &mut impl Iterator<Item = &'a str>,
    err: &dyn Fn(&str) -> ParseError,
    what: &str,
) -> Result<Service, ParseError> {
    let protocol = match parts.next() {
        None => None,
        Some("tcp") => Some(Protocol::Tcp),
        Some("udp") => Some(Protocol::Udp),
        Some("icmp") => Some(Protocol::Icmp),
        Some(_) => return Err(err("protocol must be tcp, udp or icmp")),
    };
    let ports = match parts.next() {
        None => Vec::new(),
        Some(_) if protocol == Some(Protocol::Icmp) => {
            return Err(err("icmp has no ports"));
        }
        Some(list) => list
            .split(',')
            .map(|p| parse_port_range(p).ok_or_else(|| err("bad port or port range")))
            .collect::<Result<_, _>>()?,
    };
    if !ports.is_empty() && protocol.is_none() {
        return Err(err("ports need a protocol"));
    }
    if parts.next().is_some() {
        return Err(err(&format!(
            "too many fields (expected: {what} [tcp|udp|icmp] [PORTS])"
        )));
    }
    Ok((protocol, ports))
}

/// Does protocol `p` with `ports` allow no more than `op` with `oports`?
pub(crate) fn service_within(
    p: Option<Protocol>,
    ports: &[(u16, u16)],
    op: Option<Protocol>,
    oports: &[(u16, u16)],
) -> bool {
    let proto_inside = match (op, p) {
        (None, _) => true,
        (Some(o), Some(s)) => o == s,
        (Some(_), None) => false,
    };
    let ports_inside = oports.is_empty()
        || (!ports.is_empty()
            && ports
                .iter()
                .all(|(a, b)| oports.iter().any(|(c, d)| c <= a && b <= d)));
    proto_inside && ports_inside
}

fn parse_port_range(p: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match p.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let v = p.parse().ok()?;
            (v, v)
        }
    };
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

fn host_bits_clear(addr: IpAddr, prefix: u8) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let v = u32::from(a);
            prefix == 32 || v & (u32::MAX >> prefix) == 0
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            prefix == 128 || v & (u128::MAX >> prefix) == 0
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)?;
        if let Some(p) = self.protocol {
            write!(
                f,
                " {}",
                match p {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Icmp => "icmp",
                }
            )?;
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self
                .ports
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            write!(f, " {}", ports.join(","))?;
        }
        Ok(())
    }
}

impl AllowRule {
    /// Is every connection this rule allows also allowed by `other`?
    /// (Used to tell whether an annotation tightens the operator's list.)
    pub fn within(&self, other: &AllowRule) -> bool {
        let same_family = self.addr.is_ipv4() == other.addr.is_ipv4();
        let net_inside = same_family
            && self.prefix >= other.prefix
            && host_bits_clear_masked(self.addr, other.addr, other.prefix);
        net_inside && service_within(self.protocol, &self.ports, other.protocol, &other.ports)
    }

    /// The rules (one per port range) that accept this entry's traffic.
    fn accepting_rules(&self) -> Vec<Rule> {
        let daddr = Match::Daddr {
            addr: self.addr,
            prefix: self.prefix,
        };
        accepting(daddr, self.addr.is_ipv6(), self.protocol, &self.ports)
    }
}

/// The rules accepting traffic to `dest` (of family `v6`) with a protocol
/// (none: any) and port ranges (none: every port): one per port range.
fn accepting(dest: Match, v6: bool, protocol: Option<Protocol>, ports: &[(u16, u16)]) -> Vec<Rule> {
    let accept = |matches: Vec<Match>| Rule {
        matches,
        action: Action::Accept,
    };
    let proto = match protocol {
        None => return vec![accept(vec![dest])],
        Some(Protocol::Icmp) if v6 => IPPROTO_ICMPV6,
        Some(Protocol::Icmp) => IPPROTO_ICMP,
        Some(Protocol::Tcp) => IPPROTO_TCP,
        Some(Protocol::Udp) => IPPROTO_UDP,
    };
    if ports.is_empty() {
        return vec![accept(vec![dest, Match::L4Proto(proto)])];
    }
    ports
        .iter()
        .map(|&(from, to)| accept(vec![dest.clone(), Match::Dport { proto, from, to }]))
        .collect()
}

fn host_bits_clear_masked(inner: IpAddr, outer: IpAddr, prefix: u8) -> bool {
    match (inner, outer) {
        (IpAddr::V4(i), IpAddr::V4(o)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(i) & mask == u32::from(o) & mask
        }
        (IpAddr::V6(i), IpAddr::V6(o)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(i) & mask == u128::from(o) & mask
        }
        _ => false,
    }
}

/// Parses a list of entries (policy file or a comma/semicolon separated
/// annotation; within an annotation, entries are separated by `;`).
pub fn parse_list<S: AsRef<str>>(entries: &[S]) -> Result<Vec<AllowRule>, ParseError> {
    entries.iter().map(|e| e.as_ref().trim().parse()).collect()
}

/// Engine resolvers on loopback: docker's embedded resolver listens on
/// 127.0.0.11 inside the container's own network namespace (port 53 is
/// DNAT'd to a random port of it, listed in the container's
/// /proc/net/{tcp,udp}) and forwards any name upstream from the host: DNS
/// as an exfiltration channel (T18). Refused on every port, loopback or
/// not, like the metadata endpoints: only an entry naming the exact address
/// (`127.0.0.11 udp 53`) allows it.
pub const ENGINE_RESOLVERS: [IpAddr; 1] = [IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11))];

/// Cloud metadata endpoints (AWS/GCP/Azure/OpenStack `169.254.169.254`,
/// ECS task metadata `169.254.170.2`, AWS IPv6 `fd00:ec2::254`, Alibaba
/// `100.100.100.200`). They hand out instance credentials, so a wide
/// allowlist entry (`0.0.0.0/0`) never covers them: only an entry naming
/// the exact address allows one. The policy's `egress.metadata` adds more.
pub const METADATA_ENDPOINTS: [IpAddr; 4] = [
    IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V6(std::net::Ipv6Addr::new(
        0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254,
    )),
    IpAddr::V4(std::net::Ipv4Addr::new(100, 100, 100, 200)),
];

/// Ports DNS travels on: 53 (UDP and TCP) and 853 (DNS over TLS, and DNS
/// over QUIC on UDP). With egress on, DNS leaves only to a resolver the
/// allowlist names by its exact address: a resolver reachable by a wide
/// entry, or an engine's embedded resolver on loopback (docker's
/// `127.0.0.11`, which forwards any name upstream from the host), would
/// carry data out in the names a workload makes up.
pub const DNS_PORTS: [u16; 2] = [53, 853];

/// What moat enforces in one network namespace: the allowlist and the
/// endpoints no wide entry covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Egress {
    pub allow: Vec<AllowRule>,
    /// Addresses refused on every port even under a wider entry (and
    /// before loopback is accepted): the built-in [`METADATA_ENDPOINTS`],
    /// [`ENGINE_RESOLVERS`] and the policy's additions.
    pub metadata: Vec<IpAddr>,
    /// Name entries (`pypi.org tcp 443`): allowed to the addresses moat's
    /// resolver answered for them (see `crate::resolver`). With any, the
    /// container's DNS goes to moat's resolver.
    pub names: Vec<NameRule>,
    /// Where moat's resolver forwards the allowed names (policy
    /// `egress.resolvers`).
    pub resolvers: Vec<SocketAddr>,
    /// Bounds (seconds) of the time an answered address stays allowed:
    /// the record's TTL, clamped.
    pub ttl_min: u32,
    pub ttl_max: u32,
    /// Addresses that are not globally reachable a name may still be
    /// answered with (policy `egress.private_answers`; see
    /// `crate::dns::answers`).
    pub private_answers: Vec<crate::dns::answers::PrivateAnswer>,
    /// Refused connections of a container without name entries are
    /// events too (policy `egress.connection_events`): it is registered
    /// with moat's resolver, which holds the NFLOG listener.
    pub connection_events: bool,
    /// The engine's embedded resolver serves this container (docker's
    /// `127.0.0.11` on a user-defined network; see
    /// `crate::engine_names::uses_embedded_resolver`): its DNS goes to
    /// moat's resolver even without name entries, which answers the
    /// network's container names from the engine's record and refuses
    /// every other name (nothing is forwarded). Not in the fingerprint:
    /// a fact about the namespace (containers sharing one share its
    /// resolv.conf), not a policy; the redirect widens nothing.
    pub engine_dns: bool,
    /// At most this many tracked new flows in the namespace (policy
    /// `egress.max_tracked_connections`).
    pub max_tracked: u32,
}

impl Egress {
    /// Does moat's resolver answer the container's DNS (name entries, or
    /// the engine's container names)? Then every port-53 query is
    /// redirected to it.
    pub fn redirects_dns(&self) -> bool {
        !self.names.is_empty() || self.engine_dns
    }

    /// The egress plan for a policy's `[egress]` section.
    pub fn from_policy(policy: &crate::policy::EgressPolicy) -> Result<Egress, ParseError> {
        let (allow, names) = crate::dns::names::split_entries(&policy.allow)?;
        let mut egress = Egress::from(allow);
        egress.resolvers = policy
            .resolvers
            .iter()
            .map(|r| parse_resolver(r))
            .collect::<Result<_, _>>()?;
        if let Some(name) = names.first() {
            if egress.resolvers.is_empty() {
                return Err(ParseError {
                    entry: name.pattern.to_string(),
                    why: "a name entry needs the upstream resolvers moat's resolver forwards it to (policy egress.resolvers, e.g. [\"10.96.0.10:53\"])".into(),
                });
            }
        }
        if policy.name_ttl_min > policy.name_ttl_max || policy.name_ttl_max == 0 {
            return Err(ParseError {
                entry: format!("{}..{}", policy.name_ttl_min, policy.name_ttl_max),
                why: "egress.name_ttl_min must not exceed egress.name_ttl_max, which must be at least 1".into(),
            });
        }
        egress.names = names;
        egress.private_answers = policy
            .private_answers
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        egress.ttl_min = policy.name_ttl_min;
        egress.ttl_max = policy.name_ttl_max;
        egress.connection_events = policy.connection_events;
        if policy.max_tracked_connections == 0 {
            return Err(ParseError {
                entry: "0".into(),
                why: "egress.max_tracked_connections must be at least 1".into(),
            });
        }
        egress.max_tracked = policy.max_tracked_connections;
        for m in &policy.metadata {
            let addr: IpAddr = m.trim().parse().map_err(|_| ParseError {
                entry: m.clone(),
                why: "egress.metadata entries are single IPv4 or IPv6 addresses".into(),
            })?;
            if !egress.metadata.contains(&addr) {
                egress.metadata.push(addr);
            }
        }
        Ok(egress)
    }
}

/// An upstream resolver: `ADDRESS` or `ADDRESS:PORT` (`[V6]:PORT`), port 53
/// by default.
pub fn parse_resolver(text: &str) -> Result<SocketAddr, ParseError> {
    let text = text.trim();
    let addr = text
        .parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|a| SocketAddr::new(a, 53)))
        .map_err(|_| ParseError {
            entry: text.to_string(),
            why: "egress.resolvers entries are ADDRESS or ADDRESS:PORT".into(),
        })?;
    if can_be_the_containers_own(addr.ip()) {
        return Err(ParseError {
            entry: text.to_string(),
            why: "an upstream resolver may not be a loopback, link-local, unspecified or multicast address: the resolver forwards from inside the container's network namespace, where the container can hold such an address and answer allowed names with addresses of its choosing (T18)".into(),
        });
    }
    Ok(addr)
}

/// Could a container hold `ip` in its own network namespace (and so
/// answer as the upstream resolver, red-team pass 4 F2)? Loopback is every
/// namespace's own; link-local and unspecified never name a resolver
/// elsewhere; multicast is no resolver.
fn can_be_the_containers_own(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_multicast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| can_be_the_containers_own(IpAddr::V4(v4)))
        }
    }
}

impl From<Vec<AllowRule>> for Egress {
    /// The allowlist with the built-in metadata endpoints.
    fn from(allow: Vec<AllowRule>) -> Egress {
        Egress {
            allow,
            metadata: METADATA_ENDPOINTS
                .iter()
                .chain(ENGINE_RESOLVERS.iter())
                .copied()
                .collect(),
            names: Vec::new(),
            resolvers: Vec::new(),
            ttl_min: DEFAULT_TTL_MIN,
            ttl_max: DEFAULT_TTL_MAX,
            private_answers: Vec::new(),
            connection_events: false,
            engine_dns: false,
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

/// `egress.max_tracked_connections` by default: conntrack entries (about
/// 256 bytes of slab each, charged to no memory cgroup) a container's
/// namespace may hold for its new flows: 1 MiB.
pub const DEFAULT_MAX_TRACKED: u32 = 4096;

/// Default bounds of an answered address's life in a name set (seconds):
/// at least long enough for the connection that follows the lookup, at
/// most an hour, so an address a name no longer has is not allowed for
/// days (long TTLs, DNS rebinding).
pub const DEFAULT_TTL_MIN: u32 = 5;
pub const DEFAULT_TTL_MAX: u32 = 3600;

/// Mark on the packets of moat's resolver (its upstream queries): they
/// leave the container's namespace unredirected and unrefused. Setting a
/// socket mark needs CAP_NET_ADMIN over the namespace's owner, the host's
/// user namespace: container root cannot forge it.
pub const RESOLVER_MARK: u32 = 0x6d6f_6174;
/// Priority of moat's DNS redirect chain (type nat, hook output): before
/// an engine's DNAT (-100, docker's 127.0.0.11 rule), so the first NAT
/// binding a query gets is moat's.
pub const DNS_CHAIN_PRIORITY: i32 = -110;
/// The port moat's resolver listens on in the container's namespace
/// (127.0.0.1 and ::1): where the redirect sends every DNS query.
pub const RESOLVER_PORT: u16 = 53;

/// One nftables set of answered addresses: name entry `rule`'s IPv4 or
/// IPv6 addresses, each with a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSet {
    pub name: String,
    pub v6: bool,
}

/// The set of name entry number `rule`.
pub fn name_set(rule: usize, v6: bool) -> NameSet {
    NameSet {
        name: format!("name{rule}_{}", if v6 { "v6" } else { "v4" }),
        v6,
    }
}

/// Everything moat's table holds: its fingerprint, the name sets, the
/// output (filter) chain's rules and the DNS redirect (nat) chain's
/// rules (empty without name entries: no chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub fingerprint: String,
    pub sets: Vec<NameSet>,
    pub output: Vec<Rule>,
    pub dns: Vec<Rule>,
    /// The raw-priority chains that keep loopback out of conntrack
    /// (output and prerouting hooks).
    pub notrack_out: Vec<Rule>,
    pub notrack_in: Vec<Rule>,
}

/// Names and priority of the notrack chains: raw (-300), before
/// conntrack (-200) looks at a packet.
pub const NOTRACK_OUT_CHAIN: &str = "notrack_out";
pub const NOTRACK_IN_CHAIN: &str = "notrack_in";
pub const NOTRACK_PRIORITY: i32 = -300;

/// Loopback traffic needs no conntrack for moat's rules (loopback is
/// accepted before anything tracked is asked) and is what lets a
/// container make conntrack entries fastest (R8-4: 262 140 entries, 64
/// MiB of unaccounted slab, from UDP to its own 127.0.0.1). Kept tracked:
/// DNS (port 53 either way: moat's redirect to its resolver is NAT) and
/// the engine's embedded resolver 127.0.0.11 (docker's DNAT to a random
/// port and SNAT back); those flows stay under the namespace's cap.
pub fn notrack_rules(inbound: bool) -> Vec<Rule> {
    let ret = |m: Match| Rule {
        matches: vec![m],
        action: Action::Return,
    };
    let mut out = Vec::new();
    for addr in ENGINE_RESOLVERS {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        out.push(ret(Match::Daddr { addr, prefix }));
        out.push(ret(Match::Saddr { addr, prefix }));
    }
    for proto in [IPPROTO_UDP, IPPROTO_TCP] {
        out.push(ret(Match::Dport {
            proto,
            from: 53,
            to: 53,
        }));
        out.push(ret(Match::Sport { proto, port: 53 }));
    }
    out.push(Rule {
        matches: vec![if inbound {
            Match::IifLoopback
        } else {
            Match::OifLoopback
        }],
        action: Action::Notrack,
    });
    out
}

/// The table for an egress plan.
pub fn table(egress: &Egress) -> Table {
    Table {
        fingerprint: fingerprint(egress),
        sets: (0..egress.names.len())
            .flat_map(|i| [name_set(i, false), name_set(i, true)])
            .collect(),
        output: rules(egress),
        dns: dns_rules(egress),
        notrack_out: notrack_rules(false),
        notrack_in: notrack_rules(true),
    }
}

/// The DNS redirect chain: the resolver's own packets pass; every other
/// DNS query (port 53, UDP and TCP, to any address) goes to moat's
/// resolver in the namespace. Empty when moat's resolver does not answer
/// the namespace's DNS (no name entries, no engine resolver).
pub fn dns_rules(egress: &Egress) -> Vec<Rule> {
    if !egress.redirects_dns() {
        return Vec::new();
    }
    let mut out = vec![Rule {
        matches: vec![Match::Mark(RESOLVER_MARK)],
        action: Action::Return,
    }];
    for proto in [IPPROTO_UDP, IPPROTO_TCP] {
        out.push(Rule {
            matches: vec![Match::Dport {
                proto,
                from: 53,
                to: 53,
            }],
            action: Action::Redirect,
        });
    }
    out
}

impl NameRule {
    /// The rules accepting this entry's traffic to the addresses in its
    /// sets (entry number `index`).
    fn accepting_rules(&self, index: usize) -> Vec<Rule> {
        [false, true]
            .into_iter()
            .flat_map(|v6| {
                let set = Match::DaddrInSet {
                    set: name_set(index, v6).name,
                    v6,
                };
                accepting(set, v6, self.protocol, &self.ports)
            })
            .collect()
    }
}

impl AllowRule {
    /// Does the entry name one address (a /32 or /128)?
    pub fn is_exact(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// Does the entry let through traffic that only an exact entry may
    /// (to a metadata endpoint, or DNS)? Such entries are placed before
    /// those refusals; wide ones after.
    fn passes_refusals(&self, metadata: &[IpAddr]) -> bool {
        self.is_exact() && (metadata.contains(&self.addr) || self.covers_dns())
    }

    fn covers_dns(&self) -> bool {
        self.protocol != Some(Protocol::Icmp)
            && (self.ports.is_empty()
                || DNS_PORTS
                    .iter()
                    .any(|p| self.ports.iter().any(|(a, b)| a <= p && p <= b)))
    }
}

/// Is every connection `wanted` (an annotation's list) allows also allowed
/// by `current` (the operator's)? An entry must lie within an operator
/// entry; one that reaches a metadata endpoint or a resolver (placed
/// before those refusals) must lie within an operator entry naming that
/// same exact address, since a wide operator entry does not reach them.
pub fn narrows(wanted: &[AllowRule], current: &[AllowRule], metadata: &[IpAddr]) -> bool {
    wanted.iter().all(|w| {
        current.iter().any(|c| {
            w.within(c) && (!w.passes_refusals(metadata) || (c.is_exact() && c.addr == w.addr))
        })
    })
}

/// A fingerprint of an allowlist, stored in the table as the name of an
/// (unused) counter, so a container joining a network namespace can tell
/// whether the rules there are the ones its own policy asks for. (nft 1.0.6
/// accepts table comments but does not list them.)
pub fn fingerprint(egress: &Egress) -> String {
    let mut entries: Vec<String> = egress.allow.iter().map(|r| r.to_string()).collect();
    // Refused endpoints and the rule layout are part of what the table
    // enforces (v2: metadata and DNS refusals, chain before NAT).
    entries.extend(egress.metadata.iter().map(|m| format!("metadata {m}")));
    // Name entries keep their order: it numbers their sets.
    for (i, n) in egress.names.iter().enumerate() {
        entries.push(format!(
            "name {i} {} {:?} {:?}",
            n.pattern, n.protocol, n.ports
        ));
    }
    if !egress.names.is_empty() {
        entries.push(format!(
            "resolver ttl {}..{} upstream {:?}",
            egress.ttl_min, egress.ttl_max, egress.resolvers
        ));
    }
    // Only when set: fingerprints of tables made before the key existed
    // stay valid.
    for p in &egress.private_answers {
        entries.push(format!("private answer {p}"));
    }
    entries.push(format!("conntrack cap {}", egress.max_tracked));
    entries.push("layout v3 notrack lo".into());
    entries.sort();
    entries.dedup();
    // FNV-1a 64: a fingerprint, not a secret.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in entries.join(";").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("policy_{h:016x}")
}

/// The fingerprint in `nft list table` output, if any.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "counter" && w[1].starts_with("policy_"))
        .map(|w| w[1].to_string())
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// IPv6 neighbour discovery and MLD messages (ICMPv6 types) accepted on
/// the link: conntrack does not track them, and without them no IPv6 peer
/// on the link (allowed destination or inbound client) is reachable.
pub const LINK_ICMPV6_TYPES: [(u8, &str); 4] = [
    (133, "nd-router-solicit"),
    (135, "nd-neighbor-solicit"),
    (136, "nd-neighbor-advert"),
    (143, "mld2-listener-report"),
];

/// One condition of a rule in moat's output chain. Both renderings (nft
/// text for `nft -f`, netlink for the kernel directly; see
/// `crate::nft`) are made from these, so they cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The packet leaves through the loopback device (ifindex 1 in every
    /// network namespace).
    OifLoopback,
    /// The packet came in through the loopback device.
    IifLoopback,
    /// The source address is inside `addr/prefix` (implies the family).
    Saddr { addr: IpAddr, prefix: u8 },
    /// TCP or UDP (`proto`) source port.
    Sport { proto: u8, port: u16 },
    /// conntrack says new (the first packets of a flow).
    CtNew,
    /// More than this many entries in the rule's conntrack count (nft
    /// `ct count over N`, connlimit without a key: the flows that reached
    /// the rule, the dead ones dropped as they are found).
    CtCountOver(u32),
    /// conntrack says established or related (replies, ICMP errors).
    CtEstablishedRelated,
    /// An ICMPv6 message of this type.
    Icmpv6Type(u8),
    /// The destination address is inside `addr/prefix` (implies the family).
    Daddr { addr: IpAddr, prefix: u8 },
    /// The transport protocol.
    L4Proto(u8),
    /// TCP or UDP (`proto`) destination port within `from..=to` (implies
    /// the protocol).
    Dport { proto: u8, from: u16, to: u16 },
    /// The packet's mark (set by a socket's SO_MARK).
    Mark(u32),
    /// The destination address is in this set of the table (IPv4 or IPv6).
    DaddrInSet { set: String, v6: bool },
}

/// What a rule does with a packet that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// Count in the `blocked` counter and answer with a TCP reset.
    CountAndResetTcp,
    /// Count in the `blocked` counter and answer with ICMP(v6)
    /// administratively prohibited.
    CountAndRejectProhibited,
    /// Leave this chain (the DNS redirect chain: no NAT).
    Return,
    /// Redirect to the namespace's own loopback, same port (DNS to moat's
    /// resolver).
    Redirect,
    /// Send the packet's headers to [`REFUSED_LOG_GROUP`] within the
    /// table's [`REFUSED_LOG_LIMIT`], and go on (no verdict): each
    /// refusing rule is preceded by one of these with its matches. A
    /// limit in the refusing rule itself would end that rule for packets
    /// over the limit, which would then not be refused there.
    LogRefused,
    /// Do not track this packet (raw-priority chains).
    Notrack,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
}

/// The rules of moat's output chain, in order: replies and link ICMPv6
/// accepted; entries naming one exact address that reach a metadata
/// endpoint or DNS; every other connection to a metadata endpoint, and
/// every other DNS query (loopback included: an engine's embedded
/// resolver lives there), refused and counted; loopback accepted; the
/// rest of the allowlist; everything else refused fast (a reset for TCP,
/// admin-prohibited for the rest) and counted.
pub fn rules(egress: &Egress) -> Vec<Rule> {
    let accept = |m: Match| Rule {
        matches: vec![m],
        action: Action::Accept,
    };
    // A refusal: its log rule, then the refusing rule.
    let refuse = |mut matches: Vec<Match>, proto: u8| {
        let action = if proto == IPPROTO_TCP {
            Action::CountAndResetTcp
        } else {
            Action::CountAndRejectProhibited
        };
        if proto == IPPROTO_TCP && !matches.iter().any(|m| matches!(m, Match::Dport { .. })) {
            matches.push(Match::L4Proto(IPPROTO_TCP));
        }
        [
            Rule {
                matches: matches.clone(),
                action: Action::LogRefused,
            },
            Rule { matches, action },
        ]
    };
    let names = !egress.names.is_empty();
    let redirect = egress.redirects_dns();
    let mut out = vec![accept(Match::CtEstablishedRelated)];
    // The namespace's cap on tracked flows (R8-4): every new one, before
    // anything accepts it (loopback other than DNS is untracked).
    out.push(Rule {
        matches: vec![Match::CtNew, Match::CtCountOver(egress.max_tracked)],
        action: Action::CountAndRejectProhibited,
    });
    out.extend(
        LINK_ICMPV6_TYPES
            .iter()
            .map(|(t, _)| accept(Match::Icmpv6Type(*t))),
    );
    if names {
        // moat's resolver forwarding to its upstreams.
        out.push(accept(Match::Mark(RESOLVER_MARK)));
    }
    let (early, late): (Vec<&AllowRule>, Vec<&AllowRule>) = egress
        .allow
        .iter()
        .partition(|r| r.passes_refusals(&egress.metadata));
    out.extend(early.into_iter().flat_map(AllowRule::accepting_rules));
    if redirect {
        // Every port-53 query, to any address: the DNS chain (after this
        // one, before an engine's NAT) redirects it to moat's resolver.
        for proto in [IPPROTO_UDP, IPPROTO_TCP] {
            out.push(accept(Match::Dport {
                proto,
                from: 53,
                to: 53,
            }));
        }
    }
    for m in &egress.metadata {
        let prefix = if m.is_ipv4() { 32 } else { 128 };
        let daddr = Match::Daddr { addr: *m, prefix };
        out.extend(refuse(vec![daddr.clone()], IPPROTO_TCP));
        out.extend(refuse(vec![daddr], 0));
    }
    for port in DNS_PORTS.into_iter().filter(|p| !redirect || *p != 53) {
        for proto in [IPPROTO_UDP, IPPROTO_TCP] {
            let dport = Match::Dport {
                proto,
                from: port,
                to: port,
            };
            out.extend(refuse(vec![dport], proto));
        }
    }
    out.push(accept(Match::OifLoopback));
    out.extend(late.into_iter().flat_map(AllowRule::accepting_rules));
    // After the metadata refusals: a name answered with a metadata
    // endpoint does not reach it.
    for (i, n) in egress.names.iter().enumerate() {
        out.extend(n.accepting_rules(i));
    }
    out.extend(refuse(Vec::new(), IPPROTO_TCP));
    out.extend(refuse(Vec::new(), 0));
    out
}

fn proto_name(proto: u8) -> String {
    match proto {
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMPV6 => "ipv6-icmp".into(),
        other => other.to_string(),
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::OifLoopback => write!(f, "oif \"lo\""),
            Match::IifLoopback => write!(f, "iif \"lo\""),
            Match::Saddr { addr, prefix } => {
                let family = if addr.is_ipv4() { "ip" } else { "ip6" };
                write!(f, "{family} saddr {addr}/{prefix}")
            }
            Match::Sport { proto, port } => write!(f, "{} sport {port}", proto_name(*proto)),
            Match::CtNew => write!(f, "ct state new"),
            Match::CtCountOver(n) => write!(f, "ct count over {n}"),
            Match::CtEstablishedRelated => write!(f, "ct state established,related"),
            Match::Icmpv6Type(t) => match LINK_ICMPV6_TYPES.iter().find(|(n, _)| n == t) {
                Some((_, name)) => write!(f, "icmpv6 type {name}"),
                None => write!(f, "icmpv6 type {t}"),
            },
            Match::Daddr { addr, prefix } => {
                let family = if addr.is_ipv4() { "ip" } else { "ip6" };
                write!(f, "{family} daddr {addr}/{prefix}")
            }
            Match::L4Proto(p) => write!(f, "meta l4proto {}", proto_name(*p)),
            Match::Mark(m) => write!(f, "meta mark {m:#010x}"),
            Match::DaddrInSet { set, v6 } => {
                write!(f, "{} daddr @{set}", if *v6 { "ip6" } else { "ip" })
            }
            Match::Dport { proto, from, to } => {
                write!(f, "{} dport {from}", proto_name(*proto))?;
                if to != from {
                    write!(f, "-{to}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        match self.action {
            Action::Accept => write!(f, "accept"),
            Action::CountAndResetTcp => {
                write!(f, "counter name {BLOCKED_COUNTER} reject with tcp reset")
            }
            Action::CountAndRejectProhibited => write!(
                f,
                "counter name {BLOCKED_COUNTER} reject with icmpx type admin-prohibited"
            ),
            Action::Return => write!(f, "return"),
            Action::Redirect => write!(f, "redirect"),
            Action::Notrack => write!(f, "notrack"),
            Action::LogRefused => write!(
                f,
                "limit name \"{REFUSED_LOG_LIMIT}\" log group {REFUSED_LOG_GROUP}"
            ),
        }
    }
}

/// The ruleset for one network namespace as `nft -f` input. Idempotent to
/// apply: it creates the table, flushes it, and fills it, in one nft
/// transaction.
pub fn ruleset(egress: &Egress) -> String {
    let t = table(egress);
    let mut out = String::new();
    out.push_str(&format!("table inet {TABLE} {{}}\n"));
    out.push_str(&format!("flush table inet {TABLE}\n"));
    out.push_str(&format!("table inet {TABLE} {{\n"));
    out.push_str(&format!("\tcounter {} {{}}\n", t.fingerprint));
    out.push_str(&format!("\tcounter {BLOCKED_COUNTER} {{}}\n"));
    out.push_str(&format!(
        "\tlimit {REFUSED_LOG_LIMIT} {{ rate {REFUSED_LOG_RATE}/second burst {REFUSED_LOG_BURST} packets }}\n"
    ));
    for set in &t.sets {
        let ty = if set.v6 { "ipv6_addr" } else { "ipv4_addr" };
        out.push_str(&format!(
            "\tset {} {{ type {ty}; flags timeout; }}\n",
            set.name
        ));
    }
    for (chain, hook, rules) in [
        (NOTRACK_OUT_CHAIN, "output", &t.notrack_out),
        (NOTRACK_IN_CHAIN, "prerouting", &t.notrack_in),
    ] {
        out.push_str(&format!("\tchain {chain} {{\n"));
        out.push_str(&format!(
            "\t\ttype filter hook {hook} priority {NOTRACK_PRIORITY}; policy accept;\n"
        ));
        for rule in rules {
            out.push_str(&format!("\t\t{rule}\n"));
        }
        out.push_str("\t}\n");
    }
    out.push_str("\tchain output {\n");
    out.push_str(&format!(
        "\t\ttype filter hook output priority {CHAIN_PRIORITY}; policy accept;\n"
    ));
    for rule in &t.output {
        out.push_str(&format!("\t\t{rule}\n"));
    }
    out.push_str("\t}\n");
    if !t.dns.is_empty() {
        out.push_str(&format!("\tchain {DNS_CHAIN} {{\n"));
        out.push_str(&format!(
            "\t\ttype nat hook output priority {DNS_CHAIN_PRIORITY}; policy accept;\n"
        ));
        for rule in &t.dns {
            out.push_str(&format!("\t\t{rule}\n"));
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// Name of moat's DNS redirect chain.
pub const DNS_CHAIN: &str = "dns";

/// Reads the blocked-packets count from `nft list counter` output.
pub fn parse_counter(text: &str) -> Option<(u64, u64)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let find = |key: &str| {
        words
            .windows(2)
            .find(|w| w[0] == key)
            .and_then(|w| w[1].parse::<u64>().ok())
    };
    Some((find("packets")?, find("bytes")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AllowRule {
        s.parse().unwrap()
    }

    #[test]
    fn entries_parse() {
        let r = rule("10.96.0.10/32 udp 53");
        assert_eq!(r.prefix, 32);
        assert_eq!(r.protocol, Some(Protocol::Udp));
        assert_eq!(r.ports, vec![(53, 53)]);
        let r = rule("203.0.113.0/24 tcp 443,8000-8100");
        assert_eq!(r.ports, vec![(443, 443), (8000, 8100)]);
        let r = rule("2001:db8::/32");
        assert_eq!(r.prefix, 32);
        assert!(r.protocol.is_none());
        assert_eq!(rule("192.0.2.7").prefix, 32);
        assert_eq!(rule("192.0.2.0/24 icmp").protocol, Some(Protocol::Icmp));
    }

    #[test]
    fn bad_entries_are_errors() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/24",
            "nothost",
            "10.0.0.0/8 sctp",
            "10.0.0.0/8 tcp 0",
            "10.0.0.0/8 tcp 70000",
            "10.0.0.0/8 tcp 90-80",
            "10.0.0.0/8 icmp 1",
            "10.0.0.0/8 tcp 80 extra",
            "::1/129",
        ] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "10.96.0.10/32 udp 53",
            "203.0.113.0/24 tcp 443,8000-8100",
            "2001:db8::/32",
        ] {
            assert_eq!(rule(s).to_string(), s);
            assert_eq!(rule(&rule(s).to_string()), rule(s));
        }
    }

    #[test]
    fn within_is_containment() {
        let wide = rule("10.0.0.0/8 tcp");
        assert!(rule("10.1.2.0/24 tcp 443").within(&wide));
        assert!(!rule("10.1.2.0/24 udp 53").within(&wide));
        assert!(!rule("11.0.0.0/8 tcp").within(&wide));
        assert!(!rule("0.0.0.0/0 tcp").within(&wide));
        assert!(rule("10.0.0.0/8 tcp 80").within(&rule("10.0.0.0/8 tcp 1-1024")));
        assert!(!rule("10.0.0.0/8 tcp").within(&rule("10.0.0.0/8 tcp 1-1024")));
        assert!(!rule("10.0.0.1").within(&rule("2001:db8::/32")));
        assert!(rule("2001:db8:1::/48 tcp 22").within(&rule("2001:db8::/32")));
    }

    fn egress(entries: &[&str]) -> Egress {
        Egress::from(parse_list(entries).unwrap())
    }

    #[test]
    fn ruleset_blocks_by_default_and_allows_listed() {
        let text = ruleset(&egress(&["10.96.0.10/32 udp 53", "2001:db8::/32 tcp 443"]));
        assert!(text.contains("type filter hook output priority -150; policy accept;"));
        assert!(text.contains("oif \"lo\" accept"));
        assert!(text.contains("ct state established,related accept"));
        assert!(text.contains("icmpv6 type nd-neighbor-solicit accept"));
        assert!(text.contains("icmpv6 type nd-neighbor-advert accept"));
        assert!(text.contains("ip daddr 10.96.0.10/32 udp dport 53 accept"));
        assert!(text.contains("ip6 daddr 2001:db8::/32 tcp dport 443 accept"));
        assert!(text.contains("reject with tcp reset"));
        assert!(text.contains("reject with icmpx type admin-prohibited"));
        // The allow rules come before the rejects.
        assert!(text.find("udp dport").unwrap() < text.find("reject").unwrap());
        // Re-applying flushes first.
        assert!(text.starts_with("table inet moat {}\nflush table inet moat\n"));
    }

    /// Position of the first rule with exactly these matches and action.
    fn position(r: &[Rule], matches: &[Match], action: Action) -> Option<usize> {
        r.iter()
            .position(|x| x.matches == matches && x.action == action)
    }

    fn daddr(s: &str, prefix: u8) -> Match {
        Match::Daddr {
            addr: s.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn rules_accept_first_then_refuse_everything_else() {
        let r = rules(&egress(&[
            "10.0.0.0/8 tcp 80,8000-8100",
            "2001:db8::1 icmp",
        ]));
        assert_eq!(r[0].matches, vec![Match::CtEstablishedRelated]);
        assert_eq!(r[1].matches, vec![Match::CtNew, Match::CtCountOver(4096)]);
        let n = LINK_ICMPV6_TYPES.len();
        assert!(r[2..2 + n]
            .iter()
            .all(|x| matches!(x.matches[..], [Match::Icmpv6Type(_)])));
        let lo = position(&r, &[Match::OifLoopback], Action::Accept).unwrap();
        // One rule per port range, each with the address, after loopback.
        let tcp = |from, to| Match::Dport {
            proto: IPPROTO_TCP,
            from,
            to,
        };
        let p80 = position(&r, &[daddr("10.0.0.0", 8), tcp(80, 80)], Action::Accept).unwrap();
        let p8000 = position(&r, &[daddr("10.0.0.0", 8), tcp(8000, 8100)], Action::Accept).unwrap();
        assert!(lo < p80 && p80 + 1 == p8000);
        // icmp for an IPv6 address is ICMPv6 (not a DNS or metadata entry:
        // it stays with the wide ones).
        let icmp6 = [daddr("2001:db8::1", 128), Match::L4Proto(IPPROTO_ICMPV6)];
        assert_eq!(position(&r, &icmp6, Action::Accept), Some(p8000 + 1));
        let last = r.len() - 1;
        assert_eq!(r[last - 2].action, Action::CountAndResetTcp);
        assert_eq!(r[last - 2].matches, vec![Match::L4Proto(IPPROTO_TCP)]);
        assert_eq!(r[last].action, Action::CountAndRejectProhibited);
        assert!(
            r[last].matches.is_empty(),
            "the last rule catches everything"
        );
        // Each refusal is preceded by its log rule, with the same matches.
        for i in [last - 2, last] {
            assert_eq!(r[i - 1].action, Action::LogRefused);
            assert_eq!(r[i - 1].matches, r[i].matches);
        }
        assert_eq!(last, p8000 + 5);
    }

    /// T18 events: every refusing rule (metadata, DNS, the catch-all) is
    /// preceded by a log rule with the same matches, and log rules appear
    /// nowhere else. Not the conntrack cap: a log rule before it would
    /// need a second connlimit (its own list of every flow); refusals past
    /// the cap are counted only.
    #[test]
    fn every_refusal_is_logged_first() {
        for e in [egress(&["10.0.0.0/8 tcp 80"]), egress(&["0.0.0.0/0"])] {
            let r = rules(&e);
            let refusing = |a: Action| {
                matches!(
                    a,
                    Action::CountAndResetTcp | Action::CountAndRejectProhibited
                )
            };
            assert!(r.iter().filter(|x| refusing(x.action)).count() >= 6);
            for (i, x) in r.iter().enumerate() {
                let cap = x.matches.iter().any(|m| matches!(m, Match::CtCountOver(_)));
                if refusing(x.action) && !cap {
                    assert_eq!(r[i - 1].action, Action::LogRefused, "rule {i}: {x}");
                    assert_eq!(r[i - 1].matches, x.matches);
                }
                if x.action == Action::LogRefused {
                    assert!(refusing(r[i + 1].action), "rule {i}");
                }
            }
        }
        let text = ruleset(&egress(&[]));
        assert!(text.contains(&format!(
            "limit {REFUSED_LOG_LIMIT} {{ rate {REFUSED_LOG_RATE}/second burst {REFUSED_LOG_BURST} packets }}"
        )));
        assert!(text.contains(&format!(
            "limit name \"{REFUSED_LOG_LIMIT}\" log group {REFUSED_LOG_GROUP}"
        )));
    }

    /// T18 metadata: every built-in endpoint is refused (TCP reset, other
    /// protocols prohibited) before any accept that could cover it, so
    /// `0.0.0.0/0` and `::/0` do not reach it.
    #[test]
    fn metadata_endpoints_are_refused_before_wide_entries() {
        let r = rules(&egress(&["0.0.0.0/0", "::/0"]));
        let wide = position(&r, &[daddr("0.0.0.0", 0)], Action::Accept).unwrap();
        let wide6 = position(&r, &[daddr("::", 0)], Action::Accept).unwrap();
        let lo = position(&r, &[Match::OifLoopback], Action::Accept).unwrap();
        for m in [
            "169.254.169.254",
            "169.254.170.2",
            "fd00:ec2::254",
            "100.100.100.200",
            // docker's embedded resolver: on every port, before loopback
            // is accepted (its real port is not 53).
            "127.0.0.11",
        ] {
            let prefix = if m.contains(':') { 128 } else { 32 };
            let tcp = position(
                &r,
                &[daddr(m, prefix), Match::L4Proto(IPPROTO_TCP)],
                Action::CountAndResetTcp,
            )
            .unwrap_or_else(|| panic!("no TCP refusal for {m}"));
            let any = position(&r, &[daddr(m, prefix)], Action::CountAndRejectProhibited)
                .unwrap_or_else(|| panic!("no refusal for {m}"));
            assert!(tcp < wide && any < wide && tcp < wide6 && any < wide6 && any < lo);
            // No accept before the refusal matches the endpoint.
            assert!(r[..tcp].iter().all(|x| x.action != Action::Accept
                || !x.matches.iter().any(|y| matches!(y, Match::Daddr { .. }))));
        }
        let text = ruleset(&egress(&["0.0.0.0/0"]));
        let refusal = text
            .find("ip daddr 169.254.169.254/32 meta l4proto tcp counter name blocked reject with tcp reset")
            .expect(&text);
        assert!(refusal < text.find("ip daddr 0.0.0.0/0 accept").unwrap());
    }

    /// Only an entry naming the exact address reaches an endpoint, and only
    /// with what that entry allows; the policy adds endpoints.
    #[test]
    fn an_exact_entry_allows_a_metadata_endpoint() {
        let r = rules(&egress(&["0.0.0.0/0", "169.254.169.254 tcp 80"]));
        let exact = position(
            &r,
            &[
                daddr("169.254.169.254", 32),
                Match::Dport {
                    proto: IPPROTO_TCP,
                    from: 80,
                    to: 80,
                },
            ],
            Action::Accept,
        )
        .unwrap();
        let refusal = position(
            &r,
            &[daddr("169.254.169.254", 32)],
            Action::CountAndRejectProhibited,
        )
        .unwrap();
        assert!(exact < refusal);
        // A /31 around it is still a wide entry.
        let r = rules(&egress(&["169.254.169.254/31"]));
        let wide = position(&r, &[daddr("169.254.169.254", 31)], Action::Accept).unwrap();
        let refusal = position(
            &r,
            &[daddr("169.254.169.254", 32)],
            Action::CountAndRejectProhibited,
        )
        .unwrap();
        assert!(refusal < wide);
        // The policy's list.
        let policy = crate::policy::EgressPolicy {
            allow: vec!["0.0.0.0/0".into()],
            metadata: vec!["192.0.2.80".into()],
            ..Default::default()
        };
        let e = Egress::from_policy(&policy).unwrap();
        assert_eq!(
            e.metadata.len(),
            METADATA_ENDPOINTS.len() + ENGINE_RESOLVERS.len() + 1
        );
        let r = rules(&e);
        assert!(position(
            &r,
            &[daddr("192.0.2.80", 32)],
            Action::CountAndRejectProhibited
        )
        .is_some());
        let bad = crate::policy::EgressPolicy {
            metadata: vec!["192.0.2.0/24".into()],
            ..policy
        };
        assert!(Egress::from_policy(&bad).is_err());
    }

    /// T18 DNS: queries (53, 853; UDP and TCP) to anywhere, loopback
    /// included, are refused before loopback and wide entries are
    /// accepted; an exact resolver entry comes first.
    #[test]
    fn dns_leaves_only_to_an_exact_resolver_entry() {
        let r = rules(&egress(&[
            "0.0.0.0/0",
            "10.96.0.10 udp 53",
            "10.0.0.0/8 udp 53",
        ]));
        let lo = position(&r, &[Match::OifLoopback], Action::Accept).unwrap();
        let wide = position(&r, &[daddr("0.0.0.0", 0)], Action::Accept).unwrap();
        let udp = |port| Match::Dport {
            proto: IPPROTO_UDP,
            from: port,
            to: port,
        };
        let resolver = position(&r, &[daddr("10.96.0.10", 32), udp(53)], Action::Accept).unwrap();
        let range = position(&r, &[daddr("10.0.0.0", 8), udp(53)], Action::Accept).unwrap();
        for port in DNS_PORTS {
            for (proto, action) in [
                (IPPROTO_UDP, Action::CountAndRejectProhibited),
                (IPPROTO_TCP, Action::CountAndResetTcp),
            ] {
                let m = Match::Dport {
                    proto,
                    from: port,
                    to: port,
                };
                let at = position(&r, &[m], action)
                    .unwrap_or_else(|| panic!("no refusal of {proto}/{port}"));
                assert!(resolver < at && at < lo && at < wide && at < range);
            }
        }
    }

    #[test]
    fn annotation_narrowing_keeps_metadata_and_resolvers_exact() {
        let current = egress(&["0.0.0.0/0", "10.96.0.10 udp 53"]);
        let narrows =
            |w: &[&str]| narrows(&parse_list(w).unwrap(), &current.allow, &current.metadata);
        assert!(narrows(&["192.0.2.0/24 tcp 443"]));
        assert!(narrows(&["192.0.2.7 tcp 443"]));
        assert!(narrows(&["10.96.0.10 udp 53"]));
        // Within 0.0.0.0/0, but these reach what the wide entry does not.
        assert!(!narrows(&["169.254.169.254"]));
        assert!(!narrows(&["169.254.169.254 tcp 80"]));
        assert!(!narrows(&["192.0.2.7 udp 53"]));
        assert!(!narrows(&["192.0.2.7"]));
        let current = egress(&["10.0.0.0/8 tcp"]);
        assert!(!super::narrows(
            &parse_list(&["11.0.0.0/8 tcp"]).unwrap(),
            &current.allow,
            &current.metadata
        ));
    }

    /// A name entry needs upstream resolvers (without them it would
    /// allow nothing while looking like a working allowlist).
    #[test]
    fn name_entries_need_upstream_resolvers() {
        let mut policy = crate::policy::EgressPolicy {
            allow: vec!["10.0.0.0/8".into(), "pypi.org tcp 443".into()],
            ..Default::default()
        };
        let err = Egress::from_policy(&policy).unwrap_err().to_string();
        assert!(
            err.contains("pypi.org") && err.contains("egress.resolvers"),
            "{err}"
        );
        assert!(
            crate::policy::Policy::from_toml("[egress]\nallow = [\"*.github.com tcp 443\"]\n")
                .is_err()
        );
        policy.resolvers = vec!["192.0.2.53".into(), "[2001:db8::53]:5353".into()];
        let e = Egress::from_policy(&policy).unwrap();
        assert_eq!(e.names.len(), 1);
        assert_eq!(
            e.resolvers,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:5353".parse().unwrap()
            ]
        );
        policy.resolvers = vec!["resolver.example".into()];
        assert!(Egress::from_policy(&policy).is_err());
        // Addresses a container can hold itself (red-team pass 4 F2).
        for own in [
            "127.0.0.11",
            "127.0.0.1:5353",
            "[::1]:53",
            "169.254.1.1",
            "0.0.0.0",
            "[fe80::1]:53",
            "[::ffff:127.0.0.1]:53",
        ] {
            policy.resolvers = vec![own.into()];
            let err = Egress::from_policy(&policy).unwrap_err().to_string();
            assert!(err.contains("loopback, link-local"), "{own}: {err}");
        }
        policy.resolvers = vec!["192.0.2.53".into()];
        policy.name_ttl_min = 10;
        policy.name_ttl_max = 5;
        assert!(Egress::from_policy(&policy).is_err());
    }

    /// R8-4: loopback is untracked except DNS and the engine's resolver
    /// (NAT needs conntrack), and every new tracked flow meets the cap
    /// right after replies are accepted, before any accept.
    #[test]
    fn loopback_is_untracked_and_new_flows_are_capped() {
        let mut e = egress(&["10.0.0.0/8"]);
        e.max_tracked = 77;
        let text = ruleset(&e);
        for line in [
            "chain notrack_out {\n\t\ttype filter hook output priority -300; policy accept;\n",
            "chain notrack_in {\n\t\ttype filter hook prerouting priority -300; policy accept;\n",
            "\t\tip daddr 127.0.0.11/32 return\n\t\tip saddr 127.0.0.11/32 return\n\t\tudp dport 53 return\n\t\tudp sport 53 return\n\t\ttcp dport 53 return\n\t\ttcp sport 53 return\n\t\toif \"lo\" notrack\n",
            "\t\ttcp sport 53 return\n\t\tiif \"lo\" notrack\n",
            "ct state new ct count over 77 counter name blocked reject with icmpx type admin-prohibited",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        let r = rules(&e);
        assert_eq!(r[0].matches, vec![Match::CtEstablishedRelated]);
        assert_eq!(
            r[1].matches,
            vec![Match::CtNew, Match::CtCountOver(77)],
            "the cap comes before every accept"
        );
        // The cap is part of what the table enforces.
        assert_ne!(fingerprint(&e), fingerprint(&egress(&["10.0.0.0/8"])));
        let zero = crate::policy::EgressPolicy {
            max_tracked_connections: 0,
            ..Default::default()
        };
        assert!(Egress::from_policy(&zero).is_err());
    }

    fn named(entries: &[&str]) -> Egress {
        Egress::from_policy(&crate::policy::EgressPolicy {
            allow: entries.iter().map(|s| s.to_string()).collect(),
            resolvers: vec!["192.0.2.53".into()],
            ..Default::default()
        })
        .unwrap()
    }

    /// With name entries: the resolver's marked packets pass first; every
    /// port-53 query is accepted in the filter chain (the DNS chain
    /// redirects it to moat's resolver) before the metadata refusals (so
    /// docker's 127.0.0.11:53 is redirected too); 853 stays refused; a
    /// name entry's sets are accepted only after the metadata refusals.
    #[test]
    fn name_entries_redirect_dns_and_accept_their_sets() {
        let e = named(&["pypi.org tcp 443", "*.github.com", "0.0.0.0/0"]);
        let t = table(&e);
        assert_eq!(
            t.sets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["name0_v4", "name0_v6", "name1_v4", "name1_v6"]
        );
        let r = &t.output;
        let mark = position(r, &[Match::Mark(RESOLVER_MARK)], Action::Accept).unwrap();
        let udp53 = Match::Dport {
            proto: IPPROTO_UDP,
            from: 53,
            to: 53,
        };
        let dns = position(r, std::slice::from_ref(&udp53), Action::Accept).unwrap();
        let meta = position(
            r,
            &[daddr("169.254.169.254", 32)],
            Action::CountAndRejectProhibited,
        )
        .unwrap();
        let engine = position(
            r,
            &[daddr("127.0.0.11", 32)],
            Action::CountAndRejectProhibited,
        )
        .unwrap();
        assert!(mark < dns && dns < meta && dns < engine);
        let dot = Match::Dport {
            proto: IPPROTO_TCP,
            from: 853,
            to: 853,
        };
        assert!(position(r, &[dot], Action::CountAndResetTcp).is_some());
        let set = |n: &str, v6| Match::DaddrInSet { set: n.into(), v6 };
        let tcp443 = Match::Dport {
            proto: IPPROTO_TCP,
            from: 443,
            to: 443,
        };
        let pypi = position(r, &[set("name0_v4", false), tcp443.clone()], Action::Accept).unwrap();
        let pypi6 = position(r, &[set("name0_v6", true), tcp443], Action::Accept).unwrap();
        let gh = position(r, &[set("name1_v4", false)], Action::Accept).unwrap();
        assert!(meta < pypi && pypi < pypi6 && pypi6 < gh);
        assert_eq!(
            t.dns,
            vec![
                Rule {
                    matches: vec![Match::Mark(RESOLVER_MARK)],
                    action: Action::Return
                },
                Rule {
                    matches: vec![udp53],
                    action: Action::Redirect
                },
                Rule {
                    matches: vec![Match::Dport {
                        proto: IPPROTO_TCP,
                        from: 53,
                        to: 53
                    }],
                    action: Action::Redirect
                },
            ]
        );
        let text = ruleset(&e);
        assert!(text.contains("set name0_v4 { type ipv4_addr; flags timeout; }"));
        assert!(text.contains("ip daddr @name0_v4 tcp dport 443 accept"));
        assert!(text.contains("type nat hook output priority -110; policy accept;"));
        assert!(text.contains("udp dport 53 redirect"));
        // Without names: no sets, no DNS chain, no mark rule.
        let plain = table(&egress(&["0.0.0.0/0"]));
        assert!(plain.sets.is_empty() && plain.dns.is_empty());
        assert!(!plain
            .output
            .iter()
            .any(|r| r.matches.contains(&Match::Mark(RESOLVER_MARK))));
        assert_ne!(
            fingerprint(&e),
            fingerprint(&named(&["*.github.com", "pypi.org tcp 443", "0.0.0.0/0"]))
        );
    }

    #[test]
    fn fingerprint_ignores_order_and_spelling() {
        let a = fingerprint(&egress(&["10.0.0.0/8 tcp 80", "192.0.2.1"]));
        let b = fingerprint(&egress(&["192.0.2.1/32", "10.0.0.0/8 tcp 80"]));
        assert_eq!(a, b);
        assert_ne!(a, fingerprint(&egress(&["10.0.0.0/8 tcp 81"])));
        assert_ne!(a, fingerprint(&egress(&[])));
        let mut more = egress(&["10.0.0.0/8 tcp 80", "192.0.2.1"]);
        more.metadata.push("192.0.2.80".parse().unwrap());
        assert_ne!(a, fingerprint(&more), "the metadata list is part of it");
        let text = ruleset(&egress(&["192.0.2.1"]));
        assert_eq!(
            parse_fingerprint(&text),
            Some(fingerprint(&egress(&["192.0.2.1"])))
        );
        assert_eq!(parse_fingerprint("table inet moat {\n}"), None);
    }

    #[test]
    fn counter_output_parses() {
        let out = "table inet moat {\n\tcounter blocked {\n\t\tpackets 3 bytes 180\n\t}\n}\n";
        assert_eq!(parse_counter(out), Some((3, 180)));
        assert_eq!(parse_counter("nothing"), None);
    }
}
