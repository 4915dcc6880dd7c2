//! Triton's `model_warmup`: requests the user describes in `config.pbtxt`, run before the model is ready.
//! Each input is zeros, random values, or one row read from a file in the model's `warmup/` directory
//! (raw little-endian elements, strings as 4-byte length + bytes, as Triton reads them); a sample of
//! `batch_size` rows repeats that row. Being the user's own, a sample that fails stops start-up.

use std::path::Path;

use super::proto::ModelConfig;
use super::proto::model_warmup::Input;
use super::proto::model_warmup::input::InputDataType;
use super::tensors::{datatype, type_name};
use crate::model::warmup::zeros;
use crate::protocol::{DataType, Tensor, TensorData, binary};

/// Files named by `input_data_file` live here, inside the model's directory.
pub const DATA_DIR: &str = "warmup";

/// One warm-up request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub inputs: Vec<Tensor>,
    /// Runs; at least one.
    pub count: u32,
}

/// The samples of `config`, reading data files from `model_dir/warmup/`.
pub fn samples(config: &ModelConfig, model_dir: &Path) -> Result<Vec<Sample>, String> {
    let batch = config.max_batch_size > 0;
    let mut samples = Vec::with_capacity(config.model_warmup.len());
    for warmup in &config.model_warmup {
        let fail = |reason: String| format!("model_warmup '{}': {reason}", warmup.name);
        let rows = warmup.batch_size as usize;
        if batch && !(1..=config.max_batch_size as usize).contains(&rows) {
            return Err(fail(format!(
                "batch_size must be between 1 and max_batch_size ({}), got {rows}",
                config.max_batch_size
            )));
        }
        if !batch && rows > 1 {
            return Err(fail(format!("batch_size must be 1 when max_batch_size is 0, got {rows}")));
        }
        let mut names: Vec<&String> = warmup.inputs.keys().collect();
        names.sort();
        let mut inputs = Vec::with_capacity(names.len());
        for name in names {
            let input = &warmup.inputs[name];
            let tensor = tensor(name, input, model_dir).map_err(|e| fail(format!("input '{name}': {e}")))?;
            inputs.push(if batch { repeat_rows(tensor, rows) } else { tensor });
        }
        samples.push(Sample { name: warmup.name.clone(), inputs, count: warmup.count.max(1) });
    }
    Ok(samples)
}

/// One row of `input`.
fn tensor(name: &str, input: &Input, model_dir: &Path) -> Result<Tensor, String> {
    let dt = datatype(input.data_type)
        .ok_or_else(|| format!("data_type {} is not supported", type_name(input.data_type)))?;
    let shape = input
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dims must all be sizes, got {:?}", input.dims)))
        .collect::<Result<Vec<usize>, String>>()?;
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("dims are too large")?;
    let data = match &input.input_data_type {
        Some(InputDataType::ZeroData(_)) => zeros(dt, n),
        Some(InputDataType::RandomData(_)) => random(dt, n),
        Some(InputDataType::InputDataFile(file)) => {
            let path = data_file(model_dir, file)?;
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            binary::decode(&bytes, dt, n).map_err(|e| format!("{} {e}", path.display()))?
        }
        None => return Err("gives no data: set zero_data, random_data or input_data_file".into()),
    };
    Ok(Tensor { name: name.to_string(), shape, data })
}

fn data_file(model_dir: &Path, file: &str) -> Result<std::path::PathBuf, String> {
    let relative = Path::new(file);
    if relative.is_absolute() || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "input_data_file {file:?} must be a path inside the model's {DATA_DIR}/ directory"
        ));
    }
    Ok(model_dir.join(DATA_DIR).join(relative))
}

/// `rows` copies of the one-row `tensor`, stacked on a new first dimension.
fn repeat_rows(tensor: Tensor, rows: usize) -> Tensor {
    let mut data = TensorData::with_capacity(tensor.data.datatype(), tensor.data.len() * rows);
    for _ in 0..rows {
        data.extend_from(&tensor.data);
    }
    let shape = std::iter::once(rows).chain(tensor.shape.iter().copied()).collect();
    Tensor { name: tensor.name, shape, data }
}

