//! How one model is served: batching, queueing and threading knobs. Server-wide defaults come from the
//! command line; a Triton `config.pbtxt` overrides them per model, and `<model>/config.toml` overrides
//! both, field by field.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;
use crate::units::parse_duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSettings {
    /// Most rows one batch may hold; 0 turns batching off (one request per run).
    pub max_batch_size: usize,
    /// How long a batch below `max_batch_size` may wait for more requests; zero never waits.
    pub max_queue_delay: Duration,
    /// Requests that may wait in the queue before new ones get 503.
    pub queue_capacity: usize,
    /// Sessions running in parallel, each on its own thread.
    pub instances: usize,
    /// ONNX Runtime intra-op threads per session (0: ONNX Runtime's default).
    pub intra_op_threads: usize,
    /// Whether idle intra-op threads spin before sleeping.
    pub intra_op_spinning: bool,
    /// Longest a request may wait in the queue, when the caller sets no `timeout`.
    pub request_timeout: Duration,
    /// Version served when a request names none; the highest when unset.
    pub default_version: Option<u64>,
    /// How long an instance that ran out of work watches the queue before it sleeps.
    pub idle_spin: Duration,
    /// Most tensor elements one request's inputs may hold together (400 beyond): open dimensions let a
    /// caller ask for arbitrarily much compute.
    pub max_elements: usize,
    /// Whether requests are stacked along the first dimension: `None` decides from the model (every
    /// input and output has an open first dimension); `Some` is the user forcing it either way.
    pub batchable: Option<bool>,
    /// Whether separate requests are stacked into one batch. Off, each request runs by itself, still held
    /// to `max_batch_size` rows (Triton's `max_batch_size` without `dynamic_batching`).
    pub dynamic_batching: bool,
    /// Batch sizes to cut a batch at when it cannot fill `max_batch_size` (Triton's preferred_batch_size):
    /// the largest one the queue can make runs at once.
    pub preferred_batch_sizes: Vec<usize>,
    /// Whether a request's own `timeout` parameter replaces `request_timeout`.
    pub allow_timeout_override: bool,
    /// The latency objective: answer within this of arrival or shed (503). `None`: no objective.
    pub latency_target: Option<Duration>,
}

/// The keys `<model>/config.toml` may set; unknown keys are an error so that typos do not pass silently.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub max_batch_size: Option<usize>,
    pub max_queue_delay: Option<String>,
    pub queue_capacity: Option<usize>,
    pub instances: Option<usize>,
    pub intra_op_threads: Option<usize>,
    pub intra_op_spinning: Option<bool>,
    pub request_timeout: Option<String>,
    pub default_version: Option<u64>,
    pub idle_spin: Option<String>,
    pub batchable: Option<bool>,
    pub max_elements: Option<usize>,
    pub dynamic_batching: Option<bool>,
    pub preferred_batch_sizes: Option<Vec<usize>>,
    pub allow_timeout_override: Option<bool>,
    /// A duration, or "off" (to drop a server-wide --latency-target for this model).
    pub latency_target: Option<String>,
}

impl Overrides {
    pub fn read(path: &Path) -> Result<Overrides, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::ModelConfig { path: path.to_path_buf(), reason: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| Error::ModelConfig { path: path.to_path_buf(), reason: e.message().to_string() })
    }

    /// These overrides, with `lower`'s filling whatever these leave unset.
    pub fn or(self, lower: Overrides) -> Overrides {
        Overrides {
            max_batch_size: self.max_batch_size.or(lower.max_batch_size),
            max_queue_delay: self.max_queue_delay.or(lower.max_queue_delay),
            queue_capacity: self.queue_capacity.or(lower.queue_capacity),
            instances: self.instances.or(lower.instances),
            intra_op_threads: self.intra_op_threads.or(lower.intra_op_threads),
            intra_op_spinning: self.intra_op_spinning.or(lower.intra_op_spinning),
            request_timeout: self.request_timeout.or(lower.request_timeout),
            default_version: self.default_version.or(lower.default_version),
            idle_spin: self.idle_spin.or(lower.idle_spin),
            batchable: self.batchable.or(lower.batchable),
            max_elements: self.max_elements.or(lower.max_elements),
            dynamic_batching: self.dynamic_batching.or(lower.dynamic_batching),
            preferred_batch_sizes: self.preferred_batch_sizes.or(lower.preferred_batch_sizes),
            allow_timeout_override: self.allow_timeout_override.or(lower.allow_timeout_override),
            latency_target: self.latency_target.or(lower.latency_target),
        }
    }
}

