//! pause, resume and update: acting on a container's cgroup as it exists,
//! never creating it (T36, the rest of red-team finding G1).
//!
//! libcontainer's `pause`/`resume` go through libcgroups by path, whose v1
//! freezer `apply` is `mkdir -p`: pausing a container whose cgroup its
//! `delete` just removed (the engine looked it up as running a moment
//! before) made the cgroup again, and nothing removed it. Here the
//! container's cgroup directory is opened first (a removed one fails with
//! one line) and written through that descriptor.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use libcgroups::common::{CgroupManager, CgroupSetup, ControllerOpt};
use libcontainer::container::{Container, ContainerStatus};
use oci_spec::runtime::LinuxResources;

use crate::cgroup_join::{CgroupDir, Hierarchy};

/// The container's cgroup path, as libcontainer placed it.
fn cgroup_path(container: &Container) -> Result<PathBuf> {
    Ok(container.spec().map_err(|e| anyhow!("{e}"))?.cgroup_path)
}

/// Freezes every process of the container and records it as paused. The
/// caller has checked that it is running.
pub fn pause(container: &mut Container) -> Result<()> {
    set_frozen(container, true)?;
    container
        .set_status(ContainerStatus::Paused)
        .save()
        .map_err(|e| anyhow!("{e}"))
        .context("cannot record the paused state")
}

/// Thaws the container and records it as running. The caller has checked
/// that it is paused.
pub fn resume(container: &mut Container) -> Result<()> {
    set_frozen(container, false)?;
    container
        .set_status(ContainerStatus::Running)
        .save()
        .map_err(|e| anyhow!("{e}"))
        .context("cannot record the running state")
}

fn set_frozen(container: &Container, frozen: bool) -> Result<()> {
    let path = cgroup_path(container)?;
    crate::cgroup_join::set_frozen(&path, frozen).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "the cgroup of container {} is gone (deleted?): {e}",
                container.id()
            )
        } else {
            anyhow!("{e}")
        }
    })
}

/// One write of an update to a v1 controller's file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V1Write {
    controller: &'static str,
    file: String,
    value: String,
}

/// The writes of one update, in order.
#[derive(Default)]
struct V1Writes(Vec<V1Write>);

impl V1Writes {
    /// `value` to `controller`'s `file`.
    fn push(&mut self, controller: &'static str, file: &str, value: impl ToString) {
        self.0.push(V1Write {
            controller,
            file: file.to_string(),
            value: value.to_string(),
        });
    }

    /// `value` to `controller`'s `file` when the spec sets it.
    fn set(&mut self, controller: &'static str, file: &str, value: Option<impl ToString>) {
        if let Some(v) = value {
            self.push(controller, file, v);
        }
    }

