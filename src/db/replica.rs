//! The SQLite side of continuous replication (`ops::replicate`): reading the committed
//! transactions out of the live database's write-ahead log as sets of pages, and a
//! snapshot of the whole database at a known point of that log.
//!
//! How the log is kept readable (the way Litestream does it): a read transaction held
//! open on `pin` stops SQLite from restarting the WAL over frames not read yet, and the
//! WAL is only ever restarted after a checkpoint that this reader finished while it held
//! the write lock, having read the log to its end (the bulk of that checkpoint is done
//! before, without the lock: see [`WalReader::checkpoint`]). Any other restart (seen as a checkpoint
//! sequence number that moved by more than the one expected) is reported as
//! [`Poll::Broken`]: the caller starts over from a fresh snapshot, never ships a gap.
//!
//! Frames are read from the `-wal` file itself, checked against its salts and cumulative
//! checksums, and only up to the last commit frame: a transaction is shipped whole or not
//! at all.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{DbError, DbResult};

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// The pages a run of committed transactions changed (the last version of each), and the
/// size of the database in pages after the last of them.
#[derive(Debug, Default, Clone)]
pub struct PageSet {
    pub pages: BTreeMap<u32, Vec<u8>>,
    pub db_pages: u32,
    pub commits: u32,
}

impl PageSet {
    pub fn is_empty(&self) -> bool {
        self.commits == 0
    }

    /// Drops the pages past the end of a database that shrank to `db_pages` (a look at
    /// the last page only when it did not: this runs after every commit read).
    fn truncate(&mut self, db_pages: u32) {
        if self
            .pages
            .last_key_value()
            .is_some_and(|(p, _)| *p > db_pages)
        {
            self.pages.split_off(&(db_pages + 1));
        }
    }

    /// Adds the transactions read after this set's.
    pub fn append(&mut self, later: PageSet) {
        if later.is_empty() {
            return;
        }
        self.pages.extend(later.pages);
        self.truncate(later.db_pages);
        self.db_pages = later.db_pages;
        self.commits += later.commits;
    }
}

