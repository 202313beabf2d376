//! Pure helpers over the path strings a spec or policy holds: no I/O, so
//! the hardening (`harden`, `policy`) can use them without depending on
//! the modules that open host paths (`pinned`, `staging`, `rootfs`).

use std::path::PathBuf;

/// The host paths an overlay mount's options name (lowerdir, upperdir,
/// workdir, ':'-separated lower layers).
pub fn overlay_option_paths(options: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for opt in options {
        for key in OVERLAY_PATH_KEYS {
            if let Some(v) = opt.strip_prefix(key) {
                out.extend(v.split(':').filter(|p| !p.is_empty()).map(PathBuf::from));
            }
        }
    }
    out
}

/// Overlay options whose values are host paths.
pub const OVERLAY_PATH_KEYS: &[&str] = &[
    "lowerdir=",
    "upperdir=",
    "workdir=",
    "lowerdir+=",
    "datadir+=",
];

/// Mount flags an overlay mount's options may carry (mount(2) flags, not
/// overlayfs data).
pub const OVERLAY_FLAG_OPTIONS: &[&str] = &[
    "ro", "rw", "nosuid", "nodev", "noexec", "suid", "dev", "exec",
];

/// overlayfs data options moat passes on besides the layer paths: each
/// turns a feature off or only changes how the overlay stores its own
/// metadata. Every other key is refused (threat T32): `redirect_dir=on`
/// and `metacopy=on` make the kernel follow paths stored in a layer's
/// xattrs, which a tenant writes.
pub const OVERLAY_DATA_OPTIONS: &[&str] = &[
    "userxattr",
    "volatile",
    "xino=off",
    "xino=auto",
    "index=off",
    "redirect_dir=off",
    "redirect_dir=nofollow",
    "metacopy=off",
    "nfs_export=off",
    "uuid=off",
    "uuid=null",
];

/// Why one element of a mount's `options` cannot be passed on as one
/// option, or `None` when it can. The kernel splits mount data on `,`
/// (and overlayfs unescapes `\`), so an element holding either smuggles
/// more options past every check that judges options one element at a
/// time (threat T32); a NUL ends the C string the kernel reads, and no
/// option needs another control character.
pub fn smuggled_mount_option(typ: &str, opt: &str) -> Option<&'static str> {
    if opt.contains(',') {
        return Some("holds a ',' (one option per element)");
    }
    if opt.chars().any(char::is_control) {
        return Some("holds a control character");
    }
    if typ != "overlay" {
        return None;
    }
    if let Some(key) = OVERLAY_PATH_KEYS.iter().find(|k| opt.starts_with(**k)) {
        if opt[key.len()..].contains('\\') {
            return Some("holds a '\\' (overlayfs escapes are not supported)");
        }
        return None;
    }
    if OVERLAY_FLAG_OPTIONS.contains(&opt) || OVERLAY_DATA_OPTIONS.contains(&opt) {
        return None;
    }
    Some("is not an overlay option moat passes on")
}

/// Does `name` match the shell-style `pattern` (only `*`, any run of
/// characters)? Pure.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, p) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.len() >= p.len() && rest.ends_with(p);
        }
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    true
}
