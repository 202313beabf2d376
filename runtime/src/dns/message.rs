//! The few DNS message operations moat's resolver needs (RFC 1035), pure:
//! read a query's one question, write a REFUSED or SERVFAIL answer to it,
//! check that an upstream's response answers that question, and collect
//! the A and AAAA records of its answer section with their TTLs.
//!
//! Written here rather than taken from a crate: the resolver forwards the
//! upstream's bytes unchanged and only reads the header, the question and
//! the answer records' fixed fields; a full message model (hickory-proto)
//! would be a large dependency for that. Every read is bounds-checked and
//! every loop bounded: the input is a tenant's query or an upstream's
//! response.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_REFUSED: u8 = 5;
const HEADER: usize = 12;

/// A query's single question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// The name as asked, labels joined by `.` (no trailing dot). Only
    /// letters, digits, `-` and `_` occur in it: a label with any other
    /// byte makes the query unreadable (None), and so refused.
    pub name: String,
    pub qtype: u16,
    /// Where the question ends (header and question: what an answer
    /// repeats).
    pub question_end: usize,
}

fn u16_at(msg: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]))
}

/// Reads an uncompressed name at `i`; returns it and the offset after it.
fn read_plain_name(msg: &[u8], mut i: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // A question's name is never compressed; 0x40 and 0x80 are unused
        // label types.
        if len > 63 {
            return None;
        }
        let label = msg.get(i..i + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        total += len + 1;
        if total > 255 {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).into_owned());
        i += len;
    }
    Some((labels.join("."), i))
}

/// Skips a possibly compressed name at `i`; returns the offset after it.
fn skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    // At most 128 labels fit in 255 bytes.
    for _ in 0..128 {
        let len = *msg.get(i)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(i + 1),
            0x00 => i += 1 + usize::from(len),
            // A compression pointer ends the name.
            0xc0 => return msg.get(i + 1).map(|_| i + 2),
            _ => return None,
        }
    }
    None
}

/// The question of a standard query (QR clear, opcode QUERY, exactly one
/// question of class IN). None for anything else.
pub fn parse_query(msg: &[u8]) -> Option<Query> {
    if msg.len() < HEADER {
        return None;
    }
    let flags = msg[2];
    let is_response = flags & 0x80 != 0;
    let opcode = (flags >> 3) & 0x0f;
    if is_response || opcode != 0 || u16_at(msg, 4)? != 1 {
        return None;
    }
    let (name, i) = read_plain_name(msg, HEADER)?;
    let qtype = u16_at(msg, i)?;
    if u16_at(msg, i + 2)? != CLASS_IN {
        return None;
    }
    Some(Query {
        id: u16_at(msg, 0)?,
        name,
        qtype,
        question_end: i + 4,
    })
}

/// An answer to `query` (its bytes, of which `q` is the question) with
/// `rcode` and no records: the query's id, question and RD, QR and RA
/// set.
pub fn error_reply(query: &[u8], q: &Query, rcode: u8) -> Vec<u8> {
    let mut r = Vec::with_capacity(q.question_end);
    r.extend_from_slice(&query[..2]);
    r.push(0x80 | (query[2] & 0x01)); // QR, opcode QUERY, RD copied
    r.push(0x80 | (rcode & 0x0f)); // RA, RCODE
    r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    r.extend_from_slice(&query[HEADER..q.question_end]);
    r
}

/// The addresses an upstream's `response` gives for `query` (its bytes,
/// question `q`): the A and AAAA records of the answer section (those of
/// a CNAME chain's target included: the upstream resolved it for this
/// name; the authority and additional sections are ignored), each with
/// its TTL. None unless the response answers this very question (same
/// id, a response, the same question, names compared without case).
pub fn answered_addresses(query: &[u8], q: &Query, response: &[u8]) -> Option<Vec<(IpAddr, u32)>> {
    if response.len() < q.question_end
        || response[..2] != query[..2]
        || response[2] & 0x80 == 0
        || u16_at(response, 4)? != 1
        || !response[HEADER..q.question_end].eq_ignore_ascii_case(&query[HEADER..q.question_end])
    {
        return None;
    }
    let count = u16_at(response, 6)?;
    let mut i = q.question_end;
    let mut out = Vec::new();
    for _ in 0..count {
        i = skip_name(response, i)?;
        let rtype = u16_at(response, i)?;
        let class = u16_at(response, i + 2)?;
        let ttl = u32::from_be_bytes(response.get(i + 4..i + 8)?.try_into().ok()?);
        let len = usize::from(u16_at(response, i + 8)?);
        let data = response.get(i + 10..i + 10 + len)?;
        i += 10 + len;
        if class != CLASS_IN {
            continue;
        }
        match (rtype, len) {
            (TYPE_A, 4) => {
                let o: [u8; 4] = data.try_into().ok()?;
                out.push((IpAddr::V4(Ipv4Addr::from(o)), ttl));
            }
            (TYPE_AAAA, 16) => {
                let o: [u8; 16] = data.try_into().ok()?;
                out.push((IpAddr::V6(Ipv6Addr::from(o)), ttl));
            }
            _ => {}
        }
    }
    Some(out)
}

