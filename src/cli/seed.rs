//! `crm seed`: fills the database with realistic demo data (for trying the UI and for
//! `crm-bench core`).

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::{load_config, runtime, Cli};
use crate::app::AppContext;
use crate::config::Overrides;
use crate::domain::seed::{run, SeedPlan};

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// Customers to add.
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// Repair orders to add, spread over the last three years.
    #[arg(long, default_value_t = 5000)]
    pub orders: usize,
    /// Masters to create when the shop has none (they share one printed password).
    #[arg(long, default_value_t = 8)]
    pub masters: usize,
    /// Random seed: the same seed on an empty database gives the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run_seed(cli: &Cli, args: &SeedArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let ctx = AppContext::open(load_config(cli, Overrides::default())?)?;
    let started = Instant::now();
    let report = rt.block_on(run(
        &ctx.db,
        &ctx.accounts,
        &ctx.orders,
        SeedPlan {
            customers: args.customers,
            orders: args.orders,
            masters: args.masters,
            seed: args.seed,
        },
    ))?;
    println!(
        "added {} customers and {} orders in {:.1} s",
        report.customers,
        report.orders,
        started.elapsed().as_secs_f64()
    );
    if let Some(p) = report.master_password {
        println!(
            "created masters {} with password: {p}",
            report.masters_created.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
