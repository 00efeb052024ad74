//! The three kinds of target behind one small blocking interface: S3-compatible object
//! storage (`object_store`, the Apache Arrow project's client), SFTP (`russh` +
//! `russh-sftp`, pure Rust, so the static musl build needs no OpenSSL) and a mounted
//! folder. Uploads resume: a large file goes to S3 in 8 MiB parts whose ids are kept
//! beside the queued file, and to SFTP or a folder as `NAME.partial`, appended to from
//! where it stopped; it only gets its final name when complete.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::config::{RemoteTarget, TargetKind};

pub type StoreResult<T> = Result<T, String>;

/// Keeps an average upload speed under a limit.
pub struct Pacer {
    bytes_per_sec: u64,
    started: Instant,
    sent: u64,
}

impl Pacer {
    pub fn new(kbps: u64) -> Pacer {
        Pacer {
            bytes_per_sec: kbps * 1000,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Called before sending `n` bytes: sleeps while ahead of the allowed speed.
    pub fn pace(&mut self, n: usize) {
        if self.bytes_per_sec == 0 {
            return;
        }
        // A fresh window after a quiet spell, so idle time is not banked as burst.
        if self.started.elapsed() > Duration::from_secs(5) && self.sent == 0 {
            self.started = Instant::now();
        }
        self.sent += n as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / self.bytes_per_sec as f64);
        let spent = self.started.elapsed();
        if due > spent {
            std::thread::sleep(due - spent);
        }
        if self.started.elapsed() > Duration::from_secs(30) {
            self.started = Instant::now();
            self.sent = 0;
        }
    }
}

const CHUNK: usize = 256 * 1024;
const PART: usize = 8 * 1024 * 1024;

/// A connection to one target.
pub struct Store {
    rt: tokio::runtime::Runtime,
    kind: Kind,
}

enum Kind {
    Path(PathBuf),
    S3 {
        store: Arc<object_store::aws::AmazonS3>,
        prefix: String,
    },
    Sftp {
        sftp: russh_sftp::client::SftpSession,
        root: String,
        _session: russh::client::Handle<HostKeyCheck>,
    },
}

pub struct HostKeyCheck {
    expected: russh::keys::PublicKey,
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.expected.key_data()
            }
            _ => false,
        })
    }
}

