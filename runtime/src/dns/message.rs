//! The few DNS message operations moat's resolver needs (RFC 1035), pure:
//! read a query's one question (and its EDNS payload size), write the
//! query moat sends upstream in its place, write a REFUSED, SERVFAIL or
//! truncated answer, check that an upstream's response answers the
//! question, collect the A and AAAA records of its answer section with
//! their TTLs, and write the answer the client gets.
//!
//! Written here rather than taken from a crate: the resolver reads only
//! the header, the question, a query's OPT record and the answer records'
//! fixed fields; a full message model (hickory-proto) would be a large
//! dependency for that. Every read is bounds-checked and every loop
//! bounded: the input is a tenant's query or an upstream's response.
//!
//! What goes upstream is never the tenant's bytes (red-team pass 4 F5):
//! moat writes a fresh query holding only the question (the name in
//! lowercase), RD, and, if the client used EDNS, a plain OPT record with a
//! bounded payload size and the DO bit. The client's EDNS options (client
//! subnet, cookies, padding, anything made up), its header bits, extra
//! records and trailing bytes, and the letter case of its name (0x20
//! bits) all stay behind: each could carry data to the upstream and the
//! allowed name's authorities.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_REFUSED: u8 = 5;
const HEADER: usize = 12;
/// The payload size a UDP client without EDNS can take (RFC 1035).
pub const PLAIN_UDP_SIZE: usize = 512;
/// The most moat asks an upstream to send over UDP (the DNS flag day 2020
/// value: fits the IPv6 minimum MTU unfragmented); larger answers come
/// truncated and are fetched again over TCP.
pub const UPSTREAM_UDP_SIZE: u16 = 1232;

/// A query's EDNS(0) (RFC 6891) as far as moat honours it: the client's
/// UDP payload size and its DNSSEC OK bit. Its options are never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub dnssec_ok: bool,
}

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
    /// The query's OPT record, if it has exactly one right after the
    /// question and nothing else.
    pub edns: Option<Edns>,
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
    let question_end = i + 4;
    Some(Query {
        id: u16_at(msg, 0)?,
        name,
        qtype,
        question_end,
        edns: read_edns(msg, question_end),
    })
}

/// The OPT record of a query whose only record after the question is one
/// (no answer or authority records, one additional): root owner name,
/// type OPT; its class is the UDP payload size, bit 15 of its TTL's low
/// half the DO bit.
fn read_edns(msg: &[u8], at: usize) -> Option<Edns> {
    if u16_at(msg, 6)? != 0 || u16_at(msg, 8)? != 0 || u16_at(msg, 10)? != 1 {
        return None;
    }
    if *msg.get(at)? != 0 || u16_at(msg, at + 1)? != TYPE_OPT {
        return None;
    }
    let udp_size = u16_at(msg, at + 3)?;
    let flags = u16_at(msg, at + 7)?;
    let len = usize::from(u16_at(msg, at + 9)?);
    msg.get(at + 11..at + 11 + len)?;
    Some(Edns {
        udp_size,
        dnssec_ok: flags & 0x8000 != 0,
    })
}

