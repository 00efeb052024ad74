//! Repair orders and their rules: numbering, the status workflow, assignment and the
//! masters' scope, lines and totals, payments and balance, the timeline, optimistic
//! concurrency. Every change writes its timeline entry and activity row in the same
//! transaction, and is published to live screens after it commits.

use serde::Deserialize;

use super::work::{Store, Tx};
use super::{Action, Actor, DomainError, DomainResult, Msg};
use crate::db::orders::{self as q, NewOrderRow, OrderFields};
pub use crate::db::orders::{
    EventRow, LineRow, OrderFilter, OrderRow, OrderSort, PaymentRow, PhotoRow, StatusRow,
    WorkloadRow, COUNT_CAP,
};
use crate::db::{now, Db};
use crate::events::{Audience, Event};
use crate::model::money::MAX_AMOUNT;
use crate::model::{Language, Role};

/// Device categories offered on the intake form.
pub const DEVICE_CATEGORIES: &[&str] = &[
    "phone",
    "tablet",
    "laptop",
    "desktop",
    "tv",
    "washer",
    "fridge",
    "ac",
    "microwave",
    "other",
];

pub const MAX_PHOTO_BYTES: usize = 8_000_000;

/// The image type by its first bytes.
pub fn sniff_image(b: &[u8]) -> Option<(&'static str, &'static str)> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if b.len() > 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some(("image/webp", "webp"))
    } else {
        None
    }
}

const STALE: &str = "err.order.stale";

/// The customer of a new order when the desk has no customer id: found by the phone
/// number, or created with this name when nobody has it (in the same transaction as the
/// order, so a refused order leaves no customer behind).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntakeCustomer {
    pub name: String,
    pub phone: String,
    /// A new customer although the phone already belongs to someone (a relative's
    /// phone): the desk chose this over the customer the phone finds.
    #[serde(default)]
    pub shared_phone: bool,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// An existing customer; or give `customer` instead.
    #[serde(default)]
    pub customer_id: Option<i64>,
    /// Found by phone or created with the order, when `customer_id` is absent.
    #[serde(default)]
    pub customer: Option<IntakeCustomer>,
    #[serde(default)]
    pub branch_id: Option<i64>,
    pub device_category: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub model: String,
    /// Serial number or IMEI.
    #[serde(default)]
    pub serial: String,
    pub complaint: String,
    #[serde(default)]
    pub condition: String,
    #[serde(default)]
    pub accessories: String,
    #[serde(default)]
    pub urgent: bool,
    /// Unix seconds.
    #[serde(default)]
    pub promised_at: Option<i64>,
    #[serde(default)]
    pub estimate: i64,
    #[serde(default)]
    pub prepayment: i64,
    #[serde(default)]
    pub warranty_days: i64,
    #[serde(default)]
    pub master_id: Option<i64>,
    /// The device's PIN or password, for the master to test it; never shown back to the
    /// front desk, never in lists, events or receipts.
    #[serde(default)]
    pub unlock_code: String,
    /// An Android pattern: the dots in the order drawn, 1-9 row by row ("14789").
    #[serde(default)]
    pub unlock_pattern: String,
}

/// A device's unlock code and pattern, given only to those allowed to see them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct Unlock {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub pattern: String,
}

impl Unlock {
    pub fn is_empty(&self) -> bool {
        self.code.is_empty() && self.pattern.is_empty()
    }

    /// Trims the code and normalises the pattern to its digits ("1-4-7" and "1 4 7" are
    /// "147"); a pattern must join 4 to 9 different dots.
    pub fn clean(code: &str, pattern: &str) -> DomainResult<Unlock> {
        let code = text(code, "field.unlock_code", 64, false)?;
        let digits: String = pattern
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | ',' | '>' | '→'))
            .collect();
        let mut seen = [false; 10];
        let valid = digits.is_empty()
            || ((4..=9).contains(&digits.chars().count())
                && digits.chars().all(|c| match c.to_digit(10) {
                    Some(d @ 1..=9) => !std::mem::replace(&mut seen[d as usize], true),
                    _ => false,
                }));
        if !valid {
            return Err(DomainError::invalid("err.order.unlock_pattern"));
        }
        Ok(Unlock {
            code,
            pattern: digits,
        })
    }
}

/// A change of an order's intake details. Only `version` is required: a field left out
/// keeps its value (so a client written before a field existed does not clear it), and
/// unknown fields are ignored for the same reason.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct OrderUpdate {
    /// The version the editor saw; a stale one is refused.
    pub version: i64,
    #[serde(default)]
    pub device_category: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub complaint: Option<String>,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub accessories: Option<String>,
    #[serde(default)]
    pub urgent: Option<bool>,
    /// Unix seconds; `null` clears the promised date, absent keeps it.
    #[serde(default, deserialize_with = "present")]
    pub promised_at: Option<Option<i64>>,
    #[serde(default)]
    pub estimate: Option<i64>,
    #[serde(default)]
    pub warranty_days: Option<i64>,
}

/// Tells a field given as `null` (Some(None)) from one left out (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Everything the order page shows.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub order: OrderRow,
    pub lines: Vec<LineRow>,
    pub payments: Vec<PaymentRow>,
    pub photos: Vec<PhotoRow>,
    pub timeline: Vec<EventRow>,
    pub balance: i64,
    pub overdue: bool,
    /// Present only for those allowed to see it, and only when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlock: Option<Unlock>,
}

