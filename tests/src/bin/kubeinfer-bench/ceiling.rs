//! The ceiling: ONNX Runtime in-process, no HTTP, no queue, at the batch size that gives the most rows/s.

use std::path::Path;
use std::time::{Duration, Instant};

use kubeinfer_server::model::Runner;
use kubeinfer_server::model::device::Device;
use kubeinfer_server::model::session::{OnnxSession, SessionOptions};
use kubeinfer_server::protocol::{Tensor, TensorData};
use ort::environment::Environment;

pub struct Ceiling {
    /// The model's only input: its name and row width.
    pub input: String,
    pub width: usize,
    /// Rows per second at each batch size tried.
    pub by_batch: Vec<(usize, f64)>,
    /// Median time of one single-row run, in milliseconds: the model's own cost per request.
    pub single_row_p50_ms: f64,
}

impl Ceiling {
    pub fn best(&self) -> (usize, f64) {
        self.by_batch.iter().copied().fold((0, 0.0), |best, b| if b.1 > best.1 { b } else { best })
    }
}

/// A deterministic FP32 input of `rows` rows for a model whose only input is [-1, width].
pub fn input(name: &str, rows: usize, width: usize) -> Tensor {
    let data = (0..rows * width).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    Tensor { name: name.to_string(), shape: vec![rows, width], data: TensorData::Fp32(data) }
}

pub fn measure(
    env: &Environment,
    model: &Path,
    device: Device,
    batches: &[usize],
    each: Duration,
) -> anyhow::Result<Ceiling> {
    // The server's own session settings, so that the difference is the serving, not the configuration.
    let options = SessionOptions { intra_op_threads: 0, intra_op_spinning: false, device };
    let mut session = OnnxSession::load(env, model, options)?;
    let spec = session.signature().inputs[0].clone();
    let width = usize::try_from(spec.dims[1])?;
    let mut by_batch = Vec::new();
    for &rows in batches {
        let x = input(&spec.name, rows, width);
        session.run(vec![x.clone()]).map_err(|e| anyhow::anyhow!(e.message))?;
        let start = Instant::now();
        let mut runs = 0usize;
        while start.elapsed() < each {
            session.run(vec![x.clone()]).map_err(|e| anyhow::anyhow!(e.message))?;
            runs += 1;
        }
        by_batch.push((rows, (runs * rows) as f64 / start.elapsed().as_secs_f64()));
    }
    let x = input(&spec.name, 1, width);
    let mut times: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            let _ = session.run(vec![x.clone()]);
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    let single_row_p50_ms = times[times.len() / 2].as_secs_f64() * 1000.0;
    Ok(Ceiling { input: spec.name, width, by_batch, single_row_p50_ms })
}
