//! A private containerd for the tests: with its CRI plugin, driven over
//! the CRI API the way kubelet drives it (pods through a runtime handler:
//! moat behind containerd's runc shim, or moat's own shim), or with the
//! CRI plugins off, driven with `ctr` (the shim tests).
//!
//! [`Containerd::start`] runs `containerd` with its own root, state,
//! socket, CNI configuration (a bridge and subnet unique to the test
//! process) and cgroup parent, all under a temporary directory, and never
//! talks to the host's containerd. The config (`config.rs`, one
//! description for containerd 1.x and 2.x) is the host-independent part
//! plus every handler, merged in with the same code `moat install
//! containerd` uses; [`Containerd::start_for_ctr`] starts one without CRI.
//! Dropping it removes every pod (or ctr container) it still has, stops
//! the daemon (by its PID), ends the shims it started, unmounts what it
//! left under its directory, deletes the bridge and the cgroup parent, and
//! removes the directory: also when the test panicked.
//!
//! [`Pod`] removes its sandbox (stop + remove over CRI) when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use moat::install::ContainerdRuntime;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{workspace_dir, Out, DEFAULT_TIMEOUT};

mod config;
pub use config::containerd_config;
use config::render_config;

/// The CRI v1 API (k8s.io/cri-api), compiled by build.rs.
#[allow(clippy::all, clippy::pedantic)]
pub mod cri {
    tonic::include_proto!("runtime.v1");
}

use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;

/// The containerd namespace the CRI plugin uses.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// The test image and the sandbox image (see hack/cri-images.sh).
pub const BUSYBOX_IMAGE: &str = "moat-busybox:latest";
pub const PAUSE_IMAGE: &str = "moat-pause:latest";

/// The native shim's default moat state root (`DEFAULT_ROOT` in
/// shim/src/moat.rs), one directory per containerd namespace.
pub const SHIM_STATE_ROOT: &str = "/run/containerd/moat";

/// How long one CRI call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long building or importing test images may take.
const IMAGES_TIMEOUT: Duration = Duration::from_secs(900);

/// A handler for containerd's runc shim running `binary` with state under
/// `root` (what `moat install containerd` writes).
pub fn runc_shim_handler(name: &str, binary: &Path, root: &Path) -> ContainerdRuntime {
    ContainerdRuntime::through_runc_shim(
        name,
        &binary.display().to_string(),
        &root.display().to_string(),
    )
}

/// A runtime handler under test and where its moat keeps container state
/// (for [`crate::LeakCheck`] and `moat egress`).
#[derive(Debug, Clone)]
pub struct Handler {
    /// The CRI runtime handler (RuntimeClass `handler:`).
    pub name: &'static str,
    /// moat's `--root` for the pods (the shim appends the namespace).
    pub state_root: PathBuf,
}

impl Handler {
    /// `moat report` of container `id` (moat's hardening report: what it
    /// changed and why; for failure messages).
    pub fn report(&self, id: &str) -> String {
        let out = Command::new(crate::moat_bin())
            .arg("--root")
            .arg(&self.state_root)
            .args(["report", id])
            .output();
        match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("cannot run moat report: {e}"),
        }
    }

    /// Leak checks for the pods and containers `ids` of this handler,
    /// taken before they go.
    pub fn leak_checks(&self, ids: &[&str]) -> Vec<crate::LeakCheck> {
        ids.iter()
            .map(|id| crate::LeakCheck::snapshot(&self.state_root, id))
            .collect()
    }

    /// moat's count of connections it refused for container `id`.
    pub fn blocked_count(&self, id: &str) -> u64 {
        let mut egress = Command::new(crate::moat_bin());
        egress
            .arg("--root")
            .arg(&self.state_root)
            .args(["egress", "--format", "json", id]);
        let out = crate::run_within(egress, DEFAULT_TIMEOUT);
        out.assert_ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("moat egress {id} printed no JSON: {e}"));
        v["blockedPackets"]
            .as_u64()
            .unwrap_or_else(|| panic!("moat egress {id}: no blockedPackets in {v}"))
    }
}

/// Where everything of one private containerd lives.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The moat policy containerd and its shims hand to moat.
    pub policy: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub pod_logs: PathBuf,
    /// The CNI bridge (host side), unique to this test process.
    pub bridge: String,
    /// The pods' /24, e.g. "10.213.17" (the bridge has .1).
    pub subnet_prefix: String,
    /// The cgroup (below each hierarchy's root) every pod is put under.
    pub cgroup_parent: String,
}

impl Layout {
    /// The layout of a containerd in `dir`; `tag` makes the bridge's name
    /// unique.
    fn under(dir: PathBuf, tag: &str, subnet_prefix: String, cgroup_parent: String) -> Layout {
        Layout {
            socket: dir.join("containerd.sock"),
            config: dir.join("config.toml"),
            log: dir.join("containerd.log"),
            policy: dir.join("moat-policy.toml"),
            cni_conf_dir: dir.join("cni"),
            pod_logs: dir.join("pod-logs"),
            bridge: format!("mcri{tag}"),
            subnet_prefix,
            cgroup_parent,
            dir,
        }
    }

    /// Where the tests lay out pod volumes as kubelet does
    /// (`<pods>/<uid>/volumes/<plugin>/<name>`).
    pub fn pods_dir(&self) -> PathBuf {
        self.dir.join("pods")
    }

    /// The bridge's (host side) address, which pods reach.
    pub fn gateway(&self) -> String {
        format!("{}.1", self.subnet_prefix)
    }
}

/// The containerd the tests start: `MOAT_CONTAINERD_BIN` (containerd 2.1
/// from `hack/containerd2.sh`, `/var/cache/moat/containerd-2.1/usr/bin/containerd`)
/// or the system's (1.6) from PATH.
pub fn containerd_bin() -> PathBuf {
    std::env::var_os("MOAT_CONTAINERD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("containerd"))
}

/// `ctr` of the same containerd (beside `MOAT_CONTAINERD_BIN`), else PATH's.
pub fn ctr_bin() -> PathBuf {
    match std::env::var_os("MOAT_CONTAINERD_BIN") {
        Some(b) => Path::new(&b).with_file_name("ctr"),
        None => PathBuf::from("ctr"),
    }
}

/// The major version of [`containerd_bin`] (`containerd --version`:
/// "containerd <url> v2.1.9 ..." or Debian's "containerd <url> 1.6.20~ds1 ...").
pub fn containerd_major() -> u32 {
    let out = Command::new(containerd_bin())
        .arg("--version")
        .output()
        .expect("cannot run containerd --version");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.trim_start_matches('v').split('.').next()?.parse().ok())
        .unwrap_or(1)
}