impl Store {
    pub fn connect(t: &RemoteTarget) -> StoreResult<Store> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("runtime: {err}"))?;
        let kind = match t.kind {
            TargetKind::Path => {
                let root = PathBuf::from(t.path.clone().unwrap_or_default());
                if !root.is_dir() {
                    return Err(format!(
                        "{} is not a folder (is the disk mounted?)",
                        root.display()
                    ));
                }
                Kind::Path(root)
            }
            TargetKind::S3 => {
                let endpoint = t.endpoint.clone();
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(t.bucket.clone().unwrap_or_default())
                    .with_region(t.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_access_key_id(t.access_key_id.clone().unwrap_or_default())
                    .with_secret_access_key(t.secret_access_key.clone().unwrap_or_default())
                    .with_retry(object_store::RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(20),
                        ..Default::default()
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(120)),
                    );
                if let Some(ep) = &endpoint {
                    b = b
                        .with_endpoint(ep.clone())
                        .with_allow_http(ep.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                let store = b.build().map_err(|err| format!("s3 settings: {err}"))?;
                let prefix = t
                    .prefix
                    .clone()
                    .unwrap_or_default()
                    .trim_matches('/')
                    .to_string();
                Kind::S3 {
                    store: Arc::new(store),
                    prefix,
                }
            }
            TargetKind::Sftp => rt.block_on(connect_sftp(t))?,
        };
        Ok(Store { rt, kind })
    }

    fn s3_path(prefix: &str, key: &str) -> object_store::path::Path {
        if prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{prefix}/{key}"))
        }
    }

    /// Uploads `file` as `key`, resuming an earlier partial upload of it.
    pub fn put_file(&mut self, key: &str, file: &Path, pacer: &mut Pacer) -> StoreResult<()> {
        let len = std::fs::metadata(file)
            .map_err(|err| format!("{}: {err}", file.display()))?
            .len();
        let mut src =
            std::fs::File::open(file).map_err(|err| format!("{}: {err}", file.display()))?;
        match &mut self.kind {
            Kind::Path(root) => {
                let dest = root.join(key);
                let dir = dest.parent().expect("keys have folders");
                std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
                let partial = with_suffix(&dest, ".partial");
                let mut out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&partial)
                    .map_err(|err| format!("{}: {err}", partial.display()))?;
                let have = out.metadata().map(|m| m.len()).unwrap_or(0).min(len);
                out.set_len(have).map_err(|err| err.to_string())?;
                src.seek(SeekFrom::Start(have))
                    .map_err(|err| err.to_string())?;
                copy_paced(&mut src, pacer, |chunk| {
                    out.write_all(chunk).map_err(|err| err.to_string())
                })?;
                out.sync_all().map_err(|err| err.to_string())?;
                std::fs::rename(&partial, &dest).map_err(|err| err.to_string())?;
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Kind::S3 { store, prefix } => {
                let path = Self::s3_path(prefix, key);
                if (len as usize) <= PART {
                    let mut buf = Vec::with_capacity(len as usize);
                    src.read_to_end(&mut buf).map_err(|err| err.to_string())?;
                    pacer.pace(buf.len());
                    self.rt
                        .block_on(store.put(&path, buf.into()))
                        .map_err(|err| format!("s3 put {key}: {err}"))?;
                    return Ok(());
                }
                // Multipart, resumable: the upload id and finished parts are kept beside
                // the queued file until the object is complete.
                let state_path = with_suffix(file, ".upload");
                let mut state: MultipartState = std::fs::read(&state_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if state.id.is_empty() {
                    state.id = self
                        .rt
                        .block_on(store.create_multipart(&path))
                        .map_err(|err| format!("s3 multipart {key}: {err}"))?;
                    state.parts.clear();
                    save_state(&state_path, &state)?;
                }
                let parts = (len as usize).div_ceil(PART);
                for idx in state.parts.len()..parts {
                    let at = idx * PART;
                    let n = PART.min(len as usize - at);
                    let mut buf = vec![0u8; n];
                    src.seek(SeekFrom::Start(at as u64))
                        .map_err(|err| err.to_string())?;
                    src.read_exact(&mut buf).map_err(|err| err.to_string())?;
                    pacer.pace(n);
                    let put = self
                        .rt
                        .block_on(store.put_part(&path, &state.id, idx, buf.into()));
                    match put {
                        Ok(part) => {
                            state.parts.push(part.content_id);
                            save_state(&state_path, &state)?;
                        }
                        Err(err) => {
                            // An upload the server no longer knows starts over next time.
                            if err.to_string().contains("NoSuchUpload") {
                                let _ = std::fs::remove_file(&state_path);
                            }
                            return Err(format!("s3 part {idx} of {key}: {err}"));
                        }
                    }
                }
                let ids = state
                    .parts
                    .iter()
                    .map(|c| object_store::multipart::PartId {
                        content_id: c.clone(),
                    })
                    .collect();
                self.rt
                    .block_on(store.complete_multipart(&path, &state.id, ids))
                    .map_err(|err| format!("s3 complete {key}: {err}"))?;
                let _ = std::fs::remove_file(&state_path);
                Ok(())
            }
            Kind::Sftp { sftp, root, .. } => {
                let dest = format!("{root}/{key}");
                let partial = format!("{dest}.partial");
                self.rt.block_on(async {
                    use russh_sftp::protocol::OpenFlags;
                    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
                    sftp_mkdirs(sftp, &dest).await?;
                    let have = match sftp.metadata(partial.clone()).await {
                        Ok(m) => m.size.unwrap_or(0).min(len),
                        Err(_) => 0,
                    };
                    let mut out = sftp
                        .open_with_flags(partial.clone(), OpenFlags::CREATE | OpenFlags::WRITE)
                        .await
                        .map_err(|err| format!("sftp open {partial}: {err}"))?;
                    out.seek(SeekFrom::Start(have))
                        .await
                        .map_err(|err| format!("sftp seek: {err}"))?;
                    src.seek(SeekFrom::Start(have))
                        .map_err(|err| err.to_string())?;
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        let n = src.read(&mut buf).map_err(|err| err.to_string())?;
                        if n == 0 {
                            break;
                        }
                        pacer.pace(n);
                        out.write_all(&buf[..n])
                            .await
                            .map_err(|err| format!("sftp write {partial}: {err}"))?;
                    }
                    out.shutdown()
                        .await
                        .map_err(|err| format!("sftp close {partial}: {err}"))?;
                    let _ = sftp.remove_file(dest.clone()).await;
                    sftp.rename(partial.clone(), dest.clone())
                        .await
                        .map_err(|err| format!("sftp rename {partial}: {err}"))?;
                    Ok::<_, String>(())
                })
            }
        }
    }

    /// Downloads `key` into `out`.
    pub fn get_to(&mut self, key: &str, out: &mut dyn Write) -> StoreResult<()> {
        match &mut self.kind {
            Kind::Path(root) => {
                let mut f =
                    std::fs::File::open(root.join(key)).map_err(|err| format!("{key}: {err}"))?;
                std::io::copy(&mut f, out).map_err(|err| format!("{key}: {err}"))?;
                Ok(())
            }
            Kind::S3 { store, prefix } => {
                let path = Self::s3_path(prefix, key);
                self.rt.block_on(async {
                    let got = store
                        .get(&path)
                        .await
                        .map_err(|err| format!("s3 get {key}: {err}"))?;
                    let mut stream = got.into_stream();
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk.map_err(|err| format!("s3 get {key}: {err}"))?;
                        out.write_all(&chunk).map_err(|err| err.to_string())?;
                    }
                    Ok(())
                })
            }
            Kind::Sftp { sftp, root, .. } => {
                let path = format!("{root}/{key}");
                self.rt.block_on(async {
                    use tokio::io::AsyncReadExt;
                    let mut f = sftp
                        .open(path.clone())
                        .await
                        .map_err(|err| format!("sftp open {path}: {err}"))?;
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        let n = f
                            .read(&mut buf)
                            .await
                            .map_err(|err| format!("sftp read {path}: {err}"))?;
                        if n == 0 {
                            break;
                        }
                        out.write_all(&buf[..n]).map_err(|err| err.to_string())?;
                    }
                    Ok(())
                })
            }
        }
    }

    /// Every finished object's key under `prefix` (a folder, e.g. "repl/" or "backups/").
    pub fn list(&mut self, prefix: &str) -> StoreResult<Vec<String>> {
        let mut keys = Vec::new();
        match &mut self.kind {
            Kind::Path(root) => {
                fn walk(root: &Path, dir: &Path, keys: &mut Vec<String>) {
                    let Ok(rd) = std::fs::read_dir(dir) else {
                        return;
                    };
                    for entry in rd.flatten() {
                        let p = entry.path();
                        if p.is_dir() {
                            walk(root, &p, keys);
                        } else if let Ok(rel) = p.strip_prefix(root) {
                            keys.push(rel.to_string_lossy().into_owned());
                        }
                    }
                }
                walk(root, &root.join(prefix), &mut keys);
            }
            Kind::S3 { store, prefix: p } => {
                let full = Self::s3_path(p, prefix.trim_end_matches('/'));
                let strip = if p.is_empty() {
                    String::new()
                } else {
                    format!("{p}/")
                };
                self.rt.block_on(async {
                    let mut s = store.list(Some(&full));
                    while let Some(m) = s.next().await {
                        let m = m.map_err(|err| format!("s3 list: {err}"))?;
                        let k = m.location.to_string();
                        keys.push(k.strip_prefix(&strip).unwrap_or(&k).to_string());
                    }
                    Ok::<_, String>(())
                })?;
            }
            Kind::Sftp { sftp, root, .. } => {
                let root = root.clone();
                self.rt.block_on(async {
                    let mut dirs = vec![prefix.trim_end_matches('/').to_string()];
                    while let Some(d) = dirs.pop() {
                        let Ok(rd) = sftp.read_dir(format!("{root}/{d}")).await else {
                            continue;
                        };
                        for entry in rd {
                            let name = entry.file_name();
                            if name == "." || name == ".." {
                                continue;
                            }
                            let rel = format!("{d}/{name}");
                            if entry.file_type().is_dir() {
                                dirs.push(rel);
                            } else {
                                keys.push(rel);
                            }
                        }
                    }
                });
            }
        }
        keys.retain(|k| !k.ends_with(".partial"));
        keys.sort();
        Ok(keys)
    }

    pub fn delete(&mut self, key: &str) -> StoreResult<()> {
        match &mut self.kind {
            Kind::Path(root) => {
                std::fs::remove_file(root.join(key)).map_err(|err| format!("{key}: {err}"))
            }
            Kind::S3 { store, prefix } => {
                let path = Self::s3_path(prefix, key);
                self.rt
                    .block_on(store.delete(&path))
                    .map_err(|err| format!("s3 delete {key}: {err}"))
            }
            Kind::Sftp { sftp, root, .. } => self
                .rt
                .block_on(sftp.remove_file(format!("{root}/{key}")))
                .map_err(|err| format!("sftp delete {key}: {err}")),
        }
    }
}

