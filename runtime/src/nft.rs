//! moat's egress ruleset sent to the kernel over nfnetlink, without the
//! `nft` binary: the encoding (pure, [`batch`]) and one socket round trip
//! ([`apply_in_current_netns`]).
//!
//! Why: creating a container used to exec `nft -f` in its new network
//! namespace, about 6 ms of a 25 ms create (loading libnftables and
//! parsing text). The same table as one nfnetlink batch costs a socket and
//! a few hundred bytes. The encoding is written here rather than taken
//! from a crate: `rustables` is GPL-3.0, and `nftnl`/`mnl` bind the C
//! libraries libnftnl (GPL-2.0) and libmnl.
//!
//! What is sent is exactly what `nft -f` sends for the text form of the
//! same [`crate::egress::rules`] (same expressions, same order), so `nft
//! list ruleset` shows the same table either way; a test in
//! `crate::netns` checks that against the real kernel. The batch is one
//! nf_tables transaction: the kernel applies all of it or none.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::egress::{
    Action, Match, Table, BLOCKED_COUNTER, CHAIN_PRIORITY, DNS_CHAIN, DNS_CHAIN_PRIORITY,
    IPPROTO_ICMPV6, NOTRACK_IN_CHAIN, NOTRACK_OUT_CHAIN, NOTRACK_PRIORITY, REFUSED_LOG_BURST,
    REFUSED_LOG_GROUP, REFUSED_LOG_LIMIT, REFUSED_LOG_RATE, TABLE,
};

// linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h
const NETLINK_NETFILTER: libc::c_int = 12;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_SIZE: u16 = 1;
/// At most this many addresses in one name set (kernel memory a tenant's
/// wildcard answers would otherwise grow without bound). A full set takes
/// no new address: the resolver answers SERVFAIL (fails closed).
pub const NAME_SET_SIZE: u32 = 4096;
const NFT_SET_TIMEOUT: u32 = 0x10;
/// nft's data types (src/datatype.h): ipv4_addr, ipv6_addr.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFT_META_MARK: u32 = 3;
/// NFT_RETURN, a negative verdict code.
const NFT_RETURN: i32 = -5;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_PRE_ROUTING: u32 = 0;
const NFT_META_IIF: u32 = 4;
/// NF_CT_STATE_BIT(IP_CT_NEW).
const CT_STATE_NEW: u32 = 0x8;
const NFTA_CONNLIMIT_COUNT: u16 = 1;
const NFTA_CONNLIMIT_FLAGS: u16 = 2;
/// `over`: the rule matches when the count exceeds the limit.
const NFT_CONNLIMIT_F_INV: u32 = 1;
const NF_ACCEPT: u32 = 1;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFT_OBJECT_LIMIT: u32 = 4;
const NFTA_LIMIT_RATE: u16 = 1;
const NFTA_LIMIT_UNIT: u16 = 2;
const NFTA_LIMIT_BURST: u16 = 3;
const NFTA_LIMIT_TYPE: u16 = 4;
const NFT_LIMIT_PKTS: u32 = 0;
const NFTA_LOG_GROUP: u16 = 1;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_OIF: u32 = 5;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
/// NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED).
const CT_STATE_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_CMP_LTE: u32 = 3;
const NFT_CMP_GTE: u32 = 5;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_OBJREF_IMM_TYPE: u16 = 1;
const NFTA_OBJREF_IMM_NAME: u16 = 2;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFT_REJECT_TCP_RST: u32 = 1;
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_ADMIN_PROHIBITED: u8 = 3;

/// The chain moat's rules live in.
const CHAIN: &str = "output";

/// Netlink attributes being written into a buffer (nested ones by
/// [`Attrs::nest`]). Every attribute is padded to 4 bytes.
struct Attrs<'a>(&'a mut Vec<u8>);

