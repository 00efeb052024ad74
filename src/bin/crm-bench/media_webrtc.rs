//! `crm-bench media --webrtc N`: the per-packet cost of the browser's leg. Each call is
//! a plain RTP "phone" on one side and a "browser" on the other: a second `str0m`
//! instance per call in this process (full ICE, DTLS client, SRTP), answering the box's
//! WebRTC offer exactly as `sip` would hand it over (`MediaPlane::rewrite` with
//! `browser`). Both sides send a 160-byte PCMU frame every 20 ms. Measured: the relay's
//! threads' CPU per call (as `media`), with the plain relay at the same number of calls
//! in the same run as the reference, and packets lost each way. The browsers' own
//! str0m work runs on this process's main thread, not on the relay's threads, so it is
//! not counted.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crm::sip::MediaPlane;
use str0m::change::SdpOffer;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use super::{port_of, relay_threads_cpu, run_ours, sdp_for, PAYLOAD};

/// A browser: its str0m, its socket, its audio line.
struct Browser {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    mid: Option<Mid>,
    connected: bool,
    seq: u64,
    received: u64,
}

impl Browser {
    fn drain(&mut self, measuring: bool) -> anyhow::Result<()> {
        loop {
            match self.rtc.poll_output()? {
                Output::Transmit(t) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::IceConnectionStateChange(s)) => {
                    if s == IceConnectionState::Disconnected {
                        anyhow::bail!("a browser's ICE disconnected");
                    }
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaAdded(m)) => self.mid = Some(m.mid),
                Output::Event(Event::RtpPacket(_)) => {
                    if measuring {
                        self.received += 1;
                    }
                }
                Output::Event(_) => {}
                Output::Timeout(_) => return Ok(()),
            }
        }
    }

    /// Everything waiting on its socket, then time.
    fn pump(&mut self, measuring: bool) -> anyhow::Result<()> {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            self.rtc.handle_input(Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: self.local,
                    contents,
                },
            ))?;
            self.drain(measuring)?;
        }
        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
        self.drain(measuring)
    }

    fn send(&mut self, ts: u32, measuring: bool) -> anyhow::Result<bool> {
        let (Some(mid), true) = (self.mid, self.connected) else {
            return Ok(false);
        };
        let now = Instant::now();
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return Ok(false);
        };
        self.seq += 1;
        let w = RtpWrite::new(
            Pt::new_with_value(0),
            SeqNo::from(self.seq),
            ts,
            now,
            vec![0x55; PAYLOAD],
        );
        tx.write_rtp(w);
        self.rtc.handle_input(Input::Timeout(now))?;
        self.drain(measuring)?;
        Ok(true)
    }
}

pub(super) fn run(levels: &[usize], secs: u64, threads: usize) -> anyhow::Result<()> {
    for &n in levels {
        let plain = run_ours(n, secs, threads, None)?;
        plain.print("crm", n, None);
        let (cpu, to_phone, to_browser) = run_webrtc(n, secs, threads)?;
        let lost = |s: u64, g: u64| {
            if s == 0 {
                100.0
            } else {
                s.saturating_sub(g) as f64 * 100.0 / s as f64
            }
        };
        println!(
            "media.webrtc.calls_{n}: sent_to_phone={} sent_to_browser={} loss_to_phone={:.4}% loss_to_browser={:.4}% cpu_core={cpu:.3} cpu_per_call_pct={:.4} plain_cpu_per_call_pct={:.4} ratio={:.2}",
            to_phone.0,
            to_browser.0,
            lost(to_phone.0, to_phone.1),
            lost(to_browser.0, to_browser.1),
            cpu * 100.0 / n as f64,
            plain.cpu_per_sec * 100.0 / n as f64,
            if plain.cpu_per_sec > 0.0 { cpu / plain.cpu_per_sec } else { 0.0 },
        );
    }
    Ok(())
}

