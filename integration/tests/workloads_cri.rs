//! Real workloads through containerd's CRI, the way Kubernetes runs them:
//! nginx, Redis and PostgreSQL from the images `hack/images` builds
//! (Debian bookworm packages), each in pods of a private containerd (see
//! moat_integration::containerd) with a moat runtime handler, driven like
//! kubelet drives a pod with `runtimeClassName: moat`.
//!
//! Each scenario runs once per handler: `moat` (moat behind containerd's
//! runc shim, as `moat install containerd` configures it) and `moat-shim`
//! (moat's own shim, io.containerd.moat.v2). Volumes are host directories
//! laid out as kubelet's emptyDir directories under /var/lib/kubelet/pods
//! are, under a pods directory the test's moat policy lists as volume
//! storage (`volumes.idmap_under`): moat idmaps them, so on-disk ids are
//! the container's ids. A volume that must
//! belong to the workload's user is chowned by a root init container, as
//! Kubernetes users do (or kubelet does, with fsGroup). nginx's pod sets
//! the sysctl net.ipv4.ip_unprivileged_port_start=0 to bind port 80 (see
//! [`nginx_serves_its_pod_ip`]).
//!
//! While each workload runs, the tests check from inside its container
//! that the sandbox is on: seccomp mode 2, no_new_privs, capabilities
//! within moat's allowlist, a user namespace that never maps host root, a
//! read-only root filesystem, and a TCP connection to a listener the test
//! opens on its own bridge refused (while a runc pod on the same bridge
//! reaches it). Afterwards nothing of moat's is left for any pod or
//! container, and the containerd leaves nothing on the host.
//!
//! The native-shim variants found a bug in the shim: a few percent of
//! StartContainer calls through `moat-shim` hung, because the short-lived
//! `containerd-shim-moat-v2 ... start` process spun in a SIGCHLD/SIGPIPE
//! loop after containerd-shim closed its signal self-pipe (fixed in
//! shim/src/main.rs, `quiet_signals_before_start_returns`).
//!
//! The image archives are `/var/cache/moat/images/<name>.oci.tar`
//! (`MOAT_IMAGES_CONTAINERD=1 bash hack/images`, which `make test` and
//! `make test-workloads` run). Without one the test is skipped, unless
//! `CI` is set. Network traffic goes only to the pods' addresses on the
//! test's bridge and to the bridge's own address.

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_integration::cmd::{skip_unless_ci, wait_until};
use moat_integration::containerd::{
    assert_container_sandboxed, assert_egress_refused, ContainerSpec, Containerd, GatewayListener,
    Handler, Pod,
};
use moat_integration::LeakCheck;

/// Where `hack/images` leaves the `docker save` archives.
const IMAGE_CACHE: &str = "/var/cache/moat/images";

/// How long a workload may take to come up (initdb included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The two ways a pod reaches moat.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Handler `moat`: containerd's runc shim with moat as its binary.
    RuncShim,
    /// Handler `moat-shim`: moat's native shim.
    NativeShim,
}

/// One test's containerd, handler and workload image.
struct Setup {
    cd: Containerd,
    handler: Handler,
    image: String,
    started: Instant,
}

impl Setup {
    /// A containerd with the handler `via` names, the test images and the
    /// workload image `name` imported. None (test skipped) when the
    /// image archive is missing outside CI.
    fn new(name: &str, via: Via) -> Option<Setup> {
        let started = Instant::now();
        let archive = PathBuf::from(IMAGE_CACHE).join(format!("{name}.oci.tar"));
        if !archive.is_file() {
            let why = format!(
                "{} is missing: build it with `MOAT_IMAGES_CONTAINERD=1 bash hack/images {name}`",
                archive.display()
            );
            skip_unless_ci(name, &why);
            return None;
        }
        let (cd, handler) = match via {
            Via::RuncShim => Containerd::with_moat_handler(),
            Via::NativeShim => Containerd::with_moat_shim_handler(),
        };
        let t0 = Instant::now();
        let image = format!("docker.io/library/moat-{name}:latest");
        let imported = cd.import_archive(&archive);
        assert!(
            imported.contains(&image),
            "{} holds {imported:?}, not {image}",
            archive.display()
        );
        cd.assert_image_known(&image);
        eprintln!(
            "{name} ({}): containerd up and images imported in {} ms ({} ms for {name})",
            handler.name,
            started.elapsed().as_millis(),
            t0.elapsed().as_millis()
        );
        Some(Setup {
            cd,
            handler,
            image,
            started,
        })
    }