/// Whether copies can go to `t` now: connects, writes a small object, finds it listed,
/// deletes it. `scratch` is a local folder for the object's file.
pub fn probe(t: &RemoteTarget, scratch: &Path) -> StoreResult<()> {
    let mut store = Store::connect(t)?;
    std::fs::create_dir_all(scratch).map_err(|err| format!("{}: {err}", scratch.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(scratch)
        .map_err(|err| format!("{}: {err}", scratch.display()))?;
    file.write_all(b"crm connection test\n")
        .map_err(|err| err.to_string())?;
    let key = format!("crm-test/{:x}.txt", super::now_ms());
    store.put_file(&key, file.path(), &mut Pacer::new(0))?;
    let listed = store.list("crm-test/")?;
    let deleted = store.delete(&key);
    if !listed.contains(&key) {
        return Err(format!("{key} was written but is not listed"));
    }
    deleted
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct MultipartState {
    id: String,
    parts: Vec<String>,
}

fn save_state(path: &Path, state: &MultipartState) -> StoreResult<()> {
    std::fs::write(path, serde_json::to_vec(state).expect("serialises"))
        .map_err(|err| format!("{}: {err}", path.display()))
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn copy_paced(
    src: &mut std::fs::File,
    pacer: &mut Pacer,
    mut sink: impl FnMut(&[u8]) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = src.read(&mut buf).map_err(|err| err.to_string())?;
        if n == 0 {
            return Ok(());
        }
        pacer.pace(n);
        sink(&buf[..n])?;
    }
}

async fn connect_sftp(t: &RemoteTarget) -> StoreResult<Kind> {
    let host = t.host.clone().unwrap_or_default();
    let port = t.port.unwrap_or(22);
    let expected = russh::keys::PublicKey::from_openssh(t.host_key.as_deref().unwrap_or(""))
        .map_err(|err| format!("host_key: {err}"))?;
    let config = Arc::new(russh::client::Config {
        inactivity_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    let connect = russh::client::connect(config, (host.as_str(), port), HostKeyCheck { expected });
    let mut session = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| format!("sftp {host}:{port}: no answer in 10 s"))?
        .map_err(|err| {
            format!("sftp {host}:{port}: {err} (or its host key is not the configured host_key)")
        })?;
    let user = t.user.clone().unwrap_or_default();
    let ok = if let Some(key_file) = &t.key_file {
        let key = russh::keys::load_secret_key(key_file, None)
            .map_err(|err| format!("key_file {}: {err}", key_file.display()))?;
        let hash = session
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        session
            .authenticate_publickey(
                user.clone(),
                russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|err| format!("sftp auth: {err}"))?
            .success()
    } else {
        session
            .authenticate_password(user.clone(), t.password.clone().unwrap_or_default())
            .await
            .map_err(|err| format!("sftp auth: {err}"))?
            .success()
    };
    if !ok {
        return Err(format!(
            "sftp {host}: the server refused {user}'s key or password"
        ));
    }
    let channel = session
        .channel_open_session()
        .await
        .map_err(|err| format!("sftp channel: {err}"))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|err| format!("sftp subsystem: {err}"))?;
    let sftp = russh_sftp::client::SftpSession::new(channel.into_stream())
        .await
        .map_err(|err| format!("sftp session: {err}"))?;
    let root = t
        .path
        .clone()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    Ok(Kind::Sftp {
        sftp,
        root,
        _session: session,
    })
}

async fn sftp_mkdirs(sftp: &russh_sftp::client::SftpSession, file: &str) -> StoreResult<()> {
    let Some((dir, _)) = file.rsplit_once('/') else {
        return Ok(());
    };
    let mut at = String::new();
    for part in dir.split('/') {
        if part.is_empty() {
            at.push('/');
            continue;
        }
        if !at.is_empty() && !at.ends_with('/') {
            at.push('/');
        }
        at.push_str(part);
        if !sftp.try_exists(at.clone()).await.unwrap_or(false) {
            sftp.create_dir(at.clone())
                .await
                .map_err(|err| format!("sftp mkdir {at}: {err}"))?;
        }
    }
    Ok(())
}
