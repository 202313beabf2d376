//! The `phase=` fields of moat's debug log, which hack/bench splits
//! `create` and `delete` by: every name in `moat::phase::CREATE` and
//! `moat::phase::DELETE` is written, in that order, by a real create and a
//! real delete of a stopped container.

use std::fs;
use std::path::Path;
use std::time::Duration;

use moat_integration::*;

/// The `phase` fields of a JSON debug log, in the order written.
fn phases_in(log: &Path) -> Vec<String> {
    let text = fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| j.get("phase").and_then(|p| p.as_str()).map(String::from))
        .collect()
}

/// Each expected name present, and in the expected order (a name may
/// repeat: `state` ends two intervals of create).
fn assert_phases(got: &[String], want: &[&str], what: &str) {
    let mut at = 0;
    for name in want {
        match got[at..].iter().position(|g| g == name) {
            Some(i) => at += i + 1,
            None => panic!(
                "{what}: phase {name:?} missing from the debug log (or out of order); \
                 hack/bench splits {what} by these names. Got {got:?}"
            ),
        }
    }
    for g in got {
        assert!(
            want.contains(&g.as_str()),
            "{what}: phase {g:?} is not listed in moat::phase; add it there so hack/bench knows it"
        );
    }
}

#[test]
fn create_and_delete_write_every_phase_field() {
    let env = Env::new();
    let b = env.bundle(&["/bin/true"]);
    let id = env.id("phases");
    let leak = env.leak_check(&id);
    let _guard = env.guard(&id);
    let create_log = env.tmp.path().join("create.json");
    let delete_log = env.tmp.path().join("delete.json");
    let log_args = |p: &Path| {
        vec![
            "--debug".to_string(),
            "--log".to_string(),
            p.display().to_string(),
            "--log-format".to_string(),
            "json".to_string(),
        ]
    };

    let mut argv = env.argv(&[]);
    argv.extend(log_args(&create_log));
    argv.extend(["create", "--bundle", b.path(), &id].map(String::from));
    env.moat_argv(&argv, Duration::from_secs(60)).assert_ok();
    assert_phases(&phases_in(&create_log), moat::phase::CREATE, "create");

    env.moat(&["start", &id]).assert_ok();
    env.wait_status(&id, "stopped", Duration::from_secs(20));
    let mut argv = env.argv(&[]);
    argv.extend(log_args(&delete_log));
    argv.extend(["delete", &id].map(String::from));
    env.moat_argv(&argv, Duration::from_secs(60)).assert_ok();
    assert_phases(&phases_in(&delete_log), moat::phase::DELETE, "delete");

    leak.verify();
}
