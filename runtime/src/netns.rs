//! Egress blocking: the edge. Creates a container's network namespace,
//! brings its loopback up and installs moat's nftables ruleset in it.
//!
//! moat creates the network namespace itself, as host root, before
//! libcontainer creates the container's user namespace. The namespace is
//! therefore owned by the host's user namespace, and container root holds
//! no capability over it, even with CAP_NET_ADMIN granted inside its own
//! user namespace: it cannot flush or change the rules. The container joins
//! it by path (see [`crate::nsjoin`]). Rules are installed before the
//! container's first instruction: there is no window.
//!
//! Nothing here touches the host's network namespace: a new namespace gets
//! its table over nfnetlink from a socket opened inside it (see
//! [`crate::nft`]); the `nft` binary, still used to inspect a namespace
//! and to add the table to one moat joins (a pod's), runs in a child that
//! has already entered the container's namespace.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{op}: {source}")]
    Sys { op: String, source: std::io::Error },
    #[error("nftables is not usable on this host ({0}); moat fails closed. Install nftables (the nft binary and the nf_tables kernel module), or turn egress blocking off with policy key egress.enabled = false")]
    NoNftables(String),
    #[error("nft refused moat's ruleset: {0}")]
    Nft(String),
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetnsError {
    let op = op.into();
    move |source| NetnsError::Sys { op, source }
}

/// Where the network namespace of a container's rootfs mount point lives.
pub fn netns_path(rootfs_mount: &Path) -> PathBuf {
    let mut s = rootfs_mount.as_os_str().to_owned();
    s.push(".netns");
    PathBuf::from(s)
}

/// Brings `lo` up in the calling process's network namespace.
pub(crate) fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a datagram socket and two ioctls on a zeroed ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Creates a new network namespace with its loopback up and moat's egress
/// `table` already in it, pinned by a
/// bind mount at `path`. The calling thread enters the new namespace only
/// for the few syscalls this takes and returns to its own before this
/// returns (a fork and an `nft` exec cost several milliseconds more); the
/// table goes in over nfnetlink (see [`crate::nft`]), in one transaction,
/// before anything else can run in the namespace.
pub fn create_with_rules(path: &Path, table: &crate::egress::Table) -> Result<(), NetnsError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(sys("create netns directory"))?;
    }
    File::create(path).map_err(sys(format!("create {}", path.display())))?;
    let (batch, acks) = crate::nft::batch(table);
    let entered = File::open("/proc/thread-self/ns/net")
        .map_err(sys("open own netns"))
        .and_then(|home| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| sys("unshare a network namespace")(e.into()))?;
            Ok(home)
        });
    let home = match entered {
        Ok(home) => home,
        Err(e) => {
            remove(path);
            return Err(e);
        }
    };
    let result = loopback_up()
        .map_err(sys("bring up lo"))
        .and_then(|()| {
            crate::nft::apply_in_current_netns(&batch, acks).map_err(|e| match e.raw_os_error() {
                Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::EOPNOTSUPP) => {
                    NetnsError::NoNftables(e.to_string())
                }
                _ => NetnsError::Nft(format!("nf_tables refused moat's table: {e}")),
            })
        })
        .and_then(|()| {
            mount(
                Some(Path::new("/proc/thread-self/ns/net")),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| sys("pin the network namespace")(e.into()))
        });
    // Back home whatever happened: the rest of moat must not run in the
    // container's namespace.
    if let Err(e) = nix::sched::setns(&home, CloneFlags::CLONE_NEWNET) {
        // Cannot happen for a namespace we hold open; if it does, stop
        // rather than go on in the wrong one.
        eprintln!("moat: cannot return to its own network namespace: {e}");
        std::process::abort();
    }
    if result.is_err() {
        remove(path);
    }
    result
}

