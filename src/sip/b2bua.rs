//! The engine's dealings with the outside world (a child of `engine`, so it shares the
//! engine's state and helpers):
//! - the registration client that keeps each trunk registered at its provider (digest
//!   auth, refresh before expiry, exponential backoff after failures);
//! - a signalling-only back-to-back user agent for calls through a trunk: the provider
//!   sees a dialog of our own (the trunk's caller ID in From, its credentials answering
//!   401/407), the phone sees the box as its peer; SDP passes through untouched;
//! - click-to-call (RFC 3725 flow I): INVITE the operator's phone without an offer, take
//!   the offer of its 200, INVITE the target with it, ACK the operator with the answer.
//!
//! Both legs of a call share one call id in the events: the Call-ID of the first leg.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::super::digest::{authorization, best_challenge};
use super::super::trunk::{self, Plan, Refusal};
use super::registration::REG_BRANCH;
use super::route::contact_at;
use super::{
    message, reply, wall_secs, CallDirection, CallEvent, Engine, Entry, Message, Method, NameAddr,
    Out, Peer, StartLine, Timer, Transport, Uri, BRANCH_PREFIX, LINGER, T1, T2, TIMER_B,
};

#[path = "transfer.rs"]
mod transfer;
pub(super) use transfer::is_sdp;
use transfer::{Park, Reoffer, Xfer};

/// Branches of B2BUA requests (never hex digits after the common prefix, so they cannot
/// collide with proxy branches).
pub(super) const LEG_BRANCH: &str = "z9hG4bKcrmB";
const MAX_CALLS: usize = 10_000;
/// In-dialog requests remembered at once (a call's are forgotten with it).
const MAX_RELAYS: usize = 4 * MAX_CALLS;
const UA: &str = "crm";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// An in-dialog request (a re-INVITE for hold, UPDATE, INFO for DTMF, ...) passed on to the
/// other side of a call as our own request there: its answer goes back to the sender.
struct Relay {
    key: String,
    request: Message,
    from: Peer,
    /// Our request on the other side (bytes), for the ACK of a failure.
    sent: Vec<u8>,
    to: Peer,
}

/// A request of ours that waits for an answer on UDP (BYE, relayed re-INVITE, UPDATE,
/// INFO, ...): sent again at T1, 2·T1, ... up to T2 apart until any answer comes, for at
/// most 64·T1 (RFC 3261 §17.1.2.2, timers E and F). A BYE lost on the way to the provider
/// would otherwise leave the call up, and billed, on its side.
struct Resend {
    to: Peer,
    data: Vec<u8>,
    give_up: Instant,
}

#[derive(Debug, Clone)]
pub(super) enum OTimer {
    /// A BYE or relayed request of ours on UDP: resend until answered.
    Resend {
        branch: String,
        interval: Duration,
    },
    Retransmit {
        key: String,
        side: Side,
        branch: String,
        interval: Duration,
    },
    Timeout {
        key: String,
        side: Side,
        branch: String,
    },
    FinalRetransmit {
        key: String,
        interval: Duration,
        left: u8,
    },
    Expire {
        key: String,
    },
    /// A parked call nobody retrieved: ring the parker back.
    ParkTimeout {
        key: String,
        orbit: String,
    },
}

/// One dialog where the box is the UAC.
struct Leg {
    peer: Peer,
    /// Our own `host:port` as this peer should see it.
    me: String,
    ruri: String,
    target: String,
    routes: Vec<String>,
    call_id: String,
    from: String,
    to: String,
    contact: String,
    cseq: u32,
    branch: String,
    invite: Vec<u8>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
    trunk: Option<usize>,
    auth_tried: bool,
    provisional: bool,
    final_code: Option<u16>,
    answer: Vec<u8>,
    acked: bool,
}

/// The phone's side of a call it placed through the trunk: the box is its UAS.
struct Uas {
    source: Peer,
    request: Message,
    tag: String,
    contact: String,
    me: String,
    cseq: u32,
    last: Option<Vec<u8>>,
    final_code: Option<u16>,
    acked: bool,
}

enum ASide {
    Phone(Uas),
    Operator(Leg),
    /// Nobody: the call is parked, or a transfer's new leg is not placed yet.
    Empty,
}

/// What click-to-call dials once the operator has picked up.
enum Pending {
    Extension {
        number: String,
        uri: String,
        peer: Peer,
    },
    Trunk {
        idx: usize,
        number: String,
    },
}

struct Call {
    a: ASide,
    b: Option<Leg>,
    pending: Option<Pending>,
    /// A relayed re-INVITE was answered 2xx on this side: the sender's ACK goes there.
    ack_on: Option<Side>,
    started: Instant,
    answered: Option<Instant>,
    ended: bool,
    cancelled: bool,
    extension: String,
    /// The call id the B2BUA logs this call under, while it does: None once a leg
    /// through the box's own proxy carries it (the proxy logs that one).
    log: Option<String>,
    direction: CallDirection,
    /// The number of the party on side B (the outside number, or an extension).
    party: String,
    xfer: Option<Box<Xfer>>,
    park: Option<Park>,
    /// Who asked for the transfer or park (its dialog, with the box in the other
    /// party's place), until it hangs up: its requests are told apart by their tag.
    transferor: Option<Box<Leg>>,
    /// The transferor was sent its final NOTIFY (and BYE): nothing more goes to it.
    transferor_done: bool,
}

/// Trunks, their registrations, B2BUA calls and the outbound counters.
#[derive(Default)]
pub(super) struct Outside {
    pub plan: Plan,
    pub(super) regs: Vec<super::registration::Reg>,
    calls: HashMap<String, Call>,
    pub(super) by_call_id: HashMap<String, (String, Side)>,
    by_branch: HashMap<String, (String, Side)>,
    by_uas_branch: HashMap<String, String>,
    /// Relayed in-dialog requests by our branch; the senders' branches with the call and,
    /// once answered, the final answer (resent to a retransmission).
    relays: HashMap<String, Relay>,
    relayed: HashMap<String, (String, Option<Vec<u8>>)>,
    /// Our requests waiting for an answer on UDP, by branch.
    resends: HashMap<String, Resend>,
    counts: HashMap<String, VecDeque<u64>>,
    pub(super) hosts: HashMap<IpAddr, String>,
    /// Our re-INVITEs to side B that move its media (to a transfer's target, to hold, to
    /// the phone retrieving a park), by branch.
    reoffers: HashMap<String, Reoffer>,
    /// Parked calls by orbit.
    pub(super) parks: HashMap<String, String>,
}

impl Outside {
    /// Does a request belong to a B2BUA call? Cheap when there are none.
    pub fn claims(&self, msg: &Message) -> bool {
        if self.calls.is_empty() {
            return false;
        }
        // A leg the box placed through its own proxy: the phone's requests there go
        // through the proxy (its dialog, its call log), which hands them on.
        if msg.call_id().starts_with(transfer::LOOP_CALL_PREFIX) {
            return false;
        }
        if self.by_call_id.contains_key(msg.call_id()) {
            return true;
        }
        msg.top_via()
            .and_then(|v| v.branch())
            .is_some_and(|b| self.by_uas_branch.contains_key(b))
    }

    /// When B2BUA call `key` was answered, while it is up.
    pub fn answered_at(&self, key: &str) -> Option<Instant> {
        self.calls
            .get(key)
            .filter(|c| !c.ended)
            .and_then(|c| c.answered)
    }

    pub fn has_trunks(&self) -> bool {
        !self.plan.trunks.is_empty()
    }
}

/// An SDP answer that rejects every stream of `offer` (port 0): used to complete an
/// operator's dialog before hanging it up when the far end could not be reached.
fn reject_all(offer: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(offer);
    let mut s =
        String::from("v=0\r\no=crm 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n");
    for line in text.lines().filter(|l| l.starts_with("m=")) {
        let mut parts: Vec<&str> = line.split(' ').collect();
        if parts.len() >= 3 {
            parts[1] = "0";
            s.push_str(&parts.join(" "));
            s.push_str("\r\n");
        }
    }
    s.into_bytes()
}

