//! T19 / T40 (red-team R7-2, R7-3) through docker: a docker `local` volume
//! with `volume-opt=type=…,device=…,o=…` is mounted by dockerd (host root)
//! at `/var/lib/docker/volumes/<v>/_data`, and moat gets a plain bind of
//! that path. moat judges what the host shows there, not the name:
//! - R7-2: `type=none,o=bind,device=<another container's /dev/shm or a
//!   kubelet pod's volume>` is that tenant's storage, seen through the
//!   mount alias: refused by the engine-scoped rules (rule
//!   `sensitive-host-mount`), never mounted (nor idmapped);
//! - R7-3: `type=ext4,device=<block device>` the host mounts nowhere else,
//!   or only by a subdirectory (the btrfs `subvol=@` layout), is a
//!   driver-mounted volume: refused (rule `bind-source-filesystem`) unless
//!   `volumes.driver_mounted_fs_types` lists ext4. The same device mounted
//!   whole at a host path is that host directory (accepted, unshifted).
//!
//! Every test makes its own containers, volumes, directories and loop
//! devices and removes them on drop, also on failure; each ends with the
//! docker leftover check (`Ctx::finish`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_integration::cmd::{run_cmd, Out};
use moat_integration::docker::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// `out` is refused by moat `rule`, one line saying every part of `why`,
/// and the container's command never ran.
#[track_caller]
fn assert_refused(out: &Out, rule: &str, why: &[&str]) {
    let text = out.combined();
    assert!(!out.ok(), "accepted: {}", out.describe());
    assert!(!text.contains("RAN"), "the command ran: {}", out.describe());
    let line = text
        .lines()
        .find(|l| l.contains(&format!("refused by moat rule {rule}:")))
        .unwrap_or_else(|| panic!("not refused by {rule}: {}", out.describe()));
    for w in why {
        assert!(line.contains(w), "{rule} without {w:?}: {line}");
    }
}

/// Removes a directory tree on drop (and `/var/lib/kubelet` too when the
/// test made it).
struct TreeGuard {
    remove: Vec<PathBuf>,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        for p in &self.remove {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// R7-2: another docker container's shareable /dev/shm bound through a
/// local volume is that container's files (its mount alias names them):
/// refused like the direct bind, read-only too.
#[test]
fn a_volume_binding_another_containers_shm_is_refused() {
    let Some(ctx) = Ctx::new("a_volume_binding_another_containers_shm_is_refused") else {
        return;
    };
    let victim = ctx.container("victim");
    let v = victim.start_detached(
        &["--ipc", "shareable"],
        &["sh", "-c", "echo victim-shm > /dev/shm/s; sleep 600"],
    );
    let shm = format!("/var/lib/docker/containers/{v}/mounts/shm");
    assert!(
        moat_integration::cmd::wait_until(TIMEOUT, || Path::new(&shm).join("s").exists()),
        "the victim never wrote its shm"
    );
    let volume = Volume::local(
        &ctx,
        "shm",
        &["type=none", "o=bind", &format!("device={shm}")],
    );
    let c = ctx.container("reader");
    let out = c.run(
        &["--rm", "-v", &format!("{}:/s:ro", volume.name)],
        &["sh", "-c", "echo RAN; cat /s/s"],
    );
    assert_refused(
        &out,
        "sensitive-host-mount",
        &[
            &format!("belongs to container {v}"),
            "where the host mounts the same files",
        ],
    );
    assert!(!out.stdout.contains("victim-shm"), "{}", out.describe());
    drop(c);
    drop(victim);
    drop(volume);
    ctx.finish();
}

/// R7-2: a kubelet pod's volume (the layout kubelet makes, simulated)
/// bound through a local volume is that pod's: refused for a docker
/// bundle, and nothing is written into it.
#[test]
fn a_volume_binding_a_kubelet_pod_volume_is_refused() {
    let Some(ctx) = Ctx::new("a_volume_binding_a_kubelet_pod_volume_is_refused") else {
        return;
    };
    let uid = format!("moat-it-{}-pod", std::process::id());
    let kubelet = Path::new("/var/lib/kubelet");
    let mut guard = TreeGuard {
        remove: vec![kubelet.join("pods").join(&uid)],
    };
    if !kubelet.exists() {
        guard.remove.push(kubelet.to_path_buf());
    }
    let data = kubelet
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), "other-pod-data\n").unwrap();
    let volume = Volume::local(
        &ctx,
        "pod",
        &["type=none", "o=bind", &format!("device={}", data.display())],
    );
    let c = ctx.container("writer");
    let out = c.run(
        &["--rm", "-v", &format!("{}:/p", volume.name)],
        &["sh", "-c", "echo RAN; cat /p/f; echo planted > /p/g"],
    );
    assert_refused(
        &out,
        "sensitive-host-mount",
        &[&format!("is a volume of pod {uid}")],
    );
    assert!(
        !data.join("g").exists(),
        "the tenant wrote the pod's volume"
    );
    drop(c);
    drop(volume);
    drop(guard);
    ctx.finish();
}

