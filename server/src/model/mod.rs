//! Models: the repository layout, per-model settings, signatures and ONNX Runtime sessions.

pub mod layout;
pub mod runtime;
pub mod session;
pub mod settings;
pub mod signature;

use crate::protocol::{DataType, Tensor, TensorData};
use signature::Signature;

/// Runs one batch: inputs in the signature's order, outputs returned in the signature's order.
/// Implemented by the ONNX Runtime session, and by stand-ins in the batcher's tests.
pub trait Runner: Send + 'static {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError>;
}

/// A failed run. `invalid_input` marks failures the model blames on its inputs (ONNX Runtime's
/// INVALID_ARGUMENT), which are the caller's mistake when the batch held only their request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    pub message: String,
    pub invalid_input: bool,
}

impl From<String> for RunError {
    fn from(message: String) -> RunError {
        RunError { message, invalid_input: false }
    }
}

/// Inputs for the warm-up run at start-up: one row of zeros (empty strings for BYTES), with every open
/// dimension set to 1.
pub fn warm_up_inputs(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec.dims.iter().map(|&d| usize::try_from(d).unwrap_or(1)).collect();
            let n: usize = shape.iter().product();
            let data = match spec.datatype {
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
            };
            Tensor { name: spec.name.clone(), shape, data }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use signature::TensorSpec;

    #[test]
    fn warm_up_inputs_fill_open_dimensions_with_one() {
        let sig = Signature {
            inputs: vec![
                TensorSpec { name: "x".into(), datatype: DataType::Fp32, dims: vec![-1, 3], symbols: vec![] },
                TensorSpec { name: "k".into(), datatype: DataType::Int64, dims: vec![], symbols: vec![] },
            ],
            outputs: vec![],
        };
        let inputs = warm_up_inputs(&sig);
        assert_eq!(inputs[0].shape, vec![1, 3]);
        assert_eq!(inputs[0].data, TensorData::Fp32(vec![0.0; 3]));
        assert_eq!(inputs[1].shape, Vec::<usize>::new());
        assert_eq!(inputs[1].data, TensorData::Int64(vec![0]));
    }
}