/// The config version [`containerd_bin`] reads: 3 for containerd 2.x, 2
/// for 1.x.
pub fn config_version() -> u32 {
    if containerd_major() >= 2 {
        3
    } else {
        2
    }
}

/// The CNI network: a bridge with host-local addresses from the test's
/// own subnet and state dir, no masquerading (pods reach only the bridge).
pub fn cni_conflist(layout: &Layout) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": format!("{}-net", layout.bridge),
        "plugins": [{
            "type": "bridge",
            "bridge": layout.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("{}.0/24", layout.subnet_prefix)}]],
                "dataDir": layout.dir.join("cni-ipam").display().to_string(),
            }
        }]
    })
    .to_string()
}

/// The moat policy of the test's containerd, which reaches moat through
/// containerd's and the shims' environment (`MOAT_POLICY`), as an
/// operator's would: moat's defaults, plus
/// - the pod network namespaces the CRI plugin pins under the test's own
///   state dir (netns_mounts_under_state_dir), which moat joins only when
///   the policy lists them (namespaces.joinable_netns, T10);
/// - its pods directory, where the pod volumes are laid out as kubelet's
///   are: volume storage (volumes.idmap_under, T19);
/// - its root and state directories, containerd's state roots
///   (engines.containerd_roots, R7-5);
/// - driven with `ctr`, the namespace's cgroup parent (cgroups.parents,
///   T22).
fn moat_policy(layout: &Layout, api: &Api) -> String {
    let with = |defaults: &[&str], extra: String| -> String {
        let mut items: Vec<String> = defaults.iter().map(|p| p.to_string()).collect();
        items.push(extra);
        crate::toml_list(&items)
    };
    let mut policy = format!(
        "[namespaces]\njoinable_netns = {}\n\n[volumes]\nidmap_under = {}\n",
        with(
            moat::policy::DEFAULT_JOINABLE_NETNS,
            format!(
                "{}/state/io.containerd.grpc.v1.cri/netns/cni-*",
                layout.dir.display()
            )
        ),
        with(
            moat::policy::DEFAULT_IDMAP_UNDER,
            format!("{}/*/volumes/*/*", layout.pods_dir().display())
        ),
    );
    // Its root and state are containerd's state roots (engines, R7-5):
    // its sandboxes' /dev/shm is recognised there, as at the defaults.
    policy.push_str(&format!(
        "\n[engines]\ncontainerd_roots = {}\n",
        crate::toml_list(&[
            format!("{}/root", layout.dir.display()),
            format!("{}/state", layout.dir.display()),
        ])
    ));
    if let Api::Ctr(_) = api {
        policy.push_str(&format!(
            "\n[cgroups]\nparents = {}\n",
            with(
                moat::policy::DEFAULT_CGROUP_PARENTS,
                layout.cgroup_parent.clone()
            )
        ));
    }
    policy
}

/// A /24 under 10.213.0.0/16 that no host route or address touches.
fn free_subnet(instance: u32) -> String {
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let addrs = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let start = (std::process::id() + instance * 17) % 240;
    for i in 0..240 {
        let prefix = format!("10.213.{}", (start + i) % 240 + 10);
        let needle = format!("{prefix}.");
        if !routes.contains(&needle) && !addrs.contains(&needle) {
            return prefix;
        }
    }
    panic!("no free /24 in 10.213.0.0/16 for the test's CNI bridge");
}

/// How the tests drive a containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Api {
    /// Over CRI, as kubelet does (namespace k8s.io).
    Cri,
    /// With `ctr` in this namespace, the CRI plugins off (the shim tests).
    Ctr(String),
}

/// A containerd this test started. See the module docs.
pub struct Containerd {
    pub layout: Layout,
    api: Api,
    // Kept so the directory outlives the daemon; removed in Drop.
    dir: Option<tempfile::TempDir>,
    rt: tokio::runtime::Runtime,
    // Behind a RefCell so a restart works while pods borrow the Containerd.
    daemon: std::cell::RefCell<Daemon>,
    /// Every pod sandbox id this containerd created (for the clean-up of
    /// shim sockets a killed shim leaves).
    pods_created: std::cell::RefCell<Vec<String>>,
    /// containerd's PATH (where it finds shims).
    path: std::ffi::OsString,
}

/// The running daemon and its CRI clients (none while it is stopped).
#[derive(Default)]
struct Daemon {
    child: Option<Child>,
    runtime: Option<RuntimeServiceClient<Channel>>,
    images: Option<ImageServiceClient<Channel>>,
}

impl Containerd {
    /// Starts containerd with the CRI plugin and the runtime handlers
    /// `handlers` returns for its layout (so a handler's state root can
    /// live in the test's directory), and waits until the CRI API answers.
    pub fn start(handlers: impl FnOnce(&Layout) -> Vec<ContainerdRuntime>) -> Containerd {
        Self::start_with_path(&[], handlers)
    }

    /// [`Containerd::start`] with `shim_dirs` put first on containerd's
    /// PATH: containerd looks a `runtime_type` io.containerd.<name>.v2 up
    /// as the binary `containerd-shim-<name>-v2` there.
    pub fn start_with_path(
        shim_dirs: &[PathBuf],
        handlers: impl FnOnce(&Layout) -> Vec<ContainerdRuntime>,
    ) -> Containerd {
        assert!(
            Path::new("/usr/lib/cni/bridge").is_file(),
            "CNI plugins missing (/usr/lib/cni/bridge): install containernetworking-plugins (make setup)"
        );
        Self::launch(Api::Cri, shim_dirs, handlers)
    }

    /// Starts containerd with its CRI plugins off, to be driven with
    /// [`Containerd::ctr`] in `namespace`, `shim_dirs` first on its PATH,
    /// and waits until it answers. containerd puts a task's cgroup at
    /// `/<namespace>/<id>`: the policy it hands moat allows that parent
    /// (threat T22), and it is [`Layout::cgroup_parent`].
    pub fn start_for_ctr(namespace: &str, shim_dirs: &[PathBuf]) -> Containerd {
        Self::launch(Api::Ctr(namespace.to_string()), shim_dirs, |_| Vec::new())
    }