    /// A volume: a new directory `name` on the node, mode 0777 like an
    /// emptyDir, laid out as kubelet lays out pod `pod`'s emptyDir
    /// (`<pods>/<pod uid>/volumes/kubernetes.io~empty-dir/<name>`, pods
    /// directory root:root 0750). The test's containerd gives moat a policy
    /// listing that layout under `volumes.idmap_under` (as kubelet's
    /// `/var/lib/kubelet/pods/*/volumes/*/*` is by default), so moat idmaps
    /// the volume (T19), for the pod whose uid the path names only.
    fn volume(&self, pod: &str, name: &str) -> PathBuf {
        let pods = self.cd.layout.pods_dir();
        std::fs::create_dir_all(&pods).expect("create the pods directory");
        std::fs::set_permissions(&pods, std::fs::Permissions::from_mode(0o750))
            .expect("chmod the pods directory");
        let dir = Self::volume_path(&pods, pod, name);
        std::fs::create_dir_all(dir.parent().expect("volume parent"))
            .expect("create the pod's volumes directory");
        std::fs::create_dir(&dir).expect("create the volume directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .expect("chmod the volume directory");
        dir
    }

    /// Where pod `pod`'s volume `name` is (the pod uid is
    /// `Containerd::pod_config`'s).
    fn volume_path(pods: &Path, pod: &str, name: &str) -> PathBuf {
        pods.join(format!("{pod}-{}", std::process::id()))
            .join("volumes/kubernetes.io~empty-dir")
            .join(name)
    }

    /// Hands volume `dir` on to pod `pod` (as a persistent volume outlives
    /// its pod): moved under the new pod's uid, data and owners kept.
    fn move_volume(&self, dir: &Path, pod: &str) -> PathBuf {
        let name = dir.file_name().expect("volume name");
        let to = Self::volume_path(&self.cd.layout.pods_dir(), pod, &name.to_string_lossy());
        std::fs::create_dir_all(to.parent().expect("volume parent"))
            .expect("create the pod's volumes directory");
        std::fs::rename(dir, &to).expect("move the volume to the new pod");
        to
    }

    fn run_pod(&self, name: &str) -> Pod<'_> {
        self.run_pod_with_sysctls(name, &[])
    }

    /// A pod with `securityContext.sysctls` (CRI: the sandbox's sysctls).
    fn run_pod_with_sysctls(&self, name: &str, sysctls: &[(&str, &str)]) -> Pod<'_> {
        let mut config = self.cd.pod_config(name);
        if let Some(linux) = config.linux.as_mut() {
            for (k, v) in sysctls {
                linux.sysctls.insert(k.to_string(), v.to_string());
            }
        }
        self.cd.run_pod_ok(config, self.handler.name)
    }

    /// The listener on the bridge's address for the egress checks (the
    /// CNI plugin makes the bridge with the first pod, so after that), and
    /// the runc control proving it is reachable.
    fn egress_target(&self) -> GatewayListener {
        let listener = GatewayListener::bind(&self.cd.layout);
        self.cd.assert_runc_pod_reaches(&listener);
        listener
    }

    /// Runs a root init container `command` in `pod` with `volume` at
    /// `path` (Kubernetes' answer to volume ownership) and asserts it
    /// exits 0. Returns its id.
    fn run_init(&self, pod: &Pod, volume: &Path, path: &str, command: &[&str]) -> String {
        let spec = ContainerSpec::new("fix-owner", &self.image)
            .command(command)
            .run_as_user(0)
            .mount(volume, path);
        let id = pod.start_ok(&spec);
        let code = pod
            .wait_exited(&id, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("init container: {e}"));
        assert_eq!(
            code,
            0,
            "init container {command:?} failed under {}; its log:\n{}",
            self.handler.name,
            std::fs::read_to_string(pod.log_file("fix-owner")).unwrap_or_default()
        );
        id
    }

    /// What kubelet does when a pod is deleted: stop each container with
    /// a grace period (SIGTERM, SIGKILL after 10 s), then stop and remove
    /// the sandbox. Each workload must shut down cleanly on SIGTERM (exit
    /// 0 within the grace period: the signal reached it through moat).
    /// Then nothing of moat's may be left for any of `checks`.
    fn delete_pod(&self, pod: Pod, containers: &[&str], checks: &[LeakCheck]) {
        for id in containers {
            let t0 = Instant::now();
            pod.stop_container(id, 10)
                .unwrap_or_else(|e| panic!("StopContainer {id}: {e}"));
            let code = pod
                .wait_exited(id, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("after StopContainer: {e}"));
            assert!(
                code == 0 && t0.elapsed() < Duration::from_secs(10),
                "container {id} did not stop cleanly on SIGTERM: exit {code} after {:?}",
                t0.elapsed()
            );
        }
        pod.remove().expect("RemovePodSandbox");
        for check in checks {
            check.verify();
        }
    }

    /// No pods, moat state or host leftovers; reports the test's time.
    fn finish(self, what: &str) {
        let left = self.cd.cgroups_left();
        assert!(left.is_empty(), "cgroups left: {left:?}");
        let started = self.started;
        self.cd.shutdown_clean();
        let took = started.elapsed();
        eprintln!(
            "{what} ({}): {} ms in all",
            self.handler.name,
            took.as_millis()
        );
    }
}

