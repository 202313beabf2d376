//! moat-probe: runs inside a container and attacks it, one attack per
//! probe, reporting for each whether the kernel refused it.
//!
//! ```text
//! moat-probe list                   JSON array of {probe, threat, expect}
//! moat-probe run [NAME...] [OPTIONS] one JSON object per line:
//!     {"probe", "threat", "expect", "outcome": blocked|allowed|error, "detail"}
//!     expect: "blocked" (moat must block it), "any", or "works" (a
//!     must-work probe: "allowed" means ordinary work works)
//! options:
//!     --egress-target IP:PORT    an address the caller owns (T18)
//!     --egress-expect-listener   something listens there
//!     --memory-limit-mib N       the container's memory limit (T8 memory_hog)
//!     --fork-cap N               most children the fork bomb makes (100000;
//!                                never more than half of kernel.pid_max)
//! ```
//!
//! Exit status: 0 when the probes ran (whatever they found), 2 for a usage
//! error. Every probe is safe where it is allowed: it uses arguments the
//! kernel rejects after its permission checks, no-ops, or undoes what it
//! did.

// The probes are attacks: most of their unsafe blocks make a raw syscall
// with arguments the kernel is expected to refuse, and soundness inside the
// sandbox is the point being tested, not an invariant to document per block.
#![allow(
    clippy::undocumented_unsafe_blocks,
    reason = "each probe is a deliberate raw syscall; see the probe's doc comment"
)]

mod outcome;
mod probes;
mod sys;

use std::io::Write;
use std::process::ExitCode;

use probes::{Ctx, Probe};

const USAGE: &str = "usage: moat-probe list
       moat-probe run [NAME...] [--egress-target IP:PORT] [--egress-expect-listener]
                      [--memory-limit-mib N] [--fork-cap N]";

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("moat-probe: {msg}\n{USAGE}");
    ExitCode::from(2)
}

/// Parsed `run` arguments: the probe names and the context.
fn parse_run_args(args: &[String]) -> Result<(Vec<String>, Ctx), String> {
    let mut ctx = Ctx::default();
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--egress-target" => {
                let v = value(a)?;
                ctx.egress_target = Some(
                    v.parse()
                        .map_err(|_| format!("--egress-target {v:?} is not IP:PORT"))?,
                );
            }
            "--egress-expect-listener" => ctx.egress_expect_listener = true,
            "--memory-limit-mib" => {
                let v = value(a)?;
                ctx.memory_limit_mib =
                    Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--memory-limit-mib {v:?} is not a positive number")
                    })?);
            }
            "--fork-cap" => {
                let v = value(a)?;
                ctx.fork_cap = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--fork-cap {v:?} is not a positive number"))?;
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => names.push(s.to_string()),
        }
    }
    Ok((names, ctx))
}

fn list(probes: &[Probe]) {
    let items: Vec<serde_json::Value> = probes
        .iter()
        .map(|p| {
            serde_json::json!({
                "probe": p.name,
                "threat": p.threat,
                "expect": p.expect.label(),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
    );
}

fn run(probes: &[Probe], names: &[String], ctx: &Ctx) -> Result<(), String> {
    for n in names {
        if !probes.iter().any(|p| p.name == n) {
            return Err(format!("no probe named {n:?} (see `moat-probe list`)"));
        }
    }
    let stdout = std::io::stdout();
    for p in probes {
        if !names.is_empty() && !names.iter().any(|n| n == p.name) {
            continue;
        }
        sys::flush_stdout();
        let outcome = (p.run)(ctx);
        let line = serde_json::json!({
            "probe": p.name,
            "threat": p.threat,
            "expect": p.expect.label(),
            "outcome": outcome.label(),
            "detail": outcome.detail(),
        });
        let mut out = stdout.lock();
        writeln!(out, "{line}").map_err(|e| format!("write stdout: {e}"))?;
        out.flush().map_err(|e| format!("write stdout: {e}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let probes = probes::all();
    match args.first().map(String::as_str) {
        Some("list") if args.len() == 1 => {
            list(&probes);
            ExitCode::SUCCESS
        }
        Some("run") => match parse_run_args(&args[1..]) {
            Ok((names, ctx)) => match run(&probes, &names, &ctx) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("moat-probe: {e}");
                    ExitCode::from(if e.starts_with("no probe named") {
                        2
                    } else {
                        1
                    })
                }
            },
            Err(e) => usage_error(&e),
        },
        Some(cmd) if cmd == probes::EXEC_COMMAND => {
            probes::print_exec_token();
            ExitCode::SUCCESS
        }
        Some(cmd) if cmd == probes::EUID_COMMAND => {
            probes::print_euid();
            ExitCode::SUCCESS
        }
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => usage_error("expected `list` or `run`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_arguments() {
        let (names, ctx) = parse_run_args(&strings(&[
            "bpf_prog_load",
            "--egress-target",
            "10.0.0.1:80",
            "--egress-expect-listener",
            "--memory-limit-mib",
            "64",
            "fork_bomb",
            "--fork-cap",
            "500",
        ]))
        .unwrap();
        assert_eq!(names, strings(&["bpf_prog_load", "fork_bomb"]));
        assert_eq!(ctx.egress_target.unwrap().to_string(), "10.0.0.1:80");
        assert!(ctx.egress_expect_listener);
        assert_eq!(ctx.memory_limit_mib, Some(64));
        assert_eq!(ctx.fork_cap, 500);
        assert!(parse_run_args(&strings(&["--egress-target", "nope"])).is_err());
        assert!(parse_run_args(&strings(&["--memory-limit-mib"])).is_err());
        assert!(parse_run_args(&strings(&["--bogus"])).is_err());
        let (_, d) = parse_run_args(&[]).unwrap();
        assert_eq!(d.fork_cap, 100_000);
        assert!(d.egress_target.is_none());
    }
}
