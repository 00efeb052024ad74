//! Notification settings for admins (SMTP, Telegram bot, per-event switches, templates,
//! messages that stopped) and "link my Telegram" for every staff member.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html_status, redirect};
use crate::domain::notifications::{
    mask_secret, Channel, EventKind, OutboxRow, SmtpForm, SmtpSecurity, TelegramForm, PLACEHOLDERS,
};
use crate::domain::{Actor, DomainError};
use crate::model::Language;
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

const BASE: &str = "/settings/notifications";
/// How long "send test" waits for the first attempt's outcome before answering.
const TEST_WAIT: Duration = Duration::from_secs(20);

fn err(ui: &Ui, e: DomainError) -> HttpResponse {
    PageError { err: e, tr: ui.tr }.error_response()
}

/// Renders the settings page with an optional message; a domain error in `result` is
/// shown in the page with 422 (bad input) or as an error page (anything else).
pub(super) async fn respond(ui: &Ui, result: Result<String, DomainError>) -> HttpResponse {
    let (status, notice, error) = match result {
        Ok(m) => (StatusCode::OK, Some(m), None),
        Err(DomainError::Invalid(m)) | Err(DomainError::Conflict(m)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, None, Some(ui.msg(&m)))
        }
        Err(e) => return err(ui, e),
    };
    match settings_page(ui, notice.as_deref(), error.as_deref()).await {
        Ok(m) => html_status(status, m),
        Err(e) => err(ui, e),
    }
}

fn state_label(ui: &Ui, state: &str) -> &'static str {
    ui.tr.t(match state {
        "pending" => "notify.state.pending",
        "sending" => "notify.state.sending",
        "sent" => "notify.state.sent",
        "failed" => "notify.state.failed",
        _ => "notify.state.dead",
    })
}