/// The sandbox from inside workload container `id` (see
/// `assert_container_sandboxed`), and egress: a TCP connect (bash's
/// /dev/tcp: the Debian images have no nc) to the test's listener on the
/// bridge is refused at once, never arrives, and moat counts it.
#[track_caller]
fn assert_workload_sandboxed(pod: &Pod, id: &str, handler: &Handler, listener: &GatewayListener) {
    assert_container_sandboxed(pod, id);
    let probe = format!("exec 3<>/dev/tcp/{}/{}", listener.host, listener.port);
    let (out, took) = assert_egress_refused(pod, id, handler, listener, &["bash", "-c", &probe]);
    assert!(
        out.stderr.contains("Connection refused"),
        "container {id}: egress was not refused: {out:?}"
    );
    assert!(took < Duration::from_secs(5), "the refusal took {took:?}");
}

/// A numeric id from `id -u NAME` (or `id -g NAME`) in container `id`.
fn image_id(pod: &Pod, id: &str, flag: &str, name: &str) -> u32 {
    pod.sh(id, &format!("id {flag} {name}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("id {flag} {name}: {e}"))
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

/// The sysctl that decides which ports are privileged in a network
/// namespace.
const PORT_START: &str = "net.ipv4.ip_unprivileged_port_start";

/// nginx in a pod: an emptyDir-like volume at /var/lib/nginx (its temp
/// directories; the root filesystem is read-only), the page fetched from
/// the host at the pod's IP, the request in the container's CRI log.
///
/// Port 80: the pod's network namespace belongs to the host's user
/// namespace (containerd makes it before any container), so container
/// root's CAP_NET_BIND_SERVICE, held in moat's user namespace, does not
/// count there. moat therefore sets net.ipv4.ip_unprivileged_port_start=0
/// in the pod's network namespace when it creates the pod's sandbox and the
/// pod sets nothing (docker does the same for its containers). A pod that
/// sets the sysctl itself keeps its value: with 1024, nginx cannot bind
/// port 80, which the test shows first.
fn nginx_serves_its_pod_ip(via: Via) {
    let Some(t) = Setup::new("nginx", via) else {
        return;
    };
    let temp = t.volume("nginx-strict", "nginx-lib");
    let spec = ContainerSpec::new("nginx", &t.image).mount(&temp, "/var/lib/nginx");

    let strict = t.run_pod_with_sysctls("nginx-strict", &[(PORT_START, "1024")]);
    let listener = t.egress_target();
    let ctr = strict.start_ok(&spec);
    let checks = t.handler.leak_checks(&[&strict.id, &ctr]);
    let code = strict
        .wait_exited(&ctr, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("nginx with {PORT_START}=1024 kept running: {e}"));
    let log = std::fs::read_to_string(strict.log_file("nginx")).unwrap_or_default();
    assert!(
        code != 0 && log.contains("bind() to 0.0.0.0:80 failed (13: Permission denied)"),
        "nginx in a pod that set {PORT_START}=1024 did not fail to bind port 80 (exit {code}):\n{log}"
    );
    t.delete_pod(strict, &[], &checks);

    let temp = t.move_volume(&temp, "nginx");
    let spec = ContainerSpec::new("nginx", &t.image).mount(&temp, "/var/lib/nginx");
    let pod = t.run_pod("nginx");
    let ctr = pod.start_ok(&spec);
    let checks = t.handler.leak_checks(&[&pod.id, &ctr]);
    // The sandbox, first in the pod's network namespace, opened the ports;
    // the nginx container, joining it, left them as they were.
    let sandbox_report = t.handler.report(&pod.id);
    assert!(
        sandbox_report.contains(PORT_START),
        "the sandbox's report does not mention {PORT_START}:\n{sandbox_report}"
    );
    assert!(
        !t.handler.report(&ctr).contains(PORT_START),
        "the nginx container changed the pod's {PORT_START}"
    );
    let ip = pod.ip();
    assert!(
        ip.starts_with(&format!("{}.", t.cd.layout.subnet_prefix)),
        "pod IP {ip:?} is not on the test's bridge"
    );
    let addr: SocketAddr = format!("{ip}:80").parse().expect("pod address");
    let mut last = None;
    let served = wait_until(READY_TIMEOUT, || {
        last = Some(moat_integration::http_get(addr));
        matches!(&last, Some(Ok((status, _))) if status.contains(" 200 "))
    });
    let log = pod.log_file("nginx");
    assert!(
        served,
        "nginx did not serve {addr}: {last:?}; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let (_, body) = moat_integration::http_get(addr).expect("GET /");
    assert!(
        body.contains("served by nginx under moat"),
        "body: {body:?}"
    );
    // access.log -> /dev/stdout, which the shim writes to the CRI log.
    let logged = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.lines()
                .any(|l| l.contains(" stdout ") && l.contains("\"GET / HTTP/1.0\" 200"))
        })
    });
    assert!(
        logged,
        "the access log did not reach {}:\n{}",
        log.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // nginx (master as root) made its temp directories in the volume for
    // its workers' user; idmapped, so that is www-data's uid on disk too.
    let www = image_id(&pod, &ctr, "-u", "www-data");
    let body_dir = std::fs::metadata(temp.join("body")).expect("/var/lib/nginx/body on the host");
    assert_eq!(
        body_dir.uid(),
        www,
        "on-disk owner of nginx's temp dir; moat's report:\n{}",
        t.handler.report(&ctr)
    );

    assert_workload_sandboxed(&pod, &ctr, &t.handler, &listener);
    t.delete_pod(pod, &[&ctr], &checks);
    eprintln!("nginx: served {addr}, logged the request; temp dir uid {www} on disk");
    t.finish("nginx");
}

#[test]
fn cri_nginx_serves_its_pod_ip() {
    nginx_serves_its_pod_ip(Via::RuncShim);
}

#[test]
fn cri_nginx_serves_its_pod_ip_through_the_native_shim() {
    nginx_serves_its_pod_ip(Via::NativeShim);
}

// ---------------------------------------------------------------------------
// Redis and PostgreSQL: data kept in a volume across pods
// ---------------------------------------------------------------------------

/// What differs between the stateful workloads in
/// [`keeps_data_across_pods`].
struct Stateful {
    /// The hack/images name, also the container's name.
    name: &'static str,
    /// The image's VOLUME: where the data lives.
    data: &'static str,
    /// The image's USER, who must own the data.
    user: &'static str,
    /// The root init container's command, which gives `user` the volume.
    init: &'static [&'static str],
    /// The mode the data directory must keep on disk, if any.
    data_mode: Option<u32>,
    /// A file the workload writes there.
    data_file: &'static str,
    /// A log line only a start on an empty data directory writes.
    first_start_log: Option<&'static str>,
    /// True once the workload in container `id` answers.
    ready: fn(pod: &Pod, id: &str) -> bool,
    /// Stores `value` (durably).
    write: fn(pod: &Pod, id: &str, value: &str),
    /// Reads the stored value back.
    read: fn(pod: &Pod, id: &str) -> String,
}

