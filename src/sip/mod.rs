//! The built-in SIP registrar and proxy for the office's desk phones.
//!
//! Depends on nothing else in the crate: the app plugs in through the traits below
//! ([`Directory`] for extensions and ring groups, [`BindingStore`] for persisting
//! registrations, [`EventSink`] for call events). Layout:
//! - `message`: bytes <-> [`message::Message`] (the only parser), framing for TCP;
//! - `digest`: digest authentication and nonces;
//! - `engine`: registrar + transaction-stateful proxy as pure logic (packet in, packets
//!   out, timers), so it is unit- and property-testable without sockets;
//! - `transport`: UDP and TCP sockets around the engine.

pub mod digest;
pub mod engine;
pub mod message;
pub mod probe;
pub mod transport;
pub mod trunk;

/// The park feature code by default: a blind transfer to it parks the call on the first
/// free orbit.
pub const PARK_CODE: &str = "*70";

use std::net::SocketAddr;
use std::sync::Arc;

pub use engine::{BanInfo, Registration};
pub use transport::{start, start_with_media, SipControl, SipHandle, WsLink};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over WebSocket (RFC 7118) from a signed-in browser on the web port; the
    /// address is the browser's end of its socket. Never dialled: a WS contact is
    /// reachable only while its socket is open.
    Ws,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Ws => "WS",
        }
    }
}

/// Where a packet came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// How a ring group alerts its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// All members at once.
    RingAll,
    /// One member after another, each for `member_timeout_secs`.
    Sequential,
}

#[derive(Debug, Clone)]
pub struct RingGroup {
    pub members: Vec<String>,
    pub strategy: Strategy,
    pub member_timeout_secs: u32,
    pub overall_timeout_secs: u32,
}

/// What a number dialled or authenticated against is.
#[derive(Debug, Clone)]
pub enum Entry {
    /// An enabled extension and its SIP secret.
    Extension {
        secret: Arc<str>,
        /// The digest algorithms offered to this extension's phone, in order; None: the
        /// box's (`SipConfig::algorithms`). Some phones fail on an algorithm they do not
        /// know instead of skipping its challenge (baresip on SHA-256).
        algorithms: Option<Arc<[digest::Algorithm]>>,
    },
    Group(RingGroup),
}

/// The extension and ring-group table, kept in memory by the app (never a DB call per
/// packet).
pub trait Directory: Send + Sync {
    fn lookup(&self, number: &str) -> Option<Entry>;
}

/// A registered contact, as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    pub extension: String,
    pub contact: String,
    pub source: Peer,
    /// Unix seconds.
    pub expires_at: u64,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: String,
}

/// Persists registrations off the hot path; calls must not block.
pub trait BindingStore: Send + Sync {
    fn upsert(&self, b: &StoredBinding);
    fn remove(&self, extension: &str, contact: &str);
}

/// Which side of the box a call came from and goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// Extension to extension (or ring group) inside the office.
    Internal,
    /// From the SIP trunk (the provider) to the office.
    Inbound,
    /// From an extension out through the trunk.
    Outbound,
}

/// A call as seen by the proxy. `call_id` is the SIP Call-ID of the caller's INVITE,
/// stable across all events of one call.
///
/// Calls with the outside world: `Inbound` (from a trunk) report the DID in `to` and the
/// ring group or extension it routes to in `group`/`extensions`. `Outbound` (an
/// extension out through a trunk) reports the extension in `from`, the number in `to`,
/// no `extensions` (no phone of ours rings), and `Answered.extension` is the calling
/// extension once the far end answers. Click-to-call is one call id for both legs: the
/// Call-ID of the box's INVITE to the operator's phone; `Ringing` lists the operator's
/// extension, `Answered` comes when the target answers, and `direction` is `Internal`
/// for an extension target and `Outbound` through a trunk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallEvent {
    Ringing {
        call_id: String,
        direction: CallDirection,
        /// The caller's number (user part of From), as sent.
        from: String,
        /// The number dialled (user part of the Request-URI).
        to: String,
        /// The ring group dialled, when `to` is one.
        group: Option<String>,
        /// The extensions being alerted.
        extensions: Vec<String>,
        /// A transfer: the extension that passed the call on (its REFER), and the call id
        /// of the call it continues.
        #[serde(skip_serializing_if = "Option::is_none")]
        transferred_by: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        transferred_from: Option<String>,
    },
    Answered {
        call_id: String,
        extension: String,
    },
    Ended {
        call_id: String,
        /// "completed" (BYE after answer), "cancelled", "no_answer", or "status_NNN".
        cause: String,
        /// ms from the INVITE to answer or end.
        ring_ms: u64,
        /// ms from answer to BYE (0 when not answered).
        talk_ms: u64,
    },
    /// The call `call_id` (its row has ended) is held by the box on `orbit`: `by` parked
    /// it, `party` is who waits.
    Parked {
        call_id: String,
        orbit: String,
        by: String,
        party: String,
    },
    /// The call parked on `orbit` left it: "retrieved" (by that extension; the call goes
    /// on as a new call transferred by the parker), "timed_out" (the parker's phone is
    /// rung), or "hung_up" (the party gave up).
    Unparked {
        call_id: String,
        orbit: String,
        cause: String,
        by: Option<String>,
    },
}

