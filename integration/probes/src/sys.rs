//! Small helpers over libc shared by the probes: running a step in a child
//! process, a scratch directory, C strings, /proc parsing.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::outcome::{errno, errno_name, Outcome};

/// A NUL-terminated copy of `s` (paths and strings here never hold NUL).
pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// `Ok(ret)` for a non-negative syscall return, else `Err(errno)`.
pub fn sys(ret: libc::c_long) -> Result<libc::c_long, i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

pub fn close(fd: libc::c_long) {
    unsafe {
        libc::close(fd as libc::c_int);
    }
}

pub fn flush_stdout() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

fn encode(o: &Outcome) -> String {
    let tag = match o {
        Outcome::Blocked(_) => 'B',
        Outcome::Allowed(_) => 'A',
        Outcome::Error(_) => 'E',
    };
    format!("{tag}{}\n", o.detail().replace('\n', " "))
}

fn decode(line: &str) -> Option<Outcome> {
    let line = line.strip_suffix('\n')?;
    let mut chars = line.chars();
    let tag = chars.next()?;
    let rest = chars.as_str().to_string();
    match tag {
        'B' => Some(Outcome::Blocked(rest)),
        'A' => Some(Outcome::Allowed(rest)),
        'E' => Some(Outcome::Error(rest)),
        _ => None,
    }
}

/// Runs `f` in a forked child so whatever it changes (namespaces, ids,
/// limits, a chroot) dies with the child, and returns its outcome. The
/// child is killed if it has not answered within `timeout`.
pub fn in_child(timeout: Duration, f: impl FnOnce() -> Outcome) -> Outcome {
    flush_stdout();
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Outcome::Error(format!("pipe2: {}", errno_name(errno())));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let parent = unsafe { libc::getpid() };
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = errno();
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        return Outcome::Error(format!("fork: {}", errno_name(e)));
    }
    if pid == 0 {
        unsafe {
            libc::close(rd);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
        }
        let o = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Outcome::Error("the probe's child panicked".into()));
        let msg = encode(&o);
        unsafe {
            libc::write(wr, msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    unsafe { libc::close(wr) };
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut timed_out = false;
    loop {
        if buf.contains(&b'\n') {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: rd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let n = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break;
        }
        if n == 0 {
            continue;
        }
        let mut chunk = [0u8; 4096];
        let r = unsafe { libc::read(rd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..r as usize]);
    }
    unsafe { libc::close(rd) };
    if timed_out {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = wait_for(pid);
    if timed_out {
        return Outcome::Error(format!(
            "the probe's child gave no answer within {}s (killed)",
            timeout.as_secs()
        ));
    }
    let text = String::from_utf8_lossy(&buf);
    let first = text.split_inclusive('\n').next().unwrap_or("");
    decode(first).unwrap_or_else(|| {
        Outcome::Error(format!(
            "the probe's child died without an answer ({})",
            describe_status(status)
        ))
    })
}

/// waitpid, retrying on EINTR; the raw status, or -1.
pub fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return status;
        }
        if r < 0 && errno() != libc::EINTR {
            return -1;
        }
    }
}

pub fn describe_status(status: i32) -> String {
    if status == -1 {
        "not waitable".into()
    } else if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

/// A fresh directory in the first writable scratch location; removed
/// (best effort) when dropped.
pub struct Scratch {
    pub path: PathBuf,
}

/// Places a container process can usually write to, best first.
pub const SCRATCH_BASES: &[&str] = &["/tmp", "/run", "/var/tmp", "/dev/shm", "/dev"];

impl Scratch {
    pub fn new(tag: &str) -> Result<Scratch, String> {
        Self::new_in(SCRATCH_BASES, tag)
    }

    pub fn new_in(bases: &[&str], tag: &str) -> Result<Scratch, String> {
        let pid = std::process::id();
        let mut tried = Vec::new();
        for base in bases {
            let path = PathBuf::from(format!("{base}/.moat-probe-{pid}-{tag}"));
            let _ = std::fs::remove_dir_all(&path);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Scratch { path }),
                Err(e) => tried.push(format!(
                    "{base}: {}",
                    errno_name(e.raw_os_error().unwrap_or(0))
                )),
            }
        }
        Err(format!(
            "no writable scratch directory ({})",
            tried.join(", ")
        ))
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The path within the filesystem that is mounted (field 4).
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if l.len() < 6 || r.len() < 2 {
        return None;
    }
    Some(MountInfo {
        root: unescape_octal(l[3]),
        mount_point: unescape_octal(l[4]),
        options: l[5].split(',').map(str::to_string).collect(),
        fstype: r[0].to_string(),
        source: unescape_octal(r[1]),
        super_options: r
            .get(2)
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

pub fn mountinfo() -> Result<Vec<MountInfo>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

/// The mount `path` is on: the last-mounted entry whose mount point is the
/// longest prefix of `path`.
pub fn mount_of<'a>(mounts: &'a [MountInfo], path: &str) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        let mp = m.mount_point.as_str();
        let under = path == mp
            || mp == "/"
            || (path.starts_with(mp) && path.as_bytes().get(mp.len()) == Some(&b'/'));
        if under && best.is_none_or(|b| mp.len() >= b.mount_point.len()) {
            best = Some(m);
        }
    }
    best
}

