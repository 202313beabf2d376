//! Name entries of the egress allowlist: `NAME [tcp|udp|icmp] [PORTS]`
//! and `*.SUFFIX [tcp|udp|icmp] [PORTS]`. Pure: parsing, matching a
//! queried name, and containment (an annotation may only narrow).
//!
//! A wildcard matches names strictly below its suffix: `*.example.com`
//! matches `a.example.com` and `a.b.example.com`, never `example.com`
//! itself (list both if both are wanted), so the entry does not quietly
//! cover the apex's own addresses. Names compare case-insensitively and
//! without the trailing dot of a fully qualified name.

use std::fmt;
use std::str::FromStr;

use crate::egress::{parse_service, service_within, ParseError, Protocol};

/// What a name entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// This name only.
    Exact(String),
    /// Any name strictly below this suffix (`*.SUFFIX`).
    Below(String),
}

/// One name entry of the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRule {
    pub pattern: NamePattern,
    pub protocol: Option<Protocol>,
    /// Port ranges (inclusive); empty means every port.
    pub ports: Vec<(u16, u16)>,
}

/// The canonical form of a DNS name: lowercase, no trailing dot. None if
/// it is not a hostname: labels of 1..=63 letters, digits, `-` or `_`
/// (not starting or ending with `-`), at most 253 characters, and a last
/// label that is not all digits (that would be an address, not a name).
pub fn canonical(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if !labels.iter().all(label_ok) {
        return None;
    }
    if labels.last()?.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(name)
}

impl NamePattern {
    /// `NAME` or `*.SUFFIX` (the first field of a name entry).
    pub fn parse(text: &str) -> Result<NamePattern, &'static str> {
        if let Some(suffix) = text.strip_prefix("*.") {
            let suffix = canonical(suffix).ok_or("not a valid DNS name after *.")?;
            if !suffix.contains('.') {
                return Err(
                    "a wildcard needs a suffix of two labels or more (*.example.com, not *.com)",
                );
            }
            Ok(NamePattern::Below(suffix))
        } else if text.contains('*') {
            Err("a wildcard is only allowed as the whole first label (*.example.com)")
        } else {
            Ok(NamePattern::Exact(
                canonical(text).ok_or("not an address, CIDR or DNS name")?,
            ))
        }
    }

    /// Does the (queried) name match? `name` in any case, with or
    /// without the trailing dot.
    pub fn matches(&self, name: &str) -> bool {
        let Some(name) = canonical(name) else {
            return false;
        };
        match self {
            NamePattern::Exact(n) => name == *n,
            NamePattern::Below(suffix) => is_strictly_below(&name, suffix),
        }
    }

    /// Does every name this pattern matches also match `other`?
    pub fn within(&self, other: &NamePattern) -> bool {
        match (self, other) {
            (NamePattern::Exact(a), NamePattern::Exact(b)) => a == b,
            (NamePattern::Exact(a), NamePattern::Below(s)) => is_strictly_below(a, s),
            (NamePattern::Below(a), NamePattern::Below(s)) => a == s || is_strictly_below(a, s),
            (NamePattern::Below(_), NamePattern::Exact(_)) => false,
        }
    }
}

fn is_strictly_below(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// Is this entry text a name entry (rather than an address or CIDR)?
/// Addresses contain only digits, dots, hex and colons, and CIDRs a `/`;
/// names have a last label that is not all digits.
pub fn is_name_entry(entry: &str) -> bool {
    entry.split_whitespace().next().is_some_and(|first| {
        !first.contains('/') && !first.contains(':') && first.parse::<std::net::IpAddr>().is_err()
    })
}

impl FromStr for NameRule {
    type Err = ParseError;

    fn from_str(entry: &str) -> Result<Self, ParseError> {
        let err = |why: &str| ParseError {
            entry: entry.to_string(),
            why: why.to_string(),
        };
        let mut parts = entry.split_whitespace();
        let first = parts.next().ok_or_else(|| err("empty entry"))?;
        let pattern = NamePattern::parse(first).map_err(&err)?;
        let (protocol, ports) = parse_service(&mut parts, &err, "NAME")?;
        Ok(NameRule {
            pattern,
            protocol,
            ports,
        })
    }
}

impl NameRule {
    /// Is every connection this entry allows also allowed by `other`?
    pub fn within(&self, other: &NameRule) -> bool {
        self.pattern.within(&other.pattern)
            && service_within(self.protocol, &self.ports, other.protocol, &other.ports)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => write!(f, "{n}"),
            NamePattern::Below(s) => write!(f, "*.{s}"),
        }
    }
}

/// Splits an allowlist into its address entries and its name entries.
pub fn split_entries<S: AsRef<str>>(
    entries: &[S],
) -> Result<(Vec<crate::egress::AllowRule>, Vec<NameRule>), ParseError> {
    let mut cidrs = Vec::new();
    let mut names = Vec::new();
    for e in entries {
        let e = e.as_ref().trim();
        if is_name_entry(e) {
            names.push(e.parse()?);
        } else {
            cidrs.push(e.parse()?);
        }
    }
    Ok((cidrs, names))
}

