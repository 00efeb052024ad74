//! One integration-test binary (one link step) that starts the real servers.

mod support;

mod browser;
mod cli;
mod foundation;
mod layering;
mod live;
mod matrix;
mod ops;
mod ops_doctor;
mod ops_install;
mod ops_upgrade;
