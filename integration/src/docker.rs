//! The docker harness: tests that drive the real docker daemon with
//! `--runtime=<moat>` (tests/docker.rs, tests/workloads.rs) take their
//! context, container and volume guards, leftover checks and parsers of
//! what a container prints from here.
//!
//! The runtime under test is `MOAT_DOCKER_RUNTIME` (default `moat`): a work
//! tree registers its own build under another name
//! (`MOAT_RUNTIME_NAME=moat-x MOAT_INSTALL_PATH=/usr/local/bin/moat-x bash
//! hack/docker-register.sh`). When `docker info` fails a test is skipped
//! with a message, unless `CI` is set: then a missing docker is a failure.
//!
//! Every guard removes what it made on drop, also when the test panics;
//! [`Ctx::finish`] and [`Ctx::assert_no_leftovers`] then check that moat
//! kept nothing for the test's containers (id-pool claims, mounts and
//! directories under /run/moat-rootfs, runtime state directories).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{docker_available, run_cmd, sh_quote, skip_unless_ci, wait_until, Out, DOCKER};
pub use crate::{assert_moat_id_map, cap_field, has_opt, status_field};

pub use crate::http::{free_port, http_get_localhost};

/// The image of the docker tests (hack/docker-image.sh builds it).
pub const IMAGE: &str = "moat-busybox:latest";
/// The image of the runc control containers of the workload tests.
pub const CONTROL_IMAGE: &str = IMAGE;
/// The default policy's capability allowlist as a CapEff mask.
pub const ALLOWED_CAPS: u64 = crate::ALLOWED_CAPS_MASK;
/// The lowest host id moat hands out to a container's user namespace.
pub const HOST_ID_FLOOR: u64 = crate::HOST_ID_BASE;
/// The size of one container's id range.
pub const RANGE_SIZE: u64 = crate::RANGE_SIZE;
/// Where docker 20.10 tells the runtime to keep its state (`--root`).
pub const RUNTIME_STATE_DIR: &str = "/var/run/docker/runtime-runc/moby";
/// The same state root as moat may spell it (/var/run is a symlink to /run).
pub const STATE_ROOTS: &[&str] = &[
    "/run/docker/runtime-runc/moby",
    "/var/run/docker/runtime-runc/moby",
];
/// Upper bound for any single docker command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// The docker runtime under test: `MOAT_DOCKER_RUNTIME`, default `moat`.
pub fn runtime() -> String {
    std::env::var("MOAT_DOCKER_RUNTIME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "moat".to_string())
}

/// `docker ARGS` with [`CMD_TIMEOUT`].
pub fn docker<S: AsRef<str>>(args: &[S]) -> Out {
    run_cmd(DOCKER, args, CMD_TIMEOUT)
}

/// dockerd's registered runtimes (`docker info .Runtimes`).
fn runtimes() -> Result<serde_json::Value, String> {
    let rt = docker(&["info", "--format", "{{json .Runtimes}}"]);
    if !rt.ok() {
        return Err(rt.describe());
    }
    serde_json::from_str(rt.stdout.trim())
        .map_err(|e| format!("docker info .Runtimes is not JSON ({e}): {}", rt.stdout))
}

/// The installed moat binary dockerd runs for [`runtime`] (its path in
/// daemon.json, as hack/docker-register.sh and `moat install docker` write
/// it). Not [`crate::moat_bin`], the build in target/release.
#[track_caller]
pub fn moat_bin() -> String {
    let v = runtimes().unwrap_or_else(|e| panic!("{e}"));
    v[runtime()]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("docker lists no path for runtime {:?}: {v}", runtime()))
        .to_string()
}

