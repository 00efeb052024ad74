//! Documents as PDF files: a conversation with a customer (for a dispute) and an order's
//! intake receipt (sent to the customer as a reply's attachment). Laid out by
//! `crate::pdf` in the reader's language, times on the shop clock.

use super::clock::ShopClock;
use super::conversations::{ConversationRow, Conversations, MessageRow};
use super::orders::{OrderView, Orders};
use super::shop::ShopSettings;
use super::{Action, Actor, DomainError, DomainResult};
use crate::db::Db;
use crate::i18n::Tr;
use crate::model::{Language, PhoneNumber};
use crate::pdf::{Document, Run};

/// A thread as a PDF for `actor`, who must be allowed to export and to see the thread
/// (masters only see their customers' threads: others are "not found").
pub async fn conversation_pdf(
    conversations: &Conversations,
    db: &Db,
    clock: ShopClock,
    actor: &Actor,
    id: i64,
    lang: Language,
) -> DomainResult<Vec<u8>> {
    if !actor.can(Action::ExportConversations) {
        return Err(DomainError::Forbidden);
    }
    // The inbox's own thread reader decides visibility; its pages go back in time, and
    // messages are only ever appended, so paging by id misses none.
    let first = conversations.thread(actor, id, None, false).await?;
    let conv = first.conversation;
    let mut messages = first.messages;
    let mut more = first.more_before;
    while more {
        let Some(oldest) = messages.first().map(|m| m.id) else {
            break;
        };
        let page = conversations.thread(actor, id, Some(oldest), false).await?;
        more = page.more_before && !page.messages.is_empty();
        let mut older = page.messages;
        older.append(&mut messages);
        messages = older;
    }
    let shop = super::shop::load(db).await?;
    let by = actor.display_name.clone();
    let pdf = tokio::task::spawn_blocking(move || {
        render_conversation(&shop, &conv, &messages, Tr::new(lang), &clock, &by)
    })
    .await
    .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))?;
    Ok(pdf)
}

