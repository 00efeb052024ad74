//! Transfers and park where the box itself must act (a child of `b2bua`, sharing its
//! call state):
//! - a REFER in a call with the provider: the provider is never asked to follow it. The
//!   box places the new leg itself, moves the provider's media to it with a re-INVITE,
//!   and tells the transferor how it went with NOTIFY (message/sipfrag, RFC 3515). A call
//!   the proxy carried until then (an inbound trunk call) becomes the box's own: the box
//!   steps into the dialog in place of the transferor ("take over").
//! - park: a REFER to the park code or an orbit. The box holds the other party (a
//!   re-INVITE with `a=inactive`: no media flows, nothing is played), names the orbit in
//!   the NOTIFY and the events, gives the call to the first phone that dials the orbit,
//!   and rings the parker back when nobody does in time.
//!
//! A new leg to an extension goes through the box's own proxy (`LOOP_PROXY`), so ring
//! groups, forking, Replaces and the call log work as for any call; a leg to an outside
//! number goes through a trunk under the transferor's outbound policy, like a dialled call.
//!
//! The parties' media meet directly (the box carries no RTP): the target offers in its
//! 200 (the box's INVITE has no SDP) and the other party's answer goes back in the ACK.

use std::time::{Duration, Instant};

use super::super::super::trunk;
use super::super::{LoopOrigin, LOOP_PROXY};
use super::{
    contact_at, message, reply, strip_tag, token, uri_of, ASide, Call, CallDirection, CallEvent,
    Engine, Leg, Message, Method, NameAddr, OTimer, Out, Side, Timer, Transport, Uas, Uri,
    MAX_CALLS,
};

/// A transfer under way: the new leg is on side A.
pub(in super::super) struct Xfer {
    by: String,
    /// The call (its log id) this one continues.
    from_call: String,
    /// This leg is already the ring-back to `by`: when it fails too, the call ends.
    recall: bool,
    /// The new leg's own log id, when the B2BUA logs it (a target through a trunk).
    log: Option<String>,
}

pub(in super::super) struct Park {
    pub(in super::super) orbit: String,
    by: String,
    pub(in super::super) from_call: String,
}

#[derive(Clone)]
pub(in super::super) struct Reoffer {
    pub(in super::super) key: String,
    purpose: Purpose,
    /// Our re-INVITE, for the ACK of a failure.
    sent: Vec<u8>,
}

#[derive(Clone)]
enum Purpose {
    /// The transfer's target answered: its offer goes to side B.
    Bridge,
    /// Park: side B on hold.
    Hold,
    /// A phone dialled the orbit: its offer goes to side B.
    Retrieve {
        orbit: String,
        by: String,
        from_call: String,
        who: String,
        call_id: String,
    },
}

pub(in super::super) enum Speaker {
    Transferor,
    A,
}

/// What a REFER asks for, checked before anything changes.
enum Target {
    Park(String),
    Inside(String),
    Outside(usize, String),
}

struct ReferTo {
    user: String,
    replaces: Option<String>,
}

/// Call-IDs of the legs the box places through its own proxy.
pub(in super::super) const LOOP_CALL_PREFIX: &str = "crm-x-";

/// The most a Refer-To user part may be (an extension, a code, a phone number).
const MAX_TARGET: usize = 32;

pub(in super::super) fn is_sdp(msg: &Message) -> bool {
    !msg.body.is_empty()
        && msg
            .header("content-type")
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"))
}

fn from_tag(msg: &Message) -> String {
    msg.header("from")
        .and_then(NameAddr::parse)
        .and_then(|n| n.tag().map(str::to_string))
        .unwrap_or_default()
}

fn tag_in(v: &str) -> &str {
    NameAddr::parse(v).and_then(|n| n.tag()).unwrap_or("")
}

/// A number safe to put in a URI we write (the party of a call, as the proxy saw it).
fn uri_user(s: &str) -> String {
    let ok = !s.is_empty()
        && s.len() <= MAX_TARGET
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+*#._-".contains(&b));
    if ok {
        s.to_string()
    } else {
        "anonymous".into()
    }
}

/// The SDP `base` (what the other party last got from this side) as a hold offer: every
/// stream `a=inactive`, the origin's version raised (RFC 3264 §8). With nothing to base
/// it on, one inactive audio stream on the box's address.
pub(in super::super) fn hold_sdp(base: &[u8], host: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(base);
    if !text.contains("m=") {
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        let kind = if ip.contains(':') { "IP6" } else { "IP4" };
        return format!(
            "v=0\r\no=crm 1 1 IN {kind} {ip}\r\ns=-\r\nc=IN {kind} {ip}\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=inactive\r\n"
        )
        .into_bytes();
    }
    let mut s = String::with_capacity(text.len() + 32);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if matches!(
            line,
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
        ) {
            continue;
        }
        if let Some(o) = line.strip_prefix("o=") {
            let mut f: Vec<String> = o.split(' ').map(str::to_string).collect();
            if f.len() >= 3 {
                let v: u64 = f[2].parse().unwrap_or(0);
                f[2] = v.saturating_add(1).to_string();
            }
            s.push_str("o=");
            s.push_str(&f.join(" "));
            s.push_str("\r\n");
            continue;
        }
        s.push_str(line);
        s.push_str("\r\n");
        if line.starts_with("m=") {
            s.push_str("a=inactive\r\n");
        }
    }
    s.into_bytes()
}

