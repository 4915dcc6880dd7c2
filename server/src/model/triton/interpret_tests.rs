use super::*;
use crate::model::triton::parse;

fn read(text: &str) -> Result<Interpreted, String> {
    interpret(&parse(text).unwrap(), "m")
}

#[test]
fn dynamic_batching_becomes_the_batching_settings() {
    let got = read(
        "max_batch_size: 16
         dynamic_batching {
           preferred_batch_size: [ 8, 4 ]
           max_queue_delay_microseconds: 500
           default_queue_policy { default_timeout_microseconds: 2000000 max_queue_size: 64 allow_timeout_override: true }
         }",
    )
    .unwrap();
    assert_eq!(
        got.overrides,
        Overrides {
            max_batch_size: Some(16),
            batchable: Some(true),
            dynamic_batching: Some(true),
            max_queue_delay: Some("500us".into()),
            preferred_batch_sizes: Some(vec![4, 8]),
            request_timeout: Some("2000000us".into()),
            queue_capacity: Some(64),
            allow_timeout_override: Some(true),
            ..Overrides::default()
        }
    );
    assert_eq!(got.versions, VersionPolicy::Latest(1));
    assert_eq!(got.filename, "model.onnx");
    assert_eq!(got.placement, Placement::Server);
    assert!(got.ignored.is_empty());
}

#[test]
fn max_batch_size_without_dynamic_batching_runs_each_request_alone() {
    let got = read("max_batch_size: 4").unwrap();
    assert_eq!(got.overrides.max_batch_size, Some(4));
    assert_eq!(got.overrides.batchable, Some(true));
    assert_eq!(got.overrides.dynamic_batching, Some(false));
}

#[test]
fn max_batch_size_zero_means_whole_shapes_and_no_batching() {
    let got = read("max_batch_size: 0 dynamic_batching { }").unwrap();
    assert_eq!(got.overrides.batchable, Some(false));
    assert_eq!(
        got.ignored,
        ["dynamic_batching is ignored: max_batch_size is 0, so requests are not batched"]
    );
}

#[test]
fn instance_groups_add_up_and_choose_the_device() {
    let got = read("instance_group [ { count: 2 kind: KIND_CPU }, { kind: KIND_CPU } ]").unwrap();
    assert_eq!((got.overrides.instances, got.placement), (Some(3), Placement::Cpu));
    let got = read("instance_group [ { count: 2 kind: KIND_GPU gpus: [ 1 ] } ]").unwrap();
    assert_eq!((got.overrides.instances, got.placement), (Some(2), Placement::Gpu(Some(1))));
    assert_eq!(got.placement.device(Device::Cpu), Ok(Device::Cuda(1)));
    let gpu = read("instance_group [ { kind: KIND_GPU } ]").unwrap().placement;
    assert_eq!(gpu.device(Device::Cuda(0)), Ok(Device::Cuda(0)));
    assert_eq!(
        gpu.device(Device::Cpu).unwrap_err(),
        "instance_group asks for KIND_GPU, but this server runs on the CPU (--device cpu); use KIND_CPU or \
         KIND_AUTO, or give the server a GPU"
    );
    assert_eq!(
        read("instance_group [ { kind: KIND_GPU gpus: [ 0, 1 ] } ]").unwrap_err(),
        "instance_group lists GPUs [0, 1]; a kubeinfer server uses one GPU, so run one replica per GPU instead"
    );
    assert_eq!(
        read("instance_group [ { kind: KIND_GPU }, { kind: KIND_CPU } ]").unwrap_err(),
        "instance_group mixes kinds; kubeinfer runs all of a model's instances on one device"
    );
}

#[test]
fn version_policies_select_from_the_versions_present() {
    let policy = |text: &str| read(text).unwrap().versions;
    assert_eq!(policy("").select(&[1, 2, 3]), Ok(vec![3]));
    assert_eq!(policy("version_policy { latest { num_versions: 2 } }").select(&[1, 2, 3]), Ok(vec![2, 3]));
    assert_eq!(policy("version_policy { all { } }").select(&[1, 2, 3]), Ok(vec![1, 2, 3]));
    let specific = policy("version_policy { specific { versions: [ 1, 3 ] } }");
    assert_eq!(specific.select(&[1, 2, 3]), Ok(vec![1, 3]));
    assert_eq!(
        specific.select(&[1, 2]),
        Err("version_policy names version 3 but the repository has no such directory".into())
    );
}

#[test]
fn other_frameworks_are_refused_by_name() {
    assert_eq!(
        read("platform: \"tensorrt_plan\"").unwrap_err(),
        "platform \"tensorrt_plan\" is not ONNX: kubeinfer serves ONNX models only (platform \"onnxruntime_onnx\" \
         or backend \"onnxruntime\"); export the model to ONNX, or serve it with the server of its framework"
    );
    assert!(read("backend: \"python\"").unwrap_err().starts_with("backend \"python\" is not ONNX"));
    assert!(read("backend: \"onnxruntime\" platform: \"onnxruntime_onnx\"").is_ok());
}

#[test]
fn what_would_change_answers_is_refused_and_what_tunes_speed_is_listed_as_ignored() {
    assert_eq!(
        read("name: \"other\"").unwrap_err(),
        "name is \"other\" but the model's directory is \"m\"; they must be the same, as in Triton"
    );
    assert!(
        read("sequence_batching { max_sequence_idle_microseconds: 5 }")
            .unwrap_err()
            .starts_with("sequence_batching is not supported: ")
    );
    assert!(
        read("ensemble_scheduling { step [ { model_name: \"a\" } ] }")
            .unwrap_err()
            .starts_with("ensemble_scheduling is not supported: ")
    );
    assert_eq!(
        read("max_batch_size: 8 dynamic_batching { default_queue_policy { timeout_action: DELAY } }")
            .unwrap_err(),
        "dynamic_batching: default_queue_policy timeout_action DELAY is not supported: a request past its timeout \
         is rejected (REJECT)"
    );
    assert_eq!(
        read("max_batch_size: 4 dynamic_batching { preferred_batch_size: [ 8 ] }").unwrap_err(),
        "dynamic_batching: preferred_batch_size 8 must be between 1 and max_batch_size (4)"
    );
    let got = read(
        "optimization { execution_accelerators { gpu_execution_accelerator: [ { name: \"tensorrt\" } ] } }
         parameters { key: \"intra_op_thread_count\" value: { string_value: \"3\" } }",
    )
    .unwrap();
    assert_eq!(got.overrides.intra_op_threads, Some(3));
    assert_eq!(got.ignored, ["optimization is ignored: ONNX Runtime's own graph optimisations apply"]);
}

#[test]
fn the_model_file_name_may_be_changed_but_not_to_a_path() {
    assert_eq!(read("default_model_filename: \"net.onnx\"").unwrap().filename, "net.onnx");
    assert_eq!(
        read("default_model_filename: \"../x.onnx\"").unwrap_err(),
        "default_model_filename \"../x.onnx\" must be a file name, not a path"
    );
}
