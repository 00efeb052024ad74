//! The running side: the replicator thread (WAL → sealed segments and snapshots in the
//! outbox) and one uploader thread per target (outbox → target, oldest first, with
//! retention). Plain threads, never the server's runtime: a slow disk, a slow network or
//! a dead target never holds up a request. Their state goes to `replication/status.json`
//! (read by the backups page, /metrics and `crm doctor`, which may be another process).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::store::{Pacer, Store};
use super::{now_ms, outbox_name, seal, ObjectMeta};
use crate::config::{Config, RemoteTarget};
use crate::db::replica::{PageSet, Poll, WalReader};
use crate::ops::OpsError;

/// The WAL is checkpointed by the replicator when it grows past this.
const CHECKPOINT_AT_BYTES: u64 = 16 * 1024 * 1024;
/// Longest wait between attempts at an unreachable target.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TargetStatus {
    pub name: String,
    pub place: String,
    /// Unix ms of the last successful upload.
    pub last_ok_ms: Option<i64>,
    pub pending: u64,
    pub pending_bytes: u64,
    /// Unix ms the oldest object still waiting for this target was queued.
    pub oldest_pending_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub updated_ms: i64,
    pub replicating: bool,
    pub generation: u64,
    pub seq: u64,
    /// Unix ms of the last read of the WAL.
    pub last_read_ms: i64,
    pub last_snapshot_ms: i64,
    pub replicator_error: Option<String>,
    pub targets: Vec<TargetStatus>,
    /// Since the start: segments sealed, their bytes, and the replicator's checkpoints.
    #[serde(default)]
    pub segments: u64,
    #[serde(default)]
    pub segment_bytes: u64,
    #[serde(default)]
    pub checkpoints: u64,
}

impl TargetStatus {
    /// How far this target is behind: the age of the oldest object it has not got yet.
    pub fn lag_secs(&self, now_ms: i64) -> f64 {
        match self.oldest_pending_ms {
            Some(t) if self.pending > 0 => (now_ms - t).max(0) as f64 / 1000.0,
            _ => 0.0,
        }
    }
}

pub fn status_path(cfg: &Config) -> PathBuf {
    super::state_dir(cfg).join("status.json")
}

