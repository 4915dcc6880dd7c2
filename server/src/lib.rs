//! kubeinfer-server: serves ONNX models over the Open Inference Protocol with dynamic batching.
//!
//! Layering: `http` -> `registry` -> `batch` -> `model` -> `protocol`; `metrics`, `stats` and `error`
//! are leaves that anyone may use.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod batch;
pub mod config;
pub mod cost_metrics;
pub mod db;
pub mod error;
pub mod grpc;
pub mod http;
pub mod lag;
pub mod listener;
pub mod load;
pub mod metrics;
pub mod model;
pub mod outcome;
pub mod proto;
pub mod protocol;
pub mod pull;
pub mod recent;
pub mod registry;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod stats;
pub mod termination;
pub mod triton_config;
pub mod units;

pub use error::Error;
