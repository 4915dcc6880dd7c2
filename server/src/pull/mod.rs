//! `kubeinfer-server pull`: fetches a model for the operator's init container: one file, every object
//! under a prefix, or an archive to unpack (`kind.rs`). What is fetched is written under a temporary
//! name beside its destination and renamed into place only once it is complete and its checksum
//! matches; transient failures are retried with backoff, resuming where the bytes stopped.

mod directory;
pub mod kind;
pub mod source;
mod tree;
mod unpack;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::{GetOptions, GetRange};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::PullArgs;
use crate::error::Error;
use kind::Kind;
use source::Source;

/// How one attempt ended badly.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (network trouble, 5xx, a cut connection).
    Transient(String),
    /// Not worth one (404, denied, a bad URI).
    Permanent(String),
}

/// Bytes received so far, across attempts.
struct Progress {
    written: u64,
    total: Option<u64>,
    hasher: Sha256,
    started: Instant,
    last_report: Instant,
}

impl Progress {
    fn report(&mut self, force: bool) {
        if !force && self.last_report.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last_report = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let mib_per_s = self.written as f64 / 1048576.0 / seconds;
        let percent = self.total.filter(|t| *t > 0).map(|t| 100.0 * self.written as f64 / t as f64);
        tracing::info!(bytes = self.written, total = self.total, percent, mib_per_s, "downloading");
    }
}

fn fail(uri: &str, reason: impl Into<String>) -> Error {
    Error::Pull { uri: source::redact(uri, uri), reason: source::redact(uri, &reason.into()) }
}

fn temporary_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.part-{}", std::process::id()))
}

/// Fetches `args.uri` into `args.dest`; returns the SHA-256 it was checked against (the file's, the
/// archive's, or the prefix listing's).
pub async fn run(args: &PullArgs) -> Result<String, Error> {
    let uri = args.uri.as_str();
    let kind = kind::of(uri).map_err(|reason| fail(uri, reason))?;
    let source = source::open(uri, args.authorization.as_deref()).map_err(|reason| fail(uri, reason))?;
    if let Some(parent) = args.dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| fail(uri, format!("cannot create {}: {e}", parent.display())))?;
    }
    match kind {
        Kind::File => file(&source, args).await,
        Kind::Archive(format) => directory::archive(&source, args, format).await,
        Kind::Prefix => directory::prefix(&source, args).await,
    }
}