async fn settings_page(
    ui: &Ui,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Markup, DomainError> {
    let n = &ui.state.ctx.notifications;
    let s = n.settings().await?;
    let rules = n.rules().await?;
    let stopped = n.stopped(100).await?;
    let counts = n.counts().await?;
    let crate::domain::notifications::AudienceSettings {
        customer_statuses: statuses,
        default_language: default_lang,
        summary_emails,
        summary_hour,
    } = n.audience_settings().await?;
    let smtp = &s.smtp;
    let t = &s.telegram;
    Ok(page(
        ui,
        ui.t("notify.title"),
        html! {
            h1 { (ui.t("notify.title")) }
            (flash(notice, "ok"))
            (flash(error, "error"))
            section.card #outbox-counts {
                h2 { (ui.t("notify.queue")) }
                p {
                    @for (state, count) in &counts {
                        span.badge data-state=(state) { (state_label(ui, state)) ": " (count) } " "
                    }
                }
            }
            section.card #smtp {
                h2 { (ui.t("notify.smtp.title")) }
                form method="post" action=(format!("{BASE}/smtp")) {
                    (csrf_field(ui))
                    label for="smtp-host" { (ui.t("notify.smtp.host")) }
                    input #smtp-host name="host" value=(smtp.host) placeholder="smtp.example.uz";
                    label for="smtp-port" { (ui.t("notify.smtp.port")) }
                    input #smtp-port name="port" type="number" min="1" max="65535" value=(smtp.port) required;
                    label for="smtp-security" { (ui.t("notify.smtp.security")) }
                    select #smtp-security name="security" {
                        @for (v, key) in [(SmtpSecurity::StartTls, "notify.smtp.starttls"), (SmtpSecurity::Tls, "notify.smtp.tls"), (SmtpSecurity::Plain, "notify.smtp.plain")] {
                            option value=(v.as_str()) selected[smtp.security == v] { (ui.t(key)) }
                        }
                    }
                    label for="smtp-user" { (ui.t("notify.smtp.username")) }
                    input #smtp-user name="username" value=(smtp.username) autocomplete="off";
                    label for="smtp-pass" { (ui.t("notify.smtp.password")) }
                    input #smtp-pass name="password" type="password" autocomplete="new-password"
                        placeholder=(if smtp.password.is_empty() { "" } else { ui.t("notify.secret_kept") });
                    @if !smtp.password.is_empty() {
                        label.check { input type="checkbox" name="clear_password" value="1"; (ui.t("notify.smtp.clear_password")) }
                    }
                    label for="smtp-from" { (ui.t("notify.smtp.from")) }
                    input #smtp-from name="from" value=(smtp.from) placeholder="Shop <shop@example.uz>";
                    label.check { input type="checkbox" name="accept_invalid_certs" value="1" checked[smtp.accept_invalid_certs]; (ui.t("notify.smtp.accept_invalid")) }
                    label for="smtp-ca" { (ui.t("notify.smtp.ca_pem")) }
                    textarea #smtp-ca name="ca_pem" rows="3" placeholder="-----BEGIN CERTIFICATE-----" { (smtp.ca_pem) }
                    button.primary type="submit" { (ui.t("common.save")) }
                }
                form.row method="post" action=(format!("{BASE}/smtp/test")) {
                    (csrf_field(ui))
                    input name="to" type="email" placeholder=(ui.t("notify.test_to")) required;
                    button type="submit" { (ui.t("notify.send_test")) }
                }
            }
            section.card #telegram {
                h2 { (ui.t("notify.telegram.title")) }
                p.muted { (ui.t("notify.telegram.intro")) }
                @if !t.bot_username.is_empty() {
                    p { (ui.t("notify.telegram.bot")) ": " a href=(format!("https://t.me/{}", t.bot_username)) { "@" (t.bot_username) } }
                }
                form method="post" action=(format!("{BASE}/telegram")) {
                    (csrf_field(ui))
                    label for="tg-token" { (ui.t("notify.telegram.token")) }
                    input #tg-token name="token" type="password" autocomplete="off"
                        placeholder=(if t.token.is_empty() { "123456789:AA…".to_string() } else { mask_secret(&t.token) });
                    @if !t.token.is_empty() {
                        p.muted #tg-token-masked { (ui.t("notify.telegram.token_set")) " " code { (mask_secret(&t.token)) } }
                        label.check { input type="checkbox" name="clear_token" value="1"; (ui.t("notify.telegram.clear_token")) }
                    }
                    label for="tg-url" { (ui.t("notify.telegram.api_url")) }
                    input #tg-url name="api_url" value=(t.api_url) placeholder=(crate::domain::notifications::DEFAULT_TELEGRAM_API);
                    button.primary type="submit" { (ui.t("common.save")) }
                }
                form.row method="post" action=(format!("{BASE}/telegram/test")) {
                    (csrf_field(ui))
                    input name="chat" inputmode="numeric" placeholder=(ui.t("notify.telegram.test_chat"));
                    button type="submit" { (ui.t("notify.send_test")) }
                }
            }
            (super::promos::sms_section(ui, &s.sms))
            section.card #rules {
                h2 { (ui.t("notify.rules.title")) }
                form method="post" action=(format!("{BASE}/rules")) {
                    (csrf_field(ui))
                    div.table-wrap { table {
                        thead { tr { th { (ui.t("notify.rules.event")) } th { (ui.t("notify.rules.channel")) } th { (ui.t("notify.rules.on")) } } }
                        tbody {
                            @for (e, ch, on) in &rules {
                                tr {
                                    td { (ui.tr.t(e.label_key())) }
                                    td { (ui.t(ch.label_key())) }
                                    td { input type="checkbox" name="rule" value=(format!("{}|{}", e.as_str(), ch.as_str())) checked[*on] aria-label=(ui.tr.t(e.label_key())); }
                                }
                            }
                        }
                    } }
                    label for="statuses" { (ui.t("notify.rules.statuses")) }
                    input #statuses name="customer_statuses" value=(statuses) placeholder="awaiting_approval,ready";
                    label for="deflang" { (ui.t("notify.rules.default_language")) }
                    select #deflang name="default_language" {
                        @for l in Language::ALL { option value=(l.code()) selected[l.code() == default_lang] { (l.native_name()) } }
                    }
                    label for="summary-emails" { (ui.t("notify.rules.summary_emails")) }
                    input #summary-emails name="summary_emails" value=(summary_emails) placeholder="owner@example.uz";
                    label for="summary-hour" { (ui.t("notify.rules.summary_hour")) }
                    input #summary-hour name="summary_hour" type="number" min="0" max="23" value=(summary_hour);
                    button.primary type="submit" { (ui.t("common.save")) }
                }
            }
            section.card #templates {
                h2 { (ui.t("notify.templates.title")) }
                div.table-wrap { table {
                    thead { tr { th { (ui.t("notify.rules.event")) } @for l in Language::ALL { th { (l.native_name()) } } } }
                    tbody {
                        @for e in EventKind::TEMPLATED {
                            tr {
                                td { (ui.tr.t(e.label_key())) }
                                @for l in Language::ALL {
                                    td { a href=(format!("{BASE}/templates/{}/{}", e.as_str(), l.code())) { (ui.t("notify.templates.edit")) } }
                                }
                            }
                        }
                    }
                } }
            }
            section.card #stopped {
                h2 { (ui.t("notify.stopped.title")) }
                p.muted { (ui.t("notify.stopped.intro")) }
                (stopped_table(ui, &stopped))
            }
        },
    ))
}

