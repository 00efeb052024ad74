//! Copies off the box (issue 21): scheduled backups and the replication stream, sealed
//! (compressed, then encrypted with age to the owner's X25519 public key) and queued in a
//! local outbox, from which one uploader per target sends them to S3, SFTP or a mounted
//! folder. The server never waits for a target: a target that is down only makes its
//! queue longer, and it catches up when it returns.
//!
//! Remote layout under each target's root:
//! - `backups/<archive name>.age`: a verified `crm backup` archive.
//! - `repl/<generation>/<seq>-<unix ms>.snap.age`: the whole database after segment `seq`.
//! - `repl/<generation>/<seq>-<unix ms>.seg.age`: the pages transactions changed.
//!
//! A generation is one unbroken run of the WAL (a new one begins at each start of the
//! server, or when the log was restarted behind the replicator). Every object opens with
//! a header (kind, generation, sequence, time, hash chain) inside the encryption, so a
//! changed, truncated, renamed or missing object is refused at restore: age's
//! ChaCha20-Poly1305 stream refuses changed or cut bytes, and each segment names the
//! SHA-256 of the one before it.

pub mod control;
pub mod replicate;
pub mod restore;
pub mod settings;
pub mod store;

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::OpsError;

pub const MAGIC: &[u8] = b"CRM-REMOTE-1\n";

/// What a sealed object says about itself (inside the encryption).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectMeta {
    /// "snap", "seg" or "backup".
    pub kind: String,
    pub generation: u64,
    pub seq: u64,
    /// Unix ms: for a segment, when its transactions were read (all were acknowledged
    /// before); for a snapshot, the moment of its state.
    pub time_ms: i64,
    pub page_size: u32,
    /// The database's size in pages after this object is applied.
    pub db_pages: u32,
    /// Segments: the chain value before this one (hex SHA-256). Snapshots: the chain
    /// value they continue (the initial snapshot of a generation starts its own chain).
    pub prev: String,
    /// Backups: the archive's file name.
    pub name: String,
}

impl ObjectMeta {
    /// The object's key under the target root.
    pub fn key(&self) -> String {
        match self.kind.as_str() {
            "backup" => format!("backups/{}.age", self.name),
            k => format!(
                "repl/{:016x}/{:016x}-{:016x}.{k}.age",
                self.generation, self.seq, self.time_ms
            ),
        }
    }
}

/// A replication key parsed: (generation, seq, time ms, kind).
pub fn parse_repl_key(key: &str) -> Option<(u64, u64, i64, String)> {
    let rest = key.strip_prefix("repl/")?;
    let (gen, file) = rest.split_once('/')?;
    let file = file.strip_suffix(".age")?;
    let (stem, kind) = file.rsplit_once('.')?;
    let (seq, time) = stem.split_once('-')?;
    if !(kind == "seg" || kind == "snap") || gen.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(gen, 16).ok()?,
        u64::from_str_radix(seq, 16).ok()?,
        i64::from_str_radix(time, 16).ok()?,
        kind.to_string(),
    ))
}

pub fn recipient(cfg: &crate::config::Config) -> Result<age::x25519::Recipient, OpsError> {
    let key = cfg.backup.remote.public_key.as_deref().ok_or_else(|| {
        OpsError::Refused(
            "no [backup.remote] public_key in the config: run `crm backup keygen`".into(),
        )
    })?;
    age::x25519::Recipient::from_str(key)
        .map_err(|e| OpsError::Refused(format!("backup.remote.public_key: {e}")))
}

/// A new key pair: (private key text, public key text).
pub fn keygen() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_string(),
        id.to_public().to_string(),
    )
}

/// Reads the owner's private key(s) from a key file (comments and blank lines skipped).
pub fn read_identity(path: &Path) -> Result<Vec<age::x25519::Identity>, OpsError> {
    let text = std::fs::read_to_string(path).map_err(super::io_ctx("cannot read", path))?;
    let ids: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| age::x25519::Identity::from_str(l).ok())
        .collect();
    if ids.is_empty() {
        return Err(OpsError::Refused(format!(
            "{}: no private key (AGE-SECRET-KEY-1...) in it",
            path.display()
        )));
    }
    Ok(ids)
}

/// Hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one sealed object to `out`: the header and zstd-compressed body, encrypted.
/// `body` writes the plain body. Returns the object's digest (hex SHA-256 of the
/// plaintext), the next link of the chain.
pub fn seal(
    recipient: &age::x25519::Recipient,
    meta: &ObjectMeta,
    out: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<String, OpsError> {
    let io = super::io_ctx("cannot write", out);
    let file = std::fs::File::create(out).map_err(super::io_ctx("cannot create", out))?;
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| OpsError::Refused(format!("encryption: {e}")))?;
    let run = || -> std::io::Result<String> {
        let sealed = enc.wrap_output(std::io::BufWriter::new(file))?;
        let mut plain = Hashing {
            inner: sealed,
            hash: Sha256::new(),
        };
        plain.write_all(MAGIC)?;
        serde_json::to_writer(&mut plain, meta)?;
        plain.write_all(b"\n")?;
        let mut z = zstd::Encoder::new(&mut plain, 1)?;
        body(&mut z)?;
        z.finish()?;
        let digest = hex::encode(plain.hash.finalize_reset());
        let buffered = plain.inner.finish()?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(digest)
    };
    run().map_err(io)
}

/// An opened object: its header and a reader of its body. Call [`Opened::finish`] after
/// reading the body to its end: only then is the whole object authenticated.
pub struct Opened<'a> {
    pub meta: ObjectMeta,
    body: zstd::Decoder<'static, std::io::BufReader<Box<dyn Plain + 'a>>>,
}

/// The decrypted stream of an object, hashed as it is read.
trait Plain: Read {
    /// The SHA-256 of everything the stream gave, once it was read to its end; an error
    /// if the stream did not end well.
    fn digest(self: Box<Self>) -> std::io::Result<String>;
}

impl<R: Read> Plain for HashingReader<R> {
    fn digest(self: Box<Self>) -> std::io::Result<String> {
        Ok(hex::encode(self.hash.finalize()))
    }
}

/// Decryption and hashing on a thread of their own, a chunk ahead of the reader (who
/// decompresses): for the large snapshot, so the two run on two cores.
struct DecryptAhead {
    chunks: crate::ops::backup::ChannelReader,
    worker: Option<std::thread::JoinHandle<std::io::Result<String>>>,
}

impl DecryptAhead {
    fn spawn(plain: impl Read + Send + 'static) -> std::io::Result<DecryptAhead> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(18);
        let worker = std::thread::Builder::new()
            .name("crm-decrypt".into())
            .spawn(move || {
                let mut hashing = HashingReader {
                    inner: plain,
                    hash: Sha256::new(),
                };
                loop {
                    let mut buf = spare.try_recv().unwrap_or_default();
                    buf.resize(1 << 20, 0);
                    let n = read_up_to(&mut hashing, &mut buf)?;
                    if n == 0 {
                        return Ok(hex::encode(hashing.hash.finalize()));
                    }
                    buf.truncate(n);
                    if tx.send(buf).is_err() {
                        return Err(std::io::Error::other("the reader stopped"));
                    }
                }
            })?;
        Ok(DecryptAhead {
            chunks: crate::ops::backup::ChannelReader::recycling(rx, back),
            worker: Some(worker),
        })
    }
}

/// Reads until `buf` is full or the stream ends.
pub(super) fn read_up_to(
    from: &mut (impl Read + ?Sized),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut k = 0;
    while k < buf.len() {
        match from.read(&mut buf[k..]) {
            Ok(0) => break,
            Ok(n) => k += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(k)
}

impl Read for DecryptAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.chunks.read(buf)
    }
}

