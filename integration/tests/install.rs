//! `moat install containerd|docker` run as a binary against temporary
//! config files (never /etc): idempotent, one backup, unrelated keys and
//! comments kept, malformed files refused and left untouched. That the
//! written containerd config really works is shown by tests/cri.rs, whose
//! containerd loads a config made the same way.

use std::fs;
use std::path::Path;

use moat_integration::Env;

fn moat_install(args: &[&str]) -> moat_integration::Out {
    let env = Env::new();
    let mut argv = vec!["install"];
    argv.extend_from_slice(args);
    env.moat_raw(&argv)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

const CONTAINERD_CONFIG: &str = r#"# node config, hand written
version = 2
root = "/var/lib/containerd"  # keep me

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.example/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"#;

#[test]
fn install_containerd_is_idempotent_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, CONTAINERD_CONFIG).unwrap();
    let c = config.to_str().unwrap();

    let first = moat_install(&["containerd", "--config", c]);
    first.assert_ok();
    assert!(first.stdout.contains("Restart containerd"), "{first}");
    let written = fs::read_to_string(&config).unwrap();
    assert!(written.starts_with(CONTAINERD_CONFIG), "{written}");
    let doc: toml::Value = toml::from_str(&written).unwrap();
    let moat = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["moat"];
    assert_eq!(moat["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(
        moat["options"]["BinaryName"].as_str(),
        Some("/usr/local/bin/moat")
    );
    assert_eq!(
        moat["options"]["Root"].as_str(),
        Some("/run/containerd/moat")
    );
    let backup = dir.path().join("config.toml.moat-bak");
    assert_eq!(fs::read_to_string(&backup).unwrap(), CONTAINERD_CONFIG);

    // Second run: nothing written, nothing to restart.
    let second = moat_install(&["containerd", "--config", c]);
    second.assert_ok();
    assert!(second.stdout.contains("nothing changed"), "{second}");
    assert_eq!(fs::read_to_string(&config).unwrap(), written);

    // Another binary: rewritten, but the backup stays the original.
    let third = moat_install(&[
        "containerd",
        "--config",
        c,
        "--binary",
        "/opt/moat/bin/moat",
    ]);
    third.assert_ok();
    assert!(fs::read_to_string(&config)
        .unwrap()
        .contains("BinaryName = \"/opt/moat/bin/moat\""));
    assert_eq!(fs::read_to_string(&backup).unwrap(), CONTAINERD_CONFIG);
    assert_eq!(entries(dir.path()), ["config.toml", "config.toml.moat-bak"]);

    // A second handler for another shim, beside the first.
    moat_install(&[
        "containerd",
        "--config",
        c,
        "--handler",
        "moat-shim",
        "--runtime-type",
        "io.containerd.moat.v2",
    ])
    .assert_ok();
    let doc: toml::Value = toml::from_str(&fs::read_to_string(&config).unwrap()).unwrap();
    let rts = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
    assert_eq!(
        rts["moat-shim"]["runtime_type"].as_str(),
        Some("io.containerd.moat.v2")
    );
    assert!(rts["moat-shim"].get("options").is_none());
    assert_eq!(
        rts["moat"]["options"]["BinaryName"].as_str(),
        Some("/opt/moat/bin/moat")
    );
    moat_install(&[
        "containerd",
        "--config",
        c,
        "--runtime-type",
        "io.containerd.moat.v2",
        "--binary",
        "/x",
    ])
    .assert_fails_with("options of the runc shim");
}

