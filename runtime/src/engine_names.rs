//! docker's container names for moat's resolver (issue 18 item 2, T18).
//!
//! On a docker user-defined network the engine's embedded resolver
//! (`127.0.0.11`) answers the names of the network's containers, and
//! forwards every name it does not know to the external resolvers
//! (moby `libnetwork/resolver.go`: local lookup for A/AAAA/PTR/SRV, then
//! forward; kept local only with `ndots` set on single labels, or when the
//! backend does not proxy). No query asks it "answer only if local", so
//! moat never forwards to it: a made-up name would leave through it.
//!
//! Instead moat's resolver answers those names itself from the engine's
//! own record of the network, read over dockerd's API socket (root's):
//! the container's networks (`GET /containers/ID/json`), each network's
//! endpoints (`GET /networks/ID`: name, addresses) and each endpoint's
//! aliases on that network. A name that is an endpoint's name or alias,
//! alone or followed by `.NETWORK`, is answered with its addresses and
//! never leaves the node; every other name follows the allowlist. The
//! answers are not added to any name set: they are the engine's
//! neighbours, reachable only as the allowlist's address entries say (a
//! tenant may name its container `pypi.org`; that must not open
//! `pypi.org`'s entry to it).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// dockerd's API socket.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// How long a fetched list of names is used without asking again.
const FRESH: Duration = Duration::from_secs(5);
/// Two fetches start at least this far apart; after a fetch that found
/// the list unchanged the gap doubles, up to [`FRESH`] (M1: a flood of
/// made-up names costs dockerd what one container asking a known name
/// every few seconds costs it, never more).
const REFETCH_AFTER: Duration = Duration::from_secs(1);
/// A name a fetch did not find is not fetched for again for this long.
const MISS_TTL: Duration = Duration::from_secs(2);
/// Names dockerd gave are forgotten when it has not answered for this long.
const STALE_AFTER: Duration = Duration::from_secs(30);
/// The most names remembered as missing (then forgotten at once).
const MAX_MISSES: usize = 1024;
/// The longest a lookup waits for a fetch that runs or starts now (the
/// serving thread's other queries wait meanwhile); after it, the lookup
/// answers from what is known.
pub const LOOKUP_WAIT: Duration = Duration::from_millis(250);
/// Until the first fetch has ended, a lookup may wait until this long
/// after the fetching started: a container asks for its neighbours as it
/// starts (compose's `web` resolving `db`), before anything was read, and
/// a REFUSED answer then would fail it. Bounded, so a hung dockerd stalls
/// the serving thread for at most this once per container.
pub const FIRST_FETCH_WAIT: Duration = Duration::from_secs(3);
/// The most endpoints read per network.
const MAX_ENDPOINTS: usize = 256;
/// A fetch stops reading new endpoints' aliases after this long (names
/// already read are kept).
const FETCH_BUDGET: Duration = Duration::from_secs(2);

/// What answers dockerd's API paths (dockerd's socket, or a test's).
pub type Api = Arc<dyn Fn(&str) -> std::io::Result<Value> + Send + Sync>;

/// The names of a docker container's neighbours, fetched in the
/// background (M1): a lookup never calls dockerd itself. Only a name that
/// could be a docker name (one label, or `LABEL.NETWORK` for a network the
/// container is on; or one already known) asks for a fetch, at most one
/// per [`REFETCH_AFTER`] (backing off to [`FRESH`] while fetches find
/// nothing new) and none for a name a fetch missed within [`MISS_TTL`]; a
/// fetch asks dockerd for a new endpoint's aliases once (they are fixed
/// for the endpoint's life), so a fetch with no new neighbour is two calls
/// per network. A lookup waits for a fetch at most [`LOOKUP_WAIT`], and
/// only when one runs or may start now. The fetching thread ends after
/// the fetch it is in once this is dropped.
pub struct DockerNames {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DockerNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerNames")
            .field("container", &self.shared.container)
            .finish_non_exhaustive()
    }
}

