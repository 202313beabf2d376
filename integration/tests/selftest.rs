//! `moat selftest` end to end: the static probe program runs every probe
//! in a real container under moat (and runc as the baseline), and the
//! verdict must be a pass with every must-block probe blocked.

use std::path::PathBuf;
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn selftest_blocks_every_probe_moat_must_block() {
    let moat = workspace().join("target/release/moat");
    let probe = workspace().join("target/probe/release/moat-probe");
    assert!(
        moat.is_file() && probe.is_file(),
        "build first: `make build probe` ({} / {})",
        moat.display(),
        probe.display()
    );
    let out = Command::new(&moat)
        .arg("selftest")
        .arg("--probe")
        .arg(&probe)
        .arg("--json")
        .output()
        .expect("run moat selftest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "selftest printed no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let probes = v["probes"].as_array().expect("probes");
    assert!(probes.len() >= 40, "only {} probes", probes.len());
    let must_block: Vec<_> = probes.iter().filter(|p| p["expect"] == "blocked").collect();
    assert!(
        must_block.len() >= 40,
        "only {} must-block probes",
        must_block.len()
    );
    for p in &must_block {
        if p["probe"] == "egress_tcp_connect" {
            // Needs a target address owned by the caller; tests/egress.rs
            // covers egress with test-made hosts.
            continue;
        }
        assert_eq!(p["moat"], "blocked", "moat allowed {p}");
    }
    assert!(
        out.status.success() || v["failed"] == serde_json::json!(["egress_tcp_connect"]),
        "selftest failed: {}",
        v["failed"]
    );
    // The baseline ran (runc is installed by hack/setup.sh) and shows what
    // moat adds: some probe runc allows, moat blocks.
    assert!(
        probes
            .iter()
            .any(|p| p["runc"] == "allowed" && p["moat"] == "blocked"),
        "no probe distinguishes moat from the runc baseline"
    );
}
