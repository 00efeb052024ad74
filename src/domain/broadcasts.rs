//! Broadcasts (issue 18): a promotion or a reminder to a segment's opted-in customers,
//! each on their own channel — Telegram when their chat is linked, else SMS, else e-mail,
//! among the channels the broadcast allows and the box has set up. Every message is an
//! outbox row queued in the broadcast's own unit of work (no network I/O in it), due at
//! its turn of the pace (messages a second), so the workers send them throttled. Every
//! message says how to stop: `/stop` to the bot, the STOP keyword by SMS, a signed link in
//! e-mail. Results are read from the outbox and the promotion's uses.

use serde::{Deserialize, Serialize};

use super::notifications::{self as n, sms, TemplateData};
use super::segments::SegmentFilter;
use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
use crate::db::promos as q;
pub use crate::db::promos::{BroadcastResults, BroadcastRow};
use crate::db::settings;
use crate::events::{Audience, Event};
use crate::i18n::Tr;
use crate::model::Language;

/// At most this many customers in one broadcast.
pub const MAX_RECIPIENTS: i64 = 100_000;
pub const MAX_BODY: usize = 1000;

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastInput {
    pub name: String,
    pub segment_id: i64,
    /// A promotion to announce (its code is `{code}` in the text); none for a reminder.
    #[serde(default)]
    pub promotion_id: Option<i64>,
    /// The text; `{name}`, `{code}`, `{discount}`, `{ends_on}`, `{shop_name}` are filled in.
    pub body: String,
    /// Allowed channels, in the order tried: any of `telegram`, `sms`, `email` (default
    /// all three).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Messages a second (1–100; default: the shop's setting, 5).
    #[serde(default)]
    pub per_second: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BroadcastView {
    #[serde(flatten)]
    pub broadcast: BroadcastRow,
    pub results: BroadcastResults,
}

#[derive(Clone)]
pub struct Broadcasts {
    store: Store,
    notifications: n::Notifications,
}

const ORDER: [n::Channel; 3] = [n::Channel::Telegram, n::Channel::Sms, n::Channel::Email];

/// A new broadcast, for the admins who see its sender's branches (`branches`: the
/// sender's, None for a user of every branch).
fn event(id: i64, branches: Option<Vec<i64>>) -> Event {
    Event::new(
        "broadcast.created",
        serde_json::json!({"id": id}),
        Audience::Admins,
    )
    .in_any_branch(branches)
}

/// A broadcast with its results among the customers of `customers` (None: all); a
/// narrower scope's "queued" is the messages to its customers.
fn view(
    c: &crate::db::Conn,
    mut b: BroadcastRow,
    customers: Option<&[i64]>,
) -> crate::db::DbResult<BroadcastView> {
    let results = q::broadcast_results(c, &b, customers)?;
    if customers.is_some() {
        b.queued = results.sent + results.failed + results.pending;
    }
    Ok(BroadcastView {
        broadcast: b,
        results,
    })
}

impl Broadcasts {
    pub fn new(store: Store, notifications: n::Notifications) -> Broadcasts {
        Broadcasts {
            store,
            notifications,
        }
    }

    /// The broadcasts `actor` sees: a branch-scoped user those sent by users of every
    /// branch or of one of theirs; the results count only the recipients among the
    /// customers they see.
    pub async fn list(&self, actor: &Actor) -> DomainResult<Vec<BroadcastView>> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        Ok(self
            .store
            .db()
            .read(move |c| {
                let customers = super::customers::scope(c, only.as_deref())?;
                q::broadcasts(c, 200, only.as_deref())?
                    .into_iter()
                    .map(|b| view(c, b, customers))
                    .collect()
            })
            .await?)
    }

    /// One broadcast as `actor` sees it (see [`Broadcasts::list`]); another branch's is
    /// not found.
    pub async fn get(&self, actor: &Actor, id: i64) -> DomainResult<BroadcastView> {
        let only = actor.branches.only().map(<[i64]>::to_vec);
        self.store
            .db()
            .read(move |c| {
                let customers = super::customers::scope(c, only.as_deref())?;
                q::broadcast(c, id, only.as_deref())?
                    .map(|b| view(c, b, customers))
                    .transpose()
            })
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Queues the broadcast and returns it with its first results.
    pub async fn send(&self, by: &Actor, input: BroadcastInput) -> DomainResult<BroadcastView> {
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(DomainError::invalid("err.broadcast.name"));
        }
        let body = input.body.trim().to_string();
        if body.is_empty() || body.chars().count() > MAX_BODY {
            return Err(DomainError::invalid(
                Msg::new("err.broadcast.body").with("max", MAX_BODY),
            ));
        }
        let mut channels = Vec::new();
        for ch in &input.channels {
            match n::Channel::parse(ch.trim()) {
                Some(c) if !channels.contains(&c) => channels.push(c),
                Some(_) => {}
                None => {
                    return Err(DomainError::invalid(
                        Msg::new("err.broadcast.channel").with("value", ch),
                    ))
                }
            }
        }
        if channels.is_empty() {
            channels = ORDER.to_vec();
        }
        channels.sort_by_key(|c| ORDER.iter().position(|o| o == c));
        if input.per_second.is_some_and(|p| !(1..=100).contains(&p)) {
            return Err(DomainError::invalid(
                Msg::new("err.broadcast.per_second").with("max", 100),
            ));
        }
        let (segment_id, promotion_id) = (input.segment_id, input.promotion_id);
        let id = self
            .store
            .write(by, move |tx| {
                let seg = crate::db::segments::get(tx, segment_id)?
                    .ok_or_else(|| DomainError::invalid("err.broadcast.segment"))?;
                let promo = match promotion_id {
                    None => None,
                    Some(pid) => {
                        let p = q::promotion(tx, pid)?
                            .ok_or_else(|| DomainError::invalid("err.broadcast.promotion"))?;
                        let today = super::clock::iso_date(tx.clock().today());
                        if !p.active || today > p.ends_on {
                            return Err(DomainError::invalid(
                                Msg::new("err.promo.expired")
                                    .with("code", &p.code)
                                    .with("date", &p.ends_on),
                            ));
                        }
                        Some(p)
                    }
                };
                let mut filter: SegmentFilter =
                    serde_json::from_str(&seg.filter).unwrap_or_default();
                // Only customers who said yes, never archived ones.
                filter.opted_in = Some(true);
                filter.include_archived = false;
                // A branch-scoped sender reaches only the customers they see.
                let who = tx.who().branches().map(<[i64]>::to_vec);
                let w = filter.conditions_for(tx, who.as_deref(), tx.clock(), tx.now())?;
                let ids = crate::db::segments::ids(tx, &w, MAX_RECIPIENTS, 0)?;
                let members = q::members(tx, &ids)?;
                let set = n::load_settings(tx)?;
                let ready = |c: n::Channel| match c {
                    n::Channel::Telegram => !set.telegram.token.is_empty(),
                    n::Channel::Sms => set.sms.configured(),
                    n::Channel::Email => set.smtp.configured(),
                };
                let fallback = settings::get(tx, "notify.default_language")?
                    .and_then(|l| Language::from_code(&l))
                    .unwrap_or_default();
                let per_second = match input.per_second {
                    Some(p) => p,
                    None => settings::get(tx, "broadcast.per_second")?
                        .and_then(|v| v.parse().ok())
                        .filter(|p: &i64| (1..=100).contains(p))
                        .unwrap_or(5),
                };
                let now = tx.now();
                let secret = sms::box_secret(tx, now)?;
                let public = set.sms.public_url.trim_end_matches('/').to_string();
                let channel_list: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
                let bid = q::insert_broadcast(
                    tx,
                    &q::NewBroadcast {
                        name: &name,
                        segment_id,
                        promotion_id,
                        body: &body,
                        channels: &channel_list.join(","),
                        per_second,
                    },
                    tx.actor_id(),
                    now,
                )?;
                let mut base = TemplateData::new();
                n::add_shop_data(tx, &mut base)?;
                if let Some(p) = &promo {
                    base.insert("code".into(), p.code.clone());
                    base.insert(
                        "ends_on".into(),
                        super::clock::parse_date(&p.ends_on)
                            .map(super::clock::format_date)
                            .unwrap_or_default(),
                    );
                    base.insert(
                        "discount".into(),
                        if p.kind == "percent" {
                            format!("{}%", p.value)
                        } else {
                            crate::model::money::format(p.value, "UZS")
                        },
                    );
                }
                let start_ms = now * 1000;
                let (mut queued, mut skipped) = (0i64, 0i64);
                for m in &members {
                    if !m.opted_in {
                        skipped += 1;
                        continue;
                    }
                    let pick = channels.iter().copied().find(|c| {
                        ready(*c)
                            && match c {
                                n::Channel::Telegram => m.chat.is_some(),
                                n::Channel::Sms => m.phone.is_some(),
                                n::Channel::Email => n::valid_email(m.email.trim()),
                            }
                    });
                    let Some(ch) = pick else {
                        skipped += 1;
                        continue;
                    };
                    let lang = m
                        .language
                        .as_deref()
                        .and_then(Language::from_code)
                        .or_else(|| {
                            m.chat
                                .as_ref()
                                .and_then(|(_, l)| l.as_deref())
                                .and_then(Language::from_code)
                        })
                        .unwrap_or(fallback);
                    let tr = Tr::new(lang);
                    let mut data = base.clone();
                    data.insert("name".into(), m.name.clone());
                    let text = n::render(&body, &data);
                    let (address, text, subject) = match ch {
                        n::Channel::Telegram => (
                            m.chat.as_ref().map(|c| c.0.to_string()).unwrap_or_default(),
                            format!("{text}\n\n{}", tr.t("promos.footer.telegram")),
                            String::new(),
                        ),
                        n::Channel::Sms => {
                            let phone = m.phone.clone().unwrap_or_default();
                            let text = format!("{text}\n{}", tr.t("promos.footer.sms"));
                            let r = n::Recipient::Customer {
                                customer_id: m.id,
                                email: None,
                                language: Some(lang),
                            };
                            let text = sms::with_invitation(tx, &r, &phone, lang, text)?;
                            (phone, text, String::new())
                        }
                        n::Channel::Email => {
                            let link = format!(
                                "{public}/unsubscribe?c={}&s={}",
                                m.id,
                                sms::unsubscribe_sig(&secret, m.id)
                            );
                            (
                                m.email.trim().to_string(),
                                format!(
                                    "{text}\n\n--\n{}",
                                    tr.f("promos.footer.email", &[("link", &link)])
                                ),
                                name.clone(),
                            )
                        }
                    };
                    let due_ms = start_ms + queued * 1000 / per_second;
                    if q::insert_broadcast_message(
                        tx,
                        &q::BroadcastMessage {
                            broadcast_id: bid,
                            customer_id: m.id,
                            channel: ch.as_str(),
                            recipient: &address,
                            language: lang.code(),
                            subject: &subject,
                            body: &text,
                            due_ms,
                        },
                        start_ms,
                    )? {
                        queued += 1;
                    }
                }
                q::set_broadcast_counts(tx, bid, queued, skipped)?;
                tx.log(
                    "send",
                    "broadcast",
                    bid,
                    serde_json::json!({"segment_id": segment_id, "promotion_id": promotion_id,
                        "queued": queued, "skipped": skipped, "channels": channel_list}),
                );
                let e = event(bid, tx.who().branches().map(<[i64]>::to_vec));
                tx.emit(e);
                Ok(bid)
            })
            .await?;
        self.notifications.wake();
        self.get(by, id).await
    }
}
