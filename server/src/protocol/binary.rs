//! Triton's binary tensor data extension: raw little-endian elements after the JSON header, BYTES
//! elements each prefixed by a 4-byte little-endian length, BOOL one byte per element.

use half::f16;

use super::datatype::DataType;
use super::tensor::TensorData;

/// Request and response header naming the length of the JSON part that precedes the binary part.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Splits a request body into its JSON header and binary tail, given `Inference-Header-Content-Length`.
pub fn split_body<'a>(body: &'a [u8], header_length: Option<&str>) -> Result<(&'a [u8], &'a [u8]), String> {
    let Some(value) = header_length else {
        return Ok((body, &[]));
    };
    let n: usize = value
        .trim()
        .parse()
        .map_err(|_| format!("Inference-Header-Content-Length must be a byte count, got {value:?}"))?;
    if n > body.len() {
        return Err(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ));
    }
    Ok(body.split_at(n))
}

/// Decodes `bytes` as exactly `expected` elements of `datatype`.
pub fn decode(bytes: &[u8], datatype: DataType, expected: usize) -> Result<TensorData, String> {
    if let Some(size) = datatype.element_size() {
        let want = expected.checked_mul(size).ok_or("its shape is too large")?;
        if bytes.len() != want {
            return Err(format!(
                "has {} bytes of binary data but {expected} {datatype} elements need {want}",
                bytes.len()
            ));
        }
    }
    macro_rules! le {
        ($t:ty, $n:literal) => {
            bytes.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect()
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Int8 => TensorData::Int8(bytes.iter().map(|&b| b as i8).collect()),
        DataType::Int16 => TensorData::Int16(le!(i16, 2)),
        DataType::Int32 => TensorData::Int32(le!(i32, 4)),
        DataType::Int64 => TensorData::Int64(le!(i64, 8)),
        DataType::Fp16 => {
            TensorData::Fp16(bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect())
        }
        DataType::Fp32 => TensorData::Fp32(le!(f32, 4)),
        DataType::Fp64 => TensorData::Fp64(le!(f64, 8)),
        DataType::Bytes => TensorData::Bytes(decode_strings(bytes, expected)?),
    })
}

fn decode_strings(mut bytes: &[u8], expected: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(expected.min(bytes.len() / 4));
    while !bytes.is_empty() {
        let index = out.len();
        if index == expected {
            return Err(format!("has more than the {expected} BYTES elements its shape needs"));
        }
        let (prefix, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("element {index}: truncated 4-byte length prefix"))?;
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > rest.len() {
            return Err(format!(
                "element {index}: length prefix says {len} bytes but only {} remain",
                rest.len()
            ));
        }
        let (item, rest) = rest.split_at(len);
        out.push(item.to_vec());
        bytes = rest;
    }
    if out.len() != expected {
        return Err(format!("has {} BYTES elements but its shape needs {expected}", out.len()));
    }
    Ok(out)
}

/// Appends `data`'s binary encoding to `out` and returns how many bytes it took.
pub fn encode(data: &TensorData, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Int8(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp16(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => {
            for item in v {
                out.extend_from_slice(&(item.len() as u32).to_le_bytes());
                out.extend_from_slice(item);
            }
        }
    }
    out.len() - start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: TensorData) {
        let mut bytes = Vec::new();
        let n = encode(&data, &mut bytes);
        assert_eq!(n, bytes.len());
        assert_eq!(decode(&bytes, data.datatype(), data.len()).unwrap(), data);
    }

    #[test]
    fn every_datatype_survives_a_binary_round_trip() {
        round_trip(TensorData::Bool(vec![true, false, true]));
        round_trip(TensorData::Uint8(vec![0, 255]));
        round_trip(TensorData::Int8(vec![-128, 127]));
        round_trip(TensorData::Int16(vec![-32768, 1]));
        round_trip(TensorData::Int32(vec![i32::MIN, 7]));
        round_trip(TensorData::Int64(vec![i64::MAX, -1]));
        round_trip(TensorData::Fp16(vec![f16::from_f32(0.25), f16::NEG_INFINITY]));
        round_trip(TensorData::Fp32(vec![1.5, f32::MIN_POSITIVE]));
        round_trip(TensorData::Fp64(vec![-0.125, 1e300]));
        round_trip(TensorData::Bytes(vec![b"abc".to_vec(), vec![], vec![0xff, 0x00]]));
    }

    #[test]
    fn fp32_is_little_endian() {
        let mut bytes = Vec::new();
        encode(&TensorData::Fp32(vec![1.0]), &mut bytes);
        assert_eq!(bytes, [0x00, 0x00, 0x80, 0x3f]);
    }

    #[test]
    fn bytes_elements_are_length_prefixed() {
        let mut bytes = Vec::new();
        encode(&TensorData::Bytes(vec![b"hi".to_vec()]), &mut bytes);
        assert_eq!(bytes, [2, 0, 0, 0, b'h', b'i']);
    }

    #[test]
    fn a_size_that_does_not_match_the_shape_is_rejected() {
        assert_eq!(
            decode(&[0; 7], DataType::Fp32, 2).unwrap_err(),
            "has 7 bytes of binary data but 2 FP32 elements need 8"
        );
    }

    #[test]
    fn truncated_and_surplus_bytes_elements_are_rejected() {
        assert_eq!(
            decode(&[5, 0, 0, 0, b'a'], DataType::Bytes, 1).unwrap_err(),
            "element 0: length prefix says 5 bytes but only 1 remain"
        );
        assert_eq!(
            decode(&[1, 0], DataType::Bytes, 1).unwrap_err(),
            "element 0: truncated 4-byte length prefix"
        );
        assert_eq!(
            decode(&[0, 0, 0, 0, 0, 0, 0, 0], DataType::Bytes, 1).unwrap_err(),
            "has more than the 1 BYTES elements its shape needs"
        );
        assert_eq!(
            decode(&[], DataType::Bytes, 1).unwrap_err(),
            "has 0 BYTES elements but its shape needs 1"
        );
    }

    #[test]
    fn the_body_splits_at_the_header_length() {
        assert_eq!(split_body(b"{}abcd", Some("2")).unwrap(), (&b"{}"[..], &b"abcd"[..]));
        assert_eq!(split_body(b"{}", None).unwrap(), (&b"{}"[..], &b""[..]));
        assert_eq!(
            split_body(b"{}", Some("9")).unwrap_err(),
            "Inference-Header-Content-Length is 9 but the body has only 2 bytes"
        );
        assert_eq!(
            split_body(b"{}", Some("x")).unwrap_err(),
            "Inference-Header-Content-Length must be a byte count, got \"x\""
        );
    }
}
