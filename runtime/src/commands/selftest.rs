//! `moat selftest`: proves the sandbox on this host. Builds a throwaway
//! rootfs holding the probe program (`moat-probe`, built statically from
//! integration/probes), runs every probe in a container under moat and, when
//! runc is installed, under runc as a baseline, and prints a table and a
//! verdict. Exits non-zero if any probe that moat must block was allowed,
//! or any must-work probe (file I/O, threads, loopback, signals) broke.
//!
//! Safe on a production node: the probes only attempt harmless forms of
//! each attack, and everything is created under a temporary directory and
//! deleted afterwards (containers included, also on failure).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use oci_spec::runtime::Spec;
use serde_json::Value;

use super::Ctx;

#[path = "selftest_net.rs"]
mod egress_net;

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// The static probe binary (default: moat-probe next to moat, or
    /// /usr/local/lib/moat/moat-probe).
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Skip the runc baseline even when runc is installed.
    #[arg(long)]
    pub no_baseline: bool,
}

/// One probe's outcome under each runtime.
#[derive(Debug, Default, Clone)]
struct Row {
    threat: String,
    expect: String,
    moat: String,
    moat_detail: String,
    baseline: Option<String>,
}

/// The probe to run: `--probe`, else the first of moat-probe next to moat
/// and /usr/local/lib/moat/moat-probe that is statically linked. A
/// dynamically linked one (it names a loader, `PT_INTERP`) cannot start in
/// the probe's rootfs, which holds nothing else: it is refused with a
/// message saying so, rather than run to report "ran no probe".
fn find_probe(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return static_probe(p).map(|()| p.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Some(argv0) = std::env::args_os().next() {
        let argv0 = PathBuf::from(argv0);
        let resolved = if argv0.components().count() > 1 {
            Some(argv0)
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(&argv0))
                    .find(|p| p.is_file())
            })
        };
        if let Some(dir) = resolved.and_then(|p| p.parent().map(Path::to_path_buf)) {
            candidates.push(dir.join("moat-probe"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/lib/moat/moat-probe"));
    let mut refused = Vec::new();
    for c in candidates.iter().filter(|p| p.is_file()) {
        match static_probe(c) {
            Ok(()) => return Ok(c.clone()),
            Err(e) => refused.push(format!("{e:#}")),
        }
    }
    if refused.is_empty() {
        bail!("cannot find the moat-probe binary; build it with `cargo build --release -p moat-probe` (or `make probe`) or pass --probe");
    }
    bail!("{}", refused.join("; "))
}

/// Ok when `probe` is a statically linked ELF program.
fn static_probe(probe: &Path) -> Result<()> {
    let bytes = fs::read(probe).with_context(|| format!("cannot read {}", probe.display()))?;
    match moat::elf::interpreter(&bytes) {
        Ok(None) => Ok(()),
        Ok(Some(loader)) => bail!(
            "probe {} is dynamically linked (it needs the loader {loader}), so it cannot start in the probe's empty rootfs: build it static (`cargo build --release -p moat-probe` links it statically)",
            probe.display()
        ),
        Err(e) => bail!("probe {} is not a program moat can run: {e}", probe.display()),
    }
}

/// A bundle whose rootfs holds only the probe (and the mount points).
fn make_bundle(dir: &Path, probe: &Path, caps: &[&str], args: &[&str]) -> Result<()> {
    let rootfs = dir.join("rootfs");
    for d in ["proc", "sys", "dev", "tmp", "etc", "run"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/moat-probe\n")?;
    fs::create_dir_all(rootfs.join("bin"))?;
    // /bin/sh is the image binary the rootfs-write probes try to open for
    // writing; the probe itself stands in for it.
    for path in ["moat-probe", "bin/sh"] {
        fs::copy(probe, rootfs.join(path))
            .with_context(|| format!("cannot copy {}", probe.display()))?;
        fs::set_permissions(rootfs.join(path), fs::Permissions::from_mode(0o755))?;
    }
    let mut spec = serde_json::to_value(Spec::default())?;
    spec["process"]["terminal"] = Value::Bool(false);
    spec["process"]["args"] = serde_json::json!(args);
    spec["root"]["readonly"] = Value::Bool(false);
    let caps: Vec<Value> = caps.iter().map(|c| Value::from(*c)).collect();
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set] = Value::Array(caps.clone());
    }
    spec["process"]["capabilities"]["ambient"] = Value::Array(Vec::new());
    spec["process"]["capabilities"]["inheritable"] = Value::Array(Vec::new());
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

/// The probes' command line. The fork bomb stops at 5000 children: above
/// moat's default pids limit (4096), so an uncontained run shows, and
/// small enough to be harmless on a production node.
const PROBE_ARGS: &[&str] = &["/moat-probe", "run", "--fork-cap", "5000"];

/// docker's default capability set: the baseline asks for it, and moat is
/// given the same request so the comparison is fair.
const DOCKER_DEFAULT_CAPS: &[&str] = moat::policy::DOCKER_DEFAULT_CAPABILITIES;

fn parse_outcomes(stdout: &str) -> BTreeMap<String, (String, String, String)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            Some((
                v["probe"].as_str()?.to_string(),
                (
                    v["threat"].as_str().unwrap_or_default().to_string(),
                    v["outcome"].as_str().unwrap_or("error").to_string(),
                    v["detail"].as_str().unwrap_or_default().to_string(),
                ),
            ))
        })
        .collect()
}

