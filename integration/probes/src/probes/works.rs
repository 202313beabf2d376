//! Must-work probes: ordinary things every workload does (files in /tmp,
//! threads, loopback TCP, signals, fork and exec, pipes and poll). Here
//! "allowed" means the thing works; "blocked" (the kernel refused a step)
//! or "error" (a step misbehaved) means the sandbox broke ordinary
//! software. Each probe undoes what it did.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Ctx;
use crate::outcome::{errno, errno_name, Outcome, REFUSALS};
use crate::sys::{cstr, describe_status, flush_stdout, wait_for, Scratch};

/// The hidden subcommand `work_fork_exec` execs the probe with: prints
/// [`EXEC_TOKEN`] and exits 0.
pub const EXEC_COMMAND: &str = "__works-exec";
pub const EXEC_TOKEN: &str = "moat-probe exec ok";

pub fn print_exec_token() {
    println!("{EXEC_TOKEN}");
}

/// A failed step: blocked when the errno is a refusal, else an error.
fn broke(step: &str, errno: i32) -> Outcome {
    let name = errno_name(errno);
    if REFUSALS.contains(&errno) {
        Outcome::Blocked(format!("{step}: {name}"))
    } else {
        Outcome::Error(format!("{step}: {name}"))
    }
}

fn io_broke(step: &str, e: &std::io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(code) => broke(step, code),
        None => Outcome::Error(format!("{step}: {e}")),
    }
}

/// Create, write, fsync, read back, rename, stat and unlink a file in /tmp.
pub fn tmp_file_io(_: &Ctx) -> Outcome {
    let dir = match Scratch::new_in(&["/tmp"], "work-io") {
        Ok(d) => d,
        Err(e) => return Outcome::Blocked(format!("mkdir in /tmp: {e}")),
    };
    let a = dir.join("a.txt");
    let b = dir.join("b.txt");
    let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let step = || -> Result<(), Outcome> {
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&a)
            .map_err(|e| io_broke("create /tmp file", &e))?;
        f.write_all(&data)
            .map_err(|e| io_broke("write /tmp file", &e))?;
        f.sync_all().map_err(|e| io_broke("fsync /tmp file", &e))?;
        drop(f);
        let back = std::fs::read(&a).map_err(|e| io_broke("read /tmp file", &e))?;
        if back != data {
            return Err(Outcome::Error(format!(
                "read back {} bytes that differ from the {} written",
                back.len(),
                data.len()
            )));
        }
        std::fs::rename(&a, &b).map_err(|e| io_broke("rename /tmp file", &e))?;
        if a.exists() {
            return Err(Outcome::Error(
                "the old name still exists after rename".into(),
            ));
        }
        let len = std::fs::metadata(&b)
            .map_err(|e| io_broke("stat renamed file", &e))?
            .len();
        if len != data.len() as u64 {
            return Err(Outcome::Error(format!("renamed file has {len} bytes")));
        }
        std::fs::remove_file(&b).map_err(|e| io_broke("unlink /tmp file", &e))?;
        if b.exists() {
            return Err(Outcome::Error("the file still exists after unlink".into()));
        }
        Ok(())
    };
    match step() {
        Ok(()) => Outcome::Allowed(format!(
            "created, wrote {} bytes, fsynced, read back, renamed and unlinked a file in {}",
            data.len(),
            dir.path.display()
        )),
        Err(o) => o,
    }
}

/// Spawn 8 threads that each sum a range, join them, check the sums.
pub fn threads(_: &Ctx) -> Outcome {
    const N: u64 = 8;
    let mut handles = Vec::new();
    for i in 0..N {
        let spawned = std::thread::Builder::new()
            .name(format!("work-{i}"))
            .spawn(move || {
                let tid = unsafe { libc::syscall(libc::SYS_gettid) };
                let sum: u64 = (i * 10_000..(i + 1) * 10_000).sum();
                (sum, tid)
            });
        match spawned {
            Ok(h) => handles.push((i, h)),
            Err(e) => {
                for (_, h) in handles {
                    let _ = h.join();
                }
                return io_broke(&format!("spawn thread {i}"), &e);
            }
        }
    }
    let mut tids = Vec::new();
    for (i, h) in handles {
        match h.join() {
            Ok((sum, tid)) => {
                let lo = i * 10_000;
                let hi = (i + 1) * 10_000 - 1;
                let want = (lo + hi) * 10_000 / 2;
                if sum != want {
                    return Outcome::Error(format!("thread {i} summed {sum}, expected {want}"));
                }
                tids.push(tid);
            }
            Err(_) => return Outcome::Error(format!("thread {i} panicked")),
        }
    }
    tids.sort_unstable();
    tids.dedup();
    if tids.len() as u64 != N {
        return Outcome::Error(format!(
            "{N} threads ran on only {} distinct tids",
            tids.len()
        ));
    }
    Outcome::Allowed(format!("{N} threads spawned, did their sums and joined"))
}

