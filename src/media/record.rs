//! Call recording: the relay copies each RTP packet of a recorded call into a bounded
//! channel (`try_send`: a full channel drops the copy, forwarding never waits) and one
//! writer thread turns them into a stereo WAV file, one channel per party (left: the
//! caller, right: the callee), PCM16.
//!
//! - G.711 µ-law and A-law are decoded by a 256-entry table each (the call itself is
//!   never transcoded); G.722 and Opus by the `audio-codec` crate (pure Rust), one
//!   decoder per channel. The file's rate is the first audio packet's codec's: 8 kHz
//!   for G.711, 16 kHz for G.722 and Opus (decoded at 16 kHz, the wideband rate the
//!   phones use); a codec change mid-call (re-INVITE) is converted to it (by repeating
//!   or averaging samples). Other codecs count as gaps (silence), and a call with no
//!   decodable audio leaves no file (the log says which codec it was).
//! - The answer: nothing before it is recorded. Early media (a 183's audio: the
//!   provider's ringback, its IVR, "the number is not reachable") is not the
//!   conversation, and an announcement can only be played once someone is there to
//!   hear it; so a recording, with an announcement or without, starts at the answer
//!   (a code or a button before it arms the recording for the answer).
//! - The announcement (`Gate`): with one configured, it starts playing at the answer
//!   (or when an answered on-demand call is armed) and the writer records nothing until
//!   it has played (the relay overlays it on what each party sends, see `relay`).
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sip::Recording;

/// The narrowband rate (G.711, the announcement).
pub const RATE: u32 = 8000;
/// The wideband rate (G.722, Opus).
pub const WIDE: u32 = 16000;
/// The feature code that starts an on-demand recording during a call.
pub const FEATURE_CODE: &str = "*1";
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

/// How the writer stores the recordings it starts from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// 16-bit PCM, stereo: every player opens it, at 128 kB a minute (8 kHz).
    #[default]
    Wav,
    /// Opus in Ogg (RFC 7845), stereo: about a tenth of the size (24 kbit/s at 8 kHz,
    /// 32 at 16 kHz); Chrome, Edge and Firefox play it, an older Safari does not.
    Opus,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Wav, Format::Opus];

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "wav" => Some(Format::Wav),
            "opus" => Some(Format::Opus),
            _ => None,
        }
    }

    /// The setting's value, which is also the files' extension (RFC 7845 names Ogg
    /// Opus files `.opus`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Wav => "wav",
            Format::Opus => "opus",
        }
    }

    /// The Content-Type a recording file with this name is served as.
    pub fn content_type_of(path: &str) -> &'static str {
        if path.ends_with(".opus") {
            "audio/ogg; codecs=opus"
        } else {
            "audio/wav"
        }
    }
}

pub(super) enum Msg {
    Start(Arc<str>, Recording, Arc<Gate>),
    /// Recordings started from now on are stored so.
    Format(Format),
    /// The call was answered (an all-calls recording plays its announcement now).
    Answered(Arc<str>),
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

/// A linear sample as µ-law (G.711, with the usual bias and clip).
pub fn encode_ulaw(s: i16) -> u8 {
    const END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut v = (s as i32) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(8159) + (0x84 >> 2);
    let seg = END.iter().position(|e| v <= *e).unwrap_or(8) as i32;
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    (((seg << 4) | ((v >> (seg + 1)) & 0xF)) as u8) ^ mask
}

/// A linear sample as A-law (G.711).
pub fn encode_alaw(s: i16) -> u8 {
    const END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = (s as i32) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = END.iter().position(|e| v <= *e).unwrap_or(8) as i32;
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let a = (seg << 4)
        | if seg < 2 {
            (v >> 1) & 0xF
        } else {
            (v >> seg) & 0xF
        };
    (a ^ mask) as u8
}

// ----- the announcement ---------------------------------------------------------------

/// The announcement before recording, encoded for each codec it is overlaid on: both
/// G.711 laws (8 kHz, a byte a sample) and G.722 (16 kHz sub-band ADPCM, a byte two
/// samples: the same 8000 bytes a second) byte for byte; Opus as whole 20 ms frames,
/// each replacing a packet's payload (Opus frames vary in size, so the packet's length
/// changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub ulaw: Vec<u8>,
    pub alaw: Vec<u8>,
    /// One continuous G.722 stream (the codec carries state from byte to byte), as long
    /// as the G.711 ones plus 20 ms of encoded silence to finish the last packet on.
    pub g722: Vec<u8>,
    /// One continuous Opus stream in 20 ms frames (one packet each, TOC byte first),
    /// mono wideband: any Opus decoder plays mono, whatever stereo its fmtp asked for.
    /// Frame `i` holds samples `160 i ..` of the 8 kHz prompt; the last one is silence.
    pub opus: Vec<Vec<u8>>,
}

/// 20 ms at the 8 kHz the prompt is counted in.
const FRAME: usize = RATE as usize / 50;
/// 20 ms at Opus's 48 kHz RTP clock.
const OPUS_FRAME: u32 = 960;

/// The duration of an Opus packet in 48 kHz samples, from its TOC byte and frame count
/// (RFC 6716, 3.1 and 3.2). None: no TOC, or a code 3 packet without its count byte.
fn opus_duration(p: &[u8]) -> Option<u32> {
    let toc = *p.first()?;
    let config = toc >> 3;
    let per_frame = match config {
        0..=11 => [480, 960, 1920, 2880][config as usize % 4],
        12..=15 => [480, 960][config as usize % 2],
        _ => [120, 240, 480, 960][config as usize % 4],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => (*p.get(1)? & 0x3f) as u32,
    };
    Some(per_frame * frames)
}

/// `frames` (each a one-frame packet with the same TOC) as one packet into `out`: itself
/// for one, else code 3 with explicit lengths (RFC 6716, 3.2.5). None, with `out`
/// untouched: their TOCs differ (one packet carries one configuration), a frame is
/// empty or too long, or `out` is too short.
fn opus_join(frames: &[&[u8]], out: &mut [u8]) -> Option<usize> {
    let toc = *frames.first()?.first()?;
    if frames.len() == 1 {
        let f = frames[0];
        out.get_mut(..f.len())?.copy_from_slice(f);
        return Some(f.len());
    }
    if frames.len() > 48
        || frames
            .iter()
            .any(|f| f.first() != Some(&toc) || f.len() > 1276)
    {
        return None;
    }
    // Each frame but the last is preceded by its length: one byte below 252, else two.
    let lens: usize = frames[..frames.len() - 1]
        .iter()
        .map(|f| if f.len() - 1 < 252 { 1 } else { 2 })
        .sum();
    let total = 2 + lens + frames.iter().map(|f| f.len() - 1).sum::<usize>();
    let out = out.get_mut(..total)?;
    out[0] = (toc & 0xfc) | 3;
    out[1] = 0x80 | frames.len() as u8; // VBR, no padding
    let mut at = 2;
    for f in &frames[..frames.len() - 1] {
        let n = f.len() - 1;
        if n < 252 {
            out[at] = n as u8;
            at += 1;
        } else {
            let lo = 252 + (n - 252) % 4;
            out[at] = lo as u8;
            out[at + 1] = ((n - lo) / 4) as u8;
            at += 2;
        }
    }
    for f in frames {
        out[at..at + f.len() - 1].copy_from_slice(&f[1..]);
        at += f.len() - 1;
    }
    Some(at)
}

