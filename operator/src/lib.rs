//! kubeinfer-operator: reconciles `ModelDeployment`s (kubeinfer.io/v1alpha1) into kubeinfer-server
//! Deployments, Services, ConfigMaps, HorizontalPodAutoscalers, PodDisruptionBudgets and
//! ServiceMonitors.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod allowlist;
pub mod apply;
pub mod backoff;
pub mod config;
pub mod context;
pub mod controller;
pub mod crd;
pub mod crd_access;
pub mod crd_scaling;
pub mod crdgen;
pub mod discovery;
pub mod drift;
pub mod error;
pub mod kinds;
pub mod leader;
pub mod leading;
pub mod metrics;
pub mod mount_failures;
pub mod pod_failures;
pub mod reconcile;
pub mod resources;
pub mod shutdown;
pub mod status;
pub mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod reconcile_tests;

pub use error::Error;
