//! Where the box is, as each peer should see it: our `host:port` for Via, Contact and
//! Record-Route (the advertised address, the listen address, or the local address of the
//! route to the peer when listening on 0.0.0.0), and our Contact with its transport. A
//! child of `engine`, shared by the proxy, the B2BUA and the registration client.

use std::net::IpAddr;

use super::super::trunk;
use super::{Engine, Transport};

/// Our Contact as a peer on `transport` reaches us: the transport named for TCP, so the
/// peer's requests in the dialog come over TCP too (RFC 3263 picks UDP for `sip:`).
pub(super) fn contact_at(user: Option<&str>, me: &str, transport: Transport) -> String {
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    match transport {
        Transport::Udp => format!("<sip:{user}{me}>"),
        Transport::Tcp => format!("<sip:{user}{me};transport=tcp>"),
        Transport::Ws => format!("<sip:{user}{me};transport=ws>"),
    }
}

/// The local address of the route to `ip` (no packet is sent: connect() on UDP only
/// picks the route).
pub(super) fn route_local(ip: IpAddr) -> Option<IpAddr> {
    let bind = if ip.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect((ip, 9)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Our host for phones when listening on every address: the local address of the
/// default route, else loopback.
pub(super) fn default_route_host() -> String {
    route_local(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)))
        .map(host_text)
        .unwrap_or_else(|| "127.0.0.1".into())
}

pub(super) fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl Engine {
    /// Our `host:port` as a peer at `ip` should reach us: the configured advertised
    /// address, else the listen address, else (listening on 0.0.0.0) the local address
    /// of the route to the peer.
    pub(super) fn me_for(&mut self, ip: IpAddr) -> String {
        let port = self.port();
        if let Some(a) = &self.cfg.advertise {
            return format!("{}:{port}", trunk::uri_host(a));
        }
        let l = self.cfg.listen.ip();
        if !l.is_unspecified() {
            return format!("{}:{port}", host_text(l));
        }
        let adv = self.advertised.clone();
        let h = self
            .outside
            .hosts
            .entry(ip)
            .or_insert_with(|| route_local(ip).map(host_text).unwrap_or(adv));
        format!("{h}:{port}")
    }
}
