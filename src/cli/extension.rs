//! `crm extension …`: manage desk-phone extensions from the shell.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{load_config, read_password, runtime, Cli};
use crate::app::AppContext;
use crate::config::Overrides;
use crate::domain::telephony::NewExtension;

#[derive(Subcommand, Debug)]
pub enum ExtensionCommand {
    /// Create an extension. Without --password-stdin a strong secret is generated and
    /// printed once, with the settings to enter in the phone.
    Add {
        /// 2 to 6 digits.
        number: String,
        /// Link to this staff user (their screen-pops).
        #[arg(long)]
        user: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Read the SIP secret from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The branch (its id) the extension is of; default: the whole shop.
        #[arg(long)]
        branch: Option<i64>,
    },
    /// Put an extension in a branch (its id), or `shop` for the whole shop: a call to it
    /// with no other branch is that branch's.
    Branch { number: String, branch: String },
    /// List extensions.
    List,
    /// Delete an extension (its phones are unregistered).
    Remove { number: String },
    /// Give an extension a new secret: generated and printed once, or read from standard
    /// input. A running server asks its phone for the new one from then on.
    Passwd {
        number: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Choose the digest algorithms offered to this extension's phone: default (the
    /// box's `sip.digest`), MD5 (baresip needs it), SHA-256,MD5, SHA-256 or MD5,SHA-256.
    Digest { number: String, algorithms: String },
    /// Bulk import `number;secret;` lines (all or nothing; existing numbers get the new
    /// secret).
    Import { file: PathBuf },
}

pub fn run(cli: &Cli, cmd: &ExtensionCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let ctx = AppContext::open(load_config(cli, Overrides::default())?)?;
    rt.block_on(async {
        let tel = &ctx.telephony;
        match cmd {
            ExtensionCommand::Add {
                number,
                user,
                name,
                password_stdin,
                branch,
            } => {
                let secret = if *password_stdin {
                    Some(read_password(true)?)
                } else {
                    None
                };
                let generated = secret.is_none();
                let e = tel
                    .add_extension(
                        None,
                        NewExtension {
                            number: number.clone(),
                            display_name: name.clone().unwrap_or_default(),
                            username: user.clone(),
                            secret,
                            branch_id: *branch,
                        },
                    )
                    .await?;
                println!("extension {} created", e.number);
                let sip = ctx.config.sip.clone();
                println!("  server:   {sip}");
                println!("  user:     {}", e.number);
                if generated {
                    println!("  secret:   {}   (shown once)", e.secret);
                }
            }
            ExtensionCommand::List => {
                for e in tel.list_extensions().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        e.number,
                        if e.enabled { "enabled" } else { "disabled" },
                        e.username.as_deref().unwrap_or("-"),
                        if e.digest.is_empty() {
                            "default"
                        } else {
                            &e.digest
                        },
                        // As `crm extension branch` takes it: an id, or `shop`.
                        e.branch_id
                            .map_or_else(|| "shop".to_string(), |b| b.to_string()),
                        e.display_name
                    );
                }
            }
            ExtensionCommand::Branch { number, branch } => {
                let b = match branch.trim() {
                    "shop" | "" => None,
                    id => Some(
                        id.parse::<i64>()
                            .map_err(|_| anyhow::anyhow!("branch: an id or `shop`, not {id}"))?,
                    ),
                };
                tel.set_extension_branch(None, number, b).await?;
                match b {
                    Some(b) => println!("extension {number}: branch {b}"),
                    None => println!("extension {number}: the whole shop"),
                }
            }
            ExtensionCommand::Remove { number } => {
                tel.remove_extension(None, number).await?;
                println!("extension {number} removed");
            }
            ExtensionCommand::Passwd {
                number,
                password_stdin,
            } => {
                if *password_stdin {
                    tel.set_secret(None, number, &read_password(true)?).await?;
                    println!("extension {number}: secret changed");
                } else {
                    let secret = tel.regenerate_secret(None, number).await?;
                    println!("extension {number}: new secret");
                    println!("  secret:   {secret}   (shown once)");
                }
            }
            ExtensionCommand::Digest { number, algorithms } => {
                tel.set_extension_digest(None, number, algorithms).await?;
                let e = tel.extension(number).await?;
                let shown = if e.digest.is_empty() {
                    "default"
                } else {
                    &e.digest
                };
                println!("extension {number}: digest {shown}");
            }
            ExtensionCommand::Import { file } => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                let n = tel.import(None, &text).await?;
                println!("imported {n} extensions");
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
