//! Staff accounts, for admins.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::language_options;
use super::{html, html_status, redirect};
use crate::domain::accounts::{NewUser, TokenRow, UserRow};
use crate::domain::{Actor, DomainError};
use crate::model::{Language, Role};
use crate::web::auth::Ui;
use crate::web::error::PageError;
use crate::web::layout::{csrf_field, flash, page};

pub fn role_label(ui: &Ui, r: Role) -> &'static str {
    ui.tr.t(match r {
        Role::Admin => "role.admin",
        Role::Operator => "role.operator",
        Role::Master => "role.master",
    })
}

fn role_options(ui: &Ui, selected: Role) -> Markup {
    html! {
        @for r in Role::ALL {
            option value=(r.as_str()) selected[r == selected] { (role_label(ui, r)) }
        }
    }
}

fn err(ui: &Ui, e: DomainError) -> HttpResponse {
    PageError { err: e, tr: ui.tr }.error_response()
}

pub async fn list(ui: Ui) -> HttpResponse {
    let users = match ui.state.ctx.accounts.list_users().await {
        Ok(u) => u,
        Err(e) => return err(&ui, e),
    };
    let online = ui.state.hub.online().await;
    html(page(
        &ui,
        ui.t("users.title"),
        html! {
            div.page-head {
                h1 { (ui.t("users.title")) }
                a.button.primary href="/users/new" { (ui.t("users.add")) }
            }
            div.table-wrap #users-region { table #users-table {
                thead { tr {
                    th { (ui.t("users.display_name")) } th { (ui.t("login.username")) }
                    th { (ui.t("users.role")) } th { (ui.t("users.status")) } th { (ui.t("users.created")) }
                    th { (ui.t("calls.on_call")) }
                } }
                tbody {
                    @for u in &users {
                        tr.inactive[!u.active] data-user-id=(u.id) {
                            td {
                                span.presence-dot.online[online.contains(&u.id)] data-presence-user=(u.id) title=(ui.t("live.online")) {}
                                a href=(format!("/users/{}", u.id)) { (u.display_name) }
                            }
                            td { code { (u.username) } }
                            td { (role_label(&ui, u.role)) }
                            td { @if u.active { (ui.t("users.active")) } @else { span.badge { (ui.t("users.disabled")) } } }
                            td { (ui.datetime(u.created_at)) }
                            td { (super::calls::user_cell(&ui, u.id)) }
                        }
                    }
                }
            } }
        },
    ))
}

struct UserFormValues<'a> {
    username: &'a str,
    name: &'a str,
    role: Role,
    language: Language,
    email: &'a str,
}

fn new_page(ui: &Ui, v: UserFormValues, error: Option<&str>) -> Markup {
    page(
        ui,
        ui.t("users.add"),
        html! {
            h1 { (ui.t("users.add")) }
            (flash(error, "error"))
            form.card method="post" action="/users" {
                (csrf_field(ui))
                label for="name" { (ui.t("users.display_name")) }
                input #name name="name" value=(v.name) required maxlength="100";
                label for="username" { (ui.t("login.username")) }
                input #username name="username" value=(v.username) autocapitalize="none" required maxlength="32";
                label for="role" { (ui.t("users.role")) }
                select #role name="role" { (role_options(ui, v.role)) }
                label for="language" { (ui.t("shell.language")) }
                select #language name="language" { (language_options(v.language)) }
                label for="email" { (ui.t("notify.email.label")) }
                input #email name="email" type="email" value=(v.email) maxlength="254";
                label for="password" { (ui.t("login.password")) }
                input #password name="password" type="password" autocomplete="new-password" minlength="8" required;
                button.primary type="submit" { (ui.t("common.create")) }
            }
        },
    )
}

pub async fn new_form(ui: Ui) -> HttpResponse {
    html(new_page(
        &ui,
        UserFormValues {
            username: "",
            name: "",
            role: Role::Operator,
            language: ui.tr.lang,
            email: "",
        },
        None,
    ))
}

#[derive(Deserialize)]
pub struct CreateForm {
    username: String,
    name: String,
    role: String,
    language: String,
    password: String,
    #[serde(default)]
    email: String,
}

pub async fn create(ui: Ui, actor: Actor, form: web::Form<CreateForm>) -> HttpResponse {
    let role: Result<Role, _> = form.role.parse();
    let language = Language::from_code(&form.language);
    let (Ok(role), Some(language)) = (role, language) else {
        return html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            new_page(
                &ui,
                UserFormValues {
                    username: &form.username,
                    name: &form.name,
                    role: Role::Operator,
                    language: ui.tr.lang,
                    email: &form.email,
                },
                Some(ui.t("error.invalid_choice")),
            ),
        );
    };
    // The address is checked before the account is created, so a bad one creates nothing.
    let r = match crate::domain::accounts::normalize_email(&form.email) {
        Err(e) => Err(e),
        Ok(_) => {
            ui.state
                .ctx
                .accounts
                .create_user(
                    Some(&actor),
                    NewUser {
                        username: form.username.clone(),
                        display_name: form.name.clone(),
                        role,
                        language,
                        password: form.password.clone(),
                    },
                    false,
                )
                .await
        }
    };
    let r = match r {
        Ok(id) => ui
            .state
            .ctx
            .accounts
            .set_email(Some(&actor), id, &form.email)
            .await
            .map(|()| id),
        Err(e) => Err(e),
    };
    match r {
        Ok(id) => redirect(&format!("/users/{id}?created=1")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            new_page(
                &ui,
                UserFormValues {
                    username: &form.username,
                    name: &form.name,
                    role,
                    language,
                    email: &form.email,
                },
                Some(&ui.msg(&m)),
            ),
        ),
        Err(e) => err(&ui, e),
    }
}

