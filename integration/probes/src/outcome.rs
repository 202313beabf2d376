//! What a probe found, and the pure rules that turn an errno into a verdict.

/// The verdict of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel (or the sandbox's setup) refused the attack.
    Blocked(String),
    /// The attack worked, or the call got past every permission check.
    Allowed(String),
    /// Neither: the probe could not tell (a precondition was missing, or
    /// the kernel answered something unexpected).
    Error(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Blocked(_) => "blocked",
            Outcome::Allowed(_) => "allowed",
            Outcome::Error(_) => "error",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Outcome::Blocked(d) | Outcome::Allowed(d) | Outcome::Error(d) => d,
        }
    }
}

/// The class an errno falls in, before a probe adds its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Blocked,
    Allowed,
    Error,
}

/// Errnos by which the kernel refuses a call on policy grounds: missing
/// permission or capability, a syscall filtered or absent, a read-only
/// mount.
pub const REFUSALS: &[i32] = &[libc::EPERM, libc::EACCES, libc::ENOSYS, libc::EROFS];

/// Classifies a failed call: a refusal errno means blocked; an errno in
/// `reached` means the call got past the permission checks and failed on
/// the (deliberately harmless) arguments, i.e. allowed; anything else is an
/// error. `reached` wins over [`REFUSALS`] so a probe can count e.g.
/// EACCES from a later step as "got through".
pub fn classify_errno(errno: i32, reached: &[i32]) -> Class {
    if reached.contains(&errno) {
        Class::Allowed
    } else if REFUSALS.contains(&errno) {
        Class::Blocked
    } else {
        Class::Error
    }
}

/// The outcome of `call` failing with `errno`, classified by
/// [`classify_errno`].
pub fn failed(call: &str, errno: i32, reached: &[i32]) -> Outcome {
    let name = errno_name(errno);
    match classify_errno(errno, reached) {
        Class::Blocked => Outcome::Blocked(format!("{call}: {name}")),
        Class::Allowed => Outcome::Allowed(format!(
            "{call}: {name} (the call got past the permission checks and failed only on the probe's harmless arguments)"
        )),
        Class::Error => Outcome::Error(format!("{call}: unexpected {name}")),
    }
}

/// The symbolic name of an errno ("EPERM"), or "errno N".
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        0 => "0",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTBLK => "ENOTBLK",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EDQUOT => "EDQUOT",
        libc::ENOKEY => "ENOKEY",
        libc::EKEYREVOKED => "EKEYREVOKED",
        libc::EKEYREJECTED => "EKEYREJECTED",
        libc::EKEYEXPIRED => "EKEYEXPIRED",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// The errno of the last failed libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_blocked() {
        for e in [libc::EPERM, libc::EACCES, libc::ENOSYS, libc::EROFS] {
            assert_eq!(classify_errno(e, &[]), Class::Blocked, "{}", errno_name(e));
        }
    }

    #[test]
    fn argument_errors_listed_as_reached_are_allowed() {
        assert_eq!(
            classify_errno(libc::EINVAL, &[libc::EINVAL]),
            Class::Allowed
        );
        assert_eq!(
            classify_errno(libc::ENOEXEC, &[libc::EINVAL, libc::ENOEXEC]),
            Class::Allowed
        );
        // Not listed: the probe cannot tell.
        assert_eq!(classify_errno(libc::EINVAL, &[]), Class::Error);
        assert_eq!(classify_errno(libc::EBUSY, &[libc::EINVAL]), Class::Error);
    }

    #[test]
    fn reached_wins_over_refusals() {
        assert_eq!(
            classify_errno(libc::EACCES, &[libc::EACCES]),
            Class::Allowed
        );
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(libc::ENOSYS), "ENOSYS");
        assert_eq!(errno_name(libc::EROFS), "EROFS");
        assert_eq!(errno_name(libc::ETXTBSY), "ETXTBSY");
        assert_eq!(errno_name(4095), "errno 4095");
    }

    #[test]
    fn failed_words_the_outcome() {
        assert_eq!(
            failed("bpf", libc::EPERM, &[libc::EINVAL]),
            Outcome::Blocked("bpf: EPERM".into())
        );
        let allowed = failed("bpf", libc::EINVAL, &[libc::EINVAL]);
        assert_eq!(allowed.label(), "allowed");
        assert!(allowed.detail().starts_with("bpf: EINVAL"));
        assert_eq!(failed("bpf", libc::EBUSY, &[]).label(), "error");
    }
}
