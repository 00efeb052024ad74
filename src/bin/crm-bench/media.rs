//! `crm-bench media [--max N] [--secs S] [--no-rtpengine] [--webrtc N]`: concurrent relayed G.711
//! calls (172-byte RTP packets every 20 ms, both directions) through the box's relay
//! (`crm::media`, in this process, on its own threads), with the load generator on the
//! same machine; then the same through rtpengine (Debian's `rtpengine`, userspace
//! forwarding: `--table=-1`, no kernel module, its threads in the real-time class
//! at the priority ours run at) driven over its ng control protocol.
//!
//! For each level of calls: packets lost (sent − received, after the stream settled),
//! the one-way delay through the relay (send → receive on one monotonic clock, as the
//! generator is both parties), and the added jitter: RFC 3550's D(i−1, i), the change
//! of a packet's transit time against the one before it on its stream, p99 over all
//! packets. CPU: the relay's threads (/proc/self/task/*/stat, named `crm-media`) or the
//! rtpengine process, seconds per second of wall time, divided by calls. Each level
//! first runs the generator alone (`media.direct`: each stream sent straight to its
//! other party), the jitter and delay floor this machine puts under every relay's row.
//!
//! The generator uses a few sockets per side (calls share them; the relay latches each
//! stream onto its socket's address) and plain threads: one sender pacing each 20 ms
//! period in 1 ms slices, one receiver per socket.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crm::sip::MediaPlane;

#[path = "media_webrtc.rs"]
mod webrtc;

const SOCKS_PER_SIDE: usize = 2;
const PAYLOAD: usize = 160;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut max = 2000usize;
    let mut secs = 8u64;
    let mut rtpengine = true;
    let mut levels: Option<Vec<usize>> = None;
    let mut threads = 2usize;
    let mut skip_ours = false;
    let mut record = false;
    let mut format = crm::media::record::Format::Wav;
    let mut webrtc: Option<usize> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--max" => max = it.next().and_then(|v| v.parse().ok()).unwrap_or(max),
            "--secs" => secs = it.next().and_then(|v| v.parse().ok()).unwrap_or(secs),
            "--no-rtpengine" => rtpengine = false,
            "--skip-ours" => skip_ours = true,
            // Every call recorded (issue 16): the relay's threads also copy each RTP
            // packet to the recorder's writer thread, which writes the WAV files.
            "--record" => record = true,
            // How the recordings are stored: wav (the default) or opus.
            "--format" => {
                let v = it.next().map(String::as_str).unwrap_or("");
                format = crm::media::record::Format::parse(v)
                    .ok_or_else(|| anyhow::anyhow!("--format: wav or opus, not {v:?}"))?;
            }
            // N browser calls (WebRTC on one side, plain RTP on the other) against N
            // plain calls, in the same run.
            "--webrtc" => webrtc = it.next().and_then(|v| v.parse().ok()),
            "--threads" => threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(threads),
            "--levels" => {
                levels = it
                    .next()
                    .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    if let Some(n) = webrtc {
        println!("media.threads={threads}");
        return webrtc::run(&levels.unwrap_or_else(|| vec![n]), secs, threads);
    }
    let levels = levels.unwrap_or_else(|| {
        [100, 250, 500, 750, 1000, 1250, 1500, 2000, 2500]
            .into_iter()
            .filter(|n| *n <= max)
            .collect()
    });
    println!("media.threads={threads}");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("media.cores={cores}");
    println!(
        "media.note=generator and relay on the same machine; the box is shared with other builds"
    );

    // Each level runs the floor (the generator alone), then our relay, then rtpengine,
    // close together in time on this shared machine. Every level runs (a loaded box may
    // fail the jitter bound at one level and pass at the next); a relay stops once its
    // loss passes 1 %.
    let mut eng = match rtpengine {
        true => match Rtpengine::start(threads) {
            Ok(e) => Some(e),
            Err(e) => {
                println!("media.rtpengine=unavailable ({e:#})");
                None
            }
        },
        false => None,
    };
    let ours_name = if record { "crm_recording" } else { "crm" };
    let (mut ours, mut theirs) = (Best::default(), Best::default());
    for &n in &levels {
        let g = Generator::new()?;
        let direct: Plan = (0..n).map(|c| (g.b_addr(c), g.a_addr(c))).collect();
        let floor = g.drive(&direct, secs, &|| 0.0)?;
        floor.print("direct", n, None);
        drop(g);
        if !skip_ours && !ours.stopped {
            let r = run_ours(n, secs, threads, record.then_some(format))?;
            r.print(ours_name, n, Some(&floor));
            ours.see(n, &r, &floor);
        }
        if let Some(e) = eng.as_mut().filter(|_| !theirs.stopped) {
            let r = e.run(n, secs)?;
            r.print("rtpengine", n, Some(&floor));
            theirs.see(n, &r, &floor);
        }
        if (skip_ours || ours.stopped) && (eng.is_none() || theirs.stopped) {
            break;
        }
    }
    ours.print("crm");
    if let Some(e) = eng {
        theirs.print("rtpengine");
        for (name, a, b) in [
            ("ratio", ours.both, theirs.both),
            ("ratio_added", ours.added, theirs.added),
            ("ratio_loss_only", ours.loss, theirs.loss),
        ] {
            if b > 0 {
                println!("media.{name}={:.2}", a as f64 / b as f64);
            }
        }
        e.stop();
    }
    Ok(())
}

