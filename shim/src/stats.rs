//! `Stats`: moat's `events --stats` JSON (libcgroups' statistics, read by
//! moat from the container's cgroup) as containerd's cgroup v1 `Metrics`,
//! with moat's egress counts (`moat metrics ID`, issue 18) in its
//! `network` list.
//!
//! Why there: containerd's clients decode a task's metrics only as cgroup
//! v1 or v2 `Metrics` (or Windows statistics); `ctr task metrics` refuses any
//! other type and the CRI plugin's container stats would fail, so a type of
//! moat's own would cost every consumer its CPU and memory numbers. v1
//! `Metrics` has no field for refused traffic, but `network` is a list of
//! named interface counters no consumer of a container's task metrics
//! computes anything from (kubelet reads a pod's network from its
//! namespace), so moat reports two named pseudo-interfaces there:
//! [`EGRESS_INTERFACE`] and [`DNS_INTERFACE`].

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, NetworkStat, PidsStat, Throttle,
};
use serde_json::Value;

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn memory_entry(v: &Value, key: &str) -> MemoryEntry {
    MemoryEntry {
        usage: u64_at(v, &["memory", key, "usage"]),
        max: u64_at(v, &["memory", key, "max_usage"]),
        failcnt: u64_at(v, &["memory", key, "fail_count"]),
        limit: u64_at(v, &["memory", key, "limit"]),
        ..Default::default()
    }
}

