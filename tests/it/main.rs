//! One integration-test binary (one link step) that starts the real servers.

mod support;

mod browser;
mod cli;
mod core;
mod core_browser;
mod core_reports;
mod foundation;
mod layering;
mod live;
mod matrix;
mod notify;
mod notify_peers;
mod ops;
mod ops_doctor;
mod ops_install;
mod ops_upgrade;
mod sip;
mod sip_more;
