//! T4: syscalls a container should not reach. Each is made with its raw
//! number and arguments that are harmless where it is permitted: either a
//! no-op, something undone at once, or arguments the kernel rejects only
//! after its permission checks (then EINVAL & co. mean "allowed": the call
//! reached the code a real attack would use).

use std::time::Duration;

use libc::{c_long, syscall};

use super::Ctx;
use crate::outcome::{errno, errno_name, failed, Outcome};
use crate::sys::{close, cpath, cstr, in_child, sys, wait_for, Scratch};

const CHILD_TIMEOUT: Duration = Duration::from_secs(20);

/// Allowed when the call returned a new fd (closed at once).
fn fd_or_failed(call: &str, ret: c_long, reached: &[i32]) -> Outcome {
    match sys(ret) {
        Ok(fd) => {
            close(fd);
            Outcome::Allowed(format!("{call} returned a file descriptor (closed)"))
        }
        Err(e) => failed(call, e, reached),
    }
}

/// Allowed when the call returned 0 or more.
fn ok_or_failed(call: &str, ret: c_long, what: &str, reached: &[i32]) -> Outcome {
    match sys(ret) {
        Ok(r) => Outcome::Allowed(format!("{call} returned {r}: {what}")),
        Err(e) => failed(call, e, reached),
    }
}

pub fn io_uring_setup(_: &Ctx) -> Outcome {
    // struct io_uring_params: 120 bytes, all zero but what the kernel fills.
    let mut params = [0u8; 120];
    let ret = unsafe { syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    fd_or_failed("io_uring_setup(1)", ret, &[])
}

pub fn userfaultfd(_: &Ctx) -> Outcome {
    let ret = unsafe { syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
    fd_or_failed("userfaultfd(O_CLOEXEC)", ret, &[])
}

pub fn bpf_prog_load(_: &Ctx) -> Outcome {
    // union bpf_attr for BPF_PROG_LOAD: a socket filter with no
    // instructions, which the verifier can never accept.
    const BPF_PROG_LOAD: c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SOCKET_FILTER.to_ne_bytes());
    let ret = unsafe {
        syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    match sys(ret) {
        Ok(fd) => {
            close(fd);
            Outcome::Allowed("bpf(BPF_PROG_LOAD) of an empty program returned an fd".into())
        }
        Err(e) => failed(
            "bpf(BPF_PROG_LOAD, empty program)",
            e,
            &[libc::EINVAL, libc::E2BIG, libc::EFAULT],
        ),
    }
}

pub fn perf_event_open(_: &Ctx) -> Outcome {
    // struct perf_event_attr (PERF_ATTR_SIZE_VER0 = 64 bytes): a disabled
    // software cpu-clock counter on this process, user space only.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&64u32.to_ne_bytes()); // size
    let flags: u64 = 1 | (1 << 5) | (1 << 6); // disabled, exclude_kernel, exclude_hv
    attr[40..48].copy_from_slice(&flags.to_ne_bytes());
    const PERF_FLAG_FD_CLOEXEC: c_long = 8;
    let ret = unsafe {
        syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0 as c_long,
            -1 as c_long,
            -1 as c_long,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    let out = fd_or_failed("perf_event_open(software cpu-clock, self)", ret, &[]);
    match out {
        Outcome::Blocked(d) if d.ends_with("EACCES") => Outcome::Blocked(format!(
            "{d} (kernel.perf_event_paranoid refuses it, not necessarily the sandbox)"
        )),
        o => o,
    }
}

pub fn keyctl(_: &Ctx) -> Outcome {
    const KEYCTL_GET_KEYRING_ID: c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: c_long = -3;
    let ret = unsafe {
        syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0 as c_long,
        )
    };
    ok_or_failed(
        "keyctl(KEYCTL_GET_KEYRING_ID, session)",
        ret,
        "the kernel keyring is reachable",
        &[libc::ENOKEY],
    )
}

pub fn request_key(_: &Ctx) -> Outcome {
    let typ = cstr("user");
    let desc = cstr("moat-probe:no-such-key");
    let ret = unsafe {
        syscall(
            libc::SYS_request_key,
            typ.as_ptr(),
            desc.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0 as c_long,
        )
    };
    ok_or_failed(
        "request_key(user, no such key, no callout)",
        ret,
        "a key was found",
        &[libc::ENOKEY, libc::EKEYREVOKED, libc::EKEYEXPIRED],
    )
}

pub fn ptrace_attach(_: &Ctx) -> Outcome {
    crate::sys::flush_stdout();
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Outcome::Error(format!("fork: {}", errno_name(errno())));
    }
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            loop {
                libc::pause();
            }
        }
    }
    const PTRACE_ATTACH: c_long = 16;
    const PTRACE_DETACH: c_long = 17;
    let ret = unsafe { syscall(libc::SYS_ptrace, PTRACE_ATTACH, pid as c_long, 0, 0) };
    let out = match sys(ret) {
        Ok(_) => {
            unsafe { syscall(libc::SYS_ptrace, PTRACE_DETACH, pid as c_long, 0, 0) };
            Outcome::Allowed("ptrace(PTRACE_ATTACH) of the probe's own child worked".into())
        }
        Err(e) => failed("ptrace(PTRACE_ATTACH, own child)", e, &[]),
    };
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for(pid);
    out
}