impl Attrs<'_> {
    fn put(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        pad(self.0);
    }

    fn str(&mut self, kind: u16, s: &str) {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(kind, &b);
    }

    /// Numbers in nf_tables attributes are big endian.
    fn be32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_be_bytes());
    }

    fn be64(&mut self, kind: u16, v: u64) {
        self.put(kind, &v.to_be_bytes());
    }

    fn nest(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) {
        let start = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        fill(&mut Attrs(self.0));
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// A data attribute (NFTA_*_DATA): a nested NFTA_DATA_VALUE.
    fn data(&mut self, kind: u16, value: &[u8]) {
        self.nest(kind, |a| a.put(NFTA_DATA_VALUE, value));
    }

    /// One expression of a rule.
    fn expr(&mut self, name: &str, fill: impl FnOnce(&mut Attrs)) {
        self.nest(NFTA_LIST_ELEM, |a| {
            a.str(NFTA_EXPR_NAME, name);
            a.nest(NFTA_EXPR_DATA, fill);
        });
    }

    fn meta(&mut self, key: u32) {
        self.expr("meta", |a| {
            a.be32(NFTA_META_DREG, NFT_REG_1);
            a.be32(NFTA_META_KEY, key);
        });
    }

    fn cmp(&mut self, op: u32, value: &[u8]) {
        self.expr("cmp", |a| {
            a.be32(NFTA_CMP_SREG, NFT_REG_1);
            a.be32(NFTA_CMP_OP, op);
            a.data(NFTA_CMP_DATA, value);
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |a| {
            a.be32(NFTA_PAYLOAD_DREG, NFT_REG_1);
            a.be32(NFTA_PAYLOAD_BASE, base);
            a.be32(NFTA_PAYLOAD_OFFSET, offset);
            a.be32(NFTA_PAYLOAD_LEN, len);
        });
    }

    fn bitwise(&mut self, mask: &[u8]) {
        self.expr("bitwise", |a| {
            a.be32(NFTA_BITWISE_SREG, NFT_REG_1);
            a.be32(NFTA_BITWISE_DREG, NFT_REG_1);
            a.be32(NFTA_BITWISE_LEN, mask.len() as u32);
            a.data(NFTA_BITWISE_MASK, mask);
            a.data(NFTA_BITWISE_XOR, &vec![0; mask.len()]);
        });
    }

    fn counter_ref(&mut self) {
        self.objref(NFT_OBJECT_COUNTER, BLOCKED_COUNTER);
    }

    /// A reference to the table's stateful object `name` of type `ty`.
    fn objref(&mut self, ty: u32, name: &str) {
        self.expr("objref", |a| {
            a.be32(NFTA_OBJREF_IMM_TYPE, ty);
            a.str(NFTA_OBJREF_IMM_NAME, name);
        });
    }
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// The expressions `nft` generates for one match (see `nft --debug=netlink`):
/// dependencies first (family, protocol), then the load and compare.
fn encode_match(a: &mut Attrs, m: &Match) {
    match m {
        Match::OifLoopback => {
            a.meta(NFT_META_OIF);
            // Interface indexes are host-endian; lo is 1 in every namespace.
            a.cmp(NFT_CMP_EQ, &1u32.to_ne_bytes());
        }
        Match::IifLoopback => {
            a.meta(NFT_META_IIF);
            a.cmp(NFT_CMP_EQ, &1u32.to_ne_bytes());
        }
        Match::CtEstablishedRelated => ct_state(a, CT_STATE_ESTABLISHED_RELATED),
        Match::CtNew => ct_state(a, CT_STATE_NEW),
        Match::CtCountOver(n) => a.expr("connlimit", |a| {
            a.be32(NFTA_CONNLIMIT_COUNT, *n);
            a.be32(NFTA_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
        }),
        Match::Sport { proto, port } => {
            a.meta(NFT_META_L4PROTO);
            a.cmp(NFT_CMP_EQ, &[*proto]);
            a.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2);
            a.cmp(NFT_CMP_EQ, &port.to_be_bytes());
        }
        Match::Saddr { addr, prefix } => addr_match(a, *addr, *prefix, 12, 8),
        Match::Icmpv6Type(t) => {
            a.meta(NFT_META_NFPROTO);
            a.cmp(NFT_CMP_EQ, &[NFPROTO_IPV6]);
            a.meta(NFT_META_L4PROTO);
            a.cmp(NFT_CMP_EQ, &[IPPROTO_ICMPV6]);
            a.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
            a.cmp(NFT_CMP_EQ, &[*t]);
        }
        Match::Daddr { addr, prefix } => addr_match(a, *addr, *prefix, 16, 24),
        Match::L4Proto(p) => {
            a.meta(NFT_META_L4PROTO);
            a.cmp(NFT_CMP_EQ, &[*p]);
        }
        Match::Mark(m) => {
            a.meta(NFT_META_MARK);
            // Marks are host-endian.
            a.cmp(NFT_CMP_EQ, &m.to_ne_bytes());
        }
        Match::DaddrInSet { set, v6 } => {
            let (family, offset, len) = if *v6 {
                (NFPROTO_IPV6, 24, 16)
            } else {
                (NFPROTO_IPV4, 16, 4)
            };
            a.meta(NFT_META_NFPROTO);
            a.cmp(NFT_CMP_EQ, &[family]);
            a.payload(NFT_PAYLOAD_NETWORK_HEADER, offset, len);
            // By name: the kernel finds a set created earlier in the
            // same transaction by its name too.
            a.expr("lookup", |a| {
                a.str(NFTA_LOOKUP_SET, set);
                a.be32(NFTA_LOOKUP_SREG, NFT_REG_1);
            });
        }
        Match::Dport { proto, from, to } => {
            a.meta(NFT_META_L4PROTO);
            a.cmp(NFT_CMP_EQ, &[*proto]);
            a.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
            if from == to {
                a.cmp(NFT_CMP_EQ, &from.to_be_bytes());
            } else {
                a.cmp(NFT_CMP_GTE, &from.to_be_bytes());
                a.cmp(NFT_CMP_LTE, &to.to_be_bytes());
            }
        }
    }
}

/// `ct state` with any of `bits`.
fn ct_state(a: &mut Attrs, bits: u32) {
    a.expr("ct", |a| {
        a.be32(NFTA_CT_DREG, NFT_REG_1);
        a.be32(NFTA_CT_KEY, NFT_CT_STATE);
    });
    a.bitwise(&bits.to_ne_bytes());
    a.cmp(NFT_CMP_NEQ, &0u32.to_ne_bytes());
}

/// An address within `addr/prefix` at the network header's `v4_offset`
/// or `v6_offset` (destination 16/24, source 12/8).
fn addr_match(a: &mut Attrs, addr: IpAddr, prefix: u8, v4_offset: u32, v6_offset: u32) {
    let (family, offset, bytes) = match addr {
        IpAddr::V4(v4) => (NFPROTO_IPV4, v4_offset, v4.octets().to_vec()),
        IpAddr::V6(v6) => (NFPROTO_IPV6, v6_offset, v6.octets().to_vec()),
    };
    a.meta(NFT_META_NFPROTO);
    a.cmp(NFT_CMP_EQ, &[family]);
    let prefix = usize::from(prefix);
    if prefix > 0 && prefix.is_multiple_of(8) {
        // Whole bytes: compare just those.
        a.payload(NFT_PAYLOAD_NETWORK_HEADER, offset, (prefix / 8) as u32);
        a.cmp(NFT_CMP_EQ, &bytes[..prefix / 8]);
    } else {
        let mask: Vec<u8> = (0..bytes.len())
            .map(|i| {
                let bits = prefix.saturating_sub(i * 8).min(8);
                if bits == 0 {
                    0
                } else {
                    0xffu8 << (8 - bits)
                }
            })
            .collect();
        let net: Vec<u8> = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
        a.payload(NFT_PAYLOAD_NETWORK_HEADER, offset, bytes.len() as u32);
        a.bitwise(&mask);
        a.cmp(NFT_CMP_EQ, &net);
    }
}

fn verdict(a: &mut Attrs, code: u32) {
    a.expr("immediate", |a| {
        a.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
        a.nest(NFTA_IMMEDIATE_DATA, |a| {
            a.nest(NFTA_DATA_VERDICT, |a| a.be32(NFTA_VERDICT_CODE, code));
        });
    })
}

fn encode_action(a: &mut Attrs, action: Action) {
    match action {
        Action::Accept => verdict(a, NF_ACCEPT),
        Action::Return => verdict(a, NFT_RETURN as u32),
        Action::Redirect => a.expr("redir", |_| {}),
        Action::Notrack => a.expr("notrack", |_| {}),
        Action::CountAndResetTcp => {
            a.counter_ref();
            a.expr("reject", |a| a.be32(NFTA_REJECT_TYPE, NFT_REJECT_TCP_RST));
        }
        Action::LogRefused => {
            a.objref(NFT_OBJECT_LIMIT, REFUSED_LOG_LIMIT);
            a.expr("log", |a| {
                a.put(NFTA_LOG_GROUP, &REFUSED_LOG_GROUP.to_be_bytes())
            });
        }
        Action::CountAndRejectProhibited => {
            a.counter_ref();
            a.expr("reject", |a| {
                a.be32(NFTA_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
                a.put(NFTA_REJECT_ICMP_CODE, &[NFT_REJECT_ICMPX_ADMIN_PROHIBITED]);
            });
        }
    }
}

/// Appends one netlink message: header, nfgenmsg, attributes.
fn message(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    fill: impl FnOnce(&mut Attrs),
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]); // length, filled in below
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    fill(&mut Attrs(buf));
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// The nf_tables batch that creates moat's table in an empty namespace:
/// table, the fingerprint and `blocked` counters, the refused-log limit,
/// the name sets, the
/// output chain and its rules, the DNS redirect chain and its rules (if
/// any). Every message but the batch markers asks for an ACK; returns the
/// bytes and the number of ACKs to expect (sequence numbers 1..=n).
pub fn batch(table: &Table) -> (Vec<u8>, u32) {
    let mut b = Batch::new();
    b.change(NFT_MSG_NEWTABLE, 0, &|a| a.str(NFTA_TABLE_NAME, TABLE));
    for name in [table.fingerprint.as_str(), BLOCKED_COUNTER] {
        b.change(NFT_MSG_NEWOBJ, 0, &|a| {
            a.str(NFTA_OBJ_TABLE, TABLE);
            a.str(NFTA_OBJ_NAME, name);
            a.be32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
            a.nest(NFTA_OBJ_DATA, |a| {
                a.be64(NFTA_COUNTER_BYTES, 0);
                a.be64(NFTA_COUNTER_PACKETS, 0);
            });
        });
    }
    b.change(NFT_MSG_NEWOBJ, 0, &|a| {
        a.str(NFTA_OBJ_TABLE, TABLE);
        a.str(NFTA_OBJ_NAME, REFUSED_LOG_LIMIT);
        a.be32(NFTA_OBJ_TYPE, NFT_OBJECT_LIMIT);
        a.nest(NFTA_OBJ_DATA, |a| {
            a.be64(NFTA_LIMIT_RATE, REFUSED_LOG_RATE);
            a.be64(NFTA_LIMIT_UNIT, 1); // per second
            a.be32(NFTA_LIMIT_BURST, REFUSED_LOG_BURST);
            a.be32(NFTA_LIMIT_TYPE, NFT_LIMIT_PKTS);
        });
    });
    for (i, set) in table.sets.iter().enumerate() {
        b.change(NFT_MSG_NEWSET, 0, &|a| {
            a.str(NFTA_SET_TABLE, TABLE);
            a.str(NFTA_SET_NAME, &set.name);
            a.be32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT);
            let (ty, len) = if set.v6 {
                (TYPE_IP6ADDR, 16)
            } else {
                (TYPE_IPADDR, 4)
            };
            a.be32(NFTA_SET_KEY_TYPE, ty);
            a.be32(NFTA_SET_KEY_LEN, len);
            a.be32(NFTA_SET_ID, i as u32 + 1);
            a.nest(NFTA_SET_DESC, |a| a.be32(NFTA_SET_DESC_SIZE, NAME_SET_SIZE));
        });
    }
    for (chain, kind, hook, priority, rules) in [
        (
            NOTRACK_OUT_CHAIN,
            "filter",
            NF_INET_LOCAL_OUT,
            NOTRACK_PRIORITY,
            &table.notrack_out,
        ),
        (
            NOTRACK_IN_CHAIN,
            "filter",
            NF_INET_PRE_ROUTING,
            NOTRACK_PRIORITY,
            &table.notrack_in,
        ),
        (
            CHAIN,
            "filter",
            NF_INET_LOCAL_OUT,
            CHAIN_PRIORITY,
            &table.output,
        ),
        (
            DNS_CHAIN,
            "nat",
            NF_INET_LOCAL_OUT,
            DNS_CHAIN_PRIORITY,
            &table.dns,
        ),
    ] {
        if rules.is_empty() {
            continue;
        }
        b.change(NFT_MSG_NEWCHAIN, 0, &|a| {
            a.str(NFTA_CHAIN_TABLE, TABLE);
            a.str(NFTA_CHAIN_NAME, chain);
            a.nest(NFTA_CHAIN_HOOK, |a| {
                a.be32(NFTA_HOOK_HOOKNUM, hook);
                // Signed, big endian: -150 is nft's "priority mangle".
                a.be32(NFTA_HOOK_PRIORITY, priority as u32);
            });
            a.be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
            a.str(NFTA_CHAIN_TYPE, kind);
        });
        for rule in rules {
            b.change(NFT_MSG_NEWRULE, NLM_F_APPEND, &|a| {
                a.str(NFTA_RULE_TABLE, TABLE);
                a.str(NFTA_RULE_CHAIN, chain);
                a.nest(NFTA_RULE_EXPRESSIONS, |a| {
                    for m in &rule.matches {
                        encode_match(a, m);
                    }
                    encode_action(a, rule.action);
                });
            });
        }
    }
    b.finish()
}

/// The batch that adds `addrs` to moat's set `set`, each expiring after
/// its timeout in seconds (an address already there keeps its element).
/// Empty `addrs`: no batch (None).
pub fn add_elements_batch(set: &str, addrs: &[(IpAddr, u32)]) -> Option<(Vec<u8>, u32)> {
    if addrs.is_empty() {
        return None;
    }
    let mut b = Batch::new();
    b.change(NFT_MSG_NEWSETELEM, 0, &|a| {
        a.str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        a.str(NFTA_SET_ELEM_LIST_SET, set);
        a.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |a| {
            for (addr, secs) in addrs {
                a.nest(NFTA_LIST_ELEM, |a| {
                    let key = match addr {
                        IpAddr::V4(v4) => v4.octets().to_vec(),
                        IpAddr::V6(v6) => v6.octets().to_vec(),
                    };
                    a.data(NFTA_SET_ELEM_KEY, &key);
                    a.be64(NFTA_SET_ELEM_TIMEOUT, u64::from(*secs) * 1000);
                });
            }
        });
    });
    Some(b.finish())
}