/// (st_dev, st_ino) of a path, following symlinks.
pub fn dev_ino(path: &str) -> Result<(u64, u64), i32> {
    let c = cstr(path);
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return Err(errno());
    }
    Ok((st.st_dev, st.st_ino))
}

pub fn fstat(fd: libc::c_int) -> Result<libc::stat, i32> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(errno());
    }
    Ok(st)
}

/// open(2) of a path; the fd or the errno.
pub fn open(path: &str, flags: libc::c_int) -> Result<libc::c_int, i32> {
    let c = cstr(path);
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

pub fn readlink(path: &str) -> Result<String, i32> {
    std::fs::read_link(path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// Reads at most `max` bytes from an open fd.
pub fn read_some(fd: libc::c_int, max: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; max];
    let mut got = 0;
    while got < max {
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), max - got) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(errno());
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    buf.truncate(got);
    Ok(buf)
}

/// Parses an id map (/proc/PID/uid_map): (inside, outside, count) lines.
pub fn parse_id_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .collect()
}

/// The outside (host) id that inside id `id` maps to, if any.
pub fn map_id(map: &[(u64, u64, u64)], id: u64) -> Option<u64> {
    map.iter()
        .find(|(inside, _, count)| id >= *inside && id - inside < *count)
        .map(|(inside, outside, _)| outside + (id - inside))
}

/// Whether some inside id maps to host id 0.
pub fn maps_host_root(map: &[(u64, u64, u64)]) -> bool {
    map.iter()
        .any(|(_, outside, count)| *outside == 0 && *count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps() {
        let host = parse_id_map("         0          0 4294967295\n");
        assert!(maps_host_root(&host));
        assert_eq!(map_id(&host, 0), Some(0));
        let moat = parse_id_map("         0     165536      65536\n");
        assert!(!maps_host_root(&moat));
        assert_eq!(map_id(&moat, 0), Some(165536));
        assert_eq!(map_id(&moat, 65535), Some(231071));
        assert_eq!(map_id(&moat, 65536), None);
        assert!(parse_id_map("garbage\n").is_empty());
    }

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo_line(
            "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.root, "/mnt1");
        assert_eq!(m.mount_point, "/mnt x");
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert!(m.options.contains(&"noatime".to_string()));
        assert_eq!(m.super_options, vec!["rw", "errors=continue"]);
        assert!(parse_mountinfo_line("short line").is_none());
    }

    #[test]
    fn mount_of_picks_the_longest_prefix() {
        let line = |mp: &str| {
            parse_mountinfo_line(&format!("1 0 0:1 / {mp} rw - tmpfs tmpfs rw")).unwrap()
        };
        let mounts = vec![line("/"), line("/tmp"), line("/tmpfoo")];
        assert_eq!(mount_of(&mounts, "/tmp/x").unwrap().mount_point, "/tmp");
        assert_eq!(mount_of(&mounts, "/tmp").unwrap().mount_point, "/tmp");
        assert_eq!(mount_of(&mounts, "/tmpx").unwrap().mount_point, "/");
        assert_eq!(mount_of(&mounts, "/etc").unwrap().mount_point, "/");
    }

    #[test]
    fn child_outcomes_round_trip() {
        for o in [
            Outcome::Blocked("a b".into()),
            Outcome::Allowed(String::new()),
            Outcome::Error("x\ny".into()),
        ] {
            let back = decode(&encode(&o)).unwrap();
            assert_eq!(back.label(), o.label());
            assert_eq!(back.detail(), o.detail().replace('\n', " "));
        }
    }
}