/// Deterministic values a model can take: floats in [0, 1), small non-negative integers, empty strings.
fn random(dt: DataType, n: usize) -> TensorData {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let unit = |x: u64| (x >> 11) as f64 / (1u64 << 53) as f64;
    match dt {
        DataType::Bool => TensorData::Bool((0..n).map(|_| next() & 1 == 1).collect()),
        DataType::Uint8 => TensorData::Uint8((0..n).map(|_| (next() % 128) as u8).collect()),
        DataType::Int8 => TensorData::Int8((0..n).map(|_| (next() % 128) as i8).collect()),
        DataType::Int16 => TensorData::Int16((0..n).map(|_| (next() % 128) as i16).collect()),
        DataType::Int32 => TensorData::Int32((0..n).map(|_| (next() % 128) as i32).collect()),
        DataType::Int64 => TensorData::Int64((0..n).map(|_| (next() % 128) as i64).collect()),
        DataType::Fp16 => TensorData::Fp16((0..n).map(|_| half::f16::from_f64(unit(next()))).collect()),
        DataType::Fp32 => TensorData::Fp32((0..n).map(|_| unit(next()) as f32).collect()),
        DataType::Fp64 => TensorData::Fp64((0..n).map(|_| unit(next())).collect()),
        DataType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::triton::parse;

    fn samples_of(text: &str, dir: &Path) -> Result<Vec<Sample>, String> {
        samples(&parse(text).unwrap(), dir)
    }

    #[test]
    fn a_file_sample_is_one_row_repeated_batch_size_times() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DATA_DIR)).unwrap();
        let row: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join("warmup/x.bin"), row).unwrap();
        let got = samples_of(
            r#"max_batch_size: 8
               model_warmup [ { name: "two rows" batch_size: 2 count: 3
                 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 2 ] input_data_file: "x.bin" } }
                 inputs { key: "k" value: { data_type: TYPE_INT64 dims: [ 1 ] zero_data: true } } } ]"#,
            dir.path(),
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].count), ("two rows", 3));
        assert_eq!(
            got[0].inputs[0],
            Tensor { name: "k".into(), shape: vec![2, 1], data: TensorData::Int64(vec![0, 0]) }
        );
        assert_eq!(
            got[0].inputs[1],
            Tensor { name: "x".into(), shape: vec![2, 2], data: TensorData::Fp32(vec![1.0, 2.0, 1.0, 2.0]) }
        );
    }

    #[test]
    fn without_batching_the_dims_are_the_whole_shape_and_random_data_is_in_range() {
        let got = samples_of(
            r#"model_warmup [ { name: "w" batch_size: 1
                 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 4, 4 ] random_data: true } } } ]"#,
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(got[0].inputs[0].shape, [4, 4]);
        assert_eq!(got[0].count, 1);
        let TensorData::Fp32(values) = &got[0].inputs[0].data else { panic!("not FP32") };
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)), "{values:?}");
    }

    #[test]
    fn bad_samples_say_which_sample_and_input_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| samples_of(text, dir.path()).unwrap_err();
        assert_eq!(
            err(r#"max_batch_size: 2 model_warmup [ { name: "w" batch_size: 3 } ]"#),
            "model_warmup 'w': batch_size must be between 1 and max_batch_size (2), got 3"
        );
        assert_eq!(
            err(
                r#"model_warmup [ { name: "w" inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 1 ] } } } ]"#
            ),
            "model_warmup 'w': input 'x': gives no data: set zero_data, random_data or input_data_file"
        );
        assert_eq!(
            err(
                r#"model_warmup [ { name: "w" inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ -1 ] zero_data: true } } } ]"#
            ),
            "model_warmup 'w': input 'x': dims must all be sizes, got [-1]"
        );
        assert_eq!(
            err(
                r#"model_warmup [ { name: "w" inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 1 ] input_data_file: "../../etc/passwd" } } } ]"#
            ),
            "model_warmup 'w': input 'x': input_data_file \"../../etc/passwd\" must be a path inside the model's warmup/ directory"
        );
        std::fs::create_dir(dir.path().join(DATA_DIR)).unwrap();
        std::fs::write(dir.path().join("warmup/short.bin"), [0u8; 3]).unwrap();
        assert_eq!(
            err(
                r#"model_warmup [ { name: "w" inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 1 ] input_data_file: "short.bin" } } } ]"#
            ),
            format!(
                "model_warmup 'w': input 'x': {} has 3 bytes of binary data but 1 FP32 elements need 4",
                dir.path().join("warmup/short.bin").display()
            )
        );
    }
}
