//! Shared bits of the service-center pages: money, status badges, dates, pagination.

use maud::{html, Markup};

use crate::domain::clock::ShopClock;
use crate::domain::orders::{status_name, StatusRow};
use crate::domain::shop::ShopSettings;
use crate::web::auth::Ui;

pub fn status_badge(ui: &Ui, statuses: &[StatusRow], id: i64) -> Markup {
    match statuses.iter().find(|s| s.id == id) {
        Some(s) => {
            html! { span class=(format!("badge status status-{}", s.group)) { (status_name(s, ui.tr.lang)) } }
        }
        None => html! { span.badge { "?" } },
    }
}

pub fn money(shop: &ShopSettings, v: i64) -> String {
    shop.money(v)
}

/// An amount as the reader's language writes the currency (`1 250 000 сум` in Russian,
/// `сўм` in Uzbek Cyrillic); other currencies by their code.
pub fn money_text(ui: &Ui, shop: &ShopSettings, v: i64) -> String {
    if shop.currency == "UZS" {
        ui.tr.money(v)
    } else {
        shop.money(v)
    }
}

/// [`money_text`] in a span that never breaks across lines.
pub fn cash(ui: &Ui, shop: &ShopSettings, v: i64) -> Markup {
    html! { span.money { (money_text(ui, shop, v)) } }
}

/// What the customer owes ([`crate::model::money::due`]): the amount, or an overpayment
/// named as one with the amount to give back.
pub fn due_cell(ui: &Ui, shop: &ShopSettings, due: i64) -> Markup {
    html! {
        @if due < 0 {
            span.money.overpaid data-due=(due) { (ui.t("desk.overpaid")) " " (money_text(ui, shop, -due)) }
        } @else if due == 0 {
            span.money.settled data-due="0" { (money_text(ui, shop, 0)) }
        } @else {
            span.money.owed data-due=(due) { (money_text(ui, shop, due)) }
        }
    }
}

/// A compact amount for chart labels (`33,9 mln`, `850 ming`), in the reader's words.
pub fn short_money(ui: &Ui, v: i64) -> String {
    let a = v.unsigned_abs();
    let sign = if v < 0 { "-" } else { "" };
    let one_decimal = |x: u64, unit: u64| {
        let tenths = (x * 10 + unit / 2) / unit;
        if tenths.is_multiple_of(10) || tenths >= 1000 {
            format!("{}", tenths / 10)
        } else {
            format!("{},{}", tenths / 10, tenths % 10)
        }
    };
    if a >= 1_000_000_000 {
        format!(
            "{sign}{} {}",
            one_decimal(a, 1_000_000_000),
            ui.t("desk.money_billion")
        )
    } else if a >= 1_000_000 {
        format!(
            "{sign}{} {}",
            one_decimal(a, 1_000_000),
            ui.t("desk.money_million")
        )
    } else if a >= 1_000 {
        format!(
            "{sign}{} {}",
            one_decimal(a, 1_000),
            ui.t("desk.money_thousand")
        )
    } else {
        format!("{sign}{a}")
    }
}

/// `dd.mm.yyyy`, shop time.
pub fn date(clock: &ShopClock, ts: i64) -> String {
    clock.format_date(ts)
}

/// `YYYY-MM-DD` (shop time) for a date input.
pub fn date_input(clock: &ShopClock, ts: Option<i64>) -> String {
    ts.map(|t| clock.format_iso_date(t)).unwrap_or_default()
}

/// Parses a date input (`YYYY-MM-DD`, shop time) to 23:59 of that day.
pub fn parse_date_input(clock: &ShopClock, s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let d = crate::domain::clock::parse_date(s).ok_or_else(|| format!("not a date: {s:?}"))?;
    Ok(Some(clock.at_local(d, 23 * 60 + 59)))
}

/// The first instant of a date input's shop day.
pub fn start_of_day_input(clock: &ShopClock, s: &str) -> Option<i64> {
    crate::domain::clock::parse_date(s).map(|d| clock.day_start(d))
}

/// The first instant after a date input's shop day (an inclusive "to" date).
pub fn end_of_day_input(clock: &ShopClock, s: &str) -> Option<i64> {
    crate::domain::clock::parse_date(s).map(|d| clock.day_end(d))
}

pub fn pager(ui: &Ui, base: &str, page: i64, per: i64, total: i64) -> Markup {
    let pages = (total + per - 1) / per;
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        nav.pager {
            @if page > 0 { a href=(format!("{base}{sep}page={}", page - 1)) { "← " (ui.t("common.prev")) } }
            @if total > crate::domain::orders::COUNT_CAP {
                span.muted { (page + 1) " · " (crate::model::money::group_thousands(crate::domain::orders::COUNT_CAP)) "+" }
            } @else {
                span.muted { (page + 1) " / " (pages.max(1)) " · " (total) }
            }
            @if page + 1 < pages { a href=(format!("{base}{sep}page={}", page + 1)) { (ui.t("common.next")) " →" } }
        }
    }
}

/// Where the next and previous pages of a list sorted by number start: the first and
/// last id of this page, carried in the links so the next page reads from the cursor
/// instead of skipping rows (`page` stays in the links for the "3 / 120" label).
pub struct Cursor {
    pub first: i64,
    pub last: i64,
}

pub fn keyset_pager(
    ui: &Ui,
    base: &str,
    page: i64,
    per: i64,
    total: i64,
    shown: i64,
    cursor: Option<Cursor>,
) -> Markup {
    let Some(cur) = cursor else {
        return pager(ui, base, page, per, total);
    };
    let pages = (total + per - 1) / per;
    let sep = if base.contains('?') { '&' } else { '?' };
    let prev = if page <= 1 {
        format!("{base}{sep}page=0")
    } else {
        format!("{base}{sep}page={}&before={}", page - 1, cur.first)
    };
    let more = shown >= per && (page + 1 < pages || total > crate::domain::orders::COUNT_CAP);
    html! {
        nav.pager {
            @if page > 0 { a href=(prev) { "← " (ui.t("common.prev")) } }
            @if total > crate::domain::orders::COUNT_CAP {
                span.muted { (page + 1) " · " (crate::model::money::group_thousands(crate::domain::orders::COUNT_CAP)) "+" }
            } @else {
                span.muted { (page + 1) " / " (pages.max(1)) " · " (total) }
            }
            @if more { a href=(format!("{base}{sep}page={}&after={}", page + 1, cur.last)) { (ui.t("common.next")) " →" } }
        }
    }
}

pub fn category_label(ui: &Ui, c: &str) -> &'static str {
    match c {
        "phone" => ui.t("device.phone"),
        "tablet" => ui.t("device.tablet"),
        "laptop" => ui.t("device.laptop"),
        "desktop" => ui.t("device.desktop"),
        "tv" => ui.t("device.tv"),
        "washer" => ui.t("device.washer"),
        "fridge" => ui.t("device.fridge"),
        "ac" => ui.t("device.ac"),
        "microwave" => ui.t("device.microwave"),
        _ => ui.t("device.other"),
    }
}

/// Every export goes through the one CSV writer, [`crate::web::csv`].
pub use crate::web::csv::write as csv;