    fn launch(
        api: Api,
        shim_dirs: &[PathBuf],
        handlers: impl FnOnce(&Layout) -> Vec<ContainerdRuntime>,
    ) -> Containerd {
        crate::require_root();
        let tmp = tempfile::Builder::new()
            .prefix(match api {
                Api::Cri => "moat-cri.",
                Api::Ctr(_) => "moat-ctr.",
            })
            .tempdir_in("/tmp")
            .expect("cannot create the containerd test directory");
        let dir = tmp.path().to_path_buf();
        // Unique per test process and per instance in it.
        static INSTANCES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("{:x}x{n}", std::process::id());
        let cgroup_parent = match &api {
            // Below kubelet's cgroupfs parent, an allowed cgroup parent of
            // the default policy (threat T22).
            Api::Cri => format!("/kubepods/moat-cri-{tag}"),
            Api::Ctr(namespace) => format!("/{namespace}"),
        };
        let layout = Layout::under(dir, &tag, free_subnet(n), cgroup_parent);
        let config = if api == Api::Cri {
            fs::create_dir_all(&layout.cni_conf_dir).unwrap();
            fs::create_dir_all(&layout.pod_logs).unwrap();
            fs::write(
                layout.cni_conf_dir.join("10-moat-test.conflist"),
                cni_conflist(&layout),
            )
            .unwrap();
            containerd_config(&layout, &handlers(&layout))
        } else {
            render_config(&layout, config_version(), false)
        };
        fs::write(&layout.config, config).unwrap();
        fs::write(&layout.policy, moat_policy(&layout, &api))
            .expect("cannot write the test's moat policy");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let cd = Containerd {
            layout,
            api,
            dir: Some(tmp),
            rt,
            daemon: Default::default(),
            pods_created: Default::default(),
            // containerd 2.1's own containerd-shim-runc-v2 beside it.
            path: std::env::join_paths(
                shim_dirs
                    .iter()
                    .cloned()
                    .chain(containerd_bin().parent().map(Path::to_path_buf))
                    .filter(|d| !d.as_os_str().is_empty())
                    .chain(std::env::split_paths(
                        &std::env::var_os("PATH").unwrap_or_default(),
                    )),
            )
            .expect("shim directories must not contain ':'"),
        };
        cd.spawn_daemon();
        cd
    }

    /// A containerd with handler `moat` (moat behind containerd's runc
    /// shim, as `moat install containerd` configures it, with its state
    /// root in the test's directory) and the test images imported.
    pub fn with_moat_handler() -> (Containerd, Handler) {
        let root = |dir: &Path| dir.join("moat-root");
        let cd = Containerd::start(|layout| {
            vec![runc_shim_handler(
                "moat",
                &crate::moat_bin(),
                &root(&layout.dir),
            )]
        });
        cd.import_test_images();
        let handler = Handler {
            name: "moat",
            state_root: root(&cd.layout.dir).join(K8S_NAMESPACE),
        };
        (cd, handler)
    }

    /// A containerd with handler `moat-shim`: moat's native shim, as
    /// `moat install containerd` registers it: on containerd 1.x
    /// `runtime_type = "io.containerd.moat.v2"`, which containerd finds as
    /// `containerd-shim-moat-v2` first on its PATH (target/release); on
    /// containerd 2.x (`--shim`) `runtime_type = "io.containerd.runc.v2"`
    /// with `runtime_path` naming target/release's shim, so that
    /// containerd reports its features. The shim runs the `moat` beside it
    /// with its default state root. The test images are imported.
    pub fn with_moat_shim_handler() -> (Containerd, Handler) {
        let release = workspace_dir().join("target/release");
        let shim = release.join("containerd-shim-moat-v2");
        assert!(
            shim.is_file(),
            "containerd-shim-moat-v2 missing: run `cargo build --release` first"
        );
        let by_path = config_version() >= 3;
        let cd = Containerd::start_with_path(&[release], |_| {
            vec![if by_path {
                ContainerdRuntime::native_shim("moat-shim", &shim.display().to_string())
            } else {
                ContainerdRuntime {
                    handler: "moat-shim".to_string(),
                    runtime_type: "io.containerd.moat.v2".to_string(),
                    options: Vec::new(),
                    annotations: vec!["moat.dev/*".to_string()],
                    runtime_path: None,
                }
            }]
        });
        cd.import_test_images();
        let handler = Handler {
            name: "moat-shim",
            // The shim's default Root plus the CRI namespace.
            state_root: Path::new(SHIM_STATE_ROOT).join(K8S_NAMESPACE),
        };
        (cd, handler)
    }

    /// containerd's PID.
    pub fn pid(&self) -> u32 {
        self.daemon
            .borrow()
            .child
            .as_ref()
            .map(|c| c.id())
            .unwrap_or(0)
    }