/// The Refer-To of a REFER: exactly one, a sip(s) URI with a user part on this box.
fn refer_to(e: &Engine, msg: &Message) -> Result<ReferTo, (u16, &'static str)> {
    let values = msg.values_of("refer-to");
    let [v] = values.as_slice() else {
        return Err((400, "Bad Refer-To"));
    };
    let n = NameAddr::parse(v).ok_or((400, "Bad Refer-To"))?;
    let uri = Uri::parse(n.uri).ok_or((400, "Bad Refer-To"))?;
    let user = uri
        .user_unescaped()
        .filter(|u| !u.is_empty() && u.len() <= MAX_TARGET)
        .filter(|u| uri_user(u) == *u)
        .ok_or((400, "Bad Refer-To"))?;
    let replaces = n.uri.split_once('?').and_then(|(_, headers)| {
        headers.split('&').find_map(|h| {
            let (k, v) = h.split_once('=')?;
            k.eq_ignore_ascii_case("replaces")
                .then(|| message::unescape(v))
        })
    });
    // An attended transfer names the consultation's far end, often by its Contact (the
    // phone's own address); the replaced dialog identifies the target then.
    if replaces.is_none() && !e.is_local(uri.host, uri.port) && !e.is_local(uri.host, None) {
        return Err((403, "Transfer target not on this box"));
    }
    Ok(ReferTo { user, replaces })
}

impl Engine {
    // ----- park configuration ---------------------------------------------------------

    pub(in super::super) fn is_orbit(&self, user: &str) -> bool {
        let (first, count) = self.cfg.park_orbits;
        count > 0
            && !user.starts_with('0')
            && user
                .parse::<u32>()
                .is_ok_and(|n| n >= first && n < first.saturating_add(count))
    }

    fn is_park_target(&self, user: &str) -> bool {
        self.cfg.park_orbits.1 > 0 && (user == self.cfg.park_code || self.is_orbit(user))
    }

    /// The first orbit with no call and no extension of that number.
    fn free_orbit(&self) -> Option<String> {
        let (first, count) = self.cfg.park_orbits;
        (first..first.saturating_add(count))
            .map(|n| n.to_string())
            .find(|o| !self.outside.parks.contains_key(o) && self.directory.lookup(o).is_none())
    }

    // ----- REFER ------------------------------------------------------------------------

    /// Must the box act on this REFER in a proxied dialog rather than pass it on: the
    /// other party (or the sender) is a trunk provider, or it asks for a park.
    pub(in super::super) fn refer_is_ours(
        &self,
        msg: &Message,
        speaker: super::Peer,
        to: super::Peer,
    ) -> bool {
        if to == super::super::LOOP_UA {
            return false; // the B2BUA's own leg: it gets the REFER itself
        }
        let trunk = |p: super::Peer| self.outside.plan.trunk_from(p.addr.ip()).is_some();
        trunk(to)
            || trunk(speaker)
            || refer_to(self, msg).is_ok_and(|r| self.is_park_target(&r.user))
    }

    /// What the transfer asks for, checked before anything changes: the park, an
    /// extension or ring group (with a Replaces naming a dialog of `by`'s), or an outside
    /// number `by` may dial (the same rules as a dialled call; a refusal is logged).
    fn target(&mut self, r: &ReferTo, by: &str) -> Result<Target, (u16, &'static str)> {
        if self.is_park_target(&r.user) {
            if r.user == self.cfg.park_code {
                return self
                    .free_orbit()
                    .map(Target::Park)
                    .ok_or((486, "All park orbits are taken"));
            }
            if self.outside.parks.contains_key(&r.user) {
                return Err((486, "Orbit taken"));
            }
            return Ok(Target::Park(r.user.clone()));
        }
        if let Some(rep) = &r.replaces {
            // The consultation: a live call between `by` and another extension, which
            // is the target whatever the Refer-To's user part says.
            let cid = rep.split(';').next().unwrap_or("").trim();
            let other = self.dialogs.get(cid).and_then(|d| {
                let callee = Some(d.extension.as_str());
                let caller = d.info.caller_ext.as_deref();
                match (d.ended, callee == Some(by), caller == Some(by)) {
                    (false, true, false) => caller,
                    (false, false, true) => callee,
                    _ => None,
                }
            });
            return match other {
                Some(o) => Ok(Target::Inside(o.to_string())),
                None => Err((404, "No such call to replace")),
            };
        }
        if self.directory.lookup(&r.user).is_some() {
            return Ok(Target::Inside(r.user.clone()));
        }
        let number = match trunk::normalise_dialled(&r.user) {
            Some(n) if self.outside.plan.dial.matches(&n) => n,
            _ => return Err((404, "Not Found")),
        };
        match self.outbound_allowed(by, &number) {
            Ok(idx) => Ok(Target::Outside(idx, number)),
            Err((code, reason)) => {
                tracing::info!(extension = %by, code, reason, "SIP: transfer out refused");
                let id = format!("crm-refused-{}", token());
                self.events.emit(CallEvent::Ringing {
                    call_id: id.clone(),
                    direction: CallDirection::Outbound,
                    from: by.to_string(),
                    to: number,
                    group: None,
                    extensions: Vec::new(),
                    transferred_by: Some(by.to_string()),
                    transferred_from: None,
                });
                self.events.emit(CallEvent::Ended {
                    call_id: id,
                    cause: "refused".into(),
                    ring_ms: 0,
                    talk_ms: 0,
                });
                Err((code, reason))
            }
        }
    }

