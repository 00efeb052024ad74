//! `crm upgrade`: install a signed release (see `ops::upgrade` for the safety steps).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{load_config, Cli};
use crate::config::Overrides;
use crate::ops::upgrade::{self, Outcome, UpgradeOptions};

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// Install this release archive (crm-VERSION-TARGET.tar.gz) instead of downloading.
    #[arg(long, value_name = "ARCHIVE", conflicts_with = "rollback")]
    pub from_file: Option<PathBuf>,
    /// Only report whether a newer release exists.
    #[arg(long, conflicts_with = "rollback")]
    pub check: bool,
    /// Install even when the release is not newer than the running version.
    #[arg(long)]
    pub force: bool,
    /// Go back to the binary the last upgrade replaced.
    #[arg(long)]
    pub rollback: bool,
    /// Seconds the restarted service has to answer /healthz before it is rolled back.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub health_timeout: u64,
}

pub fn run(cli: &Cli, args: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(cli, Overrides::default())?;
    let exe = std::env::current_exe()?;
    let timeout = Duration::from_secs(args.health_timeout);
    if args.rollback {
        println!("{}", upgrade::rollback(&cfg, &exe, timeout)?);
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = upgrade::upgrade(
        &cfg,
        &UpgradeOptions {
            from_file: args.from_file.clone(),
            check_only: args.check,
            force: args.force,
            exe,
            health_timeout: timeout,
        },
    )?;
    match outcome {
        Outcome::UpToDate { current } => println!("crm {current} is up to date"),
        Outcome::Available { current, latest } => {
            println!("crm {latest} is available (running {current}): sudo crm upgrade")
        }
        Outcome::Upgraded {
            from,
            to,
            backup,
            previous,
            service,
        } => {
            println!("upgraded crm {from} -> {to}");
            if let Some(b) = backup {
                println!("backup taken first: {}", b.display());
            }
            println!(
                "previous binary kept as {} (crm upgrade --rollback)",
                previous.display()
            );
            println!("{service}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
