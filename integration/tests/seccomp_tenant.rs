//! A tenant's own seccomp profile, seen from inside a real container
//! (T27): whatever its default action, moat's always-denied syscalls answer
//! EPERM by number — also those libseccomp cannot name (`open_tree_attr`)
//! — on the 64-bit and the 32-bit (int 0x80) x86 ABI.

use std::fs;
use std::process::Command;

use moat_integration::*;
use serde_json::{json, Value};

/// A static program that makes raw syscalls by number, with zero or
/// invalid arguments, and prints `<abi>.<nr>=<errno or ok>` for each.
/// `x32` lines use the 32-bit ABI (int 0x80), where the filter sees
/// AUDIT_ARCH_I386.
const RAW_SYSCALLS_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static const char *answer(long rc, int err) {
    static char buf[32];
    if (rc >= 0) return "ok";
    switch (err) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    default: snprintf(buf, sizeof buf, "errno%d", err); return buf;
    }
}

#if defined(__x86_64__)
static long int80(long nr) {
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(nr), "b"(0), "c"(0), "d"(0), "S"(0), "D"(0) : "memory");
    return rc;
}
#endif

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    static const long nrs[] = {425, 428, 442, 443, 452, 467, 469, 470, 480, 500};
    for (unsigned i = 0; i < sizeof nrs / sizeof *nrs; i++) {
        errno = 0;
        long rc = syscall(nrs[i], 0, 0, 0, 0, 0, 0);
        printf("64.%ld=%s\n", nrs[i], answer(rc, errno));
#if defined(__x86_64__)
        long r32 = int80(nrs[i]);
        printf("32.%ld=%s\n", nrs[i], answer(r32 < 0 && r32 > -4096 ? -1 : 0, (int)-r32));
#endif
    }
    errno = 0;
    long chrooted = syscall(SYS_chroot, "/");
    printf("64.chroot=%s\n", answer(chrooted, errno));
    printf("64.getpid=%s\n", syscall(SYS_getpid) > 0 ? "ok" : "fail");
    return 0;
}
"#;

fn build_probe(b: &Bundle) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("raw.c");
    fs::write(&src, RAW_SYSCALLS_C).unwrap();
    let bin = b.rootfs().join("raw-syscalls");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tenant profile with a permissive default: chroot denied, and a few
/// calls allowed by name (open_tree_attr among them: moat must strip it).
fn permissive_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["chroot"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["open_tree_attr", "mount_setattr", "fchmodat2"], "action": "SCMP_ACT_ALLOW"}
        ]
    })
}

/// A deny-by-default tenant profile as old as docker 20.10's (it names
/// nothing newer than epoll_pwait2, 441) plus fchmodat2 (452), and asking
/// for open_tree_attr and mount_setattr: moat's default profile without
/// the newer names.
fn deny_by_default_profile() -> Value {
    let text = fs::read_to_string(workspace_dir().join("configs/seccomp/default.json"))
        .expect("configs/seccomp/default.json");
    let mut p: Value = serde_json::from_str(&text).unwrap();
    let newer = |n: &Value| {
        moat::seccomp_bpf::UNIFIED_SYSCALLS
            .iter()
            .any(|(name, nr)| *nr > 441 && n.as_str() == Some(*name))
    };
    for rule in p["syscalls"].as_array_mut().unwrap() {
        rule["names"].as_array_mut().unwrap().retain(|n| !newer(n));
    }
    p["syscalls"]
        .as_array_mut()
        .unwrap()
        .retain(|r| !r["names"].as_array().unwrap().is_empty());
    p["syscalls"].as_array_mut().unwrap().push(json!(
        {"names": ["open_tree_attr", "mount_setattr", "fchmodat2"], "action": "SCMP_ACT_ALLOW"}
    ));
    p["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    p
}

fn answers_under(profile: Value) -> std::collections::BTreeMap<String, String> {
    let env = Env::new();
    let mut b = env.bundle(&["/raw-syscalls"]);
    build_probe(&b);
    b.config["linux"]["seccomp"] = profile;
    b.write();
    let id = env.id("tenant-seccomp");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    leak.verify();
    kv(&out.stdout)
}

fn assert_answers(got: &std::collections::BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (key, answer) in want {
        assert_eq!(
            got.get(*key).map(String::as_str),
            Some(*answer),
            "{key}: {got:?}"
        );
    }
}

/// Always denied, by number, on both ABIs: io_uring_setup (425),
/// open_tree (428), mount_setattr (442), quotactl_fd (443), and
/// open_tree_attr (467), which libseccomp 2.5.4 cannot name.
const ALWAYS_DENIED: &[&str] = &["425", "428", "442", "443", "467"];

/// `<abi>.<nr>` → `answer` for both ABIs: always-denied numbers EPERM,
/// `enosys` ENOSYS.
fn expected(enosys: &[&str]) -> Vec<(String, &'static str)> {
    let mut want = Vec::new();
    for abi in ["64", "32"] {
        for nr in ALWAYS_DENIED {
            want.push((format!("{abi}.{nr}"), "EPERM"));
        }
        for nr in enosys {
            want.push((format!("{abi}.{nr}"), "ENOSYS"));
        }
    }
    want
}

#[cfg(target_arch = "x86_64")]
#[test]
fn an_allow_by_default_tenant_profile_still_denies_every_always_denied_syscall() {
    require_root();
    let got = answers_under(permissive_profile());
    // Newer than moat's table: ENOSYS, as on an older kernel.
    let want = expected(&["470", "480", "500"]);
    let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_answers(&got, &want);
    // The tenant's own denial holds, and what it allows reaches the kernel
    // (fchmodat2 with a NULL path: EFAULT, not EPERM or ENOSYS).
    assert_answers(&got, &[("64.chroot", "EPERM"), ("64.getpid", "ok")]);
    for key in ["64.452", "32.452"] {
        let a = got.get(key).map(String::as_str).unwrap_or("missing");
        assert!(a != "EPERM" && a != "ENOSYS", "{key}: {a}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_deny_by_default_tenant_profile_denies_them_with_eperm_too() {
    require_root();
    let got = answers_under(deny_by_default_profile());
    // Newer than the profile (it names fchmodat2, 452): ENOSYS.
    let want = expected(&["469", "470", "500"]);
    let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_answers(&got, &want);
}