struct LevelResult {
    sent: u64,
    received: u64,
    delay_p50_us: u64,
    delay_p99_us: u64,
    jitter_p99_us: u64,
    cpu_per_sec: f64,
    calls: usize,
}

impl LevelResult {
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        (self.sent.saturating_sub(self.received)) as f64 / self.sent as f64
    }

    fn passes(&self) -> bool {
        self.loss() < 0.001 && self.jitter_p99_us < 1000
    }

    /// The jitter p99 above the generator's own at the same level (`floor`).
    fn added_jitter_us(&self, floor: &LevelResult) -> u64 {
        self.jitter_p99_us.saturating_sub(floor.jitter_p99_us)
    }

    fn print(&self, who: &str, n: usize, floor: Option<&LevelResult>) {
        let added = floor
            .map(|f| format!(" added_jitter_p99_us={}", self.added_jitter_us(f)))
            .unwrap_or_default();
        println!(
            "media.{who}.calls_{n}: loss={:.4}% delay_p50_us={} delay_p99_us={} jitter_p99_us={}{added} cpu_core={:.3} cpu_per_call_pct={:.4} pass={}",
            self.loss() * 100.0,
            self.delay_p50_us,
            self.delay_p99_us,
            self.jitter_p99_us,
            self.cpu_per_sec,
            self.cpu_per_sec * 100.0 / self.calls as f64,
            self.passes()
        );
    }
}

/// A relay's best levels so far: the most calls passing both bounds as measured, the
/// most passing them with the jitter taken above the generator's own floor, and the
/// most under the loss bound alone.
#[derive(Default)]
struct Best {
    both: usize,
    added: usize,
    loss: usize,
    /// Loss passed 1 %: higher levels are not run.
    stopped: bool,
}

impl Best {
    fn see(&mut self, n: usize, r: &LevelResult, floor: &LevelResult) {
        let lossless = r.loss() < 0.001;
        if r.passes() {
            self.both = n;
        }
        if lossless && r.added_jitter_us(floor) < 1000 {
            self.added = n;
        }
        if lossless {
            self.loss = n;
        }
        self.stopped = r.loss() >= 0.01;
    }

    fn print(&self, who: &str) {
        println!(
            "media.{who}.max_calls={} media.{who}.max_calls_added_jitter={} media.{who}.max_calls_loss_only={}",
            self.both, self.added, self.loss
        );
    }
}

/// Where the generator sends each call's two streams: (relay port the A party sends
/// to, relay port the B party sends to).
type Plan = Vec<(SocketAddr, SocketAddr)>;

