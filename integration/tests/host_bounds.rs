//! Host-side state a tenant's spec makes moat create, and the engine
//! objects moat recognises, through the real `moat` binary on raw bundles:
//! - T36 (red-team R7-6): every bind is a mount in the HOST mount namespace
//!   while the container lives; a spec over `filesystem.max_mounts` is
//!   refused before anything is opened or mounted, one at the cap runs;
//! - T5 / R7-5: an engine's own /dev/shm is recognised only below that
//!   engine's state roots; a tmpfs named like one elsewhere is a plain
//!   tmpfs bind, held to the inode rule.
//!
//! - T5 (ptys, red-team R8-2): the container's devpts hands out at most
//!   `filesystem.pty_max` ptys; every devpts but the host's shares one
//!   kernel pool (`kernel.pty.max - kernel.pty.reserve`), which one
//!   container used to drain for all others.
//!
//! Every case ends with the leak check.

use std::fs;
use std::path::{Path, PathBuf};

use moat_integration::*;
use serde_json::json;

/// The number of lines of the host's (this process's) mount table.
fn host_mounts() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .count()
}

/// A bundle running `script` whose spec has exactly `total` mounts: its
/// own, then read-only binds of one test directory at /b/0, /b/1, ...
fn bundle_with_mounts(env: &Env, script: &str, total: usize) -> Bundle {
    let src = env.tmp.path().join("shared-source");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    let mut b = env.sh_bundle(script);
    let own = b.config["mounts"].as_array().map_or(0, Vec::len);
    assert!(own < total, "the base bundle has {own} mounts already");
    let list = b.config["mounts"].as_array_mut().unwrap();
    for i in 0..total - own {
        list.push(bind(&src, &format!("/b/{i}"), false));
    }
    b.write();
    b
}

#[test]
fn a_spec_over_max_mounts_is_refused_before_any_host_mount() {
    let env = Env::new();
    let b = bundle_with_mounts(&env, "true", 257);
    let before = host_mounts();
    env.assert_refused(
        "create",
        &b,
        "mounts-over",
        &[
            "refused by moat rule mount-count",
            "the spec has 257 mounts",
            "filesystem.max_mounts (256)",
        ],
    );
    assert_eq!(host_mounts(), before, "the host's mount table changed");

    // An annotation may only lower the cap.
    let mut b = bundle_with_mounts(&env, "true", 20);
    b.annotate("moat.dev/filesystem.max_mounts", "10");
    env.assert_refused(
        "create",
        &b,
        "mounts-annot",
        &[
            "refused by moat rule mount-count",
            "filesystem.max_mounts (10)",
        ],
    );
    b.annotate("moat.dev/filesystem.max_mounts", "100000");
    env.assert_refused(
        "create",
        &b,
        "mounts-loosen",
        &["annotation-loosens-policy"],
    );
}

#[test]
fn a_spec_at_max_mounts_runs() {
    let env = Env::new();
    let b = bundle_with_mounts(
        &env,
        "cat /b/0/f /b/200/f; echo; grep -c ' /b/' /proc/self/mountinfo",
        256,
    );
    let own = env.sh_bundle("true").config["mounts"]
        .as_array()
        .map_or(0, Vec::len);
    let id = env.id("mounts-at");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("xx"), "{}", out.stdout);
    assert_eq!(
        lines.next(),
        Some((256 - own).to_string().as_str()),
        "{}",
        out.stdout
    );
    leak.verify();
}

/// Unmounts (lazily) on drop.
struct TestMount(PathBuf);

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mount_tmpfs(dir: &Path, data: &str) -> TestMount {
    fs::create_dir_all(dir).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(data),
    )
    .unwrap_or_else(|e| panic!("mount tmpfs at {}: {e}", dir.display()));
    TestMount(dir.to_path_buf())
}

/// Red-team R7-5: a docker-like shareable shm (size within the cap, the
/// kernel's default inode limit) at `<tmp>/x/containers/<id>/mounts/shm`,
/// outside every engine state root, is no engine's: a raw bundle binding
/// it read-write is refused by the inode rule, as the same tmpfs anywhere
/// else is. (moat before this fix recognised the name anywhere and let it
/// through.)
#[test]
fn an_engine_shm_name_outside_the_engine_roots_is_a_plain_tmpfs() {
    let env = Env::new();
    let victim = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let shm = env
        .tmp
        .path()
        .join("x/containers")
        .join(victim)
        .join("mounts/shm");
    let _m = mount_tmpfs(&shm, "size=1m,mode=1777");
    fs::write(shm.join("victim"), "victim-ipc-data").unwrap();
    let mut b = env.sh_bundle("cat /v/victim; echo planted > /v/planted");
    b.add_mount(json!({
        "destination": "/v", "type": "bind", "source": shm,
        "options": ["rbind", "rw"]
    }));
    env.assert_refused(
        "create",
        &b,
        "shm-name",
        &[
            "refused by moat rule bind-source-filesystem",
            "above the 256 its size allows",
        ],
    );
    assert!(!shm.join("planted").exists(), "the container wrote the shm");
}

/// Red-team R8-2: one container opened 3071 ptys (every pty of the kernel's
/// pool for non-host devpts instances) and every other container's
/// `/dev/ptmx` failed with ENOSPC. Now its devpts carries `max=`.
#[test]
fn a_container_gets_at_most_pty_max_ptys() {
    let env = Env::new();
    // Twelve holders of a pty each; count the ptys the devpts handed out.
    let script = "i=0; while [ $i -lt 12 ]; do sleep 30 </dev/ptmx 2>/dev/null & i=$((i+1)); done; \
                  sleep 1; ls /dev/pts | grep -c '^[0-9]'; grep -o 'devpts.*max=[0-9]*' /proc/self/mountinfo | grep -o 'max=[0-9]*'";
    let b = env.sh_bundle(script);
    let pf = policy_file(&env, "pty.toml", "[filesystem]\npty_max = 8\n");
    let id = env.id("pty-max");
    let leak = env.leak_check(&id);
    let out = {
        let _g = env.guard(&id);
        env.moat(&["--policy", &pf, "run", "--bundle", b.path(), &id])
    };
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["8", "max=8"], "{}", out.stdout);
    leak.verify();

    // The default policy: 256, well below the kernel's shared pool.
    let b =
        env.sh_bundle("grep -o 'devpts.*max=[0-9]*' /proc/self/mountinfo | grep -o 'max=[0-9]*'");
    let id = env.id("pty-default");
    let leak = env.leak_check(&id);
    let out = env.run(&b, &id);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "max=256", "{}", out.stdout);
    leak.verify();
}