/// N browser calls for `secs` after they connected: (relay CPU cores, (sent, received)
/// toward the phones, (sent, received) toward the browsers).
#[allow(clippy::type_complexity)]
fn run_webrtc(
    n: usize,
    secs: u64,
    threads: usize,
) -> anyhow::Result<(f64, (u64, u64), (u64, u64))> {
    let media = crm::media::Media::start(crm::media::MediaConfig {
        ports: (20_000, 29_999),
        bind: "127.0.0.1".parse()?,
        timeout: Duration::from_secs(600),
        threads,
        ..Default::default()
    })?;
    let host = "127.0.0.1".parse()?;
    let (sig_phone, sig_browser): (SocketAddr, SocketAddr) =
        ("10.0.0.1:5060".parse()?, "10.0.0.2:5060".parse()?);
    // The phones: one socket each (the relay latches each stream on its source).
    let mut phones = Vec::with_capacity(n);
    let mut browsers = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("webrtc-{i}");
        let phone = UdpSocket::bind("127.0.0.1:0")?;
        phone.set_nonblocking(true)?;
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        media.open(&id);
        // The phone calls the browser: the box's offer to the browser is str0m's.
        let offer = media
            .rewrite(
                &id,
                sig_browser,
                true,
                true,
                host,
                sdp_for(phone.local_addr()?).as_bytes(),
            )
            .ok_or_else(|| anyhow::anyhow!("no WebRTC offer (ports?)"))?;
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let offer = SdpOffer::from_sdp_string(std::str::from_utf8(&offer)?)?;
        let answer = rtc.sdp_api().accept_offer(offer)?;
        let plain = media
            .rewrite(
                &id,
                sig_phone,
                false,
                false,
                host,
                answer.to_sdp_string().as_bytes(),
            )
            .ok_or_else(|| anyhow::anyhow!("the browser's answer was refused"))?;
        let to = SocketAddr::new(host, port_of(&plain)?);
        phones.push((phone, to));
        let mut b = Browser {
            rtc,
            sock,
            local,
            mid: None,
            connected: false,
            seq: 0,
            received: 0,
        };
        b.drain(false)?;
        browsers.push(b);
    }
    // Connect (ICE, DTLS) before measuring: up to 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while browsers.iter().any(|b| !b.connected || b.mid.is_none()) {
        anyhow::ensure!(Instant::now() < deadline, "browsers did not connect");
        for b in &mut browsers {
            b.pump(false)?;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let warmup = Duration::from_secs(2);
    let total = warmup + Duration::from_secs(secs);
    let start = Instant::now();
    let mut pkt = vec![0u8; 12 + PAYLOAD];
    pkt[0] = 0x80;
    let mut buf = [0u8; 2048];
    let (mut to_phone_sent, mut to_browser_sent, mut phone_got) = (0u64, 0u64, 0u64);
    let (mut cpu0, mut t0) = (None, None);
    let mut period = 0u32;
    loop {
        let at = start + Duration::from_millis(20) * period;
        let elapsed = at.duration_since(start);
        if elapsed >= total {
            break;
        }
        let measuring = elapsed >= warmup;
        if measuring && cpu0.is_none() {
            cpu0 = Some(relay_threads_cpu());
            t0 = Some(Instant::now());
        }
        // Between periods: what arrived (the browsers' SRTP, the phones' RTP).
        loop {
            for b in &mut browsers {
                b.pump(measuring)?;
            }
            for (p, _) in &phones {
                while let Ok(n) = p.recv(&mut buf) {
                    if n >= 12 && measuring {
                        phone_got += 1;
                    }
                }
            }
            let now = Instant::now();
            if now >= at {
                break;
            }
            std::thread::sleep((at - now).min(Duration::from_millis(1)));
        }
        let ts = period * 160;
        for (i, (p, to)) in phones.iter().enumerate() {
            pkt[2..4].copy_from_slice(&(period as u16).to_be_bytes());
            pkt[4..8].copy_from_slice(&ts.to_be_bytes());
            pkt[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            if p.send_to(&pkt, *to).is_ok() && measuring {
                to_browser_sent += 1;
            }
        }
        for b in &mut browsers {
            if b.send(ts, measuring)? && measuring {
                to_phone_sent += 1;
            }
        }
        period += 1;
    }
    let wall = t0.map(|t| t.elapsed().as_secs_f64()).unwrap_or(1.0);
    let cpu = (relay_threads_cpu() - cpu0.unwrap_or(0.0)) / wall;
    // The last packets land.
    let settle = Instant::now() + Duration::from_millis(300);
    while Instant::now() < settle {
        for b in &mut browsers {
            b.pump(true)?;
        }
        for (p, _) in &phones {
            while let Ok(n) = p.recv(&mut buf) {
                if n >= 12 {
                    phone_got += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let browser_got = browsers.iter().map(|b| b.received).sum();
    for i in 0..n {
        media.end(&format!("webrtc-{i}"));
    }
    media.stop();
    Ok((
        cpu,
        (to_phone_sent, phone_got),
        (to_browser_sent, browser_got),
    ))
}
