//! `moat spec`: write a starter config.json (runc's default shape). moat
//! hardens it at create like any other spec.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;

pub fn spec(args: liboci_cli::Spec) -> Result<()> {
    let dir = args.bundle.unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.symlink_metadata().is_ok() {
        bail!("{} already exists; remove it first", path.display());
    }
    let spec = if args.rootless {
        Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        Spec::default()
    };
    // Never through a link planted there meanwhile (T35).
    moat::host_file::write_replacing(&path, &serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
