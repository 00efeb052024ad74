//! Turning errors into responses: one JSON shape for the API, a page for browsers.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::{DomainError, StorageProblem};
use crate::i18n::Tr;
use crate::model::Language;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid`, `conflict`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

pub fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
        },
    })
}

/// A write the disk refused (full, read-only, failing): the status, the stable code and
/// the catalogue key of what to tell the person. Nothing of the write was saved, and what
/// was saved before is safe.
pub fn storage_failure(e: &DomainError) -> Option<(StatusCode, &'static str, &'static str)> {
    Some(match e.storage_problem()? {
        StorageProblem::DiskFull => (
            StatusCode::INSUFFICIENT_STORAGE,
            "disk_full",
            "harden.storage.disk_full",
        ),
        StorageProblem::ReadOnly => (
            StatusCode::SERVICE_UNAVAILABLE,
            "read_only",
            "harden.storage.read_only",
        ),
        StorageProblem::IoError => (
            StatusCode::SERVICE_UNAVAILABLE,
            "io_error",
            "harden.storage.io_error",
        ),
    })
}

fn domain_status(e: &DomainError) -> (StatusCode, &'static str) {
    if let Some((status, code, _)) = storage_failure(e) {
        return (status, code);
    }
    match e {
        DomainError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        DomainError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        DomainError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        DomainError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        DomainError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        DomainError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        DomainError::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// Error of an API handler.
#[derive(Debug)]
pub struct ApiError(pub DomainError);

impl<E: Into<DomainError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        domain_status(&self.0).0
    }
    fn error_response(&self) -> HttpResponse {
        let (status, code) = domain_status(&self.0);
        let message = match &self.0 {
            e if storage_failure(e).is_some() => {
                tracing::error!(error = %e, "write refused by the disk");
                let key = storage_failure(e).map(|f| f.2).unwrap_or("error.internal");
                Tr::new(Language::En).t(key).to_string()
            }
            DomainError::Db(e) => {
                tracing::error!(error = %e, "storage error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = json_error(status, code, message);
        if let DomainError::RateLimited { retry_after_secs } = self.0 {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
        }
        resp
    }
}

/// Error of a page handler: a small page in the user's language.
#[derive(Debug)]
pub struct PageError {
    pub err: DomainError,
    pub tr: Tr,
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.err.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        domain_status(&self.err).0
    }
    fn error_response(&self) -> HttpResponse {
        let (status, _) = domain_status(&self.err);
        let message = match &self.err {
            e if storage_failure(e).is_some() => {
                tracing::error!(error = %e, "write refused by the disk");
                let key = storage_failure(e).map(|f| f.2).unwrap_or("error.internal");
                self.tr.t(key).to_string()
            }
            DomainError::Db(e) => {
                tracing::error!(error = %e, "storage error");
                self.tr.t("error.internal").to_string()
            }
            DomainError::NotFound => self.tr.t("error.not_found").to_string(),
            DomainError::Forbidden => self.tr.t("error.forbidden").to_string(),
            other => other.to_string(),
        };
        error_page(status, &message, self.tr)
    }
}

pub fn error_page(status: StatusCode, message: &str, tr: Tr) -> HttpResponse {
    let body = super::layout::bare(
        tr,
        tr.t("error.title"),
        maud::html! {
            main.narrow {
                h1 { (status.as_u16()) " · " (tr.t("error.title")) }
                p.error-message { (message) }
                p { a href="/" { (tr.t("error.back_home")) } }
            }
        },
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body.into_string())
}

/// Chooses the error form by the request path.
pub fn for_request(
    req: &HttpRequest,
    status: StatusCode,
    code: &str,
    message: &str,
) -> HttpResponse {
    if req.path().starts_with("/api/") {
        json_error(status, code, message)
    } else {
        let tr = super::auth::request_tr(req);
        error_page(status, message, tr)
    }
}
