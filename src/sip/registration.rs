//! The registration client that keeps each trunk registered at its provider: digest
//! auth (the client side lives in `digest`), refresh before expiry, exponential backoff
//! after failures. A child of `engine`, like `b2bua`, sharing the engine's state.

use std::time::{Duration, Instant};

use super::super::digest::{authorization, best_challenge};
use super::super::trunk::{Plan, Trunk, TrunkState, TrunkStatus};
use super::b2bua::{build_request, token};
use super::route::contact_at;
use super::{
    message, param, Engine, Message, NameAddr, Out, Peer, StartLine, Transport, T1, T2, TIMER_B,
};

/// Branches of our own REGISTERs (never hex digits after the common prefix, so they
/// cannot collide with proxy branches).
pub(super) const REG_BRANCH: &str = "z9hG4bKcrmR";

#[derive(Debug)]
pub(super) enum RegState {
    Off,
    Registering,
    Registered { until: Instant },
    Failed { reason: String },
}

pub(super) struct Inflight {
    branch: String,
    data: Vec<u8>,
    next_retx: Instant,
    interval: Duration,
    deadline: Instant,
}

pub(super) struct Reg {
    trunk: Trunk,
    call_id: String,
    tag: String,
    cseq: u32,
    expires: u32,
    inflight: Option<Inflight>,
    next_at: Option<Instant>,
    state: RegState,
    failures: u32,
    answered_nonce: Option<String>,
}

impl Engine {
    /// Keeps the registrations of unchanged trunks, starts those of new ones.
    pub(super) fn registrations_for(&mut self, plan: &Plan, now: Instant) {
        let mut old: Vec<Reg> = std::mem::take(&mut self.outside.regs);
        let mut regs = Vec::with_capacity(plan.trunks.len());
        for t in &plan.trunks {
            if let Some(i) = old.iter().position(|r| &r.trunk == t) {
                regs.push(old.remove(i));
                continue;
            }
            regs.push(Reg {
                trunk: t.clone(),
                call_id: format!("crm-reg-{}", token()),
                tag: token(),
                cseq: 0,
                expires: t.expires.max(60),
                inflight: None,
                next_at: t.register.then_some(now),
                state: if t.register {
                    RegState::Registering
                } else {
                    RegState::Off
                },
                failures: 0,
                answered_nonce: None,
            });
        }
        self.outside.regs = regs;
    }

    pub fn trunk_status(&self, now: Instant) -> Vec<TrunkStatus> {
        self.outside
            .regs
            .iter()
            .map(|r| TrunkStatus {
                id: r.trunk.id,
                name: r.trunk.name.clone(),
                state: match &r.state {
                    RegState::Off => TrunkState::NotRegistering,
                    RegState::Registering => TrunkState::Registering,
                    RegState::Registered { until } => TrunkState::Registered {
                        expires_in: until.saturating_duration_since(now).as_secs(),
                    },
                    RegState::Failed { reason } => TrunkState::Failed {
                        reason: reason.clone(),
                        retry_in: r
                            .next_at
                            .map(|n| n.saturating_duration_since(now).as_secs())
                            .unwrap_or(0),
                    },
                },
            })
            .collect()
    }

    // ----- registration client ------------------------------------------------------

    pub(super) fn outside_tick(&mut self, now: Instant, out: &mut Vec<Out>) {
        for i in 0..self.outside.regs.len() {
            let r = &mut self.outside.regs[i];
            if !r.trunk.register {
                continue;
            }
            if let Some(f) = &mut r.inflight {
                if now >= f.deadline {
                    self.reg_failed(i, "no answer from the registrar".into(), now);
                } else if now >= f.next_retx && r.trunk.transport == Transport::Udp {
                    f.interval = (f.interval * 2).min(T2);
                    f.next_retx = now + f.interval;
                    if let Some(to) = r.trunk.target() {
                        out.push(Out {
                            to: Peer {
                                transport: r.trunk.transport,
                                addr: to,
                            },
                            data: f.data.clone(),
                        });
                    }
                }
            } else if r.next_at.is_some_and(|n| now >= n) {
                self.send_register(i, None, now, out);
            }
        }
    }

    fn reg_failed(&mut self, i: usize, reason: String, now: Instant) {
        let (base, max) = (
            self.outside.plan.retry_base_secs.max(1),
            self.outside.plan.retry_max_secs.max(1),
        );
        let r = &mut self.outside.regs[i];
        r.inflight = None;
        r.failures = r.failures.saturating_add(1);
        let delay = base
            .saturating_mul(1u64 << (r.failures - 1).min(20))
            .min(max.max(base));
        r.next_at = Some(now + Duration::from_secs(delay));
        tracing::warn!(
            trunk = %message::log_safe(r.trunk.name.as_bytes(), 64),
            reason = %reason,
            retry_in_secs = delay,
            "SIP trunk: registration failed"
        );
        r.state = RegState::Failed { reason };
    }

