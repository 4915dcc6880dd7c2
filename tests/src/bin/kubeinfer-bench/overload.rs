//! The overload benchmark: open-loop load (requests sent on a fixed schedule, whatever the answers do)
//! at multiples of the model's measured capacity, against the server without and with a latency
//! target. Latency runs from each request's scheduled time, not from when a connection was free to
//! send it, so a server that falls behind is charged for the whole delay (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args as ClapArgs;
use kubeinfer_server::lag;
use kubeinfer_server::units::parse_duration;
use kubeinfer_tests::process::ServerProcess;

use crate::load::{self, Prepared};
use scrape::{Counters, learned_costs};

mod scrape;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    served: load::ServerArgs,
    /// The model to overload; it must have a single FP32 input of shape [-1, width].
    #[arg(long, default_value = "heavy_mlp")]
    model: String,
    /// The latency target of the second configuration, and the bar of goodput in both.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    target: Duration,
    /// The target given to the server, when it should differ from --target: a shorter one leaves
    /// headroom for the time the client sees and the server does not (its queues, the kernel's).
    #[arg(long, value_parser = parse_duration)]
    server_target: Option<Duration>,
    /// Offered load, as multiples of the measured capacity.
    #[arg(long, value_delimiter = ',', default_value = "0.5,1,1.6,2")]
    load: Vec<f64>,
    /// Connections the open-loop client spreads its schedule over (at most the server's
    /// --max-concurrent-requests, 512 by default).
    #[arg(long, default_value_t = 384)]
    connections: usize,
    /// Measured time per point.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before each point.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Pin the load generator to CPU 0 and each server to CPU 1 (taskset), so that the client's own
    /// work (which grows with the offered rate, answered or shed) does not take the server's CPU.
    #[arg(long)]
    pin: bool,
}

