//! `evolve train --static`: the baseline without the director.

use anyhow::Context;
use evolve_core::registry::Registry;
use evolve_core::static_train::{self, StaticOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Trains `experiment` statically in `run_dir` (default `runs/<name>-static`).
pub fn run(experiment_path: &Path, run_dir: Option<PathBuf>, resume: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let experiment = evolve_core::experiment::load(experiment_path, &registry)?;
    let run_dir = run_dir.unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-static", experiment.run.name)));
    let options = StaticOptions { run_dir: run_dir.clone(), resume, quiet };
    let outcome = static_train::run(&experiment, experiment_path, &registry, &options)
        .with_context(|| format!("static training in {}", run_dir.display()))?;
    if let Some(report) = &outcome.eval {
        print!("{}", report.table());
    }
    println!(
        "run: {} ({} steps on {} teacher images)\nnext: evolve sample --run {} --prompt \"a red circle\" --out grid.png",
        outcome.run_dir.display(),
        outcome.steps,
        outcome.samples,
        outcome.run_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
