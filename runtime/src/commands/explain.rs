//! `moat explain <bundle>`: what moat would change in a bundle's
//! config.json, one line per change (before -> after, and why), or why it
//! would refuse it. Creates nothing.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use moat::harden::harden;

use super::create::{bundle_rootfs, load_bundle_spec};
use super::Ctx;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Bundle directory (holding config.json).
    #[arg(default_value = ".")]
    pub bundle: PathBuf,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Print the class of every config.json field instead (hardened,
    /// validated, passed or refused) and exit.
    #[arg(long)]
    pub fields: bool,
}

/// `moat explain --fields`: the field table, one line per field.
fn print_fields() {
    use moat::harden::fields::{FieldClass, FIELDS};
    for (path, class) in FIELDS {
        let (kind, what) = match class {
            FieldClass::Hardened(r) => ("hardened", format!("rule {r}")),
            FieldClass::Validated(r) => ("validated", format!("rule {r}")),
            FieldClass::Passed(why) => ("passed", why.to_string()),
            FieldClass::Refused(why) => ("refused", why.to_string()),
        };
        println!("{path:<32} {kind:<9} {what}");
    }
}

/// Exit status when the spec would be refused.
pub const EXIT_REFUSED: i32 = 2;

#[allow(
    clippy::disallowed_methods,
    reason = "explain mounts nothing; create pins the bundle (T29)"
)]
pub fn explain(ctx: &Ctx, args: ExplainArgs) -> Result<i32> {
    if args.fields {
        print_fields();
        return Ok(0);
    }
    let json = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => return Err(anyhow!("unknown format {other:?} (expected text or json)")),
    };
    let bundle = std::fs::canonicalize(&args.bundle)
        .with_context(|| format!("bundle {} does not exist", args.bundle.display()))?;
    let spec = load_bundle_spec(&bundle)?;
    let policy = ctx.policy()?;
    // Like create: a missing rootfs is an error, not a refusal.
    let rootfs = bundle_rootfs(&spec, &bundle)?;
    let facts = moat::facts::gather(&spec, &rootfs, None);
    let outcome = harden(&spec, &policy, &facts).and_then(|h| {
        moat::facts::check_mount_destinations(&spec, &rootfs)?;
        Ok(h)
    });
    match outcome {
        Ok(h) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "refused": null,
                        "changes": h.report.changes,
                        "notes": h.report.notes,
                    }))?
                );
            } else {
                println!(
                    "moat would run {} with {} changes:",
                    bundle.display(),
                    h.report.changes.len()
                );
                print!("{}", h.report);
            }
            Ok(0)
        }
        Err(refusal) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "refused": {"rule": refusal.rule, "detail": refusal.detail, "key": refusal.key},
                    }))?
                );
            } else {
                println!("moat would refuse {}: {refusal}", bundle.display());
            }
            Ok(EXIT_REFUSED)
        }
    }
}
