//! One's own account: language, e-mail address, password, API tokens.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html_status, redirect, safe_next};
use crate::domain::{Actor, DomainError};
use crate::model::Language;
use crate::web::auth::{self as wa, Identity, Ui};
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};
use crate::web::WebState;
use actix_web::HttpMessage;

#[derive(Deserialize)]
pub struct LangForm {
    lang: String,
    back: Option<String>,
}

/// Switches the UI language: remembered in a cookie, and on the account when signed in.
pub async fn switch_language(
    req: HttpRequest,
    state: web::Data<WebState>,
    form: web::Form<LangForm>,
) -> HttpResponse {
    let Some(lang) = Language::from_code(&form.lang) else {
        return crate::web::error::for_request(
            &req,
            StatusCode::BAD_REQUEST,
            "invalid",
            crate::i18n::Msg::new("err.language.unknown").with("value", &form.lang),
        );
    };
    let user = req.extensions().get::<Identity>().map(|i| i.actor.user_id);
    if let Some(id) = user {
        if let Err(e) = state.ctx.accounts.set_language(id, lang).await {
            tracing::error!(error = %e, "saving language failed");
        }
    }
    let mut resp = redirect(safe_next(form.back.as_deref()));
    let _ = resp.add_cookie(&wa::lang_cookie(lang, state.ctx.config.tls()));
    resp
}

async fn profile_page(
    ui: &Ui,
    actor: &Actor,
    notice: Option<&str>,
    error: Option<&str>,
    new_token: Option<&str>,
) -> Result<Markup, PageError> {
    let accounts = &ui.state.ctx.accounts;
    let tokens = accounts
        .list_tokens(Some(actor.user_id))
        .await
        .map_err(|err| PageError { err, tr: ui.tr })?;
    let email = accounts
        .user(actor.user_id)
        .await
        .map_err(|err| PageError { err, tr: ui.tr })?
        .email
        .unwrap_or_default();
    Ok(page(
        ui,
        ui.t("profile.title"),
        html! {
            h1 { (ui.t("profile.title")) }
            (flash(notice, "ok"))
            (flash(error, "error"))
            section.card {
                h2 { (actor.display_name) }
                p { (ui.t("login.username")) ": " code { (actor.username) } }
                form #email-form method="post" action="/profile/email" {
                    (csrf_field(ui))
                    label for="email" { (ui.t("notify.email.label")) }
                    input #email name="email" type="email" value=(email) maxlength="254" autocomplete="email";
                    p.muted { (ui.t("notify.email.hint")) }
                    button type="submit" { (ui.t("common.save")) }
                }
            }
            section.card {
                h2 { (ui.t("profile.change_password")) }
                form method="post" action="/profile/password" {
                    (csrf_field(ui))
                    label for="current" { (ui.t("profile.current_password")) }
                    input #current name="current" type="password" autocomplete="current-password" required;
                    label for="password" { (ui.t("profile.new_password")) }
                    input #password name="password" type="password" autocomplete="new-password" minlength="8" required;
                    label for="password2" { (ui.t("users.password_repeat")) }
                    input #password2 name="password2" type="password" autocomplete="new-password" minlength="8" required;
                    button.primary type="submit" { (ui.t("common.save")) }
                }
            }
            section.card {
                h2 { (ui.t("tokens.title")) }
                p.muted { (ui.t("tokens.intro")) }
                @if let Some(t) = new_token {
                    div.flash.flash-ok {
                        p { (ui.t("tokens.copy_now")) }
                        code #new-token.token { (t) }
                    }
                }
                form.row method="post" action="/profile/tokens" {
                    (csrf_field(ui))
                    input name="name" placeholder=(ui.t("tokens.name")) required maxlength="80";
                    button type="submit" { (ui.t("tokens.create")) }
                }
                (token_table(ui, &tokens))
            }
        },
    ))
}

