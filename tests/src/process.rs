//! The real `kubeinfer-server` and `kubeinfer-operator` binaries as child processes on loopback ports,
//! stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A child process that logs JSON lines to stderr and announces its address with a `listening`-style event.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    guard: Option<Child>,
}

impl ServerProcess {
    /// Starts `binary serve` on `repo` and waits (up to a minute) until it is ready.
    pub fn start(binary: &Path, repo: &Path, extra: &[&str]) -> ServerProcess {
        let server = ServerProcess::launch(binary, repo, extra);
        server.wait_ready();
        server
    }

    /// Starts `binary serve` on `repo` and returns once its HTTP port listens, before it is ready.
    pub fn launch(binary: &Path, repo: &Path, extra: &[&str]) -> ServerProcess {
        let mut cmd = Command::new(binary);
        cmd.args(["--log-format", "json", "serve", "--http-host", "127.0.0.1", "--http-port", "0"])
            .arg("--model-repository")
            .arg(repo)
            .args(extra);
        ServerProcess::spawn(cmd, "listening")
    }

    /// The `addr` of the first event logged so far whose message is `message` (such as "metrics
    /// listening"), so that a test can let the server choose a port and then find it.
    pub fn logged_addr(&self, message: &str) -> Option<SocketAddr> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().find_map(|line| announced(line, message))
    }

    /// Starts `cmd` (which must log JSON to stderr) and waits for the event whose message is `message`
    /// and whose `addr` field is the address it serves on.
    pub fn spawn(mut cmd: Command, message: &str) -> ServerProcess {
        use std::os::unix::process::CommandExt;
        // Tests and benchmarks run several servers at once: gRPC's fixed default port stays off unless
        // the caller asks for it (a --grpc-port argument wins over this).
        if !cmd.get_envs().any(|(key, _)| key == "KUBEINFER_GRPC_PORT") {
            cmd.env("KUBEINFER_GRPC_PORT", "0");
        }
        // Its own process group, so that the watchdog can stop it if this test process dies.
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = log.clone();
        let message = message.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = announced(&line, &message) {
                    let _ = addr_tx.send(addr);
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let guard = Some(watchdog(child.id(), "-TERM"));
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the process never listened; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        ServerProcess { child, addr, log, guard }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a crashed node would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_status(&self.url("/v2/health/ready")).is_ok_and(|s| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server never became ready; log:\n{}", self.log.lock().unwrap().join("\n"));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process now, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:").map(|k| k * 1024)
    }

    /// The most resident memory the process has had (the kernel's high-water mark).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:").map(|k| k * 1024)
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// Sends SIGTERM, as Kubernetes does.
    pub fn terminate(&self) {
        let status =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the server did not exit within {timeout:?}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.kill();
            let _ = guard.wait();
        }
    }
}

/// A blocking HTTP GET's status code, so readiness polling needs no async runtime.
pub fn http_status(url: &str) -> std::io::Result<u16> {
    http_get(url).map(|(status, _)| status)
}

/// A blocking HTTP GET: the status code and the body (headers dropped).
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A shell that sends `signal` (e.g. "-TERM") to process group `pid` once this test process is gone, even
/// if it crashed, and SIGKILL a few seconds later. Kill it (and wait) when the group is stopped normally.
pub fn watchdog(pid: u32, signal: &str) -> Child {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {signal} -{pid} 2>/dev/null; sleep 5; kill -KILL -{pid} 2>/dev/null"
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the watchdog starts")
}

/// Removes `dir` once this test process is gone, after the watchdogs have had time to stop what used
/// it. A cluster kept in a `static` (shared by one test binary) is never dropped, so its `TempDir`
/// never cleans up: without this every test run left its databases in /tmp.
pub fn remove_when_gone(dir: &std::path::Path) {
    let me = std::process::id();
    let quoted = dir.display().to_string().replace('\'', "'\\''");
    let script = format!("while kill -0 {me} 2>/dev/null; do sleep 1; done; sleep 7; rm -rf '{quoted}'");
    // Not waited for: it outlives this process by design.
    let _ = Command::new("sh").args(["-c", &script]).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
}

/// Sends `signal` to the process group `child` leads, waits up to `grace` for it to exit, then SIGKILLs.
pub fn stop_group(child: &mut Child, signal: &str, grace: Duration) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    let _ = child.wait();
}

/// `pid` and every process below it, parents before children, read from /proc.
pub fn with_descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The command name may hold spaces and parentheses: the fields follow the last ')'.
            let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        all.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    all
}

/// The `addr` of a JSON log line whose message is `message`, such as the server's "listening".
fn announced(line: &str, message: &str) -> Option<SocketAddr> {
    let event = serde_json::from_str::<serde_json::Value>(line).ok()?;
    if event["message"] != message {
        return None;
    }
    event["addr"].as_str()?.parse().ok()
}

/// A loopback port free at the time of asking (0 if none could be had).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Whether this process runs as root (PostgreSQL's tools then run as the postgres user).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
