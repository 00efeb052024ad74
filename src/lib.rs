//! `crm`: a service-center CRM appliance in one binary. See docs/ARCHITECTURE.md for the
//! module map and the import rules between modules.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod events;
pub mod i18n;
pub mod jobs;
pub mod media;
pub mod model;
pub mod notify;
pub mod ops;
pub mod pdf;
pub mod server;
pub mod sip;
pub mod web;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
