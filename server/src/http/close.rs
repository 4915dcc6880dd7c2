//! `Connection: close` on an answer given before the request's body was read to its end: an unknown
//! route or model, a missing API key, a refused size or memory budget, a request over 64 KiB shed at
//! arrival (`body::discard_small` reads a smaller one through). hyper does not reuse such a connection
//! but closes it without saying so, and a client that pools connections (KServe's httpx client, once in
//! make test) sends its next request into the closing socket and gets a read error. Saying so makes it
//! open a new connection instead.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

pub async fn close_unread(request: Request, next: Next) -> Response {
    // No body, or an empty one (Content-Length: 0): nothing can be left unread.
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| Body::new(Tracked { inner, read: read.clone() }));
    let mut response = next.run(request).await;
    if !read.load(Ordering::Acquire) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The request body, noting when it has been read to its end.
struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_body_read_to_its_end_is_noted_and_one_left_unread_is_not() {
        let read = Arc::new(AtomicBool::new(false));
        let body = Tracked { inner: Body::from("0123456789"), read: read.clone() };
        assert!(!read.load(Ordering::Acquire));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123456789");
        assert!(read.load(Ordering::Acquire));

        let unread = Arc::new(AtomicBool::new(false));
        drop(Tracked { inner: Body::from("0123456789"), read: unread.clone() });
        assert!(!unread.load(Ordering::Acquire));
    }
}