/// Runs the probes in container `id` (`create`, then the egress network
/// is attached to its network namespace, then `start`) and returns their
/// output once the container has stopped.
fn run_probes(
    program: &str,
    pre_args: &[&str],
    bundle: &Path,
    id: &str,
    net: Option<&egress_net::EgressNet>,
) -> Result<String> {
    let out_path = bundle.join("probes.out");
    let err_path = bundle.join("probes.err");
    let created = Command::new(program)
        .args(pre_args)
        .args(["create", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path)?)
        .stderr(fs::File::create(&err_path)?)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    let stderr = || fs::read_to_string(&err_path).unwrap_or_default();
    if !created.success() {
        bail!("{program} ran no probe: {}", stderr().trim());
    }
    if let Some(net) = net {
        match container_pid(program, pre_args, id) {
            // A failed attach leaves egress_tcp_connect without its
            // target: it then reports "not run", it cannot pass falsely.
            Ok(pid) => {
                if let Err(e) = net.attach(pid) {
                    tracing::warn!(error = %format!("{e:#}"), "egress probe network not attached");
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no pid for the egress probe network")
            }
        }
    }
    let started = Command::new(program)
        .args(pre_args)
        .args(["start", id])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} start"))?;
    if !started.status.success() {
        bail!(
            "{program} ran no probe: {}",
            String::from_utf8_lossy(&started.stderr).trim()
        );
    }
    wait_stopped(program, pre_args, id)?;
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    if stdout.trim().is_empty() {
        bail!("{program} ran no probe: {}", stderr().trim());
    }
    Ok(stdout)
}

/// The state JSON of container `id`.
fn state_of(program: &str, pre_args: &[&str], id: &str) -> Result<Value> {
    let out = Command::new(program)
        .args(pre_args)
        .args(["state", id])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} state"))?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{program} state {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn container_pid(program: &str, pre_args: &[&str], id: &str) -> Result<i32> {
    let v = state_of(program, pre_args, id)?;
    v["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("{program} state {id}: no pid"))
}