struct Shared {
    container: String,
    api: Api,
    state: Mutex<State>,
    /// Signalled when a fetch is wanted or the fetcher must stop.
    wake: Condvar,
    /// Signalled when a fetch has ended.
    fetched: Condvar,
    /// When the first fetch was asked for (this value's creation).
    started: Instant,
}

struct State {
    names: NameTable,
    /// The user-defined networks the container is on (lowercase).
    networks: Vec<String>,
    /// When the last fetch ended (whether dockerd answered or not).
    fetched_at: Option<Instant>,
    /// When the last fetch dockerd answered started.
    answered_at: Option<Instant>,
    /// Fetches ended so far.
    generation: u64,
    fetching: bool,
    wanted: bool,
    /// No fetch starts before this.
    next_fetch: Instant,
    /// The gap after the next fetch if it finds nothing new.
    gap: Duration,
    /// Names a fetch did not find, and when.
    misses: HashMap<String, Instant>,
    stop: bool,
}

impl DockerNames {
    /// For docker container `container` (its full id, which is the id
    /// moat's create got in the `moby` namespace), read from dockerd.
    pub fn new(container: &str) -> DockerNames {
        DockerNames::with_api(container, Arc::new(docker_get))
    }

    /// For `container`, read through `api`; the first fetch starts now.
    pub fn with_api(container: &str, api: Api) -> DockerNames {
        let shared = Arc::new(Shared {
            container: container.to_string(),
            api,
            state: Mutex::new(State {
                names: HashMap::new(),
                networks: Vec::new(),
                fetched_at: None,
                answered_at: None,
                generation: 0,
                fetching: false,
                wanted: true,
                next_fetch: Instant::now(),
                gap: REFETCH_AFTER,
                misses: HashMap::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            fetched: Condvar::new(),
            started: Instant::now(),
        });
        let fetcher = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!(
                "dnames-{}",
                container.chars().take(8).collect::<String>()
            ))
            .stack_size(256 * 1024)
            .spawn(move || fetcher.fetch_loop());
        if let Err(e) = spawned {
            tracing::warn!(container, error = %e, "moat resolver: docker's network names cannot be fetched (no thread)");
        }
        DockerNames { shared }
    }

    /// The addresses of `name` (any case, no trailing dot needed) if it is
    /// the name or alias of an endpoint on one of the container's
    /// networks. None: not a neighbour's name as far as dockerd's record
    /// was read (or not read yet).
    pub fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let name = crate::dns::names::canonical(name)?;
        let sh = &self.shared;
        let mut st = sh.lock();
        let now = Instant::now();
        let known = st.names.contains_key(&name);
        let fresh = st.fetched_at.is_some_and(|t| now - t <= FRESH);
        if known && fresh {
            return st.names.get(&name).cloned();
        }
        // Before the first fetch the container's networks are not known
        // yet, so `LABEL.NETWORK` cannot be told from other names.
        let first_pending = st.fetched_at.is_none();
        if !known
            && !first_pending
            && (!could_be_docker_name(&name, &st.networks)
                || st.misses.get(&name).is_some_and(|t| now - *t < MISS_TTL))
        {
            return None;
        }
        st.wanted = true;
        sh.wake.notify_all();
        let asked_at = st.generation;
        if st.fetching || st.next_fetch <= now {
            let mut deadline = now + LOOKUP_WAIT;
            if first_pending {
                deadline = deadline.max(sh.started + FIRST_FETCH_WAIT);
            }
            while st.generation == asked_at {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                st = sh
                    .fetched
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        let found = st.names.get(&name).cloned();
        if found.is_none() && st.generation > asked_at {
            if st.misses.len() >= MAX_MISSES {
                st.misses.clear();
            }
            st.misses.insert(name, Instant::now());
        }
        found
    }
}

impl Drop for DockerNames {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fetching thread: one fetch whenever one is wanted and allowed,
    /// until stopped.
    fn fetch_loop(&self) {
        let mut aliases = AliasCache::new();
        loop {
            let mut st = self.lock();
            loop {
                if st.stop {
                    return;
                }
                let now = Instant::now();
                if st.wanted && st.next_fetch <= now {
                    break;
                }
                let wait = if st.wanted {
                    st.next_fetch - now
                } else {
                    FRESH
                };
                st = self
                    .wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            st.wanted = false;
            st.fetching = true;
            let started = Instant::now();
            drop(st);
            let result = network_names(&self.container, &*self.api, &mut aliases);
            let result_ok = result.is_ok();
            let mut st = self.lock();
            st.fetching = false;
            let changed = match result {
                Ok((names, networks)) => {
                    let changed = names != st.names;
                    st.names = names;
                    st.networks = networks;
                    changed
                }
                Err(e) => {
                    tracing::debug!(container = %self.container, error = %e, "docker's network names not read");
                    // While dockerd fails, what it said last is served for
                    // a while only: a neighbour removed meanwhile may have
                    // left its address to another container.
                    if st.answered_at.is_some_and(|t| started - t > STALE_AFTER) {
                        st.names.clear();
                    }
                    false
                }
            };
            if result_ok {
                st.answered_at = Some(started);
            }
            if changed {
                // A name missed before may be a new neighbour's.
                st.misses.clear();
                st.gap = REFETCH_AFTER;
            } else {
                st.gap = (st.gap * 2).min(FRESH);
            }
            st.next_fetch = started + st.gap;
            st.fetched_at = Some(Instant::now());
            st.generation += 1;
            self.fetched.notify_all();
        }
    }
}

/// Could `name` (canonical) be a docker name on the container's
/// `networks`: one label (a container name or alias), or `LABEL.NETWORK`
/// for one of them? Any other name is never fetched for (a name with dots
/// that docker does serve, a container named `my.app`, is answered once a
/// fetch for another reason has listed it).
fn could_be_docker_name(name: &str, networks: &[String]) -> bool {
    match name.split_once('.') {
        None => true,
        Some((_, network)) => networks.iter().any(|n| n == network),
    }
}

/// Neighbours' names (lowercase) and their addresses.
type NameTable = HashMap<String, Vec<IpAddr>>;

/// Aliases read per endpoint id (an endpoint's aliases are fixed for its
/// life: `docker network connect --alias` makes a new endpoint).
type AliasCache = HashMap<String, Vec<String>>;

/// `GET path` on dockerd's socket: the JSON body of a 200 answer.
fn docker_get(path: &str) -> std::io::Result<Value> {
    let mut s = UnixStream::connect(DOCKER_SOCKET)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    // HTTP/1.0: no chunked body, the server closes after the answer.
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut raw = Vec::new();
    s.take(8 << 20).read_to_end(&mut raw)?;
    http_json(&raw)
}

/// The JSON body of an HTTP 200 response.
fn http_json(raw: &[u8]) -> std::io::Result<Value> {
    let bad = |why: &str| std::io::Error::other(why.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    let code = String::from_utf8_lossy(status)
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
        .unwrap_or_default();
    if code != "200" {
        return Err(bad(&format!("dockerd answered {code}")));
    }
    serde_json::from_slice(&raw[end + 4..]).map_err(|e| bad(&e.to_string()))
}

/// Is `s` a docker object id (hex; what the API paths take)?
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The address part of `10.0.0.2/24` or `fd00::2/64` (empty: none).
fn endpoint_address(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.parse().ok()
}

/// The neighbours' names of docker container `container`: for every
/// user-defined network it is on, every endpoint's name and aliases on
/// that network, alone and as `NAME.NETWORK`, lowercase, with the
/// endpoint's addresses; and those networks' names. `get` answers API
/// paths (dockerd, or a test); `aliases` keeps what earlier fetches read
/// of each endpoint (only the endpoints listed now are kept).
fn network_names(
    container: &str,
    get: &(dyn Fn(&str) -> std::io::Result<Value> + Send + Sync),
    aliases: &mut AliasCache,
) -> std::io::Result<(NameTable, Vec<String>)> {
    if !is_id(container) {
        return Err(std::io::Error::other("not a docker container id"));
    }
    let started = Instant::now();
    let mut out = NameTable::new();
    let mut on: Vec<String> = Vec::new();
    let mut kept = AliasCache::new();
    let me = get(&format!("/containers/{container}/json"))?;
    let Some(networks) = me["NetworkSettings"]["Networks"].as_object() else {
        return Ok((out, on));
    };
    for (net_name, mine) in networks {
        // The default networks have no embedded resolver.
        if matches!(net_name.as_str(), "bridge" | "host" | "none") {
            continue;
        }
        let Some(net_id) = mine["NetworkID"].as_str().filter(|s| is_id(s)) else {
            continue;
        };
        on.extend(crate::dns::names::canonical(net_name));
        let net = get(&format!("/networks/{net_id}"))?;
        let Some(endpoints) = net["Containers"].as_object() else {
            continue;
        };
        for (cid, ep) in endpoints.iter().take(MAX_ENDPOINTS) {
            let addrs: Vec<IpAddr> = ["IPv4Address", "IPv6Address"]
                .iter()
                .filter_map(|k| ep[*k].as_str().and_then(endpoint_address))
                .collect();
            if addrs.is_empty() || !is_id(cid) {
                continue;
            }
            let mut names: Vec<String> = ep["Name"]
                .as_str()
                .map(str::to_string)
                .into_iter()
                .collect();
            let endpoint = ep["EndpointID"].as_str().filter(|e| is_id(e));
            let cached = endpoint.and_then(|e| aliases.get(&format!("{net_id}/{e}")));
            let read = match cached {
                Some(known) => Some(known.clone()),
                None if started.elapsed() < FETCH_BUDGET => {
                    get(&format!("/containers/{cid}/json")).ok().map(|other| {
                        other["NetworkSettings"]["Networks"][net_name.as_str()]["Aliases"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|a| a.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                }
                None => None,
            };
            if let Some(read) = read {
                if let Some(e) = endpoint {
                    kept.insert(format!("{net_id}/{e}"), read.clone());
                }
                names.extend(read);
            }
            for n in names {
                for full in [n.clone(), format!("{n}.{net_name}")] {
                    if let Some(c) = crate::dns::names::canonical(&full) {
                        let entry = out.entry(c).or_default();
                        for a in &addrs {
                            if !entry.contains(a) {
                                entry.push(*a);
                            }
                        }
                    }
                }
            }
        }
    }
    *aliases = kept;
    Ok((out, on))
}

/// The most of dockerd's container record read.
const RECORD_MAX: u64 = 4 << 20;

/// Does the engine's embedded resolver serve this docker-made container
/// (is it on a user-defined network)? The resolv.conf naming `127.0.0.11`
/// is written only after create (by docker's network hook), and dockerd's
/// API cannot be asked about the container while it waits for this
/// create (it holds the container's lock), so this reads dockerd's record
/// of the container (`config.v2.json`, written at `docker create` and
/// kept up to date by `docker network connect`), beside the resolv.conf
/// docker bind-mounts (`/var/lib/docker/containers/<id>/`; its directory
/// is found from that mount's source as pinned since precheck): any
/// network there but `bridge`, `host` and `none`. Only for bundles docker
/// made (the caller says). A tenant who fakes it (a file of its own at
/// `/etc/resolv.conf`, beside a record of its own) buys itself a
/// resolver that refuses every name but its real neighbours', nothing
/// more. Read by descriptor beneath the directory holding the pinned
/// source ([`read_record_beside`]).
pub fn uses_embedded_resolver(
    spec: &oci_spec::runtime::Spec,
    pinned: &crate::pinned::PinnedPaths,
) -> bool {
    let Some(source) = spec.mounts().as_ref().and_then(|mounts| {
        mounts
            .iter()
            .rev()
            .find(|m| m.destination() == std::path::Path::new("/etc/resolv.conf"))
            .and_then(|m| m.source().clone())
    }) else {
        return false;
    };
    let Some(pin) = pinned
        .source(&source)
        .or_else(|| pinned.sources.values().find(|p| p.handle() == source))
    else {
        return false;
    };
    read_record_beside(pin, RECORD_MAX)
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|v| on_user_defined_network(&v))
}

/// Does dockerd's record of a container list a user-defined network?
fn on_user_defined_network(record: &Value) -> bool {
    record["NetworkSettings"]["Networks"]
        .as_object()
        .is_some_and(|nets| {
            nets.keys()
                .any(|n| !matches!(n.as_str(), "bridge" | "host" | "none" | "default"))
        })
}

/// The name of dockerd's record beside a container's resolv.conf.
const RECORD: &str = "config.v2.json";

/// dockerd's record beside the pinned file `pin` (T29: by descriptor,
/// never a name looked up twice): the directory holding the pinned file,
/// opened once by its real path without following any link on the way
/// (`RESOLVE_NO_SYMLINKS`: the path is canonical, a link in it is a
/// change) and shown to hold that very file (its entry of the file's name
/// is the pinned fd's device and inode); then the record, opened beneath
/// that directory's fd (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, no last
/// link, no blocking open), a regular file, at most `max` bytes.
fn read_record_beside(pin: &crate::pinned::PinnedPath, max: u64) -> Option<String> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::{fstat, fstatat, FileStat};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let no_links = ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    let dir = pin.real.parent()?;
    let name = pin.real.file_name()?;
    let dirfd = openat2(
        libc::AT_FDCWD,
        dir,
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(no_links),
    )
    .ok()?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let dirfd = unsafe { OwnedFd::from_raw_fd(dirfd) };
    let same = |a: &FileStat, b: &FileStat| a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    let pinned = fstat(pin.fd().as_raw_fd()).ok()?;
    let listed = fstatat(
        Some(dirfd.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ok()?;
    if !same(&pinned, &listed) {
        return None;
    }
    read_regular_beneath(&dirfd, RECORD, max)
}

/// The regular file `name` beneath directory `dir` (no link followed, no
/// blocking open), at most `max` bytes.
fn read_regular_beneath(dir: &std::os::fd::OwnedFd, name: &str, max: u64) -> Option<String> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = openat2(
        dir.as_raw_fd(),
        name,
        OpenHow::new()
            .flags(
                OFlag::O_RDONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_NOCTTY
                    | OFlag::O_CLOEXEC,
            )
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            ),
    )
    .ok()?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut text = String::new();
    file.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "aaaa";
    const DB: &str = "bbbb";

    fn api(path: &str) -> std::io::Result<Value> {
        Ok(match path {
            "/containers/aaaa/json" => json!({"NetworkSettings": {"Networks": {
                "appnet": {"NetworkID": "1111", "Aliases": ["aaaa"]},
                "bridge": {"NetworkID": "2222"}
            }}}),
            "/networks/1111" => json!({"Name": "appnet", "Containers": {
                "aaaa": {"Name": "web", "IPv4Address": "10.232.18.2/24", "IPv6Address": ""},
                "bbbb": {"Name": "db", "IPv4Address": "10.232.18.3/24", "IPv6Address": "fd00:18::3/64"},
                "../x": {"Name": "evil", "IPv4Address": "10.232.18.9/24"}
            }}),
            "/networks/2222" => panic!("the default bridge was read"),
            "/containers/bbbb/json" => json!({"NetworkSettings": {"Networks": {
                "appnet": {"Aliases": ["bbbb", "Postgres"]}
            }}}),
            _ => return Err(std::io::Error::other(format!("no {path}"))),
        })
    }

    #[test]
    fn neighbours_are_read_from_the_engines_record() {
        let (names, networks) = network_names(ME, &api, &mut AliasCache::new()).unwrap();
        assert_eq!(networks, ["appnet"]);
        let v4: IpAddr = "10.232.18.3".parse().unwrap();
        let v6: IpAddr = "fd00:18::3".parse().unwrap();
        for n in ["db", "db.appnet", "postgres", "postgres.appnet", DB] {
            assert_eq!(names.get(n), Some(&vec![v4, v6]), "{n}: {names:?}");
        }
        assert_eq!(
            names.get("web"),
            Some(&vec!["10.232.18.2".parse::<IpAddr>().unwrap()])
        );
        assert!(
            !names.contains_key("evil"),
            "a non-id endpoint key was used"
        );
        assert!(!names.contains_key("secret.attacker.example"));
        assert!(network_names("../etc", &api, &mut AliasCache::new()).is_err());
    }

    /// A fake dockerd: container `aaaa` on network `appnet` with
    /// `neighbours` other containers (`n0`, `n1`, … each with alias
    /// `nN-alias`), each call taking `delay` and counted.
    struct FakeDockerd {
        neighbours: std::sync::atomic::AtomicUsize,
        calls: std::sync::atomic::AtomicUsize,
        delay: Duration,
    }

    impl FakeDockerd {
        fn new(neighbours: usize, delay: Duration) -> Arc<FakeDockerd> {
            Arc::new(FakeDockerd {
                neighbours: neighbours.into(),
                calls: 0.into(),
                delay,
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn api(self: &Arc<Self>) -> Api {
            let me = self.clone();
            Arc::new(move |path: &str| {
                me.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(me.delay);
                let n = me.neighbours.load(std::sync::atomic::Ordering::SeqCst);
                let id = |i: usize| format!("{:064x}", i + 1);
                if path == "/containers/aaaa/json" {
                    return Ok(json!({"NetworkSettings": {"Networks": {
                        "appnet": {"NetworkID": "1111", "Aliases": []}}}}));
                }
                if path == "/networks/1111" {
                    let eps: serde_json::Map<String, Value> = (0..n)
                        .map(|i| {
                            (
                                id(i),
                                json!({"Name": format!("n{i}"), "EndpointID": id(i),
                                "IPv4Address": format!("10.9.{}.{}/16", i / 250, i % 250 + 2)}),
                            )
                        })
                        .collect();
                    return Ok(json!({"Containers": eps}));
                }
                let i = (0..n).find(|i| path == format!("/containers/{}/json", id(*i)));
                match i {
                    Some(i) => Ok(json!({"NetworkSettings": {"Networks": {
                        "appnet": {"Aliases": [format!("n{i}-alias")]}}}})),
                    None => Err(std::io::Error::other(format!("no {path}"))),
                }
            })
        }
    }

    /// Looks `name` up until it resolves (at most `within`).
    fn resolves(names: &DockerNames, name: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if names.lookup(name).is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// M1: a tenant asking made-up names costs dockerd a bounded number of
    /// calls (a fetch at most every second, backing off; a known
    /// neighbour's aliases are never read again; names that cannot be
    /// docker names fetch nothing), and no lookup waits for dockerd beyond
    /// LOOKUP_WAIT; a neighbour that appears later still resolves.
    #[test]
    fn made_up_names_cost_dockerd_few_calls_and_never_stall_a_lookup() {
        let dockerd = FakeDockerd::new(50, Duration::from_millis(2));
        let names = DockerNames::with_api("aaaa", dockerd.api());
        assert!(resolves(&names, "n7", Duration::from_secs(5)));
        assert!(names.lookup("n7-alias.appnet").is_some());
        // The first fetch: the container, the network, 50 neighbours.
        let first = dockerd.calls();
        assert_eq!(first, 52);
        let started = Instant::now();
        let (mut lookups, mut slowest) = (0u32, Duration::ZERO);
        while started.elapsed() < Duration::from_millis(2500) {
            for name in [
                format!("x{lookups}"),
                format!("x{lookups}.appnet"),
                format!("x{lookups}.othernet"),
                format!("a.b.x{lookups}.example"),
            ] {
                let t = Instant::now();
                assert!(names.lookup(&name).is_none(), "{name}");
                slowest = slowest.max(t.elapsed());
            }
            lookups += 1;
        }
        let made_up = dockerd.calls() - first;
        // Fetches start at least 1 s apart and back off (1 s, 2 s): at
        // most two in 2.5 s, two calls each (no alias read again).
        assert!(
            made_up <= 4,
            "{made_up} calls for {lookups} rounds of made-up names"
        );
        assert!(lookups > 100, "only {lookups} rounds");
        assert!(
            slowest <= LOOKUP_WAIT + Duration::from_millis(200),
            "a lookup waited {slowest:?}"
        );
        // A neighbour that joins later is found (one alias read for it).
        dockerd
            .neighbours
            .store(51, std::sync::atomic::Ordering::SeqCst);
        assert!(resolves(
            &names,
            "n50-alias",
            FRESH + Duration::from_secs(3)
        ));
        assert!(names.lookup("n50.appnet").is_some());
    }

    /// M1: a dockerd that hangs holds lookups at most FIRST_FETCH_WAIT
    /// after the container's names were first asked for, then no lookup
    /// beyond LOOKUP_WAIT.
    #[test]
    fn a_hung_dockerd_does_not_hold_lookups() {
        let dockerd = FakeDockerd::new(3, Duration::from_secs(5));
        let started = Instant::now();
        let names = DockerNames::with_api("aaaa", dockerd.api());
        assert!(names.lookup("n1").is_none());
        let first = started.elapsed();
        assert!(
            first >= FIRST_FETCH_WAIT - Duration::from_millis(200)
                && first <= FIRST_FETCH_WAIT + Duration::from_millis(200),
            "the first lookup waited {first:?}"
        );
        for name in ["n2", "n1", "whatever"] {
            let t = Instant::now();
            assert!(names.lookup(name).is_none());
            assert!(
                t.elapsed() <= LOOKUP_WAIT + Duration::from_millis(200),
                "{name} waited {:?}",
                t.elapsed()
            );
        }
    }

    /// A container asking for a neighbour as it starts waits for the
    /// first fetch (a slow dockerd: 100 ms per call), also for
    /// `NAME.NETWORK` before its networks are known.
    #[test]
    fn the_first_lookup_waits_for_the_first_fetch() {
        let dockerd = FakeDockerd::new(3, Duration::from_millis(100));
        let names = DockerNames::with_api("aaaa", dockerd.api());
        assert!(names.lookup("n2.appnet").is_some());
        assert!(names.lookup("n1").is_some());
    }

    #[test]
    fn only_one_label_or_label_dot_network_may_be_a_docker_name() {
        let nets = ["appnet".to_string(), "my.net".to_string()];
        for yes in ["db", "db.appnet", "db.my.net", "x_y"] {
            assert!(could_be_docker_name(yes, &nets), "{yes}");
        }
        for no in ["db.other", "pypi.org", "a.b.appnet", "db.appnet.evil"] {
            assert!(!could_be_docker_name(no, &nets), "{no}");
        }
        assert!(!could_be_docker_name("db.appnet", &[]));
    }

    #[test]
    fn user_defined_networks_are_recognised_in_dockers_record() {
        let record = |nets: Value| json!({"NetworkSettings": {"Networks": nets}});
        let user = record(json!({"appnet": {"NetworkID": ""}}));
        assert!(on_user_defined_network(&user));
        let both = record(json!({"bridge": {}, "appnet": {}}));
        assert!(on_user_defined_network(&both));
        for default in ["bridge", "none", "host"] {
            assert!(
                !on_user_defined_network(&record(json!({default: {}}))),
                "{default}"
            );
        }
        assert!(!on_user_defined_network(&record(json!({}))));
        assert!(!on_user_defined_network(&json!({"NetworkSettings": null})));
        assert!(!on_user_defined_network(&json!([])));
    }

    /// L9 (T29): the record is read by descriptor beneath the directory
    /// that holds the pinned resolv.conf, never through a link, and only
    /// as a regular file.
    #[test]
    fn only_a_regular_record_beside_the_pinned_file_is_read() {
        let dir = std::env::temp_dir().join(format!("moat-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ctr = dir.join("ctr");
        std::fs::create_dir_all(&ctr).unwrap();
        let resolv = ctr.join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.11\n").unwrap();
        let bundle = crate::pinned::open_bundle(&dir).unwrap();
        let pin = || crate::pinned::pin_path(&bundle, &resolv, "test").unwrap();
        let pinned = pin();
        let file = ctr.join(RECORD);
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(read_record_beside(&pinned, 100).as_deref(), Some("{}"));
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_record_beside(&pinned, 4).as_deref(), Some("0123"));
        // Not a regular file, or a link at the record's name.
        std::fs::remove_file(&file).unwrap();
        assert!(
            read_record_beside(&pinned, 100).is_none(),
            "a missing record"
        );
        std::fs::create_dir(&file).unwrap();
        assert!(
            read_record_beside(&pinned, 100).is_none(),
            "a directory was read"
        );
        std::fs::remove_dir(&file).unwrap();
        let elsewhere = dir.join("elsewhere.json");
        std::fs::write(&elsewhere, "{}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert!(
            read_record_beside(&pinned, 100).is_none(),
            "a link was followed"
        );
        std::fs::remove_file(&file).unwrap();
        nix::unistd::mkfifo(&file, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(
            read_record_beside(&pinned, 100).is_none(),
            "a fifo was read"
        );
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "{}").unwrap();
        // The directory swapped after the pin: a link to the moved
        // directory at its name is not followed, and another directory
        // there does not hold the pinned file.
        let moved = dir.join("moved");
        std::fs::rename(&ctr, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, &ctr).unwrap();
        assert!(
            read_record_beside(&pinned, 100).is_none(),
            "a link to the directory was followed"
        );
        std::fs::remove_file(&ctr).unwrap();
        std::fs::create_dir(&ctr).unwrap();
        std::fs::write(ctr.join("resolv.conf"), "nameserver 127.0.0.11\n").unwrap();
        std::fs::write(ctr.join(RECORD), "{}").unwrap();
        assert!(
            read_record_beside(&pinned, 100).is_none(),
            "another directory's record was read"
        );
        // A pin of the new file reads its own record.
        assert_eq!(read_record_beside(&pin(), 100).as_deref(), Some("{}"));
        let pinned = crate::pinned::PinnedPaths::default();
        let unpinned: oci_spec::runtime::Spec = serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "mounts": [{"destination": "/etc/resolv.conf", "type": "bind",
                "source": resolv, "options": ["rbind", "ro"]}]}))
        .unwrap();
        std::fs::write(
            ctr.join(RECORD),
            r#"{"NetworkSettings":{"Networks":{"appnet":{}}}}"#,
        )
        .unwrap();
        assert!(
            !uses_embedded_resolver(&unpinned, &pinned),
            "a source that was not pinned was used"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_200_answer_is_read() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(http_json(ok).unwrap(), json!({"a": 1}));
        assert!(http_json(b"HTTP/1.0 404 Not Found\r\n\r\n{}").is_err());
        assert!(http_json(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(http_json(b"HTTP/1.0 200 OK\r\n\r\nnot json").is_err());
    }
}