impl ModelSettings {
    /// Applies `o` on top of these defaults and checks the result.
    pub fn with(&self, o: &Overrides) -> Result<ModelSettings, String> {
        let duration = |v: &Option<String>, default: Duration| match v {
            Some(s) => parse_duration(s),
            None => Ok(default),
        };
        let settings = ModelSettings {
            max_batch_size: o.max_batch_size.unwrap_or(self.max_batch_size),
            max_queue_delay: duration(&o.max_queue_delay, self.max_queue_delay)
                .map_err(|e| format!("max_queue_delay: {e}"))?,
            queue_capacity: o.queue_capacity.unwrap_or(self.queue_capacity),
            instances: o.instances.unwrap_or(self.instances),
            intra_op_threads: o.intra_op_threads.unwrap_or(self.intra_op_threads),
            intra_op_spinning: o.intra_op_spinning.unwrap_or(self.intra_op_spinning),
            request_timeout: duration(&o.request_timeout, self.request_timeout)
                .map_err(|e| format!("request_timeout: {e}"))?,
            default_version: o.default_version.or(self.default_version),
            idle_spin: duration(&o.idle_spin, self.idle_spin).map_err(|e| format!("idle_spin: {e}"))?,
            batchable: o.batchable.or(self.batchable),
            max_elements: o.max_elements.unwrap_or(self.max_elements),
            dynamic_batching: o.dynamic_batching.unwrap_or(self.dynamic_batching),
            preferred_batch_sizes: o
                .preferred_batch_sizes
                .clone()
                .unwrap_or_else(|| self.preferred_batch_sizes.clone()),
            allow_timeout_override: o.allow_timeout_override.unwrap_or(self.allow_timeout_override),
            latency_target: match o.latency_target.as_deref() {
                None => self.latency_target,
                Some("off") => None,
                Some(s) => Some(parse_duration(s).map_err(|e| format!("latency_target: {e}"))?),
            },
        };
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.instances == 0 || self.instances > 64 {
            return Err(format!("instances must be between 1 and 64, got {}", self.instances));
        }
        if self.queue_capacity == 0 {
            return Err("queue_capacity must be at least 1".into());
        }
        if self.max_batch_size > 65536 {
            return Err(format!("max_batch_size must be at most 65536, got {}", self.max_batch_size));
        }
        if self.intra_op_threads > 1024 {
            return Err(format!("intra_op_threads must be at most 1024, got {}", self.intra_op_threads));
        }
        if self.idle_spin > Duration::from_millis(10) {
            return Err(format!("idle_spin must be at most 10ms, got {:?}", self.idle_spin));
        }
        if self.max_elements == 0 {
            return Err("max_elements must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return Err("request_timeout must be above zero".into());
        }
        if self.latency_target.is_some_and(|t| t.is_zero()) {
            return Err("latency_target must be above zero (\"off\" turns it off)".into());
        }
        if let Some(&size) = self.preferred_batch_sizes.iter().find(|&&s| s == 0 || s > self.max_batch_size) {
            return Err(format!(
                "preferred_batch_sizes must be between 1 and max_batch_size ({}), got {size}",
                self.max_batch_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ModelSettings {
        ModelSettings {
            max_batch_size: 64,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 1024,
            instances: 1,
            intra_op_threads: 2,
            intra_op_spinning: true,
            request_timeout: Duration::from_secs(30),
            default_version: None,
            idle_spin: Duration::from_micros(100),
            batchable: None,
            max_elements: 1 << 24,
            dynamic_batching: true,
            preferred_batch_sizes: vec![],
            allow_timeout_override: true,
            latency_target: None,
        }
    }

    #[test]
    fn a_latency_target_is_set_per_model_and_off_drops_the_servers() {
        let target = |toml_text: &str, server: Option<Duration>| {
            let o: Overrides = toml::from_str(toml_text).unwrap();
            ModelSettings { latency_target: server, ..defaults() }.with(&o).map(|s| s.latency_target)
        };
        assert_eq!(target("latency_target = \"20ms\"", None), Ok(Some(Duration::from_millis(20))));
        assert_eq!(target("", Some(Duration::from_millis(50))), Ok(Some(Duration::from_millis(50))));
        assert_eq!(target("latency_target = \"off\"", Some(Duration::from_millis(50))), Ok(None));
        assert_eq!(
            target("latency_target = \"0ms\"", None),
            Err("latency_target must be above zero (\"off\" turns it off)".to_string())
        );
        assert!(target("latency_target = \"soon\"", None).unwrap_err().starts_with("latency_target: "));
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let o: Overrides = toml::from_str("max_batch_size = 8\nmax_queue_delay = \"2ms\"").unwrap();
        let s = defaults().with(&o).unwrap();
        assert_eq!(s.max_batch_size, 8);
        assert_eq!(s.max_queue_delay, Duration::from_millis(2));
        assert_eq!(s.queue_capacity, 1024);
    }

    #[test]
    fn config_toml_wins_over_config_pbtxt_field_by_field() {
        let toml = Overrides { max_batch_size: Some(4), ..Default::default() };
        let pbtxt = Overrides { max_batch_size: Some(16), queue_capacity: Some(8), ..Default::default() };
        let s = defaults().with(&toml.or(pbtxt)).unwrap();
        assert_eq!((s.max_batch_size, s.queue_capacity, s.instances), (4, 8, 1));
    }

    #[test]
    fn preferred_batch_sizes_must_fit_the_batch() {
        let o = Overrides { preferred_batch_sizes: Some(vec![4, 128]), ..Default::default() };
        assert_eq!(
            defaults().with(&o).unwrap_err(),
            "preferred_batch_sizes must be between 1 and max_batch_size (64), got 128"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = toml::from_str::<Overrides>("max_batch = 8").unwrap_err();
        assert!(err.message().starts_with("unknown field `max_batch`"), "{}", err.message());
    }

    #[test]
    fn out_of_range_values_are_explained() {
        let o = Overrides { instances: Some(0), ..Default::default() };
        assert_eq!(defaults().with(&o).unwrap_err(), "instances must be between 1 and 64, got 0");
        let o = Overrides { max_queue_delay: Some("soon".into()), ..Default::default() };
        assert_eq!(
            defaults().with(&o).unwrap_err(),
            "max_queue_delay: \"soon\" is not a duration; use a number with us, ms, s, m, h or d, e.g. 5ms"
        );
    }
}