/// What one open-loop point saw, over the measured window.
#[derive(Debug, Default)]
struct Outcome {
    /// Microseconds from schedule to answer, of each 200.
    answered_us: Vec<u64>,
    /// The same from when the request was sent: without the time the load generator itself fell
    /// behind its schedule (its share of the CPU the server also runs on).
    from_sending_us: Vec<u64>,
    /// The generator's own wake-up delays over the window (`wake_delays`).
    wake_delays_us: Vec<u64>,
    /// 503s: shed for the target, or turned away by a full queue.
    refused: u64,
    errors: u64,
    sent: u64,
    /// Connections opened again after the server closed one (a refusal that left its body unread).
    reconnects: u64,
    /// When the last answer of the window arrived: an overloaded server without a target is still
    /// answering the window's backlog after it ends, and its throughput is counted over that time.
    finished: Option<Instant>,
    start: Option<Instant>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.pin {
        pin(std::process::id(), "0")?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let plain = start(&args, &[])?;
    let request = rt.block_on(prepare(plain.addr, &args.model))?;
    let mut closed = rt.block_on(load::run(plain.addr, request.clone(), 64, args.warmup, args.duration));
    let capacity = closed.rps();
    println!(
        "\n{}: capacity {capacity:.0} req/s (closed loop, 64 connections; p50 {:.2} ms, p99 {:.2} ms)",
        args.model,
        closed.quantile_ms(0.5),
        closed.quantile_ms(0.99)
    );
    drop(plain);
    let server_target = args.server_target.unwrap_or(args.target);
    let target = format!("{}us", server_target.as_micros());
    let with_target = format!("latency target {server_target:?}");
    let configs: [(&str, Vec<&str>); 2] =
        [("no target", vec![]), (with_target.as_str(), vec!["--latency-target", target.as_str()])];
    println!(
        "\n| server | offered (× capacity) | offered req/s | answered req/s | goodput req/s (≤ {:?}) | \
         goodput / capacity | p50 ms | p99 ms | p99 ms from sending | shed or refused (count) | shed at arrival / in queue | \
         in time by the server's clock | by the client's | async wake delay: mean ms, > 4 ms | the client's | mean batch | \
         reconnects | errors |",
        args.target
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut learned = Vec::new();
    for (label, flags) in configs {
        let server = start(&args, &flags)?;
        for &multiple in &args.load {
            let rate = capacity * multiple;
            // The server's counts start with the measured window, as the client's do: the warm-up
            // (a fresh server's first second, its connections opening) is left out of both.
            let (mut o, before) = rt.block_on(async {
                let counted = async {
                    tokio::time::sleep(args.warmup).await;
                    Counters::scrape(server.addr, &args.model).await
                };
                tokio::join!(open_loop(server.addr, &request, rate, &args), counted)
            });
            let (before, after) = (before?, rt.block_on(Counters::scrape(server.addr, &args.model))?);
            print_row(label, multiple, rate, capacity, &mut o, &after.minus(&before), &args);
        }
        learned.push((label, rt.block_on(learned_costs(server.addr, &args.model))?));
    }
    for (label, costs) in learned.iter().filter(|(_, c)| !c.is_empty()) {
        println!("\n{label}: the learned batch cost at the end, by size class: {costs}");
    }
    Ok(())
}

/// The server on the example models with `flags`, on CPU 1 when pinning.
fn start(args: &Args, flags: &[&str]) -> anyhow::Result<ServerProcess> {
    let server = args.served.start(flags);
    if args.pin {
        pin(server.pid(), "1")?;
    }
    Ok(server)
}

/// Every thread of process `pid` onto `cpus` (new threads inherit it).
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset -a -p -c {cpus} {pid} failed");
    Ok(())
}

fn print_row(
    label: &str,
    multiple: f64,
    rate: f64,
    capacity: f64,
    o: &mut Outcome,
    server: &Counters,
    args: &Args,
) {
    let seconds = args.duration.as_secs_f64();
    let answering = match (o.start, o.finished) {
        (Some(start), Some(end)) => (end - start).as_secs_f64().max(seconds),
        _ => seconds,
    };
    let target_us = args.target.as_micros() as u64;
    let good = o.answered_us.iter().filter(|&&us| us <= target_us).count() as f64 / seconds;
    o.answered_us.sort_unstable();
    o.from_sending_us.sort_unstable();
    let quantile = |us: &[u64], q: f64| match us.len() {
        0 => f64::NAN,
        n => us[((n - 1) as f64 * q).round() as usize] as f64 / 1000.0,
    };
    let share = |n: u64| if o.sent > 0 { n as f64 / o.sent as f64 } else { 0.0 };
    let (in_time, client_in_time) = in_time_cells(server, &o.answered_us);
    let mean_batch = if server.batches > 0.0 { server.rows / server.batches } else { f64::NAN };
    let wake = wake_cell(server.wakes, server.wake_delay * 1e3, server.wakes - server.wakes_within_4ms);
    let delays = &o.wake_delays_us;
    let client_wake = wake_cell(
        delays.len() as f64,
        delays.iter().sum::<u64>() as f64 / 1e3,
        delays.iter().filter(|&&us| us > 4_000).count() as f64,
    );
    println!(
        "| {label} | {multiple:.1} | {rate:.0} | {:.0} | {good:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}% ({}) | {:.0} / {:.0} \
         | {in_time} | {client_in_time} | {wake} | {client_wake} | {mean_batch:.1} | {} | {} |",
        o.answered_us.len() as f64 / answering,
        good / capacity,
        quantile(&o.answered_us, 0.5),
        quantile(&o.answered_us, 0.99),
        quantile(&o.from_sending_us, 0.99),
        100.0 * share(o.refused),
        o.refused,
        server.shed_at_arrival,
        server.shed_in_queue,
        o.reconnects,
        o.errors
    );
}

/// The server's share of answers within its target, and the client's share within the same target
/// (`answered_us` from the schedule): lower by the answers that the time outside the server's clock
/// (the kernel's, hyper's, the client's own) carries past it. "-" without a target.
fn in_time_cells(server: &Counters, answered_us: &[u64]) -> (String, String) {
    if server.target <= 0.0 || server.answered <= 0.0 {
        return ("-".to_string(), "-".to_string());
    }
    let target_us = (server.target * 1e6).round() as u64;
    let within = answered_us.iter().filter(|&&us| us <= target_us).count();
    let client = 100.0 * within as f64 / answered_us.len().max(1) as f64;
    (format!("{:.1}%", 100.0 * server.within_target / server.answered), format!("{client:.1}%"))
}

/// `wakes` wake-ups late by `total_ms` in all, `over_4ms` of them by more than 4 ms: "mean ms, share".
fn wake_cell(wakes: f64, total_ms: f64, over_4ms: f64) -> String {
    match wakes > 0.0 {
        true => format!("{:.2}, {:.1}%", total_ms / wakes, 100.0 * over_4ms / wakes),
        false => "-".to_string(),
    }
}

/// A binary request of one row for `model`, shaped from its metadata.
async fn prepare(addr: SocketAddr, model: &str) -> anyhow::Result<Prepared> {
    let meta: serde_json::Value =
        serde_json::from_str(&load::get_text(addr, &format!("/v2/models/{model}")).await?)?;
    let input = meta["inputs"][0]["name"].as_str().unwrap_or("x").to_string();
    let width = meta["inputs"][0]["shape"][1].as_u64().unwrap_or(1) as usize;
    let header = serde_json::json!({"inputs": [{"name": input, "shape": [1, width], "datatype": "FP32",
        "parameters": {"binary_data_size": width * 4}}], "parameters": {"binary_data_output": true}});
    let mut body = serde_json::to_vec(&header)?;
    let header_length = body.len();
    for i in 0..width {
        body.extend_from_slice(&((i % 7) as f32 * 0.25).to_le_bytes());
    }
    Ok(Prepared {
        path: format!("/v2/models/{model}/infer"),
        body: Bytes::from(body),
        header_length: Some(header_length),
        authorization: None,
    })
}

/// Sends request i at `i / rate` after the start, over `connections` connections, for the warm-up and
/// the measured window; records what was scheduled inside the window.
async fn open_loop(addr: SocketAddr, request: &Prepared, rate: f64, args: &Args) -> Outcome {
    let t0 = Instant::now();
    let schedule = Schedule { t0, start: t0 + args.warmup, end: t0 + args.warmup + args.duration, rate };
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(connection(addr, request.clone(), schedule, next.clone())))
        .collect();
    let probe = tokio::spawn(wake_delays(schedule.start, schedule.end));
    let mut total = Outcome { start: Some(schedule.start), ..Default::default() };
    let failed = load::join(tasks, |o: Outcome| {
        total.answered_us.extend(o.answered_us);
        total.from_sending_us.extend(o.from_sending_us);
        total.refused += o.refused;
        total.errors += o.errors;
        total.sent += o.sent;
        total.reconnects += o.reconnects;
        total.finished = total.finished.max(o.finished);
    })
    .await;
    total.errors += failed;
    total.wake_delays_us = probe.await.unwrap_or_default();
    total
}

