//! Command-line interface. Commands are thin: they parse, call the same domain and ops
//! functions the web layer uses, and print.

mod archive;
mod backup;
mod doctor;
mod extension;
mod import;
mod install;
mod restore;
mod serve;
mod tls;
mod upgrade;
mod users;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

#[derive(Parser, Debug)]
#[command(name = "crm", version, about = "Service-center CRM appliance", long_about = None)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/crm/crm.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (env CRM_DATA_DIR). Default: ./crm-data
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: web UI and API, SIP, background jobs.
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Show configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage staff accounts.
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: users::TokenCommand,
    },
    /// Fill the database with realistic demo data (Uzbek names, +998 numbers, devices,
    /// orders over three years).
    Seed {
        #[arg(long, default_value_t = 1000)]
        customers: usize,
        #[arg(long, default_value_t = 3000)]
        orders: usize,
        /// Random seed, for repeatable data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Take a verified backup (database + attachments) while the server runs.
    Backup(backup::BackupArgs),
    /// Replace the data with a backup (the server must be stopped).
    Restore(restore::RestoreArgs),
    /// Install as a systemd service: user, /etc/crm/crm.toml, /var/lib/crm, binary, unit.
    Install(install::InstallArgs),
    /// Remove the service (keeps config and data unless --purge).
    Uninstall(install::UninstallArgs),
    /// Check config, ports, database, disk, backups and clock; say what to fix.
    Doctor,
    /// Install a signed release (downloaded, or --from-file), with backup and rollback.
    Upgrade(upgrade::UpgradeArgs),
    /// Manage desk-phone extensions (SIP accounts).
    Extension {
        #[command(subcommand)]
        command: extension::ExtensionCommand,
    },
    /// Import customers from CSV or Excel files; undo an import.
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Archive closed orders by a rule, or restore one.
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
    /// HTTPS on the LAN: a local certificate authority and the box's certificate.
    Tls {
        #[command(subcommand)]
        command: tls::TlsCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets redacted.
    Show,
}

/// Builds the effective config from file, environment and the given flag overrides.
pub fn load_config(cli: &Cli, mut flags: Overrides) -> anyhow::Result<Config> {
    if flags.data_dir.is_none() {
        flags.data_dir = cli.data_dir.clone();
    }
    let env = Config::env_overrides()?;
    Ok(Config::load(cli.config.as_deref(), &env, &flags)?)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve(args) => serve::run(&cli, args),
        Command::Migrate => {
            let cfg = load_config(&cli, Overrides::default())?;
            std::fs::create_dir_all(&cfg.data_dir)?;
            let path = cfg.db_path();
            let (before, after) = crate::db::migrate_file(&path)?;
            if before == after {
                println!("{}: schema is current (version {after})", path.display());
            } else {
                println!(
                    "{}: migrated schema from version {before} to {after}",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            let cfg = load_config(&cli, Overrides::default())?;
            print!("{}", cfg.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::User { command } => users::run_user(&cli, command),
        Command::Token { command } => users::run_token(&cli, command),
        Command::Seed {
            customers,
            orders,
            seed,
        } => {
            let ctx = crate::app::AppContext::open(load_config(&cli, Overrides::default())?)?;
            let started = std::time::Instant::now();
            let r = runtime()?.block_on(crate::domain::seed::seed(
                &ctx.db, *customers, *orders, *seed,
            ))?;
            println!(
                "seeded {} customers and {} orders in {:.1} s",
                r.customers,
                r.orders,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => backup::run(&cli, args),
        Command::Restore(args) => restore::run(&cli, args),
        Command::Install(args) => install::run_install(args),
        Command::Uninstall(args) => install::run_uninstall(args),
        Command::Doctor => doctor::run(&cli),
        Command::Upgrade(args) => upgrade::run(&cli, args),
        Command::Extension { command } => extension::run(&cli, command),
        Command::Import { command } => import::run(&cli, command),
        Command::Archive { command } => archive::run(&cli, command),
        Command::Tls { command } => tls::run(&cli, command),
    }
}

/// Reads a password: the first line of stdin with `--password-stdin`, else prompts twice
/// on the terminal without echo.
pub(crate) fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        let line = s.lines().next().unwrap_or("").to_string();
        return Ok(line);
    }
    let first = rpassword::prompt_password("New password: ")?;
    let second = rpassword::prompt_password("Repeat it: ")?;
    if first != second {
        anyhow::bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}