/// Lays out a thread: the shop, the customer, every message with its time (shop clock),
/// author and direction, files by name, and the thread's history entries.
pub fn render_conversation(
    shop: &ShopSettings,
    conv: &ConversationRow,
    messages: &[MessageRow],
    tr: Tr,
    clock: &ShopClock,
    exported_by: &str,
) -> Vec<u8> {
    let title = tr.f("pdf.conversation_title", &[("id", &conv.id.to_string())]);
    let mut d = Document::new(&title, &format!("{} · {}", shop.name, title));
    d.text(&shop.name, Run::BODY.bold().size(16.0));
    let contact = [shop.address.as_str(), shop.phone.as_str()]
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" · ");
    if !contact.is_empty() {
        d.text(&contact, Run::BODY.gray(0.3));
    }
    d.gap(8.0);
    d.text(&title, Run::BODY.bold().size(13.0));
    let customer = match &conv.customer_name {
        Some(n) if conv.title.is_empty() || *n == conv.title => n.clone(),
        Some(n) => format!("{n} ({})", conv.title),
        None if !conv.title.is_empty() => {
            format!("{} — {}", conv.title, tr.t("pdf.not_linked"))
        }
        None => tr.t("pdf.not_linked").to_string(),
    };
    d.text(&format!("{}: {customer}", tr.t("pdf.customer")), Run::BODY);
    let channel = match conv.channel.as_str() {
        "web" => tr.f("pdf.channel_web", &[("address", &conv.address)]),
        _ => tr.f("pdf.channel_telegram", &[("address", &conv.address)]),
    };
    d.text(&channel, Run::BODY);
    let shown: Vec<&MessageRow> = messages.iter().collect();
    if let (Some(a), Some(b)) = (shown.first(), shown.last()) {
        d.text(
            &tr.f(
                "pdf.period",
                &[
                    ("count", &shown.len().to_string()),
                    ("from", &clock.format_datetime(a.created_at)),
                    ("to", &clock.format_datetime(b.created_at)),
                ],
            ),
            Run::BODY,
        );
    }
    d.text(
        &tr.f(
            "pdf.exported",
            &[
                ("at", &clock.format_datetime(clock.now())),
                ("name", exported_by),
            ],
        ),
        Run::BODY.gray(0.3),
    );
    d.rule();
    let customer_label = conv
        .customer_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| (!conv.title.is_empty()).then(|| conv.title.clone()))
        .unwrap_or_else(|| tr.t("pdf.from_customer").to_string());
    for m in shown {
        let at = clock.format_datetime(m.created_at);
        let author = m.author_name.clone().unwrap_or_default();
        let head = match m.direction.as_str() {
            "in" => format!("{at}  ← {}: {customer_label}", tr.t("pdf.from_customer")),
            "out" if author.is_empty() => format!("{at}  → {}", tr.t("pdf.from_shop")),
            "out" => format!("{at}  → {}: {author}", tr.t("pdf.from_staff")),
            "note" => format!("{at}  {}: {author}", tr.t("pdf.note")),
            _ => format!("{at}  {}", tr.t("pdf.history")),
        };
        d.keep(30.0);
        d.gap(4.0);
        d.text(&head, Run::BODY.bold().size(9.0).gray(0.25));
        let body = if m.direction == "event" {
            event_text(tr, m)
        } else {
            m.body.clone()
        };
        if !body.trim().is_empty() {
            d.text(&body, Run::BODY.indent(12.0));
        } else if m.file_name.is_none() && m.kind != "text" {
            d.text(
                &format!("[{}]", kind_name(tr, &m.kind)),
                Run::BODY.indent(12.0),
            );
        }
        if m.file_name.is_some() || m.file_state.is_some() {
            let name = m
                .file_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| kind_name(tr, &m.kind));
            let mut line = tr.f("pdf.file", &[("name", &name)]);
            if let Some(size) = m.file_size {
                line += &format!(" ({} KB)", (size + 1023) / 1024);
            }
            if matches!(m.file_state.as_deref(), Some("refused" | "failed")) {
                line += &format!(" — {}", tr.t("pdf.file_not_kept"));
            }
            d.text(&line, Run::BODY.indent(12.0).gray(0.2));
        }
        if let Some(o) = &m.order_number {
            d.text(
                &tr.f("pdf.order", &[("number", o)]),
                Run::BODY.indent(12.0).size(8.5).gray(0.35),
            );
        }
        if m.direction == "out" && matches!(m.delivery.as_deref(), Some("failed" | "dead")) {
            let why = m.delivery_error.clone().unwrap_or_default();
            d.text(
                &tr.f("pdf.not_delivered", &[("reason", &why)]),
                Run::BODY.indent(12.0).size(8.5).gray(0.35),
            );
        }
    }
    d.finish()
}

fn kind_name(tr: Tr, kind: &str) -> String {
    let key = format!("pdf.kind.{kind}");
    let t = tr.term(&key);
    if t == key {
        kind.to_string()
    } else {
        t
    }
}

/// A history entry (its body is JSON) in words.
fn event_text(tr: Tr, m: &MessageRow) -> String {
    let v: serde_json::Value = serde_json::from_str(&m.body).unwrap_or_default();
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut text = match m.kind.as_str() {
        "assigned" => tr.f("pdf.event.assigned", &[("to", &s("to_name"))]),
        "transferred" => tr.f(
            "pdf.event.transferred",
            &[("from", &s("from_name")), ("to", &s("to_name"))],
        ),
        "unassigned" => tr.t("pdf.event.unassigned").to_string(),
        "closed" => tr.t("pdf.event.closed").to_string(),
        "reopened" => tr.t("pdf.event.reopened").to_string(),
        "linked" if v["customer_id"].is_null() => tr.t("pdf.event.unlinked").to_string(),
        "linked" => tr.t("pdf.event.linked").to_string(),
        other => other.to_string(),
    };
    let note = s("note");
    if !note.is_empty() {
        text += &format!(" — {note}");
    }
    text
}