    /// A REFER in a dialog the proxy carries, that the box must act on: the box steps
    /// into the dialog in the sender's place, then transfers or parks the other party.
    pub(in super::super) fn refer_in_proxied(
        &mut self,
        msg: Message,
        from: super::Peer,
        by_caller: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let cid = msg.call_id().to_string();
        let Some(d) = self.dialogs.get(&cid) else {
            return;
        };
        let ended = d.ended;
        let (speaker, other) = if by_caller {
            (d.caller, d.callee)
        } else {
            (d.callee, d.caller)
        };
        let by = if by_caller {
            d.info.caller_ext.clone()
        } else {
            Some(d.extension.clone())
        };
        // The provider does not transfer the office's calls, and a dialog the box
        // itself is in already belongs to the B2BUA.
        let provider = self.outside.plan.trunk_from(speaker.addr.ip()).is_some();
        let (Some(by), false, false) = (by, provider, super::super::is_loop(other)) else {
            self.answer(&msg, from, 403, "Forbidden", out);
            return;
        };
        if ended {
            self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            return;
        }
        let target = refer_to(self, &msg).and_then(|r| Ok((self.target(&r, &by)?, r.replaces)));
        let (target, replaces) = match target {
            Ok(t) => t,
            Err((code, reason)) => {
                self.answer(&msg, from, code, reason, out);
                return;
            }
        };
        if self.outside.calls.len() >= MAX_CALLS || self.outside.calls.contains_key(&cid) {
            self.answer(&msg, from, 503, "Service Unavailable", out);
            return;
        }
        self.take_over(&cid, by_caller);
        self.begin(&cid, by, target, replaces, &msg, from, now, out);
    }

    /// The media of call `key` stopped: BYE to both parties, and the call log says why
    /// (`media_timeout`). A proxied dialog (`proxied`) is taken over first, so the box
    /// can speak in it to each party.
    pub(in super::super) fn media_stopped(
        &mut self,
        key: &str,
        proxied: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if proxied {
            if self.outside.calls.contains_key(key) {
                return;
            }
            self.take_over(key, true);
        }
        self.hang_up(key, Side::A, now, out);
        self.hang_up(key, Side::B, now, out);
        self.release_transferor(key, now, out);
        self.end_call(key, "media_timeout".into(), now);
    }

    /// A party of proxied dialog `cid` can no longer speak in it (a browser's socket
    /// closed; `caller_gone`: the caller): the box takes the dialog over with that party
    /// aside and hangs up the other one in its place (a BYE of its own, resent on UDP
    /// until answered: nobody is left to resend one sent for the party). The call log
    /// ends the call as completed.
    pub(in super::super) fn party_gone(
        &mut self,
        cid: &str,
        caller_gone: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if self.outside.calls.contains_key(cid) {
            return;
        }
        self.take_over(cid, caller_gone);
        let Some(c) = self.outside.calls.get_mut(cid) else {
            return;
        };
        // Nothing can reach the party that went.
        c.transferor_done = true;
        self.hang_up(cid, Side::B, now, out);
        self.end_call(cid, "completed".into(), now);
    }

    /// Turns proxied dialog `cid` into a B2BUA call (key `cid`) with the other party on
    /// side B and the transferor (`by_caller`: the caller) aside, each a dialog of ours
    /// with the box in the other one's place: same Call-ID, tags and CSeq series.
    fn take_over(&mut self, cid: &str, by_caller: bool) {
        let Some(d) = self.dialogs.remove(cid) else {
            return;
        };
        let i = &d.info;
        let to_tagged = format!("{};tag={}", strip_tag(&i.to), d.callee_tag);
        let leg = |e: &mut Engine,
                   peer: super::Peer,
                   target: &str,
                   routes: Vec<String>,
                   from: String,
                   to: String,
                   cseq: u32,
                   answer: Vec<u8>,
                   body: Vec<u8>| {
            let me = e.me_for(peer.addr.ip());
            let trunk = e
                .outside
                .plan
                .trunks
                .iter()
                .position(|t| t.admits(peer.addr.ip()));
            Leg {
                peer,
                ruri: target.to_string(),
                target: target.to_string(),
                routes,
                call_id: cid.to_string(),
                from,
                to,
                contact: contact_at(None, &me, peer.transport),
                me,
                cseq,
                branch: String::new(),
                invite: Vec::new(),
                extra: Vec::new(),
                body,
                trunk,
                auth_tried: true,
                provisional: true,
                final_code: Some(200),
                answer,
                acked: true,
            }
        };
        let (t, s, party) = if by_caller {
            let t = leg(
                self,
                d.callee,
                &i.callee_contact,
                Vec::new(),
                i.from.clone(),
                to_tagged.clone(),
                i.caller_cseq,
                i.callee_sdp.clone(),
                i.caller_sdp.clone(),
            );
            let s = leg(
                self,
                d.caller,
                &i.caller_contact,
                i.caller_routes.clone(),
                to_tagged,
                i.from.clone(),
                i.callee_cseq,
                i.caller_sdp.clone(),
                Vec::new(),
            );
            (t, s, d.extension.clone())
        } else {
            let t = leg(
                self,
                d.caller,
                &i.caller_contact,
                i.caller_routes.clone(),
                to_tagged.clone(),
                i.from.clone(),
                i.callee_cseq,
                i.caller_sdp.clone(),
                i.callee_sdp.clone(),
            );
            let s = leg(
                self,
                d.callee,
                &i.callee_contact,
                Vec::new(),
                i.from.clone(),
                to_tagged,
                i.caller_cseq,
                i.callee_sdp.clone(),
                Vec::new(),
            );
            (t, s, d.caller_user.clone())
        };
        self.outside
            .by_call_id
            .insert(cid.to_string(), (cid.to_string(), Side::B));
        self.outside.calls.insert(
            cid.to_string(),
            Call {
                a: ASide::Empty,
                b: Some(t),
                pending: None,
                ack_on: None,
                started: d.started,
                answered: Some(d.answered),
                ended: false,
                cancelled: false,
                extension: d.extension.clone(),
                log: Some(cid.to_string()),
                direction: d.direction,
                party: message::log_safe(party.as_bytes(), 64),
                xfer: None,
                park: None,
                transferor: Some(Box::new(s)),
                transferor_done: false,
            },
        );
        self.forget_after_a_day(cid, Instant::now());
    }

