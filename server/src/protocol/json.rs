//! Decodes an input's JSON `data` (flat or nested arrays) straight into a typed vector, in one pass.

use std::fmt;

use half::f16;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

use super::datatype::DataType;
use super::tensor::TensorData;

/// Parses `raw` (the text of an input's `data` field) as `expected` elements of `datatype`.
/// Errors name the first offending element and say what was expected.
pub fn decode_data(raw: &str, datatype: DataType, expected: usize) -> Result<TensorData, String> {
    fn run<T: Leaf>(raw: &str, expected: usize) -> Result<Vec<T>, String> {
        let mut out = Vec::with_capacity(expected.min(raw.len()));
        let mut de = serde_json::Deserializer::from_str(raw);
        Flatten { out: &mut out, limit: expected }
            .deserialize(&mut de)
            .map_err(|e| strip_position(e.to_string()))?;
        if out.len() != expected {
            return Err(format!("has {} elements but its shape needs {expected}", out.len()));
        }
        Ok(out)
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(run(raw, expected)?),
        DataType::Uint8 => TensorData::Uint8(run(raw, expected)?),
        DataType::Int8 => TensorData::Int8(run(raw, expected)?),
        DataType::Int16 => TensorData::Int16(run(raw, expected)?),
        DataType::Int32 => TensorData::Int32(run(raw, expected)?),
        DataType::Int64 => TensorData::Int64(run(raw, expected)?),
        DataType::Fp16 => TensorData::Fp16(run(raw, expected)?),
        DataType::Fp32 => TensorData::Fp32(run(raw, expected)?),
        DataType::Fp64 => TensorData::Fp64(run(raw, expected)?),
        DataType::Bytes => TensorData::Bytes(run(raw, expected)?),
    })
}

/// serde_json appends "at line 1 column N" of the *data field's* text, which only confuses the caller.
fn strip_position(message: String) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    }
}

/// An element type that can be read from a JSON leaf. Each method rejects what the type cannot hold.
trait Leaf: Sized {
    const NAME: &'static str;
    fn from_i64(v: i64) -> Result<Self, String> {
        Err(format!("expected {}, found the integer {v}", Self::expected()))
    }
    fn from_u64(v: u64) -> Result<Self, String> {
        Err(format!("expected {}, found the integer {v}", Self::expected()))
    }
    fn from_f64(v: f64) -> Result<Self, String> {
        Err(format!("expected {}, found the number {v}", Self::expected()))
    }
    fn from_bool(v: bool) -> Result<Self, String> {
        Err(format!("expected {}, found the boolean {v}", Self::expected()))
    }
    fn from_str(v: &str) -> Result<Self, String> {
        Err(format!("expected {}, found the string {v:?}", Self::expected()))
    }
    fn expected() -> String {
        format!("a number for {}", Self::NAME)
    }
}

macro_rules! int_leaf {
    ($t:ty, $name:literal) => {
        impl Leaf for $t {
            const NAME: &'static str = $name;
            fn from_i64(v: i64) -> Result<Self, String> {
                <$t>::try_from(v).map_err(|_| out_of_range(v, $name))
            }
            fn from_u64(v: u64) -> Result<Self, String> {
                <$t>::try_from(v).map_err(|_| out_of_range(v, $name))
            }
            fn from_f64(v: f64) -> Result<Self, String> {
                // 3.0 is an integer written as a float; 3.5 or 1e300 are not representable.
                if v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64 {
                    Ok(v as $t)
                } else {
                    Err(format!("expected an integer for {}, found {v}", $name))
                }
            }
            fn expected() -> String {
                format!("an integer for {}", $name)
            }
        }
    };
}

fn out_of_range(v: impl fmt::Display, name: &str) -> String {
    format!("{v} is out of range for {name}")
}

int_leaf!(u8, "UINT8");
int_leaf!(i8, "INT8");
int_leaf!(i16, "INT16");
int_leaf!(i32, "INT32");
int_leaf!(i64, "INT64");

macro_rules! float_leaf {
    ($t:ty, $name:literal, $from:expr) => {
        impl Leaf for $t {
            const NAME: &'static str = $name;
            fn from_i64(v: i64) -> Result<Self, String> {
                Ok($from(v as f64))
            }
            fn from_u64(v: u64) -> Result<Self, String> {
                Ok($from(v as f64))
            }
            fn from_f64(v: f64) -> Result<Self, String> {
                Ok($from(v))
            }
        }
    };
}

float_leaf!(f16, "FP16", f16::from_f64);
float_leaf!(f32, "FP32", |v: f64| v as f32);
float_leaf!(f64, "FP64", |v: f64| v);

