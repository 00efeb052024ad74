//! The inbox: conversations with customers (tabs, search, the thread with the customer
//! beside it, replies with files and quick replies, assignment and transfer), the inbox
//! settings (quick replies, automatic assignment, masters' access, agents' times) and the
//! shop's procedures.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::core_ui::money;
use super::orders::orders_table;
use super::{html_status, redirect};
use crate::domain::conversations::{
    ConversationRow, InboxQuery, MessageRow, QuickReply, ReplyInput, Tab, Thread, Upload,
};
use crate::domain::orders::OrderFilter;
use crate::domain::{Action, Actor, DomainError};
use crate::model::{PhoneNumber, Role};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

const PER_PAGE: i64 = 50;

fn fail(ui: &Ui, err: DomainError) -> HttpResponse {
    PageError { err, tr: ui.tr }.error_response()
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    tab: Option<String>,
    q: Option<String>,
    /// Keyset cursor `<last_message_at>.<id>`.
    before: Option<String>,
    /// Older messages of the open thread, before this message id.
    older: Option<i64>,
}

impl ListQuery {
    fn inbox(&self, actor: &Actor) -> InboxQuery {
        let default = if actor.role == Role::Master {
            Tab::All
        } else {
            Tab::Unassigned
        };
        InboxQuery {
            tab: self.tab.as_deref().and_then(Tab::parse).unwrap_or(default),
            search: self.q.clone(),
            before: self.before.as_deref().and_then(|b| {
                let (at, id) = b.split_once('.')?;
                Some((at.parse().ok()?, id.parse().ok()?))
            }),
            limit: PER_PAGE,
            ..Default::default()
        }
    }
}

fn tab_label(ui: &Ui, t: Tab) -> &'static str {
    match t {
        Tab::Unassigned => ui.t("inbox.tab.unassigned"),
        Tab::Mine => ui.t("inbox.tab.mine"),
        Tab::All => ui.t("inbox.tab.all"),
        Tab::Closed => ui.t("inbox.tab.closed"),
    }
}

fn who(c: &ConversationRow) -> String {
    c.customer_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| (!c.title.is_empty()).then(|| c.title.clone()))
        .unwrap_or_else(|| format!("#{}", c.id))
}

/// "5 min", "2 h", "3 d": how long the customer has waited.
fn waited(ui: &Ui, since: i64) -> String {
    let s = (ui.clock().now() - since).max(0);
    if s < 3600 {
        format!("{} {}", (s / 60).max(1), ui.t("inbox.minutes"))
    } else if s < 86_400 {
        format!("{} {}", s / 3600, ui.t("inbox.hours"))
    } else {
        format!("{} {}", s / 86_400, ui.t("inbox.days"))
    }
}

