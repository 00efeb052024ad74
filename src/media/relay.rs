//! The RTP/RTCP relay: per call, per media line, one socket pair (RTP, RTCP) facing each
//! party. A party sends to the pair facing it; the relay passes each datagram, unchanged,
//! out of the other pair to the other party. Where a party is comes first from its SDP,
//! then from the source of its packets (latching, symmetric RTP: a phone behind NAT
//! advertises an address nobody can reach, but sends from the one that works); a new
//! address in its SDP (re-INVITE) unlatches it. Packets from any other source are dropped
//! (nobody can inject audio into a latched stream). A source other than the SDP's is
//! latched onto only after [`PROBATION`] RTP packets in a row: a port given to a new call
//! often still receives a few packets of the call it served before (the far end sends on
//! for a moment after the BYE), and latching onto those would send the new call's audio
//! to the old party (the "RTP bleed" of other relays). Packets from the SDP's own address
//! are the party's at once, and take the stream back from anything latched before them.
//!
//! The hot path is one task per socket on the relay's own threads: `recv_from`, a
//! short lock of the stream's four addresses, `try_send_to` (never waits: a full socket
//! buffer drops the datagram, as a network would). Each thread is a lane, a
//! single-threaded runtime of its own, and a stream's sockets and tasks all live on
//! one lane (round robin): a packet is received, relayed and its task woken on one
//! thread, with no work stealing and no waking of another thread per packet, which
//! measured cheaper (`crm-bench media`) than one multi-threaded runtime for them all.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::record::{renumber, rtp, Cadence, Gate, Msg, Prompt, Recorder};
use super::sdp;
use super::webrtc::{Drained, Leg};
use super::MediaConfig;

/// End 0 faces the caller (side A), end 1 the callee (side B).
const CALLER: usize = 0;
const CALLEE: usize = 1;

/// RTP packets in a row from one source (not the SDP's address) before the relay latches
/// onto it: 60 ms of a phone behind NAT, more than a stale stream's tail usually brings.
const PROBATION: u8 = 3;

/// A socket task's receive buffer: any RTP packet on a LAN or the trunk fits, and so
/// does an announcement's Opus frames put in place of a shorter payload.
const RTP_BUF: usize = 2048;

#[derive(Debug, Default, Clone, Copy)]
struct Where {
    /// From the party's SDP.
    sdp: Option<SocketAddr>,
    /// The source of its packets.
    latched: Option<SocketAddr>,
    /// A source on probation: its address and its packets in a row so far.
    trial: Option<(SocketAddr, u8)>,
}

impl Where {
    fn dest(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp)
    }

    /// The party's SDP names `addr`: a new address is learnt again from its packets.
    fn announce(&mut self, addr: SocketAddr) {
        if self.sdp != Some(addr) {
            self.sdp = Some(addr);
            self.latched = None;
            self.trial = None;
        }
    }

    /// Whether a packet from `src` is the party's (see the module's comment); `probation`
    /// for RTP (RTCP comes every few seconds: its first source is taken).
    fn admit(&mut self, src: SocketAddr, probation: bool) -> bool {
        if self.latched == Some(src) {
            return true;
        }
        if self.sdp == Some(src) {
            self.latched = Some(src);
            self.trial = None;
            return true;
        }
        if self.latched.is_some() {
            return false;
        }
        let n = match self.trial {
            Some((a, n)) if a == src => n + 1,
            _ => 1,
        };
        if !probation || n >= PROBATION {
            self.latched = Some(src);
            self.trial = None;
            return true;
        }
        self.trial = Some((src, n));
        false
    }
}

/// One media line: the sockets facing each party, where each party is, and the four
/// tasks that pump it.
struct Stream {
    shared: Arc<Shared>,
    /// The RTP port of each end (RTCP is the next one).
    ports: [u16; 2],
    /// Telephone-event payload types on a browser's call: the one in the last body the
    /// box sent each end's party (it sends events with it), and the one in that party's
    /// own last body (it wants events with it).
    tele_sent: [Option<u8>; 2],
    tele_wanted: [Option<u8>; 2],
    tasks: Vec<JoinHandle<()>>,
    /// The lane (thread) its tasks run on.
    lane: tokio::runtime::Handle,
}

