//! Reads an inference request's body under `--max-body-bytes`. A body over the limit is answered with 413
//! at once, and the rest of it is read and thrown away, for a bounded time and size, before the
//! connection may close (what nginx calls a lingering close): a client that is still sending, as Python's
//! `http.client` does, would otherwise get a reset instead of the answer.

use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{HeaderMap, header};
use futures::StreamExt;

use crate::error::Error;

/// How long, and how much, the rest of a refused body is read before the connection is dropped.
const LINGER_TIME: Duration = Duration::from_secs(10);
const LINGER_BYTES: usize = 1 << 30;

/// The whole body, or `PayloadTooLarge` as soon as it is known to exceed `limit`.
pub async fn read(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Error> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        linger(stream);
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("cannot read the request body: {e}")))?;
        total += chunk.len();
        if total > limit {
            linger(stream);
            return Err(Error::PayloadTooLarge { limit });
        }
        parts.push(chunk);
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => parts.concat().into(),
    })
}

/// Reads and discards what the client still sends, off the request's task, so the 413 goes out now.
fn linger(mut stream: BodyDataStream) {
    tokio::spawn(async move {
        let drain = async {
            let mut discarded = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                discarded += chunk.len();
                if discarded > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, n.into());
        h
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_returned_whole() {
        let body = read(Body::from("0123456789"), &length(10), 10).await.unwrap();
        assert_eq!(body, Bytes::from("0123456789"));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let err = read(Body::from("0123456789"), &length(11), 10).await.unwrap_err();
        assert_eq!(err.to_string(), "request body is larger than the 10-byte limit");
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_refused_when_it_crosses_it() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from("012345")), Ok(Bytes::from("6789")), Ok(Bytes::from("X"))];
        let body = Body::from_stream(futures::stream::iter(chunks));
        let err = read(body, &HeaderMap::new(), 10).await.unwrap_err();
        assert_eq!(err.to_string(), "request body is larger than the 10-byte limit");
    }
}