/// redis-cli in container `id`; its trimmed stdout.
fn redis_cli(pod: &Pod, id: &str, args: &[&str]) -> String {
    let argv: Vec<&str> = std::iter::once("redis-cli")
        .chain(args.iter().copied())
        .collect();
    pod.exec_ok(id, &argv).trim().to_string()
}

/// redis-server (the image's CMD, USER redis, data in /data).
const REDIS: Stateful = Stateful {
    name: "redis",
    data: "/data",
    user: "redis",
    init: &["chown", "redis:redis", "/data"],
    data_mode: None,
    data_file: "dump.rdb",
    first_start_log: None,
    ready: |pod, id| {
        pod.exec(id, &["redis-cli", "ping"])
            .is_ok_and(|o| o.stdout.trim() == "PONG")
    },
    write: |pod, id, value| {
        assert_eq!(redis_cli(pod, id, &["SET", "moat:key", value]), "OK");
        assert_eq!(redis_cli(pod, id, &["SAVE"]), "OK");
    },
    read: |pod, id| redis_cli(pod, id, &["GET", "moat:key"]),
};

/// psql (as postgres, over the local socket) in container `id`: the
/// unaligned, tuples-only output.
fn psql(pod: &Pod, id: &str, sql: &str) -> String {
    let argv = [
        "psql",
        "-U",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-At",
        "-c",
        sql,
    ];
    pod.exec_ok(id, &argv).trim().to_string()
}