/// Waits until the probes' container has stopped (the fork bomb probe
/// included, they finish within seconds; 5 minutes is the limit).
fn wait_stopped(program: &str, pre_args: &[&str], id: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        // While the fork-bomb probe runs, starting `state` may fail (EAGAIN
        // from fork): that is retried, not fatal.
        let status = match state_of(program, pre_args, id) {
            Ok(v) => v["status"].as_str().unwrap_or_default().to_string(),
            Err(e) => format!("unknown ({e:#})"),
        };
        if status == "stopped" {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("{program}: the probes did not finish within 5 minutes (status {status})");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn selftest(ctx: &Ctx, args: SelftestArgs) -> Result<i32> {
    let probe = find_probe(args.probe.as_deref())?;
    let work = tempdir()?;
    let guard = WorkDir(work.clone());
    let me = std::env::args()
        .next()
        .ok_or_else(|| anyhow!("cannot find moat's own path"))?;
    let mut policy_args: Vec<String> = Vec::new();
    if let Some(p) = &ctx.policy_path {
        policy_args.push("--policy".into());
        policy_args.push(p.display().to_string());
    }

    // The probe list: names, threats and expectations.
    let list = Command::new(&probe)
        .arg("list")
        .output()
        .with_context(|| format!("cannot run {} list", probe.display()))?;
    let listed: Vec<Value> =
        serde_json::from_slice(&list.stdout).context("moat-probe list printed no JSON")?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for v in &listed {
        let name = v["probe"].as_str().unwrap_or_default().to_string();
        rows.insert(
            name,
            Row {
                threat: v["threat"].as_str().unwrap_or_default().to_string(),
                expect: v["expect"].as_str().unwrap_or("any").to_string(),
                moat: "not run".into(),
                ..Default::default()
            },
        );
    }

    // egress_tcp_connect's target: a listener in a network namespace this
    // selftest makes, reached over a veth pair whose other end goes into
    // each probe container's own network namespace (removed at the end).
    let net = match egress_net::EgressNet::new() {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no egress probe network");
            None
        }
    };
    let target = net.as_ref().map(|n| n.target().to_string());
    let mut probe_args: Vec<&str> = PROBE_ARGS.to_vec();
    if let Some(t) = &target {
        probe_args.extend(["--egress-target", t, "--egress-expect-listener"]);
    }
    let bundle = work.join("moat-bundle");
    make_bundle(&bundle, &probe, DOCKER_DEFAULT_CAPS, &probe_args)?;
    let root = work.join("root");
    let id = format!("moat-selftest-{}", std::process::id());
    let mut moat_args: Vec<&str> = policy_args.iter().map(String::as_str).collect();
    let root_s = root.display().to_string();
    moat_args.extend(["--root", &root_s]);
    let moat_out = run_probes(&me, &moat_args, &bundle, &id, net.as_ref());
    // Whatever happened, no container may outlive the selftest.
    let _ = Command::new(&me)
        .args(&moat_args)
        .args(["delete", "--force", &id])
        .stderr(Stdio::null())
        .status();
    for (name, (threat, outcome, detail)) in parse_outcomes(&moat_out?) {
        let row = rows.entry(name).or_default();
        if row.threat.is_empty() {
            row.threat = threat;
        }
        row.moat = outcome;
        row.moat_detail = detail;
    }

    let runc = which("runc");
    if let (Some(runc), false) = (&runc, args.no_baseline) {
        let bundle = work.join("runc-bundle");
        make_bundle(&bundle, &probe, DOCKER_DEFAULT_CAPS, &probe_args)?;
        let rroot = work.join("runc-root");
        let rroot_s = rroot.display().to_string();
        let rid = format!("moat-selftest-runc-{}", std::process::id());
        let out = run_probes(runc, &["--root", &rroot_s], &bundle, &rid, net.as_ref());
        let _ = Command::new(runc)
            .args(["--root", &rroot_s, "delete", "--force", &rid])
            .stderr(Stdio::null())
            .status();
        if let Ok(out) = out {
            for (name, (_, outcome, _)) in parse_outcomes(&out) {
                rows.entry(name).or_default().baseline = Some(outcome);
            }
        }
    }
    drop(net);
    drop(guard);

    // Only an attack that worked fails the verdict; a probe that could not
    // run here (missing precondition, e.g. no egress target) is listed.
    // A "works" probe (ordinary file I/O, threads, loopback, signals) that
    // broke fails the verdict too: a sandbox that breaks software gets
    // switched off.
    let failures: Vec<&String> = rows
        .iter()
        .filter(|(_, r)| {
            (r.expect == "blocked" && r.moat == "allowed")
                || (r.expect == "works" && r.moat != "allowed")
        })
        .map(|(n, _)| n)
        .collect();
    let not_run: Vec<&String> = rows
        .iter()
        .filter(|(_, r)| r.expect != "works" && r.moat != "blocked" && r.moat != "allowed")
        .map(|(n, _)| n)
        .collect();
    if args.json {
        let probes: Vec<Value> = rows
            .iter()
            .map(|(n, r)| {
                serde_json::json!({
                    "probe": n, "threat": r.threat, "expect": r.expect,
                    "moat": r.moat, "detail": r.moat_detail, "runc": r.baseline,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "verdict": if failures.is_empty() { "pass" } else { "fail" },
                "failed": failures,
                "notRun": not_run,
                "probes": probes,
            }))?
        );
    } else {
        println!(
            "{:<34} {:<16} {:<8} {:<8} EXPECT",
            "PROBE", "THREAT", "MOAT", "RUNC"
        );
        for (name, r) in &rows {
            println!(
                "{:<34} {:<16} {:<8} {:<8} {}",
                name,
                r.threat,
                r.moat,
                r.baseline.as_deref().unwrap_or("-"),
                r.expect
            );
        }
        let blocked_moat = rows.values().filter(|r| r.moat == "blocked").count();
        let blocked_runc = rows
            .values()
            .filter(|r| r.baseline.as_deref() == Some("blocked"))
            .count();
        println!();
        println!(
            "moat blocked {blocked_moat} of {} probes{}",
            rows.len(),
            if runc.is_some() && !args.no_baseline {
                format!("; runc (docker's capabilities, no seccomp) blocked {blocked_runc}")
            } else {
                String::new()
            }
        );
        if !not_run.is_empty() {
            println!(
                "not run here (error or missing precondition): {}",
                not_run
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if failures.is_empty() {
            println!(
                "verdict: PASS: no probe moat must block got through, and ordinary work works"
            );
        } else {
            println!(
                "verdict: FAIL: {} (a must-block probe got through, or a must-work probe broke)",
                failures
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn which(name: &str) -> Option<String> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn tempdir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("moat-selftest-{}", std::process::id()));
    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    Ok(base)
}

/// Removes the work directory when the selftest ends, however it ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
