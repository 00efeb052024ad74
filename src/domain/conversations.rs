//! Conversations with customers: every message a customer sends the bot lands in a thread
//! tied to the customer and their orders; staff read, take, transfer, answer (through the
//! outbox), close; quick replies and the shop's procedures help them answer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::notifications::{IncomingContent, IncomingMessage, Notifications, TemplateData};
use super::work::{Store, Tx};
use super::{Action, Actor, DomainError, DomainResult, Msg};
use crate::db::conversations::{self as q, NewMessage};
pub use crate::db::conversations::{
    AgentTimes, ConversationRow, ListFilter, MessageRow, QuickReply, SopDocument,
};
use crate::db::{outbox, settings as kv, telegram as tg, Conn};
use crate::events::{Audience, Event};
use crate::model::{Language, PhoneNumber, UserId};

/// Longest text stored for one message; Telegram's own limit is 4096, the widget's is ours.
pub const MAX_TEXT: usize = 4096;
/// Largest file fetched from Telegram or sent by an agent (the Bot API's download limit is
/// 20 MB).
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// Setting: masters see the threads of customers whose open orders they work on.
pub const MASTERS_SEE_OWN: &str = "inbox.masters_see_own";
/// Setting: a new or reopened unassigned thread goes to the least busy agent online.
pub const AUTO_ASSIGN: &str = "inbox.auto_assign";

/// Who has the web app open now; the live hub keeps it, automatic assignment reads it.
#[derive(Clone, Default)]
pub struct OnlineStaff(Arc<RwLock<HashSet<UserId>>>);

impl OnlineStaff {
    pub fn set(&self, user: UserId, online: bool) {
        let mut s = self.0.write().unwrap_or_else(|e| e.into_inner());
        if online {
            s.insert(user);
        } else {
            s.remove(&user);
        }
    }

