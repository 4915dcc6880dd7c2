//! Shared harness for the end-to-end tests and the benchmarks: real processes on loopback ports,
//! stopped when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;
