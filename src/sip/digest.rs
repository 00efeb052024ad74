//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616 / RFC 8760): MD5 and
//! SHA-256 with `qop=auth`, self-validating nonces that expire (answered `stale=true`),
//! and nonce-count replay protection.

use std::collections::HashMap;
use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of the hash of `parts` joined by ':'.
    pub fn hash(self, parts: &[&str]) -> String {
        fn feed<D: sha2::Digest>(mut d: D, parts: &[&str]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            let out = d.finalize();
            let mut s = String::with_capacity(out.len() * 2);
            for b in out {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        match self {
            Algorithm::Md5 => feed(Md5::new(), parts),
            Algorithm::Sha256 => feed(Sha256::new(), parts),
        }
    }
}

/// The `response` value for qop=auth (RFC 7616 §3.4.1).
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
) -> String {
    let ha1 = alg.hash(&[user, realm, password]);
    let ha2 = alg.hash(&[method, uri]);
    alg.hash(&[&ha1, nonce, nc, cnonce, qop, &ha2])
}

/// Parsed `Authorization` / `Proxy-Authorization` credentials.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: String,
    pub nc: String,
    pub qop: String,
}

impl Credentials {
    pub fn parse(v: &str) -> Option<Credentials> {
        let mut c = Credentials::default();
        for item in digest_params(v)? {
            // An item without '=' makes the whole header unreadable.
            let (k, val) = item?;
            match k.as_str() {
                "username" => c.username = val,
                "realm" => c.realm = val,
                "nonce" => c.nonce = val,
                "uri" => c.uri = val,
                "response" => c.response = val,
                "algorithm" => c.algorithm = Some(val),
                "cnonce" => c.cnonce = val,
                "nc" => c.nc = val,
                "qop" => c.qop = val,
                _ => {}
            }
        }
        if c.username.is_empty() || c.nonce.is_empty() || c.response.is_empty() {
            return None;
        }
        Some(c)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Well-formed answer to a nonce that has expired (or was forgotten): re-challenge
    /// with stale=true, not an authentication failure.
    Stale,
    /// The right answer, but with a nonce-count already used: a copy of an accepted
    /// request (a UDP resend whose reply was lost, or a captured packet). Refused, yet not
    /// a password guess, so it must not count toward a ban.
    Replay,
    /// Wrong password, forged nonce, wrong realm: a failure.
    Failed,
}

/// Issues and checks nonces. A nonce is `issued-seconds . sequence . mac` in hex, the MAC
/// keyed by a random per-process key, so nothing needs storing until a nonce is used;
/// used nonces remember their highest nonce-count for replay protection.
pub struct NonceBook {
    key: [u8; 32],
    seq: u64,
    ttl_secs: u64,
    max_tracked: usize,
    /// sequence -> highest nc seen
    used: HashMap<u64, (u32, u64)>,
}

impl NonceBook {
    pub fn new(key: [u8; 32], ttl_secs: u64, max_tracked: usize) -> NonceBook {
        NonceBook {
            key,
            seq: 0,
            ttl_secs,
            max_tracked,
            used: HashMap::new(),
        }
    }

    fn mac(&self, issued: u64, seq: u64) -> u64 {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(issued.to_be_bytes());
        h.update(seq.to_be_bytes());
        let d = h.finalize();
        u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
    }

    pub fn issue(&mut self, now_secs: u64) -> String {
        self.seq += 1;
        format!(
            "{now_secs:x}.{:x}.{:016x}",
            self.seq,
            self.mac(now_secs, self.seq)
        )
    }

    /// (issued, sequence) of an authentic nonce of ours.
    fn open(&self, nonce: &str) -> Option<(u64, u64)> {
        let mut it = nonce.split('.');
        let issued = u64::from_str_radix(it.next()?, 16).ok()?;
        let seq = u64::from_str_radix(it.next()?, 16).ok()?;
        let mac = u64::from_str_radix(it.next()?, 16).ok()?;
        if it.next().is_some() || mac != self.mac(issued, seq) {
            return None;
        }
        Some((issued, seq))
    }

