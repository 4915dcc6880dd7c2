//! Models: the repository layout, per-model settings, signatures and ONNX Runtime sessions.

pub mod device;
pub mod layout;
pub mod runtime;
pub mod session;
pub mod settings;
pub mod signature;
pub mod triton;
pub mod warmup;

use crate::protocol::Tensor;

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