/// PostgreSQL 15 (USER postgres; the image's entrypoint runs initdb on an
/// empty $PGDATA, which must be postgres's and 0700, then the server).
const POSTGRES: Stateful = Stateful {
    name: "postgres",
    data: "/var/lib/postgresql/data",
    user: "postgres",
    init: &[
        "sh",
        "-c",
        "chown postgres:postgres /var/lib/postgresql/data && chmod 0700 /var/lib/postgresql/data",
    ],
    data_mode: Some(0o700),
    data_file: "PG_VERSION",
    first_start_log: Some(
        "The files belonging to this database system will be owned by user \"postgres\"",
    ),
    ready: |pod, id| {
        pod.exec(id, &["pg_isready", "-q", "-U", "postgres"])
            .is_ok_and(|o| o.exit_code == 0)
    },
    write: |pod, id, value| {
        psql(
            pod,
            id,
            &format!("CREATE TABLE moat_t (v text); INSERT INTO moat_t VALUES ('{value}')"),
        );
    },
    read: |pod, id| psql(pod, id, "SELECT v FROM moat_t"),
};

/// Starts workload `w` (its image's entrypoint and user) on `data` in
/// `pod`; waits until it answers. Checks whether it initialised the data
/// directory against `first_start`.
fn start_stateful(t: &Setup, w: &Stateful, pod: &Pod, data: &Path, first_start: bool) -> String {
    let ctr = pod.start_ok(&ContainerSpec::new(w.name, &t.image).mount(data, w.data));
    pod.wait_ready(&ctr, w.name, READY_TIMEOUT, || (w.ready)(pod, &ctr));
    if let Some(line) = w.first_start_log {
        let log = std::fs::read_to_string(pod.log_file(w.name)).unwrap_or_default();
        assert_eq!(
            log.contains(line),
            first_start,
            "{} on {} data: {line:?} {} in its log:\n{log}",
            w.name,
            if first_start { "empty" } else { "kept" },
            if first_start { "missing" } else { "found" }
        );
    }
    ctr
}

/// A stateful workload keeps its data in a volume across pods: a root
/// init container gives the (empty, root-owned) volume to the image's
/// user through the idmapped mount, the workload (as that user) stores a
/// value; the pod is deleted and a new pod (a new user namespace and id
/// range) on the same directory reads it back. On the host the data
/// belongs to the image's uid for that user.
fn keeps_data_across_pods(w: &Stateful, via: Via) {
    let Some(t) = Setup::new(w.name, via) else {
        return;
    };
    let data = t.volume(&format!("{}-1", w.name), &format!("{}-data", w.name));
    let value = format!("moat-{}-{}", std::process::id(), t.handler.name);

    let first = t.run_pod(&format!("{}-1", w.name));
    let listener = t.egress_target();
    let init = t.run_init(&first, &data, w.data, w.init);
    let ctr = start_stateful(&t, w, &first, &data, true);
    let checks = t.handler.leak_checks(&[&first.id, &init, &ctr]);
    (w.write)(&first, &ctr, &value);
    let uid = image_id(&first, &ctr, "-u", w.user);
    let gid = image_id(&first, &ctr, "-g", w.user);
    assert_eq!(
        first.sh(&ctr, "id -u").trim(),
        uid.to_string(),
        "{} runs as the image's USER",
        w.name
    );
    assert_workload_sandboxed(&first, &ctr, &t.handler, &listener);
    t.delete_pod(first, &[&ctr], &checks);

    let data = t.move_volume(&data, &format!("{}-2", w.name));
    let second = t.run_pod(&format!("{}-2", w.name));
    let ctr = start_stateful(&t, w, &second, &data, false);
    let checks = t.handler.leak_checks(&[&second.id, &ctr]);
    assert_eq!(
        (w.read)(&second, &ctr),
        value,
        "{}: the data did not survive into a new pod",
        w.name
    );
    let inside = second.sh(&ctr, &format!("stat -c %u {}/{}", w.data, w.data_file));
    assert_eq!(
        inside.trim(),
        uid.to_string(),
        "owner of {} inside",
        w.data_file
    );
    t.delete_pod(second, &[&ctr], &checks);

    // On disk (idmapped volume): the container's ids.
    let dir = std::fs::metadata(&data).expect("the data directory");
    assert_eq!(
        (dir.uid(), dir.gid()),
        (uid, gid),
        "on-disk owner of the data directory"
    );
    if let Some(mode) = w.data_mode {
        assert_eq!(
            dir.permissions().mode() & 0o7777,
            mode,
            "data directory mode"
        );
    }
    let file = std::fs::metadata(data.join(w.data_file)).expect("the data file on the host");
    assert_eq!(file.uid(), uid, "on-disk owner of {}", w.data_file);
    eprintln!(
        "{}: the data survived into a new pod; {} is uid {uid} on disk",
        w.name, w.data_file
    );
    t.finish(w.name);
}