pub trait EventSink: Send + Sync {
    fn emit(&self, ev: CallEvent);
}

impl EventSink for tokio::sync::broadcast::Sender<CallEvent> {
    fn emit(&self, ev: CallEvent) {
        // No receiver is fine: nobody listening yet.
        let _ = self.send(ev);
    }
}

/// The media plane as the SIP side sees it (the app plugs in `media::Media`): the engine
/// anchors a call (`open`) by [`SipConfig::anchor_trunk`] / [`SipConfig::anchor_internal`],
/// passes every SDP body going to a party of an anchored call through `rewrite` (the
/// engine keeps the bodies as the parties sent them; only the copy on the wire points at
/// the box), ends it with the call, and hangs up calls that `silent` reports.
pub trait MediaPlane: Send + Sync {
    /// Anchor call `call` (the call id of the events).
    fn open(&self, call: &str);
    fn is_open(&self, call: &str) -> bool;
    /// `sdp` goes to the party whose signalling address is `to`; `callee`: in the
    /// call's first INVITE to that party. `host`: the box's address as that party sees
    /// it. None: send the body as it is (not anchored, not SDP, no port free).
    /// `browser`: that party is a browser (a SIP-over-WebSocket contact): it gets a
    /// WebRTC body (ICE-lite, DTLS-SRTP) whatever the other party sent.
    #[allow(clippy::too_many_arguments)]
    fn rewrite(
        &self,
        call: &str,
        to: SocketAddr,
        callee: bool,
        browser: bool,
        host: std::net::IpAddr,
        sdp: &[u8],
    ) -> Option<Vec<u8>>;
    /// The call is over (or no longer anchored): its ports go back.
    fn end(&self, call: &str);
    /// Anchored calls with no packet either way for longer than allowed, and for how
    /// long.
    fn silent(&self) -> Vec<(String, std::time::Duration)>;
    /// How a call between `parties` (extension and ring-group numbers, as dialled or
    /// calling) through trunk `trunk` (its id) is recorded. Anything but `Off` anchors
    /// the call whatever the anchoring settings say.
    fn recording(&self, _parties: &[&str], _trunk: Option<i64>) -> Recording {
        Recording::Off
    }
    /// Record anchored call `call` as `how` says (after `open`).
    fn record(&self, _call: &str, _how: Recording) {}
    /// Call `call` was answered (a recording's announcement plays then).
    fn answered(&self, _call: &str) {}
}

/// Is `sdp` a WebRTC body (DTLS-SRTP with a fingerprint, as browsers send)? Such a
/// body never goes to a phone as it is: the box terminates it.
pub fn webrtc_sdp(sdp: &[u8]) -> bool {
    let has = |needle: &[u8]| {
        sdp.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    has(b"UDP/TLS/RTP/SAVPF") && has(b"a=fingerprint:")
}

/// A recording policy (of an extension, ring group or trunk); for a call, the strongest
/// of its parties' wins.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Recording {
    /// Not recorded.
    #[default]
    Off,
    /// Recorded from the moment a party dials the feature code (*1) during the call, or
    /// someone presses the button on the call card.
    OnDemand,
    /// Every call recorded from the start.
    All,
}

