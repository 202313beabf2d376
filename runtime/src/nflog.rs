//! Refused connections as events (issue 18, T18): the NFLOG side.
//!
//! Each refusing rule of moat's table is preceded by a rule that sends the
//! packet's headers to NFLOG group [`crate::egress::REFUSED_LOG_GROUP`],
//! within a per-table limit (`crate::egress::REFUSED_LOG_LIMIT`): a flood
//! of refused connections costs the host the limit's worth of messages,
//! no more. NFLOG groups belong to a network namespace, so moat's resolver
//! (one process per node, `crate::resolver`) holds one NFLOG socket in
//! each namespace it serves, made inside that namespace, and turns each
//! message into an event of the container (`crate::resolver_stats`).
//!
//! This module opens and configures such a socket and parses what the
//! kernel sends on it. The parser is moat's own (netlink attributes,
//! then the IPv4/IPv6 and TCP/UDP headers of the copied packet) and
//! total: truncated, misaligned or garbage input yields fewer events,
//! never a panic. The listener dying loses events only: the refusing
//! rules do not depend on it, and with no socket bound to the group the
//! kernel drops the log messages.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::egress::{IPPROTO_TCP, IPPROTO_UDP, REFUSED_LOG_GROUP};

// linux/netlink.h, linux/netfilter/nfnetlink.h, nfnetlink_log.h
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NLA_TYPE_MASK: u16 = 0x3fff;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_UDPLITE: u8 = 136;

/// Bytes of each refused packet the kernel copies: an IPv6 header (40)
/// and the ports after it, with room for IPv4 options.
pub const COPY_RANGE: u32 = 96;

/// One refused packet, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub daddr: IpAddr,
    /// The IP protocol (IPv6: the first next-header).
    pub proto: u8,
    /// The destination port (TCP, UDP, SCTP, UDP-Lite).
    pub dport: Option<u16>,
}

impl Refused {
    /// The protocol's usual name.
    pub fn proto_name(&self) -> String {
        match self.proto {
            1 => "icmp".into(),
            IPPROTO_TCP => "tcp".into(),
            IPPROTO_UDP => "udp".into(),
            58 => "ipv6-icmp".into(),
            IPPROTO_SCTP => "sctp".into(),
            IPPROTO_UDPLITE => "udplite".into(),
            n => n.to_string(),
        }
    }
}

/// Opens an NFLOG socket in the calling thread's network namespace, bound
/// to [`REFUSED_LOG_GROUP`], copying [`COPY_RANGE`] bytes per packet.
/// Fails if another socket holds the group.
pub fn socket_in_current_netns() -> io::Result<OwnedFd> {
    // An nfnetlink socket (its receive timeout bounds the waits for the
    // config ACKs below; the listener polls).
    let sock = crate::nft::socket_in_current_netns()?;
    // SAFETY: sockaddr_nl is plain data; zeroed is its unbound form (the
    // kernel picks the port id).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: addr is a valid sockaddr_nl of the given size.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut bind = Vec::new();
    attr(&mut bind, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    request(&sock, 1, &bind)?;
    let mut mode = Vec::new();
    let mut m = COPY_RANGE.to_be_bytes().to_vec();
    m.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    attr(&mut mode, NFULA_CFG_MODE, &m);
    request(&sock, 2, &mode)?;
    Ok(sock)
}

/// Appends one netlink attribute, padded to 4 bytes.
fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Sends one NFULNL config message for the group and waits for its ACK.
fn request(sock: &OwnedFd, seq: u32, attrs: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(32 + attrs.len());
    let len = (NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len()) as u32;
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.push(libc::AF_UNSPEC as u8);
    msg.push(0); // NFNETLINK_V0
    msg.extend_from_slice(&REFUSED_LOG_GROUP.to_be_bytes());
    msg.extend_from_slice(attrs);
    // SAFETY: msg is a valid buffer of its length.
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: buf is a valid writable buffer of its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (kind, msg_seq, body) in messages(&buf[..n as usize]) {
            if kind != NLMSG_ERROR || msg_seq != seq {
                continue;
            }
            let code = body
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(-libc::EPROTO);
            return if code == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-code))
            };
        }
    }
}

/// The netlink messages of `buf`: (type, sequence, body after the
/// header). Stops at the first message whose length does not fit.
fn messages(buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        out.push((kind, seq, &rest[NLMSG_HDRLEN..len]));
        let aligned = len.next_multiple_of(4);
        rest = rest.get(aligned..).unwrap_or(&[]);
    }
    out
}

/// The refused packets in what one `recv` on an NFLOG socket returned.
/// Anything that is not a well-formed packet message of
/// [`REFUSED_LOG_GROUP`] is skipped.
pub fn parse(buf: &[u8]) -> Vec<Refused> {
    messages(buf)
        .into_iter()
        .filter(|(kind, _, _)| *kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)
        .filter_map(|(_, _, body)| {
            let group = body.get(2..4)?;
            if u16::from_be_bytes([group[0], group[1]]) != REFUSED_LOG_GROUP {
                return None;
            }
            let payload = find_attr(body.get(NFGENMSG_LEN..)?, NFULA_PAYLOAD)?;
            parse_packet(payload)
        })
        .collect()
}

