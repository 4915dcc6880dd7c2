//! Wire shapes of the Open Inference Protocol's infer request and response (JSON part).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::tensor::TensorData;

/// The JSON header of an infer request, borrowing each input's `data` unparsed until its datatype is known.
#[derive(Debug, Deserialize)]
pub struct RequestHeader<'a> {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, borrow)]
    pub parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    pub inputs: Vec<InputHeader<'a>>,
    #[serde(default, borrow)]
    pub outputs: Option<Vec<OutputRequest<'a>>>,
}

#[derive(Debug, Deserialize)]
pub struct InputHeader<'a> {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default, borrow)]
    pub parameters: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct OutputRequest<'a> {
    pub name: String,
    #[serde(default, borrow)]
    pub parameters: Option<&'a RawValue>,
}

/// Most bytes of JSON one `parameters` object may take: parsed into a map, JSON grows about 16-fold, so
/// the raw text stays unparsed until it is known to be small.
pub const MAX_PARAMETERS_BYTES: usize = 16 * 1024;

/// A `parameters` object, parsed once it is known to be small.
pub fn parameters(raw: Option<&RawValue>) -> Result<Option<Map<String, Value>>, String> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.get().len() > MAX_PARAMETERS_BYTES {
        return Err(format!(
            "parameters take {} bytes of JSON, more than the {MAX_PARAMETERS_BYTES} allowed",
            raw.get().len()
        ));
    }
    serde_json::from_str(raw.get()).map(Some).map_err(|e| format!("parameters must be a JSON object: {e}"))
}

/// The JSON header of an infer response. Outputs sent in binary carry `binary_data_size` and no `data`.
#[derive(Debug, Serialize)]
pub struct ResponseHeader<'a> {
    pub model_name: &'a str,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub outputs: Vec<OutputHeader<'a>>,
}

#[derive(Debug, Serialize)]
pub struct OutputHeader<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    pub shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<OutputParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<JsonData<'a>>,
}

#[derive(Debug, Serialize)]
pub struct OutputParameters {
    pub binary_data_size: usize,
}

/// Serialises tensor elements as a flat JSON array: FP16 as numbers, BYTES as (lossy UTF-8) strings.
/// Non-finite floats have no JSON spelling and come out as `null`; binary outputs keep them exactly.
#[derive(Debug)]
pub struct JsonData<'a>(pub &'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            TensorData::Bool(v) => v.serialize(s),
            TensorData::Uint8(v) => v.serialize(s),
            TensorData::Int8(v) => v.serialize(s),
            TensorData::Int16(v) => v.serialize(s),
            TensorData::Int32(v) => v.serialize(s),
            TensorData::Int64(v) => v.serialize(s),
            TensorData::Fp16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::Fp32(v) => v.serialize(s),
            TensorData::Fp64(v) => v.serialize(s),
            TensorData::Bytes(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for item in v {
                    seq.serialize_element(&String::from_utf8_lossy(item))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn json_data_writes_fp16_as_numbers_and_bytes_as_strings() {
        let fp16 = TensorData::Fp16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]);
        assert_eq!(serde_json::to_string(&JsonData(&fp16)).unwrap(), "[1.5,-2.0]");
        let bytes = TensorData::Bytes(vec![b"ab".to_vec(), b"".to_vec()]);
        assert_eq!(serde_json::to_string(&JsonData(&bytes)).unwrap(), r#"["ab",""]"#);
    }

    #[test]
    fn binary_outputs_carry_their_size_and_no_data() {
        let header = ResponseHeader {
            model_name: "m",
            model_version: "1".into(),
            id: None,
            outputs: vec![OutputHeader {
                name: "y",
                datatype: "FP32",
                shape: &[2],
                parameters: Some(OutputParameters { binary_data_size: 8 }),
                data: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&header).unwrap(),
            r#"{"model_name":"m","model_version":"1","outputs":[{"name":"y","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}}]}"#
        );
    }
}