    /// Keeps the set from the live hub's `user.presence` events until the bus closes.
    pub fn follow(&self, bus: &crate::events::EventBus) -> tokio::task::JoinHandle<()> {
        let mut rx = bus.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) if e.kind == "user.presence" => {
                        let user = e.data["user_id"].as_i64();
                        let online = e.data["online"].as_bool();
                        if let (Some(u), Some(o)) = (user, online) {
                            me.set(u, o);
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    pub fn users(&self) -> Vec<UserId> {
        let mut v: Vec<UserId> = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

/// The preview of a message in the inbox list.
fn preview(kind: &str, body: &str) -> String {
    let text: String = body.chars().take(120).collect();
    if kind == "text" || !text.is_empty() {
        text
    } else {
        format!("[{kind}]")
    }
}

fn flag(c: &Conn, key: &str) -> DomainResult<bool> {
    Ok(kv::get(c, key)?.is_some_and(|v| v == "1" || v == "true"))
}

/// The customers whose threads `actor` may see; None: every thread.
fn scope(c: &Conn, actor: &Actor) -> DomainResult<Option<Vec<i64>>> {
    if actor.role != crate::model::Role::Master {
        return Ok(None);
    }
    if !flag(c, MASTERS_SEE_OWN)? {
        return Ok(Some(Vec::new()));
    }
    Ok(Some(q::customers_of_master(c, actor.user_id)?))
}

fn visible(c: &Conn, actor: &Actor, conv: &ConversationRow) -> DomainResult<bool> {
    let in_branch = match actor.branches.only() {
        None => true,
        Some(_) => q::branch_of(c, conv)?.is_none_or(|b| actor.branches.contains(b)),
    };
    Ok(in_branch
        && match scope(c, actor)? {
            None => true,
            Some(ids) => conv.customer_id.is_some_and(|cid| ids.contains(&cid)),
        })
}

/// Who hears a thread's live events: admins and operators, and the masters of the
/// customer's open orders when the admin lets masters see their threads.
fn audience(c: &Conn, conv: &ConversationRow) -> DomainResult<Audience> {
    let masters = match conv.customer_id {
        Some(cid) if flag(c, MASTERS_SEE_OWN)? => q::masters_of_customer(c, cid)?,
        _ => Vec::new(),
    };
    Ok(Audience::Staff { masters })
}

/// A live event about thread `conv`: its audience, and only the users of its branch
/// (the branch of the customer's latest order; none: every branch).
fn conv_event(
    c: &Conn,
    conv: &ConversationRow,
    kind: &str,
    data: serde_json::Value,
) -> DomainResult<Event> {
    Ok(
        Event::new(kind.to_string(), data, audience(c, conv)?)
            .in_branch_opt(q::branch_of(c, conv)?),
    )
}

fn changed(tx: &mut Tx<'_>, id: i64) -> DomainResult<ConversationRow> {
    let conv = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
    let e = conv_event(
        tx,
        &conv,
        "conversation.updated",
        serde_json::json!({ "conversation": conv }),
    )?;
    tx.emit(e);
    Ok(conv)
}

fn message_event(tx: &mut Tx<'_>, conv: &ConversationRow, message: i64) -> DomainResult<()> {
    let m = q::message(tx, message)?.ok_or(DomainError::NotFound)?;
    let e = conv_event(
        tx,
        conv,
        "conversation.message",
        serde_json::json!({ "conversation": conv, "message": m }),
    )?;
    tx.emit(e);
    Ok(())
}

/// A thread's history entry (assigned, transferred, closed, reopened, linked).
fn history(tx: &mut Tx<'_>, conv: i64, kind: &str, detail: serde_json::Value) -> DomainResult<i64> {
    let now = tx.now();
    let author = tx.actor_id();
    Ok(q::insert_message(
        tx,
        &NewMessage {
            conversation_id: conv,
            direction: "event",
            kind,
            author_id: author,
            body: &detail.to_string(),
            ..Default::default()
        },
        now,
    )?
    .expect("history entries carry no update id"))
}

/// The order a customer's message is about: the one our message they answer was about,
/// else their only open order.
fn order_for(
    c: &Conn,
    conv: i64,
    customer: Option<i64>,
    reply_to: Option<i64>,
) -> DomainResult<Option<i64>> {
    if let Some(r) = reply_to {
        if let Some(o) = q::order_of_sent(c, conv, r)? {
            return Ok(Some(o));
        }
    }
    let Some(cid) = customer else {
        return Ok(None);
    };
    let open = q::open_orders_of(c, cid)?;
    Ok((open.len() == 1).then(|| open[0].0))
}

/// Who a thread can be assigned to: those who answer customers for the shop (masters
/// only read their own customers' threads, when allowed).
fn is_agent(role: crate::model::Role) -> bool {
    role != crate::model::Role::Master && super::access::can(role, Action::ReplyConversations)
}

/// The least busy online agent (admin or operator) for a new unassigned thread.
fn pick_agent(c: &Conn, online: &[UserId]) -> DomainResult<Option<UserId>> {
    let mut agents = Vec::new();
    for u in online {
        if let Some(row) = crate::db::accounts::user_by_id(c, *u)? {
            if row.active && is_agent(row.role) {
                agents.push(*u);
            }
        }
    }
    let load = q::open_load(c, &agents)?;
    Ok(load
        .into_iter()
        .min_by_key(|(u, n)| (*n, *u))
        .map(|(u, _)| u))
}

/// Stores what a customer sent the bot, inside the poller's transaction (with the saved
/// offset, so an update is stored once). Links the chat to a customer when they share
/// their own phone number; offers the "share my phone number" button to an unknown
/// sender once.
pub fn ingest_telegram(
    tx: &mut Tx<'_>,
    m: &IncomingMessage,
    lang: Language,
    online: &[UserId],
) -> DomainResult<()> {
    let now = tx.now();
    let address = m.chat_id.to_string();
    let mut customer = tg::chat(tx, m.chat_id)?.and_then(|ch| ch.customer_id);
    let (conv, created) = q::open_for(tx, "telegram", &address, &m.from_name, customer, now)?;
    if !created {
        q::set_title(tx, conv, &m.from_name)?;
    }
    let mut linked_now = None;
    if let IncomingContent::Contact { phone, own, .. } = &m.content {
        // Only the sender's own card proves the number is theirs; a forwarded contact
        // card is a message like any other.
        if *own && customer.is_none() {
            let country = super::shop::country_of(tx)?;
            if let Ok(p) = PhoneNumber::parse(phone, country) {
                if let Some(found) = crate::db::customers::by_phone(tx, p.as_str())?.first() {
                    customer = Some(found.id);
                    linked_now = Some(found.id);
                    tg::link_customer(tx, m.chat_id, found.id, now)?;
                    q::set_customer(tx, conv, Some(found.id))?;
                }
            }
        }
    }
    if customer.is_some() && q::get(tx, conv)?.and_then(|c| c.customer_id).is_none() {
        q::set_customer(tx, conv, customer)?;
    }
    let (kind, body, file) = m.content.stored(&m.text);
    let body: String = body.chars().take(MAX_TEXT * 4).collect();
    let order = order_for(tx, conv, customer, m.reply_to)?;
    let (file_id, file_name, file_mime, file_size, file_state, file_error) = match &file {
        Some(f) if f.size.is_some_and(|s| s > MAX_FILE_BYTES as i64) => (
            Some(f.file_id.as_str()),
            f.name.as_deref(),
            f.mime.as_deref(),
            f.size,
            Some("refused"),
            Some("too_large"),
        ),
        Some(f) => (
            Some(f.file_id.as_str()),
            f.name.as_deref(),
            f.mime.as_deref(),
            f.size,
            Some("pending"),
            None,
        ),
        None => (None, None, None, None, None, None),
    };
    let Some(mid) = q::insert_message(
        tx,
        &NewMessage {
            conversation_id: conv,
            direction: "in",
            kind,
            body: &body,
            order_id: order,
            tg_update_id: Some(m.update_id),
            tg_message_id: Some(m.message_id),
            file_id,
            file_name,
            file_mime,
            file_size,
            file_state,
            file_error,
            ..Default::default()
        },
        now,
    )?
    else {
        // Stored before (a repeated update): nothing more to do.
        return Ok(());
    };
    let reopened = q::on_inbound(tx, conv, &preview(kind, &body), now)?;
    if reopened {
        history(tx, conv, "reopened", serde_json::json!({"by": "customer"}))?;
    }
    if let Some(cid) = linked_now {
        history(
            tx,
            conv,
            "linked",
            serde_json::json!({"customer_id": cid, "by": "phone"}),
        )?;
        tx.log(
            "link",
            "conversation",
            conv,
            serde_json::json!({"customer": cid, "by": "contact"}),
        );
        let text = Tr::new(lang).t("inbox.bot.contact_linked").to_string();
        bot_says(
            tx,
            m.chat_id,
            lang,
            &format!("conv:{conv}:linked"),
            &text,
            None,
        )?;
    } else if matches!(m.content, IncomingContent::Contact { own: true, .. }) && customer.is_none()
    {
        let text = Tr::new(lang).t("inbox.bot.contact_unknown").to_string();
        bot_says(
            tx,
            m.chat_id,
            lang,
            &format!("tg-update:{}:contact", m.update_id),
            &text,
            None,
        )?;
    }
    let row = q::get(tx, conv)?.ok_or(DomainError::NotFound)?;
    if row.customer_id.is_none() && row.asked_contact_at.is_none() {
        let tr = Tr::new(lang);
        let extra = serde_json::json!({"request_contact": tr.t("inbox.bot.share_phone_button")});
        bot_says(
            tx,
            m.chat_id,
            lang,
            &format!("conv:{conv}:ask-contact"),
            tr.t("inbox.bot.share_phone"),
            Some(extra),
        )?;
        q::asked_contact(tx, conv, now)?;
    }
    if row.assignee_id.is_none() && flag(tx, AUTO_ASSIGN)? {
        if let Some(agent) = pick_agent(tx, online)? {
            q::set_assignee(tx, conv, Some(agent))?;
            let name = crate::db::accounts::user_by_id(tx, agent)?
                .map(|u| u.display_name)
                .unwrap_or_default();
            history(
                tx,
                conv,
                "assigned",
                serde_json::json!({"to": agent, "to_name": name, "auto": true}),
            )?;
        }
    }
    let row = q::get(tx, conv)?.ok_or(DomainError::NotFound)?;
    message_event(tx, &row, mid)?;
    Ok(())
}

use crate::i18n::Tr;

/// Queues a Telegram message from the bot (not an agent) to a chat.
fn bot_says(
    c: &Conn,
    chat: i64,
    lang: Language,
    key: &str,
    text: &str,
    extra: Option<serde_json::Value>,
) -> DomainResult<Option<i64>> {
    let extra = extra.map(|e| e.to_string());
    Ok(outbox::insert_with(
        c,
        &outbox::NewMessage {
            event: "bot.reply",
            dedupe_key: key,
            channel: "telegram",
            recipient: &chat.to_string(),
            user_id: None,
            language: lang.code(),
            subject: "",
            body: text,
        },
        extra.as_deref(),
        super::notifications::now_ms(),
    )?)
}

/// A staff member's public order comment goes to the customer's Telegram thread (the
/// customer may see it), inside the comment's own unit of work.
pub fn order_comment_to_customer(
    tx: &mut Tx<'_>,
    order: i64,
    customer: i64,
    body: &str,
    comment_event: i64,
) -> DomainResult<()> {
    let chats = tg::chats_of_customer(tx, customer)?;
    let now = tx.now();
    let author = tx.actor_id();
    for (chat, lang) in chats {
        let (conv, _) = q::open_for(tx, "telegram", &chat.to_string(), "", Some(customer), now)?;
        let lang = lang
            .as_deref()
            .and_then(Language::from_code)
            .unwrap_or_default();
        let number = crate::db::orders::get(tx, order)?
            .map(|o| o.number)
            .unwrap_or_default();
        let text = Tr::new(lang).f(
            "inbox.order_comment",
            &[("order_number", &number), ("text", body)],
        );
        let Some(mid) = q::insert_message(
            tx,
            &NewMessage {
                conversation_id: conv,
                direction: "out",
                kind: "text",
                author_id: author,
                body: &text,
                order_id: Some(order),
                ..Default::default()
            },
            now,
        )?
        else {
            continue;
        };
        let ob = bot_says(
            tx,
            chat,
            lang,
            &format!("order:{order}:public-comment:{comment_event}"),
            &text,
            None,
        )?;
        // Delivery shows in the thread like an agent's reply.
        if let Some(ob) = ob {
            crate::db::outbox::set_event(tx, ob, "conversation.reply")?;
        }
        if let Some(ob) = ob {
            q::set_outbox(tx, mid, Some(ob))?;
        }
        q::on_reply(tx, conv, &preview("text", &text), now)?;
        let row = q::get(tx, conv)?.ok_or(DomainError::NotFound)?;
        message_event(tx, &row, mid)?;
    }
    Ok(())
}

/// The inbox's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tab {
    #[default]
    Unassigned,
    Mine,
    All,
    Closed,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Unassigned, Tab::Mine, Tab::All, Tab::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Tab::Unassigned => "unassigned",
            Tab::Mine => "mine",
            Tab::All => "all",
            Tab::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Tab> {
        Tab::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What the inbox list asks for.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    pub tab: Tab,
    pub search: Option<String>,
    pub customer_id: Option<i64>,
    pub unread_only: bool,
    /// Keyset cursor: (last_message_at, id) of the last row shown.
    pub before: Option<(i64, i64)>,
    pub limit: i64,
}

/// The open thread: the conversation, its messages and the customer beside it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Thread {
    pub conversation: ConversationRow,
    pub messages: Vec<MessageRow>,
    /// True when older messages exist before the first one shown.
    pub more_before: bool,
}

/// A reply to send.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyInput {
    #[serde(default)]
    pub text: String,
    /// The order the reply is about (its number is not added; the customer's reply to it
    /// is then filed under the order).
    #[serde(default)]
    pub order_id: Option<i64>,
    /// A staff-only note instead of a message to the customer.
    #[serde(default)]
    pub note: bool,
}

/// A file an agent sends.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    pub data: Vec<u8>,
}

/// What a stored file is, judged from its bytes (never from the name the sender gave):
/// (mime, extension, is a photo Telegram shows inline).
pub fn sniff_file(b: &[u8]) -> Option<(&'static str, &'static str, bool)> {
    if let Some((mime, ext)) = super::orders::sniff_image(b) {
        return Some((mime, ext, true));
    }
    if b.starts_with(b"%PDF-") {
        Some(("application/pdf", "pdf", false))
    } else if b.starts_with(b"OggS") {
        Some(("audio/ogg", "ogg", false))
    } else if b.len() > 12 && &b[4..8] == b"ftyp" {
        Some(("video/mp4", "mp4", false))
    } else if b.starts_with(b"ID3") || b.starts_with(&[0xFF, 0xFB]) {
        Some(("audio/mpeg", "mp3", false))
    } else if b.starts_with(b"PK\x03\x04") {
        // Office documents and zip archives: offered as a download only.
        Some(("application/zip", "zip", false))
    } else if b.starts_with(b"GIF8") {
        Some(("image/gif", "gif", false))
    } else if !b.is_empty()
        && std::str::from_utf8(&b[..b.len().min(4096)]).is_ok_and(|s| {
            let l = s.trim_start().to_ascii_lowercase();
            !l.starts_with('<') && !s.contains('\0')
        })
    {
        Some(("text/plain; charset=utf-8", "txt", false))
    } else {
        None
    }
}

#[derive(Clone)]
pub struct Conversations {
    store: Store,
    notifications: Notifications,
    files: PathBuf,
    online: OnlineStaff,
}

impl Conversations {
    /// `attachments` is the data directory's attachments folder; files go under
    /// `conversations/<id>/` in it.
    pub fn new(store: Store, notifications: Notifications, attachments: &Path) -> Conversations {
        Conversations {
            store,
            notifications: notifications.clone(),
            files: attachments.to_path_buf(),
            online: notifications.online().clone(),
        }
    }

