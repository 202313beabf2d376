//! Pods through real CRI calls: a private containerd (see
//! moat_integration::containerd) with runtime handler `moat` (moat behind
//! containerd's runc shim, configured by moat's installer code), driven
//! like kubelet drives it for a pod with `runtimeClassName: moat`:
//! RunPodSandbox, CreateContainer, StartContainer, ExecSync,
//! ContainerStatus, StopPodSandbox, RemovePodSandbox.
//!
//! The test body [`pod_is_hardened`] takes the handler, so a second
//! handler (moat's own shim) can be checked by the same assertions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use moat_integration::containerd::{
    assert_container_sandboxed, cri, id_map, namespace_options, ContainerSpec, Containerd,
    GatewayListener, Handler, Pod, BUSYBOX_IMAGE, SLEEPER,
};
use moat_integration::{cap_field, status_field, LeakCheck, ALLOWED_CAPS_MASK};

/// CAP_KILL (capability 5) alone.
const CAP_KILL_MASK: u64 = 1 << 5;

#[test]
fn cri_pod_with_runtime_class_moat_is_hardened() {
    let (cd, handler) = Containerd::with_moat_handler();
    pod_is_hardened(&cd, &handler);
    cd.shutdown_clean();
}

/// The same pod through moat's native shim: handler `moat-shim`,
/// `runtime_type = "io.containerd.moat.v2"` (see
/// `Containerd::with_moat_shim_handler`).
#[test]
fn cri_pod_through_the_native_shim_is_hardened() {
    let (cd, handler) = Containerd::with_moat_shim_handler();
    pod_is_hardened(&cd, &handler);
    cd.shutdown_clean();
}

/// Polls `f` every 100 ms until it is true; panics with `what` after
/// `timeout`.
fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// kill -9 of the pod's containerd-shim-runc-v2: containerd notices, has
/// moat delete the containers (its dead-shim clean-up runs `moat delete
/// --force`), reports them exited and the sandbox not ready, and nothing
/// of moat's is left; the pod can then be removed as usual.
#[test]
fn cri_killed_shim_is_reported_and_cleaned_up() {
    let (cd, handler) = Containerd::with_moat_handler();
    {
        let pod = cd
            .run_pod("shim-killed", handler.name)
            .expect("RunPodSandbox");
        let pod_id = pod.id.clone();
        let ctr = pod.start_container("victim", SLEEPER).expect("container");
        let checks: Vec<LeakCheck> = [&pod.id, &ctr]
            .iter()
            .map(|id| LeakCheck::snapshot(&handler.state_root, id))
            .collect();
        let ctr_pid = pod.container_pid(&ctr);
        assert!(alive(ctr_pid));
        let shims = cd.shim_pids();
        assert_eq!(shims.len(), 1, "one shim per pod: {shims:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shims[0]),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for(Duration::from_secs(30), "container reported exited", || {
            pod.container_state(&ctr) == cri::ContainerState::ContainerExited as i32
        });
        wait_for(
            Duration::from_secs(30),
            "sandbox reported not ready",
            || {
                pod.status()
                    .ok()
                    .and_then(|s| s.status)
                    .is_some_and(|s| s.state == cri::PodSandboxState::SandboxNotready as i32)
            },
        );
        wait_for(Duration::from_secs(10), "container process gone", || {
            !alive(ctr_pid)
        });
        // Before RemovePodSandbox: containerd's clean-up alone removed
        // moat's state, mounts, id ranges and processes.
        for check in &checks {
            check.verify();
        }
        pod.remove().expect("RemovePodSandbox after the shim died");
        // The one thing left: the dead shim's socket, which containerd
        // does not remove either (the harness does, on shutdown).
        let socket = cd.shim_socket(&pod_id);
        eprintln!(
            "dead shim's socket {} exists after RemovePodSandbox: {}",
            socket.display(),
            socket.exists()
        );
    }
    assert!(
        cd.cgroups_left().is_empty(),
        "cgroups left: {:?}",
        cd.cgroups_left()
    );
    cd.shutdown_clean();
}

