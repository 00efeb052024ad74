//! `crm tls init` / `crm tls show`: the local certificate authority and the box's HTTPS
//! certificate for the LAN (see `ops::tls`).

use std::net::IpAddr;
use std::process::ExitCode;

use super::{load_config, Cli};
use crate::config::Overrides;
use crate::ops::tls;

#[derive(clap::Subcommand, Debug)]
pub enum TlsCommand {
    /// Make a local certificate authority (once; kept in <data dir>/tls) and the box's
    /// certificate for its LAN names and addresses; `crm serve` then serves HTTPS with
    /// it unless crm.toml sets tls_cert/tls_key. Default names: the hostname,
    /// hostname.local, localhost; default addresses: every local IPv4 address, 127.0.0.1.
    Init {
        /// A DNS name for the certificate (repeat for more); replaces the default names.
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// An IP address for the certificate (repeat for more); replaces the defaults.
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
    },
    /// Print the CA's SHA-256 fingerprint and expiry (compare it on each device that
    /// installs it) and the box certificate's.
    Show,
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}

pub fn run(cli: &Cli, command: &TlsCommand) -> anyhow::Result<ExitCode> {
    let cfg = load_config(cli, Overrides::default())?;
    match command {
        TlsCommand::Init { names, ips } => {
            let m = tls::init(&cfg.data_dir, names, ips)?;
            crate::ops::match_owner(&m.dir, &cfg.data_dir);
            for f in [tls::CA_CERT, tls::CA_KEY, tls::BOX_CERT, tls::BOX_KEY] {
                crate::ops::match_owner(&m.dir.join(f), &cfg.data_dir);
            }
            println!(
                "{} the local CA: {}",
                if m.ca_created { "made" } else { "kept" },
                m.dir.join(tls::CA_CERT).display()
            );
            println!("  SHA-256 {}", m.ca.fingerprint);
            println!("  valid until {}", date(m.ca.not_after));
            let ips: Vec<String> = m.ips.iter().map(|i| i.to_string()).collect();
            println!(
                "made the box certificate for {} {}: {}",
                m.names.join(", "),
                ips.join(", "),
                m.dir.join(tls::BOX_CERT).display()
            );
            if cfg.tls_cert.as_deref() == Some(m.dir.join(tls::BOX_CERT).as_path()) {
                println!("crm serve uses it (restart the service: sudo systemctl restart crm)");
            } else {
                println!(
                    "crm.toml sets tls_cert/tls_key of its own, which win; to use this one instead, remove them or set:"
                );
                println!("  tls_cert = \"{}\"", m.dir.join(tls::BOX_CERT).display());
                println!("  tls_key = \"{}\"", m.dir.join(tls::BOX_KEY).display());
            }
            println!("staff install the CA once per device from https://<this box>/tls/ca.crt (README: \"HTTPS on the LAN\")");
            Ok(ExitCode::SUCCESS)
        }
        TlsCommand::Show => match tls::show(&cfg.data_dir)? {
            None => {
                eprintln!("no local CA here: run `crm tls init` first");
                Ok(ExitCode::from(1))
            }
            Some((ca, boxed)) => {
                println!("CA        {}", ca.subject);
                println!("SHA-256   {}", ca.fingerprint);
                println!("expires   {}", date(ca.not_after));
                if let Some(b) = boxed {
                    println!("box       {}", b.subject);
                    println!("expires   {}", date(b.not_after));
                }
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}
