//! Learning a workload's own seccomp profile from its behaviour.
//!
//! A learning container runs under its normal filter with every allowing
//! rule turned into a seccomp user-notification rule ([`profile::learning_filter`]).
//! A recorder process ([`recorder`]) holds the notify fds, records each
//! syscall, lets through only what the normal filter allows, and writes
//! an OCI/docker seccomp profile of what it saw. See docs/seccomp.md
//! ("LEARNED PROFILES") for the design and its limits.
//!
//! This module is the host-side plumbing: where the socket and the
//! recorder's record live, starting the recorder (before libcontainer runs:
//! it must fork a single-threaded process), handing an exec'd process's
//! notify fd over, and stopping the recorder on delete.

pub mod cgroup_join;
pub mod names;
pub mod profile;
pub mod recorder;

use std::fs;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use serde::{Deserialize, Serialize};

use crate::pidfd::start_time;

pub use recorder::{Output, RecorderConfig};

/// Directory of the recorders' sockets. Not under the state root: a
/// socket path must fit in 108 bytes, and docker's root plus a 64-character
/// id plus moat's private directory does not.
pub const SOCKET_DIR: &str = "/run/moat-learn";

/// The recorder's record in the container's private state directory.
pub const RECORD_FILE: &str = "learn.json";

pub use crate::policy::{valid_profile_name, DEFAULT_LEARN_DIR};

/// The annotation containerd's CRI writes on every container of a pod with
/// the pod's Kubernetes namespace.
pub const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";

/// Where, below the policy's `learn.dir`, a profile asked for with the
/// `moat.dev/learn` annotation goes: `<scope>/<name>`, the scope taken from
/// who made the bundle, never from what the tenant wrote (red-team R8):
/// runs with the same name accumulate into one profile, so a tenant who
/// could name another's profile would add its own syscalls to the profile
/// the operator later deploys for the other.
///
/// - a bundle containerd made (`Origin::Engine`): its namespace (`k8s.io`
///   for the CRI, where the pod's Kubernetes namespace, written by the CRI,
///   is a second level: `k8s.io/<pod namespace>`); for docker (`moby`) the
///   container id dockerd chose is the second level, `moby/<container id>`:
///   every user of docker's socket shares its one namespace, and docker
///   knows no user below it, so a docker container's profile (and its
///   share of the per-scope cap) is its own, accumulating over its
///   restarts (same id), never another docker container's;
/// - a raw bundle: `raw/<state root tag>/<container id>`: a raw tenant has
///   no identity moat can check but the state root it creates under and
///   the id it runs under there (red-team pass 6 R6-6: `raw/<id>` alone was
///   shared by every tenant, in any state root, that used the same id, so
///   one merged its syscalls into the profile another's operator deploys).
///   The state root, not the bundle owner's uid: moat's callers are host
///   root, so a bundle's owner is whatever the caller chowned it to, while
///   the state root is where moat's own records of the tenant's containers
///   live (whoever may use it may already delete them); the same tag names
///   the tenant's cgroups (`crate::engine_bundle::state_root_tag`). Runs
///   under another state root land in another directory, so they never
///   merge into this one's profile.
///
/// `requested` is the annotation's value ("true": the container id).
/// `root_tag`: the state root's tag (`None` only in unit fixtures: then
/// `raw/<id>`). `explain` (no id, `Origin::Unknown`) gets `requested` back
/// unchanged.
pub fn scoped_profile_name(
    requested: &str,
    origin: crate::engine_bundle::Origin<'_>,
    id: Option<&str>,
    root_tag: Option<&str>,
    annotations: &std::collections::HashMap<String, String>,
) -> Result<String, crate::refusal::Refusal> {
    use crate::engine_bundle::Origin;
    let Some(id) = id else {
        return Ok(requested.to_string());
    };
    let name = if requested == "true" { id } else { requested };
    let refuse = |what: &str, value: &str| {
        crate::refusal::Refusal::annotation(
            "moat.dev/learn",
            format!("the learned profile's {what} {value:?} is not a plain file name"),
        )
    };
    let scope = match origin {
        Origin::Unknown => return Ok(requested.to_string()),
        Origin::Raw => {
            crate::container_id::validate(id).map_err(|_| refuse("container id", id))?;
            match root_tag {
                Some(tag) if valid_profile_name(tag) => format!("raw/{tag}/{id}"),
                Some(tag) => return Err(refuse("state root tag", tag)),
                None => format!("raw/{id}"),
            }
        }
        Origin::Engine(b) => {
            if !valid_profile_name(&b.namespace) {
                return Err(refuse("containerd namespace", &b.namespace));
            }
            match annotations.get(CRI_SANDBOX_NAMESPACE) {
                Some(pod_ns) if b.is_cri() => {
                    if !valid_profile_name(pod_ns) {
                        return Err(refuse("pod namespace", pod_ns));
                    }
                    format!("{}/{pod_ns}", b.namespace)
                }
                // docker has one containerd namespace for every user of its
                // socket and no identity of its own below it: the container
                // (the id dockerd chose, never the tenant) is the scope.
                _ if b.is_docker() => {
                    if !valid_profile_name(&b.id) {
                        return Err(refuse("docker container id", &b.id));
                    }
                    format!("{}/{}", b.namespace, b.id)
                }
                _ => b.namespace.clone(),
            }
        }
    };
    if !valid_profile_name(name) && crate::container_id::validate(name).is_err() {
        return Err(refuse("name", name));
    }
    Ok(format!("{scope}/{name}"))
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("cannot prepare the recorder's socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the seccomp recorder: {0}")]
    Spawn(String),
    #[error("container is learning, but its recorder is not reachable at {path}: {source}")]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot hand the seccomp notify fd to the recorder: {0}")]
    HandOver(nix::Error),
}

