//! The serving benchmark: ONNX Runtime in-process (the ceiling), then the real server binary with batching
//! off and on, JSON and binary, at several concurrencies, driven over HTTP by the load generator in this
//! process (which shares the machine's cores with the server).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::ceiling;
use crate::load::{self, Prepared};
use bytes::Bytes;
use clap::Args as ClapArgs;
use kubeinfer_server::model::device::Device;
use kubeinfer_server::model::runtime;
use kubeinfer_server::units::parse_duration;
use kubeinfer_tests::process::ServerProcess;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    served: load::ServerArgs,
    /// Models to drive; each must have a single FP32 input of shape [-1, width].
    #[arg(long, value_delimiter = ',', default_value = "heavy_mlp,digits")]
    model: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Measured time per point.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before each point.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Instead of the standard tables, compare serving settings (instances, threads, queue delay) at the
    /// highest concurrency: how the defaults were chosen.
    #[arg(long)]
    sweep: bool,
    /// Instead of the standard tables, measure what API keys cost: the server with and without
    /// --api-keys-file at the highest concurrency (binary tensors), in alternating rounds.
    #[arg(long)]
    auth: bool,
    /// Where the models run, in-process and in the server: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
}

struct Model {
    name: String,
    input: String,
    width: usize,
    ceiling: ceiling::Ceiling,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let env = runtime::environment(&runtime::library_path(None))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut models = Vec::new();
    for name in &args.model {
        let path = args.served.models.join(name).join("1/model.onnx");
        let batches = [1, 8, 16, 32, 64, 128, 256];
        let ceiling = ceiling::measure(&env, &path, args.device, &batches, Duration::from_millis(1500))?;
        models.push(Model {
            name: name.clone(),
            input: ceiling.input.clone(),
            width: ceiling.width,
            ceiling,
        });
    }
    print_ceiling(&models);
    if args.sweep {
        return sweep(&args, &models, &rt);
    }
    if args.auth {
        return auth_cost(&args, &models, &rt);
    }
    let configs: [(&str, &[&str], &[Format]); 2] = [
        ("(b) batching off", &["--max-batch-size", "0"], &[Format::Binary]),
        ("(c) batching on", &[], &[Format::Json, Format::Binary]),
    ];
    let mut rows = Vec::new();
    for (label, flags, formats) in configs {
        let server = start_server(&args, flags);
        let rss = server.rss_bytes().unwrap_or(0);
        println!(
            "\n{label}: server RSS after start-up (all {} example models loaded): {:.1} MiB",
            count_models(&args.served.models),
            rss as f64 / 1048576.0
        );
        for m in &models {
            for &format in formats {
                for &c in &args.concurrency {
                    let point = run_point(&rt, server.addr, m, format, c, &args)?;
                    rows.push((label, m.name.clone(), format, c, point));
                }
            }
        }
    }
    print_results(&models, &rows);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Binary,
}

struct Point {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_batch: f64,
    errors: u64,
}

/// The server on every example model, with `flags` and the benchmark's device.
fn start_server(args: &Args, flags: &[&str]) -> ServerProcess {
    let device = match args.device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(n) => format!("cuda:{n}"),
    };
    let mut all: Vec<&str> = flags.to_vec();
    all.extend(["--device", &device]);
    args.served.start(&all)
}

fn prepare(m: &Model, format: Format) -> Prepared {
    let x = ceiling::input(&m.input, 1, m.width);
    let kubeinfer_server::protocol::TensorData::Fp32(values) = &x.data else { unreachable!("FP32 input") };
    let path = format!("/v2/models/{}/infer", m.name);
    match format {
        Format::Json => {
            let body = serde_json::json!({"inputs": [{"name": m.input, "shape": [1, m.width], "datatype": "FP32", "data": values}]});
            Prepared {
                path,
                body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                header_length: None,
                authorization: None,
            }
        }
        Format::Binary => {
            let header = serde_json::json!({"inputs": [{"name": m.input, "shape": [1, m.width], "datatype": "FP32",
                "parameters": {"binary_data_size": values.len() * 4}}], "parameters": {"binary_data_output": true}});
            let mut body = serde_json::to_vec(&header).unwrap_or_default();
            let n = body.len();
            for v in values {
                body.extend_from_slice(&v.to_le_bytes());
            }
            Prepared { path, body: Bytes::from(body), header_length: Some(n), authorization: None }
        }
    }
}

