//! Reads an inference request's body under `--max-body-bytes`, the memory budget and the idle timeout
//! between chunks. A body over the limit is answered with 413 at once, and the rest of it is read and
//! thrown away, for a bounded time and size, before the connection may close (what nginx calls a
//! lingering close): a client that is still sending, as Python's `http.client` does, would otherwise get
//! a reset instead of the answer.

use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::limits::RequestLimits;
use crate::error::Error;

/// How long, and how much, the rest of a refused body is read before the connection is dropped.
const LINGER_TIME: Duration = Duration::from_secs(10);
const LINGER_BYTES: usize = 1 << 30;

/// A body this small that is refused before it was needed (a request shed at arrival) is read and
/// thrown away, for at most `DISCARD_TIME`: it is almost always in the socket's buffer already, and
/// reading it keeps the connection open. Left unread, the connection closes (`close.rs`), and under
/// overload, when refusals are most of the traffic, every refusal would cost the client and the server
/// a new connection.
const DISCARD_BYTES: u64 = 64 * 1024;
const DISCARD_TIME: Duration = Duration::from_millis(100);

/// What a body is charged against the memory budget, per byte: the body itself, the tensors decoded
/// from it, the outputs and the encoded response are all about its size for most models.
const CHARGE_PER_BYTE: usize = 4;

/// A whole body, with its share of the memory budget held until this is dropped.
pub struct Charged {
    pub bytes: Bytes,
    _budget: OwnedSemaphorePermit,
}

/// The whole body, or an error as soon as it is known to exceed `limit` (413), not to fit the memory
/// budget now (503), or to have stalled (408).
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    limits: &RequestLimits,
) -> Result<Charged, Error> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit) {
        linger(stream);
        return Err(Error::PayloadTooLarge { limit });
    }
    // Charged before a byte is buffered; a body of unknown length is charged chunk by chunk.
    let mut budget = match limits.charge(declared.unwrap_or(0).saturating_mul(CHARGE_PER_BYTE)) {
        Ok(permit) => permit,
        Err(e) => {
            linger(stream);
            return Err(e);
        }
    };
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let next = tokio::time::timeout(limits.body_read_timeout, stream.next()).await;
        let chunk = match next {
            Err(_) => return Err(Error::BodyTimeout { idle: limits.body_read_timeout }),
            Ok(None) => break,
            Ok(Some(chunk)) => {
                chunk.map_err(|e| Error::BadRequest(format!("cannot read the request body: {e}")))?
            }
        };
        total += chunk.len();
        let charged = match (total > limit, declared) {
            (true, _) => Err(Error::PayloadTooLarge { limit }),
            (false, Some(_)) => Ok(()),
            (false, None) => limits.charge(chunk.len() * CHARGE_PER_BYTE).map(|more| budget.merge(more)),
        };
        if let Err(e) = charged {
            linger(stream);
            return Err(e);
        }
        parts.push(chunk);
    }
    let bytes = match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => parts.concat().into(),
    };
    Ok(Charged { bytes, _budget: budget })
}

/// Reads and throws away a body of at most `DISCARD_BYTES` (by its declared length), so that the
/// connection may serve the client's next request; a larger, unsized or slower one is left unread.
/// Whether it was read to its end.
pub async fn discard_small(body: Body) -> bool {
    if body.size_hint().upper().is_none_or(|n| n > DISCARD_BYTES) {
        return false;
    }
    let read = tokio::time::timeout(DISCARD_TIME, axum::body::to_bytes(body, DISCARD_BYTES as usize)).await;
    matches!(read, Ok(Ok(_)))
}

/// Reads and discards what the client still sends, off the request's task, so the answer goes out now.
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

    fn limits() -> RequestLimits {
        RequestLimits::new(8, Duration::from_secs(5), Duration::from_secs(5), 1 << 20)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_returned_whole() {
        let body = read(Body::from("0123456789"), &length(10), 10, &limits()).await.unwrap();
        assert_eq!(body.bytes, Bytes::from("0123456789"));
    }

    #[tokio::test]
    async fn only_a_body_of_at_most_64_kib_by_its_declared_length_is_read_and_thrown_away() {
        assert!(discard_small(Body::from(vec![b' '; 64 * 1024])).await);
        assert!(!discard_small(Body::from(vec![b' '; 64 * 1024 + 1])).await);
        let unknown = Body::from_stream(futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("x"))]));
        assert!(!discard_small(unknown).await, "a body of unknown length may be any length");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let err = read(Body::from("0123456789"), &length(11), 10, &limits()).await.err().unwrap();
        assert_eq!(err.to_string(), "request body is larger than the 10-byte limit");
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_refused_when_it_crosses_it() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from("012345")), Ok(Bytes::from("6789")), Ok(Bytes::from("X"))];
        let body = Body::from_stream(futures::stream::iter(chunks));
        let err = read(body, &HeaderMap::new(), 10, &limits()).await.err().unwrap();
        assert_eq!(err.to_string(), "request body is larger than the 10-byte limit");
    }

    #[tokio::test]
    async fn a_chunked_body_is_charged_as_it_arrives_and_given_back_when_dropped() {
        let limits = RequestLimits::new(8, Duration::from_secs(5), Duration::from_secs(5), 8 * 1024);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(vec![b' '; 1024]))];
        let body =
            read(Body::from_stream(futures::stream::iter(chunks)), &HeaderMap::new(), 1 << 20, &limits)
                .await
                .unwrap();
        assert_eq!(
            limits.charge(8 * 1024).err().unwrap().to_string(),
            "the server holds as many request bytes as its 8192-byte budget allows; retry shortly"
        );
        drop(body);
        assert!(limits.charge(8 * 1024).is_ok());
    }
}
