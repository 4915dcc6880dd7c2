//! Published ONNX models, served unmodified: each model of tests/corpus/corpus.json comes out of a pinned
//! PyPI wheel (scripts/fetch_corpus.py, cached), and every answer the server gives through Triton's
//! client, in binary tensors and in JSON, must equal ONNX Runtime run in-process on the same inputs
//! (server/tests/clients/corpus_check.py says how close). Among them: a stateful audio model with a
//! rank-0 input whose synthetic warm-up fails, dimensions named `?` and `unk__N`, INT32, INT64 and FP64
//! inputs, and a model with several inputs and outputs.

mod common;

use std::process::Command;

use kubeinfer_tests::process::{ServerProcess, http_get};

fn corpus_repository() -> String {
    let out = Command::new("python3")
        .arg(common::workspace().join("scripts/fetch_corpus.py"))
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "fetching the corpus failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn every_published_model_answers_like_onnx_runtime_in_process() {
    let Some(venv) = common::test_venv() else { return };
    let repo = corpus_repository();
    let server = ServerProcess::start(common::server_binary(), repo.as_ref(), &[]);

    // silero_vad cannot run on a one-sample input; that costs it its warm-up, not its place.
    let log = server.log_text();
    assert!(log.contains("the synthetic warm-up failed; serving the model anyway"), "{log}");
    assert!(log.contains("Pad reflect requires axis length >= 2"), "{log}");
    let (status, metrics) = http_get(&server.url("/metrics")).unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"kubeinfer_model_warmup_failures_total{model="silero_vad",version="1"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kubeinfer_model_warmup_failures_total{model="magika",version="1"} 0"#),
        "{metrics}"
    );

    let addr = server.addr.to_string();
    let corpus = common::workspace().join("tests/corpus/corpus.json");
    common::python_check(
        &venv,
        "corpus_check.py",
        &[addr.as_ref(), corpus.as_ref(), repo.as_ref()],
        "all corpus checks passed",
    );
}
