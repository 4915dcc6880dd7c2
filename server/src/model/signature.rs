//! A model's inputs and outputs, and the checks a request must pass before it may be queued.

use std::collections::HashSet;

use crate::protocol::{DataType, InferRequest, Tensor, TensorData};

/// One input or output: name, datatype and dimensions, with -1 for a dimension the model leaves open.
/// A symbolic name on an open dimension ("batch", "?", "unk__3") constrains nothing: ONNX Runtime does
/// not require two dimensions of the same name to agree, so neither does the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<i64>,
}

impl TensorSpec {
    /// Whether this tensor's first dimension is open, so that requests can be stacked along it.
    pub fn open_leading_dim(&self) -> bool {
        self.dims.first().is_some_and(|&d| d < 0)
    }

    fn accepts(&self, shape: &[usize]) -> bool {
        shape.len() == self.dims.len()
            && self.dims.iter().zip(shape).all(|(&d, &s)| d < 0 || usize::try_from(d) == Ok(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// What batching needs to know about a request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Rows along the batch dimension (1 for models that cannot batch).
    pub rows: usize,
    /// The request's inputs disagree on their first dimension, which ONNX Runtime allows but which
    /// cannot be stacked with other requests: it runs in a batch of its own.
    pub alone: bool,
    /// Indices into `Signature::outputs` to return, in the caller's order.
    pub outputs: Vec<usize>,
}

impl Signature {
    /// A model can batch when every input and output starts with an open dimension, so that requests
    /// can be stacked along it and the results split back.
    pub fn batchable(&self) -> bool {
        self.inputs.iter().chain(&self.outputs).all(TensorSpec::open_leading_dim)
    }

    /// Checks `req` against this signature and puts its inputs in the model's order.
    /// `max_rows` is the model's max_batch_size, or 0 when it does not batch.
    pub fn check(&self, model: &str, req: &mut InferRequest, max_rows: usize) -> Result<Checked, String> {
        self.order_inputs(model, &mut req.inputs)?;
        for (spec, tensor) in self.inputs.iter().zip(&req.inputs) {
            check_input(model, spec, tensor)?;
        }
        let (rows, alone) = if max_rows > 0 { batch_rows(model, &req.inputs, max_rows)? } else { (1, true) };
        let outputs = self.requested_outputs(model, req)?;
        Ok(Checked { rows, alone, outputs })
    }

    fn order_inputs(&self, model: &str, inputs: &mut Vec<Tensor>) -> Result<(), String> {
        if let Some(extra) = inputs.iter().find(|t| !self.inputs.iter().any(|s| s.name == t.name)) {
            return Err(format!(
                "model '{model}' has no input '{}'; its inputs are {}",
                extra.name,
                names(&self.inputs)
            ));
        }
        if let Some(spec) = self.inputs.iter().find(|s| !inputs.iter().any(|t| t.name == s.name)) {
            return Err(format!(
                "model '{model}' needs input '{}' ({} {:?}) but the request has {}",
                spec.name,
                spec.datatype,
                spec.dims,
                if inputs.is_empty() { "no inputs".to_string() } else { names_of(inputs) }
            ));
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            if let Some(i) = inputs.iter().position(|t| t.name == spec.name) {
                ordered.push(inputs.swap_remove(i));
            }
        }
        *inputs = ordered;
        Ok(())
    }

    fn requested_outputs(&self, model: &str, req: &InferRequest) -> Result<Vec<usize>, String> {
        if req.outputs.is_empty() {
            return Ok((0..self.outputs.len()).collect());
        }
        let mut seen = HashSet::new();
        req.outputs
            .iter()
            .map(|o| {
                if !seen.insert(o.name.as_str()) {
                    return Err(format!("output '{}' is requested more than once", o.name));
                }
                self.outputs.iter().position(|s| s.name == o.name).ok_or_else(|| {
                    format!(
                        "model '{model}' has no output '{}'; its outputs are {}",
                        o.name,
                        names(&self.outputs)
                    )
                })
            })
            .collect()
    }
}

fn check_input(model: &str, spec: &TensorSpec, tensor: &Tensor) -> Result<(), String> {
    if tensor.datatype() != spec.datatype {
        return Err(format!(
            "input '{}' of model '{model}' has datatype {}, but the request sent {}",
            spec.name,
            spec.datatype,
            tensor.datatype()
        ));
    }
    if !spec.accepts(&tensor.shape) {
        return Err(format!(
            "input '{}' of model '{model}' needs shape {:?} (-1: any size), but the request sent {:?}",
            spec.name, spec.dims, tensor.shape
        ));
    }
    if let TensorData::Bytes(items) = &tensor.data
        && let Some(i) = items.iter().position(|b| b.contains(&0) || std::str::from_utf8(b).is_err())
    {
        return Err(format!(
            "input '{}' of model '{model}': element {i} is not UTF-8 text without NUL bytes, which ONNX string \
             tensors need",
            spec.name
        ));
    }
    Ok(())
}

/// The request's rows along the batch dimension, and whether it must run alone because its inputs
/// disagree on that dimension. Like Triton, no input may have more rows than max_batch_size.
fn batch_rows(model: &str, inputs: &[Tensor], max_rows: usize) -> Result<(usize, bool), String> {
    let leading = |t: &Tensor| t.rows().unwrap_or(0);
    if let Some(empty) = inputs.iter().find(|t| leading(t) == 0) {
        return Err(format!(
            "input '{}' of the request to model '{model}' has 0 rows; send at least one",
            empty.name
        ));
    }
    let rows = inputs.iter().map(leading).max().unwrap_or(0);
    if rows > max_rows {
        return Err(format!(
            "the request to model '{model}' has {rows} rows, more than its max_batch_size of {max_rows}"
        ));
    }
    Ok((rows, inputs.iter().any(|t| leading(t) != rows)))
}

fn names(specs: &[TensorSpec]) -> String {
    specs.iter().map(|s| format!("'{}'", s.name)).collect::<Vec<_>>().join(", ")
}

fn names_of(tensors: &[Tensor]) -> String {
    tensors.iter().map(|s| format!("'{}'", s.name)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RequestedOutput;

    fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, dims: dims.to_vec() }
    }

    fn affine() -> Signature {
        Signature {
            inputs: vec![spec("x", DataType::Fp32, &[-1, 4])],
            outputs: vec![spec("y", DataType::Fp32, &[-1, 4]), spec("total", DataType::Fp32, &[-1])],
        }
    }

    fn request(inputs: Vec<Tensor>, outputs: &[&str]) -> InferRequest {
        InferRequest {
            id: None,
            inputs,
            outputs: outputs.iter().map(|n| RequestedOutput { name: n.to_string(), binary: None }).collect(),
            binary_output: false,
            timeout: None,
        }
    }

    fn x(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor { name: "x".into(), shape: shape.to_vec(), data: TensorData::Fp32(vec![0.0; n]) }
    }

    #[test]
    fn a_model_with_open_leading_dimensions_everywhere_is_batchable() {
        assert!(affine().batchable());
        let fixed = Signature { inputs: vec![spec("x", DataType::Fp32, &[1, 4])], outputs: vec![] };
        assert!(!fixed.batchable());
        let scalar = Signature {
            inputs: vec![spec("x", DataType::Fp32, &[-1, 3]), spec("k", DataType::Int64, &[])],
            outputs: vec![spec("y", DataType::Fp32, &[-1, 3])],
        };
        assert!(!scalar.batchable());
    }

    #[test]
    fn a_valid_request_reports_its_rows_and_every_output_when_none_are_named() {
        let mut req = request(vec![x(&[3, 4])], &[]);
        assert_eq!(
            affine().check("affine", &mut req, 8),
            Ok(Checked { rows: 3, alone: false, outputs: vec![0, 1] })
        );
    }

    #[test]
    fn named_outputs_keep_the_callers_order() {
        let mut req = request(vec![x(&[1, 4])], &["total", "y"]);
        assert_eq!(affine().check("affine", &mut req, 8).unwrap().outputs, vec![1, 0]);
    }

    #[test]
    fn shape_mismatch_names_the_input_and_both_shapes() {
        let mut req = request(vec![x(&[1, 3])], &[]);
        assert_eq!(
            affine().check("affine", &mut req, 8).unwrap_err(),
            "input 'x' of model 'affine' needs shape [-1, 4] (-1: any size), but the request sent [1, 3]"
        );
    }

    #[test]
    fn too_many_rows_for_max_batch_size_is_rejected() {
        let mut req = request(vec![x(&[9, 4])], &[]);
        assert_eq!(
            affine().check("affine", &mut req, 8).unwrap_err(),
            "the request to model 'affine' has 9 rows, more than its max_batch_size of 8"
        );
    }

    #[test]
    fn unknown_and_missing_inputs_list_what_the_model_takes() {
        let mut req = request(vec![Tensor { name: "z".into(), ..x(&[1, 4]) }], &[]);
        assert_eq!(
            affine().check("affine", &mut req, 8).unwrap_err(),
            "model 'affine' has no input 'z'; its inputs are 'x'"
        );
        let mut req = request(vec![], &[]);
        assert_eq!(
            affine().check("affine", &mut req, 8).unwrap_err(),
            "model 'affine' needs input 'x' (FP32 [-1, 4]) but the request has no inputs"
        );
    }

    #[test]
    fn wrong_datatype_is_named() {
        let mut req = request(
            vec![Tensor { name: "x".into(), shape: vec![1, 4], data: TensorData::Int32(vec![0; 4]) }],
            &[],
        );
        assert_eq!(
            affine().check("affine", &mut req, 8).unwrap_err(),
            "input 'x' of model 'affine' has datatype FP32, but the request sent INT32"
        );
    }

    #[test]
    fn unknown_and_repeated_outputs_are_rejected() {
        let mut req = request(vec![x(&[1, 4])], &["nope"]);
        assert_eq!(
            affine().check("affine", &mut req, 8).unwrap_err(),
            "model 'affine' has no output 'nope'; its outputs are 'y', 'total'"
        );
        let mut req = request(vec![x(&[1, 4])], &["y", "y"]);
        assert_eq!(
            affine().check("affine", &mut req, 8).unwrap_err(),
            "output 'y' is requested more than once"
        );
    }

    #[test]
    fn inputs_are_reordered_to_the_models_order() {
        let sig = Signature {
            inputs: vec![spec("a", DataType::Int64, &[-1]), spec("b", DataType::Bool, &[-1])],
            outputs: vec![],
        };
        let b = Tensor { name: "b".into(), shape: vec![1], data: TensorData::Bool(vec![true]) };
        let a = Tensor { name: "a".into(), shape: vec![1], data: TensorData::Int64(vec![1]) };
        let mut req = request(vec![b, a], &[]);
        sig.check("m", &mut req, 4).unwrap();
        assert_eq!(req.inputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn strings_for_an_onnx_string_input_must_be_utf8_without_nul() {
        let sig = Signature { inputs: vec![spec("s", DataType::Bytes, &[-1])], outputs: vec![] };
        let s = Tensor {
            name: "s".into(),
            shape: vec![2],
            data: TensorData::Bytes(vec![b"ok".to_vec(), vec![0xff]]),
        };
        let mut req = request(vec![s], &[]);
        assert_eq!(
            sig.check("m", &mut req, 4).unwrap_err(),
            "input 's' of model 'm': element 1 is not UTF-8 text without NUL bytes, which ONNX string tensors need"
        );
    }

    #[test]
    fn open_dimensions_accept_any_size_whatever_they_are_named() {
        // ONNX files spell open dimensions -1, "", "?", "unk__3" or "None"; ONNX Runtime reports each as
        // -1 and checks none of them against another, so one input may be [48, 192] against [?, ?].
        let sig = Signature { inputs: vec![spec("x", DataType::Fp32, &[-1, -1])], outputs: vec![] };
        let t =
            Tensor { name: "x".into(), shape: vec![48, 192], data: TensorData::Fp32(vec![0.0; 48 * 192]) };
        let mut req = request(vec![t], &[]);
        assert_eq!(sig.check("m", &mut req, 0), Ok(Checked { rows: 1, alone: true, outputs: vec![] }));
    }

    #[test]
    fn inputs_that_disagree_on_rows_run_alone_and_each_is_held_to_max_batch_size() {
        let sig = Signature {
            inputs: vec![spec("a", DataType::Int64, &[-1]), spec("b", DataType::Int64, &[-1])],
            outputs: vec![],
        };
        let ints = |name: &str, n: usize| Tensor {
            name: name.into(),
            shape: vec![n],
            data: TensorData::Int64((0..n as i64).collect()),
        };
        let mut req = request(vec![ints("a", 1), ints("b", 2)], &[]);
        assert_eq!(sig.check("m", &mut req, 4), Ok(Checked { rows: 2, alone: true, outputs: vec![] }));
        let mut req = request(vec![ints("a", 1), ints("b", 5)], &[]);
        assert_eq!(
            sig.check("m", &mut req, 4).unwrap_err(),
            "the request to model 'm' has 5 rows, more than its max_batch_size of 4"
        );
        let mut req = request(vec![ints("a", 0), ints("b", 2)], &[]);
        assert_eq!(
            sig.check("m", &mut req, 4).unwrap_err(),
            "input 'a' of the request to model 'm' has 0 rows; send at least one"
        );
    }
}