fn sdp_for(addr: SocketAddr) -> String {
    format!(
        "v=0\r\no=gen 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

fn port_of(sdp: &[u8]) -> anyhow::Result<u16> {
    let o = crm::media::sdp::parse(sdp).ok_or_else(|| anyhow::anyhow!("no SDP back"))?;
    o.streams
        .first()
        .and_then(|s| s.rtp)
        .map(|a| a.port())
        .ok_or_else(|| anyhow::anyhow!("no audio port in the SDP back"))
}

struct Generator {
    a: Vec<Arc<UdpSocket>>,
    b: Vec<Arc<UdpSocket>>,
}

impl Generator {
    fn new() -> anyhow::Result<Generator> {
        let mk = || -> anyhow::Result<Arc<UdpSocket>> {
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            let _ = s.set_recv_buffer_size(8 << 20);
            let _ = s.set_send_buffer_size(8 << 20);
            s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            let s: UdpSocket = s.into();
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok(Arc::new(s))
        };
        Ok(Generator {
            a: (0..SOCKS_PER_SIDE)
                .map(|_| mk())
                .collect::<Result<_, _>>()?,
            b: (0..SOCKS_PER_SIDE)
                .map(|_| mk())
                .collect::<Result<_, _>>()?,
        })
    }

    fn a_addr(&self, call: usize) -> SocketAddr {
        self.a[call % SOCKS_PER_SIDE].local_addr().expect("bound")
    }

    fn b_addr(&self, call: usize) -> SocketAddr {
        self.b[call % SOCKS_PER_SIDE].local_addr().expect("bound")
    }

    /// Runs the calls for `warmup + secs`; measures the last `secs`. `cpu` reads the
    /// relay's CPU seconds so far.
    fn drive(&self, plan: &Plan, secs: u64, cpu: &dyn Fn() -> f64) -> anyhow::Result<LevelResult> {
        let n = plan.len();
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        // Stream id: call * 2 + direction (0: A -> B, 1: B -> A), carried as the SSRC.
        let stats = Arc::new(Mutex::new(Stats::default()));
        let mut rx = Vec::new();
        for s in self.a.iter().chain(self.b.iter()) {
            let (s, stop, stats, measuring) =
                (s.clone(), stop.clone(), stats.clone(), measuring.clone());
            rx.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut local = Stats::default();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = s.recv(&mut buf) else { continue };
                    if len < 24 {
                        continue;
                    }
                    let now = epoch.elapsed().as_micros() as u64;
                    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    let seq = u16::from_be_bytes([buf[2], buf[3]]);
                    let sent = u64::from_be_bytes(buf[12..20].try_into().expect("8 bytes"));
                    let measured = buf[20] == 1;
                    if measured && measuring.load(Ordering::Relaxed) {
                        local.record(ssrc, seq, now.saturating_sub(sent));
                    }
                }
                stats.lock().expect("stats").merge(local);
            }));
        }
        let relay = |a: SocketAddr| a;
        let warmup = Duration::from_secs(2);
        let total = warmup + Duration::from_secs(secs);
        let mut sent_measured = 0u64;
        let mut seq = 0u16;
        let start = Instant::now();
        let mut cpu0 = None;
        let mut t_measure = None;
        let mut pkt = vec![0u8; 12 + PAYLOAD];
        pkt[0] = 0x80;
        'periods: loop {
            let period_start = start + Duration::from_millis(20) * seq as u32;
            let elapsed = period_start.duration_since(start);
            if elapsed >= total {
                break 'periods;
            }
            let in_measure = elapsed >= warmup;
            if in_measure && cpu0.is_none() {
                cpu0 = Some(cpu());
                t_measure = Some(Instant::now());
                measuring.store(true, Ordering::Relaxed);
            }
            // 20 slices of 1 ms; each sends its share of the 2n packets.
            for slice in 0..20usize {
                let at = period_start + Duration::from_millis(slice as u64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let lo = n * slice / 20;
                let hi = n * (slice + 1) / 20;
                for (call, (to_a_end, to_b_end)) in plan.iter().enumerate().take(hi).skip(lo) {
                    for dir in 0..2u32 {
                        let ssrc = call as u32 * 2 + dir;
                        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                        pkt[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
                        pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
                        let t = epoch.elapsed().as_micros() as u64;
                        pkt[12..20].copy_from_slice(&t.to_be_bytes());
                        pkt[20] = in_measure as u8;
                        let (sock, to) = if dir == 0 {
                            (&self.a[call % SOCKS_PER_SIDE], relay(*to_a_end))
                        } else {
                            (&self.b[call % SOCKS_PER_SIDE], relay(*to_b_end))
                        };
                        if sock.send_to(&pkt, to).is_ok() && in_measure {
                            sent_measured += 1;
                        }
                    }
                }
            }
            seq = seq.wrapping_add(1);
        }
        let wall = t_measure.map(|t| t.elapsed().as_secs_f64()).unwrap_or(1.0);
        let cpu_used = cpu() - cpu0.unwrap_or(0.0);
        // Let the last packets land.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for t in rx {
            let _ = t.join();
        }
        let st = Arc::try_unwrap(stats)
            .map_err(|_| anyhow::anyhow!("stats still shared"))?
            .into_inner()
            .expect("stats");
        let received = st.received;
        let (p50, p99, j99) = st.percentiles();
        Ok(LevelResult {
            sent: sent_measured,
            received,
            delay_p50_us: p50,
            delay_p99_us: p99,
            jitter_p99_us: j99,
            cpu_per_sec: cpu_used / wall,
            calls: n,
        })
    }
}

