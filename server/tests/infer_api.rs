//! The Open Inference Protocol through the real router, real ONNX Runtime and the example models.

mod common;

use common::{f32s, output, start};
use serde_json::{Value, json};

#[tokio::test]
async fn affine_answers_the_exact_analytic_values_of_its_highest_version_for_nested_json() {
    let app = start(&["affine"], common::defaults());
    let reply = app
        .post_json(
            "/v2/models/affine/infer",
            &json!({"id": "req-7", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                     "data": [[1, 2, 3, 4], [-1, 0.5, 0, 10]]}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.error());
    let body = reply.json();
    assert_eq!(body["model_name"], "affine");
    assert_eq!(body["model_version"], "2");
    assert_eq!(body["id"], "req-7");
    // version 2: y = 3x - 1, total = sum(x)
    assert_eq!(f32s(output(&body, "y")), vec![2.0, 5.0, 8.0, 11.0, -4.0, 0.5, -1.0, 29.0]);
    assert_eq!(output(&body, "y")["shape"], json!([2, 4]));
    assert_eq!(f32s(output(&body, "total")), vec![10.0, 9.5]);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert!(reply.headers.contains_key("x-queue-time-us"));
    assert_eq!(reply.headers["x-batch-size"], "2");
}

#[tokio::test]
async fn every_version_is_addressable() {
    let app = start(&["affine"], common::defaults());
    let body = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let v1 = app.post_json("/v2/models/affine/versions/1/infer", &body).await.json();
    assert_eq!(v1["model_version"], "1");
    assert_eq!(f32s(output(&v1, "y")), vec![3.0, 5.0, 7.0, 9.0]);
    let v2 = app.post_json("/v2/models/affine/versions/2/infer", &body).await.json();
    assert_eq!(f32s(output(&v2, "y")), vec![2.0, 5.0, 8.0, 11.0]);
}

#[tokio::test]
async fn the_digits_classifier_agrees_with_onnx_runtimes_own_outputs() {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(common::workspace().join("server/tests/fixtures/digits_reference.json"))
            .unwrap(),
    )
    .unwrap();
    let input = &reference["inputs"]["float_input"];
    let app = start(&["digits"], common::defaults());
    let reply = app
        .post_json(
            "/v2/models/digits/infer",
            &json!({"inputs": [{"name": "float_input", "shape": input["shape"], "datatype": "FP32", "data": input["data"]}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.error());
    let body = reply.json();
    assert_eq!(output(&body, "label")["data"], reference["outputs"]["label"]["data"]);
    assert_eq!(output(&body, "label")["datatype"], "INT64");
    let want: Vec<f32> = f32s(&reference["outputs"]["probabilities"]);
    let got = f32s(output(&body, "probabilities"));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6, "probability {g} differs from ONNX Runtime's {w}");
    }
}

#[tokio::test]
async fn mixed_datatypes_a_rank_zero_input_and_dotted_output_names_work() {
    let app = start(&["multi_io"], common::defaults());
    let reply = app
        .post_json(
            "/v2/models/multi_io/infer",
            &json!({"inputs": [
                {"name": "mask", "shape": [2, 3], "datatype": "BOOL", "data": [true, false, true, false, false, false]},
                {"name": "k", "shape": [], "datatype": "INT64", "data": 4},
                {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 0.5, 0.25, 0]}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.error());
    let body = reply.json();
    assert_eq!(f32s(output(&body, "out/scaled.x")), vec![4.0, 8.0, 12.0, 2.0, 1.0, 0.0]);
    assert_eq!(output(&body, "out/mask.count")["data"], json!([2, 0]));
    assert_eq!(output(&body, "out/mask.count")["datatype"], "INT64");
    assert_eq!(output(&body, "sum.f64")["data"], json!([6.0, 0.75]));
    assert_eq!(output(&body, "sum.f64")["datatype"], "FP64");
}

#[tokio::test]
async fn open_dimensions_sharing_a_name_need_not_agree_as_in_onnx_runtime() {
    // multi_io names the first dimension of both x and mask "batch"; ONNX Runtime runs them at 2 and 1.
    let app = start(&["multi_io"], common::defaults());
    let reply = app
        .post_json(
            "/v2/models/multi_io/infer",
            &json!({"inputs": [
                {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
                {"name": "k", "shape": [], "datatype": "INT64", "data": 1},
                {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [true, true, true]}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.error());
    let body = reply.json();
    assert_eq!(f32s(output(&body, "out/scaled.x")), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(output(&body, "out/mask.count")["shape"], json!([1]));
    assert_eq!(output(&body, "out/mask.count")["data"], json!([3]));
    assert_eq!(output(&body, "sum.f64")["data"], json!([6.0, 15.0]));
}

#[tokio::test]
async fn a_batchable_models_request_whose_inputs_disagree_on_rows_runs_alone() {
    let app = start(&["echo"], common::defaults());
    let mut inputs = echo_inputs_json();
    let two_rows =
        json!({"name": "in_fp32", "shape": [2, 2], "datatype": "FP32", "data": [1.5, -0.125, 2, 3]});
    for input in inputs.as_array_mut().unwrap() {
        if input["name"] == "in_fp32" {
            *input = two_rows.clone();
        }
    }
    let reply = app.post_json("/v2/models/echo/infer", &json!({ "inputs": inputs })).await;
    assert_eq!(reply.status, 200, "{}", reply.error());
    let body = reply.json();
    assert_eq!(output(&body, "out_fp32")["shape"], json!([2, 2]));
    assert_eq!(f32s(output(&body, "out_fp32")), vec![1.5, -0.125, 2.0, 3.0]);
    assert_eq!(output(&body, "out_int8")["shape"], json!([1, 2]));
    assert_eq!(reply.headers["x-batch-size"], "2");
}

fn echo_inputs_json() -> Value {
    json!([
        {"name": "in_bool", "shape": [1, 2], "datatype": "BOOL", "data": [true, false]},
        {"name": "in_uint8", "shape": [1, 2], "datatype": "UINT8", "data": [0, 255]},
        {"name": "in_int8", "shape": [1, 2], "datatype": "INT8", "data": [-128, 127]},
        {"name": "in_int16", "shape": [1, 2], "datatype": "INT16", "data": [-32768, 32767]},
        {"name": "in_int32", "shape": [1, 2], "datatype": "INT32", "data": [-2147483648i64, 2147483647]},
        {"name": "in_int64", "shape": [1, 2], "datatype": "INT64", "data": [-9007199254740993i64, 9007199254740993i64]},
        {"name": "in_fp16", "shape": [1, 2], "datatype": "FP16", "data": [0.5, -65504.0]},
        {"name": "in_fp32", "shape": [1, 2], "datatype": "FP32", "data": [1.5, -0.125]},
        {"name": "in_fp64", "shape": [1, 2], "datatype": "FP64", "data": [1e300, -2.5e-300]},
        {"name": "in_bytes", "shape": [1, 2], "datatype": "BYTES", "data": ["héllo", ""]}
    ])
}

#[tokio::test]
async fn every_datatype_round_trips_through_json() {
    let app = start(&["echo"], common::defaults());
    let inputs = echo_inputs_json();
    let reply = app.post_json("/v2/models/echo/infer", &json!({"inputs": inputs})).await;
    assert_eq!(reply.status, 200, "{}", reply.error());
    let body = reply.json();
    for input in inputs.as_array().unwrap() {
        let name = input["name"].as_str().unwrap().replace("in_", "out_");
        let out = output(&body, &name);
        assert_eq!(out["datatype"], input["datatype"], "{name}");
        assert_eq!(out["shape"], json!([1, 2]), "{name}");
        assert_eq!(out["data"], input["data"], "{name}");
    }
}

/// The binary encoding of each echo input's data, in the order of `echo_inputs_json`.
fn echo_inputs_binary() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let le = |v: &[&[u8]]| v.concat();
    vec![
        ("in_bool", "BOOL", vec![1, 0]),
        ("in_uint8", "UINT8", vec![0, 255]),
        ("in_int8", "INT8", vec![0x80, 0x7f]),
        ("in_int16", "INT16", le(&[&(-32768i16).to_le_bytes(), &32767i16.to_le_bytes()])),
        ("in_int32", "INT32", le(&[&i32::MIN.to_le_bytes(), &7i32.to_le_bytes()])),
        ("in_int64", "INT64", le(&[&i64::MAX.to_le_bytes(), &(-1i64).to_le_bytes()])),
        ("in_fp16", "FP16", vec![0x00, 0x3c, 0x00, 0x40]),
        ("in_fp32", "FP32", le(&[&f32::MIN_POSITIVE.to_le_bytes(), &f32::INFINITY.to_le_bytes()])),
        ("in_fp64", "FP64", le(&[&(-0.0f64).to_le_bytes(), &f64::MAX.to_le_bytes()])),
        ("in_bytes", "BYTES", le(&[&[2, 0, 0, 0], b"ab", &[6, 0, 0, 0], "héllo".as_bytes()])),
    ]
}

#[tokio::test]
async fn every_datatype_round_trips_bit_exactly_through_the_binary_extension() {
    let app = start(&["echo"], common::defaults());
    let inputs = echo_inputs_binary();
    let header = json!({
        "inputs": inputs.iter().map(|(name, dt, bytes)| json!({"name": name, "shape": [1, 2], "datatype": dt,
            "parameters": {"binary_data_size": bytes.len()}})).collect::<Vec<_>>(),
        "parameters": {"binary_data_output": true},
    });
    let binary: Vec<u8> = inputs.iter().flat_map(|(_, _, b)| b.clone()).collect();
    let reply = app.post_binary("/v2/models/echo/infer", &header, &binary).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.headers["content-type"], "application/octet-stream");
    let n: usize = reply.headers["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let json: Value = serde_json::from_slice(&reply.body[..n]).unwrap();
    let mut rest = &reply.body[n..];
    for (out, (name, dt, bytes)) in json["outputs"].as_array().unwrap().iter().zip(&inputs) {
        assert_eq!(out["name"], name.replace("in_", "out_"));
        assert_eq!(out["datatype"], *dt);
        let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        assert_eq!(&rest[..size], &bytes[..], "{name}");
        rest = &rest[size..];
    }
    assert!(rest.is_empty());
}

#[tokio::test]
async fn outputs_can_be_selected_and_sent_some_binary_some_json() {
    let app = start(&["affine"], common::defaults());
    let reply = app
        .post_json(
            "/v2/models/affine/infer",
            &json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}],
                    "outputs": [{"name": "total", "parameters": {"binary_data": true}}]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let n: usize = reply.headers["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let header: Value = serde_json::from_slice(&reply.body[..n]).unwrap();
    assert_eq!(
        header["outputs"],
        json!([{"name": "total", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}])
    );
    assert_eq!(&reply.body[n..], &4.0f32.to_le_bytes());
}

#[tokio::test]
async fn a_model_with_a_fixed_batch_dimension_is_served_request_by_request() {
    let app = start(&["fixed_batch"], common::defaults());
    let reply = app
        .post_json(
            "/v2/models/fixed_batch/infer",
            &json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        )
        .await;
    assert_eq!(f32s(output(&reply.json(), "y")), vec![3.0, 6.0, 9.0, 12.0]);
    let config = app.get("/v2/models/fixed_batch/config").await.json();
    assert_eq!(config["max_batch_size"], 0);
    assert_eq!(config["input"][0]["dims"], json!([1, 4]));
    assert!(config.get("dynamic_batching").is_none());
}

#[tokio::test]
async fn batching_can_be_forced_off_for_a_model_that_could_batch() {
    let app = start(
        &["affine"],
        kubeinfer_server::model::settings::ModelSettings { batchable: Some(false), ..common::defaults() },
    );
    let config = app.get("/v2/models/affine/config").await.json();
    assert_eq!(config["max_batch_size"], 0);
    assert_eq!(config["input"][0]["dims"], json!([-1, 4]));
}

#[test]
fn forcing_batching_on_a_model_with_a_rank_zero_input_stops_start_up_naming_the_input() {
    let settings =
        kubeinfer_server::model::settings::ModelSettings { batchable: Some(true), ..common::defaults() };
    let err = common::load(&["multi_io"], &settings).err().expect("multi_io cannot be stacked");
    assert!(
        err.ends_with(
            "multi_io/1/model.onnx: batchable = true, but input 'k' has shape [], whose first dimension is not \
             open, so requests cannot be stacked along it"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_request_with_more_elements_than_max_elements_is_refused_before_it_is_queued() {
    let app = start(
        &["affine"],
        kubeinfer_server::model::settings::ModelSettings { max_elements: 8, ..common::defaults() },
    );
    let x = json!({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": vec![0; 12]}]});
    let reply = app.post_json("/v2/models/affine/infer", &x).await;
    assert_eq!(
        (reply.status.as_u16(), reply.error()),
        (
            400,
            "the request's inputs hold 12 elements, more than the 8 that model 'affine' accepts per request \
             (max_elements)"
                .to_string()
        )
    );
}

#[tokio::test]
async fn metadata_lists_versions_and_signature() {
    let app = start(&["affine", "digits"], common::defaults());
    assert_eq!(
        app.get("/v2/models/affine").await.json(),
        json!({"name": "affine", "versions": ["1", "2"], "platform": "onnxruntime_onnx",
               "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
               "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]},
                           {"name": "total", "datatype": "FP32", "shape": [-1]}]})
    );
    assert_eq!(app.get("/v2/models/affine/versions/1").await.json()["versions"], json!(["1"]));
    let config = app.get("/v2/models/digits/config").await.json();
    assert_eq!(config["max_batch_size"], 64);
    assert_eq!(config["platform"], "onnxruntime_onnx");
    assert_eq!(
        config["input"],
        json!([{"name": "float_input", "data_type": "TYPE_FP32", "format": "FORMAT_NONE",
        "dims": [64], "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false}])
    );
    let server = app.get("/v2").await.json();
    assert_eq!(server["name"], "kubeinfer");
    assert!(server["extensions"].as_array().unwrap().contains(&json!("binary_tensor_data")));
}

#[tokio::test]
async fn health_and_model_readiness() {
    let app = start(&["affine"], common::defaults());
    let answer = |r: common::Reply| (r.status.as_u16(), r.json());
    assert_eq!(answer(app.get("/v2/health/live").await), (200, json!({"live": true})));
    assert_eq!(answer(app.get("/v2/health/ready").await), (200, json!({"ready": true})));
    assert_eq!(
        answer(app.get("/v2/models/affine/ready").await),
        (200, json!({"name": "affine", "ready": true}))
    );
    assert_eq!(
        answer(app.get("/v2/models/affine/versions/1/ready").await),
        (200, json!({"name": "affine", "ready": true}))
    );
    assert_eq!(app.get("/v2/models/nope/ready").await.status, 404);
    app.state.begin_shutdown();
    assert_eq!(answer(app.get("/v2/health/ready").await), (503, json!({"ready": false})));
    assert_eq!(
        answer(app.get("/v2/models/affine/ready").await),
        (503, json!({"name": "affine", "ready": false}))
    );
    assert_eq!(answer(app.get("/v2/health/live").await), (200, json!({"live": true})));
}

#[tokio::test]
async fn statistics_count_requests_rows_and_batches() {
    let app = start(&["affine"], common::defaults());
    let body = json!({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": vec![0; 12]}]});
    for _ in 0..2 {
        assert_eq!(app.post_json("/v2/models/affine/infer", &body).await.status, 200);
    }
    let stats = app.get("/v2/models/affine/versions/2/stats").await.json();
    let s = &stats["model_stats"][0];
    assert_eq!(s["name"], "affine");
    assert_eq!(s["version"], "2");
    assert_eq!(s["inference_count"], 6);
    assert_eq!(s["execution_count"], 2);
    assert_eq!(s["inference_stats"]["success"]["count"], 2);
    assert_eq!(s["batch_stats"][0]["batch_size"], 3);
    assert_eq!(s["batch_stats"][0]["compute_infer"]["count"], 2);
    assert_eq!(app.get("/v2/models/affine/stats").await.json()["model_stats"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("/v2/models/stats").await.json()["model_stats"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn metrics_count_inferences_by_model_protocol_and_outcome() {
    let app = start(&["affine"], common::defaults());
    let ok = json!({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": vec![0; 8]}]});
    let bad = json!({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": vec![0; 6]}]});
    app.post_json("/v2/models/affine/infer", &ok).await;
    app.post_json("/v2/models/affine/infer", &bad).await;
    let m = app.metrics().await;
    let series = |s: &str| common::sample(&m, s);
    assert_eq!(
        series(
            r#"kubeinfer_inference_requests_total{model="affine",outcome="success",protocol="rest",version="2"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"kubeinfer_inference_requests_total{model="affine",outcome="invalid",protocol="rest",version="2"}"#
        ),
        1.0
    );
    assert_eq!(series(r#"kubeinfer_inference_batch_size_sum{model="affine",version="2"}"#), 2.0);
    assert_eq!(
        series(
            r#"kubeinfer_http_requests_total{method="POST",route="/v2/models/{model}/infer",status="400"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            r#"kubeinfer_inference_request_duration_seconds_count{model="affine",protocol="rest",version="2"}"#
        ),
        1.0
    );
    assert!(m.contains("kubeinfer_model_load_duration_seconds{model=\"affine\",version=\"1\"}"));
}

#[tokio::test]
async fn an_inference_refused_before_its_body_is_read_says_the_connection_closes() {
    let app = common::start(&["affine"], common::defaults());
    let body = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let unknown = app.post_json("/v2/models/nope/infer", &body).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.headers["connection"], "close", "a client must not reuse it");
    let wrong_version = app.post_json("/v2/models/affine/versions/9/infer", &body).await;
    assert_eq!(wrong_version.status, 404);
    assert_eq!(wrong_version.headers["connection"], "close");
    let answered = app.post_json("/v2/models/affine/infer", &body).await;
    assert_eq!(answered.status, 200);
    assert!(answered.headers.get("connection").is_none(), "a read body keeps the connection");
}