    fn spawn_daemon(&self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.layout.log)
            .unwrap();
        let child = Command::new(containerd_bin())
            .env("PATH", &self.path)
            .env("MOAT_POLICY", &self.layout.policy)
            .arg("--config")
            .arg(&self.layout.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start containerd");
        self.daemon.borrow_mut().child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = self
                .daemon
                .borrow_mut()
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "containerd exited at start ({status}); log:\n{}",
                    self.log_tail()
                );
            }
            if self.layout.socket.exists() && self.answers() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer within 30 s; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the daemon answers: its CRI API, whose clients are then
    /// kept, or `ctr version`.
    fn answers(&self) -> bool {
        if let Api::Ctr(_) = self.api {
            return self
                .ctr_within(&["version"], Duration::from_secs(10))
                .success();
        }
        let Ok(channel) = self.rt.block_on(connect(&self.layout.socket)) else {
            return false;
        };
        let mut rs = RuntimeServiceClient::new(channel.clone());
        let version = self.rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                rs.version(cri::VersionRequest::default()),
            )
            .await
        });
        if !matches!(version, Ok(Ok(_))) {
            return false;
        }
        let mut d = self.daemon.borrow_mut();
        d.runtime = Some(rs);
        d.images = Some(ImageServiceClient::new(channel));
        true
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 10 s) and waits.
    /// Shims and containers keep running, as with a real daemon restart.
    pub fn stop_daemon(&self) {
        let child = {
            let mut d = self.daemon.borrow_mut();
            d.runtime = None;
            d.images = None;
            d.child.take()
        };
        let Some(mut child) = child else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts containerd with the same configuration.
    pub fn restart(&self) {
        self.stop_daemon();
        self.spawn_daemon();
    }

    /// The last lines of containerd's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.layout.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs one CRI RuntimeService call.
    pub fn cri<T, F>(
        &self,
        call: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.daemon.borrow().runtime.clone();
        self.call_with(client, call)
    }

    /// Runs one CRI ImageService call.
    pub fn image_call<T, F>(
        &self,
        call: impl FnOnce(ImageServiceClient<Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.daemon.borrow().images.clone();
        self.call_with(client, call)
    }

    /// Runs `call` on `client` (None while containerd is stopped) within
    /// CALL_TIMEOUT.
    fn call_with<C, T, F>(
        &self,
        client: Option<C>,
        call: impl FnOnce(C) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client =
            client.ok_or_else(|| tonic::Status::unavailable("containerd is not running"))?;
        self.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, call(client)).await {
                Ok(r) => r.map(|r| r.into_inner()),
                Err(_) => Err(tonic::Status::deadline_exceeded("CRI call timed out")),
            }
        })
    }

    /// Imports moat-busybox and moat-pause (hack/cri-images.sh builds
    /// them with docker) into the k8s.io namespace, and checks that the
    /// CRI image service sees both.
    pub fn import_test_images(&self) {
        let tar = self.layout.dir.join("images.tar");
        let mut build = Command::new("bash");
        build
            .arg(workspace_dir().join("hack/cri-images.sh"))
            .arg(&tar);
        crate::run_within(build, IMAGES_TIMEOUT).assert_ok();
        self.import_archive(&tar);
        let _ = fs::remove_file(&tar);
        for image in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
            self.assert_image_known(image);
        }
    }

    /// Imports the image archive `path` (`docker save` or OCI layout tar)
    /// into [`Containerd::namespace`] with `ctr images import`, the way
    /// images are side-loaded onto a node without a registry. Returns the
    /// names ctr reports (e.g. `docker.io/library/moat-nginx:latest`);
    /// panics when the import fails.
    pub fn import_archive(&self, path: &Path) -> Vec<String> {
        let mut import = self.ctr_command(&["images", "import"]);
        import.arg(path);
        let out = crate::run_within(import, IMAGES_TIMEOUT);
        out.assert_ok();
        // "unpacking docker.io/library/moat-nginx:latest (sha256:…)...done"
        out.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("unpacking "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// Imports docker's image `image` (`docker save`, streamed) into
    /// [`Containerd::namespace`]; false when docker cannot save it or ctr
    /// cannot import it.
    pub fn import_docker_image(&self, image: &str) -> bool {
        let save = Command::new(crate::cmd::DOCKER)
            .args(["save", image])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut save) = save else {
            return false;
        };
        let stdout = save.stdout.take().expect("piped");
        let import = self
            .ctr_command(&["images", "import", "-"])
            .stdin(stdout)
            .output()
            .expect("ctr images import");
        let saved = save.wait().is_ok_and(|s| s.success());
        saved && import.status.success()
    }

    /// The containerd namespace the tests' containers live in: k8s.io
    /// under CRI, else the one given to [`Containerd::start_for_ctr`].
    pub fn namespace(&self) -> &str {
        match &self.api {
            Api::Cri => K8S_NAMESPACE,
            Api::Ctr(namespace) => namespace,
        }
    }

    /// `ctr args…` on this containerd, in [`Containerd::namespace`].
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ctr_bin());
        cmd.arg("--address")
            .arg(&self.layout.socket)
            .arg("--namespace")
            .arg(self.namespace())
            .args(args);
        cmd
    }

    /// [`Containerd::ctr_command`] run to its end (60 s at most).
    pub fn ctr(&self, args: &[&str]) -> Out {
        self.ctr_within(args, CALL_TIMEOUT)
    }

    fn ctr_within(&self, args: &[&str], timeout: Duration) -> Out {
        crate::run_within(self.ctr_command(args), timeout)
    }

    /// `ctr run --runtime <runtime> <extra…> <image> <id> <argv…>`.
    pub fn ctr_run(
        &self,
        runtime: &str,
        image: &str,
        extra: &[&str],
        id: &str,
        argv: &[&str],
    ) -> Out {
        let mut args = vec!["run", "--runtime", runtime];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[image, id]);
        args.extend_from_slice(argv);
        self.ctr(&args)
    }

    /// The status column of `ctr task ls` for task `id` ("" when absent).
    pub fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (20 s at most, else panics) until task `id`'s status is one
    /// of `want`; returns it.
    #[track_caller]
    pub fn wait_task_status(&self, id: &str, want: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let status = self.task_status(id);
            if want.contains(&status.as_str()) {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "task {id} is {status:?}, expected one of {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Removes task and container `id` whatever state they are in.
    pub fn remove_task(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        let start = Instant::now();
        while !matches!(self.task_status(id).as_str(), "STOPPED" | "UNKNOWN" | "")
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.ctr(&["task", "delete", id]);
        let _ = self.ctr(&["containers", "delete", id]);
    }

    /// Panics unless the CRI image service knows `image` (what kubelet
    /// asks before it would pull).
    pub fn assert_image_known(&self, image: &str) {
        let spec = cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        };
        // containerd 2 learns of an imported image from an event, a
        // moment after the import returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spec = spec.clone();
            let status = self
                .image_call(|mut c| async move {
                    c.image_status(cri::ImageStatusRequest {
                        image: Some(spec),
                        verbose: false,
                    })
                    .await
                })
                .unwrap_or_else(|e| panic!("ImageStatus {image}: {e}"));
            if status.image.is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "CRI does not see image {image}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sandbox config kubelet would send for a pod `name` (network
    /// and IPC per pod, PID per container, as for a default pod spec).
    pub fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        let uid = format!("{name}-{}", std::process::id());
        let log_dir = self.layout.pod_logs.join(&uid);
        fs::create_dir_all(&log_dir).unwrap();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid,
                namespace: "moat-test".to_string(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: log_dir.display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.layout.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox of pod `name` with `handler` (what kubelet does for
    /// `runtimeClassName: <class with handler>`).
    pub fn run_pod(&self, name: &str, handler: &str) -> Result<Pod<'_>, tonic::Status> {
        self.run_pod_config(self.pod_config(name), handler)
    }

    /// RunPodSandbox of `config` (from [`Containerd::pod_config`], changed
    /// as a pod spec would change it) with `handler`.
    pub fn run_pod_config(
        &self,
        config: cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<Pod<'_>, tonic::Status> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        let resp = self.cri(|mut c| async move { c.run_pod_sandbox(req).await })?;
        self.pods_created
            .borrow_mut()
            .push(resp.pod_sandbox_id.clone());
        Ok(Pod {
            cd: self,
            id: resp.pod_sandbox_id,
            config,
            handler: handler.to_string(),
        })
    }

    /// [`Containerd::run_pod_config`]; panics with containerd's log when
    /// RunPodSandbox fails.
    #[track_caller]
    pub fn run_pod_ok(&self, config: cri::PodSandboxConfig, handler: &str) -> Pod<'_> {
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        self.run_pod_config(config, handler).unwrap_or_else(|e| {
            panic!(
                "RunPodSandbox {name:?} ({handler}): {e}\n{}",
                self.log_tail()
            )
        })
    }

    /// Ids of every pod sandbox containerd knows.
    pub fn pod_ids(&self) -> Vec<String> {
        self.cri(|mut c| async move {
            c.list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await
        })
        .map(|r| r.items.into_iter().map(|p| p.id).collect())
        .unwrap_or_default()
    }

    /// Stops and removes pod `id` (errors are returned, not raised).
    pub fn remove_pod(&self, id: &str) -> Result<(), tonic::Status> {
        let stop = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.cri(|mut c| async move { c.stop_pod_sandbox(stop).await })?;
        let remove = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.cri(|mut c| async move { c.remove_pod_sandbox(remove).await })?;
        Ok(())
    }

    /// The shims serving this containerd (their argv names our socket):
    /// each one's PID and argv.
    fn shims(&self) -> Vec<(i32, Vec<String>)> {
        let sock = self.layout.socket.display().to_string();
        crate::processes_with_argv()
            .into_iter()
            .filter(|(_, argv)| {
                argv.first().is_some_and(|a| a.contains("containerd-shim")) && argv.contains(&sock)
            })
            .collect()
    }

    /// PIDs of the shims serving this containerd.
    pub fn shim_pids(&self) -> Vec<i32> {
        self.shims().into_iter().map(|(pid, _)| pid).collect()
    }

    /// The sockets (`-socket`) of the shims serving this containerd now.
    pub fn live_shim_sockets(&self) -> Vec<PathBuf> {
        self.shims()
            .into_iter()
            .filter_map(|(_, argv)| {
                let i = argv.iter().position(|a| a == "-socket")?;
                let socket = argv.get(i + 1)?;
                Some(PathBuf::from(
                    socket.strip_prefix("unix://").unwrap_or(socket),
                ))
            })
            .collect()
    }

    /// The socket of the shim serving pod `pod_id`: containerd 1.6 puts it
    /// at /run/containerd/s/<sha256 of "<address>/<namespace>/<id>">. A
    /// shim that is killed cannot remove it, and containerd does not.
    pub fn shim_socket(&self, pod_id: &str) -> PathBuf {
        let key = format!("{}/{K8S_NAMESPACE}/{pod_id}", self.layout.socket.display());
        let out = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(key.as_bytes())?;
                child.wait_with_output()
            })
            .expect("cannot run sha256sum");
        let text = String::from_utf8_lossy(&out.stdout);
        let hash = text.split_whitespace().next().unwrap_or_default();
        PathBuf::from("/run/containerd/s").join(hash)
    }

    /// Shim sockets of this containerd's pods that still exist.
    pub fn shim_sockets_left(&self) -> Vec<PathBuf> {
        self.pods_created
            .borrow()
            .iter()
            .map(|id| self.shim_socket(id))
            .filter(|p| p.exists())
            .collect()
    }

    /// Mount points at or below this containerd's directory.
    pub fn mounts_below_dir(&self) -> Vec<String> {
        let dir = self.layout.dir.display().to_string();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|mp| mp == &dir || mp.starts_with(&format!("{dir}/")))
            .collect()
    }

    /// Cgroup directories left below the pods' cgroup parent.
    pub fn cgroups_left(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        let rel = self.layout.cgroup_parent.trim_start_matches('/');
        for hierarchy in crate::cgroup_hierarchies() {
            let parent = hierarchy.join(rel);
            for entry in fs::read_dir(&parent).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    left.push(entry.path());
                }
            }
        }
        left
    }

    fn cleanup(&mut self) {
        // 0. A failed test's containerd log outlives the directory: the
        // last lines in the panic message are often not enough.
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join(format!("{}.containerd.log", self.layout.bridge));
            if fs::copy(&self.layout.log, &keep).is_ok() {
                eprintln!("containerd's log of the failed test: {}", keep.display());
            }
        }
        // 1. Pods, through containerd (this also deletes the moat
        // containers), or the ctr namespace's containers.
        if self.daemon.borrow().runtime.is_some() {
            for id in self.pod_ids() {
                if let Err(e) = self.remove_pod(&id) {
                    eprintln!("containerd test cleanup: cannot remove pod {id}: {e}");
                }
            }
        }
        if let (Api::Ctr(_), true) = (&self.api, self.daemon.borrow().child.is_some()) {
            let listed = self.ctr(&["containers", "ls", "-q"]);
            for id in listed.stdout.split_whitespace() {
                self.remove_task(id);
            }
        }
        // 2. The daemon, then any shim it left (only ours: they name our socket).
        self.stop_daemon();
        for pid in self.shim_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Sockets of shims that were killed (only our pods' sockets).
        for socket in self.shim_sockets_left() {
            let _ = fs::remove_file(socket);
        }
        // 3. Mounts under our directory (snapshots, shm, netns), deepest first.
        let mut mounts = self.mounts_below_dir();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mp in mounts {
            let _ = nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // 4. The bridge (its address goes with it) and the cgroup parent.
        let _ = Command::new("ip")
            .args(["link", "delete", &self.layout.bridge])
            .stderr(Stdio::null())
            .status();
        let rel = self
            .layout
            .cgroup_parent
            .trim_start_matches('/')
            .to_string();
        for hierarchy in crate::cgroup_hierarchies() {
            let parent = hierarchy.join(&rel);
            if let Ok(entries) = fs::read_dir(&parent) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = fs::remove_dir(e.path());
                    }
                }
                let _ = fs::remove_dir(&parent);
            }
        }
        // 5. moat's state for the ctr namespace under the native shim's
        // root, and the directory.
        if let Api::Ctr(namespace) = &self.api {
            let _ = fs::remove_dir_all(Path::new(SHIM_STATE_ROOT).join(namespace));
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = fs::remove_dir_all(dir.path()) {
                eprintln!(
                    "containerd test cleanup: cannot remove {}: {e}",
                    dir.path().display()
                );
            }
            let _ = dir.keep();
        }
    }

    /// Tears everything down now and lists what is still left on the host
    /// (empty when clean): the daemon, its shims, mounts under its
    /// directory, the directory, the bridge, cgroups.
    pub fn shutdown(mut self) -> Vec<String> {
        let layout = self.layout.clone();
        self.cleanup();
        let mut left = Vec::new();
        for pid in self.shim_pids() {
            left.push(format!("shim {pid} still running"));
        }
        for socket in self.shim_sockets_left() {
            left.push(format!("shim socket {} still exists", socket.display()));
        }
        if let Some(pid) = self.daemon.borrow().child.as_ref().map(|c| c.id()) {
            left.push(format!("containerd {pid} still running"));
        }
        if layout.dir.exists() {
            left.push(format!("{} still exists", layout.dir.display()));
        }
        for line in mounts_mentioning(&layout.dir) {
            left.push(format!("mount left: {line}"));
        }
        if Path::new("/sys/class/net").join(&layout.bridge).exists() {
            left.push(format!("bridge {} still exists", layout.bridge));
        }
        let rel = layout.cgroup_parent.trim_start_matches('/');
        for h in crate::cgroup_hierarchies() {
            if h.join(rel).exists() {
                left.push(format!("cgroup {} still exists", h.join(rel).display()));
            }
        }
        left
    }

    /// [`Containerd::shutdown`], panicking with whatever is left.
    pub fn shutdown_clean(self) {
        let left = self.shutdown();
        assert!(
            left.is_empty(),
            "the containerd test left:\n  {}",
            left.join("\n  ")
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.dir.is_some() {
            self.cleanup();
        }
    }
}

