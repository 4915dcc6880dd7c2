//! What one request may take: a bound on requests in flight (429 beyond it, as TEI does), a deadline for
//! the whole handler, an idle timeout between body chunks, and a memory budget in bytes that request
//! bodies are charged against before they are buffered (503 + Retry-After when it is spent), so that a
//! burst of large requests is refused instead of getting the pod OOM-killed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use super::SharedState;
use crate::error::Error;

/// The budget is kept in KiB so that a `u32` permit count covers terabytes.
const UNIT: usize = 1024;

pub struct RequestLimits {
    requests: Semaphore,
    max_requests: usize,
    pub handler_timeout: Duration,
    pub body_read_timeout: Duration,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

impl RequestLimits {
    pub fn new(
        max_requests: usize,
        handler_timeout: Duration,
        body_read_timeout: Duration,
        budget_bytes: usize,
    ) -> RequestLimits {
        let units = budget_bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        RequestLimits {
            requests: Semaphore::new(max_requests.min(Semaphore::MAX_PERMITS)),
            max_requests,
            handler_timeout,
            body_read_timeout,
            budget: Arc::new(Semaphore::new(units)),
            budget_bytes,
        }
    }

    /// One of the --max-concurrent-requests slots, without waiting; held until dropped.
    pub fn slot(&self) -> Result<SemaphorePermit<'_>, Error> {
        self.requests.try_acquire().map_err(|_| Error::TooManyRequests { limit: self.max_requests })
    }

    /// Runs `work`, bounded by --handler-timeout (503 past it).
    pub async fn within_handler_timeout<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.handler_timeout, work)
            .await
            .map_err(|_| Error::HandlerTimeout { limit: self.handler_timeout })
    }

    /// Charges `bytes` of request data against the memory budget, without waiting: the permit gives them
    /// back when dropped (when the response has been built).
    pub fn charge(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Error> {
        let units = bytes.div_ceil(UNIT);
        let over = || Error::MemoryBudget { budget: self.budget_bytes };
        if bytes > self.budget_bytes {
            return Err(Error::LargerThanBudget { bytes, budget: self.budget_bytes });
        }
        let units = u32::try_from(units).map_err(|_| over())?;
        self.budget.clone().try_acquire_many_owned(units).map_err(|_| over())
    }
}

/// Admits the request if fewer than --max-concurrent-requests are in flight, and bounds its handler by
/// --handler-timeout.
pub async fn admit(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    if request.extensions().get::<MatchedPath>().is_some_and(|r| super::is_probe(r.as_str())) {
        return next.run(request).await;
    }
    let limits = &state.limits;
    let _slot = match limits.slot() {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    limits.within_handler_timeout(next.run(request)).await.unwrap_or_else(IntoResponse::into_response)
}

/// A quarter of the container's memory limit (cgroup v2, else v1), else 256 MiB.
pub fn default_budget() -> usize {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| memory_limit(&text));
    limit.map_or(256 << 20, |bytes| bytes / 4)
}

/// The memory limit in a cgroup file, or `None` for "max" (v2) or v1's page-rounded "unlimited".
fn memory_limit(text: &str) -> Option<usize> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 60).then(|| usize::try_from(bytes).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_limit_is_read_and_unlimited_is_none() {
        assert_eq!(memory_limit("536870912\n"), Some(512 << 20));
        assert_eq!(memory_limit("max\n"), None);
        assert_eq!(memory_limit("9223372036854771712\n"), None);
    }

    #[test]
    fn the_budget_is_charged_and_given_back() {
        let limits = RequestLimits::new(8, Duration::from_secs(1), Duration::from_secs(1), 4 * UNIT);
        let held = limits.charge(3 * UNIT).unwrap();
        assert_eq!(
            limits.charge(2 * UNIT).unwrap_err().to_string(),
            "the server holds as many request bytes as its 4096-byte budget allows; retry shortly"
        );
        drop(held);
        assert!(limits.charge(4 * UNIT).is_ok());
        assert_eq!(
            limits.charge(5 * UNIT).unwrap_err().to_string(),
            "the request's 5120 bytes exceed the server's 4096-byte in-flight memory budget"
        );
    }
}