/// What the signalling side and the four tasks of a stream share: `socks[end][kind]`
/// (kind 0 RTP, 1 RTCP) and `parties[end][kind]`, where the party of that end is.
struct Shared {
    socks: [[Arc<UdpSocket>; 2]; 2],
    parties: Mutex<[[Where; 2]; 2]>,
    activity: Arc<Activity>,
    epoch: Instant,
    /// A recorded call: its id, the writer (RTP copies go there) and its announcement.
    tap: std::sync::OnceLock<Tap>,
    /// An end facing a browser: its WebRTC leg (set once, for the call's life). Its RTP
    /// socket then carries ICE, DTLS and SRTP, its RTCP socket nothing (rtcp-mux).
    webrtc: [std::sync::OnceLock<Arc<Mutex<Leg>>>; 2],
    /// Telephone-event renumbering of the packets arriving at each end (see
    /// `webrtc::tele_map`): set on a browser's call, where each side negotiated with
    /// the box, not with each other.
    tele: [AtomicU32; 2],
    /// While the announcement plays: where each end's party's stream stands (see
    /// `fill_silences`).
    cadence: Mutex<[Option<Cadence>; 2]>,
    /// Packets the relay put into each end's party's stream in its silences: its later
    /// packets' sequence numbers are moved on by as many, so the far phone sees one
    /// unbroken sequence (a number used twice would be dropped as a duplicate).
    shift: [AtomicU16; 2],
}