/// Why an uploaded announcement is refused (each has its catalogue message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptError {
    /// Not a RIFF/WAVE file with a `fmt ` and a `data` chunk.
    NotWav,
    /// Not 8 kHz mono 16-bit PCM.
    Format,
    /// Empty, or longer than [`Prompt::MAX_SECS`].
    Length,
}

impl PromptError {
    pub fn key(self) -> &'static str {
        match self {
            PromptError::NotWav => "recording.err.announce_wav",
            PromptError::Format => "recording.err.announce_format",
            PromptError::Length => "recording.err.announce_length",
        }
    }
}

impl Prompt {
    /// Longest announcement accepted.
    pub const MAX_SECS: usize = 30;

    pub fn from_pcm(pcm: &[i16]) -> Prompt {
        use audio_codec::Encoder;
        // 8 kHz to 16 kHz: each sample, then the midpoint to the next one.
        let mut wide = Vec::with_capacity(pcm.len() * 2 + 2 * WIDE as usize / 50);
        for (i, s) in pcm.iter().enumerate() {
            let next = pcm.get(i + 1).copied().unwrap_or(0);
            wide.push(*s);
            wide.push(((*s as i32 + next as i32) / 2) as i16);
        }
        wide.resize(wide.len() + WIDE as usize / 50, 0);
        let g722 = audio_codec::g722::G722Encoder::new().encode(&wide);
        // Opus: 16 kHz mono (the prompt is 8 kHz: more would add nothing), constant
        // bitrate (every frame the same size, one configuration throughout).
        let per = WIDE as usize / 50;
        wide.resize(wide.len().div_ceil(per) * per, 0);
        let mut enc = audio_codec::opus::OpusEncoder::new(WIDE, 1);
        enc.set_bitrate(24_000);
        let opus = wide.chunks_exact(per).map(|f| enc.encode(f)).collect();
        Prompt {
            ulaw: pcm.iter().map(|s| encode_ulaw(*s)).collect(),
            alaw: pcm.iter().map(|s| encode_alaw(*s)).collect(),
            g722,
            opus,
        }
    }

    /// The beep: 0.5 s of 1400 Hz at about -12 dBFS, faded in and out over 10 ms (no
    /// click).
    pub fn beep() -> Prompt {
        let n = RATE as usize / 2;
        let fade = RATE as usize / 100;
        let pcm: Vec<i16> = (0..n)
            .map(|i| {
                let g = (i.min(n - 1 - i) as f64 / fade as f64).min(1.0);
                let t = i as f64 / RATE as f64;
                (f64::sin(2.0 * std::f64::consts::PI * 1400.0 * t) * 8000.0 * g) as i16
            })
            .collect();
        Prompt::from_pcm(&pcm)
    }

    /// An uploaded announcement: a WAV file of 8 kHz mono 16-bit PCM, at most
    /// [`Prompt::MAX_SECS`] long; anything else is refused (never resampled, so what
    /// the admin uploaded is what callers hear).
    pub fn from_wav(b: &[u8]) -> Result<Prompt, PromptError> {
        if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
            return Err(PromptError::NotWav);
        }
        let (mut fmt, mut data) = (None, None);
        let mut at = 12;
        while at + 8 <= b.len() {
            let id = &b[at..at + 4];
            let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
            let body = &b[at + 8..(at + 8).saturating_add(len).min(b.len())];
            match id {
                b"fmt " => fmt = Some(body),
                b"data" => data = Some(body),
                _ => {}
            }
            at = at + 8 + len + (len & 1);
        }
        let (Some(f), Some(d)) = (fmt, data) else {
            return Err(PromptError::NotWav);
        };
        if f.len() < 16 {
            return Err(PromptError::NotWav);
        }
        let u16at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
        let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
        if u16at(0) != 1 || u16at(2) != 1 || rate != RATE || u16at(14) != 16 {
            return Err(PromptError::Format);
        }
        let n = d.len() / 2;
        if n == 0 || n > Self::MAX_SECS * RATE as usize {
            return Err(PromptError::Length);
        }
        let pcm: Vec<i16> = d
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(Prompt::from_pcm(&pcm))
    }

    fn len(&self) -> usize {
        self.ulaw.len()
    }
}

/// Extra time an announcement may take over its length before recording starts anyway
/// (a party that sends nothing, or a codec it is not overlaid on, never consumes its
/// copy).
const PROMPT_GRACE_MS: u64 = 1000;

/// The announcement of one recorded call, shared by the relay's tasks of its streams
/// (which overlay it on what each party sends, so the other one hears it) and the
/// writer (which records only once it has played). Without a prompt it is always open.
pub struct Gate {
    prompt: Option<Arc<Prompt>>,
    epoch: Instant,
    /// ms since `epoch` + 1 when it started playing; 0: not yet.
    started: AtomicU64,
    /// Samples overlaid on what each end sent.
    played: [AtomicUsize; 2],
    /// It has played (or timed out): the hot path's one check after that.
    over: AtomicBool,
    /// The payload types the call's bodies map to Opus (a bit each, 0 to 127).
    opus: [AtomicU64; 2],
    /// Wakes the relay's silence fillers when it starts playing.
    begun: tokio::sync::Notify,
}

/// Where a party's stream stood when the relay last passed on (or filled in) a packet of
/// its audio while the announcement played: enough to send the next one in its place
/// when the party falls silent (see [`Gate::fill`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Cadence {
    /// When that packet came (a filler: when it was due).
    at: Instant,
    /// Its header as sent on: sequence number, timestamp, SSRC, payload type.
    pub(super) seq: u16,
    ts: u32,
    ssrc: u32,
    pt: u8,
    /// The audio one packet holds, in time and in timestamp units.
    every: Duration,
    ts_step: u32,
    /// The payload length of a G.711 or G.722 filler (the party's own).
    len: usize,
    /// The relay is filling in for the party now (it missed a packet's time).
    filling: bool,
}

impl Cadence {
    /// When the relay sends the next packet in the party's place: once it has missed one
    /// packet's time beyond the one due (jitter is not silence), then each on time.
    fn due(&self) -> Instant {
        self.at
            + if self.filling {
                self.every
            } else {
                2 * self.every
            }
    }
}

/// A 20 ms Opus frame's TOC byte (CELT fullband, one frame): a filler's placeholder
/// payload, which `overlay_opus` replaces with one frame of the prompt.
const OPUS_20MS_TOC: u8 = 31 << 3;

impl Gate {
    pub fn new(prompt: Option<Arc<Prompt>>) -> Gate {
        Gate {
            prompt,
            epoch: Instant::now(),
            started: AtomicU64::new(0),
            played: Default::default(),
            over: AtomicBool::new(false),
            opus: Default::default(),
            begun: tokio::sync::Notify::new(),
        }
    }

    pub fn has_prompt(&self) -> bool {
        self.prompt.is_some()
    }

    /// Returns once it has started playing (never without a prompt).
    pub async fn started(&self) {
        loop {
            let wake = self.begun.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if self.started.load(Ordering::Acquire) != 0 {
                return;
            }
            wake.await;
        }
    }

    /// The formats of a body of the call (payload type, lower-case encoding name):
    /// Opus's dynamic payload types are learnt here.
    pub fn formats(&self, f: &[(u8, String)]) {
        for (pt, name) in f {
            if name == "opus" && *pt < 128 {
                self.opus[(*pt >> 6) as usize].fetch_or(1 << (pt & 63), Ordering::Relaxed);
            }
        }
    }