/// Bind 127.0.0.1:0, connect to it, exchange bytes both ways.
pub fn loopback_tcp(_: &Ctx) -> Outcome {
    let timeout = Duration::from_secs(5);
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
        Ok(l) => l,
        Err(e) => return io_broke("bind 127.0.0.1:0", &e),
    };
    let addr: SocketAddr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return io_broke("getsockname", &e),
    };
    let mut client = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return io_broke(&format!("connect {addr}"), &e),
    };
    // The connection is already queued; a non-blocking accept with a
    // deadline keeps a broken loopback from hanging the run.
    if let Err(e) = listener.set_nonblocking(true) {
        return io_broke("set_nonblocking", &e);
    }
    let deadline = Instant::now() + timeout;
    let mut server = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Outcome::Error(format!("accept on {addr}: nothing within 5s"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return io_broke(&format!("accept on {addr}"), &e),
        }
    };
    let mut exchange = || -> Result<(), Outcome> {
        for s in [&server, &client] {
            s.set_nonblocking(false)
                .map_err(|e| io_broke("set_nonblocking", &e))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| io_broke("set_read_timeout", &e))?;
        }
        let ping = b"ping from client";
        let pong = b"pong from server";
        client
            .write_all(ping)
            .map_err(|e| io_broke("client write", &e))?;
        let mut buf = [0u8; 16];
        server
            .read_exact(&mut buf)
            .map_err(|e| io_broke("server read", &e))?;
        if &buf != ping {
            return Err(Outcome::Error("server read other bytes than sent".into()));
        }
        server
            .write_all(pong)
            .map_err(|e| io_broke("server write", &e))?;
        client
            .read_exact(&mut buf)
            .map_err(|e| io_broke("client read", &e))?;
        if &buf != pong {
            return Err(Outcome::Error("client read other bytes than sent".into()));
        }
        Ok(())
    };
    match exchange() {
        Ok(()) => Outcome::Allowed(format!(
            "listened on {addr}, connected, exchanged 16 bytes each way"
        )),
        Err(o) => o,
    }
}

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

/// The signal masks from /proc/thread-self/status, to say why a signal
/// was not delivered (a mask inherited from the runtime, say).
fn signal_state() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
        .unwrap_or_default();
    let fields: Vec<&str> = status
        .lines()
        .filter(|l| {
            ["SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.trim())
        .collect();
    let mut blocked = false;
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) == 0 {
            blocked = libc::sigismember(&set, libc::SIGUSR1) == 1;
        }
    }
    format!(
        "SIGUSR1 {}blocked in this thread's mask; {}",
        if blocked { "" } else { "not " },
        fields.join(", ")
    )
}

/// Install a SIGUSR1 handler and raise SIGUSR1; fork a child that waits,
/// kill it with SIGTERM and reap it. Both halves always run, so the
/// detail names every part that broke; the probe does not touch the
/// signal mask it inherited (a workload would not either).
pub fn signals(_: &Ctx) -> Outcome {
    let mut broken: Vec<Outcome> = Vec::new();
    let mut fine: Vec<String> = Vec::new();
    match raise_usr1() {
        Ok(s) => fine.push(s),
        Err(o) => broken.push(o),
    }
    match term_child() {
        Ok(s) => fine.push(s),
        Err(o) => broken.push(o),
    }
    if broken.is_empty() {
        return Outcome::Allowed(fine.join("; "));
    }
    let detail = broken
        .iter()
        .map(|o| o.detail().to_string())
        .chain(fine.iter().map(|f| format!("ok: {f}")))
        .collect::<Vec<_>>()
        .join("; ");
    let detail = format!("{detail} ({})", signal_state());
    if broken.iter().any(|o| matches!(o, Outcome::Blocked(_))) {
        Outcome::Blocked(detail)
    } else {
        Outcome::Error(detail)
    }
}