fn stopped_table(ui: &Ui, rows: &[OutboxRow]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { (ui.t("notify.stopped.none")) }
        } @else {
            div.table-wrap { table #stopped-table {
                thead { tr {
                    th { (ui.t("notify.stopped.when")) } th { (ui.t("notify.rules.event")) } th { (ui.t("notify.rules.channel")) }
                    th { (ui.t("notify.stopped.to")) } th { (ui.t("notify.stopped.state")) } th { (ui.t("notify.stopped.attempts")) }
                    th { (ui.t("notify.stopped.error")) } th {}
                } }
                tbody {
                    @for r in rows {
                        tr data-outbox-id=(r.id) data-state=(r.state) {
                            td { (ui.datetime(r.updated_at)) }
                            td { (crate::domain::notifications::EventKind::parse(&r.event).map_or(r.event.as_str(), |e| ui.t(e.label_key()))) }
                            td { (Channel::parse(&r.channel).map_or(r.channel.as_str(), |c| ui.t(c.label_key()))) }
                            td { (r.recipient) }
                            td { span.badge.badge-danger { (state_label(ui, &r.state)) } }
                            td { (r.attempts) }
                            td { code.detail { (r.last_error.as_deref().unwrap_or("")) } }
                            td {
                                form.inline method="post" action=(format!("{BASE}/outbox/{}/retry", r.id)) {
                                    (csrf_field(ui))
                                    button type="submit" { (ui.t("notify.stopped.retry")) }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

pub async fn show(ui: Ui) -> HttpResponse {
    match settings_page(&ui, None, None).await {
        Ok(m) => html_status(StatusCode::OK, m),
        Err(e) => err(&ui, e),
    }
}

pub async fn save_smtp(ui: Ui, actor: Actor, form: web::Form<SmtpForm>) -> HttpResponse {
    let r = ui
        .state
        .ctx
        .notifications
        .save_smtp(&actor, form.into_inner())
        .await;
    respond(&ui, r.map(|_| ui.t("notify.saved").to_string())).await
}

pub async fn save_telegram(ui: Ui, actor: Actor, form: web::Form<TelegramForm>) -> HttpResponse {
    let r = ui
        .state
        .ctx
        .notifications
        .save_telegram(&actor, form.into_inner())
        .await;
    respond(&ui, r.map(|_| ui.t("notify.saved").to_string())).await
}

/// The test's outcome as a page message: sent, or the server's answer.
fn test_outcome(ui: &Ui, row: OutboxRow) -> Result<String, DomainError> {
    match row.state.as_str() {
        "sent" => Ok(ui.t("notify.test_sent").to_string()),
        "pending" | "sending" if row.attempts == 0 => Ok(ui.t("notify.test_queued").to_string()),
        _ => Err(DomainError::invalid(
            crate::domain::Msg::new("err.notify.test_failed")
                .with("why", row.last_error.unwrap_or_default()),
        )),
    }
}

#[derive(Deserialize)]
pub struct TestMailForm {
    to: String,
}

pub async fn test_smtp(ui: Ui, actor: Actor, form: web::Form<TestMailForm>) -> HttpResponse {
    let r = ui
        .state
        .ctx
        .notifications
        .send_test(&actor, Channel::Email, &form.to, TEST_WAIT)
        .await
        .and_then(|row| test_outcome(&ui, row));
    respond(&ui, r).await
}

#[derive(Deserialize)]
pub struct TestChatForm {
    #[serde(default)]
    chat: String,
}

pub async fn test_telegram(ui: Ui, actor: Actor, form: web::Form<TestChatForm>) -> HttpResponse {
    let r = ui
        .state
        .ctx
        .notifications
        .send_test(&actor, Channel::Telegram, &form.chat, TEST_WAIT)
        .await
        .and_then(|row| test_outcome(&ui, row));
    respond(&ui, r).await
}

/// The rules form: repeated `rule=event|channel` checkboxes, so read as pairs.
pub async fn save_rules(
    ui: Ui,
    actor: Actor,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let mut on = Vec::new();
    let mut statuses = String::new();
    let mut lang = String::from("uz");
    let mut summary = crate::domain::notifications::SummaryForm {
        emails: String::new(),
        hour: "19".into(),
    };
    for (k, v) in form.into_inner() {
        match k.as_str() {
            "rule" => {
                if let Some((e, ch)) = v.split_once('|') {
                    on.push((e.to_string(), ch.to_string()));
                }
            }
            "customer_statuses" => statuses = v,
            "default_language" => lang = v,
            "summary_emails" => summary.emails = v,
            "summary_hour" => summary.hour = v,
            _ => {}
        }
    }
    let r = ui
        .state
        .ctx
        .notifications
        .save_rules(&actor, &on, &statuses, &lang, &summary)
        .await;
    respond(&ui, r.map(|_| ui.t("notify.saved").to_string())).await
}

pub async fn retry(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let r = ui
        .state
        .ctx
        .notifications
        .retry(&actor, path.into_inner())
        .await;
    respond(&ui, r.map(|_| ui.t("notify.stopped.requeued").to_string())).await
}

fn parse_template_path(p: &(String, String)) -> Result<(EventKind, Language), DomainError> {
    let e = EventKind::parse(&p.0)
        .filter(|e| EventKind::TEMPLATED.contains(e))
        .ok_or(DomainError::NotFound)?;
    let l = Language::from_code(&p.1).ok_or(DomainError::NotFound)?;
    Ok((e, l))
}

/// What the template editor shows.
struct TemplateView<'a> {
    event: EventKind,
    lang: Language,
    subject: &'a str,
    body: &'a str,
    custom: bool,
    preview: Option<(String, String)>,
}

fn template_page(
    ui: &Ui,
    v: TemplateView<'_>,
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let TemplateView {
        event,
        lang,
        subject,
        body,
        custom,
        preview,
    } = v;
    let action = format!("{BASE}/templates/{}/{}", event.as_str(), lang.code());
    html! {
        p { a href=(BASE) { "← " (ui.t("notify.title")) } }
        h1 { (ui.tr.t(event.label_key())) " · " (lang.native_name()) }
        (flash(notice, "ok"))
        (flash(error, "error"))
        @if custom { p.muted { (ui.t("notify.templates.custom")) } } @else { p.muted { (ui.t("notify.templates.builtin")) } }
        section.card {
            form method="post" action=(action) {
                (csrf_field(ui))
                label for="tpl-subject" { (ui.t("notify.templates.subject")) }
                input #tpl-subject name="subject" value=(subject) maxlength="200";
                label for="tpl-body" { (ui.t("notify.templates.body")) }
                textarea #tpl-body name="body" rows="8" maxlength="4000" required { (body) }
                p.muted { (ui.t("notify.templates.placeholders")) ": "
                    @for p in PLACEHOLDERS { code { "{" (p) "}" } " " }
                }
                div.row {
                    button type="submit" name="op" value="preview" { (ui.t("notify.templates.preview")) }
                    button.primary type="submit" name="op" value="save" { (ui.t("common.save")) }
                    @if custom { button.danger type="submit" name="op" value="reset" { (ui.t("notify.templates.reset")) } }
                }
            }
        }
        @if let Some((s, b)) = preview {
            section.card #preview {
                h2 { (ui.t("notify.templates.preview")) }
                p { strong { (s) } }
                pre { (b) }
            }
        }
    }
}

pub async fn edit_template(ui: Ui, path: web::Path<(String, String)>) -> HttpResponse {
    let (event, lang) = match parse_template_path(&path) {
        Ok(v) => v,
        Err(e) => return err(&ui, e),
    };
    let n = &ui.state.ctx.notifications;
    let (s, b, custom) = match n.template(event, lang).await {
        Ok(t) => t,
        Err(e) => return err(&ui, e),
    };
    let preview = n
        .preview(s.clone(), b.clone(), crate::i18n::Tr::new(lang))
        .await
        .ok();
    html_status(
        StatusCode::OK,
        page(
            &ui,
            ui.t("notify.templates.title"),
            template_page(
                &ui,
                TemplateView {
                    event,
                    lang,
                    subject: &s,
                    body: &b,
                    custom,
                    preview,
                },
                None,
                None,
            ),
        ),
    )
}

#[derive(Deserialize)]
pub struct TemplateForm {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    op: String,
}

pub async fn save_template(
    ui: Ui,
    actor: Actor,
    path: web::Path<(String, String)>,
    form: web::Form<TemplateForm>,
) -> HttpResponse {
    let (event, lang) = match parse_template_path(&path) {
        Ok(v) => v,
        Err(e) => return err(&ui, e),
    };
    let n = &ui.state.ctx.notifications;
    let f = form.into_inner();
    let tr = crate::i18n::Tr::new(lang);
    let result = match f.op.as_str() {
        "preview" => Ok(None),
        "save" => n
            .save_template(&actor, event, lang, &f.subject, &f.body)
            .await
            .map(|_| Some(ui.t("notify.saved"))),
        "reset" => n
            .reset_template(&actor, event, lang)
            .await
            .map(|_| Some(ui.t("notify.templates.reset_done"))),
        _ => Err(DomainError::invalid("err.form.unknown_operation")),
    };
    let (status, notice, error) = match result {
        Ok(m) => (StatusCode::OK, m, None),
        Err(DomainError::Invalid(m)) => (StatusCode::UNPROCESSABLE_ENTITY, None, Some(ui.msg(&m))),
        Err(e) => return err(&ui, e),
    };
    // After save/reset show what is stored; after preview (or a refused save) the draft.
    let (s, b, custom) = if f.op != "preview" && error.is_none() {
        match n.template(event, lang).await {
            Ok(t) => t,
            Err(e) => return err(&ui, e),
        }
    } else {
        let custom = n.template(event, lang).await.map(|t| t.2).unwrap_or(false);
        (f.subject.clone(), f.body.clone(), custom)
    };
    let preview = n.preview(s.clone(), b.clone(), tr).await.ok();
    html_status(
        status,
        page(
            &ui,
            ui.t("notify.templates.title"),
            template_page(
                &ui,
                TemplateView {
                    event,
                    lang,
                    subject: &s,
                    body: &b,
                    custom,
                    preview,
                },
                notice,
                error.as_deref(),
            ),
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Staff: link my Telegram

async fn telegram_profile(
    ui: &Ui,
    actor: &Actor,
    link: Option<crate::domain::notifications::LinkCode>,
    notice: Option<&str>,
) -> Result<Markup, DomainError> {
    let n = &ui.state.ctx.notifications;
    let chats = n.chats_of(actor.user_id).await?;
    let configured = !n.settings().await?.telegram.token.is_empty();
    Ok(page(
        ui,
        ui.t("notify.profile.title"),
        html! {
            h1 { (ui.t("notify.profile.title")) }
            (flash(notice, "ok"))
            section.card {
                p.muted { (ui.t("notify.profile.intro")) }
                @if !configured { p.flash.flash-error { (ui.t("notify.profile.no_bot")) } }
                @if chats.is_empty() {
                    p #tg-status { (ui.t("notify.profile.not_linked")) }
                } @else {
                    ul #tg-chats {
                        @for c in &chats {
                            li data-chat=(c.chat_id) {
                                (ui.t("notify.profile.linked_since")) " " (ui.datetime(c.linked_at))
                                @if c.blocked_at.is_some() { " " span.badge.badge-danger { (ui.t("notify.profile.blocked")) } }
                            }
                        }
                    }
                    form.inline method="post" action="/profile/telegram/unlink" {
                        (csrf_field(ui))
                        button.danger type="submit" { (ui.t("notify.profile.unlink")) }
                    }
                }
                @if let Some(l) = &link {
                    div.flash.flash-ok #tg-link {
                        @if let Some(url) = &l.url {
                            p { a.button.primary href=(url) target="_blank" rel="noopener" { (ui.t("notify.profile.open_bot")) } }
                        }
                        p { (ui.t("notify.profile.or_send")) " " code #tg-command { (l.command) } }
                        p.muted { (ui.t("notify.profile.expires")) " " (ui.datetime(l.expires_at)) }
                    }
                }
                form.inline method="post" action="/profile/telegram/link" {
                    (csrf_field(ui))
                    button.primary type="submit" { (ui.t("notify.profile.link")) }
                }
            }
        },
    ))
}

pub async fn profile_telegram(ui: Ui, actor: Actor) -> HttpResponse {
    match telegram_profile(&ui, &actor, None, None).await {
        Ok(m) => html_status(StatusCode::OK, m),
        Err(e) => err(&ui, e),
    }
}

pub async fn profile_telegram_link(ui: Ui, actor: Actor) -> HttpResponse {
    let link = match ui.state.ctx.notifications.create_link_code(&actor).await {
        Ok(l) => l,
        Err(e) => return err(&ui, e),
    };
    match telegram_profile(&ui, &actor, Some(link), None).await {
        Ok(m) => html_status(StatusCode::OK, m),
        Err(e) => err(&ui, e),
    }
}

pub async fn profile_telegram_unlink(ui: Ui, actor: Actor) -> HttpResponse {
    match ui
        .state
        .ctx
        .notifications
        .unlink(&actor, actor.user_id)
        .await
    {
        Ok(_) => redirect("/profile/telegram"),
        Err(e) => err(&ui, e),
    }
}
