//! The box's end of a browser's media (the softphone): ICE-lite and DTLS-SRTP with
//! `str0m`, a sans-IO WebRTC stack, so it runs inside the relay's own socket tasks. The
//! browser's side of a stream is one of these; the other side stays plain RTP towards a
//! desk phone or the trunk. Both speak G.711 (and telephone-event), so payloads pass
//! unchanged: the leg only decrypts, encrypts and renumbers nothing.
//!
//! Signalling passes through in two steps (see `relay::Relay::rewrite`): a WebRTC body
//! from the browser becomes a plain body for the other party ([`Leg::body_from_browser`]); a
//! plain body for the browser becomes a WebRTC one ([`Leg::body_to_browser`]). An offer from
//! the browser is kept until the other party answers, then `str0m` answers it with just
//! the codecs that party chose; an offer from the other party becomes `str0m`'s own offer
//! to the browser.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// A payload the softphone and the phones share: (payload type, codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    Pcmu(u8),
    Pcma(u8),
    /// telephone-event at 8000 Hz.
    Tele(u8),
}

impl Fmt {
    fn pt(self) -> u8 {
        match self {
            Fmt::Pcmu(p) | Fmt::Pcma(p) | Fmt::Tele(p) => p,
        }
    }
}

/// The first audio line's G.711 and telephone-event formats, in its order, and its
/// direction.
fn formats(sdp: &str) -> (Vec<Fmt>, &'static str) {
    let mut pts: Vec<u8> = Vec::new();
    let mut maps: Vec<(u8, String)> = Vec::new();
    let mut dir = "sendrecv";
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break; // only the first audio line
            }
            in_audio = m.starts_with("audio ");
            if in_audio {
                pts = m
                    .split_whitespace()
                    .skip(3)
                    .filter_map(|p| p.parse().ok())
                    .collect();
            }
            continue;
        }
        if !in_audio {
            if let Some(d) = direction_of(line) {
                dir = d;
            }
            continue;
        }
        if let Some(map) = line.strip_prefix("a=rtpmap:") {
            if let Some((pt, enc)) = map.split_once(' ') {
                if let Ok(pt) = pt.parse() {
                    maps.push((pt, enc.to_ascii_lowercase()));
                }
            }
        } else if let Some(d) = direction_of(line) {
            dir = d;
        }
    }
    let f = pts
        .iter()
        .filter_map(|pt| {
            let enc = maps.iter().find(|(p, _)| p == pt).map(|(_, e)| e.as_str());
            match (pt, enc) {
                (0, None) => Some(Fmt::Pcmu(0)),
                (8, None) => Some(Fmt::Pcma(8)),
                (p, Some(e)) if e.starts_with("pcmu/8000") => Some(Fmt::Pcmu(*p)),
                (p, Some(e)) if e.starts_with("pcma/8000") => Some(Fmt::Pcma(*p)),
                (p, Some(e)) if e.starts_with("telephone-event/8000") => Some(Fmt::Tele(*p)),
                _ => None,
            }
        })
        .collect();
    (f, dir)
}

/// The telephone-event (8 kHz) payload type of a body's first audio line: the number
/// its writer wants to receive RFC 4733 events with.
pub(super) fn tele_pt(sdp: &[u8]) -> Option<u8> {
    let (f, _) = formats(std::str::from_utf8(sdp).ok()?);
    f.into_iter().find_map(|f| match f {
        Fmt::Tele(p) => Some(p),
        _ => None,
    })
}

/// A packet's payload-type translation, packed for an atomic: 0 none, else
/// `1 << 16 | from << 8 | to`. A party sends telephone-event with the number the box
/// gave it (`sent`); the other party wants the number it wrote itself (`wanted`).
pub(super) fn tele_map(sent: Option<u8>, wanted: Option<u8>) -> u32 {
    match (sent, wanted) {
        (Some(s), Some(w)) if s != w => 1 << 16 | (s as u32) << 8 | w as u32,
        _ => 0,
    }
}

/// Renumbers an RTP packet's payload type by `map` (see [`tele_map`]); the marker bit
/// stays.
pub(super) fn retype(pkt: &mut [u8], map: u32) {
    if map == 0 || pkt.len() < 12 {
        return;
    }
    let (from, to) = ((map >> 8) as u8 & 0x7f, map as u8 & 0x7f);
    if pkt[1] & 0x7f == from {
        pkt[1] = (pkt[1] & 0x80) | to;
    }
}

fn direction_of(line: &str) -> Option<&'static str> {
    match line {
        "a=sendrecv" => Some("sendrecv"),
        "a=sendonly" => Some("sendonly"),
        "a=recvonly" => Some("recvonly"),
        "a=inactive" => Some("inactive"),
        _ => None,
    }
}