impl Shared {
    /// Latches the party of `end` onto `src`, the first address its `kind` stream came
    /// from. None (counted as dropped): a packet from another address. Else where the
    /// other party's stream of that kind goes now.
    fn latch(&self, end: usize, kind: usize, src: SocketAddr) -> Option<Option<SocketAddr>> {
        let mut p = self.parties();
        if !p[end][kind].admit(src, kind == 0) {
            drop(p);
            self.activity.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(p[1 - end][kind].dest())
    }

    fn parties(&self) -> MutexGuard<'_, [[Where; 2]; 2]> {
        self.parties.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leg(&self, end: usize) -> Option<MutexGuard<'_, Leg>> {
        self.webrtc[end]
            .get()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn cadence(&self) -> MutexGuard<'_, [Option<Cadence>; 2]> {
        self.cadence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A packet of the party of `end` passed on while the announcement plays: `audio`
    /// when the prompt was overlaid on it (its cadence is the stream's now), else only
    /// its sequence number counts (comfort noise, telephone events).
    fn passed_on(&self, end: usize, gate: &Gate, pkt: &[u8], audio: bool) {
        let mut c = self.cadence();
        match (audio, gate.cadence(pkt, Instant::now())) {
            (true, Some(now)) => c[end] = Some(now),
            _ => {
                if let (Some(c), Some(p)) = (c[end].as_mut(), rtp(pkt)) {
                    c.seq = p.seq;
                }
            }
        }
    }

    /// Sends what the party of `end` has not sent while the announcement plays (see
    /// `fill_silences`).
    fn fill(&self, end: usize, gate: &Gate, buf: &mut [u8]) {
        let now = Instant::now();
        let mut cadence = self.cadence();
        let Some(c) = cadence[end].as_mut() else {
            return;
        };
        // A burst after a stall of the lane is bounded; the rest of the gap stays one.
        for _ in 0..8 {
            let Some(n) = gate.fill(end, c, now, buf) else {
                return;
            };
            self.shift[end].fetch_add(1, Ordering::Relaxed);
            let dest = self.parties()[1 - end][0].dest();
            if let Some(d) = dest {
                let _ = self.socks[1 - end][0].try_send_to(&buf[..n], d);
            }
        }
    }

    fn touch(&self) {
        self.activity
            .last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Sends what a WebRTC leg at `end` produced: its datagrams to the browser, its
    /// decrypted RTP on to the other end.
    fn flush(&self, end: usize, d: Drained) {
        for (dest, data) in d.transmit {
            let _ = self.socks[end][0].try_send_to(&data, dest);
        }
        let map = self.tele[end].load(Ordering::Relaxed);
        for mut pkt in d.rtp {
            self.touch();
            let n = pkt.len();
            if self.tap.get().is_some_and(|t| t.gate.playing()) {
                pkt.resize(RTP_BUF.max(n), 0); // room for an overlay longer than the packet
            }
            let n = self.tap_rtp(end, &mut pkt, n);
            pkt.truncate(n);
            super::webrtc::retype(&mut pkt, map);
            self.deliver(1 - end, &pkt);
        }
    }

    /// A party's RTP `buf[..n]` on a browser's call, before it goes on: while the
    /// announcement plays it overlays the packet (that copy is never recorded), else the
    /// recorder gets a copy. The packet's length now (an Opus overlay changes it).
    fn tap_rtp(&self, end: usize, buf: &mut [u8], n: usize) -> usize {
        if let Some(t) = self.tap.get() {
            if t.gate.playing() {
                if let Some(m) = t.gate.overlay(end, buf, n) {
                    return m;
                }
            }
            t.recorder.packet(&t.id, end, &buf[..n]);
        }
        n
    }

    /// An RTP packet out of `end` to its party: encrypted for a browser, else as it is.
    fn deliver(&self, end: usize, pkt: &[u8]) {
        if let Some(mut leg) = self.leg(end) {
            let mut d = Drained::default();
            leg.send_rtp(pkt, &mut d);
            drop(leg);
            self.activity.packets.fetch_add(1, Ordering::Relaxed);
            for (dest, data) in d.transmit {
                let _ = self.socks[end][0].try_send_to(&data, dest);
            }
            return;
        }
        let dest = self.parties()[end][0].dest();
        match dest.map(|d| self.socks[end][0].try_send_to(pkt, d)) {
            Some(Ok(_)) => self.activity.packets.fetch_add(1, Ordering::Relaxed),
            _ => self.activity.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A recorded call's hook in each of its streams.
#[derive(Clone)]
struct Tap {
    id: Arc<str>,
    recorder: Recorder,
    gate: Arc<Gate>,
}

/// Counters of one call, shared with its sockets' tasks.
#[derive(Default)]
pub(super) struct Activity {
    /// ms since the relay's epoch of the last packet relayed.
    last_ms: AtomicU64,
    pub(super) packets: AtomicU64,
    pub(super) dropped: AtomicU64,
}

struct Call {
    /// Signalling address of each party seen -> its end.
    ends: Vec<(SocketAddr, usize)>,
    streams: Vec<Stream>,
    activity: Arc<Activity>,
    /// ms since the epoch of the last SDP through the box.
    last_sdp_ms: u64,
    /// The latest SDP of either party holds the call.
    held: [bool; 2],
    /// Recorded (the policy is not off): its hook.
    rec: Option<Tap>,
}

/// Puts the calling relay thread ahead of the box's other work.
///
/// First choice: the real-time FIFO class at `realtime` (1..99). The fair scheduler
/// lets a woken thread wait for a running one's turn, and on two cores with a
/// busy neighbour that wait was the relay's jitter: at 500 calls the added jitter p99
/// was 1.9 ms at nice -10 and 0.14 ms in FIFO, medians (docs/PERFORMANCE.md). A FIFO thread runs
/// the moment a packet wakes it. It cannot starve the box: the kernel leaves other work
/// 5 % of each core (sched_rt_runtime_us), and a lane sleeps in epoll between packets.
/// It needs CAP_SYS_NICE or RLIMIT_RTPRIO (the systemd unit's `LimitRTPRIO`).
///
/// Else nice `nice` (-20..19), which needs RLIMIT_NICE (`LimitNICE`); else the
/// server's own priority. Each refusal is logged once per thread.
fn prefer_this_thread(realtime: u8, nice: i32) {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    if realtime > 0 {
        let fifo = ThreadPriorityValue::try_from(realtime.clamp(1, 99))
            .map_err(|e| e.to_string())
            .and_then(|p| {
                thread_priority::set_thread_priority_and_policy(
                    thread_priority::thread_native_id(),
                    ThreadPriority::Crossplatform(p),
                    ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
                )
                .map_err(|e| format!("{e:?}"))
            });
        match fifo {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(realtime, error = %e, "media: the relay threads cannot run real-time; they run at nice {nice}")
            }
        }
    }
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), nice.clamp(-20, 19)) {
        tracing::warn!(nice, error = %e, "media: cannot set the relay threads' priority; they run at the server's");
    }
}

/// The relay's threads, each driving a single-threaded runtime until stopped.
struct Lanes {
    handles: Vec<tokio::runtime::Handle>,
    stops: Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Lanes {
    fn start(threads: usize, realtime: u8, nice: i32) -> std::io::Result<Lanes> {
        let (mut handles, mut stops) = (Vec::new(), Vec::new());
        for _ in 0..threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name("crm-media".into())
                .spawn(move || {
                    prefer_this_thread(realtime, nice);
                    let _ = rt.block_on(stopped);
                    rt.shutdown_background();
                })?;
        }
        Ok(Lanes {
            handles,
            stops: Mutex::new(stops),
            next: Default::default(),
        })
    }

    /// The lane for a new stream.
    fn pick(&self) -> tokio::runtime::Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].clone()
    }