/// What `moat create` records about a running recorder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecorderRecord {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat: tells the recorder from a later
    /// process that reuses its pid.
    pub start_time: u64,
    pub socket: PathBuf,
    pub output: PathBuf,
}

/// The socket of container `id` under `root`: a short, stable name.
pub fn socket_path(root: &Path, id: &str) -> PathBuf {
    // FNV-1a over root and id: short, and no collision between roots.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain(&[0])
        .chain(id.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Path::new(SOCKET_DIR).join(format!("{h:016x}.sock"))
}

fn is_running(rec: &RecorderRecord) -> bool {
    match fs::read_to_string(format!("/proc/{}/stat", rec.pid)) {
        Ok(s) if s.rfind(')').is_some_and(|i| s[i..].starts_with(") Z")) => false,
        Ok(_) => start_time(rec.pid) == Some(rec.start_time),
        Err(_) => false,
    }
}

/// Starts the recorder for a container and records it in `private`.
/// Binds the socket first, so libcontainer's connection is queued even
/// before the recorder runs. The recorder is forked twice: it is nobody's
/// child (it outlives `moat create`), and it keeps no descriptor of moat's
/// but the socket (a pipe docker or containerd reads must reach EOF).
pub fn spawn_recorder(
    root: &Path,
    private: &Path,
    cfg: RecorderConfig,
) -> Result<RecorderRecord, RecorderError> {
    let socket = socket_path(root, &cfg.container);
    let sock_err = |source| RecorderError::Socket {
        path: socket.clone(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(SOCKET_DIR)
        .map_err(sock_err)?;
    match fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err(e)),
    }
    let listener = UnixListener::bind(&socket).map_err(sock_err)?;
    let output = cfg.output.path().to_path_buf();
    let (pid_r, pid_w) = nix::unistd::pipe().map_err(|e| RecorderError::Spawn(e.to_string()))?;
    // SAFETY: moat is single-threaded here (libcontainer has not run); the
    // children only run the recorder or _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| RecorderError::Spawn(e.to_string()))? {
        nix::unistd::ForkResult::Child => {
            drop(pid_r);
            let _ = nix::unistd::setsid();
            // SAFETY: as above.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    drop(pid_w);
                    let code = become_recorder(listener, cfg);
                    // SAFETY: leaving a fork child.
                    unsafe { libc::_exit(code) }
                }
                Ok(nix::unistd::ForkResult::Parent { child }) => {
                    let _ = nix::unistd::write(&pid_w, child.as_raw().to_string().as_bytes());
                    // SAFETY: leaving a fork child.
                    unsafe { libc::_exit(0) }
                }
                // SAFETY: leaving a fork child.
                Err(_) => unsafe { libc::_exit(1) },
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(pid_w);
            drop(listener);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut text = String::new();
            use std::io::Read;
            let _ = fs::File::from(pid_r).read_to_string(&mut text);
            let pid: i32 = text
                .trim()
                .parse()
                .map_err(|_| RecorderError::Spawn("the recorder did not start".into()))?;
            let record = RecorderRecord {
                pid,
                start_time: start_time(pid).unwrap_or(0),
                socket,
                output,
            };
            let data = serde_json::to_vec_pretty(&record)
                .map_err(|e| RecorderError::Spawn(e.to_string()))?;
            if let Err(e) = crate::rootfs::write_atomic(&private.join(RECORD_FILE), &data) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = fs::remove_file(&record.socket);
                return Err(RecorderError::Spawn(format!(
                    "cannot record the recorder: {e}"
                )));
            }
            Ok(record)
        }
    }
}