/// `field` is the catalogue key of the field's name, so the message names it in the
/// reader's language.
pub(super) fn text(
    s: &str,
    field: &'static str,
    max: usize,
    required: bool,
) -> DomainResult<String> {
    let s = s.trim();
    if required && s.is_empty() {
        return Err(DomainError::invalid(
            Msg::new("err.field.required").term("field", field),
        ));
    }
    if s.chars().count() > max {
        return Err(DomainError::invalid(
            Msg::new("err.field.too_long")
                .term("field", field)
                .with("max", max),
        ));
    }
    Ok(s.to_string())
}

pub fn amount(v: i64, field: &'static str) -> DomainResult<i64> {
    if v < 0 {
        return Err(DomainError::invalid(
            Msg::new("err.field.negative").term("field", field),
        ));
    }
    if v > MAX_AMOUNT {
        return Err(DomainError::invalid(
            Msg::new("err.field.too_large").term("field", field),
        ));
    }
    Ok(v)
}

fn category(c: &str) -> DomainResult<String> {
    let c = c.trim().to_lowercase();
    if DEVICE_CATEGORIES.contains(&c.as_str()) {
        Ok(c)
    } else {
        Err(DomainError::invalid(
            Msg::new("err.order.category")
                .with("value", c)
                .with("known", DEVICE_CATEGORIES.join(", ")),
        ))
    }
}

fn warranty(days: i64) -> DomainResult<i64> {
    if (0..=3650).contains(&days) {
        Ok(days)
    } else {
        Err(DomainError::invalid("err.order.warranty"))
    }
}

pub fn is_overdue(o: &OrderRow, now: i64) -> bool {
    if o.status_group == "closed" {
        return false;
    }
    let past_limit = o
        .status_limit_hours
        .is_some_and(|h| o.status_since + h * 3600 < now);
    let past_promise = o.promised_at.is_some_and(|p| p < now) && o.status_group != "ready";
    past_limit || past_promise
}

/// A status's names in every language, for a message that names it.
fn status_names(s: &StatusRow) -> [String; 4] {
    [
        s.name_uz.clone(),
        s.name_uz_cyrl.clone(),
        s.name_ru.clone(),
        s.name_en.clone(),
    ]
}

pub fn status_name(s: &StatusRow, lang: Language) -> &str {
    match lang {
        Language::UzLatn => &s.name_uz,
        Language::UzCyrl => &s.name_uz_cyrl,
        Language::Ru => &s.name_ru,
        Language::En => &s.name_en,
    }
}

/// Masters may act only on orders assigned to them, and everyone only on their branches'
/// orders; to them other orders do not exist. The one record check for orders (search,
/// pages, API, documents and changes all go through it).
pub fn visible(actor: &Actor, o: &OrderRow) -> bool {
    (actor.role != Role::Master || o.master_id == Some(actor.user_id))
        && actor.sees_branch(o.branch_id)
}

fn audience(masters: &[Option<i64>]) -> Audience {
    let mut m: Vec<i64> = masters.iter().flatten().copied().collect();
    m.dedup();
    Audience::Staff { masters: m }
}

/// Template values for a notification about an order, read inside the transaction.
fn order_data(
    c: &crate::db::Conn,
    id: i64,
    extra: &[(&str, String)],
) -> DomainResult<super::notifications::TemplateData> {
    let o = q::get(c, id)?.ok_or(DomainError::NotFound)?;
    let statuses = q::statuses(c)?;
    let status = statuses.iter().find(|s| s.id == o.status_id);
    let mut d = super::notifications::TemplateData::new();
    d.insert("customer_name".into(), o.customer_name.clone());
    d.insert("order_number".into(), o.number.clone());
    d.insert(
        "device".into(),
        format!("{} {}", o.brand, o.model).trim().to_string(),
    );
    // Customers' language is not known yet: the shop's default language.
    d.insert(
        "status".into(),
        status.map(|s| s.name_uz.clone()).unwrap_or_default(),
    );
    d.insert("status_code".into(), o.status_code.clone());
    d.insert(
        "amount_due".into(),
        crate::model::money::group_thousands(o.total - o.paid),
    );
    d.insert(
        "master_name".into(),
        o.master_name.clone().unwrap_or_default(),
    );
    if let Some(p) = o.promised_at {
        // The shop's date, as reminders show it.
        let clock = super::shop::clock_of(c)?;
        d.insert("due_date".into(), clock.format_date(p));
    }
    for (k, v) in extra {
        d.insert((*k).into(), v.clone());
    }
    Ok(d)
}

/// Declares a notification in the change's unit of work (queued with it, delivered
/// after commit).
fn notify(
    tx: &mut Tx,
    event: super::notifications::EventKind,
    key: String,
    to: super::notifications::Recipient,
    data: super::notifications::TemplateData,
) {
    tx.notify(super::notifications::Notification {
        event,
        key,
        recipients: vec![to],
        data,
    });
}

/// The live event of an order change, for the staff and the masters it concerns.
pub(super) fn order_event(
    kind: &str,
    o: &OrderRow,
    prev_master: Option<i64>,
    extra: serde_json::Value,
) -> Event {
    let mut data = serde_json::json!({
        "id": o.id, "number": o.number, "status": o.status_code,
        "master_id": o.master_id, "version": o.version,
    });
    if let (Some(d), serde_json::Value::Object(e)) = (data.as_object_mut(), extra) {
        d.extend(e);
    }
    Event::new(kind, data, audience(&[o.master_id, prev_master])).in_branch(o.branch_id)
}

/// What the Telegram bot needs from the orders, over the same tables.
pub struct CoreOrderLookup {
    /// Due dates in reminders are shop dates.
    pub clock: super::clock::Clock,
}

