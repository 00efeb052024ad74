use std::process::ExitCode;

use clap::Subcommand;

use super::{load_config, read_password, runtime, Cli};
use crate::app::AppContext;
use crate::config::Overrides;
use crate::domain::accounts::{random_token, NewUser};
use crate::model::{Language, Role};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user.
    Add {
        username: String,
        #[arg(long)]
        role: Role,
        /// Display name (default: the username).
        #[arg(long)]
        name: Option<String>,
        /// UI language: uz, uz-Cyrl, ru or en.
        #[arg(long, default_value = "uz")]
        language: String,
        /// Read the password from the first line of standard input. Without it a strong
        /// password is generated and printed once.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (ends their sessions).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user (ends their sessions; keeps their history).
    Disable { username: String },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for a user and print it (shown once).
    Create {
        username: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List API tokens (of one user, or all): id, user, name, prefix, state.
    List { username: Option<String> },
    /// Revoke an API token by its id (see `crm token list`); a running server refuses it
    /// from its next request on.
    Revoke { id: i64 },
}

fn open(cli: &Cli) -> anyhow::Result<AppContext> {
    AppContext::open(load_config(cli, Overrides::default())?)
}

pub fn run_user(cli: &Cli, cmd: &UserCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let ctx = open(cli)?;
    rt.block_on(async {
        match cmd {
            UserCommand::Add {
                username,
                role,
                name,
                language,
                password_stdin,
            } => {
                let language = Language::from_code(language)
                    .ok_or_else(|| anyhow::anyhow!("unknown language {language:?}"))?;
                let (password, generated) = if *password_stdin {
                    (read_password(true)?, false)
                } else {
                    (random_token(12), true)
                };
                let id = ctx
                    .accounts
                    .create_user(
                        None,
                        NewUser {
                            username: username.clone(),
                            display_name: name.clone().unwrap_or_else(|| username.clone()),
                            role: *role,
                            language,
                            password: password.clone(),
                        },
                        false,
                    )
                    .await?;
                println!(
                    "created user {} (id {id}, role {role})",
                    username.to_lowercase()
                );
                if generated {
                    println!("password: {password}");
                }
            }
            UserCommand::Passwd {
                username,
                password_stdin,
            } => {
                let u = ctx.accounts.user_by_username(username).await?;
                let password = read_password(*password_stdin)?;
                ctx.accounts.set_password(None, u.id, password).await?;
                println!("password of {username} changed; their sessions were ended");
            }
            UserCommand::List => {
                println!(
                    "{:<6} {:<20} {:<9} {:<7} {:<8} NAME",
                    "ID", "USERNAME", "ROLE", "ACTIVE", "LANG"
                );
                for u in ctx.accounts.list_users().await? {
                    println!(
                        "{:<6} {:<20} {:<9} {:<7} {:<8} {}",
                        u.id,
                        u.username,
                        u.role,
                        if u.active { "yes" } else { "no" },
                        u.language.code(),
                        u.display_name
                    );
                }
            }
            UserCommand::Disable { username } => {
                ctx.accounts.disable_user(None, username).await?;
                println!("disabled {username}; their sessions were ended");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_token(cli: &Cli, cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let ctx = open(cli)?;
    rt.block_on(async {
        match cmd {
            TokenCommand::Create { username, name } => {
                let u = ctx.accounts.user_by_username(username).await?;
                let token = ctx.accounts.create_token(None, u.id, name).await?;
                println!("{token}");
            }
            TokenCommand::List { username } => {
                let user = match username {
                    Some(u) => Some(ctx.accounts.user_by_username(u).await?.id),
                    None => None,
                };
                for t in ctx.accounts.list_tokens(user).await? {
                    println!(
                        "{:<6} {:<20} {:<16} {}…  {}",
                        t.id,
                        t.username,
                        t.name,
                        t.prefix,
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
            TokenCommand::Revoke { id } => {
                ctx.accounts.revoke_token(None, *id).await?;
                println!("token {id} revoked");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