/// What [`WalReader::poll`] found.
#[derive(Debug)]
pub enum Poll {
    /// Transactions committed since the last poll (possibly none).
    Pages(PageSet),
    /// The log was restarted by someone else: frames may have been lost; take a snapshot.
    Broken(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    big_endian: bool,
    page_size: u32,
    ckpt_seq: u32,
    salt: [u32; 2],
    checksum: [u32; 2],
}

/// Where reading stopped: after the last commit frame read, in the log with `header`.
#[derive(Debug, Clone, Copy)]
struct Position {
    header: Option<Header>,
    offset: u64,
    checksum: [u32; 2],
    /// A restart (checkpoint sequence + 1) is expected and safe: the log was read to its
    /// end under the write lock and then checkpointed.
    restart_ok: bool,
}

pub struct WalReader {
    wal_path: PathBuf,
    /// Holds the read transaction that keeps unread frames from being overwritten.
    pin: Connection,
    /// The second pin: a new pin is taken on it before the old one is let go, so there is
    /// never a moment without one (see [`WalReader::checkpoint`]).
    spare: Connection,
    /// Takes the write lock (`BEGIN IMMEDIATE`) for the moments the log must stand still.
    lock: Connection,
    /// Issues the checkpoints (PASSIVE: never waits for anyone).
    ckpt: Connection,
    pos: Position,
    page_size: u32,
}

fn open(path: &Path, read_only: bool) -> DbResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn checksum(big_endian: bool, data: &[u8], mut s: [u32; 2]) -> [u32; 2] {
    for w in data.chunks_exact(8) {
        let (a, b) = if big_endian {
            (
                u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_be_bytes([w[4], w[5], w[6], w[7]]),
            )
        } else {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        };
        s[0] = s[0].wrapping_add(a).wrapping_add(s[1]);
        s[1] = s[1].wrapping_add(b).wrapping_add(s[0]);
    }
    s
}

fn be(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < WAL_HEADER {
        return None;
    }
    let magic = be(b, 0);
    let big_endian = match magic {
        0x377f_0682 => false,
        0x377f_0683 => true,
        _ => return None,
    };
    let sum = checksum(big_endian, &b[..24], [0, 0]);
    if sum != [be(b, 24), be(b, 28)] {
        return None;
    }
    Some(Header {
        big_endian,
        page_size: be(b, 8),
        ckpt_seq: be(b, 12),
        salt: [be(b, 16), be(b, 20)],
        checksum: sum,
    })
}

impl WalReader {
    /// Opens the reader's connections on a database in WAL mode. Nothing is pinned until
    /// [`WalReader::snapshot`].
    pub fn open(db_path: &Path) -> DbResult<WalReader> {
        let pin = open(db_path, true)?;
        let spare = open(db_path, true)?;
        let lock = open(db_path, false)?;
        let ckpt = open(db_path, false)?;
        let page_size = pin.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u32;
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(WalReader {
            wal_path: PathBuf::from(wal),
            pin,
            spare,
            lock,
            ckpt,
            pos: Position {
                header: None,
                offset: WAL_HEADER as u64,
                checksum: [0, 0],
                restart_ok: true,
            },
            page_size,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    fn read_wal(&self, from: u64) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let mut f = match std::fs::File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => return Err(e),
        };
        let mut head = vec![0u8; WAL_HEADER];
        let n = read_full(&mut f, &mut head)?;
        head.truncate(n);
        let mut rest = Vec::new();
        if n == WAL_HEADER && from >= WAL_HEADER as u64 {
            f.seek(SeekFrom::Start(from))?;
            f.read_to_end(&mut rest)?;
        }
        Ok((head, rest))
    }

    /// Reads the transactions committed since the last poll.
    pub fn poll(&mut self) -> DbResult<Poll> {
        let io = |e: std::io::Error| DbError::Task(format!("reading the WAL: {e}"));
        let (head, _) = self.read_wal(0).map_err(io)?;
        let Some(header) = parse_header(&head) else {
            // No log (yet) or one being reset: nothing committed to read.
            return Ok(Poll::Pages(PageSet::default()));
        };
        match self.pos.header {
            Some(h) if h == header => {}
            Some(h) => {
                let next = h.ckpt_seq.wrapping_add(1);
                if !(self.pos.restart_ok && header.ckpt_seq == next) {
                    return Ok(Poll::Broken(format!(
                        "the WAL was restarted behind the replicator (checkpoint {} -> {})",
                        h.ckpt_seq, header.ckpt_seq
                    )));
                }
                self.restart_at(header);
            }
            None => self.restart_at(header),
        }
        if header.page_size != self.page_size {
            return Ok(Poll::Broken("the page size changed".into()));
        }
        let (_, rest) = self.read_wal(self.pos.offset).map_err(io)?;
        let frame = FRAME_HEADER + self.page_size as usize;
        let mut set = PageSet::default();
        let mut pending: Vec<(u32, &[u8])> = Vec::new();
        let mut sum = self.pos.checksum;
        let base = self.pos.offset;
        let mut at = 0usize;
        while at + frame <= rest.len() {
            let f = &rest[at..at + frame];
            if [be(f, 8), be(f, 12)] != header.salt {
                break;
            }
            let s = checksum(header.big_endian, &f[..8], sum);
            let s = checksum(header.big_endian, &f[FRAME_HEADER..], s);
            if s != [be(f, 16), be(f, 20)] {
                break;
            }
            sum = s;
            pending.push((be(f, 0), &f[FRAME_HEADER..]));
            at += frame;
            let commit = be(f, 4);
            if commit != 0 {
                for (pgno, data) in pending.drain(..) {
                    // A page written again overwrites its buffer (no new allocation).
                    match set.pages.entry(pgno) {
                        std::collections::btree_map::Entry::Occupied(mut e) => {
                            e.get_mut().copy_from_slice(data)
                        }
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(data.to_vec());
                        }
                    }
                }
                set.truncate(commit);
                set.db_pages = commit;
                set.commits += 1;
                self.pos.checksum = sum;
                self.pos.restart_ok = false;
                self.pos.offset = base + at as u64;
            }
        }
        Ok(Poll::Pages(set))
    }

    /// Reading goes on in a log that was (re)started with `header`.
    fn restart_at(&mut self, header: Header) {
        self.pos = Position {
            header: Some(header),
            offset: WAL_HEADER as u64,
            checksum: header.checksum,
            restart_ok: false,
        };
    }

    /// Holds the write lock for the length of `f` (writers wait; well under a millisecond
    /// for what is done here).
    fn with_write_lock<T>(&mut self, f: impl FnOnce(&mut Self) -> DbResult<T>) -> DbResult<T> {
        self.lock.execute_batch("BEGIN IMMEDIATE")?;
        let out = f(self);
        self.lock.execute_batch("ROLLBACK")?;
        out
    }

