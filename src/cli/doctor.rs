//! `crm doctor`: checks the box and prints what to do about each problem.

use std::process::ExitCode;

use super::{load_config, Cli};
use crate::config::Overrides;
use crate::ops::doctor::{self, Status};

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(cli, Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL  config    {e:#}");
            println!("      -> fix the file (crm config show prints what is in effect)");
            return Ok(ExitCode::FAILURE);
        }
    };
    let findings = doctor::run(&cfg);
    for f in &findings {
        let tag = match f.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("{tag}  {:<9} {}", f.check, f.detail);
        if let Some(fix) = &f.fix {
            println!("      -> {fix}");
        }
    }
    let fails = findings.iter().filter(|f| f.status == Status::Fail).count();
    let warns = findings.iter().filter(|f| f.status == Status::Warn).count();
    println!("{fails} problem(s), {warns} warning(s)");
    Ok(if fails > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