    pub fn online(&self) -> &OnlineStaff {
        &self.online
    }

    pub fn attachments(&self) -> &Path {
        &self.files
    }

    fn can(actor: &Actor, a: Action) -> DomainResult<()> {
        if actor.can(a) {
            Ok(())
        } else {
            Err(DomainError::Forbidden)
        }
    }

    pub async fn list(
        &self,
        actor: &Actor,
        query: InboxQuery,
    ) -> DomainResult<Vec<ConversationRow>> {
        Self::can(actor, Action::ViewConversations)?;
        let actor = actor.clone();
        self.store
            .view(move |c| {
                let customers = scope(c, &actor)?;
                if customers.as_ref().is_some_and(|v| v.is_empty()) {
                    return Ok(Vec::new());
                }
                let (state, assignee) = match query.tab {
                    Tab::Unassigned => (Some("open"), Some(None)),
                    Tab::Mine => (Some("open"), Some(Some(actor.user_id))),
                    Tab::All => (Some("open"), None),
                    Tab::Closed => (Some("closed"), None),
                };
                let search = query.search.filter(|s| !s.trim().is_empty());
                let customer_match = match &search {
                    Some(q) => super::search::fts_expression(q, super::shop::country_of(c)?),
                    None => None,
                };
                Ok(q::list(
                    c,
                    &ListFilter {
                        branches: actor.branches.only().map(<[i64]>::to_vec),
                        state: state.map(str::to_string),
                        // A search looks through every thread, assigned or not.
                        assignee: if search.is_some() { None } else { assignee },
                        customers,
                        search,
                        customer_match,
                        customer_id: query.customer_id,
                        unread_only: query.unread_only,
                        before: query.before,
                        limit: query.limit.clamp(1, 200),
                    },
                )?)
            })
            .await
    }

    /// Open threads with unread messages that are unassigned or the actor's (the badge).
    pub async fn unread(&self, actor: &Actor) -> DomainResult<i64> {
        if !actor.can(Action::ViewConversations) {
            return Ok(0);
        }
        let actor = actor.clone();
        self.store
            .view(move |c| {
                let customers = scope(c, &actor)?;
                if customers.as_ref().is_some_and(|v| v.is_empty()) {
                    return Ok(0);
                }
                Ok(q::unread_count(
                    c,
                    actor.user_id,
                    customers.as_deref(),
                    actor.branches.only(),
                )?)
            })
            .await
    }