    /// A REFER from side A of a B2BUA call (the phone of a call out, the target of an
    /// earlier transfer, a phone that retrieved a park).
    pub(in super::super) fn refer_in_b2bua(
        &mut self,
        key: &str,
        msg: Message,
        from: super::Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.outside.calls.get(key) else {
            return;
        };
        if c.ended {
            self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            return;
        }
        if c.answered.is_none() || c.xfer.is_some() || c.b.is_none() {
            self.answer(&msg, from, 491, "Request Pending", out);
            return;
        }
        let by = match &c.a {
            ASide::Operator(l) if l.peer == LOOP_PROXY => {
                self.dialogs.get(&l.call_id).map(|d| d.extension.clone())
            }
            ASide::Phone(_) | ASide::Operator(_) => Some(c.extension.clone()),
            ASide::Empty => None,
        };
        let Some(by) = by else {
            self.answer(&msg, from, 481, "Call/Transaction Does Not Exist", out);
            return;
        };
        let target = refer_to(self, &msg).and_then(|r| Ok((self.target(&r, &by)?, r.replaces)));
        let (target, replaces) = match target {
            Ok(t) => t,
            Err((code, reason)) => {
                self.answer(&msg, from, code, reason, out);
                return;
            }
        };
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let s = match std::mem::replace(&mut c.a, ASide::Empty) {
            ASide::Phone(ua) => uas_dialog(ua),
            ASide::Operator(l) => l,
            ASide::Empty => return,
        };
        c.transferor = Some(Box::new(s));
        c.transferor_done = false;
        self.begin(key, by, target, replaces, &msg, from, now, out);
    }

