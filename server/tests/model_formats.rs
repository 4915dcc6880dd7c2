//! Models as exporters write them: weights in a file beside the graph (ONNX external data), so that a
//! version directory holds several files.

mod common;

use common::{f32s, output, start};
use serde_json::json;

#[tokio::test]
async fn a_model_whose_weights_are_external_data_beside_it_is_served() {
    let dir = common::example_models().join("external_data/1");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["model.onnx", "weights.bin"]);
    let app = start(&["external_data"], common::defaults());
    let x = json!({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 0, 0, 0, -1]}]});
    let reply = app.post_json("/v2/models/external_data/infer", &x).await;
    assert_eq!(reply.status, 200, "{}", reply.error());
    // y = 3x + [1, 2, 3, 4], with W and b read from weights.bin.
    assert_eq!(f32s(output(&reply.json(), "y")), vec![4.0, 8.0, 12.0, 16.0, 1.0, 2.0, 3.0, 1.0]);
}
