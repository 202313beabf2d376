//! Engine-given uid/gid mappings (containerd 2 with a `hostUsers: false`
//! pod puts the kubelet's range in the spec): moat keeps a safe one (T3),
//! and refuses one below its floor or overlapping a range another
//! container holds, with the one-line refusal, leaving nothing behind.

use std::fs;
use std::path::Path;
use std::time::Duration;

use moat_integration::*;
use serde_json::json;

/// A range near the end of the default pool (4096 ranges of 65536 from
/// `HOST_ID_BASE`), far from the slots concurrent tests take.
const ENGINE_HOST_ID: u64 = HOST_ID_BASE + 4000 * 65536;

/// A `sleep 300` bundle the CRI made for `id` (see `Env::engine_bundle`)
/// asking for a user namespace with the engine's mapping `0 host 65536`
/// for uids and gids.
fn bundle_with_mapping(env: &Env, host: u64, id: &str) -> Bundle {
    let mut b = env.engine_bundle("k8s.io", id, &["sleep", "300"]);
    set_mapping(&mut b, host, 65536);
    b
}

fn set_mapping(b: &mut Bundle, host: u64, size: u64) {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let m = json!([{"containerID": 0, "hostID": host, "size": size}]);
    b.config["linux"]["uidMappings"] = m.clone();
    b.config["linux"]["gidMappings"] = m;
    b.write();
}

fn pool_file(host: u64) -> std::path::PathBuf {
    Path::new(&effective_policy().user_namespace.pool_dir).join(format!("engine-{host}-65536"))
}

fn assert_create_refused(env: &Env, bundle: &Bundle, id: &str, phrases: &[&str]) {
    let id = id.to_string();
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let out = env.moat(&["create", "--bundle", bundle.path(), &id]);
        out.assert_fails_with("refused by moat rule user-namespace-mapping");
        for p in phrases {
            assert!(out.stderr.contains(p), "no {p:?} in:\n{out}");
        }
    }
    leak.verify();
}

#[test]
fn an_engine_mapping_is_kept_and_an_overlapping_one_refused() {
    let env = Env::new();
    let id = env.id("engine-ok");
    let b = bundle_with_mapping(&env, ENGINE_HOST_ID, &id);
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        env.moat(&["start", &id]).assert_ok();
        env.wait_status(&id, "running", Duration::from_secs(10));
        let id2 = id.clone();
        let pid = env.state(&id2)["pid"].as_i64().unwrap();
        let uid_map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        let gid_map = fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap();
        let want: Vec<u64> = vec![0, ENGINE_HOST_ID, 65536];
        for map in [&uid_map, &gid_map] {
            let got: Vec<u64> = map.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(got, want, "the engine's mapping was not kept");
        }
        // Seen from inside too, and the range is held in the pool.
        let out = env.moat(&["exec", &id2, "cat", "/proc/self/uid_map"]);
        out.assert_ok();
        assert!(out.stdout.contains(&ENGINE_HOST_ID.to_string()), "{out}");
        let held = fs::read_to_string(pool_file(ENGINE_HOST_ID)).unwrap();
        assert!(held.contains(&id2), "pool file does not name {id2}: {held}");

        // Another container whose engine range overlaps it is refused.
        let bad = env.id("engine-bad");
        let overlapping = bundle_with_mapping(&env, ENGINE_HOST_ID + 100, &bad);
        assert_create_refused(&env, &overlapping, &bad, &["one slot of its pool"]);
        // So is the very same range.
        let bad = env.id("engine-bad");
        let same = bundle_with_mapping(&env, ENGINE_HOST_ID, &bad);
        assert_create_refused(&env, &same, &bad, &["another container holds"]);

        env.moat(&["kill", &id2, "KILL"]).assert_ok();
        env.wait_status(&id2, "stopped", Duration::from_secs(10));
        env.moat(&["delete", &id2]).assert_ok();
        assert!(
            !pool_file(ENGINE_HOST_ID).exists(),
            "delete left the engine range held"
        );
    }
    leak.verify();
}

#[test]
fn an_engine_mapping_below_the_floor_is_refused() {
    let env = Env::new();
    for host in [0, 100_000, HOST_ID_BASE - 65536] {
        let id = env.id("engine-bad");
        let b = bundle_with_mapping(&env, host, &id);
        assert_create_refused(
            &env,
            &b,
            &id,
            &["host_id_base", &format!("host ids {host}-")],
        );
    }
}

/// Red-team R7: a raw bundle's "engine-given" mapping (its own config.json)
/// is refused, even one that would be fine from an engine; and an engine's
/// mapping of more than one slot (the red team's: from a slot to the end of
/// the id space) is refused, so one container cannot hold the whole pool.
#[test]
fn a_raw_bundles_mapping_and_an_oversized_one_are_refused() {
    let env = Env::new();
    let id = env.id("raw-map");
    let mut raw = env.bundle(&["sleep", "300"]);
    set_mapping(&mut raw, ENGINE_HOST_ID, 65536);
    assert_create_refused(&env, &raw, &id, &["only in a bundle an engine made"]);
    // The same id, but the bundle is not the engine's task directory.
    let id = env.id("engine-huge");
    let mut huge = env.engine_bundle("k8s.io", &id, &["sleep", "300"]);
    set_mapping(
        &mut huge,
        ENGINE_HOST_ID,
        u64::from(u32::MAX) - ENGINE_HOST_ID,
    );
    assert_create_refused(&env, &huge, &id, &["one slot of its pool"]);
    assert!(!pool_file(ENGINE_HOST_ID).exists());
}
