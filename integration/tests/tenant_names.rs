//! Names moat gives a tenant's things in node-wide namespaces are derived
//! from who the tenant is to moat (its state root and the container id),
//! never chosen by the tenant (red-team pass 6): a raw bundle's cgroup
//! (R6-1, threat T22), the Kubernetes names its metrics are labelled with
//! (R6-5); and moat fails with one line, leaving nothing, when it has too
//! few file descriptors to work with.
//!
//! Run with:
//!
//! ```sh
//! cargo build --release -p moat
//! cargo test --release -p moat-integration --test tenant_names -- --test-threads=1
//! ```

use std::fs;
use std::process::{Command, Stdio};

use moat::metrics::parse_exposition;
use moat_integration::*;
use serde_json::json;

/// The pids-hierarchy cgroup path of `pid` (`/proc/<pid>/cgroup`).
fn pids_cgroup(pid: i64) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrl.split(',')
                .any(|c| c == "pids")
                .then(|| path.to_string())
        })
        .unwrap_or_default()
}

/// R6-1: tenant A's raw bundle names the cgroup moat would give tenant B's
/// container (another state root, a predictable id): A's container runs in
/// the cgroup moat names after A's state root and id, and B's create works.
#[test]
fn a_raw_bundle_cannot_take_another_tenants_cgroup() {
    let (a, b) = (Env::new(), Env::new());
    let victim = b.id("job");
    let squatter = a.id("squatter");
    let b_tag = moat::engine_bundle::state_root_tag(&canonical_root(&b.root));
    let a_tag = moat::engine_bundle::state_root_tag(&canonical_root(&a.root));
    for squat in [
        format!("/moat/{victim}"),
        format!("/moat/{b_tag}@{victim}"),
        format!("/moat/{victim}/below"),
    ] {
        let mut bundle = a.bundle(&["sleep", "300"]);
        bundle.config["linux"]["cgroupsPath"] = json!(squat);
        bundle.write();
        let (leak_a, leak_b) = (a.leak_check(&squatter), b.leak_check(&victim));
        {
            let _ga = a.guard(&squatter);
            let _gb = b.guard(&victim);
            a.moat(&["run", "-d", "--bundle", bundle.path(), &squatter])
                .assert_ok();
            let init = a.state(&squatter)["pid"].as_i64().unwrap();
            assert_eq!(
                pids_cgroup(init),
                format!("/moat/{a_tag}@{squatter}"),
                "{squat}: the squatter's init is not where moat names it"
            );
            // The same id in B's root: another name.
            let vb = b.bundle(&["true"]);
            b.moat(&["run", "--bundle", vb.path(), &victim]).assert_ok();
            b.moat(&["delete", "--force", &victim]).assert_ok();
            a.moat(&["delete", "--force", &squatter]).assert_ok();
        }
        leak_a.verify();
        leak_b.verify();
        for h in cgroup_hierarchies() {
            for leaf in [format!("{a_tag}@{squatter}"), victim.clone()] {
                assert!(
                    !h.join("moat").join(&leaf).exists(),
                    "{leaf} left in {}",
                    h.display()
                );
            }
        }
    }
}

