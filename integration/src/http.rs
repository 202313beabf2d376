//! HTTP from the host to a test's container or server: a free local port to
//! publish on, and a plain `GET /` with short timeouts.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// A 127.0.0.1 port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// [`http_get`] to 127.0.0.1:`port`: (status line, body).
pub fn http_get_localhost(port: u16) -> std::io::Result<(String, String)> {
    http_get(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Plain HTTP/1.0 `GET /` to `addr` (short timeouts): (status line, body).
pub fn http_get(addr: std::net::SocketAddr) -> std::io::Result<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    let request = format!(
        "GET / HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.ip()
    );
    s.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header end in {text:?}")))?;
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}
