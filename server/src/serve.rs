//! `kubeinfer-server serve`: listen at once (liveness answers while models load), load every model on a
//! blocking thread, turn ready, and on SIGTERM drain and stop.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::db::PredictionLog;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::runtime::{self, ORT_VERSION};
use crate::registry::Registry;
use crate::state::AppState;
use crate::{http, shutdown};

pub async fn run(args: ServeArgs) -> Result<(), Error> {
    let library = runtime::library_path(args.ort_library.as_deref());
    // Before anything else: every later use of ONNX Runtime depends on the library being loaded.
    let env = runtime::environment(&library)?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    let defaults = args.batching.settings();
    defaults.validate().map_err(|reason| Error::ModelConfig { path: "command line".into(), reason })?;

    let metrics = Arc::new(Metrics::new(ORT_VERSION));
    let predictions = match &args.database.database_url {
        Some(url) => Some(PredictionLog::start(url, &args.database, &metrics)?),
        None => {
            tracing::info!("no DATABASE_URL: the prediction log is off");
            None
        }
    };
    let state = Arc::new(AppState::new(metrics.clone(), args.max_body_bytes, predictions.clone()));
    let addr = SocketAddr::new(args.http_host, args.http_port);
    let listener =
        TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "listening");
    let listener = listener.tap_io(|tcp| {
        // Responses are written whole; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
    });
    let app = http::app(state.clone());
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown::drain(state.clone(), args.shutdown_delay))
            .into_future(),
    );

    let repo = args.model_repository.clone();
    let files = args.model.clone();
    let device = args.device;
    let load = move || Registry::load(repo.as_deref(), &files, &defaults, &env, device, &metrics);
    let loaded = tokio::task::spawn_blocking(load).await;
    let registry = match loaded {
        Ok(Ok(registry)) => Arc::new(registry),
        Ok(Err(e)) => {
            server.abort();
            return Err(e);
        }
        Err(join) => {
            server.abort();
            return Err(Error::ModelLoad {
                path: args.model_repository.unwrap_or_default(),
                reason: format!("loader crashed: {join}"),
            });
        }
    };
    state.set_registry(registry.clone());
    tracing::info!(models = registry.all().count(), "all models loaded; ready");

    let served = server.await;
    // Every accepted request has been answered; stop the instance threads and flush the log.
    tokio::task::spawn_blocking(move || registry.shutdown()).await.ok();
    if let Some(log) = predictions {
        log.shutdown().await;
    }
    match served {
        Ok(Ok(())) => {
            tracing::info!("stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(Error::Bind { addr: addr.to_string(), source: e }),
        Err(e) => Err(Error::Bind { addr: addr.to_string(), source: std::io::Error::other(e.to_string()) }),
    }
}
