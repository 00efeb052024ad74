//! Call recording: the relay copies each RTP packet of a recorded call into a bounded
//! channel (`try_send`: a full channel drops the copy, forwarding never waits) and one
//! writer thread turns them into a stereo WAV file, one channel per party (left: the
//! caller, right: the callee), 8 kHz PCM16.
//!
//! - G.711 µ-law and A-law are decoded by a 256-entry table each (the call itself is
//!   never transcoded). Other codecs (G.722, Opus) are not decoded: their packets count
//!   as gaps (silence), and a call with no G.711 audio at all leaves no file (the log
//!   says which codec it was).
//! - Time alignment: the recording's clock starts at the first audio packet after
//!   recording began. Each channel places its packets by RTP timestamp from an anchor
//!   (the arrival time of the first packet of the stream); a new SSRC, or a timestamp
//!   that strays more than half a second from the arrival time, re-anchors. Gaps are
//!   silence. Frames older than one second (the jitter allowance) are written out.
//! - On demand: RFC 4733 telephone-event packets are watched on both channels; the
//!   feature code (`*1`) starts recording, as does [`Recorder::now`] (the call-card
//!   button).
//! - The header is rewritten about once a second, so a file cut short by a crash still
//!   plays what was written.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sip::Recording;

pub const RATE: u32 = 8000;
/// The feature code that starts an on-demand recording during a call.
pub const FEATURE_CODE: &str = "*1";
/// Frames kept open for late packets before they are written.
const JITTER: u64 = RATE as u64;
/// Re-anchor a channel when its timestamps stray this far from arrival.
const STRAY: i64 = (RATE / 2) as i64;
/// Packet copies queued for the writer before the relay drops them.
const QUEUE: usize = 16_384;

/// A finished recording, for the app to file.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The call id of the call events.
    pub call: String,
    /// The file, relative to the recordings directory (`YYYY/MM/name.wav`).
    pub path: String,
    /// Unix ms of the first frame.
    pub started_ms: i64,
    pub duration_ms: i64,
    pub bytes: i64,
}

/// Where and how the writer files recordings.
#[derive(Clone)]
pub struct RecorderConfig {
    /// The recordings directory (`<data dir>/recordings`).
    pub dir: PathBuf,
    /// The sub-directory of a recording starting now (`YYYY/MM`, by the shop clock).
    pub subdir: Arc<dyn Fn() -> String + Send + Sync>,
    /// Called (on the writer thread: must not block) when a recording is complete.
    pub done: Arc<dyn Fn(Finished) + Send + Sync>,
    /// The feature code that starts an on-demand recording, as dialled (`*1`).
    pub feature: String,
}

pub(super) enum Msg {
    Start(Arc<str>, Recording),
    Formats(Arc<str>, Vec<(u8, String)>),
    Packet {
        call: Arc<str>,
        ch: u8,
        at: Instant,
        data: Vec<u8>,
    },
    Now(Arc<str>),
    End(Arc<str>),
}

/// The relay's handle on the writer thread.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Msg>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    pub fn start(cfg: RecorderConfig) -> std::io::Result<Recorder> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("crm-recorder".into())
            .spawn(move || Writer::new(cfg).run(rx))?;
        Ok(Recorder {
            tx,
            dropped: Default::default(),
        })
    }

    /// Control messages wait for room (they are rare and never on the packet path).
    pub(super) fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
    }

    /// The hot path: a copy of a packet, or nothing when the writer is behind.
    pub(super) fn packet(&self, call: &Arc<str>, ch: usize, data: &[u8]) {
        let m = Msg::Packet {
            call: call.clone(),
            ch: ch as u8,
            at: Instant::now(),
            data: data.to_vec(),
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Packet copies dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

// ----- G.711 ------------------------------------------------------------------------

const fn ulaw(u: u8) -> i16 {
    let u = !u;
    let exp = ((u >> 4) & 7) as i32;
    let mant = (u & 0x0f) as i32;
    let t = (((mant << 3) + 0x84) << exp) - 0x84;
    (if u & 0x80 != 0 { -t } else { t }) as i16
}

const fn alaw(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(a_law: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if a_law { alaw(i as u8) } else { ulaw(i as u8) };
        i += 1;
    }
    t
}

pub const ULAW: [i16; 256] = table(false);
pub const ALAW: [i16; 256] = table(true);

// ----- RTP ----------------------------------------------------------------------------

pub(super) struct Rtp<'a> {
    pub pt: u8,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

pub(super) fn rtp(b: &[u8]) -> Option<Rtp<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = (b[0] & 0x0f) as usize;
    let mut off = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(off + 2..off + 4)?;
        off += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(*b.last()? as usize)?;
    }
    let payload = b.get(off..end)?;
    Some(Rtp {
        pt: b[1] & 0x7f,
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload,
    })
}