fn brief(o: &OrderRow, statuses: &[StatusRow]) -> super::notifications::OrderBrief {
    super::notifications::OrderBrief {
        order_id: o.id,
        customer_id: o.customer_id,
        number: o.number.clone(),
        device: format!("{} {}", o.brand, o.model).trim().to_string(),
        status: statuses
            .iter()
            .find(|s| s.id == o.status_id)
            .map(|s| s.name_uz.clone())
            .unwrap_or_default(),
    }
}

impl CoreOrderLookup {
    fn open(
        c: &crate::db::Conn,
        f: OrderFilter,
    ) -> crate::db::DbResult<Vec<super::notifications::OrderBrief>> {
        let statuses = q::statuses(c)?;
        Ok(q::list(c, &f)?
            .iter()
            .filter(|o| o.status_group != "closed")
            .map(|o| brief(o, &statuses))
            .collect())
    }
}

impl super::notifications::OrderLookup for CoreOrderLookup {
    fn by_code(
        &self,
        c: &crate::db::Conn,
        code: &str,
    ) -> crate::db::DbResult<Option<super::notifications::OrderBrief>> {
        let statuses = q::statuses(c)?;
        Ok(q::by_number(c, code.trim())?.map(|o| brief(&o, &statuses)))
    }
    fn open_for_staff(
        &self,
        c: &crate::db::Conn,
        user: crate::model::UserId,
    ) -> crate::db::DbResult<Vec<super::notifications::OrderBrief>> {
        Self::open(
            c,
            OrderFilter {
                master_id: Some(user),
                limit: 30,
                sort: OrderSort::Promised,
                ..Default::default()
            },
        )
    }
    fn open_for_customer(
        &self,
        c: &crate::db::Conn,
        customer: i64,
    ) -> crate::db::DbResult<Vec<super::notifications::OrderBrief>> {
        Self::open(
            c,
            OrderFilter {
                customer_id: Some(customer),
                limit: 30,
                ..Default::default()
            },
        )
    }
    fn daily_figures(
        &self,
        c: &crate::db::Conn,
        since: i64,
    ) -> crate::db::DbResult<Option<super::notifications::DailyFigures>> {
        let (new_orders, overdue_orders, ready_not_collected, missed_calls) =
            crate::db::reports::daily_figures(c, since, self.clock.get().now())?;
        Ok(Some(super::notifications::DailyFigures {
            new_orders,
            overdue_orders,
            ready_not_collected,
            missed_calls,
        }))
    }
    fn overdue_assigned(
        &self,
        c: &crate::db::Conn,
        now: i64,
    ) -> crate::db::DbResult<Vec<super::notifications::OverdueOrder>> {
        let statuses = q::statuses(c)?;
        let clock = self.clock.get();
        Ok(q::list(
            c,
            &OrderFilter {
                overdue_at: Some(now),
                limit: 500,
                ..Default::default()
            },
        )?
        .iter()
        .filter_map(|o| {
            let master_id = o.master_id?;
            let due_date = o
                .promised_at
                .map(|t| clock.format_date(t))
                .unwrap_or_default();
            Some(super::notifications::OverdueOrder {
                order: brief(o, &statuses),
                master_id,
                due_date,
            })
        })
        .collect())
    }
}

#[derive(Clone)]
pub struct Orders {
    db: Db,
    store: Store,
}

/// A new order's fields, checked before anything is written.
struct Draft {
    n: NewOrder,
    dc: String,
    brand: String,
    model: String,
    serial: String,
    complaint: String,
    condition: String,
    accessories: String,
    estimate: i64,
    prepayment: i64,
    unlock: Unlock,
}

fn draft(by: &Actor, n: NewOrder) -> DomainResult<Draft> {
    if !by.can(Action::CreateOrders) {
        return Err(DomainError::Forbidden);
    }
    warranty(n.warranty_days)?;
    if n.master_id.is_some() && !by.can(Action::AssignOrders) {
        return Err(DomainError::Forbidden);
    }
    Ok(Draft {
        dc: category(&n.device_category)?,
        brand: text(&n.brand, "field.brand", 80, false)?,
        model: text(&n.model, "field.model", 120, false)?,
        serial: text(&n.serial, "field.serial", 80, false)?,
        complaint: text(&n.complaint, "field.complaint", 2000, true)?,
        condition: text(&n.condition, "field.condition", 1000, false)?,
        accessories: text(&n.accessories, "field.accessories", 500, false)?,
        estimate: amount(n.estimate, "field.estimate")?,
        prepayment: amount(n.prepayment, "field.prepayment")?,
        unlock: Unlock::clean(&n.unlock_code, &n.unlock_pattern)?,
        n,
    })
}

