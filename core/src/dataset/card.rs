//! The dataset card (`README.md`) of an export: what run made the set, with what budget,
//! teachers and judge, and what is in it — in the Hugging Face card layout (YAML front
//! matter, then prose).

use super::export::{ExportOptions, Format};
use super::{DatasetError, io};
use crate::store::DatasetRow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// What the card says, gathered before anything is written.
pub(super) struct Card {
    run_name: String,
    experiment: toml::Value,
    counts: BTreeMap<String, usize>,
    images: usize,
    active: usize,
    winners: usize,
    cost_micro_usd: i64,
    options: ExportOptions,
}

impl Card {
    /// The card of the `rows` exported from the run at `run`.
    pub(super) fn of_run(run: &Path, rows: &[DatasetRow], options: &ExportOptions) -> Result<Card, DatasetError> {
        let path = run.join("experiment.toml");
        let text = std::fs::read_to_string(&path).map_err(io("cannot read", &path))?;
        // The run's own copy, written by evolve: read loosely, so that a card never needs the
        // run's plugins loaded.
        let experiment: toml::Value = toml::from_str(&text).unwrap_or(toml::Value::Table(Default::default()));
        let run_name = string_at(&experiment, &["run", "name"]).unwrap_or_else(|| "evolve run".into());
        let mut counts = BTreeMap::new();
        for row in rows {
            *counts.entry(row.origin.clone()).or_insert(0) += 1;
        }
        Ok(Card {
            run_name,
            experiment,
            counts,
            images: rows.len(),
            active: rows.iter().filter(|r| r.active).count(),
            winners: rows.iter().filter(|r| r.winner).count(),
            cost_micro_usd: rows.iter().map(|r| r.cost_micro_usd).sum(),
            options: options.clone(),
        })
    }

    /// The card as Markdown.
    pub(super) fn markdown(&self) -> String {
        let mut md = String::new();
        let size = match self.images {
            0..1_000 => "n<1K",
            1_000..10_000 => "1K<n<10K",
            10_000..100_000 => "10K<n<100K",
            _ => "100K<n<1M",
        };
        let _ = writeln!(md, "---\npretty_name: {}\ntask_categories:\n- text-to-image", yaml_string(&self.run_name));
        let _ = writeln!(md, "size_categories:\n- {size}\ntags:\n- evolve\n- synthetic\n---\n");
        let _ = writeln!(md, "# {}\n", self.run_name);
        let _ = writeln!(
            md,
            "A text-to-image set bought from teacher models and curated by a judge with \
             evolve (the EvolveDirector method): the judge compared the \
             base model's image with the teacher's for each prompt, kept what the base model still got wrong, \
             expanded it, deleted what it had mastered and mutated in new prompts.\n"
        );
        let _ = writeln!(md, "## What is in it\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| images | {} |", self.images);
        let _ = writeln!(md, "| in the active set at export | {} |", self.active);
        let _ = writeln!(md, "| tournament winners (training samples) | {} |", self.winners);
        for (origin, n) in &self.counts {
            let _ = writeln!(md, "| origin `{origin}` | {n} |");
        }
        let _ = writeln!(md, "| cost of these images | ${:.4} |", self.cost_micro_usd as f64 / 1e6);
        let filters = self.filters();
        let _ = writeln!(md, "| filters | {} |\n", if filters.is_empty() { "none".into() } else { filters.join(", ") });
        let _ = writeln!(md, "## The run\n");
        let _ = writeln!(md, "- teachers: {}", self.plugins("teachers"));
        let _ = writeln!(md, "- judge: {}", self.plugins("judge"));
        let _ = writeln!(md, "- base model: {}", self.plugins("base_model"));
        match self.experiment.get("budget").and_then(|b| b.as_table()).filter(|b| !b.is_empty()) {
            Some(budget) => {
                let limits: Vec<String> = budget.iter().map(|(k, v)| format!("`{k} = {v}`")).collect();
                let _ = writeln!(md, "- budget: {}", limits.join(", "));
            }
            None => {
                let _ = writeln!(md, "- budget: none set");
            }
        }
        let _ = writeln!(md, "- exported by evolve {}\n", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(md, "## Columns\n");
        let _ = writeln!(
            md,
            "`text` (the prompt), `teacher`, `cost_usd`, `origin` (`seed`, `expansion`, `mutation`, `imported`), \
             `parent_prompt` (what it was expanded or mutated from), `round` (0: before the first round), \
             `active` (in the training set at export), `winner` (won its prompt's tournament among the teachers), \
             `image_hash` (blake3 of the PNG), `verdicts` (the judge's, per round: `teacher_better` means the base \
             model still had more to learn).\n"
        );
        let _ = writeln!(md, "## Loading it\n");
        match self.options.format {
            Format::ImageFolder => {
                let _ = writeln!(
                    md,
                    "```python\nfrom datasets import load_dataset\nds = load_dataset(\"imagefolder\", data_dir=\"path/to/this/folder\", split=\"train\")\n```\n"
                );
            }
            Format::WebDataset => {
                let _ = writeln!(md, "{WEBDATASET_LOADING}");
            }
        }
        let _ = writeln!(
            md,
            "Or start a new evolve run from it: `from_dataset = \"path/to/this/folder\"` under `[prompts]`."
        );
        md
    }

    fn filters(&self) -> Vec<String> {
        let filter = &self.options.filter;
        let mut out = vec![];
        if filter.active_only {
            out.push("active only".to_string());
        }
        if filter.winners_only {
            out.push("winners only".to_string());
        }
        if let Some(round) = filter.round {
            out.push(format!("round {round}"));
        }
        out
    }

    /// The plugin labels of the section `key` (a table or an array of tables).
    fn plugins(&self, key: &str) -> String {
        let label = |t: &toml::Value| {
            let name = string_at(t, &["name"]);
            let plugin = match t.get("plugin") {
                Some(toml::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "?".into(),
            };
            name.map(|n| format!("`{n}` ({plugin})")).unwrap_or_else(|| format!("`{plugin}`"))
        };
        match self.experiment.get(key) {
            Some(toml::Value::Array(items)) => items.iter().map(label).collect::<Vec<_>>().join(", "),
            Some(table @ toml::Value::Table(_)) => label(table),
            _ => "none".into(),
        }
    }
}

fn string_at(value: &toml::Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(value, |v, k| v.get(k)).and_then(|v| v.as_str()).map(str::to_string)
}

/// `s` as a double-quoted YAML scalar.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"evolve run\"".into())
}

/// Loading the shards with `datasets`: its `webdataset` builder infers the columns from the
/// first five samples, and an unjudged seed's empty `verdicts` and missing `parent_prompt` say
/// nothing of their types, so the features are spelled out.
const WEBDATASET_LOADING: &str = r#"`datasets` infers a WebDataset's columns from its first samples; name them:

```python
from datasets import Features, Image, Value, load_dataset
verdict = {"round": Value("int64"), "outcome": Value("string"), "confidence": Value("float64")}
record = {"text": Value("string"), "teacher": Value("string"), "cost_usd": Value("float64"),
          "origin": Value("string"), "parent_prompt": Value("string"), "round": Value("int64"),
          "active": Value("bool"), "winner": Value("bool"), "image_hash": Value("string"),
          "verdicts": [verdict]}
features = Features({"png": Image(), "txt": Value("string"), "json": record})
ds = load_dataset("webdataset", data_files="path/to/this/folder/*.tar", split="train", features=features)
```
"#;
