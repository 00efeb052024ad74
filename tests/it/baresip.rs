//! baresip (Debian `baresip-core`) as a desk phone in the tests, driven headless through
//! its `ctrl_tcp` module (commands in, events out, as JSON netstrings) and its `cons`
//! module (one-key commands: hold `x`, resume `X`, DTMF digits). One set-up for every
//! test module: where the sound comes from (a sine, or a WAV file), which codec, and
//! whether what the phone hears is kept (baresip's `sndfile` filter dumps each call's
//! decoded audio to `<dir>/dump-…-dec.wav`). No sound card is needed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::{Child, Command};

use crate::sipp::free_port;
use crate::support::eventually;

pub const WAIT: Duration = Duration::from_secs(15);

/// What the phone sends.
#[derive(Clone, Copy)]
pub enum Source {
    /// baresip's `ausine` (48 kHz stereo only).
    Sine(u32),
    /// A WAV file of this tone (Hz; 0: silence), at the phone's rate, mono.
    Tone(f64),
}

/// How a phone is set up.
#[derive(Clone)]
pub struct Setup {
    /// "udp" or "tcp".
    pub transport: String,
    pub source: Source,
    /// The one codec it offers (baresip's name: PCMU, G722, opus), or all it has.
    pub codec: Option<&'static str>,
    /// What it hears is dumped into this folder (`dump-…-dec.wav`, see [`heard_wav`]).
    pub hear: Option<PathBuf>,
    /// The SIP trace on stdout (read by [`Baresip::trace`]).
    pub trace: bool,
}

impl Setup {
    /// A desk phone sending a sine, every codec, SIP trace on.
    pub fn desk(transport: &str) -> Setup {
        Setup {
            transport: transport.to_string(),
            source: Source::Sine(440),
            codec: None,
            hear: None,
            trace: true,
        }
    }

    /// A phone sending a tone from a file, over UDP, with one codec.
    pub fn tone(hz: f64, codec: &'static str) -> Setup {
        Setup {
            transport: "udp".into(),
            source: Source::Tone(hz),
            codec: Some(codec),
            hear: None,
            trace: false,
        }
    }
}

