//! T40 / T5 (red-team R6-8, R6-3) through the real `moat` binary on raw
//! bundles: a bind source is judged by the filesystem the kernel says it is
//! (on the fd moat mounts, and the mounts below it for `rbind`), whatever
//! path it sits at. The test mounts each filesystem itself, in its own
//! temporary directory, and unmounts it on drop. Every case ends with the
//! leak check.

use std::fs;
use std::path::{Path, PathBuf};

use moat_integration::*;
use serde_json::json;

/// Unmounts (lazily) on drop.
struct TestMount(PathBuf);

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mounts a `fstype` filesystem with `data` at a new directory `name` in
/// the test's temporary directory.
fn mount_fs(env: &Env, name: &str, fstype: &str, data: &str) -> TestMount {
    let dir = env.tmp.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    mount_at(&dir, fstype, data)
}

/// Mounts a `fstype` filesystem with `data` at `dir`.
fn mount_at(dir: &Path, fstype: &str, data: &str) -> TestMount {
    nix::mount::mount(
        Some(fstype),
        dir,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        Some(data),
    )
    .unwrap_or_else(|e| panic!("mount {fstype} at {}: {e}", dir.display()));
    TestMount(dir.to_path_buf())
}

/// A bundle running `script` with `mount` added.
fn bundle_with(env: &Env, script: &str, mount: serde_json::Value) -> Bundle {
    let mut b = env.sh_bundle(script);
    b.add_mount(mount);
    b.write();
    b
}

/// `create` is refused by bind-source-filesystem saying `detail`, and
/// leaves nothing behind.
fn assert_refused(env: &Env, b: &Bundle, detail: &str) {
    env.assert_refused(
        "create",
        b,
        "bindfs",
        &["refused by moat rule bind-source-filesystem", detail],
    );
}

/// The container runs, prints what `script` prints, and leaves nothing.
fn runs(env: &Env, b: &Bundle) -> String {
    let id = env.id("bindfs-ok");
    let leak = env.leak_check(&id);
    let out = {
        let _g = env.guard(&id);
        env.run(b, &id)
    };
    out.assert_ok();
    leak.verify();
    out.stdout.clone()
}

fn source(m: &TestMount) -> &Path {
    &m.0
}

#[test]
fn kernel_filesystems_and_ramfs_are_refused_as_bind_sources() {
    let env = Env::new();
    let proc_ = mount_fs(&env, "p", "proc", "");
    let b = bundle_with(&env, "ls /v", bind(source(&proc_), "/v", false));
    assert_refused(&env, &b, "a kernel filesystem (proc)");
    let ram = mount_fs(&env, "r", "ramfs", "mode=755");
    let b = bundle_with(&env, "ls /v", bind(source(&ram), "/v", false));
    assert_refused(&env, &b, "a ramfs");
}

#[test]
fn an_overlay_source_needs_the_policy() {
    let env = Env::new();
    let base = env.tmp.path().join("ov");
    for d in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(base.join(d)).unwrap();
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("lower").display(),
        base.join("upper").display(),
        base.join("work").display()
    );
    let merged = base.join("merged");
    let _m = mount_at(&merged, "overlay", &data);
    let b = bundle_with(&env, "ls /v", bind(&merged, "/v", false));
    assert_refused(&env, &b, "volumes.allow_fs_types");
}

#[test]
fn writable_tmpfs_sources_are_held_to_the_caps() {
    let env = Env::new();
    let big = mount_fs(&env, "big", "tmpfs", "size=1g,nr_inodes=1000");
    let b = bundle_with(&env, "true", bind(source(&big), "/v", true));
    assert_refused(
        &env,
        &b,
        "a writable tmpfs of 1073741824 bytes, above the policy's filesystem.tmpfs_size",
    );
    // Read-only, the container cannot fill it.
    let b = bundle_with(&env, "echo RO-OK", bind(source(&big), "/v", false));
    assert!(runs(&env, &b).contains("RO-OK"));

    let inodes = mount_fs(&env, "inodes", "tmpfs", "size=1m");
    let b = bundle_with(&env, "true", bind(source(&inodes), "/v", true));
    assert_refused(&env, &b, "above the 256 its size allows");

    let small = mount_fs(&env, "small", "tmpfs", "size=1m,nr_inodes=256,mode=777");
    let b = bundle_with(
        &env,
        "echo hi > /v/f && cat /v/f",
        bind(source(&small), "/v", true),
    );
    assert!(runs(&env, &b).contains("hi"));
}

/// A recursive bind carries the mounts below its source: a proc mounted
/// inside a plain directory is judged too; a plain bind does not carry it.
#[test]
fn mounts_below_a_recursive_bind_source_are_judged() {
    let env = Env::new();
    let dir = env.tmp.path().join("tree");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("file"), "plain\n").unwrap();
    let sub = dir.join("sub");
    let _m = mount_at(&sub, "proc", "");
    let b = bundle_with(&env, "cat /v/file", bind(&dir, "/v", false));
    assert_refused(&env, &b, &format!("has {} mounted below it", sub.display()));
    let b = bundle_with(
        &env,
        "cat /v/file; ls /v/sub | wc -l",
        json!({"destination": "/v", "type": "bind", "source": dir, "options": ["bind", "ro"]}),
    );
    let out = runs(&env, &b);
    assert!(out.starts_with("plain\n0\n"), "{out}");
}

/// A bind of `source` at `dest` with `options` after `rbind`.
fn rbind_with(source: &Path, dest: &str, options: &[&str]) -> serde_json::Value {
    let mut all = vec!["rbind"];
    all.extend_from_slice(options);
    json!({"destination": dest, "type": "bind", "source": source, "options": all})
}

