//! The probes. Each attempts exactly one attack with arguments chosen so
//! that it is harmless even where it is allowed, and classifies what the
//! kernel answered.

use std::net::SocketAddr;

use crate::outcome::Outcome;

mod caps;
mod escape;
mod identity;
mod mounts;
mod net;
mod procsys;
mod resources;
mod syscalls;
mod works;

pub use identity::{print_euid, EUID_COMMAND};
pub use works::{print_exec_token, EXEC_COMMAND};

/// What the caller passed on the command line.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--egress-target IP:PORT`: an address the caller owns.
    pub egress_target: Option<SocketAddr>,
    /// `--egress-expect-listener`: something listens at the target, so a
    /// refusal there can only come from the sandbox.
    pub egress_expect_listener: bool,
    /// `--memory-limit-mib N`: the container's memory limit.
    pub memory_limit_mib: Option<u64>,
    /// `--fork-cap N`: most children the fork bomb makes (100000; the probe
    /// never takes more than half of kernel.pid_max).
    pub fork_cap: u64,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            egress_target: None,
            egress_expect_listener: false,
            memory_limit_mib: None,
            fork_cap: 100_000,
        }
    }
}

/// Whether moat must block a probe's attack, or must let ordinary work
/// (the probe's "allowed") through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Blocked,
    Any,
    /// A must-work probe: "allowed" means the ordinary thing works;
    /// "blocked" or "error" means the sandbox broke it.
    Works,
}

impl Expect {
    pub fn label(self) -> &'static str {
        match self {
            Expect::Blocked => "blocked",
            Expect::Any => "any",
            Expect::Works => "works",
        }
    }
}

pub struct Probe {
    pub name: &'static str,
    pub threat: &'static str,
    pub expect: Expect,
    pub run: fn(&Ctx) -> Outcome,
}

const fn p(name: &'static str, threat: &'static str, run: fn(&Ctx) -> Outcome) -> Probe {
    Probe {
        name,
        threat,
        expect: Expect::Blocked,
        run,
    }
}

const fn any(name: &'static str, threat: &'static str, run: fn(&Ctx) -> Outcome) -> Probe {
    Probe {
        name,
        threat,
        expect: Expect::Any,
        run,
    }
}

/// A must-work probe. The threat is the mitigation that, over-reaching,
/// would break it.
const fn works(name: &'static str, threat: &'static str, run: fn(&Ctx) -> Outcome) -> Probe {
    Probe {
        name,
        threat,
        expect: Expect::Works,
        run,
    }
}