/// Review M3: a docker tenant's local volume `o=bind,device=<dir>` is a
/// narrower mount of the host's disk (its root is `<dir>`). While it is
/// mounted (its container runs), another tenant's bind of a path below
/// `<dir>` is seen there only through that narrower mount: no claim of
/// docker's on those files, so a raw tenant's bind is accepted (main's
/// binary refused it as docker's storage: the volume's maker could refuse
/// every other tenant's binds below any directory it named). The R7-2
/// attack (a volume whose own mount is another pod's volume) is still
/// refused: `a_volume_binding_a_kubelet_pod_volume_is_refused`.
#[test]
fn a_tenants_bind_volume_refuses_no_other_tenants_binds_below_it() {
    let Some(ctx) = Ctx::new("a_tenants_bind_volume_refuses_no_other_tenants_binds_below_it")
    else {
        return;
    };
    let shared = tempfile::Builder::new()
        .prefix("moat-it-m3-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let below = shared.path().join("b");
    fs::create_dir_all(&below).unwrap();
    fs::write(below.join("f"), "b-data\n").unwrap();
    let volume = Volume::local(
        &ctx,
        "m3",
        &[
            "type=none",
            "o=bind",
            &format!("device={}", shared.path().display()),
        ],
    );
    // Tenant A's container keeps its volume mounted.
    let a = ctx.container("a");
    a.start_detached(&["-v", &format!("{}:/v", volume.name)], &["sleep", "60"]);
    let data = volume.host_path();
    let mounted = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounted.contains(&format!(" {} ", data.display())),
        "the volume is not mounted at {}",
        data.display()
    );
    // Tenant B, a raw bundle, binds its own path below A's directory.
    let env = moat_integration::Env::new();
    let mut b = env.sh_bundle("echo RAN; cat /b/f");
    b.add_mount(serde_json::json!({
        "destination": "/b", "type": "bind",
        "source": below.to_str().unwrap(), "options": ["rbind", "ro"]
    }));
    let id = env.id("m3b");
    let leaks = env.leak_check(&id);
    let out = env.run(&b, &id);
    assert!(
        out.success() && out.stdout.contains("RAN") && out.stdout.contains("b-data"),
        "a tenant's bind below another tenant's volume device was refused: {out}"
    );
    leaks.verify();
    drop(a);
    drop(volume);
    ctx.finish();
}

/// A loop device on an ext4 image the test makes: a 0600 root file in
/// `other/`, an empty `sub/`; detached (and the image removed) on drop.
struct LoopDisk {
    dir: tempfile::TempDir,
    dev: String,
}

impl LoopDisk {
    fn new() -> LoopDisk {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let f = fs::File::create(&img).unwrap();
        f.set_len(32 << 20).unwrap();
        drop(f);
        let img_s = img.display().to_string();
        run_cmd("mkfs.ext4", &["-q", "-F", &img_s], TIMEOUT).expect_ok();
        let dev = run_cmd("losetup", &["-f", "--show", &img_s], TIMEOUT)
            .expect_ok()
            .stdout
            .trim()
            .to_string();
        let disk = LoopDisk { dir, dev };
        let m = disk.mount_point("fill");
        run_cmd("mount", &[&disk.dev, m.to_str().unwrap()], TIMEOUT).expect_ok();
        fs::create_dir_all(m.join("sub")).unwrap();
        fs::create_dir_all(m.join("other")).unwrap();
        fs::write(m.join("other/secret"), "other-tenants-data\n").unwrap();
        run_cmd(
            "chmod",
            &["600", m.join("other/secret").to_str().unwrap()],
            TIMEOUT,
        )
        .expect_ok();
        run_cmd("umount", &[m.to_str().unwrap()], TIMEOUT).expect_ok();
        disk
    }