/// A handler sees a signal the process sends itself.
fn raise_usr1() -> Result<String, Outcome> {
    GOT_USR1.store(false, Ordering::SeqCst);
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
    act.sa_flags = libc::SA_RESTART;
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    if unsafe { libc::sigaction(libc::SIGUSR1, &act, &mut old) } != 0 {
        return Err(broke("sigaction(SIGUSR1)", errno()));
    }
    let raised = unsafe { libc::raise(libc::SIGUSR1) };
    let raise_errno = errno();
    // A signal a thread raises at itself is delivered before raise
    // returns unless it is blocked; allow a moment anyway.
    let deadline = Instant::now() + Duration::from_secs(1);
    while raised == 0 && !GOT_USR1.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // A SIGUSR1 still pending (blocked by the mask) must not kill the
    // probe later under the old default action: setting SIG_IGN discards
    // it, then the old action comes back.
    let ignore: libc::sigaction = {
        let mut a: libc::sigaction = unsafe { std::mem::zeroed() };
        a.sa_sigaction = libc::SIG_IGN;
        a
    };
    unsafe {
        libc::sigaction(libc::SIGUSR1, &ignore, std::ptr::null_mut());
        libc::sigaction(libc::SIGUSR1, &old, std::ptr::null_mut());
    }
    if raised != 0 {
        return Err(broke("raise(SIGUSR1)", raise_errno));
    }
    if !GOT_USR1.load(Ordering::SeqCst) {
        return Err(Outcome::Error(
            "raise(SIGUSR1) returned 0 but the handler never ran".into(),
        ));
    }
    Ok("SIGUSR1 handler ran on raise".into())
}

/// SIGTERM kills a child, and the parent reaps it (SIGKILL after 5s so a
/// child that ignores or blocks SIGTERM cannot hang the run).
fn term_child() -> Result<String, Outcome> {
    flush_stdout();
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(broke("fork", errno()));
    }
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            loop {
                libc::pause();
            }
        }
    }
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        let e = errno();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_for(pid);
        return Err(broke(&format!("kill({pid}, SIGTERM)"), e));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(Outcome::Error(format!(
                "waitpid({pid}): {}",
                errno_name(errno())
            )));
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_for(pid);
            return Err(Outcome::Error(format!(
                "child {pid} sent SIGTERM was still alive after 5s (killed with SIGKILL)"
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM) {
        return Err(Outcome::Error(format!(
            "child {pid} sent SIGTERM ended otherwise ({})",
            describe_status(status)
        )));
    }
    Ok(format!("child {pid} killed by SIGTERM and reaped"))
}

/// Fork, exec the probe itself with a trivial subcommand, read what it
/// prints and reap it.
pub fn fork_exec(_: &Ctx) -> Outcome {
    // The path the probe was started from, as the container sees it (an
    // exec through the rootfs, like a shell running a program); else
    // /proc/self/exe.
    let path = std::fs::read_link("/proc/self/exe")
        .ok()
        .map(|p| p.display().to_string())
        .filter(|p| p.starts_with('/') && !p.ends_with(" (deleted)"))
        .unwrap_or_else(|| "/proc/self/exe".into());
    let prog = cstr(&path);
    let arg0 = cstr("moat-probe");
    let arg1 = cstr(EXEC_COMMAND);
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return broke("pipe2", errno());
    }
    flush_stdout();
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = errno();
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        return broke("fork", e);
    }
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // dup2 clears close-on-exec on the new descriptor.
            if libc::dup2(fds[1], 1) < 0 {
                libc::_exit(126);
            }
            libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
            // Report the exec errno through the exit code.
            libc::_exit(100 + errno().min(100));
        }
    }
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
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
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().clamp(1, 10_000) as i32) };
        if n == 0 || (n < 0 && errno() == libc::EINTR) {
            continue;
        }
        if n < 0 {
            break;
        }
        let mut chunk = [0u8; 256];
        let r = unsafe { libc::read(fds[0], chunk.as_mut_ptr().cast(), chunk.len()) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            break;
        }
        out.extend_from_slice(&chunk[..r as usize]);
    }
    unsafe { libc::close(fds[0]) };
    if timed_out {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = wait_for(pid);
    if timed_out {
        return Outcome::Error(format!("{path} {EXEC_COMMAND} did not finish within 10s"));
    }
    if libc::WIFEXITED(status) && (100..=200).contains(&libc::WEXITSTATUS(status)) {
        return broke(&format!("execve {path}"), libc::WEXITSTATUS(status) - 100);
    }
    let text = String::from_utf8_lossy(&out);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Outcome::Error(format!(
            "{path} {EXEC_COMMAND}: {} (printed {:?})",
            describe_status(status),
            text.trim()
        ));
    }
    if text.trim() != EXEC_TOKEN {
        return Outcome::Error(format!(
            "{path} {EXEC_COMMAND} printed {:?}, not {EXEC_TOKEN:?}",
            text.trim()
        ));
    }
    Outcome::Allowed(format!(
        "forked, exec'd {path} {EXEC_COMMAND}, read its output and reaped it (exit 0)"
    ))
}

