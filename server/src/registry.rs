//! The served models: scans the repository, loads and warms up every version, starts its batcher, and
//! answers "which model is this request for".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::environment::Environment;

use crate::batch::{BatchConfig, Batcher, Limits};
use crate::error::Error;
use crate::load;
use crate::metrics::{Metrics, ModelMetrics, Protocol};
use crate::model::Runner;
use crate::model::device::Device;
use crate::model::layout;
use crate::model::layout::ModelFile;
use crate::model::settings::ModelSettings;
use crate::model::signature::Signature;
use crate::model::triton::TritonConfig;
use crate::outcome::Outcome;
use crate::protocol::{InferRequest, OutputToSend};
use crate::stats::TritonStats;

/// What a model version is: where it came from, its signature and how it is served.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub version: u64,
    pub path: PathBuf,
    pub signature: Signature,
    pub settings: ModelSettings,
    pub device: Device,
    /// The model's Triton `config.pbtxt`, when it has one.
    pub triton: Option<Arc<TritonConfig>>,
}

/// One loaded model version with its batcher.
pub struct ServedModel {
    pub info: ModelInfo,
    /// Most rows a request may carry (its `max_batch_size`), or 0 when the model cannot batch (fixed or
    /// missing batch dimension) or batching is off. Separate requests share a batch only with
    /// `dynamic_batching` on.
    pub max_rows: usize,
    pub stats: Arc<TritonStats>,
    pub metrics: ModelMetrics,
    batcher: Batcher,
}

/// The result of one inference, ready to encode.
#[derive(Debug)]
pub struct Inferred {
    pub outputs: Vec<OutputToSend>,
    pub queue_time: Duration,
    pub compute_time: Duration,
    pub batch_rows: usize,
}

impl ServedModel {
    /// Starts the batcher over `runners` (one per instance).
    pub fn start(
        info: ModelInfo,
        runners: Vec<Box<dyn Runner>>,
        metrics: ModelMetrics,
    ) -> Result<ServedModel, Error> {
        let max_rows = if batches(&info)? { info.settings.max_batch_size } else { 0 };
        let stats = Arc::new(TritonStats::default());
        let settings = &info.settings;
        let stacked = if settings.dynamic_batching { max_rows } else { 0 };
        let config = BatchConfig {
            limits: Limits {
                max_rows: stacked,
                max_delay: settings.max_queue_delay,
                preferred: settings.preferred_batch_sizes.clone(),
                target: settings.latency_target,
            },
            capacity: info.settings.queue_capacity,
            idle_spin: info.settings.idle_spin,
            probe: settings.latency_target.map(|_| crate::model::warmup::synthetic_inputs(&info.signature)),
        };
        let batcher = Batcher::start(&info.name, runners, config, &metrics, stats.clone()).map_err(|e| {
            Error::ModelLoad {
                path: info.path.clone(),
                source: format!("cannot start its threads: {e}").into(),
            }
        })?;
        Ok(ServedModel { info, max_rows, stats, metrics, batcher })
    }

    /// Runs `work`, one request's whole handling, and counts the request once under `protocol`: by how it
    /// ended, or as cancelled if it is dropped first (the caller went away, the handler was cut off).
    pub async fn counted<T>(
        &self,
        protocol: Protocol,
        started: Instant,
        work: impl Future<Output = Result<(T, Inferred), Error>>,
    ) -> Result<T, Error> {
        let observation = self.metrics.over(protocol).start(started);
        let result = work.await;
        match &result {
            Ok((_, done)) => observation.finish(Outcome::Success, done.queue_time + done.compute_time),
            Err(e) => observation.finish(e.outcome(), Duration::ZERO),
        }
        result.map(|(answer, _)| answer)
    }

    /// With a latency target, sheds a request before its body is read when even one row could not be
    /// answered in time. Not logged in the prediction log: under overload these are the requests the
    /// server must spend least on.
    pub fn admit_early(&self) -> Result<(), Error> {
        self.batcher.admit_early()
    }

