//! Repair orders and their rules: numbering, the status workflow, assignment and the
//! masters' scope, lines and totals, payments and balance, the timeline, optimistic
//! concurrency. Every change writes its timeline entry and activity row in the same
//! transaction, and is published to live screens after it commits.

use serde::Deserialize;

use super::{from_db, Action, Actor, DomainError, DomainResult};
use crate::db::orders::{self as q, NewOrderRow, OrderFields};
pub use crate::db::orders::{
    EventRow, LineRow, OrderFilter, OrderRow, OrderSort, PaymentRow, PhotoRow, StatusRow,
    WorkloadRow, COUNT_CAP,
};
use crate::db::{now, Db};
use crate::events::{Audience, Event, EventBus};
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

const STALE: &str =
    "someone else changed this order meanwhile: reload to see their change, then try again";

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub customer_id: i64,
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
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderUpdate {
    /// The version the editor saw; a stale one is refused.
    pub version: i64,
    pub device_category: String,
    pub brand: String,
    pub model: String,
    pub serial: String,
    pub complaint: String,
    pub condition: String,
    pub accessories: String,
    pub urgent: bool,
    pub promised_at: Option<i64>,
    pub estimate: i64,
    pub warranty_days: i64,
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
}

fn text(s: &str, what: &str, max: usize, required: bool) -> DomainResult<String> {
    let s = s.trim();
    if required && s.is_empty() {
        return Err(DomainError::invalid(format!("{what} is required")));
    }
    if s.chars().count() > max {
        return Err(DomainError::invalid(format!(
            "{what}: at most {max} characters"
        )));
    }
    Ok(s.to_string())
}

pub fn amount(v: i64, what: &str) -> DomainResult<i64> {
    if v < 0 {
        return Err(DomainError::invalid(format!("{what} cannot be negative")));
    }
    if v > MAX_AMOUNT {
        return Err(DomainError::invalid(format!("{what} is too large")));
    }
    Ok(v)
}

