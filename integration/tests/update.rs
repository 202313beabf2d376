//! `moat update` through the real binary (T8, T24): cgroup v2 files from
//! an allowlist only, `pids.max` never above the container's limit, a key
//! never outside the container's cgroup; an allowed tightening is written
//! to the container's cgroup. Each test ends with the leak check.

use moat_integration::*;
use serde_json::json;

/// The container's `pids.max`, read from its cgroup.
/// `moat update --resources FILE id` with `resources` as the file.
fn update(env: &Env, id: &str, resources: serde_json::Value) -> Out {
    let file = env
        .tmp
        .path()
        .join(format!("resources-{}.json", env.id("r")));
    std::fs::write(&file, resources.to_string()).unwrap();
    env.moat(&["update", "--resources", file.to_str().unwrap(), id])
}

#[test]
fn update_refuses_loosening_and_applies_tightening() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "300"]);
    let id;
    let leak;
    {
        let (started, _g) = env.start_sleeper(&b, "upd");
        id = started;
        leak = env.leak_check(&id);
        let limit = effective_policy().resources.pids_limit.to_string();
        assert_eq!(pids_max(&id), limit);
        for (resources, detail) in [
            (json!({"unified": {"pids.max": "max"}}), "pids.max"),
            (
                json!({"unified": {"../cgroup.procs": "1"}}),
                "../cgroup.procs",
            ),
            (
                json!({"unified": {"pids.max/../../x": "1"}}),
                "pids.max/../../x",
            ),
            (
                json!({"unified": {"pids.max": (effective_policy().resources.pids_limit + 1).to_string()}}),
                "pids.max",
            ),
        ] {
            let out = update(&env, &id, resources);
            out.assert_fails_with("refused by moat rule cgroup-resources");
            out.assert_fails_with(detail);
            assert_eq!(pids_max(&id), limit, "a refused update changed pids.max");
        }
        // Raising the pids limit by the resources' own field is clamped to
        // the container's limit.
        update(&env, &id, json!({"pids": {"limit": 1_000_000}})).assert_ok();
        assert_eq!(pids_max(&id), limit);
        // Tightening is applied.
        update(&env, &id, json!({"pids": {"limit": 64}})).assert_ok();
        assert_eq!(pids_max(&id), "64");
        // And the tightened limit is not raised back above the policy's.
        update(&env, &id, json!({"pids": {"limit": 1_000_000}})).assert_ok();
        assert!(pids_max(&id).parse::<i64>().unwrap() <= effective_policy().resources.pids_limit);
        env.moat(&["delete", "--force", &id]).assert_ok();
    }
    leak.verify();
}