    /// As [`V1Writes::set`], except a 0 (or an empty list), which runc
    /// reads as "leave as is" for these fields.
    fn set_nonzero<T>(&mut self, controller: &'static str, file: &str, value: Option<T>)
    where
        T: ToString + PartialEq + Default,
    {
        self.set(controller, file, value.filter(|v| *v != T::default()));
    }
}

/// Whether `size` names a huge page size as the kernel's hugetlb files do
/// (`2MB`, `1GB`, `64KB`): a power-of-two number and a unit, so it can
/// only name a file of the container's own directory.
fn hugepage_size_is_plain(size: &str) -> bool {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB")
        && digits.parse::<u64>().is_ok_and(u64::is_power_of_two)
}

/// The v1 files an update of `resources` writes, in order, as runc's and
/// libcgroups' v1 managers write them (0 means "leave as is" for the
/// fields runc treats so). `memory_limit_now` is the container's
/// `memory.limit_in_bytes`, read only when a memory limit and a swap limit
/// are both set: the kernel keeps the memory limit at or below the
/// memory+swap limit, so when the new swap limit is at or above the
/// current memory limit it goes first, else last.
fn v1_writes(
    resources: &LinuxResources,
    memory_limit_now: impl FnOnce() -> Result<i64>,
) -> Result<Vec<V1Write>> {
    let mut w = V1Writes::default();
    if let Some(cpu) = resources.cpu() {
        w.set_nonzero("cpu", "cpu.shares", cpu.shares());
        w.set_nonzero("cpu", "cpu.cfs_period_us", cpu.period());
        w.set_nonzero("cpu", "cpu.cfs_quota_us", cpu.quota());
        w.set("cpu", "cpu.cfs_burst_us", cpu.burst());
        // The runtime must fit in the period: a new period first.
        w.set_nonzero("cpu", "cpu.rt_period_us", cpu.realtime_period());
        w.set_nonzero("cpu", "cpu.rt_runtime_us", cpu.realtime_runtime());
        w.set("cpu", "cpu.idle", cpu.idle());
        w.set_nonzero("cpuset", "cpuset.cpus", cpu.cpus().as_deref());
        w.set_nonzero("cpuset", "cpuset.mems", cpu.mems().as_deref());
    }
    if let Some(memory) = resources.memory() {
        const LIMIT: &str = "memory.limit_in_bytes";
        const SWAP: &str = "memory.memsw.limit_in_bytes";
        let limit = memory.limit().filter(|l| *l != 0);
        let swap = memory.swap().filter(|s| *s != 0);
        match (limit, swap) {
            (Some(l), Some(s)) => {
                if s == -1 || s >= memory_limit_now()? {
                    w.push("memory", SWAP, s);
                    w.push("memory", LIMIT, l);
                } else {
                    w.push("memory", LIMIT, l);
                    w.push("memory", SWAP, s);
                }
            }
            // No memory limit above an older memory+swap limit.
            (Some(-1), None) => {
                w.push("memory", SWAP, -1);
                w.push("memory", LIMIT, -1);
            }
            // One of them, or neither.
            (l, s) => {
                w.set("memory", LIMIT, l);
                w.set("memory", SWAP, s);
            }
        }
        w.set_nonzero("memory", "memory.soft_limit_in_bytes", memory.reservation());
        // Kernel memory: runc's v1 manager ignores `kernel` (with a
        // warning) since kernels deprecated it, and this one accepts the
        // write and keeps no limit (measured on 6.18): refused rather than
        // dropped, before anything is written (review L8). `kernelTCP` is
        // still a limit on v1, written as runc and libcgroups write it.
        if let Some(k) = memory.kernel().filter(|k| *k != 0) {
            return Err(anyhow!(
                "linux.resources.memory.kernel ({k}) is not applied: kernel memory limits are deprecated, cgroup v1 kernels ignore them (runc does too); nothing was changed"
            ));
        }
        if let Some(t) = memory.kernel_tcp().filter(|t| *t != 0) {
            w.push("memory", "memory.kmem.tcp.limit_in_bytes", t);
        }
        if let Some(swappiness) = memory.swappiness() {
            if swappiness > 100 {
                return Err(anyhow!(
                    "invalid memory swappiness {swappiness}: it must be between 0 and 100"
                ));
            }
            w.push("memory", "memory.swappiness", swappiness);
        }
    }
    if let Some(pids) = resources.pids() {
        let limit = pids.limit();
        if limit > 0 {
            w.push("pids", "pids.max", limit);
        } else {
            w.push("pids", "pids.max", "max");
        }
    }
    if let Some(blkio) = resources.block_io() {
        // `blkio.weight` is CFQ's; without it, BFQ's (as runc).
        w.set_nonzero("blkio", "blkio.weight", blkio.weight());
        w.set_nonzero("blkio", "blkio.leaf_weight", blkio.leaf_weight());
        for d in blkio.weight_device().iter().flatten() {
            if let Some(weight) = d.weight() {
                let line = format!("{}:{} {weight}", d.major(), d.minor());
                w.push("blkio", "blkio.weight_device", line);
            }
        }
        for (file, devices) in [
            (
                "blkio.throttle.read_bps_device",
                blkio.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                blkio.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                blkio.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                blkio.throttle_write_iops_device(),
            ),
        ] {
            for d in devices.iter().flatten() {
                let line = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                w.push("blkio", file, line);
            }
        }
    }
    // Network classes (only when the policy allows them: the caller ran
    // `refuse_network_classes`): net_cls and net_prio, as libcgroups wrote
    // them at create and runc's v1 manager does; an interface name must be
    // one (no separator that would make one write set another line).
    if let Some(network) = resources.network() {
        if let Some(class) = network.class_id() {
            w.push("net_cls", "net_cls.classid", class);
        }
        for p in network.priorities().iter().flatten() {
            let name = p.name();
            if name.is_empty()
                || name.len() > 15
                || name.chars().any(|c| c.is_whitespace() || c == '/')
            {
                return Err(anyhow!(
                    "invalid interface name {name:?} in linux.resources.network.priorities"
                ));
            }
            w.push(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{name} {}", p.priority()),
            );
        }
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let size = limit.page_size();
        if !hugepage_size_is_plain(size) {
            return Err(anyhow!("invalid huge page size {size:?}"));
        }
        let file = format!("hugetlb.{size}.limit_in_bytes");
        w.push("hugetlb", &file, limit.limit());
    }
    Ok(w.0)
}

/// Writes `writes` through the container's v1 cgroup directories, each
/// opened once as it exists (never created) before the first write: a
/// removed cgroup fails with one line and nothing is written; every file
/// is opened relative to its directory's descriptor, `O_NOFOLLOW`, so a
/// directory renamed or swapped for a link after the open is not followed.
fn apply_v1(
    path: &std::path::Path,
    writes: &[V1Write],
    gone: impl Fn(std::io::Error) -> anyhow::Error,
) -> Result<()> {
    let mut dirs: Vec<(&str, CgroupDir)> = Vec::new();
    for write in writes {
        if !dirs.iter().any(|(c, _)| *c == write.controller) {
            let dir = CgroupDir::open(path, Hierarchy::V1(write.controller)).map_err(&gone)?;
            dirs.push((write.controller, dir));
        }
    }
    for write in writes {
        let Some((_, dir)) = dirs.iter().find(|(c, _)| *c == write.controller) else {
            continue;
        };
        let mut file = write.file.as_str();
        if file == "blkio.weight" && dir.read(file).is_err() {
            file = "blkio.bfq.weight";
        }
        dir.write(file, &write.value).map_err(|e| {
            if file == "memory.limit_in_bytes" && e.raw_os_error() == Some(libc::EBUSY) {
                let usage = |f: &str| {
                    dir.read(f)
                        .map(|t| t.trim().to_string())
                        .unwrap_or_default()
                };
                anyhow!(
                    "unable to set memory limit to {} (current usage: {}, peak usage: {})",
                    write.value,
                    usage("memory.usage_in_bytes"),
                    usage("memory.max_usage_in_bytes")
                )
            } else {
                anyhow!("failed to write {:?}: {e}", write.value)
            }
        })?;
    }
    Ok(())
}

/// Applies `resources` (already held to the policy) to the container's
/// existing cgroup, through descriptors of its directories, never by a
/// path looked up again (T36). On the unified hierarchy (cgroupfs driver)
/// libcgroups' v2 manager writes through the directory's descriptor; on a
/// v1 or hybrid host moat writes each v1 file itself, relative to the
/// controller directory it opened ([`apply_v1`]): libcgroups' v1
/// controllers are private and take paths.
pub fn update(container: &Container, resources: &LinuxResources) -> Result<()> {
    let path = cgroup_path(container)?;
    let id = container.id();
    let gone = |e: std::io::Error| anyhow!("the cgroup of container {id} is gone (deleted?): {e}");
    let unified = matches!(
        libcgroups::common::get_cgroup_setup().map_err(|e| anyhow!("{e}"))?,
        CgroupSetup::Unified
    );
    if !unified {
        let writes = v1_writes(resources, || {
            let dir = CgroupDir::open(&path, Hierarchy::V1("memory")).map_err(gone)?;
            let text = dir.read("memory.limit_in_bytes")?;
            text.trim()
                .parse()
                .with_context(|| format!("malformed memory.limit_in_bytes {text:?}"))
        })?;
        return apply_v1(&path, &writes, gone);
    }
    let opt = ControllerOpt {
        resources,
        disable_oom_killer: false,
        oom_score_adj: None,
        freezer_state: None,
    };
    if !container.systemd() {
        let dir = CgroupDir::open(&path, Hierarchy::Unified).map_err(gone)?;
        let manager = libcgroups::v2::manager::Manager::new(dir.fd_path(), PathBuf::new())
            .map_err(|e| anyhow!("{e}"))?;
        return manager.apply(&opt).map_err(|e| anyhow!("{e}"));
    }
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: path,
        systemd_cgroup: true,
        container_name: id.to_string(),
    })
    .map_err(|e| anyhow!("{e}"))?;
    manager.apply(&opt).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };

    fn files(writes: &[V1Write]) -> Vec<String> {
        writes
            .iter()
            .map(|w| format!("{}/{}={}", w.controller, w.file, w.value))
            .collect()
    }

    fn never() -> Result<i64> {
        panic!("the current memory limit is read only for limit and swap together")
    }

    #[test]
    fn an_update_writes_each_field_to_its_v1_file() {
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            files(&v1_writes(&r, never).unwrap()),
            [
                "cpu/cpu.shares=512",
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=50000",
                "cpuset/cpuset.cpus=0",
                "pids/pids.max=10"
            ]
        );
        let none = LinuxResourcesBuilder::default().build().unwrap();
        assert!(v1_writes(&none, never).unwrap().is_empty());
    }

    /// A 0 (or an empty cpu list) leaves the field as is, as in runc;
    /// burst and idle, where 0 is a value, are written.
    #[test]
    fn zero_leaves_a_field_as_is_except_burst_and_idle() {
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(0u64)
                    .quota(0i64)
                    .burst(0u64)
                    .idle(0i64)
                    .cpus("")
                    .build()
                    .unwrap(),
            )
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(0)
                    .reservation(0)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            files(&v1_writes(&r, never).unwrap()),
            ["cpu/cpu.cfs_burst_us=0", "cpu/cpu.idle=0"]
        );
    }

    /// The memory limit never goes above the memory+swap limit in between.
    #[test]
    fn memory_and_swap_are_written_in_the_order_the_kernel_accepts() {
        let mem = |limit: i64, swap: Option<i64>| {
            let mut m = LinuxMemoryBuilder::default().limit(limit);
            if let Some(s) = swap {
                m = m.swap(s);
            }
            LinuxResourcesBuilder::default()
                .memory(m.build().unwrap())
                .build()
                .unwrap()
        };
        let raised = v1_writes(&mem(200, Some(400)), || Ok(100)).unwrap();
        assert_eq!(
            files(&raised),
            [
                "memory/memory.memsw.limit_in_bytes=400",
                "memory/memory.limit_in_bytes=200"
            ]
        );
        let lowered = v1_writes(&mem(50, Some(60)), || Ok(100)).unwrap();
        assert_eq!(
            files(&lowered),
            [
                "memory/memory.limit_in_bytes=50",
                "memory/memory.memsw.limit_in_bytes=60"
            ]
        );
        let unlimited = v1_writes(&mem(-1, None), never).unwrap();
        assert_eq!(
            files(&unlimited),
            [
                "memory/memory.memsw.limit_in_bytes=-1",
                "memory/memory.limit_in_bytes=-1"
            ]
        );
        let swappy = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .swappiness(101u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = v1_writes(&swappy, never).unwrap_err().to_string();
        assert!(err.contains("swappiness 101"), "{err}");
    }

    /// Review L8: kernel memory, kernelTCP and network classes are never
    /// dropped silently on v1: `kernel` (ignored by the kernel and runc) is
    /// refused before anything is written, the others are written.
    #[test]
    fn kernel_memory_and_network_classes_are_applied_or_refused() {
        use oci_spec::runtime::{LinuxInterfacePriorityBuilder, LinuxNetworkBuilder};
        let kmem = |kernel: Option<i64>, tcp: Option<i64>| {
            let mut m = LinuxMemoryBuilder::default();
            if let Some(k) = kernel {
                m = m.kernel(k);
            }
            if let Some(t) = tcp {
                m = m.kernel_tcp(t);
            }
            LinuxResourcesBuilder::default()
                .memory(m.build().unwrap())
                .build()
                .unwrap()
        };
        let err = v1_writes(&kmem(Some(1 << 24), Some(1 << 20)), never)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory.kernel")
                && err.contains("nothing was changed")
                && !err.contains('\n'),
            "{err}"
        );
        assert_eq!(
            files(&v1_writes(&kmem(None, Some(1 << 20)), never).unwrap()),
            ["memory/memory.kmem.tcp.limit_in_bytes=1048576"]
        );
        let net = |name: &str| {
            LinuxResourcesBuilder::default()
                .network(
                    LinuxNetworkBuilder::default()
                        .class_id(0x100001u32)
                        .priorities(vec![LinuxInterfacePriorityBuilder::default()
                            .name(name)
                            .priority(5u32)
                            .build()
                            .unwrap()])
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        assert_eq!(
            files(&v1_writes(&net("eth0"), never).unwrap()),
            [
                "net_cls/net_cls.classid=1048577",
                "net_prio/net_prio.ifpriomap=eth0 5"
            ]
        );
        for bad in ["eth0 1\nlo", "", "a/b", "0123456789abcdef"] {
            assert!(v1_writes(&net(bad), never).is_err(), "{bad:?}");
        }
    }

    /// A huge page size names a file of the container's directory only.
    #[test]
    fn a_hugepage_size_is_a_plain_power_of_two() {
        for ok in ["2MB", "1GB", "64KB"] {
            assert!(hugepage_size_is_plain(ok), "{ok}");
        }
        for bad in ["3MB", "../x", "2MB/../../x", "MB", "", "2mb", "2 MB"] {
            assert!(!hugepage_size_is_plain(bad), "{bad}");
            let r = LinuxResourcesBuilder::default()
                .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                    .page_size(bad)
                    .limit(1i64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap();
            assert!(v1_writes(&r, never).is_err(), "{bad}");
        }
    }
}