/// Every probe, in the order `run` runs them (the resource probes last).
pub fn all() -> Vec<Probe> {
    vec![
        // Must work: ordinary software the hardening must not break (first,
        // so the attacks and the fork bomb cannot disturb them).
        works("work_tmp_file_io", "T5", works::tmp_file_io),
        works("work_threads", "T4", works::threads),
        works("work_loopback_tcp", "T18", works::loopback_tcp),
        works("work_signals", "T4", works::signals),
        works("work_fork_exec", "T2", works::fork_exec),
        works("work_pipes_and_poll", "T4", works::pipes_and_poll),
        works("work_dev_null_urandom", "T6", works::dev_null_urandom),
        works(
            "work_unknown_syscalls_enosys",
            "T27",
            syscalls::unknown_syscalls_enosys,
        ),
        // T1: capabilities outside the allowlist.
        p("cap_raw_socket", "T1", caps::raw_socket),
        p("cap_packet_socket", "T1", caps::packet_socket),
        p("cap_mknod_char_device", "T1", caps::mknod_char_device),
        any("cap_chown_to_other_uid", "T1", caps::chown_to_other_uid),
        any("cap_sethostname", "T1", caps::sethostname),
        p("cap_chroot", "T1", caps::chroot),
        p("cap_net_admin_set_mtu", "T1", caps::net_admin_set_mtu),
        p("cap_setfcap_xattr", "T1", caps::setfcap_xattr),
        p("cap_sys_resource_rlimit", "T1", caps::raise_rlimit),
        p("cap_sys_nice_priority", "T1", caps::raise_priority),
        // T2: no_new_privs and setuid binaries.
        p("nnp_flag_set", "T2", identity::no_new_privs),
        p("setuid_binary_regains_root", "T2", identity::setuid_binary),
        // T3: user namespace and identity.
        p("uid_map_maps_host_root", "T3", identity::uid_map_host_root),
        p("gid_map_maps_host_root", "T3", identity::gid_map_host_root),
        // T8 (kernel counters): whose per-user limits the container uses.
        p("userns_owned_by_host_root", "T8", identity::userns_owner),
        // T4: seccomp.
        p("io_uring_setup", "T4", syscalls::io_uring_setup),
        p("userfaultfd", "T4", syscalls::userfaultfd),
        p("bpf_prog_load", "T4", syscalls::bpf_prog_load),
        p("perf_event_open", "T4", syscalls::perf_event_open),
        p("keyctl_session_keyring", "T4", syscalls::keyctl),
        p("request_key", "T4", syscalls::request_key),
        p("ptrace_attach_child", "T4", syscalls::ptrace_attach),
        p("process_vm_readv", "T4", syscalls::process_vm_readv),
        p("kcmp", "T4", syscalls::kcmp),
        p("kexec_load", "T4", syscalls::kexec_load),
        p("kexec_file_load", "T4", syscalls::kexec_file_load),
        p("init_module", "T4", syscalls::init_module),
        p("finit_module", "T4", syscalls::finit_module),
        p("delete_module", "T4", syscalls::delete_module),
        p("mount_tmpfs", "T4", syscalls::mount_tmpfs),
        p("umount2", "T4", syscalls::umount2),
        p("pivot_root", "T4", syscalls::pivot_root),
        p("fsopen", "T4", syscalls::fsopen),
        p("fsmount", "T4", syscalls::fsmount),
        p("fspick", "T4", syscalls::fspick),
        p("open_tree_clone", "T4", syscalls::open_tree_clone),
        p("move_mount", "T4", syscalls::move_mount),
        p("mount_setattr", "T4", syscalls::mount_setattr),
        p("unshare_user", "T4", syscalls::unshare_user),
        p("unshare_mount", "T4", syscalls::unshare_mount),
        p("clone_newuser", "T4", syscalls::clone_newuser),
        p("clone3_newuser", "T4", syscalls::clone3_newuser),
        p("setns_net", "T4", syscalls::setns_net),
        p("open_by_handle_at", "T4", syscalls::open_by_handle_at),
        p("swapon", "T4", syscalls::swapon),
        p("reboot", "T4", syscalls::reboot),
        p("settimeofday", "T4", syscalls::settimeofday),
        p("clock_settime", "T4", syscalls::clock_settime),
        p("adjtimex", "T4", syscalls::adjtimex),
        p("acct", "T4", syscalls::acct),
        p("quotactl", "T4", syscalls::quotactl),
        p("syslog_read", "T4", syscalls::syslog),
        p("iopl", "T4", syscalls::iopl),
        p("ioperm", "T4", syscalls::ioperm),
        p("fanotify_init", "T4", syscalls::fanotify_init),
        p(
            "cve_2022_0185_userns_fsconfig",
            "T4/CVE-2022-0185",
            syscalls::userns_fsconfig,
        ),
        // T5: read-only root.
        p("write_rootfs", "T5", mounts::write_rootfs),
        p("open_binary_for_write", "T5", mounts::open_binary_for_write),
        p("unbounded_tmpfs", "T5", mounts::unbounded_tmpfs),
        // T6: mount flags and devices.
        p(
            "scratch_mounts_nosuid_nodev",
            "T6",
            mounts::scratch_mount_flags,
        ),
        p("open_dev_mem", "T6", mounts::open_dev_mem),
        p("open_block_device", "T6", mounts::open_block_device),
        p("open_dev_kmsg", "T6", mounts::open_dev_kmsg),
        // T7: /proc and /sys.
        p("read_proc_kcore", "T7", procsys::read_proc_kcore),
        p("read_proc_keys", "T7", procsys::read_proc_keys),
        p("read_proc_timer_list", "T7", procsys::read_proc_timer_list),
        p("read_proc_interrupts", "T7", procsys::read_proc_interrupts),
        p("read_sys_firmware", "T7", procsys::read_sys_firmware),
        p(
            "write_proc_sysrq_trigger",
            "T7",
            procsys::write_sysrq_trigger,
        ),
        p(
            "write_proc_sys_hostname",
            "T7",
            procsys::write_proc_sys_hostname,
        ),
        p(
            "write_proc_sys_core_pattern",
            "T7",
            procsys::write_core_pattern,
        ),
        p("write_sys_kernel", "T7", procsys::write_sys_kernel),
        any("read_kallsyms_addresses", "T7", procsys::kallsyms_addresses),
        p("cgroupfs_read_only", "T7", procsys::cgroupfs_read_only),
        p("write_cgroupfs", "T7", procsys::write_cgroupfs),
        p(
            "cve_2022_0492_release_agent_write",
            "T7/CVE-2022-0492",
            procsys::release_agent_write,
        ),
        p(
            "cve_2022_0492_cgroup_mount_in_userns",
            "T7/CVE-2022-0492",
            procsys::cgroup_mount_in_userns,
        ),
        // T13: mounts and symlinks reaching host paths.
        p("host_sensitive_mount", "T13", escape::host_sensitive_mount),
        p("proc_root_escape", "T13", escape::proc_root_escape),
        // T14: CVE-2019-5736.
        p(
            "cve_2019_5736_self_exe_write",
            "T14",
            escape::self_exe_write,
        ),
        p(
            "cve_2019_5736_runtime_visible",
            "T14",
            escape::runtime_visible,
        ),
        // T15: CVE-2024-21626.
        p("cve_2024_21626_leaked_fds", "T15", escape::leaked_fds),
        p(
            "cve_2024_21626_cwd_outside_root",
            "T15",
            escape::cwd_outside_root,
        ),
        // T18: egress.
        p("egress_tcp_connect", "T18", net::egress_tcp_connect),
        // T8: resources (last: they are the slow ones).
        p("fork_bomb", "T8", resources::fork_bomb),
        any("memory_hog", "T8", resources::memory_hog),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_many_named_once_with_known_threats() {
        let probes = all();
        assert!(probes.len() >= 40, "{} probes", probes.len());
        let mut names: Vec<&str> = probes.iter().map(|p| p.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "duplicate probe names");
        let known = [
            "T1",
            "T2",
            "T3",
            "T4",
            "T5",
            "T6",
            "T7",
            "T8",
            "T13",
            "T14",
            "T15",
            "T18",
            "T27",
            "T4/CVE-2022-0185",
            "T7/CVE-2022-0492",
        ];
        for p in &probes {
            assert!(known.contains(&p.threat), "{}: {}", p.name, p.threat);
        }
    }

    #[test]
    fn must_work_probes_are_there_and_named_work() {
        let probes = all();
        for name in [
            "work_tmp_file_io",
            "work_threads",
            "work_loopback_tcp",
            "work_signals",
            "work_fork_exec",
            "work_pipes_and_poll",
        ] {
            let p = probes.iter().find(|p| p.name == name).expect(name);
            assert_eq!(p.expect, Expect::Works, "{name}");
        }
        for p in &probes {
            assert_eq!(
                p.name.starts_with("work_"),
                p.expect == Expect::Works,
                "{}: must-work probes, and only they, are named work_*",
                p.name
            );
        }
    }

    #[test]
    fn must_work_probes_work_here() {
        // Outside any sandbox (the test host) ordinary work works. Not
        // work_fork_exec: it execs the running binary, here the test
        // harness, which knows no probe subcommand. Not
        // work_unknown_syscalls_enosys: it checks the answers of moat's
        // filter (ENOSYS, EPERM), which the unfiltered host does not give.
        let ctx = Ctx::default();
        for p in all().iter().filter(|p| {
            p.expect == Expect::Works
                && p.name != "work_fork_exec"
                && p.name != "work_unknown_syscalls_enosys"
        }) {
            let o = (p.run)(&ctx);
            assert_eq!(o.label(), "allowed", "{}: {}", p.name, o.detail());
        }
    }
}
