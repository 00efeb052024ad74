//! Admin broadcasts: stored, then pushed to every open screen.

use super::{Actor, DomainError, DomainResult};
pub use crate::db::notices::Notice;
use crate::db::{notices as q, Db};
use crate::events::{Audience, Event, EventBus};

pub async fn post(db: &Db, bus: &EventBus, by: &Actor, text: &str) -> DomainResult<Notice> {
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > 500 {
        return Err(DomainError::invalid("notice: 1-500 characters"));
    }
    let at = crate::db::now();
    let author = by.user_id;
    let t2 = text.clone();
    let id = db.write(move |c| q::insert(c, author, &t2, at)).await?;
    let n = Notice {
        id,
        at,
        author: Some(by.display_name.clone()),
        text,
    };
    let committed_at_us = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    bus.publish(Event::new(
        "notice",
        serde_json::json!({"id": n.id, "text": n.text, "author": n.author, "at": n.at, "committed_at_us": committed_at_us as i64}),
        Audience::Everyone,
    ));
    Ok(n)
}

pub async fn recent(db: &Db, limit: i64) -> DomainResult<Vec<Notice>> {
    Ok(db.read(move |c| q::recent(c, limit)).await?)
}