    /// Checks credentials against the password for `method`.
    pub fn verify(
        &mut self,
        c: &Credentials,
        realm: &str,
        method: &str,
        password: &str,
        now_secs: u64,
    ) -> Verdict {
        let alg = match c.algorithm.as_deref() {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(a) => a,
                None => return Verdict::Failed,
            },
        };
        if c.realm != realm || !c.qop.eq_ignore_ascii_case("auth") || c.cnonce.is_empty() {
            return Verdict::Failed;
        }
        let Ok(nc) = u32::from_str_radix(&c.nc, 16) else {
            return Verdict::Failed;
        };
        let Some((issued, seq)) = self.open(&c.nonce) else {
            return Verdict::Failed;
        };
        let expected = response(
            alg,
            &c.username,
            realm,
            password,
            method,
            &c.uri,
            &c.nonce,
            &c.nc,
            &c.cnonce,
            &c.qop,
        );
        if !constant_time_eq(
            expected.as_bytes(),
            c.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Verdict::Failed;
        }
        if now_secs > issued + self.ttl_secs {
            return Verdict::Stale;
        }
        let full = self.used.len() >= self.max_tracked;
        match self.used.get_mut(&seq) {
            Some((last, _)) if nc <= *last => Verdict::Replay,
            Some((last, _)) => {
                *last = nc;
                Verdict::Ok
            }
            None if full => Verdict::Stale,
            None => {
                self.used.insert(seq, (nc, issued));
                Verdict::Ok
            }
        }
    }

    /// Forgets nonces past their lifetime.
    pub fn sweep(&mut self, now_secs: u64) {
        let ttl = self.ttl_secs;
        self.used.retain(|_, (_, issued)| *issued + ttl >= now_secs);
    }

    pub fn tracked(&self) -> usize {
        self.used.len()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A `WWW-Authenticate`/`Proxy-Authenticate` value.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm={}",
        alg.name()
    );
    if stale {
        s.push_str(", stale=true");
    }
    s
}

/// The parameters of a `Digest ...` header (credentials or a challenge): None for another
/// scheme; per comma-separated item, the lower-case name and the unquoted value, or None
/// for an item without '='. The one parser of both directions.
fn digest_params(v: &str) -> Option<Vec<Option<(String, String)>>> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(|c: char| c.is_whitespace())?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    Some(
        super::message::split_commas(rest)
            .into_iter()
            .map(|item| {
                let (k, val) = item.split_once('=')?;
                let val = val.trim();
                let val = val
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(val);
                Some((k.trim().to_ascii_lowercase(), val.to_string()))
            })
            .collect(),
    )
}

// ----- the client side: answering a provider's challenge (trunks, B2BUA legs) --------

/// A `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    pub qop_auth: bool,
    pub stale: bool,
}

