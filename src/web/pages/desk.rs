//! The front desk's helpers: the header search's results as you type, and the intake
//! form's customer found by the phone being typed (issue 20).

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

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

/// One line of the header box's results.
#[derive(serde::Serialize)]
struct Hit {
    href: String,
    main: String,
    sub: String,
    /// The order's status name and group (for its colour); none for a customer.
    status: Option<(String, String)>,
}

/// `GET /search/suggest?q=`: what the header box lists while typing, as JSON that the
/// script puts on the page as text. Empty or unusable input gives no hits, not an error:
/// it is asked for on every key.
pub async fn suggest(ui: Ui, actor: Actor, q: web::Query<SuggestQuery>) -> HttpResponse {
    let text: String = q.q.clone().unwrap_or_default().chars().take(100).collect();
    let ctx = &ui.state.ctx;
    let r = if text.trim().is_empty() {
        Default::default()
    } else {
        crate::domain::search::suggest(&ctx.db, &ui.clock(), &actor, &text, SUGGEST)
            .await
            .unwrap_or_default()
    };
    let statuses = ctx.orders.statuses().await.unwrap_or_default();
    let mut hits: Vec<Hit> = Vec::new();
    for o in &r.orders {
        let st = statuses.iter().find(|s| s.id == o.status_id);
        hits.push(Hit {
            href: format!("/orders/{}", o.id),
            main: o.number.clone(),
            sub: format!("{} · {} {}", o.customer_name, o.brand, o.model)
                .trim()
                .to_string(),
            status: st.map(|s| {
                (
                    crate::domain::orders::status_name(s, ui.tr.lang).to_string(),
                    s.group.clone(),
                )
            }),
        });
    }
    for c in &r.customers {
        hits.push(Hit {
            href: format!("/customers/{}", c.id),
            main: c.name.clone(),
            sub: phones(c),
            status: None,
        });
    }
    let all = format!(
        "/search?{}",
        serde_urlencoded::to_string([("q", text.trim())]).unwrap_or_default()
    );
    json(serde_json::json!({
        "query": text.trim(),
        "hits": hits,
        "empty": hits.is_empty().then(|| ui.t("search.nothing")),
        "all": {"href": all, "label": format!("{} →", ui.t("desk.all_results"))},
    }))
}

fn json(v: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(v.to_string())
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

/// `GET /orders/new/customer?phone=&name=`: the customer the number being typed
/// belongs to (none while it is incomplete or unknown), whether the typed name is
/// someone else's, and the box's words, as JSON the script shows as text.
pub async fn intake_customer(ui: Ui, actor: Actor, q: web::Query<LookupQuery>) -> HttpResponse {
    let phone: String = q
        .phone
        .clone()
        .unwrap_or_default()
        .chars()
        .take(40)
        .collect();
    let name: String = q
        .name
        .clone()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let known = if phone.chars().filter(char::is_ascii_digit).count() >= 7 {
        ui.state
            .ctx
            .customers
            .find_by_phone(&actor, &phone)
            .await
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        None
    };
    let Some(c) = known else {
        return json(serde_json::json!({"customer": null}));
    };
    let typed = name.trim();
    let differs = !typed.is_empty() && !same_name(typed, &c.name);
    json(serde_json::json!({
        "customer": {
            "id": c.id,
            "name": c.name,
            "href": format!("/customers/{}", c.id),
            "phones": phones(&c),
            "phone": c.phones.first().map(|p| PhoneNumber::from_e164_unchecked(p.clone()).display()),
        },
        "differs": differs,
        "t": {
            "known": ui.t("desk.known_customer"),
            "legend": ui.t("desk.name_differs"),
            "existing": ui.tr.f("desk.choice_existing", &[("name", &c.name)]),
            "new": ui.tr.f("desk.choice_new", &[("name", typed)]),
        },
    }))
}

/// The intake's unlock fields: the PIN or password, and the pattern as digits with a
/// 3×3 pad that writes them (desk.js); without script the digits are typed.
pub fn unlock_fields(ui: &Ui, code: &str, pattern: &str) -> Markup {
    html! {
        label for="unlock_code" { (ui.t("desk.unlock_code")) }
        input #unlock_code name="unlock_code" value=(code) maxlength="64" autocomplete="off"
            spellcheck="false";
        label for="unlock_pattern" { (ui.t("desk.unlock_pattern")) }
        div.pattern-field {
            input #unlock_pattern name="unlock_pattern" value=(pattern) maxlength="20"
                inputmode="numeric" autocomplete="off" placeholder="1-5-9-6"
                title=(ui.t("desk.unlock_pattern_hint"));
            div.pattern-pad role="group" aria-label=(ui.t("desk.unlock_pattern")) hidden {
                @for d in 1..=9 {
                    button type="button" data-dot=(d) aria-label=(d) { span {} }
                }
            }
            button.link.pattern-clear type="button" hidden { (ui.t("desk.unlock_clear")) }
        }
    }
}

/// The dot at `d` (1-9, row by row) in a 3×3 grid 90 units wide.
fn dot_xy(d: u32) -> (u32, u32) {
    (15 + (d - 1) % 3 * 30, 15 + (d - 1) / 3 * 30)
}

/// A device's unlock code and pattern for the master, folded away so it is not on the
/// screen unasked; the pattern is drawn, starting at the ringed dot.
pub fn unlock_view(ui: &Ui, u: &crate::domain::orders::Unlock) -> Markup {
    let dots: Vec<u32> = u.pattern.chars().filter_map(|c| c.to_digit(10)).collect();
    let line = dots
        .iter()
        .map(|d| {
            let (x, y) = dot_xy(*d);
            format!("{x},{y}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let spelled = dots
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("-");
    html! {
        details #unlock-box {
            summary { (ui.t("desk.unlock_show")) }
            dl.facts {
                @if !u.code.is_empty() {
                    dt { (ui.t("desk.unlock_code")) } dd { code #unlock-code-value { (u.code) } }
                }
                @if let Some(first) = dots.first() {
                    dt { (ui.t("desk.unlock_pattern")) }
                    dd {
                        @let (sx, sy) = dot_xy(*first);
                        svg.pattern-view viewBox="0 0 90 90" width="90" height="90" role="img" aria-label=(spelled) {
                            @for d in 1..=9u32 {
                                @let (x, y) = dot_xy(d);
                                circle cx=(x) cy=(y) r="4" {}
                            }
                            circle.start cx=(sx) cy=(sy) r="9" fill="none" {}
                            polyline points=(line) fill="none" {}
                        }
                        " " code #unlock-pattern-value { (spelled) }
                    }
                }
            }
        }
    }
}
