//! What every request handler shares: the models (once loaded), metrics, and the server's health.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::auth::Access;
use crate::db::PredictionLog;
use crate::error::Error;
use crate::http::limits::RequestLimits;
use crate::metrics::Metrics;
use crate::registry::ModelRegistry;

pub struct AppState {
    registry: OnceLock<Arc<ModelRegistry>>,
    pub metrics: Arc<Metrics>,
    /// The prediction log, when DATABASE_URL is set.
    pub predictions: Option<Arc<PredictionLog>>,
    shutting_down: AtomicBool,
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// API keys and what is open without one.
    pub access: Access,
    /// Requests in flight, handler and body timeouts, the memory budget.
    pub limits: RequestLimits,
}

impl AppState {
    pub fn new(
        metrics: Arc<Metrics>,
        max_body_bytes: usize,
        predictions: Option<Arc<PredictionLog>>,
    ) -> AppState {
        AppState {
            registry: OnceLock::new(),
            metrics,
            predictions,
            shutting_down: AtomicBool::new(false),
            max_body_bytes,
            access: Access::default(),
            limits: RequestLimits::new(512, Duration::from_secs(60), Duration::from_secs(30), 256 << 20),
        }
    }

    pub fn with_limits(self, limits: RequestLimits) -> AppState {
        AppState { limits, ..self }
    }

    pub fn with_access(self, access: Access) -> AppState {
        AppState { access, ..self }
    }

    /// Publishes the loaded models; from now on the server is ready (until shutdown begins).
    pub fn set_registry(&self, registry: Arc<ModelRegistry>) {
        if self.registry.set(registry).is_err() {
            tracing::warn!("models were already loaded; keeping the first set");
        }
    }

    /// The models, or 503 while they are still loading.
    pub fn registry(&self) -> Result<&Arc<ModelRegistry>, Error> {
        self.registry.get().ok_or(Error::Loading)
    }

    /// Readiness: models loaded and no shutdown under way.
    /// Readiness: models loaded, every instance thread alive, and no shutdown under way.
    pub fn ready(&self) -> bool {
        self.registry.get().is_some_and(|r| r.all().all(|m| m.healthy()))
            && !self.shutting_down.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