pub fn process_vm_readv(_: &Ctx) -> Outcome {
    let source: u64 = 0x6d6f_6174_7072_6f62;
    let mut dest: u64 = 0;
    let local = libc::iovec {
        iov_base: (&mut dest as *mut u64).cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: (&source as *const u64 as *mut u64).cast(),
        iov_len: 8,
    };
    let ret = unsafe {
        syscall(
            libc::SYS_process_vm_readv,
            libc::getpid() as c_long,
            &local as *const libc::iovec,
            1 as c_long,
            &remote as *const libc::iovec,
            1 as c_long,
            0 as c_long,
        )
    };
    match sys(ret) {
        Ok(8) if dest == source => {
            Outcome::Allowed("process_vm_readv copied 8 bytes out of a process (itself)".into())
        }
        Ok(n) => Outcome::Error(format!("process_vm_readv returned {n} / wrong data")),
        Err(e) => failed("process_vm_readv(self)", e, &[]),
    }
}

pub fn kcmp(_: &Ctx) -> Outcome {
    const KCMP_FILE: c_long = 0;
    let pid = unsafe { libc::getpid() } as c_long;
    let ret = unsafe {
        syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE,
            0 as c_long,
            0 as c_long,
        )
    };
    ok_or_failed(
        "kcmp(self, self, KCMP_FILE, 0, 0)",
        ret,
        "kernel object comparison is reachable",
        &[libc::EBADF],
    )
}

pub fn kexec_load(_: &Ctx) -> Outcome {
    // 17 segments (more than KEXEC_SEGMENT_MAX) for an architecture that
    // does not exist: the kernel checks CAP_SYS_BOOT first, then rejects
    // both with EINVAL, so nothing is ever loaded.
    let flags: c_long = 0xfffe_0000;
    let ret = unsafe {
        syscall(
            libc::SYS_kexec_load,
            0 as c_long,
            17 as c_long,
            std::ptr::null::<u8>(),
            flags,
        )
    };
    ok_or_failed(
        "kexec_load(17 segments, bogus arch)",
        ret,
        "",
        &[libc::EINVAL],
    )
}

pub fn kexec_file_load(_: &Ctx) -> Outcome {
    // Invalid fds and an undefined flag: EINVAL right after the permission
    // check.
    let ret = unsafe {
        syscall(
            libc::SYS_kexec_file_load,
            -1 as c_long,
            -1 as c_long,
            0 as c_long,
            std::ptr::null::<u8>(),
            0x8000_0000 as c_long,
        )
    };
    ok_or_failed(
        "kexec_file_load(-1, -1, bad flags)",
        ret,
        "",
        &[libc::EINVAL, libc::EBADF],
    )
}

pub fn init_module(_: &Ctx) -> Outcome {
    // An empty image: the loader rejects it (ENOEXEC) after the
    // CAP_SYS_MODULE check.
    let image = [0u8; 1];
    let params = cstr("");
    let ret = unsafe {
        syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            0 as c_long,
            params.as_ptr(),
        )
    };
    ok_or_failed(
        "init_module(empty image)",
        ret,
        "",
        &[libc::ENOEXEC, libc::EINVAL, libc::EFAULT],
    )
}

pub fn finit_module(_: &Ctx) -> Outcome {
    let params = cstr("");
    let ret = unsafe {
        syscall(
            libc::SYS_finit_module,
            -1 as c_long,
            params.as_ptr(),
            0x7fff_fff0 as c_long,
        )
    };
    ok_or_failed(
        "finit_module(-1, bad flags)",
        ret,
        "",
        &[libc::EINVAL, libc::EBADF],
    )
}