#[derive(Default)]
struct Stats {
    received: u64,
    delays: Vec<u32>,
    jitters: Vec<u32>,
    /// Last (seq, transit) per stream.
    last: HashMap<u32, (u16, u64)>,
}

impl Stats {
    fn record(&mut self, ssrc: u32, seq: u16, transit: u64) {
        self.received += 1;
        self.delays.push(transit.min(u32::MAX as u64) as u32);
        if let Some((s, t)) = self.last.get(&ssrc) {
            if seq == s.wrapping_add(1) {
                self.jitters
                    .push(transit.abs_diff(*t).min(u32::MAX as u64) as u32);
            }
        }
        self.last.insert(ssrc, (seq, transit));
    }

    fn merge(&mut self, o: Stats) {
        self.received += o.received;
        self.delays.extend(o.delays);
        self.jitters.extend(o.jitters);
    }

    fn percentiles(mut self) -> (u64, u64, u64) {
        let pick = |v: &mut Vec<u32>, q: f64| -> u64 {
            if v.is_empty() {
                return 0;
            }
            v.sort_unstable();
            v[((v.len() - 1) as f64 * q) as usize] as u64
        };
        let p50 = pick(&mut self.delays, 0.5);
        let p99 = pick(&mut self.delays, 0.99);
        let j99 = pick(&mut self.jitters, 0.99);
        (p50, p99, j99)
    }
}

/// CPU seconds (user + system) of this process's threads named `crm-media*`.
fn relay_threads_cpu() -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let p = e.path();
            let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if !name.starts_with("crm-media") {
                continue;
            }
            total += stat_ticks(&p.join("stat"));
        }
    }
    total as f64 / tick
}

fn stat_ticks(path: &std::path::Path) -> u64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let u: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    u + st
}

struct RecordAll;

impl crm::media::RecordingPolicy for RecordAll {
    fn recording(&self, _: &[&str], _: Option<i64>) -> crm::sip::Recording {
        crm::sip::Recording::All
    }
}

fn threads_cpu(prefix: &str) -> f64 {
    let mut total = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let p = e.path();
            let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if name.starts_with(prefix) {
                total += stat_ticks(&p.join("stat"));
            }
        }
    }
    total as f64 / 100.0
}