fn mid_of(sdp: &str) -> Option<Mid> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .map(|m| Mid::from(m.trim()))
}

/// What the leg's socket must send, and the plain RTP packets it decrypted.
#[derive(Default)]
pub(super) struct Drained {
    pub transmit: Vec<(SocketAddr, Vec<u8>)>,
    pub rtp: Vec<Vec<u8>>,
}

/// One browser's side of one stream.
pub(super) struct Leg {
    rtc: Option<Rtc>,
    /// The box's candidate (its address as the browser sees it, and the socket's port).
    local: Option<SocketAddr>,
    mid: Option<Mid>,
    /// The browser's offer, until the other party answers it.
    offer: Option<String>,
    /// Our offer to the browser, until it answers.
    pending: Option<SdpPendingOffer>,
    /// The last body the browser got from us (sent again when nothing changed).
    last: Option<String>,
    /// o= version of the plain bodies we write.
    version: u64,
    /// The extended sequence number of the last packet to the browser.
    seq: Option<u64>,
    /// The last body through each way and what it became: a retransmission (the proxy
    /// resends over UDP, a 2xx comes again) gets the same answer, not a new negotiation.
    memo_from: Option<(Vec<u8>, Option<Vec<u8>>)>,
    memo_to: Option<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Leg {
    pub(super) fn new() -> Leg {
        Leg {
            rtc: None,
            local: None,
            mid: None,
            offer: None,
            pending: None,
            last: None,
            version: 0,
            seq: None,
            memo_from: None,
            memo_to: None,
        }
    }

    /// A WebRTC body from the browser, as the plain body the other party gets (the box
    /// at `host:port`). None: it shares no G.711 with the phones, or it is no SDP.
    pub(super) fn body_from_browser(
        &mut self,
        body: &[u8],
        host: IpAddr,
        port: u16,
    ) -> Option<Vec<u8>> {
        if let Some((b, out)) = &self.memo_from {
            if b == body {
                return out.clone();
            }
        }
        let out = self.body_from_browser_new(body, host, port);
        self.memo_from = Some((body.to_vec(), out.clone()));
        out
    }

    fn body_from_browser_new(&mut self, body: &[u8], host: IpAddr, port: u16) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        match self.pending.take() {
            Some(pending) => {
                // The browser answers our offer.
                let answer = SdpAnswer::from_sdp_string(text).ok()?;
                let rtc = self.rtc.as_mut()?;
                if let Err(e) = rtc.sdp_api().accept_answer(pending, answer) {
                    tracing::info!(error = %e, "webrtc: the browser's answer was refused");
                    return None;
                }
            }
            None => self.offer = Some(text.to_string()),
        }
        let (fmts, dir) = formats(text);
        if !fmts.iter().any(|f| !matches!(f, Fmt::Tele(_))) {
            return None;
        }
        self.version += 1;
        Some(plain_body(&fmts, dir, host, port, self.version).into_bytes())
    }

    /// A plain body from the other party, as the WebRTC body for the browser: `str0m`'s
    /// answer to the browser's waiting offer, else its own offer. `local`: the box's
    /// candidate. None: no G.711 in common.
    pub(super) fn body_to_browser(&mut self, body: &[u8], local: SocketAddr) -> Option<Vec<u8>> {
        if let Some((b, out)) = &self.memo_to {
            if b == body {
                return out.clone();
            }
        }
        let out = self.body_to_browser_new(body, local);
        self.memo_to = Some((body.to_vec(), out.clone()));
        out
    }