/// With docker present: is the moat runtime registered, the image there and
/// the installed moat current? Err is a test failure, not a skip.
fn preflight() -> &'static Result<(), String> {
    static PREFLIGHT: OnceLock<Result<(), String>> = OnceLock::new();
    PREFLIGHT.get_or_init(|| {
        let runtimes = runtimes()?;
        if runtimes.get(runtime()).is_none() {
            return Err(format!(
                "docker does not list runtime {:?} ({runtimes}); run `bash hack/docker-register.sh` or set MOAT_DOCKER_RUNTIME",
                runtime(),
            ));
        }
        let img = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
        if !img.ok() {
            return Err(format!(
                "image {IMAGE} is missing; run `bash hack/docker-image.sh`\n{}",
                img.describe()
            ));
        }
        // Warn (don't fail) if the installed moat is not the freshly built one.
        let built = crate::workspace_dir().join("target/release/moat");
        let installed = runtimes[runtime()]["path"]
            .as_str()
            .unwrap_or("/usr/local/bin/moat")
            .to_string();
        match (std::fs::read(&built), std::fs::read(&installed)) {
            (Ok(a), Ok(b)) if a != b => eprintln!(
                "WARNING: {installed} differs from {}: run `bash hack/docker-register.sh` to test the current build",
                built.display()
            ),
            (Err(_), _) => eprintln!(
                "WARNING: {} not found; testing whatever {installed} is",
                built.display()
            ),
            _ => {}
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Test context, container and volume guards.
// ---------------------------------------------------------------------------

/// One per test: unique names, the cidfiles, and the ids of every container
/// the test created, for the final leftover check.
pub struct Ctx {
    pub test: &'static str,
    dir: tempfile::TempDir,
    names: RefCell<Vec<String>>,
    ids: RefCell<Vec<String>>,
}

impl Ctx {
    /// None: docker is unavailable and this is not CI (the test is skipped).
    /// Panics when docker is up but the runtime or the busybox image is
    /// missing.
    pub fn new(test: &'static str) -> Option<Ctx> {
        Self::with_images(test, &[])
    }

    /// [`Ctx::new`] that also requires `images` (`name` or `name:tag`,
    /// built by `bash hack/images`).
    pub fn with_images(test: &'static str, images: &[&str]) -> Option<Ctx> {
        if let Err(why) = docker_available() {
            skip_unless_ci(test, &format!("docker is not available ({why})"));
            return None;
        }
        if let Err(why) = preflight() {
            panic!("{test}: docker is up but not ready for moat: {why}");
        }
        for image in images {
            let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
            assert!(
                out.ok(),
                "{test}: image {image} is missing: build the images with `bash hack/images` (or make test-workloads)"
            );
        }
        Some(Ctx {
            test,
            dir: tempfile::tempdir().expect("tempdir"),
            names: RefCell::new(Vec::new()),
            ids: RefCell::new(Vec::new()),
        })
    }

    /// A name unique to this test and process (prefix `moat-it-`).
    pub fn name(&self, suffix: &str) -> String {
        format!(
            "moat-it-{}-{}-{}",
            self.test.replace('_', "-"),
            suffix,
            std::process::id()
        )
    }

    /// A container guard (nothing is created yet).
    pub fn container(&self, suffix: &str) -> Container<'_> {
        let name = self.name(suffix);
        let cidfile = self.dir.path().join(format!("{suffix}.cid"));
        // Stale container of the same name from a crashed earlier run with a
        // recycled pid: remove it (names are ours, prefix moat-it-).
        let _ = docker(&["rm", "-f", &name]);
        self.names.borrow_mut().push(name.clone());
        Container {
            ctx: self,
            name,
            cidfile,
        }
    }

    /// A named volume, created now, removed on drop.
    #[track_caller]
    pub fn volume(&self, suffix: &str) -> Volume {
        let volume = Volume::new(self, suffix);
        docker(&["volume", "create", &volume.name]).expect_ok();
        volume
    }

    fn record_id(&self, id: &str) {
        let mut ids = self.ids.borrow_mut();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    /// Asserts moat keeps nothing for any container this test ran (the
    /// containers must be removed first).
    #[track_caller]
    pub fn assert_no_leftovers(&self) {
        for id in self.ids.borrow().iter() {
            assert_no_leftovers(id, self.test);
        }
    }

    /// Removes every container of the test and asserts moat left nothing
    /// behind for any of them.
    #[track_caller]
    pub fn finish(self) {
        for name in self.names.borrow().iter() {
            let _ = docker(&["rm", "-f", name]);
        }
        for id in self.ids.borrow().iter() {
            assert_no_leftovers(
                id,
                &format!("{} (after removing its containers)", self.test),
            );
        }
    }
}

/// A docker container of the test, removed (with its anonymous volumes) on
/// drop.
pub struct Container<'a> {
    ctx: &'a Ctx,
    pub name: String,
    cidfile: PathBuf,
}

impl Container<'_> {
    /// The argument list of `docker run --name N --cidfile F --runtime=moat
    /// OPTS IMAGE CMD`.
    pub fn run_args(&self, opts: &[&str], cmd: &[&str]) -> Vec<String> {
        self.run_image_args(opts, IMAGE, cmd)
    }

    fn run_image_args(&self, opts: &[&str], image: &str, cmd: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "run".into(),
            "--name".into(),
            self.name.clone(),
            "--cidfile".into(),
            self.cidfile.display().to_string(),
            format!("--runtime={}", runtime()),
        ];
        a.extend(opts.iter().map(|s| s.to_string()));
        a.push(image.into());
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    }

    /// `docker run` of the busybox [`IMAGE`]; records the container id
    /// (from the cidfile, written at create time, so also for `--rm` and
    /// for refused containers).
    pub fn run(&self, opts: &[&str], cmd: &[&str]) -> Out {
        self.run_image(opts, IMAGE, cmd)
    }

    /// `docker run` of `image` (foreground); records the container id.
    pub fn run_image(&self, opts: &[&str], image: &str, cmd: &[&str]) -> Out {
        let out = docker(&self.run_image_args(opts, image, cmd));
        self.learn_id();
        out
    }

    /// Detached `docker run -d` of the busybox image, must succeed; the id.
    #[track_caller]
    pub fn start_detached(&self, opts: &[&str], cmd: &[&str]) -> String {
        let mut o = vec!["-d"];
        o.extend_from_slice(opts);
        let out = self.run(&o, cmd).expect_ok();
        let id = self.id().expect("container id after docker run -d");
        assert_eq!(out.stdout.trim(), id, "docker run -d prints the id");
        id
    }

    /// Detached `docker run -d` of `image`, must succeed.
    #[track_caller]
    pub fn start(&self, opts: &[&str], image: &str, cmd: &[&str]) {
        let out = self.run_image(&[&["-d"], opts].concat(), image, cmd);
        assert!(out.ok(), "docker run failed: {}", out.describe());
    }

    /// Reads the id from the cidfile (or docker inspect) and records it.
    pub fn learn_id(&self) -> Option<String> {
        let id = std::fs::read_to_string(&self.cidfile)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| self.inspect("{{.Id}}"))?;
        self.ctx.record_id(&id);
        Some(id)
    }

    /// The container's id (recorded for the leftover check).
    pub fn id(&self) -> Option<String> {
        self.learn_id()
    }

    /// `docker inspect --format FORMAT`, None when that fails.
    pub fn inspect(&self, format: &str) -> Option<String> {
        let out = docker(&["inspect", "--format", format, &self.name]);
        out.ok().then(|| out.stdout.trim().to_string())
    }

    /// `.State.Status` ("" when docker does not know the container).
    pub fn status(&self) -> String {
        self.inspect("{{.State.Status}}").unwrap_or_default()
    }

    #[track_caller]
    pub fn wait_status(&self, want: &str, timeout: Duration) {
        let mut last = String::new();
        let ok = wait_until(timeout, || {
            last = self.status();
            last == want
        });
        assert!(ok, "{}: state is {last:?}, expected {want:?}", self.name);
    }

    /// Host pid of the container's init.
    #[track_caller]
    pub fn pid(&self) -> u32 {
        let p = self.inspect("{{.State.Pid}}").unwrap_or_default();
        let pid: u32 = p.parse().unwrap_or(0);
        assert!(pid > 0, "{}: no pid ({p:?})", self.name);
        pid
    }

    /// `docker exec OPTS NAME CMD`.
    pub fn exec(&self, opts: &[&str], cmd: &[&str]) -> Out {
        let mut a: Vec<&str> = vec!["exec"];
        a.extend_from_slice(opts);
        a.push(&self.name);
        a.extend_from_slice(cmd);
        docker(&a)
    }

    /// `docker logs`: stdout then stderr.
    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Polls `ready` until it holds; on timeout fails with the state and
    /// the logs.
    #[track_caller]
    pub fn wait_for(&self, what: &str, timeout: Duration, mut ready: impl FnMut(&Self) -> bool) {
        let ok = wait_until(timeout, || ready(self));
        assert!(
            ok,
            "{}: not {what} within {timeout:?}; state {:?}; logs:\n{}",
            self.name,
            self.inspect("{{.State.Status}} exit={{.State.ExitCode}}"),
            self.logs()
        );
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = run_cmd(DOCKER, &["rm", "-f", "-v", &self.name], CMD_TIMEOUT);
    }
}