    fn stop(&self) {
        for s in self
            .stops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = s.send(());
        }
    }
}

pub(super) struct Relay {
    cfg: MediaConfig,
    lanes: Lanes,
    calls: Mutex<HashMap<String, Call>>,
    /// The next even port to try.
    cursor: Mutex<u16>,
    epoch: Instant,
    recorder: std::sync::OnceLock<Recorder>,
    /// The announcement before recording (for calls tapped from now on).
    prompt: Mutex<Option<Arc<Prompt>>>,
}

fn bind_udp(ip: IpAddr, port: u16) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Room for a scheduling pause of the relay thread (~50 ms at 50 packets/s is 3).
    let _ = s.set_recv_buffer_size(64 * 1024);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

impl Relay {
    pub(super) fn start(cfg: MediaConfig) -> std::io::Result<Relay> {
        let lanes = Lanes::start(cfg.threads, cfg.realtime, cfg.nice)?;
        let first = cfg.ports.0 + (cfg.ports.0 & 1);
        Ok(Relay {
            cfg,
            lanes,
            calls: Mutex::new(HashMap::new()),
            cursor: Mutex::new(first),
            epoch: Instant::now(),
            recorder: std::sync::OnceLock::new(),
            prompt: Mutex::new(None),
        })
    }

    pub(super) fn stop(&self) {
        self.calls().clear();
        self.lanes.stop();
    }