/// containerd restarted while a moat pod runs: the container survives
/// (its shim does not depend on containerd), containerd reconnects to it,
/// ExecSync works again, and the pod is removed cleanly afterwards.
#[test]
fn cri_container_survives_a_containerd_restart() {
    let (cd, handler) = Containerd::with_moat_handler();
    {
        let pod = cd.run_pod("restart", handler.name).expect("RunPodSandbox");
        let ctr = pod.start_container("survivor", SLEEPER).expect("container");
        let checks: Vec<LeakCheck> = [&pod.id, &ctr]
            .iter()
            .map(|id| LeakCheck::snapshot(&handler.state_root, id))
            .collect();
        let ctr_pid = pod.container_pid(&ctr);
        let before = pod.sh(&ctr, "cat /proc/self/uid_map");
        let old_daemon = cd.pid();
        cd.restart();
        assert_ne!(cd.pid(), old_daemon);
        assert!(alive(ctr_pid), "the container died with containerd");
        assert_eq!(
            pod.container_state(&ctr),
            cri::ContainerState::ContainerRunning as i32
        );
        assert_eq!(pod.container_pid(&ctr), ctr_pid);
        // Still managed: exec goes through the shim and moat again.
        assert_eq!(pod.sh(&ctr, "cat /proc/self/uid_map"), before);
        let status = pod.sh(&ctr, "cat /proc/self/status");
        assert_eq!(status_field(&status, "Seccomp"), Some("2"));
        pod.remove().expect("RemovePodSandbox after the restart");
        for check in &checks {
            check.verify();
        }
    }
    assert!(
        cd.cgroups_left().is_empty(),
        "cgroups left: {:?}",
        cd.cgroups_left()
    );
    cd.shutdown_clean();
}

/// moat's hardening seen from inside one container of the pod (see
/// `assert_container_sandboxed`), which runs as the busybox image's root;
/// returns the container's network namespace.
fn assert_container_hardened(pod: &Pod, id: &str) -> String {
    assert_container_sandboxed(pod, id);
    assert_eq!(
        pod.sh(id, "id -u").trim(),
        "0",
        "the image's user is root inside"
    );
    pod.sh(id, "readlink /proc/self/ns/net").trim().to_string()
}

/// The whole check for `handler`: a pod of two containers.
/// The first value of `key` anywhere in `v` (depth first).
fn find_key<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

