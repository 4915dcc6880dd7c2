//! What a `config.pbtxt` asks for, in kubeinfer's terms. Pure: the parsed config in, settings out.
//! A field kubeinfer cannot honour either stops the model with a message saying so (when serving without
//! it would answer differently from Triton) or becomes a warning (when it only tunes speed).

use super::proto::model_config::SchedulingChoice;
use super::proto::model_instance_group::Kind;
use super::proto::model_queue_policy::TimeoutAction;
use super::proto::model_version_policy::PolicyChoice;
use super::proto::{ModelConfig, ModelDynamicBatching, ModelInstanceGroup};
use crate::model::device::Device;
use crate::model::settings::Overrides;

/// The model file Triton looks for in each version directory when `default_model_filename` is unset.
pub const DEFAULT_FILENAME: &str = "model.onnx";

/// Which of the version directories are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The highest N (Triton's default is the latest one).
    Latest(u32),
    All,
    Specific(Vec<u64>),
}

impl VersionPolicy {
    /// The versions to serve out of those present (ascending); a specific version that is missing is an error.
    pub fn select(&self, present: &[u64]) -> Result<Vec<u64>, String> {
        match self {
            VersionPolicy::All => Ok(present.to_vec()),
            VersionPolicy::Latest(n) => Ok(present[present.len().saturating_sub(*n as usize)..].to_vec()),
            VersionPolicy::Specific(wanted) => {
                let missing: Vec<String> =
                    wanted.iter().filter(|v| !present.contains(v)).map(u64::to_string).collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "version_policy names version {} but the repository has no such directory",
                        missing.join(", ")
                    ));
                }
                Ok(present.iter().copied().filter(|v| wanted.contains(v)).collect())
            }
        }
    }
}

/// Where the model's instances run, from `instance_group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// KIND_AUTO or KIND_MODEL, or no instance group: the server's `--device`.
    Server,
    Cpu,
    /// KIND_GPU, on the one GPU listed in `gpus`, else the server's GPU.
    Gpu(Option<i32>),
}

impl Placement {
    pub fn device(self, server: Device) -> Result<Device, String> {
        match (self, server) {
            (Placement::Server, d) => Ok(d),
            (Placement::Cpu, _) => Ok(Device::Cpu),
            (Placement::Gpu(Some(id)), _) => Ok(Device::Cuda(id)),
            (Placement::Gpu(None), Device::Cuda(id)) => Ok(Device::Cuda(id)),
            (Placement::Gpu(None), Device::Cpu) => {
                Err("instance_group asks for KIND_GPU, but this server runs on the CPU (--device cpu); use \
                 KIND_CPU or KIND_AUTO, or give the server a GPU"
                    .into())
            }
        }
    }
}

/// A `config.pbtxt` read for serving.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpreted {
    pub filename: String,
    pub versions: VersionPolicy,
    pub overrides: Overrides,
    pub placement: Placement,
    /// Fields that are accepted but do nothing here, one sentence each, for the start-up log.
    pub ignored: Vec<String>,
}

