use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::WebState;

/// 200 with a small JSON body when the database answers and takes writes; 503 with
/// `"status": "degraded"` and the reason while writes fail for a storage reason (disk
/// full, read-only, I/O errors: reads still work), 503 `"unavailable"` when it does not
/// answer.
pub async fn healthz(state: web::Data<WebState>) -> HttpResponse {
    match state.ctx.db.ping().await {
        Ok(()) => match state.ctx.db.probe_storage().await {
            None => HttpResponse::Ok().json(serde_json::json!({
                "status": "ok",
                "version": crate::VERSION,
                "schema": crate::db::binary_schema_version(),
            })),
            Some((problem, since)) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "degraded",
                "problem": problem.code(),
                "reason": problem.describe(),
                "since": since,
                "version": crate::VERSION,
                "schema": crate::db::binary_schema_version(),
            })),
        },
        Err(e) => {
            tracing::error!(error = %e, "health check: database does not answer");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "unavailable",
                "version": crate::VERSION,
            }))
        }
    }
}

/// Prometheus text. When `metrics_token` is configured it must be sent as a bearer token.
pub async fn metrics(req: HttpRequest, state: web::Data<WebState>) -> HttpResponse {
    if let Some(expected) = &state.ctx.config.metrics_token {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if sent != Some(expected.as_str()) {
            return super::error::json_error(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "metrics need the configured bearer token",
            );
        }
    }
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(state.metrics.render())
}

/// GET /tls/ca.crt: the certificate of the box's local CA (`crm tls init`), for staff to
/// install on their devices (public: it is a public certificate, and a device needs it
/// before it can trust the box). DER with the type Windows and Android open as a
/// certificate to install; 404 without a local CA.
pub async fn ca_certificate(state: web::Data<WebState>) -> HttpResponse {
    let der = crate::ops::tls::ca_pem(&state.ctx.config.data_dir).and_then(|pem| {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .and_then(Result::ok)
    });
    match der {
        Some(d) => HttpResponse::Ok()
            .content_type("application/x-x509-ca-cert")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"crm-local-ca.crt\"",
            ))
            .body(d.as_ref().to_vec()),
        None => HttpResponse::NotFound().finish(),
    }
}
