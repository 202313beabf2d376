//! Real workloads, unmodified, under `docker run --runtime=moat`: nginx,
//! Redis, PostgreSQL and a Python program, from the images `hack/images`
//! builds (Debian bookworm packages). Each test shows the workload works and
//! that the sandbox is on while it does: the root filesystem is read-only,
//! egress to a host the test created is refused (while a runc container
//! reaches it), and the workload runs under seccomp (mode 2) with
//! no_new_privs and a capability set within moat's allowlist.
//!
//! One test runs the Python program through containerd (`ctr run`, moat as
//! the runc shim's binary) from the images' copies in containerd namespace
//! `moat-images`. nginx, Redis and PostgreSQL as Kubernetes pods, through
//! containerd's CRI, are in `workloads_cri.rs`.
//!
//! Run with (images built once, then cached):
//!
//! ```sh
//! make test-workloads
//! # or, against a build registered under another name:
//! MOAT_RUNTIME_NAME=moat-wl MOAT_INSTALL_PATH=/usr/local/libexec/moat-wl \
//!     bash hack/docker-register.sh target/release/moat
//! MOAT_IMAGES_CONTAINERD=1 bash hack/images
//! MOAT_DOCKER_RUNTIME=moat-wl cargo test --release -p moat-integration \
//!     --test workloads -- --test-threads=1
//! ```
//!
//! The docker runtime name comes from `MOAT_DOCKER_RUNTIME` (default
//! `moat`). Every test removes its containers, volumes and networks, also
//! when it fails (guards), and checks that moat kept nothing for its
//! containers. Network traffic goes only to 127.0.0.1 ports the tests
//! publish and to the gateway address of a docker network the test creates.
//! Without docker the tests are skipped, unless `CI` is set.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_integration::cmd::{run_cmd, wait_until};
use moat_integration::docker::*;

// ---------------------------------------------------------------------------
// The workloads.
// ---------------------------------------------------------------------------

/// nginx serves a page on a published port, fetched from the host, and logs
/// the request to the container's stdout (through its
/// /var/log/nginx/access.log -> /dev/stdout link). The one tweak it needs,
/// a tmpfs for its temp dirs under /var/lib/nginx, is shown to be needed.
#[test]
fn nginx_serves_a_published_port() {
    let Some(ctx) = Ctx::with_images("nginx_serves_a_published_port", &["moat-nginx"]) else {
        return;
    };
    let outside = OutsideHost::new(&ctx);
    outside.assert_reachable_under_runc(&ctx);

    // Without the tweak: nginx cannot create its temp dirs on a read-only root.
    let bare = ctx.container("bare");
    let out = bare.run_image(&["--network", &outside.network], "moat-nginx:latest", &[]);
    assert!(
        !out.ok(),
        "nginx ran without a writable /var/lib/nginx: {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("/var/lib/nginx") && out.stderr.contains("Read-only file system"),
        "nginx failed for another reason than its temp dir: {}",
        out.describe()
    );
    drop(bare);

    let port = free_port();
    let c = ctx.container("web");
    let publish = format!("127.0.0.1:{port}:80");
    c.start(
        &[
            "--network",
            &outside.network,
            "--tmpfs",
            "/var/lib/nginx",
            "-p",
            &publish,
        ],
        "moat-nginx:latest",
        &[],
    );
    let mut last = None;
    c.wait_for("serving", Duration::from_secs(20), |_| {
        last = Some(http_get_localhost(port));
        matches!(&last, Some(Ok((status, _))) if status.contains(" 200 "))
    });
    let (status, body) = http_get_localhost(port).expect("GET /");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        body.contains("served by nginx under moat"),
        "body: {body:?}"
    );
    let logged = wait_until(Duration::from_secs(5), || {
        c.logs().contains("\"GET / HTTP/1.0\" 200")
    });
    assert!(
        logged,
        "the access log did not reach docker logs:\n{}",
        c.logs()
    );
    // Workers run as www-data, the master as root, all sandboxed.
    let ps = c.exec(&[], &["bash", "-c", "for p in /proc/[0-9]*; do echo \"$(cat $p/comm) $(awk '/^Uid:/{print $2}' $p/status) $(awk '/^Seccomp:/{print $2}' $p/status)\"; done"]).expect_ok();
    assert!(
        ps.stdout.lines().any(|l| l.starts_with("nginx 33 2")),
        "no nginx worker as www-data (uid 33) under seccomp:\n{}",
        ps.stdout
    );
    assert_sandbox_on(&c, &outside);
    drop(c);
    drop(outside);
    ctx.assert_no_leftovers();
}

