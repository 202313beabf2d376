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

/// A user namespace made the way containerd 2 makes a `hostUsers: false`
/// pod's: a process unshares it, host root writes its uid/gid mapping, and
/// the namespace is named by a path (here the process's own
/// `/proc/<pid>/ns/user`, which lives as long as the guard). `owner` is
/// the host uid that makes it (its owner).
struct EngineNamespace {
    child: std::process::Child,
}

impl EngineNamespace {
    fn new(owner: u32, host: u64) -> EngineNamespace {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            &format!("--reuid={owner}"),
            &format!("--regid={owner}"),
            "--clear-groups",
            "unshare",
            "--user",
            "sleep",
            "300",
        ]);
        let child = cmd.spawn().expect("setpriv unshare sleep");
        let ns = EngineNamespace { child };
        let pid = ns.child.id();
        // The sleep is in its own user namespace once its ns/user differs
        // from ours (setpriv execs unshare, which unshares, then execs).
        let own = fs::metadata("/proc/self/ns/user").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let is_sleep =
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep");
            let md = fs::metadata(format!("/proc/{pid}/ns/user"));
            use std::os::unix::fs::MetadataExt;
            if is_sleep && md.is_ok_and(|m| m.ino() != own.ino()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "unshare did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let line = format!("0 {host} 65536\n");
        fs::write(format!("/proc/{pid}/uid_map"), &line).unwrap();
        fs::write(format!("/proc/{pid}/gid_map"), &line).unwrap();
        ns
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/user", self.child.id())
    }
}

impl Drop for EngineNamespace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bundle joining the user namespace at `path`, naming the mapping
/// `0 host 65536` as containerd 2 does.
/// Its id is its directory's name (an engine's bundle is made for one id,
/// see [`bundle_id`]).
fn bundle_joining(env: &Env, path: &str, host: u64) -> Bundle {
    let id = env.id("engine-ns");
    let mut b = bundle_with_mapping(env, host, &id);
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "user");
    ns.push(json!({"type": "user", "path": path}));
    b.write();
    b
}

/// The id an engine bundle was made for: its directory's name.
fn bundle_id(bundle: &Bundle) -> String {
    std::path::Path::new(bundle.path())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn assert_join_refused(env: &Env, bundle: &Bundle, rule: &str, phrase: &str) {
    let id = bundle_id(bundle);
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let out = env.moat(&["create", "--bundle", bundle.path(), &id]);
        out.assert_fails_with(&format!("refused by moat rule {rule}"));
        assert!(out.stderr.contains(phrase), "no {phrase:?} in:\n{out}");
    }
    leak.verify();
}

/// containerd 2's own user namespace for a `hostUsers: false` pod (T3):
/// moat reads its real mapping, keeps it when it is safe, claims its range
/// and joins that very namespace; the container runs hardened in it, and
/// delete frees the range.
#[test]
fn an_engine_made_user_namespace_is_joined_when_safe() {
    let env = Env::new();
    let host = ENGINE_HOST_ID + 2 * 65536;
    let engine = EngineNamespace::new(0, host);
    let b = bundle_joining(&env, &engine.path(), host);
    let id = bundle_id(&b);
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        env.moat(&["create", "--bundle", b.path(), &id]).assert_ok();
        env.moat(&["start", &id]).assert_ok();
        env.wait_status(&id, "running", Duration::from_secs(10));
        let pid = env.state(&id)["pid"].as_i64().unwrap();
        use std::os::unix::fs::MetadataExt;
        let joined = fs::metadata(format!("/proc/{pid}/ns/user")).unwrap();
        let made = fs::metadata(engine.path()).unwrap();
        assert_eq!(
            (joined.dev(), joined.ino()),
            (made.dev(), made.ino()),
            "the container is not in the engine's user namespace"
        );
        let out = env.moat(&[
            "exec",
            &id,
            "cat",
            "/proc/self/uid_map",
            "/proc/self/status",
        ]);
        out.assert_ok();
        let want = format!("0 {host} 65536");
        assert!(
            out.stdout
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&want),
            "{out}"
        );
        assert_eq!(status_field(&out.stdout, "Seccomp"), Some("2"), "{out}");
        assert_eq!(status_field(&out.stdout, "NoNewPrivs"), Some("1"), "{out}");
        let held = fs::read_to_string(pool_file(host)).unwrap();
        assert!(held.contains(&id), "pool file does not name {id}: {held}");
        // A second container naming the same namespace (not a pod member:
        // it joins no namespace of the first) overlaps the held range. Its
        // own engine bundle: one is made for one id.
        let second = bundle_joining(&env, &engine.path(), host);
        assert_join_refused(
            &env,
            &second,
            "user-namespace-mapping",
            "another container holds",
        );
        env.moat(&["kill", &id, "KILL"]).assert_ok();
        env.wait_status(&id, "stopped", Duration::from_secs(10));
        env.moat(&["delete", &id]).assert_ok();
        assert!(!pool_file(host).exists(), "delete left the range held");
    }
    leak.verify();
}

/// What an engine's user namespace must be is read from the namespace,
/// never the spec: a spec naming another mapping than the namespace's, a
/// namespace mapped below the floor, one a host user owns, one nested in
/// another, the host's own, and a file that is no user namespace are each
/// refused with the one-line refusal, leaving nothing behind.
#[test]
fn an_unsafe_engine_user_namespace_is_refused() {
    let env = Env::new();
    let host = ENGINE_HOST_ID + 3 * 65536;
    let engine = EngineNamespace::new(0, host);
    // The spec lies about the mapping.
    let lying = bundle_joining(&env, &engine.path(), host + 65536);
    assert_join_refused(
        &env,
        &lying,
        "user-namespace-mapping",
        "is not the mapping of user namespace",
    );
    // Mapped onto host ids below the floor (spec and namespace agree).
    let low = EngineNamespace::new(0, 200_000);
    let b = bundle_joining(&env, &low.path(), 200_000);
    assert_join_refused(&env, &b, "user-namespace-mapping", "host_id_base");
    // Owned by a host user, who would hold every capability in it.
    let users = EngineNamespace::new(1000, host);
    let b = bundle_joining(&env, &users.path(), host);
    assert_join_refused(&env, &b, "user-namespace-path", "owned by host uid 1000");
    // The host's own, and a namespace of another kind.
    // (moat opens the path, so /proc/self is moat: the host's namespace.)
    let b = bundle_joining(&env, "/proc/self/ns/user", host);
    assert_join_refused(&env, &b, "user-namespace-path", "host's user namespace");
    let b = bundle_joining(&env, &engine.path().replace("/user", "/net"), host);
    assert_join_refused(&env, &b, "user-namespace-path", "not a user namespace");
    // Nested: a user namespace made inside the engine's.
    let nested = std::process::Command::new("nsenter")
        .args([
            "--user",
            &format!("--target={}", engine.child.id()),
            "unshare",
            "--user",
            "sleep",
            "300",
        ])
        .spawn()
        .expect("nested unshare");
    let mut nested = EngineNamespaceChild(nested);
    let npid = nested.0.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(format!("/proc/{npid}/comm"))
        .map(|c| c.trim().to_string())
        .ok()
        != Some("sleep".into())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nested unshare did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = bundle_joining(&env, &format!("/proc/{npid}/ns/user"), host);
    assert_join_refused(
        &env,
        &b,
        "user-namespace-path",
        "nested in another user namespace",
    );
    let _ = nested.0.kill();
}

struct EngineNamespaceChild(std::process::Child);

impl Drop for EngineNamespaceChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
