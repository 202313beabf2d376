//! runc's command-line contract for lifecycle errors: the words runc 1.1
//! prints when a command meets a container in the wrong state, so engines
//! that match runc's messages treat moat's alike. containerd's runc shim,
//! for one, reads "container not running" / "not found" / "does not exist"
//! as "already gone" and makes StopContainer of an exited container
//! succeed; an unfamiliar wording turns that race into an error.
//!
//! The check runs before libcontainer is asked (whose own error,
//! "failed operation due to incompatible container status", no engine
//! knows); the exit code stays 1, as runc's. Wording measured against runc
//! 1.1.5 (integration/tests/runc_contract.rs runs both).

use libcontainer::container::ContainerStatus;

/// runc's answer when the container's state directory is missing.
pub const DOES_NOT_EXIST: &str = "container does not exist";
/// runc's answer to kill/pause of a container with no running process.
pub const NOT_RUNNING: &str = "container not running";

/// A lifecycle command whose wrong-state error runc words in its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Pause,
    Resume,
    Delete,
    Kill,
}

/// runc's error for `op` on container `id` in `status`, or None when runc
/// would go ahead (libcontainer then decides). `Creating` is left to
/// libcontainer: runc has no such state to mimic.
pub fn wrong_state(op: Op, id: &str, status: ContainerStatus) -> Option<String> {
    use ContainerStatus::{Created, Paused, Running, Stopped};
    let msg = match (op, status) {
        (Op::Start, Running) => "cannot start an already running container".to_string(),
        (Op::Start, Paused) => "cannot start a container in the paused state".to_string(),
        (Op::Start, Stopped) => "cannot start a container that has stopped".to_string(),
        (Op::Pause, Paused | Stopped) | (Op::Kill, Stopped) => NOT_RUNNING.to_string(),
        (Op::Resume, Created | Running | Stopped) => "container not paused".to_string(),
        (Op::Delete, Running | Paused) => format!(
            "cannot delete container {id} that is not stopped: {}",
            runc_status(status)
        ),
        _ => return None,
    };
    Some(msg)
}

/// [`wrong_state`] as a `Result`, for a one-line check in a command.
pub fn check(op: Op, id: &str, status: ContainerStatus) -> Result<(), String> {
    wrong_state(op, id, status).map_or(Ok(()), Err)
}

/// An error runc reports with an exit code of its own instead of 1, and the
/// prefix it puts before the cause: `runc exec` exits 255 with "exec
/// failed: …" whenever the process cannot be started (missing binary, bad
/// cwd, a stopped container), so callers tell "exec did not happen" from
/// "the process ran and exited 1". Attach it with `anyhow`'s `context`;
/// `main` reads the code back with [`exit_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    pub code: u8,
    pub what: &'static str,
}

/// `runc exec`'s failure: exit 255, "exec failed: <cause>".
pub const EXEC_FAILED: Failed = Failed {
    code: 255,
    what: "exec failed",
};

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for Failed {}

/// The exit code an error asks for ([`Failed`] anywhere in its context
/// chain), or None for the usual 1.
pub fn exit_code(e: &anyhow::Error) -> Option<u8> {
    e.downcast_ref::<Failed>().map(|f| f.code)
}

/// An errno as Go words it (runc's messages come from Go's table: lower
/// case, no "ENOENT: " prefix), e.g. "no such file or directory".
pub fn errno_text(e: nix::errno::Errno) -> String {
    let desc = e.desc();
    let mut chars = desc.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Go's `exec.LookPath` as runc 1.1 runs it before execve, with its error
/// wording: a name with a slash must be an executable file; a bare name is
/// searched in `path` (entries joined as Go does, an empty entry meaning
/// the current directory). `is_executable` answers for one candidate:
/// Ok, or the reason as Go words it ("stat X: no such file or directory",
/// "permission denied").
pub fn look_path(
    name: &str,
    path: &str,
    is_executable: impl Fn(&str) -> Result<(), String>,
) -> Result<String, String> {
    if name.contains('/') {
        return is_executable(name)
            .map(|()| name.to_string())
            .map_err(|why| format!("exec: {name:?}: {why}"));
    }
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
        if is_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: {name:?}: executable file not found in $PATH"
    ))
}