/// Runs `nft ARGS` inside the network namespace at `netns`, with `stdin`.
fn nft_in(netns: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    let ns = File::open(netns).map_err(sys(format!("open {}", netns.display())))?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setns is async-signal-safe; it runs in the forked child only.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| NetnsError::NoNftables(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(sys("write the ruleset to nft"))?;
    }
    let out = child.wait_with_output().map_err(sys("wait for nft"))?;
    drop(ns);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if err.contains("Protocol not supported") || err.contains("Operation not supported") {
            return Err(NetnsError::NoNftables(err));
        }
        return Err(NetnsError::Nft(err));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs (or replaces) moat's ruleset in the namespace at `netns`.
pub fn apply(netns: &Path, ruleset: &str) -> Result<(), NetnsError> {
    nft_in(netns, &["-f", "-"], Some(ruleset)).map(|_| ())
}

/// Does the namespace already carry moat's table? (Containers sharing a
/// network namespace, e.g. a pod, install it once.)
pub fn has_table(netns: &Path) -> bool {
    table(netns).is_some()
}

/// The text of moat's table in the namespace, if it has one.
pub fn table(netns: &Path) -> Option<String> {
    nft_in(
        netns,
        &["list", "table", "inet", crate::egress::TABLE],
        None,
    )
    .ok()
}

/// Blocked connection attempts counted in the namespace: (packets, bytes).
pub fn blocked(netns: &Path) -> Result<(u64, u64), NetnsError> {
    let out = nft_in(
        netns,
        &[
            "list",
            "counter",
            "inet",
            crate::egress::TABLE,
            crate::egress::BLOCKED_COUNTER,
        ],
        None,
    )?;
    crate::egress::parse_counter(&out)
        .ok_or_else(|| NetnsError::Nft(format!("unexpected counter output: {out}")))
}

/// Where moat records which containers use the table it put into a
/// network namespace it did not create (a pod's): one directory per
/// namespace (`<dev>-<ino>`), one file per container, holding the path the
/// container joined it by.
fn table_users_dir(root: &Path) -> PathBuf {
    crate::state::private_root(root).join("netns-tables")
}

/// The identity of a namespace file: `<dev>-<ino>`.
pub(crate) fn ns_key(file: &File) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let md = file.metadata()?;
    Ok(format!("{}-{}", md.dev(), md.ino()))
}

/// Counts container `id` among the users of moat's table in the joined
/// namespace `file` (opened from `path`). `installing`: moat is about to
/// put the table there; otherwise the container is counted only if an
/// earlier container's record exists (a table in a namespace moat created
/// goes away with that namespace).
pub fn add_table_user(
    root: &Path,
    id: &str,
    file: &File,
    path: &Path,
    installing: bool,
) -> std::io::Result<()> {
    let dir = table_users_dir(root).join(ns_key(file)?);
    if !installing && !dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(id), path.as_os_str().as_encoded_bytes())
}

/// Forgets container `id` as a user of the tables moat put into namespaces
/// it did not create, and removes a table when its last user is gone: the
/// namespace (a pod's, an engine's) outlives moat's containers and must not
/// keep moat's rules. The namespace is reached by the recorded path and
/// used only if it is still the same namespace (device and inode). Never
/// fails: delete goes on.
pub fn release_table_user(root: &Path, id: &str) {
    let base = table_users_dir(root);
    let Ok(entries) = fs::read_dir(&base) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let entry = dir.join(id);
        let Ok(path) = fs::read(&entry) else {
            continue;
        };
        let _ = fs::remove_file(&entry);
        if fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
        {
            continue;
        }
        let path = PathBuf::from(String::from_utf8_lossy(&path).into_owned());
        if let Ok(ns) = File::open(&path) {
            if ns_key(&ns).ok().as_deref() == e.file_name().to_str() {
                let handle = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
                if let Err(err) = nft_in(
                    &handle,
                    &["delete", "table", "inet", crate::egress::TABLE],
                    None,
                ) {
                    tracing::warn!(error = %err, namespace = %path.display(), "cannot remove moat's table from the joined network namespace");
                }
            }
        }
        let _ = fs::remove_dir(&dir);
    }
    let _ = fs::remove_dir(&base);
}

