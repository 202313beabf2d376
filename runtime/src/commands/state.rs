//! `moat state`: the OCI state of a container, in runc's JSON shape, with
//! the caller's bundle (not moat's private copy) and moat's sandbox facts.

use anyhow::Result;
use serde_json::json;

use super::{load_container, load_moat_state, Ctx};

pub fn state(ctx: &Ctx, args: liboci_cli::State) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    let root = ctx.root()?;
    let moat_state = load_moat_state(&root, &args.container_id)?;
    moat::container::refresh_status(&mut container, moat_state.as_ref());
    let bundle = moat_state
        .as_ref()
        .map(|m| m.bundle.clone())
        .unwrap_or_else(|| container.bundle().clone());
    let rootfs = container
        .spec()
        .ok()
        .and_then(|_| moat_state.as_ref()?.rootfs.as_ref().map(|r| r.path.clone()));
    let status = super::status_name(container.status());
    let state = json!({
        "ociVersion": "1.2.0",
        "id": container.id(),
        "pid": container.pid().map(|p| p.as_raw()).unwrap_or(0),
        "status": status,
        "bundle": bundle,
        "rootfs": rootfs,
        "created": container.created().map(|c| c.to_rfc3339()),
        "owner": "root",
        "annotations": container.state.annotations.clone().unwrap_or_default(),
        "moat": moat_state.as_ref().map(|m| json!({
            "idRange": m.allocation.map(|a| json!({"hostId": a.range.host_id, "size": a.range.size})),
            "rootfsMode": m.rootfs.as_ref().map(|r| r.mode),
            "changes": m.report.changes.len(),
        })),
    });
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(())
}