pub(super) fn token() -> String {
    format!("{:x}", rand::random::<u64>())
}

fn uri_of(v: &str) -> Option<String> {
    NameAddr::parse(v).map(|n| n.uri.to_string())
}

/// A request of ours, built from parts.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_request(
    method: &str,
    ruri: &str,
    via: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    routes: &[String],
    contact: Option<&str>,
    extra: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut m = Message {
        start: StartLine::Request {
            method: Method::parse(method),
            method_text: method.into(),
            uri: ruri.into(),
        },
        headers: Vec::with_capacity(12),
        body: body.to_vec(),
    };
    m.push("via", "Via", via.to_string());
    m.push("max-forwards", "Max-Forwards", "70".into());
    for r in routes {
        m.push("route", "Route", r.clone());
    }
    m.push("from", "From", from.into());
    m.push("to", "To", to.into());
    m.push("call-id", "Call-ID", call_id.into());
    m.push("cseq", "CSeq", format!("{cseq} {method}"));
    if let Some(c) = contact {
        m.push("contact", "Contact", c.into());
    }
    for (k, v) in extra {
        m.push(&k.to_ascii_lowercase(), k, v.clone());
    }
    m.push("user-agent", "User-Agent", UA.into());
    if !body.is_empty() && m.header("content-type").is_none() {
        m.push("content-type", "Content-Type", "application/sdp".into());
    }
    m.to_bytes()
}

impl Leg {
    fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};rport;branch={branch}",
            self.peer.transport.name(),
            self.me
        )
    }

    fn build_invite(&mut self, auth: Option<(&str, String)>) -> Vec<u8> {
        let mut extra = self.extra.clone();
        if let Some((name, value)) = auth {
            extra.push((name.to_string(), value));
        }
        extra.push(("Allow".into(), "INVITE, ACK, CANCEL, BYE, OPTIONS".into()));
        let data = build_request(
            "INVITE",
            &self.ruri,
            &self.via(&self.branch),
            &self.from,
            &self.to,
            &self.call_id,
            self.cseq,
            &[],
            Some(&self.contact),
            &extra,
            &self.body,
        );
        self.invite = data.clone();
        data
    }

    /// ACK for a non-2xx final (same branch as the INVITE, RFC 3261 §17.1.1.3).
    fn ack_failure(&self, to: &str) -> Vec<u8> {
        build_request(
            "ACK",
            &self.ruri,
            &self.via(&self.branch),
            &self.from,
            to,
            &self.call_id,
            self.cseq,
            &[],
            None,
            &[],
            &[],
        )
    }

    fn cancel(&self) -> Vec<u8> {
        build_request(
            "CANCEL",
            &self.ruri,
            &self.via(&self.branch),
            &self.from,
            &self.to,
            &self.call_id,
            self.cseq,
            &[],
            None,
            &[],
            &[],
        )
    }

    /// A request inside the dialog (ACK for 2xx keeps the INVITE's CSeq).
    fn in_dialog(&mut self, method: &str, body: &[u8]) -> Vec<u8> {
        self.in_dialog_request(method, body, &[]).1
    }

    /// [`Leg::in_dialog`] with extra headers; gives its branch too.
    fn in_dialog_request(
        &mut self,
        method: &str,
        body: &[u8],
        extra: &[(String, String)],
    ) -> (String, Vec<u8>) {
        let cseq = if method == "ACK" {
            self.cseq
        } else {
            self.cseq += 1;
            self.cseq
        };
        let branch = format!("{LEG_BRANCH}{}", token());
        let data = build_request(
            method,
            &self.target,
            &self.via(&branch),
            &self.from,
            &self.to,
            &self.call_id,
            cseq,
            &self.routes,
            Some(&self.contact),
            extra,
            body,
        );
        (branch, data)
    }
}

impl Uas {
    fn response(&self, code: u16, reason: &str, body: &[u8]) -> Message {
        let mut r = self.request.response(code, reason, &self.tag);
        if code > 100 {
            r.push(
                "contact",
                "Contact",
                contact_at(None, &self.me, self.source.transport),
            );
        }
        if !body.is_empty() {
            r.push("content-type", "Content-Type", "application/sdp".into());
            r.body = body.to_vec();
        }
        r
    }

    /// A request of ours to the phone inside its dialog (ACK for 2xx keeps the CSeq); gives
    /// its branch too.
    fn in_dialog_request(
        &mut self,
        method: &str,
        body: &[u8],
        extra: &[(String, String)],
    ) -> (String, Vec<u8>) {
        if method != "ACK" {
            self.cseq += 1;
        }
        let r = &self.request;
        let from = format!(
            "{};tag={}",
            strip_tag(r.header("to").unwrap_or("")),
            self.tag
        );
        let branch = format!("{LEG_BRANCH}{}", token());
        let via = format!(
            "SIP/2.0/{} {};rport;branch={branch}",
            self.source.transport.name(),
            self.me,
        );
        let contact = contact_at(None, &self.me, self.source.transport);
        let data = build_request(
            method,
            &self.contact,
            &via,
            &from,
            r.header("from").unwrap_or(""),
            r.call_id(),
            self.cseq,
            &[],
            matches!(method, "INVITE" | "UPDATE").then_some(contact.as_str()),
            extra,
            body,
        );
        (branch, data)
    }
}

/// The top Via branch of a request (empty when missing).
fn origin_branch(msg: &Message) -> String {
    msg.top_via()
        .and_then(|v| v.branch().map(str::to_string))
        .unwrap_or_default()
}

/// `Content-Type` of a message with a body, as an extra header for the relayed copy.
fn content_type_of(msg: &Message) -> Vec<(String, String)> {
    match msg.header("content-type") {
        Some(v) if !msg.body.is_empty() => vec![("Content-Type".into(), v.to_string())],
        _ => Vec::new(),
    }
}

/// Our answer to a relayed request: the other side's code, reason and body.
fn relayed_answer(request: &Message, answer: &Message, contact: Option<String>) -> Message {
    let mut r = request.response(answer.code(), answer.reason(), "");
    if let Some(c) = contact {
        r.push("contact", "Contact", c);
    }
    if !answer.body.is_empty() {
        let kind = answer.header("content-type").unwrap_or("application/sdp");
        r.push("content-type", "Content-Type", kind.to_string());
        r.body = answer.body.clone();
    }
    r
}

/// ACK for a failure answer to an INVITE we sent (`sent`): same branch, CSeq number and
/// Route set, the answer's To (RFC 3261 §17.1.1.3).
fn ack_failure_of(sent: &Message, answer: &Message) -> Vec<u8> {
    let routes: Vec<String> = sent
        .values_of("route")
        .iter()
        .map(|s| s.to_string())
        .collect();
    build_request(
        "ACK",
        sent.uri(),
        sent.header("via").unwrap_or(""),
        sent.header("from").unwrap_or(""),
        answer.header("to").unwrap_or(""),
        sent.call_id(),
        sent.cseq().0,
        &routes,
        None,
        &[],
        &[],
    )
}

pub(super) fn strip_tag(v: &str) -> &str {
    match v.find(";tag=") {
        Some(i) => &v[..i],
        None => v,
    }
}

impl Engine {
    // ----- plan and status ----------------------------------------------------------

    pub fn set_plan(&mut self, plan: Plan, now: Instant) {
        self.registrations_for(&plan, now);
        let mut plan = plan;
        // After a restart the counters are empty: the call log's last hour fills them. A
        // counter already running knows better (the log lags a call behind).
        for (ext, mut times) in std::mem::take(&mut plan.recent_outbound) {
            let q = self.outside.counts.entry(ext).or_default();
            if q.is_empty() {
                times.sort_unstable();
                q.extend(times);
            }
        }
        self.outside.plan = plan;
    }

