//! Egress by name (issue 18, threat T18): the pure parts. `names` parses
//! and matches the allowlist's name entries (`pypi.org tcp 443`,
//! `*.github.com tcp 443`).
//!
//! Not in this build: the resolver that answers a container's DNS,
//! forwards only allowed names and puts the answered addresses into an
//! nftables set before delivering the answer (design: docs/egress.md).
//! Until it lands, a policy with name entries is refused when it is
//! loaded: a name entry that silently allowed nothing would look like a
//! working allowlist.

pub mod names;