/// The character of an RFC 4733 event (0–9, *, #, A–D).
fn dtmf_char(e: u8) -> Option<char> {
    match e {
        0..=9 => Some((b'0' + e) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + e - 12) as char),
        _ => None,
    }
}

// ----- WAV ----------------------------------------------------------------------------

fn wav_header(frames: u64) -> [u8; 44] {
    let data = (frames * 4).min(u32::MAX as u64 - 36) as u32;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // stereo
    h[24..28].copy_from_slice(&RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(RATE * 4).to_le_bytes());
    h[32..34].copy_from_slice(&4u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// A file name from a call id: letters, digits and `.-_@` kept, the rest `_`, never
/// starting with a dot, at most 96 characters.
pub fn file_stem(call: &str) -> String {
    let mut s: String = call
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_@".contains(c) {
                c
            } else if c == '.' {
                '.'
            } else {
                '_'
            }
        })
        .take(96)
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, 'c');
    }
    s
}

// ----- the writer ---------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    ts: u32,
    pos: i64,
}

struct Open {
    file: BufWriter<File>,
    rel: String,
    full: PathBuf,
    /// Instant of frame 0, and its wall time.
    t0: Instant,
    started_ms: i64,
    /// Frames written to the file.
    flushed: u64,
    /// Frames from `flushed` on, per channel (None: nothing there yet).
    bufs: [VecDeque<i16>; 2],
    anchors: [Option<Anchor>; 2],
    header_at: u64,
    /// Frames of G.711 audio placed.
    audio: u64,
}

struct Rec {
    how: Recording,
    /// Recording was asked for (from the start, by the code or the button); the file
    /// opens with the first audio packet after that.
    armed: bool,
    open: Option<Open>,
    formats: HashMap<u8, String>,
    /// The last telephone-event timestamp seen per channel, and the digits so far.
    events: [Option<u32>; 2],
    digits: String,
    /// A codec that could not be decoded.
    skipped: Option<String>,
}

