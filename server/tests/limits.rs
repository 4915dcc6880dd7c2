//! Safe to expose: a client trickling its headers is cut off, a stalled body gets 408, requests beyond
//! --max-concurrent-requests get 429, a body the memory budget cannot hold gets 503 before it is
//! buffered, and a burst of 30 MiB requests is answered without the process growing past its budget.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kubeinfer_tests::process::ServerProcess;

fn server(flags: &[&str]) -> (ServerProcess, tempfile::TempDir) {
    let repo = common::repository(&["affine"]);
    (ServerProcess::start(common::server_binary(), repo.path(), flags), repo)
}

/// Sends `head` (request line and headers, ending in a blank line) and `body`, leaving the connection
/// open: the body may be shorter than the Content-Length the head declares.
fn send(server: &ServerProcess, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream
}

fn post_head(length: usize) -> String {
    format!("POST /v2/models/affine/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n")
}

/// Reads one response's status line, headers and JSON body.
fn response(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        let s = String::from_utf8_lossy(&text);
        if let Some((head, body)) = s.split_once("\r\n\r\n")
            && let Some(length) = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
            && body.len() >= length.trim().parse::<usize>().unwrap_or(0)
        {
            break;
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn a_client_that_trickles_its_headers_is_disconnected_after_the_header_timeout() {
    let (server, _repo) = server(&["--header-read-timeout", "1s"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"POST /v2/models/affine/infer HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        if stream.write_all(b"X-Slow: still-sending\r\n").is_err() {
            closed = true;
            break;
        }
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf);
        stream.set_nonblocking(false).unwrap();
        if matches!(read, Ok(0)) || matches!(&read, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection was still open after 10 s of trickled headers");
    assert!(started.elapsed() >= Duration::from_millis(800), "closed after only {:?}", started.elapsed());
}

#[test]
fn a_body_that_stalls_gets_408_with_a_json_error() {
    let (server, _repo) = server(&["--body-read-timeout", "1s"]);
    let mut stream = send(&server, &post_head(100), b"{\"inputs\":");
    let reply = response(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.ends_with(r#"{"error":"the request body stalled: no data for 1s"}"#), "{reply}");
}

#[test]
fn requests_beyond_the_concurrency_cap_get_429_with_retry_after() {
    let (server, _repo) = server(&["--max-concurrent-requests", "1"]);
    // The first request holds the only slot while its body is still coming.
    let _first = send(&server, &post_head(100), b"{");
    std::thread::sleep(Duration::from_millis(300));
    let mut second = send(&server, &post_head(2), b"{}");
    let reply = response(&mut second);
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"), "{reply}");
    assert!(reply.ends_with(r#"{"error":"more than 1 requests are in flight; retry shortly"}"#), "{reply}");
    let (status, _) = kubeinfer_tests::process::http_get(&server.url("/v2/health/ready")).unwrap();
    assert_eq!(status, 200, "probes are never turned away");
}

#[test]
fn a_body_the_memory_budget_cannot_hold_now_gets_503_before_it_is_read() {
    // Bodies are charged four times their size (body, decoded tensors, outputs, encoded response).
    let (server, _repo) = server(&["--max-inflight-bytes", "3145728"]);
    let _first = send(&server, &post_head(512 * 1024), b"{");
    std::thread::sleep(Duration::from_millis(300));
    let mut second = send(&server, &post_head(512 * 1024), b"");
    let reply = response(&mut second);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"), "{reply}");
    assert!(
        reply.ends_with(
            r#"{"error":"the server holds as many request bytes as its 3145728-byte budget allows; retry shortly"}"#
        ),
        "{reply}"
    );
    let mut alone = send(&server, &post_head(1024 * 1024), b"");
    let reply = response(&mut alone);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_concurrent_30_mib_requests_stay_within_the_memory_budget() {
    let (server, _repo) = server(&["--max-batch-size", "0"]);
    // affine's x as [N, 4] JSON: "0.5," per element, about 30 MiB.
    let rows = 30 * 1024 * 1024 / 16;
    let data = "0.5,".repeat(rows * 4);
    let body = format!(
        r#"{{"inputs":[{{"name":"x","shape":[{rows},4],"datatype":"FP32","data":[{}]}}]}}"#,
        data.trim_end_matches(',')
    );
    let body = bytes::Bytes::from(body);
    let client = reqwest::Client::new();
    let url = server.url("/v2/models/affine/infer");
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move { client.post(url).body(body).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap().unwrap());
    }
    assert!(statuses.iter().all(|s| [200, 413, 429, 503].contains(s)), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let peak = server.peak_rss_bytes().unwrap();
    eprintln!("statuses {statuses:?}, peak RSS {} MiB", peak >> 20);
    assert!(peak < 768 << 20, "peak RSS {} MiB", peak >> 20);
}

/// Slowloris at scale: a thousand connections trickling their headers each hold a connection slot and a
/// little memory for at most the header timeout, and meanwhile the server answers everyone else.
#[test]
fn a_thousand_trickling_clients_are_all_cut_off_while_others_are_answered() {
    const CLIENTS: usize = 1000;
    let (server, _repo) = server(&["--header-read-timeout", "2s", "--max-connections", "4096"]);
    let mut slow: Vec<Option<TcpStream>> = (0..CLIENTS)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"POST /v2/models/affine/infer HTTP/1.1\r\n").unwrap();
            s.set_nonblocking(true).unwrap();
            Some(s)
        })
        .collect();
    let mut probe = send(&server, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n", b"");
    let reply = response(&mut probe);
    assert!(reply.starts_with("HTTP/1.1 200"), "a live probe during the attack got: {reply}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) && slow.iter().any(Option::is_some) {
        std::thread::sleep(Duration::from_millis(250));
        for slot in slow.iter_mut() {
            let Some(s) = slot else { continue };
            let mut buf = [0u8; 64];
            let gone = s.write_all(b"X-Slow: still-sending\r\n").is_err()
                || matches!(s.read(&mut buf), Ok(0))
                || matches!(s.read(&mut buf), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
            if gone {
                *slot = None;
            }
        }
    }
    let open = slow.iter().filter(|s| s.is_some()).count();
    assert_eq!(open, 0, "{open} of {CLIENTS} trickling connections were still open after 20 s");
    let peak = server.peak_rss_bytes().unwrap();
    eprintln!("{CLIENTS} trickling clients cut off in {:?}; peak RSS {} MiB", started.elapsed(), peak >> 20);
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
}