    // ----- routing hooks called by the engine ---------------------------------------

    /// A response to one of our own requests (REGISTER or a B2BUA leg). True if handled.
    pub(super) fn outside_response(
        &mut self,
        branch: &str,
        msg: Message,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Option<Message> {
        if branch.starts_with(REG_BRANCH) {
            self.on_register_response(branch, msg, now, out);
            return None;
        }
        if branch.starts_with(LEG_BRANCH) {
            self.on_leg_response(branch, msg, now, out);
            return None;
        }
        Some(msg)
    }

    /// An INVITE from a trunk's address: to the DID's destination, no digest challenge
    /// (the provider does not authenticate to us; its address does).
    pub(super) fn inbound_from_trunk(
        &mut self,
        msg: Message,
        from: Peer,
        trunk_id: i64,
        ruri_user: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let to_user = msg
            .header("to")
            .and_then(NameAddr::parse)
            .and_then(|n| Uri::parse(n.uri).and_then(|u| u.user_unescaped()))
            .unwrap_or_default();
        let plan = &self.outside.plan;
        let did = if plan.is_did(trunk_id, ruri_user) {
            ruri_user.to_string()
        } else if plan.is_did(trunk_id, &to_user) {
            to_user
        } else {
            self.answer(&msg, from, 404, "Not Found", out);
            self.attempt_refused(&msg, CallDirection::Inbound, ruri_user, None, 404);
            return;
        };
        let Some(dest) = plan
            .inbound_destination(trunk_id, &did, wall_secs() as i64)
            .map(str::to_string)
        else {
            self.answer(&msg, from, 404, "Not Found", out);
            self.attempt_refused(&msg, CallDirection::Inbound, &did, None, 404);
            return;
        };
        self.route_invite(
            msg,
            from,
            &dest,
            None,
            CallDirection::Inbound,
            &did,
            now,
            out,
        );
    }

    /// An authenticated extension dialled a number that is no extension: out through a
    /// trunk if the dial rules say so and the extension's policy allows it.
    pub(super) fn try_outbound(
        &mut self,
        msg: Message,
        from: Peer,
        dialled: &str,
        who: Option<&str>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let number = match trunk::normalise_dialled(dialled) {
            Some(n) if self.outside.plan.dial.matches(&n) => n,
            _ => {
                self.answer(&msg, from, 404, "Not Found", out);
                self.attempt_refused(&msg, CallDirection::Internal, dialled, None, 404);
                return;
            }
        };
        let Some(ext) = who.map(str::to_string) else {
            self.answer(&msg, from, 403, Refusal::NotAllowed.reason(), out);
            return;
        };
        let idx = match self.outbound_allowed(&ext, &number) {
            Ok(i) => i,
            Err((code, reason)) => {
                tracing::info!(extension = %ext, code, reason, "SIP: outbound call refused");
                self.answer(&msg, from, code, reason, out);
                self.attempt_refused(&msg, CallDirection::Outbound, &number, None, 0);
                return;
            }
        };
        let Some(key) = msg.top_via().and_then(|v| v.branch().map(str::to_string)) else {
            self.answer(&msg, from, 400, "Bad Request", out);
            return;
        };
        let me = self.me_for(from.addr.ip());
        let contact = msg
            .header("contact")
            .and_then(uri_of)
            .unwrap_or_else(|| msg.uri().to_string());
        let uas = Uas {
            source: from,
            request: msg,
            tag: format!("b2b{}", token()),
            contact,
            me,
            cseq: 0,
            last: None,
            final_code: None,
            acked: false,
        };
        let call_key = uas.request.call_id().to_string();
        if self.outside.calls.contains_key(&call_key) {
            self.answer(&uas.request, from, 482, "Loop Detected", out);
            return;
        }
        let trying = uas.response(100, "Trying", &[]);
        let trying = self.send_response(trying, from, out);
        let mut uas = uas;
        uas.last = Some(trying);
        let body = uas.request.body.clone();
        let Some(b) = self.trunk_leg(idx, &number, body) else {
            self.answer(&uas.request, from, 503, "No trunk available", out);
            return;
        };
        self.outside.by_uas_branch.insert(key, call_key.clone());
        self.outside
            .by_call_id
            .insert(call_key.clone(), (call_key.clone(), Side::A));
        self.outside.calls.insert(
            call_key.clone(),
            Call {
                a: ASide::Phone(uas),
                b: None,
                pending: None,
                ack_on: None,
                started: now,
                answered: None,
                ended: false,
                cancelled: false,
                extension: ext.clone(),
                log: Some(call_key.clone()),
                direction: CallDirection::Outbound,
                party: number.clone(),
                xfer: None,
                park: None,
                transferor: None,
                transferor_done: false,
            },
        );
        let trunk = self.outside.plan.trunks.get(idx).map(|t| t.id);
        self.anchor(&call_key, CallDirection::Outbound, &[ext.as_str()], trunk);
        self.start_leg(&call_key, Side::B, b, now, out);
        self.forget_after_a_day(&call_key, now);
        self.events.emit(CallEvent::Ringing {
            call_id: call_key,
            direction: CallDirection::Outbound,
            from: ext,
            to: number,
            group: None,
            extensions: Vec::new(),
            transferred_by: None,
            transferred_from: None,
        });
    }

    /// The policy, prefix and hourly checks; the trunk to use, or the refusal.
    fn outbound_allowed(&mut self, ext: &str, number: &str) -> Result<usize, (u16, &'static str)> {
        let plan = &self.outside.plan;
        let policy = plan.policies.get(ext).cloned().unwrap_or_default();
        policy.check(number).map_err(|r| (403, r.reason()))?;
        let idx = plan
            .trunks
            .iter()
            .position(|t| t.target().is_some())
            .ok_or((503, "No trunk available"))?;
        if self.outside.calls.len() >= MAX_CALLS {
            return Err((503, "Service Unavailable"));
        }
        let now = wall_secs();
        let q = self.outside.counts.entry(ext.to_string()).or_default();
        while q.front().is_some_and(|t| *t + 3600 <= now) {
            q.pop_front();
        }
        if q.len() as u32 >= policy.max_per_hour {
            return Err((403, Refusal::HourlyLimit.reason()));
        }
        q.push_back(now);
        Ok(idx)
    }

    /// A leg to `number` through trunk `idx`; None when the plan changed meanwhile and
    /// the trunk is gone or unresolvable.
    fn trunk_leg(&mut self, idx: usize, number: &str, body: Vec<u8>) -> Option<Leg> {
        let t = self.outside.plan.trunks.get(idx)?.clone();
        let addr = t.target()?;
        let me = self.me_for(addr.ip());
        let domain = t.domain();
        let host = t.uri_hostport();
        let cid = if t.caller_id.is_empty() {
            t.username.clone()
        } else {
            t.caller_id.clone()
        };
        Some(Leg {
            peer: Peer {
                transport: t.transport,
                addr,
            },
            ruri: format!("sip:{number}@{host}"),
            target: format!("sip:{number}@{host}"),
            routes: Vec::new(),
            call_id: format!("crm-{}@{}", token(), me),
            from: format!("<sip:{cid}@{domain}>;tag={}", token()),
            to: format!("<sip:{number}@{domain}>"),
            contact: contact_at(Some(&t.username), &me, t.transport),
            me,
            cseq: 1,
            branch: String::new(),
            invite: Vec::new(),
            extra: vec![(
                "P-Asserted-Identity".into(),
                format!("<sip:{cid}@{domain}>"),
            )],
            body,
            trunk: Some(idx),
            auth_tried: false,
            provisional: false,
            final_code: None,
            answer: Vec::new(),
            acked: false,
        })
    }

    /// Stores a new leg in the call and sends its INVITE.
    fn start_leg(&mut self, key: &str, side: Side, leg: Leg, now: Instant, out: &mut Vec<Out>) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        match side {
            Side::B => c.b = Some(leg),
            Side::A => c.a = ASide::Operator(leg),
        }
        self.launch(key, side, now, out);
    }

