//! Staff accounts, for admins.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::language_options;
use super::{html, html_status, redirect};
use crate::domain::accounts::{NewUser, TokenRow, UserAccess, UserChange, UserRow};
use crate::domain::branches::BranchRow;
use crate::domain::roles::RoleView;
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

/// A role's name as shown: a built-in role translated, a custom role as the owner named it.
pub fn role_name(ui: &Ui, roles: &[RoleView], key: &str) -> String {
    match key.parse::<Role>() {
        Ok(r) => role_label(ui, r).to_string(),
        Err(_) => roles
            .iter()
            .find(|r| r.key == key)
            .map_or_else(|| key.to_string(), |r| r.name.clone()),
    }
}

fn role_options(ui: &Ui, roles: &[RoleView], selected: &str) -> Markup {
    html! {
        @for r in roles {
            option value=(r.key) selected[r.key == selected] { (role_name(ui, roles, &r.key)) }
        }
    }
}

/// The branch checkboxes of the user form: none ticked means every branch.
fn branch_boxes(ui: &Ui, branches: &[BranchRow], selected: &[i64]) -> Markup {
    html! {
        fieldset #branches {
            legend { (ui.t("roles.user_branches")) }
            p.muted { (ui.t("roles.user_branches_hint")) }
            @for b in branches {
                label.check {
                    input type="checkbox" name="branch" value=(b.id) checked[selected.contains(&b.id)];
                    " " (b.name)
                }
            }
        }
    }
}

/// What the shared parts of the user forms need: the roles and the branches.
struct Choices {
    roles: Vec<RoleView>,
    branches: Vec<BranchRow>,
}

async fn choices(ui: &Ui) -> Result<Choices, DomainError> {
    Ok(Choices {
        roles: crate::domain::roles::list(&ui.state.ctx.store).await?,
        branches: crate::domain::branches::list(ui.state.ctx.store.db(), false).await?,
    })
}

/// A form posted with repeated fields (the branch checkboxes).
struct Posted(Vec<(String, String)>);