/// redis-server keeps its data in a named volume: SET, restart the
/// container, GET returns the value. The volume is idmapped, so the data
/// file belongs to the image's redis user both inside and on disk.
#[test]
fn redis_persists_through_a_volume() {
    let Some(ctx) = Ctx::with_images("redis_persists_through_a_volume", &["moat-redis"]) else {
        return;
    };
    let outside = OutsideHost::new(&ctx);
    outside.assert_reachable_under_runc(&ctx);
    let vol = ctx.volume("data");
    let c = ctx.container("redis");
    let mount = format!("{}:/data", vol.name);
    c.start(
        &["--network", &outside.network, "-v", &mount],
        "moat-redis:latest",
        &[],
    );
    let ping = |c: &Container| c.exec(&[], &["redis-cli", "ping"]).stdout.trim() == "PONG";
    c.wait_for("answering PING", Duration::from_secs(20), ping);

    let value = format!("moat-{}", std::process::id());
    let set = c
        .exec(&[], &["redis-cli", "SET", "moat:key", &value])
        .expect_ok();
    assert_eq!(set.stdout.trim(), "OK", "{}", set.describe());
    let save = c.exec(&[], &["redis-cli", "SAVE"]).expect_ok();
    assert_eq!(save.stdout.trim(), "OK", "{}", save.describe());

    docker(&["restart", "-t", "10", &c.name]).expect_ok();
    c.wait_for(
        "answering PING after restart",
        Duration::from_secs(20),
        ping,
    );
    let get = c.exec(&[], &["redis-cli", "GET", "moat:key"]).expect_ok();
    assert_eq!(
        get.stdout.trim(),
        value,
        "value lost across restart: {}",
        get.describe()
    );

    // Ownership: redis's uid in the image, inside and on disk.
    let redis_uid: u32 = c
        .exec(&[], &["id", "-u", "redis"])
        .expect_ok()
        .stdout
        .trim()
        .parse()
        .expect("redis uid");
    let inside = c
        .exec(&[], &["stat", "-c", "%u", "/data/dump.rdb"])
        .expect_ok();
    assert_eq!(inside.stdout.trim(), redis_uid.to_string(), "owner inside");
    let on_disk =
        std::fs::metadata(vol.host_path().join("dump.rdb")).expect("dump.rdb on the host");
    assert_eq!(on_disk.uid(), redis_uid, "on-disk owner of the data file");

    assert_sandbox_on(&c, &outside);
    drop(c);
    drop(vol);
    drop(outside);
    ctx.assert_no_leftovers();
}