    fn calls(&self) -> MutexGuard<'_, HashMap<String, Call>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn open(&self, call: &str) {
        let now = self.now_ms();
        self.calls()
            .entry(call.to_string())
            .or_insert_with(|| Call {
                ends: Vec::new(),
                streams: Vec::new(),
                activity: Arc::new(Activity::default()),
                last_sdp_ms: now,
                held: [false; 2],
                rec: None,
            });
    }

    pub(super) fn set_recorder(&self, r: Recorder) {
        let _ = self.recorder.set(r);
    }

    pub(super) fn recorder(&self) -> Option<&Recorder> {
        self.recorder.get()
    }

    pub(super) fn set_prompt(&self, p: Option<Arc<Prompt>>) {
        *self.prompt.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// Taps call `call` for the recorder (`how`: from the start or on demand).
    pub(super) fn record(&self, call: &str, how: crate::sip::Recording) {
        let Some(r) = self.recorder.get() else { return };
        let prompt = self
            .prompt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut calls = self.calls();
        let Some(c) = calls.get_mut(call) else { return };
        let tap = c
            .rec
            .get_or_insert_with(|| Tap {
                id: Arc::from(call),
                recorder: r.clone(),
                gate: Arc::new(Gate::new(prompt)),
            })
            .clone();
        r.send(Msg::Start(tap.id.clone(), how, tap.gate.clone()));
        for s in &mut c.streams {
            if s.shared.tap.set(tap.clone()).is_ok() {
                s.tasks.extend(fill_silences(&s.shared, &s.lane, &tap.gate));
            }
        }
    }

    /// The call was answered: an all-calls recording plays its announcement.
    pub(super) fn answered(&self, call: &str) {
        let Some(r) = self.recorder.get() else { return };
        if let Some(t) = self.calls().get(call).and_then(|c| c.rec.as_ref()) {
            r.send(Msg::Answered(t.id.clone()));
        }
    }

    /// Starts recording a tapped call now (the call-card button). False: the call is
    /// not tapped.
    pub(super) fn record_now(&self, call: &str) -> bool {
        let Some(r) = self.recorder.get() else {
            return false;
        };
        let calls = self.calls();
        match calls.get(call).and_then(|c| c.rec.as_ref()) {
            Some(t) => {
                r.send(Msg::Now(t.id.clone()));
                true
            }
            None => false,
        }
    }

    pub(super) fn is_recorded(&self, call: &str) -> bool {
        self.calls().get(call).is_some_and(|c| c.rec.is_some())
    }

    pub(super) fn is_open(&self, call: &str) -> bool {
        self.calls().contains_key(call)
    }

    pub(super) fn end(&self, call: &str) {
        let gone = self.calls().remove(call);
        if let Some(t) = gone.as_ref().and_then(|c| c.rec.as_ref()) {
            t.recorder.send(Msg::End(t.id.clone()));
        }
        drop(gone); // aborts the tasks, closes the sockets
    }

    pub(super) fn calls_open(&self) -> usize {
        self.calls().len()
    }

    /// An even RTP port and the RTCP port after it, both bound.
    fn pair(&self) -> Option<([std::net::UdpSocket; 2], u16)> {
        let (lo, hi) = self.cfg.ports;
        let lo = lo + (lo & 1);
        if hi <= lo {
            return None;
        }
        let span = ((hi - lo) / 2) as usize;
        let mut cur = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..span {
            let p = *cur;
            *cur = if p + 3 > hi { lo } else { p + 2 };
            let Ok(rtp) = bind_udp(self.cfg.bind, p) else {
                continue;
            };
            let Ok(rtcp) = bind_udp(self.cfg.bind, p + 1) else {
                continue;
            };
            return Some(([rtp, rtcp], p));
        }
        None
    }

    fn new_stream(&self, activity: &Arc<Activity>, rec: Option<&Tap>) -> Option<Stream> {
        let ([a0, a1], pa) = self.pair()?;
        let ([b0, b1], pb) = self.pair()?;
        let lane = self.lanes.pick();
        let _g = lane.enter();
        let wrap = |s: std::net::UdpSocket| UdpSocket::from_std(s).ok().map(Arc::new);
        let shared = Arc::new(Shared {
            socks: [[wrap(a0)?, wrap(a1)?], [wrap(b0)?, wrap(b1)?]],
            parties: Mutex::new([[Where::default(); 2]; 2]),
            activity: activity.clone(),
            epoch: self.epoch,
            tap: std::sync::OnceLock::new(),
            webrtc: Default::default(),
            tele: Default::default(),
            cadence: Mutex::new([None; 2]),
            shift: Default::default(),
        });
        let mut tasks = Vec::with_capacity(5);
        for end in 0..2 {
            for kind in 0..2 {
                let sh = shared.clone();
                tasks.push(lane.spawn(pump(sh, end, kind)));
            }
        }
        if let Some(t) = rec {
            let _ = shared.tap.set(t.clone());
            tasks.extend(fill_silences(&shared, &lane, &t.gate));
        }
        Some(Stream {
            shared,
            ports: [pa, pb],
            tele_sent: [None; 2],
            tele_wanted: [None; 2],
            tasks,
            lane,
        })
    }

    /// Points `body`, on its way to the party at `to`, at the box (see
    /// `sip::MediaPlane::rewrite`).
    pub(super) fn rewrite(
        &self,
        call: &str,
        to: SocketAddr,
        callee: bool,
        browser: bool,
        host: IpAddr,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        let from_browser = crate::sip::webrtc_sdp(body);
        let offer = sdp::parse(body)?;
        let now = self.now_ms();
        let mut calls = self.calls();
        let c = calls.get_mut(call)?;
        let end = match c.ends.iter().find(|(a, _)| *a == to) {
            Some((_, e)) => *e,
            None => {
                // A party not seen yet: the callee when this is its call's first
                // INVITE; else the caller when no body went to the caller yet (two
                // phones behind one address must not share an end); else (by IP, for a
                // TCP phone on a new connection) the end of a party at the same
                // address, else the caller.
                let e = if callee {
                    CALLEE
                } else if !c.ends.iter().any(|(_, e)| *e == CALLER) {
                    CALLER
                } else {
                    c.ends
                        .iter()
                        .find(|(a, _)| a.ip() == to.ip())
                        .map(|(_, e)| *e)
                        .unwrap_or(CALLER)
                };
                c.ends.push((to, e));
                e
            }
        };
        if browser || from_browser {
            return self.rewrite_webrtc(c, end, from_browser, browser, host, body, &offer, now);
        }
        while c.streams.len() < offer.streams.len() {
            match self.new_stream(&c.activity, c.rec.as_ref()) {
                Some(s) => c.streams.push(s),
                None => {
                    tracing::warn!(call, "media: no free port pair in the relay's range");
                    return None;
                }
            }
        }
        let other = 1 - end;
        // The box's own address in a body (one the box wrote, coming round again).
        let mine: Vec<u16> = c
            .streams
            .iter()
            .flat_map(|s| [s.ports[0], s.ports[0] + 1, s.ports[1], s.ports[1] + 1])
            .collect();
        let ours = |a: SocketAddr| a.ip() == host && mine.contains(&a.port());
        for (i, s) in offer.streams.iter().enumerate() {
            let mut p = c.streams[i].shared.parties();
            for (kind, addr) in [(0, s.rtp), (1, s.rtcp)] {
                let Some(addr) = addr else { continue };
                if ours(addr) {
                    continue;
                }
                p[other][kind].announce(addr);
            }
        }
        c.held[other] = offer.on_hold();
        if let Some(t) = &c.rec {
            let f: Vec<_> = offer
                .streams
                .iter()
                .flat_map(|s| s.formats.clone())
                .collect();
            t.gate.formats(&f);
            t.recorder.send(Msg::Formats(t.id.clone(), f));
        }
        c.last_sdp_ms = now;
        let ports: Vec<u16> = c.streams.iter().map(|s| s.ports[end]).collect();
        Some(sdp::rewrite(&offer, host, &ports))
    }

    /// [`Relay::rewrite`] where a browser sends or gets the body: the first stream's
    /// end facing each browser becomes a WebRTC leg; the phone side stays plain.
    #[allow(clippy::too_many_arguments)]
    fn rewrite_webrtc(
        &self,
        c: &mut Call,
        end: usize,
        from_browser: bool,
        browser: bool,
        host: IpAddr,
        body: &[u8],
        offer: &sdp::Offer,
        now: u64,
    ) -> Option<Vec<u8>> {
        if c.streams.is_empty() {
            match self.new_stream(&c.activity, c.rec.as_ref()) {
                Some(s) => c.streams.push(s),
                None => {
                    tracing::warn!("media: no free port pair in the relay's range");
                    return None;
                }
            }
        }
        let other = 1 - end;
        let port = c.streams[0].ports[end];
        let plain = if from_browser {
            let leg = self.webrtc_leg(&mut c.streams[0], other);
            let mut leg = leg.lock().unwrap_or_else(|e| e.into_inner());
            leg.body_from_browser(body, host, port)?
        } else {
            // A phone's body: where it wants its RTP, as on the plain path.
            let st = &c.streams[0];
            let mine = [st.ports[0], st.ports[0] + 1, st.ports[1], st.ports[1] + 1];
            if let Some(s) = offer.streams.first() {
                let mut p = st.shared.parties();
                for (kind, addr) in [(0, s.rtp), (1, s.rtcp)] {
                    let Some(addr) = addr else { continue };
                    if addr.ip() == host && mine.contains(&addr.port()) {
                        continue;
                    }
                    p[other][kind].announce(addr);
                }
            }
            body.to_vec()
        };
        if let Some(o) = sdp::parse(&plain) {
            c.held[other] = o.on_hold();
            if let Some(t) = &c.rec {
                let f: Vec<_> = o.streams.iter().flat_map(|s| s.formats.clone()).collect();
                t.gate.formats(&f);
                t.recorder.send(Msg::Formats(t.id.clone(), f));
            }
        }
        c.last_sdp_ms = now;
        let out = if browser {
            let leg = self.webrtc_leg(&mut c.streams[0], end);
            let mut leg = leg.lock().unwrap_or_else(|e| e.into_inner());
            leg.body_to_browser(&plain, SocketAddr::new(host, port))?
        } else {
            plain
        };
        // Each party sends events with the number the box gave it and wants them with
        // its own: a browser's offer says 126 (or 110), a desk phone answers 101 (or 96).
        let st = &mut c.streams[0];
        st.tele_wanted[other] = super::webrtc::tele_pt(body);
        st.tele_sent[end] = super::webrtc::tele_pt(&out);
        for e in 0..2 {
            let m = super::webrtc::tele_map(st.tele_sent[e], st.tele_wanted[1 - e]);
            st.shared.tele[e].store(m, Ordering::Relaxed);
        }
        Some(out)
    }

    /// The WebRTC leg of `end` of a stream, made (with its timer task) the first time.
    fn webrtc_leg(&self, st: &mut Stream, end: usize) -> Arc<Mutex<Leg>> {
        if let Some(l) = st.shared.webrtc[end].get() {
            return l.clone();
        }
        let l = st.shared.webrtc[end]
            .get_or_init(|| Arc::new(Mutex::new(Leg::new())))
            .clone();
        let task = st.lane.spawn(drive(st.shared.clone(), end));
        st.tasks.push(task);
        l
    }

    /// Calls silent for longer than allowed: (call, ms since the last packet or SDP).
    pub(super) fn silent(&self) -> Vec<(String, u64)> {
        let now = self.now_ms();
        let (t, h) = (
            self.cfg.timeout.as_millis() as u64,
            self.cfg.hold_timeout.as_millis() as u64,
        );
        self.calls()
            .iter()
            .filter_map(|(k, c)| {
                if c.streams.is_empty() {
                    return None;
                }
                let last = c
                    .activity
                    .last_ms
                    .load(Ordering::Relaxed)
                    .max(c.last_sdp_ms);
                let idle = now.saturating_sub(last);
                let limit = if c.held.iter().any(|h| *h) { h } else { t };
                (idle >= limit).then(|| (k.clone(), idle))
            })
            .collect()
    }

    /// (packets relayed, dropped) of a call, for tests and the admin page.
    pub(super) fn counts(&self, call: &str) -> Option<(u64, u64)> {
        self.calls().get(call).map(|c| {
            (
                c.activity.packets.load(Ordering::Relaxed),
                c.activity.dropped.load(Ordering::Relaxed),
            )
        })
    }

    /// The relay's RTP ports of each stream of a call: [facing the caller, the callee].
    pub(super) fn ports(&self, call: &str) -> Option<Vec<[u16; 2]>> {
        self.calls()
            .get(call)
            .map(|c| c.streams.iter().map(|s| s.ports).collect())
    }

    pub(super) fn idle_for(&self) -> Duration {
        self.cfg.timeout
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Never block in drop (it may run on an async thread).
        self.stop();
    }
}