fn list_column(
    ui: &Ui,
    q: &ListQuery,
    tab: Tab,
    rows: &[ConversationRow],
    open: Option<i64>,
) -> Markup {
    let search = q.q.clone().unwrap_or_default();
    let link = |id: i64| {
        let mut l = format!("/inbox/{id}?tab={}", tab.as_str());
        if !search.is_empty() {
            l += &format!("&q={}", urlencode(&search));
        }
        l
    };
    html! {
        section.inbox-list aria-label=(ui.t("inbox.title")) {
            nav.inbox-tabs {
                @for t in Tab::ALL {
                    a href=(format!("/inbox?tab={}", t.as_str())) aria-current=[(t == tab).then_some("page")] { (tab_label(ui, t)) }
                }
            }
            form.inbox-search method="get" action="/inbox" {
                input type="hidden" name="tab" value=(tab.as_str());
                input type="search" name="q" value=(search) placeholder=(ui.t("inbox.search")) aria-label=(ui.t("inbox.search"));
            }
            div #inbox-list-region data-live-topics="conversation.message conversation.updated conversation.deleted" {
                @if rows.is_empty() {
                    p.empty { (ui.t("inbox.empty")) }
                }
                ul.conv-list {
                    @for c in rows {
                        li.conv-item.unread[c.unread > 0] aria-current=[(Some(c.id) == open).then_some("true")] data-conversation=(c.id) {
                            a href=(link(c.id)) {
                                span.conv-who { (who(c)) }
                                @if c.unread > 0 { span.badge.conv-unread { (c.unread) } }
                                span.conv-time { (ui.datetime(c.last_message_at)) }
                                span.conv-preview { (c.last_preview) }
                                span.conv-meta {
                                    @if let Some(w) = c.waiting_since { span.conv-wait title=(ui.t("inbox.waiting")) { "⏱ " (waited(ui, w)) } }
                                    @if let Some(a) = &c.assignee_name { span.conv-agent { "→ " (a) } }
                                    @if c.channel == "web" { span.conv-channel { (ui.t("inbox.channel.web")) } }
                                }
                            }
                        }
                    }
                }
                @if rows.len() as i64 == PER_PAGE {
                    @if let Some(last) = rows.last() {
                        a.button href=(format!("/inbox?tab={}&q={}&before={}.{}", tab.as_str(), urlencode(&search), last.last_message_at, last.id)) { (ui.t("inbox.older")) }
                    }
                }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|v| v.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

/// A history entry's text: "Dilnoza took the conversation", "transferred from A to B: note".
fn event_text(ui: &Ui, m: &MessageRow) -> String {
    let d: serde_json::Value = serde_json::from_str(&m.body).unwrap_or_default();
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    let by = m.author_name.clone().unwrap_or_default();
    let mut text = match m.kind.as_str() {
        "assigned" if d["auto"].as_bool() == Some(true) => ui
            .tr
            .f("inbox.history.auto_assigned", &[("to", &s("to_name"))]),
        "assigned" => ui.tr.f(
            "inbox.history.assigned",
            &[("by", &by), ("to", &s("to_name"))],
        ),
        "transferred" => ui.tr.f(
            "inbox.history.transferred",
            &[
                ("by", &by),
                ("from", &s("from_name")),
                ("to", &s("to_name")),
            ],
        ),
        "unassigned" => ui.tr.f("inbox.history.unassigned", &[("by", &by)]),
        "closed" => ui.tr.f("inbox.history.closed", &[("by", &by)]),
        "reopened" if by.is_empty() => ui.t("inbox.history.reopened_by_customer").to_string(),
        "reopened" => ui.tr.f("inbox.history.reopened", &[("by", &by)]),
        "linked" if d["customer_id"].is_null() => ui.tr.f("inbox.history.unlinked", &[("by", &by)]),
        "linked" if by.is_empty() => ui.t("inbox.history.linked_by_phone").to_string(),
        "linked" => ui.tr.f("inbox.history.linked", &[("by", &by)]),
        _ => m.kind.clone(),
    };
    let note = s("note");
    if !note.is_empty() {
        text += &format!(" — {note}");
    }
    text
}

fn delivery(ui: &Ui, m: &MessageRow) -> Markup {
    if m.direction != "out" {
        return html! {};
    }
    // Rows delivered long ago lose their outbox row (kept 30 days): they were sent.
    let state = m.delivery.as_deref().unwrap_or("sent");
    let label = match state {
        "pending" | "sending" => ui.t("inbox.delivery.queued"),
        "sent" => ui.t("inbox.delivery.sent"),
        "failed" => ui.t("inbox.delivery.failed"),
        _ => ui.t("inbox.delivery.dead"),
    };
    html! {
        span.delivery data-state=(state) title=[m.delivery_error.as_deref()] {
            (label)
            @if let Some(e) = m.delivery_error.as_deref().filter(|_| matches!(state, "failed" | "dead")) { ": " (e) }
        }
    }
}

fn file_part(ui: &Ui, m: &MessageRow) -> Markup {
    let Some(state) = m.file_state.as_deref() else {
        return html! {};
    };
    let href = format!("/inbox/files/{}", m.id);
    let name = m.file_name.clone().unwrap_or_else(|| m.kind.clone());
    let mime = m.file_mime.as_deref().unwrap_or("");
    html! {
        div.msg-file {
            @match state {
                "stored" if mime.starts_with("image/") => {
                    a href=(href) target="_blank" rel="noopener" { img src=(href) alt=(name) loading="lazy"; }
                }
                "stored" if mime.starts_with("audio/") => {
                    audio controls preload="none" src=(href) {}
                    a href=(format!("{href}?download=1")) { (name) }
                }
                "stored" if mime.starts_with("video/") => {
                    video controls preload="none" src=(href) {}
                }
                "stored" => { a href=(format!("{href}?download=1")) { "📎 " (name) } }
                "pending" => { span.muted { (ui.t("inbox.file.pending")) " · " (name) } }
                "refused" => { span.error { (ui.t("inbox.file.refused")) " · " (name) } }
                _ => { span.error { (ui.t("inbox.file.failed")) " · " (name) } }
            }
        }
    }
}

fn message_item(ui: &Ui, m: &MessageRow) -> Markup {
    if m.direction == "event" {
        return html! {
            li.msg.msg-event data-message=(m.id) { span { (event_text(ui, m)) } " " time { (ui.datetime(m.created_at)) } }
        };
    }
    let location = (m.kind == "location").then(|| {
        let q = m.body.replace(' ', "");
        format!(
            "https://www.openstreetmap.org/?mlat={}&mlon={}&zoom=16",
            q.split(',').next().unwrap_or(""),
            q.split(',').nth(1).unwrap_or("")
        )
    });
    html! {
        li class=(format!("msg msg-{}", m.direction)) data-message=(m.id) {
            div.msg-head {
                @if m.direction == "in" { span.msg-author { (ui.t("inbox.customer")) } }
                @else { span.msg-author { (m.author_name.clone().unwrap_or_else(|| ui.t("inbox.bot_name").to_string())) } }
                @if m.direction == "note" { span.badge { (ui.t("inbox.note")) } }
                @if let Some(n) = &m.order_number { a.msg-order href=(format!("/orders/{}", m.order_id.unwrap_or_default())) { "№" (n) } }
                time { (ui.datetime(m.created_at)) }
            }
            (file_part(ui, m))
            @if let Some(l) = location {
                a href=(l) target="_blank" rel="noopener noreferrer" { "📍 " (m.body) }
            } @else if !m.body.is_empty() {
                div.msg-body { (m.body) }
            }
            (delivery(ui, m))
        }
    }
}

async fn customer_panel(ui: &Ui, actor: &Actor, c: &ConversationRow) -> Markup {
    let ctx = &ui.state.ctx;
    let Some(cid) = c.customer_id else {
        return html! {
            aside.inbox-customer {
                h2 { (ui.t("inbox.unknown_sender")) }
                p.muted { (ui.t("inbox.unknown_hint")) }
                @if actor.can(Action::ReplyConversations) && actor.can(Action::ViewCustomers) {
                    (link_form(ui, c))
                }
            }
        };
    };
    let customer = ctx.customers.get(actor, cid).await.ok();
    let (orders, _) = ctx
        .orders
        .list(
            actor,
            OrderFilter {
                customer_id: Some(cid),
                limit: 20,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_default();
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let shop = crate::domain::shop::load(&ctx.db).await.unwrap_or_default();
    let balance: i64 = orders
        .iter()
        .filter(|o| o.status_group != "closed" || o.total - o.discount > o.paid)
        .map(|o| o.total - o.discount - o.paid)
        .sum();
    let calls = super::calls::customer_section(ui, actor, cid).await;
    html! {
        aside.inbox-customer {
            @if let Some(cu) = &customer {
                h2 {
                    @if actor.can(Action::ViewCustomers) { a href=(format!("/customers/{}", cu.id)) { (cu.name) } }
                    @else { (cu.name) }
                }
                p { @for p in &cu.phones { (PhoneNumber::from_e164_unchecked(p.clone()).display()) " " } }
                @if actor.can(Action::ViewCustomers) {
                    p { (ui.t("orders.balance")) ": " strong { (money(&shop, balance)) } }
                }
            }
            @if actor.can(Action::CreateOrders) {
                a.button.primary href=(format!("/orders/new?customer={cid}")) { (ui.t("orders.new")) }
            }
            @if !orders.is_empty() {
                div.table-wrap { (orders_table(ui, &shop, &statuses, &orders)) }
            }
            (calls)
            @if actor.can(Action::ReplyConversations) && actor.can(Action::ViewCustomers) {
                details { summary { (ui.t("inbox.link.change")) } (link_form(ui, c)) }
            }
            (procedures_aside(ui, actor).await)
        }
    }
}

/// The shop's procedures beside a thread: a search and the documents' titles.
async fn procedures_aside(ui: &Ui, actor: &Actor) -> Markup {
    let docs = ui
        .state
        .ctx
        .conversations
        .procedures(actor, None)
        .await
        .unwrap_or_default();
    html! {
        details.procedures-aside {
            summary { (ui.t("procedures.title")) }
            form method="get" action="/procedures" target="_blank" {
                input type="search" name="q" placeholder=(ui.t("procedures.search")) aria-label=(ui.t("procedures.search"));
            }
            ul { @for d in docs.iter().take(15) { li { a href=(format!("/procedures?id={}", d.id)) target="_blank" { (d.title) } } } }
        }
    }
}

fn link_form(ui: &Ui, c: &ConversationRow) -> Markup {
    html! {
        form.stack method="post" action=(format!("/inbox/{}/link", c.id)) {
            (csrf_field(ui))
            label { (ui.t("inbox.link.by_phone")) input name="customer" type="text" inputmode="tel" required; }
            button type="submit" { (ui.t("inbox.link.go")) }
        }
        @if c.customer_id.is_some() {
            form method="post" action=(format!("/inbox/{}/link", c.id)) {
                (csrf_field(ui))
                input type="hidden" name="customer" value="";
                button.link type="submit" { (ui.t("inbox.link.remove")) }
            }
        }
    }
}

async fn agents(ui: &Ui) -> Vec<(i64, String)> {
    ui.state
        .ctx
        .accounts
        .list_users()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u.active && u.role != Role::Master)
        .map(|u| (u.id, u.display_name))
        .collect()
}

async fn thread_column(
    ui: &Ui,
    actor: &Actor,
    t: &Thread,
    quick: &[QuickReply],
    notice: Option<(&str, &str)>,
) -> Markup {
    let c = &t.conversation;
    let can_reply = actor.can(Action::ReplyConversations);
    let agents = if can_reply {
        agents(ui).await
    } else {
        Vec::new()
    };
    let open_orders: Vec<(i64, String)> = match c.customer_id {
        Some(cid) => ui
            .state
            .ctx
            .orders
            .list(
                actor,
                OrderFilter {
                    customer_id: Some(cid),
                    limit: 20,
                    ..Default::default()
                },
            )
            .await
            .map(|(rows, _)| {
                rows.into_iter()
                    .filter(|o| o.status_group != "closed")
                    .map(|o| (o.id, o.number))
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    html! {
        section.inbox-thread #thread data-conversation=(c.id) data-me=(actor.user_id) {
            div.thread-head {
                h1 { (who(c)) }
                span.muted {
                    @if c.state == "closed" { (ui.t("inbox.state.closed")) } @else { (ui.t("inbox.state.open")) }
                    @if let Some(a) = &c.assignee_name { " · " (ui.t("inbox.assignee")) ": " (a) }
                }
                @if can_reply {
                    div.thread-actions {
                        @if c.assignee_id != Some(actor.user_id) && (c.assignee_id.is_none() || actor.role == Role::Admin) {
                            form.inline method="post" action=(format!("/inbox/{}/assign", c.id)) {
                                (csrf_field(ui))
                                input type="hidden" name="user_id" value=(actor.user_id);
                                button #take-conversation type="submit" { (ui.t("inbox.take")) }
                            }
                        }
                        @if c.state == "open" {
                            form.inline method="post" action=(format!("/inbox/{}/close", c.id)) {
                                (csrf_field(ui)) button type="submit" { (ui.t("inbox.close")) }
                            }
                        } @else {
                            form.inline method="post" action=(format!("/inbox/{}/reopen", c.id)) {
                                (csrf_field(ui)) button type="submit" { (ui.t("inbox.reopen")) }
                            }
                        }
                        @if actor.can(Action::ExportConversations) {
                            a.button href=(format!("/inbox/{}/export.pdf", c.id)) { "PDF" }
                        }
                        details.transfer {
                            summary { (ui.t("inbox.transfer")) }
                            form #transfer-form.stack method="post" action=(format!("/inbox/{}/assign", c.id)) {
                                (csrf_field(ui))
                                label { (ui.t("inbox.transfer_to"))
                                    select name="user_id" {
                                        option value="" { (ui.t("inbox.unassigned")) }
                                        @for (id, name) in &agents {
                                            option value=(id) selected[c.assignee_id == Some(*id)] { (name) }
                                        }
                                    }
                                }
                                label { (ui.t("inbox.transfer_note")) textarea name="note" rows="2" maxlength="1000" {} }
                                button type="submit" { (ui.t("inbox.transfer")) }
                            }
                        }
                    }
                }
            }
            @if let Some((kind, text)) = notice { (flash(Some(text), kind)) }
            div #thread-region.thread-messages data-live-topics="conversation.message conversation.message_updated conversation.updated" {
                @if t.more_before {
                    @if let Some(first) = t.messages.first() {
                        a.button href=(format!("/inbox/{}?older={}", c.id, first.id)) { (ui.t("inbox.older_messages")) }
                    }
                }
                ol.messages { @for m in &t.messages { (message_item(ui, m)) } }
            }
            p #typing.typing aria-live="polite" data-template=(ui.t("inbox.typing")) {}
            @if can_reply {
                form #reply-form.reply method="post" enctype="multipart/form-data" action=(format!("/inbox/{}/reply?_csrf={}", c.id, ui.csrf)) {
                    (csrf_field(ui))
                    ul #quick-list.quick-list hidden {
                        @for r in quick {
                            li { button type="button" data-quick=(r.id) data-shortcut=(r.shortcut) { "/" (r.shortcut) " — " (r.title) } }
                        }
                    }
                    label.visually-hidden for="reply-text" { (ui.t("inbox.reply")) }
                    textarea #reply-text name="text" rows="3" maxlength="4096" placeholder=(ui.t("inbox.reply_hint")) {}
                    div.reply-tools {
                        input type="file" name="file" aria-label=(ui.t("inbox.attach"));
                        @if !open_orders.is_empty() {
                            select name="order_id" aria-label=(ui.t("inbox.about_order")) {
                                option value="" { (ui.t("inbox.about_order")) }
                                @for (id, n) in &open_orders { option value=(id) { "№" (n) } }
                            }
                        }
                        @if !open_orders.is_empty() {
                            label.inline { input type="checkbox" name="receipt" value="1"; " " (ui.t("inbox.attach_receipt")) }
                        }
                        label.inline { input type="checkbox" name="note" value="1"; " " (ui.t("inbox.as_note")) }
                        button.primary type="submit" { (ui.t("inbox.send")) }
                    }
                }
            }
        }
    }
}

async fn render(
    ui: &Ui,
    actor: &Actor,
    q: &ListQuery,
    open: Option<i64>,
    notice: Option<(&str, &str)>,
    status: StatusCode,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let query = q.inbox(actor);
    let tab = query.tab;
    let rows = match ctx.conversations.list(actor, query).await {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    let thread = match open {
        // A page shown after a refused change reads the thread without marking it read:
        // the refusal changes nothing.
        Some(id) => match ctx
            .conversations
            .thread(actor, id, q.older, status.is_success())
            .await
        {
            Ok(t) => Some(t),
            Err(e) => return fail(ui, e),
        },
        None => None,
    };
    let quick = ctx
        .conversations
        .quick_replies(actor)
        .await
        .unwrap_or_default();
    let (masters_allowed, _) = ctx.conversations.settings().await.unwrap_or_default();
    let middle = match &thread {
        Some(t) => thread_column(ui, actor, t, &quick, notice).await,
        None => html! {
            section.inbox-thread {
                @if let Some((kind, text)) = notice { (flash(Some(text), kind)) }
                p.empty { (ui.t("inbox.pick")) }
            }
        },
    };
    let side = match &thread {
        Some(t) => customer_panel(ui, actor, &t.conversation).await,
        None => html! {},
    };
    let title = match &thread {
        Some(t) => format!("{} · {}", who(&t.conversation), ui.t("inbox.title")),
        None => ui.t("inbox.title").to_string(),
    };
    html_status(
        status,
        page(
            ui,
            &title,
            html! {
                @if actor.role == Role::Master && !masters_allowed {
                    (flash(Some(ui.t("inbox.masters_off")), "info"))
                }
                div.inbox {
                    (list_column(ui, q, tab, &rows, open))
                    (middle)
                    (side)
                }
                @if actor.can(Action::ManageInbox) {
                    p { a href="/inbox/settings" { (ui.t("inbox.settings.title")) } " · " a href="/procedures" { (ui.t("procedures.title")) } }
                } @else {
                    p { a href="/procedures" { (ui.t("procedures.title")) } }
                }
            },
        ),
    )
}

pub async fn list(ui: Ui, actor: Actor, q: web::Query<ListQuery>) -> HttpResponse {
    render(&ui, &actor, &q, None, None, StatusCode::OK).await
}

pub async fn show(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    render(
        &ui,
        &actor,
        &q,
        Some(path.into_inner()),
        None,
        StatusCode::OK,
    )
    .await
}

/// After a change: back to the thread, or the thread with the error.
async fn after<T>(ui: &Ui, actor: &Actor, id: i64, r: Result<T, DomainError>) -> HttpResponse {
    // A role may answer threads without the right to browse the inbox: its refusals are
    // told on a page of their own, not on the inbox it may not see.
    if !actor.can(Action::ViewConversations) {
        if let Err(e) = r {
            return fail(ui, e);
        }
    }
    match r {
        Ok(_) => redirect(&format!("/inbox/{id}")),
        Err(DomainError::Invalid(m)) => {
            render(
                ui,
                actor,
                &ListQuery::default(),
                Some(id),
                Some(("error", &ui.msg(&m))),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(DomainError::Conflict(m)) => {
            render(
                ui,
                actor,
                &ListQuery::default(),
                Some(id),
                Some(("error", &ui.msg(&m))),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => fail(ui, e),
    }
}

/// The reply form: text, optional file, optional order, note flag (multipart).
pub async fn reply(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    form: actix_multipart::Multipart,
) -> HttpResponse {
    use crate::web::multipart::{self, UploadError};
    let id = path.into_inner();
    let limit = crate::domain::conversations::MAX_FILE_BYTES;
    let malformed = || DomainError::invalid("err.inbox.malformed");
    let cap = |name: &str| if name == "file" { limit } else { 64 * 1024 };
    let parts = match multipart::read(form, cap).await {
        Ok(p) => p,
        Err(UploadError::TooLarge { .. }) => {
            let m = crate::i18n::Msg::new("err.inbox.file_too_large")
                .with("mb", multipart::megabytes(limit));
            return render(
                &ui,
                &actor,
                &ListQuery::default(),
                Some(id),
                Some(("error", &ui.msg(&m))),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
            .await;
        }
        Err(UploadError::Malformed) => {
            return after(&ui, &actor, id, Err::<(), _>(malformed())).await
        }
    };
    let mut input = ReplyInput::default();
    let mut file: Option<Upload> = None;
    let mut receipt = false;
    for part in parts {
        match part.name.as_str() {
            "text" => match part.text() {
                Some(t) => input.text = t.to_string(),
                None => return after(&ui, &actor, id, Err::<(), _>(malformed())).await,
            },
            "order_id" => input.order_id = part.text().and_then(|t| t.trim().parse().ok()),
            "note" => input.note = part.ticked(),
            "receipt" => receipt = part.ticked(),
            "file" if !part.bytes.is_empty() => {
                file = Some(Upload {
                    name: part.file_name.unwrap_or_default(),
                    data: part.bytes,
                })
            }
            _ => {}
        }
    }
    // "Attach the receipt": the chosen order's intake receipt as a PDF, in the
    // customer's language, sent like any document.
    if receipt && file.is_none() {
        let ctx = &ui.state.ctx;
        let Some(order) = input.order_id else {
            let e = DomainError::invalid("err.inbox.receipt_order");
            return after(&ui, &actor, id, Err::<(), _>(e)).await;
        };
        let made = async {
            let lang = ctx.conversations.customer_language(&actor, id).await?;
            let number = ctx.orders.get(&actor, order).await?.number;
            let pdf = crate::domain::documents::receipt_pdf(
                &ctx.orders,
                &ctx.db,
                ui.clock(),
                &actor,
                order,
                lang,
            )
            .await?;
            Ok::<_, DomainError>(Upload {
                name: format!("{number}.pdf"),
                data: pdf,
            })
        }
        .await;
        match made {
            Ok(u) => file = Some(u),
            Err(e) => return after(&ui, &actor, id, Err::<(), _>(e)).await,
        }
    }
    let r = ui
        .state
        .ctx
        .conversations
        .reply(&actor, id, input, file)
        .await;
    after(&ui, &actor, id, r).await
}

#[derive(Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    note: String,
}

pub async fn assign(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<AssignForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let to = match f.user_id.trim() {
        "" => None,
        s => match s.parse() {
            Ok(u) => Some(u),
            Err(_) => {
                return after(
                    &ui,
                    &actor,
                    id,
                    Err::<(), _>(DomainError::invalid("err.inbox.not_an_agent")),
                )
                .await
            }
        },
    };
    let r = ui
        .state
        .ctx
        .conversations
        .assign(&actor, id, to, &f.note)
        .await;
    after(&ui, &actor, id, r).await
}

pub async fn close(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    let r = ui.state.ctx.conversations.close(&actor, id).await;
    after(&ui, &actor, id, r).await
}

pub async fn reopen(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    let r = ui.state.ctx.conversations.reopen(&actor, id).await;
    after(&ui, &actor, id, r).await
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    customer: String,
}

/// Links by a phone number (or `#id`); an empty field unlinks.
pub async fn link(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    f: web::Form<LinkForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let ctx = &ui.state.ctx;
    let typed = f.customer.trim();
    let customer = if typed.is_empty() {
        None
    } else if let Some(n) = typed.strip_prefix('#').and_then(|n| n.parse().ok()) {
        Some(n)
    } else {
        let found = ctx
            .customers
            .find_by_phone(&actor, typed)
            .await
            .ok()
            .and_then(|v| v.first().map(|c| c.id));
        match found {
            Some(c) => Some(c),
            None => {
                return after(
                    &ui,
                    &actor,
                    id,
                    Err::<(), _>(DomainError::invalid("err.inbox.no_customer")),
                )
                .await
            }
        }
    };
    let r = ctx.conversations.link_customer(&actor, id, customer).await;
    after(&ui, &actor, id, r).await
}

/// The agent is typing: others see it; the customer sees "typing…" in Telegram.
pub async fn typing(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .conversations
        .typing(&actor, path.into_inner())
        .await
    {
        Ok(chat) => {
            if let Some(chat) = chat {
                let n = ui.state.ctx.notifications.clone();
                // Network I/O off the request, after nothing was written.
                actix_web::rt::spawn(async move { crate::notify::send_typing(&n, chat).await });
            }
            HttpResponse::NoContent().finish()
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn delete(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .conversations
        .delete(&actor, path.into_inner())
        .await
    {
        Ok(()) => redirect("/inbox"),
        Err(e) => fail(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct FileQuery {
    download: Option<String>,
}

/// A stored file: its sniffed type, never HTML, never run as a page.
pub async fn file(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    q: web::Query<FileQuery>,
) -> HttpResponse {
    let (p, mime, name) = match ui
        .state
        .ctx
        .conversations
        .file(&actor, path.into_inner())
        .await
    {
        Ok(f) => f,
        Err(e) => return fail(&ui, e),
    };
    let Ok(data) = tokio::fs::read(&p).await else {
        return fail(&ui, DomainError::NotFound);
    };
    let inline = q.download.is_none()
        && (mime.starts_with("image/") || mime.starts_with("audio/") || mime.starts_with("video/"));
    let name = crate::domain::conversations::clean_file_name(
        &name,
        name.rsplit('.').next().unwrap_or("bin"),
    );
    HttpResponse::Ok()
        .content_type(mime)
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", "sandbox; default-src 'none'"))
        .insert_header(("Cache-Control", "private, max-age=86400"))
        .insert_header((
            "Content-Disposition",
            format!(
                "{}; filename=\"{}\"",
                if inline { "inline" } else { "attachment" },
                name.replace(|c: char| !c.is_ascii_graphic() && c != ' ', "_")
            ),
        ))
        .body(data)
}

/// A quick reply filled in for the thread (text/plain), inserted by the reply box.
pub async fn quick_reply(ui: Ui, actor: Actor, path: web::Path<(i64, i64)>) -> HttpResponse {
    let (id, qr) = path.into_inner();
    match ui
        .state
        .ctx
        .conversations
        .render_quick_reply(&actor, id, qr)
        .await
    {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(text),
        Err(e) => fail(&ui, e),
    }
}

// ---- settings: quick replies, automatic assignment, masters, agents' times ----

async fn settings_page(
    ui: &Ui,
    actor: &Actor,
    notice: Option<(&str, String)>,
    status: StatusCode,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let quick = ctx
        .conversations
        .quick_replies(actor)
        .await
        .unwrap_or_default();
    let (masters, auto) = ctx.conversations.settings().await.unwrap_or_default();
    let times = ctx
        .conversations
        .agent_times(actor, 30)
        .await
        .unwrap_or_default();
    let mins = |s: Option<i64>| {
        s.map(|s| format!("{} {}", (s + 30) / 60, ui.t("inbox.minutes")))
            .unwrap_or_else(|| "—".into())
    };
    let qr_form = |r: Option<&QuickReply>| {
        let id = r.map(|r| r.id).unwrap_or(0);
        html! {
            form.stack.quick-form method="post" action="/inbox/quick-replies" {
                (csrf_field(ui))
                input type="hidden" name="id" value=(id);
                div.row {
                    label { (ui.t("inbox.quick.shortcut")) input name="shortcut" required maxlength="32" value=[r.map(|r| r.shortcut.as_str())]; }
                    label { (ui.t("inbox.quick.title")) input name="title" required maxlength="120" value=[r.map(|r| r.title.as_str())]; }
                }
                label { "O‘zbekcha" textarea name="body_uz" rows="2" { (r.map(|r| r.body_uz.as_str()).unwrap_or("")) } }
                label { "Ўзбекча" textarea name="body_uz_cyrl" rows="2" { (r.map(|r| r.body_uz_cyrl.as_str()).unwrap_or("")) } }
                label { "Русский" textarea name="body_ru" rows="2" { (r.map(|r| r.body_ru.as_str()).unwrap_or("")) } }
                label { "English" textarea name="body_en" rows="2" { (r.map(|r| r.body_en.as_str()).unwrap_or("")) } }
                button type="submit" { (ui.t("settings.save")) }
            }
        }
    };
    html_status(
        status,
        page(
            ui,
            ui.t("inbox.settings.title"),
            html! {
                h1 { (ui.t("inbox.settings.title")) }
                @if let Some((kind, text)) = &notice { (flash(Some(text), kind)) }
                form.stack method="post" action="/inbox/settings" {
                    (csrf_field(ui))
                    label.inline { input type="checkbox" name="auto_assign" value="1" checked[auto]; " " (ui.t("inbox.settings.auto_assign")) }
                    label.inline { input type="checkbox" name="masters_see_own" value="1" checked[masters]; " " (ui.t("inbox.settings.masters")) }
                    button type="submit" { (ui.t("settings.save")) }
                }
                h2 { (ui.t("inbox.quick.title_plural")) }
                p.muted { (ui.t("inbox.quick.hint")) }
                @for r in &quick {
                    details.quick {
                        summary { "/" (r.shortcut) " — " (r.title) }
                        (qr_form(Some(r)))
                        form method="post" action=(format!("/inbox/quick-replies/{}/delete", r.id)) {
                            (csrf_field(ui)) button.danger type="submit" { (ui.t("inbox.quick.delete")) }
                        }
                    }
                }
                details.quick open[quick.is_empty()] { summary { (ui.t("inbox.quick.new")) } (qr_form(None)) }
                @if actor.can(Action::ViewReports) {
                    h2 { (ui.t("inbox.times.title")) }
                    div.table-wrap { table #agent-times {
                        thead { tr { th { (ui.t("inbox.times.agent")) } th { (ui.t("inbox.times.answered")) } th { (ui.t("inbox.times.first_response")) } th { (ui.t("inbox.times.resolved")) } th { (ui.t("inbox.times.resolution")) } } }
                        tbody { @for t in &times {
                            tr { td { (t.name) } td { (t.answered) } td { (mins(t.avg_first_response_secs)) } td { (t.resolved) } td { (mins(t.avg_resolution_secs)) } }
                        } }
                    } }
                }
            },
        ),
    )
}

pub async fn settings(ui: Ui, actor: Actor) -> HttpResponse {
    settings_page(&ui, &actor, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    auto_assign: Option<String>,
    #[serde(default)]
    masters_see_own: Option<String>,
}

pub async fn save_settings(ui: Ui, actor: Actor, f: web::Form<SettingsForm>) -> HttpResponse {
    match ui
        .state
        .ctx
        .conversations
        .save_settings(&actor, f.masters_see_own.is_some(), f.auto_assign.is_some())
        .await
    {
        Ok(()) => redirect("/inbox/settings"),
        Err(e) => fail(&ui, e),
    }
}

#[derive(Deserialize)]
pub struct QuickForm {
    #[serde(default)]
    id: i64,
    shortcut: String,
    title: String,
    #[serde(default)]
    body_uz: String,
    #[serde(default)]
    body_uz_cyrl: String,
    #[serde(default)]
    body_ru: String,
    #[serde(default)]
    body_en: String,
}

pub async fn save_quick_reply(ui: Ui, actor: Actor, f: web::Form<QuickForm>) -> HttpResponse {
    let f = f.into_inner();
    let r = QuickReply {
        id: f.id,
        shortcut: f.shortcut,
        title: f.title,
        body_uz: f.body_uz,
        body_uz_cyrl: f.body_uz_cyrl,
        body_ru: f.body_ru,
        body_en: f.body_en,
    };
    match ui.state.ctx.conversations.save_quick_reply(&actor, r).await {
        Ok(_) => redirect("/inbox/settings"),
        Err(DomainError::Invalid(m)) => {
            settings_page(
                &ui,
                &actor,
                Some(("error", ui.msg(&m))),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(DomainError::Conflict(m)) => {
            settings_page(
                &ui,
                &actor,
                Some(("error", ui.msg(&m))),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn delete_quick_reply(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .conversations
        .delete_quick_reply(&actor, path.into_inner())
        .await
    {
        Ok(()) => redirect("/inbox/settings"),
        Err(e) => fail(&ui, e),
    }
}

// ---- procedures ----

#[derive(Deserialize)]
pub struct ProcQuery {
    q: Option<String>,
    id: Option<i64>,
    edit: Option<String>,
}

/// Markdown to HTML with raw HTML shown as text (the procedures are the shop's, but a
/// page must never run what someone pasted).
pub fn markdown(src: &str) -> String {
    use pulldown_cmark::{html as md, Event, Options, Parser};
    let parser = Parser::new_ext(src, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(
        |e| match e {
            Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
            Event::Start(pulldown_cmark::Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) if !is_safe_url(&dest_url) => Event::Start(pulldown_cmark::Tag::Link {
                link_type,
                dest_url: "#".into(),
                title,
                id,
            }),
            Event::Start(pulldown_cmark::Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) if !is_safe_url(&dest_url) => Event::Start(pulldown_cmark::Tag::Image {
                link_type,
                dest_url: "#".into(),
                title,
                id,
            }),
            other => other,
        },
    );
    let mut out = String::new();
    md::push_html(&mut out, parser);
    out
}

fn is_safe_url(u: &str) -> bool {
    let l = u.trim().to_ascii_lowercase();
    l.starts_with("https://")
        || l.starts_with("http://")
        || l.starts_with('/')
        || l.starts_with('#')
        || l.starts_with("mailto:")
}

async fn procedures_page(
    ui: &Ui,
    actor: &Actor,
    q: &ProcQuery,
    notice: Option<String>,
    status: StatusCode,
) -> HttpResponse {
    let ctx = &ui.state.ctx;
    let docs = match ctx.conversations.procedures(actor, q.q.clone()).await {
        Ok(d) => d,
        Err(e) => return fail(ui, e),
    };
    let open = match q.id {
        Some(id) => match ctx.conversations.procedure(actor, id).await {
            Ok(d) => Some(d),
            Err(e) => return fail(ui, e),
        },
        None => None,
    };
    let manage = actor.can(Action::ManageInbox);
    let editing = manage && q.edit.is_some();
    html_status(
        status,
        page(
            ui,
            ui.t("procedures.title"),
            html! {
                div.page-head {
                    h1 { (ui.t("procedures.title")) }
                    @if manage { a.button.primary href="/procedures?edit=1" { (ui.t("procedures.new")) } }
                }
                @if let Some(n) = &notice { (flash(Some(n), "error")) }
                form.filters method="get" action="/procedures" {
                    input type="search" name="q" value=(q.q.clone().unwrap_or_default()) placeholder=(ui.t("procedures.search"));
                    button type="submit" { (ui.t("search.go")) }
                }
                div.procedures {
                    ul #procedure-list { @for d in &docs { li { a href=(format!("/procedures?id={}", d.id)) { (d.title) } } } }
                    @if docs.is_empty() { p.empty { (ui.t("procedures.empty")) } }
                    @if editing {
                        form.stack method="post" action="/procedures" {
                            (csrf_field(ui))
                            input type="hidden" name="id" value=(open.as_ref().map(|d| d.id).unwrap_or(0));
                            label { (ui.t("procedures.doc_title")) input name="title" required maxlength="200" value=[open.as_ref().map(|d| d.title.as_str())]; }
                            label { (ui.t("procedures.body")) textarea name="body" rows="16" required { (open.as_ref().map(|d| d.body.as_str()).unwrap_or("")) } }
                            button type="submit" { (ui.t("settings.save")) }
                        }
                    } @else if let Some(d) = &open {
                        article.procedure {
                            h2 { (d.title) }
                            div.markdown { (PreEscaped(markdown(&d.body))) }
                            @if manage {
                                a.button href=(format!("/procedures?id={}&edit=1", d.id)) { (ui.t("procedures.edit")) }
                                form.inline method="post" action=(format!("/procedures/{}/delete", d.id)) {
                                    (csrf_field(ui)) button.danger type="submit" { (ui.t("procedures.delete")) }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

pub async fn procedures(ui: Ui, actor: Actor, q: web::Query<ProcQuery>) -> HttpResponse {
    procedures_page(&ui, &actor, &q, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct ProcForm {
    #[serde(default)]
    id: i64,
    title: String,
    body: String,
}

pub async fn save_procedure(ui: Ui, actor: Actor, f: web::Form<ProcForm>) -> HttpResponse {
    let id = (f.id != 0).then_some(f.id);
    match ui
        .state
        .ctx
        .conversations
        .save_procedure(&actor, id, &f.title, &f.body)
        .await
    {
        Ok(id) => redirect(&format!("/procedures?id={id}")),
        Err(DomainError::Invalid(m)) => {
            let q = ProcQuery {
                q: None,
                id,
                edit: Some("1".into()),
            };
            procedures_page(
                &ui,
                &actor,
                &q,
                Some(ui.msg(&m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => fail(&ui, e),
    }
}

pub async fn delete_procedure(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    match ui
        .state
        .ctx
        .conversations
        .delete_procedure(&actor, path.into_inner())
        .await
    {
        Ok(()) => redirect("/procedures"),
        Err(e) => fail(&ui, e),
    }
}

/// The order page's Telegram section: the customer's messages about the order and the
/// replies, each linking to its thread.
pub async fn order_section(ui: &Ui, actor: &Actor, order: i64) -> Markup {
    let rows = ui
        .state
        .ctx
        .conversations
        .about_order(actor, order)
        .await
        .unwrap_or_default();
    if rows.is_empty() {
        return html! {};
    }
    html! {
        section #order-conversation.card data-live-topics="conversation.message" {
            h2 { (ui.t("inbox.order_section")) }
            ol.messages {
                @for m in &rows {
                    li class=(format!("msg msg-{}", m.direction)) {
                        div.msg-head {
                            @if m.direction == "in" { span { (ui.t("inbox.customer")) } }
                            @else { span { (m.author_name.clone().unwrap_or_else(|| ui.t("inbox.bot_name").to_string())) } }
                            time { (ui.datetime(m.created_at)) }
                            a href=(format!("/inbox/{}", m.conversation_id)) { (ui.t("inbox.open_thread")) }
                        }
                        (file_part(ui, m))
                        @if !m.body.is_empty() { div.msg-body { (m.body) } }
                    }
                }
            }
        }
    }
}