impl Recording {
    pub fn as_str(self) -> &'static str {
        match self {
            Recording::Off => "off",
            Recording::OnDemand => "on_demand",
            Recording::All => "all",
        }
    }
    pub fn parse(s: &str) -> Option<Recording> {
        match s.trim() {
            "off" => Some(Recording::Off),
            "on_demand" => Some(Recording::OnDemand),
            "all" => Some(Recording::All),
            _ => None,
        }
    }
}

/// Tunables; defaults suit a small office.
#[derive(Debug, Clone)]
pub struct SipConfig {
    pub listen: SocketAddr,
    /// The host (name or address) put in Via, Contact and Record-Route instead of the
    /// listen address. None: the listen address, or when that is 0.0.0.0/[::], the local
    /// address of the route to the peer.
    pub advertise: Option<String>,
    pub realm: String,
    /// Domain names that mean "this box" besides its addresses.
    pub domains: Vec<String>,
    /// Offered digest algorithms, in order of preference (one challenge header each).
    pub algorithms: Vec<digest::Algorithm>,
    pub nonce_ttl_secs: u64,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts_per_extension: usize,
    /// Authentication failures of one extension from one address within
    /// `ban_window_secs` that ban that extension from that address.
    pub ban_after_failures: u32,
    pub ban_window_secs: u64,
    pub ban_secs: u64,
    /// Scanning evidence that bans a whole address: failures within the window for this
    /// many distinct user names, or for this many names that are no extension.
    pub scan_users: u32,
    pub scan_unknown_users: u32,
    /// The office's own networks: never banned as a whole address (a phone there is
    /// banned alone); desk-phone provisioning answers only these.
    pub trusted: Vec<Net>,
    /// Concurrent INVITE transactions (not yet answered) one source address may hold;
    /// more get 503. A flood guard: one address can take at most 1 % of the engine's
    /// transaction table (200 000). Not a call limit: a desk phone holds one or two, a
    /// trunk as many as its channels.
    pub max_calls_per_source: usize,
    /// Seconds an INVITE rings before the proxy gives up (480).
    pub ring_timeout_secs: u32,
    pub max_tcp_connections: usize,
    /// A TCP message must be complete this long after its first byte (slow senders).
    pub tcp_message_timeout_secs: u64,
    /// A TCP connection that has authenticated nothing is closed after this long
    /// without a complete message (a registered phone's lasts until its registration
    /// would have expired).
    pub tcp_unproven_idle_secs: u64,
    /// The feature code a blind transfer is sent to for a park on the first free orbit.
    pub park_code: String,
    /// The park orbits: (first number, how many); 0 turns park off.
    pub park_orbits: (u32, u32),
    /// Seconds a parked call waits before the parker's phone rings with it.
    pub park_timeout_secs: u64,
    /// With a media plane: anchor calls through a trunk, and calls between extensions.
    pub anchor_trunk: bool,
    pub anchor_internal: bool,
}

impl SipConfig {
    pub fn new(listen: SocketAddr) -> SipConfig {
        SipConfig {
            listen,
            advertise: None,
            realm: "crm.local".into(),
            domains: vec!["crm.local".into()],
            algorithms: vec![digest::Algorithm::Md5],
            nonce_ttl_secs: 300,
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_contacts_per_extension: 10,
            ban_after_failures: 10,
            ban_window_secs: 60,
            ban_secs: 600,
            scan_users: 10,
            scan_unknown_users: 3,
            trusted: Vec::new(),
            max_calls_per_source: 2000,
            ring_timeout_secs: 120,
            max_tcp_connections: 1024,
            tcp_message_timeout_secs: 20,
            tcp_unproven_idle_secs: 60,
            park_code: PARK_CODE.into(),
            park_orbits: (701, 20),
            park_timeout_secs: 120,
            anchor_trunk: true,
            anchor_internal: false,
        }
    }
}

/// An address range (CIDR), e.g. `192.168.1.0/24` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let p = self.prefix.min(32) as u32;
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let p = self.prefix.min(128) as u32;
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Net {
    type Err = String;

    /// `a.b.c.d/n`, `x::y/n`, or a bare address (one host).
    fn from_str(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: not an address range like 192.168.1.0/24"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length is 0 to {max}"))?,
            None => max,
        };
        Ok(Net { addr, prefix })
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
