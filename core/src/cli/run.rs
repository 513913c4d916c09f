//! `evolve run`: the director.

use anyhow::Context;
use evolve_core::director::{self, RunOptions};
use evolve_core::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs `experiment` in `run_dir` (default `runs/<name>`).
pub fn run(experiment_path: &Path, run_dir: Option<PathBuf>, resume: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let experiment = evolve_core::experiment::load(experiment_path, &registry)?;
    let run_dir = run_dir.unwrap_or_else(|| PathBuf::from("runs").join(&experiment.run.name));
    let options = RunOptions { run_dir: run_dir.clone(), resume, quiet };
    let outcome = director::run(&experiment, experiment_path, &registry, &options)
        .with_context(|| format!("run in {}", run_dir.display()))?;
    if let Some(report) = &outcome.eval {
        print!("{}", report.table());
    }
    for t in outcome.teachers.iter().filter(|_| outcome.teachers.len() > 1) {
        println!("teacher {:<16} won {:>5} of {:>5} tournaments", t.teacher, t.wins, t.entered);
    }
    println!(
        "run: {} — {} steps, {} rounds, {} teacher calls ({}), {} samples active, trainer busy {:.1}%",
        outcome.run_dir.display(),
        outcome.steps,
        outcome.rounds,
        outcome.calls,
        outcome.cost,
        outcome.active,
        outcome.busy * 100.0
    );
    if outcome.interrupted {
        println!(
            "interrupted; continue with: evolve run {} --resume --run-dir {}",
            experiment_path.display(),
            outcome.run_dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    println!("next: evolve sample --run {} --prompt \"a red circle\" --out grid.png", outcome.run_dir.display());
    Ok(ExitCode::SUCCESS)
}
