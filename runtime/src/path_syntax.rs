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