/// Order intake as one unit of work: the customer (given, found by phone or created),
/// the order with its number, the prepayment and the assignment. Any refusal leaves
/// none of them behind.
fn intake_in(tx: &mut Tx, d: Draft) -> DomainResult<OrderRow> {
    let now = tx.now();
    let by_id = tx.actor_id();
    let n = &d.n;
    // Read once, in the transaction: the number's prefix and the phones' country.
    let shop = super::shop::parse(crate::db::settings::get(tx, super::shop::SETTINGS_KEY)?);
    let country = shop.country();
    if let Some(m) = n.master_id {
        if !q::masters(tx)?.iter().any(|(id, _)| *id == m) {
            return Err(DomainError::invalid("err.order.master_inactive"));
        }
    }
    // A branch-scoped user takes orders in their own branches (the first by default).
    let branch_id = match (n.branch_id, tx.who().branches()) {
        (Some(b), _) => b,
        (None, Some(mine)) => mine[0],
        (None, None) => crate::db::branches::default_id(tx)?
            .ok_or_else(|| DomainError::invalid("err.order.no_branch"))?,
    };
    if !q::branch_exists(tx, branch_id)? || !tx.who().sees_branch(branch_id) {
        return Err(DomainError::invalid("err.order.unknown_branch"));
    }
    // With customers kept per branch, only the user's branches' customers are found.
    let scope = super::customers::tx_scope(tx)?;
    let customer_id = match (n.customer_id, &n.customer) {
        (Some(id), _) => {
            if !crate::db::customers::in_branches(tx, id, scope.as_deref())? {
                return Err(DomainError::invalid("err.order.no_customer"));
            }
            crate::db::customers::get(tx, id)?
                .ok_or_else(|| DomainError::invalid("err.order.no_customer"))?;
            id
        }
        (None, Some(c)) => {
            // The number as typed finds the customer; only a new one needs a name.
            let typed = super::customers::CustomerInput {
                name: c.name.clone(),
                phones: vec![c.phone.clone()],
                ..Default::default()
            };
            let phone = crate::model::PhoneNumber::parse(&c.phone, country).map_err(|e| {
                DomainError::invalid(
                    Msg::new("err.phone.refused")
                        .with("phone", c.phone.trim())
                        .nested("why", e.into()),
                )
            })?;
            let found = if c.shared_phone {
                None
            } else {
                crate::db::customers::by_phone_in(tx, phone.as_str(), scope.as_deref())?
                    .into_iter()
                    .next()
            };
            match found {
                Some(found) => found.id,
                None if c.shared_phone => {
                    let clean = super::customers::clean(typed, country)?;
                    super::customers::create_in(tx, &clean, true)?
                }
                None => {
                    let clean = super::customers::clean(typed, country)?;
                    super::customers::create_in(tx, &clean, false)?
                }
            }
        }
        (None, None) => return Err(DomainError::invalid("err.order.no_customer")),
    };
    // The order number counts per shop year (the shop clock's, not UTC's).
    let year = tx.clock().year_of(now);
    // The branch's own prefix, when it has one.
    let prefix = match crate::db::branches::get(tx, branch_id)? {
        Some(b) if !b.order_prefix.is_empty() => b.order_prefix,
        _ => shop.order_prefix.clone(),
    };
    let number = q::next_number(tx, &prefix, year)?;
    let id = q::insert(
        tx,
        &NewOrderRow {
            number: &number,
            branch_id,
            customer_id,
            status_id: 1,
            master_id: n.master_id,
            device_category: &d.dc,
            brand: &d.brand,
            model: &d.model,
            serial: &d.serial,
            complaint: &d.complaint,
            condition: &d.condition,
            accessories: &d.accessories,
            urgent: n.urgent,
            promised_at: n.promised_at,
            estimate: d.estimate,
            warranty_days: n.warranty_days,
            created_by: by_id,
        },
        now,
    )?;
    q::insert_event(
        tx,
        id,
        by_id,
        "created",
        false,
        "",
        &serde_json::json!({"number": number}),
        now,
    )?;
    if d.prepayment > 0 {
        // Money is always taken by a person; the box itself never records a payment.
        let taker = by_id.ok_or(DomainError::Forbidden)?;
        q::insert_payment(tx, id, "prepayment", d.prepayment, "cash", "", taker, now)?;
        q::insert_event(
            tx,
            id,
            by_id,
            "payment",
            false,
            "",
            &serde_json::json!({"kind": "prepayment", "amount": d.prepayment}),
            now,
        )?;
    }
    if let Some(m) = n.master_id {
        let eid = q::insert_event(
            tx,
            id,
            by_id,
            "assigned",
            false,
            "",
            &serde_json::json!({"master_id": m}),
            now,
        )?;
        let data = order_data(tx, id, &[])?;
        notify(
            tx,
            super::notifications::EventKind::OrderAssigned,
            format!("order:{id}:assigned:{eid}"),
            super::notifications::Recipient::Staff(m),
            data,
        );
    }
    if !d.unlock.is_empty() {
        q::set_unlock(tx, id, &d.unlock.code, &d.unlock.pattern, by_id, now)?;
    }
    // Whether an unlock code was given, never the code itself.
    tx.log(
        "create",
        "order",
        id,
        serde_json::json!({"number": number, "prepayment": d.prepayment, "unlock": !d.unlock.is_empty()}),
    );
    let o = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
    tx.emit(order_event(
        "order.created",
        &o,
        None,
        serde_json::json!({}),
    ));
    Ok(o)
}

impl Orders {
    pub fn new(store: Store) -> Orders {
        Orders {
            db: store.db().clone(),
            store,
        }
    }

    pub async fn statuses(&self) -> DomainResult<Vec<StatusRow>> {
        Ok(self.db.read(q::statuses).await?)
    }

    pub async fn transitions(&self) -> DomainResult<Vec<(i64, i64)>> {
        Ok(self.db.read(q::transitions).await?)
    }

    /// Replaces the allowed transitions (admin).
    pub async fn set_transitions(&self, by: &Actor, pairs: Vec<(i64, i64)>) -> DomainResult<()> {
        if !by.can(Action::ManageWorkflow) {
            return Err(DomainError::Forbidden);
        }
        self.store
            .write(by, move |tx| {
                let known: Vec<i64> = q::statuses(tx)?.iter().map(|s| s.id).collect();
                if pairs
                    .iter()
                    .any(|(f, t)| !known.contains(f) || !known.contains(t) || f == t)
                {
                    return Err(DomainError::invalid("err.order.unknown_transition"));
                }
                q::set_transitions(tx, &pairs)?;
                tx.log(
                    "update",
                    "workflow",
                    None,
                    serde_json::json!({"transitions": pairs.len()}),
                );
                tx.emit(Event::new(
                    "workflow.updated",
                    serde_json::json!({"transitions": pairs.len()}),
                    Audience::Everyone,
                ));
                Ok(())
            })
            .await
    }

