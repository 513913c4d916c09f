//! Parsing and validating experiment files: TOML syntax, secrets, the JSON Schema with every
//! plugin's config schema, then the rules a schema cannot say.

use super::diagnostic::{Diagnostic, Diagnostics, SourceText};
use super::locate::SpannedDoc;
use super::schema::{attach_config_schema, describe, experiment_schema, kind_of_section};
use super::{Experiment, PluginRef, did_you_mean};
use crate::registry::Registry;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why an experiment file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The file could not be read.
    #[error("cannot read experiment file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid experiment.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Keys that hold credentials; they may only ever name an environment variable.
const SECRET_KEYS: [&str; 6] = ["api_key", "apikey", "token", "secret", "password", "bearer"];

/// Reads, validates and decodes the experiment file at `path`.
pub fn load(path: &Path, registry: &Registry) -> Result<Experiment, ExperimentError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ExperimentError::Read { path: path.to_path_buf(), source })?;
    parse(&text, path, registry)
}

/// Validates and decodes experiment `text`; `file` is only used in diagnostics.
pub fn parse(text: &str, file: &Path, registry: &Registry) -> Result<Experiment, ExperimentError> {
    let source = SourceText::new(file, text);
    let fail = |d: Vec<Diagnostic>| Err(ExperimentError::Invalid(Diagnostics(d)));
    let doc = match SpannedDoc::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = format!("invalid TOML: {}", e.message().trim());
            return fail(vec![Diagnostic::new(&source, span, String::new(), message)]);
        }
    };
    let value: Value = match toml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            return fail(vec![Diagnostic::new(&source, span, String::new(), e.message().trim().to_string())]);
        }
    };

    let checker = Checker { source: &source, doc: &doc, registry };
    let mut diagnostics = checker.secrets(&value);
    if diagnostics.is_empty() {
        diagnostics = checker.schema(&value);
    }
    if diagnostics.is_empty() {
        diagnostics = checker.rules(&value);
    }
    if !diagnostics.is_empty() {
        diagnostics.sort_by_key(|d| (d.line, d.column));
        diagnostics.dedup();
        return fail(diagnostics);
    }
    let mut experiment: Experiment = serde_json::from_value(value).map_err(|e| {
        // The schema is generated from the same types, so this means the two drifted apart.
        let d = Diagnostic::new(&source, 0..0, String::new(), format!("cannot decode experiment: {e}"));
        ExperimentError::Invalid(Diagnostics(vec![d]))
    })?;
    let base = experiment_dir(file);
    for plugin in experiment.plugin_refs_mut() {
        *plugin = plugin.resolved(&base);
    }
    Ok(experiment)
}

/// The folder relative paths in an experiment file are resolved against.
fn experiment_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

struct Checker<'a> {
    source: &'a SourceText<'a>,
    doc: &'a SpannedDoc<'a>,
    registry: &'a Registry,
}

