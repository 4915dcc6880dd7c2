//! A model repository written for Triton, `config.pbtxt` files included, is served without edits: each
//! field the server honours shows in behaviour and in `/v2/models/{m}/config`, and a config that
//! disagrees with its model stops start-up with a message naming the file.

mod common;

use std::path::Path;

use common::{defaults, example_models, f32s, output, start_in};
use kubeinfer_server::metrics::Metrics;
use serde_json::{Value, json};

/// One model directory of a test repository: the example whose files it copies, the versions it
/// copies, the model file's name, and its `config.pbtxt` (and `config.toml` when given).
struct Model<'a> {
    dir: &'a str,
    example: &'a str,
    versions: &'a [u64],
    filename: &'a str,
    pbtxt: &'a str,
    toml: Option<&'a str>,
}

fn repository(models: &[Model]) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    for m in models {
        let dir = repo.path().join(m.dir);
        for v in m.versions {
            std::fs::create_dir_all(dir.join(v.to_string())).unwrap();
            let source = example_models().join(m.example).join(v.to_string()).join("model.onnx");
            std::fs::copy(source, dir.join(v.to_string()).join(m.filename)).unwrap();
        }
        std::fs::write(dir.join("config.pbtxt"), m.pbtxt).unwrap();
        if let Some(toml) = m.toml {
            std::fs::write(dir.join("config.toml"), toml).unwrap();
        }
    }
    repo
}

fn write_warmup(repo: &Path, model: &str, file: &str, values: &[f32]) {
    let dir = repo.join(model).join("warmup");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

const AFFINE: &str = r#"
name: "affine"
platform: "onnxruntime_onnx"
max_batch_size: 4
version_policy: { specific: { versions: [ 1 ] } }
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 2000
  default_queue_policy { default_timeout_microseconds: 5000000 max_queue_size: 16 allow_timeout_override: false }
}
instance_group [ { count: 2 kind: KIND_CPU } ]
default_model_filename: "affine.onnx"
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
model_warmup [ {
  name: "two rows"
  batch_size: 2
  inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "x.bin" } }
} ]
"#;

fn affine() -> Model<'static> {
    Model {
        dir: "affine",
        example: "affine",
        versions: &[1, 2],
        filename: "affine.onnx",
        pbtxt: AFFINE,
        toml: None,
    }
}

fn rows(n: usize) -> Value {
    let data: Vec<f32> = (0..n * 4).map(|i| i as f32).collect();
    json!({"inputs": [{"name": "x", "shape": [n, 4], "datatype": "FP32", "data": data}]})
}

#[tokio::test]
async fn every_honoured_field_shows_in_the_models_configuration() {
    let repo = repository(&[affine()]);
    write_warmup(repo.path(), "affine", "x.bin", &[1.0, 2.0, 3.0, 4.0]);
    let app = start_in(repo, defaults(), 1 << 20, None);
    let config = app.get("/v2/models/affine/config").await.json();
    assert_eq!(config["max_batch_size"], 4);
    assert_eq!(config["input"][0]["dims"], json!([4]));
    assert_eq!(config["version_policy"], json!({"specific": {"versions": [1]}}));
    assert_eq!(config["default_model_filename"], "affine.onnx");
    assert_eq!(config["instance_group"][0]["kind"], "KIND_CPU");
    assert_eq!(config["instance_group"][0]["count"], 2);
    assert_eq!(config["parameters"]["intra_op_thread_count"]["string_value"], "1");
    assert_eq!(
        config["dynamic_batching"],
        json!({
            "preferred_batch_size": [2, 4],
            "max_queue_delay_microseconds": 2000,
            "preserve_ordering": false,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": 5000000,
                "allow_timeout_override": false,
                "max_queue_size": 16,
            },
        })
    );
    assert_eq!(config["model_warmup"][0]["name"], "two rows");
    assert_eq!(config["model_warmup"][0]["inputs"]["x"]["input_data_file"], "x.bin");
}

