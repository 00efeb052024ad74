//! Who is asking, and may they: resolves the session cookie or API token, enforces the
//! route table's permission, and checks CSRF on every state-changing browser request.

use std::future::{ready, Ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};

use super::routes::Access;
use super::WebState;
use crate::domain::Actor;
use crate::i18n::{Msg, Tr};
use crate::model::Language;

pub const SESSION_COOKIE: &str = "crm_session";
/// Double-submit CSRF cookie for forms shown before sign-in (login, setup).
pub const PRE_COOKIE: &str = "crm_pre";
pub const LANG_COOKIE: &str = "crm_lang";
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Session,
    Token,
}

/// The resolved identity, stored in the request's extensions.
#[derive(Debug, Clone)]
pub struct Identity {
    pub actor: Actor,
    pub csrf: String,
    pub via: Via,
}

fn bearer(req: &ServiceRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split('/').next().unwrap_or(rest))
}

fn unauthorized(req: ServiceRequest, api: bool, tr: Tr) -> ServiceResponse<BoxBody> {
    let resp = if api {
        super::error::json_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            super::error::api_tr(req.request()).t("error.api_signin"),
        )
    } else if req.method() == Method::GET {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let target = format!(
            "/login?next={}",
            serde_urlencoded::to_string([("n", next)])
                .unwrap_or_default()
                .trim_start_matches("n=")
        );
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, target))
            .finish()
    } else {
        super::error::error_page(StatusCode::UNAUTHORIZED, tr.t("error.signin_required"), tr)
    };
    req.into_response(resp)
}

/// 429 with Retry-After, in the API's error shape.
fn too_many(req: ServiceRequest, secs: u64) -> ServiceResponse<BoxBody> {
    // The API's language: Accept-Language, English without one.
    let tr = super::error::api_tr(req.request());
    let mut resp = super::error::json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        tr.msg(&Msg::new("harden.rate_limited").with("seconds", secs)),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    req.into_response(resp)
}

fn refuse(
    req: ServiceRequest,
    status: StatusCode,
    code: &str,
    msg: &'static str,
) -> ServiceResponse<BoxBody> {
    let resp = super::error::for_request(req.request(), status, code, Msg::new(msg));
    req.into_response(resp)
}

/// The authorization middleware. Routes not in the table (unknown paths) fall through to
/// actix's 404/405.
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<WebState>>()
        .expect("WebState registered")
        .clone();
    let access = req
        .match_pattern()
        .and_then(|p| state.routes.lookup(req.method(), &p));
    let Some(access) = access else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // Machine endpoints answer 401 rather than redirecting to the sign-in page, and take
    // API tokens.
    let api = req.path().starts_with("/api/") || req.path() == "/ws";
    let limited_api = req.path().starts_with("/api/");

    // The API's limit per client address comes first: it also bounds guessing tokens.
    if limited_api {
        let ip = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        if let Err(secs) = state.api_limits.per_address.take(ip.as_bytes()) {
            return Ok(too_many(req, secs));
        }
    }

    // Identity: an API token on machine endpoints, otherwise the session cookie.
    let mut identity = None;
    if api {
        if let Some(tok) = bearer(&req) {
            if limited_api {
                let key = crate::domain::accounts::token_hash(&tok);
                if let Err(secs) = state.api_limits.per_token.take(&key) {
                    return Ok(too_many(req, secs));
                }
            }
            match state.ctx.accounts.actor_for_token(&tok).await {
                Ok(Some(actor)) => {
                    identity = Some(Identity {
                        actor,
                        csrf: String::new(),
                        via: Via::Token,
                    })
                }
                Ok(None) => {
                    return Ok(refuse(
                        req,
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "error.bad_token",
                    ))
                }
                Err(e) => return Err(super::error::ApiError::from(e).into()),
            }
        }
    }
    if identity.is_none() {
        if let Some(c) = req.cookie(SESSION_COOKIE) {
            match state.ctx.accounts.session(c.value()).await {
                Ok(Some(s)) => {
                    identity = Some(Identity {
                        actor: s.actor,
                        csrf: s.csrf_token,
                        via: Via::Session,
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(super::error::ApiError::from(e).into()),
            }
        }
    }
    let tr = Tr::new(
        identity
            .as_ref()
            .map(|i| i.actor.language)
            .unwrap_or_else(|| anonymous_language(req.request())),
    );

    if let Access::Allowed(action) = access {
        match &identity {
            None => return Ok(unauthorized(req, api, tr)),
            Some(i) if !i.actor.can(action) => {
                return Ok(refuse(
                    req,
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "error.forbidden",
                ))
            }
            Some(_) => {}
        }
    }

    let mut req = req;
    // The chat widget's visitors have no session to forge a request in; its routes check
    // the Origin against the sites the admin allowed (web/pages/widget.rs).
    let widget = access == Access::Public && req.path().starts_with("/widget/");
    // SMS gateways calling back (delivery reports, replies) and the e-mail unsubscribe
    // link have no session either: a secret key or a signature in the URL is their
    // credential, checked by the domain; a forged request would need it.
    let signed = access == Access::Public
        && (req.path().starts_with("/hooks/") || req.path() == "/unsubscribe");
    let widget = widget || signed;
    if is_unsafe(req.method()) && identity.as_ref().map(|i| i.via) != Some(Via::Token) && !widget {
        // A browser request: the Origin (when sent) must be this host, and the CSRF token
        // must match the session's (or, before sign-in, the pre-session cookie).
        let foreign_origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|origin| host_of(origin) != Some(req.connection_info().host()));
        if foreign_origin {
            return Ok(refuse(req, StatusCode::FORBIDDEN, "csrf", "error.csrf"));
        }
        let expected = match &identity {
            Some(i) => Some(i.csrf.clone()),
            None => req.cookie(PRE_COOKIE).map(|c| c.value().to_string()),
        };
        let (checked, provided) = match csrf_token_of(req).await {
            Ok(v) => v,
            Err(resp) => return Ok(resp),
        };
        req = checked;
        let ok = matches!((&expected, &provided), (Some(e), Some(p)) if !e.is_empty() && constant_eq(e, p));
        if !ok {
            return Ok(refuse(req, StatusCode::FORBIDDEN, "csrf", "error.csrf"));
        }
    }

    if let Some(i) = identity {
        req.extensions_mut().insert(i);
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Finds the CSRF token in the header, the query, or a urlencoded body (which is read and
/// put back for the handler).
async fn csrf_token_of(
    req: ServiceRequest,
) -> Result<(ServiceRequest, Option<String>), ServiceResponse<BoxBody>> {
    if let Some(v) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        let v = v.to_string();
        return Ok((req, Some(v)));
    }
    let from_query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|q| {
            q.iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v.clone())
        });
    if from_query.is_some() {
        return Ok((req, from_query));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((req, None));
    }
    let (hreq, mut payload) = req.into_parts();
    // Bounded by the app's PayloadConfig (max_body_bytes).
    let bytes = match web::Bytes::from_request(&hreq, &mut payload).await {
        Ok(b) => b,
        Err(e) => {
            let resp = super::error::for_request(
                &hreq,
                e.as_response_error().status_code(),
                "bad_body",
                Msg::new("error.bad_request").with("detail", &e),
            );
            return Err(ServiceResponse::new(hreq, resp));
        }
    };
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|v| v.into_iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v));
    let req = ServiceRequest::from_parts(hreq, Payload::from(bytes));
    Ok((req, token))
}