fn pod_is_hardened(cd: &Containerd, handler: &Handler) {
    let t0 = Instant::now();
    let pod = cd
        .run_pod("hardened", handler.name)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({}): {e}\n{}", handler.name, cd.log_tail()));
    let sandbox_ms = t0.elapsed().as_millis();
    let status = pod.status().expect("PodSandboxStatus");
    let sandbox = status.status.as_ref().expect("sandbox status");
    assert_eq!(sandbox.state, cri::PodSandboxState::SandboxReady as i32);
    let info: serde_json::Value =
        serde_json::from_str(status.info.get("info").expect("verbose info")).unwrap();
    // containerd 1.6 says `runtimeHandler`; 2.x `config.RuntimeHandler`
    // has it as `RuntimeHandler` inside the sandbox's metadata.
    let runtime_handler = info
        .get("runtimeHandler")
        .or_else(|| find_key(&info, "RuntimeHandler"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(runtime_handler, handler.name, "{info}");
    let pod_ip = sandbox
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    assert!(
        pod_ip.starts_with(&format!("{}.", cd.layout.subnet_prefix)),
        "pod IP {pod_ip:?} is not from the test's CNI subnet"
    );
    let sandbox_pid = info["pid"].as_i64().expect("sandbox pid") as i32;

    // The sandbox ("pause") process itself, seen from the host.
    let pause = std::fs::read_to_string(format!("/proc/{sandbox_pid}/status")).unwrap();
    assert_eq!(
        cap_field(&pause, "CapEff") & !ALLOWED_CAPS_MASK,
        0,
        "sandbox CapEff"
    );
    assert_eq!(
        status_field(&pause, "Seccomp"),
        Some("2"),
        "sandbox seccomp"
    );
    assert_eq!(
        status_field(&pause, "NoNewPrivs"),
        Some("1"),
        "sandbox no_new_privs"
    );
    assert!(
        status_field(&pause, "Uid")
            .unwrap()
            .split_whitespace()
            .all(|u| u != "0"),
        "the sandbox runs as host root"
    );

    let started = Instant::now();
    let first = pod
        .start_container("first", SLEEPER)
        .unwrap_or_else(|e| panic!("first container: {e}\n{}", cd.log_tail()));
    eprintln!(
        "{}: RunPodSandbox {} ms, CreateContainer+StartContainer {} ms",
        handler.name,
        sandbox_ms,
        started.elapsed().as_millis()
    );
    // The second container narrows its capabilities with a moat.dev/
    // annotation: the handler must pass moat's annotations through.
    let second = pod
        .start_container_with(
            "second",
            SLEEPER,
            &[("moat.dev/capabilities.allow", "CAP_KILL")],
        )
        .unwrap_or_else(|e| panic!("second container: {e}\n{}", cd.log_tail()));
    // Snapshots of moat's state for each container (ids are known only now).
    let leak_checks: Vec<LeakCheck> = [&pod.id, &first, &second]
        .iter()
        .map(|id| LeakCheck::snapshot(&handler.state_root, id))
        .collect();
    for id in [&first, &second] {
        let st = pod.container_status(id).expect("ContainerStatus");
        assert_eq!(
            st.status.as_ref().map(|s| s.state),
            Some(cri::ContainerState::ContainerRunning as i32),
            "container {id}"
        );
        // moat created it: it has moat's state and a hardening report.
        assert!(
            moat::state::private_dir(&handler.state_root, id).is_dir(),
            "no moat state for {id} under {}",
            handler.state_root.display()
        );
    }

    let net_first = assert_container_hardened(&pod, &first);
    let net_second = assert_container_hardened(&pod, &second);
    let bounding = |id: &str| cap_field(&pod.sh(id, "cat /proc/1/status"), "CapBnd");
    assert_eq!(
        bounding(&second),
        CAP_KILL_MASK,
        "the moat.dev/capabilities.allow annotation did not reach moat"
    );
    assert_ne!(bounding(&first), CAP_KILL_MASK);
    // One network namespace for the pod: the sandbox's, not the host's.
    let sandbox_net = std::fs::read_link(format!("/proc/{sandbox_pid}/ns/net"))
        .unwrap()
        .display()
        .to_string();
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    assert_eq!(
        net_first, sandbox_net,
        "first container is not in the pod's netns"
    );
    assert_eq!(
        net_second, sandbox_net,
        "second container is not in the pod's netns"
    );
    assert_ne!(sandbox_net, host_net, "the pod shares the host's netns");
    let addrs = pod.sh(&first, "ip -4 -o addr show");
    assert!(
        addrs.contains(&format!("{pod_ip}/")),
        "pod IP not inside: {addrs}"
    );
    // And the pod's user namespace and id range (one per pod, T3): the
    // sandbox's, which owns the pod's ipc/uts (and shared pid) namespaces.
    let userns = |id: &str| pod.sh(id, "readlink /proc/self/ns/user; cat /proc/self/uid_map");
    assert_eq!(
        userns(&first),
        userns(&second),
        "containers of one pod must share its user namespace"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{sandbox_pid}/ns/user")).unwrap(),
        std::fs::read_link(format!("/proc/{}/ns/user", pod.container_pid(&first))).unwrap(),
        "the pod's containers are in the sandbox's user namespace"
    );

    // Egress: moat's table is in the pod's netns, and a connection from the
    // pod to an address the test made (the bridge) is refused and counted.
    let pod_netns = PathBuf::from(format!("/proc/{sandbox_pid}/ns/net"));
    assert!(
        moat::netns::has_table(&pod_netns),
        "no moat egress table in the pod's network namespace"
    );
    let listener = GatewayListener::bind(&cd.layout);
    let (gateway, port) = (&listener.host, listener.port.to_string());
    let before = handler.blocked_count(&first);
    let nc = pod
        .exec(&first, &["nc", "-w", "3", gateway, &port])
        .expect("ExecSync nc");
    assert_ne!(nc.exit_code, 0, "connect to {gateway}:{port} succeeded");
    listener.assert_untouched("the moat pod's connection");
    let after = handler.blocked_count(&first);
    assert!(
        after > before,
        "moat did not count the blocked connection ({before} -> {after}); nc: {nc:?}"
    );
    // Control: the same connect from a runc pod on the same bridge works,
    // so it was moat that refused it.
    cd.assert_runc_pod_reaches(&listener);

    // Stop: the containers exit, containerd reports it; remove: nothing
    // of moat's is left.
    pod.stop().expect("StopPodSandbox");
    for id in [&first, &second] {
        let st = pod
            .container_status(id)
            .expect("ContainerStatus after stop");
        assert_eq!(
            st.status.as_ref().map(|s| s.state),
            Some(cri::ContainerState::ContainerExited as i32),
            "container {id} after StopPodSandbox"
        );
    }
    pod.remove().expect("RemovePodSandbox");
    for check in &leak_checks {
        check.verify();
    }
    let left = cd.cgroups_left();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    assert!(
        cd.shim_pids().is_empty(),
        "shims left: {:?}",
        cd.shim_pids()
    );
}

/// A pod with `shareProcessNamespace: true` (pid NamespaceMode POD in the
/// sandbox and each container, as kubelet sends it, and critest's default):
/// both containers join the sandbox's user namespace and id range (T5), so
/// each can mount `/proc` in the pod's pid namespace and sees the other's
/// processes; one range for the whole pod, freed with the sandbox.
fn shared_pid_pod_works(cd: &Containerd, handler: &Handler) {
    let mut config = cd.pod_config("sharepid");
    let shared = cri::NamespaceOption {
        pid: cri::NamespaceMode::Pod as i32,
        ..namespace_options()
    };
    if let Some(sc) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options = Some(shared.clone());
    }
    let pod = cd
        .run_pod_config(config, handler.name)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({}): {e}\n{}", handler.name, cd.log_tail()));
    let container = |name: &str, args: &[&str]| {
        let mut spec = ContainerSpec::new(name, BUSYBOX_IMAGE).command(args);
        if let Some(sc) = spec
            .config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.namespace_options = Some(shared.clone());
        }
        pod.start(&spec)
            .unwrap_or_else(|e| panic!("{name} ({}): {e}\n{}", handler.name, cd.log_tail()))
    };
    let a = container("one", &["sleep", "1001"]);
    let b = container("two", &["sleep", "1002"]);
    let checks: Vec<LeakCheck> = [&pod.id, &a, &b]
        .iter()
        .map(|id| LeakCheck::snapshot(&handler.state_root, id))
        .collect();
    // Each sees the other's process (and the pause process) in the pod's
    // pid namespace.
    let ps_a = pod.sh(&a, "ps -o args");
    let ps_b = pod.sh(&b, "ps -o args");
    for ps in [&ps_a, &ps_b] {
        assert!(
            ps.contains("sleep 1001") && ps.contains("sleep 1002"),
            "{}: the containers of a shared-pid pod must see each other: {ps}",
            handler.name
        );
    }
    // One user namespace and one id range for the pod, not host root.
    let map_a = pod.sh(&a, "cat /proc/self/uid_map");
    let map_b = pod.sh(&b, "cat /proc/self/uid_map");
    assert_eq!(id_map(&map_a), id_map(&map_b), "{}", handler.name);
    let (_, host_id, _) = id_map(&map_a)[0];
    assert!(host_id > 0, "{}: {map_a}", handler.name);
    let status = pod.status().expect("PodSandboxStatus");
    let info: serde_json::Value =
        serde_json::from_str(status.info.get("info").expect("verbose info")).unwrap();
    let sandbox_pid = info["pid"].as_i64().expect("sandbox pid");
    let sandbox_map = std::fs::read_to_string(format!("/proc/{sandbox_pid}/uid_map")).unwrap();
    assert_eq!(id_map(&sandbox_map), id_map(&map_a), "{}", handler.name);
    // Still hardened: no capability beyond moat's allowlist.
    assert_container_sandboxed(&pod, &a);
    assert_container_sandboxed(&pod, &b);
    pod.remove().expect("RemovePodSandbox");
    // The pod's range is freed with the sandbox; nothing of any container
    // is left.
    for check in &checks {
        check.verify();
    }
}