/// A docker named volume of the test, removed on drop.
pub struct Volume {
    pub name: String,
}

impl Volume {
    /// A volume guard named after the test (docker creates the volume on
    /// first use; [`Ctx::volume`] creates it now).
    pub fn new(ctx: &Ctx, suffix: &str) -> Volume {
        let name = ctx.name(suffix);
        let _ = docker(&["volume", "rm", "-f", &name]);
        Volume { name }
    }

    /// A docker `local` volume created now with driver options `opts`
    /// (`type=…`, `device=…`, `o=…`): dockerd (host root, host namespaces)
    /// mounts them at the volume's `_data` when a container first uses it
    /// and hands the runtime a plain bind of that. Removed on drop.
    #[track_caller]
    pub fn local(ctx: &Ctx, suffix: &str, opts: &[&str]) -> Volume {
        let volume = Volume::new(ctx, suffix);
        let mut args = vec!["volume", "create", "--driver", "local"];
        for o in opts {
            args.extend(["--opt", o]);
        }
        args.push(&volume.name);
        docker(&args).expect_ok();
        volume
    }

    /// The volume's directory on the host.
    #[track_caller]
    pub fn host_path(&self) -> PathBuf {
        let out = docker(&[
            "volume",
            "inspect",
            "--format",
            "{{.Mountpoint}}",
            &self.name,
        ]);
        PathBuf::from(out.expect_ok().stdout.trim())
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = run_cmd(DOCKER, &["volume", "rm", "-f", &self.name], CMD_TIMEOUT);
    }
}

