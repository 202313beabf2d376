//! `moat selftest` end to end: the static probe program runs every probe
//! in a real container under moat (and runc as the baseline), and the
//! verdict must be a pass with every must-block probe blocked and every
//! must-work probe allowed; and docs/threat-model.md lists exactly the
//! probes the program has.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use moat_integration::workspace_dir;

/// `target/release/moat` and the probe program at `probe` (relative to the
/// workspace); asserts both are built (`how` says how to build them).
#[track_caller]
fn moat_and_probe(probe: &str, how: &str) -> (PathBuf, PathBuf) {
    let moat = workspace_dir().join("target/release/moat");
    let probe = workspace_dir().join(probe);
    assert!(
        moat.is_file() && probe.is_file(),
        "build first: `{how}` ({} / {})",
        moat.display(),
        probe.display()
    );
    (moat, probe)
}

/// `moat selftest --json ARGS`: its output and the JSON it printed.
fn selftest_json(moat: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    let out = Command::new(moat)
        .arg("selftest")
        .args(args)
        .arg("--json")
        .output()
        .expect("run moat selftest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "selftest printed no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, v)
}

#[test]
fn selftest_blocks_every_probe_moat_must_block() {
    let (moat, probe) = moat_and_probe("target/probe/release/moat-probe", "make build probe");
    let (out, v) = selftest_json(&moat, &["--probe", probe.to_str().unwrap()]);
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
    // Ordinary work (files in /tmp, threads, loopback, signals, fork and
    // exec, pipes) must keep working: "allowed" is the only good answer.
    let must_work: Vec<_> = probes.iter().filter(|p| p["expect"] == "works").collect();
    for name in [
        "work_tmp_file_io",
        "work_threads",
        "work_loopback_tcp",
        "work_signals",
        "work_fork_exec",
        "work_pipes_and_poll",
    ] {
        assert!(
            must_work.iter().any(|p| p["probe"] == name),
            "no must-work probe {name}"
        );
    }
    let broken: Vec<String> = must_work
        .iter()
        .filter(|p| p["moat"] != "allowed")
        .map(|p| p.to_string())
        .collect();
    assert!(
        broken.is_empty(),
        "moat broke ordinary work:\n{}",
        broken.join("\n")
    );
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

/// (threat, expect) per probe name, from `moat-probe list`.
type Listing = BTreeMap<String, (String, String)>;

/// The rows of the "## Probe list" table at the end of the threat model:
/// `| probe | threat | expect | what it attempts |`. Panics on a probe
/// listed twice or a malformed row.
fn documented_probes(doc: &str) -> Listing {
    let mut in_section = false;
    let mut header_seen = false;
    let mut rows = Listing::new();
    for line in doc.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == "## Probe list";
            continue;
        }
        if !in_section || !line.trim_start().starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if !header_seen {
            assert_eq!(
                cells[..cells.len().min(4)],
                ["probe", "threat", "expect", "what it attempts"],
                "unexpected probe table header: {line}"
            );
            header_seen = true;
            continue;
        }
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        assert!(cells.len() >= 4, "probe table row with < 4 cells: {line}");
        assert!(
            !cells[3].is_empty(),
            "probe table row without a description: {line}"
        );
        let name = cells[0].trim_matches('`').to_string();
        let prev = rows.insert(name.clone(), (cells[1].to_string(), cells[2].to_string()));
        assert!(prev.is_none(), "{name} is listed twice in the probe table");
    }
    assert!(
        header_seen,
        "docs/threat-model.md has no \"## Probe list\" table"
    );
    rows
}

