//! Which answered addresses a name entry may let through (T18, DNS
//! rebinding; red-team pass 4 F5). Pure.
//!
//! A name's answer comes from whoever runs that name's authoritative
//! servers. Under a wildcard entry on a zone where anyone can make names
//! (`*.example-cdn.net`, `*.nip.io`), or after a takeover, that can be the
//! attacker: an answer of `10.0.0.5`, `127.0.0.1` or `169.254.169.254`
//! would put the node's neighbours, the namespace's own loopback or the
//! cloud's metadata service into the entry's set ("DNS rebinding" into the
//! node's network). So an A/AAAA record whose address is not globally
//! reachable (loopback, private, shared, link-local, unspecified,
//! multicast, documentation, benchmarking, reserved; an IPv6 address
//! embedding such an IPv4 one) is dropped from the answer and never
//! reaches a set, unless the policy's `egress.private_answers` names it:
//! `"PATTERN CIDR"` (`"*.corp.example 10.0.0.0/8"`), per name pattern, so
//! an internal zone may answer internal addresses without every other
//! entry getting the same licence. The metadata endpoints stay refused by
//! the table even then (the name sets are accepted after those refusals).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::dns::names::NamePattern;
use crate::egress::{AllowRule, ParseError};

/// One `egress.private_answers` entry: names matching `pattern` may be
/// answered with addresses inside `net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateAnswer {
    pub pattern: NamePattern,
    pub net: AllowRule,
}

impl FromStr for PrivateAnswer {
    type Err = ParseError;

    fn from_str(entry: &str) -> Result<Self, ParseError> {
        let err = |why: &str| ParseError {
            entry: entry.to_string(),
            why: why.to_string(),
        };
        let fields: Vec<&str> = entry.split_whitespace().collect();
        let [pattern, cidr] = fields[..] else {
            return Err(err(
                "egress.private_answers entries are \"NAME CIDR\" or \"*.SUFFIX CIDR\"",
            ));
        };
        let pattern = NamePattern::parse(pattern).map_err(err)?;
        let net: AllowRule = cidr.parse().map_err(|e: ParseError| err(&e.why))?;
        Ok(PrivateAnswer { pattern, net })
    }
}

impl std::fmt::Display for PrivateAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.pattern, self.net.addr, self.net.prefix)
    }
}

/// May `addr`, answered for `name`, go into a name entry's set?
pub fn allowed(addr: IpAddr, name: &str, private: &[PrivateAnswer]) -> bool {
    is_global(addr)
        || private.iter().any(|p| {
            p.pattern.matches(name)
                && AllowRule {
                    addr,
                    prefix: if addr.is_ipv4() { 32 } else { 128 },
                    protocol: None,
                    ports: Vec::new(),
                }
                .within(&p.net)
        })
}

/// Is `addr` globally reachable (IANA's special-purpose registries: not
/// one of the ranges listed there as not forwardable or not global)?
/// Conservative: a range in doubt counts as not global.
pub fn is_global(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => is_global_v4(a),
        IpAddr::V6(a) => is_global_v6(a),
    }
}

fn in_v4(a: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(a) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_global_v4(a: Ipv4Addr) -> bool {
    const NOT_GLOBAL: [([u8; 4], u32); 15] = [
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared (CGNAT; Alibaba's metadata)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (metadata endpoints)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !NOT_GLOBAL.iter().any(|(net, p)| in_v4(a, *net, *p))
}

fn is_global_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let v = u128::from(a);
    let in_net = |net: u128, prefix: u32| (v ^ net) >> (128 - prefix) == 0;
    // IPv4-mapped, NAT64 (well-known prefix), 6to4: as the IPv4 address
    // they carry.
    if let Some(v4) = a.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    if in_net(0x0064_ff9b << 96, 96) {
        return is_global_v4(Ipv4Addr::from(v as u32));
    }
    if s[0] == 0x2002 {
        return is_global_v4(Ipv4Addr::from(((v >> 80) & 0xffff_ffff) as u32));
    }
    let not_global = a.is_unspecified()
        || a.is_loopback()
        || in_net(0, 96) // IPv4-compatible (deprecated)
        || in_net(0x0064_ff9b_0001 << 80, 48) // NAT64 local use
        || in_net(0x0100 << 112, 64) // discard-only
        || in_net(0x2001 << 112, 32) // Teredo
        || in_net(0x2001_0db8 << 96, 32) // documentation
        || in_net(0x3fff << 112, 20) // documentation (2024)
        || (s[0] & 0xfe00) == 0xfc00 // unique local (AWS metadata fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00; // multicast
    !not_global
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_the_node_and_its_neighbours_are_not_global() {
        for a in [
            "0.0.0.0",
            "10.1.2.3",
            "100.100.100.200",
            "127.0.0.1",
            "127.0.0.11",
            "169.254.169.254",
            "169.254.170.2",
            "172.17.0.2",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.7",
            "192.168.1.1",
            "198.18.0.1",
            "224.0.0.251",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:0a00:0001::1",
            "2001:db8::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert!(!is_global(ip), "{a} counted as global");
        }
        for a in [
            "1.1.1.1",
            "151.101.0.223",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:0101:0101::1",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert!(is_global(ip), "{a} counted as not global");
        }
    }

    #[test]
    fn private_answers_are_allowed_per_name_and_range() {
        let private: Vec<PrivateAnswer> = ["*.corp.example 10.0.0.0/8", "db.example fd00::/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(ip("1.1.1.1"), "pypi.org", &private));
        assert!(!allowed(ip("10.0.0.5"), "pypi.org", &private));
        assert!(allowed(ip("10.0.0.5"), "git.corp.example", &private));
        assert!(allowed(ip("10.0.0.5"), "GIT.corp.example.", &private));
        assert!(!allowed(ip("10.0.0.5"), "corp.example", &private));
        assert!(!allowed(ip("192.168.0.5"), "git.corp.example", &private));
        assert!(!allowed(ip("127.0.0.1"), "git.corp.example", &private));
        assert!(allowed(ip("fd00::5"), "db.example", &private));
        assert!(!allowed(ip("fd00::5"), "x.db.example", &private));
        assert!(!allowed(ip("10.0.0.5"), "db.example", &private));
        assert_eq!(private[0].to_string(), "*.corp.example 10.0.0.0/8");
        for bad in [
            "",
            "*.corp.example",
            "10.0.0.0/8",
            "*.corp.example 10.0.0.1/8",
            "*.corp.example 10.0.0.0/8 tcp",
            "*.com 10.0.0.0/8",
            "corp.example nothing",
        ] {
            assert!(bad.parse::<PrivateAnswer>().is_err(), "{bad:?}");
        }
    }
}