impl Posted {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").to_string()
    }

    /// The ticked branches; None when a value is not a number.
    fn branches(&self) -> Option<Vec<i64>> {
        self.0
            .iter()
            .filter(|(k, _)| k == "branch")
            .map(|(_, v)| v.trim().parse().ok())
            .collect()
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
    let ch = match choices(&ui).await {
        Ok(c) => c,
        Err(e) => return err(&ui, e),
    };
    let online = ui.state.hub.online().await;
    html(page(
        &ui,
        ui.t("users.title"),
        html! {
            div.page-head {
                h1 { (ui.t("users.title")) }
                a.button href="/roles" { (ui.t("roles.title")) }
                a.button.primary href="/users/new" { (ui.t("users.add")) }
            }
            // Creating, changing or disabling a user (or a role) shows here at once.
            div.table-wrap #users-region data-live-topics="user.created user.updated role.updated" { table #users-table {
                thead { tr {
                    th { (ui.t("users.display_name")) } th { (ui.t("login.username")) }
                    th { (ui.t("users.role")) } th { (ui.t("roles.user_branches")) }
                    th { (ui.t("users.status")) } th { (ui.t("users.created")) }
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
                            td data-role=(u.role_key) { (role_name(&ui, &ch.roles, &u.role_key)) }
                            td { (branch_names(&ui, &ch.branches, &u.branch_ids)) }
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

fn branch_names(ui: &Ui, branches: &[BranchRow], ids: &[i64]) -> String {
    if ids.is_empty() {
        return ui.t("roles.all_branches").to_string();
    }
    branches
        .iter()
        .filter(|b| ids.contains(&b.id))
        .map(|b| b.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

struct UserFormValues<'a> {
    username: &'a str,
    name: &'a str,
    role: &'a str,
    branches: &'a [i64],
    language: Language,
    email: &'a str,
}

fn new_page(ui: &Ui, ch: &Choices, v: UserFormValues, error: Option<&str>) -> Markup {
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
                select #role name="role" { (role_options(ui, &ch.roles, v.role)) }
                (branch_boxes(ui, &ch.branches, v.branches))
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
    let ch = match choices(&ui).await {
        Ok(c) => c,
        Err(e) => return err(&ui, e),
    };
    html(new_page(
        &ui,
        &ch,
        UserFormValues {
            username: "",
            name: "",
            role: "operator",
            branches: &[],
            language: ui.tr.lang,
            email: "",
        },
        None,
    ))
}

pub async fn create(ui: Ui, actor: Actor, form: web::Form<Vec<(String, String)>>) -> HttpResponse {
    let form = Posted(form.into_inner());
    // A form without its fields is not one of ours: 400, as for any unreadable request.
    if let Some(missing) = ["username", "name", "role", "language", "password"]
        .into_iter()
        .find(|f| form.get(f).is_none())
    {
        return crate::web::error::error_page(
            StatusCode::BAD_REQUEST,
            &ui.msg(&crate::i18n::Msg::new("error.bad_request").with("detail", missing)),
            ui.tr,
        );
    }
    let ch = match choices(&ui).await {
        Ok(c) => c,
        Err(e) => return err(&ui, e),
    };
    let (username, name, email, role) = (
        form.text("username"),
        form.text("name"),
        form.text("email"),
        form.text("role"),
    );
    let language = form.get("language").and_then(Language::from_code);
    let (Some(branches), Some(language)) = (form.branches(), language) else {
        return html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            new_page(
                &ui,
                &ch,
                UserFormValues {
                    username: &username,
                    name: &name,
                    role: &role,
                    branches: &[],
                    language: ui.tr.lang,
                    email: &email,
                },
                Some(ui.t("error.invalid_choice")),
            ),
        );
    };
    // The address is checked before the account is created, so a bad one creates nothing.
    let r = match crate::domain::accounts::normalize_email(&email) {
        Err(e) => Err(e),
        Ok(_) => {
            ui.state
                .ctx
                .accounts
                .create_user_with(
                    Some(&actor),
                    NewUser {
                        username: username.clone(),
                        display_name: name.clone(),
                        role: Role::Operator,
                        language,
                        password: form.text("password"),
                    },
                    UserAccess {
                        role: role.clone(),
                        branches: branches.clone(),
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
            .set_email(Some(&actor), id, &email)
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
                &ch,
                UserFormValues {
                    username: &username,
                    name: &name,
                    role: &role,
                    branches: &branches,
                    language,
                    email: &email,
                },
                Some(&ui.msg(&m)),
            ),
        ),
        Err(e) => err(&ui, e),
    }
}

fn edit_page(
    ui: &Ui,
    ch: &Choices,
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
                select #role name="role" { (role_options(ui, &ch.roles, &u.role_key)) }
                (branch_boxes(ui, &ch.branches, &u.branch_ids))
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
    let ch = match choices(&ui).await {
        Ok(c) => c,
        Err(e) => return err(&ui, e),
    };
    let notice = if q.created.is_some() {
        Some(ui.t("users.created_ok"))
    } else if q.saved.is_some() {
        Some(ui.t("common.saved"))
    } else {
        None
    };
    html(edit_page(&ui, &ch, &u, &tokens, notice, None))
}

pub async fn update(
    ui: Ui,
    actor: Actor,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let id = path.into_inner();
    let form = Posted(form.into_inner());
    let acc = &ui.state.ctx.accounts;
    if let Some(missing) = ["name", "role", "language"]
        .into_iter()
        .find(|f| form.get(f).is_none())
    {
        return crate::web::error::error_page(
            StatusCode::BAD_REQUEST,
            &ui.msg(&crate::i18n::Msg::new("error.bad_request").with("detail", missing)),
            ui.tr,
        );
    }
    let (Some(role), Some(branches), Some(language)) = (
        form.get("role"),
        form.branches(),
        form.get("language").and_then(Language::from_code),
    ) else {
        return crate::web::error::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            ui.t("error.invalid_choice"),
            ui.tr,
        );
    };
    // Absent from older forms: the address then stays as it is.
    let email = form.get("email");
    if let Some(Err(DomainError::Invalid(m))) = email.map(crate::domain::accounts::normalize_email)
    {
        return refused(&ui, id, &ui.msg(&m)).await;
    }
    let change = UserChange {
        display_name: form.text("name"),
        access: Some(UserAccess {
            role: role.to_string(),
            branches,
        }),
        active: form.get("active").is_some(),
        language,
    };
    let r = acc.update_user(Some(&actor), id, change).await;
    let r = match (r, email) {
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
    let ch = match choices(ui).await {
        Ok(c) => c,
        Err(e) => return err(ui, e),
    };
    match (acc.user(id).await, acc.list_tokens(Some(id)).await) {
        (Ok(u), Ok(tokens)) => html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            edit_page(ui, &ch, &u, &tokens, None, Some(message)),
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
