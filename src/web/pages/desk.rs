//! The front desk's helpers: the header search's results as you type, and the intake
//! form's customer found by the phone being typed (issue 20).

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::core_ui::status_badge;
use super::html;
use crate::domain::customers::CustomerRow;
use crate::domain::Actor;
use crate::model::translit::{fold_word, words};
use crate::model::PhoneNumber;
use crate::web::auth::Ui;

#[derive(Deserialize)]
pub struct SuggestQuery {
    q: Option<String>,
}

/// Results shown per kind while typing; the full list is one Enter away (`/search`).
const SUGGEST: i64 = 6;

/// `GET /search/suggest?q=`: an HTML fragment of links for the header box. Empty or
/// unusable input gives an empty fragment, not an error: it is asked for on every key.
pub async fn suggest(ui: Ui, actor: Actor, q: web::Query<SuggestQuery>) -> HttpResponse {
    let text: String = q.q.clone().unwrap_or_default().chars().take(100).collect();
    if text.trim().is_empty() {
        return html(html! {});
    }
    let ctx = &ui.state.ctx;
    let r = crate::domain::search::suggest(&ctx.db, &ui.clock(), &actor, &text, SUGGEST)
        .await
        .unwrap_or_default();
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let all = format!(
        "/search?{}",
        serde_urlencoded::to_string([("q", text.trim())]).unwrap_or_default()
    );
    html(html! {
        @for o in &r.orders {
            a.sg.sg-order role="option" href=(format!("/orders/{}", o.id)) {
                span.sg-main { (o.number) }
                " " (status_badge(&ui, &statuses, o.status_id))
                " " span.sg-sub { (o.customer_name) " · " (o.brand) " " (o.model) }
            }
        }
        @for c in &r.customers {
            a.sg.sg-customer role="option" href=(format!("/customers/{}", c.id)) {
                span.sg-main { (c.name) }
                " " span.sg-sub { (phones(c)) }
            }
        }
        @if r.orders.is_empty() && r.customers.is_empty() {
            p.sg-empty { (ui.t("search.nothing")) }
        }
        a.sg.sg-all role="option" href=(all) { (ui.t("desk.all_results")) " →" }
    })
}

fn phones(c: &CustomerRow) -> String {
    c.phones
        .iter()
        .map(|p| PhoneNumber::from_e164_unchecked(p.clone()).display())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether two spellings are the same name (any script, case, spacing): then the typed
/// name is the known customer's and nothing needs choosing.
pub fn same_name(a: &str, b: &str) -> bool {
    let key = |s: &str| words(s).map(fold_word).collect::<Vec<_>>().join(" ");
    key(a) == key(b)
}

/// What the desk chose when the phone belongs to someone and the typed name differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Not chosen yet.
    None,
    /// The order goes to the customer the phone found.
    Existing,
    /// A new customer with the typed name, sharing the phone.
    New,
}

impl Choice {
    pub fn parse(s: Option<&str>) -> Choice {
        match s {
            Some("existing") => Choice::Existing,
            Some("new") => Choice::New,
            _ => Choice::None,
        }
    }
}

/// The intake form's customer box: the customer the phone finds (with a link), and when
/// the typed name is someone else's, the choice between them. Empty for a new number.
pub fn customer_block(
    ui: &Ui,
    known: Option<&CustomerRow>,
    typed_name: &str,
    choice: Choice,
) -> Markup {
    let Some(c) = known else {
        return html! {};
    };
    let differs = !typed_name.trim().is_empty() && !same_name(typed_name, &c.name);
    html! {
        div.known-customer data-customer-id=(c.id) data-name=(c.name)
            data-phone=(c.phones.first().map(|p| PhoneNumber::from_e164_unchecked(p.clone()).display()).unwrap_or_default()) {
            "✓ " (ui.t("desk.known_customer")) ": "
            a href=(format!("/customers/{}", c.id)) target="_blank" { (c.name) }
            " " span.muted { (phones(c)) }
        }
        @if differs {
            fieldset.choice #customer-choice {
                legend { (ui.t("desk.name_differs")) }
                label.check {
                    input type="radio" name="customer_choice" value="existing" required checked[choice == Choice::Existing];
                    " " (ui.tr.f("desk.choice_existing", &[("name", &c.name)]))
                }
                label.check {
                    input type="radio" name="customer_choice" value="new" required checked[choice == Choice::New];
                    " " (ui.tr.f("desk.choice_new", &[("name", typed_name.trim())]))
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct LookupQuery {
    phone: Option<String>,
    name: Option<String>,
}

/// `GET /orders/new/customer?phone=&name=`: the customer box for the number being
/// typed; empty while the number is incomplete or unknown.
pub async fn intake_customer(ui: Ui, q: web::Query<LookupQuery>) -> HttpResponse {
    let phone: String = q.phone.clone().unwrap_or_default().chars().take(40).collect();
    let name: String = q.name.clone().unwrap_or_default().chars().take(200).collect();
    let known = if phone.chars().filter(char::is_ascii_digit).count() >= 7 {
        ui.state
            .ctx
            .customers
            .find_by_phone(&phone)
            .await
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        None
    };
    html(customer_block(&ui, known.as_ref(), &name, Choice::None))
}
