//! Finds and loads the ONNX Runtime shared library, once per process.
//!
//! `ort` panics when any of its APIs is used before a library is loaded, and it refuses a second
//! environment even after the first is dropped; so the library is checked before `init_from`, and the
//! one environment is kept for the life of the process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

use crate::error::Error;

/// The ONNX Runtime release the server is built and tested against (`make ort` fetches it).
pub const ORT_VERSION: &str = "1.31.1";

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Where `make ort` puts the library: `$KUBEINFER_CACHE_DIR`, else `$XDG_CACHE_HOME/kubeinfer`,
/// else `~/.cache/kubeinfer`, then `onnxruntime-<version>/libonnxruntime.so.<version>`.
pub fn cached_library() -> PathBuf {
    let base = std::env::var_os("KUBEINFER_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("kubeinfer")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kubeinfer")))
        .unwrap_or_else(|| PathBuf::from(".cache/kubeinfer"));
    base.join(format!("onnxruntime-{ORT_VERSION}")).join(format!("libonnxruntime.so.{ORT_VERSION}"))
}

/// The library to load: the flag, else `ORT_DYLIB_PATH`, else the cache.
pub fn library_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()).map(PathBuf::from))
        .unwrap_or_else(cached_library)
}

/// Loads the library at `path` and creates the process's ONNX Runtime environment (or returns the one
/// already created).
pub fn environment(path: &Path) -> Result<Environment, Error> {
    if !path.is_file() {
        return Err(Error::OrtLibraryMissing { path: path.to_path_buf() });
    }
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let builder = ort::init_from(path)
        .map_err(|e| Error::OrtLibrary { path: path.to_path_buf(), source: load_error(&e).into() })?;
    let env = builder
        .with_name("kubeinfer")
        .with_telemetry(false)
        .build()
        .map_err(|e| Error::OrtLibrary { path: path.to_path_buf(), source: e.into() })?;
    *slot = Some(env.clone());
    Ok(env)
}

/// The Display of a dlopen failure is only "dlopen failed"; the operating system's reason is its source.
fn load_error(e: &ort::LoadDynamicError) -> String {
    match e {
        ort::LoadDynamicError::Dlopen { error, .. } => {
            std::error::Error::source(error).map(|s| s.to_string()).unwrap_or_else(|| error.to_string())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_that_says_how_to_get_it() {
        let err = environment(Path::new("/nonexistent/libonnxruntime.so")).unwrap_err().to_string();
        assert_eq!(
            err,
            "ONNX Runtime library not found at /nonexistent/libonnxruntime.so: run `make ort` to fetch it from the \
             onnxruntime==1.31.1 wheel on PyPI, or point --ort-library (or ORT_DYLIB_PATH) at libonnxruntime.so"
        );
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_the_cache() {
        assert_eq!(library_path(Some(Path::new("/x/lib.so"))), PathBuf::from("/x/lib.so"));
    }

    #[test]
    fn the_cache_path_names_the_version() {
        let p = cached_library();
        assert!(p.ends_with("onnxruntime-1.31.1/libonnxruntime.so.1.31.1"), "{}", p.display());
    }
}