/// PostgreSQL: initdb into a fresh volume (postgres refuses a data
/// directory it does not own, the classic user-namespace trap), create a
/// table, insert, restart, query.
#[test]
fn postgres_survives_a_restart_on_a_volume() {
    let Some(ctx) = Ctx::with_images(
        "postgres_survives_a_restart_on_a_volume",
        &["moat-postgres"],
    ) else {
        return;
    };
    let outside = OutsideHost::new(&ctx);
    outside.assert_reachable_under_runc(&ctx);
    let vol = ctx.volume("pgdata");
    let c = ctx.container("pg");
    let mount = format!("{}:/var/lib/postgresql/data", vol.name);
    c.start(
        &["--network", &outside.network, "-v", &mount],
        "moat-postgres:latest",
        &[],
    );
    let ready = |c: &Container| {
        c.exec(&[], &["psql", "-U", "postgres", "-tAc", "SELECT 1"])
            .stdout
            .trim()
            == "1"
    };
    c.wait_for("accepting queries", Duration::from_secs(60), ready);

    let value = format!("moat-{}", std::process::id());
    c.exec(
        &[],
        &[
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-c",
            &format!("CREATE TABLE moat_t (v text); INSERT INTO moat_t VALUES ('{value}');"),
        ],
    )
    .expect_ok();
    docker(&["restart", "-t", "30", &c.name]).expect_ok();
    c.wait_for(
        "accepting queries after restart",
        Duration::from_secs(60),
        ready,
    );
    let got = c
        .exec(
            &[],
            &["psql", "-U", "postgres", "-tAc", "SELECT v FROM moat_t"],
        )
        .expect_ok();
    assert_eq!(
        got.stdout.trim(),
        value,
        "row lost across restart: {}",
        got.describe()
    );
    assert!(
        c.logs()
            .contains("database system is ready to accept connections"),
        "{}",
        c.logs()
    );

    let pg_uid: u32 = c
        .exec(&[], &["id", "-u"])
        .expect_ok()
        .stdout
        .trim()
        .parse()
        .expect("postgres uid");
    assert_ne!(pg_uid, 0, "postgres runs as its own user");
    let data = vol.host_path();
    let version = std::fs::metadata(data.join("PG_VERSION")).expect("PG_VERSION on the host");
    assert_eq!(version.uid(), pg_uid, "on-disk owner of the cluster files");
    let dir = std::fs::metadata(&data).expect("data dir");
    assert_eq!(dir.uid(), pg_uid, "on-disk owner of the data directory");
    assert_eq!(dir.mode() & 0o777, 0o700, "data directory mode");

    assert_sandbox_on(&c, &outside);
    drop(c);
    drop(vol);
    drop(outside);
    ctx.assert_no_leftovers();
}

/// The Python program the python test runs (as the container's command).
const PYTHON_APP: &str = r#"
import json, multiprocessing, os, socket, sqlite3, stat, subprocess, sys, tempfile, threading

out = {}

# threads
sums = [0] * 8
def work(i):
    sums[i] = sum(range(i * 1000, (i + 1) * 1000))
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
out["threads"] = sum(sums) == sum(range(8000))

# subprocess
p = subprocess.run(["sh", "-c", "echo sub-$((6 * 7))"], capture_output=True, text=True, check=True)
out["subprocess"] = p.stdout.strip()

# tempfile + sqlite3
with tempfile.TemporaryDirectory() as d:
    db = sqlite3.connect(os.path.join(d, "t.db"))
    db.execute("create table t (k integer primary key, v text)")
    db.executemany("insert into t (v) values (?)", [("v%d" % i,) for i in range(100)])
    db.commit()
    out["sqlite3"] = db.execute("select count(*) from t").fetchone()[0]
    db.close()
with tempfile.NamedTemporaryFile("w+") as f:
    f.write("hello")
    f.flush()
    f.seek(0)
    out["tempfile"] = f.read()

# multiprocessing: a pool (fork), a queue and a lock (POSIX semaphores in /dev/shm)
def square(x):
    return x * x
if __name__ == "__main__":
    with multiprocessing.Pool(4) as pool:
        out["multiprocessing"] = sum(pool.map(square, range(100)))
    q = multiprocessing.Queue()
    lock = multiprocessing.Lock()
    def child(q, lock):
        with lock:
            q.put(os.getpid())
    pr = multiprocessing.Process(target=child, args=(q, lock))
    pr.start()
    out["mp_queue"] = q.get(timeout=10) == pr.pid
    pr.join()

# the sandbox, seen by the workload itself
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
out["seccomp"] = status["Seccomp"].strip()
out["no_new_privs"] = status["NoNewPrivs"].strip()
try:
    open("/moat-rootfs-write-probe", "w")
    out["rootfs_write"] = "succeeded"
except OSError as e:
    out["rootfs_write"] = e.strerror
try:
    socket.create_connection((os.environ["OUTSIDE_HOST"], int(os.environ["OUTSIDE_PORT"])), timeout=5)
    out["egress"] = "connected"
except OSError as e:
    out["egress"] = type(e).__name__

# a volume: files keep the container's owners on disk; a setuid-root
# binary planted there does not raise privileges (nosuid + no_new_privs)
mine = "/vol/owned-by-1000"
open(mine, "w").close()
os.chown(mine, 1000, 1000)
suid = "/vol/suid-python"
with open(sys.executable, "rb") as src, open(suid, "wb") as dst:
    dst.write(src.read())
