//! Registrar and transaction-stateful proxy as pure logic: [`Engine::on_packet`] and
//! [`Engine::on_tick`] take input and push packets to send. No sockets, no clock reads
//! except the `now` passed in, so tests drive it directly.
//!
//! Rules, in the order a request meets them: banned source -> dropped; parse error ->
//! 400/505 (responses dropped); retransmission -> the stored reply; foreign domain -> 403;
//! Max-Forwards 0 -> 483; in-dialog request -> loose-routed only inside a dialog this
//! proxy set up; REGISTER -> 401 challenge, then bindings; anything else routed ->
//! 407 challenge first (toll fraud: nothing is routed for an unauthenticated source).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::digest::{self, Credentials, NonceBook, Verdict};
use super::message::{self, param, Message, Method, NameAddr, StartLine, Uri};
use super::{
    BindingStore, CallDirection, CallEvent, Directory, Entry, EventSink, Peer, SipConfig,
    StoredBinding, Strategy, Transport,
};

#[path = "b2bua.rs"]
mod b2bua;
#[path = "registration.rs"]
mod registration;
#[path = "route.rs"]
mod route;
pub use super::digest::{authorization, parse_challenge, Challenge};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_B: Duration = Duration::from_secs(32);
/// How long a finished transaction (and a cached stateless reply) is kept to absorb
/// retransmissions and forward 2xx retransmissions.
const LINGER: Duration = Duration::from_secs(16);
/// How long a reply to a non-INVITE request is kept for its resends: Timer J (64*T1,
/// RFC 3261 §17.2.2), the longest a client keeps resending over UDP.
const REPLY_LINGER: Duration = Duration::from_secs(32);
const BRANCH_PREFIX: &str = "z9hG4bKcrm";
const MAX_TXNS: usize = 200_000;
const MAX_DIALOGS: usize = 100_000;
const MAX_BAN_ENTRIES: usize = 50_000;

/// A packet to send.
#[derive(Debug, Clone)]
pub struct Out {
    pub to: Peer,
    pub data: Vec<u8>,
}

/// A registered contact, for the admin view.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Registration {
    pub extension: String,
    pub contact: String,
    pub user_agent: String,
    pub source: String,
    pub transport: &'static str,
    pub expires_in: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BanInfo {
    pub address: String,
    /// The extension banned from this address; None: the whole address (scanning).
    pub extension: Option<String>,
    pub failures: u32,
    pub banned_for_secs: u64,
}

#[derive(Debug, Clone)]
struct Binding {
    contact: String,
    source: Peer,
    expires_at: u64,
    call_id: String,
    cseq: u32,
    user_agent: String,
}

#[derive(Debug, Default)]
struct SourceState {
    failures: u32,
    window_start: u64,
    banned_until: u64,
    calls: usize,
    /// Distinct user names that failed from this address in the window, and how many of
    /// them are no extension at all: the evidence of scanning (capped).
    users: Vec<String>,
    unknown_users: u32,
}

/// Authentication failures of one extension from one address: a mistyped phone behind an
/// office's NAT is banned alone, its neighbours go on.
#[derive(Debug, Default)]
struct UserBan {
    failures: u32,
    window_start: u64,
    banned_until: u64,
}

/// Distinct user names remembered per address (enough to see scanning).
const MAX_USERS_PER_SOURCE: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnState {
    /// Forwarding, no final answer sent upstream yet.
    Proceeding,
    /// A final non-2xx sent; waiting for the ACK (UDP: retransmitting).
    Completed,
    /// 2xx forwarded, or ACK received: only lingering.
    Done,
}

struct Branch {
    id: String,
    extension: String,
    to: Peer,
    uri: String,
    request: Vec<u8>,
    /// The forwarded request's header set, to build CANCEL/ACK.
    via: String,
    provisional: bool,
    final_code: Option<u16>,
    cancel_pending: bool,
    cancelled: bool,
    started: bool,
}

struct ServerTxn {
    source: Peer,
    request: Message,
    last_response: Option<Vec<u8>>,
    state: TxnState,
    branches: Vec<Branch>,
    best: Option<Message>,
    answered: bool,
    cancelled: bool,
    started: Instant,
    caller: String,
    callee: String,
    /// The ring group dialled, if any.
    group: Option<String>,
    /// Sequential ring group: index of the next member to start.
    sequential: Option<(usize, Duration)>,
    source_ip: IpAddr,
    ended_reported: bool,
    direction: CallDirection,
    /// (transferred by, the call it continues) when this call is a transfer.
    transfer: Option<(String, String)>,
    /// The extension that authenticated the INVITE (None: from a trunk or the box).
    who: Option<String>,
}

/// A dialog this proxy record-routed. The parties are told apart by their dialog tags,
/// not by address: two phones behind one NAT address (or two softphones on one PC) share
/// an IP, and a phone on TCP may open a new connection for a mid-dialog request.
struct Dialog {
    caller: Peer,
    callee: Peer,
    /// From tag of the INVITE (the caller's) and To tag of its 2xx (the callee's).
    caller_tag: String,
    callee_tag: String,
    /// The caller's user (an extension, or the outside number of a call from a trunk).
    caller_user: String,
    started: Instant,
    answered: Instant,
    extension: String,
    ended: bool,
    direction: CallDirection,
    /// What the box needs to step into this dialog in place of a party (a transfer of
    /// a trunk call, a park): kept for every dialog, as a transfer can come at any time.
    info: Box<DialogInfo>,
}

/// A proxied dialog as each party sees it.
struct DialogInfo {
    /// The INVITE's From (with the caller's tag) and To (without a tag).
    from: String,
    to: String,
    caller_contact: String,
    /// The INVITE's Record-Route set (the caller's proxies; ours is not in it).
    caller_routes: Vec<String>,
    callee_contact: String,
    /// The last SDP each party sent (INVITE, 2xx, and later requests with a body).
    caller_sdp: Vec<u8>,
    callee_sdp: Vec<u8>,
    /// The highest CSeq each party used in the dialog.
    caller_cseq: u32,
    callee_cseq: u32,
    /// The caller's authenticated extension (None for a call from a trunk).
    caller_ext: Option<String>,
}

/// The B2BUA as the proxy sees it, and the proxy as the B2BUA sees it. A leg the box
/// places to an extension itself (a transfer's target, a park's ring-back) goes through
/// its own proxy (forking, ring groups, record-routing, the call events) without the
/// network. No packet from the network comes from 0.0.0.0, so neither can be forged.
pub(crate) const LOOP_UA: Peer = Peer {
    transport: Transport::Udp,
    addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1)),
};
pub(crate) const LOOP_PROXY: Peer = Peer {
    transport: Transport::Udp,
    addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 2)),
};

fn is_loop(p: Peer) -> bool {
    p == LOOP_UA || p == LOOP_PROXY
}

/// Why the box itself sends an INVITE into its proxy: the direction and the transfer the
/// call log shows. Keyed by the INVITE's Call-ID; taken when the proxy sees it.
pub(super) struct LoopOrigin {
    direction: CallDirection,
    by: String,
    from_call: String,
}

/// A REFER seen in a dialog: who asked, in which call, for which target.
struct Referral {
    by: String,
    call_id: String,
    target: String,
    at: Instant,
}

/// The feature code that picks up a call ringing in one of the dialler's ring groups.
pub const PICKUP_CODE: &str = "*8";

/// How long after its REFER the transferee's call counts as the transfer.
const REFERRAL_TTL: Duration = Duration::from_secs(64);
const MAX_REFERRALS: usize = 10_000;

#[derive(Debug, Clone)]
enum Timer {
    BranchRetransmit {
        txn: String,
        branch: String,
        interval: Duration,
    },
    BranchTimeout {
        txn: String,
        branch: String,
    },
    RingTimeout {
        txn: String,
    },
    MemberTimeout {
        txn: String,
        member: usize,
    },
    FinalRetransmit {
        txn: String,
        interval: Duration,
    },
    TxnExpire {
        txn: String,
    },
    DialogExpire {
        call_id: String,
    },
    /// Trunk registration and B2BUA timers.
    Outside(b2bua::OTimer),
}

