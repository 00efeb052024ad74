//! One integration-test binary (one link step) that starts the real servers.

mod support;

mod foundation;
mod sip;
