//! The inference run that precedes readiness, so that the first caller does not pay for ONNX Runtime's
//! lazy initialisation. Its input comes from samples the user ships with the model (`model_warmup` in a
//! Triton `config.pbtxt`, then `<model>/warmup.json`, an Open Inference Protocol request body), else it
//! is made up: zeros with every open dimension set to 1. A made-up input can be invalid for a model that ONNX Runtime loads fine (an
//! STFT needs at least two samples), so only the user's own sample is allowed to stop start-up.

use std::path::{Path, PathBuf};

use super::Runner;
use super::signature::Signature;
use crate::error::Error;
use crate::protocol::{DataType, Tensor, TensorData, decode_request};

/// The file name of a model's warm-up sample, next to its version directories.
pub const SAMPLE_FILE: &str = "warmup.json";

/// Where a model's warm-up input comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum WarmUp {
    /// A request body the user supplied; it must succeed.
    Sample { path: PathBuf, body: Vec<u8> },
    /// `model_warmup` requests from the `config.pbtxt` at `path`; each must succeed.
    Triton { path: PathBuf, samples: Vec<crate::model::triton::warmup::Sample> },
    /// Zeros shaped like the signature; a failure is logged and counted, not fatal.
    Synthetic,
}

/// How a warm-up went when it did not stop start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The synthetic input was refused: the model is served anyway, and this says why.
    SyntheticFailed(String),
}

impl WarmUp {
    /// The sample at `path` if one is there, else a synthetic warm-up.
    pub fn find(path: Option<&Path>) -> Result<WarmUp, Error> {
        let Some(path) = path.filter(|p| p.exists()) else {
            return Ok(WarmUp::Synthetic);
        };
        let body = std::fs::read(path).map_err(|e| Error::ModelConfig {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        Ok(WarmUp::Sample { path: path.to_path_buf(), body })
    }

    /// Runs the warm-up on one instance of `model`.
    pub fn run(&self, runner: &mut dyn Runner, signature: &Signature, model: &str) -> Result<Outcome, Error> {
        match self {
            WarmUp::Synthetic => Ok(match runner.run(synthetic_inputs(signature)) {
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::SyntheticFailed(e.message),
            }),
            WarmUp::Sample { path, body } => {
                let fail = |reason: String| Error::ModelConfig {
                    path: path.clone(),
                    reason: format!("the warm-up sample of model '{model}' {reason}"),
                };
                let mut request =
                    decode_request(body, None).map_err(|e| fail(format!("is not a valid request: {e}")))?;
                signature
                    .check(model, &mut request, 0)
                    .map_err(|e| fail(format!("does not fit the model: {e}")))?;
                runner.run(request.inputs).map_err(|e| fail(format!("failed: {}", e.message)))?;
                Ok(Outcome::Done)
            }
            WarmUp::Triton { path, samples } => {
                for sample in samples {
                    run_triton(runner, signature, model, sample).map_err(|reason| Error::ModelConfig {
                        path: path.clone(),
                        reason: format!("model_warmup '{}' of model '{model}' {reason}", sample.name),
                    })?;
                }
                Ok(Outcome::Done)
            }
        }
    }
}

fn run_triton(
    runner: &mut dyn Runner,
    signature: &Signature,
    model: &str,
    sample: &crate::model::triton::warmup::Sample,
) -> Result<(), String> {
    let mut request = crate::protocol::InferRequest {
        id: None,
        inputs: sample.inputs.clone(),
        outputs: vec![],
        binary_output: false,
        timeout: None,
    };
    signature.check(model, &mut request, 0).map_err(|e| format!("does not fit the model: {e}"))?;
    for _ in 0..sample.count {
        runner.run(request.inputs.clone()).map_err(|e| format!("failed: {}", e.message))?;
    }
    Ok(())
}

/// One row of zeros (empty strings for BYTES), with every open dimension set to 1.
pub fn synthetic_inputs(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec.dims.iter().map(|&d| usize::try_from(d).unwrap_or(1)).collect();
            let n: usize = shape.iter().product();
            Tensor { name: spec.name.clone(), shape, data: zeros(spec.datatype, n) }
        })
        .collect()
}