pub fn delete_module(_: &Ctx) -> Outcome {
    let name = cstr("moat_probe_no_such_module");
    let ret = unsafe {
        syscall(
            libc::SYS_delete_module,
            name.as_ptr(),
            libc::O_NONBLOCK as c_long,
        )
    };
    ok_or_failed(
        "delete_module(no such module)",
        ret,
        "",
        &[libc::ENOENT, libc::EINVAL],
    )
}

pub fn mount_tmpfs(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("mount") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let target = cpath(&scratch.path);
    let (src, typ, data) = (cstr("none"), cstr("tmpfs"), cstr("size=1m"));
    let flags = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as c_long;
    let ret = unsafe {
        syscall(
            libc::SYS_mount,
            src.as_ptr(),
            target.as_ptr(),
            typ.as_ptr(),
            flags,
            data.as_ptr(),
        )
    };
    match sys(ret) {
        Ok(_) => {
            unsafe {
                syscall(
                    libc::SYS_umount2,
                    target.as_ptr(),
                    libc::MNT_DETACH as c_long,
                )
            };
            Outcome::Allowed(format!(
                "mounted a tmpfs on {} (unmounted again)",
                scratch.path.display()
            ))
        }
        Err(e) => failed("mount(none, scratch dir, tmpfs)", e, &[]),
    }
}

pub fn umount2(_: &Ctx) -> Outcome {
    // A fresh directory that is not a mount point: EINVAL once permitted.
    let scratch = match Scratch::new("umount") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let target = cpath(&scratch.path);
    let ret = unsafe { syscall(libc::SYS_umount2, target.as_ptr(), 0 as c_long) };
    ok_or_failed(
        "umount2(a directory that is not a mount point)",
        ret,
        "",
        &[libc::EINVAL],
    )
}

pub fn pivot_root(_: &Ctx) -> Outcome {
    // new_root is a plain directory, never a mount point: EINVAL once
    // permitted, and the root cannot move.
    let scratch = match Scratch::new("pivot") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let dir = cpath(&scratch.path);
    let ret = unsafe { syscall(libc::SYS_pivot_root, dir.as_ptr(), dir.as_ptr()) };
    ok_or_failed(
        "pivot_root(plain dir, plain dir)",
        ret,
        "the root moved?!",
        &[libc::EINVAL, libc::EBUSY],
    )
}

pub fn fsopen(_: &Ctx) -> Outcome {
    let fs = cstr("tmpfs");
    const FSOPEN_CLOEXEC: c_long = 1;
    let ret = unsafe { syscall(libc::SYS_fsopen, fs.as_ptr(), FSOPEN_CLOEXEC) };
    fd_or_failed("fsopen(tmpfs)", ret, &[])
}

pub fn fsmount(_: &Ctx) -> Outcome {
    let ret = unsafe { syscall(libc::SYS_fsmount, -1 as c_long, 0 as c_long, 0 as c_long) };
    fd_or_failed("fsmount(-1, 0, 0)", ret, &[libc::EBADF, libc::EINVAL])
}

pub fn fspick(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("fspick") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let path = cpath(&scratch.path);
    const FSPICK_CLOEXEC: c_long = 1;
    let ret = unsafe {
        syscall(
            libc::SYS_fspick,
            libc::AT_FDCWD as c_long,
            path.as_ptr(),
            FSPICK_CLOEXEC,
        )
    };
    // EINVAL: the path is not the root of a mount (permission came first).
    fd_or_failed("fspick(scratch dir)", ret, &[libc::EINVAL])
}

pub fn open_tree_clone(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("opentree") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let path = cpath(&scratch.path);
    const OPEN_TREE_CLONE: c_long = 1;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_long;
    let ret = unsafe {
        syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD as c_long,
            path.as_ptr(),
            flags,
        )
    };
    fd_or_failed("open_tree(scratch dir, OPEN_TREE_CLONE)", ret, &[])
}

pub fn move_mount(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("movemount") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let from = cpath(&scratch.join("a"));
    let to = cpath(&scratch.join("b"));
    // Undefined flags: EINVAL right after the permission check.
    let ret = unsafe {
        syscall(
            libc::SYS_move_mount,
            libc::AT_FDCWD as c_long,
            from.as_ptr(),
            libc::AT_FDCWD as c_long,
            to.as_ptr(),
            0xffff_0000u32 as c_long,
        )
    };
    ok_or_failed(
        "move_mount(bad flags)",
        ret,
        "",
        &[libc::EINVAL, libc::ENOENT],
    )
}

