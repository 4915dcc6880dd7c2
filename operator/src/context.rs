//! What every reconcile shares: the client, the operator's settings, the served APIs, the Event
//! recorder, metrics and the per-object failure counts. Its own module so that the controller (which
//! makes it) and the reconciler (which reads it) both depend on it and not on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::discovery::Capabilities;
use crate::metrics::Metrics;
use crate::resources::MANAGER;

/// What the operator was started with that reconciles need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server_image: String,
    pub edge_image: String,
    /// How often an unchanged ModelDeployment is looked at again.
    pub resync: Duration,
    /// How soon a ModelDeployment with problems (missing Secret, unavailable API) is looked at again.
    pub retry: Duration,
    /// Prometheus that KEDA ScaledObjects query for the pods metrics.
    pub prometheus_url: Option<String>,
    /// Images a spec may name (`allowlist.rs`); empty: any.
    pub allowed_images: Vec<String>,
}

/// Shared by every reconcile.
pub struct Context {
    /// Client for the API server.
    pub client: Client,
    /// Images and intervals from the command line.
    pub settings: Settings,
    /// Optional APIs the cluster serves, refreshed by a background task.
    pub capabilities: Arc<RwLock<Capabilities>>,
    /// Publishes Events about ModelDeployments.
    pub recorder: Recorder,
    /// Reconcile counters and durations.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per ModelDeployment, for exponential backoff.
    pub failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        capabilities: Arc<RwLock<Capabilities>>,
        metrics: Arc<Metrics>,
    ) -> Context {
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            capabilities,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn capabilities(&self) -> Capabilities {
        *self.capabilities.read().unwrap_or_else(|p| p.into_inner())
    }
}
