//! Reads the model repository's layout (Triton's): `DIR/<model>/<version>/model.onnx`, plus an optional
//! Triton `DIR/<model>/config.pbtxt` (which may rename the model file and choose the versions served),
//! `DIR/<model>/config.toml` and warm-up sample `DIR/<model>/warmup.json`. Only the file system is
//! touched here; no model is loaded.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::model::triton::{self, TritonConfig};

/// A `--model NAME:VERSION=PATH` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    pub name: String,
    pub version: u64,
    pub path: PathBuf,
}

/// One model directory: its name, every version served (ascending), and its config files and warm-up
/// sample if present.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDir {
    pub name: String,
    pub versions: Vec<(u64, PathBuf)>,
    pub config: Option<PathBuf>,
    pub triton: Option<TritonConfig>,
    pub warmup: Option<PathBuf>,
}

/// Lists the models in `repo`. Directories whose names start with '.' are skipped; version directories
/// are the ones named by a number, as in Triton.
pub fn scan(repo: &Path) -> Result<Vec<ModelDir>, Error> {
    let layout = |reason: String| Error::Layout { path: repo.to_path_buf(), reason };
    let entries =
        std::fs::read_dir(repo).map_err(|e| layout(format!("cannot read the model repository: {e}")))?;
    let mut models = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| layout(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        models.push(scan_model(&entry.path(), name)?);
    }
    if models.is_empty() {
        return Err(layout(
            "holds no models; expected <model>/<version>/model.onnx, e.g. digits/1/model.onnx".into(),
        ));
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

fn scan_model(dir: &Path, name: String) -> Result<ModelDir, Error> {
    let layout = |reason: String| Error::Layout { path: dir.to_path_buf(), reason };
    if !valid_name(&name) {
        return Err(layout(format!(
            "model name {name:?} must be letters, digits, '_', '-' and '.' only (it becomes part of URLs)"
        )));
    }
    let triton = triton::load(dir, &name)?;
    let filename = triton.as_ref().map_or(triton::interpret::DEFAULT_FILENAME, |t| &t.interpreted.filename);
    let mut present = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| layout(e.to_string()))? {
        let entry = entry.map_err(|e| layout(e.to_string()))?;
        if let Some(version) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            present.push(version);
        }
    }
    if present.is_empty() {
        return Err(layout(format!("has no version directory; expected {}/1/{filename}", dir.display())));
    }
    present.sort_unstable();
    let served = match &triton {
        Some(t) => t
            .interpreted
            .versions
            .select(&present)
            .map_err(|reason| Error::ModelConfig { path: t.path.clone(), reason })?,
        None => present,
    };
    let mut versions = Vec::with_capacity(served.len());
    for version in served {
        let file = dir.join(version.to_string()).join(filename);
        if !file.is_file() {
            return Err(Error::Layout {
                path: file,
                reason: "is missing: every version directory served needs one".into(),
            });
        }
        versions.push((version, file));
    }
    let config = Some(dir.join("config.toml")).filter(|p| p.is_file());
    let warmup = Some(dir.join(crate::model::warmup::SAMPLE_FILE)).filter(|p| p.is_file());
    Ok(ModelDir { name, versions, config, triton, warmup })
}

/// Adds `--model NAME:VERSION=PATH` files to what a repository scan found; a name may not be both.
pub fn with_files(mut models: Vec<ModelDir>, files: &[ModelFile]) -> Result<Vec<ModelDir>, Error> {
    for f in files {
        if !f.path.is_file() {
            return Err(Error::Layout {
                path: f.path.clone(),
                reason: "does not exist (from --model)".into(),
            });
        }
        match models.iter_mut().find(|m| m.name == f.name) {
            Some(m)
                if m.config.is_some()
                    || m.triton.is_some()
                    || m.versions.iter().any(|(v, _)| *v == f.version) =>
            {
                return Err(Error::Layout {
                    path: f.path.clone(),
                    reason: format!("model '{}' version {} is given twice", f.name, f.version),
                });
            }
            Some(m) => m.versions.push((f.version, f.path.clone())),
            None => models.push(ModelDir {
                name: f.name.clone(),
                versions: vec![(f.version, f.path.clone())],
                config: None,
                triton: None,
                warmup: None,
            }),
        }
    }
    for m in &mut models {
        m.versions.sort_by_key(|(v, _)| *v);
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn versions_are_found_sorted_numerically_with_the_config() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("m/10/model.onnx"));
        touch(&dir.path().join("m/9/model.onnx"));
        touch(&dir.path().join("m/config.toml"));
        touch(&dir.path().join("m/warmup.json"));
        touch(&dir.path().join("m/notes/readme.txt"));
        let models = scan(dir.path()).unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [9, 10]);
        assert_eq!(models[0].config, Some(dir.path().join("m/config.toml")));
        assert_eq!(models[0].warmup, Some(dir.path().join("m/warmup.json")));
    }

    #[test]
    fn a_triton_config_chooses_the_versions_served_and_the_model_file_name() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("m/1/net.onnx"));
        touch(&dir.path().join("m/2/net.onnx"));
        touch(&dir.path().join("m/3/other.txt"));
        std::fs::write(
            dir.path().join("m/config.pbtxt"),
            "default_model_filename: \"net.onnx\"\nversion_policy { specific { versions: [ 1, 2 ] } }\n",
        )
        .unwrap();
        let models = scan(dir.path()).unwrap();
        assert_eq!(
            models[0].versions,
            vec![(1, dir.path().join("m/1/net.onnx")), (2, dir.path().join("m/2/net.onnx"))]
        );
        std::fs::write(dir.path().join("m/config.pbtxt"), "default_model_filename: \"net.onnx\"\n").unwrap();
        let err = scan(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: is missing: every version directory served needs one",
                dir.path().join("m/3/net.onnx").display()
            )
        );
    }

    #[test]
    fn a_version_directory_without_a_model_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m/1")).unwrap();
        let err = scan(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: is missing: every version directory served needs one",
                dir.path().join("m/1/model.onnx").display()
            )
        );
    }

    #[test]
    fn an_empty_repository_says_what_layout_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("holds no models; expected <model>/<version>/model.onnx, e.g. digits/1/model.onnx"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_repository_is_reported() {
        let err = scan(Path::new("/nonexistent/models")).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/models: cannot read the model repository"), "{err}");
    }

    #[test]
    fn model_names_must_be_url_safe() {
        assert!(valid_name("digits_v2.onnx-1"));
        assert!(!valid_name("has space"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
