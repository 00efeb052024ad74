//! A minimal HTTP/1.1 GET over plain TCP for probing our own `/healthz` (doctor, upgrade):
//! no client library is linked into the binary for this one request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The address to probe for a listen address: an unspecified IP means "this box".
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    let mut a = listen;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

/// GET `path` from `addr`; returns (status, body). Bodies are small (health JSON).
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: crm-probe\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.take(64 * 1024).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `/healthz` at `addr`: its status code and JSON body.
pub fn healthz(addr: SocketAddr, timeout: Duration) -> Result<(u16, serde_json::Value), String> {
    let (status, body) = get(addr, "/healthz", timeout).map_err(|e| e.to_string())?;
    // Chunked or not, the JSON object is in the body text.
    let json = body
        .find('{')
        .zip(body.rfind('}'))
        .map(|(a, b)| &body[a..=b])
        .unwrap_or("");
    Ok((status, serde_json::from_str(json).unwrap_or_default()))
}

/// The version a healthy crm reports at `addr`, or why it is not healthy.
pub fn healthz_version(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let (status, v) = healthz(addr, timeout)?;
    let json = v.to_string();
    if status != 200 || v["status"] != "ok" {
        return Err(format!("/healthz answered {status}: {}", json));
    }
    Ok(v["version"].as_str().unwrap_or_default().to_string())
}