/// Converts moat's statistics; unknown or missing fields read as 0.
pub fn metrics_from_moat(json: &[u8]) -> Result<Metrics, serde_json::Error> {
    let v: Value = serde_json::from_slice(json)?;
    let per_cpu = v
        .pointer("/cpu/usage/per_core_usage_total")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let stat = |k: &str| u64_at(&v, &["memory", "stats", k]);
    Ok(Metrics {
        pids: Some(PidsStat {
            current: u64_at(&v, &["pids", "current"]),
            limit: u64_at(&v, &["pids", "limit"]),
            ..Default::default()
        })
        .into(),
        cpu: Some(CPUStat {
            usage: Some(CPUUsage {
                total: u64_at(&v, &["cpu", "usage", "usage_total"]),
                kernel: u64_at(&v, &["cpu", "usage", "usage_kernel"]),
                user: u64_at(&v, &["cpu", "usage", "usage_user"]),
                per_cpu,
                ..Default::default()
            })
            .into(),
            throttling: Some(Throttle {
                periods: u64_at(&v, &["cpu", "throttling", "periods"]),
                throttled_periods: u64_at(&v, &["cpu", "throttling", "throttled_periods"]),
                throttled_time: u64_at(&v, &["cpu", "throttling", "throttled_time"]),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(MemoryStat {
            cache: u64_at(&v, &["memory", "cache"]),
            rss: stat("rss"),
            rss_huge: stat("rss_huge"),
            mapped_file: stat("mapped_file"),
            dirty: stat("dirty"),
            writeback: stat("writeback"),
            pg_fault: stat("pgfault"),
            pg_maj_fault: stat("pgmajfault"),
            inactive_anon: stat("inactive_anon"),
            active_anon: stat("active_anon"),
            inactive_file: stat("inactive_file"),
            active_file: stat("active_file"),
            unevictable: stat("unevictable"),
            hierarchical_memory_limit: stat("hierarchical_memory_limit"),
            total_cache: stat("total_cache"),
            total_rss: stat("total_rss"),
            total_inactive_file: stat("total_inactive_file"),
            usage: Some(memory_entry(&v, "memory")).into(),
            swap: Some(memory_entry(&v, "memswap")).into(),
            kernel: Some(memory_entry(&v, "kernel")).into(),
            kernel_tcp: Some(memory_entry(&v, "kernel_tcp")).into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
}

/// Outbound packets moat's egress rules refused: `tx_dropped` (packets) and
/// `tx_bytes` (their bytes; nothing of them left the container).
pub const EGRESS_INTERFACE: &str = "moat-egress-blocked";
/// Lookups through moat's resolver: `tx_packets` names allowed and
/// forwarded, `tx_dropped` names refused (never forwarded), `tx_errors`
/// lookups answered SERVFAIL (no upstream answer, or the nftables sets
/// could not take the addresses).
pub const DNS_INTERFACE: &str = "moat-dns";

/// The samples of `moat metrics ID` (Prometheus text, one container) as
/// [`EGRESS_INTERFACE`] and [`DNS_INTERFACE`] entries; a family that is
/// absent (egress off, no name entries) gives no entry.
pub fn egress_from_moat(text: &[u8]) -> Vec<NetworkStat> {
    let text = String::from_utf8_lossy(text);
    let mut samples: Vec<(&str, u64)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse().ok()) {
            samples.push((name, value));
        }
    }
    let sum = |name: &str| {
        let mut found = samples.iter().filter(|s| s.0 == name).peekable();
        found
            .peek()
            .is_some()
            .then(|| found.map(|s| s.1).sum::<u64>())
    };
    let mut out = Vec::new();
    if let Some(packets) = sum("moat_egress_blocked_packets_total") {
        out.push(NetworkStat {
            name: EGRESS_INTERFACE.into(),
            tx_dropped: packets,
            tx_bytes: sum("moat_egress_blocked_bytes_total").unwrap_or(0),
            ..Default::default()
        });
    }
    if let Some(refused) = sum("moat_egress_dns_refused_total") {
        out.push(NetworkStat {
            name: DNS_INTERFACE.into(),
            tx_dropped: refused,
            tx_packets: sum("moat_egress_dns_allowed_total").unwrap_or(0),
            tx_errors: sum("moat_egress_dns_errors_total").unwrap_or(0),
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_libcgroups_stats() {
        let json = br#"{"cpu":{"usage":{"usage_total":1500,"usage_user":1000,"usage_kernel":500,
            "per_core_usage_total":[700,800]},"throttling":{"periods":3}},
            "pids":{"current":2,"limit":512},
            "memory":{"memory":{"usage":4096,"max_usage":8192,"fail_count":0,"limit":1048576},
            "cache":12,"stats":{"rss":2048,"total_inactive_file":7}}}"#;
        let m = metrics_from_moat(json).unwrap();
        assert_eq!(m.cpu.usage.total, 1500);
        assert_eq!(m.cpu.usage.per_cpu, vec![700, 800]);
        assert_eq!(m.cpu.throttling.periods, 3);
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.pids.limit, 512);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 1048576);
        assert_eq!(m.memory.rss, 2048);
        assert_eq!(m.memory.total_inactive_file, 7);
    }

    #[test]
    fn missing_fields_are_zero_and_garbage_is_an_error() {
        let m = metrics_from_moat(b"{}").unwrap();
        assert_eq!(m.cpu.usage.total, 0);
        assert!(metrics_from_moat(b"not json").is_err());
    }

    #[test]
    fn egress_counts_become_named_network_entries() {
        let text = b"# HELP moat_egress_blocked_packets_total x\n\
# TYPE moat_egress_blocked_packets_total counter\n\
moat_egress_blocked_packets_total{id=\"c\",pod=\"a b\"} 5\n\
moat_egress_blocked_bytes_total{id=\"c\"} 300\n\
moat_egress_dns_refused_total{id=\"c\"} 2\n\
moat_egress_dns_allowed_total{id=\"c\"} 7\n\
moat_egress_dns_errors_total{id=\"c\",kind=\"upstream\"} 1\n\
moat_egress_dns_errors_total{id=\"c\",kind=\"set\"} 3\n";
        let n = egress_from_moat(text);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].name, EGRESS_INTERFACE);
        assert_eq!((n[0].tx_dropped, n[0].tx_bytes), (5, 300));
        assert_eq!(n[1].name, DNS_INTERFACE);
        assert_eq!(
            (n[1].tx_dropped, n[1].tx_packets, n[1].tx_errors),
            (2, 7, 4)
        );
        // Only the HELP/TYPE lines (no counters): no entries.
        assert!(egress_from_moat(b"# TYPE moat_egress_dns_refused_total counter\n").is_empty());
        assert!(egress_from_moat(b"garbage {\n").is_empty());
    }
}
