//! Running host commands (docker, ctr, …) from the tests: with a timeout,
//! output captured, and a description good enough for an assertion message.
//! Shared by the docker and workload tests.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The docker client the tests drive.
pub const DOCKER: &str = "/usr/bin/docker";

/// What a command did.
pub struct Out {
    pub cmdline: String,
    /// None: killed by a signal or timed out.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn describe(&self) -> String {
        format!(
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            if self.timed_out {
                "TIMED OUT".to_string()
            } else {
                format!("exit {:?}", self.code)
            },
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    #[track_caller]
    pub fn expect_ok(self) -> Out {
        assert!(self.ok(), "command failed: {}", self.describe());
        self
    }

    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `a` as typed in a shell (quoted only when needed).
pub fn quote_arg(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,%+".contains(c))
    {
        a.to_string()
    } else {
        sh_quote(a)
    }
}

/// Quotes `s` for /bin/sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `prog args…` with stdin from /dev/null; kills it (our own child, by
/// its handle) after `timeout`.
pub fn run_cmd<S: AsRef<str>>(prog: &str, args: &[S], timeout: Duration) -> Out {
    let cmdline = std::iter::once(prog.to_string())
        .chain(args.iter().map(|a| quote_arg(a.as_ref())))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(prog)
        .args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));
    let (tx_out, rx_out) = mpsc::channel();
    let (tx_err, rx_err) = mpsc::channel();
    let mut so = child.stdout.take().expect("stdout pipe");
    let mut se = child.stderr.take().expect("stderr pipe");
    thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        let _ = tx_out.send(b);
    });
    thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        let _ = tx_err.send(b);
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                // Only our own child, by its handle.
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for `{cmdline}`: {e}"),
        }
    };
    // A grandchild may still hold the pipes after a timeout: don't hang.
    let grace = Duration::from_secs(5);
    let stdout = rx_out.recv_timeout(grace).unwrap_or_default();
    let stderr = rx_err.recv_timeout(grace).unwrap_or_default();
    Out {
        cmdline,
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// [`wait_until`], panicking ("timed out waiting for `what`") when
/// `timeout` passes first.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, f),
        "timed out waiting for {what} ({timeout:?})"
    );
}

/// True under CI (the env var CI is set): missing daemons fail, not skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Test `test` cannot run here because of `why`: a failure under CI, else
/// a SKIPPED line (the caller then returns).
#[track_caller]
pub fn skip_unless_ci(test: &str, why: &str) {
    assert!(!in_ci(), "{test}: {why} (required under CI)");
    eprintln!("SKIPPED {test}: {why}; set CI=true to make this a failure");
}

/// Ok(()) if `docker info` works; Err(why) otherwise.
pub fn docker_available() -> &'static Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(|| {
        if !Path::new(DOCKER).exists() {
            return Err(format!("{DOCKER} does not exist"));
        }
        let info = run_cmd(DOCKER, &["info"], Duration::from_secs(30));
        if info.ok() {
            Ok(())
        } else {
            Err(format!("`docker info` failed: {}", info.describe()))
        }
    })
}
