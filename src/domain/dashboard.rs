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
    pub masters: Vec<WorkloadRow>,
}

pub async fn load(db: &Db, from: i64, to: i64, with_money: bool) -> DomainResult<Dashboard> {
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
                masters: crate::db::orders::workload(c, now - 90 * 86_400, now + 1)?,
            })
        })
        .await?)
}