    /// A new directory `name` beside the image.
    fn mount_point(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        for name in ["fill", "whole", "hostview"] {
            let p = self.dir.path().join(name);
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = run_cmd("losetup", &["-d", &self.dev], TIMEOUT);
    }
}

/// R7-3 (a): an ext4 loop device mounted nowhere, as a docker local
/// volume: a driver-mounted volume, refused with the policy key; the
/// volume is left unmounted and the device's files untouched.
#[test]
fn a_block_device_volume_mounted_nowhere_else_is_refused() {
    let Some(ctx) = Ctx::new("a_block_device_volume_mounted_nowhere_else_is_refused") else {
        return;
    };
    let disk = LoopDisk::new();
    let volume = Volume::local(&ctx, "blk", &["type=ext4", &format!("device={}", disk.dev)]);
    let c = ctx.container("reader");
    let out = c.run(
        &["--rm", "-v", &format!("{}:/d", volume.name)],
        &[
            "sh",
            "-c",
            "echo RAN; cat /d/other/secret; echo x > /d/other/planted",
        ],
    );
    assert_refused(
        &out,
        "bind-source-filesystem",
        &[
            "is a driver-mounted volume (ext4)",
            "volumes.driver_mounted_fs_types",
        ],
    );
    assert!(
        !out.stdout.contains("other-tenants-data"),
        "{}",
        out.describe()
    );
    drop(c);
    drop(volume);
    drop(disk);
    ctx.finish();
}

/// R7-3 (b): the host mounts only a subdirectory of the device (as a
/// btrfs host mounts `subvol=@` at `/`); a volume of the whole device
/// shows what no host mount covers: refused. The same device mounted
/// whole at a host path is that host directory: the volume is accepted,
/// unshifted (not idmapped), so the 0600 root file stays unreadable.
#[test]
fn a_block_device_volume_whose_host_mount_is_a_subdirectory_is_refused() {
    let Some(ctx) = Ctx::new("a_block_device_volume_whose_host_mount_is_a_subdirectory_is_refused")
    else {
        return;
    };
    let disk = LoopDisk::new();
    let whole = disk.mount_point("whole");
    let hostview = disk.mount_point("hostview");
    run_cmd("mount", &[&disk.dev, whole.to_str().unwrap()], TIMEOUT).expect_ok();
    let sub = whole.join("sub").display().to_string();
    run_cmd(
        "mount",
        &["--bind", &sub, hostview.to_str().unwrap()],
        TIMEOUT,
    )
    .expect_ok();
    run_cmd("umount", &[whole.to_str().unwrap()], TIMEOUT).expect_ok();
    let volume = Volume::local(&ctx, "sub", &["type=ext4", &format!("device={}", disk.dev)]);
    let c = ctx.container("reader");
    let out = c.run(
        &["--rm", "-v", &format!("{}:/d", volume.name)],
        &["sh", "-c", "echo RAN; cat /d/other/secret"],
    );
    assert_refused(
        &out,
        "bind-source-filesystem",
        &["is a driver-mounted volume (ext4)"],
    );
    drop(c);
    drop(volume);

    // The whole device mounted at a host path: the volume shows that
    // host directory (its alias), judged and staged like a bind of it.
    run_cmd("mount", &[&disk.dev, whole.to_str().unwrap()], TIMEOUT).expect_ok();
    let volume = Volume::local(
        &ctx,
        "whole",
        &["type=ext4", &format!("device={}", disk.dev)],
    );
    let c = ctx.container("ok");
    let out = c
        .run(
            &["--rm", "-v", &format!("{}:/d", volume.name)],
            &[
                "sh",
                "-c",
                "grep ' /d ' /proc/self/mountinfo; ls /d; cat /d/other/secret || echo UNREADABLE",
            ],
        )
        .expect_ok();
    assert!(
        out.stdout.contains("other") && out.stdout.contains("UNREADABLE"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("idmapped"), "{}", out.describe());
    drop(c);
    drop(volume);
    drop(disk);
    ctx.finish();
}