    fn is_opus(&self, pt: u8) -> bool {
        self.opus[(pt >> 6) as usize & 1].load(Ordering::Relaxed) & (1 << (pt & 63)) != 0
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Starts playing (once; nothing without a prompt).
    pub fn start(&self) {
        if self.prompt.is_some()
            && self
                .started
                .compare_exchange(0, self.now_ms(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.begun.notify_waiters();
        }
    }

    /// Has it played (true at once without a prompt)?
    pub fn done(&self) -> bool {
        let Some(p) = &self.prompt else { return true };
        if self.over.load(Ordering::Acquire) {
            return true;
        }
        let s = self.started.load(Ordering::Acquire);
        if s == 0 {
            return false;
        }
        let len = p.len();
        let played = self.played.iter().all(|n| n.load(Ordering::Relaxed) >= len);
        let late = self.now_ms() > s + (len as u64 * 1000 / RATE as u64) + PROMPT_GRACE_MS;
        if played || late {
            self.over.store(true, Ordering::Release);
            return true;
        }
        false
    }

    /// Is it playing now (the relay overlays it)?
    pub fn playing(&self) -> bool {
        !self.over.load(Ordering::Relaxed)
            && self.started.load(Ordering::Relaxed) != 0
            && !self.done()
    }

    /// Overlays the next part of the prompt on the RTP packet `buf[..n]` from the party of
    /// `end` (in place: same sequence number, timestamp, SSRC and marker, so the far
    /// phone plays it as that party's audio). G.711 and G.722 (static payload types 0, 8
    /// and 9) byte for byte; Opus (the payload types of [`Gate::formats`]) by replacing
    /// the payload with as many 20 ms frames as the packet held (its padding dropped),
    /// which changes the length: `buf` is the whole receive buffer. Other codecs, and
    /// Opus packets that are not a multiple of 20 ms, pass unchanged. Some(new length)
    /// when it overlaid (the packet is then not recorded: the writer may see it after
    /// the gate opened).
    pub fn overlay(&self, end: usize, buf: &mut [u8], n: usize) -> Option<usize> {
        let p = self.prompt.as_ref()?;
        let b = buf.get_mut(..n)?;
        let (pt, range) = payload_range(b)?;
        let (src, quiet) = match pt {
            0 => (&p.ulaw, 0xFF),
            8 => (&p.alaw, 0xD5),
            9 => (&p.g722, p.g722.last().copied().unwrap_or(0xFF)),
            _ if self.is_opus(pt) => return self.overlay_opus(end, p, buf, range),
            _ => return None,
        };
        let payload = &mut b[range];
        let at = self.played[end & 1].fetch_add(payload.len(), Ordering::Relaxed);
        for (i, out) in payload.iter_mut().enumerate() {
            *out = src.get(at + i).copied().unwrap_or(quiet);
        }
        Some(n)
    }

    fn overlay_opus(
        &self,
        end: usize,
        p: &Prompt,
        buf: &mut [u8],
        range: std::ops::Range<usize>,
    ) -> Option<usize> {
        let last = p.opus.last()?;
        let dur = opus_duration(&buf[range.clone()])?;
        if dur == 0 || dur % OPUS_FRAME != 0 || dur / OPUS_FRAME > 6 {
            return None;
        }
        let k = (dur / OPUS_FRAME) as usize;
        let at = self.played[end & 1].fetch_add(k * FRAME, Ordering::Relaxed) / FRAME;
        let frames: Vec<&[u8]> = (at..at + k)
            .map(|i| p.opus.get(i).unwrap_or(last).as_slice())
            .collect();
        let len = opus_join(&frames, &mut buf[range.start..])?;
        buf[0] &= !0x20; // the padding went with the old payload
        Some(range.start + len)
    }

    /// The cadence of `pkt`, a packet of a party's audio just overlaid and passed on at
    /// `at`. G.711 and G.722 (8000 timestamp units a second, a byte each) keep their
    /// packets' length; Opus is filled in 20 ms frames.
    pub(super) fn cadence(&self, pkt: &[u8], at: Instant) -> Option<Cadence> {
        let p = rtp(pkt)?;
        let (every, ts_step, len) = match p.pt {
            0 | 8 | 9 if !p.payload.is_empty() => {
                let len = p.payload.len();
                (Duration::from_micros(len as u64 * 125), len as u32, len)
            }
            _ if self.is_opus(p.pt) => (Duration::from_millis(20), 960, 1),
            _ => return None,
        };
        Some(Cadence {
            at,
            seq: p.seq,
            ts: p.ts,
            ssrc: p.ssrc,
            pt: p.pt,
            every,
            ts_step,
            len,
            filling: false,
        })
    }

    /// The packet the party of `end` did not send by `now`, in `buf`: the next sequence
    /// number and timestamp of its stream (same SSRC and payload type), carrying the
    /// next part of the prompt. Some(length), and `c` moves on to it; None: nothing is
    /// due yet.
    pub(super) fn fill(
        &self,
        end: usize,
        c: &mut Cadence,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<usize> {
        if now < c.due() {
            return None;
        }
        let (seq, ts) = (c.seq.wrapping_add(1), c.ts.wrapping_add(c.ts_step));
        let head = buf.get_mut(..12 + c.len)?;
        head[0] = 0x80;
        head[1] = c.pt & 0x7f;
        head[2..4].copy_from_slice(&seq.to_be_bytes());
        head[4..8].copy_from_slice(&ts.to_be_bytes());
        head[8..12].copy_from_slice(&c.ssrc.to_be_bytes());
        head[12] = OPUS_20MS_TOC; // G.711 and G.722: overwritten by the overlay
        let n = self.overlay(end, buf, 12 + c.len)?;
        c.at += c.every;
        (c.seq, c.ts, c.filling) = (seq, ts, true);
        Some(n)
    }
}

// ----- RTP ----------------------------------------------------------------------------

pub(super) struct Rtp<'a> {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

pub(super) fn rtp(b: &[u8]) -> Option<Rtp<'_>> {
    let (pt, range) = payload_range(b)?;
    Some(Rtp {
        pt,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: &b[range],
    })
}

/// Moves an RTP packet's sequence number on by `by` (anything else is left alone).
pub(super) fn renumber(b: &mut [u8], by: u16) {
    if b.len() >= 12 && b[0] >> 6 == 2 {
        let seq = u16::from_be_bytes([b[2], b[3]]).wrapping_add(by);
        b[2..4].copy_from_slice(&seq.to_be_bytes());
    }
}

/// The payload type and where the payload lies in an RTP packet.
fn payload_range(b: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
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
    (off <= end).then_some((b[1] & 0x7f, off..end))
}

// ----- decoding -----------------------------------------------------------------------

/// The codecs the recorder decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Ulaw,
    Alaw,
    G722,
    Opus,
}

impl Codec {
    fn of(name: &str) -> Option<Codec> {
        Some(match name {
            "pcmu" => Codec::Ulaw,
            "pcma" => Codec::Alaw,
            "g722" => Codec::G722,
            "opus" => Codec::Opus,
            _ => return None,
        })
    }

    /// The RTP timestamp clock (G.722's is 8 kHz by RFC 3551's old mistake).
    fn clock(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => RATE,
        }
    }

    /// The rate it decodes to.
    fn rate(self) -> u32 {
        match self {
            Codec::Ulaw | Codec::Alaw => RATE,
            Codec::G722 | Codec::Opus => WIDE,
        }
    }
}

/// One channel's decoder of a stateful codec.
enum Dec {
    G722(Box<audio_codec::g722::G722Decoder>),
    Opus(Box<audio_codec::opus::OpusDecoder>),
}

