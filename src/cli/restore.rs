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
    pub archive: PathBuf,
    /// Stop the crm systemd service for the restore and start it again afterwards.
    #[arg(long)]
    pub stop_service: bool,
}

pub fn run(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(cli, Overrides::default())?;
    let stopped = args.stop_service && crate::ops::systemd::service_active();
    if stopped {
        anyhow::ensure!(
            crate::ops::systemd::systemctl(&["stop", crate::ops::systemd::UNIT_NAME])?,
            "systemctl stop crm failed; nothing was changed"
        );
        println!("stopped the crm service");
    }
    let result = restore::restore(&cfg, &args.archive);
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
        args.archive.display(),
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