pub fn token_table(ui: &Ui, tokens: &[crate::domain::accounts::TokenRow]) -> Markup {
    html! {
        @if !tokens.is_empty() {
            div.table-wrap { table {
                thead { tr { th { (ui.t("tokens.name")) } th { (ui.t("tokens.prefix")) } th { (ui.t("tokens.created")) } th { (ui.t("tokens.last_used")) } th {} } }
                tbody {
                    @for t in tokens {
                        tr {
                            td { (t.name) }
                            td { code { (t.prefix) "…" } }
                            td { (ui.datetime(t.created_at)) }
                            td { (t.last_used_at.map(|t| ui.datetime(t)).unwrap_or_else(|| "—".into())) }
                            td {
                                @if t.revoked_at.is_some() {
                                    span.badge { (ui.t("tokens.revoked")) }
                                } @else {
                                    form.inline method="post" action=(format!("/tokens/{}/revoke", t.id)) {
                                        (csrf_field(ui))
                                        button.link.danger type="submit" { (ui.t("tokens.revoke")) }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn page_or_error(r: Result<Markup, PageError>, status: StatusCode) -> HttpResponse {
    match r {
        Ok(m) => html_status(status, m),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

pub async fn show(ui: Ui, actor: Actor) -> HttpResponse {
    page_or_error(
        profile_page(&ui, &actor, None, None, None).await,
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    password: String,
    password2: String,
}

pub async fn change_password(ui: Ui, actor: Actor, form: web::Form<PasswordForm>) -> HttpResponse {
    let accounts = &ui.state.ctx.accounts;
    if form.password != form.password2 {
        return page_or_error(
            profile_page(
                &ui,
                &actor,
                None,
                Some(ui.t("users.passwords_differ")),
                None,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let ok = match accounts.verify_password(actor.user_id, &form.current).await {
        Ok(ok) => ok,
        Err(err) => return actix_web::ResponseError::error_response(&PageError { err, tr: ui.tr }),
    };
    if !ok {
        return page_or_error(
            profile_page(&ui, &actor, None, Some(ui.t("profile.wrong_current")), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match accounts
        .set_password(Some(&actor), actor.user_id, form.password.clone())
        .await
    {
        // Every session of the user ended, this one included: sign in again.
        Ok(()) => redirect("/login"),
        Err(DomainError::Invalid(m)) => page_or_error(
            profile_page(&ui, &actor, None, Some(&ui.msg(&m)), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(err) => actix_web::ResponseError::error_response(&PageError { err, tr: ui.tr }),
    }
}

#[derive(Deserialize)]
pub struct EmailForm {
    email: String,
}

pub async fn change_email(ui: Ui, actor: Actor, form: web::Form<EmailForm>) -> HttpResponse {
    match ui
        .state
        .ctx
        .accounts
        .set_email(Some(&actor), actor.user_id, &form.email)
        .await
    {
        Ok(()) => page_or_error(
            profile_page(&ui, &actor, Some(ui.t("notify.email.saved")), None, None).await,
            StatusCode::OK,
        ),
        Err(DomainError::Invalid(m)) => page_or_error(
            profile_page(&ui, &actor, None, Some(&ui.msg(&m)), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(err) => actix_web::ResponseError::error_response(&PageError { err, tr: ui.tr }),
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
}

pub async fn create_token(ui: Ui, actor: Actor, form: web::Form<TokenForm>) -> HttpResponse {
    match ui
        .state
        .ctx
        .accounts
        .create_token(Some(&actor), actor.user_id, &form.name)
        .await
    {
        Ok(token) => page_or_error(
            profile_page(
                &ui,
                &actor,
                Some(ui.t("tokens.created_ok")),
                None,
                Some(&token),
            )
            .await,
            StatusCode::OK,
        ),
        Err(DomainError::Invalid(m)) => page_or_error(
            profile_page(&ui, &actor, None, Some(&ui.msg(&m)), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(err) => actix_web::ResponseError::error_response(&PageError { err, tr: ui.tr }),
    }
}

pub async fn revoke_token(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    req: HttpRequest,
) -> HttpResponse {
    match ui
        .state
        .ctx
        .accounts
        .revoke_token(Some(&actor), path.into_inner())
        .await
    {
        Ok(()) => {
            let back = req
                .headers()
                .get(actix_web::http::header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
                .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
                .unwrap_or_else(|| "/profile".into());
            redirect(safe_next(Some(&back)))
        }
        Err(err) => actix_web::ResponseError::error_response(&PageError { err, tr: ui.tr }),
    }
}
