//! `moat list`: the containers under --root.

use std::fs;

use anyhow::{bail, Result};
use libcontainer::container::Container;
use serde_json::json;

use super::{load_moat_state, Ctx};

pub fn list(ctx: &Ctx, args: liboci_cli::List) -> Result<()> {
    let root = ctx.root()?;
    let mut rows = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&root)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        if name == moat::state::PRIVATE_DIR || !entry.path().join("state.json").exists() {
            continue;
        }
        let Ok(mut c) = Container::load(entry.path()) else {
            continue;
        };
        let moat_state = load_moat_state(&root, &name).ok().flatten();
        moat::container::refresh_status(&mut c, moat_state.as_ref());
        let bundle = moat_state
            .map(|m| m.bundle)
            .unwrap_or_else(|| c.bundle().clone());
        rows.push(json!({
            "id": name,
            "pid": c.pid().map(|p| p.as_raw()).unwrap_or(0),
            "status": super::status_name(c.status()),
            "bundle": bundle,
            "created": c.created().map(|t| t.to_rfc3339()),
            "owner": "root",
        }));
    }
    if args.quiet {
        for r in &rows {
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&rows)?),
        "table" => {
            println!(
                "{:<24} {:<8} {:<10} {:<40} CREATED",
                "ID", "PID", "STATUS", "BUNDLE"
            );
            for r in &rows {
                println!(
                    "{:<24} {:<8} {:<10} {:<40} {}",
                    r["id"].as_str().unwrap_or_default(),
                    r["pid"].as_i64().unwrap_or(0),
                    r["status"].as_str().unwrap_or_default(),
                    r["bundle"].as_str().unwrap_or_default(),
                    r["created"].as_str().unwrap_or_default()
                );
            }
        }
        other => bail!("unknown format {other:?} (expected table or json)"),
    }
    Ok(())
}
