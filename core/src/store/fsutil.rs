//! Crash-safe file writes.

use super::{StoreError, io_err};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never a
/// torn one: temp file in the same folder, fsync, rename, fsync the folder.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = folder_of(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        file.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
        file.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The folder `path` lies in: `.` for a bare file name (whose `parent()` is empty, which no
/// call can open).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes a rename or create inside `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("cannot fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_bare_file_name_lies_in_the_current_folder() {
        // `evolve sample --out grid.png` once failed with "cannot fsync directory ''".
        assert_eq!(folder_of(Path::new("grid.png")), Path::new("."));
        assert_eq!(folder_of(Path::new("out/grid.png")), Path::new("out"));
        assert_eq!(folder_of(Path::new("/grid.png")), Path::new("/"));
    }
}
