//! Triton's model configuration and statistics as gRPC messages, from the same values the REST
//! extensions answer with: the configuration through its JSON (one builder for both protocols), the
//! statistics field by field.

use prost_reflect::DynamicMessage;

use crate::error::Error;
use crate::proto::{InferBatchStatistics, InferStatistics, ModelConfig, ModelStatistics, StatisticDuration};
use crate::stats::{StatDuration, TritonStatsJson};

/// `/v2/models/{m}/config`'s JSON as the ModelConfig message (protobuf's JSON mapping reads Triton's
/// field and enum names as they are).
pub fn model_config(json: &serde_json::Value) -> Result<ModelConfig, Error> {
    let fail = |reason: String| Error::Inference { model: json["name"].to_string(), source: reason.into() };
    let descriptor = crate::model::triton::message_descriptor("inference.ModelConfig").map_err(fail)?;
    let message = DynamicMessage::deserialize(descriptor, json.clone())
        .map_err(|e| fail(format!("its configuration does not fit ModelConfig: {e}")))?;
    message.transcode_to::<ModelConfig>().map_err(|e| fail(format!("cannot encode its configuration: {e}")))
}

fn duration(d: &StatDuration) -> Option<StatisticDuration> {
    Some(StatisticDuration { count: d.count, ns: d.ns })
}

pub fn statistics(s: &TritonStatsJson) -> ModelStatistics {
    let i = &s.inference_stats;
    ModelStatistics {
        name: s.name.clone(),
        version: s.version.clone(),
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(InferStatistics {
            success: duration(&i.success),
            fail: duration(&i.fail),
            queue: duration(&i.queue),
            compute_input: duration(&i.compute_input),
            compute_infer: duration(&i.compute_infer),
            compute_output: duration(&i.compute_output),
            cache_hit: duration(&i.cache_hit),
            cache_miss: duration(&i.cache_miss),
        }),
        batch_stats: s
            .batch_stats
            .iter()
            .map(|b| InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(&b.compute_input),
                compute_infer: duration(&b.compute_infer),
                compute_output: duration(&b.compute_output),
            })
            .collect(),
        memory_usage: vec![],
        response_stats: Default::default(),
    }
}