#[test]
fn cri_redis_keeps_data_across_pods() {
    keeps_data_across_pods(&REDIS, Via::RuncShim);
}

#[test]
fn cri_redis_keeps_data_across_pods_through_the_native_shim() {
    keeps_data_across_pods(&REDIS, Via::NativeShim);
}

#[test]
fn cri_postgres_keeps_data_across_pods() {
    keeps_data_across_pods(&POSTGRES, Via::RuncShim);
}

#[test]
fn cri_postgres_keeps_data_across_pods_through_the_native_shim() {
    keeps_data_across_pods(&POSTGRES, Via::NativeShim);
}

/// The trixie probe of `workloads.rs` (glibc 2.41's fallbacks, coreutils,
/// errno of newer and of always-denied syscalls), as a pod's container.
/// Through CRI a pod without a seccomp profile runs under moat's default
/// profile, which allows fchmodat2, futex_wake and mseal; everything newer
/// than it answers ENOSYS and the always-denied syscalls EPERM.
fn trixie_userland_answers_enosys_for_unknown_syscalls(via: Via) {
    let Some(t) = Setup::new("trixie", via) else {
        return;
    };
    let pod = t.run_pod("trixie");
    let spec = ContainerSpec::new("probe", &t.image).command(&[
        "python3",
        "-c",
        include_str!("trixie_probe.py"),
    ]);
    let id = pod.start_ok(&spec);
    let code = pod
        .wait_exited(&id, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("probe container: {e}"));
    let log = std::fs::read_to_string(pod.log_file("probe")).unwrap_or_default();
    assert_eq!(code, 0, "the probe failed under {}: {log}", t.handler.name);
    let line = log
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no RESULT line: {log}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("RESULT is JSON");
    assert_eq!(r["os"], serde_json::json!(["VERSION_CODENAME=trixie"]));
    // fchmodat2 is allowed: the kernel's own "not supported" for a symlink.
    assert_eq!(r["lchmod_symlink"], "NotImplementedError", "{r}");
    assert_eq!(r["lchmod_file"], "ok", "{r}");
    assert_eq!(r["coreutils_rc"], 0, "{r}");
    for (nr, e) in r["enosys"].as_object().expect("enosys") {
        assert_eq!(e, "ENOSYS", "syscall {nr}: {r}");
    }
    for (nr, e) in r["denied"].as_object().expect("denied") {
        assert_eq!(e, "EPERM", "always-denied syscall {nr}: {r}");
    }
    for (nr, e) in r["allowed"].as_object().expect("allowed") {
        assert!(e != "EPERM" && e != "ENOSYS", "syscall {nr}: {r}");
    }
    let checks = t.handler.leak_checks(&[&pod.id, &id]);
    t.delete_pod(pod, &[&id], &checks);
    t.finish("trixie probe");
}

#[test]
fn cri_trixie_userland_answers_enosys_for_unknown_syscalls() {
    trixie_userland_answers_enosys_for_unknown_syscalls(Via::RuncShim);
}

#[test]
fn cri_trixie_userland_answers_enosys_for_unknown_syscalls_through_the_native_shim() {
    trixie_userland_answers_enosys_for_unknown_syscalls(Via::NativeShim);
}