impl Plain for DecryptAhead {
    fn digest(mut self: Box<Self>) -> std::io::Result<String> {
        let worker = self.worker.take().expect("joined once");
        // The end of the chunks is only an end if the worker says so (a decryption error
        // also closes the channel).
        worker
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the decryption thread panicked")))
    }
}

pub struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn damaged(key: &str, why: impl std::fmt::Display) -> OpsError {
    OpsError::Refused(format!(
        "remote object {key} is damaged or was tampered with, refusing it: {why}"
    ))
}

/// Decrypts and checks the header of the object stored under `key`.
pub fn open<'a>(
    identities: &[age::x25519::Identity],
    key: &str,
    sealed: impl Read + 'a,
) -> Result<Opened<'a>, OpsError> {
    let reader = decryptor(identities, key, sealed)?;
    let plain = HashingReader {
        inner: Box::new(reader) as Box<dyn Read + 'a>,
        hash: Sha256::new(),
    };
    read_header(key, Box::new(plain))
}

/// [`open`] for a large object: the decryption and hashing run on their own thread
/// ([`DecryptAhead`]) while the caller decompresses.
pub fn open_ahead(
    identities: &[age::x25519::Identity],
    key: &str,
    sealed: impl Read + Send + 'static,
) -> Result<Opened<'static>, OpsError> {
    let reader = decryptor(identities, key, sealed)?;
    let ahead = DecryptAhead::spawn(reader).map_err(|e| damaged(key, e))?;
    read_header(key, Box::new(ahead))
}

fn decryptor<R: Read>(
    identities: &[age::x25519::Identity],
    key: &str,
    sealed: R,
) -> Result<age::stream::StreamReader<R>, OpsError> {
    let dec = age::Decryptor::new(sealed).map_err(|e| damaged(key, e))?;
    dec.decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| damaged(key, e))
}

/// Reads the magic and the header line of a decrypted object; the body follows.
fn read_header<'a>(key: &str, plain: Box<dyn Plain + 'a>) -> Result<Opened<'a>, OpsError> {
    let mut plain = std::io::BufReader::new(plain);
    let mut magic = vec![0u8; MAGIC.len()];
    plain.read_exact(&mut magic).map_err(|e| damaged(key, e))?;
    if magic != MAGIC {
        return Err(damaged(key, "not a crm object"));
    }
    let mut line = Vec::new();
    plain
        .by_ref()
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| damaged(key, e))?;
    let meta: ObjectMeta = serde_json::from_slice(&line).map_err(|e| damaged(key, e))?;
    if meta.key() != key {
        return Err(damaged(
            key,
            format!("its header says it is {}", meta.key()),
        ));
    }
    let body = zstd::Decoder::with_buffer(plain).map_err(|e| damaged(key, e))?;
    Ok(Opened { meta, body })
}

impl<'a> Opened<'a> {
    pub fn body(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// Reads whatever is left (age checks the last chunk's tag at the end) and returns
    /// the object's digest.
    pub fn finish(self, key: &str) -> Result<String, OpsError> {
        let mut body = self.body;
        std::io::copy(&mut body, &mut std::io::sink()).map_err(|e| damaged(key, e))?;
        let mut plain = body.finish();
        // The zstd frame may end before the stream does; the rest must be empty.
        let mut rest = Vec::new();
        plain.read_to_end(&mut rest).map_err(|e| damaged(key, e))?;
        if !rest.is_empty() {
            return Err(damaged(key, "bytes after the end"));
        }
        plain.into_inner().digest().map_err(|e| damaged(key, e))
    }
}

/// A file name in the outbox for `key` (keys have `/`).
pub fn outbox_name(order: u64, key: &str) -> String {
    format!("{order:016x}~{}", key.replace('/', "!"))
}

pub fn key_of_outbox_name(name: &str) -> Option<String> {
    let (_, key) = name.split_once('~')?;
    Some(key.replace('!', "/"))
}

/// Where the replication state and the outbox live.
pub fn state_dir(cfg: &crate::config::Config) -> PathBuf {
    cfg.data_dir.join("replication")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
