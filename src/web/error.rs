//! Turning errors into responses: one JSON shape for the API, a page for browsers.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::{DomainError, StorageProblem};
use crate::i18n::{Msg, Tr};
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

pub(crate) fn domain_status(e: &DomainError) -> StatusCode {
    // A write the disk refused (full, read-only, failing): nothing of it was saved, and
    // what was saved before is safe; the message says which (DomainError::message).
    match e.storage_problem() {
        Some(StorageProblem::DiskFull) => return StatusCode::INSUFFICIENT_STORAGE,
        Some(StorageProblem::ReadOnly | StorageProblem::IoError) => {
            return StatusCode::SERVICE_UNAVAILABLE
        }
        None => {}
    }
    match e {
        DomainError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::NotFound => StatusCode::NOT_FOUND,
        DomainError::Forbidden => StatusCode::FORBIDDEN,
        DomainError::Conflict(_) => StatusCode::CONFLICT,
        DomainError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        DomainError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        DomainError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The language of an API client: its `Accept-Language`, English without one (a script
/// should not get another language because of a cookie).
pub fn api_tr(req: &HttpRequest) -> Tr {
    Tr::new(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(Language::from_accept_language)
            .unwrap_or(Language::En),
    )
}

/// Error of an API handler. Rendered in English here; `translate_api_errors` renders it
/// again in the request's language, since a `ResponseError` does not see the request.
#[derive(Debug)]
pub struct ApiError {
    pub err: DomainError,
    /// A malformed query (a list filter): 400 `bad_request` rather than 422.
    bad_query: bool,
}

impl ApiError {
    /// A refusal of the query string's values.
    pub fn bad_query(err: DomainError) -> ApiError {
        ApiError {
            bad_query: matches!(err, DomainError::Invalid(_)),
            err,
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        if self.bad_query {
            (StatusCode::BAD_REQUEST, "bad_request")
        } else {
            (domain_status(&self.err), self.err.code())
        }
    }

    /// The response in `tr`'s language.
    pub fn render(&self, tr: Tr) -> HttpResponse {
        let (status, code) = self.status_and_code();
        if let DomainError::Db(e) = &self.err {
            tracing::error!(error = %e, "storage error");
        }
        let mut resp = json_error(status, code, tr.msg(&self.err.message()));
        if let DomainError::RateLimited { retry_after_secs } = self.err {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
        }
        resp
    }
}

impl<E: Into<DomainError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError {
            err: e.into(),
            bad_query: false,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.err.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }
    fn error_response(&self) -> HttpResponse {
        self.render(Tr::new(Language::En))
    }
}

/// Middleware: an API handler's error is answered in the client's language.
pub async fn translate_api_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let api = req.path().starts_with("/api/");
    let res = next.call(req).await?.map_into_boxed_body();
    if !api {
        return Ok(res);
    }
    let Some(e) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
    else {
        return Ok(res);
    };
    let tr = api_tr(res.request());
    if tr.lang == Language::En {
        return Ok(res);
    }
    let resp = e.render(tr);
    Ok(res.into_response(resp))
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
        domain_status(&self.err)
    }
    fn error_response(&self) -> HttpResponse {
        if let DomainError::Db(e) = &self.err {
            tracing::error!(error = %e, "storage error");
        }
        error_page(
            domain_status(&self.err),
            &self.tr.msg(&self.err.message()),
            self.tr,
        )
    }
}

pub fn error_page(status: StatusCode, message: &str, tr: Tr) -> HttpResponse {
    let body = super::layout::bare(
        tr,
        tr.t("error.title"),
        maud::html! {
            main.narrow.card.error-page {
                p.error-code { (status.as_u16()) }
                h1 { (tr.t("error.title")) }
                p.error-message { (message) }
                p { a.button.primary href="/" { (tr.t("error.back_home")) } }
            }
        },
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body.into_string())
}

/// Chooses the error form by the request path: JSON in the client's language for the
/// API, a page in the visitor's language otherwise.
pub fn for_request(
    req: &HttpRequest,
    status: StatusCode,
    code: &str,
    message: Msg,
) -> HttpResponse {
    if req.path().starts_with("/api/") {
        json_error(status, code, api_tr(req).msg(&message))
    } else {
        let tr = super::auth::request_tr(req);
        error_page(status, &tr.msg(&message), tr)
    }
}