    /// Sends the first INVITE of a stored leg and indexes it.
    fn launch(&mut self, key: &str, side: Side, now: Instant, out: &mut Vec<Out>) {
        let Some(leg) = self.leg_mut(key, side) else {
            return;
        };
        leg.branch = format!("{LEG_BRANCH}{}", token());
        let data = leg.build_invite(None);
        out.push(Out { to: leg.peer, data });
        let (branch, udp, cid) = (
            leg.branch.clone(),
            leg.peer.transport == Transport::Udp,
            leg.call_id.clone(),
        );
        self.outside
            .by_branch
            .insert(branch.clone(), (key.to_string(), side));
        self.outside.by_call_id.insert(cid, (key.to_string(), side));
        self.leg_timers(key, side, branch, udp, now);
    }

    /// Bounded state: a call nobody ever hangs up is dropped after a day.
    fn forget_after_a_day(&mut self, key: &str, now: Instant) {
        self.schedule(
            now + Duration::from_secs(86_400),
            Timer::Outside(OTimer::Expire { key: key.into() }),
        );
    }

    fn leg_timers(&mut self, key: &str, side: Side, branch: String, udp: bool, now: Instant) {
        if udp {
            self.schedule(
                now + T1,
                Timer::Outside(OTimer::Retransmit {
                    key: key.into(),
                    side,
                    branch: branch.clone(),
                    interval: T1,
                }),
            );
        }
        self.schedule(
            now + TIMER_B,
            Timer::Outside(OTimer::Timeout {
                key: key.into(),
                side,
                branch,
            }),
        );
    }

    fn leg_mut(&mut self, key: &str, side: Side) -> Option<&mut Leg> {
        let c = self.outside.calls.get_mut(key)?;
        match side {
            Side::B => c.b.as_mut(),
            Side::A => match &mut c.a {
                ASide::Operator(l) => Some(l),
                ASide::Phone(_) | ASide::Empty => None,
            },
        }
    }

    fn on_leg_response(&mut self, branch: &str, msg: Message, now: Instant, out: &mut Vec<Out>) {
        self.outside.resends.remove(branch);
        if self.outside.relays.contains_key(branch) {
            self.on_relay_response(branch, msg, out);
            return;
        }
        if self.outside.reoffers.contains_key(branch) {
            self.on_reoffer_response(branch, msg, now, out);
            return;
        }
        let (_, method) = msg.cseq();
        if method != "INVITE" {
            return; // answers to our BYE/CANCEL: nothing more to do
        }
        let Some((key, side)) = self.outside.by_branch.get(branch).cloned() else {
            return;
        };
        let code = msg.code();
        let Some(leg) = self.leg_mut(&key, side) else {
            return;
        };
        if leg.branch != branch {
            return;
        }
        if code < 200 {
            if leg.final_code.is_some() {
                return;
            }
            leg.provisional = true;
            let cancelled = self.outside.calls.get(&key).is_some_and(|c| c.cancelled);
            if cancelled {
                let data = self.leg_mut(&key, side).map(|l| (l.peer, l.cancel()));
                if let Some((to, data)) = data {
                    out.push(Out { to, data });
                }
                return;
            }
            if code > 100 && side == Side::B {
                self.relay_provisional(&key, &msg, out);
            }
            return;
        }
        if code < 300 {
            if let Some(done) = leg.final_code.filter(|c| (200..300).contains(c)) {
                let _ = done;
                // A retransmitted 2xx: our ACK was lost.
                if leg.acked {
                    let data = leg.in_dialog("ACK", &[]);
                    out.push(Out { to: leg.peer, data });
                }
                return;
            }
            leg.final_code = Some(code);
            if let Some(tag) = msg
                .header("to")
                .and_then(NameAddr::parse)
                .and_then(|n| n.tag().map(str::to_string))
            {
                leg.to = format!("{};tag={tag}", strip_tag(&leg.to));
            }
            if let Some(c) = msg.header("contact").and_then(uri_of) {
                leg.target = c;
            }
            leg.routes = msg
                .values_of("record-route")
                .iter()
                .rev()
                .map(|s| s.to_string())
                .collect();
            leg.answer = msg.body.clone();
            self.leg_answered(&key, side, now, out);
            return;
        }
        // A final failure: ACK it, maybe answer a challenge, else end the call.
        let to = msg.header("to").unwrap_or("").to_string();
        let ack = leg.ack_failure(&to);
        out.push(Out {
            to: leg.peer,
            data: ack,
        });
        if leg.final_code.is_some() {
            return;
        }
        let (auth_tried, trunk_idx) = (leg.auth_tried, leg.trunk);
        if (code == 401 || code == 407) && !auth_tried {
            if let Some(idx) = trunk_idx {
                if let (Some((ch, _, name)), Some(t)) = (
                    best_challenge(&msg),
                    self.outside.plan.trunks.get(idx).cloned(),
                ) {
                    let leg = self.leg_mut(&key, side).expect("present above");
                    leg.auth_tried = true;
                    leg.cseq += 1;
                    let value = authorization(&ch, t.auth_user(), &t.secret, "INVITE", &leg.ruri);
                    let old = std::mem::take(&mut leg.branch);
                    leg.branch = format!("{LEG_BRANCH}{}", token());
                    leg.provisional = false;
                    let data = leg.build_invite(Some((name, value)));
                    let (peer, nb, udp) = (
                        leg.peer,
                        leg.branch.clone(),
                        leg.peer.transport == Transport::Udp,
                    );
                    out.push(Out { to: peer, data });
                    self.outside.by_branch.remove(&old);
                    self.outside
                        .by_branch
                        .insert(nb.clone(), (key.clone(), side));
                    self.leg_timers(&key, side, nb, udp, now);
                    return;
                }
            }
        }
        if let Some(leg) = self.leg_mut(&key, side) {
            leg.final_code = Some(code);
        }
        let reason = msg.reason().to_string();
        self.leg_failed(&key, side, code, &reason, now, out);
    }

    /// The phone's side of call `key`, when a phone placed it (not click-to-call).
    fn phone_mut(&mut self, key: &str) -> Option<&mut Uas> {
        match &mut self.outside.calls.get_mut(key)?.a {
            ASide::Phone(ua) => Some(ua),
            ASide::Operator(_) | ASide::Empty => None,
        }
    }

    /// [`Self::phone_mut`] while the phone has no final answer yet.
    fn unanswered_phone(&mut self, key: &str) -> Option<&mut Uas> {
        self.phone_mut(key).filter(|ua| ua.final_code.is_none())
    }

    fn relay_provisional(&mut self, key: &str, msg: &Message, out: &mut Vec<Out>) {
        let Some(ua) = self.unanswered_phone(key) else {
            return;
        };
        let reason = msg.reason().to_string();
        let r = ua.response(msg.code(), &reason, &msg.body);
        let source = ua.source;
        let data = self.send_response(r, source, out);
        if let Some(ua) = self.phone_mut(key) {
            ua.last = Some(data);
        }
    }

    /// Sends a final response to the phone side and keeps it until the ACK.
    fn final_to_phone(
        &mut self,
        key: &str,
        code: u16,
        reason: &str,
        body: &[u8],
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(ua) = self.unanswered_phone(key) else {
            return;
        };
        ua.final_code = Some(code);
        let r = ua.response(code, reason, body);
        let (source, udp) = (ua.source, ua.source.transport == Transport::Udp);
        let data = self.send_response(r, source, out);
        if let Some(ua) = self.phone_mut(key) {
            ua.last = Some(data);
        }
        if udp {
            self.schedule(
                now + T1,
                Timer::Outside(OTimer::FinalRetransmit {
                    key: key.into(),
                    interval: T1,
                    left: 10,
                }),
            );
        }
    }

