//! The web chat widget (issue 17), off by default. A shop puts one line on its website
//! (`<script src="https://box/widget/widget.js" async>`); the script opens the chat in a
//! frame served by the box (`/widget/frame`), which a reception tablet can also open on
//! its own. Visitors are anonymous: a random id the frame keeps in its local storage.
//!
//! Protection: only the sites in the settings may frame the chat (CSP
//! `frame-ancestors`); a request with an `Origin` must come from the box itself (the
//! frame) or one of those sites; messages are bounded in size and in number per visitor,
//! and rate-limited per address and per visitor. Replies reach the frame by long-poll
//! (`GET /widget/messages?after=…&wait=…` answers as soon as a message of the thread is
//! committed, or empty after the wait).

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use maud::{html, DOCTYPE};
use serde::Deserialize;

use super::{html_status, redirect};
use crate::domain::widget::{self, WidgetSettings};
use crate::domain::{Actor, DomainError};
use crate::i18n::{Msg, Tr};
use crate::model::Language;
use crate::web::auth::{anonymous_language, Ui};
use crate::web::error::{json_error, PageError};
use crate::web::layout::{csrf_field, flash, page};
use crate::web::ratelimit::Limiter;
use crate::web::WebState;

/// The script the shop's site loads; the same file runs the chat inside the frame.
const SCRIPT: &str = include_str!("../../../assets/js/widget.js");
/// Longest a poll waits for news.
const MAX_WAIT: Duration = Duration::from_secs(25);

/// The widget's request limits.
pub struct Limits {
    /// Messages per client address: a reception tablet or an office behind one address
    /// has several visitors.
    per_address: Limiter,
    /// Messages per visitor.
    per_visitor: Limiter,
    /// Polls per client address.
    reads: Limiter,
}

impl Limits {
    pub fn new() -> Limits {
        Limits {
            per_address: Limiter::new(2, 20),
            per_visitor: Limiter::new(1, 5),
            reads: Limiter::new(10, 60),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new()
    }
}

/// The visitor's language: `?lang=` (the site's choice, passed on by the script), else
/// the browser's.
fn visitor_tr(req: &HttpRequest) -> Tr {
    let lang = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|q| {
            q.iter()
                .find(|(k, _)| k == "lang")
                .and_then(|(_, v)| Language::from_code(v))
        });
    Tr::new(lang.unwrap_or_else(|| anonymous_language(req)))
}

fn refuse(tr: Tr, status: StatusCode, code: &str, m: Msg) -> HttpResponse {
    json_error(status, code, tr.msg(&m))
}

fn domain_refusal(tr: Tr, e: DomainError) -> HttpResponse {
    let status = crate::web::error::domain_status(&e);
    refuse(tr, status, e.code(), e.message())
}