impl Dec {
    fn new(c: Codec) -> Option<Dec> {
        match c {
            Codec::G722 => Some(Dec::G722(Box::default())),
            Codec::Opus => Some(Dec::Opus(Box::new(audio_codec::opus::OpusDecoder::new(
                WIDE, 1,
            )))),
            _ => None,
        }
    }

    fn codec(&self) -> Codec {
        match self {
            Dec::G722(_) => Codec::G722,
            Dec::Opus(_) => Codec::Opus,
        }
    }
}

/// Decodes one payload to mono samples at `c.rate()`.
fn decode(c: Codec, dec: &mut Option<Dec>, payload: &[u8]) -> Vec<i16> {
    use audio_codec::Decoder;
    match c {
        Codec::Ulaw => payload.iter().map(|b| ULAW[*b as usize]).collect(),
        Codec::Alaw => payload.iter().map(|b| ALAW[*b as usize]).collect(),
        _ => {
            if dec.as_ref().map(Dec::codec) != Some(c) {
                *dec = Dec::new(c);
            }
            match dec {
                Some(Dec::G722(d)) => d.decode(payload),
                Some(Dec::Opus(d)) => {
                    let stereo = payload.first().is_some_and(|t| t & 0x04 != 0);
                    let mut out = vec![0i16; WIDE as usize / 50 * 2];
                    let n = d.decode_into_raw(payload, &mut out);
                    out.truncate(n);
                    if stereo {
                        out.chunks_exact(2)
                            .map(|p| ((p[0] as i32 + p[1] as i32) / 2) as i16)
                            .collect()
                    } else {
                        out
                    }
                }
                None => Vec::new(),
            }
        }
    }
}

/// `pcm` at rate `from` as rate `to` (8 and 16 kHz: repeat or average).
fn convert(pcm: Vec<i16>, from: u32, to: u32) -> Vec<i16> {
    if from == to {
        pcm
    } else if from < to {
        pcm.iter().flat_map(|s| [*s, *s]).collect()
    } else {
        pcm.chunks(2)
            .map(|p| (p.iter().map(|s| *s as i32).sum::<i32>() / p.len() as i32) as i16)
            .collect()
    }
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

fn wav_header(frames: u64, rate: u32) -> [u8; 44] {
    let data = (frames * 4).min(u32::MAX as u64 - 36) as u32;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // stereo
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 4).to_le_bytes());
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
    /// The RTP clock of the codec it was taken with (a codec change re-anchors).
    clock: u32,
    ts: u32,
    pos: i64,
}

struct Open {
    sink: Sink,
    rel: String,
    full: PathBuf,
    /// Frames a second (by the first audio packet's codec).
    rate: u32,
    /// Instant of frame 0, and its wall time.
    t0: Instant,
    started_ms: i64,
    /// Frames written to the file.
    flushed: u64,
    /// Frames from `flushed` on, per channel (None: nothing there yet).
    bufs: [VecDeque<i16>; 2],
    anchors: [Option<Anchor>; 2],
    /// Frames of audio placed.
    audio: u64,
}

struct Rec {
    how: Recording,
    /// Recording was asked for (from the start, by the code or the button); the file
    /// opens with the first audio packet after that and the answer.
    armed: bool,
    /// The call was answered: media before it (early media: the provider's ringback,
    /// its IVR or "the number is not reachable") is never recorded.
    answered: bool,
    open: Option<Open>,
    formats: HashMap<u8, String>,
    /// The last telephone-event timestamp seen per channel, and the digits so far.
    events: [Option<u32>; 2],
    digits: String,
    /// A codec that could not be decoded.
    skipped: Option<String>,
    /// The announcement before recording.
    gate: Arc<Gate>,
    /// Each channel's decoder (G.722, Opus).
    decs: [Option<Dec>; 2],
}

impl Rec {
    /// Recording is asked for: the announcement plays now, or at the answer.
    fn arm(&mut self) {
        self.armed = true;
        if self.answered {
            self.gate.start();
        }
    }
}

struct Writer {
    cfg: RecorderConfig,
    calls: HashMap<Arc<str>, Rec>,
    format: Format,
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
            format: Format::default(),
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
            Msg::Start(call, how, gate) => {
                let r = self.calls.entry(call).or_insert_with(|| Rec {
                    how,
                    armed: false,
                    answered: false,
                    open: None,
                    formats: HashMap::new(),
                    events: [None; 2],
                    digits: String::new(),
                    skipped: None,
                    gate,
                    decs: [None, None],
                });
                r.how = r.how.max(how);
                if how == Recording::All {
                    r.armed = true;
                }
            }
            Msg::Answered(call) => {
                if let Some(r) = self.calls.get_mut(&call) {
                    r.answered = true;
                    if r.armed {
                        r.gate.start();
                    }
                }
            }
            Msg::Formats(call, f) => {
                if let Some(r) = self.calls.get_mut(&call) {
                    r.formats.extend(f);
                }
            }
            Msg::Now(call) => {
                if let Some(r) = self.calls.get_mut(&call) {
                    r.arm();
                }
            }
            Msg::Packet { call, ch, at, data } => self.packet(&call, ch as usize, at, &data),
            Msg::End(call) => self.end(&call),
            Msg::Format(f) => self.format = f,
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
                        r.arm();
                        tracing::info!(call = %call, "recording started by the feature code");
                    }
                }
            }
            return;
        }
        if !r.armed || !r.answered || !r.gate.done() {
            return;
        }
        let c = match Codec::of(codec) {
            Some(c) => c,
            None => {
                let other = codec;
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
        let pcm = decode(c, &mut r.decs[ch], p.payload);
        if pcm.is_empty() {
            return;
        }
        if r.open.is_none() {
            match open_file(&self.cfg, call, at, c.rate(), self.format) {
                Ok(o) => r.open = Some(o),
                Err(e) => {
                    tracing::warn!(call = %call, error = %e, "recording: cannot create the file");
                    r.armed = false;
                    return;
                }
            }
        }
        let Some(o) = r.open.as_mut() else { return };
        let rate = o.rate as i64;
        let place =
            |a: &Anchor| a.pos + p.ts.wrapping_sub(a.ts) as i32 as i64 * rate / a.clock as i64;
        let arrival = (at.saturating_duration_since(o.t0).as_micros() as i64) * rate / 1_000_000;
        let a = match o.anchors[ch] {
            Some(a) if a.ssrc == p.ssrc && a.clock == c.clock() => {
                let pos = place(&a);
                // Re-anchor when timestamps stray half a second from arrival.
                if (pos - arrival).abs() > rate / 2 {
                    None
                } else {
                    Some(a)
                }
            }
            _ => None,
        };
        let a = a.unwrap_or(Anchor {
            ssrc: p.ssrc,
            clock: c.clock(),
            ts: p.ts,
            pos: arrival,
        });
        o.anchors[ch] = Some(a);
        let pos = place(&a);
        if pos < o.flushed as i64 {
            return; // too late: already written
        }
        let pcm = convert(pcm, c.rate(), o.rate);
        let off = (pos as u64 - o.flushed) as usize;
        let buf = &mut o.bufs[ch];
        let need = off + pcm.len();
        if buf.len() < need {
            buf.resize(need, 0);
        }
        for (i, v) in pcm.iter().enumerate() {
            buf[off + i] = *v;
        }
        o.audio += pcm.len() as u64;
        o.flush_until(at, false);
    }

    fn end(&mut self, call: &Arc<str>) {
        let Some(r) = self.calls.remove(call) else {
            return;
        };
        let Some(mut o) = r.open else {
            if let Some(c) = r.skipped.filter(|_| r.armed) {
                tracing::warn!(call = %call, codec = %c, "recording: no audio it can decode, nothing recorded");
            }
            return;
        };
        o.flush_until(Instant::now(), true);
        let frames = o.flushed;
        let ok = o.sink.finish(frames, o.rate);
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
            duration_ms: (frames * 1000 / o.rate as u64) as i64,
            bytes,
        });
    }
}