pub fn mount_setattr(_: &Ctx) -> Outcome {
    // struct mount_attr with nothing to set or clear: a no-op.
    let attr = [0u64; 4];
    let root = cstr("/");
    let ret = unsafe {
        syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD as c_long,
            root.as_ptr(),
            0 as c_long,
            attr.as_ptr(),
            32 as c_long,
        )
    };
    ok_or_failed(
        "mount_setattr(/, no change)",
        ret,
        "the mount API is reachable (a no-op was asked)",
        &[libc::EINVAL],
    )
}

fn unshare_in_child(flags: c_long, what: &'static str) -> Outcome {
    in_child(CHILD_TIMEOUT, move || {
        let ret = unsafe { syscall(libc::SYS_unshare, flags) };
        ok_or_failed(what, ret, "a new namespace was made (in a child)", &[])
    })
}

pub fn unshare_user(_: &Ctx) -> Outcome {
    unshare_in_child(libc::CLONE_NEWUSER as c_long, "unshare(CLONE_NEWUSER)")
}

pub fn unshare_mount(_: &Ctx) -> Outcome {
    unshare_in_child(libc::CLONE_NEWNS as c_long, "unshare(CLONE_NEWNS)")
}

pub fn clone_newuser(_: &Ctx) -> Outcome {
    crate::sys::flush_stdout();
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as c_long;
    // No new stack: the child runs on a copy of ours, like fork, and exits
    // at once.
    let ret = unsafe {
        syscall(
            libc::SYS_clone,
            flags,
            0 as c_long,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        )
    };
    if ret == 0 {
        unsafe { libc::_exit(0) };
    }
    match sys(ret) {
        Ok(pid) => {
            wait_for(pid as libc::pid_t);
            Outcome::Allowed("clone(CLONE_NEWUSER) made a child in a new user namespace".into())
        }
        Err(e) => failed("clone(CLONE_NEWUSER)", e, &[]),
    }
}

pub fn clone3_newuser(_: &Ctx) -> Outcome {
    crate::sys::flush_stdout();
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = libc::CLONE_NEWUSER as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    let ret = unsafe {
        syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if ret == 0 {
        unsafe { libc::_exit(0) };
    }
    match sys(ret) {
        Ok(pid) => {
            wait_for(pid as libc::pid_t);
            Outcome::Allowed("clone3(CLONE_NEWUSER) made a child in a new user namespace".into())
        }
        Err(e) => failed("clone3(CLONE_NEWUSER)", e, &[]),
    }
}

pub fn setns_net(_: &Ctx) -> Outcome {
    in_child(CHILD_TIMEOUT, || {
        let fd = match crate::sys::open("/proc/self/ns/net", libc::O_RDONLY) {
            Ok(fd) => fd,
            Err(e) => return Outcome::Error(format!("open /proc/self/ns/net: {}", errno_name(e))),
        };
        let ret = unsafe { syscall(libc::SYS_setns, fd as c_long, libc::CLONE_NEWNET as c_long) };
        ok_or_failed(
            "setns(own netns, CLONE_NEWNET)",
            ret,
            "joined a network namespace (its own, in a child)",
            &[],
        )
    })
}

#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

pub fn open_by_handle_at(_: &Ctx) -> Outcome {
    let mut fh = FileHandle {
        handle_bytes: 128,
        handle_type: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    let root = cstr("/");
    let ret = unsafe {
        syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD as c_long,
            root.as_ptr(),
            &mut fh as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0 as c_long,
        )
    };
    if let Err(e) = sys(ret) {
        return failed("name_to_handle_at(/)", e, &[]);
    }
    let mount_fd = match crate::sys::open("/", libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("open /: {}", errno_name(e))),
    };
    let ret = unsafe {
        syscall(
            libc::SYS_open_by_handle_at,
            mount_fd as c_long,
            &mut fh as *mut FileHandle,
            (libc::O_RDONLY | libc::O_CLOEXEC) as c_long,
        )
    };
    close(mount_fd as c_long);
    fd_or_failed("open_by_handle_at(handle of /)", ret, &[])
}

