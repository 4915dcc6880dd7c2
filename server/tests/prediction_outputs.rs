//! What the prediction log keeps of the model's answer: the response (whole or as a digest), a
//! classifier's predicted class (over REST and gRPC), its agreement with feedback labels, and the caps on what /api returns.

mod common;

use std::collections::HashSet;

use common::db::{args, fresh_database, start_with_log, wait_for_count};
use kubeinfer_server::config::PayloadMode;
use kubeinfer_server::grpc::service::Inference;
use kubeinfer_server::proto::ModelInferRequest;
use kubeinfer_server::proto::grpc_inference_service_server::GrpcInferenceService;
use kubeinfer_server::proto::model_infer_request::InferInputTensor;
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

/// The first image of the digits reference: one row of 64 pixels.
fn one_digit() -> Value {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(common::workspace().join("server/tests/fixtures/digits_reference.json"))
            .unwrap(),
    )
    .unwrap();
    let pixels: Vec<Value> = reference["inputs"]["float_input"]["data"].as_array().unwrap()[..64].to_vec();
    json!({"id": "digit-0", "inputs": [{"name": "float_input", "shape": [1, 64], "datatype": "FP32", "data": pixels}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_keeps_the_response_and_the_predicted_class_of_a_classifier() {
    let mut a = args(&fresh_database());
    a.log_payloads = PayloadMode::Full;
    let (app, _log, pool) = start_with_log(&["digits"], a).await;
    let reply = app.post_json("/v2/models/digits/infer", &one_digit()).await;
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    let probabilities = common::f32s(common::output(&answer, "probabilities"));
    let best = probabilities.iter().cloned().fold(f32::MIN, f32::max);
    let class = probabilities.iter().position(|&p| p == best).unwrap() as i32;
    assert_eq!(common::output(&answer, "label")["data"], json!([class]), "the model's own label agrees");
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 1).await, 1);

    let row = sqlx::query("SELECT id, response, predicted_class, predicted_score FROM predictions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<Value, _>("response"), answer);
    assert_eq!(row.get::<Option<i32>, _>("predicted_class"), Some(class));
    assert_eq!(row.get::<Option<f32>, _>("predicted_score"), Some(best));
    let id: uuid::Uuid = row.get("id");
    let detail = app.get(&format!("/api/predictions/{id}")).await.json();
    assert_eq!(detail["response"], answer);
    assert_eq!(detail["predicted_class"], class);
    assert_eq!(detail["payload"]["request"]["id"], "digit-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mode_keeps_the_hash_of_the_bytes_sent_and_a_one_row_2d_output_is_read_as_scores() {
    let (app, _log, pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    let request =
        json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    let reply = app.post_json("/v2/models/affine/infer", &request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 1).await, 1);
    let row =
        sqlx::query("SELECT response, predicted_class FROM predictions").fetch_one(&pool).await.unwrap();
    assert_eq!(
        row.get::<Value, _>("response"),
        json!({"sha256": format!("{:x}", Sha256::digest(&reply.body)), "bytes": reply.body.len()})
    );
    // y is [1, 4] FP32 and total [1]: one 2-D FP32 output, so it is read as scores.
    assert_eq!(row.get::<Option<i32>, _>("predicted_class"), Some(3));
}

/// Predictions of `model` made ten minutes ago with `class` (None: no summary), one per entry; returns ids.
async fn seed_classified(
    pool: &PgPool,
    model: &str,
    classes: &[Option<i32>],
) -> Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> {
    let mut out = Vec::new();
    for class in classes {
        let row: (uuid::Uuid, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
            "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, \
             batch_size, outcome, predicted_class, predicted_score) \
             VALUES (gen_random_uuid(), $1, 1, now() - interval '10 minutes', 1, 1, 1, 1, 'success', $2, 0.9) \
             RETURNING id, created_at",
        )
        .bind(model)
        .bind(class)
        .fetch_one(pool)
        .await
        .unwrap();
        out.push(row);
    }
    out
}

async fn label(
    pool: &PgPool,
    (id, at): (uuid::Uuid, chrono::DateTime<chrono::Utc>),
    label: &str,
    minutes_ago: i32,
) {
    sqlx::query(
        "INSERT INTO feedback (prediction_id, prediction_created_at, label, created_at) \
         VALUES ($1, $2, $3, now() - make_interval(mins => $4))",
    )
    .bind(id)
    .bind(at)
    .bind(label)
    .bind(minutes_ago)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_how_often_the_latest_feedback_label_names_the_predicted_class() {
    let (app, _log, pool) = start_with_log(&["digits"], args(&fresh_database())).await;
    let rows = seed_classified(&pool, "digits", &[Some(3), Some(3), Some(3), Some(7), Some(1), None]).await;
    label(&pool, rows[0], "3", 0).await;
    label(&pool, rows[1], "5", 0).await;
    // Corrected: the later label counts.
    label(&pool, rows[2], "8", 10).await;
    label(&pool, rows[2], "3", 5).await;
    label(&pool, rows[3], "7", 0).await;
    // rows[4] has no feedback; rows[5] has a label but no predicted class.
    label(&pool, rows[5], "2", 0).await;
    let stats = app.get("/api/models/digits/stats?window=1h").await.json();
    assert_eq!(stats["agreement"], json!({"labelled": 4, "agreeing": 3, "rate": 0.75}));
    let empty = app.get("/api/models/digits/stats?window=5m").await.json();
    assert_eq!(
        empty["agreement"],
        json!({"labelled": 0, "agreeing": 0, "rate": null}),
        "rows ten minutes old"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_takes_a_hundred_feedback_entries_and_the_next_is_409() {
    let (app, _log, pool) = start_with_log(&["digits"], args(&fresh_database())).await;
    let rows = seed_classified(&pool, "digits", &[Some(1)]).await;
    let uri = format!("/api/predictions/{}/feedback", rows[0].0);
    for i in 0..100 {
        assert_eq!(app.post_json(&uri, &json!({"score": i})).await.status, 201, "entry {i}");
    }
    let over = app.post_json(&uri, &json!({"label": "1"})).await;
    assert_eq!(over.status, 409);
    assert_eq!(
        over.error(),
        format!("prediction {} already has 100 feedback entries, the most one prediction takes", rows[0].0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_stops_at_its_byte_cap_and_the_cursor_goes_on_from_there() {
    let (app, _log, pool) = start_with_log(&["digits"], args(&fresh_database())).await;
    // 500 failures with 2 KiB errors: about 2.3 KB of JSON each, 1.15 MB for a page of 500.
    sqlx::query(
        "INSERT INTO predictions (id, model, model_version, created_at, queue_us, compute_us, total_us, batch_size, outcome, error) \
         SELECT gen_random_uuid(), 'digits', 1, now() - make_interval(secs => g), 1, 1, 1, 0, 'error', repeat('e', 2048) \
         FROM generate_series(1, 500) AS g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let first = app.get("/api/predictions?limit=500").await;
    let page = first.json();
    let listed = page["predictions"].as_array().unwrap().len();
    assert!(first.body.len() <= 1 << 20, "a page of {} bytes", first.body.len());
    assert!((400..500).contains(&listed), "{listed} rows in the first page");
    let mut seen: HashSet<String> =
        page["predictions"].as_array().unwrap().iter().map(|p| p["id"].to_string()).collect();
    let mut cursor = page["next_cursor"].as_str().map(str::to_string);
    for _ in 0..5 {
        let Some(c) = cursor.take() else { break };
        let next = app.get(&format!("/api/predictions?limit=500&cursor={c}")).await.json();
        seen.extend(next["predictions"].as_array().unwrap().iter().map(|p| p["id"].to_string()));
        cursor = next["next_cursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 500, "every row listed once across the pages");
}

/// affine's x = [1, 2, 3, 4] as a gRPC message with raw contents, as tritonclient.grpc sends it.
fn grpc_affine(id: &str) -> ModelInferRequest {
    let x = InferInputTensor {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: vec![1, 4],
        ..Default::default()
    };
    let raw = [1f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    ModelInferRequest {
        model_name: "affine".into(),
        id: id.into(),
        inputs: vec![x],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
}

fn digest_of(bytes: &[u8], cut: Option<&str>) -> Value {
    let mut digest = json!({"sha256": format!("{:x}", Sha256::digest(bytes)), "bytes": bytes.len()});
    if let Some(why) = cut {
        digest["cut"] = json!(why);
    }
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_inference_is_logged_with_its_protocol_client_id_and_the_digests_of_both_messages() {
    let (app, _log, pool) = start_with_log(&["affine"], args(&fresh_database())).await;
    let service = Inference { state: app.state.clone() };
    let message = grpc_affine("g-1");
    let mut request = tonic::Request::new(message.clone());
    request.metadata_mut().insert("x-client-id", "grpc-client".parse().unwrap());
    let response = service.model_infer(request).await.unwrap().into_inner();
    let rest = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    assert_eq!(app.post_json("/v2/models/affine/infer", &rest).await.status, 200);
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 2).await, 2);

    let rows = sqlx::query(
        "SELECT protocol, client_id, request_id, outcome, payload, response FROM predictions ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let grpc = &rows[0];
    assert_eq!(grpc.get::<String, _>("protocol"), "grpc");
    assert_eq!(grpc.get::<Option<String>, _>("client_id").as_deref(), Some("grpc-client"));
    assert_eq!(grpc.get::<Option<String>, _>("request_id").as_deref(), Some("g-1"));
    assert_eq!(grpc.get::<String, _>("outcome"), "success");
    assert_eq!(grpc.get::<Value, _>("payload"), digest_of(&message.encode_to_vec(), None));
    assert_eq!(grpc.get::<Value, _>("response"), digest_of(&response.encode_to_vec(), None));
    assert_eq!(rows[1].get::<String, _>("protocol"), "rest");
    let listed = app.get("/api/predictions?model=affine").await.json();
    let protocols: Vec<&Value> =
        listed["predictions"].as_array().unwrap().iter().map(|p| &p["protocol"]).collect();
    assert_eq!(protocols, [&json!("rest"), &json!("grpc")], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_keeps_a_grpc_message_as_its_digest_and_a_refused_one_with_its_error() {
    let mut a = args(&fresh_database());
    a.log_payloads = PayloadMode::Full;
    let (app, _log, pool) = start_with_log(&["affine"], a).await;
    let service = Inference { state: app.state.clone() };
    let good = grpc_affine("good");
    service.model_infer(tonic::Request::new(good.clone())).await.unwrap();
    let mut bad = grpc_affine("bad");
    bad.raw_input_contents[0].truncate(12);
    let status = service.model_infer(tonic::Request::new(bad)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(wait_for_count(&pool, "SELECT count(*) FROM predictions", 2).await, 2);

    let row = |id: &'static str| {
        sqlx::query("SELECT outcome, error, payload FROM predictions WHERE request_id = $1")
            .bind(id)
            .fetch_one(&pool)
    };
    let good_row = row("good").await.unwrap();
    assert_eq!(good_row.get::<Value, _>("payload"), digest_of(&good.encode_to_vec(), Some("a gRPC message")));
    let bad_row = row("bad").await.unwrap();
    assert_eq!(bad_row.get::<String, _>("outcome"), "invalid");
    assert_eq!(
        bad_row.get::<Option<String>, _>("error").as_deref(),
        Some("input 'x': has 12 bytes of binary data but 4 FP32 elements need 16")
    );
}