/// `record`: every call recorded, stored in that format.
fn run_ours(
    n: usize,
    secs: u64,
    threads: usize,
    record: Option<crm::media::record::Format>,
) -> anyhow::Result<LevelResult> {
    let media = crm::media::Media::start(crm::media::MediaConfig {
        ports: (10_000, 19_999),
        bind: "127.0.0.1".parse()?,
        timeout: Duration::from_secs(600),
        threads,
        ..Default::default()
    })?;
    let rec_dir = tempfile::tempdir()?;
    // Bytes written and files finished.
    let written = Arc::new((
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    ));
    if let Some(format) = record {
        let w = written.clone();
        media.set_recording(
            crm::media::record::RecorderConfig {
                dir: rec_dir.path().to_path_buf(),
                subdir: Arc::new(|| "bench".to_string()),
                done: Arc::new(move |f| {
                    w.0.fetch_add(f.bytes as u64, Ordering::Relaxed);
                    w.1.fetch_add(1, Ordering::Relaxed);
                }),
                feature: "*1".into(),
            },
            Arc::new(RecordAll),
        )?;
        media.set_format(format);
    }
    let rec_cpu0 = threads_cpu("crm-recorder");
    let generator = Generator::new()?;
    let host = "127.0.0.1".parse()?;
    let (sig_a, sig_b): (SocketAddr, SocketAddr) =
        ("10.0.0.1:5060".parse()?, "10.0.0.2:5060".parse()?);
    let mut plan = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-{i}");
        media.open(&id);
        if record.is_some() {
            media.record(&id, crm::sip::Recording::All);
            // Recording starts at the answer (early media is never recorded).
            media.answered(&id);
        }
        let to_b = media
            .rewrite(
                &id,
                sig_b,
                true,
                false,
                host,
                sdp_for(generator.a_addr(i)).as_bytes(),
            )
            .ok_or_else(|| anyhow::anyhow!("offer not anchored (ports?)"))?;
        let to_a = media
            .rewrite(
                &id,
                sig_a,
                false,
                false,
                host,
                sdp_for(generator.b_addr(i)).as_bytes(),
            )
            .ok_or_else(|| anyhow::anyhow!("answer not anchored"))?;
        plan.push((
            SocketAddr::new(host, port_of(&to_a)?),
            SocketAddr::new(host, port_of(&to_b)?),
        ));
    }
    let r = generator.drive(&plan, secs, &relay_threads_cpu);
    if let Some(format) = record {
        let cpu = threads_cpu("crm-recorder") - rec_cpu0;
        let dropped = media.recorder_dropped();
        for i in 0..n {
            media.end(&format!("bench-{i}"));
        }
        // The files are finished on the writer thread: wait for all of them.
        let until = Instant::now() + Duration::from_secs(60);
        while written.1.load(Ordering::Relaxed) < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (bytes, files) = (
            written.0.load(Ordering::Relaxed),
            written.1.load(Ordering::Relaxed),
        );
        println!(
            "media.crm_recording.calls={n} format={} writer_cpu_per_call_pct={:.4} copies_dropped={dropped} files={files} bytes_per_call_minute={}",
            format.as_str(),
            100.0 * cpu / secs as f64 / n as f64,
            bytes * 60 / secs.max(1) / n.max(1) as u64,
        );
    }
    media.stop();
    r
}

/// rtpengine in userspace, driven over its ng protocol (bencode over UDP).
struct Rtpengine {
    child: std::process::Child,
    ng: UdpSocket,
    pid: u32,
    round: usize,
}

fn bencode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    for (k, v) in pairs {
        out.extend(format!("{}:{}{}:", k.len(), k, v.len()).into_bytes());
        out.extend(v.as_bytes());
    }
    out.push(b'e');
    out
}

/// The value of `key` (a byte string) in a flat bencoded dictionary.
fn bvalue<'a>(msg: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let pat = format!("{}:{}", key.len(), key);
    let i = msg.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let colon = i + msg[i..].iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&msg[i..colon]).ok()?.parse().ok()?;
    msg.get(colon + 1..colon + 1 + len)
}

