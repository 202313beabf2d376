//! A tenant's seccomp profile is bounded before moat compiles it (red-team
//! R7-7, T4): moat hardens and compiles the profile as host root in its
//! caller's cgroup, and libseccomp's compile grows faster than the profile
//! (2000 rules cost half a minute of a host core, then failed anyway).

use std::time::{Duration, Instant};

use moat_integration::*;
use serde_json::{json, Value};

/// `rules` rules of four names with `args` conditions each (the red-team
/// reproduction's shape), denying calls no workload makes (a first
/// argument of 100000 and up).
fn profile(rules: usize, args: usize) -> Value {
    let rule = |i: usize| {
        let conditions: Vec<Value> = (0..args)
            .map(|a| json!({"index": a, "value": 100_000 + i * 8 + a, "op": "SCMP_CMP_EQ"}))
            .collect();
        json!({
            "names": ["read", "write", "openat", "ioctl"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": conditions,
        })
    };
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": (0..rules).map(rule).collect::<Vec<_>>(),
    })
}

#[test]
fn an_oversized_seccomp_profile_is_refused_at_once_and_leaves_nothing() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.config["linux"]["seccomp"] = profile(2000, 2);
    b.write();
    let start = Instant::now();
    // The time includes the leak checks and the guard's delete --force.
    let out = env.assert_refused("run", &b, "sc-big", &["refused by moat rule seccomp: linux.seccomp.syscalls holds 8000 syscall entries (names summed over rules), above moat's bound of 1024"]);
    let took = start.elapsed();
    // main's binary spent ~35 s compiling it twice; generous for load.
    assert!(
        took < Duration::from_secs(5),
        "refused after {took:?}: {}",
        out.stderr
    );
}

#[test]
fn a_seccomp_profile_inside_the_bounds_still_runs() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    // 64 rules x 4 names x 1 condition: 256 entries, 256 conditions, the
    // condition bound exactly.
    b.config["linux"]["seccomp"] = profile(64, 1);
    b.write();
    let id = env.id("sc-edge");
    let leak = env.leak_check(&id);
    env.run(&b, &id).assert_ok();
    leak.verify();
    // One condition more is refused, naming the count and the bound.
    let mut p = profile(64, 1);
    p["syscalls"][0]["args"]
        .as_array_mut()
        .unwrap()
        .push(json!({"index": 5, "value": 1, "op": "SCMP_CMP_EQ"}));
    b.config["linux"]["seccomp"] = p;
    b.write();
    env.assert_refused("run", &b, "sc-edge2", &["260 argument conditions (each rule's conditions times its names, summed), above moat's bound of 256"]);
}