/// The language for a visitor who is not signed in: cookie, then Accept-Language.
pub fn anonymous_language(req: &HttpRequest) -> Language {
    req.cookie(LANG_COOKIE)
        .and_then(|c| Language::from_code(c.value()))
        .or_else(|| {
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Language::from_accept_language)
        })
        .unwrap_or_default()
}

/// The translator for a request: the signed-in user's language, else the visitor's.
pub fn request_tr(req: &HttpRequest) -> Tr {
    // The extensions borrow must end before reading cookies (which borrow them mutably).
    let signed_in = req.extensions().get::<Identity>().map(|i| i.actor.language);
    Tr::new(signed_in.unwrap_or_else(|| anonymous_language(req)))
}

impl FromRequest for Actor {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let actor = req.extensions().get::<Identity>().map(|i| i.actor.clone());
        ready(actor.ok_or_else(|| {
            actix_web::error::InternalError::from_response(
                "unauthenticated",
                super::error::for_request(
                    req,
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    Msg::new("error.signin_required"),
                ),
            )
            .into()
        }))
    }
}

/// What every page needs to render the shell: translator, the user (if any), the CSRF
/// token for forms, and the current path.
#[derive(Clone)]
pub struct Ui {
    pub tr: Tr,
    pub actor: Option<Actor>,
    pub csrf: String,
    pub path: String,
    pub state: web::Data<WebState>,
}

impl Ui {
    pub fn t(&self, key: &'static str) -> &'static str {
        self.tr.t(key)
    }

    /// A domain message in this user's language.
    pub fn msg(&self, m: &crate::i18n::Msg) -> String {
        self.tr.msg(m)
    }

    /// The shop clock (time zone setting) as it is now.
    pub fn clock(&self) -> crate::domain::clock::ShopClock {
        self.state.ctx.clock.get()
    }

    /// `dd.mm.yyyy HH:MM` in shop time.
    pub fn datetime(&self, ts: i64) -> String {
        self.clock().format_datetime(ts)
    }
}

impl FromRequest for Ui {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ident = req.extensions().get::<Identity>().cloned();
        let state = req
            .app_data::<web::Data<WebState>>()
            .expect("WebState registered")
            .clone();
        let csrf = match &ident {
            Some(i) => i.csrf.clone(),
            None => req
                .cookie(PRE_COOKIE)
                .map(|c| c.value().to_string())
                .unwrap_or_default(),
        };
        ready(Ok(Ui {
            tr: request_tr(req),
            actor: ident.map(|i| i.actor),
            csrf,
            path: req.path().to_string(),
            state,
        }))
    }
}

pub fn session_cookie(token: &str, secure: bool, max_age_hours: u64) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::hours(
            max_age_hours as i64,
        ))
        .finish()
}

pub fn clear_cookie(name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path("/").finish();
    c.make_removal();
    c
}

pub fn pre_cookie(value: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(PRE_COOKIE, value.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish()
}

pub fn lang_cookie(lang: Language, secure: bool) -> Cookie<'static> {
    Cookie::build(LANG_COOKIE, lang.code().to_string())
        .path("/")
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::days(365))
        .finish()
}
