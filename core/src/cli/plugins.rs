//! `evolve plugins`: what this build can use, and what a plugin folder holds.

use anyhow::Context;
use evolve_core::registry::Registry;
use std::path::Path;
use std::process::ExitCode;

/// Lists plugins as a table, or as JSON for machines.
pub fn run(json: bool, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut registry = Registry::builtin();
    let mut failed = vec![];
    if let Some(dir) = dir {
        let (with_dir, failures) = registry.with_dir(dir).with_context(|| "cannot list plugins".to_string())?;
        registry = with_dir;
        failed = failures;
    }
    if json {
        let mut list: Vec<serde_json::Value> = registry
            .entries()
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.info.name,
                    "kind": e.info.kind,
                    "version": e.info.version,
                    "origin": e.origin,
                    "path": e.reference.path(),
                    "description": e.info.description,
                })
            })
            .collect();
        list.extend(
            failed
                .iter()
                .map(|(plugin, error)| serde_json::json!({ "path": plugin.path(), "error": error.to_string() })),
        );
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let width = registry.entries().iter().map(|e| e.name().len()).max().unwrap_or(4).max(4);
        println!("{:<10}  {:<width$}  {:<8}  {:<8}  DESCRIPTION", "KIND", "NAME", "VERSION", "ORIGIN");
        for e in registry.entries() {
            let mut description = e.info.description.clone();
            if let Some(path) = e.reference.path() {
                description = format!("{description} [{}]", path.display());
            }
            println!(
                "{:<10}  {:<width$}  {:<8}  {:<8}  {description}",
                e.kind().as_str(),
                e.name(),
                e.info.version,
                e.origin.as_str(),
            );
        }
        for (_, error) in &failed {
            eprintln!("error: {error}");
        }
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
