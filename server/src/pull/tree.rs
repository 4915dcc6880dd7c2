//! Turns a pulled directory into one model directory of Triton's layout, which the server serves with
//! `--model-repository`: a directory that already has `config.pbtxt` or numbered version directories
//! is kept as it is; a flat one holding `model.onnx` (with its external data files) becomes version
//! `version`. An archive that wraps everything in one top directory (`resnet/...`) is unwrapped first.

use std::path::{Path, PathBuf};

/// The model directory inside `staged`, arranged in place; returns its path.
pub fn arrange(staged: &Path, version: u64) -> Result<PathBuf, String> {
    let mut root = staged.to_path_buf();
    let top = names(&root)?;
    if let [only] = top.as_slice()
        && root.join(only).is_dir()
        && only.parse::<u64>().is_err()
    {
        root = root.join(only);
    }
    let names = names(&root)?;
    let versioned = names.iter().any(|n| n.parse::<u64>().is_ok() && root.join(n).is_dir());
    if versioned || names.iter().any(|n| n == "config.pbtxt") {
        return Ok(root);
    }
    if !names.iter().any(|n| n == "model.onnx") {
        return Err(format!(
            "the pulled directory holds no model.onnx, no config.pbtxt and no version directory (it holds: {}); \
             ship model.onnx at its top, or a Triton model directory",
            if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
        ));
    }
    let version_dir = root.join(version.to_string());
    std::fs::create_dir(&version_dir).map_err(|e| format!("cannot create {}: {e}", version_dir.display()))?;
    for name in names {
        let (from, to) = (root.join(&name), version_dir.join(&name));
        std::fs::rename(&from, &to)
            .map_err(|e| format!("cannot move {} into {}: {e}", from.display(), to.display()))?;
    }
    Ok(root)
}

/// The entries of `dir`, sorted, hidden ones left out.
fn names(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(root: &Path, paths: &[&str]) {
        for p in paths {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    found.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn a_flat_model_with_external_data_becomes_its_version_directory() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path(), &["model.onnx", "weights.bin"]);
        let model = arrange(dir.path(), 3).unwrap();
        assert_eq!(model, dir.path());
        assert_eq!(listing(&model), ["3/model.onnx", "3/weights.bin"]);
    }

    #[test]
    fn a_wrapped_triton_model_directory_is_unwrapped_and_kept_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path(), &["resnet/config.pbtxt", "resnet/1/model.onnx", "resnet/2/model.onnx"]);
        let model = arrange(dir.path(), 1).unwrap();
        assert_eq!(model, dir.path().join("resnet"));
        assert_eq!(listing(&model), ["1/model.onnx", "2/model.onnx", "config.pbtxt"]);
    }

    #[test]
    fn a_directory_without_a_model_says_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path(), &["README.md", "resnet50.onnx"]);
        assert_eq!(
            arrange(dir.path(), 1).unwrap_err(),
            "the pulled directory holds no model.onnx, no config.pbtxt and no version directory (it holds: \
             README.md, resnet50.onnx); ship model.onnx at its top, or a Triton model directory"
        );
    }
}