/// How long (seconds) an answered address stays in a name set: the
/// record's TTL within the policy's bounds.
pub fn bounded_ttl(ttl: u32, min: u32, max: u32) -> u32 {
    ttl.clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of type `qtype`, id 0x1234, RD set.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    /// A response to `q` with these records (name by pointer to the
    /// question): (type, ttl, rdata).
    fn response(q: &[u8], records: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] |= 0x80;
        r[3] = 0x80;
        r[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (t, ttl, data) in records {
            r.extend_from_slice(&[0xc0, 0x0c]);
            r.extend_from_slice(&t.to_be_bytes());
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&(data.len() as u16).to_be_bytes());
            r.extend_from_slice(data);
        }
        r
    }

    #[test]
    fn a_query_is_read() {
        let m = query("Files.PyPI.org", TYPE_AAAA);
        let q = parse_query(&m).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name, "Files.PyPI.org");
        assert_eq!(q.qtype, TYPE_AAAA);
        assert_eq!(q.question_end, m.len());
    }

    #[test]
    fn what_is_not_a_plain_query_is_not_read() {
        let good = query("pypi.org", TYPE_A);
        let mut resp = good.clone();
        resp[2] |= 0x80;
        let mut two = good.clone();
        two[5] = 2;
        let mut notify = good.clone();
        notify[2] = 4 << 3;
        let mut pointer = good[..12].to_vec();
        pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        let mut dot_in_label = query("evil", TYPE_A);
        dot_in_label.splice(13..17, b"a.b.".iter().copied());
        let mut chaos = good.clone();
        let n = chaos.len();
        chaos[n - 1] = 3;
        for bad in [
            &good[..11],
            &good[..good.len() - 1],
            &resp[..],
            &two[..],
            &notify[..],
            &pointer[..],
            &dot_in_label[..],
            &chaos[..],
            &query("a b", TYPE_A)[..],
        ] {
            assert_eq!(parse_query(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn refused_answers_the_question() {
        let m = query("secret.attacker.example", TYPE_A);
        let q = parse_query(&m).unwrap();
        let r = error_reply(&m, &q, RCODE_REFUSED);
        assert_eq!(&r[..2], &m[..2]);
        assert_eq!(r[2], 0x81, "QR and RD");
        assert_eq!(r[3] & 0x0f, RCODE_REFUSED);
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[12..], &m[12..]);
    }

    #[test]
    fn answered_addresses_are_read_with_their_ttls() {
        let m = query("pypi.org", TYPE_A);
        let q = parse_query(&m).unwrap();
        let cname = vec![3, b'c', b'd', b'n', 0xc0, 0x0c];
        let r = response(
            &m,
            &[
                (5, 300, cname),
                (TYPE_A, 30, vec![192, 0, 2, 7]),
                (
                    TYPE_AAAA,
                    7,
                    "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                ),
                (16, 30, b"\x04text".to_vec()),
            ],
        );
        assert_eq!(
            answered_addresses(&m, &q, &r).unwrap(),
            vec![
                ("192.0.2.7".parse().unwrap(), 30),
                ("2001:db8::7".parse().unwrap(), 7)
            ]
        );
        // Case of the question may differ (0x20 randomisation upstream).
        let mut upper = r.clone();
        upper[13] = b'P';
        assert!(answered_addresses(&m, &q, &upper).is_some());
    }

    #[test]
    fn responses_to_other_questions_or_truncated_are_not_read() {
        let m = query("pypi.org", TYPE_A);
        let q = parse_query(&m).unwrap();
        let r = response(&m, &[(TYPE_A, 30, vec![192, 0, 2, 7])]);
        let mut other_id = r.clone();
        other_id[1] ^= 1;
        let other = response(
            &query("evil.org", TYPE_A),
            &[(TYPE_A, 30, vec![1, 2, 3, 4])],
        );
        let mut not_response = r.clone();
        not_response[2] &= 0x7f;
        let mut bad_len = r.clone();
        let n = bad_len.len();
        bad_len[n - 5] = 5; // rdlength beyond the end
        let mut loop_ptr = m.clone();
        loop_ptr[2] |= 0x80;
        loop_ptr[7] = 1;
        loop_ptr.extend_from_slice(&[0x40, 0]);
        for bad in [
            &other_id,
            &other,
            &not_response,
            &bad_len,
            &loop_ptr,
            &r[..r.len() - 1].to_vec(),
        ] {
            assert_eq!(answered_addresses(&m, &q, bad), None);
        }
    }

    #[test]
    fn ttls_are_bounded() {
        assert_eq!(bounded_ttl(0, 5, 3600), 5);
        assert_eq!(bounded_ttl(60, 5, 3600), 60);
        assert_eq!(bounded_ttl(86400 * 7, 5, 3600), 3600);
        assert_eq!(bounded_ttl(u32::MAX, 5, 3600), 3600);
        // A max below the min (refused by the policy) never panics.
        assert_eq!(bounded_ttl(60, 10, 5), 10);
    }
}