    fn visible_conv(c: &Conn, actor: &Actor, id: i64) -> DomainResult<ConversationRow> {
        let conv = q::get(c, id)?.ok_or(DomainError::NotFound)?;
        if !visible(c, actor, &conv)? {
            return Err(DomainError::NotFound);
        }
        Ok(conv)
    }

    /// A thread; opening it (`mark_read`) marks it read.
    pub async fn thread(
        &self,
        actor: &Actor,
        id: i64,
        before: Option<i64>,
        mark_read: bool,
    ) -> DomainResult<Thread> {
        Self::can(actor, Action::ViewConversations)?;
        let a = actor.clone();
        let t = self
            .store
            .view(move |c| {
                let conversation = Self::visible_conv(c, &a, id)?;
                let mut messages = q::thread(c, id, before, 101)?;
                let more_before = messages.len() > 100;
                if more_before {
                    messages.remove(0);
                }
                Ok(Thread {
                    conversation,
                    messages,
                    more_before,
                })
            })
            .await?;
        if mark_read && t.conversation.unread > 0 {
            self.mark_read(actor, id).await?;
        }
        Ok(t)
    }

    pub async fn mark_read(&self, actor: &Actor, id: i64) -> DomainResult<()> {
        Self::can(actor, Action::ViewConversations)?;
        let a = actor.clone();
        self.store
            .write(actor, move |tx| {
                Self::visible_conv(tx, &a, id)?;
                if q::mark_read(tx, id)? {
                    changed(tx, id)?;
                }
                Ok(())
            })
            .await
    }

    /// Sends a reply (or stores a staff note), with an optional file. The first agent to
    /// answer an unassigned thread takes it.
    pub async fn reply(
        &self,
        actor: &Actor,
        id: i64,
        input: ReplyInput,
        file: Option<Upload>,
    ) -> DomainResult<MessageRow> {
        Self::can(actor, Action::ReplyConversations)?;
        let text = input.text.trim().to_string();
        if text.is_empty() && file.is_none() {
            return Err(DomainError::invalid(
                Msg::new("err.field.required").term("field", "field.message"),
            ));
        }
        if text.chars().count() > MAX_TEXT {
            return Err(DomainError::invalid(
                Msg::new("err.field.too_long")
                    .term("field", "field.message")
                    .with("max", MAX_TEXT),
            ));
        }
        if file.is_some() && text.chars().count() > 1024 {
            return Err(DomainError::invalid(
                Msg::new("err.inbox.caption_too_long").with("max", 1024),
            ));
        }
        if input.note && file.is_some() {
            return Err(DomainError::invalid("err.inbox.note_file"));
        }
        // The file is written before the transaction (disk I/O, no network); a refused
        // change leaves an orphan file that the next backup ignores (it is not referenced).
        let stored = match file {
            Some(f) => Some(self.save_upload(id, f).await?),
            None => None,
        };
        let a = actor.clone();
        let msg = self
            .store
            .write(actor, move |tx| {
                let conv = Self::visible_conv(tx, &a, id)?;
                let now = tx.now();
                if let Some(o) = input.order_id {
                    // The customer's order, in one of the user's branches.
                    let ok = conv.customer_id.is_some()
                        && crate::db::orders::get(tx, o)?.is_some_and(|row| {
                            Some(row.customer_id) == conv.customer_id
                                && a.sees_branch(row.branch_id)
                        });
                    if !ok {
                        return Err(DomainError::invalid("err.inbox.order_not_customers"));
                    }
                }
                if conv.channel == "telegram" && !input.note {
                    let chat: i64 = conv.address.parse().map_err(|_| DomainError::NotFound)?;
                    if tg::chat(tx, chat)?.is_some_and(|c| c.blocked_at.is_some()) {
                        return Err(DomainError::conflict("err.inbox.blocked"));
                    }
                }
                let kind = match &stored {
                    Some((_, _, _, _, true)) => "photo",
                    Some(_) => "document",
                    None => "text",
                };
                let (direction, kind) = if input.note {
                    ("note", "text")
                } else {
                    ("out", kind)
                };
                let mid = q::insert_message(
                    tx,
                    &NewMessage {
                        conversation_id: id,
                        direction,
                        kind,
                        author_id: Some(a.user_id),
                        body: &text,
                        order_id: input.order_id,
                        file_name: stored.as_ref().map(|s| s.1.as_str()),
                        file_mime: stored.as_ref().map(|s| s.2),
                        file_size: stored.as_ref().map(|s| s.3),
                        file_path: stored.as_ref().map(|s| s.0.as_str()),
                        file_state: stored.as_ref().map(|_| "stored"),
                        ..Default::default()
                    },
                    now,
                )?
                .expect("replies carry no update id");
                if !input.note {
                    if conv.channel == "telegram" {
                        let lang = tg::chat(tx, conv.address.parse().unwrap_or_default())?
                            .and_then(|c| c.language)
                            .unwrap_or_else(|| "uz".into());
                        let extra = stored.as_ref().map(|(path, name, _, _, photo)| {
                            let k = if *photo { "photo" } else { "document" };
                            serde_json::json!({ k: path, "name": name }).to_string()
                        });
                        let ob = outbox::insert_with(
                            tx,
                            &outbox::NewMessage {
                                event: "conversation.reply",
                                dedupe_key: &format!("conversation-message:{mid}"),
                                channel: "telegram",
                                recipient: &conv.address,
                                user_id: None,
                                language: &lang,
                                subject: "",
                                body: &text,
                            },
                            extra.as_deref(),
                            super::notifications::now_ms(),
                        )?;
                        q::set_outbox(tx, mid, ob)?;
                    }
                    q::on_reply(tx, id, &preview(kind, &text), now)?;
                    if conv.assignee_id.is_none() {
                        q::set_assignee(tx, id, Some(a.user_id))?;
                        history(
                            tx,
                            id,
                            "assigned",
                            serde_json::json!({"to": a.user_id, "to_name": a.display_name}),
                        )?;
                    }
                }
                let row = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                message_event(tx, &row, mid)?;
                tx.log(
                    if input.note { "note" } else { "reply" },
                    "conversation",
                    id,
                    serde_json::json!({"message": mid}),
                );
                q::message(tx, mid)?.ok_or(DomainError::NotFound)
            })
            .await?;
        self.notifications.wake();
        Ok(msg)
    }

