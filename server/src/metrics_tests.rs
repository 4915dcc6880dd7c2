//! The metrics' unit tests (metrics.rs had passed 400 lines).

use super::*;

#[test]
fn model_series_appear_under_their_labels() {
    let m = Metrics::new("1.31.1");
    let mm = m.for_model("digits", 1, None);
    mm.over(Protocol::Grpc).start(Instant::now()).finish(Outcome::Success, Duration::ZERO);
    mm.batch_size.observe(8.0);
    let text = m.render();
    assert!(text.contains(
        r#"kubeinfer_inference_requests_total{model="digits",outcome="success",protocol="grpc",version="1"} 1"#
    ));
    assert!(text.contains(
        r#"kubeinfer_inference_requests_total{model="digits",outcome="success",protocol="rest",version="1"} 0"#
    ));
    assert!(text.contains(r#"kubeinfer_inference_batch_size_sum{model="digits",version="1"} 8"#));
    assert!(text.contains(r#"kubeinfer_build_info{onnxruntime="1.31.1",version="0.1.0"} 1"#));
}

#[test]
fn with_a_target_a_shed_request_counts_as_the_whole_target_used_and_a_bad_one_not_at_all() {
    let m = Metrics::new("x");
    let mm = m.for_model("fast", 1, Some(Duration::from_millis(20)));
    mm.rest.start(Instant::now()).finish(Outcome::Shed, Duration::ZERO);
    mm.grpc.start(Instant::now()).finish(Outcome::Invalid, Duration::ZERO);
    let text = m.render();
    assert!(text.contains(r#"kubeinfer_latency_target_used_ratio{model="fast",version="1"} 1"#), "{text}");
    assert!(text.contains(r#"kubeinfer_queue_wait_recent_seconds{model="fast",version="1"} 0"#), "{text}");
}

#[test]
fn two_instances_do_not_share_series() {
    let a = Metrics::new("x");
    let b = Metrics::new("x");
    a.for_model("m", 1, None).rest.counter(Outcome::Success).inc();
    assert!(!b.render().contains(r#"outcome="success",protocol="rest",version="1"} 1"#));
}