/// Reads `config` for the model directory named `model`.
pub fn interpret(config: &ModelConfig, model: &str) -> Result<Interpreted, String> {
    refuse_unsupported(config, model)?;
    let mut ignored = Vec::new();
    let max_batch_size = usize::try_from(config.max_batch_size)
        .map_err(|_| format!("max_batch_size must be 0 or more, got {}", config.max_batch_size))?;
    let mut overrides = Overrides {
        max_batch_size: Some(max_batch_size),
        batchable: Some(max_batch_size > 0),
        dynamic_batching: Some(false),
        ..Overrides::default()
    };
    if let Some(SchedulingChoice::DynamicBatching(batching)) = &config.scheduling_choice {
        if max_batch_size == 0 {
            ignored
                .push("dynamic_batching is ignored: max_batch_size is 0, so requests are not batched".into());
        } else {
            dynamic_batching(batching, max_batch_size, &mut overrides, &mut ignored)?;
        }
    }
    let (instances, placement) = instance_groups(&config.instance_group)?;
    overrides.instances = instances;
    for (key, value) in &config.parameters {
        match key.as_str() {
            "intra_op_thread_count" => {
                let n = value.string_value.trim().parse::<usize>().map_err(|_| {
                    format!(
                        "parameters: intra_op_thread_count must be a number, got {:?}",
                        value.string_value
                    )
                })?;
                overrides.intra_op_threads = Some(n);
            }
            other => ignored.push(format!("parameters: {other} is ignored")),
        }
    }
    if config.optimization.is_some() {
        ignored.push("optimization is ignored: ONNX Runtime's own graph optimisations apply".into());
    }
    if config.response_cache.as_ref().is_some_and(|c| c.enable) {
        ignored.push("response_cache is ignored: kubeinfer does not cache responses".into());
    }
    if config.model_repository_agents.as_ref().is_some_and(|a| !a.agents.is_empty()) {
        ignored.push("model_repository_agents is ignored".into());
    }
    Ok(Interpreted {
        filename: filename(&config.default_model_filename)?,
        versions: version_policy(config),
        overrides,
        placement,
        ignored,
    })
}

/// Fields whose absence of support would change answers, not only speed.
fn refuse_unsupported(config: &ModelConfig, model: &str) -> Result<(), String> {
    if !config.name.is_empty() && config.name != model {
        return Err(format!(
            "name is {:?} but the model's directory is {model:?}; they must be the same, as in Triton",
            config.name
        ));
    }
    let onnx_platform = matches!(config.platform.as_str(), "" | "onnxruntime_onnx");
    let onnx_backend = matches!(config.backend.as_str(), "" | "onnxruntime");
    if !onnx_platform || !onnx_backend {
        let what = if onnx_platform {
            format!("backend {:?}", config.backend)
        } else {
            format!("platform {:?}", config.platform)
        };
        return Err(format!(
            "{what} is not ONNX: kubeinfer serves ONNX models only (platform \"onnxruntime_onnx\" or backend \
             \"onnxruntime\"); export the model to ONNX, or serve it with the server of its framework"
        ));
    }
    let refuse = |field: &str, why: &str| Err(format!("{field} is not supported: {why}"));
    match &config.scheduling_choice {
        Some(SchedulingChoice::SequenceBatching(_)) => {
            return refuse(
                "sequence_batching",
                "kubeinfer answers each request on its own; pass a stateful \
                model's state as an input and read it back from an output",
            );
        }
        Some(SchedulingChoice::EnsembleScheduling(_)) => {
            return refuse(
                "ensemble_scheduling",
                "serve each step as its own model and chain them in the client",
            );
        }
        _ => {}
    }
    if !config.runtime.is_empty() {
        return refuse("runtime", "ONNX Runtime is the only runtime");
    }
    if !config.batch_input.is_empty() || !config.batch_output.is_empty() {
        return refuse("batch_input and batch_output", "ragged batches are not formed");
    }
    if config.model_operations.as_ref().is_some_and(|o| !o.op_library_filename.is_empty()) {
        return refuse("model_operations", "custom operator libraries are not loaded");
    }
    if config.model_transaction_policy.as_ref().is_some_and(|p| p.decoupled) {
        return refuse(
            "model_transaction_policy { decoupled: true }",
            "each request gets exactly one response",
        );
    }
    Ok(())
}