    fn send_register(
        &mut self,
        i: usize,
        auth: Option<(&str, String)>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(to) = self.outside.regs[i].trunk.target() else {
            self.reg_failed(i, "cannot resolve the trunk's host".into(), now);
            return;
        };
        let me = self.me_for(to.ip());
        let r = &mut self.outside.regs[i];
        r.cseq += 1;
        let t = &r.trunk;
        let ruri = t.registrar_uri();
        let aor = format!("<sip:{}@{}>", t.username, t.domain());
        let branch = format!("{REG_BRANCH}{i:x}x{}", token());
        let via = format!("SIP/2.0/{} {me};rport;branch={branch}", t.transport.name());
        let mut extra = vec![("Expires".to_string(), r.expires.to_string())];
        if let Some((name, v)) = auth {
            extra.push((name.to_string(), v));
        }
        let data = build_request(
            "REGISTER",
            &ruri,
            &via,
            &format!("{aor};tag={}", r.tag),
            &aor,
            &r.call_id,
            r.cseq,
            &[],
            Some(&contact_at(Some(&t.username), &me, t.transport)),
            &extra,
            &[],
        );
        let peer = Peer {
            transport: t.transport,
            addr: to,
        };
        out.push(Out {
            to: peer,
            data: data.clone(),
        });
        r.inflight = Some(Inflight {
            branch,
            data,
            next_retx: now + T1,
            interval: T1,
            deadline: now + TIMER_B,
        });
        r.next_at = None;
        if !matches!(
            r.state,
            RegState::Registered { .. } | RegState::Failed { .. }
        ) {
            r.state = RegState::Registering;
        }
    }

    pub(super) fn on_register_response(
        &mut self,
        branch: &str,
        msg: Message,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(i) = self
            .outside
            .regs
            .iter()
            .position(|r| r.inflight.as_ref().is_some_and(|f| f.branch == branch))
        else {
            return;
        };
        let code = msg.code();
        if code < 200 {
            if let Some(f) = &mut self.outside.regs[i].inflight {
                f.next_retx = now + T2; // provisional: stop fast retransmissions
            }
            return;
        }
        let reason = match &msg.start {
            StartLine::Response { reason, .. } => message::log_safe(reason.as_bytes(), 80),
            _ => String::new(),
        };
        if code == 401 || code == 407 {
            let Some((ch, key, name)) = best_challenge(&msg) else {
                self.reg_failed(
                    i,
                    format!("{code} {reason} without a usable challenge"),
                    now,
                );
                return;
            };
            let r = &mut self.outside.regs[i];
            if r.answered_nonce.as_deref() == Some(ch.nonce.as_str()) && !ch.stale {
                self.reg_failed(i, format!("{code} {reason}: credentials rejected"), now);
                return;
            }
            r.answered_nonce = Some(ch.nonce.clone());
            let t = &r.trunk;
            let ruri = t.registrar_uri();
            let value = authorization(&ch, t.auth_user(), &t.secret, "REGISTER", &ruri);
            let _ = key;
            r.inflight = None;
            self.send_register(i, Some((name, value)), now, out);
            return;
        }
        if code == 423 {
            let min: Option<u32> = msg
                .header("min-expires")
                .and_then(|v| v.trim().parse().ok());
            match min {
                Some(m) if m > self.outside.regs[i].expires && m <= 86_400 => {
                    self.outside.regs[i].expires = m;
                    self.outside.regs[i].inflight = None;
                    self.send_register(i, None, now, out);
                }
                _ => self.reg_failed(i, format!("{code} {reason}"), now),
            }
            return;
        }
        if (200..300).contains(&code) {
            let r = &mut self.outside.regs[i];
            let granted = msg
                .values_of("contact")
                .iter()
                .filter_map(|c| NameAddr::parse(c))
                .find_map(|n| param(n.params, "expires").and_then(|e| e.parse::<u32>().ok()))
                .or_else(|| msg.header("expires").and_then(|e| e.trim().parse().ok()))
                .unwrap_or(r.expires);
            if granted == 0 {
                self.reg_failed(i, "the registrar granted no time".into(), now);
                return;
            }
            // Refresh a minute early (or halfway through a short registration).
            let refresh = if granted > 120 {
                granted - 60
            } else {
                granted / 2
            }
            .max(1);
            r.inflight = None;
            r.failures = 0;
            r.answered_nonce = None;
            r.state = RegState::Registered {
                until: now + Duration::from_secs(granted as u64),
            };
            r.next_at = Some(now + Duration::from_secs(refresh as u64));
            tracing::info!(
                trunk = %message::log_safe(r.trunk.name.as_bytes(), 64),
                expires = granted,
                "SIP trunk: registered"
            );
            return;
        }
        self.reg_failed(i, format!("{code} {reason}"), now);
    }
}
