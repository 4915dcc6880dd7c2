//! `kubeinfer-server serve`: listen at once (liveness answers while models load), load every model on a
//! blocking thread, turn ready, and on SIGTERM drain and stop.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use ort::environment::Environment;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::auth::{Access, KeyFile};
use crate::config::ServeArgs;
use crate::db::PredictionLog;
use crate::error::Error;
use crate::http::limits::{self, RequestLimits};
use crate::listener::{self, ConnectionLimits};
use crate::metrics::Metrics;
use crate::model::runtime::{self, ORT_VERSION};
use crate::model::settings::ModelSettings;
use crate::registry::ModelRegistry;
use crate::state::AppState;
use crate::{grpc, http, shutdown};

/// How often the API keys file is re-read; a mounted Secret changes within the kubelet's sync period.
const KEYS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

fn access(args: &ServeArgs) -> Result<Access, Error> {
    let keys = args.exposure.api_keys_file.as_deref().map(KeyFile::open).transpose()?.map(Arc::new);
    match &keys {
        Some(file) => {
            file.clone().watch(KEYS_RELOAD_INTERVAL);
            tracing::info!(path = ?args.exposure.api_keys_file, "API keys required for inference and /api");
        }
        None => tracing::warn!("no --api-keys-file: anyone who reaches the port can run inference"),
    }
    Ok(Access { keys, public_prediction_log: args.exposure.public_prediction_log })
}

pub async fn run(args: ServeArgs) -> Result<(), Error> {
    let library = runtime::library_path(args.ort_library.as_deref());
    // Before anything else: every later use of ONNX Runtime depends on the library being loaded.
    let env = runtime::environment(&library)?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    let defaults = args.batching.settings();
    defaults.validate().map_err(|reason| Error::ModelConfig { path: "command line".into(), reason })?;

    let metrics = Arc::new(Metrics::new(ORT_VERSION));
    let wake_delay = crate::lag::histogram();
    metrics.register(Box::new(wake_delay.clone()));
    tokio::spawn(crate::lag::probe(crate::lag::PERIOD, move |late| wake_delay.observe(late.as_secs_f64())));
    let predictions = match &args.database.database_url {
        Some(url) => Some(PredictionLog::start(url, &args.database, &metrics)?),
        None => {
            tracing::info!("no DATABASE_URL: the prediction log is off");
            None
        }
    };
    let budget = args.exposure.max_inflight_bytes.unwrap_or_else(limits::default_budget);
    tracing::info!(bytes = budget, "in-flight request memory budget");
    let limits = RequestLimits::new(
        args.exposure.max_concurrent_requests,
        args.exposure.handler_timeout,
        args.exposure.body_read_timeout,
        budget,
    );
    let state = Arc::new(
        AppState::new(metrics.clone(), args.max_body_bytes, predictions.clone())
            .with_access(access(&args)?)
            .with_limits(limits),
    );
    let addr = SocketAddr::new(args.http_host, args.http_port);
    let listener =
        TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "listening");
    let draining = Arc::new(Notify::new());
    let connections = ConnectionLimits {
        header_read_timeout: args.exposure.header_read_timeout,
        max_connections: args.exposure.max_connections,
    };
    let metrics_server = match args.exposure.metrics_port {
        Some(port) => Some(serve_metrics(&args, port, state.clone(), connections).await?),
        None => None,
    };
    let grpc_server = match args.grpc_port {
        0 => None,
        port => {
            let stopped = draining.clone();
            let limits = grpc::Limits { max_message_bytes: args.max_body_bytes };
            let addr = SocketAddr::new(args.http_host, port);
            Some(grpc::serve(addr, state.clone(), limits, async move { stopped.notified().await }).await?)
        }
    };
    let server = tokio::spawn(listener::serve(
        listener,
        http::api_app(state.clone(), metrics_server.is_none()),
        connections,
        shutdown::drain(state.clone(), args.shutdown_delay, draining.clone()),
    ));
    let registry = match load_models(&args, defaults, env, &metrics).await {
        Ok(registry) => registry,
        Err(e) => {
            server.abort();
            if let Some(grpc) = &grpc_server {
                grpc.abort();
            }
            return Err(e);
        }
    };
    state.set_registry(registry.clone());
    tracing::info!(models = registry.all().count(), "all models loaded; ready");

    let served = until_drained(server, grpc_server, &draining, args.drain_timeout).await;
    // Scrapes go on through the drain, so the last numbers of a stopping pod are seen.
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    stop(registry, predictions).await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds `--metrics-port` and serves /metrics on it until aborted.
async fn serve_metrics(
    args: &ServeArgs,
    port: u16,
    state: Arc<AppState>,
    connections: ConnectionLimits,
) -> Result<JoinHandle<()>, Error> {
    let addr = SocketAddr::new(args.http_host, port);
    let listener =
        TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "metrics listening");
    Ok(tokio::spawn(listener::serve(listener, http::metrics_app(state), connections, std::future::pending())))
}