/// `n` zeros of `datatype` (empty strings for BYTES).
pub fn zeros(datatype: DataType, n: usize) -> TensorData {
    match datatype {
        DataType::Bool => TensorData::Bool(vec![false; n]),
        DataType::Uint8 => TensorData::Uint8(vec![0; n]),
        DataType::Int8 => TensorData::Int8(vec![0; n]),
        DataType::Int16 => TensorData::Int16(vec![0; n]),
        DataType::Int32 => TensorData::Int32(vec![0; n]),
        DataType::Int64 => TensorData::Int64(vec![0; n]),
        DataType::Fp16 => TensorData::Fp16(vec![half::f16::ZERO; n]),
        DataType::Fp32 => TensorData::Fp32(vec![0.0; n]),
        DataType::Fp64 => TensorData::Fp64(vec![0.0; n]),
        DataType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunError;
    use crate::model::signature::TensorSpec;

    fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, dims: dims.to_vec() }
    }

    fn signature() -> Signature {
        Signature { inputs: vec![spec("x", DataType::Fp32, &[-1, 3])], outputs: vec![] }
    }

    /// Refuses inputs shorter than `min_rows`, as a model with an STFT refuses a single sample.
    struct NeedsRows {
        min_rows: usize,
        seen: Vec<Vec<usize>>,
    }

    impl Runner for NeedsRows {
        fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
            self.seen.push(inputs[0].shape.clone());
            if inputs[0].shape[0] < self.min_rows {
                return Err(RunError {
                    message: "pad length must be at least 2".into(),
                    invalid_input: true,
                });
            }
            Ok(vec![])
        }
    }

    #[test]
    fn synthetic_inputs_fill_open_dimensions_with_one() {
        let sig = Signature {
            inputs: vec![spec("x", DataType::Fp32, &[-1, 3]), spec("k", DataType::Int64, &[])],
            outputs: vec![],
        };
        let inputs = synthetic_inputs(&sig);
        assert_eq!(inputs[0].shape, vec![1, 3]);
        assert_eq!(inputs[0].data, TensorData::Fp32(vec![0.0; 3]));
        assert_eq!(inputs[1].shape, Vec::<usize>::new());
        assert_eq!(inputs[1].data, TensorData::Int64(vec![0]));
    }

    #[test]
    fn a_refused_synthetic_warm_up_is_reported_without_stopping_start_up() {
        let mut runner = NeedsRows { min_rows: 2, seen: vec![] };
        let outcome = WarmUp::Synthetic.run(&mut runner, &signature(), "vad").unwrap();
        assert_eq!(outcome, Outcome::SyntheticFailed("pad length must be at least 2".into()));
    }

    #[test]
    fn a_users_sample_is_run_as_given() {
        let body = br#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}]}"#;
        let sample = WarmUp::Sample { path: "m/warmup.json".into(), body: body.to_vec() };
        let mut runner = NeedsRows { min_rows: 2, seen: vec![] };
        assert_eq!(sample.run(&mut runner, &signature(), "vad").unwrap(), Outcome::Done);
        assert_eq!(runner.seen, vec![vec![2, 3]]);
    }

    #[test]
    fn a_users_sample_that_fails_stops_start_up_naming_the_file() {
        let body = br#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#;
        let sample = WarmUp::Sample { path: "m/warmup.json".into(), body: body.to_vec() };
        let mut runner = NeedsRows { min_rows: 2, seen: vec![] };
        assert_eq!(
            sample.run(&mut runner, &signature(), "vad").unwrap_err().to_string(),
            "m/warmup.json: the warm-up sample of model 'vad' failed: pad length must be at least 2"
        );
        let wrong = WarmUp::Sample { path: "m/warmup.json".into(), body: br#"{"inputs":[]}"#.to_vec() };
        assert_eq!(
            wrong.run(&mut runner, &signature(), "vad").unwrap_err().to_string(),
            "m/warmup.json: the warm-up sample of model 'vad' does not fit the model: model 'vad' needs input \
             'x' (FP32 [-1, 3]) but the request has no inputs"
        );
        let garbled = WarmUp::Sample { path: "m/warmup.json".into(), body: b"{".to_vec() };
        let err = garbled.run(&mut runner, &signature(), "vad").unwrap_err().to_string();
        assert!(
            err.starts_with("m/warmup.json: the warm-up sample of model 'vad' is not a valid request: "),
            "{err}"
        );
    }
}
