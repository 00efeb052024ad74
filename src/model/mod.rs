//! Nouns of the product, with no I/O.

pub mod user;

pub use user::{Language, Role, UserId};