pub fn swapon(_: &Ctx) -> Outcome {
    let scratch = match Scratch::new("swapon") {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let path = cpath(&scratch.join("no-such-swapfile"));
    let ret = unsafe { syscall(libc::SYS_swapon, path.as_ptr(), 0 as c_long) };
    ok_or_failed(
        "swapon(a file that does not exist)",
        ret,
        "",
        &[libc::ENOENT],
    )
}

pub fn reboot(_: &Ctx) -> Outcome {
    // Valid magic numbers and a command that does not exist: the kernel
    // checks CAP_SYS_BOOT, then answers EINVAL without doing anything.
    const MAGIC1: c_long = 0xfee1_dead;
    const MAGIC2: c_long = 672_274_793;
    const NO_SUCH_CMD: c_long = 0x4d4f_4154;
    let ret = unsafe {
        syscall(
            libc::SYS_reboot,
            MAGIC1,
            MAGIC2,
            NO_SUCH_CMD,
            std::ptr::null::<u8>(),
        )
    };
    ok_or_failed(
        "reboot(magic, magic, no such command)",
        ret,
        "",
        &[libc::EINVAL],
    )
}

pub fn settimeofday(_: &Ctx) -> Outcome {
    // Neither a time nor a timezone: only the CAP_SYS_TIME check runs.
    let ret = unsafe {
        syscall(
            libc::SYS_settimeofday,
            std::ptr::null::<libc::timeval>(),
            std::ptr::null::<u8>(),
        )
    };
    ok_or_failed(
        "settimeofday(NULL, NULL)",
        ret,
        "passed the CAP_SYS_TIME check (nothing was set)",
        &[],
    )
}

pub fn clock_settime(_: &Ctx) -> Outcome {
    // An invalid time (negative nanoseconds): rejected before anything is
    // set, so EINVAL means the call reached the clock code.
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: -1,
    };
    let ret = unsafe {
        syscall(
            libc::SYS_clock_settime,
            libc::CLOCK_REALTIME as c_long,
            &ts as *const libc::timespec,
        )
    };
    ok_or_failed(
        "clock_settime(CLOCK_REALTIME, invalid time)",
        ret,
        "",
        &[libc::EINVAL],
    )
}

pub fn adjtimex(_: &Ctx) -> Outcome {
    // ADJ_TICK with a tick far out of range: CAP_SYS_TIME is checked
    // first, then the value is rejected with EINVAL.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_TICK;
    tx.tick = 1;
    let ret = unsafe { syscall(libc::SYS_adjtimex, &mut tx as *mut libc::timex) };
    ok_or_failed(
        "adjtimex(ADJ_TICK, out of range)",
        ret,
        "the clock was adjusted?!",
        &[libc::EINVAL],
    )
}

pub fn acct(_: &Ctx) -> Outcome {
    // "/" can never be an accounting file: EISDIR after CAP_SYS_PACCT.
    let root = cstr("/");
    let ret = unsafe { syscall(libc::SYS_acct, root.as_ptr()) };
    ok_or_failed(
        "acct(/)",
        ret,
        "process accounting was switched?!",
        &[libc::EISDIR, libc::EINVAL],
    )
}

pub fn quotactl(_: &Ctx) -> Outcome {
    const Q_GETFMT: u32 = 0x80_0004;
    let cmd = (Q_GETFMT << 8) as i32 as c_long; // QCMD(Q_GETFMT, USRQUOTA)
    let dev = cstr("/moat-probe-no-such-device");
    let mut buf = [0u32; 4];
    let ret = unsafe {
        syscall(
            libc::SYS_quotactl,
            cmd,
            dev.as_ptr(),
            0 as c_long,
            buf.as_mut_ptr(),
        )
    };
    ok_or_failed(
        "quotactl(Q_GETFMT, no such device)",
        ret,
        "",
        &[libc::ENOENT, libc::ENOTBLK, libc::ENODEV, libc::EINVAL],
    )
}

pub fn syslog(_: &Ctx) -> Outcome {
    const SYSLOG_ACTION_READ_ALL: c_long = 3;
    let mut buf = [0u8; 256];
    let ret = unsafe {
        syscall(
            libc::SYS_syslog,
            SYSLOG_ACTION_READ_ALL,
            buf.as_mut_ptr(),
            buf.len() as c_long,
        )
    };
    match sys(ret) {
        Ok(n) => Outcome::Allowed(format!("syslog(READ_ALL) read {n} bytes of the kernel log")),
        Err(e) => failed("syslog(SYSLOG_ACTION_READ_ALL)", e, &[]),
    }
}

pub fn iopl(_: &Ctx) -> Outcome {
    // Level 0 is the level every process has: a no-op where permitted.
    let ret = unsafe { syscall(libc::SYS_iopl, 0 as c_long) };
    ok_or_failed("iopl(0)", ret, "the call is reachable (no-op)", &[])
}

