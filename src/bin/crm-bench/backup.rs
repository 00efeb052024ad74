//! `backup [SIZE_MB]`: an online backup of a large database (default 1 GB of 4 KB rows)
//! while a steady write load runs; `backup seed [ORDERS]`: the same on a `crm seed`
//! database (default 1 000 000 orders, 200 000 customers, about 550 MB). Reports the backup's duration against `cp` of the same file in the
//! same run, and the write latencies (longest stall) before and during the backup.
//!
//! Figures (durations are medians of `ROUNDS`, default 3): `db_bytes`, `cp_s`,
//! `cp_and_sync_s` (cp, then `sync` of the copy), `snapshot_s` (the snapshot's pages
//! streamed to nowhere, once), `backup_total_s` (the whole `crm backup`), `phase_*_s` (the
//! backup's own split), `speed_vs_cp` (cp_s / backup_total_s; goal >= 0.5),
//! `speed_vs_cp_and_sync`, `snapshot_speed_vs_cp`, `write_max_ms_before`
//! (the baseline under the same load without a backup), `write_max_ms_during` (goal <
//! 100), `write_p99_ms_during`, and `write_max_ms_in_<phase>`: the longest write in each
//! phase, to see which part of a backup stalls the writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::{ms, percentile};

const ROW_BYTES: usize = 4000;
const ROWS_PER_WRITE: usize = 500;
/// The steady load: one small write every this often.
const LOAD_PERIOD: Duration = Duration::from_millis(5);

