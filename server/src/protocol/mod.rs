//! The Open Inference Protocol's data: datatypes, typed tensors, and the JSON and binary codecs.
//! Pure functions only; nothing here knows about models, batching or HTTP.

pub mod binary;
pub mod datatype;
pub mod json;
pub mod request;
pub mod response;
pub mod tensor;
pub mod types;

pub use datatype::DataType;
pub use request::{InferRequest, RequestedOutput, decode_request};
pub use response::{EncodedResponse, OutputToSend, encode_response};
pub use tensor::{Tensor, TensorData};