struct Scheduled {
    at: Instant,
    seq: u64,
    timer: Timer,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Engine {
    cfg: SipConfig,
    directory: Arc<dyn Directory>,
    store: Arc<dyn BindingStore>,
    events: Arc<dyn EventSink>,
    nonces: NonceBook,
    location: HashMap<String, Vec<Binding>>,
    /// Server INVITE transactions by [`txn_key`].
    txns: HashMap<String, ServerTxn>,
    /// Our client branch id -> server transaction key.
    branches: HashMap<String, String>,
    dialogs: HashMap<String, Dialog>,
    /// Replies to non-INVITE requests, by branch+method, for retransmissions.
    replies: HashMap<String, Vec<u8>>,
    reply_order: VecDeque<(Instant, String)>,
    sources: HashMap<IpAddr, SourceState>,
    user_bans: HashMap<(IpAddr, String), UserBan>,
    /// TCP connections on which a request passed authentication.
    proven_tcp: std::collections::HashSet<SocketAddr>,
    /// Open SIP-over-WebSocket sockets and the extension of the signed-in user each
    /// speaks for: the web session authenticated it, so no digest challenge.
    ws_users: HashMap<SocketAddr, String>,
    /// Transfers asked for (a REFER passed in a dialog), by the transferee's user: the
    /// transferee's next call to the target is the transferred call.
    referrals: HashMap<String, Referral>,
    /// INVITEs the B2BUA sends into the proxy, by Call-ID (see [`LoopOrigin`]).
    loop_origins: HashMap<String, LoopOrigin>,
    /// (transferred by, the call it continues) of the INVITE the proxy is routing for
    /// the B2BUA right now.
    loop_transfer: Option<(String, String)>,
    timers: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Our own host for Via/Record-Route when the listen address is unspecified.
    advertised: String,
    last_sweep: u64,
    /// Trunks, their registrations and the calls through them.
    outside: b2bua::Outside,
    /// The media plane, when the box anchors media, and when it next asks it for
    /// silent calls.
    media: Option<Arc<dyn super::MediaPlane>>,
    media_check: Instant,
}

/// Passes call events on, tells the media plane when a call is answered and releases an
/// anchored call's media when it ends.
struct EndMedia {
    inner: Arc<dyn EventSink>,
    media: Arc<dyn super::MediaPlane>,
}

impl EventSink for EndMedia {
    fn emit(&self, ev: CallEvent) {
        match &ev {
            CallEvent::Ended { call_id, .. } => self.media.end(call_id),
            CallEvent::Answered { call_id, .. } => self.media.answered(call_id),
            _ => {}
        }
        self.inner.emit(ev);
    }
}

/// Does a message end in an SDP body (cheap look before parsing)?
fn carries_sdp(data: &[u8]) -> bool {
    data.windows(7).any(|w| w == b"\r\n\r\nv=0")
}

fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Engine {
    pub fn new(
        cfg: SipConfig,
        directory: Arc<dyn Directory>,
        store: Arc<dyn BindingStore>,
        events: Arc<dyn EventSink>,
        restored: Vec<StoredBinding>,
    ) -> Engine {
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut key);
        let advertised = match cfg.listen.ip() {
            _ if cfg.advertise.is_some() => {
                super::trunk::uri_host(cfg.advertise.as_deref().unwrap_or_default())
            }
            // Listening everywhere: the address of the default route is what phones on
            // the LAN reach (no packet is sent to find it).
            ip if ip.is_unspecified() => route::default_route_host(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let mut e = Engine {
            nonces: NonceBook::new(key, cfg.nonce_ttl_secs, 1_000_000),
            cfg,
            directory,
            store,
            events,
            location: HashMap::new(),
            txns: HashMap::new(),
            branches: HashMap::new(),
            dialogs: HashMap::new(),
            replies: HashMap::new(),
            reply_order: VecDeque::new(),
            sources: HashMap::new(),
            user_bans: HashMap::new(),
            proven_tcp: Default::default(),
            ws_users: HashMap::new(),
            referrals: HashMap::new(),
            loop_origins: HashMap::new(),
            loop_transfer: None,
            timers: BinaryHeap::new(),
            seq: 0,
            advertised,
            last_sweep: 0,
            outside: b2bua::Outside::default(),
            media: None,
            media_check: Instant::now(),
        };
        let now = wall_secs();
        for b in restored {
            if b.expires_at > now {
                e.location.entry(b.extension).or_default().push(Binding {
                    contact: b.contact,
                    source: b.source,
                    expires_at: b.expires_at,
                    call_id: b.call_id,
                    cseq: b.cseq,
                    user_agent: b.user_agent,
                });
            }
        }
        e
    }

    /// Anchors media through `media` (by `anchor_trunk` / `anchor_internal`).
    pub fn set_media(&mut self, media: Arc<dyn super::MediaPlane>) {
        self.events = Arc::new(EndMedia {
            inner: self.events.clone(),
            media: media.clone(),
        });
        self.media = Some(media);
    }

    /// Anchors call `key` when the anchoring settings say so, or when it is to be
    /// recorded (the recording policy of `parties` or of `trunk` is not off).
    pub(super) fn anchor(
        &self,
        key: &str,
        direction: CallDirection,
        parties: &[&str],
        trunk: Option<i64>,
    ) {
        let Some(m) = &self.media else { return };
        let on = match direction {
            CallDirection::Internal => self.cfg.anchor_internal,
            CallDirection::Inbound | CallDirection::Outbound => self.cfg.anchor_trunk,
        };
        let record = m.recording(parties, trunk);
        if on || record != super::Recording::Off {
            m.open(key);
        }
        if record != super::Recording::Off {
            m.record(key, record);
        }
    }

    /// The call no longer goes through the relay (a transfer or park hands its media to
    /// the parties).
    pub(super) fn unanchor(&self, key: &str) {
        if let Some(m) = &self.media {
            m.end(key);
        }
    }

    /// Points the SDP of every message for the network that belongs to an anchored call
    /// at the relay. Runs once per entry point over what it sends, so the engine keeps
    /// the parties' own bodies (retransmissions are rewritten the same way again).
    fn anchor_out(&mut self, out: &mut [Out]) {
        let Some(m) = self.media.clone() else { return };
        for o in out.iter_mut() {
            if is_loop(o.to) || !carries_sdp(&o.data) {
                continue;
            }
            let Ok(mut msg) = message::parse(&o.data, true) else {
                continue;
            };
            if !b2bua::is_sdp(&msg) {
                continue;
            }
            let cid = msg.call_id();
            let key = match self.outside.by_call_id.get(cid) {
                Some((k, _)) => k.clone(),
                None => cid.to_string(),
            };
            // A browser's leg always goes through the box: it speaks WebRTC (ICE,
            // DTLS-SRTP), the phones and trunks plain RTP.
            let browser = o.to.transport == Transport::Ws;
            if !m.is_open(&key) {
                if !(browser || super::webrtc_sdp(&msg.body)) {
                    continue;
                }
                m.open(&key);
            }
            let callee = msg.method() == Some(Method::Invite)
                && msg
                    .header("to")
                    .and_then(NameAddr::parse)
                    .is_none_or(|n| n.tag().is_none());
            let host = self.media_host(o.to.addr.ip());
            if let Some(body) = m.rewrite(&key, o.to.addr, callee, browser, host, &msg.body) {
                msg.body = body;
                o.data = msg.to_bytes();
            }
        }
    }

    /// The box's address for media as a party at `ip` sees it (the SIP one).
    fn media_host(&mut self, ip: IpAddr) -> IpAddr {
        let me = self.me_for(ip);
        let host = me.rsplit_once(':').map(|(h, _)| h).unwrap_or(&me);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
            .or_else(|| route::route_local(ip))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    /// Once a second: hangs up answered calls the media plane reports silent.
    fn media_tick(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(m) = self.media.clone() else { return };
        if now < self.media_check {
            return;
        }
        self.media_check = now + Duration::from_secs(1);
        for (key, idle) in m.silent() {
            if let Some(d) = self.dialogs.get(&key) {
                if !d.ended && now.duration_since(d.answered) >= idle {
                    tracing::info!(call = %key, idle_ms = idle.as_millis() as u64, "SIP: media stopped; hanging up");
                    self.media_stopped(&key, true, now, out);
                }
            } else if let Some(answered) = self.outside.answered_at(&key) {
                if now.duration_since(answered) >= idle {
                    tracing::info!(call = %key, idle_ms = idle.as_millis() as u64, "SIP: media stopped; hanging up");
                    self.media_stopped(&key, false, now, out);
                }
            } else if idle > Duration::from_secs(86_400) {
                m.end(&key);
            }
        }
    }

    pub fn config(&self) -> &SipConfig {
        &self.cfg
    }

    // ----- admin views -------------------------------------------------------------

    pub fn registrations(&self) -> Vec<Registration> {
        let now = wall_secs();
        let mut out: Vec<Registration> = self
            .location
            .iter()
            .flat_map(|(ext, bs)| {
                bs.iter()
                    .filter(|b| b.expires_at > now)
                    .map(|b| Registration {
                        extension: ext.clone(),
                        contact: b.contact.clone(),
                        user_agent: b.user_agent.clone(),
                        source: b.source.addr.to_string(),
                        transport: b.source.transport.name(),
                        expires_in: b.expires_at - now,
                    })
            })
            .collect();
        out.sort_by(|a, b| {
            a.extension
                .cmp(&b.extension)
                .then(a.contact.cmp(&b.contact))
        });
        out
    }

    pub fn contact_count(&self) -> usize {
        self.location.values().map(Vec::len).sum()
    }

    pub fn bans(&self) -> Vec<BanInfo> {
        let now = wall_secs();
        let mut v: Vec<BanInfo> = self
            .sources
            .iter()
            .filter(|(_, s)| s.banned_until > now)
            .map(|(ip, s)| BanInfo {
                address: ip.to_string(),
                extension: None,
                failures: s.failures,
                banned_for_secs: s.banned_until - now,
            })
            .chain(
                self.user_bans
                    .iter()
                    .filter(|(_, b)| b.banned_until > now)
                    .map(|((ip, user), b)| BanInfo {
                        address: ip.to_string(),
                        extension: Some(user.clone()),
                        failures: b.failures,
                        banned_for_secs: b.banned_until - now,
                    }),
            )
            .collect();
        v.sort_by(|a, b| {
            a.address
                .cmp(&b.address)
                .then(a.extension.cmp(&b.extension))
        });
        v
    }

    /// Lifts the bans of an address (the whole address and each extension from it); true
    /// when there was one.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        let mut found = false;
        if let Some(s) = self.sources.get_mut(&ip) {
            if s.banned_until > 0 {
                found = true;
            }
            s.banned_until = 0;
            s.failures = 0;
            s.users.clear();
            s.unknown_users = 0;
        }
        let before = self.user_bans.len();
        self.user_bans
            .retain(|(a, _), b| *a != ip || b.banned_until == 0);
        found || self.user_bans.len() != before
    }

    /// Drops every binding of an extension (e.g. it was removed or disabled).
    pub fn unregister_all(&mut self, extension: &str) {
        if let Some(bs) = self.location.remove(extension) {
            for b in bs {
                self.store.remove(extension, &b.contact);
            }
        }
    }

    /// Has a request on this TCP connection passed authentication?
    pub fn tcp_proven(&self, peer: SocketAddr) -> bool {
        self.proven_tcp.contains(&peer)
    }

    pub fn tcp_closed(&mut self, peer: SocketAddr) {
        self.proven_tcp.remove(&peer);
    }

    /// A signed-in user's browser opened a SIP WebSocket: what comes over it speaks for
    /// `extension`.
    pub fn ws_opened(&mut self, peer: SocketAddr, extension: &str) {
        self.ws_users.insert(peer, extension.to_string());
    }

    /// The socket closed (tab closed, network gone): its registrations die with it
    /// (nothing can reach them), and so do its calls, as if the browser had hung up: a
    /// call it placed that still rings is cancelled, a branch ringing it fails with 480
    /// (a ring group rings on), an answered call gets a BYE to the other party (the
    /// call log ends it, the relay frees its ports).
    pub fn ws_closed(&mut self, peer: SocketAddr, now: Instant, out: &mut Vec<Out>) {
        let gone = Peer {
            transport: Transport::Ws,
            addr: peer,
        };
        if self.ws_users.contains_key(&peer) {
            self.ws_calls_end(gone, now, out);
        }
        let Some(ext) = self.ws_users.remove(&peer) else {
            return;
        };
        if let Some(list) = self.location.get_mut(&ext) {
            list.retain(|b| b.source != gone);
            if list.is_empty() {
                self.location.remove(&ext);
            }
        }
    }

    fn ws_calls_end(&mut self, gone: Peer, now: Instant, out: &mut Vec<Out>) {
        // Calls it placed, still ringing: cancelled (on_cancel without the 200 to it).
        let placed: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| t.source == gone && t.state == TxnState::Proceeding)
            .map(|(k, _)| k.clone())
            .collect();
        for key in placed {
            if let Some(t) = self.txns.get_mut(&key) {
                t.cancelled = true;
                t.sequential = None;
            }
            self.cancel_branches(&key, None, out);
            let none_live = self.txns.get(&key).is_some_and(|t| {
                t.branches
                    .iter()
                    .all(|b| !b.started || b.final_code.is_some() || b.cancel_pending)
            });
            if none_live {
                self.finish_with(&key, 487, "Request Terminated", now, out);
            }
        }
        // Calls ringing it: its branch fails as if it had answered 480.
        let ringing: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| {
                t.state == TxnState::Proceeding
                    && t.branches
                        .iter()
                        .any(|b| b.to == gone && b.started && b.final_code.is_none())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in ringing {
            if let Some(t) = self.txns.get_mut(&key) {
                for b in t.branches.iter_mut() {
                    if b.to == gone && b.started && b.final_code.is_none() {
                        b.final_code = Some(480);
                    }
                }
                if t.best.is_none() {
                    t.best = Some(reply(&t.request, 480, "Temporarily Unavailable"));
                }
            }
            self.maybe_finish(&key, now, out);
        }
        // Answered calls: the box takes the dialog over and hangs up the other party
        // itself (see `party_gone`).
        let talking: Vec<(String, bool)> = self
            .dialogs
            .iter()
            .filter(|(_, d)| !d.ended && (d.caller == gone || d.callee == gone))
            .map(|(k, d)| (k.clone(), d.caller == gone))
            .collect();
        for (cid, caller_gone) in talking {
            tracing::info!(call = %cid, "SIP: the softphone's socket closed; hanging up");
            self.party_gone(&cid, caller_gone, now, out);
        }
        // Calls through the B2BUA with the browser as one side.
        self.ws_gone_outside(gone, now, out);
        self.finish(now, out);
    }

    /// Number of live transactions and dialogs (for tests of bounded state).
    pub fn state_size(&self) -> (usize, usize, usize) {
        (self.txns.len(), self.dialogs.len(), self.replies.len())
    }

    // ----- helpers ------------------------------------------------------------------

    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.timers.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            timer,
        }));
    }

    fn new_branch(&mut self) -> String {
        self.seq += 1;
        format!("{BRANCH_PREFIX}{:x}{:x}", self.seq, rand::random::<u32>())
    }

    fn port(&self) -> u16 {
        self.cfg.listen.port()
    }

    fn via(&self, transport: Transport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {}:{};branch={branch}",
            transport.name(),
            self.advertised,
            self.port()
        )
    }

    /// Our Record-Route entry as a peer on `transport` should reach us: with the
    /// transport named for TCP, so a phone registered over TCP sends its mid-dialog
    /// requests over TCP too (RFC 3263 would pick UDP for a bare `sip:` URI).
    fn record_route(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!("<sip:{}:{};lr>", self.advertised, self.port()),
            Transport::Tcp => format!("<sip:{}:{};transport=tcp;lr>", self.advertised, self.port()),
            Transport::Ws => format!("<sip:{}:{};transport=ws;lr>", self.advertised, self.port()),
        }
    }

    /// Record-Route for a request that came in on `inbound` and goes out on `outbound`:
    /// one entry when both legs use one transport, else two (RFC 5658), the top one for
    /// the callee's side. Given top first, to prepend in reverse.
    fn record_routes(&self, inbound: Transport, outbound: Transport) -> Vec<String> {
        if inbound == outbound {
            vec![self.record_route(inbound)]
        } else {
            let r2 = |t: Transport| {
                let rr = self.record_route(t);
                rr.replacen(";lr>", ";lr;r2=on>", 1)
            };
            vec![r2(outbound), r2(inbound)]
        }
    }

    /// Is `host[:port]` this box?
    fn is_local(&self, host: &str, port: Option<u16>) -> bool {
        let port_ok = port.unwrap_or(5060) == self.port();
        if self
            .cfg
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
        {
            return true;
        }
        let ip: Option<IpAddr> = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        match ip {
            Some(ip) => {
                let exactly_ours = ip == self.cfg.listen.ip()
                    || super::trunk::uri_host(&ip.to_string()) == self.advertised;
                // A URI with our own address and no port is ours too: phones drop the
                // port in some URIs they build (linphone's Refer-To), which would
                // otherwise mean 5060 when the box listens elsewhere.
                (port.is_none() && exactly_ours)
                    || (port_ok
                        && (exactly_ours
                            || (self.cfg.listen.ip().is_unspecified()
                                && (ip.is_loopback() || !ip.is_multicast()))))
            }
            None => false,
        }
    }

    /// Serialises a response to a request from `from`, adding received/rport to the top
    /// Via (RFC 3581), and queues it to the source address.
    fn send_response(&self, mut resp: Message, from: Peer, out: &mut Vec<Out>) -> Vec<u8> {
        if let Some(h) = resp.headers.iter_mut().find(|h| h.key == "via") {
            let values = message::split_commas(&h.value);
            let top = values[0];
            let mut v = String::with_capacity(h.value.len() + 40);
            let mut rebuilt = String::new();
            for (i, part) in top.split(';').enumerate() {
                let k = part.split('=').next().unwrap_or("").trim();
                if k.eq_ignore_ascii_case("received") {
                    continue;
                }
                if i > 0 {
                    rebuilt.push(';');
                }
                if k.eq_ignore_ascii_case("rport") {
                    rebuilt.push_str(&format!("rport={}", from.addr.port()));
                } else {
                    rebuilt.push_str(part);
                }
            }
            rebuilt.push_str(&format!(";received={}", from.addr.ip()));
            v.push_str(&rebuilt);
            for rest in &values[1..] {
                v.push_str(", ");
                v.push_str(rest);
            }
            h.value = v;
        }
        let data = resp.to_bytes();
        out.push(Out {
            to: from,
            data: data.clone(),
        });
        data
    }

    /// Sends a stateless reply and remembers it for retransmissions of the request.
    fn answer(&mut self, req: &Message, from: Peer, code: u16, reason: &str, out: &mut Vec<Out>) {
        let r = reply(req, code, reason);
        self.answer_with(req, from, r, out);
    }

    fn answer_with(&mut self, req: &Message, from: Peer, resp: Message, out: &mut Vec<Out>) {
        let data = self.send_response(resp, from, out);
        if req.method() != Some(Method::Ack) {
            if let Some(key) = reply_key(req, from) {
                // Full: the oldest reply gives way, not the newest. Resends come soonest
                // after the original, and a resend that misses the cache is re-checked
                // (and then refused as a Replay, which bans nobody).
                while self.replies.len() >= MAX_TXNS {
                    match self.reply_order.pop_front() {
                        Some((_, old)) => {
                            self.replies.remove(&old);
                        }
                        None => break,
                    }
                }
                self.reply_order
                    .push_back((Instant::now() + REPLY_LINGER, key.clone()));
                self.replies.insert(key, data);
            }
        }
    }

    fn source(&mut self, ip: IpAddr) -> Option<&mut SourceState> {
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_BAN_ENTRIES {
            return None;
        }
        Some(self.sources.entry(ip).or_default())
    }

    /// Counts a failed authentication of `user` from `ip`. The extension is banned from
    /// that address after `ban_after_failures`; the whole address only on evidence of
    /// scanning (many user names, or names that are no extension), and never when it is
    /// in a trusted range or a trunk provider's.
    fn auth_failed(&mut self, ip: IpAddr, user: &str, known: bool, now_secs: u64) {
        let (limit, window, ban) = (
            self.cfg.ban_after_failures,
            self.cfg.ban_window_secs,
            self.cfg.ban_secs,
        );
        if limit == 0 || self.outside.plan.trunk_from(ip).is_some() {
            return;
        }
        let user = message::log_safe(user.as_bytes(), 64);
        let key = (ip, user.clone());
        if self.user_bans.contains_key(&key) || self.user_bans.len() < MAX_BAN_ENTRIES {
            let b = self.user_bans.entry(key).or_default();
            if now_secs > b.window_start + window {
                b.window_start = now_secs;
                b.failures = 0;
            }
            b.failures += 1;
            if b.failures >= limit && b.banned_until <= now_secs {
                b.banned_until = now_secs + ban;
                tracing::warn!(source = %ip, user = %user,
                    "SIP: too many authentication failures, extension banned from this address");
            }
        }
        let trusted = self.cfg.trusted.iter().any(|n| n.contains(ip));
        let (scan_users, scan_unknown) = (self.cfg.scan_users, self.cfg.scan_unknown_users);
        if let Some(s) = self.source(ip) {
            if now_secs > s.window_start + window {
                s.window_start = now_secs;
                s.failures = 0;
                s.users.clear();
                s.unknown_users = 0;
            }
            s.failures += 1;
            if !s.users.contains(&user) && s.users.len() < MAX_USERS_PER_SOURCE {
                s.users.push(user);
                if !known {
                    s.unknown_users += 1;
                }
            }
            let scanning = s.users.len() as u32 >= scan_users || s.unknown_users >= scan_unknown;
            if scanning && !trusted && s.banned_until <= now_secs {
                s.banned_until = now_secs + ban;
                tracing::warn!(source = %ip, users = s.users.len(),
                    "SIP: authentication failures for many user names (scanning), address banned");
            }
        }
    }

    fn is_banned(&self, ip: IpAddr, now_secs: u64) -> bool {
        self.sources
            .get(&ip)
            .is_some_and(|s| s.banned_until > now_secs)
    }

    fn user_banned(&self, ip: IpAddr, user: &str, now_secs: u64) -> bool {
        !self.user_bans.is_empty()
            && self
                .user_bans
                .get(&(ip, user.to_string()))
                .is_some_and(|b| b.banned_until > now_secs)
    }

    /// Checks credentials in `header` (Authorization or Proxy-Authorization). Returns the
    /// authenticated user, or sends the challenge and returns None.
    fn authenticate(
        &mut self,
        req: &Message,
        from: Peer,
        header: &str,
        now_secs: u64,
        out: &mut Vec<Out>,
    ) -> Option<String> {
        let (code, reason, chal_name, chal_key) = if header == "authorization" {
            (401, "Unauthorized", "WWW-Authenticate", "www-authenticate")
        } else {
            (
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate",
                "proxy-authenticate",
            )
        };
        if from.transport == Transport::Ws {
            // The web session signed this socket in; nothing else speaks over it.
            if let Some(ext) = self.ws_users.get(&from.addr) {
                return Some(ext.clone());
            }
            self.answer(req, from, 403, "Forbidden", out);
            return None;
        }
        let mut stale = false;
        let realm = self.cfg.realm.clone();
        let creds = req
            .headers_of(header)
            .filter_map(Credentials::parse)
            .find(|c| c.realm == realm);
        if !self.user_bans.is_empty() {
            // An extension banned from this address: silence, as for a banned address,
            // with or without credentials.
            let claimed = match &creds {
                Some(c) => c.username.clone(),
                None => req
                    .header("from")
                    .and_then(NameAddr::parse)
                    .and_then(|n| Uri::parse(n.uri).and_then(|u| u.user_unescaped()))
                    .unwrap_or_default(),
            };
            if self.user_banned(from.addr.ip(), &claimed, now_secs) {
                return None;
            }
        }
        if let Some(c) = creds {
            let method = match &req.start {
                StartLine::Request { method_text, .. } => method_text.as_str(),
                _ => "",
            };
            let mut known = false;
            let verdict = match self.directory.lookup(&c.username) {
                Some(Entry::Extension { secret, .. }) => {
                    known = true;
                    self.nonces.verify(&c, &realm, method, &secret, now_secs)
                }
                _ => Verdict::Failed,
            };
            match verdict {
                Verdict::Ok => {
                    if from.transport == Transport::Tcp {
                        self.proven_tcp.insert(from.addr);
                    }
                    return Some(c.username);
                }
                Verdict::Stale => stale = true,
                // A copy of a request already accepted (its reply cache entry is gone):
                // a fresh nonce lets a real phone go on; no ban for a copy.
                Verdict::Replay => stale = true,
                Verdict::Failed => {
                    self.auth_failed(from.addr.ip(), &c.username, known, now_secs);
                    tracing::info!(
                        source = %from.addr,
                        user = %message::log_safe(c.username.as_bytes(), 64),
                        "SIP: authentication failed"
                    );
                }
            }
        }
        let mut r = reply(req, code, reason);
        // The algorithms of the extension the request speaks for (its credentials' user,
        // else the From user), else the box's.
        let user_algs = {
            let user = req
                .headers_of(header)
                .filter_map(Credentials::parse)
                .map(|c| c.username)
                .next()
                .or_else(|| {
                    req.header("from")
                        .and_then(NameAddr::parse)
                        .and_then(|n| Uri::parse(n.uri).and_then(|u| u.user_unescaped()))
                });
            match user.and_then(|u| self.directory.lookup(&u)) {
                Some(Entry::Extension {
                    algorithms: Some(a),
                    ..
                }) => Some(a),
                _ => None,
            }
        };
        let algs: Vec<digest::Algorithm> = match &user_algs {
            Some(a) => a.to_vec(),
            None => self.cfg.algorithms.clone(),
        };
        for alg in algs {
            let nonce = self.nonces.issue(now_secs);
            r.push(
                chal_key,
                chal_name,
                digest::challenge(alg, &realm, &nonce, stale),
            );
        }
        self.answer_with(req, from, r, out);
        None
    }

    // ----- entry points -------------------------------------------------------------

    /// Handles one received message (one UDP datagram or one framed TCP message).
    pub fn on_packet(&mut self, data: &[u8], from: Peer, now: Instant, out: &mut Vec<Out>) {
        if is_loop(from) {
            return; // only the engine itself speaks as these
        }
        self.packet(data, from, now, out);
        self.finish(now, out);
    }

    /// What an entry point sends: the box's own legs delivered, SDP anchored.
    pub(super) fn finish(&mut self, now: Instant, out: &mut Vec<Out>) {
        self.run_loop(now, out);
        self.anchor_out(out);
    }

    /// Delivers the messages the B2BUA and the proxy sent each other (see [`LOOP_UA`]),
    /// and what they answer, until none is left; only packets for the network stay.
    pub(super) fn run_loop(&mut self, now: Instant, out: &mut Vec<Out>) {
        let mut rounds = 0;
        while let Some(i) = out.iter().position(|o| is_loop(o.to)) {
            let o = out.remove(i);
            rounds += 1;
            if rounds > 1000 {
                tracing::warn!("SIP: the box's own legs loop; dropped");
                out.retain(|o| !is_loop(o.to));
                return;
            }
            let from = if o.to == LOOP_PROXY {
                LOOP_UA
            } else {
                LOOP_PROXY
            };
            self.packet(&o.data, from, now, out);
        }
    }

    fn packet(&mut self, data: &[u8], from: Peer, now: Instant, out: &mut Vec<Out>) {
        let now_secs = wall_secs();
        if self.is_banned(from.addr.ip(), now_secs) {
            return;
        }
        let mut msg = match message::parse(data, from.transport == Transport::Udp) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(source = %from.addr, reason = e.reason, "SIP: unparsable message");
                if let Some(code) = e.status {
                    self.reject_unparsable(data, code, from, out);
                }
                return;
            }
        };
        if from.transport == Transport::Ws && matches!(msg.start, StartLine::Request { .. }) {
            mark_ws_via(&mut msg, from.addr);
        }
        match msg.start {
            StartLine::Response { .. } => self.on_response(msg, now, out),
            StartLine::Request { .. } => self.on_request(msg, from, now, now_secs, out),
        }
    }

    /// Best-effort 400/505 for a request we could not parse: built from the raw header
    /// lines we can still find, so the client can match it.
    fn reject_unparsable(&mut self, data: &[u8], code: u16, from: Peer, out: &mut Vec<Out>) {
        let text = String::from_utf8_lossy(&data[..data.len().min(message::MAX_MESSAGE)]);
        let mut resp = format!(
            "SIP/2.0 {code} {}\r\n",
            if code == 505 {
                "Version Not Supported"
            } else {
                "Bad Request"
            }
        );
        let mut have = 0;
        for line in text.split("\r\n").skip(1) {
            if line.is_empty() {
                break;
            }
            let name = line.split(':').next().unwrap_or("").trim();
            let lname = name.to_ascii_lowercase();
            if matches!(
                lname.as_str(),
                "via" | "v" | "from" | "f" | "to" | "t" | "call-id" | "i" | "cseq"
            ) && line.len() < 1024
                && line.is_ascii()
                && !line.contains('\r')
            {
                resp.push_str(line);
                resp.push_str("\r\n");
                have += 1;
            }
        }
        if have == 0 {
            return;
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        out.push(Out {
            to: from,
            data: resp.into_bytes(),
        });
    }

    fn on_request(
        &mut self,
        msg: Message,
        from: Peer,
        now: Instant,
        now_secs: u64,
        out: &mut Vec<Out>,
    ) {
        let method = msg.method().unwrap_or(Method::Other);
        // Retransmission of a request we already answered statelessly. INVITE too: its
        // challenge (or 404, 480...) ends the transaction, and a resend must get the same
        // bytes back (RFC 3261 §17.2.1), not a second challenge with another nonce.
        if method != Method::Ack && method != Method::Cancel {
            if let Some(key) = reply_key(&msg, from) {
                if let Some(data) = self.replies.get(&key) {
                    out.push(Out {
                        to: from,
                        data: data.clone(),
                    });
                    return;
                }
            }
        }
        // The proxy passing a party's request to a leg of the B2BUA; the B2BUA's own
        // requests (from LOOP_UA) are for the proxy, whatever their Call-ID.
        if from == LOOP_PROXY || (from != LOOP_UA && self.outside.claims(&msg)) {
            self.outside_request(msg, from, now, out);
            return;
        }
        if method == Method::Invite {
            if let Some(key) = txn_key(&msg, from) {
                if let Some(t) = self.txns.get(&key) {
                    if let Some(r) = &t.last_response {
                        out.push(Out {
                            to: t.source,
                            data: r.clone(),
                        });
                    }
                    return;
                }
            }
        }
        if method == Method::Ack && self.absorb_ack(&msg, from) {
            return;
        }
        if method == Method::Cancel {
            self.on_cancel(&msg, from, out);
            return;
        }
        // In-dialog: To tag present (and a Route to us, normally).
        let to_tag = msg
            .header("to")
            .and_then(NameAddr::parse)
            .and_then(|n| n.tag().map(str::to_string));
        if to_tag.is_some() && (msg.header("route").is_some() || from == LOOP_UA) {
            self.in_dialog(msg, from, now, out);
            return;
        }
        if to_tag.is_some() && method == Method::Ack {
            return;
        }
        if from == LOOP_UA {
            if method == Method::Invite && to_tag.is_none() {
                self.loop_invite(msg, now, out);
            } else if method != Method::Ack {
                self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            }
            return;
        }
        // Where is it for?
        let ruri = msg.uri().to_string();
        let Some(uri) = Uri::parse(&ruri) else {
            self.answer(&msg, from, 416, "Unsupported URI Scheme", out);
            return;
        };
        if !self.is_local(uri.host, uri.port) {
            if method != Method::Ack {
                self.answer(&msg, from, 403, "Forbidden", out);
            }
            return;
        }
        let user = uri.user_unescaped().filter(|u| !u.is_empty());
        // Proxy-Require is for us. Require is for the request's UAS: us only when the
        // request is for the box itself (REGISTER, a request to no user); a call to a
        // phone goes on with its Require (e.g. `replaces`, RFC 3891, for the phone).
        let for_us = method == Method::Register || user.is_none();
        let required = msg
            .header("proxy-require")
            .or_else(|| for_us.then(|| msg.header("require")).flatten());
        if let Some(req) = required {
            if method != Method::Ack && method != Method::Cancel {
                let mut r = reply(&msg, 420, "Bad Extension");
                r.push("unsupported", "Unsupported", req.to_string());
                self.answer_with(&msg, from, r, out);
                return;
            }
        }
        match method {
            Method::Register => self.on_register(msg, from, now_secs, out),
            Method::Options if user.is_none() => {
                let mut r = reply(&msg, 200, "OK");
                r.push(
                    "allow",
                    "Allow",
                    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, REFER, NOTIFY, MESSAGE, PRACK".into(),
                );
                self.answer_with(&msg, from, r, out);
            }
            Method::Ack => {}
            _ if user.is_none() => self.answer(&msg, from, 404, "Not Found", out),
            Method::Other => self.answer(&msg, from, 501, "Not Implemented", out),
            _ => {
                if msg.max_forwards() == Some(0) {
                    self.answer(&msg, from, 483, "Too Many Hops", out);
                    return;
                }
                if self.is_loop(&msg) {
                    self.answer(&msg, from, 482, "Loop Detected", out);
                    return;
                }
                let user = user.unwrap_or_default();
                // The provider's addresses speak for the trunk without a challenge.
                if self.outside.has_trunks() && from.transport != Transport::Ws {
                    if let Some(id) = self.outside.plan.trunk_from(from.addr.ip()).map(|t| t.id) {
                        if from.transport == Transport::Tcp {
                            self.proven_tcp.insert(from.addr);
                        }
                        match method {
                            Method::Invite => {
                                self.inbound_from_trunk(msg, from, id, &user, now, out);
                                return;
                            }
                            Method::Options => {
                                let r = reply(&msg, 200, "OK");
                                self.answer_with(&msg, from, r, out);
                                return;
                            }
                            _ => {}
                        }
                    }
                }
                let Some(who) = self.authenticate(&msg, from, "proxy-authorization", now_secs, out)
                else {
                    return;
                };
                if method == Method::Invite && user == PICKUP_CODE {
                    self.pickup(&msg, from, &who, now, out);
                    return;
                }
                // An orbit that is also an extension rings the extension while empty.
                if method == Method::Invite
                    && self.is_orbit(&user)
                    && (self.outside.parks.contains_key(&user)
                        || self.directory.lookup(&user).is_none())
                {
                    self.retrieve(msg, from, &who, &user, now, out);
                    return;
                }
                if method == Method::Invite {
                    let direction = CallDirection::Internal;
                    self.route_invite(msg, from, &user, Some(&who), direction, &user, now, out);
                } else {
                    self.route_other(msg, from, &user, out);
                }
            }
        }
    }

    fn is_loop(&self, msg: &Message) -> bool {
        let me = format!("{}:{}", self.advertised, self.port());
        msg.values_of("via").iter().skip(1).any(|v| {
            message::Via::parse(v).is_some_and(|v| {
                v.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
                    && format!("{}:{}", v.host, v.port.unwrap_or(5060)) == me
            })
        }) || msg.values_of("via").first().is_some_and(|v| {
            message::Via::parse(v).is_some_and(|v| {
                v.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
                    && format!("{}:{}", v.host, v.port.unwrap_or(5060)) == me
            })
        })
    }

    // ----- registrar ----------------------------------------------------------------

    fn on_register(&mut self, msg: Message, from: Peer, now_secs: u64, out: &mut Vec<Out>) {
        let Some(aor) = msg
            .header("to")
            .and_then(NameAddr::parse)
            .and_then(|n| Uri::parse(n.uri).map(|u| (u.user_unescaped(), u.host.to_string())))
        else {
            self.answer(&msg, from, 400, "Bad Request", out);
            return;
        };
        let (Some(ext), host) = aor else {
            self.answer(&msg, from, 404, "Not Found", out);
            return;
        };
        if !self.is_local(&host, None) && !self.is_local(&host, Some(self.port())) {
            self.answer(&msg, from, 403, "Forbidden", out);
            return;
        }
        let Some(user) = self.authenticate(&msg, from, "authorization", now_secs, out) else {
            return;
        };
        if user != ext {
            self.answer(&msg, from, 403, "Forbidden", out);
            return;
        }
        let header_expires: Option<u32> = msg.header("expires").and_then(|v| v.parse().ok());
        let contacts = msg.values_of("contact");
        let call_id = msg.call_id().to_string();
        let (cseq, _) = msg.cseq();
        if contacts.contains(&"*") {
            if contacts.len() != 1 || header_expires != Some(0) {
                self.answer(&msg, from, 400, "Bad Request", out);
                return;
            }
            self.unregister_all(&ext);
            let r = reply(&msg, 200, "OK");
            self.answer_with(&msg, from, r, out);
            return;
        }
        // Validate everything before changing anything.
        let mut changes = Vec::with_capacity(contacts.len());
        for c in &contacts {
            let Some(na) = NameAddr::parse(c) else {
                self.answer(&msg, from, 400, "Bad Request", out);
                return;
            };
            if Uri::parse(na.uri).is_none() {
                self.answer(&msg, from, 400, "Bad Request", out);
                return;
            }
            let e = param(na.params, "expires")
                .and_then(|v| v.parse::<u32>().ok())
                .or(header_expires)
                .unwrap_or(self.cfg.default_expires);
            if e > 0 && e < self.cfg.min_expires {
                let mut r = reply(&msg, 423, "Interval Too Brief");
                r.push(
                    "min-expires",
                    "Min-Expires",
                    self.cfg.min_expires.to_string(),
                );
                self.answer_with(&msg, from, r, out);
                return;
            }
            changes.push((na.uri.to_string(), e.min(self.cfg.max_expires)));
        }
        let ua = msg
            .header("user-agent")
            .map(|s| message::log_safe(s.as_bytes(), 120))
            .unwrap_or_default();
        let max = self.cfg.max_contacts_per_extension;
        let list = self.location.entry(ext.clone()).or_default();
        list.retain(|b| b.expires_at > now_secs);
        for (contact, _) in &changes {
            if let Some(b) = list.iter().find(|b| &b.contact == contact) {
                if b.call_id == call_id && cseq <= b.cseq {
                    self.answer(&msg, from, 500, "Out of Order", out);
                    return;
                }
            }
        }
        let mut stored = Vec::new();
        let mut removed = Vec::new();
        for (contact, e) in changes {
            let pos = list.iter().position(|b| b.contact == contact);
            if e == 0 {
                if let Some(i) = pos {
                    list.remove(i);
                    removed.push(contact);
                }
                continue;
            }
            let b = Binding {
                contact,
                source: from,
                expires_at: now_secs + e as u64,
                call_id: call_id.clone(),
                cseq,
                user_agent: ua.clone(),
            };
            match pos {
                Some(i) => list[i] = b.clone(),
                None => {
                    if list.len() >= max {
                        // Bounded state: the oldest registration gives way.
                        let old = list.remove(0);
                        removed.push(old.contact);
                    }
                    list.push(b.clone());
                }
            }
            stored.push(b);
        }
        let mut r = reply(&msg, 200, "OK");
        for b in list.iter() {
            r.push(
                "contact",
                "Contact",
                format!("<{}>;expires={}", b.contact, b.expires_at - now_secs),
            );
        }
        if list.is_empty() {
            self.location.remove(&ext);
        }
        for b in stored {
            if b.source.transport == Transport::Ws {
                continue; // dies with its socket: nothing to restore after a restart
            }
            self.store.upsert(&StoredBinding {
                extension: ext.clone(),
                contact: b.contact,
                source: b.source,
                expires_at: b.expires_at,
                call_id: b.call_id,
                cseq: b.cseq,
                user_agent: b.user_agent,
            });
        }
        for c in removed {
            self.store.remove(&ext, &c);
        }
        self.answer_with(&msg, from, r, out);
    }

    fn contacts_of(&self, ext: &str, now_secs: u64) -> Vec<(String, Peer)> {
        self.location
            .get(ext)
            .map(|bs| {
                bs.iter()
                    .filter(|b| b.expires_at > now_secs)
                    .map(|b| (b.contact.clone(), route_target(&b.contact, b.source)))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ----- proxy: INVITE ------------------------------------------------------------

    /// Forks an INVITE to `user`'s contacts (an extension or ring group). `who` is the
    /// authenticated extension (None for a call from a trunk), `dialled` the number the
    /// events report.
    #[allow(clippy::too_many_arguments)]
    fn route_invite(
        &mut self,
        msg: Message,
        from: Peer,
        user: &str,
        who: Option<&str>,
        direction: CallDirection,
        dialled: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let now_secs = wall_secs();
        let branch_len = msg
            .top_via()
            .and_then(|v| v.branch().map(str::len))
            .unwrap_or(0);
        let Some(key) = txn_key(&msg, from) else {
            self.answer(&msg, from, 400, "Bad Request", out);
            return;
        };
        if branch_len <= 7 {
            // RFC 2543-style or bare magic cookie branch: we need RFC 3261 branches.
            self.answer(&msg, from, 400, "Bad Request", out);
            return;
        }
        // Which extensions, in which order.
        let mut group = None;
        let (members, sequential, overall) = match self.directory.lookup(user) {
            None if direction == CallDirection::Internal => {
                self.try_outbound(msg, from, user, who, now, out);
                return;
            }
            None => {
                self.answer(&msg, from, 404, "Not Found", out);
                self.attempt_refused(&msg, direction, dialled, None, 404);
                return;
            }
            Some(Entry::Extension { .. }) => {
                (vec![user.to_string()], None, self.cfg.ring_timeout_secs)
            }
            Some(Entry::Group(g)) => {
                group = Some(user.to_string());
                let seq = match g.strategy {
                    Strategy::RingAll => None,
                    Strategy::Sequential => {
                        Some(Duration::from_secs(g.member_timeout_secs.max(1) as u64))
                    }
                };
                (g.members.clone(), seq, g.overall_timeout_secs.max(1))
            }
        };
        let mut targets: Vec<(String, String, Peer)> = Vec::new();
        for m in &members {
            for (c, p) in self.contacts_of(m, now_secs) {
                targets.push((m.clone(), c, p));
            }
        }
        if targets.is_empty() {
            self.answer(&msg, from, 480, "Temporarily Unavailable", out);
            self.attempt_refused(&msg, direction, dialled, group, 480);
            return;
        }
        let ip = from.addr.ip();
        let limit = self.cfg.max_calls_per_source;
        if self.txns.len() >= MAX_TXNS || self.sources.get(&ip).is_some_and(|s| s.calls >= limit) {
            self.answer(&msg, from, 503, "Service Unavailable", out);
            return;
        }
        if let Some(s) = self.source(ip) {
            s.calls += 1;
        }
        let mut fwd = msg.clone();
        fwd.remove("proxy-authorization");
        let mf = msg.max_forwards().unwrap_or(70).saturating_sub(1);
        fwd.set("max-forwards", "Max-Forwards", mf.to_string());
        let mut branches = Vec::with_capacity(targets.len());
        for (ext, contact, peer) in targets {
            let id = self.new_branch();
            let via = self.via(peer.transport, &id);
            let mut b = fwd.clone();
            for rr in self
                .record_routes(from.transport, peer.transport)
                .iter()
                .rev()
            {
                b.prepend("record-route", "Record-Route", rr.clone());
            }
            b.start = StartLine::Request {
                method: Method::Invite,
                method_text: "INVITE".into(),
                uri: contact.clone(),
            };
            b.prepend("via", "Via", via.clone());
            branches.push(Branch {
                id,
                extension: ext,
                to: peer,
                uri: contact,
                request: b.to_bytes(),
                via,
                provisional: false,
                final_code: None,
                cancel_pending: false,
                cancelled: false,
                started: false,
            });
        }
        let trying = reply(&msg, 100, "Trying");
        let trying = self.send_response(trying, from, out);
        let caller = msg
            .header("from")
            .and_then(NameAddr::parse)
            .and_then(|n| Uri::parse(n.uri).and_then(|u| u.user_unescaped()))
            .unwrap_or_default();
        let transfer = self.take_referral(&caller, who, user, &msg, now);
        let txn = ServerTxn {
            source: from,
            request: msg,
            last_response: Some(trying),
            state: TxnState::Proceeding,
            branches,
            best: None,
            answered: false,
            cancelled: false,
            started: now,
            caller: message::log_safe(caller.as_bytes(), 64),
            callee: dialled.to_string(),
            group,
            sequential: sequential.map(|d| (0, d)),
            source_ip: ip,
            ended_reported: false,
            direction,
            transfer,
            who: who.map(str::to_string),
        };
        if !is_loop(from) {
            let cid = self.txns_call_id(&txn);
            let trunk = match direction {
                CallDirection::Inbound => self.outside.plan.trunk_from(ip).map(|t| t.id),
                _ => None,
            };
            let mut parties = vec![user];
            parties.extend(who);
            self.anchor(&cid, direction, &parties, trunk);
        }
        self.txns.insert(key.clone(), txn);
        let ids: Vec<String> = self.txns[&key]
            .branches
            .iter()
            .map(|b| b.id.clone())
            .collect();
        for id in &ids {
            self.branches.insert(id.clone(), key.clone());
        }
        self.schedule(
            now + Duration::from_secs(overall as u64),
            Timer::RingTimeout { txn: key.clone() },
        );
        if sequential.is_some() {
            self.start_next_member(&key, now, out);
        } else {
            let n = ids.len();
            for i in 0..n {
                self.start_branch(&key, i, now, out);
            }
            self.emit_ringing(&key);
        }
    }

    fn txns_call_id(&self, t: &ServerTxn) -> String {
        t.request.call_id().to_string()
    }

    /// Call pickup (`*8`): a call ringing in a ring group `who` belongs to goes to `who`'s
    /// phone instead. The other branches are cancelled ("picked up"), the call is offered
    /// to `who`'s contacts with auto-answer headers (phones that honour them connect at
    /// once, others ring and are answered), and the `*8` call itself ends with 480 and a
    /// reason that says so. Nothing ringing for `who`: 404.
    fn pickup(&mut self, msg: &Message, from: Peer, who: &str, now: Instant, out: &mut Vec<Out>) {
        let now_secs = wall_secs();
        let mut found: Option<(Instant, String)> = None;
        for (key, t) in &self.txns {
            if t.state != TxnState::Proceeding || t.answered || t.cancelled {
                continue;
            }
            let in_group = t.group.as_deref().is_some_and(|g| {
                matches!(self.directory.lookup(g), Some(Entry::Group(rg)) if rg.members.iter().any(|m| m == who))
            });
            if in_group && found.as_ref().is_none_or(|(at, _)| t.started < *at) {
                found = Some((t.started, key.clone()));
            }
        }
        let Some((_, key)) = found else {
            self.answer(msg, from, 404, "No call to pick up", out);
            return;
        };
        let contacts = self.contacts_of(who, now_secs);
        if contacts.is_empty() {
            self.answer(msg, from, 480, "Temporarily Unavailable", out);
            return;
        }
        if let Some(t) = self.txns.get_mut(&key) {
            t.sequential = None;
        }
        self.cancel_branches(&key, Some("SIP;cause=200;text=\"Call picked up\""), out);
        let Some(t) = self.txns.get(&key) else { return };
        let mut fwd = t.request.clone();
        fwd.remove("proxy-authorization");
        let mf = fwd.max_forwards().unwrap_or(70).saturating_sub(1);
        fwd.set("max-forwards", "Max-Forwards", mf.to_string());
        let source = t.source.transport;
        let first = t.branches.len();
        let mut new = Vec::new();
        for (contact, peer) in contacts {
            let id = self.new_branch();
            let via = self.via(peer.transport, &id);
            let mut b = fwd.clone();
            for rr in self.record_routes(source, peer.transport).iter().rev() {
                b.prepend("record-route", "Record-Route", rr.clone());
            }
            b.start = StartLine::Request {
                method: Method::Invite,
                method_text: "INVITE".into(),
                uri: contact.clone(),
            };
            b.prepend("via", "Via", via.clone());
            b.push(
                "call-info",
                "Call-Info",
                format!("<sip:{}>;answer-after=0", self.advertised),
            );
            b.push("alert-info", "Alert-Info", "info=alert-autoanswer".into());
            new.push(Branch {
                id,
                extension: who.to_string(),
                to: peer,
                uri: contact,
                request: b.to_bytes(),
                via,
                provisional: false,
                final_code: None,
                cancel_pending: false,
                cancelled: false,
                started: false,
            });
        }
        let ids: Vec<String> = new.iter().map(|b| b.id.clone()).collect();
        if let Some(t) = self.txns.get_mut(&key) {
            t.branches.extend(new);
        }
        // The `*8` call ends first, so a one-line phone is free for the call it picks up.
        self.answer(msg, from, 480, "Picked up: answer the incoming call", out);
        for (i, id) in ids.iter().enumerate() {
            self.branches.insert(id.clone(), key.clone());
            self.start_branch(&key, first + i, now, out);
        }
        self.emit_ringing(&key);
    }

    /// Is this new call the transfer some REFER asked for? The caller (`who` when
    /// authenticated, else the From user) is the transferee of a recent REFER whose
    /// target it dials (or its INVITE replaces a dialog, RFC 3891). Takes the referral.
    fn take_referral(
        &mut self,
        caller: &str,
        who: Option<&str>,
        dialled: &str,
        msg: &Message,
        now: Instant,
    ) -> Option<(String, String)> {
        if let Some(t) = self.loop_transfer.take() {
            return Some(t);
        }
        if self.referrals.is_empty() {
            return None;
        }
        let key = who.unwrap_or(caller);
        let r = self.referrals.get(key)?;
        let fresh = now.duration_since(r.at) < REFERRAL_TTL;
        let aimed = r.target == dialled || msg.header("replaces").is_some();
        if !fresh || !aimed {
            if !fresh {
                self.referrals.remove(key);
            }
            return None;
        }
        self.referrals.remove(key).map(|r| (r.by, r.call_id))
    }

    /// A call attempt answered at once with a failure (no phone registered, unknown
    /// number, refused): nobody rang, but the call log gets its row — `Ringing` with no
    /// extension alerted, then `Ended` with the code ("status_NNN"), or "refused" for a
    /// call out the box's policy stopped (`code` 0).
    pub(super) fn attempt_refused(
        &mut self,
        msg: &Message,
        direction: CallDirection,
        dialled: &str,
        group: Option<String>,
        code: u16,
    ) {
        let from = msg
            .header("from")
            .and_then(NameAddr::parse)
            .and_then(|n| Uri::parse(n.uri).and_then(|u| u.user_unescaped()))
            .unwrap_or_default();
        let call_id = msg.call_id().to_string();
        self.events.emit(CallEvent::Ringing {
            call_id: call_id.clone(),
            direction,
            from: message::log_safe(from.as_bytes(), 64),
            to: message::log_safe(dialled.as_bytes(), 64),
            group,
            extensions: Vec::new(),
            transferred_by: None,
            transferred_from: None,
        });
        self.events.emit(CallEvent::Ended {
            call_id,
            cause: if code == 0 {
                "refused".into()
            } else {
                format!("status_{code}")
            },
            ring_ms: 0,
            talk_ms: 0,
        });
    }

    fn emit_ringing(&mut self, key: &str) {
        let Some(t) = self.txns.get(key) else { return };
        let mut exts: Vec<String> = t
            .branches
            .iter()
            .filter(|b| b.started && b.final_code.is_none())
            .map(|b| b.extension.clone())
            .collect();
        exts.dedup();
        self.events.emit(CallEvent::Ringing {
            call_id: t.request.call_id().to_string(),
            direction: t.direction,
            from: t.caller.clone(),
            to: t.callee.clone(),
            group: t.group.clone(),
            extensions: exts,
            transferred_by: t.transfer.as_ref().map(|x| x.0.clone()),
            transferred_from: t.transfer.as_ref().map(|x| x.1.clone()),
        });
    }

    /// Sequential ring group: starts every branch of the next member.
    fn start_next_member(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        let Some(t) = self.txns.get_mut(key) else {
            return;
        };
        let Some((next, per)) = t.sequential else {
            return;
        };
        let mut members: Vec<String> = Vec::new();
        for b in &t.branches {
            if !members.contains(&b.extension) {
                members.push(b.extension.clone());
            }
        }
        let Some(member) = members.get(next).cloned() else {
            return;
        };
        t.sequential = Some((next + 1, per));
        let idx: Vec<usize> = t
            .branches
            .iter()
            .enumerate()
            .filter(|(_, b)| b.extension == member)
            .map(|(i, _)| i)
            .collect();
        for i in idx {
            self.start_branch(key, i, now, out);
        }
        self.schedule(
            now + per,
            Timer::MemberTimeout {
                txn: key.to_string(),
                member: next,
            },
        );
        self.emit_ringing(key);
    }

    fn start_branch(&mut self, key: &str, i: usize, now: Instant, out: &mut Vec<Out>) {
        let Some(t) = self.txns.get_mut(key) else {
            return;
        };
        let b = &mut t.branches[i];
        b.started = true;
        out.push(Out {
            to: b.to,
            data: b.request.clone(),
        });
        let (id, udp) = (b.id.clone(), b.to.transport == Transport::Udp);
        if udp {
            self.schedule(
                now + T1,
                Timer::BranchRetransmit {
                    txn: key.to_string(),
                    branch: id.clone(),
                    interval: T1,
                },
            );
        }
        self.schedule(
            now + TIMER_B,
            Timer::BranchTimeout {
                txn: key.to_string(),
                branch: id,
            },
        );
    }
}

/// CANCEL (or ACK) for one of our branches, built from the forwarded INVITE.
fn branch_request(t: &ServerTxn, b: &Branch, method: &str, to: Option<&str>) -> Vec<u8> {
    let r = &t.request;
    let mut m = Message {
        start: StartLine::Request {
            method: Method::parse(method),
            method_text: method.into(),
            uri: b.uri.clone(),
        },
        headers: Vec::with_capacity(8),
        body: Vec::new(),
    };
    m.push("via", "Via", b.via.clone());
    m.push("max-forwards", "Max-Forwards", "70".into());
    m.push("from", "From", r.header("from").unwrap_or("").into());
    m.push(
        "to",
        "To",
        to.unwrap_or(r.header("to").unwrap_or("")).into(),
    );
    m.push("call-id", "Call-ID", r.call_id().into());
    m.push("cseq", "CSeq", format!("{} {method}", r.cseq().0));
    m.to_bytes()
}

impl Engine {
    fn cancel_branches(&mut self, key: &str, reason: Option<&str>, out: &mut Vec<Out>) {
        let Some(t) = self.txns.get(key) else { return };
        let mut sends = Vec::new();
        let mut pending = Vec::new();
        for (i, b) in t.branches.iter().enumerate() {
            if !b.started || b.final_code.is_some() || b.cancelled {
                continue;
            }
            if b.provisional {
                let mut data = branch_request(t, b, "CANCEL", None);
                if let Some(reason) = reason {
                    // insert the Reason header before the blank line
                    let end = data.len() - 2;
                    let line = format!("Reason: {reason}\r\n");
                    data.splice(end..end, line.into_bytes());
                }
                sends.push((i, Out { to: b.to, data }));
            } else {
                pending.push(i);
            }
        }
        let Some(t) = self.txns.get_mut(key) else {
            return;
        };
        for (i, o) in sends {
            t.branches[i].cancelled = true;
            out.push(o);
        }
        for i in pending {
            t.branches[i].cancel_pending = true;
        }
    }

    fn on_cancel(&mut self, msg: &Message, from: Peer, out: &mut Vec<Out>) {
        let key = txn_key(msg, from);
        let found = key.as_ref().is_some_and(|k| self.txns.contains_key(k));
        if !found {
            self.answer(msg, from, 481, "Call/Transaction Does Not Exist", out);
            return;
        }
        let key = key.unwrap_or_default();
        let r = reply(msg, 200, "OK");
        self.send_response(r, from, out);
        let proceeding = self
            .txns
            .get(&key)
            .is_some_and(|t| t.state == TxnState::Proceeding);
        if proceeding {
            if let Some(t) = self.txns.get_mut(&key) {
                t.cancelled = true;
                t.sequential = None;
            }
            let reason = msg.header("reason").map(str::to_string);
            self.cancel_branches(&key, reason.as_deref(), out);
            // If no branch can answer 487 (none had ringing), answer it ourselves.
            let none_live = self.txns.get(&key).is_some_and(|t| {
                t.branches
                    .iter()
                    .all(|b| !b.started || b.final_code.is_some() || b.cancel_pending)
            });
            if none_live {
                self.finish_with(&key, 487, "Request Terminated", Instant::now(), out);
            }
        }
    }

    /// ACK for a non-2xx final response we sent: ends the transaction's retransmissions.
    fn absorb_ack(&mut self, msg: &Message, from: Peer) -> bool {
        let Some(key) = txn_key(msg, from) else {
            return false;
        };
        match self.txns.get_mut(&key) {
            Some(t) => {
                if t.state == TxnState::Completed {
                    t.state = TxnState::Done;
                }
                true
            }
            None => false,
        }
    }

    /// Sends our own final response upstream (timeout, cancel with no ringing branch).
    fn finish_with(
        &mut self,
        key: &str,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(t) = self.txns.get(key) else { return };
        if t.state != TxnState::Proceeding {
            return;
        }
        let resp = reply(&t.request, code, reason);
        let from = t.source;
        let data = self.send_response(resp, from, out);
        self.complete(key, data, code, now);
    }

    /// Records the final non-2xx sent upstream and starts the completion timers.
    fn complete(&mut self, key: &str, data: Vec<u8>, code: u16, now: Instant) {
        let Some(t) = self.txns.get_mut(key) else {
            return;
        };
        t.last_response = Some(data);
        t.state = TxnState::Completed;
        if let Some(s) = self.sources.get_mut(&t.source_ip) {
            s.calls = s.calls.saturating_sub(1);
        }
        let udp = t.source.transport == Transport::Udp;
        let cause = if t.cancelled {
            "cancelled".to_string()
        } else if code == 408 || code == 480 {
            "no_answer".to_string()
        } else {
            format!("status_{code}")
        };
        self.report_end(key, cause, now);
        if udp {
            self.schedule(
                now + T1,
                Timer::FinalRetransmit {
                    txn: key.to_string(),
                    interval: T1,
                },
            );
        }
        self.schedule(
            now + LINGER,
            Timer::TxnExpire {
                txn: key.to_string(),
            },
        );
    }

    fn report_end(&mut self, key: &str, cause: String, now: Instant) {
        let Some(t) = self.txns.get_mut(key) else {
            return;
        };
        if t.ended_reported {
            return;
        }
        t.ended_reported = true;
        let ev = CallEvent::Ended {
            call_id: t.request.call_id().to_string(),
            cause,
            ring_ms: now.duration_since(t.started).as_millis() as u64,
            talk_ms: 0,
        };
        self.events.emit(ev);
    }

    fn on_response(&mut self, mut msg: Message, now: Instant, out: &mut Vec<Out>) {
        let Some(branch) = msg.top_via().and_then(|v| v.branch().map(str::to_string)) else {
            return;
        };
        if !branch.starts_with(BRANCH_PREFIX) {
            return; // not ours: stray
        }
        pop_top_via(&mut msg);
        let Some(msg) = self.outside_response(&branch, msg, now, out) else {
            return;
        };
        if branch.starts_with(&format!("{BRANCH_PREFIX}S")) {
            self.forward_stateless_response(msg, out);
            return;
        }
        let Some(key) = self.branches.get(&branch).cloned() else {
            return;
        };
        let code = msg.code();
        let (cseq_n, cseq_m) = msg.cseq();
        let _ = cseq_n;
        if cseq_m == "CANCEL" {
            return; // 200 for our CANCEL: nothing to do
        }
        let Some(t) = self.txns.get_mut(&key) else {
            return;
        };
        let Some(bi) = t.branches.iter().position(|b| b.id == branch) else {
            return;
        };
        if code < 200 {
            let b = &mut t.branches[bi];
            if b.final_code.is_some() {
                return;
            }
            b.provisional = true;
            let cancel_now = b.cancel_pending && !b.cancelled;
            if code > 100 && t.state == TxnState::Proceeding && !t.cancelled {
                let data = msg.to_bytes();
                out.push(Out {
                    to: t.source,
                    data: data.clone(),
                });
                t.last_response = Some(data);
            }
            if cancel_now {
                let reason = if t.answered {
                    Some("SIP;cause=200;text=\"Call completed elsewhere\"")
                } else {
                    None
                };
                self.cancel_branches(&key, reason, out);
            }
            return;
        }
        if code < 300 {
            // Every 2xx goes upstream at once (also retransmissions).
            let data = msg.to_bytes();
            out.push(Out { to: t.source, data });
            let first = !t.answered;
            t.branches[bi].final_code = Some(code);
            if first {
                t.answered = true;
                t.state = TxnState::Done;
                t.sequential = None;
                let ext = t.branches[bi].extension.clone();
                let call_id = t.request.call_id().to_string();
                let tag_of = |m: &Message, h: &str| {
                    m.header(h)
                        .and_then(NameAddr::parse)
                        .and_then(|n| n.tag().map(str::to_string))
                        .unwrap_or_default()
                };
                let r = &t.request;
                let contact_of = |m: &Message| {
                    m.header("contact")
                        .and_then(NameAddr::parse)
                        .map(|n| n.uri.to_string())
                        .unwrap_or_default()
                };
                let info = DialogInfo {
                    from: r.header("from").unwrap_or("").to_string(),
                    to: r.header("to").unwrap_or("").to_string(),
                    caller_contact: contact_of(r),
                    caller_routes: r
                        .values_of("record-route")
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    callee_contact: contact_of(&msg),
                    caller_sdp: r.body.clone(),
                    callee_sdp: msg.body.clone(),
                    caller_cseq: r.cseq().0,
                    callee_cseq: 0,
                    caller_ext: t.who.clone(),
                };
                let dialog = Dialog {
                    caller: t.source,
                    callee: t.branches[bi].to,
                    caller_tag: tag_of(&t.request, "from"),
                    callee_tag: tag_of(&msg, "to"),
                    caller_user: t.caller.clone(),
                    started: t.started,
                    answered: now,
                    extension: ext.clone(),
                    ended: false,
                    direction: t.direction,
                    info: Box::new(info),
                };
                t.ended_reported = true;
                let ip = t.source_ip;
                if let Some(s) = self.sources.get_mut(&ip) {
                    s.calls = s.calls.saturating_sub(1);
                }
                if self.dialogs.len() < MAX_DIALOGS {
                    self.dialogs.insert(call_id.clone(), dialog);
                    // Dialogs nobody hangs up are forgotten after a day.
                    self.schedule(
                        now + Duration::from_secs(86_400),
                        Timer::DialogExpire {
                            call_id: call_id.clone(),
                        },
                    );
                }
                self.events.emit(CallEvent::Answered {
                    call_id,
                    extension: ext,
                });
                self.cancel_branches(
                    &key,
                    Some("SIP;cause=200;text=\"Call completed elsewhere\""),
                    out,
                );
                self.schedule(now + LINGER, Timer::TxnExpire { txn: key.clone() });
            }
            return;
        }
        // Final non-2xx from a branch: ACK it (hop by hop), then maybe answer upstream.
        let b = &t.branches[bi];
        if b.final_code.is_some() {
            // retransmitted final: ACK again
            let to = msg.header("to").map(str::to_string);
            let ack = branch_request(t, b, "ACK", to.as_deref());
            out.push(Out {
                to: b.to,
                data: ack,
            });
            return;
        }
        let to = msg.header("to").map(str::to_string);
        let ack = branch_request(t, b, "ACK", to.as_deref());
        out.push(Out {
            to: b.to,
            data: ack,
        });
        let t = self.txns.get_mut(&key).expect("present above");
        t.branches[bi].final_code = Some(code);
        let better = match &t.best {
            None => true,
            Some(prev) => rank(code) < rank(prev.code()),
        };
        if better {
            t.best = Some(msg);
        }
        if code >= 600 && !t.answered {
            t.sequential = None;
            self.cancel_branches(&key, None, out);
        }
        self.maybe_finish(&key, now, out);
    }

    /// When every started branch has a final answer and no more members are to come,
    /// the best response goes upstream.
    fn maybe_finish(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        let Some(t) = self.txns.get(key) else { return };
        if t.state != TxnState::Proceeding {
            return;
        }
        let all_done = t
            .branches
            .iter()
            .all(|b| !b.started || b.final_code.is_some());
        if !all_done {
            return;
        }
        let more_members = t.sequential.is_some_and(|(next, _)| {
            let mut members: Vec<&str> = Vec::new();
            for b in &t.branches {
                if !members.contains(&b.extension.as_str()) {
                    members.push(&b.extension);
                }
            }
            next < members.len()
        });
        if more_members && !t.cancelled {
            self.start_next_member(key, now, out);
            return;
        }
        let (code, data) = match &t.best {
            Some(best) => {
                let code = if t.cancelled { 487 } else { best.code() };
                let mut best = best.clone();
                if t.cancelled && best.code() != 487 {
                    best.start = StartLine::Response {
                        code: 487,
                        reason: "Request Terminated".into(),
                    };
                }
                (code, best.to_bytes())
            }
            None => {
                let r = reply(&t.request, 480, "Temporarily Unavailable");
                (480, r.to_bytes())
            }
        };
        let source = t.source;
        out.push(Out {
            to: source,
            data: data.clone(),
        });
        self.complete(key, data, code, now);
    }

    // ----- proxy: other requests ----------------------------------------------------

    /// Out-of-dialog non-INVITE requests (MESSAGE, SUBSCRIBE, OPTIONS to a phone...) go
    /// statelessly to the most recent contact. Simplification: no forking for these.
    fn route_other(&mut self, msg: Message, from: Peer, user: &str, out: &mut Vec<Out>) {
        let now_secs = wall_secs();
        let contact = match self.directory.lookup(user) {
            None => {
                self.answer(&msg, from, 404, "Not Found", out);
                return;
            }
            Some(Entry::Group(_)) => {
                self.answer(&msg, from, 405, "Method Not Allowed", out);
                return;
            }
            Some(Entry::Extension { .. }) => self.contacts_of(user, now_secs).pop(),
        };
        let Some((uri, peer)) = contact else {
            self.answer(&msg, from, 480, "Temporarily Unavailable", out);
            return;
        };
        let mut fwd = msg;
        fwd.remove("proxy-authorization");
        if let StartLine::Request { uri: u, .. } = &mut fwd.start {
            *u = uri;
        }
        self.forward_stateless(fwd, peer, out);
    }

    fn forward_stateless(&mut self, mut fwd: Message, to: Peer, out: &mut Vec<Out>) {
        let mf = fwd.max_forwards().unwrap_or(70).saturating_sub(1);
        fwd.set("max-forwards", "Max-Forwards", mf.to_string());
        // Deterministic branch so retransmissions keep it (RFC 3261 §16.11).
        let seed = format!(
            "{}|{}|{}",
            fwd.top_via()
                .and_then(|v| v.branch().map(str::to_string))
                .unwrap_or_default(),
            fwd.cseq().1,
            fwd.call_id()
        );
        let branch = format!("{BRANCH_PREFIX}S{:016x}", fnv(seed.as_bytes()));
        let via = self.via(to.transport, &branch);
        fwd.prepend("via", "Via", via);
        out.push(Out {
            to,
            data: fwd.to_bytes(),
        });
    }

    fn forward_stateless_response(&mut self, msg: Message, out: &mut Vec<Out>) {
        let Some(via) = msg.top_via() else { return };
        // An answer to a request of the B2BUA's that the proxy passed on: back inside.
        if via
            .branch()
            .is_some_and(|b| b.starts_with(b2bua::LEG_BRANCH))
        {
            out.push(Out {
                to: LOOP_UA,
                data: msg.to_bytes(),
            });
            return;
        }
        let transport = if via.transport.eq_ignore_ascii_case("TCP") {
            Transport::Tcp
        } else if via.transport.eq_ignore_ascii_case("WS")
            || via.transport.eq_ignore_ascii_case("WSS")
        {
            Transport::Ws
        } else {
            Transport::Udp
        };
        let host = param(via.params, "received").unwrap_or(via.host);
        let port = param(via.params, "rport")
            .and_then(|p| p.parse().ok())
            .or(via.port)
            .unwrap_or(5060);
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return;
        };
        out.push(Out {
            to: Peer {
                transport,
                addr: SocketAddr::new(ip, port),
            },
            data: msg.to_bytes(),
        });
    }

    /// ACK for 2xx, BYE, re-INVITE, UPDATE, INFO, REFER, NOTIFY inside a dialog this proxy
    /// record-routed: pop our Route, forward to the other party.
    fn in_dialog(&mut self, mut msg: Message, from: Peer, now: Instant, out: &mut Vec<Out>) {
        let method = msg.method().unwrap_or(Method::Other);
        let call_id = msg.call_id().to_string();
        let Some(d) = self.dialogs.get(&call_id) else {
            if method != Method::Ack {
                self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            }
            return;
        };
        if msg.max_forwards() == Some(0) {
            if method != Method::Ack {
                self.answer(&msg, from, 483, "Too Many Hops", out);
            }
            return;
        }
        // Which party speaks: by the dialog's tags (From tag of the request), then the
        // sender must come from that party's address (IP: a TCP phone may reconnect from
        // another port). Only the two parties may use the dialog (toll fraud).
        let from_tag = msg
            .header("from")
            .and_then(NameAddr::parse)
            .and_then(|n| n.tag().map(str::to_string))
            .unwrap_or_default();
        let (speaker, to) = if !from_tag.is_empty() && from_tag == d.caller_tag {
            (d.caller, d.callee)
        } else if !from_tag.is_empty() && from_tag == d.callee_tag {
            (d.callee, d.caller)
        } else {
            if method != Method::Ack {
                self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            }
            return;
        };
        if speaker.addr.ip() != from.addr.ip() {
            if method != Method::Ack {
                self.answer(&msg, from, 403, "Forbidden", out);
            }
            return;
        }
        let by_caller = from_tag == d.caller_tag;
        // A transfer of a call with the provider, or a park: the box steps into the
        // dialog in place of the one who asked (the provider is never asked to follow a
        // REFER, and only the box can hold a parked call).
        let speaker = if by_caller { d.caller } else { d.callee };
        if method == Method::Refer && self.refer_is_ours(&msg, speaker, to) {
            self.refer_in_proxied(msg, from, by_caller, now, out);
            return;
        }
        if method != Method::Ack && method != Method::Cancel {
            let n = msg.cseq().0;
            let sdp = !msg.body.is_empty()
                && msg
                    .header("content-type")
                    .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"));
            if let Some(d) = self.dialogs.get_mut(&call_id) {
                let (cseq, body) = if by_caller {
                    (&mut d.info.caller_cseq, &mut d.info.caller_sdp)
                } else {
                    (&mut d.info.callee_cseq, &mut d.info.callee_sdp)
                };
                *cseq = (*cseq).max(n);
                if sdp {
                    *body = msg.body.clone();
                }
            }
        }
        let Some(d) = self.dialogs.get(&call_id) else {
            return;
        };
        // Credentials for this proxy go no further (RFC 3261 §22.3: they are ours).
        let realm = self.cfg.realm.clone();
        strip_credentials(&mut msg, &realm);
        // Pop the first Route when it is us.
        let routes: Vec<String> = msg
            .values_of("route")
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Ours: one entry, or two where the legs' transports differ (RFC 5658).
        let ours = routes
            .iter()
            .take(2)
            .take_while(|r| {
                NameAddr::parse(r)
                    .and_then(|n| Uri::parse(n.uri).map(|u| self.is_local(u.host, u.port)))
                    .unwrap_or(false)
            })
            .count();
        if ours > 0 {
            msg.remove("route");
            for r in &routes[ours..] {
                msg.push("route", "Route", r.clone());
            }
        }
        // A transfer asked for: remembered, so the transferee's next call to the target
        // is logged (and popped) as this call passed on.
        let referral = (method == Method::Refer)
            .then(|| {
                let (referrer, transferee) = if from_tag == d.caller_tag {
                    (d.caller_user.clone(), d.extension.clone())
                } else {
                    (d.extension.clone(), d.caller_user.clone())
                };
                let target = msg
                    .header("refer-to")
                    .and_then(NameAddr::parse)
                    .and_then(|n| Uri::parse(n.uri).and_then(|u| u.user_unescaped()))?;
                (!target.is_empty() && !transferee.is_empty()).then(|| {
                    (
                        transferee,
                        Referral {
                            by: message::log_safe(referrer.as_bytes(), 64),
                            call_id: call_id.clone(),
                            target,
                            at: now,
                        },
                    )
                })
            })
            .flatten();
        if method == Method::Bye {
            let ended = !d.ended;
            let (started, answered, ext) = (d.started, d.answered, d.extension.clone());
            if let Some(d) = self.dialogs.get_mut(&call_id) {
                d.ended = true;
            }
            if ended {
                let _ = ext;
                self.events.emit(CallEvent::Ended {
                    call_id: call_id.clone(),
                    cause: "completed".into(),
                    ring_ms: answered.duration_since(started).as_millis() as u64,
                    talk_ms: now.duration_since(answered).as_millis() as u64,
                });
                self.schedule(now + LINGER, Timer::DialogExpire { call_id });
            }
        }
        if let Some((transferee, r)) = referral {
            if self.referrals.len() >= MAX_REFERRALS {
                self.referrals
                    .retain(|_, r| now.duration_since(r.at) < REFERRAL_TTL);
            }
            if self.referrals.len() < MAX_REFERRALS {
                self.referrals.insert(transferee, r);
            }
        }
        self.forward_stateless(msg, to, out);
    }

    // ----- timers -------------------------------------------------------------------

    pub fn on_tick(&mut self, now: Instant, out: &mut Vec<Out>) {
        while let Some(Reverse(top)) = self.timers.peek() {
            if top.at > now {
                break;
            }
            let Some(Reverse(s)) = self.timers.pop() else {
                break;
            };
            self.fire(s.timer, now, out);
        }
        while let Some((at, _)) = self.reply_order.front() {
            if *at > now {
                break;
            }
            if let Some((_, k)) = self.reply_order.pop_front() {
                self.replies.remove(&k);
            }
        }
        self.outside_tick(now, out);
        self.media_tick(now, out);
        self.finish(now, out);
        let secs = wall_secs();
        if secs >= self.last_sweep + 5 {
            self.last_sweep = secs;
            self.sweep(secs);
        }
    }

    fn sweep(&mut self, now_secs: u64) {
        self.nonces.sweep(now_secs);
        let window = self.cfg.ban_window_secs;
        self.sources.retain(|_, s| {
            s.calls > 0 || s.banned_until > now_secs || s.window_start + window > now_secs
        });
        self.user_bans
            .retain(|_, b| b.banned_until > now_secs || b.window_start + window > now_secs);
        let mut expired = Vec::new();
        self.location.retain(|ext, bs| {
            bs.retain(|b| {
                let keep = b.expires_at > now_secs;
                if !keep {
                    expired.push((ext.clone(), b.contact.clone()));
                }
                keep
            });
            !bs.is_empty()
        });
        for (e, c) in expired {
            self.store.remove(&e, &c);
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant, out: &mut Vec<Out>) {
        match timer {
            Timer::BranchRetransmit {
                txn,
                branch,
                interval,
            } => {
                let Some(t) = self.txns.get(&txn) else { return };
                let Some(b) = t.branches.iter().find(|b| b.id == branch) else {
                    return;
                };
                if b.provisional || b.final_code.is_some() || t.state == TxnState::Done {
                    return;
                }
                out.push(Out {
                    to: b.to,
                    data: b.request.clone(),
                });
                let next = interval * 2;
                self.schedule(
                    now + next,
                    Timer::BranchRetransmit {
                        txn,
                        branch,
                        interval: next,
                    },
                );
            }
            Timer::BranchTimeout { txn, branch } => {
                let Some(t) = self.txns.get_mut(&txn) else {
                    return;
                };
                let Some(b) = t.branches.iter_mut().find(|b| b.id == branch) else {
                    return;
                };
                if b.final_code.is_none() {
                    b.final_code = Some(408);
                    if t.best.is_none() {
                        t.best = Some(t.request.response(408, "Request Timeout", "crm"));
                    }
                    self.maybe_finish(&txn, now, out);
                }
            }
            Timer::RingTimeout { txn } => {
                let proceeding = self
                    .txns
                    .get(&txn)
                    .is_some_and(|t| t.state == TxnState::Proceeding);
                if proceeding {
                    if let Some(t) = self.txns.get_mut(&txn) {
                        t.sequential = None;
                    }
                    self.cancel_branches(&txn, None, out);
                    self.finish_with(&txn, 480, "Temporarily Unavailable", now, out);
                }
            }
            Timer::MemberTimeout { txn, member } => {
                let Some(t) = self.txns.get(&txn) else { return };
                if t.state != TxnState::Proceeding || t.answered {
                    return;
                }
                // Cancel this member's branches and move on.
                if t.sequential.is_some_and(|(next, _)| next == member + 1) {
                    let mut members: Vec<String> = Vec::new();
                    for b in &t.branches {
                        if !members.contains(&b.extension) {
                            members.push(b.extension.clone());
                        }
                    }
                    let ext = members.get(member).cloned().unwrap_or_default();
                    let mut sends = Vec::new();
                    for (i, b) in t.branches.iter().enumerate() {
                        if b.extension == ext && b.started && b.final_code.is_none() {
                            sends.push(i);
                        }
                    }
                    let t = self.txns.get_mut(&txn).expect("present");
                    for i in &sends {
                        // Treat as finished for selection; its 487 is absorbed.
                        t.branches[*i].final_code = Some(408);
                    }
                    let to_cancel: Vec<(Peer, Vec<u8>)> = {
                        let t = &self.txns[&txn];
                        sends
                            .iter()
                            .filter(|i| t.branches[**i].provisional)
                            .map(|i| {
                                let b = &t.branches[*i];
                                (b.to, branch_request(t, b, "CANCEL", None))
                            })
                            .collect()
                    };
                    for (to, data) in to_cancel {
                        out.push(Out { to, data });
                    }
                    self.maybe_finish(&txn, now, out);
                }
            }
            Timer::FinalRetransmit { txn, interval } => {
                let Some(t) = self.txns.get(&txn) else { return };
                if t.state != TxnState::Completed {
                    return;
                }
                if let Some(r) = &t.last_response {
                    out.push(Out {
                        to: t.source,
                        data: r.clone(),
                    });
                }
                let next = (interval * 2).min(T2);
                self.schedule(
                    now + next,
                    Timer::FinalRetransmit {
                        txn,
                        interval: next,
                    },
                );
            }
            Timer::TxnExpire { txn } => {
                if let Some(t) = self.txns.remove(&txn) {
                    for b in &t.branches {
                        self.branches.remove(&b.id);
                    }
                    if t.state == TxnState::Proceeding {
                        if let Some(s) = self.sources.get_mut(&t.source_ip) {
                            s.calls = s.calls.saturating_sub(1);
                        }
                    }
                }
            }
            Timer::Outside(t) => self.fire_outside(t, now, out),
            Timer::DialogExpire { call_id } => {
                let remove = self.dialogs.get(&call_id).is_some_and(|d| {
                    d.ended || now.duration_since(d.answered) >= Duration::from_secs(86_000)
                });
                if remove {
                    self.dialogs.remove(&call_id);
                }
            }
        }
    }
}

/// Preference among final responses (lower is better), RFC 3261 §16.7 step 6 simplified:
/// 6xx, then 4xx (with 401/407/415/420/484 first), 3xx, 5xx, 408 last.
fn rank(code: u16) -> u16 {
    match code {
        600..=699 => code - 600,
        408 => 2000,
        400..=499 => 100 + code,
        300..=399 => 700 + code,
        500..=599 => 1000 + code,
        _ => 3000,
    }
}

/// Which cached reply a resend gets: branch and method as RFC 3261 §17.2.3 matches, plus
/// the address the request came from, so two phones (or an attacker) using the same
/// branch never get each other's replies.
/// The CSeq number is in the key too: a phone that wrongly reuses a branch for its next
/// request (the INVITE with credentials after a 407) is served, not sent the old reply.
fn reply_key(req: &Message, from: Peer) -> Option<String> {
    let v = req.top_via()?;
    let b = v.branch()?;
    if b.len() <= 7 {
        return None;
    }
    let (n, method) = req.cseq();
    Some(format!(
        "{b}|{n} {method}|{}|{}",
        from.transport.name(),
        from.addr
    ))
}

/// Which server INVITE transaction a request (INVITE resend, CANCEL, ACK of a final
/// answer) belongs to: the top Via's branch and sent-by, as RFC 3261 §17.2.3 matches, plus
/// the source IP, so nobody else can CANCEL (or take over) a call by copying its branch.
/// Not the source port: a phone whose TCP connection broke may CANCEL over a new one.
fn txn_key(req: &Message, from: Peer) -> Option<String> {
    let v = req.top_via()?;
    let b = v.branch()?;
    Some(format!(
        "{b}|{}:{}|{}",
        v.host,
        v.port.unwrap_or(0),
        from.addr.ip()
    ))
}

/// Removes the Proxy-Authorization (and Authorization) credentials meant for this proxy
/// — those for `realm`, or with no readable realm — before a request goes on. Credentials
/// for another realm are someone else's and stay.
/// A browser's Via names a made-up host (`x.invalid`, RFC 7118 §5.2): the socket's
/// address goes in as received/rport, so a response that comes back through the box
/// finds the socket.
fn mark_ws_via(msg: &mut Message, addr: SocketAddr) {
    if let Some(h) = msg.headers.iter_mut().find(|h| h.key == "via") {
        let values = message::split_commas(&h.value);
        let mut v = String::with_capacity(h.value.len() + 40);
        let top = values[0]
            .split(';')
            .filter(|p| {
                let k = p.split('=').next().unwrap_or("").trim();
                !k.eq_ignore_ascii_case("received") && !k.eq_ignore_ascii_case("rport")
            })
            .collect::<Vec<_>>()
            .join(";");
        v.push_str(&top);
        v.push_str(&format!(";received={};rport={}", addr.ip(), addr.port()));
        for rest in &values[1..] {
            v.push_str(", ");
            v.push_str(rest);
        }
        h.value = v;
    }
}

fn strip_credentials(msg: &mut Message, realm: &str) {
    msg.headers.retain(|h| {
        if h.key != "proxy-authorization" && h.key != "authorization" {
            return true;
        }
        match Credentials::parse(&h.value) {
            Some(c) => c.realm != realm,
            None => true,
        }
    });
}

fn pop_top_via(msg: &mut Message) {
    let Some(i) = msg.headers.iter().position(|h| h.key == "via") else {
        return;
    };
    let values = message::split_commas(&msg.headers[i].value);
    if values.len() <= 1 {
        msg.headers.remove(i);
    } else {
        let rest = values[1..].join(", ");
        msg.headers[i].value = rest;
    }
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn reply(req: &Message, code: u16, reason: &str) -> Message {
    req.response(code, reason, "crm")
}

/// Where to send requests for a registered contact. Over TCP: the phone's own connection.
/// Over UDP: the Contact's address when it names the same IP the REGISTER came from (no
/// NAT in between; the phone may listen on another port than it sent from), else the
/// REGISTER's source address (RFC 3581: the NAT binding the phone keeps open).
fn route_target(contact: &str, source: Peer) -> Peer {
    if source.transport != Transport::Udp {
        return source;
    }
    let Some(uri) = Uri::parse(contact) else {
        return source;
    };
    let ip: Option<IpAddr> = uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    match ip {
        Some(ip) if ip == source.addr.ip() => Peer {
            transport: Transport::Udp,
            addr: SocketAddr::new(ip, uri.port.unwrap_or(5060)),
        },
        _ => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Dir;
    impl Directory for Dir {
        fn lookup(&self, n: &str) -> Option<Entry> {
            match n {
                "1000" | "1001" => Some(Entry::Extension {
                    secret: Arc::from(format!("secret-{n}").as_str()),
                    algorithms: None,
                }),
                "1002" => Some(Entry::Extension {
                    secret: Arc::from("secret-1002"),
                    algorithms: Some(Arc::from([digest::Algorithm::Md5])),
                }),
                _ => None,
            }
        }
    }
    struct NoStore;
    impl BindingStore for NoStore {
        fn upsert(&self, _: &StoredBinding) {}
        fn remove(&self, _: &str, _: &str) {}
    }
    struct NoEvents;
    impl EventSink for NoEvents {
        fn emit(&self, _: CallEvent) {}
    }

    const ME: &str = "127.0.0.1:5060";

    /// 1001 registered from 127.0.0.1:7000.
    fn engine_bindings() -> Vec<StoredBinding> {
        let phone = Peer {
            transport: Transport::Udp,
            addr: "127.0.0.1:7000".parse().unwrap(),
        };
        vec![StoredBinding {
            extension: "1001".into(),
            contact: "sip:1001@127.0.0.1:7000".into(),
            source: phone,
            expires_at: wall_secs() + 3600,
            call_id: "c".into(),
            cseq: 1,
            user_agent: String::new(),
        }]
    }

    fn engine() -> Engine {
        let cfg = SipConfig::new(ME.parse().unwrap());
        Engine::new(
            cfg,
            Arc::new(Dir),
            Arc::new(NoStore),
            Arc::new(NoEvents),
            engine_bindings(),
        )
    }

    fn peer() -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: "192.0.2.9:5062".parse().unwrap(),
        }
    }

    fn invite(uri: &str, extra: &str) -> String {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5062;rport;branch=z9hG4bKabc1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1000@{ME}>;tag=a\r\nTo: <sip:1001@{ME}>{extra}\r\n\
             Call-ID: t1\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@192.0.2.9:5062>\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn run(e: &mut Engine, msg: &str) -> Vec<Out> {
        let mut out = Vec::new();
        e.on_packet(msg.as_bytes(), peer(), Instant::now(), &mut out);
        out
    }

    /// 1000 calls `uri`: challenged, then the INVITE with credentials (branch
    /// z9hG4bKabc2). Returns what the second INVITE sent.
    fn authenticated_invite(e: &mut Engine, uri: &str) -> Vec<Out> {
        authenticated_invite_as(e, uri, peer(), "abc")
    }

    /// The same from `from`, as call `id` (branches z9hG4bK{id}1 and 2, Call-ID `id`).
    fn authenticated_invite_as(e: &mut Engine, uri: &str, from: Peer, id: &str) -> Vec<Out> {
        let send = |e: &mut Engine, msg: String| {
            let msg = msg
                .replace("branch=z9hG4bKabc", &format!("branch=z9hG4bK{id}"))
                .replace("Call-ID: t1", &format!("Call-ID: {id}"));
            let mut out = Vec::new();
            e.on_packet(msg.as_bytes(), from, Instant::now(), &mut out);
            out
        };
        let chal = send(e, invite(uri, ""));
        let text = String::from_utf8_lossy(&chal[0].data).into_owned();
        assert!(text.starts_with("SIP/2.0 407"), "{text}");
        let nonce = text
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        let r = digest::response(
            digest::Algorithm::Md5,
            "1000",
            "crm.local",
            "secret-1000",
            "INVITE",
            uri,
            &nonce,
            "00000001",
            "c",
            "auth",
        );
        let auth = format!(
            "\r\nProxy-Authorization: Digest username=\"1000\", realm=\"crm.local\", \
             nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, cnonce=\"c\", \
             nc=00000001, qop=auth"
        );
        let second = invite(uri, &auth)
            .replace("branch=z9hG4bKabc1", "branch=z9hG4bKabc2")
            .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE");
        send(e, second)
    }

    fn first_line(o: &Out) -> String {
        String::from_utf8_lossy(&o.data)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// Records what the engine tells its binding store.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);
    impl BindingStore for Recorder {
        fn upsert(&self, b: &StoredBinding) {
            self.0
                .lock()
                .unwrap()
                .push(format!("upsert {}", b.extension));
        }
        fn remove(&self, e: &str, c: &str) {
            self.0.lock().unwrap().push(format!("remove {e} {c}"));
        }
    }

    #[test]
    fn expired_bindings_are_swept_from_memory_and_the_store() {
        let rec = Arc::new(Recorder::default());
        let phone = Peer {
            transport: Transport::Udp,
            addr: "127.0.0.1:7000".parse().unwrap(),
        };
        let binding = |ext: &str, expires_at| StoredBinding {
            extension: ext.into(),
            contact: format!("sip:{ext}@127.0.0.1:7000"),
            source: phone,
            expires_at,
            call_id: "c".into(),
            cseq: 1,
            user_agent: String::new(),
        };
        let now = wall_secs();
        let mut e = Engine::new(
            SipConfig::new(ME.parse().unwrap()),
            Arc::new(Dir),
            rec.clone(),
            Arc::new(NoEvents),
            vec![binding("1000", now + 100), binding("1001", now + 3600)],
        );
        assert_eq!(e.contact_count(), 2);
        e.sweep(now + 101);
        assert_eq!(e.contact_count(), 1);
        assert_eq!(e.registrations()[0].extension, "1001");
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec!["remove 1000 sip:1000@127.0.0.1:7000".to_string()]
        );
    }

    #[test]
    fn on_an_unspecified_address_via_and_record_route_name_the_advertised_one() {
        let mut cfg = SipConfig::new("0.0.0.0:5060".parse().unwrap());
        cfg.advertise = Some("192.0.2.10".parse().unwrap());
        let mut e = Engine::new(
            cfg,
            Arc::new(Dir),
            Arc::new(NoStore),
            Arc::new(NoEvents),
            engine_bindings(),
        );
        let uri = "sip:1001@192.0.2.10:5060";
        let out = authenticated_invite(&mut e, uri);
        let fwd = out
            .iter()
            .map(|o| String::from_utf8_lossy(&o.data).into_owned())
            .find(|t| t.starts_with("INVITE "))
            .expect("forwarded to the phone");
        assert!(
            fwd.contains("Record-Route: <sip:192.0.2.10:5060;lr>"),
            "{fwd}"
        );
        assert!(
            fwd.contains("Via: SIP/2.0/UDP 192.0.2.10:5060;branch="),
            "{fwd}"
        );
        assert!(!fwd.contains("127.0.0.1:5060;lr"), "{fwd}");
    }

    #[test]
    fn a_resend_gets_its_own_cached_reply_never_another_sources() {
        let mut e = engine();
        let options = |to: &str| {
            format!(
                "OPTIONS sip:{ME} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKsame1\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:1000@{ME}>;tag=a\r\nTo: <sip:{to}@{ME}>\r\n\
                 Call-ID: {to}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let mut out = Vec::new();
        let a = peer();
        let b = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.9:5999".parse().unwrap(),
        };
        e.on_packet(options("first").as_bytes(), a, Instant::now(), &mut out);
        e.on_packet(options("second").as_bytes(), b, Instant::now(), &mut out);
        e.on_packet(options("first").as_bytes(), a, Instant::now(), &mut out);
        let call_ids: Vec<(Peer, bool)> = out
            .iter()
            .map(|o| {
                (
                    o.to,
                    String::from_utf8_lossy(&o.data).contains("Call-ID: second"),
                )
            })
            .collect();
        assert_eq!(call_ids, vec![(a, false), (b, true), (a, false)]);
    }

    #[test]
    fn a_resent_invite_gets_the_same_challenge_back() {
        let mut e = engine();
        let uri = format!("sip:1001@{ME}");
        let first = run(&mut e, &invite(&uri, ""));
        let again = run(&mut e, &invite(&uri, ""));
        assert_eq!(first.len(), 1);
        assert!(first_line(&first[0]).starts_with("SIP/2.0 407"));
        // The same bytes (same nonce): the caller's stack sees a retransmission.
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].data, first[0].data);
        // A phone that reuses the branch for its next INVITE is challenged afresh.
        let next = run(
            &mut e,
            &invite(&uri, "").replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"),
        );
        assert!(first_line(&next[0]).starts_with("SIP/2.0 407"));
        assert_ne!(next[0].data, first[0].data);
    }

    #[test]
    fn one_source_holds_at_most_max_calls_per_source_ringing_invites() {
        let mut cfg = SipConfig::new(ME.parse().unwrap());
        cfg.max_calls_per_source = 2;
        let mut e = Engine::new(
            cfg,
            Arc::new(Dir),
            Arc::new(NoStore),
            Arc::new(NoEvents),
            engine_bindings(),
        );
        let uri = format!("sip:1001@{ME}");
        let forwarded = |out: &[Out]| out.iter().any(|o| first_line(o).starts_with("INVITE "));
        assert!(forwarded(&authenticated_invite_as(
            &mut e,
            &uri,
            peer(),
            "c1"
        )));
        assert!(forwarded(&authenticated_invite_as(
            &mut e,
            &uri,
            peer(),
            "c2"
        )));
        let third = authenticated_invite_as(&mut e, &uri, peer(), "c3");
        let lines: Vec<String> = third.iter().map(first_line).collect();
        assert_eq!(lines, vec!["SIP/2.0 503 Service Unavailable"]);
        // Another address is not held back by the first one's calls.
        let other = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.77:5062".parse().unwrap(),
        };
        assert!(forwarded(&authenticated_invite_as(
            &mut e, &uri, other, "c4"
        )));
        // An answered call frees its place.
        let fwd = String::from_utf8_lossy(
            &authenticated_invite_as(&mut e, &uri, other, "c5")
                .into_iter()
                .find(|o| first_line(o).starts_with("INVITE "))
                .unwrap()
                .data,
        )
        .into_owned();
        let ours = fwd
            .lines()
            .find(|l| l.starts_with("Via: SIP/2.0/UDP 127.0.0.1:5060"))
            .unwrap()
            .to_string();
        let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
        assert_eq!(vias[0], ours);
        let ok = format!(
            "SIP/2.0 200 OK\r\n{}\r\n{}\r\nFrom: <sip:1000@{ME}>;tag=a\r\n\
             To: <sip:1001@{ME}>;tag=b\r\nCall-ID: c5\r\nCSeq: 2 INVITE\r\n\
             Contact: <sip:1001@127.0.0.1:7000>\r\nContent-Length: 0\r\n\r\n",
            vias[0], vias[1]
        );
        let phone = Peer {
            transport: Transport::Udp,
            addr: "127.0.0.1:7000".parse().unwrap(),
        };
        let mut out = Vec::new();
        e.on_packet(ok.as_bytes(), phone, Instant::now(), &mut out);
        assert!(out
            .iter()
            .any(|o| first_line(o) == "SIP/2.0 200 OK" && o.to == other));
        assert!(forwarded(&authenticated_invite_as(
            &mut e, &uri, other, "c6"
        )));
        let lines: Vec<String> = authenticated_invite_as(&mut e, &uri, other, "c7")
            .iter()
            .map(first_line)
            .collect();
        assert_eq!(lines, vec!["SIP/2.0 503 Service Unavailable"]);
    }

    #[test]
    fn only_the_caller_can_cancel_its_invite() {
        let mut e = engine();
        let uri = format!("sip:1001@{ME}");
        let out = authenticated_invite(&mut e, &uri);
        assert!(out.iter().any(|o| first_line(o).starts_with("INVITE ")));
        let cancel = format!(
            "CANCEL {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5062;rport;branch=z9hG4bKabc2\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1000@{ME}>;tag=a\r\nTo: <sip:1001@{ME}>\r\n\
             Call-ID: t1\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
        );
        // Another address copying the branch (and the Via) does not match the call.
        let stranger = Peer {
            transport: Transport::Udp,
            addr: "198.51.100.7:5062".parse().unwrap(),
        };
        let mut out = Vec::new();
        e.on_packet(cancel.as_bytes(), stranger, Instant::now(), &mut out);
        let lines: Vec<String> = out.iter().map(first_line).collect();
        assert_eq!(lines, vec!["SIP/2.0 481 Call/Transaction Does Not Exist"]);
        assert_eq!(out[0].to, stranger);
        // The caller's own CANCEL ends it: 200 for the CANCEL, 487 for the INVITE.
        let out = run(&mut e, &cancel);
        let lines: Vec<String> = out.iter().map(first_line).collect();
        assert_eq!(
            lines,
            vec!["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"],
            "{lines:?}"
        );
    }

    #[test]
    fn nothing_is_routed_for_an_unauthenticated_source() {
        let mut e = engine();
        // Each probe is a new transaction (its own branch), as an attacker's would be.
        let probe = |e: &mut Engine, msg: String, branch: &str| {
            run(e, &msg.replace("branch=z9hG4bKabc1", branch))
        };
        // Out of dialog: challenged, nothing leaves towards the phone.
        let out = run(&mut e, &invite(&format!("sip:1001@{ME}"), ""));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, peer());
        assert!(first_line(&out[0]).starts_with("SIP/2.0 407"));
        // Posing as in-dialog (To tag + Route to us) without a dialog we set up: 481.
        let fake = invite(&format!("sip:1001@{ME}"), ";tag=x").replace(
            "Call-ID: t1",
            &format!("Route: <sip:{ME};lr>\r\nCall-ID: t1"),
        );
        let out = probe(&mut e, fake, "branch=z9hG4bKfake1");
        assert_eq!(out.len(), 1);
        assert!(first_line(&out[0]).starts_with("SIP/2.0 481"));
        // Foreign domain: 403, never relayed.
        let out = probe(
            &mut e,
            invite("sip:1001@example.com", ""),
            "branch=z9hG4bKfake2",
        );
        assert!(first_line(&out[0]).starts_with("SIP/2.0 403"));
        // Max-Forwards 0 to a local user: 483.
        let out = probe(
            &mut e,
            invite(&format!("sip:1001@{ME}"), "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
            "branch=z9hG4bKfake3",
        );
        assert!(first_line(&out[0]).starts_with("SIP/2.0 483"));
    }

    /// Call events, as the engine emits them.
    #[derive(Default)]
    struct Events(std::sync::Mutex<Vec<CallEvent>>);
    impl EventSink for Events {
        fn emit(&self, ev: CallEvent) {
            self.0.lock().unwrap().push(ev);
        }
    }

    fn tcp(addr: &str) -> Peer {
        Peer {
            transport: Transport::Tcp,
            addr: addr.parse().unwrap(),
        }
    }

    fn udp(addr: &str) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: addr.parse().unwrap(),
        }
    }

    /// 1001 registered from `callee`; the engine's events go to the returned sink.
    fn engine_with_callee(callee: Peer) -> (Engine, Arc<Events>) {
        let ev = Arc::new(Events::default());
        let mut b = engine_bindings();
        b[0].source = callee;
        b[0].contact = format!("sip:1001@{}", callee.addr);
        let e = Engine::new(
            SipConfig::new(ME.parse().unwrap()),
            Arc::new(Dir),
            Arc::new(NoStore),
            ev.clone(),
            b,
        );
        (e, ev)
    }

    fn send(e: &mut Engine, msg: &str, from: Peer) -> Vec<Out> {
        let mut out = Vec::new();
        e.on_packet(msg.as_bytes(), from, Instant::now(), &mut out);
        out
    }

    fn text(o: &Out) -> String {
        String::from_utf8_lossy(&o.data).into_owned()
    }

    /// 1000 at `caller` calls 1001 at `callee` and 1001 answers (To tag "b").
    /// Returns the INVITE as the callee got it.
    fn answered_call(e: &mut Engine, caller: Peer, callee: Peer, id: &str) -> String {
        let out = authenticated_invite_as(e, &format!("sip:1001@{ME}"), caller, id);
        let fwd = out
            .iter()
            .find(|o| o.to == callee)
            .map(text)
            .expect("INVITE forwarded to the callee");
        assert!(fwd.starts_with("INVITE sip:1001@"), "{fwd}");
        let req = message::parse(fwd.as_bytes(), true).unwrap();
        let ok = req.response(200, "OK", "b").to_bytes();
        let mut out = Vec::new();
        e.on_packet(&ok, callee, Instant::now(), &mut out);
        assert!(
            out.iter()
                .any(|o| o.to == caller && first_line(o) == "SIP/2.0 200 OK"),
            "200 relayed to the caller"
        );
        fwd
    }

    /// An in-dialog request of `who` ("caller": From tag a, or "callee": From tag b).
    fn in_dialog_req(method: &str, id: &str, who: &str, routes: &str, extra: &str) -> String {
        let (from, to) = if who == "caller" {
            (
                format!("<sip:1000@{ME}>;tag=a"),
                format!("<sip:1001@{ME}>;tag=b"),
            )
        } else {
            (
                format!("<sip:1001@{ME}>;tag=b"),
                format!("<sip:1000@{ME}>;tag=a"),
            )
        };
        format!(
            "{method} sip:peer@127.0.0.1:9 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{who}{method}\r\n\
             Max-Forwards: 70\r\n{routes}From: {from}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 9 {method}\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn two_phones_on_one_address_over_tcp_are_told_apart_by_their_dialog_tags() {
        // Both phones on 127.0.0.1, both over TCP (two softphones on one PC).
        let (caller, callee) = (tcp("127.0.0.1:7002"), tcp("127.0.0.1:7000"));
        let (mut e, _) = engine_with_callee(callee);
        let fwd = answered_call(&mut e, caller, callee, "d1");
        // The transport is in Record-Route, so the phones stay on TCP in the dialog.
        assert!(
            fwd.contains(&format!("Record-Route: <sip:{ME};transport=tcp;lr>\r\n")),
            "{fwd}"
        );
        let route = format!("Route: <sip:{ME};transport=tcp;lr>\r\n");
        // The callee hangs up from a new connection (another port of the same address):
        // the BYE goes to the caller, not back to the callee.
        let bye = in_dialog_req("BYE", "d1", "callee", &route, "");
        let out = send(&mut e, &bye, tcp("127.0.0.1:7050"));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].to, caller);
        assert!(text(&out[0]).starts_with("BYE "));
        assert!(!text(&out[0]).contains("\r\nRoute:"), "our Route popped");
        // Same for the caller's request, which goes to the callee.
        let info = in_dialog_req("INFO", "d1", "caller", &route, "");
        let out = send(&mut e, &info, udp("127.0.0.1:7051"));
        assert_eq!(out[0].to, callee);
        // A tag that is neither party's: no such dialog. The right tag from another
        // address: refused.
        let stray = in_dialog_req("BYE", "d1", "caller", &route, "").replace("tag=a", "tag=z");
        let out = send(&mut e, &stray, caller);
        assert!(first_line(&out[0]).starts_with("SIP/2.0 481"), "{out:?}");
        let out = send(&mut e, &info.replace("caller", "x"), udp("192.0.2.77:5060"));
        assert!(first_line(&out[0]).starts_with("SIP/2.0 403"), "{out:?}");
    }

    #[test]
    fn two_phones_on_one_address_over_udp_too() {
        let (caller, callee) = (udp("127.0.0.1:7002"), udp("127.0.0.1:7000"));
        let (mut e, _) = engine_with_callee(callee);
        let fwd = answered_call(&mut e, caller, callee, "d2");
        assert!(
            fwd.contains(&format!("Record-Route: <sip:{ME};lr>\r\n")),
            "{fwd}"
        );
        let route = format!("Route: <sip:{ME};lr>\r\n");
        // A re-INVITE (hold) of the callee sent from another port reaches the caller.
        let hold = in_dialog_req("INVITE", "d2", "callee", &route, "");
        let out = send(&mut e, &hold, udp("127.0.0.1:7009"));
        assert_eq!(out[0].to, caller, "{out:?}");
    }

    #[test]
    fn where_the_legs_transports_differ_both_are_record_routed() {
        // RFC 5658: the caller on UDP, the callee on TCP.
        let (caller, callee) = (udp("192.0.2.9:5062"), tcp("127.0.0.1:7000"));
        let (mut e, _) = engine_with_callee(callee);
        let fwd = answered_call(&mut e, caller, callee, "d3");
        let rr: Vec<&str> = fwd
            .lines()
            .filter(|l| l.starts_with("Record-Route:"))
            .collect();
        assert_eq!(
            rr,
            vec![
                format!("Record-Route: <sip:{ME};transport=tcp;lr;r2=on>").as_str(),
                format!("Record-Route: <sip:{ME};lr;r2=on>").as_str(),
            ]
        );
        // The callee's route set is the Record-Route as is; the caller's reversed.
        let callee_routes =
            format!("Route: <sip:{ME};transport=tcp;lr;r2=on>\r\nRoute: <sip:{ME};lr;r2=on>\r\n");
        let out = send(
            &mut e,
            &in_dialog_req("BYE", "d3", "callee", &callee_routes, ""),
            callee,
        );
        assert_eq!(out[0].to, caller);
        assert!(
            !text(&out[0]).contains("\r\nRoute:"),
            "both of our Routes popped"
        );
    }

    #[test]
    fn credentials_for_this_proxy_are_not_forwarded_in_a_dialog() {
        let (caller, callee) = (udp("192.0.2.9:5062"), udp("127.0.0.1:7000"));
        let (mut e, _) = engine_with_callee(callee);
        answered_call(&mut e, caller, callee, "d4");
        let route = format!("Route: <sip:{ME};lr>\r\n");
        let creds = "Proxy-Authorization: Digest username=\"1000\", realm=\"crm.local\", \
                     nonce=\"n\", uri=\"sip:x\", response=\"r\"\r\n\
                     Proxy-Authorization: Digest username=\"u\", realm=\"other\", \
                     nonce=\"n\", uri=\"sip:x\", response=\"r\"\r\n";
        let reinvite = in_dialog_req("INVITE", "d4", "caller", &route, creds);
        let out = send(&mut e, &reinvite, caller);
        assert_eq!(out[0].to, callee);
        let t = text(&out[0]);
        assert!(!t.contains("realm=\"crm.local\""), "ours stripped: {t}");
        assert!(t.contains("realm=\"other\""), "someone else's kept: {t}");
    }

    #[test]
    fn a_call_to_no_registered_phone_or_an_unknown_number_is_logged() {
        let (mut e, ev) = engine_with_callee(udp("127.0.0.1:7000"));
        e.unregister_all("1001");
        let out = authenticated_invite_as(&mut e, &format!("sip:1001@{ME}"), peer(), "n1");
        assert!(first_line(&out[0]).starts_with("SIP/2.0 480"));
        let out = authenticated_invite_as(&mut e, &format!("sip:5555@{ME}"), peer(), "n2");
        assert!(first_line(&out[0]).starts_with("SIP/2.0 404"));
        let evs = ev.0.lock().unwrap().clone();
        let want = |id: &str, to: &str, cause: &str| {
            vec![
                CallEvent::Ringing {
                    call_id: id.into(),
                    direction: CallDirection::Internal,
                    from: "1000".into(),
                    to: to.into(),
                    group: None,
                    extensions: Vec::new(),
                    transferred_by: None,
                    transferred_from: None,
                },
                CallEvent::Ended {
                    call_id: id.into(),
                    cause: cause.into(),
                    ring_ms: 0,
                    talk_ms: 0,
                },
            ]
        };
        let mut all = want("n1", "1001", "status_480");
        all.extend(want("n2", "5555", "status_404"));
        assert_eq!(evs, all);
    }

    /// A REGISTER of `user` from `from` with a wrong response (nonce from a challenge).
    fn bad_register(e: &mut Engine, user: &str, from: Peer, n: u32) -> Vec<Out> {
        let reg = |auth: &str, branch: u32| {
            format!(
                "REGISTER sip:{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKr{user}x{branch}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@{ME}>;tag=r\r\nTo: <sip:{user}@{ME}>\r\n\
                 Call-ID: reg-{user}@x\r\nCSeq: {branch} REGISTER\r\nContact: <sip:{user}@{}>\r\n\
                 {auth}Content-Length: 0\r\n\r\n",
                from.addr, from.addr
            )
        };
        let chal = send(e, &reg("", n * 2), from);
        let Some(t) = chal.first().map(text) else {
            return chal;
        };
        let nonce = t
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        let auth = format!(
            "Authorization: Digest username=\"{user}\", realm=\"crm.local\", nonce=\"{nonce}\", \
             uri=\"sip:{ME}\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\n"
        );
        send(e, &reg(&auth, n * 2 + 1), from)
    }

    #[test]
    fn a_mistyped_phone_is_banned_alone_and_scanning_bans_the_address() {
        let mut e = engine();
        let office = udp("198.51.100.7:5060");
        let neighbour = udp("198.51.100.7:5070");
        // 1000's phone has a wrong secret: after ban_after_failures it is dropped...
        for i in 0..e.cfg.ban_after_failures {
            assert!(!bad_register(&mut e, "1000", office, i).is_empty());
        }
        assert!(
            bad_register(&mut e, "1000", office, 99).is_empty(),
            "1000 banned"
        );
        let bans = e.bans();
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].extension.as_deref(), Some("1000"));
        // ...while its neighbour behind the same address is still challenged and served.
        let out = bad_register(&mut e, "1001", neighbour, 0);
        assert!(first_line(&out[0]).starts_with("SIP/2.0 401"));
        // Scanning: failures for several user names that are no extension ban the
        // whole address.
        let scanner = udp("203.0.113.5:5060");
        for (i, u) in ["100", "101", "admin"].iter().enumerate() {
            bad_register(&mut e, u, scanner, i as u32);
        }
        let mut out = Vec::new();
        e.on_packet(
            invite(&format!("sip:1001@{ME}"), "").as_bytes(),
            scanner,
            Instant::now(),
            &mut out,
        );
        assert!(out.is_empty(), "scanner dropped");
        assert!(e
            .bans()
            .iter()
            .any(|b| b.address == "203.0.113.5" && b.extension.is_none()));
        // A trusted range is never banned as a whole address.
        let mut e = engine();
        e.cfg.trusted = vec!["203.0.113.0/24".parse().unwrap()];
        for (i, u) in ["100", "101", "admin", "root"].iter().enumerate() {
            bad_register(&mut e, u, scanner, i as u32);
        }
        assert!(e.bans().iter().all(|b| b.extension.is_some()));
        // Release lifts every ban of an address.
        let mut e = engine();
        for i in 0..=e.cfg.ban_after_failures {
            bad_register(&mut e, "1000", office, i);
        }
        assert!(e.release(office.addr.ip()));
        assert!(e.bans().is_empty());
    }

    #[test]
    fn an_extension_can_be_offered_its_own_digest_algorithms() {
        let mut e = engine();
        e.cfg.algorithms = vec![digest::Algorithm::Sha256, digest::Algorithm::Md5];
        let challenges = |e: &mut Engine, user: &str| -> Vec<String> {
            let reg = format!(
                "REGISTER sip:{ME} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKalg{user}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@{ME}>;tag=r\r\nTo: <sip:{user}@{ME}>\r\n\
                 Call-ID: alg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@198.51.100.9>\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let out = send(e, &reg, udp("198.51.100.9:5060"));
            text(&out[0])
                .lines()
                .filter(|l| l.starts_with("WWW-Authenticate:"))
                .map(|l| l.split("algorithm=").nth(1).unwrap_or("").to_string())
                .collect()
        };
        // 1002 is set to MD5 only (a baresip phone); 1000 gets the box's choice.
        assert_eq!(challenges(&mut e, "1002"), vec!["MD5".to_string()]);
        assert_eq!(
            challenges(&mut e, "1000"),
            vec!["SHA-256".to_string(), "MD5".to_string()]
        );
    }

    #[test]
    fn require_is_for_the_uas_and_proxy_require_for_us() {
        let mut e = engine();
        // A call with Require: replaces (RFC 3891) goes on to the phone: challenged as
        // any call, not refused.
        let with = |h: &str, b: &str| {
            invite(&format!("sip:1001@{ME}"), "")
                .replace("Call-ID: t1", &format!("{h}\r\nCall-ID: t1"))
                .replace("branch=z9hG4bKabc1", b)
        };
        let out = run(&mut e, &with("Require: replaces", "branch=z9hG4bKreq1"));
        assert!(first_line(&out[0]).starts_with("SIP/2.0 407"), "{out:?}");
        let out = run(&mut e, &with("Proxy-Require: foo", "branch=z9hG4bKreq2"));
        assert!(first_line(&out[0]).starts_with("SIP/2.0 420"), "{out:?}");
        // A REGISTER is for us: its Require is ours to refuse.
        let reg = format!(
            "REGISTER sip:{ME} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKreq3\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1000@{ME}>;tag=r\r\nTo: <sip:1000@{ME}>\r\n\
             Call-ID: rq\r\nCSeq: 1 REGISTER\r\nRequire: foo\r\nContent-Length: 0\r\n\r\n"
        );
        let out = run(&mut e, &reg);
        assert!(first_line(&out[0]).starts_with("SIP/2.0 420"), "{out:?}");
        // Our address without a port is us (linphone's Refer-To), another's is not.
        assert!(e.is_local("127.0.0.1", None));
        assert!(!e.is_local("127.0.0.2", None));
    }

    #[test]
    fn star_8_with_nothing_ringing_in_the_dialler_s_groups_is_404() {
        let mut e = engine();
        let out = authenticated_invite(&mut e, &format!("sip:*8@{ME}"));
        assert!(first_line(&out[0]).starts_with("SIP/2.0 404"), "{out:?}");
        assert_eq!(e.state_size().0, 0, "no transaction started");
    }

    #[test]
    fn a_trunk_providers_address_is_never_banned() {
        let mut e = engine();
        let provider = udp("192.0.2.10:5060");
        let plan = super::super::trunk::Plan {
            trunks: vec![super::super::trunk::Trunk {
                id: 1,
                name: "p".into(),
                host: "192.0.2.10".into(),
                port: 5060,
                transport: Transport::Udp,
                username: "u".into(),
                secret: "s".into(),
                auth_username: String::new(),
                from_domain: String::new(),
                register: false,
                expires: 600,
                caller_id: String::new(),
                resolved: vec![provider.addr],
                allow: Vec::new(),
            }],
            ..Default::default()
        };
        e.set_plan(plan, Instant::now());
        for (i, u) in ["100", "101", "admin", "1000", "1000", "1000"]
            .iter()
            .enumerate()
        {
            bad_register(&mut e, u, provider, i as u32 + 10);
        }
        for i in 0..20 {
            bad_register(&mut e, "1000", provider, i + 100);
        }
        assert!(e.bans().is_empty(), "{:?}", e.bans());
    }

    fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let mut v = base.to_vec();
        for (i, b) in edits {
            if !v.is_empty() {
                let i = i % v.len();
                v[i] = *b;
            }
        }
        v.truncate(cut.max(1).min(v.len()));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Random and mutated messages never panic the parser or the engine, and the
        /// engine's state stays bounded.
        #[test]
        fn random_and_mutated_messages_do_not_panic(
            edits in proptest::collection::vec((0usize..600, any::<u8>()), 0..8),
            cut in 1usize..700,
            noise in proptest::collection::vec(any::<u8>(), 0..300),
            which in 0usize..4,
        ) {
            let mut e = engine();
            let bases = [
                invite(&format!("sip:1001@{ME}"), ""),
                invite(&format!("sip:1001@{ME}"), ";tag=x").replace("Call-ID", &format!("Route: <sip:{ME};lr>\r\nCall-ID")),
                format!("REGISTER sip:{ME} SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\nf: <sip:1000@{ME}>;tag=1\r\nt: <sip:1000@{ME}>\r\ni: x\r\nCSeq: 2 REGISTER\r\nm: <sip:1000@h>;expires=60, *\r\nl: 0\r\n\r\n"),
                "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcrm1\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".to_string(),
            ];
            let m = mutate(bases[which].as_bytes(), &edits, cut);
            let mut out = Vec::new();
            e.on_packet(&m, peer(), Instant::now(), &mut out);
            e.on_packet(&noise, peer(), Instant::now(), &mut out);
            let _ = message::frame(&m);
            e.on_tick(Instant::now() + Duration::from_secs(40), &mut out);
            let (t, d, r) = e.state_size();
            prop_assert!(t <= 1 && d <= 1 && r <= 3);
            prop_assert!(out.len() < 10);
        }
    }
}