#[test]
fn cri_shared_pid_pod_shares_one_user_namespace() {
    let (cd, handler) = Containerd::with_moat_handler();
    shared_pid_pod_works(&cd, &handler);
    cd.shutdown_clean();
}

#[test]
fn cri_shared_pid_pod_through_the_native_shim() {
    let (cd, handler) = Containerd::with_moat_shim_handler();
    shared_pid_pod_works(&cd, &handler);
    cd.shutdown_clean();
}

/// A `hostUsers: false` pod as the kubelet sends it (user namespace mode
/// POD with the kubelet's uid/gid mapping) on containerd 2: moat keeps the
/// kubelet's range (T3) and the containers are still hardened. containerd
/// 2.1 asks for idmapped binds (hosts, resolv.conf, ...) with the pod's
/// mapping, which moat takes over (docs/kubernetes.md); no volume yet.
fn host_users_false_pod_works(cd: &Containerd, handler: &Handler, host_id: u32) {
    let mut config = cd.pod_config("hostusers");
    let userns = cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![cri::IdMapping {
                host_id,
                container_id: 0,
                length: 65536,
            }],
            gids: vec![cri::IdMapping {
                host_id,
                container_id: 0,
                length: 65536,
            }],
        }),
        ..namespace_options()
    };
    if let Some(sc) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options = Some(userns.clone());
    }
    let pod = cd
        .run_pod_config(config, handler.name)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({}): {e}\n{}", handler.name, cd.log_tail()));
    let mut spec = ContainerSpec::new("app", BUSYBOX_IMAGE).command(&["sleep", "1003"]);
    if let Some(sc) = spec
        .config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options = Some(userns.clone());
    }
    let app = pod
        .start(&spec)
        .unwrap_or_else(|e| panic!("app ({}): {e}\n{}", handler.name, cd.log_tail()));
    let checks: Vec<LeakCheck> = [&pod.id, &app]
        .iter()
        .map(|id| LeakCheck::snapshot(&handler.state_root, id))
        .collect();
    let map = pod.sh(&app, "cat /proc/self/uid_map");
    assert_eq!(
        id_map(&map),
        vec![(0, u64::from(host_id), 65536)],
        "{}: the kubelet's mapping was not kept: {map}",
        handler.name
    );
    let gid_map = pod.sh(&app, "cat /proc/self/gid_map");
    assert_eq!(id_map(&gid_map), id_map(&map), "{}", handler.name);
    assert_container_hardened(&pod, &app);
    pod.remove().expect("RemovePodSandbox");
    for check in &checks {
        check.verify();
    }
    let held = std::path::Path::new("/run/moat/id-pool").join(format!("engine-{host_id}-65536"));
    assert!(
        !held.exists(),
        "{}: the pod's range is still held",
        handler.name
    );
}

