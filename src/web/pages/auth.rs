//! Sign-in, sign-out and the first-run setup.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html, html_status, redirect, safe_next};
use crate::domain::accounts::{random_token, NewSession, NewUser, SignIn};
use crate::domain::DomainError;
use crate::model::{Language, Role};
use crate::web::auth::{self as wa, Ui};
use crate::web::layout::{bare_ui, csrf_field};
use crate::web::WebState;

fn client_ip(req: &HttpRequest) -> String {
    // The box is on a LAN without a reverse proxy: trust the socket, not headers.
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn user_agent(req: &HttpRequest) -> String {
    req.headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// Makes sure the visitor has a pre-session CSRF cookie; returns (ui, cookie to set).
fn with_pre_cookie(mut ui: Ui, secure: bool) -> (Ui, Option<actix_web::cookie::Cookie<'static>>) {
    if ui.csrf.is_empty() {
        let v = random_token(24);
        ui.csrf = v.clone();
        (ui, Some(wa::pre_cookie(&v, secure)))
    } else {
        (ui, None)
    }
}

async fn sign_in(
    state: &WebState,
    req: &HttpRequest,
    username: &str,
    password: &str,
) -> Result<NewSession, DomainError> {
    state
        .ctx
        .accounts
        .sign_in(SignIn {
            username,
            password,
            ip: &client_ip(req),
            user_agent: &user_agent(req),
        })
        .await
}

/// Redirects with the new session's cookie, remembering the user's language.
fn signed_in(state: &WebState, s: &NewSession, to: &str) -> HttpResponse {
    let cfg = &state.ctx.config;
    let mut resp = redirect(to);
    let _ = resp.add_cookie(&wa::session_cookie(
        &s.token,
        cfg.tls(),
        cfg.session.absolute_hours,
    ));
    let _ = resp.add_cookie(&wa::lang_cookie(s.actor.language, cfg.tls()));
    resp
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page(ui: &Ui, next: &str, username: &str, error: Option<&str>) -> Markup {
    bare_ui(
        ui,
        ui.t("login.title"),
        html! {
            main.narrow.card {
                h1 { (ui.t("login.title")) }
                @if let Some(e) = error { p.flash.flash-error role="alert" { (e) } }
                form method="post" action="/login" {
                    (csrf_field(ui))
                    input type="hidden" name="next" value=(next);
                    label for="username" { (ui.t("login.username")) }
                    input #username name="username" value=(username) autocomplete="username" autocapitalize="none" required autofocus;
                    label for="password" { (ui.t("login.password")) }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button.primary type="submit" { (ui.t("login.submit")) }
                }
                // The local CA of `crm tls init`, for staff to install on this device.
                @if crate::ops::tls::ca_pem(&ui.state.ctx.config.data_dir).is_some() {
                    p.muted { a #ca-download href="/tls/ca.crt" download { (ui.t("login.ca")) } }
                }
            }
        },
    )
}

pub async fn login_form(ui: Ui, q: web::Query<NextQuery>) -> HttpResponse {
    if ui.actor.is_some() {
        return redirect(safe_next(q.next.as_deref()));
    }
    let secure = ui.state.ctx.config.tls();
    let (ui, cookie) = with_pre_cookie(ui, secure);
    let mut resp = html(login_page(&ui, safe_next(q.next.as_deref()), "", None));
    if let Some(c) = cookie {
        let _ = resp.add_cookie(&c);
    }
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub async fn login(ui: Ui, req: HttpRequest, form: web::Form<LoginForm>) -> HttpResponse {
    let state = ui.state.clone();
    let next = safe_next(form.next.as_deref()).to_string();
    match sign_in(&state, &req, &form.username, &form.password).await {
        Ok(s) => signed_in(&state, &s, &next),
        Err(DomainError::RateLimited { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60).to_string();
            // A few seconds: no free hashing slot (a flood), not a lockout.
            let msg = if retry_after_secs <= 2 {
                ui.t("harden.signin_busy").to_string()
            } else {
                ui.tr.f("login.locked", &[("minutes", &minutes)])
            };
            let mut resp = html_status(
                StatusCode::TOO_MANY_REQUESTS,
                login_page(&ui, &next, &form.username, Some(&msg)),
            );
            resp.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                retry_after_secs.into(),
            );
            resp
        }
        Err(DomainError::Unauthenticated(_)) => html_status(
            StatusCode::UNAUTHORIZED,
            login_page(&ui, &next, &form.username, Some(ui.t("login.failed"))),
        ),
        Err(err) => {
            tracing::error!(error = %err, "sign-in failed");
            // A refused write names the disk's problem; anything else is internal.
            actix_web::ResponseError::error_response(&crate::web::error::PageError {
                err,
                tr: ui.tr,
            })
        }
    }
}

pub async fn logout(req: HttpRequest, state: web::Data<WebState>) -> HttpResponse {
    if let Some(c) = req.cookie(wa::SESSION_COOKIE) {
        if let Err(e) = state.ctx.accounts.sign_out(c.value()).await {
            tracing::error!(error = %e, "sign-out failed");
        }
    }
    let mut resp = redirect("/login");
    let _ = resp.add_cookie(&wa::clear_cookie(wa::SESSION_COOKIE));
    resp
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

fn setup_token_ok(state: &WebState, given: Option<&str>) -> bool {
    match (&state.setup_token, given) {
        (Some(t), Some(g)) => t.len() == g.len() && t.bytes().zip(g.bytes()).all(|(a, b)| a == b),
        _ => false,
    }
}

struct SetupValues<'a> {
    username: &'a str,
    name: &'a str,
}

fn setup_page(ui: &Ui, token: &str, v: SetupValues, error: Option<&str>) -> Markup {
    bare_ui(
        ui,
        ui.t("setup.title"),
        html! {
            main.narrow.card {
                h1 { (ui.t("setup.title")) }
                p { (ui.t("setup.intro")) }
                @if let Some(e) = error { p.flash.flash-error role="alert" { (e) } }
                form method="post" action="/setup" {
                    (csrf_field(ui))
                    input type="hidden" name="token" value=(token);
                    label for="name" { (ui.t("users.display_name")) }
                    input #name name="name" value=(v.name) required;
                    label for="username" { (ui.t("login.username")) }
                    input #username name="username" value=(v.username) autocapitalize="none" required;
                    label for="password" { (ui.t("login.password")) }
                    input #password name="password" type="password" autocomplete="new-password" required minlength="8";
                    label for="password2" { (ui.t("users.password_repeat")) }
                    input #password2 name="password2" type="password" autocomplete="new-password" required minlength="8";
                    button.primary type="submit" { (ui.t("setup.submit")) }
                }
            }
        },
    )
}

pub async fn setup_form(ui: Ui, q: web::Query<SetupQuery>) -> HttpResponse {
    let state = ui.state.clone();
    let users = state.ctx.accounts.user_count().await.unwrap_or(1);
    if users > 0 || !setup_token_ok(&state, q.token.as_deref()) {
        return crate::web::error::error_page(
            StatusCode::NOT_FOUND,
            ui.t("setup.unavailable"),
            ui.tr,
        );
    }
    let (ui, cookie) = with_pre_cookie(ui, state.ctx.config.tls());
    let token = q.token.clone().unwrap_or_default();
    let mut resp = html(setup_page(
        &ui,
        &token,
        SetupValues {
            username: "admin",
            name: "",
        },
        None,
    ));
    if let Some(c) = cookie {
        let _ = resp.add_cookie(&c);
    }
    resp
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    username: String,
    name: String,
    password: String,
    password2: String,
}

pub async fn setup(ui: Ui, req: HttpRequest, form: web::Form<SetupForm>) -> HttpResponse {
    let state = ui.state.clone();
    if !setup_token_ok(&state, Some(&form.token)) {
        return crate::web::error::error_page(
            StatusCode::NOT_FOUND,
            ui.t("setup.unavailable"),
            ui.tr,
        );
    }
    let values = SetupValues {
        username: &form.username,
        name: &form.name,
    };
    if form.password != form.password2 {
        return html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            setup_page(
                &ui,
                &form.token,
                values,
                Some(ui.t("users.passwords_differ")),
            ),
        );
    }
    let created = state
        .ctx
        .accounts
        .create_user(
            None,
            NewUser {
                username: form.username.clone(),
                display_name: form.name.clone(),
                role: Role::Admin,
                language: ui.tr.lang,
                password: form.password.clone(),
            },
            true,
        )
        .await;
    match created {
        Ok(_) => {}
        Err(DomainError::Conflict(_)) => {
            return crate::web::error::error_page(
                StatusCode::NOT_FOUND,
                ui.t("setup.unavailable"),
                ui.tr,
            )
        }
        Err(DomainError::Invalid(m)) => {
            return html_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                setup_page(&ui, &form.token, values, Some(&ui.msg(&m))),
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "setup failed");
            return actix_web::ResponseError::error_response(&crate::web::error::PageError {
                err,
                tr: ui.tr,
            });
        }
    }
    tracing::info!(username = %form.username.escape_debug(), "first admin created");
    // Sign the new admin in straight away.
    match sign_in(&state, &req, &form.username, &form.password).await {
        Ok(s) => signed_in(&state, &s, "/"),
        Err(_) => redirect("/login"),
    }
}

/// The language list for forms.
pub fn language_options(selected: Language) -> Markup {
    html! {
        @for l in Language::ALL {
            option value=(l.code()) selected[l == selected] { (l.native_name()) }
        }
    }
}