    fn leg_answered(&mut self, key: &str, side: Side, now: Instant, out: &mut Vec<Out>) {
        if side == Side::A
            && self
                .outside
                .calls
                .get(key)
                .is_some_and(|c| c.xfer.is_some())
        {
            self.xfer_answered(key, now, out);
            return;
        }
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let is_phone = matches!(c.a, ASide::Phone(_));
        match (side, is_phone) {
            (Side::B, true) => {
                let answer = c.b.as_ref().map(|l| l.answer.clone()).unwrap_or_default();
                let cancelled = c.cancelled;
                self.ack_leg(key, Side::B, &[], out);
                if cancelled {
                    // The caller gave up while the provider answered: hang up its side.
                    self.bye_leg(key, Side::B, now, out);
                    return;
                }
                c_answered(self, key, now);
                self.final_to_phone(key, 200, "OK", &answer, now, out);
                if self.outside.calls.get(key).is_some_and(|c| c.cancelled) {
                    self.hang_up(key, Side::A, now, out);
                }
            }
            (Side::A, false) => {
                // The operator picked up: now call the target with the phone's offer.
                let offer = match &c.a {
                    ASide::Operator(l) => l.answer.clone(),
                    ASide::Phone(_) | ASide::Empty => Vec::new(),
                };
                let Some(p) = c.pending.take() else { return };
                let leg = match p {
                    Pending::Trunk { idx, number } => match self.trunk_leg(idx, &number, offer) {
                        Some(l) => l,
                        None => {
                            self.leg_failed(key, Side::B, 503, "No trunk available", now, out);
                            return;
                        }
                    },
                    Pending::Extension { number, uri, peer } => {
                        let me = self.me_for(peer.addr.ip());
                        let op = self.outside.calls[key].extension.clone();
                        Leg {
                            peer,
                            ruri: uri.clone(),
                            target: uri,
                            routes: Vec::new(),
                            call_id: format!("crm-{}@{me}", token()),
                            from: format!("<sip:{op}@{me}>;tag={}", token()),
                            to: format!("<sip:{number}@{me}>"),
                            contact: contact_at(Some(&op), &me, peer.transport),
                            me,
                            cseq: 1,
                            branch: String::new(),
                            invite: Vec::new(),
                            extra: Vec::new(),
                            body: offer,
                            trunk: None,
                            auth_tried: false,
                            provisional: false,
                            final_code: None,
                            answer: Vec::new(),
                            acked: false,
                        }
                    }
                };
                self.start_leg(key, Side::B, leg, now, out);
            }
            (Side::B, false) => {
                let answer = c.b.as_ref().map(|l| l.answer.clone()).unwrap_or_default();
                self.ack_leg(key, Side::B, &[], out);
                self.ack_leg(key, Side::A, &answer, out);
                c_answered(self, key, now);
            }
            (Side::A, true) => {}
        }
    }

    fn ack_leg(&mut self, key: &str, side: Side, body: &[u8], out: &mut Vec<Out>) {
        if let Some(l) = self.leg_mut(key, side) {
            if l.acked {
                return;
            }
            l.acked = true;
            let data = l.in_dialog("ACK", body);
            out.push(Out { to: l.peer, data });
        }
    }

    fn leg_failed(
        &mut self,
        key: &str,
        side: Side,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.outside.calls.get(key) else {
            return;
        };
        if side == Side::A && c.xfer.is_some() {
            self.xfer_failed(key, code, reason, now, out);
            return;
        }
        let cause = if c.cancelled {
            "cancelled".to_string()
        } else if code == 408 || code == 480 {
            "no_answer".to_string()
        } else {
            format!("status_{code}")
        };
        let is_phone = matches!(c.a, ASide::Phone(_));
        if side == Side::B {
            if is_phone {
                let (code, reason) = if c.cancelled {
                    (487, "Request Terminated")
                } else {
                    (code, reason)
                };
                self.final_to_phone(key, code, reason, &[], now, out);
            } else {
                // The operator is waiting in a dialog we must complete, then end.
                let offer = match &c.a {
                    ASide::Operator(l) => l.answer.clone(),
                    ASide::Phone(_) | ASide::Empty => Vec::new(),
                };
                self.ack_leg(key, Side::A, &reject_all(&offer), out);
                self.bye_leg(key, Side::A, now, out);
            }
        }
        self.end_call(key, cause, now);
    }

    fn bye_leg(&mut self, key: &str, side: Side, now: Instant, out: &mut Vec<Out>) {
        if let Some(l) = self.leg_mut(key, side) {
            let (branch, data) = l.in_dialog_request("BYE", &[], &[]);
            let to = l.peer;
            self.send_until_answered(to, branch, data, now, out);
        }
    }

    /// Sends a request that expects an answer; on UDP, again until one comes.
    fn send_until_answered(
        &mut self,
        to: Peer,
        branch: String,
        data: Vec<u8>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if to.transport == Transport::Udp {
            self.outside.resends.insert(
                branch.clone(),
                Resend {
                    to,
                    data: data.clone(),
                    give_up: now + TIMER_B,
                },
            );
            self.schedule(
                now + T1,
                Timer::Outside(OTimer::Resend {
                    branch,
                    interval: T1,
                }),
            );
        }
        out.push(Out { to, data });
    }