    pub async fn masters(&self) -> DomainResult<Vec<(i64, String)>> {
        Ok(self.db.read(q::masters).await?)
    }

    /// Order intake: one unit of work (see [`intake_in`]). The customer is `customer_id`,
    /// or the one found by `customer.phone`, or a new one created with the order.
    pub async fn create(&self, by: &Actor, n: NewOrder) -> DomainResult<OrderRow> {
        let d = draft(by, n)?;
        self.store.write(by, move |tx| intake_in(tx, d)).await
    }

    /// The order if the actor may see it; masters get NotFound for others' orders.
    pub async fn get(&self, by: &Actor, id: i64) -> DomainResult<OrderRow> {
        let o = self
            .db
            .read(move |c| q::get(c, id))
            .await?
            .ok_or(DomainError::NotFound)?;
        if !visible(by, &o) {
            return Err(DomainError::NotFound);
        }
        Ok(o)
    }

    pub async fn view(&self, by: &Actor, id: i64) -> DomainResult<OrderView> {
        let by = by.clone();
        let v = self
            .db
            .read(move |c| {
                let Some(o) = q::get(c, id)? else {
                    return Ok(None);
                };
                if !visible(&by, &o) {
                    return Ok(None);
                }
                let unlock = if by.can(Action::ViewUnlockCode) {
                    q::unlock(c, id)?.map(|(code, pattern)| Unlock { code, pattern })
                } else {
                    None
                };
                Ok(Some(OrderView {
                    unlock,
                    lines: q::lines(c, id)?,
                    payments: q::payments(c, id)?,
                    photos: q::photos(c, id)?,
                    timeline: q::events(c, id)?,
                    balance: crate::model::money::due(o.total, o.estimate, o.discount, o.paid),
                    overdue: is_overdue(&o, now()),
                    order: o,
                }))
            })
            .await?;
        v.ok_or(DomainError::NotFound)
    }

    /// A page of orders; masters see only theirs whatever the filter says.
    pub async fn list(&self, by: &Actor, mut f: OrderFilter) -> DomainResult<(Vec<OrderRow>, i64)> {
        if by.role == Role::Master {
            f.master_id = Some(by.user_id);
        }
        // Only the actor's branches, whatever the filter says.
        f.branch_ids = by.branch_filter().map(<[i64]>::to_vec);
        f.limit = f.limit.clamp(1, 500);
        f.offset = f.offset.max(0);
        Ok(self
            .db
            .read(move |c| Ok((q::list(c, &f)?, q::count(c, &f)?)))
            .await?)
    }

    /// Runs `change` on an order the actor may edit, in one unit of work that also
    /// declares the order's live event.
    async fn mutate<T, F>(
        &self,
        by: &Actor,
        id: i64,
        kind: &'static str,
        change: F,
    ) -> DomainResult<(OrderRow, T)>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&mut Tx<'c>, &OrderRow) -> DomainResult<T> + Send + 'static,
    {
        let actor = by.clone();
        self.store
            .write(by, move |tx| {
                let o = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                if !visible(&actor, &o) {
                    return Err(DomainError::NotFound);
                }
                let out = change(tx, &o)?;
                let after = q::get(tx, id)?.ok_or(DomainError::NotFound)?;
                if !tx.has_logged() {
                    // Nothing changed (the same unlock code saved again, say): no event.
                    return Ok((after, out));
                }
                let kind_event = if kind == "order.comment" {
                    "order.comment"
                } else {
                    "order.updated"
                };
                tx.emit(order_event(
                    kind_event,
                    &after,
                    o.master_id,
                    serde_json::json!({"change": kind}),
                ));
                Ok((after, out))
            })
            .await
    }