/// Loads every model on a blocking thread (it reads files and builds sessions for seconds).
async fn load_models(
    args: &ServeArgs,
    defaults: ModelSettings,
    env: Environment,
    metrics: &Arc<Metrics>,
) -> Result<Arc<ModelRegistry>, Error> {
    let (repo, files, device, metrics) =
        (args.model_repository.clone(), args.model.clone(), args.device, metrics.clone());
    let load = move || ModelRegistry::load(repo.as_deref(), &files, &defaults, &env, device, &metrics);
    match tokio::task::spawn_blocking(load).await {
        Ok(loaded) => loaded.map(Arc::new),
        Err(join) => Err(Error::ModelLoad {
            path: args.model_repository.clone().unwrap_or_default(),
            source: join.into(),
        }),
    }
}

/// Waits for the HTTP and gRPC servers to finish their graceful shutdown, for at most `timeout` once
/// they stopped accepting: a client that never finishes its request must not keep the pod past its grace
/// period.
async fn until_drained(
    http: JoinHandle<()>,
    grpc: Option<JoinHandle<Result<(), Error>>>,
    draining: &Notify,
    timeout: Duration,
) -> Result<(), Error> {
    let aborts: Vec<_> =
        std::iter::once(http.abort_handle()).chain(grpc.iter().map(|g| g.abort_handle())).collect();
    let deadline = async {
        draining.notified().await;
        tokio::time::sleep(timeout).await;
    };
    let both = async {
        let http = http.await.map_err(|join| Error::Serve { what: "HTTP", source: join.into() });
        let grpc = match grpc {
            Some(grpc) => grpc
                .await
                .map_err(|join| Error::Serve { what: "gRPC", source: join.into() })
                .and_then(|served| served),
            None => Ok(()),
        };
        http.and(grpc)
    };
    tokio::select! {
        served = both => served,
        () = deadline => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "drain timeout: closing the connections still open");
            aborts.iter().for_each(|a| a.abort());
            Ok(())
        }
    }
}

/// How long the instance threads get to finish at exit. After a complete drain they are idle and stop
/// at once; only a drain cut short leaves one inside a batch, whose caller is gone anyway.
const INSTANCE_STOP: Duration = Duration::from_secs(5);

/// Stops the instance threads (each finishes its batch) and flushes the prediction log. The threads
/// get `INSTANCE_STOP` at most: a batch stuck in a huge model must not hold the log's last rows back
/// (main's runtime shutdown then abandons them). Worst case from SIGTERM: shutdown delay + drain
/// timeout + 5 s + the log's shutdown grace (5 + 30 + 5 + 10 s by default, within the pod's 60 s).
async fn stop(registry: Arc<ModelRegistry>, predictions: Option<Arc<PredictionLog>>) {
    let stopping = tokio::task::spawn_blocking(move || registry.shutdown());
    if tokio::time::timeout(INSTANCE_STOP, stopping).await.is_err() {
        tracing::warn!("model instances still busy after {INSTANCE_STOP:?}; exiting without them");
    }
    if let Some(log) = predictions {
        log.shutdown().await;
    }
}