    /// Ends the other side of `from_side` (BYE if answered, else CANCEL / 487).
    fn hang_up(&mut self, key: &str, to_side: Side, now: Instant, out: &mut Vec<Out>) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let mut bye = None;
        match to_side {
            Side::B => {
                if let Some(l) = &mut c.b {
                    match l.final_code {
                        Some(200..=299) => {
                            let (branch, data) = l.in_dialog_request("BYE", &[], &[]);
                            bye = Some((l.peer, branch, data));
                        }
                        None => {
                            let data = l.cancel();
                            out.push(Out { to: l.peer, data });
                        }
                        Some(_) => {}
                    }
                }
            }
            Side::A => match &mut c.a {
                ASide::Phone(ua) => match ua.final_code {
                    Some(200..=299) => {
                        let (branch, data) = ua.in_dialog_request("BYE", &[], &[]);
                        bye = Some((ua.source, branch, data));
                    }
                    None => self.final_to_phone(key, 487, "Request Terminated", &[], now, out),
                    Some(_) => {}
                },
                ASide::Operator(l) => match l.final_code {
                    Some(200..=299) => {
                        let offer = l.answer.clone();
                        if !l.acked {
                            l.acked = true;
                            let data = l.in_dialog("ACK", &reject_all(&offer));
                            out.push(Out { to: l.peer, data });
                        }
                        let (branch, data) = l.in_dialog_request("BYE", &[], &[]);
                        bye = Some((l.peer, branch, data));
                    }
                    None => {
                        let data = l.cancel();
                        out.push(Out { to: l.peer, data });
                    }
                    Some(_) => {}
                },
                ASide::Empty => {}
            },
        }
        if let Some((to, branch, data)) = bye {
            self.send_until_answered(to, branch, data, now, out);
        }
    }

    /// A browser's socket closed (see `Engine::ws_closed`): each B2BUA call with it on
    /// one side ends as if it had hung up (BYE or CANCEL to the other side).
    pub(super) fn ws_gone_outside(&mut self, gone: Peer, now: Instant, out: &mut Vec<Out>) {
        let hit: Vec<(String, Side)> = self
            .outside
            .calls
            .iter()
            .filter(|(_, c)| !c.ended)
            .filter_map(|(k, c)| {
                let a = match &c.a {
                    ASide::Phone(ua) => Some(ua.source),
                    ASide::Operator(l) => Some(l.peer),
                    ASide::Empty => None,
                };
                if a == Some(gone) {
                    Some((k.clone(), Side::A))
                } else if c.b.as_ref().is_some_and(|l| l.peer == gone) {
                    Some((k.clone(), Side::B))
                } else {
                    None
                }
            })
            .collect();
        for (key, side) in hit {
            let answered = self
                .outside
                .calls
                .get(&key)
                .is_some_and(|c| c.answered.is_some());
            if let Some(c) = self.outside.calls.get_mut(&key) {
                c.cancelled = !answered;
            }
            self.hang_up(&key, side.other(), now, out);
            self.release_transferor(&key, now, out);
            let cause = if answered { "completed" } else { "cancelled" };
            self.end_call(&key, cause.into(), now);
        }
    }

    fn end_call(&mut self, key: &str, cause: String, now: Instant) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        if c.ended {
            return;
        }
        c.ended = true;
        if let Some(p) = c.park.take() {
            self.outside.parks.remove(&p.orbit);
            self.events.emit(CallEvent::Unparked {
                call_id: p.from_call,
                orbit: p.orbit,
                cause: "hung_up".into(),
                by: None,
            });
        }
        self.close_log(key, &cause, now);
        self.schedule(
            now + LINGER,
            Timer::Outside(OTimer::Expire { key: key.into() }),
        );
    }

    /// A request for a B2BUA call (claimed by [`Outside::claims`]).
    pub(super) fn outside_request(
        &mut self,
        msg: Message,
        from: Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let method = msg.method().unwrap_or(Method::Other);
        let branch = msg
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        if let Some(key) = self.outside.by_uas_branch.get(&branch).cloned() {
            match method {
                Method::Invite => {
                    if let Some(ASide::Phone(ua)) = self.outside.calls.get(&key).map(|c| &c.a) {
                        if let Some(last) = &ua.last {
                            out.push(Out {
                                to: ua.source,
                                data: last.clone(),
                            });
                        }
                    }
                    return;
                }
                Method::Cancel => {
                    let r = reply(&msg, 200, "OK");
                    self.send_response(r, from, out);
                    let open = self.outside.calls.get(&key).is_some_and(
                        |c| matches!(&c.a, ASide::Phone(ua) if ua.final_code.is_none()),
                    );
                    if open {
                        if let Some(c) = self.outside.calls.get_mut(&key) {
                            c.cancelled = true;
                        }
                        self.hang_up(&key, Side::B, now, out);
                        self.final_to_phone(&key, 487, "Request Terminated", &[], now, out);
                        self.end_call(&key, "cancelled".into(), now);
                    }
                    return;
                }
                Method::Ack => {
                    if let Some(ua) = self.phone_mut(&key) {
                        ua.acked = true;
                    }
                    return;
                }
                _ => {}
            }
        }
        let Some((key, side)) = self.outside.by_call_id.get(msg.call_id()).cloned() else {
            return;
        };
        let side = match self.who_speaks(&key, &msg) {
            Some(transfer::Speaker::Transferor) => {
                self.transferor_request(&key, msg, from, now, out);
                return;
            }
            Some(transfer::Speaker::A) => Side::A,
            None => side,
        };
        match method {
            Method::Ack => {
                let Some(c) = self.outside.calls.get_mut(&key) else {
                    return;
                };
                if let ASide::Phone(ua) = &mut c.a {
                    ua.acked = true;
                }
                // The ACK of a relayed re-INVITE's 2xx: ours on the other side.
                if let Some(to) = c.ack_on.take().filter(|s| *s != side) {
                    let extra = content_type_of(&msg);
                    if let Some((peer, _, data)) =
                        self.request_on(&key, to, "ACK", &msg.body, &extra)
                    {
                        out.push(Out { to: peer, data });
                    }
                }
            }
            Method::Bye => {
                let r = reply(&msg, 200, "OK");
                self.answer_with(&msg, from, r, out);
                let other = if side == Side::A { Side::B } else { Side::A };
                self.hang_up(&key, other, now, out);
                let answered = self
                    .outside
                    .calls
                    .get(&key)
                    .is_some_and(|c| c.answered.is_some());
                let cause = if answered { "completed" } else { "cancelled" };
                self.release_transferor(&key, now, out);
                self.end_call(&key, cause.into(), now);
            }
            Method::Options => {
                let r = reply(&msg, 200, "OK");
                self.answer_with(&msg, from, r, out);
            }
            Method::Cancel => self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out),
            Method::Invite | Method::Update | Method::Info | Method::Notify | Method::Message => {
                self.relay_in_dialog(&key, side, msg, from, now, out)
            }
            Method::Refer if side == Side::A => self.refer_in_b2bua(&key, msg, from, now, out),
            // The provider does not transfer the office's calls.
            Method::Refer => self.answer(&msg, from, 403, "Forbidden", out),
            _ => self.answer(&msg, from, 501, "Not Implemented", out),
        }
    }

    /// Passes an in-dialog request from `side` on to the other side of an answered call,
    /// as our own request in that dialog (body and Content-Type kept): hold and resume,
    /// codec changes, DTMF by INFO.
    fn relay_in_dialog(
        &mut self,
        key: &str,
        side: Side,
        msg: Message,
        from: Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let origin = origin_branch(&msg);
        if let Some((_, answered)) = self.outside.relayed.get(&origin) {
            // A retransmission: answer it again, or wait for the answer on its way.
            if let Some(data) = answered {
                out.push(Out {
                    to: from,
                    data: data.clone(),
                });
            }
            return;
        }
        let Some(c) = self.outside.calls.get(key) else {
            return;
        };
        if c.ended {
            self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            return;
        }
        if self.outside.relayed.len() >= MAX_RELAYS {
            self.answer(&msg, from, 503, "Service Unavailable", out);
            return;
        }
        if c.answered.is_none() {
            // Early dialogs: ask to retry once answered.
            self.answer(&msg, from, 491, "Request Pending", out);
            return;
        }
        let method = match &msg.start {
            StartLine::Request { method_text, .. } => method_text.clone(),
            StartLine::Response { .. } => return,
        };
        let extra = content_type_of(&msg);
        if side == Side::A && transfer::is_sdp(&msg) {
            // What side B last got from us: the base of a hold offer when it is parked.
            if let Some(b) = self.outside.calls.get_mut(key).and_then(|c| c.b.as_mut()) {
                b.body = msg.body.clone();
            }
        }
        let Some((to, branch, data)) =
            self.request_on(key, side.other(), &method, &msg.body, &extra)
        else {
            self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            return;
        };
        let sent = data.clone();
        self.send_until_answered(to, branch.clone(), data, now, out);
        if msg.method() == Some(Method::Invite) {
            let r = reply(&msg, 100, "Trying");
            self.send_response(r, from, out);
        }
        self.outside.relayed.insert(origin, (key.to_string(), None));
        self.outside.relays.insert(
            branch,
            Relay {
                key: key.to_string(),
                request: msg,
                from,
                sent,
                to,
            },
        );
    }

    /// Builds our request in the dialog on `side`: (peer, branch, bytes).
    fn request_on(
        &mut self,
        key: &str,
        side: Side,
        method: &str,
        body: &[u8],
        extra: &[(String, String)],
    ) -> Option<(Peer, String, Vec<u8>)> {
        if let Some(leg) = self.leg_mut(key, side) {
            let (branch, data) = leg.in_dialog_request(method, body, extra);
            return Some((leg.peer, branch, data));
        }
        let ua = self.phone_mut(key).filter(|_| side == Side::A)?;
        let (branch, data) = ua.in_dialog_request(method, body, extra);
        Some((ua.source, branch, data))
    }

    /// Our Contact in the dialog on `side`, for the answers we relay into it.
    fn contact_on(&self, key: &str, side: Side) -> Option<String> {
        let c = self.outside.calls.get(key)?;
        match side {
            Side::B => c.b.as_ref().map(|l| l.contact.clone()),
            Side::A => match &c.a {
                ASide::Operator(l) => Some(l.contact.clone()),
                ASide::Phone(ua) => Some(contact_at(None, &ua.me, ua.source.transport)),
                ASide::Empty => None,
            },
        }
    }

    /// The other side's answer to a relayed request: ACK a failed INVITE there, and answer
    /// the sender with the same code, reason and body.
    fn on_relay_response(&mut self, branch: &str, msg: Message, out: &mut Vec<Out>) {
        let code = msg.code();
        if code < 200 {
            if code > 100 {
                if let Some(r) = self.outside.relays.get(branch) {
                    let (resp, from) = (relayed_answer(&r.request, &msg, None), r.from);
                    self.send_response(resp, from, out);
                }
            }
            return;
        }
        let Some(r) = self.outside.relays.remove(branch) else {
            return;
        };
        let invite = r.request.method() == Some(Method::Invite);
        let Some((_, sender_side)) = self.outside.by_call_id.get(r.request.call_id()).cloned()
        else {
            return;
        };
        if invite && code >= 300 {
            // Parsed only here: a failed re-INVITE is rare, a relayed request is not.
            if let Ok(sent) = message::parse(&r.sent, true) {
                out.push(Out {
                    to: r.to,
                    data: ack_failure_of(&sent, &msg),
                });
            }
        }
        if invite && code < 300 {
            if let Some(c) = self.outside.calls.get_mut(&r.key) {
                c.ack_on = Some(sender_side.other());
            }
        }
        let contact = (code < 300)
            .then(|| self.contact_on(&r.key, sender_side))
            .flatten();
        let resp = relayed_answer(&r.request, &msg, contact);
        let data = self.send_response(resp, r.from, out);
        if let Some(entry) = self.outside.relayed.get_mut(&origin_branch(&r.request)) {
            entry.1 = Some(data);
        }
    }

    pub(super) fn fire_outside(&mut self, t: OTimer, now: Instant, out: &mut Vec<Out>) {
        match t {
            OTimer::Resend { branch, interval } => {
                let Some(r) = self.outside.resends.get(&branch) else {
                    return; // answered
                };
                if now >= r.give_up {
                    self.outside.resends.remove(&branch);
                    return;
                }
                out.push(Out {
                    to: r.to,
                    data: r.data.clone(),
                });
                let next = (interval * 2).min(T2);
                self.schedule(
                    now + next,
                    Timer::Outside(OTimer::Resend {
                        branch,
                        interval: next,
                    }),
                );
            }
            OTimer::Retransmit {
                key,
                side,
                branch,
                interval,
            } => {
                let Some(l) = self.leg_mut(&key, side) else {
                    return;
                };
                if l.branch != branch || l.provisional || l.final_code.is_some() {
                    return;
                }
                out.push(Out {
                    to: l.peer,
                    data: l.invite.clone(),
                });
                let next = interval * 2;
                self.schedule(
                    now + next,
                    Timer::Outside(OTimer::Retransmit {
                        key,
                        side,
                        branch,
                        interval: next,
                    }),
                );
            }
            OTimer::Timeout { key, side, branch } => {
                let Some(l) = self.leg_mut(&key, side) else {
                    return;
                };
                if l.branch != branch || l.final_code.is_some() || l.provisional {
                    return;
                }
                l.final_code = Some(408);
                self.leg_failed(&key, side, 408, "Request Timeout", now, out);
            }
            OTimer::FinalRetransmit {
                key,
                interval,
                left,
            } => {
                let Some(ASide::Phone(ua)) = self.outside.calls.get(&key).map(|c| &c.a) else {
                    return;
                };
                if ua.acked || left == 0 {
                    return;
                }
                if let Some(last) = &ua.last {
                    out.push(Out {
                        to: ua.source,
                        data: last.clone(),
                    });
                }
                let next = (interval * 2).min(T2);
                self.schedule(
                    now + next,
                    Timer::Outside(OTimer::FinalRetransmit {
                        key,
                        interval: next,
                        left: left - 1,
                    }),
                );
            }
            OTimer::ParkTimeout { key, orbit } => self.park_timeout(&key, &orbit, now, out),
            OTimer::Expire { key } => {
                if let Some(c) = self.outside.calls.remove(&key) {
                    let o = &mut self.outside;
                    o.by_call_id.retain(|_, (k, _)| *k != key);
                    o.by_branch.retain(|_, (k, _)| *k != key);
                    o.by_uas_branch.retain(|_, k| *k != key);
                    o.relays.retain(|_, r| r.key != key);
                    o.relayed.retain(|_, (k, _)| *k != key);
                    o.reoffers.retain(|_, r| r.key != key);
                    o.parks.retain(|_, k| *k != key);
                    drop(c);
                }
            }
        }
    }

    // ----- click-to-call ------------------------------------------------------------

    /// Calls `operator`'s phone, then connects it to `target` (an extension or a number
    /// out through a trunk, under the operator's outbound policy). Returns the call id.
    pub fn click_to_call(
        &mut self,
        operator: &str,
        target: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<String, String> {
        let now_secs = wall_secs();
        let Some((op_uri, op_peer)) = self.contacts_of(operator, now_secs).pop() else {
            return Err(format!(
                "extension {operator} (your desk phone) is not registered"
            ));
        };
        let number = trunk::normalise_dialled(target).ok_or("not a phone number")?;
        let (pending, direction) = match self.directory.lookup(&number) {
            Some(Entry::Extension { .. }) => {
                if number == operator {
                    return Err("that is your own extension".into());
                }
                let (uri, peer) = self
                    .contacts_of(&number, now_secs)
                    .pop()
                    .ok_or_else(|| format!("extension {number} is not registered"))?;
                (
                    Pending::Extension {
                        number: number.clone(),
                        uri,
                        peer,
                    },
                    CallDirection::Internal,
                )
            }
            Some(Entry::Group(_)) => {
                return Err("a ring group cannot be dialled by click-to-call".into())
            }
            None if self.outside.plan.dial.matches(&number) => {
                let idx = self
                    .outbound_allowed(operator, &number)
                    .map_err(|(_, r)| r.to_string())?;
                (
                    Pending::Trunk {
                        idx,
                        number: number.clone(),
                    },
                    CallDirection::Outbound,
                )
            }
            None => return Err(format!("{number} is no extension and no outside number")),
        };
        if self.outside.calls.len() >= MAX_CALLS {
            return Err("too many calls".into());
        }
        let me = self.me_for(op_peer.addr.ip());
        let auto = self
            .outside
            .plan
            .policies
            .get(operator)
            .is_some_and(|p| p.auto_answer);
        let mut extra = Vec::new();
        if auto {
            let host = me
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(&me)
                .to_string();
            extra.push(("Call-Info".into(), format!("<sip:{host}>;answer-after=0")));
            extra.push(("Alert-Info".into(), "info=alert-autoanswer".into()));
            extra.push(("Answer-Mode".into(), "Auto".into()));
        }
        let trunk = match &pending {
            Pending::Trunk { idx, .. } => self.outside.plan.trunks.get(*idx).map(|t| t.id),
            Pending::Extension { .. } => None,
        };
        let call_id = format!("crm-c2c-{}@{me}", token());
        let leg = Leg {
            peer: op_peer,
            ruri: op_uri.clone(),
            target: op_uri,
            routes: Vec::new(),
            call_id: call_id.clone(),
            from: format!("\"{number}\" <sip:{number}@{me}>;tag={}", token()),
            to: format!("<sip:{operator}@{me}>"),
            contact: contact_at(Some(number.as_str()), &me, op_peer.transport),
            me,
            cseq: 1,
            branch: String::new(),
            invite: Vec::new(),
            extra,
            body: Vec::new(),
            trunk: None,
            auth_tried: false,
            provisional: false,
            final_code: None,
            answer: Vec::new(),
            acked: false,
        };
        self.outside.calls.insert(
            call_id.clone(),
            Call {
                a: ASide::Operator(leg),
                b: None,
                pending: Some(pending),
                ack_on: None,
                started: now,
                answered: None,
                ended: false,
                cancelled: false,
                extension: operator.to_string(),
                log: Some(call_id.clone()),
                direction,
                party: number.clone(),
                xfer: None,
                park: None,
                transferor: None,
                transferor_done: false,
            },
        );
        self.anchor(&call_id, direction, &[operator, number.as_str()], trunk);
        self.launch(&call_id, Side::A, now, out);
        self.forget_after_a_day(&call_id, now);
        self.finish(now, out);
        self.events.emit(CallEvent::Ringing {
            call_id: call_id.clone(),
            direction,
            from: operator.to_string(),
            to: number,
            group: None,
            extensions: vec![operator.to_string()],
            transferred_by: None,
            transferred_from: None,
        });
        Ok(call_id)
    }
}

