//! The only place with actix, maud and rust-embed: pages, the JSON API, assets and the
//! middleware around them.

pub mod api;
pub mod assets;
pub mod auth;
pub mod csv;
pub mod error;
mod health;
pub mod hub;
pub mod layout;
mod metrics;
pub mod multipart;
mod pages;
pub mod paging;
#[cfg(test)]
mod parser_props;
pub mod ratelimit;
pub mod redirect;
pub mod routes;
mod sipws;
mod text_input;
mod ws;

use std::net::SocketAddr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::app::AppContext;
use crate::i18n::Msg;

pub use metrics::Metrics;

/// Shared by every worker.
pub struct WebState {
    pub ctx: AppContext,
    /// The first-run token, while no user exists.
    pub setup_token: Option<String>,
    pub routes: routes::RouteTable,
    pub metrics: Metrics,
    pub assets: assets::AssetIndex,
    pub hub: hub::Hub,
    /// Request limits of `/api/*`.
    pub api_limits: ratelimit::ApiLimits,
    /// Request limits of the chat widget's visitors.
    pub widget: pages::widget::Limits,
}

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// One log line per request: no query string (it may carry tokens), no headers.
async fn log_and_measure(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    let pattern = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let state = req.app_data::<web::Data<WebState>>().cloned();
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let elapsed = started.elapsed();
    if let Some(s) = state {
        s.metrics
            .observe(method.as_str(), &pattern, status, elapsed.as_secs_f64());
    }
    tracing::info!(
        target: "http",
        method = %method,
        path = %path.escape_debug(),
        status,
        ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1000.0),
        "request"
    );
    res
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    error::for_request(
        &req,
        StatusCode::NOT_FOUND,
        "not_found",
        Msg::new("error.not_found"),
    )
}

/// A body, path or query the extractors could not read. The parser's own words (which
/// field, where) stay as the detail inside a translated sentence.
fn bad_request(
    req: &HttpRequest,
    err: impl std::fmt::Display,
    status: StatusCode,
) -> actix_web::Error {
    let key = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "error.too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "error.media_type",
        StatusCode::NOT_FOUND => "error.not_found",
        _ => "error.bad_request",
    };
    let resp = error::for_request(
        req,
        status,
        "bad_request",
        Msg::new(key).with("detail", &err),
    );
    actix_web::error::InternalError::from_response(err.to_string(), resp).into()
}

/// Configures an actix app: middleware, extractor limits and error shapes, all routes.
pub fn configure(state: web::Data<WebState>) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        let limit = state.ctx.config.max_body_bytes;
        cfg.app_data(state.clone())
            .app_data(web::PayloadConfig::new(limit))
            .app_data(
                web::FormConfig::default()
                    .limit(limit)
                    .error_handler(|e, req| {
                        let status = match &e {
                            actix_web::error::UrlencodedError::Overflow { .. } => {
                                StatusCode::PAYLOAD_TOO_LARGE
                            }
                            _ => StatusCode::BAD_REQUEST,
                        };
                        bad_request(req, e, status)
                    }),
            )
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .error_handler(|e, req| {
                        let status = match &e {
                            actix_web::error::JsonPayloadError::Overflow { .. }
                            | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                                StatusCode::PAYLOAD_TOO_LARGE
                            }
                            actix_web::error::JsonPayloadError::ContentType => {
                                StatusCode::UNSUPPORTED_MEDIA_TYPE
                            }
                            _ => StatusCode::BAD_REQUEST,
                        };
                        bad_request(req, e, status)
                    }),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, req| bad_request(req, e, StatusCode::NOT_FOUND)),
            )
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, req| bad_request(req, e, StatusCode::BAD_REQUEST)),
            );
        let mut reg = routes::ActixRegistrar::default();
        routes::define(&mut reg);
        reg.finish(cfg);
    }
}

pub fn state(ctx: AppContext, setup_token: Option<String>) -> web::Data<WebState> {
    let metrics = Metrics::with_config(ctx.db.clone(), &ctx.config);
    let hub = hub::Hub::start_with(&ctx.events, Some(ctx.accounts.clone()));
    let api_limits = ratelimit::ApiLimits::new(&ctx.config.api_limits);
    web::Data::new(WebState {
        ctx,
        setup_token,
        routes: routes::RouteTable::build(),
        metrics,
        assets: assets::AssetIndex::build(),
        api_limits,
        hub,
        widget: pages::widget::Limits::new(),
    })
}

/// A bound, not yet polled, HTTP server.
pub struct Bound {
    pub server: Server,
    pub addr: SocketAddr,
    pub hub: hub::Hub,
}

/// Binds the HTTP listener.
pub fn bind(ctx: AppContext, setup_token: Option<String>) -> anyhow::Result<Bound> {
    let config = ctx.config.clone();
    let state = state(ctx, setup_token);
    let hub = state.hub.clone();
    let factory = {
        let state = state.clone();
        move || {
            App::new()
                // Innermost: a request is signed in and allowed before its text is read.
                .wrap(from_fn(text_input::require_utf8))
                .wrap(from_fn(error::translate_api_errors))
                .wrap(from_fn(auth::authorize))
                .wrap(
                    DefaultHeaders::new()
                        .add(("Content-Security-Policy", CSP))
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("X-Frame-Options", "DENY"))
                        .add(("Referrer-Policy", "same-origin"))
                        .add((
                            "Permissions-Policy",
                            "camera=(self), geolocation=(), microphone=(self)",
                        )),
                )
                .wrap(from_fn(log_and_measure))
                .configure(configure(state.clone()))
                .default_service(web::to(not_found))
        }
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let server = HttpServer::new(factory)
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(10);
    let server = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => server.bind_rustls_0_23(config.http, tls_config(cert, key)?)?,
        _ => server.bind(config.http)?,
    };
    let addr = *server
        .addrs()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no HTTP listener bound"))?;
    Ok(Bound {
        server: server.run(),
        addr,
        hub,
    })
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
    };
    let certs =
        rustls_pemfile::certs(&mut read(cert)?.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())?
        .ok_or_else(|| anyhow::anyhow!("no private key in {}", key.display()))?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Ok(rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}
