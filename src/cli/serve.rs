use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use super::{load_config, Cli};
use crate::config::Overrides;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// HTTP listen address (env CRM_HTTP). Default: 0.0.0.0:8080
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// SIP listen address for UDP and TCP, or "off" (env CRM_SIP). Default: 0.0.0.0:5060
    #[arg(long, value_name = "ADDR|off")]
    pub sip: Option<String>,
}

pub fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(
        cli,
        Overrides {
            http: args.http,
            sip: args.sip.clone(),
            ..Default::default()
        },
    )?;
    crate::server::init_tracing(&cfg.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = crate::server::start(cfg).await?;
        running.wait_for_shutdown_signal().await?;
        Ok(ExitCode::SUCCESS)
    })
}
