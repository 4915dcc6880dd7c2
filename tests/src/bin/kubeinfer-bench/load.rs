//! The load generator: `concurrency` keep-alive HTTP/1.1 connections, each sending one request after
//! another for a fixed time, with request bodies encoded once up front.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kubeinfer_tests::process::ServerProcess;
use tokio::net::TcpStream;

/// The server a benchmark starts, and the models it serves.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The server binary to benchmark (build it with --release).
    #[arg(long, default_value = "target/release/kubeinfer-server")]
    pub server: PathBuf,
    /// Model repository holding the benchmark models.
    #[arg(long, default_value = "examples/models")]
    pub models: PathBuf,
}

impl ServerArgs {
    pub fn start(&self, flags: &[&str]) -> ServerProcess {
        ServerProcess::start(&self.server, &self.models, flags)
    }
}

/// One prepared request: path, body, the `Inference-Header-Content-Length` for binary bodies, and the
/// `Authorization` header when the server wants an API key.
#[derive(Clone)]
pub struct Prepared {
    pub path: String,
    pub body: Bytes,
    pub header_length: Option<usize>,
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
pub struct LoadResult {
    /// Microseconds per successful request.
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The q-quantile (0..=1) latency in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Drives `addr` with `concurrency` connections for `warmup` (discarded) then `duration`.
pub async fn run(
    addr: SocketAddr,
    request: Prepared,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let users: Vec<_> =
        (0..concurrency).map(|_| tokio::spawn(user(addr, request.clone(), start, end))).collect();
    let mut total = LoadResult { elapsed: duration, ..Default::default() };
    let failed = join(users, |r: LoadResult| {
        total.latencies_us.extend(r.latencies_us);
        total.errors += r.errors;
    })
    .await;
    total.errors += failed;
    total
}

/// Awaits every load task, handing each one's result to `add`; returns how many failed or died.
pub async fn join<T>(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<T>>>, mut add: impl FnMut(T)) -> u64 {
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(result)) => add(result),
            Ok(Err(e)) => {
                eprintln!("a connection failed: {e}");
                failed += 1;
            }
            Err(e) => {
                eprintln!("a load task died: {e}");
                failed += 1;
            }
        }
    }
    failed
}

/// POSTs `request` on a connection to `addr` and reads the whole answer; returns its status.
pub async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    request: &Prepared,
) -> anyhow::Result<u16> {
    let mut builder = Request::post(&request.path).header("host", addr.to_string());
    if let Some(n) = request.header_length {
        builder = builder.header("inference-header-content-length", n);
    }
    if let Some(value) = &request.authorization {
        builder = builder.header("authorization", value);
    }
    let response = sender.send_request(builder.body(Full::new(request.body.clone()))?).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

async fn user(
    addr: SocketAddr,
    request: Prepared,
    start: Instant,
    end: Instant,
) -> anyhow::Result<LoadResult> {
    let mut sender = connect(addr).await?;
    let mut result = LoadResult::default();
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let ok = send(&mut sender, addr, &request).await? == 200;
        if sent < start {
            continue;
        }
        if ok {
            result.latencies_us.push(sent.elapsed().as_micros() as u64);
        } else {
            result.errors += 1;
        }
    }
    Ok(result)
}

/// GET `path` and return the body as text (for scraping /metrics between points).
pub async fn get_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut sender = connect(addr).await?;
    let request = Request::get(path).header("host", addr.to_string()).body(Full::new(Bytes::new()))?;
    let body = sender.send_request(request).await?.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A keep-alive HTTP/1 connection to `addr` (Nagle off, as a latency-minded client sets it).
pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
