//! The owner's numbers: open orders by stage, overdue, intake and completions per day,
//! revenue, masters' load.

use super::clock::{add_days, from_epoch_day, ShopClock};
use super::DomainResult;
use crate::db::orders::WorkloadRow;
pub use crate::db::reports::DayPoint;
use crate::db::Db;

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub open_by_group: Vec<(String, i64)>,
    pub overdue: i64,
    pub days: Vec<DayPoint>,
    pub revenue_today: i64,
    pub revenue_week: i64,
    pub revenue_month: i64,
    /// Revenue per day, week or month of the chosen range (see [`Period`]).
    pub revenue: Vec<(i64, i64)>,
    pub masters: Vec<WorkloadRow>,
}

/// How revenue is grouped on the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Period {
    #[default]
    Day,
    /// Weeks from Monday.
    Week,
    /// Calendar months.
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The start (shop midnight) of the period holding `t`.
    pub fn start(self, clock: &ShopClock, t: i64) -> i64 {
        let date = clock.date_of(t);
        let first = match self {
            Period::Day => date,
            Period::Week => add_days(date, -(date.weekday().to_monday_zero_offset() as i64)),
            Period::Month => date.first_of_month(),
        };
        clock.day_start(first)
    }

    fn next(self, clock: &ShopClock, start: i64) -> i64 {
        let date = clock.date_of(start);
        clock.day_start(match self {
            Period::Day => add_days(date, 1),
            Period::Week => add_days(date, 7),
            Period::Month => date.last_of_month().tomorrow().unwrap_or(date),
        })
    }
}

/// Sums per-day revenue into periods covering [from, to), every period listed (zero when
/// nothing was paid), oldest first.
pub fn group_revenue(
    clock: &ShopClock,
    days: &[(i64, i64)],
    from: i64,
    to: i64,
    period: Period,
) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut p = period.start(clock, from);
    while p < to && out.len() < 400 {
        out.push((p, 0));
        p = period.next(clock, p);
    }
    for &(day, sum) in days {
        let start = period.start(clock, day);
        if let Some(slot) = out.iter_mut().find(|(s, _)| *s == start) {
            slot.1 += sum;
        }
    }
    out
}

/// Intake, completions and revenue per shop day in [from, to) (day boundaries of the
/// shop clock; the queries bucket by a fixed offset inside each stretch of the range
/// where the zone's offset does not change).
fn per_day(
    c: &crate::db::Conn,
    clock: &ShopClock,
    from: i64,
    to: i64,
    branches: Option<&[i64]>,
) -> crate::db::DbResult<Vec<DayPoint>> {
    let mut out: Vec<DayPoint> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut d = clock.date_of(from);
    loop {
        let start = clock.day_start(d);
        if start >= to || out.len() >= 400 {
            break;
        }
        index.insert(super::clock::epoch_day(d), out.len());
        out.push(DayPoint {
            day: start,
            ..Default::default()
        });
        d = add_days(d, 1);
    }
    for (a, b, off) in clock.offset_spans(from, to) {
        let f = crate::db::reports::day_buckets(c, a, b, off as i64, branches)?;
        for (day, n) in f.intake {
            if let Some(&i) = index.get(&day) {
                out[i].intake += n;
            }
        }
        for (day, n) in f.completed {
            if let Some(&i) = index.get(&day) {
                out[i].completed += n;
            }
        }
        for (day, n) in f.revenue {
            if let Some(&i) = index.get(&day) {
                out[i].revenue += n;
            }
        }
    }
    Ok(out)
}

/// Payments minus refunds per shop day in [from, to): (start of the day, sum), only days
/// with payments.
fn revenue_by_day(
    c: &crate::db::Conn,
    clock: &ShopClock,
    from: i64,
    to: i64,
    branches: Option<&[i64]>,
) -> crate::db::DbResult<Vec<(i64, i64)>> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (a, b, off) in clock.offset_spans(from, to) {
        for (day, sum) in crate::db::reports::revenue_by_day(c, a, b, off as i64, branches)? {
            let start = clock.day_start(from_epoch_day(day));
            match out.last_mut() {
                Some(last) if last.0 == start => last.1 += sum,
                _ => out.push((start, sum)),
            }
        }
    }
    Ok(out)
}

/// The dashboard of `by`: counts and money of their branches only.
pub async fn load(
    db: &Db,
    clock: &ShopClock,
    by: &super::Actor,
    from: i64,
    to: i64,
    with_money: bool,
    period: Period,
) -> DomainResult<Dashboard> {
    let clock = clock.clone();
    let scope = by.branch_filter().map(<[i64]>::to_vec);
    Ok(db
        .read(move |c| {
            let now = clock.now();
            let today = clock.today();
            let since = |days_back: i64| clock.day_start(add_days(today, -days_back));
            let b = scope.as_deref();
            // Today, the week and the month from one pass over the month's payments,
            // by shop day.
            let month = if with_money {
                revenue_by_day(c, &clock, since(29), now + 1, b)?
            } else {
                Vec::new()
            };
            let rev = |from: i64| -> i64 {
                month
                    .iter()
                    .filter(|(day, _)| *day >= from)
                    .map(|(_, sum)| sum)
                    .sum()
            };
            Ok(Dashboard {
                open_by_group: crate::db::reports::open_by_group(c, b)?,
                overdue: crate::db::reports::overdue_count(c, now, b)?,
                days: per_day(c, &clock, from, to, b)?,
                revenue_today: rev(since(0)),
                revenue_week: rev(since(6)),
                revenue_month: rev(since(29)),
                revenue: if with_money {
                    let days = revenue_by_day(c, &clock, from, to, b)?;
                    group_revenue(&clock, &days, from, to, period)
                } else {
                    Vec::new()
                },
                masters: crate::db::orders::workload(c, now - 90 * 86_400, now + 1, b)?,
            })
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i16, m: i8, d: i8) -> i64 {
        ShopClock::default().day_start(jiff::civil::date(y, m, d))
    }

    #[test]
    fn revenue_groups_by_day_week_and_month() {
        // Wed 2026-01-28 .. Tue 2026-03-03; payments on four days.
        let (from, to) = (at(2026, 1, 28), at(2026, 3, 4));
        let days = [
            (at(2026, 1, 28), 100),
            (at(2026, 2, 1), 50),  // Sunday: still the week of Mon 26 Jan
            (at(2026, 2, 2), 7),   // Monday
            (at(2026, 3, 3), -20), // a refund day
        ];
        let clock = ShopClock::default();
        let weeks = group_revenue(&clock, &days, from, to, Period::Week);
        assert_eq!(weeks[0], (at(2026, 1, 26), 150));
        assert_eq!(weeks[1], (at(2026, 2, 2), 7));
        assert_eq!(weeks.last().unwrap(), &(at(2026, 3, 2), -20));
        assert_eq!(weeks.len(), 6);
        let months = group_revenue(&clock, &days, from, to, Period::Month);
        assert_eq!(
            months,
            vec![
                (at(2026, 1, 1), 100),
                (at(2026, 2, 1), 57),
                (at(2026, 3, 1), -20)
            ]
        );
        let by_day = group_revenue(&clock, &days, from, to, Period::Day);
        assert_eq!(by_day.len(), 35);
        assert_eq!(by_day.iter().map(|d| d.1).sum::<i64>(), 137);
    }
}