#[tokio::test]
async fn only_the_versions_of_the_policy_are_served_and_max_batch_size_is_a_hard_limit() {
    let repo = repository(&[affine()]);
    write_warmup(repo.path(), "affine", "x.bin", &[1.0, 2.0, 3.0, 4.0]);
    let app = start_in(repo, defaults(), 1 << 20, None);
    assert_eq!(app.get("/v2/models/affine").await.json()["versions"], json!(["1"]));
    assert_eq!(app.get("/v2/models/affine/versions/2").await.status.as_u16(), 404);

    let reply = app.post_json("/v2/models/affine/infer", &rows(4)).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.error());
    let want: Vec<f32> = (0..16).map(|i| 2.0 * i as f32 + 1.0).collect();
    assert_eq!(f32s(output(&reply.json(), "y")), want);

    let reply = app.post_json("/v2/models/affine/infer", &rows(5)).await;
    assert_eq!(
        (reply.status.as_u16(), reply.error()),
        (400, "the request to model 'affine' has 5 rows, more than its max_batch_size of 4".to_string())
    );
}

#[tokio::test]
async fn triton_defaults_apply_and_config_toml_wins_where_both_set_a_field() {
    let latest = Model {
        dir: "latest",
        example: "affine",
        versions: &[1, 2],
        filename: "model.onnx",
        pbtxt: "max_batch_size: 8",
        toml: Some("max_batch_size = 2\n"),
    };
    let whole = Model {
        dir: "whole",
        example: "multi_io",
        versions: &[1],
        filename: "model.onnx",
        pbtxt: r#"max_batch_size: 0
                  input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, 3 ] },
                          { name: "k" data_type: TYPE_INT64 dims: [ ] },
                          { name: "mask" data_type: TYPE_BOOL dims: [ -1, 3 ] } ]"#,
        toml: None,
    };
    let app = start_in(repository(&[latest, whole]), defaults(), 1 << 20, None);

    // Triton serves the latest version unless told otherwise; without dynamic_batching it does not
    // stack requests, and config.toml's max_batch_size replaces the config.pbtxt's.
    assert_eq!(app.get("/v2/models/latest").await.json()["versions"], json!(["2"]));
    let config = app.get("/v2/models/latest/config").await.json();
    assert_eq!(config["version_policy"], json!({"latest": {"num_versions": 1}}));
    assert_eq!(config["max_batch_size"], 2);
    assert!(config.get("dynamic_batching").is_none(), "{config}");

    // The config's fixed 2 narrows the model's open first dimension of x.
    assert_eq!(app.get("/v2/models/whole").await.json()["inputs"][0]["shape"], json!([2, 3]));
    let one_row = json!({"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        {"name": "k", "shape": [], "datatype": "INT64", "data": [2]},
        {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [true, false, true]}]});
    let reply = app.post_json("/v2/models/whole/infer", &one_row).await;
    assert_eq!(reply.status.as_u16(), 400);
    assert!(reply.error().contains("'x'"), "{}", reply.error());
}

fn load_error(models: &[Model], warmup: Option<&[f32]>) -> String {
    let repo = repository(models);
    if let Some(values) = warmup {
        write_warmup(repo.path(), models[0].dir, "x.bin", values);
    }
    let err =
        common::load_into(repo.path(), &defaults(), &Metrics::new("test")).err().expect("start-up fails");
    let config = repo.path().join(models[0].dir).join("config.pbtxt");
    err.strip_prefix(&format!("{}: ", config.display())).unwrap_or(&err).to_string()
}

#[test]
fn a_config_that_disagrees_with_its_model_stops_start_up_naming_the_file_and_the_tensor() {
    let pbtxt = AFFINE.replace("dims: [ 4 ] }", "dims: [ 5 ] }");
    let err = load_error(&[Model { pbtxt: &pbtxt, ..affine() }], Some(&[1.0, 2.0, 3.0, 4.0]));
    assert_eq!(
        err,
        "input 'x' has dims [-1, 5] (with the batch dimension, as max_batch_size > 0) in the config but [-1, 4] \
         in the model"
    );
    let err = load_error(&[Model { pbtxt: "platform: \"tensorflow_savedmodel\"", ..affine() }], None);
    assert!(err.starts_with("platform \"tensorflow_savedmodel\" is not ONNX"), "{err}");
    let err = load_error(&[Model { pbtxt: "max_batch_size: 4\nbogus: 1\n", ..affine() }], None);
    assert_eq!(err, "line 2, column 1: field 'bogus' not found for message 'inference.ModelConfig'");
}

#[test]
fn a_model_warmup_that_does_not_fit_stops_start_up() {
    let err = load_error(&[affine()], Some(&[1.0, 2.0, 3.0]));
    assert!(
        err.starts_with("model_warmup 'two rows': input 'x': ")
            && err.ends_with("has 12 bytes of binary data but 4 FP32 elements need 16"),
        "{err}"
    );
}
