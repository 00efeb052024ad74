//! `crm import customers FILE [--dry-run]`: the same import as the web page and the API,
//! on the data directory. A running server sees the customers at once (it keeps none in
//! memory: the caller card and the lists read the database).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{load_config, runtime, Cli};
use crate::app::AppContext;
use crate::config::Overrides;
use crate::domain::imports::{Encoding, Mapping, Upload, Verdict};
use crate::domain::DomainError;
use crate::i18n::Tr;
use crate::model::Language;

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Import customers from a CSV or Excel (xlsx, xls, ods) file. Rows whose phone
    /// belongs to a customer merge into them; the batch can be undone with
    /// `crm import undo ID`.
    Customers {
        file: PathBuf,
        /// Only show each row's verdict; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The CSV's encoding: utf-8, windows-1251, utf-16le, utf-16be (default: detect).
        #[arg(long, default_value = "")]
        encoding: String,
        /// One field per column: `name,phone,,tags` (empty: not imported). Fields: name,
        /// phone, company, tags, notes, language, birthday, email, address, telegram, kind,
        /// opt_in. Default: guessed from the header.
        #[arg(long)]
        mapping: Option<String>,
        /// With --mapping: the first row is data, not a header.
        #[arg(long)]
        no_header: bool,
        /// Language of the messages: uz, uz-Cyrl, ru, en.
        #[arg(long, default_value = "en")]
        lang: String,
        /// Import into this branch (its id): with customers kept per branch, rows match
        /// only its customers, and new customers are of it. Default: the whole shop.
        #[arg(long)]
        branch: Option<i64>,
    },
    /// Undo an imported batch (its id is printed by the import).
    Undo { id: i64 },
}

/// A refusal in the chosen language, as the web would say it.
fn refusal(tr: &Tr, e: DomainError) -> anyhow::Error {
    anyhow::anyhow!("{}", tr.msg(&e.message()))
}

pub fn run(cli: &Cli, cmd: &ImportCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let ctx = AppContext::open(load_config(cli, Overrides::default())?)?;
    rt.block_on(async {
        match cmd {
            ImportCommand::Customers {
                file,
                dry_run,
                encoding,
                mapping,
                no_header,
                lang,
                branch,
            } => {
                let tr = Tr::new(Language::from_code(lang).unwrap_or(Language::En));
                let bytes = std::fs::read(file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                if bytes.len() > crate::domain::imports::MAX_BYTES {
                    // Refused before anything else is read.
                    return Err(refusal(
                        &tr,
                        DomainError::invalid(
                            crate::domain::Msg::new("err.import.too_large")
                                .with("max", crate::domain::imports::MAX_BYTES / (1024 * 1024)),
                        ),
                    ));
                }
                let encoding = Encoding::parse(encoding).map_err(|e| refusal(&tr, e))?;
                let mapping = match mapping {
                    Some(m) => Some(Mapping::parse_list(m, !no_header).map_err(|e| refusal(&tr, e))?),
                    None => None,
                };
                let started = std::time::Instant::now();
                let preview = if *dry_run {
                    ctx.imports
                        .preview_of(bytes, encoding, mapping, None, branch.map(|b| vec![b]))
                        .await
                        .map_err(|e| refusal(&tr, e))?
                } else {
                    let up = Upload {
                        file_name: file
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        bytes,
                        encoding,
                    };
                    let (o, p) = ctx
                        .imports
                        .import_file(None, up, mapping, *branch)
                        .await
                        .map_err(|e| refusal(&tr, e))?;
                    println!(
                        "batch {}: {} created, {} merged into existing customers, {} merged into earlier rows, {} invalid rows skipped ({:.1} s)",
                        o.batch_id,
                        o.created,
                        o.merged,
                        o.duplicates,
                        o.invalid,
                        started.elapsed().as_secs_f64()
                    );
                    p
                };
                if let Some(e) = preview.encoding {
                    println!("encoding: {}", e.code());
                }
                println!(
                    "columns: {}",
                    preview
                        .mapping
                        .columns
                        .iter()
                        .map(|f| if f.code().is_empty() { "-" } else { f.code() })
                        .collect::<Vec<_>>()
                        .join(",")
                );
                if let Some(b) = &preview.same_file {
                    println!("note: this file was imported before as batch {}", b.id);
                }
                let c = preview.plan.counts();
                for r in &preview.plan.rows {
                    match &r.verdict {
                        Verdict::Invalid(m) => println!("row {}: invalid: {}", r.row, tr.msg(m)),
                        Verdict::Match { customer_id, name } if *dry_run => {
                            println!("row {}: matches customer #{customer_id} ({name})", r.row)
                        }
                        Verdict::SameAs { row } if *dry_run => {
                            println!("row {}: same phone as row {row}", r.row)
                        }
                        _ => {}
                    }
                }
                if *dry_run {
                    println!(
                        "dry run: {} rows: {} new, {} match existing customers, {} repeat earlier rows, {} invalid; nothing was changed",
                        c.rows, c.new, c.matched, c.duplicates, c.invalid
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            ImportCommand::Undo { id } => {
                let tr = Tr::new(Language::En);
                let u = ctx
                    .imports
                    .undo(None, *id)
                    .await
                    .map_err(|e| refusal(&tr, e))?;
                println!(
                    "batch {id} undone: {} customers removed, {} restored, {} kept (edited or with orders since)",
                    u.removed, u.restored, u.kept
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
