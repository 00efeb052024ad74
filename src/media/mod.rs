//! The media plane: the only module with RTP sockets. The SIP side (`sip`) knows it
//! through one small trait, [`crate::sip::MediaPlane`]: the engine asks it to anchor a
//! call (`open`), hands it every SDP body on its way to a party of an anchored call
//! (`rewrite`: the body comes back pointing at the box), tells it when the call is over
//! (`end`) and asks it which calls went silent (`silent`, for the dead-media hang-up).
//! Layout:
//! - `sdp`: reading and rewriting SDP bodies (with the `sdp` crate);
//! - `relay`: the port pairs, latching and the per-socket tasks on the relay's own
//!   runtime (`media_threads` threads, apart from the web and SIP work).
//!
//! No transcoding: every payload passes unchanged, so G.711, G.722, Opus and
//! telephone-event all work as the two parties agreed.

pub mod record;
mod relay;
pub mod sdp;
mod webrtc;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Which calls the box anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// None: media goes straight between the parties.
    Off,
    /// Calls through a trunk (in, out, click-to-call to an outside number).
    Trunk,
    /// Trunk calls and calls between extensions.
    All,
}

impl std::str::FromStr for Anchor {
    type Err = String;
    fn from_str(s: &str) -> Result<Anchor, String> {
        match s.trim() {
            "off" => Ok(Anchor::Off),
            "trunk" => Ok(Anchor::Trunk),
            "all" => Ok(Anchor::All),
            other => Err(format!("{other:?}: one of off, trunk, all")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The address the relay's sockets bind (0.0.0.0: all).
    pub bind: IpAddr,
    /// The address written into SDP; None: the box's address as each party sees it
    /// (the one SIP uses towards it).
    pub advertise: Option<IpAddr>,
    /// The port range (inclusive): two even/odd pairs per stream and call.
    pub ports: (u16, u16),
    /// A call whose media has stopped this long (no packet either way) is hung up.
    pub timeout: Duration,
    /// The same while a party holds the call (a held phone may send nothing).
    pub hold_timeout: Duration,
    /// Threads of the relay (lanes: each stream on one of them).
    pub threads: usize,
    /// The relay threads' real-time FIFO priority (1..99; 0: not real-time). Audio
    /// waits for nothing else on the box: a report or a backup must not make calls
    /// stutter.
    pub realtime: u8,
    /// The relay threads' nice value (-20..19; lower runs first), where real-time is
    /// off or refused.
    pub nice: i32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            advertise: None,
            ports: (10_000, 20_000),
            timeout: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(7200),
            threads: 2,
            realtime: 10,
            nice: -10,
        }
    }
}

/// The app's answer to "how is a call between these parties recorded?" (kept in
/// memory by the app, as the SIP directory is).
pub trait RecordingPolicy: Send + Sync {
    fn recording(&self, parties: &[&str], trunk: Option<i64>) -> crate::sip::Recording;
}

/// The running relay.
#[derive(Clone)]
pub struct Media {
    relay: Arc<relay::Relay>,
    advertise: Option<IpAddr>,
    policy: Arc<std::sync::OnceLock<Arc<dyn RecordingPolicy>>>,
}

impl Media {
    pub fn start(cfg: MediaConfig) -> std::io::Result<Media> {
        let advertise = cfg.advertise;
        Ok(Media {
            relay: Arc::new(relay::Relay::start(cfg)?),
            advertise,
            policy: Default::default(),
        })
    }

    /// Records calls as `policy` says, into files by `cfg` (once, before calls come).
    pub fn set_recording(
        &self,
        cfg: record::RecorderConfig,
        policy: Arc<dyn RecordingPolicy>,
    ) -> std::io::Result<()> {
        self.relay.set_recorder(record::Recorder::start(cfg)?);
        let _ = self.policy.set(policy);
        Ok(())
    }

    /// The announcement played before recording (None: straight to recording), for
    /// calls from now on.
    pub fn set_prompt(&self, p: Option<Arc<record::Prompt>>) {
        self.relay.set_prompt(p);
    }

    /// How recordings started from now on are stored.
    pub fn set_format(&self, f: record::Format) {
        if let Some(r) = self.relay.recorder() {
            r.send(record::Msg::Format(f));
        }
    }

    /// Starts recording call `call` now (the call-card button); false when the call is
    /// not anchored for recording (its policy is off, or it is over).
    pub fn record_now(&self, call: &str) -> bool {
        self.relay.record_now(call)
    }

    /// Is call `call` anchored with a recording tap?
    pub fn is_recorded(&self, call: &str) -> bool {
        self.relay.is_recorded(call)
    }

    /// Packet copies the recorder dropped because it was behind.
    pub fn recorder_dropped(&self) -> u64 {
        self.relay.recorder().map(|r| r.dropped()).unwrap_or(0)
    }

    /// Closes every stream and stops the relay's threads.
    pub fn stop(&self) {
        self.relay.stop();
    }

    /// Anchored calls right now.
    pub fn calls(&self) -> usize {
        self.relay.calls_open()
    }

    /// (packets relayed, packets dropped) of an anchored call.
    pub fn counts(&self, call: &str) -> Option<(u64, u64)> {
        self.relay.counts(call)
    }

    /// The relay's RTP port of each stream of an anchored call: [the one the caller
    /// sends to, the one the callee sends to].
    pub fn ports(&self, call: &str) -> Option<Vec<[u16; 2]>> {
        self.relay.ports(call)
    }

    pub fn timeout(&self) -> Duration {
        self.relay.idle_for()
    }
}

impl crate::sip::MediaPlane for Media {
    fn open(&self, call: &str) {
        self.relay.open(call);
    }

    fn is_open(&self, call: &str) -> bool {
        self.relay.is_open(call)
    }

    fn rewrite(
        &self,
        call: &str,
        to: SocketAddr,
        callee: bool,
        browser: bool,
        host: IpAddr,
        sdp: &[u8],
    ) -> Option<Vec<u8>> {
        let host = self.advertise.unwrap_or(host);
        self.relay.rewrite(call, to, callee, browser, host, sdp)
    }

    fn end(&self, call: &str) {
        self.relay.end(call);
    }

    fn recording(&self, parties: &[&str], trunk: Option<i64>) -> crate::sip::Recording {
        match self.policy.get() {
            Some(p) if self.relay.recorder().is_some() => p.recording(parties, trunk),
            _ => crate::sip::Recording::Off,
        }
    }

    fn record(&self, call: &str, how: crate::sip::Recording) {
        self.relay.record(call, how);
    }

    fn answered(&self, call: &str) {
        self.relay.answered(call);
    }

    fn silent(&self) -> Vec<(String, Duration)> {
        self.relay
            .silent()
            .into_iter()
            .map(|(k, ms)| (k, Duration::from_millis(ms)))
            .collect()
    }
}