/// Red-team pass 7: the state root tag is of the directory, not of how
/// `--root` spells it. `<root>/`, `<parent>/../<root name>` and a symlink
/// to the root name one directory, so one tag (moat resolves the root once,
/// by fd): each create's container is in `/moat/<that tag>@<id>`, and every
/// verb finds it by any spelling; another root keeps its own tag.
#[test]
fn every_spelling_of_one_state_root_gives_one_tag() {
    let (env, other) = (Env::new(), Env::new());
    let root = canonical_root(&env.root);
    let tag = moat::engine_bundle::state_root_tag(&root);
    let link = env.tmp.path().join("root-link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    let parent = root.parent().unwrap();
    let spellings = [
        format!("{}/", root.display()),
        format!(
            "{}/../{}/{}",
            parent.display(),
            parent.file_name().unwrap().to_string_lossy(),
            root.file_name().unwrap().to_string_lossy()
        ),
        link.display().to_string(),
        format!("{}/.", root.display()),
    ];
    for (i, spelled) in spellings.iter().enumerate() {
        let id = env.id(&format!("spell{i}"));
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            let b = env.bundle(&["sleep", "300"]);
            env.moat_raw(&["--root", spelled, "run", "-d", "--bundle", b.path(), &id])
                .assert_ok();
            let init = env.state(&id)["pid"].as_i64().unwrap();
            assert_eq!(
                pids_cgroup(init),
                format!("/moat/{tag}@{id}"),
                "--root {spelled}: another tag than the canonical root's"
            );
            env.moat_raw(&["--root", spelled, "delete", "--force", &id])
                .assert_ok();
        }
        leak.verify();
    }
    // Tenant scoping by root: another root, another tag, the same id.
    let id = other.id("spell0");
    let leak = other.leak_check(&id);
    {
        let _g = other.guard(&id);
        let b = other.bundle(&["sleep", "300"]);
        other
            .moat(&["run", "-d", "--bundle", b.path(), &id])
            .assert_ok();
        let other_tag = moat::engine_bundle::state_root_tag(&canonical_root(&other.root));
        assert_ne!(other_tag, tag);
        let init = other.state(&id)["pid"].as_i64().unwrap();
        assert_eq!(pids_cgroup(init), format!("/moat/{other_tag}@{id}"));
        other.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}

/// R6-5: a raw bundle writing the CRI's pod annotations is labelled as a
/// raw container in `moat metrics`, not as the pod it names.
#[test]
fn a_raw_bundle_with_cri_annotations_gets_no_cri_labels() {
    let env = Env::new();
    let id = env.id("labels");
    let mut b = env.bundle(&["sleep", "300"]);
    b.config["annotations"] = json!({
        "io.kubernetes.cri.sandbox-namespace": "kube-system",
        "io.kubernetes.cri.sandbox-name": "coredns-1",
        "io.kubernetes.cri.container-name": "coredns",
        "io.kubernetes.pod.namespace": "kube-system",
    });
    b.write();
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["run", "-d", "--bundle", b.path(), &id])
            .assert_ok();
        let out = env.moat(&["metrics"]);
        out.assert_ok();
        let samples = parse_exposition(&out.stdout)
            .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{out}"));
        let mine: Vec<_> = samples
            .iter()
            .filter(|s| s.label("id") == Some(id.as_str()))
            .collect();
        assert!(!mine.is_empty(), "no samples of {id}:\n{}", out.stdout);
        for s in mine {
            assert_eq!(s.label("namespace"), Some("raw"), "{}", out.stdout);
            assert_eq!(s.label("pod"), None, "{}", out.stdout);
            assert_eq!(s.label("container"), None, "{}", out.stdout);
        }
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}

/// moat under a descriptor limit too small to create a container: one
/// line, exit code 1, nothing left (it used to abort in libcontainer's
/// procfs library, red-team pass 6). A small soft limit under a larger
/// hard one is raised, and the create works.
#[test]
fn create_under_a_tiny_descriptor_limit_fails_cleanly() {
    let env = Env::new();
    let b = env.bundle(&["true"]);
    for (limit, works) in [("12:12", false), ("40:40", false), ("12:4096", true)] {
        let id = env.id("fds");
        let leak = env.leak_check(&id);
        {
            let _g = env.guard(&id);
            let out = Command::new("prlimit")
                .arg(format!("--nofile={limit}"))
                .arg(moat_bin())
                .args(env.argv(&["run", "--bundle", b.path(), &id]))
                .stdin(Stdio::null())
                .output()
                .expect("run prlimit");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if works {
                assert!(out.status.success(), "{limit}: {stderr}");
                env.moat(&["delete", "--force", &id]).assert_ok();
            } else {
                assert_eq!(out.status.code(), Some(1), "{limit}: {stderr}");
                assert_eq!(stderr.trim().lines().count(), 1, "{limit}: {stderr}");
                assert!(
                    stderr.contains("too few open files allowed"),
                    "{limit}: {stderr}"
                );
            }
        }
        leak.verify();
    }
}
