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
use std::time::{Duration, Instant};

use serde_json::Value;

/// dockerd's API socket.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// How long a fetched list of names is used.
const FRESH: Duration = Duration::from_secs(5);
/// A name not in the list refetches it at most this often (a flood of
/// made-up names must not flood dockerd).
const REFETCH_AFTER: Duration = Duration::from_secs(1);
/// The most endpoints read per network (each costs one API call).
const MAX_ENDPOINTS: usize = 256;
/// A refetch stops reading aliases after this long (the serving thread
/// waits for it; names already read are kept).
const FETCH_BUDGET: Duration = Duration::from_secs(2);

/// The names of a docker container's neighbours, fetched on demand.
#[derive(Debug)]
pub struct DockerNames {
    container: String,
    names: HashMap<String, Vec<IpAddr>>,
    fetched: Option<Instant>,
}

impl DockerNames {
    /// For docker container `container` (its full id, which is the id
    /// moat's create got in the `moby` namespace).
    pub fn new(container: &str) -> DockerNames {
        DockerNames {
            container: container.to_string(),
            names: HashMap::new(),
            fetched: None,
        }
    }

    /// The addresses of `name` (any case, no trailing dot needed) if it is
    /// the name or alias of an endpoint on one of the container's
    /// networks. None: not a neighbour's name (or dockerd did not answer).
    pub fn lookup(&mut self, name: &str) -> Option<Vec<IpAddr>> {
        let name = crate::dns::names::canonical(name)?;
        let age = self.fetched.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a > FRESH);
        let may_refetch = age.is_none_or(|a| a > REFETCH_AFTER);
        if stale || (may_refetch && !self.names.contains_key(&name)) {
            match network_names(&self.container, &|path| docker_get(path)) {
                Ok(names) => self.names = names,
                Err(e) => {
                    tracing::debug!(container = %self.container, error = %e, "docker's network names not read");
                }
            }
            self.fetched = Some(Instant::now());
        }
        self.names.get(&name).cloned()
    }
}

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
/// endpoint's addresses. `get` answers API paths (dockerd, or a test).
fn network_names(
    container: &str,
    get: &dyn Fn(&str) -> std::io::Result<Value>,
) -> std::io::Result<HashMap<String, Vec<IpAddr>>> {
    if !is_id(container) {
        return Err(std::io::Error::other("not a docker container id"));
    }
    let started = Instant::now();
    let mut out: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let me = get(&format!("/containers/{container}/json"))?;
    let Some(networks) = me["NetworkSettings"]["Networks"].as_object() else {
        return Ok(out);
    };
    for (net_name, mine) in networks {
        // The default networks have no embedded resolver.
        if matches!(net_name.as_str(), "bridge" | "host" | "none") {
            continue;
        }
        let Some(net_id) = mine["NetworkID"].as_str().filter(|s| is_id(s)) else {
            continue;
        };
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
            let aliases = if started.elapsed() < FETCH_BUDGET {
                get(&format!("/containers/{cid}/json"))
            } else {
                Err(std::io::Error::other("out of time"))
            };
            if let Ok(other) = aliases {
                if let Some(aliases) =
                    other["NetworkSettings"]["Networks"][net_name.as_str()]["Aliases"].as_array()
                {
                    names.extend(
                        aliases
                            .iter()
                            .filter_map(|a| a.as_str().map(str::to_string)),
                    );
                }
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
    Ok(out)
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
/// more. Only a regular file is read, at most [`RECORD_MAX`] bytes,
/// without following a last link or blocking.
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
    let record = pin.real.with_file_name("config.v2.json");
    read_regular(&record, RECORD_MAX)
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

/// The regular file at `path` (no last link followed, no blocking), at
/// most `max` bytes.
fn read_regular(path: &std::path::Path, max: u64) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
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
        let names = network_names(ME, &api).unwrap();
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
        assert!(network_names("../etc", &api).is_err());
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

    #[test]
    fn only_a_regular_record_is_read() {
        let dir = std::env::temp_dir().join(format!("moat-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.v2.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(read_regular(&file, 100).as_deref(), Some("{}"));
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_regular(&file, 4).as_deref(), Some("0123"));
        assert!(read_regular(&dir, 100).is_none(), "a directory was read");
        assert!(read_regular(&dir.join("missing"), 100).is_none());
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_regular(&link, 100).is_none(), "a link was followed");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_regular(&fifo, 100).is_none(), "a fifo was read");
        let pinned = crate::pinned::PinnedPaths::default();
        let unpinned: oci_spec::runtime::Spec = serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "mounts": [{"destination": "/etc/resolv.conf", "type": "bind",
                "source": dir.join("resolv.conf"), "options": ["rbind", "ro"]}]}))
        .unwrap();
        std::fs::write(&file, r#"{"NetworkSettings":{"Networks":{"appnet":{}}}}"#).unwrap();
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