/// A WebRTC leg's clock: DTLS and STUN retransmissions, consent, RTCP reports.
async fn drive(sh: Arc<Shared>, end: usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let mut d = Drained::default();
        if let Some(mut leg) = sh.leg(end) {
            leg.tick(&mut d);
        }
        sh.flush(end, d);
    }
}

/// A stream's filler while its call's announcement plays. The prompt rides on each
/// party's own packets, and a party that falls silent (Opus DTX, G.711 with voice
/// activity detection) sends few or none: the other party would hear the prompt in
/// pieces. Each packet such a party misses is sent in its place, continuing its stream
/// (its next sequence number and timestamp, its SSRC), and its own later packets are
/// renumbered after them (`Shared::shift`, for the rest of the call). Browser legs are
/// not filled: a browser's G.711 has no silence suppression. None without a prompt.
fn fill_silences(
    sh: &Arc<Shared>,
    lane: &tokio::runtime::Handle,
    gate: &Arc<Gate>,
) -> Option<JoinHandle<()>> {
    if !gate.has_prompt() {
        return None;
    }
    let (sh, gate) = (sh.clone(), gate.clone());
    Some(lane.spawn(async move {
        gate.started().await;
        let mut buf = vec![0u8; RTP_BUF];
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !gate.done() {
            tick.tick().await;
            if sh.webrtc.iter().any(|w| w.get().is_some()) {
                break;
            }
            for end in 0..2 {
                sh.fill(end, &gate, &mut buf);
            }
        }
        *sh.cadence() = [None; 2];
    }))
}