/// `--shim PATH` (containerd 2.x): moat's shim under the runc shim's type
/// with `runtime_path`, the form containerd 2's CRI asks for its features
/// (`cri_native_shim_reports_features_on_containerd_2` shows containerd
/// loading it); refused, file untouched, where containerd 1.x would read
/// it (it would start the pod's sandbox with runc), and with runc options.
#[test]
fn install_containerd_shim_by_path_only_for_containerd_2() {
    let dir = tempfile::tempdir().unwrap();
    let v3 = dir.path().join("v3.toml");
    fs::write(&v3, "version = 3\n").unwrap();
    let shim = "/usr/local/bin/containerd-shim-moat-v2";
    let args = |c: &Path| {
        vec![
            "containerd".to_string(),
            "--config".to_string(),
            c.display().to_string(),
            "--handler".to_string(),
            "moat-shim".to_string(),
            "--shim".to_string(),
            shim.to_string(),
        ]
    };
    let run = |c: &Path| {
        let a = args(c);
        moat_install(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    run(&v3).assert_ok();
    let written = fs::read_to_string(&v3).unwrap();
    let doc: toml::Value = toml::from_str(&written).unwrap();
    let h = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["moat-shim"];
    assert_eq!(h["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(h["runtime_path"].as_str(), Some(shim));
    assert!(h.get("options").is_none(), "{written}");
    let again = run(&v3);
    again.assert_ok();
    assert!(again.stdout.contains("nothing changed"), "{again}");

    let v2 = dir.path().join("v2.toml");
    fs::write(&v2, CONTAINERD_CONFIG).unwrap();
    let out = run(&v2);
    out.assert_fails_with("needs containerd 2's config version 3");
    out.assert_fails_with("not touching it");
    assert_eq!(fs::read_to_string(&v2).unwrap(), CONTAINERD_CONFIG);
    assert_eq!(
        entries(dir.path()),
        ["v2.toml", "v3.toml", "v3.toml.moat-bak"]
    );

    let mut with_binary = args(&v3);
    with_binary.extend(["--binary".to_string(), "/x".to_string()]);
    let out = moat_install(&with_binary.iter().map(String::as_str).collect::<Vec<_>>());
    out.assert_fails_with("cannot be used with");
    assert_eq!(fs::read_to_string(&v3).unwrap(), written);
}

#[test]
fn install_refuses_malformed_configs_and_leaves_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "containerd",
            "bad.toml",
            "version = 2\n[plugins\n",
            "not valid TOML",
        ),
        ("containerd", "v9.toml", "version = 9\n", "not supported"),
        ("docker", "bad.json", "{\"runtimes\": {", "not valid JSON"),
        ("docker", "list.json", "[]", "not a JSON object"),
    ];
    for (target, name, text, phrase) in cases {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        let out = moat_install(&[target, "--config", path.to_str().unwrap()]);
        out.assert_fails_with(phrase);
        out.assert_fails_with("not touching it");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            text,
            "{name} was changed"
        );
    }
    // No backups and no temporary files were left.
    assert_eq!(
        entries(dir.path()),
        ["bad.json", "bad.toml", "list.json", "v9.toml"]
    );
    // A bad handler name is refused before anything is read or written.
    let path = dir.path().join("new.toml");
    moat_install(&[
        "containerd",
        "--config",
        path.to_str().unwrap(),
        "--handler",
        "Bad Name",
    ])
    .assert_fails_with("invalid runtime handler name");
    assert!(!path.exists());
}

#[test]
fn install_docker_adds_entries_beside_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.json");
    let original =
        r#"{"log-driver": "journald", "runtimes": {"other": {"path": "/usr/bin/other"}}}"#;
    fs::write(&config, original).unwrap();
    let c = config.to_str().unwrap();

    moat_install(&["docker", "--config", c]).assert_ok();
    // A second entry with runtimeArgs, as `moat-learn` will need.
    moat_install(&[
        "docker",
        "--config",
        c,
        "--name",
        "moat-learn",
        "--runtime-arg",
        "--policy",
        "--runtime-arg",
        "/etc/moat/learn.toml",
    ])
    .assert_ok();
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(v["log-driver"], "journald");
    assert_eq!(v["runtimes"]["other"]["path"], "/usr/bin/other");
    assert_eq!(
        v["runtimes"]["moat"],
        serde_json::json!({"path": "/usr/local/bin/moat"})
    );
    assert_eq!(
        v["runtimes"]["moat-learn"]["runtimeArgs"],
        serde_json::json!(["--policy", "/etc/moat/learn.toml"])
    );
    let again = moat_install(&["docker", "--config", c]);
    again.assert_ok();
    assert!(again.stdout.contains("nothing changed"), "{again}");
    assert_eq!(
        fs::read_to_string(dir.path().join("daemon.json.moat-bak")).unwrap(),
        original
    );
    assert_eq!(entries(dir.path()), ["daemon.json", "daemon.json.moat-bak"]);
}