/// What a container driven with `ctr` may leave, checked after it is
/// deleted: moat's own (a [`crate::LeakCheck`] under the moat state root
/// its runtime uses), its cgroup, the sockets of the shims that served it,
/// any shim of the containerd still running, its bundle and any mount
/// naming the containerd's directory.
pub struct TaskLeakCheck {
    check: crate::LeakCheck,
    id: String,
    /// Shim sockets seen while the container ran; gone after delete.
    sockets: Vec<PathBuf>,
}

impl TaskLeakCheck {
    /// Before container `id` is created; `state_root` is where its
    /// runtime keeps moat's state.
    pub fn snapshot(state_root: &Path, id: &str) -> TaskLeakCheck {
        TaskLeakCheck {
            check: crate::LeakCheck::snapshot(state_root, id),
            id: id.to_string(),
            sockets: Vec::new(),
        }
    }

    /// Remembers the sockets of `cd`'s shims running now.
    pub fn note_shims(&mut self, cd: &Containerd) {
        self.sockets.extend(cd.live_shim_sockets());
    }

    /// Panics with the list when anything is left 10 s after the call.
    #[track_caller]
    pub fn verify(&self, cd: &Containerd) {
        self.check.verify();
        let start = Instant::now();
        loop {
            let mut leaks = Vec::new();
            let cgroup = Path::new(cd.layout.cgroup_parent.trim_start_matches('/')).join(&self.id);
            for h in crate::cgroup_hierarchies() {
                let dir = h.join(&cgroup);
                if dir.exists() {
                    leaks.push(format!("cgroup {} still exists", dir.display()));
                }
            }
            for socket in &self.sockets {
                if fs::symlink_metadata(socket).is_ok() {
                    leaks.push(format!("shim socket {} still exists", socket.display()));
                }
            }
            let shims = cd.shim_pids();
            if !shims.is_empty() {
                leaks.push(format!("shim processes still running: {shims:?}"));
            }
            let bundle = cd
                .layout
                .dir
                .join("state/io.containerd.runtime.v2.task")
                .join(cd.namespace())
                .join(&self.id);
            if bundle.exists() {
                leaks.push(format!("bundle {} still exists", bundle.display()));
            }
            for line in mounts_mentioning(&cd.layout.dir) {
                leaks.push(format!("mount left: {line}"));
            }
            if leaks.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "container {} leaked:\n  {}",
                self.id,
                leaks.join("\n  ")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The lines of /proc/self/mountinfo that name `dir` (as a mount point,
/// a root or a source).
fn mounts_mentioning(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_string)
        .collect()
}

/// Network and IPC shared by the pod, PID per container: kubelet's
/// choice for a pod without shareProcessNamespace or host namespaces.
pub fn namespace_options() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the
    // unix socket.
    Endpoint::try_from("http://[::1]:50051")?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}

/// A pod sandbox, stopped and removed when dropped.
pub struct Pod<'a> {
    pub cd: &'a Containerd,
    pub id: String,
    pub config: cri::PodSandboxConfig,
    /// The runtime handler it runs with.
    pub handler: String,
}

/// What ExecSync returned.
#[derive(Debug)]
pub struct ExecOut {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// One container of a pod spec, turned into the CRI ContainerConfig the
/// way kubelet does it: the image, `command` (replaces the image's
/// ENTRYPOINT) and `args` (its CMD), env, volume mounts, `runAsUser`,
/// annotations. Its log goes to `<pod log_directory>/<name>.log`.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub config: cri::ContainerConfig,
}

impl ContainerSpec {
    /// Container `name` from `image`, with the image's own ENTRYPOINT, CMD
    /// and USER.
    pub fn new(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            config: cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: name.to_string(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                log_path: format!("{name}.log"),
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(namespace_options()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    /// The pod spec's `command:`.
    pub fn command(mut self, argv: &[&str]) -> Self {
        self.config.command = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The pod spec's `args:`.
    pub fn args(mut self, argv: &[&str]) -> Self {
        self.config.args = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// One `env:` entry.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.config.envs.push(cri::KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        });
        self
    }

    /// A read-write volume: `host_path` (an emptyDir's or hostPath's
    /// directory on the node) at `container_path`, as kubelet sends it.
    pub fn mount(mut self, host_path: &Path, container_path: &str) -> Self {
        self.config.mounts.push(cri::Mount {
            container_path: container_path.to_string(),
            host_path: host_path.display().to_string(),
            ..Default::default()
        });
        self
    }

    /// `securityContext.runAsUser`.
    pub fn run_as_user(mut self, uid: i64) -> Self {
        if let Some(sc) = self
            .config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.run_as_user = Some(cri::Int64Value { value: uid });
        }
        self
    }

    /// One container annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.config
            .annotations
            .insert(key.to_string(), value.to_string());
        self
    }
}

/// `sh -c` of a loop that sleeps until TERM: a container that idles.
pub const SLEEPER: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 600 & wait $!; done",
];

impl<'a> Pod<'a> {
    /// CreateContainer + StartContainer of `args` from the busybox image.
    pub fn start_container(&self, name: &str, args: &[&str]) -> Result<String, tonic::Status> {
        self.start_container_with(name, args, &[])
    }