/// One socket's task: what arrives from the party of `end` goes out of the other end's
/// socket of the same kind to the other party.
async fn pump(sh: Arc<Shared>, end: usize, kind: usize) {
    let mut buf = vec![0u8; RTP_BUF];
    let other = 1 - end;
    let sock = sh.socks[end][kind].clone();
    let out = sh.socks[other][kind].clone();
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on Linux.
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    continue;
                }
                tracing::debug!(error = %e, "media: receive failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        if sh.webrtc[end].get().is_some() {
            // The browser's socket: all of it is for its WebRTC leg (rtcp-mux).
            if kind == 0 {
                let mut d = Drained::default();
                if let Some(mut leg) = sh.leg(end) {
                    leg.receive(src, &buf[..n], &mut d);
                }
                sh.flush(end, d);
            }
            continue;
        }
        if sh.webrtc[other].get().is_some() {
            // A phone's packet for a browser: latched as usual, then encrypted. Its
            // RTCP stays here (the leg sends the browser its own reports).
            if kind == 1 {
                continue;
            }
            if sh.latch(end, 0, src).is_none() {
                continue;
            }
            sh.touch();
            let n = sh.tap_rtp(end, &mut buf, n);
            super::webrtc::retype(&mut buf[..n], sh.tele[end].load(Ordering::Relaxed));
            sh.deliver(other, &buf[..n]);
            continue;
        }
        let Some(dest) = sh.latch(end, kind, src) else {
            continue;
        };
        let Some(dest) = dest else {
            sh.activity.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        sh.touch();
        let mut tap = if kind == 0 { sh.tap.get() } else { None };
        let mut n = n;
        if let Some(t) = tap {
            let shift = sh.shift[end].load(Ordering::Relaxed);
            if shift != 0 {
                renumber(&mut buf[..n], shift);
            }
            if t.gate.playing() {
                // The announcement replaces what the party says (never recorded); an
                // Opus packet's length changes with it.
                let overlaid = t.gate.overlay(end, &mut buf, n);
                sh.passed_on(
                    end,
                    &t.gate,
                    &buf[..overlaid.unwrap_or(n)],
                    overlaid.is_some(),
                );
                if let Some(m) = overlaid {
                    n = m;
                    tap = None;
                }
            }
        }
        match out.try_send_to(&buf[..n], dest) {
            Ok(_) => {
                sh.activity.packets.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                sh.activity.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(t) = tap {
            t.recorder.packet(&t.id, end, &buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (policy, rt_priority, nice) of the calling thread, from /proc/thread-self/stat.
    fn scheduling_of_this_thread() -> (u32, u32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // Fields 19, 40 and 41 of proc(5); the first after the name is field 3.
        (
            f[38].parse().unwrap(),
            f[37].parse().unwrap(),
            f[16].parse().unwrap(),
        )
    }

    fn on_a_new_thread(realtime: u8, nice: i32) -> (u32, u32, i32) {
        std::thread::spawn(move || {
            prefer_this_thread(realtime, nice);
            scheduling_of_this_thread()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn relay_threads_run_real_time_else_at_their_nice_value() {
        const SCHED_OTHER: u32 = 0;
        const SCHED_FIFO: u32 = 1;
        if rustix::process::geteuid().is_root() {
            assert_eq!(on_a_new_thread(10, -10), (SCHED_FIFO, 10, 0));
            assert_eq!(
                on_a_new_thread(200, -10),
                (SCHED_FIFO, 99, 0),
                "clamped to 99"
            );
            assert_eq!(
                on_a_new_thread(0, -7),
                (SCHED_OTHER, 0, -7),
                "real-time off"
            );
        } else {
            // Refused without the privilege: the thread stays in the fair class.
            assert_eq!(on_a_new_thread(10, 19).0, SCHED_OTHER);
            assert_eq!(on_a_new_thread(10, 19).2, 19);
        }
    }

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 168, 1, 20], port))
    }

    /// A stale stream's tail does not take a new call's port; a source that keeps
    /// sending (a phone behind NAT) is latched onto after the probation; the SDP's own
    /// address is taken at once, also from a source latched before it.
    #[test]
    fn latching_waits_out_stray_packets_and_prefers_the_sdp_address() {
        let (sdp, nat, stale) = (at(4000), at(62000), at(5000));
        let mut w = Where::default();
        w.announce(sdp);
        // Two stray packets, then the NAT'd phone: neither latched yet.
        assert!(!w.admit(stale, true) && !w.admit(stale, true));
        assert!(!w.admit(nat, true) && !w.admit(nat, true));
        assert_eq!(w.dest(), Some(sdp));
        assert!(w.admit(nat, true), "the third in a row latches");
        assert_eq!(w.dest(), Some(nat));
        for _ in 0..5 {
            assert!(!w.admit(stale, true), "latched: others are dropped");
        }
        assert_eq!(w.dest(), Some(nat));
        // The SDP's address is the party's, whatever was latched.
        assert!(w.admit(sdp, true));
        assert_eq!(w.dest(), Some(sdp));
        assert!(!w.admit(nat, true));
        // A new address in the SDP (re-INVITE) is learnt again; RTCP takes its first
        // source.
        w.announce(at(4100));
        assert_eq!(w.dest(), Some(at(4100)));
        let mut rtcp = Where::default();
        rtcp.announce(at(4001));
        assert!(rtcp.admit(at(62001), false));
        assert_eq!(rtcp.dest(), Some(at(62001)));
    }
}