/// Removes a container by name on drop (a runc control, a container made
/// outside [`Ctx::container`]).
pub struct NamedContainer(pub String);

impl Drop for NamedContainer {
    fn drop(&mut self) {
        let _ = run_cmd(DOCKER, &["rm", "-f", &self.0], CMD_TIMEOUT);
    }
}

// ---------------------------------------------------------------------------
// Leftover checks.
// ---------------------------------------------------------------------------

/// Mount points (field 5 of mountinfo, unescaped enough for our paths) with
/// their full lines.
pub fn host_mounts() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter_map(|l| {
            let mp = l.split(' ').nth(4)?;
            Some((mp.replace("\\040", " "), l.to_string()))
        })
        .collect()
}

/// moat's rootfs mount point for container `id` under state root `root`,
/// as moat computes it.
pub fn rootfs_mount_point(root: &str, id: &str) -> String {
    moat::rootfs::mount_point(Path::new(root), id)
        .display()
        .to_string()
}

/// Everything moat keeps on the host for container `id`, one description
/// per item: id-pool claims, mounts and directories under /run/moat-rootfs,
/// runtime state directories. Empty: nothing left.
pub fn moat_traces(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let pool = crate::effective_policy().user_namespace.pool_dir;
    for e in std::fs::read_dir(&pool).into_iter().flatten().flatten() {
        if let Ok(c) = std::fs::read_to_string(e.path()) {
            if c.contains(id) {
                found.push(format!(
                    "id-pool file {} = {:?}",
                    e.path().display(),
                    c.trim_end()
                ));
            }
        }
    }
    let prefixes: Vec<String> = STATE_ROOTS
        .iter()
        .map(|r| rootfs_mount_point(r, id))
        .collect();
    for (mp, line) in host_mounts() {
        if !mp.starts_with(moat::rootfs::MOUNT_BASE) {
            continue;
        }
        if line.contains(id) || prefixes.iter().any(|p| mp.starts_with(p.as_str())) {
            found.push(format!("mount: {line}"));
        }
    }
    for p in &prefixes {
        for suffix in ["", ".mounts", ".netns", ".sysfs"] {
            let path = format!("{p}{suffix}");
            if Path::new(&path).exists() {
                found.push(format!("directory {path}"));
            }
        }
    }
    for root in STATE_ROOTS {
        for p in [
            format!("{root}/{id}"),
            format!("{root}/{}/{id}", moat::state::PRIVATE_DIR),
        ] {
            if Path::new(&p).exists() {
                found.push(format!("state directory {p}"));
            }
        }
    }
    found
}

