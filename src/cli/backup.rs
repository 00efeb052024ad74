//! `crm backup`: an online, verified backup of the data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{load_config, Cli};
use crate::config::Overrides;
use crate::ops::{backup, human_size};

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Archive file to write, or an existing folder to write it into.
    /// Default: the [backup] dir of the config, else <data_dir>/backups.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Make the key pair for off-box copies: prints the private key (keep it away from
    /// the box, on paper or a USB stick: restoring needs it) and the public key for
    /// `[backup.remote] public_key`.
    Keygen {
        /// Also write the private key to this file (mode 0600; it must not exist).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub fn run(cli: &Cli, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    if let Some(BackupCommand::Keygen { out }) = &args.command {
        let (secret, public) = crate::ops::remote::keygen();
        let text = format!(
            "# crm backup key, made {}. Keep it OFF the box: restoring from a remote target needs it.\n# public key: {public}\n{secret}\n",
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
        if let Some(path) = out {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            eprintln!("private key written to {}", path.display());
        }
        print!("{text}");
        eprintln!(
            "put this in crm.toml:\n[backup.remote]\npublic_key = \"{public}\"\n(the box keeps only the public key; store the private key somewhere safe)"
        );
        return Ok(ExitCode::SUCCESS);
    }
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
    if !cfg.backup.remote.targets.is_empty() {
        crate::ops::remote::replicate::queue_backup(&cfg, &done.path)?;
        println!(
            "sealed and queued for {} remote target(s); the running server uploads it",
            cfg.backup.remote.targets.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