/// containerd 2.1 makes the pod's user namespace itself
/// (`<state>/sandboxes/<id>/pinned-namespaces/user`, with the kubelet's
/// mapping) and names it in the sandbox's spec: moat reads that
/// namespace's real mapping, claims its range and joins it by the fd it
/// judged (`moat::engine_userns`); the pod's containers join it as the
/// pod's. containerd 1.x sends no user namespace: `make test` runs this
/// with `MOAT_CONTAINERD_BIN` naming containerd 2.1 (hack/test.sh).
#[test]
fn cri_host_users_false_pod_on_containerd_2() {
    if moat_integration::containerd::containerd_major() < 2 {
        eprintln!("containerd 1.x sends no user namespace: run with MOAT_CONTAINERD_BIN (hack/containerd2.sh)");
        return;
    }
    // Near the end of moat's default pool, as a kubelet given that range in
    // /etc/subuid would choose (multiples of 65536).
    let host_id = (1u32 << 30) + 4001 * 65536;
    let (cd, handler) = Containerd::with_moat_handler();
    host_users_false_pod_works(&cd, &handler, host_id);
    cd.shutdown_clean();
    let (cd, handler) = Containerd::with_moat_shim_handler();
    host_users_false_pod_works(&cd, &handler, host_id + 65536);
    cd.shutdown_clean();
}
