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

use moat_integration::cmd::wait_for;
use moat_integration::containerd::{
    assert_container_sandboxed, cri, id_map, namespace_options, ContainerSpec, Containerd,
    GatewayListener, Handler, Pod, BUSYBOX_IMAGE, SLEEPER,
};
use moat_integration::{cap_field, process_alive, status_field, LeakCheck, ALLOWED_CAPS_MASK};

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

/// containerd 2.1's CRI reports a handler's features (what the kubelet
/// may send it: `hostUsers: false` pods, recursive read-only mounts) only
/// for handlers of type `io.containerd.runc.v2`, from the shim's `-info`
/// (`moat features`). Registered as `moat install containerd --shim`
/// writes it (that type, `runtime_path` = moat's shim), moat's native shim
/// reports what the `moat` handler does; as `io.containerd.moat.v2` it
/// reported nothing, and critest skipped 10 specs under it.
#[test]
fn cri_native_shim_reports_features_on_containerd_2() {
    if moat_integration::containerd::containerd_major() < 2 {
        eprintln!("containerd 1.x reports no runtime handler features: run with MOAT_CONTAINERD_BIN (hack/containerd2.sh)");
        return;
    }
    let (cd, handler) = Containerd::with_moat_shim_handler();
    let status = cd
        .cri(|mut c| async move { c.status(cri::StatusRequest { verbose: false }).await })
        .expect("Status");
    let features = status
        .runtime_handlers
        .iter()
        .find(|h| h.name == handler.name)
        .and_then(|h| h.features)
        .unwrap_or_else(|| panic!("no features for {}: {status:?}", handler.name));
    assert!(features.user_namespaces, "{status:?}");
    // containerd reports rro only where the kernel has mount_setattr (5.12+).
    assert!(features.recursive_read_only_mounts, "{status:?}");
    // And the handler serves pods (the sandbox too runs through moat's shim).
    {
        let pod = cd.run_pod("features", handler.name).expect("RunPodSandbox");
        let ctr = pod.start_container("c", SLEEPER).expect("container");
        assert_container_hardened(&pod, &ctr);
        let shims = cd.shim_pids();
        assert!(!shims.is_empty(), "no shim serves the pod");
        for pid in shims {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            assert!(
                exe.ends_with("containerd-shim-moat-v2"),
                "shim {pid} is {}, not moat's",
                exe.display()
            );
        }
    }
    cd.shutdown_clean();
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
        assert!(process_alive(ctr_pid));
        let shims = cd.shim_pids();
        assert_eq!(shims.len(), 1, "one shim per pod: {shims:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shims[0]),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("container reported exited", Duration::from_secs(30), || {
            pod.container_state(&ctr) == cri::ContainerState::ContainerExited as i32
        });
        wait_for(
            "sandbox reported not ready",
            Duration::from_secs(30),
            || {
                pod.status()
                    .ok()
                    .and_then(|s| s.status)
                    .is_some_and(|s| s.state == cri::PodSandboxState::SandboxNotready as i32)
            },
        );
        wait_for("container process gone", Duration::from_secs(10), || {
            !process_alive(ctr_pid)
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
        assert!(process_alive(ctr_pid), "the container died with containerd");
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
    let pod = run_shared_pid_pod(cd, handler, "sharepid");
    let container = |name: &str, args: &[&str]| {
        pod.start(&shared_pid_container(name, args))
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

/// The namespace options of a pod with `shareProcessNamespace: true` and
/// of each of its containers: pid NamespaceMode POD.
fn shared_pid_options() -> cri::NamespaceOption {
    cri::NamespaceOption {
        pid: cri::NamespaceMode::Pod as i32,
        ..namespace_options()
    }
}

/// RunPodSandbox of a pod `name` that shares its PID namespace.
fn run_shared_pid_pod<'a>(cd: &'a Containerd, handler: &Handler, name: &str) -> Pod<'a> {
    let mut config = cd.pod_config(name);
    if let Some(sc) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options = Some(shared_pid_options());
    }
    cd.run_pod_config(config, handler.name)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({}): {e}\n{}", handler.name, cd.log_tail()))
}

/// A busybox container `name` running `args` in the pod's PID namespace.
fn shared_pid_container(name: &str, args: &[&str]) -> ContainerSpec {
    let mut spec = ContainerSpec::new(name, BUSYBOX_IMAGE).command(args);
    if let Some(sc) = spec
        .config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options = Some(shared_pid_options());
    }
    spec
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
    let pod = run_host_users_false_pod(cd, handler, "hostusers", host_id);
    let spec = host_users_false_container(host_id, "app", &["sleep", "1003"]);
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

