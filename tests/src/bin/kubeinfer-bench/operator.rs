//! The operator at scale: N ModelDeployments applied at once; the time until every one has its children and
//! an up-to-date status, the operator's peak RSS, and reconcile p50/p99 from its own histogram.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args as ClapArgs;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};
use kubeinfer_operator::crd::ModelDeployment;
use kubeinfer_tests::e2e::Env;
use kubeinfer_tests::process::ServerProcess;

use crate::load::get_text;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// ModelDeployments applied at once.
    #[arg(long, default_value_t = 300)]
    count: usize,
    /// Reconciles the operator runs at the same time (its --concurrency).
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
}

fn manifests(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: kubeinfer.io/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: model-{i:03}}}\n\
                 spec: {{model: {{uri: 's3://models/m{i}/model.onnx', sha256: '{}'}}, replicas: 1, batching: {{maxBatchSize: 32}}}}\n",
                "0".repeat(64)
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The q-quantile of a Prometheus histogram in `scrape`, interpolated within its bucket as
/// histogram_quantile() does.
pub fn histogram_quantile(scrape: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(previous.0);
            }
            let within = if count > previous.1 { (rank - previous.1) / (count - previous.1) } else { 0.0 };
            return Some(previous.0 + (le - previous.0) * within);
        }
        previous = (le, count);
    }
    None
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let env = Env::install()
        .context("the operator benchmark needs KUBEBUILDER_ASSETS or KUBEINFER_E2E_KUBECONFIG")?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let ns = env.namespace("scale-bench");
    let mut operator = env.operator(Some(&ns), &["--concurrency", &args.concurrency.to_string()]);
    let idle_rss = operator.rss_bytes().unwrap_or(0);
    let yaml = manifests(args.count);
    let started = Instant::now();
    let out = env.cluster.apply(&yaml, &["-n", &ns]);
    anyhow::ensure!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    let applied = started.elapsed();
    rt.block_on(converge(&env, &ns, args.count, &operator))?;
    let converged = started.elapsed();
    let scrape = rt.block_on(get_text(operator.addr, "/metrics"))?;
    let peak = operator.peak_rss_bytes().unwrap_or(0);
    operator.kill();
    let name = "kubeinfer_operator_reconcile_duration_seconds";
    let p50 = histogram_quantile(&scrape, name, 0.5).unwrap_or(f64::NAN) * 1e3;
    let p99 = histogram_quantile(&scrape, name, 0.99).unwrap_or(f64::NAN) * 1e3;
    let sample =
        |prefix: &str| scrape.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or("?").to_string();
    let reconciles = sample(&format!("{name}_count "));
    let errors = sample("kubeinfer_operator_reconciliations_total{result=\"error\"} ");
    println!(
        "## Operator at scale ({} ModelDeployments applied at once, concurrency {})\n",
        args.count, args.concurrency
    );
    println!("| measure | value | target |");
    println!("|---|---:|---:|");
    println!("| kubectl apply of all of them | {:.1} s | |", applied.as_secs_f64());
    println!(
        "| until every one has its children and an up-to-date status | {:.1} s | < 60 s |",
        converged.as_secs_f64()
    );
    println!(
        "| operator RSS idle / peak | {:.1} / {:.1} MiB | < 100 MiB |",
        idle_rss as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    println!("| reconcile p50 / p99 (from its histogram) | {p50:.1} / {p99:.1} ms | |");
    println!("| reconciles / failed | {reconciles} / {errors} | |");
    println!();
    Ok(())
}

/// Waits (at most 120 s) until every ModelDeployment has its Deployment and a status for its
/// current generation.
async fn converge(env: &Env, ns: &str, count: usize, operator: &ServerProcess) -> anyhow::Result<()> {
    let client = env.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mds: Api<ModelDeployment> = Api::namespaced(client, ns);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let children = deployments.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0);
        let current = mds.list(&ListParams::default()).await.map(|l| {
            l.items
                .iter()
                .filter(|m| {
                    m.status.as_ref().is_some_and(|s| {
                        s.observed_generation == m.metadata.generation && !s.conditions.is_empty()
                    })
                })
                .count()
        });
        if children == count && current.unwrap_or(0) == count {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = operator.log_text();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            anyhow::bail!(
                "not converged after 120 s: {children} Deployments; operator log ends:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let scrape = "x_bucket{le=\"0.1\"} 50\nx_bucket{le=\"0.2\"} 100\nx_bucket{le=\"+Inf\"} 100\n";
        assert_eq!(histogram_quantile(scrape, "x", 0.5), Some(0.1));
        assert!((histogram_quantile(scrape, "x", 0.75).unwrap() - 0.15).abs() < 1e-9);
    }
}
