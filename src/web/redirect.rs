//! The one validator for where a response sends the browser next: `next` after signing
//! in, `back` after switching the language, the referring page after revoking a token.
//! Only a same-site path passes; anything else becomes the default page.
//!
//! Browsers are lenient in ways that turn an innocent-looking path into another site:
//! they drop TAB, CR and LF anywhere in a URL (`/\t/evil.example` is `//evil.example`),
//! read `\` as `/`, and resolve `//host` as a new authority. CR, LF or DEL in a header
//! value also break the response itself. So a target must be printable ASCII without
//! spaces or backslashes, start with exactly one `/`, and carry no percent-escape of a
//! control character, a backslash or (in the path) a slash.

/// Where a refused target goes.
pub const DEFAULT_TARGET: &str = "/";
/// Longer targets are refused (they only come from crafted links).
const MAX_LEN: usize = 2048;

/// `target` when it is a safe same-site path, else [`DEFAULT_TARGET`].
pub fn safe_target(target: Option<&str>) -> &str {
    match target {
        Some(t) if is_safe(t) => t,
        _ => DEFAULT_TARGET,
    }
}

fn is_safe(t: &str) -> bool {
    let b = t.as_bytes();
    if b.is_empty() || b.len() > MAX_LEN || b[0] != b'/' {
        return false;
    }
    if b.get(1).is_some_and(|&c| c == b'/' || c == b'\\') {
        return false;
    }
    // Printable ASCII only: no controls (TAB, CR, LF, NUL), no DEL, no space, nothing
    // beyond ASCII (a real URL carries those percent-encoded), no backslash.
    if !b.iter().all(|&c| (0x21..0x7f).contains(&c) && c != b'\\') {
        return false;
    }
    let path_end = t.find(['?', '#']).unwrap_or(t.len());
    let mut i = 0;
    while let Some(off) = t[i..].find('%') {
        let at = i + off;
        let hex = t
            .get(at + 1..at + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            // A bare '%' that is not an escape: browsers keep it as is.
            None => {}
            Some(v) if v < 0x20 || v == 0x7f || v == b'\\' => return false,
            // An encoded slash, or an encoded '%' that a second decoding would turn
            // into one, in the path.
            Some(b'/' | b'%') if at < path_end => return false,
            Some(_) => {}
        }
        i = at + 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_site_paths_pass() {
        for ok in [
            "/",
            "/orders",
            "/orders?q=O%E2%80%98lmas&status=1",
            "/customers/12#calls",
            "/orders?next=%2Fx",
            "/orders?q=100%25",
            "/100%",
        ] {
            assert_eq!(safe_target(Some(ok)), ok, "{ok:?}");
        }
    }

    #[test]
    fn tricks_are_refused() {
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/\n/evil.example",
            "/\x7f",
            "/\\evil.example",
            "\\/evil.example",
            "/%09/evil.example",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%0d%0aSet-Cookie:x",
            "/%252F/evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "/ orders",
            "/заказы",
            "",
        ] {
            assert_eq!(safe_target(Some(bad)), DEFAULT_TARGET, "{bad:?}");
        }
        assert_eq!(safe_target(None), DEFAULT_TARGET);
        assert_eq!(safe_target(Some(&format!("/{}", "a".repeat(3000)))), "/");
    }

    proptest::proptest! {
        /// Whatever comes in, what goes out resolves to this site, and is a valid header
        /// value.
        #[test]
        fn never_leaves_the_site(s in "\\PC{0,40}|/[\\x00-\\x7f]{0,40}|/[\\t\\r\\n/\\\\%0-9a-fA-F.:@]{0,12}") {
            let out = safe_target(Some(&s));
            proptest::prop_assert!(out == s || out == DEFAULT_TARGET);
            let base = url::Url::parse("http://crm.test/a/b").unwrap();
            let joined = base.join(out).unwrap();
            proptest::prop_assert_eq!(joined.host_str(), Some("crm.test"));
            proptest::prop_assert!(actix_web::http::header::HeaderValue::from_str(out).is_ok());
            // What a browser does before resolving: drop TAB/CR/LF, read '\' as '/'.
            let lenient: String = out.chars().filter(|c| !matches!(c, '\t' | '\r' | '\n')).map(|c| if c == '\\' { '/' } else { c }).collect();
            let joined = base.join(&lenient).unwrap();
            proptest::prop_assert_eq!(joined.host_str(), Some("crm.test"));
        }
    }
}