/// An 8/16/48 kHz mono PCM16 WAV of a sine tone (`hz` 0: silence).
pub fn tone_wav(path: &Path, hz: f64, secs: u32, rate: u32) {
    let n = rate * secs;
    let mut b = Vec::with_capacity(44 + n as usize * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + n * 2).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(n * 2).to_le_bytes());
    for i in 0..n {
        let v =
            (f64::sin(2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64) * 12_000.0) as i16;
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// The decoded audio a phone set up with `hear: Some(dir)` received in its call.
pub fn heard_wav(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
}

pub struct Baresip {
    pub name: String,
    _child: Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    cons: SocketAddr,
    log: PathBuf,
}

impl Baresip {
    /// Starts baresip for extension `user` (secret `secret-USER`) registering at
    /// `server` as `s` says; its home is `<dir>/baresip-<user>-<transport>`.
    pub async fn start(dir: &Path, user: &str, server: SocketAddr, s: Setup) -> Baresip {
        let transport = s.transport.clone();
        let home = dir.join(format!("baresip-{user}-{transport}"));
        std::fs::create_dir_all(&home).unwrap();
        let (ctrl_port, cons_port) = (free_port(), free_port());
        // The codec's own rate, so baresip never resamples (G.722 is 16 kHz, Opus 48).
        let rate = match s.codec {
            Some("G722") => 16_000,
            Some("opus") => 48_000,
            Some(_) => 8000,
            None => 48_000,
        };
        let (source, srate, channels) = match s.source {
            Source::Sine(hz) => (format!("ausine,{hz}"), 48_000, 2),
            Source::Tone(hz) => {
                let wav = home.join("tone.wav");
                tone_wav(&wav, hz, 60, rate);
                (format!("aufile,{}", wav.display()), rate, 1)
            }
        };
        let dump = match &s.hear {
            Some(d) => {
                std::fs::create_dir_all(d).unwrap();
                format!("module sndfile.so\nsnd_path {}\n", d.display())
            }
            None => String::new(),
        };
        let codec_module = match s.codec {
            Some("G722") => "module g722.so\n",
            Some("opus") => "module opus.so\n",
            _ => "",
        };
        std::fs::write(
            home.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:0\n\
                 audio_player aufile,/dev/null\naudio_alert aufile,/dev/null\n\
                 audio_source {source}\nausrc_srate {srate}\nauplay_srate {srate}\n\
                 ausrc_channels {channels}\nauplay_channels {channels}\n\
                 module_path /usr/lib/baresip/modules\nmodule g711.so\n{codec_module}{dump}\
                 module ausine.so\nmodule aufile.so\nmodule_app account.so\nmodule_app menu.so\n\
                 module_app ctrl_tcp.so\nmodule_app cons.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl_port}\ncons_listen 127.0.0.1:{cons_port}\n"
            ),
        )
        .unwrap();
        // baresip names a codec with its rate and channels.
        let codecs = match s.codec {
            Some("G722") => ";audio_codecs=G722/16000/1".to_string(),
            Some("opus") => ";audio_codecs=opus/48000/2".to_string(),
            Some(c) => format!(";audio_codecs={c}"),
            None => String::new(),
        };
        std::fs::write(
            home.join("accounts"),
            format!(
                "<sip:{user}@{server};transport={transport}>;auth_pass=secret-{user};\
                 regint=600;answermode=manual{codecs}\n"
            ),
        )
        .unwrap();
        let log = home.join("trace.log");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&home);
        if s.trace {
            cmd.arg("-s"); // SIP trace on stdout (the tests read hold/resume SDP there)
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("baresip (Debian baresip-core) installed");
        let ctrl = eventually(WAIT, || async move {
            TcpStream::connect(("127.0.0.1", ctrl_port)).await.ok()
        })
        .await
        .expect("baresip's ctrl_tcp listening");
        Baresip {
            name: format!("{user}/{transport}"),
            _child: child,
            ctrl,
            buf: Vec::new(),
            cons: ([127, 0, 0, 1], cons_port).into(),
            log,
        }
    }

    pub async fn cmd(&mut self, command: &str, params: &str) {
        let d = serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
        let frame = format!("{}:{d},", d.len());
        self.ctrl.write_all(frame.as_bytes()).await.unwrap();
    }

    /// A one-key command of the console (hold `x`, resume `X`, a DTMF digit in a call).
    pub async fn key(&self, k: &str) {
        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.send_to(k.as_bytes(), self.cons).await.unwrap();
    }

    /// One netstring from the buffer, when complete.
    fn take(&mut self) -> Option<Value> {
        let colon = self.buf.iter().position(|b| *b == b':')?;
        let n: usize = std::str::from_utf8(&self.buf[..colon]).ok()?.parse().ok()?;
        if self.buf.len() < colon + 1 + n + 1 {
            return None;
        }
        let v = serde_json::from_slice(&self.buf[colon + 1..colon + 1 + n]).ok();
        self.buf.drain(..colon + 1 + n + 1);
        v
    }

    /// Waits for the event `kind` (skipping others); its JSON.
    pub async fn wait(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            while let Some(v) = self.take() {
                if v["type"] == kind {
                    return v;
                }
                seen.push(v["type"].to_string());
            }
            let mut chunk = [0u8; 8192];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ctrl.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => panic!(
                    "{}: no {kind} within {WAIT:?}; saw {seen:?}\n{}",
                    self.name,
                    self.trace()
                ),
            }
        }
    }

    /// Waits for every event of `kinds`, in any order.
    pub async fn wait_all(&mut self, kinds: &[&str]) {
        let deadline = Instant::now() + WAIT;
        let mut left: Vec<&str> = kinds.to_vec();
        while !left.is_empty() {
            while let Some(v) = self.take() {
                left.retain(|k| v["type"] != *k);
            }
            if left.is_empty() {
                break;
            }
            let mut chunk = [0u8; 8192];
            let wait = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, self.ctrl.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => panic!(
                    "{}: no {left:?} within {WAIT:?}\n{}",
                    self.name,
                    self.trace()
                ),
            }
        }
    }

    /// The SIP trace so far (with `Setup::trace`).
    pub fn trace(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until the SIP trace holds `needle` more than `before` times.
    pub async fn trace_grows(&self, needle: &str, before: usize) {
        let ok = eventually(WAIT, || async move {
            (self.trace().matches(needle).count() > before).then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "{}: no new {needle:?}\n{}",
            self.name,
            self.trace()
        );
    }
}