fn open_file(
    cfg: &RecorderConfig,
    call: &str,
    at: Instant,
    rate: u32,
    format: Format,
) -> std::io::Result<Open> {
    let sub = (cfg.subdir)();
    let dir = cfg.dir.join(&sub);
    std::fs::create_dir_all(&dir)?;
    let stem = file_stem(call);
    let ext = format.as_str();
    let mut name = format!("{stem}.{ext}");
    let mut n = 1;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("{stem}-{n}.{ext}");
    }
    let full = dir.join(&name);
    let file = BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)?,
    );
    let sink = Sink::new(format, file, rate, n as u32)?;
    let back = Instant::now().saturating_duration_since(at);
    Ok(Open {
        sink,
        rel: format!("{sub}/{name}"),
        full,
        rate,
        t0: at,
        started_ms: unix_ms() - back.as_millis() as i64,
        flushed: 0,
        bufs: [VecDeque::new(), VecDeque::new()],
        anchors: [None; 2],
        audio: 0,
    })
}

impl Open {
    /// Writes the frames older than the jitter allowance at `now` (all: everything).
    fn flush_until(&mut self, now: Instant, all: bool) {
        let upto = if all {
            self.flushed + self.bufs[0].len().max(self.bufs[1].len()) as u64
        } else {
            // One second is kept open for late packets.
            let t = now.saturating_duration_since(self.t0).as_micros() as u64 * self.rate as u64
                / 1_000_000;
            t.saturating_sub(self.rate as u64)
        };
        if upto <= self.flushed {
            return;
        }
        let n = (upto - self.flushed) as usize;
        let mut frames = Vec::with_capacity(n * 2);
        for _ in 0..n {
            frames.push(self.bufs[0].pop_front().unwrap_or(0));
            frames.push(self.bufs[1].pop_front().unwrap_or(0));
        }
        self.flushed = upto;
        if let Err(e) = self.sink.write(&frames, self.flushed, self.rate) {
            tracing::warn!(error = %e, "recording: write failed");
        }
    }
}

/// A recording's file, in its format.
enum Sink {
    /// Its header's sizes are rewritten after each second of audio, so a file cut off by
    /// a crash still plays up to there.
    Wav {
        file: BufWriter<File>,
        header_at: u64,
    },
    Opus(Box<OggOpus>),
}

impl Sink {
    fn new(
        format: Format,
        mut file: BufWriter<File>,
        rate: u32,
        serial: u32,
    ) -> std::io::Result<Sink> {
        Ok(match format {
            Format::Wav => {
                file.write_all(&wav_header(0, rate))?;
                Sink::Wav { file, header_at: 0 }
            }
            Format::Opus => Sink::Opus(Box::new(OggOpus::new(file, rate, serial)?)),
        })
    }

    /// Appends interleaved stereo `frames`; `flushed`: frames in the file after them.
    fn write(&mut self, frames: &[i16], flushed: u64, rate: u32) -> std::io::Result<()> {
        match self {
            Sink::Wav { file, header_at } => {
                let out: Vec<u8> = frames.iter().flat_map(|s| s.to_le_bytes()).collect();
                file.write_all(&out)?;
                if flushed - *header_at >= rate as u64 {
                    *header_at = flushed;
                    wav_sizes(file, flushed, rate)?;
                }
                Ok(())
            }
            Sink::Opus(o) => o.push(frames),
        }
    }

    /// Completes the file: `frames` in all.
    fn finish(self, frames: u64, rate: u32) -> std::io::Result<()> {
        match self {
            Sink::Wav { mut file, .. } => {
                wav_sizes(&mut file, frames, rate)?;
                file.flush()
            }
            Sink::Opus(o) => o.finish(),
        }
    }
}

fn wav_sizes(file: &mut BufWriter<File>, frames: u64, rate: u32) -> std::io::Result<()> {
    file.flush()?;
    let f = file.get_mut();
    let end = f.stream_position()?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&wav_header(frames, rate))?;
    f.seek(SeekFrom::Start(end))?;
    Ok(())
}

/// Samples at 48 kHz a decoder drops at the start (RFC 7845 pre-skip): the encoder's
/// look-ahead, 6.5 ms.
const OPUS_PRE_SKIP: u64 = 312;
/// 20 ms packets, a page a second: a file cut off by a crash plays up to its last page.
const OGG_PACKETS_PER_PAGE: u32 = 50;

/// An Opus-in-Ogg writer (RFC 7845): the `ogg` crate makes the pages (framing, CRC);
/// the frames are encoded here, 20 ms of both channels at a time.
struct OggOpus {
    pages: ogg::writing::PacketWriter<'static, BufWriter<File>>,
    enc: audio_codec::opus::OpusEncoder,
    serial: u32,
    rate: u32,
    /// Interleaved samples short of a whole packet.
    pending: Vec<i16>,
    /// Frames (per channel) given to it, and packets on the current page.
    frames: u64,
    on_page: u32,
    packet: Vec<u8>,
}

impl OggOpus {
    fn new(file: BufWriter<File>, rate: u32, serial: u32) -> std::io::Result<OggOpus> {
        use ogg::writing::PacketWriteEndInfo::EndPage;
        let mut pages = ogg::writing::PacketWriter::new(file);
        let mut head = b"OpusHead".to_vec();
        head.push(1); // version
        head.push(2); // channels
        head.extend_from_slice(&(OPUS_PRE_SKIP as u16).to_le_bytes());
        head.extend_from_slice(&rate.to_le_bytes()); // the input's rate
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo
        pages.write_packet(head, serial, EndPage, 0)?;
        let vendor = concat!("crm ", env!("CARGO_PKG_VERSION"));
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no comments
        pages.write_packet(tags, serial, EndPage, 0)?;
        let mut enc = audio_codec::opus::OpusEncoder::new(rate, 2);
        enc.set_bitrate(if rate >= WIDE { 32_000 } else { 24_000 });
        // Complexity 1: 68 µs a 20 ms stereo frame at 8 kHz on this box against 564 at
        // 10 (the same 60 bytes a frame): a recorded call costs the writer 0.34 % of a
        // core, not 2.8 %, and telephone speech loses nothing a listener would hear.
        enc.set_complexity(1);
        Ok(OggOpus {
            pages,
            enc,
            serial,
            rate,
            pending: Vec::new(),
            frames: 0,
            on_page: 0,
            packet: vec![0; 4000],
        })
    }

    /// The granule position after `frames` frames: 48 kHz samples, pre-skip included.
    fn granule(&self, frames: u64) -> u64 {
        OPUS_PRE_SKIP + frames * 48_000 / self.rate as u64
    }

    /// Interleaved samples in a 20 ms packet.
    fn per_packet(&self) -> usize {
        2 * (self.rate as usize / 50)
    }

