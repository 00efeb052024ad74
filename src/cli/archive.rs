//! `crm archive orders --closed-years N` and `crm archive restore NUMBER`: the same
//! archive as the web page and the API, on the data directory. Archived orders leave the
//! lists and the search and keep their history.

use std::process::ExitCode;

use clap::Subcommand;

use super::{load_config, runtime, Cli};
use crate::app::AppContext;
use crate::config::Overrides;
use crate::i18n::Tr;
use crate::model::Language;

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// Archive the orders closed more than N years ago (by the shop's calendar).
    Orders {
        #[arg(long, default_value_t = 2)]
        closed_years: i64,
        /// At most this many in one run.
        #[arg(long, default_value_t = 100_000)]
        limit: i64,
    },
    /// Bring one archived order back into the lists and the search.
    Restore {
        /// The order's number, e.g. RM26-00123.
        number: String,
    },
}

pub fn run(cli: &Cli, cmd: &ArchiveCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let ctx = AppContext::open(load_config(cli, Overrides::default())?)?;
    let tr = Tr::new(Language::En);
    let refusal = |e: crate::domain::DomainError| anyhow::anyhow!("{}", tr.msg(&e.message()));
    rt.block_on(async {
        match cmd {
            ArchiveCommand::Orders {
                closed_years,
                limit,
            } => {
                let n = ctx
                    .promotions
                    .archive_closed(None, *closed_years, *limit)
                    .await
                    .map_err(refusal)?;
                println!("{n} orders archived (closed more than {closed_years} years ago)");
            }
            ArchiveCommand::Restore { number } => {
                let id = ctx.promotions.order_id(number).await.map_err(refusal)?;
                ctx.promotions
                    .archive_order(None, id, false)
                    .await
                    .map_err(refusal)?;
                println!("order {number} restored");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