    /// Accepts the REFER (202) and starts what it asks for.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        key: &str,
        by: String,
        target: Target,
        replaces: Option<String>,
        refer: &Message,
        from: super::Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        // The new legs carry the parties' own SDP: the relay steps out.
        self.unanchor(key);
        let mut r = reply(refer, 202, "Accepted");
        if let Some(c) = self
            .outside
            .calls
            .get(key)
            .and_then(|c| c.transferor.as_ref())
        {
            r.push("contact", "Contact", c.contact.clone());
        }
        self.answer_with(refer, from, r, out);
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let from_call = c
            .log
            .clone()
            .or_else(|| c.transferor.as_ref().map(|l| l.call_id.clone()))
            .unwrap_or_else(|| key.to_string());
        match target {
            Target::Park(orbit) => self.park(key, orbit, by, from_call, now, out),
            Target::Inside(user) => {
                c.xfer = Some(Box::new(Xfer {
                    by,
                    from_call,
                    recall: false,
                    log: None,
                }));
                self.notify_transferor(key, "SIP/2.0 100 Trying", false, now, out);
                self.dial_inside(key, &user, replaces, now, out);
            }
            Target::Outside(idx, number) => {
                c.xfer = Some(Box::new(Xfer {
                    by,
                    from_call,
                    recall: false,
                    log: None,
                }));
                self.notify_transferor(key, "SIP/2.0 100 Trying", false, now, out);
                self.dial_outside(key, idx, &number, now, out);
            }
        }
    }

    /// The new leg to an extension or ring group, through the box's own proxy, without an
    /// offer (the target offers in its 200).
    fn dial_inside(
        &mut self,
        key: &str,
        user: &str,
        replaces: Option<String>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let me = format!("{}:{}", self.advertised, self.port());
        let Some(c) = self.outside.calls.get(key) else {
            return;
        };
        let Some(x) = c.xfer.as_ref() else { return };
        let party = uri_user(&c.party);
        let outside = c.b.as_ref().is_some_and(|b| b.trunk.is_some());
        let call_id = format!("{LOOP_CALL_PREFIX}{}@{me}", token());
        let origin = LoopOrigin {
            direction: if outside {
                CallDirection::Inbound
            } else {
                CallDirection::Internal
            },
            by: x.by.clone(),
            from_call: x.from_call.clone(),
        };
        self.loop_origins.insert(call_id.clone(), origin);
        let mut extra = Vec::new();
        if let Some(r) = replaces {
            extra.push(("Replaces".to_string(), r));
        }
        let leg = Leg {
            peer: LOOP_PROXY,
            ruri: format!("sip:{user}@{me}"),
            target: format!("sip:{user}@{me}"),
            routes: Vec::new(),
            call_id,
            from: format!("<sip:{party}@{me}>;tag={}", token()),
            to: format!("<sip:{user}@{me}>"),
            contact: contact_at(Some(&party), &me, Transport::Udp),
            me,
            cseq: 1,
            branch: String::new(),
            invite: Vec::new(),
            extra,
            body: Vec::new(),
            trunk: None,
            auth_tried: true,
            provisional: false,
            final_code: None,
            answer: Vec::new(),
            acked: false,
        };
        self.start_leg(key, Side::A, leg, now, out);
    }

    /// The new leg to an outside number through trunk `idx` (the policy passed), logged
    /// by the B2BUA as a call out by the transferor.
    fn dial_outside(
        &mut self,
        key: &str,
        idx: usize,
        number: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(leg) = self.trunk_leg(idx, number, Vec::new()) else {
            self.xfer_failed(key, 503, "No trunk available", now, out);
            return;
        };
        let Some(x) = self
            .outside
            .calls
            .get_mut(key)
            .and_then(|c| c.xfer.as_mut())
        else {
            return;
        };
        x.log = Some(leg.call_id.clone());
        let ev = CallEvent::Ringing {
            call_id: leg.call_id.clone(),
            direction: CallDirection::Outbound,
            from: x.by.clone(),
            to: number.to_string(),
            group: None,
            extensions: Vec::new(),
            transferred_by: Some(x.by.clone()),
            transferred_from: Some(x.from_call.clone()),
        };
        self.events.emit(ev);
        self.start_leg(key, Side::A, leg, now, out);
    }

    /// The new leg answered with its offer: side B gets it in a re-INVITE.
    pub(in super::super) fn xfer_answered(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        let offer = match self.outside.calls.get(key).map(|c| &c.a) {
            Some(ASide::Operator(l)) => l.answer.clone(),
            _ => return,
        };
        if offer.is_empty() {
            // Answered without an offer to our offerless INVITE: nothing to bridge.
            self.hang_up(key, Side::A, now, out);
            self.xfer_failed(key, 488, "Not Acceptable Here", now, out);
            return;
        }
        if !self.reoffer(key, Purpose::Bridge, &offer, now, out) {
            self.hang_up(key, Side::A, now, out);
            self.xfer_failed(key, 500, "Server Internal Error", now, out);
        }
    }

    /// The new leg failed (or side B refused its media): the transferor, still in its
    /// call, gets the failure and the call back; one that left gets a ring-back; when
    /// the ring-back fails too, the call ends.
    pub(in super::super) fn xfer_failed(
        &mut self,
        key: &str,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let Some(x) = c.xfer.take() else { return };
        c.a = ASide::Empty;
        if let Some(id) = &x.log {
            self.events.emit(CallEvent::Ended {
                call_id: id.clone(),
                cause: format!("status_{code}"),
                ring_ms: 0,
                talk_ms: 0,
            });
        }
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        if c.transferor.is_some() && !c.transferor_done {
            let frag = format!("SIP/2.0 {code} {}", reason.replace(['\r', '\n'], " "));
            self.notify_transferor(key, &frag, true, now, out);
            if let Some(c) = self.outside.calls.get_mut(key) {
                if let Some(s) = c.transferor.take() {
                    c.a = ASide::Operator(*s);
                }
            }
            return;
        }
        if !x.recall {
            c.xfer = Some(Box::new(Xfer {
                recall: true,
                log: None,
                ..*x
            }));
            let by = c.xfer.as_ref().map(|x| x.by.clone()).unwrap_or_default();
            self.dial_inside(key, &by, None, now, out);
            return;
        }
        self.hang_up(key, Side::B, now, out);
        self.end_call(key, format!("status_{code}"), now);
    }

    /// Side B took the new media: the transfer is done.
    fn xfer_done(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        self.notify_transferor(key, "SIP/2.0 200 OK", true, now, out);
        self.close_log(key, "completed", now);
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let Some(x) = c.xfer.take() else { return };
        c.answered = Some(now);
        if let Some(id) = x.log {
            c.started = now;
            c.extension = x.by.clone();
            c.log = Some(id.clone());
            self.events.emit(CallEvent::Answered {
                call_id: id,
                extension: x.by,
            });
        }
    }

    // ----- park -------------------------------------------------------------------------

    fn park(
        &mut self,
        key: &str,
        orbit: String,
        by: String,
        from_call: String,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        self.unanchor(key);
        self.notify_transferor(key, "SIP/2.0 100 Trying", false, now, out);
        let frag = format!("SIP/2.0 200 Parked on {orbit}");
        self.notify_transferor(key, &frag, true, now, out);
        let (base, host) = match self.outside.calls.get(key).and_then(|c| c.b.as_ref()) {
            Some(b) => (
                b.body.clone(),
                b.me.rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(&b.me)
                    .to_string(),
            ),
            None => return,
        };
        self.reoffer(key, Purpose::Hold, &hold_sdp(&base, &host), now, out);
        // The parked call's row ends here, saying where it waits; the retrieval is a new
        // row, transferred by the parker from this one.
        self.close_log(key, &format!("parked_{orbit}"), now);
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let party = c.party.clone();
        c.park = Some(Park {
            orbit: orbit.clone(),
            by: by.clone(),
            from_call: from_call.clone(),
        });
        self.outside.parks.insert(orbit.clone(), key.to_string());
        tracing::info!(orbit = %orbit, by = %by, "SIP: call parked");
        self.events.emit(CallEvent::Parked {
            call_id: from_call,
            orbit: orbit.clone(),
            by,
            party,
        });
        self.schedule(
            now + Duration::from_secs(self.cfg.park_timeout_secs.max(1)),
            Timer::Outside(OTimer::ParkTimeout {
                key: key.to_string(),
                orbit,
            }),
        );
    }

    /// Nobody retrieved the call in time: the parker's phone rings with it.
    pub(in super::super) fn park_timeout(
        &mut self,
        key: &str,
        orbit: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let parked_here = c.park.as_ref().is_some_and(|p| p.orbit == orbit);
        if !parked_here || c.ended || !matches!(c.a, ASide::Empty) {
            return;
        }
        let Some(p) = c.park.take() else { return };
        self.outside.parks.remove(orbit);
        self.events.emit(CallEvent::Unparked {
            call_id: p.from_call.clone(),
            orbit: p.orbit,
            cause: "timed_out".into(),
            by: None,
        });
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        c.transferor_done = true;
        c.xfer = Some(Box::new(Xfer {
            by: p.by.clone(),
            from_call: p.from_call,
            recall: true,
            log: None,
        }));
        self.dial_inside(key, &p.by, None, now, out);
    }

    /// A phone dialled orbit `orbit`: the parked party's media moves to it, and the box
    /// answers it with the party's answer. Nothing parked there: 404.
    pub(in super::super) fn retrieve(
        &mut self,
        msg: Message,
        from: super::Peer,
        who: &str,
        orbit: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let parked = self.outside.parks.get(orbit).cloned().filter(|k| {
            self.outside
                .calls
                .get(k)
                .is_some_and(|c| !c.ended && c.park.is_some() && matches!(c.a, ASide::Empty))
        });
        let Some(key) = parked else {
            self.answer(&msg, from, 404, "Nothing parked there", out);
            self.attempt_refused(&msg, CallDirection::Internal, orbit, None, 404);
            return;
        };
        if !is_sdp(&msg) {
            // An offerless INVITE would need the parked party to offer first; desk phones
            // always offer.
            self.answer(&msg, from, 488, "Not Acceptable Here", out);
            return;
        }
        let Some(branch) = msg.top_via().and_then(|v| v.branch().map(str::to_string)) else {
            self.answer(&msg, from, 400, "Bad Request", out);
            return;
        };
        let retriever_cid = msg.call_id().to_string();
        if self.outside.by_call_id.contains_key(&retriever_cid) {
            self.answer(&msg, from, 482, "Loop Detected", out);
            return;
        }
        let me = self.me_for(from.addr.ip());
        let contact = msg
            .header("contact")
            .and_then(uri_of)
            .unwrap_or_else(|| msg.uri().to_string());
        let offer = msg.body.clone();
        let mut ua = Uas {
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
        let trying = ua.response(100, "Trying", &[]);
        ua.last = Some(self.send_response(trying, from, out));
        let Some(c) = self.outside.calls.get_mut(&key) else {
            return;
        };
        let Some(p) = c.park.take() else { return };
        self.outside.parks.remove(orbit);
        c.a = ASide::Phone(ua);
        self.outside.by_uas_branch.insert(branch, key.clone());
        self.outside
            .by_call_id
            .insert(retriever_cid.clone(), (key.clone(), Side::A));
        let purpose = Purpose::Retrieve {
            orbit: p.orbit,
            by: p.by,
            from_call: p.from_call,
            who: who.to_string(),
            call_id: retriever_cid,
        };
        if !self.reoffer(&key, purpose.clone(), &offer, now, out) {
            self.retrieve_failed(&key, purpose, 500, "Server Internal Error", now, out);
        }
    }

    fn retrieve_failed(
        &mut self,
        key: &str,
        purpose: Purpose,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Purpose::Retrieve {
            orbit,
            by,
            from_call,
            call_id,
            ..
        } = purpose
        else {
            return;
        };
        self.final_to_phone(key, code, reason, &[], now, out);
        self.outside.by_call_id.remove(&call_id);
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        // The call stays parked where it was.
        c.a = ASide::Empty;
        c.park = Some(Park {
            orbit: orbit.clone(),
            by,
            from_call,
        });
        self.outside.parks.insert(orbit, key.to_string());
    }

    // ----- side B's media ---------------------------------------------------------------

    /// Sends side B a re-INVITE with `body` as the offer; its answer is handled by
    /// [`Engine::on_reoffer_response`]. False when side B is gone.
    fn reoffer(
        &mut self,
        key: &str,
        purpose: Purpose,
        body: &[u8],
        now: Instant,
        out: &mut Vec<Out>,
    ) -> bool {
        let extra = vec![("Content-Type".to_string(), "application/sdp".to_string())];
        let Some((to, branch, data)) = self.request_on(key, Side::B, "INVITE", body, &extra) else {
            return false;
        };
        if let Some(b) = self.outside.calls.get_mut(key).and_then(|c| c.b.as_mut()) {
            b.body = body.to_vec();
        }
        self.outside.reoffers.insert(
            branch.clone(),
            Reoffer {
                key: key.to_string(),
                purpose,
                sent: data.clone(),
            },
        );
        self.send_until_answered(to, branch, data, now, out);
        true
    }

    pub(in super::super) fn on_reoffer_response(
        &mut self,
        branch: &str,
        msg: Message,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let code = msg.code();
        if code < 200 {
            return;
        }
        let Some(r) = self.outside.reoffers.remove(branch) else {
            return;
        };
        let key = r.key.as_str();
        let peer = self
            .outside
            .calls
            .get(key)
            .and_then(|c| c.b.as_ref())
            .map(|b| b.peer);
        if code >= 300 {
            if let (Ok(sent), Some(peer)) = (message::parse(&r.sent, true), peer) {
                out.push(Out {
                    to: peer,
                    data: super::ack_failure_of(&sent, &msg),
                });
            }
        } else if let Some((to, _, data)) = self.request_on(key, Side::B, "ACK", &[], &[]) {
            out.push(Out { to, data });
        }
        let ok = code < 300;
        match r.purpose {
            Purpose::Bridge if ok => {
                self.ack_leg(key, Side::A, &msg.body, out);
                self.xfer_done(key, now, out);
            }
            Purpose::Bridge => {
                let reason = msg.reason().to_string();
                self.hang_up(key, Side::A, now, out);
                self.xfer_failed(key, code, &reason, now, out);
            }
            // Held or not, the call stays parked: no media reaches the parked party
            // either way once the parker has left.
            Purpose::Hold => {}
            p @ Purpose::Retrieve { .. } if !ok => {
                let reason = msg.reason().to_string();
                self.retrieve_failed(key, p, code, &reason, now, out);
            }
            Purpose::Retrieve {
                orbit,
                by,
                from_call,
                who,
                call_id,
            } => {
                self.final_to_phone(key, 200, "OK", &msg.body, now, out);
                let Some(c) = self.outside.calls.get_mut(key) else {
                    return;
                };
                c.log = Some(call_id.clone());
                c.started = now;
                c.answered = Some(now);
                c.extension = who.clone();
                let (direction, party) = (c.direction, c.party.clone());
                self.events.emit(CallEvent::Ringing {
                    call_id: call_id.clone(),
                    direction: if direction == CallDirection::Outbound {
                        CallDirection::Inbound
                    } else {
                        direction
                    },
                    from: party,
                    to: orbit.clone(),
                    group: None,
                    extensions: vec![who.clone()],
                    transferred_by: Some(by),
                    transferred_from: Some(from_call.clone()),
                });
                self.events.emit(CallEvent::Answered {
                    call_id,
                    extension: who.clone(),
                });
                tracing::info!(orbit = %orbit, by = %who, "SIP: parked call retrieved");
                self.events.emit(CallEvent::Unparked {
                    call_id: from_call,
                    orbit,
                    cause: "retrieved".into(),
                    by: Some(who),
                });
            }
        }
    }

    // ----- the transferor ---------------------------------------------------------------

    /// Whose request is this, when not side B's by its Call-ID: the transferor's, or side
    /// A's where it shares side B's Call-ID (a transferor that got its call back).
    pub(in super::super) fn who_speaks(&self, key: &str, msg: &Message) -> Option<Speaker> {
        let c = self.outside.calls.get(key)?;
        if c.transferor.is_none() && !matches!(c.a, ASide::Operator(_)) {
            return None;
        }
        let (cid, tag) = (msg.call_id(), from_tag(msg));
        if let Some(s) = &c.transferor {
            if s.call_id == cid && tag_in(&s.to) == tag {
                return Some(Speaker::Transferor);
            }
        }
        match &c.a {
            ASide::Operator(l) if l.call_id == cid && tag_in(&l.to) == tag => Some(Speaker::A),
            _ => None,
        }
    }

    /// A request from the transferor, who is out of the call: its BYE ends its part (and
    /// the call-log row of the call it passed on), anything else is answered here.
    pub(in super::super) fn transferor_request(
        &mut self,
        key: &str,
        msg: Message,
        from: super::Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        match msg.method().unwrap_or(Method::Other) {
            Method::Ack => {}
            Method::Bye => {
                self.answer(&msg, from, 200, "OK", out);
                if let Some(c) = self.outside.calls.get_mut(key) {
                    c.transferor_done = true;
                }
                self.close_log(key, "completed", now);
            }
            Method::Invite => self.answer(&msg, from, 491, "Request Pending", out),
            _ => self.answer(&msg, from, 200, "OK", out),
        }
    }

    /// NOTIFY of the transfer's progress (a sipfrag status line); `last`: the final one,
    /// after which the box also hangs up the transferor's call.
    fn notify_transferor(
        &mut self,
        key: &str,
        frag: &str,
        last: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        if c.transferor_done {
            return;
        }
        let Some(s) = c.transferor.as_mut() else {
            return;
        };
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let extra = vec![
            ("Event".to_string(), "refer".to_string()),
            ("Subscription-State".to_string(), state.to_string()),
            (
                "Content-Type".to_string(),
                "message/sipfrag;version=2.0".to_string(),
            ),
        ];
        let body = format!("{frag}\r\n");
        let (branch, data) = s.in_dialog_request("NOTIFY", body.as_bytes(), &extra);
        let to = s.peer;
        self.send_until_answered(to, branch, data, now, out);
        if last && frag.starts_with("SIP/2.0 2") {
            if let Some(c) = self.outside.calls.get_mut(key) {
                c.transferor_done = true;
                if let Some(s) = c.transferor.as_mut() {
                    let (branch, data) = s.in_dialog_request("BYE", &[], &[]);
                    let to = s.peer;
                    self.send_until_answered(to, branch, data, now, out);
                }
            }
        }
    }

    /// The call ends while a transferor still waits: its call ends too.
    pub(in super::super) fn release_transferor(
        &mut self,
        key: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        if c.transferor_done {
            return;
        }
        c.transferor_done = true;
        if let Some(s) = c.transferor.as_mut() {
            let (branch, data) = s.in_dialog_request("BYE", &[], &[]);
            let to = s.peer;
            self.send_until_answered(to, branch, data, now, out);
        }
    }

    /// Ends the call-log row the B2BUA keeps for this call, if any (the call goes on
    /// under another row, or has ended).
    pub(in super::super) fn close_log(&mut self, key: &str, cause: &str, now: Instant) {
        let Some(c) = self.outside.calls.get_mut(key) else {
            return;
        };
        let Some(id) = c.log.take() else { return };
        let (ring_ms, talk_ms) = match c.answered {
            Some(a) => (
                a.duration_since(c.started).as_millis() as u64,
                now.duration_since(a).as_millis() as u64,
            ),
            None => (now.duration_since(c.started).as_millis() as u64, 0),
        };
        self.events.emit(CallEvent::Ended {
            call_id: id,
            cause: cause.to_string(),
            ring_ms,
            talk_ms,
        });
    }

    // ----- the proxy's side of the box's own legs ---------------------------------------

    /// An INVITE the B2BUA sent into the proxy (see `LOOP_UA`): routed to its extension
    /// or ring group like a phone's call, logged as the transfer it is.
    pub(in super::super) fn loop_invite(&mut self, msg: Message, now: Instant, out: &mut Vec<Out>) {
        let from = super::super::LOOP_UA;
        let Some(o) = self.loop_origins.remove(msg.call_id()) else {
            self.answer(&msg, from, 403, "Forbidden", out);
            return;
        };
        let user = Uri::parse(msg.uri())
            .and_then(|u| u.user_unescaped())
            .unwrap_or_default();
        if self.directory.lookup(&user).is_none() {
            self.answer(&msg, from, 404, "Not Found", out);
            return;
        }
        self.loop_transfer = Some((o.by, o.from_call));
        self.route_invite(msg, from, &user, None, o.direction, &user, now, out);
        self.loop_transfer = None;
    }
}

