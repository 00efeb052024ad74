//! Text that arrives percent-encoded (query strings and urlencoded forms) must be UTF-8.
//! The form and query extractors decode it lossily, so bytes that are not UTF-8 would
//! become U+FFFD and be stored as if the user had typed them. This middleware refuses
//! such a request once, before any handler, with the catalogue's message naming the
//! field, and hands a good form's body on untouched.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use futures_util::StreamExt;

use crate::i18n::Msg;

/// The first field (its name, as far as it decodes) whose name or value is not UTF-8
/// once percent-decoded; `None` when every one is.
pub fn first_bad_field(encoded: &[u8]) -> Option<String> {
    for pair in encoded.split(|b| *b == b'&') {
        let mut kv = pair.splitn(2, |b| *b == b'=');
        let key = decode(kv.next().unwrap_or_default());
        let value = decode(kv.next().unwrap_or_default());
        if std::str::from_utf8(&key).is_err() || std::str::from_utf8(&value).is_err() {
            return Some(String::from_utf8_lossy(&key).chars().take(40).collect());
        }
    }
    None
}

/// Percent-decoding as forms do it (`+` is a space); a stray `%` stays as it is.
fn decode(raw: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus).collect()
}

fn is_form(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

pub async fn require_utf8(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refuse = |req: ServiceRequest, field: String| {
        let resp = super::error::for_request(
            req.request(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            Msg::new("error.not_utf8").with("field", &field),
        );
        Ok(req.into_response(resp).map_into_right_body())
    };
    if let Some(field) = first_bad_field(req.query_string().as_bytes()) {
        return refuse(req, field);
    }
    if is_form(&req) {
        let limit = req
            .app_data::<actix_web::web::Data<super::WebState>>()
            .map(|s| s.ctx.config.max_body_bytes)
            .unwrap_or(1 << 20);
        let mut payload = req.take_payload();
        let mut body = actix_web::web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > limit {
                // Past the limit the form extractor answers 413 itself: hand it on
                // with what was read and the rest unread is never needed.
                body.extend_from_slice(&chunk);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if let Some(field) = first_bad_field(&body) {
            return refuse(req, field);
        }
        req.set_payload(Payload::from(body.freeze()));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::first_bad_field;

    #[test]
    fn finds_the_field_that_is_not_utf8() {
        assert_eq!(first_bad_field(b"a=1&b=%D0%94%D0%B8"), None);
        assert_eq!(first_bad_field(b"q=Dilnoza+%E2%80%94"), None);
        assert_eq!(first_bad_field(b"a=1&code=%FF%FE12"), Some("code".into()));
        assert_eq!(first_bad_field(b"%C0=1"), Some("\u{FFFD}".into()));
        assert_eq!(
            first_bad_field(b"x=%"),
            None,
            "a stray % is left to the parser"
        );
        assert_eq!(
            first_bad_field(b"x=\xff"),
            Some("x".into()),
            "raw bytes too"
        );
        assert_eq!(first_bad_field(b""), None);
    }
}
