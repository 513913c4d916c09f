//! `evolve check`: validate experiment files against the schema, then build each plugin (its own
//! configuration step) without running anything.

use anyhow::Context;
use evolve_core::experiment;
use evolve_core::registry::Registry;
use std::path::PathBuf;
use std::process::ExitCode;

/// Checks every file; reports all of them before failing.
pub fn run(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let mut failed = 0;
    for path in paths {
        match experiment::load(path, &registry) {
            Ok(exp) => {
                if let Err(e) = evolve_core::director::check_plugins(&exp, &registry) {
                    failed += 1;
                    eprintln!("error: {}: {e}\n", path.display());
                    continue;
                }
                let teachers: Vec<String> = exp.teachers.iter().map(|t| t.label()).collect();
                let operators: Vec<String> = exp.operators.iter().map(|o| o.plugin.label()).collect();
                println!(
                    "ok: {} (run {}, base model {}, teachers {}, judge {}, operators {})",
                    path.display(),
                    exp.run.name,
                    exp.base_model.plugin,
                    teachers.join("+"),
                    exp.judge.plugin,
                    operators.join(" > ")
                );
            }
            Err(e @ experiment::ExperimentError::Read { .. }) => {
                failed += 1;
                eprintln!("{}", super::render_error(&anyhow::Error::new(e).context("check failed")));
            }
            Err(experiment::ExperimentError::Invalid(d)) => {
                failed += 1;
                eprintln!("{d}\n");
            }
        }
    }
    if failed > 0 {
        return Err(anyhow::anyhow!("{failed} of {} experiment file(s) invalid", paths.len())).context("check failed");
    }
    Ok(ExitCode::SUCCESS)
}