struct Writer {
    cfg: RecorderConfig,
    calls: HashMap<Arc<str>, Rec>,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Writer {
    fn new(cfg: RecorderConfig) -> Writer {
        Writer {
            cfg,
            calls: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut last_tick = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= Duration::from_millis(250) {
                last_tick = Instant::now();
                let now = Instant::now();
                for r in self.calls.values_mut() {
                    if let Some(o) = &mut r.open {
                        o.flush_until(now, false);
                    }
                }
            }
        }
        let keys: Vec<Arc<str>> = self.calls.keys().cloned().collect();
        for k in keys {
            self.end(&k);
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Start(call, how) => {
                let r = self.calls.entry(call).or_insert_with(|| Rec {
                    how,
                    armed: false,
                    open: None,
                    formats: HashMap::new(),
                    events: [None; 2],
                    digits: String::new(),
                    skipped: None,
                });
                r.how = r.how.max(how);
                if how == Recording::All {
                    r.armed = true;
                }
            }
            Msg::Formats(call, f) => {
                if let Some(r) = self.calls.get_mut(&call) {
                    r.formats.extend(f);
                }
            }
            Msg::Now(call) => {
                if let Some(r) = self.calls.get_mut(&call) {
                    r.armed = true;
                }
            }
            Msg::Packet { call, ch, at, data } => self.packet(&call, ch as usize, at, &data),
            Msg::End(call) => self.end(&call),
        }
    }

    fn packet(&mut self, call: &Arc<str>, ch: usize, at: Instant, data: &[u8]) {
        let Some(r) = self.calls.get_mut(call) else {
            return;
        };
        let Some(p) = rtp(data) else { return };
        let codec = r
            .formats
            .get(&p.pt)
            .map(String::as_str)
            .unwrap_or(match p.pt {
                0 => "pcmu",
                8 => "pcma",
                _ => "",
            });
        if codec == "telephone-event" {
            // Event, E|R|volume, duration. All packets of one event share its
            // timestamp: a new timestamp is a new digit (counted at its start, as a
            // phone may hold a key down until the next one).
            if p.payload.len() >= 4 && r.events[ch] != Some(p.ts) {
                r.events[ch] = Some(p.ts);
                if let Some(c) = dtmf_char(p.payload[0]) {
                    r.digits.push(c);
                    if r.digits.len() > 16 {
                        r.digits.remove(0);
                    }
                    if !self.cfg.feature.is_empty()
                        && r.digits.ends_with(&self.cfg.feature)
                        && r.how >= Recording::OnDemand
                    {
                        r.armed = true;
                        tracing::info!(call = %call, "recording started by the feature code");
                    }
                }
            }
            return;
        }
        if !r.armed {
            return;
        }
        let table = match codec {
            "pcmu" => &ULAW,
            "pcma" => &ALAW,
            other => {
                if r.skipped.is_none() {
                    r.skipped = Some(if other.is_empty() {
                        format!("payload type {}", p.pt)
                    } else {
                        other.to_string()
                    });
                }
                return;
            }
        };
        if r.open.is_none() {
            match open_file(&self.cfg, call, at) {
                Ok(o) => r.open = Some(o),
                Err(e) => {
                    tracing::warn!(call = %call, error = %e, "recording: cannot create the file");
                    r.armed = false;
                    return;
                }
            }
        }
        let Some(o) = r.open.as_mut() else { return };
        let arrival =
            (at.saturating_duration_since(o.t0).as_micros() as i64) * RATE as i64 / 1_000_000;
        let a = match o.anchors[ch] {
            Some(a) if a.ssrc == p.ssrc => {
                let pos = a.pos + p.ts.wrapping_sub(a.ts) as i32 as i64;
                if (pos - arrival).abs() > STRAY {
                    None
                } else {
                    Some(a)
                }
            }
            _ => None,
        };
        let a = a.unwrap_or(Anchor {
            ssrc: p.ssrc,
            ts: p.ts,
            pos: arrival,
        });
        o.anchors[ch] = Some(a);
        let pos = a.pos + p.ts.wrapping_sub(a.ts) as i32 as i64;
        if pos < o.flushed as i64 {
            return; // too late: already written
        }
        let off = (pos as u64 - o.flushed) as usize;
        let buf = &mut o.bufs[ch];
        let need = off + p.payload.len();
        if buf.len() < need {
            buf.resize(need, 0);
        }
        for (i, b) in p.payload.iter().enumerate() {
            buf[off + i] = table[*b as usize];
        }
        o.audio += p.payload.len() as u64;
        o.flush_until(at, false);
    }

    fn end(&mut self, call: &Arc<str>) {
        let Some(r) = self.calls.remove(call) else {
            return;
        };
        let Some(mut o) = r.open else {
            if let Some(c) = r.skipped.filter(|_| r.armed) {
                tracing::warn!(call = %call, codec = %c, "recording: no G.711 audio, nothing recorded");
            }
            return;
        };
        o.flush_until(Instant::now(), true);
        let frames = o.flushed;
        let ok = o.write_header().and_then(|_| o.file.flush());
        drop(o.file);
        if let Err(e) = ok {
            tracing::warn!(call = %call, error = %e, "recording: cannot finish the file");
        }
        if o.audio == 0 {
            let _ = std::fs::remove_file(&o.full);
            return;
        }
        let bytes = std::fs::metadata(&o.full)
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        (self.cfg.done)(Finished {
            call: call.to_string(),
            path: o.rel,
            started_ms: o.started_ms,
            duration_ms: (frames * 1000 / RATE as u64) as i64,
            bytes,
        });
    }
}

fn open_file(cfg: &RecorderConfig, call: &str, at: Instant) -> std::io::Result<Open> {
    let sub = (cfg.subdir)();
    let dir = cfg.dir.join(&sub);
    std::fs::create_dir_all(&dir)?;
    let stem = file_stem(call);
    let mut name = format!("{stem}.wav");
    let mut n = 1;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("{stem}-{n}.wav");
    }
    let full = dir.join(&name);
    let mut file = BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)?,
    );
    file.write_all(&wav_header(0))?;
    let back = Instant::now().saturating_duration_since(at);
    Ok(Open {
        file,
        rel: format!("{sub}/{name}"),
        full,
        t0: at,
        started_ms: unix_ms() - back.as_millis() as i64,
        flushed: 0,
        bufs: [VecDeque::new(), VecDeque::new()],
        anchors: [None; 2],
        header_at: 0,
        audio: 0,
    })
}