/// The namespace options of a `hostUsers: false` pod and each of its
/// containers as the kubelet sends them: user namespace mode POD with the
/// kubelet's mapping, one range of 65536 from container id 0 at `host_id`.
fn host_users_false_options(host_id: u32) -> cri::NamespaceOption {
    let mapping = || {
        vec![cri::IdMapping {
            host_id,
            container_id: 0,
            length: 65536,
        }]
    };
    cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: mapping(),
            gids: mapping(),
        }),
        ..namespace_options()
    }
}

/// RunPodSandbox of a `hostUsers: false` pod `name` (see
/// [`host_users_false_options`]).
fn run_host_users_false_pod<'a>(
    cd: &'a Containerd,
    handler: &Handler,
    name: &str,
    host_id: u32,
) -> Pod<'a> {
    let mut config = cd.pod_config(name);
    if let Some(sc) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options = Some(host_users_false_options(host_id));
    }
    cd.run_pod_config(config, handler.name)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({}): {e}\n{}", handler.name, cd.log_tail()))
}

/// A busybox container `name` running `command` in a `hostUsers: false`
/// pod at `host_id`.
fn host_users_false_container(host_id: u32, name: &str, command: &[&str]) -> ContainerSpec {
    let mut spec = ContainerSpec::new(name, BUSYBOX_IMAGE).command(command);
    if let Some(sc) = spec
        .config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options = Some(host_users_false_options(host_id));
    }
    spec
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

/// `uid:gid` of `path` on the host.
fn host_owner(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    format!("{}:{}", m.uid(), m.gid())
}