/// Asserts (polling up to 10 s for asynchronous clean-up) that moat keeps
/// nothing for `id`.
#[track_caller]
pub fn assert_no_leftovers(id: &str, when: &str) {
    let mut traces = Vec::new();
    let clean = wait_until(Duration::from_secs(10), || {
        traces = moat_traces(id);
        traces.is_empty()
    });
    assert!(
        clean,
        "{when}: moat left state behind for container {id}:\n  {}",
        traces.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Parsing what the container prints.
// ---------------------------------------------------------------------------

/// Splits output made of `@@name` marker lines into sections.
pub fn sections(out: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut cur: Option<String> = None;
    let mut buf = String::new();
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            if let Some(c) = cur.take() {
                map.insert(c, std::mem::take(&mut buf));
            }
            cur = Some(name.trim().to_string());
        } else if cur.is_some() {
            buf.push_str(line);
            buf.push('\n');
        }
    }
    if let Some(c) = cur {
        map.insert(c, buf);
    }
    map
}

/// Section `name` of [`sections`]; panics when it is missing.
#[track_caller]
pub fn section<'a>(s: &'a HashMap<String, String>, name: &str) -> &'a str {
    s.get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("section @@{name} missing from output: {s:?}"))
}

/// [`assert_moat_id_map`] of a uid_map.
#[track_caller]
pub fn assert_moat_uid_map(map: &str, what: &str) -> u64 {
    assert_moat_id_map(map, what)
}

/// Asserts the process status shows moat's sandbox: capabilities within the
/// allowlist, no ambient capabilities, no_new_privs, seccomp filter mode.
#[track_caller]
pub fn assert_hardened_status(status: &str, what: &str) {
    for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        let v = cap_field(status, key);
        assert_eq!(
            v & !ALLOWED_CAPS,
            0,
            "{what}: {key} {v:#x} has capabilities outside the allowlist {ALLOWED_CAPS:#x}\n{status}"
        );
    }
    assert_eq!(cap_field(status, "CapAmb"), 0, "{what}: ambient caps");
    assert_eq!(
        status_field(status, "NoNewPrivs"),
        Some("1"),
        "{what}: NoNewPrivs\n{status}"
    );
    assert_eq!(
        status_field(status, "Seccomp"),
        Some("2"),
        "{what}: Seccomp mode\n{status}"
    );
}

/// Shell snippet printing `@@status` (this process's /proc status) and
/// `@@uid_map`, `@@uid`.
pub const PROBE_SELF: &str = "echo @@status; cat /proc/self/status; \
    echo @@uid_map; cat /proc/self/uid_map; \
    echo @@uid; id -u; echo @@end";

/// The (per-mount options, fs type) of the top mount at `mount_point`.
pub fn mountinfo_entry(mountinfo: &str, mount_point: &str) -> Option<(String, String)> {
    // Last one wins: it is on top.
    mountinfo.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() > 5 && f[4] == mount_point {
            let sep = f.iter().position(|x| *x == "-")?;
            Some((f[5].to_string(), f.get(sep + 1)?.to_string()))
        } else {
            None
        }
    })
}