    /// Writes an agent's file under attachments/conversations/<id>/: (relative path,
    /// name, mime, size, is a photo).
    async fn save_upload(
        &self,
        conv: i64,
        f: Upload,
    ) -> DomainResult<(String, String, &'static str, i64, bool)> {
        if f.data.len() > MAX_FILE_BYTES {
            return Err(DomainError::invalid(
                Msg::new("err.inbox.file_too_large").with("mb", MAX_FILE_BYTES / 1024 / 1024),
            ));
        }
        let (mime, ext, photo) =
            sniff_file(&f.data).ok_or_else(|| DomainError::invalid("err.inbox.file_kind"))?;
        let rel = format!(
            "conversations/{conv}/{}.{ext}",
            super::accounts::random_token(12)
        );
        let size = f.data.len() as i64;
        write_file(&self.files.join(&rel), f.data).await?;
        let name = clean_file_name(&f.name, ext);
        Ok((rel, name, mime, size, photo))
    }

    /// Takes an unassigned thread (or one's own back).
    pub async fn take(&self, actor: &Actor, id: i64) -> DomainResult<ConversationRow> {
        self.assign(actor, id, Some(actor.user_id), "").await
    }

    /// Assigns a thread to an agent, or transfers it from one to another with a note; None
    /// returns it to the unassigned queue. Every change is in the thread's history.
    pub async fn assign(
        &self,
        actor: &Actor,
        id: i64,
        to: Option<UserId>,
        note: &str,
    ) -> DomainResult<ConversationRow> {
        Self::can(actor, Action::ReplyConversations)?;
        let note = super::orders::text(note, "field.note", 1000, false)?;
        let a = actor.clone();
        self.store
            .write(actor, move |tx| {
                let conv = Self::visible_conv(tx, &a, id)?;
                let to_name = match to {
                    Some(u) => {
                        let row = crate::db::accounts::user_by_id(tx, u)?
                            .filter(|r| r.active && is_agent(r.role))
                            .ok_or_else(|| DomainError::invalid("err.inbox.not_an_agent"))?;
                        Some(row.display_name)
                    }
                    None => None,
                };
                // Only admins move another agent's thread; agents pass on their own or
                // take unassigned ones.
                let others = conv.assignee_id.is_some_and(|u| u != a.user_id);
                if others && a.role != crate::model::Role::Admin {
                    return Err(DomainError::conflict(
                        Msg::new("err.inbox.assigned_to").with(
                            "name",
                            conv.assignee_name.clone().unwrap_or_default(),
                        ),
                    ));
                }
                if conv.assignee_id == to {
                    return Ok(conv);
                }
                q::set_assignee(tx, id, to)?;
                let kind = match (conv.assignee_id, to) {
                    (None, Some(_)) => "assigned",
                    (Some(_), Some(_)) => "transferred",
                    (_, None) => "unassigned",
                };
                history(
                    tx,
                    id,
                    kind,
                    serde_json::json!({
                        "from": conv.assignee_id, "from_name": conv.assignee_name,
                        "to": to, "to_name": to_name, "note": note,
                    }),
                )?;
                let action = match kind {
                    "assigned" => "assign",
                    "transferred" => "transfer",
                    _ => "unassign",
                };
                tx.log(action, "conversation", id, serde_json::json!({"to": to, "note": note}));
                if let Some(u) = to.filter(|u| *u != a.user_id) {
                    // The new agent hears of it wherever they are in the app.
                    let branch = q::branch_of(tx, &conv)?;
                    tx.emit(
                        Event::new(
                            "conversation.transferred",
                            serde_json::json!({"conversation_id": id, "by": a.display_name, "note": note}),
                            Audience::Users(vec![u]),
                        )
                        .in_branch_opt(branch),
                    );
                }
                let row = changed(tx, id)?;
                Ok(row)
            })
            .await
    }

    pub async fn close(&self, actor: &Actor, id: i64) -> DomainResult<ConversationRow> {
        self.set_open(actor, id, false).await
    }

    pub async fn reopen(&self, actor: &Actor, id: i64) -> DomainResult<ConversationRow> {
        self.set_open(actor, id, true).await
    }

    async fn set_open(&self, actor: &Actor, id: i64, open: bool) -> DomainResult<ConversationRow> {
        Self::can(actor, Action::ReplyConversations)?;
        let a = actor.clone();
        self.store
            .write(actor, move |tx| {
                let conv = Self::visible_conv(tx, &a, id)?;
                if (conv.state == "open") == open {
                    return Ok(conv);
                }
                let now = tx.now();
                if open {
                    q::reopen(tx, id, now)?;
                } else {
                    q::close(tx, id, now)?;
                }
                let kind = if open { "reopened" } else { "closed" };
                history(tx, id, kind, serde_json::json!({"by_name": a.display_name}))?;
                tx.log(
                    if open { "reopen" } else { "close" },
                    "conversation",
                    id,
                    serde_json::json!({}),
                );
                changed(tx, id)
            })
            .await
    }

    /// Links a thread (and its Telegram chat) to a customer by hand, or unlinks it.
    pub async fn link_customer(
        &self,
        actor: &Actor,
        id: i64,
        customer: Option<i64>,
    ) -> DomainResult<ConversationRow> {
        Self::can(actor, Action::ReplyConversations)?;
        Self::can(actor, Action::ViewCustomers)?;
        let a = actor.clone();
        self.store
            .write(actor, move |tx| {
                let conv = Self::visible_conv(tx, &a, id)?;
                let now = tx.now();
                if let Some(cid) = customer {
                    if crate::db::customers::get(tx, cid)?.is_none() {
                        return Err(DomainError::invalid("err.inbox.no_customer"));
                    }
                }
                q::set_customer(tx, id, customer)?;
                if conv.channel == "telegram" {
                    if let Ok(chat) = conv.address.parse::<i64>() {
                        match customer {
                            Some(cid) => tg::link_customer(tx, chat, cid, now)?,
                            None => {
                                tg::unlink_customer(tx, chat)?;
                            }
                        }
                    }
                }
                history(
                    tx,
                    id,
                    "linked",
                    serde_json::json!({"customer_id": customer, "by_name": a.display_name}),
                )?;
                tx.log(
                    "link",
                    "conversation",
                    id,
                    serde_json::json!({"customer": customer}),
                );
                changed(tx, id)
            })
            .await
    }

    /// Deletes a thread and its files (for a customer who asks to be forgotten).
    pub async fn delete(&self, actor: &Actor, id: i64) -> DomainResult<()> {
        Self::can(actor, Action::DeleteConversations)?;
        let a = actor.clone();
        self.store
            .write(actor, move |tx| {
                let conv = Self::visible_conv(tx, &a, id)?;
                q::delete(tx, id)?;
                tx.log(
                    "delete",
                    "conversation",
                    id,
                    serde_json::json!({"customer": conv.customer_id, "title": conv.title}),
                );
                let branch = q::branch_of(tx, &conv)?;
                tx.emit(
                    Event::new(
                        "conversation.deleted",
                        serde_json::json!({"conversation_id": id}),
                        Audience::Staff {
                            masters: Vec::new(),
                        },
                    )
                    .in_branch_opt(branch),
                );
                Ok(())
            })
            .await?;
        let dir = self.files.join(format!("conversations/{id}"));
        let _ = tokio::fs::remove_dir_all(dir).await;
        Ok(())
    }

