//! T18: egress. One TCP connect to an address the caller owns.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::outcome::{errno_name, Outcome};

const TIMEOUT: Duration = Duration::from_secs(2);

pub fn egress_tcp_connect(ctx: &Ctx) -> Outcome {
    let Some(target) = ctx.egress_target else {
        return Outcome::Error("not run: no --egress-target given".into());
    };
    let started = Instant::now();
    match TcpStream::connect_timeout(&target, TIMEOUT) {
        Ok(s) => {
            drop(s);
            Outcome::Allowed(format!("connected to {target} (closed)"))
        }
        Err(e) => {
            let ms = started.elapsed().as_millis();
            let Some(code) = e.raw_os_error() else {
                return Outcome::Error(format!("connect {target}: {e} after {ms} ms"));
            };
            let name = errno_name(code);
            let refusal = [
                libc::ECONNREFUSED,
                libc::EHOSTUNREACH,
                libc::ENETUNREACH,
                libc::EPERM,
                libc::EACCES,
            ]
            .contains(&code);
            if !refusal {
                return Outcome::Error(format!(
                    "connect {target}: {name} after {ms} ms (no refusal within {}s)",
                    TIMEOUT.as_secs()
                ));
            }
            if ctx.egress_expect_listener {
                Outcome::Blocked(format!(
                    "connect {target}: {name} after {ms} ms although a listener is there"
                ))
            } else {
                Outcome::Error(format!(
                    "connect {target}: {name} after {ms} ms, but without --egress-expect-listener a refusal proves nothing"
                ))
            }
        }
    }
}