    fn repin(&self) -> DbResult<()> {
        if !self.pin.is_autocommit() {
            self.pin.execute_batch("ROLLBACK")?;
        }
        self.pin.execute_batch("BEGIN")?;
        self.pin
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })?;
        Ok(())
    }

    /// Starts a snapshot: with writers held off for a moment, reads what the log holds
    /// (returned, for a caller that goes on from an earlier state; a caller starting over
    /// drops it, the snapshot contains it) and pins the state as of that point. Then
    /// [`WalReader::stream_snapshot`] hands out exactly that state.
    pub fn begin_snapshot(&mut self) -> DbResult<Poll> {
        self.with_write_lock(|me| {
            let polled = me.poll()?;
            me.repin()?;
            Ok(polled)
        })
    }

    /// After a [`Poll::Broken`] (or at start): forget the position; the next
    /// [`WalReader::begin_snapshot`] starts from whatever the log holds then.
    pub fn reset(&mut self) {
        self.pos = Position {
            header: None,
            offset: WAL_HEADER as u64,
            checksum: [0, 0],
            restart_ok: true,
        };
    }

    /// The pinned state's pages in order, in chunks, as the database file they make
    /// (through SQLite's pager: `sqlite_dbpage`). Returns the number of pages.
    pub fn stream_snapshot(
        &self,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> DbResult<u32> {
        let mut stmt = self
            .pin
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")?;
        let mut rows = stmt.query([])?;
        let mut chunk = Vec::with_capacity(self.page_size as usize * 64);
        let mut expected = 1u32;
        while let Some(row) = rows.next()? {
            let pgno = row.get::<_, i64>(0)? as u32;
            let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            if pgno != expected || data.len() != self.page_size as usize {
                return Err(DbError::Task(format!(
                    "sqlite_dbpage gave page {pgno} where page {expected} was due"
                )));
            }
            chunk.extend_from_slice(data);
            expected += 1;
            if chunk.len() >= self.page_size as usize * 64 {
                sink(&chunk).map_err(|e| DbError::Task(format!("snapshot sink: {e}")))?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            sink(&chunk).map_err(|e| DbError::Task(format!("snapshot sink: {e}")))?;
        }
        Ok(expected - 1)
    }

    /// Moves the pin to the current end of the log without a moment unpinned: the spare
    /// connection pins first, then the old pin is let go.
    fn advance_pin(&mut self) -> DbResult<()> {
        if !self.spare.is_autocommit() {
            self.spare.execute_batch("ROLLBACK")?;
        }
        self.spare.execute_batch("BEGIN")?;
        self.spare
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })?;
        std::mem::swap(&mut self.pin, &mut self.spare);
        if !self.spare.is_autocommit() {
            self.spare.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Lets the log restart from the top, in two steps, so writers wait only for the
    /// little written during the first:
    /// 1. Without any lock: the pin moves to the end of the log, the log is read past it,
    ///    and a PASSIVE checkpoint copies everything up to the pin into the database
    ///    file while writers go on (SQLite never copies frames past the oldest reader's
    ///    mark, and never restarts the log while a reader holds a mark in it, so nothing
    ///    not yet read can be lost).
    /// 2. With writers held off: the rest of the log is read, the pin let go, the few
    ///    frames since step 1 checkpointed, and the pin taken again on the database file
    ///    alone, so the next writer may restart the log: the only restart this reader
    ///    accepts.
    ///
    /// Returns the transactions read.
    pub fn checkpoint(&mut self) -> DbResult<Poll> {
        self.advance_pin()?;
        let mut set = match self.poll()? {
            Poll::Pages(set) => set,
            broken => return Ok(broken),
        };
        self.ckpt
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))?;
        let polled = self.with_write_lock(|me| {
            let polled = me.poll()?;
            if matches!(polled, Poll::Broken(_)) {
                return Ok(polled);
            }
            if !me.pin.is_autocommit() {
                me.pin.execute_batch("ROLLBACK")?;
            }
            me.ckpt
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))?;
            me.repin()?;
            me.pos.restart_ok = true;
            Ok(polled)
        })?;
        match polled {
            Poll::Pages(tail) => {
                set.append(tail);
                Ok(Poll::Pages(set))
            }
            broken => Ok(broken),
        }
    }

    /// A PASSIVE checkpoint by a reader that holds no pin (after a failed step: the log
    /// must not grow without end while replication starts over).
    pub fn checkpoint_unpinned(db_path: &Path) -> DbResult<()> {
        let c = open(db_path, false)?;
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    /// The size in pages of the pinned state.
    pub fn pinned_page_count(&self) -> DbResult<u32> {
        Ok(self
            .pin
            .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u32)
    }

    /// Bytes of log written and not yet checkpointed by this reader.
    pub fn wal_len(&self) -> u64 {
        self.pos.offset
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