/// A pipe watched with poll and with epoll: not readable while empty,
/// readable after a write, hung up after the writer closes.
pub fn pipes_and_poll(_: &Ctx) -> Outcome {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return broke("pipe2", errno());
    }
    let (rd, wr) = (fds[0], fds[1]);
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let ep_errno = errno();
    let result = (|| -> Result<(), Outcome> {
        if ep < 0 {
            return Err(broke("epoll_create1", ep_errno));
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: rd as u64,
        };
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, rd, &mut ev) } != 0 {
            return Err(broke("epoll_ctl(ADD)", errno()));
        }
        let poll_in = |ms: i32| -> Result<i16, Outcome> {
            let mut pfd = libc::pollfd {
                fd: rd,
                events: libc::POLLIN,
                revents: 0,
            };
            match unsafe { libc::poll(&mut pfd, 1, ms) } {
                n if n < 0 => Err(broke("poll", errno())),
                0 => Ok(0),
                _ => Ok(pfd.revents),
            }
        };
        let epoll_ready = |ms: i32| -> Result<u32, Outcome> {
            let mut out = [libc::epoll_event { events: 0, u64: 0 }];
            match unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 1, ms) } {
                n if n < 0 => Err(broke("epoll_wait", errno())),
                0 => Ok(0),
                _ => Ok(out[0].events),
            }
        };
        if poll_in(0)? != 0 || epoll_ready(0)? != 0 {
            return Err(Outcome::Error("an empty pipe polled readable".into()));
        }
        let msg = b"through the pipe";
        let w = unsafe { libc::write(wr, msg.as_ptr().cast(), msg.len()) };
        if w < 0 {
            return Err(broke("write pipe", errno()));
        }
        if w as usize != msg.len() {
            return Err(Outcome::Error(format!("short write: {w} bytes")));
        }
        if poll_in(2000)? & libc::POLLIN == 0 {
            return Err(Outcome::Error("poll: not readable after a write".into()));
        }
        if epoll_ready(2000)? & libc::EPOLLIN as u32 == 0 {
            return Err(Outcome::Error(
                "epoll_wait: not readable after a write".into(),
            ));
        }
        let mut buf = [0u8; 32];
        let r = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            return Err(broke("read pipe", errno()));
        }
        if &buf[..r as usize] != msg {
            return Err(Outcome::Error("read other bytes than written".into()));
        }
        unsafe { libc::close(wr) };
        if poll_in(2000)? & libc::POLLHUP == 0 {
            return Err(Outcome::Error(
                "poll: no POLLHUP after the writer closed".into(),
            ));
        }
        let r = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if r != 0 {
            return Err(Outcome::Error(format!(
                "read after the writer closed returned {r}, not end of file"
            )));
        }
        Ok(())
    })();
    unsafe {
        if ep >= 0 {
            libc::close(ep);
        }
        libc::close(rd);
        // Closed already on success; EBADF then is harmless.
        if result.is_err() {
            libc::close(wr);
        }
    }
    match result {
        Ok(()) => Outcome::Allowed(
            "pipe: poll and epoll saw empty, readable after a write, hang-up after close; bytes intact"
                .into(),
        ),
        Err(o) => o,
    }
}

/// Read /dev/urandom, write /dev/null, call getrandom: what every TLS
/// library and logger does.
pub fn dev_null_urandom(_: &Ctx) -> Outcome {
    let mut buf = [0u8; 32];
    let r = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if r < 0 {
        return broke("getrandom", errno());
    }
    let mut f = match std::fs::File::open("/dev/urandom") {
        Ok(f) => f,
        Err(e) => return io_broke("open /dev/urandom", &e),
    };
    if let Err(e) = f.read_exact(&mut buf) {
        return io_broke("read /dev/urandom", &e);
    }
    if buf.iter().all(|b| *b == 0) {
        return Outcome::Error("/dev/urandom gave 32 zero bytes".into());
    }
    let mut null = match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(f) => f,
        Err(e) => return io_broke("open /dev/null for writing", &e),
    };
    if let Err(e) = null.write_all(&buf) {
        return io_broke("write /dev/null", &e);
    }
    Outcome::Allowed("getrandom, read /dev/urandom and wrote /dev/null".into())
}
