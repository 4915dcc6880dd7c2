//! One ONNX Runtime session: built once from a model file, then run batch after batch on its own thread.

use std::path::Path;

use half::f16;
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Outlet, Tensor as OrtTensor, TensorElementType, ValueType};

use super::signature::{Signature, TensorSpec};
use super::{RunError, Runner};
use crate::error::Error;
use crate::model::device::Device;
use crate::protocol::{DataType, Tensor, TensorData};

/// A loaded model: the ONNX Runtime session and the signature read from it.
pub struct OnnxSession {
    session: Session,
    signature: Signature,
}

impl OnnxSession {
    /// Builds a session for `path`. Errors name the file and say why it could not be loaded.
    pub fn load(env: &Environment, path: &Path, options: SessionOptions) -> Result<Self, Error> {
        let fail = |reason: String| Error::ModelLoad {
            path: path.to_path_buf(),
            // ONNX Runtime's messages end in a newline.
            source: reason.trim_end().into(),
        };
        let session = build(env, path, options).map_err(|e| fail(e.to_string()))?;
        let signature = Signature {
            inputs: specs(session.inputs()).map_err(|e| fail(format!("input {e}")))?,
            outputs: specs(session.outputs()).map_err(|e| fail(format!("output {e}")))?,
        };
        Ok(OnnxSession { session, signature })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }
}

/// How a session runs: threads, spinning, device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub intra_op_threads: usize,
    /// Whether idle intra-op threads spin before sleeping (ONNX Runtime's default): faster hand-offs
    /// between operators and batches, for some busy CPU while idle.
    pub intra_op_spinning: bool,
    pub device: Device,
}

fn build(env: &Environment, path: &Path, options: SessionOptions) -> ort::Result<Session> {
    let SessionOptions { intra_op_threads, intra_op_spinning, device } = options;
    let mut builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(intra_op_threads)?
        .with_inter_threads(1)?
        .with_parallel_execution(false)?
        .with_intra_op_spinning(intra_op_spinning)?;
    if let Device::Cuda(id) = device {
        builder = builder.with_execution_providers([ort::ep::CUDA::default()
            .with_device_id(id)
            .build()
            .error_on_failure()])?;
    }
    builder.commit_from_file(path)
}

fn specs(outlets: &[Outlet]) -> Result<Vec<TensorSpec>, String> {
    outlets
        .iter()
        .map(|o| match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
                name: o.name().to_string(),
                datatype: datatype(*ty)
                    .ok_or_else(|| format!("'{}' has element type {ty}, which is not served", o.name()))?,
                dims: shape.to_vec(),
            }),
            other => Err(format!("'{}' is a {other}, not a tensor", o.name())),
        })
        .collect()
}

fn datatype(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

impl Runner for OnnxSession {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        let values = inputs
            .into_iter()
            .map(|t| Ok((t.name, to_value(t.shape, t.data)?)))
            .collect::<Result<Vec<(String, SessionInputValue<'static>)>, String>>()?;
        let outputs = self.session.run(values).map_err(|e| RunError {
            message: e.to_string().trim_end().to_string(),
            invalid_input: e.code() == ort::ErrorCode::InvalidArgument,
        })?;
        let mut result = Vec::with_capacity(self.signature.outputs.len());
        for spec in &self.signature.outputs {
            let value =
                outputs.get(&spec.name).ok_or_else(|| format!("output '{}' is missing", spec.name))?;
            let (shape, data) = from_value(value).map_err(|e| format!("output '{}': {e}", spec.name))?;
            result.push(Tensor { name: spec.name.clone(), shape, data });
        }
        Ok(result)
    }
}

fn to_value(shape: Vec<usize>, data: TensorData) -> Result<SessionInputValue<'static>, String> {
    macro_rules! tensor {
        ($v:expr) => {
            OrtTensor::from_array((shape, $v)).map_err(|e| e.to_string())?.into()
        };
    }
    Ok(match data {
        TensorData::Bool(v) => tensor!(v),
        TensorData::Uint8(v) => tensor!(v),
        TensorData::Int8(v) => tensor!(v),
        TensorData::Int16(v) => tensor!(v),
        TensorData::Int32(v) => tensor!(v),
        TensorData::Int64(v) => tensor!(v),
        TensorData::Fp16(v) => tensor!(v),
        TensorData::Fp32(v) => tensor!(v),
        TensorData::Fp64(v) => tensor!(v),
        TensorData::Bytes(v) => {
            // The signature check has already refused anything that is not NUL-free UTF-8.
            let strings: Vec<String> =
                v.into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect();
            OrtTensor::from_string_array((shape, strings.as_slice())).map_err(|e| e.to_string())?.into()
        }
    })
}

fn from_value(value: &DynValue) -> Result<(Vec<usize>, TensorData), String> {
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(format!("is a {other}, not a tensor")),
    };
    macro_rules! extract {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value.try_extract_tensor::<$t>().map_err(|e| e.to_string())?;
            (dims(shape), TensorData::$variant(data.to_vec()))
        }};
    }
    Ok(match ty {
        TensorElementType::Bool => extract!(bool, Bool),
        TensorElementType::Uint8 => extract!(u8, Uint8),
        TensorElementType::Int8 => extract!(i8, Int8),
        TensorElementType::Int16 => extract!(i16, Int16),
        TensorElementType::Int32 => extract!(i32, Int32),
        TensorElementType::Int64 => extract!(i64, Int64),
        TensorElementType::Float16 => extract!(f16, Fp16),
        TensorElementType::Float32 => extract!(f32, Fp32),
        TensorElementType::Float64 => extract!(f64, Fp64),
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            (dims(shape), TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()))
        }
        other => return Err(format!("has element type {other}, which is not served")),
    })
}

fn dims(shape: &[i64]) -> Vec<usize> {
    shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect()
}