/// The last status the server wrote (none when it never replicated here).
pub fn read_status(cfg: &Config) -> Option<Status> {
    let bytes = std::fs::read(status_path(cfg)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Warnings for `crm doctor` and the backups page: targets behind or failing.
pub fn warnings(cfg: &Config, status: Option<&Status>, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.backup.remote.targets.is_empty() {
        return out;
    }
    let Some(s) = status else {
        if cfg.replication.enabled {
            out.push("replication is on but has not run yet (is the server running?)".into());
        }
        return out;
    };
    if cfg.replication.enabled {
        let quiet = (now - s.updated_ms) / 1000;
        if quiet > cfg.replication.warn_lag_secs as i64 {
            out.push(format!(
                "replication has not reported for {quiet} s (is the server running?)"
            ));
        }
        if let Some(e) = &s.replicator_error {
            out.push(format!("replication: {e}"));
        }
    }
    for t in &s.targets {
        let lag = t.lag_secs(now);
        if lag > cfg.replication.warn_lag_secs as f64 {
            out.push(format!(
                "target {} ({}) is {:.0} s behind with {} object(s) waiting{}",
                t.name,
                t.place,
                lag,
                t.pending,
                t.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// The queue of sealed objects, one folder per target.
#[derive(Clone)]
pub struct Outbox {
    root: PathBuf,
    targets: Vec<String>,
    order: Arc<AtomicU64>,
}

impl Outbox {
    pub fn new(cfg: &Config) -> Outbox {
        Outbox {
            root: super::state_dir(cfg).join("outbox"),
            targets: cfg
                .backup
                .remote
                .targets
                .iter()
                .map(|t| t.name.clone())
                .collect(),
            order: Arc::new(AtomicU64::new(now_ms() as u64 * 1000)),
        }
    }

    fn target_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A file to seal the next object into (then [`Outbox::queue`] it).
    pub fn scratch(&self) -> Result<PathBuf, OpsError> {
        let dir = self.root.join(".new");
        std::fs::create_dir_all(&dir).map_err(crate::ops::io_ctx("cannot create", &dir))?;
        Ok(dir.join(format!("{:x}", self.next_order())))
    }

    fn next_order(&self) -> u64 {
        let now = now_ms() as u64 * 1000;
        let mut cur = self.order.load(Ordering::Relaxed);
        loop {
            let next = now.max(cur + 1);
            match self
                .order
                .compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(c) => cur = c,
            }
        }
    }

    /// Hands the sealed file to every target's queue (hard links: one copy on disk).
    pub fn queue(&self, sealed: &Path, key: &str) -> Result<(), OpsError> {
        let name = outbox_name(self.next_order(), key);
        for t in &self.targets {
            let dir = self.target_dir(t);
            std::fs::create_dir_all(&dir).map_err(crate::ops::io_ctx("cannot create", &dir))?;
            let dest = dir.join(&name);
            if std::fs::hard_link(sealed, &dest).is_err() {
                std::fs::copy(sealed, &dest).map_err(crate::ops::io_ctx("cannot copy", sealed))?;
            }
        }
        std::fs::remove_file(sealed).map_err(crate::ops::io_ctx("cannot remove", sealed))?;
        Ok(())
    }

    fn pending(&self, target: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.target_dir(target))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.contains('~') && !n.ends_with(".upload"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Seals a verified backup archive and queues it for every target.
pub fn queue_backup(cfg: &Config, archive: &Path) -> Result<(), OpsError> {
    if cfg.backup.remote.targets.is_empty() {
        return Ok(());
    }
    let recipient = super::recipient(cfg)?;
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = ObjectMeta {
        kind: "backup".into(),
        generation: 0,
        seq: 0,
        time_ms: now_ms(),
        page_size: 0,
        db_pages: 0,
        prev: String::new(),
        name,
    };
    let outbox = Outbox::new(cfg);
    let scratch = outbox.scratch()?;
    let result = seal(&recipient, &meta, &scratch, |w| {
        let mut f = std::fs::File::open(archive)?;
        std::io::copy(&mut f, w)?;
        Ok(())
    })
    .and_then(|_| outbox.queue(&scratch, &meta.key()));
    if result.is_err() {
        let _ = std::fs::remove_file(&scratch);
    }
    result
}

/// The running replicator and uploaders; [`Replication::stop`] ends them.
pub struct Replication {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

type Shared = Arc<Mutex<Status>>;

pub fn start(cfg: &Config) -> Result<Replication, OpsError> {
    let stop = Arc::new(AtomicBool::new(false));
    let dir = super::state_dir(cfg);
    std::fs::create_dir_all(&dir).map_err(crate::ops::io_ctx("cannot create", &dir))?;
    let status: Shared = Arc::new(Mutex::new(Status {
        replicating: cfg.replication.enabled,
        targets: cfg
            .backup
            .remote
            .targets
            .iter()
            .map(|t| TargetStatus {
                name: t.name.clone(),
                place: t.describe(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }));
    let outbox = Outbox::new(cfg);
    let mut threads = Vec::new();
    for (i, t) in cfg.backup.remote.targets.iter().enumerate() {
        let (t, stop, status, outbox) = (t.clone(), stop.clone(), status.clone(), outbox.clone());
        let kbps = cfg.backup.remote.bandwidth_kbps;
        let retention_ms = cfg.replication.retention_hours as i64 * 3600 * 1000;
        threads.push(
            std::thread::Builder::new()
                .name(format!("upload-{}", t.name))
                .spawn(move || uploader(t, i, kbps, retention_ms, outbox, status, stop))
                .map_err(|e| OpsError::Refused(format!("cannot start an uploader: {e}")))?,
        );
    }
    let (cfg2, stop2, status2) = (cfg.clone(), stop.clone(), status.clone());
    let replicate = cfg.replication.enabled;
    threads.push(
        std::thread::Builder::new()
            .name("replicator".into())
            .spawn(move || {
                if replicate {
                    replicator(&cfg2, outbox, &status2, &stop2);
                } else {
                    while !stop2.load(Ordering::Relaxed) {
                        write_status(&cfg2, &status2);
                        nap(Duration::from_secs(1), &stop2);
                    }
                }
                write_status(&cfg2, &status2);
            })
            .map_err(|e| OpsError::Refused(format!("cannot start the replicator: {e}")))?,
    );
    Ok(Replication { stop, threads })
}

impl Replication {
    /// Ends the threads (after the replicator's last read of the WAL). What was not
    /// uploaded yet stays queued for the next start.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn nap(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn write_status(cfg: &Config, status: &Shared) {
    let mut s = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    s.updated_ms = now_ms();
    let path = status_path(cfg);
    let tmp = path.with_extension("json.tmp");
    if std::fs::write(&tmp, serde_json::to_vec_pretty(&s).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

struct Chain {
    generation: u64,
    seq: u64,
    chain: String,
    page_size: u32,
}

fn replicator(cfg: &Config, outbox: Outbox, status: &Shared, stop: &AtomicBool) {
    let interval = Duration::from_millis(cfg.replication.interval_ms);
    let snapshot_every = Duration::from_secs(cfg.replication.snapshot_every_secs);
    let recipient = match super::recipient(cfg) {
        Ok(r) => r,
        Err(e) => {
            status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replicator_error = Some(e.to_string());
            return;
        }
    };
    let mut state: Option<(WalReader, Chain, Instant)> = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let step = (|| -> Result<(), OpsError> {
            let (reader, chain, last_snap) = match &mut state {
                Some(s) => s,
                None => {
                    let mut reader = WalReader::open(&cfg.db_path())?;
                    let chain = new_generation(&mut reader, &recipient, &outbox)?;
                    let s = status.clone();
                    {
                        let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                        s.generation = chain.generation;
                        s.seq = chain.seq;
                        s.last_snapshot_ms = now_ms();
                    }
                    state.insert((reader, chain, Instant::now()))
                }
            };
            let mut polled = reader.poll()?;
            if let Poll::Pages(set) = &polled {
                let mut shipped = 0;
                if reader.wal_len() > CHECKPOINT_AT_BYTES {
                    // What was read now goes out with what the checkpoint reads: one
                    // segment.
                    let mut all = set.clone();
                    polled = reader.checkpoint()?;
                    if let Poll::Pages(more) = &polled {
                        all.append(more.clone());
                        if !all.is_empty() {
                            shipped = ship(&all, chain, &recipient, &outbox)?;
                        }
                    }
                    status.lock().unwrap_or_else(|e| e.into_inner()).checkpoints += 1;
                } else if !set.is_empty() {
                    shipped = ship(set, chain, &recipient, &outbox)?;
                }
                if shipped > 0 {
                    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
                    s.segments += 1;
                    s.segment_bytes += shipped;
                }
            }
            if let Poll::Broken(why) = polled {
                tracing::warn!(reason = %why, "replication starts a new generation");
                reader.reset();
                *chain = new_generation(reader, &recipient, &outbox)?;
                *last_snap = Instant::now();
            } else if last_snap.elapsed() >= snapshot_every && !stopping {
                match reader.begin_snapshot()? {
                    Poll::Pages(set) => {
                        if !set.is_empty() {
                            ship(&set, chain, &recipient, &outbox)?;
                        }
                        snapshot(reader, chain, &recipient, &outbox, false)?;
                    }
                    Poll::Broken(_) => {
                        reader.reset();
                        *chain = new_generation(reader, &recipient, &outbox)?;
                    }
                }
                *last_snap = Instant::now();
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_snapshot_ms = now_ms();
            }
            let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
            s.generation = chain.generation;
            s.seq = chain.seq;
            s.last_read_ms = now_ms();
            s.replicator_error = None;
            Ok(())
        })();
        if let Err(e) = step {
            tracing::error!(error = %e, "replication step failed; starting over");
            status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replicator_error = Some(e.to_string());
            state = None;
            // Its pins are gone: SQLite may copy the log back now, so it does not grow
            // without end while replication starts over.
            if let Err(e) = WalReader::checkpoint_unpinned(&cfg.db_path()) {
                tracing::warn!(error = %e, "checkpoint after a failed replication step");
            }
        }
        write_status(cfg, status);
        if stopping {
            return;
        }
        nap(interval, stop);
    }
}

fn new_generation(
    reader: &mut WalReader,
    recipient: &age::x25519::Recipient,
    outbox: &Outbox,
) -> Result<Chain, OpsError> {
    reader.reset();
    // What the log holds now is in the snapshot; reading goes on after it.
    if let Poll::Broken(why) = reader.begin_snapshot()? {
        return Err(OpsError::Refused(format!(
            "cannot start replication: {why}"
        )));
    }
    let mut chain = Chain {
        generation: now_ms() as u64,
        seq: 0,
        chain: String::new(),
        page_size: reader.page_size(),
    };
    snapshot(reader, &mut chain, recipient, outbox, true)?;
    Ok(chain)
}

fn snapshot(
    reader: &WalReader,
    chain: &mut Chain,
    recipient: &age::x25519::Recipient,
    outbox: &Outbox,
    initial: bool,
) -> Result<(), OpsError> {
    let meta = ObjectMeta {
        kind: "snap".into(),
        generation: chain.generation,
        seq: chain.seq,
        time_ms: now_ms(),
        page_size: chain.page_size,
        db_pages: reader.pinned_page_count()?,
        prev: if initial {
            String::new()
        } else {
            chain.chain.clone()
        },
        name: String::new(),
    };
    let scratch = outbox.scratch()?;
    let mut failed = None;
    let digest = seal(recipient, &meta, &scratch, |w| {
        reader
            .stream_snapshot(|chunk| w.write_all(chunk))
            .map(|_| ())
            .map_err(|e| {
                failed = Some(e.to_string());
                std::io::Error::other("snapshot failed")
            })
    });
    let digest = match (digest, failed) {
        (Ok(d), None) => d,
        (_, Some(e)) | (Err(OpsError::Refused(e)), None) => {
            let _ = std::fs::remove_file(&scratch);
            return Err(OpsError::Refused(format!("snapshot: {e}")));
        }
        (Err(e), None) => {
            let _ = std::fs::remove_file(&scratch);
            return Err(e);
        }
    };
    outbox.queue(&scratch, &meta.key())?;
    if initial {
        chain.chain = digest;
    }
    Ok(())
}

/// Seals the pages as the next segment and queues it; returns its sealed size.
fn ship(
    set: &PageSet,
    chain: &mut Chain,
    recipient: &age::x25519::Recipient,
    outbox: &Outbox,
) -> Result<u64, OpsError> {
    let meta = ObjectMeta {
        kind: "seg".into(),
        generation: chain.generation,
        seq: chain.seq + 1,
        time_ms: now_ms(),
        page_size: chain.page_size,
        db_pages: set.db_pages,
        prev: chain.chain.clone(),
        name: String::new(),
    };
    let scratch = outbox.scratch()?;
    let digest = seal(recipient, &meta, &scratch, |w| {
        for (pgno, data) in &set.pages {
            w.write_all(&pgno.to_be_bytes())?;
            w.write_all(data)?;
        }
        Ok(())
    });
    let digest = match digest {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&scratch);
            return Err(e);
        }
    };
    let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
    outbox.queue(&scratch, &meta.key())?;
    chain.seq += 1;
    chain.chain = digest;
    Ok(size)
}

fn uploader(
    t: RemoteTarget,
    index: usize,
    kbps: u64,
    retention_ms: i64,
    outbox: Outbox,
    status: Shared,
    stop: Arc<AtomicBool>,
) {
    let mut store: Option<Store> = None;
    let mut backoff = Duration::from_secs(1);
    let mut pacer = Pacer::new(kbps);
    let update = |f: &mut dyn FnMut(&mut TargetStatus)| {
        let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ts) = s.targets.get_mut(index) {
            f(ts);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let pending = outbox.pending(&t.name);
        let bytes: u64 = pending
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let oldest = pending.first().and_then(|p| {
            let name = p.file_name()?.to_str()?;
            let order = u64::from_str_radix(name.split('~').next()?, 16).ok()?;
            Some((order / 1000) as i64)
        });
        update(&mut |ts| {
            ts.pending = pending.len() as u64;
            ts.pending_bytes = bytes;
            ts.oldest_pending_ms = oldest;
        });
        let Some(next) = pending.first() else {
            nap(Duration::from_millis(100), &stop);
            continue;
        };
        let key = next
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(super::key_of_outbox_name)
            .unwrap_or_default();
        let attempt = (|| -> Result<(), String> {
            if store.is_none() {
                store = Some(Store::connect(&t)?);
            }
            let s = store.as_mut().expect("connected");
            s.put_file(&key, next, &mut pacer)?;
            Ok(())
        })();
        match attempt {
            Ok(()) => {
                let _ = std::fs::remove_file(next);
                backoff = Duration::from_secs(1);
                update(&mut |ts| {
                    ts.last_ok_ms = Some(now_ms());
                    ts.last_error = None;
                });
                if let Some(s) = store.as_mut() {
                    let pruned = if key.starts_with("backups/") {
                        prune_backups(s, t.keep)
                    } else if key.ends_with(".snap.age") {
                        prune_replication(s, now_ms() - retention_ms)
                    } else {
                        Ok(())
                    };
                    if let Err(e) = pruned {
                        tracing::warn!(target = %t.name, error = %e, "pruning old remote copies failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(target = %t.name, error = %e, "upload failed; will retry");
                update(&mut |ts| ts.last_error = Some(e.clone()));
                store = None;
                nap(backoff, &stop);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn prune_backups(store: &mut Store, keep: usize) -> Result<(), String> {
    let mut keys = store.list("backups/")?;
    // Names carry their time (crm-backup-YYYYMMDD-HHMMSS): newest last.
    keys.sort();
    let extra = keys.len().saturating_sub(keep);
    for k in keys.into_iter().take(extra) {
        store.delete(&k)?;
    }
    Ok(())
}

/// Deletes what no restore within the retention needs: everything before the newest
/// snapshot that is older than `cutoff_ms` (that snapshot still serves restores to
/// moments between it and the cutoff).
fn prune_replication(store: &mut Store, cutoff_ms: i64) -> Result<(), String> {
    let keys = store.list("repl/")?;
    let parsed: Vec<_> = keys
        .iter()
        .filter_map(|k| super::parse_repl_key(k).map(|p| (k.clone(), p)))
        .collect();
    let base = parsed
        .iter()
        .filter(|(_, (_, _, time, kind))| kind == "snap" && *time <= cutoff_ms)
        .map(|(_, (gen, seq, _, _))| (*gen, *seq))
        .max();
    let Some((bgen, bseq)) = base else {
        return Ok(());
    };
    for (k, (gen, seq, _, kind)) in parsed {
        let before = gen < bgen || (gen == bgen && (seq < bseq || (seq == bseq && kind == "seg")));
        if before {
            store.delete(&k)?;
        }
    }
    Ok(())
}