os.chmod(suid, 0o4755)
out["suid_mode"] = oct(os.stat(suid).st_mode & 0o7777)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.dup2(w, 1)
    os.setgid(65534)
    os.setuid(65534)
    os.execv(suid, [suid, "-c", "import os; print(os.geteuid())"])
os.close(w)
euid = os.read(r, 100).decode().strip()
os.waitpid(pid, 0)
out["suid_euid"] = euid

print("RESULT " + json.dumps(out, sort_keys=True))
"#;

/// A Python program using threads, subprocess, tempfile, sqlite3 and
/// multiprocessing runs as the container's command and sees the sandbox;
/// files it creates in a volume keep its ids on disk, and a setuid-root
/// binary it plants there grants nothing.
#[test]
fn python_app_with_threads_subprocess_sqlite_multiprocessing() {
    let Some(ctx) = Ctx::with_images(
        "python_app_with_threads_subprocess_sqlite_multiprocessing",
        &["moat-python"],
    ) else {
        return;
    };
    let outside = OutsideHost::new(&ctx);
    outside.assert_reachable_under_runc(&ctx);
    let app = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(app.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(app.path().join("app.py"), PYTHON_APP).expect("write app.py");
    std::fs::set_permissions(
        app.path().join("app.py"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let vol = ctx.volume("vol");
    let c = ctx.container("py");
    let app_mount = format!("{}:/app:ro", app.path().display());
    let vol_mount = format!("{}:/vol", vol.name);
    let out = c.run_image(
        &[
            "--network",
            &outside.network,
            "-v",
            &app_mount,
            "-v",
            &vol_mount,
            "-e",
            &format!("OUTSIDE_HOST={}", outside.addr.ip()),
            "-e",
            &format!("OUTSIDE_PORT={}", outside.addr.port()),
        ],
        "moat-python:latest",
        &["python3", "/app/app.py"],
    );
    assert!(out.ok(), "the python app failed: {}", out.describe());
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {}", out.describe()));
    let r: serde_json::Value = serde_json::from_str(line).expect("RESULT is JSON");
    assert_eq!(r["threads"], true, "{r}");
    assert_eq!(r["subprocess"], "sub-42", "{r}");
    assert_eq!(r["sqlite3"], 100, "{r}");
    assert_eq!(r["tempfile"], "hello", "{r}");
    assert_eq!(r["multiprocessing"], 328350, "{r}");
    assert_eq!(r["mp_queue"], true, "{r}");
    assert_eq!(r["seccomp"], "2", "{r}");
    assert_eq!(r["no_new_privs"], "1", "{r}");
    assert_eq!(r["rootfs_write"], "Read-only file system", "{r}");
    assert_eq!(r["egress"], "ConnectionRefusedError", "{r}");
    assert_eq!(
        outside.accepted(),
        1,
        "only the runc control reached the test's host"
    );
    assert_eq!(r["suid_mode"], "0o4755", "{r}");
    assert_eq!(
        r["suid_euid"], "65534",
        "the setuid file in the volume raised privileges: {r}"
    );

    // On disk the volume holds the container's ids: what container root
    // wrote is uid 0, what it chowned to 1000 is 1000.
    let data = vol.host_path();
    let mine = std::fs::metadata(data.join("owned-by-1000")).expect("file on the host");
    assert_eq!((mine.uid(), mine.gid()), (1000, 1000), "on-disk owner");
    let suid = std::fs::metadata(data.join("suid-python")).expect("suid file on the host");
    assert_eq!(
        suid.uid(),
        0,
        "container root's file is uid 0 on disk (docs/threat-model.md T6)"
    );
    drop(c);
    drop(vol);
    drop(outside);
    ctx.assert_no_leftovers();
}

/// Unmounts and removes a test directory tree on drop.
struct TestDir(PathBuf);

impl Drop for TestDir {
    fn drop(&mut self) {
        for sub in ["overlay", "tmpfs"] {
            let p = self.0.join("shielded").join(sub);
            let _ = run_cmd("umount", &["-l", &p.display().to_string()], CMD_TIMEOUT);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ownership of bind sources (T19): only engine-provisioned volume storage
/// (`volumes.idmap_under`: a docker named volume here) is idmapped, so
/// container root's file there is uid 0 on disk; any other source, a
/// root-only host directory included, stays unshifted: the file belongs to
/// the container's unprivileged host range, and host root's own files
/// there cannot be written by container root.
#[test]
fn bind_mount_owners_follow_volume_storage() {
    let Some(ctx) = Ctx::with_images("bind_mount_owners_follow_volume_storage", &[]) else {
        return;
    };
    let base = PathBuf::from(format!("/var/tmp/moat-wl-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = TestDir(base.clone());
    let shielded = base.join("shielded");
    std::fs::create_dir_all(&shielded).expect("mkdir");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(&shielded, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let roots_file = shielded.join("roots");
    std::fs::write(&roots_file, "host root's\n").expect("write");
    std::fs::set_permissions(&roots_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let volume = format!("moat-wl-owners-{}", std::process::id());
    docker(&["volume", "create", &volume]).expect_ok();
    let mountpoint = docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume])
        .expect_ok()
        .stdout
        .trim()
        .to_string();

    let c = ctx.container("c");
    let binds = [
        format!("{volume}:/vol"),
        format!("{}:/shielded", shielded.display()),
    ];
    c.start(
        &["-v", &binds[0], "-v", &binds[1]],
        CONTROL_IMAGE,
        &[
            "sh",
            "-c",
            "touch /vol/f /shielded/f; echo evil >> /shielded/roots; sleep 60",
        ],
    );
    let vol_file = PathBuf::from(&mountpoint).join("f");
    c.wait_for("writing its files", Duration::from_secs(10), |_| {
        vol_file.exists() && shielded.join("f").exists()
    });
    let map = c
        .exec(&[], &["cat", "/proc/self/uid_map"])
        .expect_ok()
        .stdout;
    let host_root = assert_moat_uid_map(&map, "container");
    let owner = |f: &Path| {
        std::fs::metadata(f)
            .map(|m| u64::from(m.uid()))
            .expect("stat")
    };
    assert_eq!(
        owner(&vol_file),
        0,
        "volume storage is idmapped: container root's file is uid 0 on disk"
    );
    assert_eq!(
        owner(&shielded.join("f")),
        host_root,
        "not volume storage: unshifted, the container's host uid"
    );
    assert_eq!(
        std::fs::read_to_string(&roots_file).expect("read"),
        "host root's\n",
        "container root wrote host root's 0600 file"
    );

    let id = c.inspect("{{.Id}}").expect("id");
    let report = run_cmd(
        &moat_bin(),
        &["--root", STATE_ROOTS[1], "report", &id],
        CMD_TIMEOUT,
    )
    .expect_ok()
    .stdout;
    assert!(
        report.contains("bind mount /shielded not idmapped")
            && report.contains("not engine-provisioned volume storage"),
        "{report}"
    );
    drop(c);
    let _ = docker(&["volume", "rm", "-f", &volume]);
    drop(dir);
    ctx.assert_no_leftovers();
}

/// containerd namespace `hack/images` imports the images into
/// (`MOAT_IMAGES_CONTAINERD=1`).
const CTR_NAMESPACE: &str = "moat-images";

/// Removes a containerd container (and its task and snapshot) on drop.
struct CtrContainer(String);

impl Drop for CtrContainer {
    fn drop(&mut self) {
        let ns = ["-n", CTR_NAMESPACE];
        let _ = run_cmd(
            "ctr",
            &[&ns[..], &["task", "kill", "-s", "SIGKILL", &self.0]].concat(),
            CMD_TIMEOUT,
        );
        let _ = run_cmd(
            "ctr",
            &[&ns[..], &["task", "rm", "-f", &self.0]].concat(),
            CMD_TIMEOUT,
        );
        let _ = run_cmd(
            "ctr",
            &[&ns[..], &["containers", "rm", &self.0]].concat(),
            CMD_TIMEOUT,
        );
    }
}

/// The same Python program through containerd (`ctr run` with the runc
/// shim and moat as its runc binary), not docker: it works, and runs under
/// seccomp, no_new_privs and a read-only root. (Egress is not judged here:
/// `ctr run` gives the container no network beyond loopback.)
#[test]
fn python_app_through_containerd() {
    let Some(ctx) = Ctx::with_images("python_app_through_containerd", &["moat-python"]) else {
        return;
    };
    let image = "docker.io/library/moat-python:latest";
    let listed = run_cmd(
        "ctr",
        &["-n", CTR_NAMESPACE, "images", "ls", "-q"],
        CMD_TIMEOUT,
    )
    .expect_ok();
    assert!(
        listed.stdout.lines().any(|l| l == image),
        "{image} is not in containerd namespace {CTR_NAMESPACE}: run `MOAT_IMAGES_CONTAINERD=1 bash hack/images`"
    );
    let base = PathBuf::from(format!("/var/tmp/moat-wl-ctr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = TestDir(base.clone());
    let app = base.join("app");
    let vol = base.join("vol");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::create_dir_all(&vol).expect("mkdir");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Not volume storage: mounted unshifted, so container root needs the
    // host's permission to write there.
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::write(app.join("app.py"), PYTHON_APP).expect("write app.py");
    // ctr names the cgroup /<namespace>/<id>: its namespace's parent is
    // added to the policy this run uses (moat's /moat is the raw tenants'
    // level, refused to an engine's container, T22), through a wrapper
    // that gives moat the policy file.
    let policy = base.join("policy.toml");
    let parents: Vec<String> = moat::policy::DEFAULT_CGROUP_PARENTS
        .iter()
        .map(|p| p.to_string())
        .chain([format!("/{CTR_NAMESPACE}")])
        .collect();
    // Every other key keeps its default (the embedded policy's).
    std::fs::write(&policy, format!("[cgroups]\nparents = {parents:?}\n")).expect("write policy");
    let wrapper = base.join("moat");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --policy {} \"$@\"\n",
            moat_bin(),
            policy.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let name = ctx.name("ctr");
    let guard = CtrContainer(name.clone());
    drop(CtrContainer(name.clone())); // a leftover of a crashed run
    let out = run_cmd(
        "ctr",
        &[
            "-n",
            CTR_NAMESPACE,
            "run",
            "--rm",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            &wrapper.display().to_string(),
            "--mount",
            &format!("type=bind,src={},dst=/app,options=rbind:ro", app.display()),
            "--mount",
            &format!("type=bind,src={},dst=/vol,options=rbind:rw", vol.display()),
            "--env",
            "OUTSIDE_HOST=127.0.0.1",
            "--env",
            "OUTSIDE_PORT=9",
            image,
            &name,
            "python3",
            "/app/app.py",
        ],
        CMD_TIMEOUT,
    );
    assert!(
        out.ok(),
        "the python app failed under containerd: {}",
        out.describe()
    );
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {}", out.describe()));
    let r: serde_json::Value = serde_json::from_str(line).expect("RESULT is JSON");
    for (key, want) in [
        ("threads", serde_json::json!(true)),
        ("subprocess", serde_json::json!("sub-42")),
        ("sqlite3", serde_json::json!(100)),
        ("multiprocessing", serde_json::json!(328350)),
        ("mp_queue", serde_json::json!(true)),
        ("seccomp", serde_json::json!("2")),
        ("no_new_privs", serde_json::json!("1")),
        ("rootfs_write", serde_json::json!("Read-only file system")),
        ("suid_euid", serde_json::json!("65534")),
    ] {
        assert_eq!(r[key], want, "{key}: {r}");
    }
    // A host directory, not engine volume storage (T19): unshifted, so the
    // file belongs to container uid 1000's host id in the container's range.
    let mine = std::fs::metadata(vol.join("owned-by-1000")).expect("file on the host");
    let ns = moat::policy::Policy::embedded().user_namespace;
    assert!(
        mine.uid() >= ns.host_id_base && (mine.uid() - ns.host_id_base) % ns.range_size == 1000,
        "on-disk owner {} is not container uid 1000 of a moat range",
        mine.uid()
    );
    drop(guard);
    drop(dir);
    let traces = moat_traces(&name);
    assert!(traces.is_empty(), "moat left state behind: {traces:?}");
    let root = format!("/run/containerd/runc/{CTR_NAMESPACE}");
    let hash = rootfs_mount_point(&root, &name);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mountinfo.contains(&hash), "moat left mounts for {name}");
    for p in [
        hash.clone(),
        format!("{hash}.mounts"),
        format!("{root}/{name}"),
        format!("{root}/@moat/{name}"),
    ] {
        assert!(!Path::new(&p).exists(), "moat left {p} behind");
    }
}

/// The probe the trixie test runs under moat and under runc: glibc 2.41's
/// fallbacks, coreutils, and the errno of syscalls newer than the profiles
/// (and of the ones moat always denies), from Python's ctypes.
const TRIXIE_PROBE: &str = include_str!("trixie_probe.py");

/// A current userland (Debian trixie, glibc 2.41) under moat answers as
/// under runc with docker's default profile: glibc's fallbacks for newer
/// syscalls, coreutils, and ENOSYS for syscalls newer than the profile;
/// moat's always-denied syscalls answer EPERM (docs/seccomp.md).
#[test]
fn trixie_userland_answers_as_under_runc() {
    let Some(ctx) = Ctx::with_images("trixie_userland_answers_as_under_runc", &["moat-trixie"])
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("probe.py"), TRIXIE_PROBE).expect("write probe");
    std::fs::set_permissions(
        dir.path().join("probe.py"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let mount = format!("{}:/probe:ro", dir.path().display());
    let result = |out: &moat_integration::cmd::Out, who: &str| -> serde_json::Value {
        assert!(out.ok(), "the probe failed under {who}: {}", out.describe());
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no RESULT line under {who}: {}", out.describe()));
        serde_json::from_str(line).expect("RESULT is JSON")
    };
    let c = ctx.container("trixie");
    let moat = result(
        &c.run_image(
            &["-v", &mount],
            "moat-trixie:latest",
            &["python3", "/probe/probe.py"],
        ),
        "moat",
    );
    let control = ctx.name("runc");
    let _guard = NamedContainer(control.clone());
    let runc = result(
        &docker(&[
            "run",
            "--rm",
            "--name",
            &control,
            "--runtime=runc",
            "-v",
            &mount,
            "moat-trixie:latest",
            "python3",
            "/probe/probe.py",
        ]),
        "runc",
    );
    eprintln!("moat: {moat}\nrunc: {runc}");
    assert_eq!(moat["os"], serde_json::json!(["VERSION_CODENAME=trixie"]));
    // glibc's fallback: the portable "not supported" for a symlink (as
    // runc), never "Operation not permitted".
    assert_eq!(moat["lchmod_symlink"], "NotImplementedError", "{moat}");
    assert_eq!(moat["lchmod_symlink"], runc["lchmod_symlink"]);
    assert_eq!(moat["lchmod_file"], "ok", "{moat}");
    assert_eq!(moat["mode_file"], runc["mode_file"]);
    assert_eq!(moat["coreutils_rc"], 0, "{moat}");
    assert_eq!(moat["coreutils"], runc["coreutils"]);
    for (nr, e) in moat["enosys"].as_object().expect("enosys") {
        assert_eq!(e, "ENOSYS", "syscall {nr} under moat: {moat}");
        assert_eq!(
            e, &runc["enosys"][nr],
            "syscall {nr}: moat {e}, runc {}",
            runc["enosys"][nr]
        );
    }
    // Denied on purpose: EPERM, whatever runc's profile answers.
    for (nr, e) in moat["denied"].as_object().expect("denied") {
        assert_eq!(e, "EPERM", "always-denied syscall {nr} under moat: {moat}");
    }
    // Newer calls moat's own profile allows: docker hands over its
    // profile, which decides (docker 20.10's does not name them: ENOSYS
    // under both, and glibc falls back). Never EPERM.
    for (nr, e) in moat["allowed"].as_object().expect("allowed") {
        assert_ne!(e, "EPERM", "syscall {nr} under moat: {moat}");
        assert_eq!(
            e, &runc["allowed"][nr],
            "syscall {nr}: moat {e}, runc {}",
            runc["allowed"][nr]
        );
    }
    drop(c);
    ctx.assert_no_leftovers();
}
