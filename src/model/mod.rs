//! Nouns of the product, with no I/O.

pub mod money;
pub mod phone;
pub mod translit;
pub mod user;

pub use phone::{PhoneError, PhoneNumber};
pub use user::{Language, Role, UserId};
