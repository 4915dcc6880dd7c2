//! Concurrency through the real router: many callers with distinct inputs each get their own outputs,
//! and batches larger than one form.

mod common;

use std::time::Duration;

use common::{f32s, output, sample, start};
use serde_json::json;

fn affine_v2(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| 3.0 * v - 1.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_callers_each_get_their_own_rows_from_shared_batches() {
    let settings = common::delayed(Duration::from_millis(20));
    let app = std::sync::Arc::new(start(&["affine"], settings));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let rows = 1 + i % 3;
            let x: Vec<f32> = (0..rows * 4).map(|j| (i * 100 + j) as f32).collect();
            let body = json!({"id": i.to_string(), "inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": x}]});
            let reply = app.post_json("/v2/models/affine/infer", &body).await;
            (i, rows, x, reply)
        }));
    }
    let mut total_rows = 0;
    for task in tasks {
        let (i, rows, x, reply) = task.await.unwrap();
        assert_eq!(reply.status, 200, "request {i}: {}", String::from_utf8_lossy(&reply.body));
        let body = reply.json();
        assert_eq!(body["id"], i.to_string());
        assert_eq!(f32s(output(&body, "y")), affine_v2(&x), "request {i} got someone else's rows");
        assert_eq!(output(&body, "y")["shape"], json!([rows, 4]));
        total_rows += rows;
    }
    let m = app.metrics().await;
    let batches = sample(&m, r#"kubeinfer_inference_batch_size_count{model="affine",version="2"}"#);
    let rows = sample(&m, r#"kubeinfer_inference_batch_size_sum{model="affine",version="2"}"#);
    assert_eq!(rows, total_rows as f64);
    assert!(batches < 64.0, "64 requests ran in {batches} batches: none were combined");
    assert!(rows / batches > 1.0, "mean batch size {}", rows / batches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heavy_mlp_gives_the_same_answers_batched_as_alone() {
    let app = std::sync::Arc::new(start(&["heavy_mlp"], common::defaults()));
    let input =
        |i: usize| -> Vec<f32> { (0..512).map(|j| ((i * 512 + j) % 97) as f32 / 97.0 - 0.5).collect() };
    let request = |i: usize| json!({"inputs": [{"name": "input", "shape": [1, 512], "datatype": "FP32", "data": input(i)}]});
    let mut alone = Vec::new();
    for i in 0..16 {
        alone.push(f32s(output(
            &app.post_json("/v2/models/heavy_mlp/infer", &request(i)).await.json(),
            "logits",
        )));
    }
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            let body = request(i);
            tokio::spawn(async move {
                f32s(output(&app.post_json("/v2/models/heavy_mlp/infer", &body).await.json(), "logits"))
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let together = task.await.unwrap();
        for (a, b) in together.iter().zip(&alone[i]) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "request {i}: {a} batched vs {b} alone");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_batch_answers_concurrent_callers_one_run_each() {
    let app = std::sync::Arc::new(start(&["multi_io"], common::defaults()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = json!({"inputs": [
                    {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [i, i + 1, i + 2]},
                    {"name": "k", "shape": [], "datatype": "INT64", "data": 2},
                    {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [true, true, false]}]});
                (i, app.post_json("/v2/models/multi_io/infer", &body).await.json())
            })
        })
        .collect();
    for task in tasks {
        let (i, body) = task.await.unwrap();
        let i = i as f32;
        assert_eq!(f32s(output(&body, "out/scaled.x")), vec![2.0 * i, 2.0 * (i + 1.0), 2.0 * (i + 2.0)]);
    }
    let m = app.metrics().await;
    assert_eq!(sample(&m, r#"kubeinfer_inference_batch_size_count{model="multi_io",version="1"}"#), 16.0);
    assert_eq!(sample(&m, r#"kubeinfer_inference_batch_size_sum{model="multi_io",version="1"}"#), 16.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    // One slot, and a batch that waits a long while for company: the second request finds the queue full.
    let mut settings = common::delayed(Duration::from_secs(2));
    settings.queue_capacity = 1;
    let app = std::sync::Arc::new(start(&["affine"], settings));
    let body = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let first = {
        let app = app.clone();
        let body = body.clone();
        tokio::spawn(async move { app.post_json("/v2/models/affine/infer", &body).await })
    };
    for _ in 0..500 {
        if app.registry.get("affine", None).unwrap().queue_len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let second = app.post_json("/v2/models/affine/infer", &body).await;
    assert_eq!(second.status, 503);
    assert_eq!(second.headers["retry-after"], "1");
    assert_eq!(second.error(), "the queue of model 'affine' is full (1 requests waiting); retry later");
    assert_eq!(first.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_queued_past_its_timeout_parameter_gets_503() {
    let app = start(&["affine"], common::delayed(Duration::from_secs(5)));
    let body = json!({"parameters": {"timeout": 20000},
                      "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let started = std::time::Instant::now();
    let reply = app.post_json("/v2/models/affine/infer", &body).await;
    assert!(started.elapsed() < Duration::from_secs(4), "the timeout was not honoured");
    assert_eq!(reply.status, 503);
    assert!(reply.error().starts_with("request to model 'affine' waited "), "{}", reply.error());
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"kubeinfer_inference_requests_total{model="affine",outcome="timeout",protocol="rest",version="2"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_latency_target_below_the_models_cost_the_cost_timed_at_start_up_sheds_the_first_request() {
    let target = Duration::from_micros(1);
    let app = start(
        &["affine"],
        kubeinfer_server::model::settings::ModelSettings {
            latency_target: Some(target),
            ..common::defaults()
        },
    );
    let body = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let shed = app.post_json("/v2/models/affine/infer", &body).await;
    assert_eq!(shed.status, 503, "every batch size was timed before the first request");
    assert_eq!(shed.headers["retry-after"], "1");
    assert_eq!(
        shed.headers.get("connection"),
        None,
        "its small body is read and thrown away, so the connection stays open for the next request"
    );
    assert!(shed.error().starts_with("model 'affine' would answer in about "), "{}", shed.error());
    assert!(
        shed.error().ends_with(
            "past its latency target of 1µs: shed rather than answered late; retry later or elsewhere"
        ),
        "{}",
        shed.error()
    );
    assert_eq!(app.post_json("/v2/models/affine/infer", &body).await.status, 503);
    let m = app.metrics().await;
    let series = |s: &str| sample(&m, s);
    assert_eq!(
        series(
            r#"kubeinfer_inference_requests_total{model="affine",outcome="shed",protocol="rest",version="2"}"#
        ),
        2.0
    );
    assert_eq!(series(r#"kubeinfer_inference_shed_total{model="affine",stage="arrival",version="2"}"#), 2.0);
    assert_eq!(series(r#"kubeinfer_latency_target_seconds{model="affine",version="2"}"#), 0.000001);
    assert_eq!(
        series(r#"kubeinfer_inference_within_target_total{model="affine",protocol="rest",version="2"}"#),
        0.0
    );
    for rows in [1, 2, 4, 8, 16, 32, 64] {
        let cost = format!(r#"kubeinfer_batch_cost_seconds{{model="affine",rows="{rows}",version="2"}}"#);
        assert!(series(&cost) > 0.0, "{rows} rows were timed at start-up");
    }
    // Each size ran once: no class has a second batch to learn the margin from yet.
    assert_eq!(series(r#"kubeinfer_batch_cost_margin{model="affine",version="2"}"#), 1.25);
    // The autoscaling gauge: a shed request counts as using its whole target.
    assert_eq!(series(r#"kubeinfer_latency_target_used_ratio{model="affine",version="2"}"#), 1.0);
}

/// Every inference outcome of affine v2 over REST, as (outcome, count) for the non-zero ones.
fn rest_outcomes(metrics: &str) -> Vec<(String, f64)> {
    ["success", "invalid", "rejected", "timeout", "shed", "cancelled", "error"]
        .iter()
        .map(|o| {
            let series = format!(
                r#"kubeinfer_inference_requests_total{{model="affine",outcome="{o}",protocol="rest",version="2"}}"#
            );
            (o.to_string(), sample(metrics, &series))
        })
        .filter(|(_, n)| *n > 0.0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_caller_goes_away_while_queued_counts_once_as_cancelled() {
    let app = start(&["affine"], common::delayed(Duration::from_secs(5)));
    let body = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let gone =
        tokio::time::timeout(Duration::from_millis(200), app.post_json("/v2/models/affine/infer", &body));
    assert!(gone.await.is_err(), "the request was still waiting for company");
    assert_eq!(rest_outcomes(&app.metrics().await), [("cancelled".to_string(), 1.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_decoding_count_too_each_once() {
    let app = start(&["affine"], common::defaults());
    let reply = app.post_raw("/v2/models/affine/infer", b"{}".to_vec(), Some("é")).await;
    assert_eq!(reply.status, 400, "a non-ASCII Inference-Header-Content-Length");
    let reply = app.post_raw("/v2/models/affine/infer", b"{}".to_vec(), Some("999")).await;
    assert_eq!(reply.status, 400, "a header length past the body");
    assert_eq!(rest_outcomes(&app.metrics().await), [("invalid".to_string(), 2.0)]);
}

/// Start-up times each batch size with stacked copies of a made-up request: no bundled model, whatever
/// its inputs (a scalar among them), may fail to load for it.
#[test]
fn every_bundled_model_loads_with_a_latency_target() {
    let settings = kubeinfer_server::model::settings::ModelSettings {
        latency_target: Some(Duration::from_millis(20)),
        ..common::defaults()
    };
    let models = ["affine", "digits", "echo", "external_data", "fixed_batch", "heavy_mlp", "multi_io"];
    let registry = common::load(&models, &settings).unwrap_or_else(|e| panic!("{e}"));
    for model in models {
        assert!(registry.get(model, None).is_ok(), "{model} is served");
    }
}
