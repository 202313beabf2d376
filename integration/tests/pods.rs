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

/// The owner's host id range, from its init's uid_map.
fn range_of(pid: i32) -> moat::harden::IdRange {
    let map = uid_map(pid);
    let f: Vec<u32> = map
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.first(), Some(&0), "uid_map: {map}");
    moat::harden::IdRange {
        host_id: f[1],
        size: f[2],
    }
}

/// Starts `owner`, a sleeping container that consents to being joined (a
/// pod's owner); returns its guard and its range.
fn start_owner(
    env: &Env,
    owner: &str,
) -> (moat_integration::ContainerGuard, moat::harden::IdRange) {
    let mut sleeper = env.bundle(&["sleep", "300"]);
    sleeper.annotate("moat.dev/joinable", "true");
    let guard = moat_integration::start_with(env, &[], &sleeper, owner);
    (guard, range_of(init_pid(env, owner)))
}

/// Deleting a pod's owner kills its members through their cgroups, frozen
/// first: a member forking in a loop (a new process every few
/// milliseconds, which a scan of the range could chase for its whole
/// deadline) is gone when the owner's delete returns, and the range is
/// free only then: no process runs with an id of it.
#[test]
fn a_forking_member_is_gone_when_its_owner_is_deleted() {
    require_root();
    let env = Env::new();
    let owner = env.id("pod-owner");
    let owner_check = env.leak_check(&owner);
    let (owner_guard, range) = start_owner(&env, &owner);
    let pid = init_pid(&env, &owner);
    let mut member = env.sh_bundle("while :; do ( : ) & wait $!; done");
    member.join_namespace("network", &format!("/proc/{pid}/ns/net"));
    let member_id = env.id("pod-forker");
    let member_check = env.leak_check(&member_id);
    let member_guard = moat_integration::start_with(&env, &[], &member, &member_id);
    // The loop runs: more than its shell in its cgroup at some point.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while moat_integration::processes_in_cgroup(&member_id).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the member's fork loop never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    env.moat(&["delete", "--force", &owner]).assert_ok();
    let left = moat::idpool::container_processes_in(range);
    assert!(
        left.is_empty(),
        "processes of the pod still run with its ids after the owner's delete: {left:?}"
    );
    assert!(
        moat_integration::processes_in_cgroup(&member_id).is_empty(),
        "the member's cgroup still has processes"
    );
    assert_eq!(owned_slots(&env, &owner), 0, "the range was not freed");
    drop(owner_guard);
    env.moat(&["delete", "--force", &member_id]).assert_ok();
    drop(member_guard);
    member_check.verify();
    owner_check.verify();
}

/// A member's create racing its owner's delete: the member either starts
/// before the delete (and dies with the pod) or is refused; never does a
/// process run with an id of the range after the delete freed it (the
/// member's create holds the range's lock from finding the pod until its
/// init exists, the delete from before it kills until it frees).
#[test]
fn a_member_created_during_its_owners_delete_never_outlives_the_range() {
    require_root();
    let env = Env::new();
    let (mut started, mut refused) = (0, 0);
    for round in 0..10u64 {
        let owner = env.id("pod-owner");
        let member_id = env.id("pod-racer");
        let owner_check = env.leak_check(&owner);
        let member_check = env.leak_check(&member_id);
        let (owner_guard, range) = start_owner(&env, &owner);
        let pid = init_pid(&env, &owner);
        let mut member = env.bundle(&["sleep", "300"]);
        member.join_namespace("network", &format!("/proc/{pid}/ns/net"));
        let member_guard = env.guard(&member_id);
        // The delete starts before the member's create (by up to 40 ms)
        // or during it (up to 60 ms after).
        let gap = std::time::Duration::from_millis(10 * (round % 5));
        let create_args = ["create", "--bundle", member.path(), &member_id];
        let delete_args = ["delete", "--force", &owner];
        let (mut create, mut delete) = if round < 5 {
            let d = env.spawn(&delete_args);
            std::thread::sleep(gap);
            (env.spawn(&create_args), d)
        } else {
            let c = env.spawn(&create_args);
            std::thread::sleep(gap + std::time::Duration::from_millis(20));
            (c, env.spawn(&delete_args))
        };
        let wait = std::time::Duration::from_secs(120);
        let status = moat_integration::wait_timeout(&mut create, wait, "member create");
        let deleted = moat_integration::wait_timeout(&mut delete, wait, "owner delete");
        assert!(
            deleted.success(),
            "round {round}: the owner's delete failed"
        );
        if status.success() {
            started += 1;
        } else {
            refused += 1;
        }
        let left = moat::idpool::container_processes_in(range);
        assert!(
            left.is_empty(),
            "round {round}: processes run with ids of the freed range: {left:?} (member create {status})"
        );
        assert_eq!(
            owned_slots(&env, &owner),
            0,
            "round {round}: range not freed"
        );
        drop(member_guard);
        drop(owner_guard);
        member_check.verify();
        owner_check.verify();
    }
    eprintln!("{started} member creates finished before the delete, {refused} refused");
}
