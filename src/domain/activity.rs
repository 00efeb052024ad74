//! The activity log: who created, changed or removed what. Rows are written by each
//! domain change in its unit of work (`domain::work`); admins browse
//! them by actor, entity type, action and date range.

use super::DomainResult;
pub use crate::db::activity::ActivityFilter;
pub use crate::db::activity::ActivityRow;
use crate::db::Db;

pub async fn list(
    db: &Db,
    filter: ActivityFilter,
    limit: i64,
    offset: i64,
) -> DomainResult<Vec<ActivityRow>> {
    Ok(db
        .read(move |c| crate::db::activity::list(c, &filter, limit, offset))
        .await?)
}

/// Entity types and actions present in the log (for the filter form).
pub async fn kinds(db: &Db) -> DomainResult<(Vec<String>, Vec<String>)> {
    Ok(db.read(crate::db::activity::kinds).await?)
}
