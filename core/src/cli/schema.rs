//! `evolve schema`: JSON Schemas for editors and tools.

use anyhow::{Context, bail};
use evolve_core::experiment::experiment_schema;
use evolve_core::registry::Registry;
use std::process::ExitCode;

/// Prints the experiment schema, or the config schema of `plugin` (`NAME` or `KIND/NAME`).
pub fn run(plugin: Option<&str>) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let schema = match plugin {
        None => experiment_schema(&registry),
        Some(spec) => {
            let (kind, name) = match spec.split_once('/') {
                Some((k, n)) => (Some(k), n),
                None => (None, spec),
            };
            let matches: Vec<_> =
                registry.find(name).into_iter().filter(|e| kind.is_none_or(|k| e.kind().as_str() == k)).collect();
            match matches.as_slice() {
                [one] => one.config_schema.clone(),
                [] => {
                    let names: Vec<&str> = registry.entries().iter().map(|e| e.name()).collect();
                    let hint = evolve_core::experiment::did_you_mean(name, names.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    bail!("no plugin `{spec}`{hint}; `evolve plugins` lists them")
                }
                several => {
                    let options: Vec<String> = several.iter().map(|e| format!("{}/{}", e.kind(), e.name())).collect();
                    bail!("`{name}` names several plugins; pick one of: {}", options.join(", "))
                }
            }
        }
    };
    println!("{}", serde_json::to_string_pretty(&schema).context("cannot print schema")?);
    Ok(ExitCode::SUCCESS)
}
