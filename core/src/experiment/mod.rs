//! Experiment files: what a run trains, from which teachers, judged by whom, curated how, and
//! when it stops.
//!
//! An experiment is a TOML file. Plugin sections name a registered plugin and carry that
//! plugin's own config, validated against the schema the plugin ships:
//!
//! ```toml
//! [run]
//! name = "shapes-default"
//!
//! [base_model]
//! plugin = "dit"
//!
//! [[teachers]]
//! plugin = "shapes"
//!
//! [judge]
//! plugin = "shapes"
//! config = { flip_rate = 0.0 }
//!
//! [[operators]]
//! plugin = "expansion"
//! config = { expand_num = 3 }
//! ```
//!
//! [`load`] parses, validates and decodes a file; every problem comes back as a
//! [`Diagnostic`] naming file, line, column, key path, the bad value and what is accepted.

mod diagnostic;
mod locate;
mod plugin_ref;
mod schema;
mod types;
mod validate;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use plugin_ref::PluginRef;
pub use schema::experiment_schema;
pub use types::{
    AuditSettings, Budget, BuyFirst, DirectorSettings, Experiment, OnAuditFail, PluginSection, PluginSettings,
    PromptSettings, RunSettings, Spend, TeacherSection, TeacherSelection, TrainingSettings,
};
pub use validate::{ExperimentError, load, parse};

/// Why the resolved experiment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A relative path could not be made absolute.
    #[error("cannot make {} absolute: {source}", path.display())]
    Path {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The experiment does not serialise to TOML.
    #[error("cannot write the resolved experiment: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// The resolved experiment as TOML for the run directory: defaults filled in and the prompt
/// file and dataset made absolute (the copy lives elsewhere). Secrets are only ever env-var names, so
/// nothing needs removing.
pub fn resolved_toml(experiment: &Experiment, experiment_path: &std::path::Path) -> Result<String, ResolveError> {
    let mut resolved = experiment.clone();
    let base = experiment_path.parent().unwrap_or(std::path::Path::new("."));
    for path in [&mut resolved.prompts.file, &mut resolved.prompts.from_dataset].into_iter().flatten() {
        let joined = base.join(&*path);
        *path = std::path::absolute(&joined).map_err(|source| ResolveError::Path { path: joined, source })?;
    }
    let body = toml::to_string_pretty(&resolved)?;
    Ok(format!("# Resolved from {} by evolve {}.\n{body}", experiment_path.display(), env!("CARGO_PKG_VERSION")))
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only() {
        let names = ["expansion", "deletion", "mutation"];
        assert_eq!(did_you_mean("expanson", names).as_deref(), Some("expansion"));
        assert_eq!(did_you_mean("mutaiton", names).as_deref(), Some("mutation"));
        assert_eq!(did_you_mean("zebra", names), None);
    }
}