fn edit_page(
    ui: &Ui,
    u: &UserRow,
    tokens: &[TokenRow],
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    page(
        ui,
        &u.display_name,
        html! {
            h1 { (u.display_name) " " small.muted { "@" (u.username) } }
            (flash(notice, "ok"))
            (flash(error, "error"))
            form.card method="post" action=(format!("/users/{}", u.id)) {
                (csrf_field(ui))
                label for="name" { (ui.t("users.display_name")) }
                input #name name="name" value=(u.display_name) required maxlength="100";
                label for="role" { (ui.t("users.role")) }
                select #role name="role" { (role_options(ui, u.role)) }
                label for="language" { (ui.t("shell.language")) }
                select #language name="language" { (language_options(u.language)) }
                label for="email" { (ui.t("notify.email.label")) }
                input #email name="email" type="email" value=(u.email.as_deref().unwrap_or("")) maxlength="254";
                label.check { input type="checkbox" name="active" value="1" checked[u.active]; " " (ui.t("users.active")) }
                button.primary type="submit" { (ui.t("common.save")) }
            }
            form.card method="post" action=(format!("/users/{}/password", u.id)) {
                (csrf_field(ui))
                h2 { (ui.t("users.reset_password")) }
                label for="password" { (ui.t("profile.new_password")) }
                input #password name="password" type="password" autocomplete="new-password" minlength="8" required;
                button type="submit" { (ui.t("common.save")) }
            }
            section.card {
                h2 { (ui.t("tokens.title")) }
                (super::profile::token_table(ui, tokens))
            }
        },
    )
}

#[derive(Deserialize)]
pub struct EditQuery {
    created: Option<u8>,
    saved: Option<u8>,
}

pub async fn edit_form(ui: Ui, path: web::Path<i64>, q: web::Query<EditQuery>) -> HttpResponse {
    let id = path.into_inner();
    let acc = &ui.state.ctx.accounts;
    let (u, tokens) = match (acc.user(id).await, acc.list_tokens(Some(id)).await) {
        (Ok(u), Ok(t)) => (u, t),
        (Err(e), _) | (_, Err(e)) => return err(&ui, e),
    };
    let notice = if q.created.is_some() {
        Some(ui.t("users.created_ok"))
    } else if q.saved.is_some() {
        Some(ui.t("common.saved"))
    } else {
        None
    };
    html(edit_page(&ui, &u, &tokens, notice, None))
}

#[derive(Deserialize)]
pub struct UpdateForm {
    name: String,
    role: String,
    language: String,
    active: Option<String>,
    /// Absent from older forms: the address then stays as it is.
    email: Option<String>,
}

pub async fn update(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    form: web::Form<UpdateForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let acc = &ui.state.ctx.accounts;
    let (Ok(role), Some(language)) = (
        form.role.parse::<Role>(),
        Language::from_code(&form.language),
    ) else {
        return crate::web::error::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            ui.t("error.invalid_choice"),
            ui.tr,
        );
    };
    if let Some(Err(DomainError::Invalid(m))) = form
        .email
        .as_deref()
        .map(crate::domain::accounts::normalize_email)
    {
        return refused(&ui, id, &ui.msg(&m)).await;
    }
    let r = acc
        .update_user(
            Some(&actor),
            id,
            &form.name,
            role,
            form.active.is_some(),
            language,
        )
        .await;
    let r = match (r, form.email.as_deref()) {
        (Ok(()), Some(email)) => acc.set_email(Some(&actor), id, email).await,
        (r, _) => r,
    };
    match r {
        Ok(()) => redirect(&format!("/users/{id}?saved=1")),
        Err(DomainError::Invalid(m) | DomainError::Conflict(m)) => {
            refused(&ui, id, &ui.msg(&m)).await
        }
        Err(e) => err(&ui, e),
    }
}

/// The edit page again, with the reason a change was refused.
async fn refused(ui: &Ui, id: i64, message: &str) -> HttpResponse {
    let acc = &ui.state.ctx.accounts;
    match (acc.user(id).await, acc.list_tokens(Some(id)).await) {
        (Ok(u), Ok(tokens)) => html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            edit_page(ui, &u, &tokens, None, Some(message)),
        ),
        (Err(e), _) | (_, Err(e)) => err(ui, e),
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    password: String,
}

pub async fn reset_password(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    form: web::Form<ResetForm>,
) -> HttpResponse {
    let id = path.into_inner();
    let acc = &ui.state.ctx.accounts;
    match acc
        .set_password(Some(&actor), id, form.password.clone())
        .await
    {
        Ok(()) => redirect(&format!("/users/{id}?saved=1")),
        Err(DomainError::Invalid(m)) => refused(&ui, id, &ui.msg(&m)).await,
        Err(e) => err(&ui, e),
    }
}
