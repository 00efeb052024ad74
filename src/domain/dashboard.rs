//! The owner's numbers: open orders by stage, overdue, intake and completions per day,
//! revenue, masters' load.

use super::DomainResult;
use crate::db::orders::WorkloadRow;
pub use crate::db::reports::DayPoint;
use crate::db::{now, Db};

/// Uzbekistan is UTC+5 all year.
pub const TZ_SECS: i64 = 5 * 3600;

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

    /// The start (Tashkent midnight) of the period holding `t`.
    pub fn start(self, t: i64) -> i64 {
        let off = time::UtcOffset::from_whole_seconds(TZ_SECS as i32).expect("valid offset");
        let date = time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .to_offset(off)
            .date();
        let first = match self {
            Period::Day => date,
            Period::Week => {
                date - time::Duration::days(date.weekday().number_days_from_monday() as i64)
            }
            Period::Month => date.replace_day(1).expect("day 1 exists"),
        };
        first.midnight().assume_offset(off).unix_timestamp()
    }

    fn next(self, start: i64) -> i64 {
        match self {
            Period::Day => start + 86_400,
            Period::Week => start + 7 * 86_400,
            // A month later: the start of the period 32 days on.
            Period::Month => Period::Month.start(start + 32 * 86_400),
        }
    }
}

/// Sums per-day revenue into periods covering [from, to), every period listed (zero when
/// nothing was paid), oldest first.
pub fn group_revenue(days: &[(i64, i64)], from: i64, to: i64, period: Period) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut p = period.start(from);
    while p < to && out.len() < 400 {
        out.push((p, 0));
        p = period.next(p);
    }
    for &(day, sum) in days {
        let start = period.start(day);
        if let Some(slot) = out.iter_mut().find(|(s, _)| *s == start) {
            slot.1 += sum;
        }
    }
    out
}

pub async fn load(
    db: &Db,
    from: i64,
    to: i64,
    with_money: bool,
    period: Period,
) -> DomainResult<Dashboard> {
    Ok(db
        .read(move |c| {
            let now = now();
            let today = (now + TZ_SECS).div_euclid(86_400) * 86_400 - TZ_SECS;
            let rev = |from| crate::db::reports::revenue_between(c, from, now + 1);
            Ok(Dashboard {
                open_by_group: crate::db::reports::open_by_group(c)?,
                overdue: crate::db::reports::overdue_count(c, now)?,
                days: crate::db::reports::per_day(c, from, to, TZ_SECS)?,
                revenue_today: if with_money { rev(today)? } else { 0 },
                revenue_week: if with_money {
                    rev(today - 6 * 86_400)?
                } else {
                    0
                },
                revenue_month: if with_money {
                    rev(today - 29 * 86_400)?
                } else {
                    0
                },
                revenue: if with_money {
                    let days = crate::db::reports::revenue_by_day(c, from, to, TZ_SECS)?;
                    group_revenue(&days, from, to, period)
                } else {
                    Vec::new()
                },
                masters: crate::db::orders::workload(c, now - 90 * 86_400, now + 1)?,
            })
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u8, d: u8) -> i64 {
        let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
        date.midnight()
            .assume_offset(time::UtcOffset::from_whole_seconds(TZ_SECS as i32).unwrap())
            .unix_timestamp()
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
        let weeks = group_revenue(&days, from, to, Period::Week);
        assert_eq!(weeks[0], (at(2026, 1, 26), 150));
        assert_eq!(weeks[1], (at(2026, 2, 2), 7));
        assert_eq!(weeks.last().unwrap(), &(at(2026, 3, 2), -20));
        assert_eq!(weeks.len(), 6);
        let months = group_revenue(&days, from, to, Period::Month);
        assert_eq!(
            months,
            vec![
                (at(2026, 1, 1), 100),
                (at(2026, 2, 1), 57),
                (at(2026, 3, 1), -20)
            ]
        );
        let by_day = group_revenue(&days, from, to, Period::Day);
        assert_eq!(by_day.len(), 35);
        assert_eq!(by_day.iter().map(|d| d.1).sum::<i64>(), 137);
    }
}
