//! Stand-ins of the two SMS gateways' HTTP APIs, as their documentation describes them:
//! Eskiz (`/api/auth/login` with e-mail and password → a bearer token; form posts to
//! `/api/message/sms/send` answering `{"id", "status": "waiting"}`; 401 once the token
//! expired; `/api/user/get-limit`) and Playmobile's broker (`/broker-api/send` with basic
//! auth and `{"messages": [{"recipient", "message-id", "sms": {"originator", "content":
//! {"text"}}}]}`). The test scripts them: an expired token, a refused number, 500s.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

pub const ESKIZ_EMAIL: &str = "shop@example.uz";
pub const ESKIZ_PASSWORD: &str = "eskiz-secret-pass";
pub const PM_LOGIN: &str = "usta_servis";
pub const PM_PASSWORD: &str = "pm-secret-pass";

/// One message a gateway accepted.
#[derive(Debug, Clone)]
pub struct Sms {
    /// Digits, as the gateway takes them (998901234567).
    pub to: String,
    pub text: String,
    pub from: String,
    /// Eskiz: the id it answered; Playmobile: the client's message-id.
    pub id: String,
    pub callback: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct GatewayState {
    sent: Vec<Sms>,
    logins: usize,
    token: String,
    /// The next send is answered 401 (the token expired).
    expire_next: bool,
    /// Numbers (digits) the gateway refuses for good.
    refuse: Vec<String>,
    /// The next N sends are answered 500.
    fail_next: usize,
    /// Requests with wrong credentials.
    unauthorized: usize,
}

#[derive(Clone)]
pub struct SmsStandIn {
    state: Arc<Mutex<GatewayState>>,
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

async fn eskiz_login(
    me: web::Data<SmsStandIn>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut s = me.state.lock().unwrap();
    if get("email").as_deref() != Some(ESKIZ_EMAIL)
        || get("password").as_deref() != Some(ESKIZ_PASSWORD)
    {
        s.unauthorized += 1;
        return HttpResponse::Unauthorized()
            .json(json!({"message": "Invalid credentials", "status": "error"}));
    }
    s.logins += 1;
    s.token = format!("eyJ.token-{}", s.logins);
    HttpResponse::Ok().json(
        json!({"message": "token_generated", "data": {"token": s.token}, "token_type": "bearer"}),
    )
}

fn bearer(req: &HttpRequest) -> String {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string()
}

async fn eskiz_send(
    me: web::Data<SmsStandIn>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut s = me.state.lock().unwrap();
    if s.expire_next || bearer(&req) != s.token || s.token.is_empty() {
        s.expire_next = false;
        s.token.clear();
        return HttpResponse::Unauthorized()
            .json(json!({"status": "token-invalid", "message": "Expired"}));
    }
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return HttpResponse::InternalServerError().body("upstream down");
    }
    let to = get("mobile_phone").unwrap_or_default();
    if to.len() != 12 || !to.starts_with("998") || s.refuse.contains(&to) {
        return HttpResponse::BadRequest()
            .json(json!({"status": "error", "message": {"mobile_phone": ["Invalid phone"]}}));
    }
    let id = format!("esk-{:04}-{}", s.sent.len() + 1, &to[to.len() - 4..]);
    s.sent.push(Sms {
        to,
        text: get("message").unwrap_or_default(),
        from: get("from").unwrap_or_default(),
        id: id.clone(),
        callback: get("callback_url"),
        at: Instant::now(),
    });
    HttpResponse::Ok()
        .json(json!({"id": id, "message": "Waiting for SMS provider", "status": "waiting"}))
}

async fn eskiz_limit(me: web::Data<SmsStandIn>, req: HttpRequest) -> HttpResponse {
    let s = me.state.lock().unwrap();
    if bearer(&req) != s.token {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok()
        .json(json!({"status": "success", "data": {"balance": 99500 - 50 * s.sent.len() as i64}}))
}

async fn playmobile_send(
    me: web::Data<SmsStandIn>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PM_LOGIN}:{PM_PASSWORD}"))
    );
    let mut s = me.state.lock().unwrap();
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        s.unauthorized += 1;
        return HttpResponse::Unauthorized()
            .json(json!({"error-code": 401, "error-description": "Unauthorized"}));
    }
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return HttpResponse::InternalServerError().body("internal error");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest()
            .json(json!({"error-code": 102, "error-description": "Invalid JSON"}));
    };
    let Some(msgs) = v["messages"].as_array() else {
        return HttpResponse::BadRequest()
            .json(json!({"error-code": 104, "error-description": "messages missing"}));
    };
    for m in msgs {
        let to = m["recipient"].as_str().unwrap_or("").to_string();
        if s.refuse.contains(&to) {
            return HttpResponse::BadRequest()
                .json(json!({"error-code": 106, "error-description": "Invalid recipient"}));
        }
        s.sent.push(Sms {
            to,
            text: m["sms"]["content"]["text"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            from: m["sms"]["originator"].as_str().unwrap_or("").to_string(),
            id: m["message-id"].as_str().unwrap_or("").to_string(),
            callback: None,
            at: Instant::now(),
        });
    }
    HttpResponse::Ok().body("Request is received")
}

impl SmsStandIn {
    pub async fn start() -> SmsStandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(GatewayState::default()));
        let cell: Arc<Mutex<Option<SmsStandIn>>> = Arc::new(Mutex::new(None));
        let c2 = cell.clone();
        let server = HttpServer::new(move || {
            let me = c2.lock().unwrap().clone().expect("stand-in ready");
            App::new()
                .app_data(web::Data::new(me))
                .route("/api/auth/login", web::post().to(eskiz_login))
                .route("/api/message/sms/send", web::post().to(eskiz_send))
                .route("/api/user/get-limit", web::get().to(eskiz_limit))
                .route("/broker-api/send", web::post().to(playmobile_send))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let me = SmsStandIn {
            state,
            url: format!("http://{addr}"),
            handle: server.handle(),
        };
        *cell.lock().unwrap() = Some(me.clone());
        tokio::spawn(server);
        me
    }

    pub fn sent(&self) -> Vec<Sms> {
        self.state.lock().unwrap().sent.clone()
    }

    pub fn to(&self, digits: &str) -> Vec<Sms> {
        self.sent().into_iter().filter(|m| m.to == digits).collect()
    }

    pub fn logins(&self) -> usize {
        self.state.lock().unwrap().logins
    }

    pub fn unauthorized(&self) -> usize {
        self.state.lock().unwrap().unauthorized
    }

    pub fn expire_token(&self) {
        self.state.lock().unwrap().expire_next = true;
    }

    pub fn refuse(&self, digits: &str) {
        self.state.lock().unwrap().refuse.push(digits.to_string());
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