    /// Validates `req`, queues it and waits for its outputs. The caller counts the outcome, once and
    /// with its protocol (`metrics::Observation`); the stats extension is kept here.
    pub async fn infer(&self, mut req: InferRequest) -> Result<Inferred, Error> {
        let started = Instant::now();
        let checked = match self.info.signature.check(&self.info.name, &mut req, self.max_rows) {
            Ok(c) => c,
            Err(message) => return Err(Error::BadRequest(message)),
        };
        let elements: usize = req.inputs.iter().map(|t| t.data.len()).sum();
        if elements > self.info.settings.max_elements {
            return Err(Error::BadRequest(format!(
                "the request's inputs hold {elements} elements, more than the {} that model '{}' accepts per \
                 request (max_elements)",
                self.info.settings.max_elements, self.info.name
            )));
        }
        let settings = &self.info.settings;
        let timeout =
            req.timeout.filter(|_| settings.allow_timeout_override).unwrap_or(settings.request_timeout);
        let result = self.batcher.submit(req.inputs, checked.rows, checked.alone, timeout).await;
        let total = started.elapsed();
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                self.stats.record_request(false, total, Duration::ZERO);
                return Err(e);
            }
        };
        self.stats.record_request(true, total, done.queue_time);
        self.metrics.queue.observe(done.queue_time.as_secs_f64());
        self.metrics.windows.queue_wait.record(Instant::now(), done.queue_time.as_secs_f64());
        let mut all: Vec<Option<_>> = done.outputs.into_iter().map(Some).collect();
        let outputs = checked
            .outputs
            .iter()
            .zip(req.outputs.iter().map(|o| o.binary).chain(std::iter::repeat(None)))
            .filter_map(|(&i, binary)| {
                let tensor = all.get_mut(i)?.take()?;
                Some(OutputToSend { tensor, binary: binary.unwrap_or(req.binary_output) })
            })
            .collect();
        Ok(Inferred {
            outputs,
            queue_time: done.queue_time,
            compute_time: done.compute_time,
            batch_rows: done.batch_rows,
        })
    }

    pub fn queue_len(&self) -> usize {
        self.batcher.queue_len()
    }

    /// False once one of the model's instance threads has died.
    pub fn healthy(&self) -> bool {
        self.batcher.healthy()
    }

    fn shutdown(&self) {
        self.batcher.shutdown();
    }
}

/// Every version of one model, and the one served when a request names none.
pub struct ModelVersions {
    pub versions: BTreeMap<u64, Arc<ServedModel>>,
    pub default: u64,
}

#[derive(Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, ModelVersions>,
}

impl ModelRegistry {
    /// Loads every model in `repo` and every `files` entry. Blocking: ONNX Runtime builds and warms up
    /// each session here.
    pub fn load(
        repo: Option<&Path>,
        files: &[ModelFile],
        defaults: &ModelSettings,
        env: &Environment,
        device: Device,
        metrics: &Metrics,
    ) -> Result<ModelRegistry, Error> {
        let mut registry = ModelRegistry::default();
        let scanned = match repo {
            Some(r) => layout::scan(r)?,
            None => Vec::new(),
        };
        for dir in layout::with_files(scanned, files)? {
            let plan = load::plan(&dir, defaults, device)?;
            for (version, path) in &dir.versions {
                let model = load::version(&dir.name, *version, path, &plan, env, metrics)?;
                registry.insert(model, plan.settings.default_version);
            }
        }
        Ok(registry)
    }

    /// Adds a started model; `default_version` picks the version served when a request names none.
    pub fn insert(&mut self, model: ServedModel, default_version: Option<u64>) {
        let entry = self
            .models
            .entry(model.info.name.clone())
            .or_insert_with(|| ModelVersions { versions: BTreeMap::new(), default: 0 });
        entry.versions.insert(model.info.version, Arc::new(model));
        entry.default = match default_version {
            Some(v) => v,
            None => entry.versions.keys().next_back().copied().unwrap_or(0),
        };
    }

    /// The model a request names; `version` is the URL's version segment, if any.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, Error> {
        let model = self.models.get(name).ok_or_else(|| Error::ModelNotFound(name.to_string()))?;
        let not_found = || Error::VersionNotFound {
            model: name.to_string(),
            version: version.unwrap_or_default().to_string(),
            available: model.versions.keys().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
        };
        let v = match version {
            None => model.default,
            Some(s) => s.parse::<u64>().map_err(|_| not_found())?,
        };
        model.versions.get(&v).cloned().ok_or_else(not_found)
    }

    /// The versions served of model `name`, ascending; empty for a model not served.
    pub fn versions(&self, name: &str) -> Vec<String> {
        self.models.get(name).map(|m| m.versions.keys().map(u64::to_string).collect()).unwrap_or_default()
    }

    pub fn models(&self) -> impl Iterator<Item = (&String, &ModelVersions)> {
        self.models.iter()
    }

    /// Every served version, model by model.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.values().flat_map(|m| m.versions.values())
    }

    /// Stops accepting requests and waits for every queued one to be answered.
    pub fn shutdown(&self) {
        for model in self.all() {
            model.shutdown();
        }
    }
}

/// Whether requests to this model are stacked: as its configuration forces, else when every input and
/// output has an open first dimension. Forcing it on still needs inputs that can be stacked.
fn batches(info: &ModelInfo) -> Result<bool, Error> {
    let Some(forced) = info.settings.batchable else {
        return Ok(info.signature.batchable());
    };
    if let Some(input) = info.signature.inputs.iter().find(|t| forced && !t.open_leading_dim()) {
        return Err(Error::ModelLoad {
            path: info.path.clone(),
            source: format!(
                "batchable = true, but input '{}' has shape {:?}, whose first dimension is not open, so \
                 requests cannot be stacked along it",
                input.name, input.dims
            )
            .into(),
        });
    }
    Ok(forced)
}
