//! Admin broadcasts: stored, then pushed to every open screen.

use super::work::Store;
use super::{Actor, DomainError, DomainResult, Msg};
pub use crate::db::notices::Notice;
use crate::db::{notices as q, Db};
use crate::events::{Audience, Event};

pub async fn post(store: &Store, by: &Actor, text: &str) -> DomainResult<Notice> {
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > 500 {
        return Err(DomainError::invalid(
            Msg::new("err.field.length")
                .term("field", "field.notice")
                .with("max", 500),
        ));
    }
    let author = Some(by.display_name.clone());
    store
        .write(by, move |tx| {
            let at = tx.now();
            let id = q::insert(tx, tx.actor_id(), &text, at)?;
            tx.log("create", "notice", id, serde_json::json!({"text": text}));
            tx.emit(Event::new(
                "notice",
                // committed_at_us is stamped when the event is published, after the commit.
                serde_json::json!({"id": id, "text": text, "author": author, "at": at, "committed_at_us": 0}),
                Audience::Everyone,
            ));
            Ok(Notice {
                id,
                at,
                author,
                text,
            })
        })
        .await
}

pub async fn recent(db: &Db, limit: i64) -> DomainResult<Vec<Notice>> {
    Ok(db.read(move |c| q::recent(c, limit)).await?)
}