    fn body_to_browser_new(&mut self, body: &[u8], local: SocketAddr) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        let (fmts, dir) = formats(text);
        if !fmts.iter().any(|f| !matches!(f, Fmt::Tele(_))) {
            return None;
        }
        let now = Instant::now();
        if self.rtc.is_none() {
            let mut cfg = RtcConfig::new()
                .set_ice_lite(true)
                .set_rtp_mode(true)
                .clear_codecs();
            for f in &fmts {
                // G.711 as str0m knows it (static payload types, as browsers offer them).
                cfg = match f {
                    Fmt::Pcmu(_) => cfg.enable_pcmu(true, false),
                    Fmt::Pcma(_) => cfg.enable_pcma(true, false),
                    Fmt::Tele(pt) => {
                        cfg.codec_config().add_config(
                            Pt::new_with_value(*pt),
                            None,
                            Codec::Tele,
                            Frequency::EIGHT_KHZ,
                            None,
                            FormatParams::parse_line("0-16"),
                        );
                        cfg
                    }
                };
            }
            let mut rtc = cfg.build(now);
            let cand = Candidate::host(local, "udp").ok()?;
            rtc.add_local_candidate(cand);
            self.rtc = Some(rtc);
            self.local = Some(local);
        }
        let rtc = self.rtc.as_mut()?;
        let sdp = match self.offer.take() {
            Some(offer) => {
                let offer = SdpOffer::from_sdp_string(&offer).ok()?;
                match rtc.sdp_api().accept_offer(offer) {
                    Ok(answer) => {
                        let s = answer.to_sdp_string();
                        self.mid = self.mid.or_else(|| mid_of(&s));
                        s
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "webrtc: the browser's offer was refused");
                        return None;
                    }
                }
            }
            None => {
                let dir = match dir {
                    "sendonly" => Direction::SendOnly,
                    "recvonly" => Direction::RecvOnly,
                    "inactive" => Direction::Inactive,
                    _ => Direction::SendRecv,
                };
                let mut api = rtc.sdp_api();
                match self.mid {
                    Some(mid) => api.set_direction(mid, dir),
                    None => self.mid = Some(api.add_media(MediaKind::Audio, dir, None, None, None)),
                }
                match api.apply() {
                    Some((offer, pending)) => {
                        self.pending = Some(pending);
                        offer.to_sdp_string()
                    }
                    None => self.last.clone()?,
                }
            }
        };
        self.last = Some(sdp.clone());
        Some(sdp.into_bytes())
    }

    /// A datagram from the browser (STUN, DTLS or SRTP) at the leg's socket.
    pub(super) fn receive(&mut self, from: SocketAddr, data: &[u8], out: &mut Drained) {
        let (Some(rtc), Some(local)) = (self.rtc.as_mut(), self.local) else {
            return;
        };
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: local,
                contents,
            },
        );
        if rtc.handle_input(input).is_ok() {
            self.drain(out);
        }
    }

    /// A plain RTP packet from the other party, to the browser.
    pub(super) fn send_rtp(&mut self, pkt: &[u8], out: &mut Drained) {
        let (Some(rtc), Some(mid)) = (self.rtc.as_mut(), self.mid) else {
            return;
        };
        let Some(p) = parse_rtp(pkt) else { return };
        let ext = match self.seq {
            None => p.seq as u64,
            Some(last) => {
                let d = p.seq.wrapping_sub(last as u16) as i16 as i64;
                (last as i64 + d).max(0) as u64
            }
        };
        self.seq = Some(self.seq.map_or(ext, |l| l.max(ext)));
        let now = Instant::now();
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        let w = RtpWrite::new(
            Pt::new_with_value(p.pt),
            SeqNo::from(ext),
            p.ts,
            now,
            pkt[p.offset..p.end].to_vec(),
        )
        .marker(p.marker);
        tx.write_rtp(w);
        // Written packets leave on the next poll: time must move for the pacer.
        let _ = rtc.handle_input(Input::Timeout(now));
        self.drain(out);
    }

    /// Time passes (retransmissions, consent, RTCP).
    pub(super) fn tick(&mut self, out: &mut Drained) {
        let Some(rtc) = self.rtc.as_mut() else { return };
        if rtc.handle_input(Input::Timeout(Instant::now())).is_ok() {
            self.drain(out);
        }
    }

    fn drain(&mut self, out: &mut Drained) {
        let Some(rtc) = self.rtc.as_mut() else { return };
        loop {
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => out.transmit.push((t.destination, t.contents.to_vec())),
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    let h = &p.header;
                    let mut b = Vec::with_capacity(12 + p.payload.len());
                    b.push(0x80);
                    b.push((h.marker as u8) << 7 | (*h.payload_type & 0x7f));
                    b.extend_from_slice(&h.sequence_number.to_be_bytes());
                    b.extend_from_slice(&h.timestamp.to_be_bytes());
                    b.extend_from_slice(&(*h.ssrc).to_be_bytes());
                    b.extend_from_slice(&p.payload);
                    out.rtp.push(b);
                }
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
    }
}

struct RtpHead {
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    /// Where the payload starts and ends (padding off).
    offset: usize,
    end: usize,
}

fn parse_rtp(b: &[u8]) -> Option<RtpHead> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = (b[0] & 0x0f) as usize;
    let mut offset = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let len = u16::from_be_bytes([*b.get(offset + 2)?, *b.get(offset + 3)?]) as usize;
        offset += 4 + 4 * len;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(*b.last()? as usize)?;
    }
    if offset > end {
        return None;
    }
    Some(RtpHead {
        pt: b[1] & 0x7f,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        offset,
        end,
    })
}

