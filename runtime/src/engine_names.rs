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
    fn only_a_200_answer_is_read() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(http_json(ok).unwrap(), json!({"a": 1}));
        assert!(http_json(b"HTTP/1.0 404 Not Found\r\n\r\n{}").is_err());
        assert!(http_json(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(http_json(b"HTTP/1.0 200 OK\r\n\r\nnot json").is_err());
    }
}
