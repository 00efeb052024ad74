//! `crm restore ARCHIVE`: replace the data directory's content with a backup.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{load_config, Cli};
use crate::config::Overrides;
use crate::ops::restore;

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A backup archive made by `crm backup`.
    #[arg(required_unless_present = "from_remote")]
    pub archive: Option<PathBuf>,
    /// Rebuild from this `[[backup.remote.targets]]` target's replication stream onto an
    /// empty data directory (with --backup: fetch a sealed backup archive instead).
    #[arg(long, value_name = "TARGET", requires = "identity")]
    pub from_remote: Option<String>,
    /// With --from-remote: the state at this moment (RFC 3339, e.g.
    /// 2026-12-02T14:05:00+05:00, or Unix seconds) instead of the newest.
    #[arg(long, value_name = "TIME", requires = "from_remote")]
    pub at: Option<String>,
    /// With --from-remote: restore this sealed backup (its file name), or "latest".
    #[arg(
        long,
        value_name = "NAME",
        requires = "from_remote",
        conflicts_with = "at"
    )]
    pub backup: Option<String>,
    /// With --from-remote: check the rebuilt database fully (`PRAGMA integrity_check`,
    /// every index against its rows) instead of its structure (`quick_check`); about ten
    /// times slower on a large database.
    #[arg(long, requires = "from_remote", conflicts_with = "backup")]
    pub full_check: bool,
    /// The private key file (`crm backup keygen`): the box never keeps it.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Stop the crm systemd service for the restore and start it again afterwards.
    #[arg(long)]
    pub stop_service: bool,
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1000);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow::anyhow!("--at {s:?}: not RFC 3339 or Unix seconds: {e}"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn run_remote(cli: &Cli, args: &RestoreArgs, target: &str) -> anyhow::Result<ExitCode> {
    let cfg = load_config(cli, Overrides::default())?;
    let identity = args.identity.as_deref().expect("clap requires it");
    if let Some(b) = &args.backup {
        std::fs::create_dir_all(cfg.tmp_dir())?;
        let dir = tempfile::Builder::new()
            .prefix("remote-backup-")
            .tempdir_in(cfg.tmp_dir())?;
        let name = (b != "latest").then_some(b.as_str());
        let archive =
            crate::ops::remote::restore::fetch_backup(&cfg, target, identity, name, dir.path())?;
        println!("fetched and decrypted {}", archive.display());
        let done = restore::restore(&cfg, &archive)?;
        println!(
            "restored {} (made {}) into {}; the data it replaced is kept in {}",
            archive.file_name().unwrap_or_default().to_string_lossy(),
            done.manifest.created_at,
            cfg.data_dir.display(),
            done.kept_aside.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let at = args.at.as_deref().map(parse_time).transpose()?;
    let depth = if args.full_check {
        crate::ops::remote::restore::CheckDepth::Full
    } else {
        crate::ops::remote::restore::CheckDepth::Quick
    };
    let done = crate::ops::remote::restore::restore_from_remote(&cfg, target, identity, at, depth)?;
    let when =
        time::OffsetDateTime::from_unix_timestamp_nanos(done.state_at_ms as i128 * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    println!(
        "rebuilt the database from target {target}: generation {:016x}, snapshot {} + {} segment(s), state as of {when}; {} bytes in {:.1} s into {} ({} check passed in {:.1} s)",
        done.generation,
        done.snapshot_seq,
        done.segments,
        done.bytes,
        done.seconds,
        cfg.data_dir.display(),
        match done.check {
            crate::ops::remote::restore::CheckDepth::Quick => "quick",
            crate::ops::remote::restore::CheckDepth::Full => "full",
        },
        done.check_seconds
    );
    println!("start it with: crm serve");
    Ok(ExitCode::SUCCESS)
}

pub fn run(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    if let Some(target) = &args.from_remote {
        return run_remote(cli, args, target);
    }
    let archive = args.archive.clone().expect("clap requires it");
    let cfg = load_config(cli, Overrides::default())?;
    let stopped = args.stop_service && crate::ops::systemd::service_active();
    if stopped {
        anyhow::ensure!(
            crate::ops::systemd::systemctl(&["stop", crate::ops::systemd::UNIT_NAME])?,
            "systemctl stop crm failed; nothing was changed"
        );
        println!("stopped the crm service");
    }
    let result = restore::restore(&cfg, &archive);
    if stopped {
        // Started again whatever happened: on failure the previous data is back in place.
        let started = crate::ops::systemd::systemctl(&["start", crate::ops::systemd::UNIT_NAME]);
        match started {
            Ok(true) => println!("started the crm service"),
            _ => eprintln!("crm: could not start the crm service again: sudo systemctl start crm"),
        }
    }
    let done = result?;
    println!(
        "restored {} (made {} by crm {}) into {}",
        archive.display(),
        done.manifest.created_at,
        done.manifest.crm_version,
        cfg.data_dir.display()
    );
    if done.schema_before != done.schema_after {
        println!(
            "migrated its database from schema {} to {}",
            done.schema_before, done.schema_after
        );
    }
    println!(
        "the data it replaced is kept in {} (delete it when satisfied)",
        done.kept_aside.display()
    );
    Ok(ExitCode::SUCCESS)
}
