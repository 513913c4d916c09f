//! `evolve plugins`: what this build can use.

use evolve_core::registry::Registry;
use std::process::ExitCode;

/// Lists plugins as a table, or as JSON for machines.
pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    if json {
        let list: Vec<serde_json::Value> = registry
            .entries()
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.info.name,
                    "kind": e.info.kind,
                    "version": e.info.version,
                    "origin": e.origin,
                    "description": e.info.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = registry.entries().iter().map(|e| e.name().len()).max().unwrap_or(4).max(4);
    println!("{:<10}  {:<width$}  {:<8}  {:<8}  DESCRIPTION", "KIND", "NAME", "VERSION", "ORIGIN");
    for e in registry.entries() {
        println!(
            "{:<10}  {:<width$}  {:<8}  {:<8}  {}",
            e.kind().as_str(),
            e.name(),
            e.info.version,
            "builtin",
            e.info.description
        );
    }
    Ok(ExitCode::SUCCESS)
}