    pub async fn update(&self, by: &Actor, id: i64, u: OrderUpdate) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) || by.role == Role::Master {
            // Intake details belong to the front desk; masters record work as lines and comments.
            return Err(DomainError::Forbidden);
        }
        let opt = |v: &Option<String>, field, max, required| {
            v.as_deref()
                .map(|s| text(s, field, max, required))
                .transpose()
        };
        let dc = u.device_category.as_deref().map(category).transpose()?;
        let f = (
            opt(&u.brand, "field.brand", 80, false)?,
            opt(&u.model, "field.model", 120, false)?,
            opt(&u.serial, "field.serial", 80, false)?,
            opt(&u.complaint, "field.complaint", 2000, true)?,
            opt(&u.condition, "field.condition", 1000, false)?,
            opt(&u.accessories, "field.accessories", 500, false)?,
        );
        let estimate = u
            .estimate
            .map(|v| amount(v, "field.estimate"))
            .transpose()?;
        let warranty_days = u.warranty_days.map(warranty).transpose()?;
        let (o, _) = self
            .mutate(by, id, "fields", move |tx, before| {
                let dc = dc.unwrap_or_else(|| before.device_category.clone());
                let pick = |v: Option<String>, old: &String| v.unwrap_or_else(|| old.clone());
                let brand = pick(f.0, &before.brand);
                let model = pick(f.1, &before.model);
                let serial = pick(f.2, &before.serial);
                let complaint = pick(f.3, &before.complaint);
                let condition = pick(f.4, &before.condition);
                let accessories = pick(f.5, &before.accessories);
                let urgent = u.urgent.unwrap_or(before.urgent);
                let promised_at = u.promised_at.unwrap_or(before.promised_at);
                let estimate = estimate.unwrap_or(before.estimate);
                let warranty_days = warranty_days.unwrap_or(before.warranty_days);
                let fields = OrderFields {
                    device_category: &dc,
                    brand: &brand,
                    model: &model,
                    serial: &serial,
                    complaint: &complaint,
                    condition: &condition,
                    accessories: &accessories,
                    urgent,
                    promised_at,
                    estimate,
                    warranty_days,
                };
                if !q::update_fields(tx, id, u.version, &fields, tx.now())? {
                    return Err(DomainError::conflict(STALE));
                }
                let mut changed = serde_json::Map::new();
                let mut diff = |k: &str, a: String, b: String| {
                    if a != b {
                        changed.insert(k.into(), serde_json::json!([a, b]));
                    }
                };
                diff(
                    "device_category",
                    before.device_category.clone(),
                    dc.clone(),
                );
                diff("brand", before.brand.clone(), brand.clone());
                diff("model", before.model.clone(), model.clone());
                diff("serial", before.serial.clone(), serial.clone());
                diff("complaint", before.complaint.clone(), complaint.clone());
                diff("condition", before.condition.clone(), condition.clone());
                diff(
                    "accessories",
                    before.accessories.clone(),
                    accessories.clone(),
                );
                diff(
                    "estimate",
                    before.estimate.to_string(),
                    estimate.to_string(),
                );
                diff(
                    "promised_at",
                    format!("{:?}", before.promised_at),
                    format!("{promised_at:?}"),
                );
                diff("urgent", before.urgent.to_string(), urgent.to_string());
                diff(
                    "warranty_days",
                    before.warranty_days.to_string(),
                    warranty_days.to_string(),
                );
                let detail = serde_json::Value::Object(changed);
                q::insert_event(
                    tx,
                    id,
                    tx.actor_id(),
                    "fields",
                    false,
                    "",
                    &detail,
                    tx.now(),
                )?;
                tx.log("update", "order", id, detail);
                Ok(())
            })
            .await?;
        Ok(o)
    }

    /// Changes the device's unlock code and pattern (both empty removes them). Whoever
    /// may edit the order may set it, seeing it or not; the timeline and the activity log
    /// say that it changed, never what it is.
    pub async fn set_unlock(&self, by: &Actor, id: i64, u: Unlock) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) {
            return Err(DomainError::Forbidden);
        }
        let u = Unlock::clean(&u.code, &u.pattern)?;
        let (o, _) = self
            .mutate(by, id, "unlock", move |tx, _| {
                let before = q::unlock(tx, id)?.unwrap_or_default();
                if before == (u.code.clone(), u.pattern.clone()) {
                    return Ok(());
                }
                q::set_unlock(tx, id, &u.code, &u.pattern, tx.actor_id(), tx.now())?;
                let detail = serde_json::json!({"unlock": !u.is_empty()});
                q::insert_event(
                    tx,
                    id,
                    tx.actor_id(),
                    "unlock",
                    false,
                    "",
                    &detail,
                    tx.now(),
                )?;
                tx.log("update", "order", id, detail);
                Ok(())
            })
            .await?;
        Ok(o)
    }

    /// Moves the order to another status if the workflow allows it. Closing as delivered
    /// with a balance due needs `allow_debt` (an explicit override, recorded).
    pub async fn change_status(
        &self,
        by: &Actor,
        id: i64,
        version: i64,
        to_code: &str,
        allow_debt: bool,
        note: &str,
    ) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) {
            return Err(DomainError::Forbidden);
        }
        let to_code = to_code.to_string();
        let note = text(note, "field.note", 1000, false)?;
        let (o, _) = self
            .mutate(by, id, "status", move |tx, before| {
                let now = tx.now();
                let statuses = q::statuses(tx)?;
                let to = statuses.iter().find(|s| s.code == to_code).ok_or_else(|| {
                    DomainError::invalid(Msg::new("err.order.unknown_status").with("value", &to_code))
                })?;
                let from = statuses
                    .iter()
                    .find(|s| s.id == before.status_id)
                    .ok_or(DomainError::NotFound)?;
                if before.version != version {
                    return Err(DomainError::conflict(STALE));
                }
                // A status's name is the shop's own text in four languages, so it travels
                // as a term the reader's language picks from.
                if from.id == to.id {
                    return Err(DomainError::invalid(
                        Msg::new("err.order.already").names("status", status_names(from)),
                    ));
                }
                if !q::transition_allowed(tx, from.id, to.id)? {
                    return Err(DomainError::conflict(
                        Msg::new("err.order.transition")
                            .names("from", status_names(from))
                            .names("to", status_names(to)),
                    ));
                }
                let balance = before.total - before.discount - before.paid;
                let debt_override = to.code == "delivered" && balance > 0;
                if debt_override && !allow_debt {
                    return Err(DomainError::conflict(
                        Msg::new("err.order.balance_due").money("amount", balance),
                    ));
                }
                if !q::set_status(tx, id, version, to.id, to.group == "closed", now)? {
                    return Err(DomainError::conflict(STALE));
                }
                let detail = serde_json::json!({"from": from.code, "to": to.code, "debt_override": debt_override.then_some(balance)});
                let eid = q::insert_event(tx, id, tx.actor_id(), "status", false, &note, &detail, now)?;
                let cust = crate::db::customers::get(tx, before.customer_id)?;
                // The customer's own language, when the desk recorded it.
                let language = cust
                    .as_ref()
                    .and_then(|c| c.language.as_deref())
                    .and_then(crate::model::Language::from_code);
                let email = cust.map(|c| c.email).filter(|e| !e.is_empty());
                let data = order_data(tx, id, &[])?;
                notify(
                    tx,
                    super::notifications::EventKind::OrderStatusChanged,
                    format!("order:{id}:status:{eid}"),
                    super::notifications::Recipient::Customer {
                        customer_id: before.customer_id,
                        email,
                        language,
                    },
                    data,
                );
                tx.log("status", "order", id, detail);
                Ok(())
            })
            .await?;
        Ok(o)
    }

    pub async fn assign(&self, by: &Actor, id: i64, master: Option<i64>) -> DomainResult<OrderRow> {
        if !by.can(Action::AssignOrders) {
            return Err(DomainError::Forbidden);
        }
        let (o, _) = self
            .mutate(by, id, "assigned", move |tx, before| {
                if let Some(m) = master {
                    if !q::masters(tx)?.iter().any(|(mid, _)| *mid == m) {
                        return Err(DomainError::invalid("err.order.master_inactive"));
                    }
                }
                q::set_master(tx, id, master, tx.now())?;
                let detail = serde_json::json!({"from": before.master_id, "to": master});
                let eid = q::insert_event(
                    tx,
                    id,
                    tx.actor_id(),
                    "assigned",
                    false,
                    "",
                    &detail,
                    tx.now(),
                )?;
                if let Some(m) = master.filter(|m| Some(*m) != before.master_id) {
                    let data = order_data(tx, id, &[])?;
                    notify(
                        tx,
                        super::notifications::EventKind::OrderAssigned,
                        format!("order:{id}:assigned:{eid}"),
                        super::notifications::Recipient::Staff(m),
                        data,
                    );
                }
                tx.log("assign", "order", id, detail);
                Ok(())
            })
            .await?;
        Ok(o)
    }

    pub async fn add_line(
        &self,
        by: &Actor,
        id: i64,
        kind: &str,
        name: &str,
        qty: i64,
        unit_price: i64,
    ) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) {
            return Err(DomainError::Forbidden);
        }
        if kind != "part" && kind != "labour" {
            return Err(DomainError::invalid("err.order.line_kind"));
        }
        let name = text(name, "field.line_name", 200, true)?;
        if !(1..=10_000).contains(&qty) {
            return Err(DomainError::invalid("err.order.quantity"));
        }
        let unit_price = amount(unit_price, "field.price")?;
        if qty.checked_mul(unit_price).is_none_or(|v| v > MAX_AMOUNT) {
            return Err(DomainError::invalid("err.order.line_too_large"));
        }
        let kind = kind.to_string();
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "line_added", move |tx, before| {
                let now = tx.now();
                if before.status_group == "closed" {
                    return Err(DomainError::conflict("err.order.closed"));
                }
                let line = q::insert_line(tx, id, &kind, &name, qty, unit_price, by_id, now)?;
                let total: i64 = q::get(tx, id)?.map(|o| o.total).unwrap_or(0);
                if total > MAX_AMOUNT {
                    return Err(DomainError::invalid("err.order.total_too_large"));
                }
                q::touch(tx, id, now)?;
                let detail = serde_json::json!({"line": line, "kind": kind, "name": name, "qty": qty, "unit_price": unit_price});
                q::insert_event(tx, id, Some(by_id), "line_added", false, "", &detail, now)?;
                tx.log("update", "order", id, detail);
                Ok(())
            })
            .await?;
        Ok(o)
    }

    pub async fn remove_line(&self, by: &Actor, id: i64, line: i64) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) {
            return Err(DomainError::Forbidden);
        }
        let (o, _) = self
            .mutate(by, id, "line_removed", move |tx, before| {
                let now = tx.now();
                if before.status_group == "closed" {
                    return Err(DomainError::conflict("err.order.closed"));
                }
                let removed = q::delete_line(tx, id, line)?.ok_or(DomainError::NotFound)?;
                q::touch(tx, id, now)?;
                let detail = serde_json::json!({"line": line, "name": removed.name, "amount": removed.amount});
                q::insert_event(tx, id, tx.actor_id(), "line_removed", false, "", &detail, now)?;
                tx.log("update", "order", id, detail);
                Ok(())
            })
            .await?;
        Ok(o)
    }

    pub async fn comment(
        &self,
        by: &Actor,
        id: i64,
        body: &str,
        public: bool,
    ) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) {
            return Err(DomainError::Forbidden);
        }
        let body = text(body, "field.comment", 4000, true)?;
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "order.comment", move |tx, before| {
                let now = tx.now();
                q::touch(tx, id, now)?;
                let eid = q::insert_event(
                    tx,
                    id,
                    Some(by_id),
                    "comment",
                    public,
                    &body,
                    &serde_json::json!({}),
                    now,
                )?;
                if let Some(m) = before.master_id.filter(|m| *m != by_id) {
                    let data = order_data(tx, id, &[("comment", body.clone())])?;
                    notify(
                        tx,
                        super::notifications::EventKind::OrderComment,
                        format!("order:{id}:comment:{eid}"),
                        super::notifications::Recipient::Staff(m),
                        data,
                    );
                }
                // "The customer may see it": it goes to their Telegram conversation,
                // with this change.
                if public {
                    super::conversations::order_comment_to_customer(
                        tx,
                        id,
                        before.customer_id,
                        &body,
                        eid,
                    )?;
                }
                tx.log(
                    "comment",
                    "order",
                    id,
                    serde_json::json!({"event": eid, "public": public}),
                );
                Ok(())
            })
            .await?;
        Ok(o)
    }

    /// Records money in (prepayment, payment) or out (refund, admins only, never more
    /// than was paid).
    pub async fn pay(
        &self,
        by: &Actor,
        id: i64,
        kind: &str,
        amount_v: i64,
        method: &str,
        note: &str,
    ) -> DomainResult<OrderRow> {
        let needed = if kind == "refund" {
            Action::RefundPayments
        } else {
            Action::TakePayments
        };
        if !by.can(needed) {
            return Err(DomainError::Forbidden);
        }
        if !matches!(kind, "prepayment" | "payment" | "refund") {
            return Err(DomainError::invalid("err.payment.kind"));
        }
        let v = amount(amount_v, "field.amount")?;
        if v == 0 {
            return Err(DomainError::invalid("err.payment.zero"));
        }
        if !matches!(method, "cash" | "card" | "transfer") {
            return Err(DomainError::invalid("err.payment.method"));
        }
        let (kind, method, note) = (
            kind.to_string(),
            method.to_string(),
            text(note, "field.note", 300, false)?,
        );
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "payment", move |tx, before| {
                let now = tx.now();
                if kind == "refund" && v > before.paid {
                    return Err(DomainError::invalid(
                        Msg::new("err.payment.refund_exceeds").money("paid", before.paid),
                    ));
                }
                if kind != "refund" && before.paid.checked_add(v).is_none_or(|p| p > MAX_AMOUNT) {
                    return Err(DomainError::invalid(
                        Msg::new("err.field.too_large").term("field", "field.amount"),
                    ));
                }
                let pid = q::insert_payment(tx, id, &kind, v, &method, &note, by_id, now)?;
                q::touch(tx, id, now)?;
                let detail = serde_json::json!({"payment": pid, "kind": kind, "amount": v, "method": method});
                q::insert_event(tx, id, Some(by_id), "payment", false, &note, &detail, now)?;
                tx.log("payment", "order", id, detail);
                Ok(())
            })
            .await?;
        Ok(o)
    }

    /// Stores a photo of the device: at most [`MAX_PHOTO_BYTES`], JPEG, PNG or WebP by
    /// content (not by the name the browser sent). The file is written first, under a
    /// random name; the row and timeline entry follow in one transaction, and the file is
    /// removed again if that fails.
    pub async fn add_photo(
        &self,
        by: &Actor,
        id: i64,
        dir: &std::path::Path,
        data: Vec<u8>,
    ) -> DomainResult<PhotoRow> {
        if !by.can(Action::EditOrders) {
            return Err(DomainError::Forbidden);
        }
        self.get(by, id).await?;
        if data.len() > MAX_PHOTO_BYTES {
            return Err(DomainError::invalid(
                Msg::new("err.photo.too_large").with("mb", MAX_PHOTO_BYTES / 1_000_000),
            ));
        }
        let (mime, ext) =
            sniff_image(&data).ok_or_else(|| DomainError::invalid("err.photo.kind"))?;
        let folder = dir.join("orders").join(id.to_string());
        let name = format!("{}.{ext}", super::accounts::random_token(12));
        let path = folder.join(&name);
        let bytes = data.len() as i64;
        let p2 = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(p2.parent().expect("has a parent"))?;
            std::fs::write(&p2, &data)?;
            std::fs::File::open(&p2)?.sync_all()
        })
        .await
        .map_err(|e| DomainError::Db(crate::db::DbError::Task(e.to_string())))?
        .map_err(|e| DomainError::Db(crate::db::DbError::Task(format!("saving the photo: {e}"))))?;
        let by_id = by.user_id;
        let file = name.clone();
        let r = self
            .mutate(by, id, "photo", move |tx, _before| {
                let now = tx.now();
                let pid = q::insert_photo(tx, id, &file, mime, bytes, by_id, now)?;
                q::touch(tx, id, now)?;
                let detail = serde_json::json!({"photo": pid, "bytes": bytes});
                q::insert_event(tx, id, Some(by_id), "photo", false, "", &detail, now)?;
                tx.log("photo", "order", id, detail);
                Ok(pid)
            })
            .await;
        match r {
            Ok((_, pid)) => Ok(PhotoRow {
                id: pid,
                order_id: id,
                file: name,
                mime: mime.into(),
                bytes,
                created_at: now(),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// A photo of an order the actor may see.
    pub async fn photo(&self, by: &Actor, id: i64, photo: i64) -> DomainResult<PhotoRow> {
        self.get(by, id).await?;
        self.db
            .read(move |c| q::photos(c, id))
            .await?
            .into_iter()
            .find(|p| p.id == photo)
            .ok_or(DomainError::NotFound)
    }

    /// A customer's payments on the orders `by` may see (their branches; a master's own).
    pub async fn payments_of_customer(
        &self,
        by: &Actor,
        customer: i64,
    ) -> DomainResult<Vec<PaymentRow>> {
        let by = by.clone();
        Ok(self
            .db
            .read(move |c| {
                let mut seen: std::collections::HashMap<i64, bool> = Default::default();
                let mut out = Vec::new();
                for p in q::payments_of_customer(c, customer)? {
                    let ok = match seen.get(&p.order_id) {
                        Some(ok) => *ok,
                        None => {
                            let ok = q::get(c, p.order_id)?.is_some_and(|o| visible(&by, &o));
                            seen.insert(p.order_id, ok);
                            ok
                        }
                    };
                    if ok {
                        out.push(p);
                    }
                }
                Ok(out)
            })
            .await?)
    }

    /// Open and in-work counts per master, and closings with average repair hours over
    /// the last 90 days.
    /// (In `by`'s branches.)
    pub async fn workload(&self, by: &Actor) -> DomainResult<Vec<WorkloadRow>> {
        let now = now();
        self.workload_between(by, now - 90 * 86_400, now + 1).await
    }

    /// Open orders per master now, closings and average repair hours in [from, to), in
    /// `by`'s branches.
    pub async fn workload_between(
        &self,
        by: &Actor,
        from: i64,
        to: i64,
    ) -> DomainResult<Vec<WorkloadRow>> {
        let scope = by.branch_filter().map(<[i64]>::to_vec);
        Ok(self
            .db
            .read(move |c| q::workload(c, from, to, scope.as_deref()))
            .await?)
    }
}
