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
