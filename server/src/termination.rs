//! The one-line reason a failed command leaves for Kubernetes: the kubelet copies the container's
//! termination log (`terminationMessagePath`, /dev/termination-log by default) into the pod's status,
//! where the operator reads it to say in the ModelDeployment why the model did not come up.

use std::path::Path;

/// Kubernetes keeps at most 4096 bytes of a termination message.
const MAX_BYTES: usize = 4096;

/// `text` on one line, cut to what Kubernetes keeps.
pub fn message(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > MAX_BYTES {
        let mut end = MAX_BYTES - 3;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
    line
}

/// Writes the reason to `path` if it exists: the kubelet creates it in containers, and outside one
/// nothing is written (so a run on a workstation never creates /dev/termination-log).
pub fn write(path: &Path, text: &str) {
    if path.exists()
        && let Err(e) = std::fs::write(path, message(text))
    {
        eprintln!("cannot write the termination log {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_one_line_and_at_most_4096_bytes() {
        assert_eq!(
            message("cannot load model m.onnx:\n  unsupported operator\n"),
            "cannot load model m.onnx: unsupported operator"
        );
        let long = message(&"é".repeat(3000));
        assert!(long.len() <= 4096 && long.ends_with("..."), "{}", long.len());
    }

    #[test]
    fn nothing_is_written_where_no_termination_log_exists() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("termination-log");
        write(&absent, "boom");
        assert!(!absent.exists());
        std::fs::write(&absent, "").unwrap();
        write(&absent, "boom\nagain");
        assert_eq!(std::fs::read_to_string(&absent).unwrap(), "boom again");
    }
}
