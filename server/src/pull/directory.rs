//! Pulls of a whole model directory: every object under a prefix, or an archive unpacked. The tree is
//! staged beside `--dest` and moved into place only once it is complete, verified and arranged
//! (`tree.rs`).
//!
//! The checksum of an archive is the archive file's SHA-256. The checksum of a prefix covers every
//! object: it is the SHA-256 of the lines `<sha256 of the object>  <path below the prefix>`, sorted by
//! path, which is what `sha256sum` prints for the files in a checked-out copy:
//! `cd resnet && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum`.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use object_store::ObjectMeta;
use sha2::{Digest, Sha256};

use super::kind::Format;
use super::source::{self, Source};
use super::{fail, fetch, tree, unpack, verify};
use crate::config::PullArgs;
use crate::error::Error;

/// Downloads the archive (to the temporary directory, so that the model volume holds only the tree),
/// checks it, and unpacks it. Returns the archive's SHA-256.
pub async fn archive(source: &Source, args: &PullArgs, format: Format) -> Result<String, Error> {
    let download = std::env::temp_dir().join(format!(".kubeinfer-archive-{}", std::process::id()));
    let fetched = fetch(source, &source.path, args, args.max_bytes, &download).await;
    let result = match fetched {
        Ok(digest) => unpack_checked(&download, &digest, format, args).await.map(|()| digest),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&download).await;
    let digest = result?;
    tracing::info!(sha256 = %digest, dest = %args.dest.display(), "model directory unpacked");
    Ok(digest)
}

async fn unpack_checked(download: &Path, digest: &str, format: Format, args: &PullArgs) -> Result<(), Error> {
    let uri = args.uri.as_str();
    verify(args, digest)?;
    let staged = stage(args).await?;
    let (archive, into, limit) = (download.to_path_buf(), staged.clone(), args.max_bytes);
    let unpacked = tokio::task::spawn_blocking(move || unpack::unpack(&archive, format, &into, limit))
        .await
        .map_err(|e| fail(uri, format!("the unpacking task failed: {e}")))
        .and_then(|r| r.map_err(|reason| fail(uri, reason)));
    match unpacked {
        Ok(bytes) => {
            tracing::info!(bytes, "archive unpacked");
            finish(&staged, args).await
        }
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&staged).await;
            Err(e)
        }
    }
}

/// Downloads every object under the prefix. Returns the checksum of the listing (see the module's
/// documentation).
pub async fn prefix(source: &Source, args: &PullArgs) -> Result<String, Error> {
    let objects = list(source, args).await?;
    let staged = stage(args).await?;
    let result = match download_all(source, args, &objects, &staged).await {
        Ok(digest) => verify(args, &digest).map(|()| digest),
        Err(e) => Err(e),
    };
    match result {
        Ok(digest) => {
            finish(&staged, args).await?;
            tracing::info!(objects = objects.len(), sha256 = %digest, dest = %args.dest.display(), "model directory pulled");
            Ok(digest)
        }
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&staged).await;
            Err(e)
        }
    }
}

/// The objects under the prefix, with their paths below it, sorted; refused when there are none, too
/// many, or more bytes than `--max-bytes`.
async fn list(source: &Source, args: &PullArgs) -> Result<Vec<(String, ObjectMeta)>, Error> {
    let uri = args.uri.as_str();
    let metas: Vec<ObjectMeta> = source
        .store
        .list(Some(&source.path))
        .try_collect()
        .await
        .map_err(|e| fail(uri, source::explain(uri, &e)))?;
    let mut objects = Vec::with_capacity(metas.len());
    for meta in metas {
        let Some(parts) = meta.location.prefix_match(&source.path) else { continue };
        let relative = parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
        // Zero-byte keys ending in '/' are the "folders" some consoles create.
        if relative.is_empty() || meta.location.as_ref().ends_with('/') {
            continue;
        }
        objects.push((relative, meta));
    }
    objects.sort_by(|a, b| a.0.cmp(&b.0));
    if objects.is_empty() {
        return Err(fail(uri, "no objects under this prefix"));
    }
    if objects.len() > unpack::MAX_ENTRIES {
        return Err(fail(uri, format!("more than {} objects under this prefix", unpack::MAX_ENTRIES)));
    }
    let total: u64 = objects.iter().map(|(_, m)| m.size).sum();
    if let Some(max) = args.max_bytes.filter(|&max| total > max) {
        return Err(fail(
            uri,
            format!("the objects under this prefix hold {total} bytes, more than --max-bytes {max}"),
        ));
    }
    Ok(objects)
}

async fn download_all(
    source: &Source,
    args: &PullArgs,
    objects: &[(String, ObjectMeta)],
    staged: &Path,
) -> Result<String, Error> {
    let uri = args.uri.as_str();
    let mut manifest = String::new();
    let mut remaining = args.max_bytes;
    for (relative, meta) in objects {
        let to = unpack::inside(staged, Path::new(relative)).map_err(|reason| fail(uri, reason))?;
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| fail(uri, format!("cannot create {}: {e}", parent.display())))?;
        }
        let digest = fetch(source, &meta.location, args, remaining, &to).await?;
        remaining = remaining.map(|r| r.saturating_sub(meta.size));
        manifest.push_str(&format!("{digest}  {relative}\n"));
    }
    Ok(format!("{:x}", Sha256::digest(manifest.as_bytes())))
}

/// A fresh, empty directory beside `--dest` for the tree to be assembled in.
async fn stage(args: &PullArgs) -> Result<PathBuf, Error> {
    let uri = args.uri.as_str();
    let staged = super::temporary_path(&args.dest);
    let _ = tokio::fs::remove_dir_all(&staged).await;
    tokio::fs::create_dir_all(&staged)
        .await
        .map_err(|e| fail(uri, format!("cannot create {}: {e}", staged.display())))?;
    Ok(staged)
}

/// Arranges the staged tree into a model directory and moves it to `--dest`, replacing what a previous
/// run of the pull left there. The staging directory is gone afterwards either way.
async fn finish(staged: &Path, args: &PullArgs) -> Result<(), Error> {
    let result = place(staged, args).await;
    // After a move, only an unwrapped archive's outer directory is left; after a failure, everything.
    let _ = tokio::fs::remove_dir_all(staged).await;
    result
}

async fn place(staged: &Path, args: &PullArgs) -> Result<(), Error> {
    let uri = args.uri.as_str();
    let model = tree::arrange(staged, args.model_version).map_err(|reason| fail(uri, reason))?;
    if tokio::fs::symlink_metadata(&args.dest).await.is_ok() {
        tokio::fs::remove_dir_all(&args.dest)
            .await
            .map_err(|e| fail(uri, format!("cannot replace {}: {e}", args.dest.display())))?;
    }
    tokio::fs::rename(&model, &args.dest)
        .await
        .map_err(|e| fail(uri, format!("cannot move the model into {}: {e}", args.dest.display())))
}