/// Parses a Digest challenge; None for other schemes and algorithms we cannot answer.
pub fn parse_challenge(v: &str) -> Option<Challenge> {
    let mut c = Challenge {
        realm: String::new(),
        nonce: String::new(),
        opaque: None,
        algorithm: Algorithm::Md5,
        qop_auth: false,
        stale: false,
    };
    for (k, val) in digest_params(v)?.into_iter().flatten() {
        match k.as_str() {
            "realm" => c.realm = val,
            "nonce" => c.nonce = val,
            "opaque" => c.opaque = Some(val),
            "algorithm" => {
                c.algorithm = if val.eq_ignore_ascii_case("MD5") {
                    Algorithm::Md5
                } else if val.eq_ignore_ascii_case("SHA-256") {
                    Algorithm::Sha256
                } else {
                    return None;
                }
            }
            "qop" => c.qop_auth = val.split(',').any(|q| q.trim() == "auth"),
            "stale" => c.stale = val.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    if c.nonce.is_empty() {
        return None;
    }
    Some(c)
}

/// The best challenge of a 401/407 (SHA-256 before MD5) and the header to answer in.
pub(crate) fn best_challenge(
    msg: &super::message::Message,
) -> Option<(Challenge, &'static str, &'static str)> {
    let (key, name) = if msg.code() == 401 {
        ("www-authenticate", ("authorization", "Authorization"))
    } else {
        (
            "proxy-authenticate",
            ("proxy-authorization", "Proxy-Authorization"),
        )
    };
    let mut all: Vec<Challenge> = msg.headers_of(key).filter_map(parse_challenge).collect();
    all.sort_by_key(|c| c.algorithm != Algorithm::Sha256);
    all.into_iter().next().map(|c| (c, name.0, name.1))
}

/// Our credentials for a challenge (RFC 7616; qop=auth when offered, else RFC 2069).
pub fn authorization(c: &Challenge, user: &str, secret: &str, method: &str, uri: &str) -> String {
    let alg = c.algorithm;
    let mut s = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
        c.realm,
        c.nonce,
        alg.name()
    );
    if c.qop_auth {
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let r = response(
            alg, user, &c.realm, secret, method, uri, &c.nonce, "00000001", &cnonce, "auth",
        );
        s.push_str(&format!(
            ", response=\"{r}\", qop=auth, nc=00000001, cnonce=\"{cnonce}\""
        ));
    } else {
        let ha1 = alg.hash(&[user, &c.realm, secret]);
        let ha2 = alg.hash(&[method, uri]);
        let r = alg.hash(&[&ha1, &c.nonce, &ha2]);
        s.push_str(&format!(", response=\"{r}\""));
    }
    if let Some(o) = &c.opaque {
        s.push_str(&format!(", opaque=\"{o}\""));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_vector() {
        let r = response(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_sha256_and_md5_vectors() {
        let args = |alg| {
            response(
                alg,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                "00000001",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                "auth",
            )
        };
        assert_eq!(
            args(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(args(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
    }

    fn creds(book: &mut NonceBook, alg: Algorithm, pw: &str, nc: &str, now: u64) -> Credentials {
        let nonce = book.issue(now);
        let resp = response(
            alg,
            "1000",
            "crm.local",
            pw,
            "REGISTER",
            "sip:x",
            &nonce,
            nc,
            "cn",
            "auth",
        );
        Credentials {
            username: "1000".into(),
            realm: "crm.local".into(),
            nonce,
            uri: "sip:x".into(),
            response: resp,
            algorithm: Some(alg.name().into()),
            cnonce: "cn".into(),
            nc: nc.into(),
            qop: "auth".into(),
        }
    }

    #[test]
    fn verify_replay_stale_and_forgery() {
        let mut book = NonceBook::new([7; 32], 30, 10);
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let c = creds(&mut book, alg, "pw", "00000001", 100);
            assert_eq!(
                book.verify(&c, "crm.local", "REGISTER", "pw", 101),
                Verdict::Ok
            );
            // the same nonce-count again is a replay, told apart from a wrong password
            assert_eq!(
                book.verify(&c, "crm.local", "REGISTER", "pw", 102),
                Verdict::Replay
            );
            let wrong = creds(&mut book, alg, "bad", "00000001", 100);
            assert_eq!(
                book.verify(&wrong, "crm.local", "REGISTER", "pw", 101),
                Verdict::Failed
            );
            let old = creds(&mut book, alg, "pw", "00000001", 100);
            assert_eq!(
                book.verify(&old, "crm.local", "REGISTER", "pw", 200),
                Verdict::Stale
            );
        }
        // a nonce not issued by us
        let mut c = creds(&mut book, Algorithm::Md5, "pw", "00000001", 100);
        c.nonce = "64.1.0000000000000000".into();
        assert_eq!(
            book.verify(&c, "crm.local", "REGISTER", "pw", 101),
            Verdict::Failed
        );
        book.sweep(1000);
        assert_eq!(book.tracked(), 0);
    }

    #[test]
    fn parses_sipp_style_header() {
        let c = Credentials::parse("Digest username=\"1000\",realm=\"crm.local\",cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"sip:127.0.0.1:5060\",nonce=\"a.b.c\",response=\"abc\",algorithm=MD5").unwrap();
        assert_eq!(c.username, "1000");
        assert_eq!(c.nc, "00000001");
        assert_eq!(c.uri, "sip:127.0.0.1:5060");
        assert!(Credentials::parse("Basic abc").is_none());
    }

    #[test]
    fn challenges_parse_and_answer() {
        let c = parse_challenge(
            "Digest realm=\"prov\", nonce=\"abc\", qop=\"auth,auth-int\", algorithm=SHA-256, opaque=\"o1\"",
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth);
        assert_eq!(c.opaque.as_deref(), Some("o1"));
        let a = authorization(&c, "u", "p", "REGISTER", "sip:prov");
        let creds = Credentials::parse(&a).unwrap();
        let expect = response(
            Algorithm::Sha256,
            "u",
            "prov",
            "p",
            "REGISTER",
            "sip:prov",
            "abc",
            &creds.nc,
            &creds.cnonce,
            "auth",
        );
        assert_eq!(creds.response, expect);
        assert!(a.contains("opaque=\"o1\""));
        assert!(parse_challenge("Basic realm=x").is_none());
        assert!(parse_challenge("Digest realm=x, nonce=y, algorithm=MD5-sess").is_none());
        // RFC 2617 without qop.
        let c = parse_challenge("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(!authorization(&c, "u", "p", "INVITE", "sip:x").contains("qop"));
    }
}