    /// An agent is typing in a thread: other agents see who; the customer sees "typing…"
    /// (the caller sends it: returns the Telegram chat, if the thread has one).
    pub async fn typing(&self, actor: &Actor, id: i64) -> DomainResult<Option<i64>> {
        Self::can(actor, Action::ReplyConversations)?;
        let a = actor.clone();
        let data = serde_json::json!({"conversation_id": id, "user_id": actor.user_id, "name": actor.display_name});
        let (conv, event) = self
            .store
            .view(move |c| {
                let conv = Self::visible_conv(c, &a, id)?;
                let e = conv_event(c, &conv, "conversation.typing", data)?;
                Ok((conv, e))
            })
            .await?;
        self.store.events().publish(event);
        Ok((conv.channel == "telegram")
            .then(|| conv.address.parse().ok())
            .flatten())
    }

    /// A stored file of a message the actor may see: (absolute path, mime, name).
    pub async fn file(
        &self,
        actor: &Actor,
        message: i64,
    ) -> DomainResult<(PathBuf, String, String)> {
        Self::can(actor, Action::ViewConversations)?;
        let a = actor.clone();
        let (rel, mime, name) = self
            .store
            .view(move |c| {
                let (rel, mime, name, conv) =
                    q::file_of(c, message)?.ok_or(DomainError::NotFound)?;
                Self::visible_conv(c, &a, conv)?;
                Ok((rel, mime, name))
            })
            .await?;
        Ok((self.files.join(rel), mime, name))
    }

    /// The customer's messages about an order and the replies (the order page).
    pub async fn about_order(&self, actor: &Actor, order: i64) -> DomainResult<Vec<MessageRow>> {
        if !actor.can(Action::ViewConversations) {
            return Ok(Vec::new());
        }
        self.store
            .view(move |c| Ok(q::about_order(c, order, 50)?))
            .await
    }

    pub async fn agent_times(&self, actor: &Actor, days: i64) -> DomainResult<Vec<AgentTimes>> {
        Self::can(actor, Action::ViewReports)?;
        let since = self.store.clock().get().now() - days.clamp(1, 366) * 86_400;
        self.store
            .view(move |c| Ok(q::agent_times(c, since)?))
            .await
    }

    // ---- quick replies ----

    pub async fn quick_replies(&self, actor: &Actor) -> DomainResult<Vec<QuickReply>> {
        Self::can(actor, Action::ViewConversations)?;
        self.store.view(|c| Ok(q::quick_replies(c)?)).await
    }

    pub async fn save_quick_reply(
        &self,
        actor: &Actor,
        mut r: QuickReply,
    ) -> DomainResult<QuickReply> {
        Self::can(actor, Action::ManageInbox)?;
        r.shortcut = r.shortcut.trim().trim_start_matches('/').to_lowercase();
        if r.shortcut.is_empty()
            || r.shortcut.chars().count() > 32
            || !r
                .shortcut
                .chars()
                .all(|ch| ch.is_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(DomainError::invalid("err.inbox.shortcut"));
        }
        r.title = super::orders::text(&r.title, "field.title", 120, true)?;
        for b in [
            &mut r.body_uz,
            &mut r.body_uz_cyrl,
            &mut r.body_ru,
            &mut r.body_en,
        ] {
            *b = super::orders::text(b, "field.message", MAX_TEXT, false)?;
        }
        if [&r.body_uz, &r.body_uz_cyrl, &r.body_ru, &r.body_en]
            .iter()
            .all(|b| b.is_empty())
        {
            return Err(DomainError::invalid(
                Msg::new("err.field.required").term("field", "field.message"),
            ));
        }
        self.store
            .write(actor, move |tx| {
                if let Some(other) = q::quick_reply_by_shortcut(tx, &r.shortcut)? {
                    if other != r.id {
                        return Err(DomainError::conflict(
                            Msg::new("err.inbox.shortcut_taken")
                                .with("shortcut", r.shortcut.clone()),
                        ));
                    }
                }
                if r.id != 0 && q::quick_reply(tx, r.id)?.is_none() {
                    return Err(DomainError::NotFound);
                }
                let now = tx.now();
                r.id = q::save_quick_reply(tx, &r, now)?;
                tx.log(
                    "save",
                    "quick_reply",
                    r.id,
                    serde_json::json!({"shortcut": r.shortcut}),
                );
                tx.emit(inbox_changed());
                Ok(r)
            })
            .await
    }

    pub async fn delete_quick_reply(&self, actor: &Actor, id: i64) -> DomainResult<()> {
        Self::can(actor, Action::ManageInbox)?;
        self.store
            .write(actor, move |tx| {
                if !q::delete_quick_reply(tx, id)? {
                    return Err(DomainError::NotFound);
                }
                tx.log("delete", "quick_reply", id, serde_json::json!({}));
                tx.emit(inbox_changed());
                Ok(())
            })
            .await
    }

    /// A quick reply filled in for a thread, in the customer's language: customer name,
    /// order number, status, balance due, shop hours.
    pub async fn render_quick_reply(
        &self,
        actor: &Actor,
        conv: i64,
        reply: i64,
    ) -> DomainResult<String> {
        Self::can(actor, Action::ViewConversations)?;
        let a = actor.clone();
        self.store
            .view(move |c| {
                let conv = Self::visible_conv(c, &a, conv)?;
                let r = q::quick_reply(c, reply)?.ok_or(DomainError::NotFound)?;
                let lang = chat_language(c, &conv)?;
                let lang = lang
                    .as_deref()
                    .and_then(Language::from_code)
                    .unwrap_or(a.language);
                let data = thread_data(c, &conv, lang)?;
                Ok(super::notifications::render(r.body(lang.code()), &data))
            })
            .await
    }

    /// The language a thread's customer reads (their chat's, else the actor's).
    pub async fn customer_language(&self, actor: &Actor, conv: i64) -> DomainResult<Language> {
        Self::can(actor, Action::ViewConversations)?;
        let a = actor.clone();
        self.store
            .view(move |c| {
                let conv = Self::visible_conv(c, &a, conv)?;
                let lang = chat_language(c, &conv)?;
                Ok(lang
                    .as_deref()
                    .and_then(Language::from_code)
                    .unwrap_or(a.language))
            })
            .await
    }

    // ---- procedures ----

    pub async fn procedures(
        &self,
        actor: &Actor,
        search: Option<String>,
    ) -> DomainResult<Vec<SopDocument>> {
        Self::can(actor, Action::ViewConversations)?;
        self.store
            .view(move |c| Ok(q::sop_documents(c, search.as_deref(), 100)?))
            .await
    }

