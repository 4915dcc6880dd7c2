//! The Open Inference Protocol over gRPC on `--grpc-port`: `inference.GRPCInferenceService`
//! (`proto/grpc_service.proto`) and the standard `grpc.health.v1` service, beside the REST API and
//! sharing its state. `infer.rs` answers ModelInfer, `codec.rs` turns messages into the REST path's requests, `convert.rs` answers
//! Triton's configuration and statistics extensions, `status.rs` maps errors to gRPC codes.

pub mod codec;
pub mod convert;
pub mod infer;
pub mod service;
pub mod status;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::error::Error;
use crate::http::SharedState;
use crate::proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// How often readiness is re-read for `grpc.health.v1`; a change is published at once.
const HEALTH_REFRESH: Duration = Duration::from_millis(100);

/// The largest message accepted or sent, as `--max-body-bytes` bounds a REST body.
pub struct Limits {
    pub max_message_bytes: usize,
}

/// Binds `addr` and serves gRPC until `stop` resolves, then finishes the calls under way.
pub async fn serve(
    addr: SocketAddr,
    state: SharedState,
    limits: Limits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<JoinHandle<Result<(), Error>>, Error> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "gRPC listening");
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(reporter, state.clone()));
    let inference = GrpcInferenceServiceServer::new(service::Inference { state })
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(usize::MAX);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(tokio::spawn(async move {
        Server::builder()
            .add_service(health)
            .add_service(inference)
            .serve_with_incoming_shutdown(incoming, stop)
            .await
            .map_err(|e| Error::Serve { what: "gRPC", source: e.into() })
    }))
}

/// Keeps `grpc.health.v1` in step with readiness: the whole server ("") and the inference service.
async fn report_health(reporter: tonic_health::server::HealthReporter, state: SharedState) {
    let name = "inference.GRPCInferenceService";
    loop {
        let status = if state.ready() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        reporter.set_service_status(name, status).await;
        tokio::time::sleep(HEALTH_REFRESH).await;
    }
}