    fn push(&mut self, frames: &[i16]) -> std::io::Result<()> {
        use ogg::writing::PacketWriteEndInfo::{EndPage, NormalPacket};
        self.pending.extend_from_slice(frames);
        let per = self.per_packet();
        let mut at = 0;
        while self.pending.len() - at >= per {
            let n = self.encode(at, per)?;
            self.frames += per as u64 / 2;
            self.on_page += 1;
            let end = if self.on_page >= OGG_PACKETS_PER_PAGE {
                self.on_page = 0;
                EndPage
            } else {
                NormalPacket
            };
            let g = self.granule(self.frames);
            self.pages
                .write_packet(self.packet[..n].to_vec(), self.serial, end, g)?;
            at += per;
        }
        self.pending.drain(..at);
        Ok(())
    }

    fn encode(&mut self, at: usize, per: usize) -> std::io::Result<usize> {
        self.enc
            .encode_into_raw(&self.pending[at..at + per], &mut self.packet)
            .filter(|n| *n > 0)
            .ok_or_else(|| std::io::Error::other("opus: the encoder refused a frame"))
    }

    /// The last packet (the rest, padded with silence), marked as the stream's end with
    /// the true length, so players trim the padding.
    fn finish(mut self) -> std::io::Result<()> {
        use ogg::writing::PacketWriteEndInfo::EndStream;
        let per = self.per_packet();
        let real = self.frames + self.pending.len() as u64 / 2;
        self.pending.resize(per, 0);
        let n = self.encode(0, per)?;
        let g = self.granule(real);
        self.pages
            .write_packet(self.packet[..n].to_vec(), self.serial, EndStream, g)?;
        self.pages.into_inner().flush()
    }
}