    pub async fn procedure(&self, actor: &Actor, id: i64) -> DomainResult<SopDocument> {
        Self::can(actor, Action::ViewConversations)?;
        self.store
            .view(move |c| q::sop_document(c, id)?.ok_or(DomainError::NotFound))
            .await
    }

    pub async fn save_procedure(
        &self,
        actor: &Actor,
        id: Option<i64>,
        title: &str,
        body: &str,
    ) -> DomainResult<i64> {
        Self::can(actor, Action::ManageInbox)?;
        let title = super::orders::text(title, "field.title", 200, true)?;
        let body = super::orders::text(body, "field.body", 100_000, true)?;
        let by = actor.user_id;
        self.store
            .write(actor, move |tx| {
                let now = tx.now();
                let id = q::save_sop(tx, id, &title, &body, Some(by), now)?
                    .ok_or(DomainError::NotFound)?;
                tx.log("save", "procedure", id, serde_json::json!({"title": title}));
                tx.emit(inbox_changed());
                Ok(id)
            })
            .await
    }

    pub async fn delete_procedure(&self, actor: &Actor, id: i64) -> DomainResult<()> {
        Self::can(actor, Action::ManageInbox)?;
        self.store
            .write(actor, move |tx| {
                if !q::delete_sop(tx, id)? {
                    return Err(DomainError::NotFound);
                }
                tx.log("delete", "procedure", id, serde_json::json!({}));
                tx.emit(inbox_changed());
                Ok(())
            })
            .await
    }

    /// Inbox settings: masters see their customers' threads; automatic assignment.
    pub async fn settings(&self) -> DomainResult<(bool, bool)> {
        self.store
            .view(|c| Ok((flag(c, MASTERS_SEE_OWN)?, flag(c, AUTO_ASSIGN)?)))
            .await
    }

    pub async fn save_settings(
        &self,
        actor: &Actor,
        masters: bool,
        auto: bool,
    ) -> DomainResult<()> {
        Self::can(actor, Action::ManageInbox)?;
        self.store
            .write(actor, move |tx| {
                let now = tx.now();
                kv::set(tx, MASTERS_SEE_OWN, if masters { "1" } else { "0" }, now)?;
                kv::set(tx, AUTO_ASSIGN, if auto { "1" } else { "0" }, now)?;
                tx.log(
                    "update",
                    "settings_inbox",
                    None,
                    serde_json::json!({"inbox": {"masters_see_own": masters, "auto_assign": auto}}),
                );
                tx.emit(inbox_changed());
                Ok(())
            })
            .await
    }

    /// Files the bot still has to fetch from Telegram.
    pub async fn pending_files(&self, limit: i64) -> DomainResult<Vec<q::PendingFile>> {
        self.store
            .view(move |c| Ok(q::pending_files(c, limit)?))
            .await
    }

    /// Records the outcome of fetching a file: stored (bytes written already) or a problem.
    pub async fn file_fetched(
        &self,
        f: &q::PendingFile,
        outcome: Result<(String, &'static str, i64), (&'static str, String)>,
    ) -> DomainResult<()> {
        let (mid, conv) = (f.message_id, f.conversation_id);
        self.store
            .write(super::work::Who::System, move |tx| {
                match &outcome {
                    Ok((path, mime, size)) => q::file_stored(tx, mid, path, mime, *size)?,
                    Err((state, e)) => q::file_problem(tx, mid, state, e)?,
                }
                let row = q::get(tx, conv)?.ok_or(DomainError::NotFound)?;
                let m = q::message(tx, mid)?.ok_or(DomainError::NotFound)?;
                let e = conv_event(
                    tx,
                    &row,
                    "conversation.message_updated",
                    serde_json::json!({"conversation_id": conv, "message": m}),
                )?;
                tx.emit(e);
                Ok(())
            })
            .await
    }

    /// A reply's outbox row was settled: the thread shows its new state; a delivered
    /// message keeps Telegram's id (a customer's answer to it is then filed under its
    /// order).
    pub async fn delivery_settled(
        &self,
        outbox_id: i64,
        tg_message_id: Option<i64>,
    ) -> DomainResult<()> {
        self.store
            .write(super::work::Who::System, move |tx| {
                let found = match tg_message_id {
                    Some(t) => q::set_sent_message_id(tx, outbox_id, t)?,
                    None => q::by_outbox(tx, outbox_id)?,
                };
                let Some((mid, conv)) = found else {
                    return Ok(());
                };
                let row = q::get(tx, conv)?.ok_or(DomainError::NotFound)?;
                let m = q::message(tx, mid)?.ok_or(DomainError::NotFound)?;
                let e = conv_event(
                    tx,
                    &row,
                    "conversation.message_updated",
                    serde_json::json!({"conversation_id": conv, "message": m}),
                )?;
                tx.emit(e);
                Ok(())
            })
            .await
    }
}

/// The language the customer chose in their Telegram chat, if they did.
fn chat_language(c: &Conn, conv: &ConversationRow) -> DomainResult<Option<String>> {
    if conv.channel != "telegram" {
        return Ok(None);
    }
    Ok(tg::chat(c, conv.address.parse().unwrap_or_default())?.and_then(|ch| ch.language))
}

/// Quick replies, procedures or inbox settings changed: open inbox screens refresh them.
fn inbox_changed() -> Event {
    Event::new(
        "inbox.settings_updated",
        serde_json::json!({}),
        Audience::Staff {
            masters: Vec::new(),
        },
    )
}

/// Template values for a thread: the customer, their latest open order, the shop's hours.
fn thread_data(c: &Conn, conv: &ConversationRow, lang: Language) -> DomainResult<TemplateData> {
    let mut d = TemplateData::new();
    d.insert(
        "customer_name".into(),
        conv.customer_name
            .clone()
            .unwrap_or_else(|| conv.title.clone()),
    );
    d.insert(
        "shop_hours".into(),
        kv::get(c, "shop.hours")?.unwrap_or_default(),
    );
    d.insert(
        "shop_name".into(),
        kv::get(c, "shop.name")?.unwrap_or_default(),
    );
    if let Some(cid) = conv.customer_id {
        if let Some((oid, _)) = q::open_orders_of(c, cid)?.first() {
            if let Some(o) = crate::db::orders::get(c, *oid)? {
                let status = crate::db::orders::statuses(c)?
                    .into_iter()
                    .find(|s| s.id == o.status_id)
                    .map(|s| match lang {
                        Language::UzLatn => s.name_uz,
                        Language::UzCyrl => s.name_uz_cyrl,
                        Language::Ru => s.name_ru,
                        Language::En => s.name_en,
                    })
                    .unwrap_or_default();
                d.insert("order_number".into(), o.number.clone());
                d.insert("status".into(), status);
                d.insert(
                    "balance_due".into(),
                    Tr::new(lang).money((o.total - o.paid).max(0)),
                );
                d.insert(
                    "device".into(),
                    format!("{} {}", o.brand, o.model).trim().to_string(),
                );
            }
        }
    }
    Ok(d)
}

/// A file name safe to show and to send in Content-Disposition: no path, no control
/// characters, the sniffed extension.
pub fn clean_file_name(name: &str, ext: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let stem: String = base
        .rsplit_once('.')
        .map_or(base, |(s, _)| s)
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '*' | '?' | '|'))
        .take(80)
        .collect();
    let stem = stem.trim();
    if stem.is_empty() {
        format!("file.{ext}")
    } else {
        format!("{stem}.{ext}")
    }
}

