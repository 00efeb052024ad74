//! `crm backup`: an online, verified backup of the data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{load_config, Cli};
use crate::config::Overrides;
use crate::ops::{backup, human_size};

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Archive file to write, or an existing folder to write it into.
    /// Default: the [backup] dir of the config, else <data_dir>/backups.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(cli, Overrides::default())?;
    let done = backup::create(&cfg, args.out.as_deref())?;
    let files = done.manifest.files.len();
    println!(
        "backup written and verified: {} ({}, {} file{}, schema {}, {:.1} s)",
        done.path.display(),
        human_size(done.size),
        files,
        if files == 1 { "" } else { "s" },
        done.manifest.schema_version,
        done.seconds
    );
    Ok(ExitCode::SUCCESS)
}
