//! Typed tensors as they travel between the codecs, the batcher and ONNX Runtime.

use half::f16;

use super::datatype::DataType;

/// A tensor's elements, flat and row-major, one variant per datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any `TensorData` variant, binding it as `$v`.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

/// Like `each_variant!`, but rebuilds the same variant from what `$body` returns.
macro_rules! map_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::Uint8($v) => TensorData::Uint8($body),
            TensorData::Int8($v) => TensorData::Int8($body),
            TensorData::Int16($v) => TensorData::Int16($body),
            TensorData::Int32($v) => TensorData::Int32($body),
            TensorData::Int64($v) => TensorData::Int64($body),
            TensorData::Fp16($v) => TensorData::Fp16($body),
            TensorData::Fp32($v) => TensorData::Fp32($body),
            TensorData::Fp64($v) => TensorData::Fp64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of `datatype` with room for `capacity` elements.
    pub fn with_capacity(datatype: DataType, capacity: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::Uint8 => TensorData::Uint8(Vec::with_capacity(capacity)),
            DataType::Int8 => TensorData::Int8(Vec::with_capacity(capacity)),
            DataType::Int16 => TensorData::Int16(Vec::with_capacity(capacity)),
            DataType::Int32 => TensorData::Int32(Vec::with_capacity(capacity)),
            DataType::Int64 => TensorData::Int64(Vec::with_capacity(capacity)),
            DataType::Fp16 => TensorData::Fp16(Vec::with_capacity(capacity)),
            DataType::Fp32 => TensorData::Fp32(Vec::with_capacity(capacity)),
            DataType::Fp64 => TensorData::Fp64(Vec::with_capacity(capacity)),
            DataType::Bytes => TensorData::Bytes(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other`'s elements; `false` (and nothing appended) when the datatypes differ.
    pub fn extend_from(&mut self, other: &TensorData) -> bool {
        macro_rules! extend {
            ($($variant:ident),*) => {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => { a.extend_from_slice(b); true })*
                    _ => false,
                }
            };
        }
        extend!(Bool, Uint8, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes)
    }

    /// The elements in `range`, as a new tensor of the same datatype.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        map_variant!(self, v => v[range].to_vec())
    }

    /// Splits the elements into consecutive pieces of the given lengths, which must add up to `len()`.
    pub fn split(self, lengths: &[usize]) -> Vec<TensorData> {
        if lengths.len() == 1 {
            return vec![self];
        }
        let mut start = 0;
        lengths
            .iter()
            .map(|&n| {
                let piece = self.slice(start..start + n);
                start += n;
                piece
            })
            .collect()
    }
}

/// A named tensor: shape plus flat data. `shape.iter().product() == data.len()` is kept by every codec.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Rows along the first (batch) dimension; a rank-0 tensor has none.
    pub fn rows(&self) -> Option<usize> {
        self.shape.first().copied()
    }

    /// Elements in one row: the product of every dimension after the first.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// Number of elements a shape holds, or `None` when the product overflows.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Concatenates same-named tensors along the batch dimension. Callers guarantee that the datatypes
/// and non-batch dimensions agree (the batch policy only groups requests whose signatures match).
pub fn concat_rows(name: &str, parts: &[&Tensor]) -> Tensor {
    let first = parts[0];
    let rows: usize = parts.iter().map(|t| t.shape[0]).sum();
    let total: usize = parts.iter().map(|t| t.data.len()).sum();
    let mut data = TensorData::with_capacity(first.datatype(), total);
    for part in parts {
        data.extend_from(&part.data);
    }
    let mut shape = first.shape.clone();
    shape[0] = rows;
    Tensor { name: name.to_string(), shape, data }
}

/// Splits a batched tensor back into one tensor per request, by each request's row count.
pub fn split_rows(tensor: Tensor, rows: &[usize]) -> Vec<Tensor> {
    let row_len = tensor.row_len();
    let lengths: Vec<usize> = rows.iter().map(|r| r * row_len).collect();
    let Tensor { name, shape, data } = tensor;
    data.split(&lengths)
        .into_iter()
        .zip(rows)
        .map(|(data, &r)| {
            let mut shape = shape.clone();
            shape[0] = r;
            Tensor { name: name.clone(), shape, data }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp32(name: &str, shape: &[usize], data: &[f32]) -> Tensor {
        Tensor { name: name.into(), shape: shape.to_vec(), data: TensorData::Fp32(data.to_vec()) }
    }

    #[test]
    fn concatenating_rows_stacks_the_batch_dimension_in_order() {
        let a = fp32("x", &[1, 2], &[1.0, 2.0]);
        let b = fp32("x", &[2, 2], &[3.0, 4.0, 5.0, 6.0]);
        assert_eq!(concat_rows("x", &[&a, &b]), fp32("x", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    }

    #[test]
    fn splitting_rows_gives_each_request_its_own_slice() {
        let batched = fp32("y", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            split_rows(batched, &[1, 2]),
            vec![fp32("y", &[1, 2], &[1.0, 2.0]), fp32("y", &[2, 2], &[3.0, 4.0, 5.0, 6.0])]
        );
    }

    #[test]
    fn splitting_a_rank_one_output_keeps_one_element_per_row() {
        let labels = Tensor { name: "label".into(), shape: vec![3], data: TensorData::Int64(vec![7, 8, 9]) };
        let parts = split_rows(labels, &[2, 1]);
        assert_eq!(parts[0].data, TensorData::Int64(vec![7, 8]));
        assert_eq!(parts[1].shape, vec![1]);
    }

    #[test]
    fn extending_with_another_datatype_is_refused() {
        let mut a = TensorData::Fp32(vec![1.0]);
        assert!(!a.extend_from(&TensorData::Int32(vec![1])));
        assert_eq!(a, TensorData::Fp32(vec![1.0]));
    }

    #[test]
    fn element_count_detects_overflow() {
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[usize::MAX, 2]), None);
    }

    #[test]
    fn row_len_of_a_scalar_is_one_and_it_has_no_rows() {
        let scalar = Tensor { name: "k".into(), shape: vec![], data: TensorData::Int64(vec![4]) };
        assert_eq!(scalar.rows(), None);
        assert_eq!(scalar.row_len(), 1);
    }
}
