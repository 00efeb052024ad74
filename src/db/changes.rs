//! The change journal (`change_journal`, written by triggers): what another process — a
//! `crm` command — changed that the running server keeps in memory.

use rusqlite::{Connection, OpenFlags};

use super::DbResult;

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: i64,
    /// `sip`, `user` or `shop`.
    pub kind: String,
    /// The user's id for `user`.
    pub reference: Option<i64>,
}

/// A read-only connection of its own, for `PRAGMA data_version`: the number changes when
/// any other connection (another process, or the server's own writer) commits, so the
/// journal is read only after a commit.
pub struct Watch {
    conn: Connection,
}

impl Watch {
    pub fn open(path: &std::path::Path) -> DbResult<Watch> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Watch { conn })
    }

    /// `PRAGMA data_version` of this connection.
    pub fn data_version(&self) -> DbResult<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// The newest journal id (0 when empty).
    pub fn last_id(&self) -> DbResult<i64> {
        last_id(&self.conn)
    }

    /// Journal rows after `after`, oldest first (at most 10 000).
    pub fn since(&self, after: i64) -> DbResult<Vec<Change>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, kind, ref FROM change_journal WHERE id > ?1 ORDER BY id LIMIT 10000",
        )?;
        let rows = st.query_map([after], |r| {
            Ok(Change {
                id: r.get(0)?,
                kind: r.get(1)?,
                reference: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The newest journal id (0 when empty).
pub fn last_id(c: &Connection) -> DbResult<i64> {
    Ok(
        c.query_row("SELECT coalesce(max(id), 0) FROM change_journal", [], |r| {
            r.get(0)
        })?,
    )
}

/// Forgets rows older than `before` (Unix seconds); returns how many.
pub fn prune(c: &Connection, before: i64) -> DbResult<usize> {
    Ok(c.execute("DELETE FROM change_journal WHERE at < ?1", [before])?)
}
