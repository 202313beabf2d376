//! T8: resource exhaustion. Both probes run their load in a child and
//! clean up after it.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::outcome::{errno, errno_name, Outcome};
use crate::sys::{describe_status, flush_stdout, in_child, wait_for};

/// Forks children (each waits for its end) until fork fails or `fork_cap`
/// is reached, then kills them all. Blocked when fork failed with EAGAIN
/// (a pids limit) below the cap.
pub fn fork_bomb(ctx: &Ctx) -> Outcome {
    // Never take more than half of the host's pid space: past that the
    // bomb would starve the host (and a full pid space also answers EAGAIN,
    // which would pass for a limit).
    let sysctl = |name: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u64::MAX)
    };
    let cap = ctx
        .fork_cap
        .min(sysctl("pid_max") / 2)
        .min(sysctl("threads-max") / 2);
    in_child(Duration::from_secs(600), move || {
        let leader = unsafe { libc::getpid() };
        let mut pids: Vec<libc::pid_t> = Vec::new();
        let mut failure = None;
        let started = Instant::now();
        while (pids.len() as u64) < cap {
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() != leader {
                        libc::_exit(0);
                    }
                    loop {
                        libc::pause();
                    }
                }
            }
            if pid < 0 {
                failure = Some(errno());
                break;
            }
            pids.push(pid);
        }
        let made = pids.len();
        let took = started.elapsed().as_millis();
        for &pid in &pids {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in &pids {
            wait_for(pid);
        }
        match failure {
            Some(libc::EAGAIN) => Outcome::Blocked(format!(
                "fork failed with EAGAIN after {made} children (cap {cap}, {took} ms); all killed"
            )),
            Some(e) => Outcome::Error(format!(
                "fork failed with {} after {made} children; all killed",
                errno_name(e)
            )),
            None => Outcome::Allowed(format!(
                "{made} children forked (the cap: --fork-cap, at most half of kernel.pid_max) without hitting a limit ({took} ms); all killed"
            )),
        }
    })
}

const STEP_MIB: u64 = 64;
const MAX_MIB: u64 = 2048;

/// Allocates and touches memory in 64 MiB steps up to twice the memory
/// limit (at most 2 GiB), in a child that volunteers as the OOM killer's
/// first victim. Blocked when the child is killed or refused memory before
/// twice the limit.
pub fn memory_hog(ctx: &Ctx) -> Outcome {
    let Some(limit) = ctx.memory_limit_mib else {
        return Outcome::Error("not run: no --memory-limit-mib given".into());
    };
    let target = limit.saturating_mul(2);
    if target > MAX_MIB {
        return Outcome::Error(format!(
            "not run: twice the limit ({target} MiB) exceeds the {MAX_MIB} MiB the probe allocates at most"
        ));
    }
    flush_stdout();
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Outcome::Error(format!("pipe2: {}", errno_name(errno())));
    }
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Outcome::Error(format!("fork: {}", errno_name(errno())));
    }
    if pid == 0 {
        unsafe {
            libc::close(fds[0]);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let adj = b"1000";
            let f = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if f >= 0 {
                libc::write(f, adj.as_ptr().cast(), adj.len());
                libc::close(f);
            }
            let say = |s: String| {
                libc::write(fds[1], s.as_ptr().cast(), s.len());
            };
            let len = (STEP_MIB << 20) as usize;
            let mut total = 0;
            while total < target {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p == libc::MAP_FAILED {
                    say(format!("enomem {total} {}\n", errno()));
                    libc::_exit(3);
                }
                let p = p.cast::<u8>();
                let mut i = 0;
                while i < len {
                    std::ptr::write_volatile(p.add(i), 1);
                    i += 4096;
                }
                total += STEP_MIB;
                say(format!("{total}\n"));
            }
            say(format!("done {total}\n"));
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut buf = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: fds[0],
            events: libc::POLLIN,
            revents: 0,
        };
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().clamp(1, 60_000) as i32) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            continue;
        }
        let mut chunk = [0u8; 1024];
        let r = unsafe { libc::read(fds[0], chunk.as_mut_ptr().cast(), chunk.len()) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..r as usize]);
    }
    unsafe { libc::close(fds[0]) };
    if timed_out {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = wait_for(pid);
    let text = String::from_utf8_lossy(&buf);
    let last = text.lines().last().unwrap_or("");
    let reached: u64 = text
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .max()
        .unwrap_or(0);
    if timed_out {
        return Outcome::Error(format!(
            "the hog neither finished nor died within 300s (at {reached} MiB; killed)"
        ));
    }
    if last.starts_with("done") && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Outcome::Allowed(format!(
            "allocated and touched {reached} MiB, twice the {limit} MiB limit"
        ));
    }
    if let Some(rest) = last.strip_prefix("enomem ") {
        let e: i32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        return Outcome::Blocked(format!(
            "mmap failed with {} after {reached} MiB (limit {limit} MiB)",
            errno_name(e)
        ));
    }
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
        return Outcome::Blocked(format!(
            "the hog was killed (OOM) after {reached} of {target} MiB (limit {limit} MiB)"
        ));
    }
    Outcome::Error(format!(
        "the hog ended oddly after {reached} MiB ({})",
        describe_status(status)
    ))
}