/// The numbers of the entries that allow the queried `name` (the sets its
/// answered addresses go into). Empty: the name is refused.
pub fn matching(rules: &[NameRule], name: &str) -> Vec<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.pattern.matches(name))
        .map(|(i, _)| i)
        .collect()
}

/// Is every entry of `wanted` within some entry of `current`? (A name
/// entry is never within an address entry, nor the other way round: a
/// name may resolve to any address.)
pub fn names_narrow(wanted: &[NameRule], current: &[NameRule]) -> bool {
    wanted.iter().all(|w| current.iter().any(|c| w.within(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> NameRule {
        s.parse().unwrap()
    }

    #[test]
    fn name_entries_parse() {
        let r = rule("PyPI.org. tcp 443");
        assert_eq!(r.pattern, NamePattern::Exact("pypi.org".into()));
        assert_eq!(r.protocol, Some(Protocol::Tcp));
        assert_eq!(r.ports, vec![(443, 443)]);
        let r = rule("*.github.com tcp 443,8443-8444");
        assert_eq!(r.pattern, NamePattern::Below("github.com".into()));
        assert_eq!(r.ports, vec![(443, 443), (8443, 8444)]);
        assert_eq!(rule("db").pattern, NamePattern::Exact("db".into()));
        assert_eq!(
            rule("_svc._tcp.example.com udp 53").protocol,
            Some(Protocol::Udp)
        );
    }

    #[test]
    fn bad_name_entries_are_errors() {
        for bad in [
            "*.com tcp 443",
            "*",
            "a.*.example.com",
            "*example.com",
            "pypi.org sctp",
            "pypi.org tcp 0",
            "pypi.org 443",
            "pypi.org tcp 443 extra",
            "-bad.example.com",
            "bad-.example.com",
            "a..b",
            "exa mple",
            "1.2.3",
            "ex!ample.com",
        ] {
            assert!(bad.parse::<NameRule>().is_err(), "{bad:?}");
        }
        assert!(canonical(&"a".repeat(64)).is_none());
        assert!(canonical(&format!("{}.com", "a.".repeat(130))).is_none());
    }

    #[test]
    fn a_wildcard_matches_subdomains_only() {
        let w = rule("*.example.com").pattern;
        assert!(w.matches("a.example.com"));
        assert!(w.matches("A.B.Example.COM."));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(!w.matches("example.com.evil.test"));
        assert!(!w.matches("a.example.co"));
        let e = rule("pypi.org").pattern;
        assert!(e.matches("PYPI.org."));
        assert!(!e.matches("files.pypi.org"));
        assert!(!e.matches("pypi.org.evil.test"));
        assert!(!e.matches("not a name"));
    }

    #[test]
    fn a_query_matches_the_entries_that_allow_it() {
        let rules = vec![
            rule("pypi.org tcp 443"),
            rule("*.github.com tcp 443"),
            rule("*.api.github.com tcp 8443"),
        ];
        assert_eq!(matching(&rules, "PyPI.org"), vec![0]);
        assert_eq!(matching(&rules, "x.api.github.com"), vec![1, 2]);
        assert_eq!(matching(&rules, "api.github.com"), vec![1]);
        assert!(matching(&rules, "github.com").is_empty());
        assert!(matching(&rules, "secret.attacker.example").is_empty());
        assert!(matching(&rules, "").is_empty());
    }

    #[test]
    fn a_narrowing_annotation_can_only_narrow() {
        let current = vec![rule("*.example.com tcp"), rule("pypi.org tcp 443")];
        let narrows = |w: &[&str]| {
            let w: Vec<NameRule> = w.iter().map(|s| rule(s)).collect();
            names_narrow(&w, &current)
        };
        assert!(narrows(&["a.example.com tcp 443"]));
        assert!(narrows(&["*.b.example.com tcp 80"]));
        assert!(narrows(&["*.example.com tcp 443"]));
        assert!(narrows(&["pypi.org tcp 443"]));
        assert!(
            !narrows(&["example.com tcp 443"]),
            "the apex is not below *.example.com"
        );
        assert!(!narrows(&["a.example.com udp 53"]));
        assert!(!narrows(&["a.example.com"]));
        assert!(!narrows(&["pypi.org tcp 80"]));
        assert!(!narrows(&["*.pypi.org tcp 443"]));
        assert!(!narrows(&["files.pypi.org tcp 443"]));
    }

    #[test]
    fn entries_split_into_addresses_and_names() {
        let (cidrs, names) = split_entries(&[
            "10.0.0.0/8 tcp",
            "pypi.org tcp 443",
            "2001:db8::1",
            "192.0.2.7 udp 53",
            "*.github.com tcp 443",
        ])
        .unwrap();
        assert_eq!(cidrs.len(), 3);
        assert_eq!(names.len(), 2);
        assert!(split_entries(&["10.0.0.1/8"]).is_err());
        assert!(split_entries(&["*.com"]).is_err());
    }
}