fn category(c: &str) -> DomainResult<String> {
    let c = c.trim().to_lowercase();
    if DEVICE_CATEGORIES.contains(&c.as_str()) {
        Ok(c)
    } else {
        Err(DomainError::invalid(format!(
            "unknown device category {c:?} (one of {})",
            DEVICE_CATEGORIES.join(", ")
        )))
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

pub fn status_name(s: &StatusRow, lang: Language) -> &str {
    match lang {
        Language::UzLatn => &s.name_uz,
        Language::UzCyrl => &s.name_uz_cyrl,
        Language::Ru => &s.name_ru,
        Language::En => &s.name_en,
    }
}

/// Masters may act only on orders assigned to them; to them other orders do not exist.
fn visible(actor: &Actor, o: &OrderRow) -> bool {
    actor.role != Role::Master || o.master_id == Some(actor.user_id)
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
) -> Result<super::notifications::TemplateData, crate::db::DbError> {
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

/// Queues a notification in the caller's transaction (delivered after commit).
fn notify(
    c: &crate::db::Conn,
    event: super::notifications::EventKind,
    key: String,
    to: super::notifications::Recipient,
    data: super::notifications::TemplateData,
) -> Result<(), crate::db::DbError> {
    super::notifications::enqueue(
        c,
        &super::notifications::Notification {
            event,
            key,
            recipients: vec![to],
            data,
        },
    )?;
    Ok(())
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
    events: EventBus,
    clock: super::clock::Clock,
}

impl Orders {
    pub fn new(db: Db, events: EventBus, clock: super::clock::Clock) -> Orders {
        Orders { db, events, clock }
    }

    fn publish(
        &self,
        kind: &str,
        o: &OrderRow,
        prev_master: Option<i64>,
        extra: serde_json::Value,
    ) {
        let mut data = serde_json::json!({
            "id": o.id, "number": o.number, "status": o.status_code,
            "master_id": o.master_id, "version": o.version,
        });
        if let (Some(d), serde_json::Value::Object(e)) = (data.as_object_mut(), extra) {
            d.extend(e);
        }
        self.events.publish(Event::new(
            kind,
            data,
            audience(&[o.master_id, prev_master]),
        ));
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
        let by_id = by.user_id;
        self.db
            .write(move |c| {
                let known: Vec<i64> = q::statuses(c)?.iter().map(|s| s.id).collect();
                if pairs
                    .iter()
                    .any(|(f, t)| !known.contains(f) || !known.contains(t) || f == t)
                {
                    return Err(DomainError::invalid("unknown status in a transition").into());
                }
                q::set_transitions(c, &pairs)?;
                crate::db::settings::log_activity(
                    c,
                    Some(by_id),
                    "update",
                    "workflow",
                    None,
                    &serde_json::json!({"transitions": pairs.len()}),
                    now(),
                )
            })
            .await
            .map_err(from_db)
    }

    pub async fn masters(&self) -> DomainResult<Vec<(i64, String)>> {
        Ok(self.db.read(q::masters).await?)
    }

    pub async fn create(&self, by: &Actor, n: NewOrder) -> DomainResult<OrderRow> {
        if !by.can(Action::CreateOrders) {
            return Err(DomainError::Forbidden);
        }
        let dc = category(&n.device_category)?;
        let brand = text(&n.brand, "brand", 80, false)?;
        let model = text(&n.model, "model", 120, false)?;
        let serial = text(&n.serial, "serial/IMEI", 80, false)?;
        let complaint = text(&n.complaint, "complaint", 2000, true)?;
        let condition = text(&n.condition, "condition", 1000, false)?;
        let accessories = text(&n.accessories, "accessories", 500, false)?;
        let estimate = amount(n.estimate, "estimate")?;
        let prepayment = amount(n.prepayment, "prepayment")?;
        if !(0..=3650).contains(&n.warranty_days) {
            return Err(DomainError::invalid("warranty: 0-3650 days"));
        }
        if n.master_id.is_some() && !by.can(Action::AssignOrders) {
            return Err(DomainError::Forbidden);
        }
        let by_id = by.user_id;
        let clock = self.clock.get();
        let o = self
            .db
            .write(move |c| {
                // The shop clock's now: the order number counts per shop year.
                let now = clock.now();
                let shop =
                    super::shop::parse(crate::db::settings::get(c, super::shop::SETTINGS_KEY)?);
                crate::db::customers::get(c, n.customer_id)?
                    .ok_or_else(|| DomainError::invalid("the customer does not exist"))?;
                if let Some(m) = n.master_id {
                    if !q::masters(c)?.iter().any(|(id, _)| *id == m) {
                        return Err(DomainError::invalid("assign to an active master").into());
                    }
                }
                let branch_id = match n.branch_id {
                    Some(b) => b,
                    None => crate::db::branches::default_id(c)?
                        .ok_or_else(|| DomainError::invalid("no active branch"))?,
                };
                if !q::branch_exists(c, branch_id)? {
                    return Err(DomainError::invalid("unknown branch").into());
                }
                let year = clock.year_of(now);
                let number = q::next_number(c, &shop.order_prefix, year)?;
                let id = q::insert(
                    c,
                    &NewOrderRow {
                        number: &number,
                        branch_id,
                        customer_id: n.customer_id,
                        status_id: 1,
                        master_id: n.master_id,
                        device_category: &dc,
                        brand: &brand,
                        model: &model,
                        serial: &serial,
                        complaint: &complaint,
                        condition: &condition,
                        accessories: &accessories,
                        urgent: n.urgent,
                        promised_at: n.promised_at,
                        estimate,
                        warranty_days: n.warranty_days,
                        created_by: Some(by_id),
                    },
                    now,
                )?;
                q::insert_event(
                    c,
                    id,
                    Some(by_id),
                    "created",
                    false,
                    "",
                    &serde_json::json!({"number": number}),
                    now,
                )?;
                if prepayment > 0 {
                    q::insert_payment(c, id, "prepayment", prepayment, "cash", "", by_id, now)?;
                    q::insert_event(
                        c,
                        id,
                        Some(by_id),
                        "payment",
                        false,
                        "",
                        &serde_json::json!({"kind": "prepayment", "amount": prepayment}),
                        now,
                    )?;
                }
                if let Some(m) = n.master_id {
                    let eid = q::insert_event(
                        c,
                        id,
                        Some(by_id),
                        "assigned",
                        false,
                        "",
                        &serde_json::json!({"master_id": m}),
                        now,
                    )?;
                    notify(
                        c,
                        super::notifications::EventKind::OrderAssigned,
                        format!("order:{id}:assigned:{eid}"),
                        super::notifications::Recipient::Staff(m),
                        order_data(c, id, &[])?,
                    )?;
                }
                crate::db::settings::log_activity(
                    c,
                    Some(by_id),
                    "create",
                    "order",
                    Some(id),
                    &serde_json::json!({"number": number}),
                    now,
                )?;
                Ok(q::get(c, id)?.expect("just inserted"))
            })
            .await
            .map_err(from_db)?;
        self.publish("order.created", &o, None, serde_json::json!({}));
        Ok(o)
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
                let o = q::get(c, id)?
                    .ok_or(DomainError::NotFound)
                    .map_err(crate::db::DbError::from)?;
                if !visible(&by, &o) {
                    return Err(DomainError::NotFound.into());
                }
                Ok(OrderView {
                    lines: q::lines(c, id)?,
                    payments: q::payments(c, Some(id), None)?,
                    photos: q::photos(c, id)?,
                    timeline: q::events(c, id)?,
                    balance: o.total - o.paid,
                    overdue: is_overdue(&o, now()),
                    order: o,
                })
            })
            .await
            .map_err(from_db)?;
        Ok(v)
    }

    /// A page of orders; masters see only theirs whatever the filter says.
    pub async fn list(&self, by: &Actor, mut f: OrderFilter) -> DomainResult<(Vec<OrderRow>, i64)> {
        if by.role == Role::Master {
            f.master_id = Some(by.user_id);
        }
        f.limit = f.limit.clamp(1, 500);
        f.offset = f.offset.max(0);
        Ok(self
            .db
            .read(move |c| Ok((q::list(c, &f)?, q::count(c, &f)?)))
            .await?)
    }

    /// Runs `change` on an order the actor may edit, then records it and publishes.
    async fn mutate<T, F>(
        &self,
        by: &Actor,
        id: i64,
        kind: &'static str,
        change: F,
    ) -> DomainResult<(OrderRow, T)>
    where
        T: Send + 'static,
        F: FnOnce(&crate::db::Conn, &OrderRow, i64) -> Result<T, crate::db::DbError>
            + Send
            + 'static,
    {
        let by2 = by.clone();
        let (before, after, out) = self
            .db
            .write(move |c| {
                let o = q::get(c, id)?.ok_or(DomainError::NotFound)?;
                if !visible(&by2, &o) {
                    return Err(DomainError::NotFound.into());
                }
                let now = now();
                let out = change(c, &o, now)?;
                let after = q::get(c, id)?.expect("still there");
                Ok((o, after, out))
            })
            .await
            .map_err(from_db)?;
        let kind_event = if kind == "order.comment" {
            "order.comment"
        } else {
            "order.updated"
        };
        self.publish(
            kind_event,
            &after,
            before.master_id,
            serde_json::json!({"change": kind}),
        );
        Ok((after, out))
    }

    pub async fn update(&self, by: &Actor, id: i64, u: OrderUpdate) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) || by.role == Role::Master {
            // Intake details belong to the front desk; masters record work as lines and comments.
            return Err(DomainError::Forbidden);
        }
        let dc = category(&u.device_category)?;
        let f = (
            text(&u.brand, "brand", 80, false)?,
            text(&u.model, "model", 120, false)?,
            text(&u.serial, "serial/IMEI", 80, false)?,
            text(&u.complaint, "complaint", 2000, true)?,
            text(&u.condition, "condition", 1000, false)?,
            text(&u.accessories, "accessories", 500, false)?,
        );
        let estimate = amount(u.estimate, "estimate")?;
        if !(0..=3650).contains(&u.warranty_days) {
            return Err(DomainError::invalid("warranty: 0-3650 days"));
        }
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "fields", move |c, before, now| {
                let fields = OrderFields {
                    device_category: &dc,
                    brand: &f.0,
                    model: &f.1,
                    serial: &f.2,
                    complaint: &f.3,
                    condition: &f.4,
                    accessories: &f.5,
                    urgent: u.urgent,
                    promised_at: u.promised_at,
                    estimate,
                    warranty_days: u.warranty_days,
                };
                if !q::update_fields(c, id, u.version, &fields, now)? {
                    return Err(DomainError::Conflict(STALE.into()).into());
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
                diff("brand", before.brand.clone(), f.0.clone());
                diff("model", before.model.clone(), f.1.clone());
                diff("serial", before.serial.clone(), f.2.clone());
                diff("complaint", before.complaint.clone(), f.3.clone());
                diff("condition", before.condition.clone(), f.4.clone());
                diff("accessories", before.accessories.clone(), f.5.clone());
                diff(
                    "estimate",
                    before.estimate.to_string(),
                    estimate.to_string(),
                );
                diff(
                    "promised_at",
                    format!("{:?}", before.promised_at),
                    format!("{:?}", u.promised_at),
                );
                diff("urgent", before.urgent.to_string(), u.urgent.to_string());
                diff(
                    "warranty_days",
                    before.warranty_days.to_string(),
                    u.warranty_days.to_string(),
                );
                let detail = serde_json::Value::Object(changed);
                q::insert_event(c, id, Some(by_id), "fields", false, "", &detail, now)?;
                crate::db::settings::log_activity(
                    c,
                    Some(by_id),
                    "update",
                    "order",
                    Some(id),
                    &detail,
                    now,
                )?;
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
        let note = text(note, "note", 1000, false)?;
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "status", move |c, before, now| {
                let statuses = q::statuses(c)?;
                let to = statuses
                    .iter()
                    .find(|s| s.code == to_code)
                    .ok_or_else(|| DomainError::invalid(format!("unknown status {to_code:?}")))?;
                let from = statuses.iter().find(|s| s.id == before.status_id).expect("status exists");
                if before.version != version {
                    return Err(DomainError::Conflict(STALE.into()).into());
                }
                if from.id == to.id {
                    return Err(DomainError::invalid(format!("the order is already {}", from.name_en)).into());
                }
                if !q::transition_allowed(c, from.id, to.id)? {
                    return Err(DomainError::Conflict(format!(
                        "the workflow does not allow {} → {}",
                        from.name_en, to.name_en
                    ))
                    .into());
                }
                let balance = before.total - before.paid;
                let debt_override = to.code == "delivered" && balance > 0;
                if debt_override && !allow_debt {
                    return Err(DomainError::Conflict(format!(
                        "the customer still owes {balance}: take the payment first, or confirm handing over with a debt"
                    ))
                    .into());
                }
                if !q::set_status(c, id, version, to.id, to.group == "closed", now)? {
                    return Err(DomainError::Conflict(STALE.into()).into());
                }
                let detail = serde_json::json!({"from": from.code, "to": to.code, "debt_override": debt_override.then_some(balance)});
                let eid = q::insert_event(c, id, Some(by_id), "status", false, &note, &detail, now)?;
                let cust = crate::db::customers::get(c, before.customer_id)?;
                // The customer's own language, when the desk recorded it.
                let language = cust
                    .as_ref()
                    .and_then(|c| c.language.as_deref())
                    .and_then(crate::model::Language::from_code);
                let email = cust.map(|c| c.email).filter(|e| !e.is_empty());
                notify(
                    c,
                    super::notifications::EventKind::OrderStatusChanged,
                    format!("order:{id}:status:{eid}"),
                    super::notifications::Recipient::Customer {
                        customer_id: before.customer_id,
                        email,
                        language,
                    },
                    order_data(c, id, &[])?,
                )?;
                crate::db::settings::log_activity(c, Some(by_id), "status", "order", Some(id), &detail, now)?;
                Ok(())
            })
            .await?;
        Ok(o)
    }

    pub async fn assign(&self, by: &Actor, id: i64, master: Option<i64>) -> DomainResult<OrderRow> {
        if !by.can(Action::AssignOrders) {
            return Err(DomainError::Forbidden);
        }
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "assigned", move |c, before, now| {
                if let Some(m) = master {
                    if !q::masters(c)?.iter().any(|(mid, _)| *mid == m) {
                        return Err(DomainError::invalid("assign to an active master").into());
                    }
                }
                q::set_master(c, id, master, now)?;
                let detail = serde_json::json!({"from": before.master_id, "to": master});
                let eid = q::insert_event(c, id, Some(by_id), "assigned", false, "", &detail, now)?;
                if let Some(m) = master.filter(|m| Some(*m) != before.master_id) {
                    notify(
                        c,
                        super::notifications::EventKind::OrderAssigned,
                        format!("order:{id}:assigned:{eid}"),
                        super::notifications::Recipient::Staff(m),
                        order_data(c, id, &[])?,
                    )?;
                }
                crate::db::settings::log_activity(
                    c,
                    Some(by_id),
                    "assign",
                    "order",
                    Some(id),
                    &detail,
                    now,
                )?;
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
            return Err(DomainError::invalid("line kind must be part or labour"));
        }
        let name = text(name, "line name", 200, true)?;
        if !(1..=10_000).contains(&qty) {
            return Err(DomainError::invalid("quantity: 1-10000"));
        }
        let unit_price = amount(unit_price, "price")?;
        if qty.checked_mul(unit_price).is_none_or(|v| v > MAX_AMOUNT) {
            return Err(DomainError::invalid("the line amount is too large"));
        }
        let kind = kind.to_string();
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "line_added", move |c, before, now| {
                if before.status_group == "closed" {
                    return Err(DomainError::Conflict("the order is closed".into()).into());
                }
                let line = q::insert_line(c, id, &kind, &name, qty, unit_price, by_id, now)?;
                let total: i64 = q::get(c, id)?.map(|o| o.total).unwrap_or(0);
                if total > MAX_AMOUNT {
                    return Err(DomainError::invalid("the order total is too large").into());
                }
                q::touch(c, id, now)?;
                let detail = serde_json::json!({"line": line, "kind": kind, "name": name, "qty": qty, "unit_price": unit_price});
                q::insert_event(c, id, Some(by_id), "line_added", false, "", &detail, now)?;
                crate::db::settings::log_activity(c, Some(by_id), "update", "order", Some(id), &detail, now)?;
                Ok(())
            })
            .await?;
        Ok(o)
    }

    pub async fn remove_line(&self, by: &Actor, id: i64, line: i64) -> DomainResult<OrderRow> {
        if !by.can(Action::EditOrders) {
            return Err(DomainError::Forbidden);
        }
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "line_removed", move |c, before, now| {
                if before.status_group == "closed" {
                    return Err(DomainError::Conflict("the order is closed".into()).into());
                }
                let removed = q::delete_line(c, id, line)?.ok_or(DomainError::NotFound)?;
                q::touch(c, id, now)?;
                let detail = serde_json::json!({"line": line, "name": removed.name, "amount": removed.amount});
                q::insert_event(c, id, Some(by_id), "line_removed", false, "", &detail, now)?;
                crate::db::settings::log_activity(c, Some(by_id), "update", "order", Some(id), &detail, now)?;
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
        let body = text(body, "comment", 4000, true)?;
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "order.comment", move |c, _before, now| {
                q::touch(c, id, now)?;
                let eid = q::insert_event(
                    c,
                    id,
                    Some(by_id),
                    "comment",
                    public,
                    &body,
                    &serde_json::json!({}),
                    now,
                )?;
                if let Some(m) = _before.master_id.filter(|m| *m != by_id) {
                    notify(
                        c,
                        super::notifications::EventKind::OrderComment,
                        format!("order:{id}:comment:{eid}"),
                        super::notifications::Recipient::Staff(m),
                        order_data(c, id, &[("comment", body.clone())])?,
                    )?;
                }
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
            return Err(DomainError::invalid(
                "payment kind must be prepayment, payment or refund",
            ));
        }
        let v = amount(amount_v, "amount")?;
        if v == 0 {
            return Err(DomainError::invalid("the amount must be above zero"));
        }
        if !matches!(method, "cash" | "card" | "transfer") {
            return Err(DomainError::invalid(
                "method must be cash, card or transfer",
            ));
        }
        let (kind, method, note) = (
            kind.to_string(),
            method.to_string(),
            text(note, "note", 300, false)?,
        );
        let by_id = by.user_id;
        let (o, _) = self
            .mutate(by, id, "payment", move |c, before, now| {
                if kind == "refund" && v > before.paid {
                    return Err(DomainError::invalid(format!("a refund cannot exceed what was paid ({})", before.paid)).into());
                }
                if kind != "refund" && before.paid.checked_add(v).is_none_or(|p| p > MAX_AMOUNT) {
                    return Err(DomainError::invalid("the amount is too large").into());
                }
                let pid = q::insert_payment(c, id, &kind, v, &method, &note, by_id, now)?;
                q::touch(c, id, now)?;
                let detail = serde_json::json!({"payment": pid, "kind": kind, "amount": v, "method": method});
                q::insert_event(c, id, Some(by_id), "payment", false, &note, &detail, now)?;
                crate::db::settings::log_activity(c, Some(by_id), "payment", "order", Some(id), &detail, now)?;
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
            return Err(DomainError::invalid(format!(
                "the photo is larger than {} MB",
                MAX_PHOTO_BYTES / 1_000_000
            )));
        }
        let (mime, ext) = sniff_image(&data)
            .ok_or_else(|| DomainError::invalid("only JPEG, PNG or WebP photos"))?;
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
            .mutate(by, id, "photo", move |c, _before, now| {
                let pid = q::insert_photo(c, id, &file, mime, bytes, by_id, now)?;
                q::touch(c, id, now)?;
                q::insert_event(
                    c,
                    id,
                    Some(by_id),
                    "photo",
                    false,
                    "",
                    &serde_json::json!({"photo": pid, "bytes": bytes}),
                    now,
                )?;
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

    pub async fn payments_of_customer(&self, customer: i64) -> DomainResult<Vec<PaymentRow>> {
        Ok(self
            .db
            .read(move |c| q::payments(c, None, Some(customer)))
            .await?)
    }

    /// Open and in-work counts per master, and closings with average repair hours over
    /// the last 90 days.
    pub async fn workload(&self) -> DomainResult<Vec<WorkloadRow>> {
        let now = now();
        self.workload_between(now - 90 * 86_400, now + 1).await
    }

    /// Open orders per master now, closings and average repair hours in [from, to).
    pub async fn workload_between(&self, from: i64, to: i64) -> DomainResult<Vec<WorkloadRow>> {
        Ok(self.db.read(move |c| q::workload(c, from, to)).await?)
    }
}