impl Rtpengine {
    fn start(threads: usize) -> anyhow::Result<Rtpengine> {
        let ng_port = 22_223;
        let child = std::process::Command::new("rtpengine")
            .args([
                "--foreground",
                "--log-stderr",
                "--log-level=3",
                "--table=-1",
                "--interface=127.0.0.1",
                &format!("--listen-ng=127.0.0.1:{ng_port}"),
                "--port-min=20000",
                "--port-max=32000",
                &format!("--num-threads={}", threads),
                // The same scheduling as ours (`[media] realtime`), for a like-for-like run.
                "--scheduling=fifo",
                &format!("--priority={}", crm::media::MediaConfig::default().realtime),
                "--timeout=600",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let ng = UdpSocket::bind("127.0.0.1:0")?;
        ng.set_read_timeout(Some(Duration::from_millis(500)))?;
        ng.connect(("127.0.0.1", ng_port))?;
        let mut eng = Rtpengine {
            child,
            ng,
            pid,
            round: 0,
        };
        // Up when it answers a ping.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = eng.command(&[("command", "ping")]) {
                if bvalue(&r, "result") == Some(b"pong") {
                    break;
                }
            }
            if let Ok(Some(status)) = eng.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = eng.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                anyhow::bail!("rtpengine exited ({status}): {}", err.trim());
            }
            if Instant::now() > deadline {
                anyhow::bail!("rtpengine does not answer on its ng port");
            }
        }
        Ok(eng)
    }

    fn command(&self, pairs: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
        let cookie = format!("{} ", rand::random::<u32>());
        let mut msg = cookie.clone().into_bytes();
        msg.extend(bencode(pairs));
        self.ng.send(&msg)?;
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = self.ng.recv(&mut buf)?;
            if buf[..n].starts_with(cookie.as_bytes()) {
                return Ok(buf[cookie.len()..n].to_vec());
            }
        }
    }

    fn run(&mut self, n: usize, secs: u64) -> anyhow::Result<LevelResult> {
        self.round += 1;
        let generator = Generator::new()?;
        let mut plan = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("bench-{}-{i}", self.round);
            let offer = sdp_for(generator.a_addr(i));
            let r = self.command(&[
                ("command", "offer"),
                ("call-id", &id),
                ("from-tag", "a"),
                ("sdp", &offer),
            ])?;
            let to_b = bvalue(&r, "sdp")
                .ok_or_else(|| anyhow::anyhow!("offer refused: {}", String::from_utf8_lossy(&r)))?
                .to_vec();
            let answer = sdp_for(generator.b_addr(i));
            let r = self.command(&[
                ("command", "answer"),
                ("call-id", &id),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &answer),
            ])?;
            let to_a = bvalue(&r, "sdp")
                .ok_or_else(|| anyhow::anyhow!("answer refused: {}", String::from_utf8_lossy(&r)))?
                .to_vec();
            let host = "127.0.0.1".parse()?;
            plan.push((
                SocketAddr::new(host, port_of(&to_a)?),
                SocketAddr::new(host, port_of(&to_b)?),
            ));
            ids.push(id);
        }
        let pid = self.pid;
        let cpu =
            move || stat_ticks(std::path::Path::new(&format!("/proc/{pid}/stat"))) as f64 / 100.0;
        let r = generator.drive(&plan, secs, &cpu);
        // Deletes are sent without waiting for each answer (rtpengine answers them
        // slowly with 4000 sockets open); the ports of the round go back before the next.
        for id in &ids {
            let mut msg = format!("{} ", rand::random::<u32>()).into_bytes();
            msg.extend(bencode(&[
                ("command", "delete"),
                ("call-id", id),
                ("from-tag", "a"),
            ]));
            let _ = self.ng.send(&msg);
        }
        std::thread::sleep(Duration::from_secs(2));
        r
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
