//! Pods outside CRI: containers that join another moat container's
//! namespaces by path (runc-style bundles, as docker's `--pid container:X`
//! writes them) join its pod: its user namespace and id range (T5). A spec
//! that names two pods' namespaces, or whose CRI annotations name another
//! pod than its namespaces, is refused; the range is freed with the pod's
//! owner.

use moat_integration::{init_pid, require_root, Env};

fn uid_map(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap()
}

fn owned_slots(env: &Env, id: &str) -> usize {
    let policy = moat_integration::effective_policy();
    moat::idpool::IdPool::new(&policy.user_namespace)
        .owned_by(&moat_integration::canonical_root(&env.root), id)
        .len()
}

/// `--pid container:X`: the second container sees X's processes (it could
/// mount /proc in X's pid namespace), runs in X's user namespace with X's
/// range and owns no range of its own; deleting X frees the range.
#[test]
fn a_container_joining_anothers_pid_namespace_joins_its_pod() {
    require_root();
    let env = Env::new();
    let mut sleeper = env.bundle(&["sleep", "300"]);
    sleeper.annotate("moat.dev/joinable", "true");
    let owner_check = env.leak_check("pod-owner");
    let (owner, owner_guard) = env.start_sleeper(&sleeper, "pod-owner");
    let pid = init_pid(&env, &owner);
    let mut member = env.bundle(&["sh", "-c", "ps -o args; cat /proc/self/uid_map"]);
    member.join_namespace("pid", &format!("/proc/{pid}/ns/pid"));
    let member_id = env.id("pod-member");
    let member_check = env.leak_check(&member_id);
    let out = env.run(&member, &member_id);
    out.assert_ok();
    assert!(
        out.stdout.contains("sleep 300"),
        "the member sees the owner's process: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains(uid_map(pid).trim()),
        "the member runs with the owner's range:\n{}\nowner: {}",
        out.stdout,
        uid_map(pid)
    );
    env.moat(&["delete", "--force", &member_id]).assert_ok();
    member_check.verify();
    // The member never held a range; the owner still does until deleted.
    assert_eq!(owned_slots(&env, &member_id), 0);
    assert_eq!(owned_slots(&env, &owner), 1);
    drop(owner_guard);
    owner_check.verify();
}

/// A spec naming namespaces of two pods, or a CRI container whose
/// sandbox-id names another pod than the one whose namespaces it joins,
/// is refused with one line, and leaves nothing behind.
#[test]
fn a_spec_naming_another_pods_namespaces_is_refused() {
    require_root();
    let env = Env::new();
    let mut sleeper = env.bundle(&["sleep", "300"]);
    sleeper.annotate("moat.dev/joinable", "true");
    let (a, _ga) = env.start_sleeper(&sleeper, "pod-a");
    let (b, _gb) = env.start_sleeper(&sleeper, "pod-b");
    let (pa, pb) = (init_pid(&env, &a), init_pid(&env, &b));

    let mut mixed = env.bundle(&["true"]);
    mixed.join_namespace("pid", &format!("/proc/{pa}/ns/pid"));
    mixed.join_namespace("ipc", &format!("/proc/{pb}/ns/ipc"));
    let id = env.id("mixed");
    let check = env.leak_check(&id);
    env.moat(&["create", "--bundle", mixed.path(), &id])
        .assert_fails_with("joins namespaces of 2 pods");
    check.verify();

    let mut lying = env.bundle(&["true"]);
    lying.join_namespace("ipc", &format!("/proc/{pa}/ns/ipc"));
    lying.annotate("io.kubernetes.cri.container-type", "container");
    lying.annotate("io.kubernetes.cri.sandbox-id", &b);
    let id = env.id("lying");
    let check = env.leak_check(&id);
    env.moat(&["create", "--bundle", lying.path(), &id])
        .assert_fails_with("but its namespaces are pod");
    check.verify();

    // A user namespace path that is not the pod's (b's, while the other
    // namespaces are a's) is refused too.
    let mut foreign_user = env.bundle(&["true"]);
    foreign_user.join_namespace("ipc", &format!("/proc/{pa}/ns/ipc"));
    foreign_user.join_namespace("user", &format!("/proc/{pb}/ns/user"));
    let id = env.id("foreign-user");
    let check = env.leak_check(&id);
    env.moat(&["create", "--bundle", foreign_user.path(), &id])
        .assert_fails_with("is not the user namespace of pod");
    check.verify();
}

/// A raw bundle's container did not consent to others joining it (no
/// `moat.dev/joinable`, not a CRI sandbox, not an engine's bundle): a spec
/// naming its namespaces is refused under the default policy, so a tenant
/// never gets another tenant's user namespace or range by naming them
/// (T10); `namespaces.join_containers = true` lets any container be
/// joined, and the owner's own annotation lets it be joined by default.
#[test]
fn only_containers_that_consent_can_be_joined() {
    require_root();
    let env = Env::new();
    let sleeper = env.bundle(&["sleep", "300"]);
    let (owner, _guard) = env.start_sleeper(&sleeper, "alone");
    let pid = init_pid(&env, &owner);
    for (typ, ns) in [
        ("network", "net"),
        ("ipc", "ipc"),
        ("pid", "pid"),
        ("uts", "uts"),
    ] {
        let mut joiner = env.bundle(&["true"]);
        joiner.join_namespace(typ, &format!("/proc/{pid}/ns/{ns}"));
        let id = env.id(&format!("joiner-{typ}"));
        let check = env.leak_check(&id);
        env.moat(&["create", "--bundle", joiner.path(), &id])
            .assert_fails_with("refused by moat rule namespace-path");
        check.verify();
        assert_eq!(owned_slots(&env, &id), 0);
    }
    // The operator lets any container be joined.
    let any = moat_integration::policy_file(
        &env,
        "join-any.toml",
        "[namespaces]\njoin_containers = true\n",
    );
    let mut member = env.bundle(&["cat", "/proc/self/uid_map"]);
    member.join_namespace("ipc", &format!("/proc/{pid}/ns/ipc"));
    let id = env.id("member-any");
    let check = env.leak_check(&id);
    let _g = env.guard(&id);
    env.moat(&["--policy", &any, "create", "--bundle", member.path(), &id])
        .assert_ok();
    env.moat(&["--policy", &any, "delete", "--force", &id])
        .assert_ok();
    check.verify();
    // The owner's own consent.
    let mut consenting = env.bundle(&["sleep", "300"]);
    consenting.annotate("moat.dev/joinable", "true");
    let (willing, _g2) = env.start_sleeper(&consenting, "willing");
    let wpid = init_pid(&env, &willing);
    let mut member = env.bundle(&["true"]);
    member.join_namespace("ipc", &format!("/proc/{wpid}/ns/ipc"));
    let id = env.id("member");
    let check = env.leak_check(&id);
    env.run(&member, &id).assert_ok();
    env.moat(&["delete", "--force", &id]).assert_ok();
    check.verify();
}