    /// [`Pod::start_container`] with container annotations.
    pub fn start_container_with(
        &self,
        name: &str,
        args: &[&str],
        annotations: &[(&str, &str)],
    ) -> Result<String, tonic::Status> {
        let id = self.create_container(name, args, annotations)?;
        self.start_created(&id)?;
        Ok(id)
    }

    /// CreateContainer of `args` from the busybox image (not started).
    pub fn create_container(
        &self,
        name: &str,
        args: &[&str],
        annotations: &[(&str, &str)],
    ) -> Result<String, tonic::Status> {
        let spec = annotations.iter().fold(
            ContainerSpec::new(name, BUSYBOX_IMAGE).command(args),
            |spec, (k, v)| spec.annotation(k, v),
        );
        self.create(&spec)
    }

    /// CreateContainer of `spec` in this pod (not started).
    pub fn create(&self, spec: &ContainerSpec) -> Result<String, tonic::Status> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(spec.config.clone()),
            sandbox_config: Some(self.config.clone()),
        };
        Ok(self
            .cd
            .cri(|mut c| async move { c.create_container(req).await })?
            .container_id)
    }

    /// CreateContainer + StartContainer of `spec`; returns its id.
    pub fn start(&self, spec: &ContainerSpec) -> Result<String, tonic::Status> {
        let id = self.create(spec)?;
        self.start_created(&id)?;
        Ok(id)
    }

