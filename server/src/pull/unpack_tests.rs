use std::io::Write;

use super::*;

/// A tar header for `name` whose name and link bytes are written raw, so that hostile entries the
/// `tar` crate's own setters refuse can be made.
fn header(name: &str, kind: tar::EntryType, size: u64, link: &str) -> tar::Header {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// Writes a .tar.gz of `entries` (name, kind, data, link target) and returns its path.
fn tar_gz(dir: &Path, entries: &[(&str, tar::EntryType, &[u8], &str)]) -> PathBuf {
    let path = dir.join("model.tar.gz");
    let gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (name, kind, data, link) in entries {
        builder.append(&header(name, *kind, data.len() as u64, link), *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
    path
}

fn unpack_tar(
    entries: &[(&str, tar::EntryType, &[u8], &str)],
    limit: Option<u64>,
) -> (tempfile::TempDir, Result<u64, String>) {
    let dir = tempfile::tempdir().unwrap();
    let archive = tar_gz(dir.path(), entries);
    let into = dir.path().join("out");
    std::fs::create_dir(&into).unwrap();
    let result = unpack(&archive, Format::TarGz, &into, limit);
    (dir, result)
}

use tar::EntryType::{Directory, Link, Regular, Symlink};

#[test]
fn a_model_directory_unpacks_with_its_files_directories_and_inward_links() {
    let (dir, result) = unpack_tar(
        &[
            ("resnet/", Directory, b"", ""),
            ("resnet/config.pbtxt", Regular, b"max_batch_size: 8", ""),
            ("resnet/1/model.onnx", Regular, b"onnx", ""),
            ("resnet/2", Symlink, b"", "1"),
        ],
        Some(1024),
    );
    assert_eq!(result, Ok(21));
    let out = dir.path().join("out/resnet");
    assert_eq!(std::fs::read(out.join("1/model.onnx")).unwrap(), b"onnx");
    assert_eq!(std::fs::read(out.join("2/model.onnx")).unwrap(), b"onnx");
}

#[test]
fn entries_that_climb_out_or_start_at_the_root_are_refused() {
    let (_dir, result) = unpack_tar(&[("../evil.onnx", Regular, b"x", "")], None);
    assert_eq!(result.unwrap_err(), "../evil.onnx: entries must be relative paths without '..'");
    let (_dir, result) = unpack_tar(&[("/etc/evil", Regular, b"x", "")], None);
    assert_eq!(result.unwrap_err(), "/etc/evil: entries must be relative paths without '..'");
}

#[test]
fn links_out_of_the_directory_and_hard_links_are_refused() {
    let (dir, result) = unpack_tar(&[("m/escape", Symlink, b"", "../../etc/passwd")], None);
    assert_eq!(
        result.unwrap_err(),
        "m/escape: links must point down from where they are, not to ../../etc/passwd"
    );
    assert!(!dir.path().join("out/m/escape").exists());
    let (_dir, result) = unpack_tar(&[("abs", Symlink, b"", "/etc/passwd")], None);
    assert_eq!(result.unwrap_err(), "abs: links must point down from where they are, not to /etc/passwd");
    let (_dir, result) = unpack_tar(&[("hard", Link, b"", "/etc/passwd")], None);
    assert_eq!(
        result.unwrap_err(),
        "hard: only files, directories and links that point down are allowed, not Link"
    );
}

#[test]
fn an_archive_that_inflates_past_the_limit_is_stopped_there() {
    let zeros = vec![0u8; 4 << 20];
    let (dir, result) = unpack_tar(&[("m/model.onnx", Regular, &zeros, "")], Some(1 << 20));
    assert!(std::fs::metadata(dir.path().join("model.tar.gz")).unwrap().len() < 64 * 1024, "compresses well");
    assert_eq!(
        result.unwrap_err(),
        "the archive unpacks to more than --max-bytes 1048576 (reached at m/model.onnx)"
    );
    let written = std::fs::metadata(dir.path().join("out/m/model.onnx")).unwrap().len();
    assert!(written <= 1 << 20, "stopped at the limit, wrote {written}");
}

fn zip_of(dir: &Path, build: impl FnOnce(&mut zip::ZipWriter<File>)) -> PathBuf {
    let path = dir.join("model.zip");
    let mut writer = zip::ZipWriter::new(File::create(&path).unwrap());
    build(&mut writer);
    writer.finish().unwrap();
    path
}

#[test]
fn zip_archives_unpack_and_are_held_to_the_same_rules() {
    let stored =
        || zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let dir = tempfile::tempdir().unwrap();
    let good = zip_of(dir.path(), |w| {
        w.add_directory("m/1/", stored()).unwrap();
        w.start_file("m/1/model.onnx", stored()).unwrap();
        w.write_all(b"onnx").unwrap();
        w.add_symlink("m/2", "1", stored()).unwrap();
    });
    let into = dir.path().join("good");
    std::fs::create_dir(&into).unwrap();
    assert_eq!(unpack(&good, Format::Zip, &into, None), Ok(4));
    assert_eq!(std::fs::read(into.join("m/2/model.onnx")).unwrap(), b"onnx");

    let climbing = zip_of(dir.path(), |w| {
        w.start_file("../evil", stored()).unwrap();
        w.write_all(b"x").unwrap();
    });
    let into = dir.path().join("climbing");
    std::fs::create_dir(&into).unwrap();
    assert_eq!(
        unpack(&climbing, Format::Zip, &into, None).unwrap_err(),
        "../evil: entries must be relative paths without '..'"
    );

    let linking = zip_of(dir.path(), |w| w.add_symlink("m/out", "../..", stored()).unwrap());
    let into = dir.path().join("linking");
    std::fs::create_dir(&into).unwrap();
    assert_eq!(
        unpack(&linking, Format::Zip, &into, None).unwrap_err(),
        "m/out: links must point down from where they are, not to ../.."
    );
}

#[test]
fn something_that_is_not_an_archive_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.zip");
    std::fs::write(&path, b"<html>not found</html>").unwrap();
    let err = unpack(&path, Format::Zip, dir.path(), None).unwrap_err();
    assert!(err.starts_with("not a zip archive: "), "{err}");
}