/// An nf_tables transaction being written.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
}

impl Batch {
    fn new() -> Batch {
        let mut buf = Vec::with_capacity(4096);
        message(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            0,
            0,
            libc::AF_UNSPEC as u8,
            NFNL_SUBSYS_NFTABLES,
            |_| {},
        );
        Batch { buf, seq: 0 }
    }

    /// An nf_tables message of the inet family, acknowledged.
    fn change(&mut self, cmd: u16, flags: u16, fill: &dyn Fn(&mut Attrs)) {
        self.seq += 1;
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | cmd;
        let flags = NLM_F_CREATE | NLM_F_ACK | flags;
        message(&mut self.buf, kind, flags, self.seq, NFPROTO_INET, 0, fill);
    }

    fn finish(mut self) -> (Vec<u8>, u32) {
        let acks = self.seq;
        message(
            &mut self.buf,
            NFNL_MSG_BATCH_END,
            0,
            acks + 1,
            libc::AF_UNSPEC as u8,
            NFNL_SUBSYS_NFTABLES,
            |_| {},
        );
        (self.buf, acks)
    }
}

/// Sends `batch` (from [`batch`]) to nf_tables in the calling thread's
/// network namespace and waits for its `acks` ACKs. Any error answer fails
/// the whole transaction (the kernel applies none of it) and is returned.
pub fn apply_in_current_netns(batch: &[u8], acks: u32) -> io::Result<()> {
    send_batch(&socket_in_current_netns()?, batch, acks)
}