/// The payload of the first attribute of type `kind` in `attrs`.
fn find_attr(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    let mut rest = attrs;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        if ty == kind {
            return Some(&rest[4..len]);
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    None
}

/// Destination, protocol and port of an IP packet's first bytes.
fn parse_packet(p: &[u8]) -> Option<Refused> {
    let (daddr, proto, l4) = match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let d = p.get(16..20)?;
            // A fragment after the first carries no ports.
            let frag = p.get(6..8)?;
            let offset = u16::from_be_bytes([frag[0], frag[1]]) & 0x1fff;
            let l4 = if offset == 0 { p.get(ihl..) } else { None };
            (
                IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
                *p.get(9)?,
                l4,
            )
        }
        6 => {
            let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(d)), *p.get(6)?, p.get(40..))
        }
        _ => return None,
    };
    let dport = match proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE => l4
            .and_then(|l4| l4.get(2..4))
            .map(|b| u16::from_be_bytes([b[0], b[1]])),
        _ => None,
    };
    Some(Refused {
        daddr,
        proto,
        dport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1]);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn ipv6_udp(dst: Ipv6Addr, dport: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, IPPROTO_UDP, 64];
        p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p
    }

    /// A packet message as the kernel sends it: header, nfgenmsg, a
    /// packet-header attribute, then the payload attribute.
    fn message(group: u16, payload: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attr(&mut attrs, 1, &[0x08, 0x00, 3, 0]);
        attr(&mut attrs, NFULA_PAYLOAD, payload);
        let mut m = Vec::new();
        let len = (NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len()) as u32;
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&(NFNL_SUBSYS_ULOG << 8).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[2, 0]);
        m.extend_from_slice(&group.to_be_bytes());
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn packets_give_destination_protocol_and_port() {
        let mut buf = message(REFUSED_LOG_GROUP, &ipv4_tcp([192, 0, 2, 7], 443));
        let v6: Ipv6Addr = "2001:db8::9".parse().unwrap();
        buf.extend(message(REFUSED_LOG_GROUP, &ipv6_udp(v6, 53)));
        let got = parse(&buf);
        assert_eq!(
            got,
            vec![
                Refused {
                    daddr: "192.0.2.7".parse().unwrap(),
                    proto: IPPROTO_TCP,
                    dport: Some(443)
                },
                Refused {
                    daddr: IpAddr::V6(v6),
                    proto: IPPROTO_UDP,
                    dport: Some(53)
                },
            ]
        );
        assert_eq!(got[0].proto_name(), "tcp");
    }

    #[test]
    fn other_groups_and_messages_are_skipped() {
        let mut buf = message(1, &ipv4_tcp([192, 0, 2, 7], 443));
        let mut other = message(REFUSED_LOG_GROUP, &ipv4_tcp([192, 0, 2, 8], 80));
        other[4] = NLMSG_ERROR as u8;
        other[5] = 0;
        buf.extend(other);
        assert!(parse(&buf).is_empty());
    }

    #[test]
    fn icmp_and_later_fragments_have_no_port() {
        let mut p = ipv4_tcp([192, 0, 2, 7], 443);
        p[9] = 1;
        assert_eq!(parse(&message(REFUSED_LOG_GROUP, &p))[0].dport, None);
        let mut p = ipv4_tcp([192, 0, 2, 7], 443);
        p[7] = 8; // offset 8
        let got = parse(&message(REFUSED_LOG_GROUP, &p));
        assert_eq!((got[0].proto, got[0].dport), (IPPROTO_TCP, None));
    }

    /// Hostile or broken input: every prefix of valid messages, every
    /// byte flipped, lengths that lie, and pseudo-random garbage parse
    /// without a panic and never invent a packet that was not there.
    #[test]
    fn truncated_and_garbage_input_never_panics() {
        let mut buf = message(REFUSED_LOG_GROUP, &ipv4_tcp([192, 0, 2, 7], 443));
        buf.extend(message(
            REFUSED_LOG_GROUP,
            &ipv6_udp("2001:db8::9".parse().unwrap(), 53),
        ));
        for end in 0..=buf.len() {
            assert!(parse(&buf[..end]).len() <= 2);
        }
        for i in 0..buf.len() {
            for v in [0u8, 0xff, 0x7f, 1] {
                let mut b = buf.clone();
                b[i] = v;
                assert!(parse(&b).len() <= 2);
            }
        }
        // A message claiming to be longer than the buffer, or shorter
        // than its header; an attribute claiming more than its message.
        let mut b = buf.clone();
        b[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&b).is_empty());
        b[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse(&b).is_empty());
        let mut b = message(REFUSED_LOG_GROUP, &ipv4_tcp([192, 0, 2, 7], 443));
        b[NLMSG_HDRLEN + NFGENMSG_LEN + 8..NLMSG_HDRLEN + NFGENMSG_LEN + 10]
            .copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(parse(&b).is_empty());
        // Garbage from a small generator (xorshift).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000usize {
            let g: Vec<u8> = (0..len % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = parse(&g);
            let _ = parse_packet(&g);
        }
        // Packets cut anywhere.
        let p = ipv6_udp("2001:db8::9".parse().unwrap(), 53);
        for end in 0..p.len() {
            let _ = parse_packet(&p[..end]);
        }
        assert_eq!(parse_packet(&p[..40]).unwrap().dport, None);
    }

    /// The socket binds the group in a fresh namespace, and a second
    /// socket cannot take the group from it.
    #[test]
    fn socket_binds_the_group_once_per_namespace() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let first = socket_in_current_netns().expect("first socket binds the group");
            assert!(socket_in_current_netns().is_err());
            drop(first);
            socket_in_current_netns().expect("the group is free again");
        })
        .join()
        .unwrap();
    }
}