/// The query moat sends upstream for the client's question `q`, with id
/// `id` (moat's, not the client's): RD set and nothing else in the
/// header; the question with the name in lowercase; a plain OPT record
/// (payload size within 512..=[`UPSTREAM_UDP_SIZE`], the client's DO bit,
/// no options) only if the client sent one.
pub fn upstream_query(q: &Query, id: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(q.question_end + 11);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(q.edns.is_some())]);
    if !q.name.is_empty() {
        for label in q.name.split('.') {
            // parse_query only lets labels of 1..=63 bytes through.
            m.push(label.len() as u8);
            m.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    m.push(0);
    m.extend_from_slice(&q.qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some(e) = q.edns {
        let size = e.udp_size.clamp(PLAIN_UDP_SIZE as u16, UPSTREAM_UDP_SIZE);
        m.push(0);
        m.extend_from_slice(&TYPE_OPT.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        let flags: u16 = if e.dnssec_ok { 0x8000 } else { 0 };
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
    }
    m
}

/// The largest answer the client of `q` takes over UDP: 512 bytes, or its
/// EDNS payload size if larger.
pub fn client_udp_limit(q: &Query) -> usize {
    q.edns
        .map_or(PLAIN_UDP_SIZE, |e| usize::from(e.udp_size))
        .max(PLAIN_UDP_SIZE)
}

/// Is the response's TC (truncated) bit set?
pub fn is_truncated(response: &[u8]) -> bool {
    response.get(2).is_some_and(|b| b & 0x02 != 0)
}

/// An empty NOERROR answer to `query` with TC set: the client asks again
/// over TCP (RFC 7766).
pub fn truncated_reply(query: &[u8], q: &Query) -> Vec<u8> {
    let mut r = error_reply(query, q, 0);
    r[2] |= 0x02;
    r
}

/// The client's answer made from the upstream's `response` to moat's own
/// query for `q` (checked by [`answered_addresses`]): the client's id and
/// its question as it wrote it (letter case included) in place of moat's.
pub fn reply_for_client(query: &[u8], q: &Query, response: &[u8]) -> Vec<u8> {
    let mut r = response.to_vec();
    r[..2].copy_from_slice(&query[..2]);
    r[HEADER..q.question_end].copy_from_slice(&query[HEADER..q.question_end]);
    r
}

/// The client's answer when some of the upstream's addresses were dropped
/// (see `crate::dns::answers`): the upstream's RCODE and RA, the client's
/// id, RD and question, and only the `kept` addresses of the question's
/// type (A or AAAA) as records of the question's name. Other records (the
/// CNAME chain, authority, additional) are left out: rewriting the
/// upstream's message record by record would have to follow its
/// compression pointers.
pub fn addresses_reply(
    query: &[u8],
    q: &Query,
    response: &[u8],
    kept: &[(IpAddr, u32)],
) -> Vec<u8> {
    records_reply(
        query,
        q,
        response.get(3).map_or(RCODE_SERVFAIL, |b| b & 0x0f),
        kept,
    )
}

/// An answer to `query` (question `q`) with `rcode`, the client's id, RD
/// and question, RA, and the addresses of the question's type (A or AAAA)
/// as records of the question's name with their TTLs.
pub fn records_reply(query: &[u8], q: &Query, rcode: u8, addrs: &[(IpAddr, u32)]) -> Vec<u8> {
    let records: Vec<&(IpAddr, u32)> = addrs
        .iter()
        .filter(|(a, _)| match q.qtype {
            TYPE_A => a.is_ipv4(),
            TYPE_AAAA => a.is_ipv6(),
            _ => false,
        })
        .collect();
    let mut r = error_reply(query, q, rcode);
    r[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for (addr, ttl) in records {
        r.extend_from_slice(&[0xc0, 0x0c]);
        let (ty, data) = match addr {
            IpAddr::V4(a) => (TYPE_A, a.octets().to_vec()),
            IpAddr::V6(a) => (TYPE_AAAA, a.octets().to_vec()),
        };
        r.extend_from_slice(&ty.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    r
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

    /// `query` with an OPT record: payload size, DO bit and these options
    /// (code, data).
    fn with_opt(mut m: Vec<u8>, size: u16, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
        m[11] = 1;
        m.push(0);
        m.extend_from_slice(&TYPE_OPT.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        let rdata: Vec<u8> = options
            .iter()
            .flat_map(|(code, data)| {
                let mut o = code.to_be_bytes().to_vec();
                o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                o.extend_from_slice(data);
                o
            })
            .collect();
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
        m
    }

    /// Red-team pass 4 F5: nothing of the client's bytes but its question
    /// goes upstream. Client subnet (8), cookie (10), padding (12) and a
    /// made-up option, header bits (AD, CD, Z, opcode-adjacent bits), an
    /// extra record, trailing bytes and the name's letter case are gone;
    /// the OPT record that remains is plain, with a bounded size.
    #[test]
    fn the_upstream_query_carries_only_the_question() {
        let plain = query("Files.PyPI.org", TYPE_AAAA);
        let mut hostile = with_opt(
            plain.clone(),
            65000,
            true,
            &[
                (8, &[0, 1, 24, 0, 10, 1, 2]),
                (10, b"01234567secretcookie"),
                (12, &[0xaa; 64]),
                (65001, b"exfiltrated"),
            ],
        );
        hostile[2] |= 0x07; // AA, TC (RD is set)
        hostile[3] |= 0x70; // Z, AD, CD
        let q = parse_query(&hostile).unwrap();
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 65000,
                dnssec_ok: true
            })
        );
        let up = upstream_query(&q, 0xbeef);
        let want = with_opt(
            {
                let mut m = query("files.pypi.org", TYPE_AAAA);
                m[..2].copy_from_slice(&0xbeefu16.to_be_bytes());
                m
            },
            UPSTREAM_UDP_SIZE,
            true,
            &[],
        );
        assert_eq!(up, want);
        // Without EDNS: no OPT upstream either.
        let q = parse_query(&plain).unwrap();
        assert_eq!(q.edns, None);
        let up = upstream_query(&q, 7);
        assert_eq!(&up[2..12], &[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(up.len(), plain.len());
        // An extra record or trailing bytes: read as no EDNS, never sent.
        let mut extra = with_opt(plain.clone(), 4096, false, &[]);
        extra[9] = 1; // NSCOUNT
        assert_eq!(parse_query(&extra).unwrap().edns, None);
        let mut trailing = plain.clone();
        trailing.extend_from_slice(b"trailing secret");
        let q = parse_query(&trailing).unwrap();
        assert_eq!(upstream_query(&q, 7).len(), plain.len());
        // A tiny size is raised to 512 upstream; the client's limit too.
        let q = parse_query(&with_opt(plain.clone(), 100, false, &[])).unwrap();
        let up = upstream_query(&q, 7);
        assert_eq!(u16_at(&up, plain.len() + 3), Some(512));
        assert_eq!(client_udp_limit(&q), 512);
        let q = parse_query(&with_opt(plain, 4096, false, &[])).unwrap();
        assert_eq!(client_udp_limit(&q), 4096);
    }

    #[test]
    fn the_client_gets_its_own_id_and_question_back() {
        let m = query("PyPI.org", TYPE_A);
        let q = parse_query(&m).unwrap();
        let up = upstream_query(&q, 0x4242);
        let r = response(&up, &[(TYPE_A, 30, vec![192, 0, 2, 7])]);
        assert!(answered_addresses(&up, &q, &r).is_some());
        // The client's own query is not what was asked upstream.
        assert!(answered_addresses(&m, &q, &r).is_none());
        let c = reply_for_client(&m, &q, &r);
        assert_eq!(&c[..2], &m[..2]);
        assert_eq!(&c[12..q.question_end], &m[12..q.question_end]);
        assert_eq!(&c[q.question_end..], &r[q.question_end..]);
    }

    #[test]
    fn truncated_and_rewritten_answers() {
        let m = query("pypi.org", TYPE_A);
        let q = parse_query(&m).unwrap();
        let t = truncated_reply(&m, &q);
        assert!(is_truncated(&t));
        assert_eq!(t[3] & 0x0f, 0);
        assert_eq!(&t[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert!(!is_truncated(&m));
        let up = upstream_query(&q, 9);
        let r = response(&up, &[(TYPE_A, 30, vec![10, 0, 0, 1])]);
        let kept = vec![
            ("192.0.2.7".parse().unwrap(), 30),
            ("2001:db8::7".parse().unwrap(), 30),
        ];
        let a = addresses_reply(&m, &q, &r, &kept);
        assert_eq!(&a[..2], &m[..2]);
        // Only the A record (the question's type), by pointer to the question.
        assert_eq!(u16_at(&a, 6), Some(1));
        assert_eq!(
            answered_addresses(&m, &q, &a).unwrap(),
            vec![("192.0.2.7".parse().unwrap(), 30)]
        );
        // Nothing kept: NOERROR, no records.
        let none = addresses_reply(&m, &q, &r, &[]);
        assert_eq!(none[3] & 0x0f, 0);
        assert_eq!(u16_at(&none, 6), Some(0));
    }
}