    /// StartContainer of a created container.
    pub fn start_created(&self, id: &str) -> Result<(), tonic::Status> {
        let start = cri::StartContainerRequest {
            container_id: id.to_string(),
        };
        self.cd
            .cri(|mut c| async move { c.start_container(start).await })
            .map(|_| ())
    }

    /// StopContainer: SIGTERM (the image's stop signal), SIGKILL after
    /// `grace_secs`, as kubelet stops a container of a deleted pod.
    pub fn stop_container(&self, id: &str, grace_secs: i64) -> Result<(), tonic::Status> {
        let stop = cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout: grace_secs,
        };
        self.cd
            .cri(|mut c| async move { c.stop_container(stop).await })
            .map(|_| ())
    }

    /// [`Pod::stop_container`] + RemoveContainer.
    pub fn remove_container(&self, id: &str, grace_secs: i64) -> Result<(), tonic::Status> {
        self.stop_container(id, grace_secs)?;
        let remove = cri::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.cd
            .cri(|mut c| async move { c.remove_container(remove).await })
            .map(|_| ())
    }

    /// The container's CRI state (`cri::ContainerState` as i32; -1 when
    /// ContainerStatus fails).
    pub fn container_state(&self, id: &str) -> i32 {
        self.container_status(id)
            .ok()
            .and_then(|s| s.status)
            .map(|s| s.state)
            .unwrap_or(-1)
    }

    /// [`Pod::start`]; panics with containerd's log when it fails.
    #[track_caller]
    pub fn start_ok(&self, spec: &ContainerSpec) -> String {
        self.start(spec).unwrap_or_else(|e| {
            panic!(
                "container {:?} ({}): {e}\n{}",
                spec.config.metadata.as_ref().map(|m| &m.name),
                self.handler,
                self.cd.log_tail()
            )
        })
    }

    /// Waits up to `timeout` until `ready` holds for container `id`
    /// (named `name` in its spec); panics with its log when it exits or
    /// the time is up first.
    #[track_caller]
    pub fn wait_ready(
        &self,
        id: &str,
        name: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) {
        let mut exited = false;
        let ok = crate::cmd::wait_until(timeout, || {
            if ready() {
                return true;
            }
            exited = self.container_state(id) == cri::ContainerState::ContainerExited as i32;
            exited
        }) && !exited;
        assert!(
            ok,
            "{name} ({}) {} before it was ready; its log:\n{}",
            self.handler,
            if exited { "exited" } else { "timed out" },
            fs::read_to_string(self.log_file(name)).unwrap_or_default()
        );
    }

    /// Waits up to `timeout` for container `id` to exit (an init
    /// container, say); its exit code, or Err with what was last seen.
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> Result<i32, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .container_status(id)
                .map_err(|e| format!("ContainerStatus {id}: {e}"))?
                .status
                .ok_or_else(|| format!("ContainerStatus {id}: no status"))?;
            if status.state == cri::ContainerState::ContainerExited as i32 {
                return Ok(status.exit_code);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "container {id} still in state {} after {timeout:?}",
                    status.state
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log file of the container named `name` (see [`ContainerSpec`]):
    /// CRI's format, one `<time> <stream> <F|P> <text>` line per line.
    pub fn log_file(&self, name: &str) -> PathBuf {
        Path::new(&self.config.log_directory).join(format!("{name}.log"))
    }

    /// The pod's IP on the test's bridge ("" when it has none).
    pub fn ip(&self) -> String {
        self.status()
            .ok()
            .and_then(|s| s.status)
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default()
    }

    /// ExecSync of `cmd` in container `id`.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Result<ExecOut, tonic::Status> {
        let req = cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: DEFAULT_TIMEOUT.as_secs() as i64,
        };
        let r = self.cd.cri(|mut c| async move { c.exec_sync(req).await })?;
        Ok(ExecOut {
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
            exit_code: r.exit_code,
        })
    }

    /// ExecSync of `cmd` in container `id`; its stdout. Panics unless it
    /// exits 0.
    pub fn exec_ok(&self, id: &str, cmd: &[&str]) -> String {
        let out = self
            .exec(id, cmd)
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"));
        assert_eq!(
            out.exit_code, 0,
            "ExecSync {cmd:?} exited {}: stdout {:?} stderr {:?}",
            out.exit_code, out.stdout, out.stderr
        );
        out.stdout
    }

    /// `sh -c script` in container `id`; panics unless it exits 0.
    pub fn sh(&self, id: &str, script: &str) -> String {
        self.exec_ok(id, &["sh", "-c", script])
    }

    /// ContainerStatus (verbose) of `id`.
    pub fn container_status(
        &self,
        id: &str,
    ) -> Result<cri::ContainerStatusResponse, tonic::Status> {
        let req = cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        };
        self.cd
            .cri(|mut c| async move { c.container_status(req).await })
    }

    /// The host PID of container `id`'s init, from ContainerStatus' info.
    pub fn container_pid(&self, id: &str) -> i32 {
        let status = self
            .container_status(id)
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"));
        let info: serde_json::Value =
            serde_json::from_str(status.info.get("info").map(String::as_str).unwrap_or("{}"))
                .unwrap_or_default();
        info["pid"].as_i64().unwrap_or(0) as i32
    }

    /// PodSandboxStatus (verbose).
    pub fn status(&self) -> Result<cri::PodSandboxStatusResponse, tonic::Status> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: self.id.clone(),
            verbose: true,
        };
        self.cd
            .cri(|mut c| async move { c.pod_sandbox_status(req).await })
    }

    /// StopPodSandbox (the containers are killed; the sandbox stays).
    pub fn stop(&self) -> Result<(), tonic::Status> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: self.id.clone(),
        };
        self.cd
            .cri(|mut c| async move { c.stop_pod_sandbox(req).await })
            .map(|_| ())
    }

    /// Stops and removes the sandbox now.
    pub fn remove(self) -> Result<(), tonic::Status> {
        let r = self.cd.remove_pod(&self.id);
        std::mem::forget(self);
        r
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cd.remove_pod(&self.id) {
            eprintln!("pod guard: cannot remove pod {}: {e}", self.id);
        }
    }
}

/// A TCP listener the test opens on the bridge's host address (which
/// exists only because the test made the bridge): where the egress checks
/// aim. Nothing accepts on it unless a test asks, so a connection that
/// got through waits in its queue and [`GatewayListener::assert_untouched`]
/// finds it.
pub struct GatewayListener {
    listener: std::net::TcpListener,
    pub host: String,
    pub port: u16,
}

