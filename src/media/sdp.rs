//! What the relay reads from an SDP body and how it points the body at the box, with
//! the `sdp` crate (webrtc-rs) for parsing and writing: each media line's address and
//! ports (RTP, RTCP from `a=rtcp` or port + 1), its direction, and the rewritten copy
//! with the box's address and the relay's ports in their place. Codecs, formats and every
//! other attribute pass unchanged (no transcoding).

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::SessionDescription;

/// One `m=` line as the sender described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Where the sender wants this stream's RTP, or None: rejected (port 0), or on hold
    /// the old way (`c=0.0.0.0`).
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
    /// sendrecv (default), sendonly, recvonly or inactive.
    pub direction: Direction,
    /// Port 0: the stream is refused or removed.
    pub rejected: bool,
    /// Its payload types and their encoding names (lower case, from `a=rtpmap`, or the
    /// static ones: 0 pcmu, 8 pcma, 9 g722), for the recorder.
    pub formats: Vec<(u8, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn of(attrs: &[Attribute]) -> Option<Direction> {
        attrs.iter().find_map(|a| match a.key.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    }
}

/// A parsed body and its streams.
pub struct Offer {
    desc: SessionDescription,
    pub streams: Vec<Stream>,
}

impl Offer {
    /// Is any stream held (not both ways) or parked at 0.0.0.0?
    pub fn on_hold(&self) -> bool {
        self.streams
            .iter()
            .filter(|s| !s.rejected)
            .any(|s| s.rtp.is_none() || s.direction != Direction::SendRecv)
    }
}

fn address_of(c: &Option<ConnectionInformation>) -> Option<IpAddr> {
    c.as_ref()?.address.as_ref()?.address.parse().ok()
}

pub fn parse(body: &[u8]) -> Option<Offer> {
    let desc = SessionDescription::unmarshal(&mut Cursor::new(body)).ok()?;
    let session_ip = address_of(&desc.connection_information);
    let session_dir = Direction::of(&desc.attributes);
    let streams = desc
        .media_descriptions
        .iter()
        .map(|m| {
            let port = m.media_name.port.value;
            let ip = address_of(&m.connection_information).or(session_ip);
            let rejected = port <= 0 || port > u16::MAX as isize;
            let ip = ip.filter(|ip| !ip.is_unspecified());
            let rtp = match (ip, rejected) {
                (Some(ip), false) => Some(SocketAddr::new(ip, port as u16)),
                _ => None,
            };
            let rtcp = rtp.map(|rtp| {
                // a=rtcp:PORT [IN IP4 ADDR] (RFC 3605), else the next port.
                m.attributes
                    .iter()
                    .find(|a| a.key == "rtcp")
                    .and_then(|a| a.value.as_deref())
                    .and_then(|v| {
                        let mut w = v.split_whitespace();
                        let p: u16 = w.next()?.parse().ok()?;
                        let ip = w.nth(2).and_then(|a| a.parse().ok()).unwrap_or(rtp.ip());
                        Some(SocketAddr::new(ip, p))
                    })
                    .unwrap_or_else(|| SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)))
            });
            let formats = m
                .media_name
                .formats
                .iter()
                .filter_map(|f| f.parse::<u8>().ok())
                .map(|pt| {
                    let mapped = m.attributes.iter().find_map(|a| {
                        let v = a.value.as_deref().filter(|_| a.key == "rtpmap")?;
                        let (p, enc) = v.split_once(' ')?;
                        (p.trim().parse::<u8>().ok()? == pt)
                            .then(|| enc.split('/').next().unwrap_or("").to_ascii_lowercase())
                    });
                    let name = mapped.unwrap_or_else(|| {
                        match pt {
                            0 => "pcmu",
                            8 => "pcma",
                            9 => "g722",
                            _ => "",
                        }
                        .to_string()
                    });
                    (pt, name)
                })
                .collect();
            Stream {
                rtp,
                rtcp,
                formats,
                direction: Direction::of(&m.attributes)
                    .or(session_dir)
                    .unwrap_or(Direction::SendRecv),
                rejected,
            }
        })
        .collect();
    Some(Offer { desc, streams })
}

fn conn(ip: IpAddr) -> ConnectionInformation {
    ConnectionInformation {
        network_type: "IN".into(),
        address_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
        address: Some(Address {
            address: ip.to_string(),
            ttl: None,
            range: None,
        }),
    }
}

