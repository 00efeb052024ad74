//! The dashboard's figures for a date range: orders per status, overdue, intake and
//! completions per day, revenue per day/week/month, per-master load and repair time.
//! Masters get only their own queue's figures (the shop's totals are not theirs to see).

use std::collections::HashMap;

use super::orders::{StatusRow, WorkloadRow};
use super::{Action, Actor, DomainError, DomainResult};
use crate::db::dashboard::{self as q, DAY_OFFSET};
use crate::db::Db;

/// Longest range the charts draw, in days.
pub const MAX_DAYS: i64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Day,
    Week,
    Month,
}

/// One bar of a chart: the first day of its period (local date) and a value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub day: time::Date,
    pub value: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Dashboard {
    pub from: time::Date,
    /// Inclusive last day.
    pub to: time::Date,
    pub statuses: Vec<StatusRow>,
    /// Open orders per status id, now.
    pub open_per_status: Vec<(i64, i64)>,
    /// Orders closed in the range per status id.
    pub closed_per_status: Vec<(i64, i64)>,
    pub overdue: i64,
    pub intake: Vec<Point>,
    pub completed: Vec<Point>,
    pub revenue_bucket: Bucket,
    pub revenue: Vec<Point>,
    pub revenue_total: i64,
    pub masters: Vec<WorkloadRow>,
}

fn day_of(n: i64) -> time::Date {
    time::Date::from_julian_day((n + 2_440_588) as i32).unwrap_or(time::Date::MIN)
}

fn day_number(d: time::Date) -> i64 {
    d.to_julian_day() as i64 - 2_440_588
}

/// Unix time of local midnight starting `d`.
pub fn local_midnight(d: time::Date) -> i64 {
    day_number(d) * 86_400 - DAY_OFFSET
}

/// Today's local date.
pub fn today() -> time::Date {
    day_of((crate::db::now() + DAY_OFFSET).div_euclid(86_400))
}

/// Fills the days of [from, to] that have no row with zero, in order.
fn dense(from: time::Date, to: time::Date, rows: &[(i64, i64)]) -> Vec<Point> {
    let m: HashMap<i64, i64> = rows.iter().copied().collect();
    (day_number(from)..=day_number(to))
        .map(|d| Point {
            day: day_of(d),
            value: m.get(&d).copied().unwrap_or(0),
        })
        .collect()
}

/// Sums daily points into weeks (starting Monday) or months.
fn regroup(points: &[Point], bucket: Bucket) -> Vec<Point> {
    let key = |d: time::Date| match bucket {
        Bucket::Day => d,
        Bucket::Week => d - time::Duration::days(d.weekday().number_days_from_monday() as i64),
        Bucket::Month => d.replace_day(1).expect("day 1 exists"),
    };
    let mut out: Vec<Point> = Vec::new();
    for p in points {
        let k = key(p.day);
        match out.last_mut() {
            Some(last) if last.day == k => last.value += p.value,
            _ => out.push(Point {
                day: k,
                value: p.value,
            }),
        }
    }
    out
}

pub async fn load(
    db: &Db,
    by: &Actor,
    from: time::Date,
    to: time::Date,
    bucket: Bucket,
) -> DomainResult<Dashboard> {
    if !by.can(Action::ViewReports) {
        return Err(DomainError::Forbidden);
    }
    if to < from {
        return Err(DomainError::invalid("the range ends before it starts"));
    }
    if day_number(to) - day_number(from) >= MAX_DAYS {
        return Err(DomainError::invalid(format!(
            "choose a range of at most {MAX_DAYS} days"
        )));
    }
    let (start, end) = (local_midnight(from), local_midnight(to) + 86_400);
    let now = crate::db::now();
    db.read(move |c| {
        let intake = dense(from, to, &q::intake_per_day(c, start, end)?);
        let completed = dense(from, to, &q::completed_per_day(c, start, end)?);
        let revenue_daily = dense(from, to, &q::revenue_per_day(c, start, end)?);
        Ok(Dashboard {
            from,
            to,
            statuses: crate::db::orders::statuses(c)?,
            open_per_status: q::open_per_status(c)?,
            closed_per_status: q::closed_per_status(c, start, end)?,
            overdue: q::overdue(c, now)?,
            revenue_total: revenue_daily.iter().map(|p| p.value).sum(),
            revenue: regroup(&revenue_daily, bucket),
            revenue_bucket: bucket,
            intake,
            completed,
            masters: crate::db::orders::workload(c, start, end)?,
        })
    })
    .await
    .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn days_round_trip_and_fill() {
        let d = date!(2026 - 03 - 01);
        assert_eq!(day_of(day_number(d)), d);
        // Local midnight in Tashkent is 19:00 UTC the day before.
        assert_eq!(local_midnight(date!(1970 - 01 - 02)), 86_400 - 5 * 3600);
        let pts = dense(d, date!(2026 - 03 - 03), &[(day_number(d) + 1, 4)]);
        assert_eq!(
            pts.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![0, 4, 0]
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-03-01 is a Sunday.
        let pts = dense(
            date!(2026 - 03 - 01),
            date!(2026 - 04 - 02),
            &(day_number(date!(2026 - 03 - 01))..=day_number(date!(2026 - 04 - 02)))
                .map(|d| (d, 1))
                .collect::<Vec<_>>(),
        );
        let w = regroup(&pts, Bucket::Week);
        assert_eq!(w[0].day, date!(2026 - 02 - 23));
        assert_eq!(w[0].value, 1);
        assert_eq!(w[1].day, date!(2026 - 03 - 02));
        assert_eq!(w[1].value, 7);
        let m = regroup(&pts, Bucket::Month);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].value, m[1].value), (31, 2));
    }
}