/// The order's intake receipt as a PDF (what `/orders/{id}/receipt` prints, without the
/// Telegram QR code: it goes to a customer whose chat is linked already).
pub async fn receipt_pdf(
    orders: &Orders,
    db: &Db,
    clock: ShopClock,
    actor: &Actor,
    order: i64,
    lang: Language,
) -> DomainResult<Vec<u8>> {
    let v = orders.view(actor, order).await?;
    let shop = super::shop::load(db).await?;
    // The branch's own address, phone and hours head its receipts.
    let shop = match super::branches::get(db, v.order.branch_id).await {
        Ok(b) => super::branches::shop_of_branch(shop, &b),
        Err(_) => shop,
    };
    let logo = super::shop::logo(db).await?;
    tokio::task::spawn_blocking(move || {
        render_receipt(&shop, logo.as_ref(), &v, Tr::new(lang), &clock)
    })
    .await
    .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))
}

/// Lays out the intake receipt: the shop, the order's facts, the terms, the signatures.
pub fn render_receipt(
    shop: &ShopSettings,
    logo: Option<&super::shop::Logo>,
    v: &OrderView,
    tr: Tr,
    clock: &ShopClock,
) -> Vec<u8> {
    let o = &v.order;
    let title = format!("{} № {}", tr.t("print.receipt"), o.number);
    let mut d = Document::new(&title, &format!("{} · {title}", shop.name));
    if let Some(l) = logo {
        if d.image(&l.bytes, 170.0, 56.0) {
            d.gap(6.0);
        }
    }
    d.text(&shop.name, Run::BODY.bold().size(16.0));
    let contact = [
        shop.address.as_str(),
        shop.phone.as_str(),
        shop.hours.as_str(),
    ]
    .into_iter()
    .filter(|s| !s.trim().is_empty())
    .collect::<Vec<_>>()
    .join(" · ");
    if !contact.is_empty() {
        d.text(&contact, Run::BODY.gray(0.3));
    }
    d.gap(10.0);
    d.text(&title, Run::BODY.bold().size(14.0));
    d.gap(4.0);
    let phone = o
        .customer_phone
        .clone()
        .map(|p| PhoneNumber::from_e164_unchecked(p).display())
        .unwrap_or_default();
    let device = format!(
        "{} {} {}",
        tr.term(&format!("device.{}", o.device_category)),
        o.brand,
        o.model
    );
    let facts: [(&str, String); 12] = [
        ("orders.created", clock.format_datetime(o.created_at)),
        ("orders.customer", format!("{} {phone}", o.customer_name)),
        ("orders.device", device.trim().to_string()),
        ("orders.serial", o.serial.clone()),
        ("orders.complaint", o.complaint.clone()),
        ("orders.condition", o.condition.clone()),
        ("orders.accessories", o.accessories.clone()),
        ("orders.estimate", shop.money(o.estimate)),
        (
            "orders.promised",
            o.promised_at
                .map(|t| clock.format_date(t))
                .unwrap_or_default(),
        ),
        (
            "promos.order.discount",
            if o.discount > 0 {
                format!("−{}", shop.money(o.discount))
            } else {
                String::new()
            },
        ),
        ("orders.paid", shop.money(o.paid)),
        (
            if v.balance < 0 {
                "desk.overpayment"
            } else {
                "desk.to_pay"
            },
            shop.money(v.balance.abs()),
        ),
    ];
    for (k, value) in facts {
        if value.trim().is_empty() {
            continue;
        }
        d.text(&format!("{}: {value}", tr.t(k)), Run::BODY);
    }
    let terms = shop.terms_for(tr.lang);
    if !terms.trim().is_empty() {
        d.gap(10.0);
        d.text(terms, Run::BODY.size(9.0).gray(0.2));
    }
    d.gap(24.0);
    d.text(
        &format!(
            "{} ____________        {} ____________",
            tr.t("print.customer_signature"),
            tr.t("print.staff_signature")
        ),
        Run::BODY,
    );
    d.finish()
}