/// The plain body the phone side gets for a browser: the box's address and port, the
/// shared formats, the browser's direction.
fn plain_body(fmts: &[Fmt], dir: &str, host: IpAddr, port: u16, version: u64) -> String {
    let ip = if host.is_ipv6() { "IP6" } else { "IP4" };
    let pts: Vec<String> = fmts.iter().map(|f| f.pt().to_string()).collect();
    let mut s = format!(
        "v=0\r\no=crm 1 {version} IN {ip} {host}\r\ns=crm\r\nc=IN {ip} {host}\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\n",
        pts.join(" ")
    );
    for f in fmts {
        match f {
            Fmt::Pcmu(p) => s.push_str(&format!("a=rtpmap:{p} PCMU/8000\r\n")),
            Fmt::Pcma(p) => s.push_str(&format!("a=rtpmap:{p} PCMA/8000\r\n")),
            Fmt::Tele(p) => s.push_str(&format!(
                "a=rtpmap:{p} telephone-event/8000\r\na=fmtp:{p} 0-16\r\n"
            )),
        }
    }
    s.push_str("a=ptime:20\r\n");
    s.push_str(&format!(
        "a=rtcp:{} IN {ip} {host}\r\na={dir}\r\n",
        port + 1
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn a_browser_body_keeps_g711_and_8k_telephone_event_and_its_direction() {
        let (f, dir) = formats(CHROME);
        assert_eq!(f, vec![Fmt::Pcmu(0), Fmt::Pcma(8), Fmt::Tele(126)]);
        assert_eq!(dir, "sendonly");
        let body = plain_body(&f, dir, IpAddr::from([10, 0, 0, 1]), 10_002, 1);
        assert!(body.contains("m=audio 10002 RTP/AVP 0 8 126\r\n"), "{body}");
        assert!(body.contains("a=sendonly"));
        assert!(crate::media::sdp::parse(body.as_bytes()).is_some());
    }

    #[test]
    fn telephone_event_is_renumbered_only_where_the_legs_differ() {
        let phone = b"v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let desk96 = b"v=0\r\nc=IN IP4 10.0.0.6\r\nm=audio 4000 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\n";
        assert_eq!(
            tele_pt(CHROME.as_bytes()),
            Some(126),
            "the 8 kHz one, not 110"
        );
        assert_eq!(tele_pt(phone), Some(101));
        assert_eq!(tele_pt(desk96), Some(96));
        assert_eq!(tele_pt(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), None);
        // The browser sends 126 (what the box answered it); the phone wants 101.
        let m = tele_map(Some(126), Some(101));
        let mut ev = vec![
            0x80,
            0x80 | 126,
            0,
            1,
            0,
            0,
            0,
            160,
            1,
            2,
            3,
            4,
            5,
            0x80,
            0,
            160,
        ];
        retype(&mut ev, m);
        assert_eq!(ev[1], 0x80 | 101, "marker kept, number changed");
        assert_eq!(
            &ev[12..],
            &[5, 0x80, 0, 160],
            "the event itself is untouched"
        );
        // Audio, and anything else, passes as it is.
        let mut audio = vec![0x80, 0, 0, 2, 0, 0, 1, 64, 1, 2, 3, 4, 0xff];
        retype(&mut audio, m);
        assert_eq!(audio[1], 0);
        // The same number, or one side without events: nothing to do.
        assert_eq!(tele_map(Some(101), Some(101)), 0);
        assert_eq!(tele_map(None, Some(101)), 0);
        assert_eq!(tele_map(Some(96), None), 0);
        let mut short = vec![0x80, 126];
        retype(&mut short, m);
        assert_eq!(short, vec![0x80, 126]);
    }

    #[test]
    fn an_offer_with_no_g711_is_not_turned_into_webrtc() {
        let opus_only = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let mut leg = Leg::new();
        assert!(leg
            .body_to_browser(opus_only.as_bytes(), "127.0.0.1:10000".parse().unwrap())
            .is_none());
    }

    #[test]
    fn rtp_headers_with_csrcs_extensions_and_padding_parse() {
        let mut p = vec![0x80, 0x80 | 8, 0, 7, 0, 0, 1, 0, 1, 2, 3, 4];
        p.extend_from_slice(&[0xd5; 160]);
        let h = parse_rtp(&p).unwrap();
        assert_eq!(
            (h.pt, h.marker, h.seq, h.ts, h.offset),
            (8, true, 7, 256, 12)
        );
        assert!(parse_rtp(&[0x80, 0]).is_none());
        // Extension header claiming more than the packet holds.
        let bad = [0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9];
        assert!(parse_rtp(&bad).is_none());
    }
}