fn slow_down(tr: Tr, secs: u64) -> HttpResponse {
    let mut r = refuse(
        tr,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        Msg::new("err.widget.slow_down").with("secs", secs),
    );
    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The settings, or a 404 while the widget is off (nothing under /widget exists then).
async fn enabled(state: &WebState, tr: Tr) -> Result<WidgetSettings, HttpResponse> {
    match widget::load(&state.ctx.store).await {
        Ok(s) if s.enabled => Ok(s),
        Ok(_) => Err(refuse(
            tr,
            StatusCode::NOT_FOUND,
            "widget_off",
            Msg::new("err.widget.off"),
        )),
        Err(e) => Err(domain_refusal(tr, e)),
    }
}

/// A request's `Origin`, when it sent one, must be the box itself (the chat frame) or an
/// allowed site. Browsers send it on every POST, so a page of another site cannot post
/// in a visitor's name.
fn origin_allowed(req: &HttpRequest, s: &WidgetSettings) -> bool {
    // Without one it is no browser's cross-site request (a script can claim any origin
    // anyway; the rate limits bound it).
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let own = origin
        .split_once("://")
        .is_some_and(|(_, host)| host.eq_ignore_ascii_case(req.connection_info().host()));
    own || s.allows(origin)
}

fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// `GET /widget/widget.js`: the loader (and, inside the frame, the chat itself).
pub async fn script(req: HttpRequest, state: web::Data<WebState>) -> HttpResponse {
    if let Err(r) = enabled(&state, visitor_tr(&req)).await {
        return r;
    }
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        // Short: turning the widget off, or changing the script, reaches sites soon.
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(SCRIPT)
}

/// `GET /widget/frame`: the chat, for an allowed site's frame or a reception tablet.
pub async fn frame(req: HttpRequest, state: web::Data<WebState>) -> HttpResponse {
    let tr = visitor_tr(&req);
    let s = match enabled(&state, tr).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let css = state.assets.url("css/widget.css");
    let body = html! {
        (DOCTYPE)
        html lang=(tr.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (tr.t("widget.title")) }
                link rel="stylesheet" href=(css);
            }
            body #crm-widget data-lang=(tr.lang.code())
                data-you=(tr.t("widget.you")) data-shop=(tr.t("widget.shop"))
                data-failed=(tr.t("widget.failed")) data-offline=(tr.t("widget.offline")) {
                button #w-open type="button" { (tr.t("widget.open")) }
                section #w-panel hidden {
                    header {
                        h1 { (tr.t("widget.title")) }
                        button #w-close type="button" aria-label=(tr.t("widget.close")) { "×" }
                    }
                    ol #w-messages aria-live="polite" {
                        li.w-welcome { (tr.t("widget.welcome")) }
                    }
                    p #w-error role="alert" hidden {}
                    form #w-form {
                        input #w-name type="text" maxlength=(crate::domain::conversations::MAX_WEB_NAME)
                            autocomplete="name" placeholder=(tr.t("widget.name_placeholder"));
                        textarea #w-text rows="3" required
                            placeholder=(tr.t("widget.placeholder")) {}
                        button #w-send type="submit" { (tr.t("widget.send")) }
                    }
                }
                script src="/widget/widget.js" {}
            }
        }
    };
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {}",
        s.frame_ancestors()
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", csp))
        // The CSP above decides who may frame the chat (browsers then ignore this).
        .insert_header(("X-Frame-Options", "SAMEORIGIN"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body.into_string())
}

#[derive(Deserialize)]
pub struct PostBody {
    visitor: String,
    text: String,
    #[serde(default)]
    name: String,
}

/// `POST /widget/messages`: a visitor writes.
pub async fn post_message(
    req: HttpRequest,
    state: web::Data<WebState>,
    body: web::Json<PostBody>,
) -> HttpResponse {
    let tr = visitor_tr(&req);
    let s = match enabled(&state, tr).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !origin_allowed(&req, &s) {
        return refuse(
            tr,
            StatusCode::FORBIDDEN,
            "origin",
            Msg::new("err.widget.origin"),
        );
    }
    let b = body.into_inner();
    if !crate::domain::conversations::valid_visitor(&b.visitor) {
        return refuse(
            tr,
            StatusCode::BAD_REQUEST,
            "visitor",
            Msg::new("err.widget.visitor"),
        );
    }
    if let Err(secs) = state.widget.per_address.take(client_ip(&req).as_bytes()) {
        return slow_down(tr, secs);
    }
    if let Err(secs) = state.widget.per_visitor.take(b.visitor.as_bytes()) {
        return slow_down(tr, secs);
    }
    match state
        .ctx
        .conversations
        .web_post(&b.visitor, &b.name, &b.text)
        .await
    {
        Ok(m) => HttpResponse::Created().json(serde_json::json!({ "message": m })),
        Err(e) => domain_refusal(tr, e),
    }
}

#[derive(Deserialize)]
pub struct PollQuery {
    visitor: String,
    #[serde(default)]
    after: i64,
    /// Seconds to wait for news (at most 25); 0 answers at once.
    #[serde(default)]
    wait: u64,
}

