//! HTTPS on the LAN without a public name (`crm tls init`, `crm tls show`): a local
//! certificate authority kept in `<data dir>/tls/` (its key mode 0600, never leaves the
//! box) and the box's certificate for its LAN names and addresses, signed by it. Staff
//! install the CA certificate once per device (the `/tls/ca.crt` download, README); the
//! browser then trusts the box, and pages that need a secure context (the microphone
//! of the browser softphone) work.
//!
//! `crm serve` uses `tls/box.pem` and `tls/box.key` when crm.toml sets no `tls_cert` /
//! `tls_key` of its own (`Config::load`): a certificate the admin provides always wins.
//! Running `init` again keeps the CA (devices that trust it keep trusting) and issues a
//! new box certificate for the names given now.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use super::{io_ctx, OpsError, OpsResult};

/// Under the data directory.
pub const DIR: &str = "tls";
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const BOX_CERT: &str = "box.pem";
pub const BOX_KEY: &str = "box.key";
/// The CA lives ten years (installed once per device); the box certificate about two
/// (browsers refuse longer ones from public CAs, and some apply that to local ones too).
const CA_DAYS: i64 = 3650;
const BOX_DAYS: i64 = 800;

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// The box certificate and key `crm tls init` made, when both are there.
pub fn local_pair(data_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let d = dir(data_dir);
    let (c, k) = (d.join(BOX_CERT), d.join(BOX_KEY));
    (c.is_file() && k.is_file()).then_some((c, k))
}

/// The CA certificate (PEM), when there is one.
pub fn ca_pem(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir(data_dir).join(CA_CERT)).ok()
}

/// What `init` made.
#[derive(Debug)]
pub struct Made {
    pub dir: PathBuf,
    pub ca_created: bool,
    pub names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub ca: CertInfo,
}

/// What `show` prints of a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// SHA-256 of the DER, as colon-separated hex (what browsers and phones show).
    pub fingerprint: String,
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// The box's default names: its hostname, hostname.local (mDNS), localhost.
pub fn default_names() -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty() && s != "localhost");
    let mut v = Vec::new();
    if let Some(h) = host {
        let short = h.split('.').next().unwrap_or(&h).to_string();
        v.push(h.clone());
        v.push(format!("{short}.local"));
    }
    v.push("localhost".into());
    v
}

/// The box's default addresses: every local IPv4 address but loopback, and 127.0.0.1.
/// Read from the kernel's routing table (`/proc/net/fib_trie`: the `/32 host LOCAL`
/// entries are the addresses of this machine), so no interface library is needed.
pub fn default_ips() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/proc/net/fib_trie") {
        let lines: Vec<&str> = t.lines().collect();
        for w in lines.windows(2) {
            if !w[1].contains("/32 host LOCAL") {
                continue;
            }
            let Some(ip) = w[0]
                .trim()
                .trim_start_matches(['|', '-', '+', ' '])
                .parse::<std::net::Ipv4Addr>()
                .ok()
            else {
                continue;
            };
            if !ip.is_loopback() && !v.contains(&IpAddr::V4(ip)) {
                v.push(IpAddr::V4(ip));
            }
        }
    }
    v.push(IpAddr::from([127, 0, 0, 1]));
    v
}

fn tls_err(what: &str) -> impl FnOnce(rcgen::Error) -> OpsError + '_ {
    move |e| OpsError::Refused(format!("{what}: {e}"))
}

fn days(n: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(n)
}

/// Writes `body` to `path` with `mode` (0600 for keys), replacing it atomically.
fn write_file(path: &Path, body: &[u8], mode: u32) -> OpsResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("part");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_ctx("cannot create", &tmp))?;
    f.write_all(body)
        .and_then(|_| f.sync_all())
        .map_err(io_ctx("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_ctx("cannot rename", &tmp))?;
    Ok(())
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "crm local CA");
    dn.push(DnType::OrganizationName, "crm");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// Makes the CA (unless there is one) and a new box certificate for `names` and `ips`
/// (empty: the defaults), in `<data dir>/tls/`.
pub fn init(data_dir: &Path, names: &[String], ips: &[IpAddr]) -> OpsResult<Made> {
    let names = if names.is_empty() {
        default_names()
    } else {
        names.to_vec()
    };
    let ips = if ips.is_empty() {
        default_ips()
    } else {
        ips.to_vec()
    };
    for n in &names {
        if n.is_empty()
            || n.len() > 253
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
        {
            return Err(OpsError::Refused(format!(
                "{n:?} is not a host name (letters, digits, '-' and '.'); nothing was changed"
            )));
        }
    }
    let d = dir(data_dir);
    std::fs::create_dir_all(&d).map_err(io_ctx("cannot create", &d))?;
    let (ca_cert_path, ca_key_path) = (d.join(CA_CERT), d.join(CA_KEY));
    let ca_created = !(ca_cert_path.is_file() && ca_key_path.is_file());
    let (ca_pem, ca_key) = if ca_created {
        let key = KeyPair::generate().map_err(tls_err("cannot make the CA key"))?;
        let mut p = ca_params();
        p.not_before = days(-1);
        p.not_after = days(CA_DAYS);
        let cert = p
            .self_signed(&key)
            .map_err(tls_err("cannot make the CA certificate"))?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca_cert_path, cert.pem().as_bytes(), 0o644)?;
        (cert.pem(), key)
    } else {
        let pem =
            std::fs::read_to_string(&ca_cert_path).map_err(io_ctx("cannot read", &ca_cert_path))?;
        let key_pem =
            std::fs::read_to_string(&ca_key_path).map_err(io_ctx("cannot read", &ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(tls_err("cannot read the CA key"))?;
        (pem, key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
        .map_err(tls_err("cannot read the CA certificate"))?;

    let mut p = CertificateParams::new(names.clone()).map_err(tls_err("bad name"))?;
    p.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "crm".into()),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = days(-1);
    p.not_after = days(BOX_DAYS);
    let key = KeyPair::generate().map_err(tls_err("cannot make the box key"))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(tls_err("cannot sign the box certificate"))?;
    // The chain: the box certificate, then the CA (some clients want the whole chain).
    write_file(&d.join(BOX_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write_file(
        &d.join(BOX_CERT),
        format!("{}{}", cert.pem(), ca_pem).as_bytes(),
        0o644,
    )?;
    Ok(Made {
        dir: d,
        ca_created,
        names,
        ips,
        ca: info(&ca_pem)?,
    })
}

/// Fingerprint, subject and expiry of the first certificate of a PEM text.
pub fn info(pem_text: &str) -> OpsResult<CertInfo> {
    let bad = |e: String| OpsError::Refused(format!("not a certificate: {e}"));
    let der = rustls_pemfile::certs(&mut pem_text.as_bytes())
        .next()
        .ok_or_else(|| bad("no CERTIFICATE block".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let (_, x) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(e.to_string()))?;
    let fp = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertInfo {
        fingerprint: fp,
        subject: x.subject().to_string(),
        not_after: x.validity().not_after.timestamp(),
    })
}

/// The CA's details (None: `crm tls init` was never run).
pub fn show(data_dir: &Path) -> OpsResult<Option<(CertInfo, Option<CertInfo>)>> {
    let Some(ca) = ca_pem(data_dir) else {
        return Ok(None);
    };
    let boxed = std::fs::read_to_string(dir(data_dir).join(BOX_CERT))
        .ok()
        .map(|p| info(&p))
        .transpose()?;
    Ok(Some((info(&ca)?, boxed)))
}