async fn file(source: &Source, args: &PullArgs) -> Result<String, Error> {
    let uri = args.uri.as_str();
    let tmp = temporary_path(&args.dest);
    let result = match fetch(source, &source.path, args, args.max_bytes, &tmp).await {
        Ok(digest) => verify(args, &digest).map(|()| digest),
        Err(e) => Err(e),
    };
    match result {
        Ok(digest) => {
            tracing::info!(sha256 = %digest, dest = %args.dest.display(), "model pulled");
            tokio::fs::rename(&tmp, &args.dest)
                .await
                .map_err(|e| fail(uri, format!("cannot move the file into {}: {e}", args.dest.display())))?;
            if let Some(parent) = args.dest.parent()
                && let Ok(dir) = tokio::fs::File::open(parent).await
            {
                let _ = dir.sync_all().await;
            }
            Ok(digest)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Checks `digest` against `--sha256`, when one is given.
fn verify(args: &PullArgs, digest: &str) -> Result<(), Error> {
    match &args.sha256 {
        Some(want) if want != digest => {
            Err(fail(args.uri.as_str(), format!("checksum mismatch: expected sha256 {want}, got {digest}")))
        }
        _ => Ok(()),
    }
}

/// Downloads the object at `object` into the new file `tmp`, at most `limit` bytes; returns its SHA-256.
async fn fetch(
    source: &Source,
    object: &object_store::path::Path,
    args: &PullArgs,
    limit: Option<u64>,
    tmp: &Path,
) -> Result<String, Error> {
    let uri = args.uri.as_str();
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| fail(uri, format!("cannot write {}: {e}", tmp.display())))?;
    let now = Instant::now();
    let mut progress =
        Progress { written: 0, total: None, hasher: Sha256::new(), started: now, last_report: now };
    let mut attempt = 0;
    loop {
        match attempt_once(source, object, args, limit, &mut file, &mut progress).await {
            Ok(()) => break,
            Err(Failure::Permanent(reason)) => return Err(fail(uri, reason)),
            Err(Failure::Transient(reason)) if attempt < args.retries => {
                attempt += 1;
                let delay = Duration::from_millis(250 << attempt.min(6));
                let reason = source::redact(uri, &reason);
                tracing::warn!(%reason, attempt, retry_in_ms = delay.as_millis() as u64, "download interrupted; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(Failure::Transient(reason)) => {
                return Err(fail(uri, format!("{reason} (gave up after {} attempts)", attempt + 1)));
            }
        }
    }
    file.sync_all().await.map_err(|e| fail(uri, format!("cannot flush {}: {e}", tmp.display())))?;
    progress.report(true);
    Ok(format!("{:x}", progress.hasher.finalize()))
}

async fn attempt_once(
    source: &Source,
    object: &object_store::path::Path,
    args: &PullArgs,
    limit: Option<u64>,
    file: &mut tokio::fs::File,
    p: &mut Progress,
) -> Result<(), Failure> {
    let uri = args.uri.as_str();
    let classify = |e: object_store::Error| {
        let message = source::explain(uri, &e);
        if source::permanent(&e) { Failure::Permanent(message) } else { Failure::Transient(message) }
    };
    let resume = p.written > 0;
    let options = GetOptions { range: resume.then_some(GetRange::Offset(p.written)), ..Default::default() };
    let got = match source.store.get_opts(object, options).await {
        Ok(got) => got,
        // A server that cannot resume gets a fresh start rather than a failure.
        Err(e) if resume && !source::permanent(&e) => {
            restart(file, p).await?;
            source.store.get_opts(object, GetOptions::default()).await.map_err(classify)?
        }
        Err(e) => return Err(classify(e)),
    };
    if got.range.start != p.written {
        restart(file, p).await?;
    }
    p.total = Some(got.meta.size);
    let too_large = |bytes: u64| {
        limit.filter(|&max| bytes > max).map(|max| {
            Failure::Permanent(format!("the model is larger than --max-bytes {max} (at least {bytes} bytes)"))
        })
    };
    if let Some(refused) = too_large(got.meta.size) {
        return Err(refused);
    }
    let mut stream = got.into_stream();
    loop {
        let chunk = match tokio::time::timeout(args.stall_timeout, stream.next()).await {
            Err(_) => {
                return Err(Failure::Transient(format!("no data arrived for {:?}", args.stall_timeout)));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let total = p.total.unwrap_or(0);
                return Err(Failure::Transient(format!(
                    "truncated download: received {} of {total} bytes ({})",
                    p.written,
                    source::explain(uri, &e)
                )));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        // The size the store announced may be wrong (a chunked body has none): count what arrives.
        if let Some(refused) = too_large(p.written + chunk.len() as u64) {
            return Err(refused);
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Failure::Permanent(format!("cannot write the model file: {e}")))?;
        p.hasher.update(&chunk);
        p.written += chunk.len() as u64;
        p.report(false);
    }
    match p.total {
        Some(total) if p.written < total => {
            Err(Failure::Transient(format!("truncated download: received {} of {total} bytes", p.written)))
        }
        _ => Ok(()),
    }
}

async fn restart(file: &mut tokio::fs::File, p: &mut Progress) -> Result<(), Failure> {
    use tokio::io::AsyncSeekExt;
    file.set_len(0)
        .await
        .map_err(|e| Failure::Permanent(format!("cannot truncate the partial file: {e}")))?;
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|e| Failure::Permanent(format!("cannot rewind: {e}")))?;
    p.written = 0;
    p.hasher = Sha256::new();
    Ok(())
}
