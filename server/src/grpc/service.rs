//! `inference.GRPCInferenceService`: the same registry, batcher, API keys and error messages as REST,
//! reached over gRPC.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert;
use crate::auth::Scope;
use crate::http::SharedState;
use crate::http::health::EXTENSIONS;
use crate::model::signature::TensorSpec;
use crate::proto::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::*;
use crate::registry::ServedModel;

pub struct Inference {
    pub state: SharedState,
}

impl Inference {
    /// The request's API key (the `authorization` metadata) allows inference, when keys are required.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let authorization = request.metadata().get("authorization").map(|v| v.as_bytes());
        Ok(self.state.access.allow("grpc", authorization, Scope::Infer)?)
    }

    /// The model a request names, once its API key (when keys are required) has the infer scope.
    fn model<T>(&self, request: &Request<T>, name: &str, version: &str) -> Result<Arc<ServedModel>, Status> {
        self.authorize(request)?;
        let version = Some(version).filter(|v| !v.is_empty());
        Ok(self.state.registry()?.get(name, version)?)
    }
}

fn tensors(specs: &[TensorSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.as_str().into(),
            shape: s.dims.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.state.ready() }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let model = self.model(&request, &request.get_ref().name, &request.get_ref().version)?;
        Ok(Response::new(ModelReadyResponse { ready: model.healthy() && !self.state.shutting_down() }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "kubeinfer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let req = request.get_ref();
        let model = self.model(&request, &req.name, &req.version)?;
        let versions = match req.version.as_str() {
            "" => self.state.registry()?.versions(&model.info.name),
            _ => vec![model.info.version.to_string()],
        };
        let signature = &model.info.signature;
        Ok(Response::new(ModelMetadataResponse {
            name: model.info.name.clone(),
            versions,
            platform: "onnxruntime_onnx".into(),
            inputs: tensors(&signature.inputs),
            outputs: tensors(&signature.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let started = Instant::now();
        let model = self.model(&request, &request.get_ref().model_name, &request.get_ref().model_version)?;
        Ok(Response::new(super::infer::infer(&self.state, &model, request, started).await?))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let model = self.model(&request, &request.get_ref().name, &request.get_ref().version)?;
        let config = convert::model_config(&crate::triton_config::of(&model))?;
        Ok(Response::new(ModelConfigResponse { config: Some(config) }))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let req = request.get_ref();
        let registry = self.state.registry()?;
        let models: Vec<Arc<ServedModel>> = match req.name.as_str() {
            "" => {
                self.authorize(&request)?;
                registry.all().cloned().collect()
            }
            name if req.version.is_empty() => {
                self.model(&request, name, "")?;
                registry.all().filter(|m| m.info.name == name).cloned().collect()
            }
            name => vec![self.model(&request, name, &req.version)?],
        };
        let model_stats = models
            .iter()
            .map(|m| convert::statistics(&m.stats.snapshot(&m.info.name, m.info.version)))
            .collect();
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }
}
