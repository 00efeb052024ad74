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
}

pub fn run(cli: &Cli, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(cli, Overrides::default())?;
    let done = restore::restore(&cfg, &args.archive)?;
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