/// Marks a call answered and tells the call log.
fn c_answered(e: &mut Engine, key: &str, now: Instant) {
    let Some(c) = e.outside.calls.get_mut(key) else {
        return;
    };
    if c.answered.is_some() {
        return;
    }
    c.answered = Some(now);
    let ext = c.extension.clone();
    if let Some(id) = c.log.clone() {
        e.events.emit(CallEvent::Answered {
            call_id: id,
            extension: ext,
        });
    }
}

#[allow(dead_code)]
const _: &str = BRANCH_PREFIX;

#[cfg(test)]
mod tests {
    use super::super::super::trunk::{Trunk, TrunkState};
    use super::*;

    struct NoDir;
    impl super::super::super::Directory for NoDir {
        fn lookup(&self, _: &str) -> Option<Entry> {
            None
        }
    }
    struct NoStore;
    impl super::super::super::BindingStore for NoStore {
        fn upsert(&self, _: &super::super::super::StoredBinding) {}
        fn remove(&self, _: &str, _: &str) {}
    }
    struct NoEvents;
    impl super::super::super::EventSink for NoEvents {
        fn emit(&self, _: CallEvent) {}
    }

    fn engine_with_trunk(now: Instant) -> Engine {
        let cfg = super::super::super::SipConfig::new("127.0.0.1:5060".parse().unwrap());
        let mut e = Engine::new(
            cfg,
            std::sync::Arc::new(NoDir),
            std::sync::Arc::new(NoStore),
            std::sync::Arc::new(NoEvents),
            Vec::new(),
        );
        let plan = Plan {
            trunks: vec![Trunk {
                id: 1,
                name: "p".into(),
                host: "192.0.2.10".into(),
                port: 5060,
                transport: Transport::Udp,
                username: "u".into(),
                secret: "s".into(),
                auth_username: String::new(),
                from_domain: String::new(),
                register: true,
                expires: 600,
                caller_id: String::new(),
                resolved: vec!["192.0.2.10:5060".parse().unwrap()],
                allow: Vec::new(),
            }],
            retry_base_secs: 2,
            retry_max_secs: 10,
            ..Default::default()
        };
        e.set_plan(plan, now);
        e
    }