pub fn ioperm(_: &Ctx) -> Outcome {
    // Turning port access off: a no-op where permitted.
    let ret = unsafe { syscall(libc::SYS_ioperm, 0x80 as c_long, 1 as c_long, 0 as c_long) };
    ok_or_failed(
        "ioperm(0x80, 1, off)",
        ret,
        "the call is reachable (no-op)",
        &[],
    )
}

pub fn fanotify_init(_: &Ctx) -> Outcome {
    const FAN_CLOEXEC: c_long = 1;
    let ret = unsafe {
        syscall(
            libc::SYS_fanotify_init,
            FAN_CLOEXEC,
            libc::O_RDONLY as c_long,
        )
    };
    fd_or_failed("fanotify_init(FAN_CLASS_NOTIF)", ret, &[])
}

/// CVE-2022-0185: a new user+mount namespace gives CAP_SYS_ADMIN over a
/// fresh fs_context, whose fsconfig parsing had a heap overflow. The probe
/// walks the same path with a harmless option.
pub fn userns_fsconfig(_: &Ctx) -> Outcome {
    in_child(CHILD_TIMEOUT, || {
        let flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as c_long;
        if let Err(e) = sys(unsafe { syscall(libc::SYS_unshare, flags) }) {
            return failed("unshare(CLONE_NEWUSER|CLONE_NEWNS)", e, &[]);
        }
        let fs = cstr("tmpfs");
        let fd = match sys(unsafe { syscall(libc::SYS_fsopen, fs.as_ptr(), 1 as c_long) }) {
            Ok(fd) => fd,
            Err(e) => {
                return match failed("fsopen(tmpfs) in a new user namespace", e, &[]) {
                    Outcome::Blocked(d) => Outcome::Blocked(format!("unshare worked, but {d}")),
                    o => o,
                }
            }
        };
        const FSCONFIG_SET_STRING: c_long = 1;
        let (key, value) = (cstr("size"), cstr("1m"));
        let ret = unsafe {
            syscall(
                libc::SYS_fsconfig,
                fd,
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0 as c_long,
            )
        };
        close(fd);
        match sys(ret) {
            Ok(_) => Outcome::Allowed(
                "unshare(USER|NS), fsopen and fsconfig all worked: the CVE-2022-0185 path is open"
                    .into(),
            ),
            Err(e) => match failed("fsconfig in a new user namespace", e, &[]) {
                Outcome::Blocked(d) => {
                    Outcome::Blocked(format!("unshare and fsopen worked, but {d}"))
                }
                o => o,
            },
        }
    })
}

/// The errno a raw syscall with zero arguments fails with (0: it did not).
fn errno_of(nr: c_long) -> i32 {
    // SAFETY: zero/null arguments; every call below is refused by the
    // filter or fails its own argument checks before touching memory.
    let ret = unsafe {
        syscall(
            nr,
            0 as c_long,
            0 as c_long,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        )
    };
    match sys(ret) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

/// T4's compatibility side: syscalls newer than the profile answer ENOSYS,
/// as on an older kernel, so C libraries fall back to older calls; the
/// always-denied ones (also those newer than libseccomp, open_tree_attr)
/// answer EPERM. Works when both hold.
pub fn unknown_syscalls_enosys(_: &Ctx) -> Outcome {
    // 470..: newer than every profile; 457/458: statmount/listmount,
    // answered ENOSYS on purpose (callers read /proc/self/mountinfo).
    let unknown: Vec<c_long> = vec![457, 458, 470, 471, 480, 500];
    // io_uring_setup, mount_setattr, open_tree_attr.
    let denied: Vec<c_long> = vec![425, 442, 467];
    let wrong: Vec<String> = unknown
        .iter()
        .map(|nr| (nr, libc::ENOSYS))
        .chain(denied.iter().map(|nr| (nr, libc::EPERM)))
        .filter_map(|(nr, want)| {
            let got = errno_of(*nr);
            (got != want).then(|| {
                format!(
                    "syscall {nr}: {} (want {})",
                    errno_name(got),
                    errno_name(want)
                )
            })
        })
        .collect();
    if wrong.is_empty() {
        Outcome::Allowed(format!(
            "syscalls {unknown:?} answer ENOSYS, always-denied {denied:?} answer EPERM"
        ))
    } else {
        Outcome::Blocked(wrong.join("; "))
    }
}
