//! `moat ps`: the processes of a container (`--format json` for docker top).

use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use libcgroups::common::CgroupManager;

use super::{load_container, Ctx};

pub fn ps(ctx: &Ctx, args: liboci_cli::Ps) -> Result<()> {
    let container = load_container(ctx, &args.container_id)?;
    let config = container.spec().map_err(|e| anyhow!("{e}"))?;
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: args.container_id.clone(),
    })
    .map_err(|e| anyhow!("{e}"))?;
    let pids: Vec<i32> = manager
        .get_all_pids()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot list processes of {}", args.container_id))?
        .iter()
        .map(|p| p.as_raw())
        .collect();
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let options = if args.ps_options.is_empty() {
                vec!["-ef".to_string()]
            } else {
                args.ps_options.clone()
            };
            let out = Command::new("ps")
                .args(&options)
                .output()
                .context("cannot run ps")?;
            if !out.status.success() {
                bail!("ps failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            println!("{header}");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{line}");
                }
            }
        }
        other => bail!("unknown format {other:?} (expected table or json)"),
    }
    Ok(())
}
