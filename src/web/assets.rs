//! Static files compiled into the binary, served under content-hashed URLs with
//! immutable caching. Nothing is loaded from a CDN.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use super::WebState;

#[derive(RustEmbed)]
#[folder = "assets/"]
#[exclude = "*.md"]
// The PDF fonts are compiled in by `crate::pdf`; pages do not use them.
#[exclude = "fonts/*"]
struct Files;

/// Content hash of every embedded file, computed once at start.
pub struct AssetIndex {
    hashes: HashMap<String, String>,
}

impl AssetIndex {
    pub fn build() -> AssetIndex {
        let hashes = Files::iter()
            .filter_map(|name| {
                let f = Files::get(&name)?;
                let h = hex::encode(&Sha256::digest(&f.data)[..5]);
                Some((name.to_string(), h))
            })
            .collect();
        AssetIndex { hashes }
    }

    /// The URL of an asset, e.g. `url("css/app.css")` → `/assets/1a2b3c4d5e/css/app.css`.
    pub fn url(&self, path: &str) -> String {
        let h = self.hashes.get(path).map(String::as_str).unwrap_or("0");
        format!("/assets/{h}/{path}")
    }
}

/// The same index for pages drawn without the server's state (error pages, a used setup
/// link): they are styled like every other page. Built once, from the same embedded files.
pub fn global() -> &'static AssetIndex {
    static INDEX: std::sync::OnceLock<AssetIndex> = std::sync::OnceLock::new();
    INDEX.get_or_init(AssetIndex::build)
}

fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    match mime.type_() {
        mime_guess::mime::TEXT | mime_guess::mime::APPLICATION
            if mime.subtype() != mime_guess::mime::OCTET_STREAM =>
        {
            if mime.get_param("charset").is_none()
                && (mime.type_() == mime_guess::mime::TEXT
                    || mime.subtype() == mime_guess::mime::JAVASCRIPT
                    || mime.subtype() == mime_guess::mime::JSON)
            {
                format!("{mime}; charset=utf-8")
            } else {
                mime.to_string()
            }
        }
        _ if path.ends_with(".svg") => "image/svg+xml".into(),
        _ => mime.to_string(),
    }
}

pub async fn serve(
    req: HttpRequest,
    state: web::Data<WebState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (hash, file) = path.into_inner();
    if file.contains("..") || file.contains('\\') || file.starts_with('/') || file.contains('\0') {
        return super::error::for_request(
            &req,
            actix_web::http::StatusCode::BAD_REQUEST,
            "bad_path",
            crate::i18n::Msg::new("error.bad_asset"),
        );
    }
    let Some(f) = Files::get(&file) else {
        return super::error::for_request(
            &req,
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            crate::i18n::Msg::new("error.not_found"),
        );
    };
    let current = state.assets.hashes.get(&file).map(String::as_str);
    // A page rendered before an upgrade may ask for an old hash: serve the current file,
    // but do not let it be cached as if it were the old one.
    let cache = if current == Some(hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type(&file)))
        .insert_header((header::CACHE_CONTROL, cache))
        .body(f.data.into_owned())
}

pub async fn favicon(state: web::Data<WebState>) -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, state.assets.url("icons/favicon.svg")))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("css/app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("icons/favicon.svg"), "image/svg+xml");
    }
}
