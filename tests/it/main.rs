//! One integration-test binary (one link step) that starts the real servers.

mod support;

mod browser;
mod calls;
mod calls_browser;
mod changes;
mod cli;
mod clock;
mod core;
mod core_activity;
mod core_branches;
mod core_browser;
mod core_language;
mod core_lists;
mod core_reports;
mod foundation;
mod harden;
mod imports;
mod intake;
mod language_pages;
mod layering;
mod live;
mod matrix;
mod notify;
mod notify_peers;
mod ops;
mod ops_doctor;
mod ops_install;
mod ops_upgrade;
mod phones;
mod sip;
mod sip_more;
mod sip_office;
mod sip_trunk;
mod sipp;
mod work;
