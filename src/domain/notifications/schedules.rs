//! Scheduled notifications: overdue reminders to masters and the daily summary to the
//! admins, each once per shop day, and what they (and the bot) need from the orders.

use super::*;

/// An order as the bot shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBrief {
    pub order_id: i64,
    pub customer_id: i64,
    pub number: String,
    pub device: String,
    pub status: String,
}

/// What the bot needs from the orders module; the core implements it over its tables
/// (the `&Connection` is the caller's transaction) and installs it with
/// [`Notifications::set_order_lookup`].
pub trait OrderLookup: Send + Sync {
    /// False while no orders module is wired in: the bot then says so instead of
    /// pretending there are no orders.
    fn available(&self) -> bool {
        true
    }
    /// The order numbered `code` (a customer link code resolves to it).
    fn by_code(&self, c: &Connection, code: &str) -> DbResult<Option<OrderBrief>>;
    /// Open orders assigned to a staff member (`/my`).
    fn open_for_staff(&self, c: &Connection, user_id: UserId) -> DbResult<Vec<OrderBrief>>;
    /// A customer's open orders (`/status`).
    fn open_for_customer(&self, c: &Connection, customer_id: i64) -> DbResult<Vec<OrderBrief>>;
    /// Figures for the daily summary of the day starting at `since` (Unix seconds); None
    /// while the modules that know them are not wired in (no summary is sent then).
    fn daily_figures(&self, _c: &Connection, _since: i64) -> DbResult<Option<DailyFigures>> {
        Ok(None)
    }
    /// Open orders with a master that are overdue at `now` (Unix seconds), with the master
    /// and the date they were due (shown to the master).
    fn overdue_assigned(&self, _c: &Connection, _now: i64) -> DbResult<Vec<OverdueOrder>> {
        Ok(Vec::new())
    }
}

/// An overdue order to remind its master of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueOrder {
    pub order: OrderBrief,
    pub master_id: UserId,
    /// As shown in the reminder, e.g. `28.11.2026`; empty when only the status limit passed.
    pub due_date: String,
}

/// Queues one reminder per overdue order to its master, once per shop day, from the
/// configured hour on (`notify.overdue_hour`, shop time, default 9). The order and the date
/// are the dedupe key, so calling this every minute (and across restarts) reminds once a
/// day. Returns how many reminders this call queued.
pub fn queue_overdue_reminders_if_due(
    c: &Connection,
    orders: &dyn OrderLookup,
    clock: &crate::domain::clock::ShopClock,
) -> DbResult<usize> {
    let now = clock.now();
    let hour: i64 = settings::get(c, "notify.overdue_hour")?
        .and_then(|h| h.trim().parse().ok())
        .filter(|h| (0..24).contains(h))
        .unwrap_or(9);
    if (clock.local(now).hour as i64) < hour {
        return Ok(0);
    }
    let today = crate::domain::clock::iso_date(clock.date_of(now));
    let mut queued = 0;
    for o in orders.overdue_assigned(c, now)? {
        let data: TemplateData = [
            ("order_number", o.order.number.clone()),
            ("device", o.order.device.clone()),
            ("status", o.order.status.clone()),
            ("due_date", o.due_date.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        queued += enqueue(
            c,
            &Notification {
                event: EventKind::OrderOverdue,
                key: format!("order:{}:overdue:{today}", o.order.order_id),
                recipients: vec![Recipient::Staff(o.master_id)],
                data,
            },
        )?
        .len();
    }
    Ok(queued)
}

/// What the evening summary tells the admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DailyFigures {
    pub new_orders: i64,
    pub overdue_orders: i64,
    pub ready_not_collected: i64,
    pub missed_calls: i64,
}

/// Queues today's summary once the configured hour has passed (`notify.summary_hour`,
/// shop time, default 19) to every active admin with an e-mail address and the extra
/// addresses in `notify.summary_emails`. The date is the
/// dedupe key, so calling this often (and across restarts) sends one summary a day.
/// Returns whether a summary was queued by this call.
pub fn queue_daily_summary_if_due(
    c: &Connection,
    orders: &dyn OrderLookup,
    clock: &crate::domain::clock::ShopClock,
) -> DbResult<bool> {
    let now = clock.now();
    let emails_setting = settings::get(c, "notify.summary_emails")?.unwrap_or_default();
    let mut emails: Vec<String> = crate::db::accounts::active_admin_emails(c)?;
    for e in emails_setting_list(&emails_setting) {
        if !emails.iter().any(|have| have.eq_ignore_ascii_case(&e)) {
            emails.push(e);
        }
    }
    if emails.is_empty() {
        return Ok(false);
    }
    let hour: i64 = settings::get(c, "notify.summary_hour")?
        .and_then(|h| h.trim().parse().ok())
        .filter(|h| (0..24).contains(h))
        .unwrap_or(19);
    if (clock.local(now).hour as i64) < hour {
        return Ok(false);
    }
    let since = clock.start_of_day_of(now);
    let Some(f) = orders.daily_figures(c, since)? else {
        return Ok(false);
    };
    let date = clock.format_date(now);
    let data: TemplateData = [
        ("date", date.clone()),
        ("new_orders", f.new_orders.to_string()),
        ("overdue_orders", f.overdue_orders.to_string()),
        ("ready_not_collected", f.ready_not_collected.to_string()),
        ("missed_calls", f.missed_calls.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let ids = enqueue(
        c,
        &Notification {
            event: EventKind::DailySummary,
            key: format!("summary:{date}"),
            recipients: emails.into_iter().map(Recipient::Email).collect(),
            data,
        },
    )?;
    Ok(!ids.is_empty())
}

pub(super) fn emails_setting_list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|e| valid_email(e))
        .map(str::to_string)
        .collect()
}

/// Until the orders module exists: finds nothing and says it is unavailable.
pub struct NoOrders;

impl OrderLookup for NoOrders {
    fn available(&self) -> bool {
        false
    }
    fn by_code(&self, _: &Connection, _: &str) -> DbResult<Option<OrderBrief>> {
        Ok(None)
    }
    fn open_for_staff(&self, _: &Connection, _: UserId) -> DbResult<Vec<OrderBrief>> {
        Ok(Vec::new())
    }
    fn open_for_customer(&self, _: &Connection, _: i64) -> DbResult<Vec<OrderBrief>> {
        Ok(Vec::new())
    }
}