impl Open {
    /// Writes the frames older than the jitter allowance at `now` (all: everything).
    fn flush_until(&mut self, now: Instant, all: bool) {
        let upto = if all {
            self.flushed + self.bufs[0].len().max(self.bufs[1].len()) as u64
        } else {
            let t =
                now.saturating_duration_since(self.t0).as_micros() as u64 * RATE as u64 / 1_000_000;
            t.saturating_sub(JITTER)
        };
        if upto <= self.flushed {
            return;
        }
        let n = (upto - self.flushed) as usize;
        let mut out = Vec::with_capacity(n * 4);
        for _ in 0..n {
            let l = self.bufs[0].pop_front().unwrap_or(0);
            let r = self.bufs[1].pop_front().unwrap_or(0);
            out.extend_from_slice(&l.to_le_bytes());
            out.extend_from_slice(&r.to_le_bytes());
        }
        if let Err(e) = self.file.write_all(&out) {
            tracing::warn!(error = %e, "recording: write failed");
        }
        self.flushed = upto;
        if self.flushed - self.header_at >= RATE as u64 {
            self.header_at = self.flushed;
            let _ = self.write_header();
        }
    }

    fn write_header(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let f = self.file.get_mut();
        let end = f.stream_position()?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&wav_header(self.flushed))?;
        f.seek(SeekFrom::Start(end))?;
        Ok(())
    }
}

