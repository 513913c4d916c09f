//! `evolve schema`: JSON Schemas for editors and tools.

use anyhow::{Context, bail};
use evolve_core::experiment::{PluginRef, experiment_schema};
use evolve_core::registry::Registry;
use std::process::ExitCode;

/// Prints the experiment schema, or the config schema of `plugin` (`NAME`, `KIND/NAME`, or
/// the path of an external plugin file).
pub fn run(plugin: Option<&str>) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let schema = match plugin {
        None => experiment_schema(&registry),
        Some(spec) if std::path::Path::new(spec).is_file() => external_schema(spec)?,
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

/// The config schema an external plugin file ships.
fn external_schema(path: &str) -> anyhow::Result<serde_json::Value> {
    let path = std::path::absolute(path).with_context(|| format!("bad path {path}"))?;
    let plugin = if path.extension().is_some_and(|e| e == "wasm") {
        PluginRef::Wasm { wasm: path }
    } else {
        PluginRef::Native { native: path }
    };
    Ok(evolve_core::external::load(&plugin)?.config_schema.clone())
}
