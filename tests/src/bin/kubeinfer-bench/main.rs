//! `make bench`: kubeinfer's benchmarks, each printing Markdown tables that docs/benchmarks.md records.
//!   serving   the server over HTTP against ONNX Runtime in-process, batching off and on
//!   db        the prediction log: writer throughput, list and stats query latency on a million rows
//!   operator  300 ModelDeployments applied at once against a real API server
//!   overload  open-loop load at multiples of capacity, without and with a latency target

mod ceiling;
mod db;
mod load;
mod operator;
mod overload;
mod serving;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "kubeinfer benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Suite,
}

#[derive(Debug, Subcommand)]
enum Suite {
    /// The server against ONNX Runtime in-process (needs the release server binary).
    Serving(serving::Args),
    /// The prediction log on a throwaway PostgreSQL.
    Db(db::Args),
    /// The operator at scale (needs KUBEBUILDER_ASSETS or KUBEINFER_E2E_KUBECONFIG).
    Operator(operator::Args),
    /// Open-loop overload, without and with a latency target (needs the release server binary).
    Overload(overload::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Suite::Serving(args) => serving::run(args),
        Suite::Db(args) => db::run(args),
        Suite::Operator(args) => operator::run(args),
        Suite::Overload(args) => overload::run(args),
    }
}
