//! What a model URI names: one file, a prefix (a directory of an object store), or an archive to
//! unpack. Pure: decided from the URI's path alone.

use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One model file, written to `--dest`.
    File,
    /// Every object under a prefix (`s3://bucket/resnet/`), written below `--dest` as a directory.
    Prefix,
    /// An archive, unpacked below `--dest` as a directory.
    Archive(Format),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    Zip,
}

impl Kind {
    /// Whether `--dest` is a directory (a model directory in Triton's layout) rather than a file.
    pub fn is_directory(self) -> bool {
        !matches!(self, Kind::File)
    }
}

/// The kind of `uri`: a path ending in `/` is a prefix, `.tar`, `.tar.gz`/`.tgz` and `.zip` are
/// archives, anything else one file. Plain HTTP servers cannot list, so an https prefix is refused.
pub fn of(uri: &str) -> Result<Kind, String> {
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not a URI: {e}"))?;
    let path = url.path().to_ascii_lowercase();
    if path.ends_with('/') {
        if matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{} names a directory, which an http(s) server cannot list; publish the model directory as an \
                 archive (.tar.gz, .tgz or .zip) or use s3:// or gs://",
                url.path()
            ));
        }
        return Ok(Kind::Prefix);
    }
    Ok(if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
        Kind::Archive(Format::TarGz)
    } else if path.ends_with(".tar") {
        Kind::Archive(Format::Tar)
    } else if path.ends_with(".zip") {
        Kind::Archive(Format::Zip)
    } else {
        Kind::File
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_decides_the_kind_whatever_the_query_string() {
        assert_eq!(of("s3://bucket/models/resnet/"), Ok(Kind::Prefix));
        assert_eq!(of("gs://bucket/resnet/"), Ok(Kind::Prefix));
        assert_eq!(of("file:///data/resnet/"), Ok(Kind::Prefix));
        assert_eq!(of("https://host/resnet.tar.gz?sig=a.zip"), Ok(Kind::Archive(Format::TarGz)));
        assert_eq!(of("https://host/resnet.TGZ"), Ok(Kind::Archive(Format::TarGz)));
        assert_eq!(of("s3://bucket/resnet.tar"), Ok(Kind::Archive(Format::Tar)));
        assert_eq!(of("https://host/resnet.zip"), Ok(Kind::Archive(Format::Zip)));
        assert_eq!(of("https://host/model.onnx?x=/"), Ok(Kind::File));
    }

    #[test]
    fn an_https_directory_is_refused_with_what_to_do_instead() {
        assert_eq!(
            of("https://host/models/resnet/").unwrap_err(),
            "/models/resnet/ names a directory, which an http(s) server cannot list; publish the model directory \
             as an archive (.tar.gz, .tgz or .zip) or use s3:// or gs://"
        );
    }
}