/// How late a task asking to wake every 10 ms woke, in microseconds, over the window: the load
/// generator's own wait for a core, as `kubeinfer_runtime_wake_delay_seconds` is the server's. An
/// answer that waits as long to be read is charged to the server's latency.
async fn wake_delays(start: Instant, end: Instant) -> Vec<u64> {
    tokio::time::sleep_until(start.into()).await;
    let mut delays = Vec::new();
    let probe = lag::probe(lag::PERIOD, |late| delays.push(late.as_micros() as u64));
    let _ = tokio::time::timeout_at(end.into(), probe).await;
    delays
}

#[derive(Debug, Clone, Copy)]
struct Schedule {
    t0: Instant,
    start: Instant,
    end: Instant,
    rate: f64,
}

/// One connection: takes the next scheduled request, waits for its time, sends it, and charges the
/// answer's latency from the scheduled time.
async fn connection(
    addr: SocketAddr,
    request: Prepared,
    s: Schedule,
    next: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let mut sender = load::connect(addr).await?;
    let mut o = Outcome::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let at = s.t0 + Duration::from_secs_f64(i as f64 / s.rate);
        if at >= s.end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        // A client that pools connections opens a new one when the server closed the last; that cost
        // is the server's doing and is charged to the request's latency.
        if sender.ready().await.is_err() {
            sender = load::connect(addr).await?;
            if at >= s.start {
                o.reconnects += 1;
            }
        }
        let sent = Instant::now();
        let status = load::send(&mut sender, addr, &request).await?;
        if at < s.start {
            continue;
        }
        o.sent += 1;
        o.finished = Some(Instant::now());
        match status {
            200 => {
                o.answered_us.push(at.elapsed().as_micros() as u64);
                o.from_sending_us.push(sent.elapsed().as_micros() as u64);
            }
            503 => o.refused += 1,
            _ => o.errors += 1,
        }
    }
    Ok(o)
}