/// In the recorder process: shed moat's descriptors and run.
fn become_recorder(listener: UnixListener, cfg: RecorderConfig) -> i32 {
    // Keep the listener at fd 3, stdio on /dev/null, close the rest. The
    // listener is first moved above the standard descriptors (moat may have
    // been started with one of them closed, and got the listener there).
    // SAFETY: F_DUPFD on a descriptor this process owns.
    let high = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if high < 0 {
        return 1;
    }
    drop(listener);
    let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return 1;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    drop(null);
    // SAFETY: dup2 of the listener onto fd 3 (whatever was there is closed).
    if unsafe { libc::dup3(high, 3, libc::O_CLOEXEC) } != 3 {
        return 1;
    }
    // SAFETY: fd 3 now holds the listener and nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(3) };
    // SAFETY: close_range on descriptors this process no longer uses.
    unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) };
    // SAFETY: ignoring SIGHUP and SIGPIPE (writes to closed peers).
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // SAFETY: prctl with a constant, NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"moat-learn".as_ptr(), 0, 0, 0) };
    recorder::run(listener, cfg)
}

/// The recorder record of a container, if it is learning.
pub fn record(private: &Path) -> Option<RecorderRecord> {
    let bytes = fs::read(private.join(RECORD_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The pid of the container's recorder while it still runs (its recorded
/// start time matches: never a later process that reused the pid).
pub fn live_recorder_pid(private: &Path) -> Option<i32> {
    record(private).filter(is_running).map(|rec| rec.pid)
}

/// Stops a container's recorder and removes its socket. The recorder
/// normally ends by itself once the container's processes are gone; it is
/// given a moment, then SIGTERM (it writes the profile and exits), then
/// SIGKILL. Safe to call when there is none.
pub fn stop_recorder(private: &Path) {
    let Some(rec) = record(private) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(rec.pid);
    let wait = |limit: Duration| {
        let start = Instant::now();
        while is_running(&rec) {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    };
    if !wait(Duration::from_millis(500)) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !wait(Duration::from_secs(5)) {
            tracing::warn!(
                pid = rec.pid,
                "the seccomp recorder did not stop; killing it"
            );
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            wait(Duration::from_secs(2));
        }
    }
    let _ = fs::remove_file(&rec.socket);
    let _ = fs::remove_file(private.join(RECORD_FILE));
}

/// For `moat exec` of a learning container: a connection to its recorder
/// (made on the host, before entering the container), or None when the
/// container is not learning.
pub fn connect_for_exec(private: &Path) -> Result<Option<OwnedFd>, RecorderError> {
    let Some(rec) = record(private) else {
        return Ok(None);
    };
    let stream = UnixStream::connect(&rec.socket).map_err(|source| RecorderError::Unreachable {
        path: rec.socket.clone(),
        source,
    })?;
    Ok(Some(OwnedFd::from(stream)))
}

/// In an exec'd process right after its learning filter is loaded: sends
/// the notify fd to the recorder. Only `sendmsg` runs here (allowed, not
/// notified, in the learning filter): until the recorder holds the fd, a
/// notified syscall could never be answered.
pub fn hand_over_notify_fd(conn: &OwnedFd, notify_fd: RawFd) -> Result<(), RecorderError> {
    let data = [IoSlice::new(b"{\"moat\":\"exec\"}")];
    let fds = [notify_fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<UnixAddr>(conn.as_raw_fd(), &data, &cmsg, MsgFlags::empty(), None)
        .map_err(RecorderError::HandOver)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_short_and_distinct() {
        let id = "a".repeat(64);
        let p = socket_path(Path::new("/var/run/docker/runtime-runc/moby"), &id);
        assert!(p.as_os_str().len() < 100, "{}", p.display());
        assert_ne!(p, socket_path(Path::new("/run/moat"), &id));
        assert_ne!(
            p,
            socket_path(Path::new("/var/run/docker/runtime-runc/moby"), "b")
        );
        assert_eq!(
            p,
            socket_path(Path::new("/var/run/docker/runtime-runc/moby"), &id)
        );
    }

    #[test]
    fn profile_names_are_single_plain_components() {
        for ok in ["web", "web-1.v2", "a_b+c"] {
            assert!(valid_profile_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            ".hidden",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(!valid_profile_name(bad), "{bad}");
        }
    }

    /// R8: an annotation-learned profile lives under a scope the bundle's
    /// origin gives, so no tenant reaches another's profile by its name.
    #[test]
    fn annotation_profiles_are_scoped_by_who_made_the_bundle() {
        use crate::engine_bundle::{EngineBundle, Origin};
        use std::collections::HashMap;
        let none = HashMap::new();
        let pod = |ns: &str| HashMap::from([(CRI_SANDBOX_NAMESPACE.to_string(), ns.to_string())]);
        let engine = |ns: &str| EngineBundle {
            namespace: ns.into(),
            id: "c1".into(),
        };
        let scoped = |name: &str, origin: Origin<'_>, ann: &HashMap<String, String>| {
            scoped_profile_name(name, origin, Some("c1"), None, ann)
        };
        let (moby, cri, other) = (engine("moby"), engine("k8s.io"), engine("ci"));
        // docker: one namespace for every docker user, so the container
        // (dockerd's id) is the scope.
        assert_eq!(
            scoped("web", Origin::Engine(&moby), &none).unwrap(),
            "moby/c1/web"
        );
        assert_eq!(
            scoped("true", Origin::Engine(&moby), &none).unwrap(),
            "moby/c1/c1"
        );
        let other_docker = EngineBundle {
            namespace: "moby".into(),
            id: "c2".into(),
        };
        assert_ne!(
            scoped("web", Origin::Engine(&moby), &none).unwrap(),
            scoped("web", Origin::Engine(&other_docker), &none).unwrap()
        );
        assert_eq!(
            scoped("web", Origin::Engine(&cri), &pod("team-a")).unwrap(),
            "k8s.io/team-a/web"
        );
        assert_eq!(
            scoped("web", Origin::Engine(&cri), &none).unwrap(),
            "k8s.io/web"
        );
        assert_eq!(
            scoped("web", Origin::Engine(&other), &none).unwrap(),
            "ci/web"
        );
        // The pod namespace counts only in a bundle the CRI made: a raw
        // tenant or another namespace writing it gets its own scope.
        assert_eq!(
            scoped("web", Origin::Engine(&other), &pod("team-a")).unwrap(),
            "ci/web"
        );
        assert_eq!(
            scoped("web", Origin::Raw, &pod("team-a")).unwrap(),
            "raw/c1/web"
        );
        assert_eq!(scoped("true", Origin::Raw, &none).unwrap(), "raw/c1/c1");
        // explain: unchanged.
        assert_eq!(
            scoped_profile_name("web", Origin::Unknown, None, None, &none).unwrap(),
            "web"
        );
        // R6-6: a raw profile is scoped by the state root's tag too, so the
        // same id under two state roots names two profiles.
        let in_root = |tag: &str| {
            scoped_profile_name("true", Origin::Raw, Some("c1"), Some(tag), &none).unwrap()
        };
        let (a, b) = (
            crate::engine_bundle::state_root_tag(std::path::Path::new("/run/moat")),
            crate::engine_bundle::state_root_tag(std::path::Path::new("/tmp/other")),
        );
        assert_eq!(in_root(&a), format!("raw/{a}/c1/c1"));
        assert_ne!(in_root(&a), in_root(&b));
        assert!(scoped_profile_name("web", Origin::Raw, Some("c1"), Some("../x"), &none).is_err());
        // Engines' scopes do not depend on the state root.
        assert_eq!(
            scoped_profile_name("web", Origin::Engine(&moby), Some("c1"), Some(&a), &none).unwrap(),
            "moby/c1/web"
        );
        // Never a path out of the scope.
        for bad in [pod("../x"), pod("a/b"), pod("")] {
            assert!(scoped("web", Origin::Engine(&cri), &bad).is_err());
        }
        assert!(scoped("web", Origin::Engine(&engine("..")), &none).is_err());
        let odd_docker = EngineBundle {
            namespace: "moby".into(),
            id: "..".into(),
        };
        assert!(scoped("web", Origin::Engine(&odd_docker), &none).is_err());
        assert!(scoped("../web", Origin::Raw, &none).is_err());
    }

    #[test]
    fn start_time_of_self_is_readable() {
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
