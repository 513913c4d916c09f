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

/// Writes the folder `out` whole or not at all: `fill` writes into a hidden folder beside it,
/// which then replaces `out` (an existing `out` is removed first: callers refuse it unless asked
/// to replace it). If `fill` fails, the hidden folder is removed and `out` left as it was.
pub fn replace_folder<E: From<StoreError>>(out: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    let parent = folder_of(out);
    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("export");
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial).map_err(io_err("cannot create", &partial))?;
    if let Err(e) = fill(&partial) {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    if out.exists() {
        fs::remove_dir_all(out).map_err(io_err("cannot replace", out))?;
    }
    fs::rename(&partial, out).map_err(io_err("cannot move the finished folder into", out))?;
    Ok(sync_dir(parent)?)
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
    fn a_folder_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("set");
        let failed: Result<(), StoreError> = replace_folder(&out, |partial| {
            fs::write(partial.join("half"), b"x").unwrap();
            Err(StoreError::Missing(partial.to_path_buf()))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left behind");
        replace_folder(&out, |partial| fs::write(partial.join("a"), b"1").map_err(io_err("write", partial))).unwrap();
        replace_folder(&out, |partial| fs::write(partial.join("b"), b"2").map_err(io_err("write", partial))).unwrap();
        let names: Vec<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["b"], "replaced whole");
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