/// Is `rel` a path the recorder could have written (`YYYY/MM/name.wav`, nothing that
/// climbs out of the recordings directory)?
pub fn safe_relative(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        && rel.ends_with(".wav")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// On demand: audio before the code is not recorded; `*1` (RFC 4733, each event's
    /// end packet sent three times) starts it; the file holds both channels from then on.
    #[test]
    fn feature_code_starts_an_on_demand_recording() {
        let dir = tempfile::tempdir().unwrap();
        let done = Arc::new(std::sync::Mutex::new(Vec::<Finished>::new()));
        let d = done.clone();
        let mut w = Writer::new(RecorderConfig {
            dir: dir.path().to_path_buf(),
            subdir: Arc::new(|| "2026/12".into()),
            done: Arc::new(move |f| d.lock().unwrap().push(f)),
            feature: FEATURE_CODE.into(),
        });
        let call: Arc<str> = Arc::from("c1");
        w.handle(Msg::Start(call.clone(), Recording::OnDemand));
        w.handle(Msg::Formats(
            call.clone(),
            vec![(0, "pcmu".into()), (101, "telephone-event".into())],
        ));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let send = |w: &mut Writer, ch: u8, ms: u64, data: Vec<u8>| {
            w.handle(Msg::Packet {
                call: call.clone(),
                ch,
                at: at(ms),
                data,
            })
        };
        // 1 s of audio both ways before the code: nothing recorded.
        for i in 0..50u32 {
            send(
                &mut w,
                0,
                i as u64 * 20,
                pkt(0, i as u16, i * 160, 1, &[0x80; 160]),
            );
            send(
                &mut w,
                1,
                i as u64 * 20,
                pkt(0, i as u16, i * 160, 2, &[0x00; 160]),
            );
        }
        for (k, ev) in [(0u32, 10u8), (1, 1)] {
            for _ in 0..3 {
                send(
                    &mut w,
                    0,
                    1000 + k as u64 * 200,
                    pkt(101, 0, 9000 + k * 1000, 1, &[ev, 0x80, 0, 160]),
                );
            }
        }
        for i in 60..110u32 {
            send(
                &mut w,
                0,
                i as u64 * 20,
                pkt(0, i as u16, i * 160, 1, &[0x80; 160]),
            );
            send(
                &mut w,
                1,
                i as u64 * 20,
                pkt(0, i as u16, i * 160, 2, &[0x00; 160]),
            );
        }
        w.handle(Msg::End(call.clone()));
        let got = done.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "2026/12/c1.wav");
        let ms = got[0].duration_ms;
        assert!((950..=1050).contains(&ms), "{ms} ms");
        let b = std::fs::read(dir.path().join("2026/12/c1.wav")).unwrap();
        assert_eq!(b.len() as i64, got[0].bytes);
        assert_eq!(
            u32::from_le_bytes([b[40], b[41], b[42], b[43]]) as usize,
            b.len() - 44
        );
        // Left 0x80 µ-law = 32124, right 0x00 = -32124.
        let mid = 44 + (b.len() - 44) / 2 / 4 * 4;
        assert_eq!(i16::from_le_bytes([b[mid], b[mid + 1]]), 32124);
        assert_eq!(i16::from_le_bytes([b[mid + 2], b[mid + 3]]), -32124);
    }

    #[test]
    fn g711_tables_match_the_reference_points() {
        assert_eq!(ULAW[0xff], 0);
        assert_eq!(ULAW[0x7f], 0);
        assert_eq!(ULAW[0x00], -32124);
        assert_eq!(ULAW[0x80], 32124);
        assert_eq!(ALAW[0xd5], 8);
        assert_eq!(ALAW[0x55], -8);
        assert_eq!(ALAW[0xaa], 32256);
        assert_eq!(ALAW[0x2a], -32256);
    }

    #[test]
    fn file_names_never_climb() {
        assert_eq!(file_stem("../../etc/passwd"), "c.._.._etc_passwd");
        assert_eq!(file_stem("abc@10.0.0.1"), "abc@10.0.0.1");
        assert!(!file_stem("").is_empty());
        assert!(safe_relative("2026/12/a.wav"));
        assert!(!safe_relative("../a.wav"));
        assert!(!safe_relative("/etc/a.wav"));
        assert!(!safe_relative("2026/12/a.txt"));
    }

    #[test]
    fn rtp_header_with_csrc_extension_and_padding() {
        let mut p = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[0, 0, 0, 9]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        p.extend_from_slice(&[0xff; 4]);
        p.extend_from_slice(&[0, 0, 3]); // padding of 3
        let r = rtp(&p).unwrap();
        assert_eq!((r.pt, r.ts, r.ssrc), (0, 160, 7));
        assert_eq!(r.payload, &[0xff; 4]);
        assert!(rtp(&[0x80, 0]).is_none());
    }
}