/// A `hostUsers: false` pod with two real volumes, each of which
/// containerd 2.1 asks to idmap with the pod's mapping (T3, T5, T19):
/// - an emptyDir as kubelet lays it out (`<pods>/<pod uid>/volumes/
///   kubernetes.io~empty-dir/<name>`, volume storage under the policy's
///   `volumes.idmap_under`), here root-owned 0755: moat idmaps it, so
///   container root owns it and what container root writes there is 0:0
///   inside and 0:0 on disk (a later pod with another range reads it as
///   its own);
/// - a hostPath (any other directory) the operator gave to the pod's range
///   (owned by `host_id`, 0755): not idmapped, it keeps its host owners, so
///   it is 0:0 inside and what container root writes there is 0:0 inside
///   and the pod's mapped host uid on the host.
///
/// And the rootfs is shifted once, not twice (containerd 2.1's runc shim
/// asks for idmapped layers and moat idmaps the rootfs itself): the
/// image's root-owned files are 0:0 inside (65534 if shifted twice or not
/// at all), the image's 0700 /root is readable by container root, and
/// from the host the container's /bin/busybox is owned by `host_id`.
fn host_users_false_pod_with_volumes(cd: &Containerd, handler: &Handler, host_id: u32) {
    use std::os::unix::fs::PermissionsExt;
    let pod = run_host_users_false_pod(cd, handler, "hostusers-vol", host_id);
    let pod_uid = &pod.config.metadata.as_ref().expect("pod metadata").uid;
    let empty_dir = cd
        .layout
        .pods_dir()
        .join(pod_uid)
        .join("volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(&empty_dir).expect("create the emptyDir");
    std::fs::set_permissions(&empty_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host_path = cd.layout.dir.join(format!("hostpath-{}", handler.name));
    std::fs::create_dir(&host_path).expect("create the hostPath");
    std::fs::set_permissions(&host_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&host_path, Some(host_id), Some(host_id)).expect("chown the hostPath");
    let spec = host_users_false_container(host_id, "app", &["sleep", "1004"])
        .mount(&empty_dir, "/data")
        .mount(&host_path, "/hostdata");
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
    // Inside: both volumes and the image's root-owned files are root's.
    let owners = pod.sh(
        &app,
        "stat -c '%n %u:%g' /data /hostdata /bin/busybox /etc/passwd /root && ls -a /root >/dev/null && echo root-readable",
    );
    for path in ["/data", "/hostdata", "/bin/busybox", "/etc/passwd", "/root"] {
        assert!(
            owners.contains(&format!("{path} 0:0\n")),
            "{}: {path} is not 0:0 inside (a rootfs shifted twice or a volume not mapped shows 65534):\n{owners}",
            handler.name
        );
    }
    assert!(
        owners.contains("root-readable"),
        "{}: {owners}",
        handler.name
    );
    // Container root writes to both volumes.
    let written = pod.sh(
        &app,
        "echo empty >/data/by-root && echo host >/hostdata/by-root && stat -c '%n %u:%g' /data/by-root /hostdata/by-root",
    );
    for path in ["/data/by-root", "/hostdata/by-root"] {
        assert!(
            written.contains(&format!("{path} 0:0\n")),
            "{}: {path} is not 0:0 inside:\n{written}",
            handler.name
        );
    }
    // On the host: the idmapped emptyDir keeps the container's ids; the
    // hostPath holds the pod's mapped host ids.
    assert_eq!(
        host_owner(&empty_dir.join("by-root")),
        "0:0",
        "{}: the emptyDir is idmapped: the container's ids on disk",
        handler.name
    );
    assert_eq!(
        host_owner(&host_path.join("by-root")),
        format!("{host_id}:{host_id}"),
        "{}: a hostPath is not idmapped (T19): the pod's mapped host ids on disk",
        handler.name
    );
    assert_eq!(
        std::fs::read_to_string(host_path.join("by-root")).unwrap(),
        "host\n"
    );
    // The rootfs from the host: the image's root is the pod's host root,
    // shifted once.
    let pid = pod.container_pid(&app);
    assert_eq!(
        host_owner(std::path::Path::new(&format!(
            "/proc/{pid}/root/bin/busybox"
        ))),
        format!("{host_id}:{host_id}"),
        "{}: the rootfs is shifted exactly once, to the pod's range",
        handler.name
    );
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

/// [`host_users_false_pod_with_volumes`] through both handlers on
/// containerd 2 (`MOAT_CONTAINERD_BIN`, hack/test.sh).
#[test]
fn cri_host_users_false_pod_with_volumes_on_containerd_2() {
    if moat_integration::containerd::containerd_major() < 2 {
        eprintln!("containerd 1.x sends no user namespace: run with MOAT_CONTAINERD_BIN (hack/containerd2.sh)");
        return;
    }
    let host_id = (1u32 << 30) + 4003 * 65536;
    let (cd, handler) = Containerd::with_moat_handler();
    host_users_false_pod_with_volumes(&cd, &handler, host_id);
    cd.shutdown_clean();
    let (cd, handler) = Containerd::with_moat_shim_handler();
    host_users_false_pod_with_volumes(&cd, &handler, host_id + 65536);
    cd.shutdown_clean();
}

/// A container whose init leaves a child, in a pod that shares its PID
/// namespace (critest's multi-container and PodPID tests): when its init
/// is killed the child, reparented to the pod's init, outlives it and
/// holds the container's stdio. containerd's runc shim then sends `kill
/// --all`; runc signals what is left in the container's cgroup, and moat
/// must too, or StopContainer waits for the stdio forever (containerd 2.1:
/// until the client's deadline). The stop returns, the child is gone and
/// the pod is removed cleanly.
fn stopped_container_leaves_no_child(cd: &Containerd, handler: &Handler) {
    let pod = run_shared_pid_pod(cd, handler, "orphan");
    let spec = shared_pid_container("parent", &["sh", "-c", "sleep 1006 & echo started; wait"]);
    let parent = pod
        .start(&spec)
        .unwrap_or_else(|e| panic!("parent ({}): {e}\n{}", handler.name, cd.log_tail()));
    let checks: Vec<LeakCheck> = [&pod.id, &parent]
        .iter()
        .map(|id| LeakCheck::snapshot(&handler.state_root, id))
        .collect();
    let child = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c == b"sleep\x001006\x00")
                    && process_alive(*pid)
            })
    };
    wait_for("the child started", Duration::from_secs(30), || {
        child().is_some()
    });
    let started = Instant::now();
    pod.stop_container(&parent, 0)
        .unwrap_or_else(|e| panic!("StopContainer ({}): {e}\n{}", handler.name, cd.log_tail()));
    eprintln!(
        "{}: StopContainer took {} ms",
        handler.name,
        started.elapsed().as_millis()
    );
    wait_for(
        "the init's child killed with the container",
        Duration::from_secs(30),
        || child().is_none(),
    );
    pod.remove().expect("RemovePodSandbox");
    for check in &checks {
        check.verify();
    }
}

#[test]
fn cri_stopped_container_leaves_no_child_in_a_shared_pid_pod() {
    let (cd, handler) = Containerd::with_moat_handler();
    stopped_container_leaves_no_child(&cd, &handler);
    cd.shutdown_clean();
    let (cd, handler) = Containerd::with_moat_shim_handler();
    stopped_container_leaves_no_child(&cd, &handler);
    cd.shutdown_clean();
}