fn run_point(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    m: &Model,
    format: Format,
    c: usize,
    args: &Args,
) -> anyhow::Result<Point> {
    run_prepared(rt, addr, m, prepare(m, format), c, args)
}

fn run_prepared(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    m: &Model,
    request: Prepared,
    c: usize,
    args: &Args,
) -> anyhow::Result<Point> {
    let before = rt.block_on(batch_totals(addr, &m.name))?;
    let mut r = rt.block_on(load::run(addr, request, c, args.warmup, args.duration));
    let after = rt.block_on(batch_totals(addr, &m.name))?;
    let batches = after.1 - before.1;
    Ok(Point {
        rps: r.rps(),
        p50_ms: r.quantile_ms(0.5),
        p99_ms: r.quantile_ms(0.99),
        mean_batch: if batches > 0.0 { (after.0 - before.0) / batches } else { f64::NAN },
        errors: r.errors,
    })
}

/// (rows, batches) run so far for `model`, from the server's batch-size histogram.
async fn batch_totals(addr: SocketAddr, model: &str) -> anyhow::Result<(f64, f64)> {
    let text = load::get_text(addr, "/metrics").await?;
    let value = |suffix: &str| -> f64 {
        let prefix = format!("kubeinfer_inference_batch_size_{suffix}{{model=\"{model}\",version=\"1\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    Ok((value("sum"), value("count")))
}

fn count_models(repo: &Path) -> usize {
    std::fs::read_dir(repo)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

fn print_ceiling(models: &[Model]) {
    println!("## (a) ONNX Runtime in-process (the ceiling)\n");
    println!("| model | batch size | rows/s |");
    println!("|---|---:|---:|");
    for m in models {
        for (b, rps) in &m.ceiling.by_batch {
            println!("| {} | {b} | {rps:.0} |", m.name);
        }
    }
    println!();
    for m in models {
        let (b, rps) = m.ceiling.best();
        println!(
            "- {}: best {rps:.0} rows/s at batch {b}; one single-row run takes {:.3} ms (p50)",
            m.name, m.ceiling.single_row_p50_ms
        );
    }
}

fn print_results(models: &[Model], rows: &[(&str, String, Format, usize, Point)]) {
    println!("\n## Server over HTTP (load generator on the same machine)\n");
    println!(
        "| server | model | tensors | concurrency | requests/s | p50 ms | p99 ms | mean batch | errors |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for (label, model, format, c, p) in rows {
        println!(
            "| {label} | {model} | {format:?} | {c} | {:.0} | {:.3} | {:.3} | {:.1} | {} |",
            p.rps, p.p50_ms, p.p99_ms, p.mean_batch, p.errors
        );
    }
    println!("\n## Targets\n");
    let find = |label: &str, model: &str, format: Format, c: usize| {
        rows.iter()
            .find(|r| r.0.starts_with(label) && r.1 == model && r.2 == format && r.3 == c)
            .map(|r| &r.4)
    };
    for m in models {
        let max_c = rows.iter().map(|r| r.3).max().unwrap_or(0);
        if let (Some(off), Some(on)) =
            (find("(b)", &m.name, Format::Binary, max_c), find("(c)", &m.name, Format::Binary, max_c))
        {
            let (_, ceiling) = m.ceiling.best();
            println!(
                "- {}: batching on / off at concurrency {max_c} = {:.2}x (target >= 3x on heavy_mlp); on / ceiling = {:.0}% (target >= 35% on heavy_mlp)",
                m.name,
                on.rps / off.rps,
                100.0 * on.rps / ceiling
            );
        }
        for format in [Format::Binary, Format::Json] {
            if let Some(p) = find("(c)", &m.name, format, 1) {
                println!(
                    "- {} {format:?}: concurrency 1 p50 {:.3} ms - in-process model time {:.3} ms = {:.3} ms of serving overhead (target <= 0.1 ms)",
                    m.name,
                    p.p50_ms,
                    m.ceiling.single_row_p50_ms,
                    p.p50_ms - m.ceiling.single_row_p50_ms
                );
            }
        }
    }
}

fn sweep(args: &Args, models: &[Model], rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let c = args.concurrency.iter().copied().max().unwrap_or(64);
    let settings: [&[&str]; 9] = [
        &["--instances", "1", "--intra-op-threads", "0"],
        &["--instances", "1", "--intra-op-threads", "0", "--idle-spin", "0us"],
        &["--instances", "1", "--intra-op-threads", "0", "--intra-op-spinning", "true"],
        &["--instances", "1", "--intra-op-threads", "1"],
        &["--instances", "1", "--intra-op-threads", "2"],
        &["--instances", "2", "--intra-op-threads", "1"],
        &["--instances", "2", "--intra-op-threads", "1", "--idle-spin", "0us"],
        &["--instances", "1", "--intra-op-threads", "0", "--max-queue-delay", "500us"],
        &["--instances", "1", "--intra-op-threads", "0", "--max-batch-size", "256"],
    ];
    println!("\n## Settings sweep at concurrency {c} (binary tensors)\n");
    println!("| settings | model | requests/s | p50 ms | p99 ms | mean batch |");
    println!("|---|---|---:|---:|---:|---:|");
    for flags in settings {
        let server = start_server(args, flags);
        for m in models {
            let p = run_point(rt, server.addr, m, Format::Binary, c, args)?;
            println!(
                "| `{}` | {} | {:.0} | {:.3} | {:.3} | {:.1} |",
                flags.join(" "),
                m.name,
                p.rps,
                p.p50_ms,
                p.p99_ms,
                p.mean_batch
            );
        }
    }
    Ok(())
}

/// Requests/s with and without an API keys file, in five alternating rounds per model. The two servers
/// run side by side and each round measures one right after the other, so the drift of a shared VM
/// falls on both alike; the median of the per-round ratios is the cost.
fn auth_cost(args: &Args, models: &[Model], rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let c = args.concurrency.iter().copied().max().unwrap_or(64);
    let keys = tempfile::NamedTempFile::new()?;
    let key = "bench-key-0123456789abcdef";
    std::fs::write(keys.path(), format!("{key} infer\n"))?;
    let path = keys.path().to_string_lossy().into_owned();
    let open = start_server(args, &[]);
    let keyed = start_server(args, &["--api-keys-file", &path]);
    println!("\n## API keys on and off at concurrency {c} (binary tensors)\n");
    println!("| model | round | keys off requests/s | keys on requests/s | on / off | errors (off/on) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for m in models {
        let mut ratios = Vec::new();
        for round in 1..=5 {
            let a = run_point(rt, open.addr, m, Format::Binary, c, args)?;
            let request =
                Prepared { authorization: Some(format!("Bearer {key}")), ..prepare(m, Format::Binary) };
            let b = run_prepared(rt, keyed.addr, m, request, c, args)?;
            let ratio = b.rps / a.rps;
            println!(
                "| {} | {round} | {:.0} | {:.0} | {ratio:.3} | {}/{} |",
                m.name, a.rps, b.rps, a.errors, b.errors
            );
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        println!("| {} | median | | | **{:.3}** (target >= 0.98) | |", m.name, ratios[ratios.len() / 2]);
    }
    Ok(())
}