/// A phone's call to the box (the box its UAS), answered, as a dialog of ours.
fn uas_dialog(ua: Uas) -> Leg {
    let r = &ua.request;
    let from = format!("{};tag={}", strip_tag(r.header("to").unwrap_or("")), ua.tag);
    let contact = contact_at(None, &ua.me, ua.source.transport);
    Leg {
        peer: ua.source,
        ruri: ua.contact.clone(),
        target: ua.contact.clone(),
        routes: Vec::new(),
        call_id: r.call_id().to_string(),
        from,
        to: r.header("from").unwrap_or("").to_string(),
        contact,
        cseq: ua.cseq,
        branch: String::new(),
        invite: Vec::new(),
        extra: Vec::new(),
        body: Vec::new(),
        trunk: None,
        auth_tried: true,
        provisional: true,
        final_code: Some(200),
        answer: r.body.clone(),
        acked: true,
        me: ua.me,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_offer_is_inactive_on_every_stream_with_a_newer_origin() {
        let sdp = b"v=0\r\no=a 7 41 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\nm=video 4002 RTP/AVP 96\r\na=sendonly\r\n";
        let h = String::from_utf8(hold_sdp(sdp, "10.0.0.9")).unwrap();
        assert!(h.contains("o=a 7 42 IN IP4 10.0.0.1\r\n"), "{h}");
        assert_eq!(h.matches("a=inactive").count(), 2, "{h}");
        assert!(!h.contains("sendrecv") && !h.contains("sendonly"), "{h}");
        let none = String::from_utf8(hold_sdp(b"", "[::1]")).unwrap();
        assert!(
            none.contains("c=IN IP6 ::1\r\n") && none.contains("a=inactive"),
            "{none}"
        );
    }

    #[test]
    fn only_a_uri_user_made_of_dial_characters_is_written_into_a_uri() {
        assert_eq!(uri_user("+998901112233"), "+998901112233");
        assert_eq!(uri_user("1501"), "1501");
        assert_eq!(uri_user("a>b"), "anonymous");
        assert_eq!(uri_user(""), "anonymous");
    }
}
