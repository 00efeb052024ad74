//! `crm-bench SUITE`: measures one area and prints one `name=value` line per figure.
//! Suites live in their own files; each compares against a reference measured in the
//! same run where the issue asks for one.

mod backup;
mod calls;
mod chat;
mod core;
mod httpc;
mod import;
mod notify;
mod replication;
mod server;
mod signin;
mod sip;
#[cfg(feature = "rsip-compare")]
mod sip_parse;
mod startup;
mod stats;
mod ws;

use std::process::ExitCode;

const SUITES: &[&str] = &[
    "startup",
    "ws",
    "core",
    "notify",
    "backup",
    "sip",
    "sip-parse",
    "calls",
    "signin",
    "chat",
    "import",
    "replication",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(suite) = args.first() else {
        eprintln!(
            "usage: crm-bench SUITE [ARGS]  (suites: {})",
            SUITES.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    let result = match suite.as_str() {
        "startup" => startup::run(rest),
        "ws" => ws::run(rest),
        "core" => core::run(rest),
        "notify" => notify::run(rest),
        "backup" => backup::run(rest),
        "sip" => sip::run(rest),
        "calls" => calls::run(rest),
        "signin" => signin::run(rest),
        "chat" => chat::run(rest),
        "import" => import::run(rest),
        "replication" => replication::run(rest),
        #[cfg(feature = "rsip-compare")]
        "sip-parse" => sip_parse::run(rest),
        #[cfg(not(feature = "rsip-compare"))]
        "sip-parse" => Err(anyhow::anyhow!(
            "sip-parse compares with rsip: build with --features rsip-compare"
        )),
        other => Err(anyhow::anyhow!(
            "unknown suite {other:?} (suites: {})",
            SUITES.join(", ")
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crm-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