impl GatewayListener {
    pub fn bind(layout: &Layout) -> GatewayListener {
        let host = layout.gateway();
        let listener = std::net::TcpListener::bind(format!("{host}:0"))
            .unwrap_or_else(|e| panic!("cannot listen on the bridge address {host}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local_addr").port();
        GatewayListener {
            listener,
            host,
            port,
        }
    }

    /// Panics if a connection reached the listener.
    #[track_caller]
    pub fn assert_untouched(&self, what: &str) {
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("{what}: the listener got a connection from {peer}"),
            Err(e) => panic!("{what}: accept: {e}"),
        }
    }

    /// Accepts (and closes) one connection within `timeout`, in a thread,
    /// so the caller can make the connection meanwhile.
    pub fn accept_in_background(
        &self,
        timeout: Duration,
    ) -> std::thread::JoinHandle<Result<std::net::SocketAddr, String>> {
        let listener = self.listener.try_clone();
        std::thread::spawn(move || {
            let listener = listener.map_err(|e| format!("clone listener: {e}"))?;
            let deadline = Instant::now() + timeout;
            loop {
                match listener.accept() {
                    // Dropping the stream closes it, so the client ends.
                    Ok((_stream, peer)) => return Ok(peer),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err(format!("no connection within {timeout:?}"));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            }
        })
    }
}

impl Containerd {
    /// The control for the egress checks: a pod with handler `runc` on
    /// the same bridge connects to `listener` (busybox `nc`), so a refusal
    /// under moat is moat's doing and not the network's.
    pub fn assert_runc_pod_reaches(&self, listener: &GatewayListener) {
        let t0 = Instant::now();
        let control = self.run_pod("control", "runc").expect("runc control pod");
        let sandbox_ms = t0.elapsed().as_millis();
        let t1 = Instant::now();
        let c = control
            .start_container("probe", SLEEPER)
            .expect("runc control container");
        eprintln!(
            "runc (control): RunPodSandbox {sandbox_ms} ms, CreateContainer+StartContainer {} ms",
            t1.elapsed().as_millis()
        );
        let acceptor = listener.accept_in_background(Duration::from_secs(20));
        let port = listener.port.to_string();
        let nc = control
            .exec(&c, &["nc", "-w", "3", &listener.host, &port])
            .expect("ExecSync nc (runc)");
        let peer = acceptor
            .join()
            .expect("acceptor thread")
            .unwrap_or_else(|e| panic!("the runc control pod did not connect: {e}; nc: {nc:?}"));
        assert!(
            peer.ip()
                .to_string()
                .starts_with(&format!("{}.", self.layout.subnet_prefix)),
            "control connection from {peer}; nc: {nc:?}"
        );
        control.remove().expect("remove the runc control pod");
    }
}

/// Egress from container `id` of `pod` is refused: `probe` (a command
/// that connects to `listener`) fails, the listener gets no connection,
/// and moat counts a refused packet. Returns what the probe printed and
/// how long it took.
#[track_caller]
pub fn assert_egress_refused(
    pod: &Pod,
    id: &str,
    handler: &Handler,
    listener: &GatewayListener,
    probe: &[&str],
) -> (ExecOut, Duration) {
    let before = handler.blocked_count(id);
    let t0 = Instant::now();
    let out = pod
        .exec(id, probe)
        .unwrap_or_else(|e| panic!("ExecSync {probe:?}: {e}"));
    let took = t0.elapsed();
    assert_ne!(
        out.exit_code, 0,
        "container {id} reached {}:{}: {out:?}",
        listener.host, listener.port
    );
    listener.assert_untouched(&format!("container {id}"));
    let after = handler.blocked_count(id);
    assert!(
        after > before,
        "moat did not count the refused connection ({before} -> {after}): {out:?}"
    );
    (out, took)
}

/// uid_map / gid_map lines as (inside, outside, count).
pub fn id_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .map(|x| {
                    x.parse()
                        .unwrap_or_else(|_| panic!("bad uid_map line {l:?}"))
                })
                .collect();
            assert_eq!(f.len(), 3, "bad uid_map line {l:?}");
            (f[0], f[1], f[2])
        })
        .collect()
}

/// The hardening moat promises, seen from inside container `id` of `pod`
/// (its init, pid 1, and an ExecSync'd process; whatever user the image
/// runs as): capabilities within moat's allowlist, seccomp mode 2,
/// no_new_privs, a user namespace whose map never reaches host uid 0, an
/// init that is not host root, and a root filesystem that refuses writes
/// with EROFS. Needs `sh`, `cat` and `touch` in the image.
#[track_caller]
pub fn assert_container_sandboxed(pod: &Pod, id: &str) {
    for who in ["1", "self"] {
        let status = pod.sh(id, &format!("cat /proc/{who}/status"));
        let what = format!("container {id} process {who}");
        for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
            let caps = crate::cap_field(&status, set);
            assert_eq!(
                caps & !crate::ALLOWED_CAPS_MASK,
                0,
                "{what}: {set} {caps:#x} has capabilities beyond moat's allowlist {:#x}",
                crate::ALLOWED_CAPS_MASK
            );
        }
        assert_eq!(
            crate::status_field(&status, "Seccomp"),
            Some("2"),
            "{what}:\n{status}"
        );
        assert_eq!(
            crate::status_field(&status, "NoNewPrivs"),
            Some("1"),
            "{what}"
        );
    }
    // A user namespace whose map never reaches host uid 0.
    let map = id_map(&pod.sh(id, "cat /proc/self/uid_map"));
    assert!(!map.is_empty(), "container {id}: empty uid_map");
    for (inside, outside, count) in &map {
        assert!(
            *outside > 0 && *count > 0 && !(*outside..outside + count).contains(&0),
            "container {id}: uid_map maps host root: {inside} {outside} {count}"
        );
    }
    // Seen from the host, the container's init is an unprivileged uid.
    let pid = pod.container_pid(id);
    assert!(pid > 0, "no pid for container {id}");
    let host_status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("container {id} init (host pid {pid}): {e}"));
    let uids = crate::status_field(&host_status, "Uid").unwrap_or_default();
    assert!(
        !uids.is_empty() && uids.split_whitespace().all(|u| u != "0"),
        "container {id} init (host pid {pid}) runs as host uid {uids:?}"
    );
    // Read-only root: EROFS is checked before permissions, so this holds
    // for a non-root image user too.
    let ro = pod
        .exec(id, &["touch", "/moat-cri-probe"])
        .expect("ExecSync touch");
    assert_ne!(
        ro.exit_code, 0,
        "container {id}: the root file system is writable"
    );
    assert!(
        ro.stderr.contains("Read-only file system"),
        "container {id}: touch /: {:?}",
        ro.stderr
    );
}
