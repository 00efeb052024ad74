//! Verbs and rules. Handlers and CLI commands call these; they call `db`.

pub mod access;
pub mod accounts;
pub mod activity;
pub mod branches;
pub mod calls;
pub mod customers;
pub mod dashboard;
pub mod live_registrations;
pub mod notices;
pub mod notifications;
pub mod orders;
pub mod provisioning;
pub mod search;
pub mod seed;
pub mod shop;
pub mod telephony;

pub use access::{Action, Actor};

use crate::db::DbError;

/// Errors of the domain layer; the web layer maps each kind to a status code.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input that fails a rule; the message is shown to the user.
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// A stale edit or a uniqueness clash; the message says what to do.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many attempts; retry after the given number of seconds.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl DomainError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        DomainError::Invalid(msg.into())
    }
}

/// Lets a rule checked inside a write transaction abort it and reach the caller as the
/// same domain error.
impl From<DomainError> for DbError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Db(d) => d,
            other => DbError::Rejected(encode_rejection(&other)),
        }
    }
}

fn encode_rejection(e: &DomainError) -> String {
    let kind = match e {
        DomainError::Invalid(_) => "invalid",
        DomainError::NotFound => "not_found",
        DomainError::Forbidden => "forbidden",
        DomainError::Conflict(_) => "conflict",
        DomainError::Unauthenticated(_) => "unauthenticated",
        DomainError::RateLimited { .. } => "rate_limited",
        DomainError::Db(_) => "db",
    };
    format!("{kind}\u{1f}{e}")
}

/// Turns a storage error back into the domain error a rule raised inside a write.
pub fn from_db(e: DbError) -> DomainError {
    if let DbError::Rejected(s) = &e {
        if let Some((kind, msg)) = s.split_once('\u{1f}') {
            return match kind {
                "invalid" => DomainError::Invalid(msg.into()),
                "not_found" => DomainError::NotFound,
                "forbidden" => DomainError::Forbidden,
                "conflict" => DomainError::Conflict(msg.into()),
                "unauthenticated" => DomainError::Unauthenticated(msg.into()),
                _ => DomainError::Invalid(msg.into()),
            };
        }
    }
    DomainError::Db(e)
}

pub type DomainResult<T> = Result<T, DomainError>;
