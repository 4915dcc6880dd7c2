//! Triton's `config.pbtxt`: a repository moved from Triton is served as it is. `read` parses the text
//! format against `proto/model_config.proto`; `interpret` turns what it says into kubeinfer's settings
//! (refusing what cannot be honoured), `tensors` checks the declared inputs and outputs against the
//! model, and `warmup` builds the `model_warmup` requests. Where a model also has a `config.toml`, that
//! file wins field by field.

pub mod interpret;
pub mod report;
pub mod tensors;
pub mod warmup;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::error::Error;

pub use crate::proto;

/// The file name Triton gives a model's configuration.
pub const CONFIG_FILE: &str = "config.pbtxt";

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// A message of `proto/` by its full name (`inference.ModelConfig`), for parsing and converting it
/// without generated code.
pub fn message_descriptor(name: &str) -> Result<MessageDescriptor, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()));
    let pool = pool.as_ref().map_err(|e| format!("the built-in protobuf schema is broken: {e}"))?;
    pool.get_message_by_name(name).ok_or_else(|| format!("the built-in protobuf schema lacks {name}"))
}

/// A model's `config.pbtxt`, parsed and interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct TritonConfig {
    pub path: PathBuf,
    pub config: proto::ModelConfig,
    pub interpreted: interpret::Interpreted,
}

/// The `config.pbtxt` of the model directory `dir` (named `model`), if it has one.
pub fn load(dir: &Path, model: &str) -> Result<Option<TritonConfig>, Error> {
    let path = dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let config = read(&path)?;
    let interpreted = interpret::interpret(&config, model)
        .map_err(|reason| Error::ModelConfig { path: path.clone(), reason })?;
    Ok(Some(TritonConfig { path, config, interpreted }))
}

/// Reads and parses the `config.pbtxt` at `path`.
pub fn read(path: &Path) -> Result<proto::ModelConfig, Error> {
    let fail = |reason: String| Error::ModelConfig { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    parse(&text).map_err(fail)
}

/// Parses protobuf text format into Triton's ModelConfig. Errors name the line and column.
///
/// The text format makes the colon optional before a list of messages (`input [ { ... } ]`, the way
/// Triton's own examples write it), but prost-reflect 0.16 insists on it. Where the parser stops for
/// want of that colon before a `[`, one is added and the text parsed again; error positions are given
/// in the original text.
pub fn parse(text: &str) -> Result<proto::ModelConfig, String> {
    const MISSING_COLON: &str = "expected ':' or a message value, but found '['";
    let descriptor = message_descriptor("inference.ModelConfig")?;
    let mut current = text.to_string();
    let mut inserted: Vec<usize> = Vec::new();
    loop {
        let error = match DynamicMessage::parse_text_format(descriptor.clone(), &current) {
            Ok(message) => {
                return message
                    .transcode_to::<proto::ModelConfig>()
                    .map_err(|e| format!("cannot decode the parsed config: {e}"));
            }
            Err(e) => e,
        };
        let offset = offset(&error);
        let retry = offset.filter(|&o| {
            error.to_string() == MISSING_COLON
                && current.get(o..).is_some_and(|rest| rest.starts_with('['))
                && inserted.len() < text.len()
        });
        if let Some(at) = retry {
            current.insert(at, ':');
            inserted.push(at);
            continue;
        }
        let original = offset.map(|o| o - inserted.iter().filter(|&&i| i < o).count());
        return Err(match original.and_then(|o| line_and_column(text, o)) {
            Some((line, column)) => format!("line {line}, column {column}: {error}"),
            None => error.to_string(),
        });
    }
}

/// Where in the text the parser stopped, in bytes.
fn offset(error: &prost_reflect::text_format::ParseError) -> Option<usize> {
    use miette::Diagnostic;
    Some(error.labels()?.next()?.offset())
}

/// Line and column (both from 1) of the byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset.min(text.len()))?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triton_config_is_parsed_with_its_nested_messages_and_enums() {
        let config = parse(
            r#"
            name: "resnet"
            platform: "onnxruntime_onnx"
            max_batch_size: 8
            input [ { name: "x", data_type: TYPE_FP32, format: FORMAT_NCHW, dims: [ 3, 224, 224 ] } ]
            dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
            instance_group [ { count: 2, kind: KIND_CPU } ]
            version_policy: { latest: { num_versions: 2 } }
            "#,
        )
        .unwrap();
        assert_eq!(config.name, "resnet");
        assert_eq!(config.max_batch_size, 8);
        assert_eq!(config.input[0].dims, [3, 224, 224]);
        assert_eq!(config.input[0].data_type, proto::DataType::TypeFp32 as i32);
        assert_eq!(config.instance_group[0].count, 2);
        let Some(proto::model_config::SchedulingChoice::DynamicBatching(batching)) = config.scheduling_choice
        else {
            panic!("dynamic_batching was not parsed");
        };
        assert_eq!(batching.preferred_batch_size, [4, 8]);
        assert_eq!(batching.max_queue_delay_microseconds, 100);
    }

    #[test]
    fn a_misspelt_field_is_named_with_its_line_and_column() {
        let err = parse("name: \"m\"\nmax_batch: 8\n").unwrap_err();
        assert_eq!(err, "line 2, column 1: field 'max_batch' not found for message 'inference.ModelConfig'");
    }

    #[test]
    fn lists_of_messages_parse_with_or_without_the_colon_and_errors_keep_their_position() {
        let config =
            parse("input: [ { name: \"a\" } ]\noutput [ { name: \"b\" }, { name: \"c\" } ]").unwrap();
        assert_eq!(config.input[0].name, "a");
        assert_eq!(config.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        let err = parse("input [ { name: \"a\" } ]\noutput [ { nme: \"b\" } ]").unwrap_err();
        assert_eq!(err, "line 2, column 12: field 'nme' not found for message 'inference.ModelOutput'");
    }

    #[test]
    fn a_wrong_enum_value_is_named() {
        let err = parse("input [ { name: \"x\" data_type: FP32 } ]").unwrap_err();
        assert_eq!(err, "line 1, column 32: value 'FP32' was not found for enum 'inference.DataType'");
    }
}