/// `GET /widget/messages?visitor=…&after=…&wait=…`: the visitor's thread after a message
/// id; waits for news when there is none yet.
pub async fn messages(
    req: HttpRequest,
    state: web::Data<WebState>,
    q: web::Query<PollQuery>,
) -> HttpResponse {
    let tr = visitor_tr(&req);
    let s = match enabled(&state, tr).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !origin_allowed(&req, &s) {
        return refuse(
            tr,
            StatusCode::FORBIDDEN,
            "origin",
            Msg::new("err.widget.origin"),
        );
    }
    if let Err(secs) = state.widget.reads.take(client_ip(&req).as_bytes()) {
        return slow_down(tr, secs);
    }
    let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
    match state
        .ctx
        .conversations
        .web_messages(&q.visitor, q.after, wait)
        .await
    {
        Ok(m) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "messages": m })),
        Err(e) => domain_refusal(tr, e),
    }
}

// ---- the admin's settings ----

fn render(
    ui: &Ui,
    req: &HttpRequest,
    s: &WidgetSettings,
    origins: &str,
    msg: Option<(&str, &str)>,
    status: StatusCode,
) -> HttpResponse {
    let info = req.connection_info();
    let base = format!("{}://{}", info.scheme(), info.host());
    let snippet = format!("<script src=\"{base}/widget/widget.js\" async></script>");
    html_status(
        status,
        page(
            ui,
            ui.t("widget.settings.title"),
            html! {
                h1 { (ui.t("widget.settings.title")) }
                @if let Some((text, kind)) = msg { (flash(Some(text), kind)) }
                p { (ui.t("widget.settings.intro")) }
                form #widget-settings method="post" action="/settings/widget" {
                    (csrf_field(ui))
                    label {
                        input #widget-enabled type="checkbox" name="enabled" value="1" checked[s.enabled];
                        " " (ui.t("widget.settings.enabled"))
                    }
                    label for="widget-origins" { (ui.t("widget.settings.origins")) }
                    textarea #widget-origins name="origins" rows="4" { (origins) }
                    button type="submit" { (ui.t("widget.settings.save")) }
                }
                @if s.enabled {
                    p { (ui.t("widget.settings.snippet")) }
                    pre #widget-snippet { code { (snippet) } }
                    p { (ui.t("widget.settings.tablet")) " " code { (base) "/widget/frame" } }
                } @else {
                    p #widget-off { (ui.t("widget.settings.off")) }
                }
            },
        ),
    )
}

#[derive(Deserialize)]
pub struct SavedQuery {
    #[serde(default)]
    saved: Option<String>,
}

/// `GET /settings/widget`.
pub async fn settings(ui: Ui, req: HttpRequest, q: web::Query<SavedQuery>) -> HttpResponse {
    match widget::load(&ui.state.ctx.store).await {
        Ok(s) => {
            let saved = q
                .saved
                .is_some()
                .then(|| (ui.t("widget.settings.saved"), "ok"));
            render(&ui, &req, &s, &s.origins.join("\n"), saved, StatusCode::OK)
        }
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    origins: String,
}

/// `POST /settings/widget`.
pub async fn save_settings(
    ui: Ui,
    req: HttpRequest,
    actor: Actor,
    form: web::Form<SettingsForm>,
) -> HttpResponse {
    let f = form.into_inner();
    let on = f.enabled.is_some_and(|v| v == "1" || v == "on");
    match widget::save(&ui.state.ctx.store, &actor, on, &f.origins).await {
        Ok(_) => redirect("/settings/widget?saved=1"),
        Err(DomainError::Invalid(m)) => {
            let s = WidgetSettings {
                enabled: on,
                origins: Vec::new(),
            };
            let text = ui.msg(&m);
            render(
                &ui,
                &req,
                &s,
                &f.origins,
                Some((&text, "error")),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}
