//! `Stats`: moat's `events --stats` JSON (libcgroups' statistics, read by
//! moat from the container's cgroup) as containerd's cgroup v1 `Metrics`.

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
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
}