#[test]
fn threat_model_lists_every_probe_one_to_one() {
    let probe = workspace_dir().join("target/probe/release/moat-probe");
    assert!(
        probe.is_file(),
        "build first: `make probe` ({})",
        probe.display()
    );
    let out = Command::new(&probe)
        .arg("list")
        .output()
        .expect("run moat-probe list");
    assert!(out.status.success(), "moat-probe list failed");
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("moat-probe list printed no JSON array");
    let mut program = Listing::new();
    for v in &listed {
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("list entry without {k}: {v}"))
                .to_string()
        };
        let prev = program.insert(field("probe"), (field("threat"), field("expect")));
        assert!(prev.is_none(), "moat-probe lists {} twice", v["probe"]);
    }
    let doc_path = workspace_dir().join("docs/threat-model.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/threat-model.md");
    let documented = documented_probes(&doc);

    let mut differences = Vec::new();
    let names: BTreeSet<&String> = program.keys().chain(documented.keys()).collect();
    for name in names {
        match (program.get(name), documented.get(name)) {
            (Some(_), None) => differences.push(format!(
                "{name}: in `moat-probe list`, missing from the threat model"
            )),
            (None, Some(_)) => differences.push(format!(
                "{name}: in the threat model, not in `moat-probe list`"
            )),
            (Some(p), Some(d)) if p != d => differences.push(format!(
                "{name}: moat-probe says threat {} expect {}, the threat model says threat {} expect {}",
                p.0, p.1, d.0, d.1
            )),
            _ => {}
        }
    }
    assert!(
        differences.is_empty(),
        "docs/threat-model.md \"## Probe list\" and `moat-probe list` differ:\n{}",
        differences.join("\n")
    );

    // Threat ids name rows of the main table ("T4", …), optionally with a
    // CVE suffix ("T4/CVE-2022-0185").
    for (name, (threat, _)) in &program {
        let id = threat.split('/').next().unwrap_or_default();
        assert!(
            doc.contains(&format!("| {id} |")),
            "{name}: threat {threat} names no row of the threat table"
        );
    }
}

/// `target/release/moat selftest` with no `--probe` picks the moat-probe
/// beside it, which `cargo build` links statically (integration/probes/
/// build.rs), and gives egress_tcp_connect a verdict (a listener in a
/// namespace selftest makes and removes); a dynamically linked probe is
/// refused with a message saying so.
#[test]
fn selftest_picks_the_static_probe_and_refuses_a_dynamic_one() {
    let (moat, probe) = moat_and_probe("target/release/moat-probe", "cargo build --release");
    let elf = std::fs::read(&probe).unwrap();
    assert_eq!(
        moat::elf::interpreter(&elf),
        Ok(None),
        "cargo build left a dynamically linked {}",
        probe.display()
    );
    let netns_before = netns_list();

    let (out, v) = selftest_json(&moat, &[]);
    assert!(out.status.success(), "selftest failed: {}", v["failed"]);
    let egress = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["probe"] == "egress_tcp_connect")
        .expect("no egress_tcp_connect probe")
        .clone();
    assert_eq!(egress["moat"], "blocked", "{egress}");
    assert_eq!(egress["runc"], "allowed", "{egress}");
    // The namespace, veths and listener are gone.
    assert_eq!(
        netns_list(),
        netns_before,
        "selftest left a network namespace"
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(": mst"),
        "selftest left a veth"
    );

    // A dynamically linked probe (the system's /bin/true is one) is refused
    // by name, before any container is made.
    let dynamic = tempfile::tempdir().unwrap();
    let fake = dynamic.path().join("moat-probe");
    std::fs::copy("/bin/true", &fake).unwrap();
    assert!(
        moat::elf::interpreter(&std::fs::read(&fake).unwrap())
            .unwrap()
            .is_some(),
        "/bin/true is static here: the refusal case needs a dynamic program"
    );
    let out = Command::new(&moat)
        .args(["selftest", "--json", "--probe"])
        .arg(&fake)
        .output()
        .expect("run moat selftest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a dynamic probe was accepted");
    assert!(
        stderr.contains("is dynamically linked") && stderr.contains("ld-linux"),
        "{stderr}"
    );
    assert_eq!(netns_list(), netns_before);
}

fn netns_list() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("moat-selftest-"))
                .collect()
        })
        .unwrap_or_default()
}
