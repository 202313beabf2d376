//! Egress by name (issue 18, threat T18): the pure parts. `names` parses
//! and matches the allowlist's name entries (`pypi.org tcp 443`,
//! `*.github.com tcp 443`); `message` reads and writes the DNS messages
//! moat's resolver (`crate::resolver`) handles; `answers` which answered
//! addresses may go into a name entry's set.

pub mod answers;
pub mod message;
pub mod names;