/// runc's lower-case status word (as in `runc state`).
fn runc_status(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerStatus::*;

    #[test]
    fn start_words_each_wrong_state_as_runc() {
        assert_eq!(wrong_state(Op::Start, "c", Created), None);
        assert_eq!(
            wrong_state(Op::Start, "c", Running).as_deref(),
            Some("cannot start an already running container")
        );
        assert_eq!(
            wrong_state(Op::Start, "c", Paused).as_deref(),
            Some("cannot start a container in the paused state")
        );
        assert_eq!(
            wrong_state(Op::Start, "c", Stopped).as_deref(),
            Some("cannot start a container that has stopped")
        );
    }

    #[test]
    fn kill_pause_resume_of_the_wrong_state_say_not_running_or_not_paused() {
        assert_eq!(
            wrong_state(Op::Kill, "c", Stopped).as_deref(),
            Some(NOT_RUNNING)
        );
        assert_eq!(wrong_state(Op::Kill, "c", Running), None);
        assert_eq!(
            wrong_state(Op::Pause, "c", Stopped).as_deref(),
            Some(NOT_RUNNING)
        );
        assert_eq!(
            wrong_state(Op::Pause, "c", Paused).as_deref(),
            Some(NOT_RUNNING)
        );
        assert_eq!(wrong_state(Op::Pause, "c", Running), None);
        for s in [Created, Running, Stopped] {
            assert_eq!(
                wrong_state(Op::Resume, "c", s).as_deref(),
                Some("container not paused")
            );
        }
        assert_eq!(wrong_state(Op::Resume, "c", Paused), None);
    }

    #[test]
    fn exec_failures_carry_runcs_exit_code_through_context() {
        let e = anyhow::anyhow!("container does not exist")
            .context(EXEC_FAILED)
            .context("moat");
        assert_eq!(exit_code(&e), Some(255));
        assert_eq!(
            format!("{e:#}"),
            "moat: exec failed: container does not exist"
        );
        assert_eq!(exit_code(&anyhow::anyhow!("x").context("moat")), None);
    }

    #[test]
    fn errno_is_worded_as_go_words_it() {
        use nix::errno::Errno;
        assert_eq!(errno_text(Errno::ENOENT), "no such file or directory");
        assert_eq!(errno_text(Errno::EACCES), "permission denied");
        assert_eq!(errno_text(Errno::ENOTDIR), "not a directory");
    }

    #[test]
    fn look_path_words_its_failures_as_runc() {
        let exe = |p: &str| match p {
            "/bin/sh" => Ok(()),
            "/etc/passwd" | "/etc" => Err("permission denied".to_string()),
            other => Err(format!("stat {other}: no such file or directory")),
        };
        assert_eq!(look_path("sh", "/usr/bin:/bin", exe).unwrap(), "/bin/sh");
        assert_eq!(look_path("/bin/sh", "", exe).unwrap(), "/bin/sh");
        assert_eq!(
            look_path("nope", "/usr/bin:/bin", exe).unwrap_err(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("/etc/passwd", "/bin", exe).unwrap_err(),
            "exec: \"/etc/passwd\": permission denied"
        );
        assert_eq!(
            look_path("/nonexist/x", "/bin", exe).unwrap_err(),
            "exec: \"/nonexist/x\": stat /nonexist/x: no such file or directory"
        );
        // A bare name found nowhere, even where a non-executable one sits.
        assert!(look_path("passwd", "/etc", exe).is_err());
    }

    #[test]
    fn delete_refuses_a_live_container_naming_its_state() {
        assert_eq!(
            wrong_state(Op::Delete, "web", Running).as_deref(),
            Some("cannot delete container web that is not stopped: running")
        );
        assert_eq!(
            wrong_state(Op::Delete, "web", Paused).as_deref(),
            Some("cannot delete container web that is not stopped: paused")
        );
        assert_eq!(wrong_state(Op::Delete, "web", Stopped), None);
        assert_eq!(wrong_state(Op::Delete, "web", Created), None);
    }
}