/// Unpins a namespace created by [`create`]. Idempotent. The namespace
/// itself goes away with its last process.
pub fn remove(path: &Path) {
    for _ in 0..4 {
        if umount2(path, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{fingerprint, parse_list, ruleset};

    /// The table moat sends over netlink is the table `nft -f` makes from
    /// the text ruleset: listed by nft, they are the same, character for
    /// character. (Creates a namespace, lists its table, re-applies the
    /// text ruleset, which flushes and refills the table, lists again.)
    #[test]
    fn netlink_table_is_the_table_nft_makes_from_the_text() {
        // Namespaces and nftables need root; the suite runs as root.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let allow = parse_list(&[
            "10.96.0.10 udp 53",
            "10.0.0.0/8 tcp 80,8000-8100",
            "10.16.0.0/12",
            "0.0.0.0/0 icmp",
            "192.0.2.7",
            "2001:db8::/32 tcp 443",
            "2001:db8:8000::/33 udp 1000-2000",
            "2001:db8::1 icmp",
            "::/0 tcp 22",
            "169.254.169.254 tcp 80",
        ])
        .unwrap();
        let allow = crate::egress::Egress::from(allow);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        let own_before = fs::read_link("/proc/thread-self/ns/net").unwrap();
        create_with_rules(&path, &crate::egress::table(&allow)).unwrap();
        assert_eq!(
            fs::read_link("/proc/thread-self/ns/net").unwrap(),
            own_before,
            "create_with_rules left the caller in another network namespace"
        );
        let from_netlink = table(&path).expect("no moat table after create_with_rules");
        apply(&path, &ruleset(&allow)).unwrap();
        let from_text = table(&path).expect("no moat table after nft -f");
        remove(&path);
        assert!(
            from_netlink.contains("reject with tcp reset")
                && from_netlink.contains("ip6 daddr 2001:db8:8000::/33 udp dport 1000-2000 accept")
                && from_netlink.contains("priority mangle;")
                && from_netlink.contains("ip6 daddr fd00:ec2::254 counter name \"blocked\" reject"),
            "{from_netlink}"
        );
        assert_eq!(from_netlink, from_text);
        assert_eq!(
            crate::egress::parse_fingerprint(&from_netlink),
            Some(fingerprint(&allow))
        );
    }

    /// With name entries: the sets and the DNS redirect chain sent over
    /// netlink are what `nft -f` makes from the text, and an address added
    /// to a set over netlink (as moat's resolver adds answers) is listed
    /// with its timeout.
    #[test]
    fn netlink_name_sets_and_dns_chain_match_nft() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let policy = crate::policy::EgressPolicy {
            allow: vec![
                "pypi.org tcp 443".into(),
                "*.example.com".into(),
                "10.0.0.0/8 tcp 80".into(),
                "db udp 5000-5010".into(),
            ],
            resolvers: vec!["192.0.2.53".into()],
            ..Default::default()
        };
        let egress = crate::egress::Egress::from_policy(&policy).unwrap();
        let t = crate::egress::table(&egress);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        create_with_rules(&path, &t).unwrap();
        let from_netlink = table(&path).expect("no moat table");
        let result = (|| {
            apply(&path, &ruleset(&egress))?;
            let from_text = table(&path).expect("no moat table after nft -f");
            let ns = File::open(&path).map_err(sys("open ns"))?;
            let added = std::thread::scope(|s| {
                s.spawn(|| -> std::io::Result<()> {
                    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)?;
                    let sock = crate::nft::socket_in_current_netns()?;
                    let (b, acks) = crate::nft::add_elements_batch(
                        "name0_v4",
                        &[("192.0.2.80".parse().unwrap(), 30)],
                    )
                    .unwrap();
                    crate::nft::send_batch(&sock, &b, acks)?;
                    let (b, acks) = crate::nft::add_elements_batch(
                        "name0_v6",
                        &[("2001:db8::80".parse().unwrap(), 30)],
                    )
                    .unwrap();
                    crate::nft::send_batch(&sock, &b, acks)
                })
                .join()
                .unwrap()
            });
            let listed = table(&path).unwrap_or_default();
            Ok::<_, NetnsError>((from_text, added, listed))
        })();
        remove(&path);
        let (from_text, added, listed) = result.unwrap();
        assert_eq!(from_netlink, from_text);
        assert!(
            from_netlink.contains("set name0_v4 {")
                && from_netlink.contains("type nat hook output priority")
                && from_netlink.contains("udp dport 53 redirect")
                && from_netlink.contains("ip daddr @name0_v4 tcp dport 443 accept")
                && from_netlink.contains("meta mark 0x6d6f6174 accept"),
            "{from_netlink}"
        );
        added.unwrap();
        assert!(listed.contains("192.0.2.80 timeout 30s"), "{listed}");
        assert!(listed.contains("2001:db8::80 timeout 30s"), "{listed}");
    }

    /// A namespace whose table the kernel refuses is not left behind, and
    /// the caller is back in its own namespace.
    #[test]
    fn refused_table_leaves_no_namespace() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        let own_before = fs::read_link("/proc/thread-self/ns/net").unwrap();
        // A counter name longer than NFT_OBJ_MAXNAMELEN (256): ERANGE/EINVAL.
        let too_long = "x".repeat(300);
        let mut t = crate::egress::table(&Vec::new().into());
        t.fingerprint = too_long;
        let err = create_with_rules(&path, &t).unwrap_err();
        assert!(matches!(err, NetnsError::Nft(_)), "{err}");
        assert!(!path.exists(), "{} left behind", path.display());
        assert_eq!(
            fs::read_link("/proc/thread-self/ns/net").unwrap(),
            own_before
        );
    }
}