    fn registers(out: &[Out]) -> Vec<String> {
        out.iter()
            .map(|o| String::from_utf8_lossy(&o.data).into_owned())
            .filter(|m| m.starts_with("REGISTER "))
            .collect()
    }

    #[test]
    fn an_ipv6_trunk_is_bracketed_in_every_uri_and_via() {
        let t0 = Instant::now();
        let mut e = engine_with_trunk(t0);
        let mut plan = e.outside.plan.clone();
        plan.trunks[0].host = "::1".into();
        plan.trunks[0].port = 35989;
        plan.trunks[0].resolved = vec!["[::1]:35989".parse().unwrap()];
        e.cfg.listen = "[::1]:5060".parse().unwrap();
        e.set_plan(plan, t0);
        let mut out = Vec::new();
        e.on_tick(t0, &mut out);
        let reg = registers(&out).pop().expect("a REGISTER");
        assert!(
            reg.starts_with("REGISTER sip:[::1]:35989 SIP/2.0\r\n"),
            "{reg}"
        );
        assert!(reg.contains("To: <sip:u@[::1]>"), "{reg}");
        assert!(reg.contains("Via: SIP/2.0/UDP [::1]:5060;"), "{reg}");
        assert!(reg.contains("Contact: <sip:u@[::1]:5060>"), "{reg}");
        let leg = e.trunk_leg(0, "998901234567", Vec::new()).expect("a leg");
        assert_eq!(leg.ruri, "sip:998901234567@[::1]:35989");
        assert_eq!(leg.to, "<sip:998901234567@[::1]>");
        assert!(leg.from.starts_with("<sip:u@[::1]>;tag="), "{}", leg.from);
        assert_eq!(leg.extra[0].1, "<sip:u@[::1]>");
        assert!(leg.via("z9hG4bKx").contains(" [::1]:5060;"));
        // An advertised IPv6 address given bare is bracketed too.
        e.cfg.advertise = Some("2001:db8::5".into());
        assert_eq!(e.me_for("::1".parse().unwrap()), "[2001:db8::5]:5060");
    }

    #[test]
    fn registration_retries_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut e = engine_with_trunk(t0);
        let mut out = Vec::new();
        e.on_tick(t0, &mut out);
        assert_eq!(registers(&out).len(), 1);
        let mut t = t0;
        for want in [2u64, 4, 8, 10, 10] {
            // No answer within timer F: failed, next attempt after the backoff.
            t += TIMER_B + Duration::from_millis(1);
            out.clear();
            e.on_tick(t, &mut out);
            match &e.trunk_status(t)[0].state {
                TrunkState::Failed { reason, retry_in } => {
                    assert!(reason.contains("no answer"), "{reason}");
                    assert!(
                        *retry_in == want || *retry_in + 1 == want,
                        "{retry_in} vs {want}"
                    );
                }
                other => panic!("{other:?}"),
            }
            t += Duration::from_secs(want);
            out.clear();
            e.on_tick(t, &mut out);
            assert_eq!(registers(&out).len(), 1, "retried after {want} s");
        }
    }

    #[test]
    fn a_repeated_challenge_for_answered_credentials_is_a_failure() {
        let t0 = Instant::now();
        let mut e = engine_with_trunk(t0);
        let mut out = Vec::new();
        e.on_tick(t0, &mut out);
        let provider = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.10:5060".parse().unwrap(),
        };
        let challenge = |req: &str| {
            let m = message::parse(req.as_bytes(), true).unwrap();
            let mut r = m.response(401, "Unauthorized", "prov");
            r.push(
                "www-authenticate",
                "WWW-Authenticate",
                "Digest realm=\"p\", nonce=\"n1\", qop=\"auth\", algorithm=SHA-256".into(),
            );
            r.to_bytes()
        };
        let first = registers(&out).remove(0);
        out.clear();
        e.on_packet(&challenge(&first), provider, t0, &mut out);
        let second = registers(&out).remove(0);
        assert!(second.contains("Authorization: Digest username=\"u\", realm=\"p\", nonce=\"n1\""));
        assert!(second.contains("algorithm=SHA-256"));
        assert!(second.contains("CSeq: 2 REGISTER"));
        out.clear();
        e.on_packet(&challenge(&second), provider, t0, &mut out);
        assert!(
            registers(&out).is_empty(),
            "no third try with the same nonce"
        );
        match &e.trunk_status(t0)[0].state {
            TrunkState::Failed { reason, .. } => assert!(reason.contains("rejected"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reject_all_answers_every_stream_with_port_zero() {
        let sdp = b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\nm=video 4002 RTP/AVP 96\r\n";
        let a = String::from_utf8(reject_all(sdp)).unwrap();
        assert!(a.contains("m=audio 0 RTP/AVP 0 8\r\n"));
        assert!(a.contains("m=video 0 RTP/AVP 96\r\n"));
        assert!(!a.contains("10.0.0.1"));
    }
}