/// Is `rel` a path the recorder could have written (`YYYY/MM/name.wav` or `.opus`, nothing that
/// climbs out of the recordings directory)?
pub fn safe_relative(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        && Format::ALL
            .iter()
            .any(|f| rel.ends_with(&format!(".{}", f.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer into `dir` and the list its finished recordings land in.
    fn writer(dir: &std::path::Path) -> (Writer, Arc<std::sync::Mutex<Vec<Finished>>>) {
        let done = Arc::new(std::sync::Mutex::new(Vec::<Finished>::new()));
        let d = done.clone();
        let w = Writer::new(RecorderConfig {
            dir: dir.to_path_buf(),
            subdir: Arc::new(|| "2026/12".into()),
            done: Arc::new(move |f| d.lock().unwrap().push(f)),
            feature: FEATURE_CODE.into(),
        });
        (w, done)
    }

    /// Call `id`, recorded from the start without an announcement, its body mapping
    /// payload type `format.0` to `format.1`, answered.
    fn answered_recording(w: &mut Writer, id: &str, format: (u8, &str)) -> Arc<str> {
        let call: Arc<str> = Arc::from(id);
        w.handle(Msg::Start(
            call.clone(),
            Recording::All,
            Arc::new(Gate::new(None)),
        ));
        w.handle(Msg::Formats(
            call.clone(),
            vec![(format.0, format.1.into())],
        ));
        w.handle(Msg::Answered(call.clone()));
        call
    }

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
        let (mut w, done) = writer(dir.path());
        let call: Arc<str> = Arc::from("c1");
        w.handle(Msg::Start(
            call.clone(),
            Recording::OnDemand,
            Arc::new(Gate::new(None)),
        ));
        w.handle(Msg::Formats(
            call.clone(),
            vec![(0, "pcmu".into()), (101, "telephone-event".into())],
        ));
        w.handle(Msg::Answered(call.clone()));
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

    /// Early media (audio before the answer: a 183's ringback or IVR) is never recorded,
    /// whether an announcement is set or not: an all-calls recording starts at the
    /// answer (after the announcement, with one), and a feature code typed during early
    /// media arms an on-demand one whose announcement waits for the answer too.
    #[test]
    fn early_media_is_not_recorded_with_or_without_an_announcement() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, done) = writer(dir.path());
        let t0 = Instant::now();
        // (call, policy, announcement)
        let cases = [
            ("plain", Recording::All, None),
            ("beep", Recording::All, Some(Arc::new(Prompt::beep()))),
            ("code", Recording::OnDemand, Some(Arc::new(Prompt::beep()))),
        ];
        for (id, how, prompt) in cases {
            let call: Arc<str> = Arc::from(id);
            let gate = Arc::new(Gate::new(prompt.clone()));
            w.handle(Msg::Start(call.clone(), how, gate.clone()));
            w.handle(Msg::Formats(
                call.clone(),
                vec![(0, "pcmu".into()), (101, "telephone-event".into())],
            ));
            let send = |w: &mut Writer, ch: u8, i: u32, byte: u8| {
                w.handle(Msg::Packet {
                    call: call.clone(),
                    ch,
                    at: t0 + Duration::from_millis(i as u64 * 20),
                    data: pkt(0, i as u16, i * 160, 1 + ch as u32, &[byte; 160]),
                })
            };
            // One second of early media from the callee (ringback: µ-law 0x90), the
            // caller silent; an on-demand call's code is typed meanwhile.
            for i in 0..50u32 {
                send(&mut w, 0, i, 0xFF);
                send(&mut w, 1, i, 0x90);
            }
            if how == Recording::OnDemand {
                for (k, ev) in [(0u32, 10u8), (1, 1)] {
                    w.handle(Msg::Packet {
                        call: call.clone(),
                        ch: 0,
                        at: t0 + Duration::from_millis(500 + k as u64 * 200),
                        data: pkt(101, 0, 4000 + k * 1000, 1, &[ev, 0x80, 0, 160]),
                    });
                }
            }
            assert!(!gate.playing(), "{id}: no announcement before the answer");
            w.handle(Msg::Answered(call.clone()));
            assert_eq!(gate.playing(), prompt.is_some(), "{id}");
            // What the relay does while the announcement plays: each end's packets
            // carry the prompt (and are not recorded), until both had all of it.
            let mut i = 50;
            if prompt.is_some() {
                while gate.playing() {
                    for end in 0..2 {
                        let mut p = pkt(0, i as u16, i * 160, 1 + end as u32, &[0; 160]);
                        assert!(gate.overlay(end, &mut p, 172).is_some(), "{id}");
                    }
                    i += 1;
                }
            }
            // Then one second of conversation (the callee: µ-law 0x10).
            for k in i..i + 50 {
                send(&mut w, 0, k, 0xFF);
                send(&mut w, 1, k, 0x10);
            }
            w.handle(Msg::End(call.clone()));
            let got = done.lock().unwrap().clone();
            let f = got.iter().find(|f| f.call == id).expect(id);
            assert!(
                (950..=1050).contains(&f.duration_ms),
                "{id}: {} ms recorded, the conversation is 1000",
                f.duration_ms
            );
            let b = std::fs::read(dir.path().join(&f.path)).unwrap();
            let right: Vec<i16> = b[44..]
                .chunks_exact(4)
                .map(|c| i16::from_le_bytes([c[2], c[3]]))
                .collect();
            assert!(
                !right.contains(&ULAW[0x90]),
                "{id}: the early media was recorded"
            );
            assert!(right.contains(&ULAW[0x10]), "{id}");
        }
    }

    /// Encoding then decoding keeps a sample within the law's step; decoding then
    /// encoding gives the code back (µ-law's two zeros aside).
    #[test]
    fn g711_encoders_invert_the_tables() {
        for c in 0..=255u8 {
            if c != 0x7F {
                assert_eq!(encode_ulaw(ULAW[c as usize]), c, "µ-law {c:#x}");
            }
            assert_eq!(encode_alaw(ALAW[c as usize]), c, "A-law {c:#x}");
        }
        for s in (-32768i32..32768).step_by(97) {
            let s = s as i16;
            let step = (s as i32).abs() / 16 + 64;
            assert!(
                (ULAW[encode_ulaw(s) as usize] as i32 - s as i32).abs() <= step * 2,
                "{s}"
            );
            assert!(
                (ALAW[encode_alaw(s) as usize] as i32 - s as i32).abs() <= step * 2,
                "{s}"
            );
        }
    }

    fn wav(rate: u32, channels: u16, bits: u16, samples: usize) -> Vec<u8> {
        let data = samples * channels as usize * bits as usize / 8;
        let mut b = b"RIFF\0\0\0\0WAVE".to_vec();
        b.extend_from_slice(b"LIST\x04\0\0\0abcd"); // a chunk to skip
        b.extend_from_slice(b"fmt \x10\0\0\0");
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 2).to_le_bytes());
        b.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data as u32).to_le_bytes());
        b.extend((0..data).map(|i| (i % 7) as u8));
        b
    }

    #[test]
    fn announcement_files_are_8_khz_mono_16_bit_only() {
        let p = Prompt::from_wav(&wav(8000, 1, 16, 4000)).unwrap();
        assert_eq!((p.ulaw.len(), p.alaw.len()), (4000, 4000));
        assert_eq!(Prompt::from_wav(b"RIFF"), Err(PromptError::NotWav));
        assert_eq!(Prompt::from_wav(&[0u8; 100]), Err(PromptError::NotWav));
        for bad in [
            wav(16000, 1, 16, 100),
            wav(8000, 2, 16, 100),
            wav(8000, 1, 8, 100),
        ] {
            assert_eq!(Prompt::from_wav(&bad), Err(PromptError::Format));
        }
        assert_eq!(
            Prompt::from_wav(&wav(8000, 1, 16, 0)),
            Err(PromptError::Length)
        );
        assert_eq!(
            Prompt::from_wav(&wav(8000, 1, 16, 8000 * 31)),
            Err(PromptError::Length)
        );
        // A data size past the end is read as far as it goes.
        let mut cut = wav(8000, 1, 16, 400);
        cut.truncate(cut.len() - 100);
        assert_eq!(Prompt::from_wav(&cut).unwrap().ulaw.len(), 350);
        let beep = Prompt::beep();
        assert_eq!(beep.ulaw.len(), 4000);
        assert!(beep.ulaw.iter().any(|c| ULAW[*c as usize].abs() > 6000));
    }

    /// The gate overlays the prompt on G.711 packets of each end in turn (same header),
    /// leaves other codecs alone, and opens once both ends have had all of it.
    #[test]
    fn the_gate_overlays_then_opens() {
        let prompt = Prompt::from_pcm(&vec![8000i16; 320]);
        let g = Gate::new(Some(Arc::new(prompt.clone())));
        assert!(!g.playing() && !g.done());
        g.start();
        assert!(g.playing());
        for end in 0..2 {
            for i in 0..2u16 {
                let mut p = pkt(8, i, i as u32 * 160, 5, &[0xD5; 160]);
                let head = p[..12].to_vec();
                assert_eq!(g.overlay(end, &mut p, 172), Some(172));
                assert_eq!(&p[..12], &head[..]);
                assert_eq!(&p[12..], &prompt.alaw[..160]);
            }
            // Opus, with no body that says payload type 111 is Opus: left alone.
            let mut opus = pkt(111, 3, 480, 5, &[0x11; 60]);
            assert_eq!(g.overlay(end, &mut opus, 72), None);
            assert_eq!(&opus[12..], &[0x11; 60]);
        }
        assert!(g.done() && !g.playing());
        assert!(Gate::new(None).done());
    }

    /// On a G.722 call the prompt goes out G.722-encoded: a phone decoding the overlaid
    /// packets hears the beep's 1400 Hz at 16 kHz, and the gate opens after it as after
    /// G.711.
    #[test]
    fn the_gate_overlays_g722_too() {
        use audio_codec::Decoder;
        let beep = Prompt::beep();
        assert_eq!(beep.g722.len(), beep.ulaw.len() + 160);
        let g = Gate::new(Some(Arc::new(beep)));
        g.start();
        let mut dec = audio_codec::g722::G722Decoder::new();
        let mut heard = Vec::new();
        for i in 0..25u16 {
            for end in 0..2 {
                let mut p = pkt(9, i, i as u32 * 160, 5, &[0x11; 160]);
                assert_eq!(g.overlay(end, &mut p, 172), Some(172));
                if end == 0 {
                    heard.extend(dec.decode(&p[12..]));
                }
            }
        }
        assert!(g.done());
        assert_eq!(heard.len(), 25 * 320);
        let mid = &heard[2000..6000];
        let rms = (mid.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        assert!(rms > 2000.0, "rms {rms}");
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let hz = crossings as f64 / 2.0 / (mid.len() as f64 / 16_000.0);
        assert!((hz - 1400.0).abs() < 60.0, "{hz:.0} Hz");
    }

    /// The tone's level and frequency (zero crossings) in the middle of `pcm`.
    fn tone(pcm: &[i16], rate: f64) -> (f64, f64) {
        let mid = &pcm[pcm.len() / 5..pcm.len() * 4 / 5];
        let rms = (mid.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        (rms, crossings as f64 / 2.0 / (mid.len() as f64 / rate))
    }

    /// Stored as Opus: a G.711 call of two parties, 440 Hz on the left and 1000 Hz on the
    /// right for two seconds, makes `<call>.opus`, an Ogg stream (RFC 7845) whose header
    /// says stereo at 8 kHz, whose last page carries the true length, and whose packets
    /// decode back to each party's tone on its channel, at under a fifth of the WAV's size.
    #[test]
    fn a_recording_stored_as_opus_is_ogg_opus_with_both_channels() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, done) = writer(dir.path());
        w.handle(Msg::Format(Format::Opus));
        let call = answered_recording(&mut w, "o1", (0, "pcmu"));
        let t0 = Instant::now();
        for i in 0..100u32 {
            for (ch, hz) in [(0u8, 440.0), (1, 1000.0)] {
                let payload: Vec<u8> = (0..160)
                    .map(|k| {
                        let t = (i * 160 + k) as f64 / 8000.0;
                        encode_ulaw((f64::sin(2.0 * std::f64::consts::PI * hz * t) * 8000.0) as i16)
                    })
                    .collect();
                w.handle(Msg::Packet {
                    call: call.clone(),
                    ch,
                    at: t0 + Duration::from_millis(i as u64 * 20),
                    data: pkt(0, i as u16, i * 160, 7 + ch as u32, &payload),
                });
            }
        }
        w.handle(Msg::End(call));
        let got = done.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "2026/12/o1.opus");
        assert!(safe_relative(&got[0].path));
        assert!(
            (1900..=2100).contains(&got[0].duration_ms),
            "{}",
            got[0].duration_ms
        );
        let bytes = std::fs::read(dir.path().join(&got[0].path)).unwrap();
        assert_eq!(got[0].bytes, bytes.len() as i64);
        assert!(bytes.len() < 2 * 8000 * 4 / 5, "{} bytes", bytes.len());
        let mut r = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let head = r.read_packet().unwrap().unwrap();
        assert_eq!(&head.data[..8], b"OpusHead");
        assert_eq!(head.data[9], 2, "stereo");
        assert_eq!(
            u32::from_le_bytes(head.data[12..16].try_into().unwrap()),
            8000
        );
        let tags = r.read_packet().unwrap().unwrap();
        assert_eq!(&tags.data[..8], b"OpusTags");
        let mut dec = audio_codec::opus::OpusDecoder::new(8000, 2);
        let (mut left, mut right, mut last) = (Vec::new(), Vec::new(), None);
        while let Some(p) = r.read_packet().unwrap() {
            let mut out = vec![0i16; 8000 / 50 * 2 * 3];
            let n = dec.decode_into_raw(&p.data, &mut out);
            for f in out[..n].chunks_exact(2) {
                left.push(f[0]);
                right.push(f[1]);
            }
            last = Some((p.absgp_page(), p.last_in_stream()));
        }
        let frames = got[0].duration_ms as u64 * 8;
        assert_eq!(
            last,
            Some((OPUS_PRE_SKIP + frames * 6, true)),
            "the true length"
        );
        let (l_rms, l_hz) = tone(&left, 8000.0);
        let (r_rms, r_hz) = tone(&right, 8000.0);
        assert!(
            l_rms > 2000.0 && (400.0..480.0).contains(&l_hz),
            "left {l_rms} {l_hz}"
        );
        assert!(
            r_rms > 2000.0 && (950.0..1050.0).contains(&r_hz),
            "right {r_rms} {r_hz}"
        );
    }

    /// On an Opus call (dynamic payload type, learnt from the body) the prompt goes out
    /// as Opus frames in place of each packet's payload: the RTP header stays (sequence,
    /// timestamp, SSRC, marker), the length becomes the frame's, padding goes, a 40 ms
    /// packet gets two frames in one (code 3) and a 10 ms one is left alone. A decoder
    /// fed the overlaid packets hears the beep's 1400 Hz, and the gate opens after it as
    /// after G.711.
    #[test]
    fn the_gate_overlays_opus_with_whole_frames() {
        let beep = Arc::new(Prompt::beep());
        assert_eq!(beep.opus.len(), beep.ulaw.len() / 160 + 1);
        let g = Gate::new(Some(beep.clone()));
        g.formats(&[(0, "pcmu".into()), (107, "opus".into())]);
        g.start();
        let mut dec = audio_codec::opus::OpusDecoder::new(48_000, 1);
        let mut heard = Vec::new();
        // A 20 ms CELT fullband stereo packet of 100 bytes (TOC config 31, code 0).
        let talk = |seq: u16, marker: bool, padded: bool| {
            let mut body = vec![0xfc_u8];
            body.extend_from_slice(&[0x5a; 99]);
            let pt = 107 | if marker { 0x80 } else { 0 };
            let mut p = pkt(pt, seq, seq as u32 * 960, 9, &body);
            if padded {
                p[0] |= 0x20;
                p.extend_from_slice(&[0, 0, 0, 4]);
            }
            p
        };
        let mut buf = [0u8; 2048];
        for i in 0..24u16 {
            for end in 0..2 {
                let p = talk(i, i == 0, i == 3);
                buf[..p.len()].copy_from_slice(&p);
                let n = g.overlay(end, &mut buf, p.len()).expect("overlaid");
                assert_eq!(buf[0], 0x80, "version kept, padding bit cleared");
                assert_eq!(&buf[1..12], &p[1..12], "header kept");
                let payload = &buf[12..n];
                assert_eq!(payload, &beep.opus[i as usize][..]);
                assert!(payload.len() < 99, "{}: a 24 kbit/s frame", payload.len());
                assert_eq!(opus_duration(payload), Some(960));
                if end == 0 {
                    let mut out = [0i16; 960];
                    assert_eq!(dec.decode_into_raw(payload, &mut out), 960);
                    heard.extend_from_slice(&out);
                }
            }
        }
        let (rms, hz) = tone(&heard, 48_000.0);
        assert!(rms > 2000.0, "rms {rms}");
        assert!((hz - 1400.0).abs() < 60.0, "{hz:.0} Hz");
        assert!(!g.done());
        // 40 ms in one packet (SILK wideband 40 ms, config 10): the next two frames,
        // code 3 with the first one's length.
        let p = pkt(107, 24, 24 * 960, 9, &[10 << 3, 0x44, 0x55]);
        buf[..p.len()].copy_from_slice(&p);
        let n = g.overlay(0, &mut buf, p.len()).expect("overlaid");
        let (f24, f25) = (&beep.opus[24], &beep.opus[25]);
        assert_eq!(buf[12], (f24[0] & 0xfc) | 3);
        assert_eq!(buf[13], 0x82, "VBR, two frames");
        assert_eq!(buf[14] as usize, f24.len() - 1);
        assert_eq!(&buf[15..15 + f24.len() - 1], &f24[1..]);
        assert_eq!(&buf[15 + f24.len() - 1..n], &f25[1..]);
        assert_eq!(opus_duration(&buf[12..n]), Some(1920));
        // 10 ms (CELT config 30): not a whole frame of the prompt, left alone.
        let p = pkt(107, 24, 24 * 960, 9, &[30 << 3, 1, 2, 3]);
        buf[..p.len()].copy_from_slice(&p);
        assert_eq!(g.overlay(1, &mut buf, p.len()), None);
        assert_eq!(&buf[..p.len()], &p[..]);
        // A payload type the bodies did not call Opus is not touched.
        let p = pkt(96, 24, 0, 9, &[0xfc; 40]);
        buf[..p.len()].copy_from_slice(&p);
        assert_eq!(g.overlay(1, &mut buf, p.len()), None);
        assert!(!g.done(), "end 1 is a frame short");
        // No room for the frame in the buffer: nothing is written.
        let mut short = talk(24, false, false);
        short.truncate(20);
        let before = short.clone();
        assert_eq!(g.overlay(1, &mut short, 20), None);
        assert_eq!(short, before);
        let p = talk(25, false, false);
        buf[..p.len()].copy_from_slice(&p);
        g.overlay(1, &mut buf, p.len()).expect("overlaid");
        assert!(g.done(), "both ends had the whole prompt");
    }

    /// A G.722 call is written at 16 kHz: 20 ms packets (160 bytes, 320 samples) for
    /// two seconds make a two-second file.
    #[test]
    fn g722_is_recorded_at_16_khz() {
        use audio_codec::Encoder;
        let dir = tempfile::tempdir().unwrap();
        let (mut w, done) = writer(dir.path());
        let call = answered_recording(&mut w, "w1", (9, "g722"));
        let mut enc = audio_codec::g722::G722Encoder::new();
        let t0 = Instant::now();
        for i in 0..100u32 {
            let pcm: Vec<i16> = (0..320)
                .map(|k| {
                    let t = (i * 320 + k) as f64 / 16000.0;
                    (f64::sin(2.0 * std::f64::consts::PI * 1000.0 * t) * 10000.0) as i16
                })
                .collect();
            let payload = enc.encode(&pcm);
            assert_eq!(payload.len(), 160);
            w.handle(Msg::Packet {
                call: call.clone(),
                ch: 0,
                at: t0 + Duration::from_millis(i as u64 * 20),
                data: pkt(9, i as u16, i * 160, 1, &payload),
            });
        }
        w.handle(Msg::End(call));
        let got = done.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert!(
            (1900..=2100).contains(&got[0].duration_ms),
            "{}",
            got[0].duration_ms
        );
        let b = std::fs::read(dir.path().join("2026/12/w1.wav")).unwrap();
        assert_eq!(u32::from_le_bytes([b[24], b[25], b[26], b[27]]), 16_000);
        let left: Vec<i16> = b[44..]
            .chunks_exact(4)
            .map(|f| i16::from_le_bytes([f[0], f[1]]))
            .collect();
        let mid = &left[4000..12000];
        let rms = (mid.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        assert!(rms > 4000.0, "rms {rms}");
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
