//! The activity log: who created, changed or removed what. Rows are written by each
//! domain change in its own transaction (`db::settings::log_activity`).

use super::DomainResult;
pub use crate::db::settings::ActivityRow;
use crate::db::Db;

pub async fn list(
    db: &Db,
    entity: Option<String>,
    limit: i64,
    offset: i64,
) -> DomainResult<Vec<ActivityRow>> {
    Ok(db
        .read(move |c| crate::db::settings::list_activity(c, entity.as_deref(), limit, offset))
        .await?)
}
