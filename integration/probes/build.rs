//! Links moat-probe statically on every build path (`cargo build`, `make
//! build`), not only when the caller remembers RUSTFLAGS: `moat selftest`
//! runs the probe in a rootfs that holds nothing else, where a dynamically
//! linked probe cannot start.
//!
//! rustc's gnu target links a binary against the C library's shared
//! objects unless `-C target-feature=+crt-static` is in RUSTFLAGS, which
//! would apply to the whole workspace (and fail for proc macros). So this
//! script gives the linker a search directory, searched before the
//! system's, holding only the static archives of the libraries rustc names
//! (`-lc`, `-lm`, …; `-lgcc_s` is served by libgcc_eh.a, as crt-static
//! does), and asks for a static PIE. GNU ld takes the first directory that
//! has either form of a library, so the archives win.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libraries rustc's std names for x86_64-unknown-linux-gnu.
const LIBS: &[&str] = &["c", "m", "rt", "pthread", "dl", "util"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dir = out.join("static-libs");
    std::fs::create_dir_all(&dir).expect("cannot create the static-libs dir");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let archive = |name: &str| -> PathBuf {
        let o = Command::new(&cc)
            .arg(format!("-print-file-name={name}"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        assert!(
            p.is_absolute() && p.exists(),
            "{name} not found by {cc}: install the C library's static archives (libc6-dev)"
        );
        p
    };
    link(&archive("libgcc_eh.a"), &dir.join("libgcc_s.a"));
    for lib in LIBS {
        let name = format!("lib{lib}.a");
        link(&archive(&name), &dir.join(&name));
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg-bins=-static-pie");
}

fn link(target: &Path, at: &Path) {
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at)
        .unwrap_or_else(|e| panic!("cannot link {}: {e}", at.display()));
}
