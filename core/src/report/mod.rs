//! `evolve report`: a run at a glance, as one self-contained HTML file (`<run>/report/index.html`)
//! — loss and trainer load over steps; the training set's growth, deletions and the judge's
//! verdicts per round; teacher calls and cost against the budget; evaluation by category;
//! per-teacher win rates; base-vs-teacher image grids of recent rounds; and the family tree of
//! prompts. `evolve run` rewrites it after every round.

mod data;
mod html;
pub(crate) mod svg;

use crate::store::{ImageStore, StoreError, atomic_write};
use std::path::{Path, PathBuf};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The folder holds no run.
    #[error("{} holds no run (no ledger.sqlite)", .0.display())]
    NoRun(PathBuf),
    /// The ledger could not be read.
    #[error("reading {}: {source}", path.display())]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The report could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes the report of the run at `run_dir`; returns the HTML file's path.
pub fn write(run_dir: &Path) -> Result<PathBuf, ReportError> {
    let ledger = run_dir.join("ledger.sqlite");
    if !ledger.is_file() {
        return Err(ReportError::NoRun(run_dir.to_path_buf()));
    }
    let mut data = data::read(&ledger).map_err(|source| ReportError::Ledger { path: ledger.clone(), source })?;
    // Name and limits come from the run's own experiment file; a report is still useful without.
    let experiment: toml::Table = std::fs::read_to_string(run_dir.join("experiment.toml"))
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    let get = |section: &str, key: &str| experiment.get(section).and_then(|s| s.get(key)).cloned();
    data.name =
        get("run", "name").and_then(|v| v.as_str().map(String::from)).unwrap_or_else(|| run_dir.display().to_string());
    data.max_calls = get("budget", "max_teacher_calls").and_then(|v| v.as_integer()).map(|v| v.max(0) as u64);
    data.max_cost =
        get("budget", "max_cost_usd").and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
    let images = ImageStore::reader(&run_dir.join("images"));
    let page = html::render(&data, &images);
    let dir = run_dir.join("report");
    std::fs::create_dir_all(&dir).map_err(crate::store::io_err("cannot create", &dir))?;
    let path = dir.join("index.html");
    atomic_write(&path, page.as_bytes())?;
    Ok(path)
}
