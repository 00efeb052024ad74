//! `crm install` and `crm uninstall`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::ops::install;

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Write everything below DIR as if it were "/" (image builds, tests); creates no
    /// user and starts nothing.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Also delete /etc/crm and /var/lib/crm (ALL DATA, backups included) and the user.
    #[arg(long)]
    pub purge: bool,
    /// Remove from below DIR instead of "/".
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

pub fn run_install(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe()?;
    for step in install::install(&args.root, &exe)? {
        println!("{step}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_uninstall(args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    for step in install::uninstall(&args.root, args.purge)? {
        println!("{step}");
    }
    Ok(ExitCode::SUCCESS)
}