/// An nfnetlink socket in the calling thread's network namespace (it
/// stays bound to that namespace wherever it is used), with a 5 s receive
/// timeout.
pub fn socket_in_current_netns() -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a new descriptor we now own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // A create must fail, not hang, if the kernel never answers.
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: a valid descriptor and a correctly sized timeval.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Sends `batch` on `sock` and waits for its `acks` ACKs (or the first
/// error answer).
pub fn send_batch(sock: &OwnedFd, batch: &[u8], acks: u32) -> io::Result<()> {
    // SAFETY: a valid buffer and length; the kernel is the destination
    // (a zeroed sockaddr_nl).
    let sent = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        libc::sendto(
            sock.as_raw_fd(),
            batch.as_ptr().cast(),
            batch.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != batch.len() {
        return Err(io::Error::other("short send of the nf_tables batch"));
    }
    let mut acked = 0u32;
    let mut buf = vec![0u8; 16384];
    while acked < acks {
        // SAFETY: a valid buffer of the given length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::other(
                "nf_tables closed the socket without answering",
            ));
        }
        let mut rest = &buf[..n as usize];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < 16 || len > rest.len() {
                return Err(io::Error::other("malformed netlink answer"));
            }
            if kind == NLMSG_ERROR {
                if len < 20 {
                    return Err(io::Error::other("malformed netlink error"));
                }
                let code = i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]);
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                acked += 1;
            }
            rest = &rest[((len + 3) & !3).min(rest.len())..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::parse_list;

    /// Walks the netlink messages of a batch: (type, flags, seq, length).
    fn messages(buf: &[u8]) -> Vec<(u16, u16, u32, usize)> {
        let mut out = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
            let flags = u16::from_ne_bytes(rest[6..8].try_into().unwrap());
            let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
            assert_eq!(len % 4, 0, "message length {len} not aligned");
            out.push((kind, flags, seq, len));
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn batch_is_framed_by_begin_and_end_and_acks_every_change() {
        let allow = parse_list(&["10.0.0.0/8 tcp 80,8000-8100", "2001:db8::/33"]).unwrap();
        let t = crate::egress::table(&allow.into());
        let rules = t.output.clone();
        let (buf, acks) = batch(&t);
        let msgs = messages(&buf);
        // begin, table, 2 counters, the log limit, the two notrack chains
        // and their rules, chain, rules, end
        let notrack = 2 + t.notrack_out.len() + t.notrack_in.len();
        assert_eq!(msgs.len(), 1 + 1 + 3 + notrack + 1 + rules.len() + 1);
        assert_eq!(acks as usize, msgs.len() - 2);
        assert_eq!(msgs[0].0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs.last().unwrap().0, NFNL_MSG_BATCH_END);
        for (i, (kind, flags, seq, _)) in msgs[1..msgs.len() - 1].iter().enumerate() {
            assert_eq!(kind >> 8, NFNL_SUBSYS_NFTABLES, "message {i}");
            assert_eq!(*seq as usize, i + 1);
            assert_ne!(flags & NLM_F_ACK, 0);
            assert_ne!(flags & NLM_F_CREATE, 0);
        }
        let kinds: Vec<u16> = msgs.iter().map(|m| m.0 & 0xff).collect();
        assert_eq!(
            &kinds[1..6],
            &[
                NFT_MSG_NEWTABLE,
                NFT_MSG_NEWOBJ,
                NFT_MSG_NEWOBJ,
                NFT_MSG_NEWOBJ,
                NFT_MSG_NEWCHAIN
            ]
        );
        // Three chains, each followed by its rules.
        let chains: Vec<usize> = (6..kinds.len() - 1)
            .filter(|i| kinds[*i] != NFT_MSG_NEWRULE)
            .collect();
        assert!(chains.iter().all(|i| kinds[*i] == NFT_MSG_NEWCHAIN));
        assert_eq!(chains.len(), 2, "{kinds:?}");
    }

    #[test]
    fn prefixes_compare_whole_bytes_or_mask() {
        let encode = |m: Match| {
            let mut buf = Vec::new();
            encode_match(&mut Attrs(&mut buf), &m);
            buf
        };
        let count = |buf: &[u8], name: &str| {
            buf.windows(name.len() + 1)
                .filter(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
                .count()
        };
        let daddr = |s: &str, prefix| Match::Daddr {
            addr: s.parse().unwrap(),
            prefix,
        };
        // /8 and /32: load the leading bytes, no mask.
        for m in [
            daddr("10.0.0.0", 8),
            daddr("192.0.2.7", 32),
            daddr("2001:db8::", 32),
        ] {
            assert_eq!(count(&encode(m), "bitwise"), 0);
        }
        // /12, /33 and /0: a mask.
        for m in [
            daddr("10.16.0.0", 12),
            daddr("2001:db8:8000::", 33),
            daddr("0.0.0.0", 0),
        ] {
            assert_eq!(count(&encode(m), "bitwise"), 1);
        }
        // A port range is two comparisons, a port one.
        let range = encode(Match::Dport {
            proto: 6,
            from: 8000,
            to: 8100,
        });
        assert_eq!(count(&range, "cmp"), 3);
        let port = encode(Match::Dport {
            proto: 6,
            from: 80,
            to: 80,
        });
        assert_eq!(count(&port, "cmp"), 2);
    }
}