impl Checker<'_> {
    fn at_value(&self, path: &[String], message: String) -> Diagnostic {
        Diagnostic::new(self.source, self.doc.value_span(path), key_path(path), message)
    }

    fn at_key(&self, path: &[String], key: &str, message: String) -> Diagnostic {
        let mut full = path.to_vec();
        full.push(key.to_string());
        Diagnostic::new(self.source, self.doc.key_span(path, key), key_path(&full), message)
    }

    /// Secrets written into the file instead of referenced by environment variable.
    fn secrets(&self, value: &Value) -> Vec<Diagnostic> {
        let mut found = vec![];
        walk(value, &mut vec![], &mut |path, key, v| {
            let lower = key.to_ascii_lowercase();
            if v.is_string() && SECRET_KEYS.iter().any(|s| lower == *s || lower.ends_with(&format!("_{s}"))) {
                let var = format!("{}_{}", path.first().map_or("EVOLVE", String::as_str), lower).to_ascii_uppercase();
                found.push(
                    self.at_key(path, key, "a secret is written into the file".to_string())
                        .with_help(Some(format!(
                            "secrets are read from the environment, never files: `{key} = {{ env = \"{var}\" }}`"
                        )))
                        .redacted(),
                );
            }
        });
        found
    }

    /// Everything the JSON Schema says: types, ranges, unknown and missing keys, plugin names
    /// and each plugin's own config schema.
    fn schema(&self, value: &Value) -> Vec<Diagnostic> {
        let mut schema = experiment_schema(self.registry);
        let unloadable = self.attach_externals(&mut schema, value);
        if !unloadable.is_empty() {
            return unloadable;
        }
        let validator = match jsonschema::draft202012::new(&schema) {
            Ok(v) => v,
            Err(e) => return vec![self.at_value(&[], format!("internal error: invalid experiment schema: {e}"))],
        };
        validator.iter_errors(value).flat_map(|e| self.explain(&schema, &e)).collect()
    }

    fn explain(&self, schema: &Value, error: &jsonschema::ValidationError<'_>) -> Vec<Diagnostic> {
        let path = segments(error.instance_path().as_str());
        let schema_path = segments(error.schema_path().as_str());
        let parent_schema = schema.pointer(&pointer(&schema_path[..schema_path.len().saturating_sub(1)]));
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
                .iter()
                .map(|key| {
                    let accepted: Vec<&str> = parent_schema
                        .and_then(|s| s.get("properties"))
                        .and_then(Value::as_object)
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let help = match did_you_mean(key, accepted.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`? accepted keys: {}", accepted.join(", ")),
                        None if accepted.is_empty() => "this table takes no keys".to_string(),
                        None => format!("accepted keys: {}", accepted.join(", ")),
                    };
                    let place = if path.is_empty() {
                        "at the top level".to_string()
                    } else {
                        format!("in `{}`", key_path(&path))
                    };
                    self.at_key(&path, key, format!("unknown key `{key}` {place}")).with_help(Some(help))
                })
                .collect(),
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let expected = parent_schema
                    .and_then(|s| s.pointer(&format!("/properties/{name}")))
                    .and_then(describe)
                    .map(|d| format!("add `{name}`: {d}"));
                let place =
                    if path.is_empty() { "at the top level".to_string() } else { format!("in `{}`", key_path(&path)) };
                vec![self.at_value(&path, format!("missing required key `{name}` {place}")).with_help(expected)]
            }
            ValidationErrorKind::Enum { options } if path.last().is_some_and(|k| k == "plugin") => {
                let name = error.instance().as_str().unwrap_or_default().to_string();
                let kind = path.first().and_then(|k| kind_of_section(k));
                let available: Vec<&str> = options.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let what = kind.map_or("plugin".to_string(), |k| format!("{k} plugin"));
                let help = match did_you_mean(&name, available.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? registered: {}", available.join(", ")),
                    None if available.is_empty() => {
                        format!("no {what} is registered in this build (`evolve plugins` lists what is)")
                    }
                    None => format!("registered: {} (`evolve plugins` lists every plugin)", available.join(", ")),
                };
                vec![self.at_value(&path, format!("unknown {what} `{name}`")).with_help(Some(help))]
            }
            _ => {
                let node = schema.pointer(&pointer(&schema_path[..schema_path.len().saturating_sub(1)]));
                let help = node.and_then(describe).map(|d| format!("expected {d}"));
                vec![self.at_value(&path, error.to_string()).with_help(help)]
            }
        }
    }

    /// Loads the external plugins the file names and adds their config schemas to `schema`;
    /// returns a diagnostic for each that cannot be loaded or is of the wrong kind.
    fn attach_externals(&self, schema: &mut Value, value: &Value) -> Vec<Diagnostic> {
        let base = experiment_dir(self.source.file);
        let mut found = vec![];
        for (path, kind, section) in plugin_sections(value) {
            let Some(written) = section.get("plugin").filter(|p| p.is_object()) else { continue };
            // A malformed table is the schema's to report.
            let Ok(plugin) = serde_json::from_value::<PluginRef>(written.clone()) else { continue };
            let mut at = path.clone();
            at.push("plugin".to_string());
            match crate::external::load(&plugin.resolved(&base)) {
                Err(e) => found.push(self.at_value(&at, format!("cannot load the plugin: {e}")).with_help(Some(
                    format!("paths are relative to the experiment file's folder, {}", base.display()),
                ))),
                Ok(loaded) if loaded.info.kind != kind => found.push(self.at_value(
                    &at,
                    format!("`{}` is a {} plugin, but this section needs a {kind}", loaded.info.name, loaded.info.kind),
                )),
                Ok(loaded) => attach_config_schema(schema, kind, written, &loaded.config_schema),
            }
        }
        found
    }

    /// Rules across sections that a JSON Schema cannot express.
    fn rules(&self, value: &Value) -> Vec<Diagnostic> {
        let mut found = vec![];
        let mut labels = HashSet::new();
        for (i, teacher) in value.get("teachers").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let plugin = teacher.get("plugin").and_then(|p| serde_json::from_value::<PluginRef>(p.clone()).ok());
            let label = match teacher.get("name").and_then(Value::as_str) {
                Some(name) => name.to_string(),
                None => plugin.map(|p| p.label()).unwrap_or_default(),
            };
            if !labels.insert(label.to_string()) {
                let key = if teacher.get("name").is_some() { "name" } else { "plugin" };
                let path = vec!["teachers".to_string(), i.to_string(), key.to_string()];
                found.push(
                    self.at_value(&path, format!("two teachers are labelled `{label}`"))
                        .with_help(Some("give each teacher a distinct `name`".to_string())),
                );
            }
        }
        if let Some(file) = value.pointer("/prompts/file").and_then(Value::as_str) {
            let base = self.source.file.parent().unwrap_or(Path::new("."));
            if !base.join(file).is_file() {
                let path = vec!["prompts".to_string(), "file".to_string()];
                found.push(self.at_value(&path, format!("prompt file `{file}` does not exist")).with_help(Some(
                    format!("paths are relative to the experiment file's folder, {}", base.display()),
                )));
            }
        }
        if let Some(dataset) = value.pointer("/prompts/from_dataset").and_then(Value::as_str) {
            let base = self.source.file.parent().unwrap_or(Path::new("."));
            if !base.join(dataset).exists() {
                let path = vec!["prompts".to_string(), "from_dataset".to_string()];
                found.push(self.at_value(&path, format!("dataset `{dataset}` does not exist")).with_help(Some(
                    format!(
                        "a folder (metadata.jsonl, {{name}}.txt captions or .tar shards) or one .tar shard; \
                         paths are relative to the experiment file's folder, {}",
                        base.display()
                    ),
                )));
            }
        }
        let paced = value.pointer("/director/spend").and_then(Value::as_str) == Some("paced");
        if paced {
            for limit in ["max_teacher_calls", "max_steps"] {
                if value.pointer(&format!("/budget/{limit}")).is_none() {
                    let path = vec!["director".to_string(), "spend".to_string()];
                    found.push(
                        self.at_value(&path, format!("`paced` spending needs `budget.{limit}`"))
                            .with_help(Some(format!("set `{limit}` under [budget], or spend = \"as_asked\""))),
                    );
                }
            }
        }
        // Only a paced round chooses what to buy; otherwise the setting would silently do nothing.
        let buy_first = value.pointer("/director/buy_first").and_then(Value::as_str);
        if buy_first.is_some_and(|b| b != "any") && !paced {
            let path = vec!["director".to_string(), "buy_first".to_string()];
            found.push(
                self.at_value(
                    &path,
                    "`buy_first` chooses among what a paced round can buy: it needs `spend = \"paced\"`".into(),
                )
                .with_help(Some("set spend = \"paced\" under [director], or leave buy_first out".into())),
            );
        }
        found
    }
}

/// Every plugin section of `value` with its key path and kind.
fn plugin_sections(value: &Value) -> Vec<(Vec<String>, evolve_sdk::PluginKind, &Value)> {
    let mut sections = vec![];
    for (key, section) in value.as_object().into_iter().flatten() {
        let Some(kind) = kind_of_section(key) else { continue };
        match section {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    sections.push((vec![key.clone(), i.to_string()], kind, item));
                }
            }
            other => sections.push((vec![key.clone()], kind, other)),
        }
    }
    sections
}

/// Calls `visit(path, key, value)` for every key of every table inside plugin `config` tables.
fn walk(value: &Value, path: &mut Vec<String>, visit: &mut impl FnMut(&[String], &str, &Value)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                visit(path, k, v);
                path.push(k.clone());
                walk(v, path, visit);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(v, path, visit);
                path.pop();
            }
        }
        _ => {}
    }
}

/// JSON-pointer segments, unescaped.
fn segments(pointer: &str) -> Vec<String> {
    pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

/// A JSON pointer from segments.
fn pointer(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect()
}

/// `teachers[0].config.model` from `["teachers", "0", "config", "model"]`.
fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}