/// The body pointed at the box: `ip`, and for stream `i` the RTP port `ports[i]` (RTCP on
/// the next port, said with `a=rtcp`). A rejected stream keeps port 0; one on hold at
/// `c=0.0.0.0` keeps that address (nothing is to be sent to it). ICE candidates are
/// dropped: they would lead around the relay.
pub fn rewrite(offer: &Offer, ip: IpAddr, ports: &[u16]) -> Vec<u8> {
    let mut d = offer.desc.clone();
    let session_unspecified = d
        .connection_information
        .as_ref()
        .and_then(|c| c.address.as_ref())
        .and_then(|a| a.address.parse::<IpAddr>().ok())
        .is_some_and(|a| a.is_unspecified());
    if d.connection_information.is_some() && !session_unspecified {
        d.connection_information = Some(conn(ip));
    }
    d.origin.address_type = if ip.is_ipv4() { "IP4" } else { "IP6" }.into();
    d.origin.unicast_address = ip.to_string();
    d.attributes.retain(|a| !is_ice(&a.key));
    for (i, m) in d.media_descriptions.iter_mut().enumerate() {
        let s = &offer.streams[i];
        m.attributes.retain(|a| !is_ice(&a.key));
        if s.rejected {
            continue;
        }
        let Some(&port) = ports.get(i) else { continue };
        let held = s.rtp.is_none();
        m.media_name.port.value = port as isize;
        if held {
            // Held at 0.0.0.0: say so again at the media level, whatever the session says.
            if m.connection_information.is_none() && !session_unspecified {
                m.connection_information = Some(conn(IpAddr::from([0, 0, 0, 0])));
            }
            continue;
        }
        if m.connection_information.is_some() || session_unspecified {
            m.connection_information = Some(conn(ip));
        }
        let rtcp = format!("{}", port.wrapping_add(1));
        match m.attributes.iter_mut().find(|a| a.key == "rtcp") {
            Some(a) => a.value = Some(rtcp),
            None => {
                // Said only when it was; port + 1 is the default anyway.
            }
        }
    }
    d.marshal().into_bytes()
}

fn is_ice(key: &str) -> bool {
    matches!(
        key,
        "candidate" | "remote-candidates" | "end-of-candidates" | "ice-lite"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=call\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\nm=video 0 RTP/AVP 96\r\n";

    #[test]
    fn streams_are_read_with_rtcp_on_the_next_port() {
        let o = parse(PHONE.as_bytes()).unwrap();
        assert_eq!(o.streams.len(), 2);
        assert_eq!(o.streams[0].rtp, Some("10.0.0.5:4000".parse().unwrap()));
        assert_eq!(o.streams[0].rtcp, Some("10.0.0.5:4001".parse().unwrap()));
        assert!(o.streams[1].rejected);
        assert!(!o.on_hold());
    }

    #[test]
    fn the_rewrite_names_the_box_and_keeps_the_codecs() {
        let o = parse(PHONE.as_bytes()).unwrap();
        let out =
            String::from_utf8(rewrite(&o, "192.0.2.7".parse().unwrap(), &[30000, 0])).unwrap();
        assert!(out.contains("c=IN IP4 192.0.2.7\r\n"), "{out}");
        assert!(out.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"), "{out}");
        assert!(out.contains("m=video 0 RTP/AVP 96\r\n"), "{out}");
        assert!(out.contains("a=rtpmap:101 telephone-event/8000"), "{out}");
        assert!(out.contains("a=fmtp:101 0-15"), "{out}");
        assert!(!out.contains("10.0.0.5"), "{out}");
        let again = parse(out.as_bytes()).unwrap();
        assert_eq!(
            again.streams[0].rtp,
            Some("192.0.2.7:30000".parse().unwrap())
        );
    }

    #[test]
    fn hold_is_seen_and_an_explicit_rtcp_port_is_rewritten() {
        let held = PHONE
            .replace("a=sendrecv", "a=sendonly\r\na=rtcp:4005 IN IP4 10.0.0.6")
            .replace("m=video 0", "m=video 5000");
        let o = parse(held.as_bytes()).unwrap();
        assert!(o.on_hold());
        assert_eq!(o.streams[0].rtcp, Some("10.0.0.6:4005".parse().unwrap()));
        let out =
            String::from_utf8(rewrite(&o, "192.0.2.7".parse().unwrap(), &[30000, 30002])).unwrap();
        assert!(out.contains("a=rtcp:30001\r\n"), "{out}");
        assert!(out.contains("m=video 30002"), "{out}");
        let old = PHONE.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0");
        let o = parse(old.as_bytes()).unwrap();
        assert!(o.on_hold());
        assert_eq!(o.streams[0].rtp, None);
        let out =
            String::from_utf8(rewrite(&o, "192.0.2.7".parse().unwrap(), &[30000, 0])).unwrap();
        assert!(out.contains("c=IN IP4 0.0.0.0"), "{out}");
    }

    #[test]
    fn garbage_is_not_sdp() {
        assert!(parse(b"hello").is_none());
        assert!(parse(&[0xff, 0xfe, 0]).is_none());
    }
}
