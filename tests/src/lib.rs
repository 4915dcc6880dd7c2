//! Shared harness for the end-to-end tests and the benchmarks: real processes (the server, PostgreSQL,
//! later the Kubernetes control plane) on loopback ports, stopped when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod control_plane;
pub mod e2e;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod require;