/// Red-team R7-1: libcontainer applies `rro`/`rrw` after `ro`/`rw`,
/// whatever their order, so `["rbind", "rrw", "ro"]` was judged read-only
/// (the last wins) and mounted read-write: a 1 GiB host tmpfs past the
/// 64m cap. Now any read-only option wins: each contradicting order is
/// mounted read-only (a write fails inside, nothing reaches the host), and
/// a read-write one is refused.
#[test]
fn contradicting_read_only_options_mount_read_only_or_are_refused() {
    let env = Env::new();
    let big = mount_fs(&env, "big", "tmpfs", "size=1g,nr_inodes=1000,mode=1777");
    for options in [
        &["rrw", "ro"][..],
        &["ro", "rrw"],
        &["ro", "rw"],
        &["rrw", "rro"],
        &["rro", "rrw"],
        &["rw", "rrw", "ro"],
    ] {
        let b = bundle_with(
            &env,
            "grep ' /v ' /proc/self/mountinfo | cut -d' ' -f6; echo x > /v/f && echo WROTE; true",
            rbind_with(source(&big), "/v", options),
        );
        let out = runs(&env, &b);
        assert!(out.starts_with("ro,"), "{options:?}: {out}");
        assert!(!out.contains("WROTE"), "{options:?}: {out}");
        assert!(!source(&big).join("f").exists(), "{options:?}");
    }
    for options in [&["rrw"][..], &["ro", "rw", "rrw"]] {
        let b = bundle_with(&env, "true", rbind_with(source(&big), "/v", options));
        // ["ro", "rw", "rrw"]: ro given, so read-only: runs.
        if options.contains(&"ro") {
            runs(&env, &b);
        } else {
            assert_refused(&env, &b, "a writable tmpfs of 1073741824 bytes");
        }
    }
}

/// Every order of up to three of ro/rw/rro/rrw, mounted by the real
/// libcontainer and kernel in one container (a small tmpfs with another
/// mounted below it): what the container can write is what the hardening's
/// rule says, read-only on top with any `ro`/`rro`, below with `rro`.
#[test]
fn what_a_container_writes_through_a_bind_is_what_moat_judged() {
    let env = Env::new();
    let top = mount_fs(&env, "top", "tmpfs", "size=1m,nr_inodes=256,mode=1777");
    let sub = source(&top).join("sub");
    fs::create_dir(&sub).unwrap();
    let _below = mount_at(&sub, "tmpfs", "size=1m,nr_inodes=256,mode=1777");
    let words = ["ro", "rw", "rro", "rrw"];
    let mut lists: Vec<Vec<&str>> = vec![vec![]];
    for len in 1..=3u32 {
        for n in 0..4usize.pow(len) {
            lists.push((0..len).map(|i| words[n / 4usize.pow(i) % 4]).collect());
        }
    }
    assert_eq!(lists.len(), 85);
    let mut b = env.sh_bundle(
        "i=0; while [ -d /m/$i ]; do \
           t=ro; echo > /m/$i/f$i 2>/dev/null && t=rw; \
           s=ro; echo > /m/$i/sub/f$i 2>/dev/null && s=rw; \
           echo \"$i $t $s\"; i=$((i+1)); done",
    );
    for (i, options) in lists.iter().enumerate() {
        b.add_mount(rbind_with(source(&top), &format!("/m/{i}"), options));
    }
    let out = runs(&env, &b);
    for (i, options) in lists.iter().enumerate() {
        let has = |o: &str| options.contains(&o);
        let rw = |w: bool| if w { "rw" } else { "ro" };
        let want = format!("{i} {} {}", rw(!has("ro") && !has("rro")), rw(!has("rro")));
        assert!(
            out.lines().any(|l| l == want),
            "{options:?}: want {want:?}:\n{out}"
        );
    }
}

/// Red-team R7-4: tmpfs binds were capped one by one, never summed: five
/// host tmpfs of 60m each (within the 64m cap) on top of the bundle's own
/// 256m (/dev, /dev/shm, /tmp, /run) pass the 512m total. Now they count:
/// refused with the sum; two fit, and read-only ones do not count.
#[test]
fn writable_tmpfs_bind_sources_count_in_the_tmpfs_total() {
    let env = Env::new();
    let volumes: Vec<TestMount> = (0..5)
        .map(|i| {
            mount_fs(
                &env,
                &format!("vol{i}"),
                "tmpfs",
                "size=60m,nr_inodes=15360,mode=1777",
            )
        })
        .collect();
    let bundle = |writable: usize, read_only: usize| {
        let mut b = env.sh_bundle("for d in /tt*; do echo x > $d/f && echo W; done; true");
        for (i, v) in volumes.iter().enumerate().take(writable + read_only) {
            b.add_mount(bind(source(v), &format!("/tt{i}"), i < writable));
        }
        b
    };
    let id = env.id("tmpfs-total");
    let leak = env.leak_check(&id);
    {
        let _g = env.guard(&id);
        let out = env.moat(&["create", "--bundle", bundle(5, 0).path(), &id]);
        out.assert_fails_with("refused by moat rule tmpfs-total");
        out.assert_fails_with("and 5 writable tmpfs bind sources of 300 MiB");
        out.assert_fails_with("above filesystem.tmpfs_total (512m)");
        // One line names the rule, both sums and the total.
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("tmpfs-total"))
            .unwrap_or_default();
        assert!(
            line.contains("300 MiB") && line.contains("MiB in all") && line.contains("512m"),
            "{line}"
        );
    }
    leak.verify();
    let out = runs(&env, &bundle(2, 3));
    assert_eq!(out.matches('W').count(), 2, "{out}");
}
