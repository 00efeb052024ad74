//! Verbs and rules. Handlers and CLI commands call these; they call `db`.

pub mod access;
pub mod accounts;
pub mod activity;
pub mod branches;
pub mod broadcasts;
pub mod call_lists;
pub mod calls;
pub mod changes;
pub mod clock;
pub mod conversations;
pub mod customer_links;
pub mod customers;
pub mod dashboard;
pub mod documents;
pub mod filters;
pub mod imports;
pub mod live_registrations;
pub mod notices;
pub mod notifications;
pub mod orders;
pub mod promotions;
pub mod provisioning;
pub mod recordings;
pub mod roles;
pub mod search;
pub mod seed;
pub mod segments;
pub mod shop;
pub mod telephony;
pub mod widget;
pub mod work;

pub use access::{Action, Actor};

use crate::db::DbError;
/// What is wrong with the disk when a write is refused (see [`DomainError::storage_problem`]).
pub use crate::db::StorageProblem;
pub use crate::i18n::Msg;

/// Errors of the domain layer; the web layer maps each kind to a status code and renders
/// its message in the reader's language.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input that fails a rule; the message says which and why.
    #[error("{0}")]
    Invalid(Msg),
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// A stale edit or a uniqueness clash; the message says what to do.
    #[error("{0}")]
    Conflict(Msg),
    #[error("{0}")]
    Unauthenticated(Msg),
    /// Too many attempts; retry after the given number of seconds.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl DomainError {
    pub fn invalid(msg: impl Into<Msg>) -> Self {
        DomainError::Invalid(msg.into())
    }

    /// The disk refused the write (full, read-only, failing), if that is what happened.
    pub fn storage_problem(&self) -> Option<StorageProblem> {
        match self {
            DomainError::Db(d) => d.storage_problem(),
            _ => None,
        }
    }

    pub fn conflict(msg: impl Into<Msg>) -> Self {
        DomainError::Conflict(msg.into())
    }

    /// What to tell a person, as a catalogue message (storage errors say only that
    /// something failed inside; the detail goes to the log).
    pub fn message(&self) -> Msg {
        match self {
            DomainError::Invalid(m)
            | DomainError::Conflict(m)
            | DomainError::Unauthenticated(m) => m.clone(),
            DomainError::NotFound => Msg::new("error.not_found"),
            DomainError::Forbidden => Msg::new("error.forbidden"),
            DomainError::RateLimited { retry_after_secs } => {
                Msg::new("error.rate_limited").with("secs", retry_after_secs)
            }
            DomainError::Db(d) => Msg::new(match d.storage_problem() {
                Some(StorageProblem::DiskFull) => "harden.storage.disk_full",
                Some(StorageProblem::ReadOnly) => "harden.storage.read_only",
                Some(StorageProblem::IoError) => "harden.storage.io_error",
                None => "error.internal",
            }),
        }
    }

    /// The stable machine code of the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Invalid(_) => "invalid",
            DomainError::NotFound => "not_found",
            DomainError::Forbidden => "forbidden",
            DomainError::Conflict(_) => "conflict",
            DomainError::Unauthenticated(_) => "unauthenticated",
            DomainError::RateLimited { .. } => "rate_limited",
            DomainError::Db(d) => d.storage_problem().map_or("internal", StorageProblem::code),
        }
    }
}

impl From<crate::model::PhoneError> for Msg {
    fn from(e: crate::model::PhoneError) -> Msg {
        use crate::model::PhoneError as P;
        Msg::new(match e {
            P::Empty => "err.phone.empty",
            P::BadCharacter => "err.phone.bad_character",
            P::WrongLength => "err.phone.wrong_length",
        })
    }
}

impl From<crate::model::money::MoneyError> for Msg {
    fn from(e: crate::model::money::MoneyError) -> Msg {
        use crate::model::money::MoneyError as M;
        Msg::new(match e {
            M::NotANumber => "err.money.not_a_number",
            M::Negative => "err.money.negative",
            M::TooLarge => "err.money.too_large",
        })
    }
}

impl crate::db::WriteError for DomainError {
    fn storage_problem(&self) -> Option<StorageProblem> {
        DomainError::storage_problem(self)
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
