//! One integration-test binary (one link step) that starts the real servers.

mod support;

mod browser;
mod cli;
mod foundation;
mod live;
mod matrix;
mod notify;
mod notify_peers;