/// Runs a docker command line under a pseudo-terminal with `script`;
/// returns the output with NULs (also echoed as `^@`) and carriage
/// returns removed.
pub fn under_pty(docker_args: &[String]) -> Out {
    let cmd = std::iter::once(DOCKER.to_string())
        .chain(docker_args.iter().map(|a| sh_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = run_cmd("script", &["-qec", &cmd, "/dev/null"], CMD_TIMEOUT);
    // The docker client emits a NUL on the terminal, which the pty echoes
    // as a literal "^@" (with runc too): drop both forms.
    out.stdout = out.stdout.replace(['\0', '\r'], "").replace("^@", "");
    out
}

// ---------------------------------------------------------------------------
// The test's own outside host: a docker network and a listener on its
// gateway address.
// ---------------------------------------------------------------------------

/// A docker bridge network the test creates, with a TCP listener on its
/// gateway address (a host address that exists only because the test made
/// the network). Counts the connections it accepts. Dropping it stops the
/// listener and removes the network.
pub struct OutsideHost {
    pub network: String,
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl OutsideHost {
    #[track_caller]
    pub fn new(ctx: &Ctx) -> OutsideHost {
        let network = ctx.name("net");
        let _ = docker(&["network", "rm", &network]);
        docker(&["network", "create", "--driver", "bridge", &network]).expect_ok();
        // From here on the guard removes the network, also on panic.
        let mut host = OutsideHost {
            network,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            accepted: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        let gw = docker(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            &host.network,
        ])
        .expect_ok();
        let ip: IpAddr = gw
            .stdout
            .split_whitespace()
            .find_map(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "network {} has no gateway: {gw:?}",
                    host.network,
                    gw = gw.stdout
                )
            });
        let listener = TcpListener::bind((ip, 0)).expect("listen on the test network's gateway");
        listener.set_nonblocking(true).expect("nonblocking");
        host.addr = listener.local_addr().expect("local_addr");
        let (accepted, stop) = (host.accepted.clone(), host.stop.clone());
        host.thread = Some(thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = s.write_all(b"hello\n");
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        }));
        host
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Control: a runc container on the same network reaches the listener,
    /// so a refusal under moat is moat's doing.
    #[track_caller]
    pub fn assert_reachable_under_runc(&self, ctx: &Ctx) {
        let name = ctx.name("control");
        let _guard = NamedContainer(name.clone());
        let before = self.accepted();
        let out = docker(&[
            "run",
            "--rm",
            "--name",
            &name,
            "--runtime=runc",
            "--network",
            &self.network,
            CONTROL_IMAGE,
            "nc",
            "-w",
            "3",
            &self.addr.ip().to_string(),
            &self.addr.port().to_string(),
        ]);
        assert!(
            wait_until(Duration::from_secs(3), || self.accepted() > before),
            "a runc container could not reach the test's host {}: {}",
            self.addr,
            out.describe()
        );
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = run_cmd(DOCKER, &["network", "rm", &self.network], CMD_TIMEOUT);
    }
}

/// From inside running container `c` (with bash, as every Debian image
/// has): the workload's init (pid 1) runs under seccomp mode 2,
/// no_new_privs and the capability allowlist, in an unprivileged user
/// namespace; the root filesystem refuses writes even from container root;
/// a connection to the test's outside host is refused at once and never
/// arrives.
#[track_caller]
pub fn assert_sandbox_on(c: &Container, outside: &OutsideHost) {
    let status = c.exec(&[], &["cat", "/proc/1/status"]).expect_ok().stdout;
    assert_hardened_status(&status, &format!("{} pid 1", c.name));
    let map = c.exec(&[], &["cat", "/proc/1/uid_map"]).expect_ok().stdout;
    assert_moat_uid_map(&map, &c.name);

    let write = c.exec(
        &["-u", "0"],
        &["bash", "-c", "echo x > /moat-rootfs-write-probe"],
    );
    assert!(
        !write.ok(),
        "{}: container root wrote to /: {}",
        c.name,
        write.describe()
    );
    assert!(
        write.stderr.contains("Read-only file system"),
        "{}: rootfs write did not fail with EROFS: {}",
        c.name,
        write.describe()
    );

    let before = outside.accepted();
    let started = Instant::now();
    let connect = c.exec(
        &[],
        &[
            "bash",
            "-c",
            &format!(
                "exec 3<>/dev/tcp/{}/{}",
                outside.addr.ip(),
                outside.addr.port()
            ),
        ],
    );
    let took = started.elapsed();
    assert!(
        !connect.ok(),
        "{}: reached the test's host {}: {}",
        c.name,
        outside.addr,
        connect.describe()
    );
    assert!(
        connect.stderr.contains("Connection refused"),
        "{}: egress was not refused: {}",
        c.name,
        connect.describe()
    );
    assert!(
        took < Duration::from_secs(5),
        "{}: refusal took {took:?}",
        c.name
    );
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        outside.accepted(),
        before,
        "{}: a connection reached the test's host",
        c.name
    );
}