pub async fn write_file(path: &Path, data: Vec<u8>) -> DomainResult<()> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(p.parent().expect("has a parent"))?;
        std::fs::write(&p, &data)?;
        std::fs::File::open(&p)?.sync_all()
    })
    .await
    .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))?
    .map_err(|e| DomainError::Db(crate::db::DbError::Task(format!("saving the file: {e}"))))
}

// ---- the web chat widget (issue 17): anonymous visitors write into the same inbox ----

/// Longest widget message (characters).
pub const MAX_WEB_TEXT: usize = 2000;
/// Messages one widget visitor may send in their thread (a session): beyond it they are
/// asked to call.
pub const MAX_WEB_MESSAGES: i64 = 200;
/// Longest visitor name.
pub const MAX_WEB_NAME: usize = 80;

/// A widget visitor's id: random, made by the widget, 16 to 64 URL-safe characters.
pub fn valid_visitor(v: &str) -> bool {
    (16..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Stores what a widget visitor wrote, in a thread with channel `web` and the visitor's
/// id as its address (created on the first message); reopens a closed thread and
/// assigns it automatically like a Telegram message. Returns the message id.
pub fn ingest_web(
    tx: &mut Tx<'_>,
    visitor: &str,
    name: &str,
    text: &str,
    online: &[UserId],
) -> DomainResult<i64> {
    let now = tx.now();
    let (conv, created) = q::open_for(tx, "web", visitor, name, None, now)?;
    if !created && !name.is_empty() {
        q::set_title(tx, conv, name)?;
    }
    if q::inbound_count(tx, conv)? >= MAX_WEB_MESSAGES {
        return Err(DomainError::conflict(
            Msg::new("err.widget.too_many").with("max", MAX_WEB_MESSAGES),
        ));
    }
    let mid = q::insert_message(
        tx,
        &NewMessage {
            conversation_id: conv,
            direction: "in",
            kind: "text",
            body: text,
            ..Default::default()
        },
        now,
    )?
    .expect("widget messages carry no update id");
    if q::on_inbound(tx, conv, &preview("text", text), now)? {
        history(tx, conv, "reopened", serde_json::json!({"by": "customer"}))?;
    }
    let row = q::get(tx, conv)?.ok_or(DomainError::NotFound)?;
    if row.assignee_id.is_none() && flag(tx, AUTO_ASSIGN)? {
        if let Some(agent) = pick_agent(tx, online)? {
            q::set_assignee(tx, conv, Some(agent))?;
            let name = crate::db::accounts::user_by_id(tx, agent)?
                .map(|u| u.display_name)
                .unwrap_or_default();
            history(
                tx,
                conv,
                "assigned",
                serde_json::json!({"to": agent, "to_name": name, "auto": true}),
            )?;
        }
    }
    let row = q::get(tx, conv)?.ok_or(DomainError::NotFound)?;
    message_event(tx, &row, mid)?;
    // An anonymous visitor's only trace besides the thread: who wrote when, from the web.
    tx.log(
        "message",
        "conversation",
        conv,
        serde_json::json!({"channel": "web", "message": mid, "created": created}),
    );
    Ok(mid)
}

pub use crate::db::conversations::VisitorMessage;

impl Conversations {
    /// A widget visitor's message (the web layer checked the widget is on, the site and
    /// the rate limits). `name` is optional; text is trimmed and bounded.
    pub async fn web_post(
        &self,
        visitor: &str,
        name: &str,
        text: &str,
    ) -> DomainResult<VisitorMessage> {
        if !valid_visitor(visitor) {
            return Err(DomainError::invalid("err.widget.visitor"));
        }
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(DomainError::invalid("err.widget.empty"));
        }
        if text.chars().count() > MAX_WEB_TEXT {
            return Err(DomainError::invalid(
                Msg::new("err.widget.too_long").with("max", MAX_WEB_TEXT),
            ));
        }
        let name: String = name.trim().chars().filter(|c| !c.is_control()).collect();
        if name.chars().count() > MAX_WEB_NAME {
            return Err(DomainError::invalid(
                Msg::new("err.widget.name_too_long").with("max", MAX_WEB_NAME),
            ));
        }
        let visitor = visitor.to_string();
        let online = self.online.users();
        let t = text.clone();
        let (id, created_at) = self
            .store
            .write(super::work::Who::System, move |tx| {
                let id = ingest_web(tx, &visitor, &name, &t, &online)?;
                Ok((id, tx.now()))
            })
            .await?;
        Ok(VisitorMessage {
            id,
            mine: true,
            text,
            created_at,
        })
    }

    /// What a widget visitor sees after message `after`: their messages and the shop's
    /// replies. With `wait`, waits up to that long for something new (long-poll) and
    /// returns at once when a message of the thread is committed.
    pub async fn web_messages(
        &self,
        visitor: &str,
        after: i64,
        wait: std::time::Duration,
    ) -> DomainResult<Vec<VisitorMessage>> {
        if !valid_visitor(visitor) {
            return Err(DomainError::invalid("err.widget.visitor"));
        }
        // Subscribed before reading, so a reply committed in between is not missed.
        let mut rx = self.store.events().subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let v = visitor.to_string();
            let (conv, rows) = self
                .store
                .view(move |c| {
                    let Some(conv) = q::by_address(c, "web", &v)? else {
                        return Ok((None, Vec::new()));
                    };
                    Ok((Some(conv), q::visitor_messages(c, conv, after, 200)?))
                })
                .await?;
            if !rows.is_empty() {
                return Ok(rows);
            }
            // Wait for a message of this thread (or, before the first message, of any
            // web thread: the visitor's own first message creates it).
            let ours = |e: &crate::events::Event| {
                e.kind == "conversation.message"
                    && match conv {
                        Some(id) => e.data["conversation"]["id"].as_i64() == Some(id),
                        None => e.data["conversation"]["channel"] == "web",
                    }
            };
            let got = tokio::time::timeout_at(deadline, async {
                loop {
                    match rx.recv().await {
                        Ok(e) if ours(&e) => return true,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                    }
                }
            })
            .await;
            if !matches!(got, Ok(true)) {
                return Ok(Vec::new());
            }
        }
    }
}
