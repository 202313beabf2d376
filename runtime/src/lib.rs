//! moat: a sandboxed OCI container runtime.
//!
//! The library behind the `moat` binary (the containerd shim drives the
//! binary, it does not link this). The hardening itself ([`harden`]) is pure; the modules around it
//! ([`idpool`], [`rootfs`], [`facts`], [`nsjoin`], [`state`]) are the edges
//! that touch the host.

pub mod cgroup_join;
pub mod cgroup_probe;
pub mod container;
pub mod container_id;
pub mod dns;
pub mod docker_config;
pub mod egress;
pub mod elf;
pub mod engine_bundle;
pub mod engine_names;
pub mod engine_userns;
pub mod facts;
pub mod fd_limit;
pub mod harden;
pub mod hook_exe;
pub mod host_file;
pub mod idpool;
pub mod install;
pub mod learn;
pub mod logging;
pub mod metrics;
pub mod netns;
pub mod nflog;
pub mod nft;
pub mod nsjoin;
pub mod path_syntax;
pub mod phase;
pub mod pidfd;
pub mod pinned;
pub mod pod;
pub mod policy;
pub mod refusal;
pub mod report;
pub mod resolver;
pub mod resolver_daemon;
pub mod resolver_dir;
pub mod resolver_log;
mod resolver_set_cap;
pub mod resolver_stats;
pub mod rootfs;
pub mod runc_contract;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod self_exe;
pub mod selfcheck;
pub mod staging;
pub mod state;
