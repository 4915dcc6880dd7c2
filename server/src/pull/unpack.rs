//! Unpacks a downloaded archive into a fresh directory, refusing what could reach outside it or fill
//! the disk: paths that are absolute or hold `..`, links that do not point down from where they are,
//! hard links and device files, more than `MAX_ENTRIES` entries, and more than the byte limit unpacked
//! (a small archive can inflate to any size).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use super::kind::Format;

/// Most entries one archive may hold.
pub const MAX_ENTRIES: usize = 100_000;

/// Running totals against the limits.
struct Budget {
    bytes: u64,
    limit: Option<u64>,
    entries: usize,
}

impl Budget {
    fn entry(&mut self) -> Result<(), String> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(format!("the archive holds more than {MAX_ENTRIES} entries"));
        }
        Ok(())
    }

    /// Copies `reader` into a new file at `to`, counting its bytes.
    fn copy(&mut self, reader: &mut dyn Read, to: &Path, name: &Path) -> Result<(), String> {
        let mut file = File::create(to).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = reader
                .read(&mut buffer)
                .map_err(|e| format!("cannot read {} from the archive: {e}", name.display()))?;
            if n == 0 {
                return Ok(());
            }
            self.bytes += n as u64;
            if let Some(limit) = self.limit.filter(|&l| self.bytes > l) {
                return Err(format!(
                    "the archive unpacks to more than --max-bytes {limit} (reached at {})",
                    name.display()
                ));
            }
            file.write_all(&buffer[..n]).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        }
    }
}

/// Unpacks `archive` into `into` (which must exist and be empty); returns the bytes unpacked.
pub fn unpack(archive: &Path, format: Format, into: &Path, limit: Option<u64>) -> Result<u64, String> {
    let file = File::open(archive).map_err(|e| format!("cannot open the archive: {e}"))?;
    let mut budget = Budget { bytes: 0, limit, entries: 0 };
    match format {
        Format::Tar => untar(tar::Archive::new(file), into, &mut budget)?,
        Format::TarGz => untar(tar::Archive::new(flate2::read::GzDecoder::new(file)), into, &mut budget)?,
        Format::Zip => unzip(file, into, &mut budget)?,
    }
    Ok(budget.bytes)
}

fn untar<R: Read>(mut archive: tar::Archive<R>, into: &Path, budget: &mut Budget) -> Result<(), String> {
    let entries = archive.entries().map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the tar archive is corrupt: {e}"))?;
        budget.entry()?;
        let name = entry.path().map_err(|e| format!("an entry has an unreadable name: {e}"))?.into_owned();
        let to = inside(into, &name)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            create_dir(&to)?;
        } else if kind.is_file() || kind.is_contiguous() {
            create_parent(&to)?;
            budget.copy(&mut entry, &to, &name)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(|e| format!("{}: unreadable link target: {e}", name.display()))?
                .ok_or_else(|| format!("{}: a link without a target", name.display()))?;
            link(&to, &name, &target)?;
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname()
        {
            continue;
        } else {
            return Err(format!(
                "{}: only files, directories and links that point down are allowed, not {kind:?}",
                name.display()
            ));
        }
    }
    Ok(())
}

fn unzip(file: File, into: &Path, budget: &mut Budget) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive: {e}"))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| format!("the zip archive is corrupt: {e}"))?;
        budget.entry()?;
        let name = PathBuf::from(
            entry.name().map_err(|e| format!("an entry has an unreadable name: {e}"))?.as_ref(),
        );
        let to = inside(into, &name)?;
        if entry.is_dir() {
            create_dir(&to)?;
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|e| format!("{}: unreadable link target: {e}", name.display()))?;
            link(&to, &name, Path::new(&target))?;
        } else {
            create_parent(&to)?;
            budget.copy(&mut entry, &to, &name)?;
        }
    }
    Ok(())
}

/// `into/name`, when `name` is a relative path that stays inside.
pub(super) fn inside(into: &Path, name: &Path) -> Result<PathBuf, String> {
    let mut path = into.to_path_buf();
    for component in name.components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{}: entries must be relative paths without '..'", name.display()));
            }
        }
    }
    Ok(path)
}

/// A symbolic link at `to`, pointing down from the link's own directory (so that no chain of links
/// can leave the model directory).
fn link(to: &Path, name: &Path, target: &Path) -> Result<(), String> {
    let downward = target.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !downward || target.as_os_str().is_empty() {
        return Err(format!(
            "{}: links must point down from where they are, not to {}",
            name.display(),
            target.display()
        ));
    }
    create_parent(to)?;
    std::os::unix::fs::symlink(target, to).map_err(|e| format!("cannot create link {}: {e}", to.display()))
}

fn create_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) => create_dir(parent),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