fn filler(seed: u64) -> String {
    // Half random (incompressible), half repetitive, like real rows with notes.
    use rand::{Rng, SeedableRng};
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = String::with_capacity(ROW_BYTES);
    while s.len() < ROW_BYTES / 2 {
        s.push(char::from(r.gen_range(b'a'..=b'z')));
    }
    while s.len() < ROW_BYTES {
        s.push_str("telefon ekrani almashtirildi; ");
    }
    s.truncate(ROW_BYTES);
    s
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = crm::config::Config {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ctx = crm::app::AppContext::open(cfg.clone())?;
    let db = ctx.db.clone();

    let fill_start = Instant::now();
    if args.first().map(String::as_str) == Some("seed") {
        // A real CRM database: `crm seed`'s customers and orders with every index and the
        // search table, where `integrity_check` costs far more per byte than in big rows.
        let orders: usize = args
            .get(1)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(1_000_000);
        let report = rt.block_on(crm::domain::seed::seed(&db, orders / 5, orders, 42))?;
        eprintln!(
            "seeded {} orders in {:.1} s",
            report.orders,
            fill_start.elapsed().as_secs_f64()
        );
    } else {
        let size_mb: u64 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(1024);
        fill_rows(&db, (size_mb * 1_000_000) as usize / ROW_BYTES)?;
        eprintln!("filled in {:.1} s", fill_start.elapsed().as_secs_f64());
    }
    rt.block_on(db.checkpoint())?;
    let db_bytes = std::fs::metadata(cfg.db_path())?.len();

    // The fill's dirty pages would slow whichever comes first, cp or backup.
    anyhow::ensure!(
        std::process::Command::new("sync").status()?.success(),
        "sync failed"
    );
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);

    // The steady write load, with every write's latency.
    let stop = Arc::new(AtomicBool::new(false));
    // (before, during, what runs now, every write during as (finished at, took)).
    type Phase = (Vec<Duration>, Vec<Duration>, Now, Vec<(Instant, Duration)>);
    let phase: Arc<Mutex<Phase>> = Arc::new(Mutex::new((
        Vec::new(),
        Vec::new(),
        Now::Baseline,
        Vec::new(),
    )));
    let load = {
        let (db, stop, phase) = (db.clone(), stop.clone(), phase.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut i = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                db.write_blocking(move |c| {
                    c.execute(
                        "INSERT INTO settings(key, value, updated_at) VALUES (?1, 'x', 0)",
                        [format!("load-{i:09}")],
                    )?;
                    Ok(())
                })?;
                let took = t.elapsed();
                let mut p = phase.lock().expect("not poisoned");
                match p.2 {
                    Now::Baseline => p.0.push(took),
                    Now::Reference => {}
                    Now::Backup => {
                        p.1.push(took);
                        p.3.push((Instant::now(), took));
                    }
                }
                drop(p);
                i += 1;
                next += LOAD_PERIOD;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                } else {
                    next = Instant::now();
                }
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_secs(3));

    // The snapshot's pages streamed to nowhere, then rounds of cp and a whole backup, all
    // under the load.
    let now = |what| phase.lock().expect("not poisoned").2 = what;
    now(Now::Backup);
    let snapshot_alone_start = Instant::now();
    let (snap, _) = crm::db::snapshot::LiveSnapshot::begin(&cfg.db_path())?;
    let mut streamed = 0u64;
    snap.stream(|chunk| {
        streamed += chunk.len() as u64;
        Ok(())
    })?;
    anyhow::ensure!(streamed == snap.size(), "short snapshot stream");
    drop(snap);
    let snapshot_s = snapshot_alone_start.elapsed().as_secs_f64();
    let mut windows = vec![("snapshot_alone", snapshot_alone_start, Instant::now())];
    let (mut totals, mut phase_runs) = (Vec::new(), Vec::<Vec<(&str, f64)>>::new());
    let mut archive_bytes = 0;
    let copy = dir.path().join("cp.db");
    let (mut cp_runs, mut cp_sync_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // The reference, in the same conditions: cp of the same file (page cache as warm
        // as for the backup); and cp followed by `sync` of the copy, which is what a
        // finished backup is (the archive is fsynced before it is reported).
        now(Now::Reference);
        let t = Instant::now();
        let ok = std::process::Command::new("cp")
            .arg(cfg.db_path())
            .arg(&copy)
            .status()?
            .success();
        anyhow::ensure!(ok, "cp failed");
        cp_runs.push(t.elapsed());
        let ok = std::process::Command::new("sync")
            .arg(&copy)
            .status()?
            .success();
        anyhow::ensure!(ok, "sync failed");
        cp_sync_runs.push(t.elapsed());
        std::fs::remove_file(&copy)?;

        now(Now::Backup);
        let out = dir.path().join(format!("bench-backup-{round}.tar.zst"));
        let t = Instant::now();
        let done = crm::ops::backup::create(&cfg, Some(&out))?;
        totals.push(t.elapsed());
        // Phase windows: each phase of the backup in order.
        let mut at = t;
        for (name, secs) in &done.phases {
            let end = at + Duration::from_secs_f64(*secs);
            windows.push((name, at, end));
            at = end;
        }
        phase_runs.push(done.phases.clone());
        archive_bytes = done.size;
        std::fs::remove_file(&out)?;
    }
    let backup_total_s = median_s(&mut totals);
    let cp_s = median_s(&mut cp_runs);
    let cp_sync_s = median_s(&mut cp_sync_runs);
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread")?;

    let (mut before, mut during, _, timeline) =
        std::mem::take(&mut *phase.lock().expect("not poisoned"));
    before.sort();
    during.sort();
    for (i, (name, _)) in phase_runs[0].iter().enumerate() {
        let mut runs: Vec<Duration> = phase_runs
            .iter()
            .map(|p| Duration::from_secs_f64(p[i].1))
            .collect();
        println!("phase_{name}_s={:.2}", median_s(&mut runs));
    }
    let mut names: Vec<&str> = windows.iter().map(|w| w.0).collect();
    names.dedup();
    for name in names {
        // A write that finished in a window (or up to its own length after it) was delayed
        // by it; the worst over every round.
        let worst = windows
            .iter()
            .filter(|w| w.0 == name)
            .flat_map(|(_, from, to)| {
                timeline.iter().filter(move |(end, took)| {
                    *end >= *from && end.checked_sub(*took).unwrap_or(*end) <= *to
                })
            })
            .map(|(_, took)| *took)
            .max()
            .unwrap_or(Duration::ZERO);
        println!("write_max_ms_in_{name}={}", ms(worst));
    }
    println!("db_bytes={db_bytes}");
    println!("archive_bytes={archive_bytes}");
    println!("rounds={rounds}");
    println!("cp_s={cp_s:.2}");
    println!("cp_and_sync_s={cp_sync_s:.2}");
    println!("snapshot_s={snapshot_s:.2}");
    println!("backup_total_s={backup_total_s:.2}");
    println!("snapshot_speed_vs_cp={:.2}", cp_s / snapshot_s);
    println!("speed_vs_cp={:.2}", cp_s / backup_total_s);
    println!("speed_vs_cp_and_sync={:.2}", cp_sync_s / backup_total_s);
    println!("writes_before={}", before.len());
    println!("write_p50_ms_before={}", ms(percentile(&before, 50.0)));
    println!(
        "write_max_ms_before={}",
        ms(*before.last().unwrap_or(&Duration::ZERO))
    );
    println!("writes_during={}", during.len());
    println!("write_p50_ms_during={}", ms(percentile(&during, 50.0)));
    println!("write_p99_ms_during={}", ms(percentile(&during, 99.0)));
    println!(
        "write_max_ms_during={}",
        ms(*during.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}

/// `rows` rows of [`ROW_BYTES`] in the settings table.
pub fn fill_rows(db: &crm::db::Db, rows: usize) -> anyhow::Result<()> {
    let mut written = 0;
    while written < rows {
        let n = ROWS_PER_WRITE.min(rows - written);
        let base = written;
        db.write_blocking(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO settings(key, value, updated_at) VALUES (?1, ?2, 0)",
            )?;
            for i in base..base + n {
                stmt.execute([format!("fill-{i:09}"), filler(i as u64)])?;
            }
            Ok(())
        })?;
        written += n;
    }
    Ok(())
}

#[derive(Clone, Copy, Default)]
enum Now {
    #[default]
    Baseline,
    /// cp runs: its writes are counted nowhere.
    Reference,
    Backup,
}

fn median_s(runs: &mut [Duration]) -> f64 {
    runs.sort();
    runs[runs.len() / 2].as_secs_f64()
}
