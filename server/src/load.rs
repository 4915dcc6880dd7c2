//! Loads one model directory: its settings (server defaults, then `config.pbtxt`, then `config.toml`),
//! the device it runs on, an ONNX Runtime session per instance, the signature requests are checked
//! against, and the warm-up. Blocking.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ort::environment::Environment;

use crate::error::Error;
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::Runner;
use crate::model::device::Device;
use crate::model::layout::ModelDir;
use crate::model::session::{OnnxSession, SessionOptions};
use crate::model::settings::{ModelSettings, Overrides};
use crate::model::signature::Signature;
use crate::model::triton::{self, TritonConfig};
use crate::model::warmup::{Outcome, WarmUp};
use crate::registry::{ModelInfo, ServedModel};

/// What every version of one model directory shares.
pub struct ModelPlan {
    pub settings: ModelSettings,
    pub device: Device,
    pub warm_ups: Vec<WarmUp>,
    pub triton: Option<Arc<TritonConfig>>,
}

/// Reads `dir`'s configuration: `config.toml` wins over `config.pbtxt` field by field, and both over
/// the server's flags.
pub fn plan(dir: &ModelDir, defaults: &ModelSettings, server_device: Device) -> Result<ModelPlan, Error> {
    let pbtxt = dir.triton.as_ref().map(|t| t.interpreted.overrides.clone()).unwrap_or_default();
    let toml = match &dir.config {
        Some(path) => Overrides::read(path)?,
        None => Overrides::default(),
    };
    let blame = dir.config.as_ref().or(dir.triton.as_ref().map(|t| &t.path));
    let config_error = |reason: String| match blame {
        Some(path) => Error::ModelConfig { path: path.clone(), reason },
        None => Error::ModelConfig { path: dir.name.clone().into(), reason },
    };
    let settings = defaults.with(&toml.or(pbtxt)).map_err(config_error)?;
    if let Some(v) = settings.default_version
        && !dir.versions.iter().any(|(have, _)| *have == v)
    {
        return Err(config_error(format!("default_version {v} is not among the versions served")));
    }
    let device = match &dir.triton {
        Some(t) => t
            .interpreted
            .placement
            .device(server_device)
            .map_err(|reason| Error::ModelConfig { path: t.path.clone(), reason })?,
        None => server_device,
    };
    if let Some(t) = &dir.triton {
        for ignored in &t.interpreted.ignored {
            tracing::warn!(model = dir.name, path = %t.path.display(), "{ignored}");
        }
    }
    Ok(ModelPlan { settings, device, warm_ups: warm_ups(dir)?, triton: dir.triton.clone().map(Arc::new) })
}

/// The user's samples (`model_warmup`, then `warmup.json`), else a synthetic warm-up.
fn warm_ups(dir: &ModelDir) -> Result<Vec<WarmUp>, Error> {
    let mut found = Vec::new();
    // config.pbtxt sits in the model's directory, whose warmup/ holds the samples' data files.
    if let Some(t) = &dir.triton
        && let Some(model_dir) = t.path.parent()
        && !t.config.model_warmup.is_empty()
    {
        let samples = triton::warmup::samples(&t.config, model_dir)
            .map_err(|reason| Error::ModelConfig { path: t.path.clone(), reason })?;
        found.push(WarmUp::Triton { path: t.path.clone(), samples });
    }
    match WarmUp::find(dir.warmup.as_deref())? {
        WarmUp::Synthetic => {}
        sample => found.push(sample),
    }
    if found.is_empty() {
        found.push(WarmUp::Synthetic);
    }
    Ok(found)
}

/// Loads `version` of the planned model from `path` and starts its batcher.
pub fn version(
    name: &str,
    version: u64,
    path: &Path,
    plan: &ModelPlan,
    env: &Environment,
    metrics: &Metrics,
) -> Result<ServedModel, Error> {
    let started = Instant::now();
    let settings = &plan.settings;
    let model_metrics = metrics.for_model(name, version, settings.latency_target);
    let options = SessionOptions {
        intra_op_threads: settings.intra_op_threads,
        intra_op_spinning: settings.intra_op_spinning,
        device: plan.device,
    };
    let mut runners: Vec<Box<dyn Runner>> = Vec::with_capacity(settings.instances);
    let mut signature = None;
    for _ in 0..settings.instances {
        let mut session = OnnxSession::load(env, path, options)?;
        let sig = checked_signature(session.signature(), plan)?;
        for warm_up in &plan.warm_ups {
            warm(warm_up, &mut session, &sig, name, version, path, &model_metrics)?;
        }
        signature = Some(sig);
        runners.push(Box::new(session));
    }
    let signature = signature
        .ok_or_else(|| Error::ModelLoad { path: path.to_path_buf(), source: "no instances".into() })?;
    let elapsed = started.elapsed();
    model_metrics.load.set(elapsed.as_secs_f64());
    let info = ModelInfo {
        name: name.to_string(),
        version,
        path: path.to_path_buf(),
        signature,
        settings: settings.clone(),
        device: plan.device,
        triton: plan.triton.clone(),
    };
    let model = ServedModel::start(info, runners, model_metrics)?;
    tracing::info!(
        model = name,
        version,
        path = %path.display(),
        instances = settings.instances,
        max_batch_size = model.max_rows,
        load_ms = elapsed.as_millis() as u64,
        "model loaded"
    );
    Ok(model)
}

/// The model's own signature, narrowed by the inputs and outputs its `config.pbtxt` declares.
fn checked_signature(model: &Signature, plan: &ModelPlan) -> Result<Signature, Error> {
    match &plan.triton {
        Some(t) => triton::tensors::narrow(&t.config, model)
            .map_err(|reason| Error::ModelConfig { path: t.path.clone(), reason }),
        None => Ok(model.clone()),
    }
}

fn warm(
    warm_up: &WarmUp,
    session: &mut OnnxSession,
    signature: &Signature,
    name: &str,
    version: u64,
    path: &Path,
    metrics: &ModelMetrics,
) -> Result<(), Error> {
    if let Outcome::SyntheticFailed(reason) = warm_up.run(session, signature, name)? {
        // The model loaded; only the made-up input was wrong for it. The first real request pays
        // for the warm-up instead. A sample in warmup.json makes the warm-up exact.
        tracing::warn!(model = name, version, path = %path.display(), %reason,
            "the synthetic warm-up failed; serving the model anyway (ship a warmup.json to warm it up)");
        metrics.warmup_failures.inc();
    }
    Ok(())
}