fn dynamic_batching(
    batching: &ModelDynamicBatching,
    max_batch_size: usize,
    overrides: &mut Overrides,
    ignored: &mut Vec<String>,
) -> Result<(), String> {
    overrides.dynamic_batching = Some(true);
    overrides.max_queue_delay = Some(format!("{}us", batching.max_queue_delay_microseconds));
    let mut preferred = Vec::with_capacity(batching.preferred_batch_size.len());
    for &size in &batching.preferred_batch_size {
        match usize::try_from(size) {
            Ok(s) if (1..=max_batch_size).contains(&s) => preferred.push(s),
            _ => {
                return Err(format!(
                    "dynamic_batching: preferred_batch_size {size} must be between 1 and max_batch_size \
                     ({max_batch_size})"
                ));
            }
        }
    }
    preferred.sort_unstable();
    preferred.dedup();
    overrides.preferred_batch_sizes = Some(preferred);
    if let Some(policy) = &batching.default_queue_policy {
        if policy.timeout_action == TimeoutAction::Delay as i32 {
            return Err("dynamic_batching: default_queue_policy timeout_action DELAY is not supported: a \
                        request past its timeout is rejected (REJECT)"
                .into());
        }
        if policy.default_timeout_microseconds > 0 {
            overrides.request_timeout = Some(format!("{}us", policy.default_timeout_microseconds));
        }
        if policy.max_queue_size > 0 {
            overrides.queue_capacity = Some(policy.max_queue_size as usize);
        }
        overrides.allow_timeout_override = Some(policy.allow_timeout_override);
    }
    if batching.priority_levels > 0 || !batching.priority_queue_policy.is_empty() {
        ignored
            .push("dynamic_batching: priority levels are ignored; requests are served oldest first".into());
    }
    Ok(())
}

/// The number of instances and where they run. Triton makes `count` instances per listed GPU.
fn instance_groups(groups: &[ModelInstanceGroup]) -> Result<(Option<usize>, Placement), String> {
    let Some(first) = groups.first() else {
        return Ok((None, Placement::Server));
    };
    let mut total = 0usize;
    let mut gpus: Vec<i32> = Vec::new();
    for group in groups {
        if group.kind != first.kind {
            return Err(
                "instance_group mixes kinds; kubeinfer runs all of a model's instances on one device".into(),
            );
        }
        let count = match group.count {
            0 => 1,
            n => usize::try_from(n).map_err(|_| format!("instance_group count must be above 0, got {n}"))?,
        };
        total += count * group.gpus.len().max(1);
        gpus.extend(&group.gpus);
    }
    gpus.sort_unstable();
    gpus.dedup();
    let kind = Kind::try_from(first.kind).unwrap_or(Kind::Auto);
    let placement = match kind {
        Kind::Cpu => Placement::Cpu,
        Kind::Auto | Kind::Model if gpus.is_empty() => Placement::Server,
        Kind::Gpu | Kind::Auto | Kind::Model => match gpus.as_slice() {
            [] => Placement::Gpu(None),
            [one] => Placement::Gpu(Some(*one)),
            many => {
                return Err(format!(
                    "instance_group lists GPUs {many:?}; a kubeinfer server uses one GPU, so run one replica \
                     per GPU instead"
                ));
            }
        },
    };
    Ok((Some(total), placement))
}

fn version_policy(config: &ModelConfig) -> VersionPolicy {
    match config.version_policy.as_ref().and_then(|p| p.policy_choice.as_ref()) {
        None => VersionPolicy::Latest(1),
        Some(PolicyChoice::Latest(l)) => VersionPolicy::Latest(l.num_versions.max(1)),
        Some(PolicyChoice::All(_)) => VersionPolicy::All,
        Some(PolicyChoice::Specific(s)) => {
            VersionPolicy::Specific(s.versions.iter().filter_map(|&v| u64::try_from(v).ok()).collect())
        }
    }
}

fn filename(configured: &str) -> Result<String, String> {
    if configured.is_empty() {
        return Ok(DEFAULT_FILENAME.into());
    }
    if configured.contains('/') || configured == "." || configured == ".." {
        return Err(format!("default_model_filename {configured:?} must be a file name, not a path"));
    }
    Ok(configured.into())
}

#[cfg(test)]
#[path = "interpret_tests.rs"]
mod tests;