impl Leaf for bool {
    const NAME: &'static str = "BOOL";
    fn from_bool(v: bool) -> Result<Self, String> {
        Ok(v)
    }
    fn expected() -> String {
        "true or false for BOOL".into()
    }
}

impl Leaf for Vec<u8> {
    const NAME: &'static str = "BYTES";
    fn from_str(v: &str) -> Result<Self, String> {
        Ok(v.as_bytes().to_vec())
    }
    fn expected() -> String {
        "a string for BYTES".into()
    }
}

/// Pushes every leaf of a (possibly nested) JSON array onto `out`, refusing more than `limit` leaves.
struct Flatten<'a, T> {
    out: &'a mut Vec<T>,
    limit: usize,
}

impl<T: Leaf> Flatten<'_, T> {
    fn push<E: de::Error>(self, value: Result<T, String>) -> Result<(), E> {
        let index = self.out.len();
        if index >= self.limit {
            return Err(E::custom(format!("has more elements than the {} its shape needs", self.limit)));
        }
        let value = value.map_err(|m| E::custom(format!("element {index}: {m}")))?;
        self.out.push(value);
        Ok(())
    }
}

impl<'de, T: Leaf> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Leaf> Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {}", T::expected())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let limit = self.limit;
        while seq.next_element_seed(Flatten { out: &mut *self.out, limit })?.is_some() {}
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::from_str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(Err(format!("expected {}, found null", T::expected())))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        self.push(Err(format!("expected {}, found an object", T::expected())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_nested_arrays_decode_to_the_same_elements() {
        let flat = decode_data("[1, 2, 3, 4]", DataType::Fp32, 4).unwrap();
        let nested = decode_data("[[1, 2], [3.0, 4]]", DataType::Fp32, 4).unwrap();
        assert_eq!(flat, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(nested, flat);
    }

    #[test]
    fn a_rank_zero_scalar_may_be_sent_bare() {
        assert_eq!(decode_data("7", DataType::Int64, 1).unwrap(), TensorData::Int64(vec![7]));
    }

    #[test]
    fn integers_out_of_range_name_the_element_and_the_type() {
        assert_eq!(
            decode_data("[1, 300]", DataType::Uint8, 2).unwrap_err(),
            "element 1: 300 is out of range for UINT8"
        );
        assert_eq!(
            decode_data("[-1]", DataType::Uint8, 1).unwrap_err(),
            "element 0: -1 is out of range for UINT8"
        );
    }

    #[test]
    fn integral_floats_are_accepted_for_integer_types_but_fractions_are_not() {
        assert_eq!(decode_data("[2.0]", DataType::Int32, 1).unwrap(), TensorData::Int32(vec![2]));
        assert_eq!(
            decode_data("[2.5]", DataType::Int32, 1).unwrap_err(),
            "element 0: expected an integer for INT32, found 2.5"
        );
    }

    #[test]
    fn non_numeric_data_for_a_number_type_is_rejected() {
        assert_eq!(
            decode_data(r#"[1, "two"]"#, DataType::Fp32, 2).unwrap_err(),
            r#"element 1: expected a number for FP32, found the string "two""#
        );
        assert_eq!(
            decode_data("[null]", DataType::Fp64, 1).unwrap_err(),
            "element 0: expected a number for FP64, found null"
        );
    }

    #[test]
    fn bool_takes_only_true_or_false() {
        assert_eq!(
            decode_data("[true, false]", DataType::Bool, 2).unwrap(),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(
            decode_data("[1]", DataType::Bool, 1).unwrap_err(),
            "element 0: expected true or false for BOOL, found the integer 1"
        );
    }

    #[test]
    fn bytes_take_strings() {
        assert_eq!(
            decode_data(r#"["héllo", ""]"#, DataType::Bytes, 2).unwrap(),
            TensorData::Bytes(vec!["héllo".as_bytes().to_vec(), vec![]])
        );
    }

    #[test]
    fn fp16_rounds_to_the_nearest_half() {
        assert_eq!(
            decode_data("[0.5, 65504]", DataType::Fp16, 2).unwrap(),
            TensorData::Fp16(vec![f16::from_f32(0.5), f16::MAX])
        );
    }

    #[test]
    fn too_few_and_too_many_elements_are_counted() {
        assert_eq!(
            decode_data("[1, 2]", DataType::Fp32, 3).unwrap_err(),
            "has 2 elements but its shape needs 3"
        );
        assert_eq!(
            decode_data("[1, 2, 3]", DataType::Fp32, 2).unwrap_err(),
            "has more elements than the 2 its shape needs"
        );
    }

    #[test]
    fn objects_inside_data_are_rejected() {
        assert_eq!(
            decode_data(r#"[{"a": 1}]"#, DataType::Int64, 1).unwrap_err(),
            "element 0: expected an integer for INT64, found an object"
        );
    }
}
