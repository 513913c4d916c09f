//! The settings a folder's points were measured with, kept beside `points.csv` as
//! `settings.toml`, so that `--resume` refuses to table points of one setting (another step
//! count, pool, start model or learning rate) with those of another as if they were one
//! experiment. Arms, budgets, seeds and `--eval-images` are not recorded: each point carries
//! them, and `--resume` measures the ones it lacks.

use super::{BenchError, Settings};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file's name inside `--out`.
pub const FILE: &str = "settings.toml";

/// What every point of a folder shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// Trainer steps of every run.
    pub steps: u64,
    /// Where the initial prompts came from (`--pool`).
    pub pool: String,
    /// The checkpoint every model started from; absent: random weights.
    pub start_from: Option<PathBuf>,
    /// Every run's peak learning rate; absent: the model's default.
    pub learning_rate: Option<f64>,
}

impl Recorded {
    /// What `settings` would record.
    pub fn of(settings: &Settings) -> Recorded {
        Recorded {
            steps: settings.steps,
            pool: settings.pool.key().to_string(),
            start_from: settings.start_from.clone(),
            learning_rate: settings.learning_rate,
        }
    }

    /// Each setting as `(flag, value)`, in the words the command line uses.
    fn described(&self) -> [(&'static str, String); 4] {
        [
            ("--steps", self.steps.to_string()),
            ("--pool", self.pool.clone()),
            (
                "--start-from",
                self.start_from.as_ref().map_or("none (random weights)".into(), |dir| dir.display().to_string()),
            ),
            (
                "--learning-rate",
                self.learning_rate.map_or("none (the model's default)".into(), |rate| rate.to_string()),
            ),
        ]
    }
}

/// Checks that `out`'s kept points were measured with `settings` (when `keeping` them), then
/// records `settings` as the folder's. A folder from before this file existed has none and is
/// taken on trust.
pub fn check_and_record(out: &Path, settings: &Settings, keeping: bool) -> Result<(), BenchError> {
    let path = out.join(FILE);
    let asked = Recorded::of(settings);
    if keeping && path.exists() {
        let text = std::fs::read_to_string(&path).map_err(BenchError::io(&path))?;
        let kept: Recorded = toml::from_str(&text)
            .map_err(|error| BenchError::Recorded { path: path.clone(), reason: error.to_string() })?;
        for ((flag, was), (_, now)) in kept.described().into_iter().zip(asked.described()) {
            if was != now {
                return Err(BenchError::OtherSettings { path, flag, kept: was, asked: now });
            }
        }
    }
    let text = toml::to_string(&asked)
        .map_err(|error| BenchError::Recorded { path: path.clone(), reason: error.to_string() })?;
    std::fs::write(&path, text).map_err(BenchError::io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(out: &Path) -> Settings {
        Settings { start_from: Some(out.join("start")), ..Settings::quick(out.to_path_buf()) }
    }

    #[test]
    fn the_same_settings_resume_and_any_other_is_named_with_both_values() {
        let dir = tempfile::tempdir().unwrap();
        let first = settings(dir.path());
        check_and_record(dir.path(), &first, false).unwrap();
        check_and_record(dir.path(), &first, true).unwrap();

        let slower = Settings { learning_rate: Some(0.0003), ..first.clone() };
        let error = check_and_record(dir.path(), &slower, true).unwrap_err().to_string();
        assert!(error.contains("--learning-rate"), "{error}");
        assert!(error.contains("none (the model's default)") && error.contains("0.0003"), "{error}");
        assert!(error.contains(FILE), "{error}");
        // The refusal leaves the record as it was, so the folder's points stay described.
        check_and_record(dir.path(), &first, true).unwrap();

        let longer = Settings { steps: first.steps + 1, ..first.clone() };
        let error = check_and_record(dir.path(), &longer, true).unwrap_err().to_string();
        assert!(error.contains("--steps") && error.contains("30") && error.contains("31"), "{error}");

        // A fresh measurement (not keeping points) records its own settings over the old.
        check_and_record(dir.path(), &longer, false).unwrap();
        check_and_record(dir.path(), &longer, true).unwrap();
    }

    #[test]
    fn a_folder_without_a_record_is_trusted_and_a_garbled_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        check_and_record(dir.path(), &settings(dir.path()), true).unwrap();
        assert!(dir.path().join(FILE).exists());

        std::fs::write(dir.path().join(FILE), "steps = \"many\"\n").unwrap();
        let error = check_and_record(dir.path(), &settings(dir.path()), true).unwrap_err().to_string();
        assert!(error.contains(FILE) && error.contains("steps"), "{error}");
    }
}
