//! `evolve run`: the director.

use anyhow::Context;
use evolve_core::director::{self, RunOptions, RunOutcome};
use evolve_core::experiment::OnAuditFail;
use evolve_core::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Command-line options of `evolve run`.
pub struct Options {
    /// Where the run lives (default `runs/<name>`).
    pub run_dir: Option<PathBuf>,
    /// Continue the run.
    pub resume: bool,
    /// No progress bars.
    pub quiet: bool,
    /// JSON events instead of bars and tables.
    pub json: bool,
    /// Processes training data-parallel (`--gpus`).
    pub gpus: usize,
}

/// Runs `experiment`.
pub fn run(experiment_path: &Path, options: Options) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let experiment = evolve_core::experiment::load(experiment_path, &registry)?;
    let run_dir = options.run_dir.unwrap_or_else(|| PathBuf::from("runs").join(&experiment.run.name));
    let run_options = RunOptions {
        run_dir: run_dir.clone(),
        resume: options.resume,
        quiet: options.quiet,
        json: options.json,
        gpus: options.gpus,
    };
    let outcome = director::run(&experiment, experiment_path, &registry, &run_options)
        .with_context(|| format!("run in {}", run_dir.display()))?;
    if options.json {
        print_json(&outcome);
    } else {
        print_text(experiment_path, &outcome);
    }
    let stopped_by_audit = outcome.audit_failed.is_some() && experiment.audit.on_fail == OnAuditFail::Stop;
    Ok(if outcome.interrupted {
        ExitCode::from(130)
    } else if stopped_by_audit {
        // Distinct from a failure (1): the run is whole and resumable once the judge is fixed.
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_json(outcome: &RunOutcome) {
    let eval = outcome.eval.as_ref().map(|r| {
        let categories: serde_json::Map<String, serde_json::Value> =
            r.categories.iter().map(|c| (c.category.clone(), c.score.into())).collect();
        serde_json::json!({ "suite": r.suite, "overall": r.overall, "categories": categories })
    });
    let teachers: Vec<_> = outcome
        .teachers
        .iter()
        .map(|t| serde_json::json!({ "teacher": t.teacher, "wins": t.wins, "entered": t.entered }))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "event": "finished", "run_dir": outcome.run_dir, "steps": outcome.steps, "rounds": outcome.rounds,
            "teacher_calls": outcome.calls, "cost_usd": outcome.cost.usd(), "active": outcome.active,
            "judge_calls": outcome.judge.calls, "judge_cost_usd": outcome.judge.cost.usd(),
            "judge_tokens": outcome.judge.input_tokens + outcome.judge.output_tokens,
            "trainer_busy": outcome.busy, "interrupted": outcome.interrupted, "eval": eval, "teachers": teachers,
            "audit_failed": outcome.audit_failed,
            "quarantined": outcome.quarantined.iter()
                .map(|(instance, reason)| serde_json::json!({ "instance": instance, "reason": reason }))
                .collect::<Vec<_>>(),
        })
    );
}

fn print_text(experiment_path: &Path, outcome: &RunOutcome) {
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
    if outcome.judge.calls > 0 {
        println!(
            "judge: {} calls, {} tokens in, {} out ({}); total spent {}",
            outcome.judge.calls,
            outcome.judge.input_tokens,
            outcome.judge.output_tokens,
            outcome.judge.cost,
            outcome.cost + outcome.judge.cost
        );
    }
    for (instance, reason) in &outcome.quarantined {
        println!("quarantined {instance}: {reason}");
    }
    if let Some(failed) = &outcome.audit_failed {
        println!("judge audit failed: {failed} (limits under [audit]; the report has the figures)");
    }
    println!("report: {}", outcome.run_dir.join("report/index.html").display());
    if outcome.interrupted {
        println!(
            "interrupted; continue with: evolve run {} --resume --run-dir {}",
            experiment_path.display(),
            outcome.run_dir.display()
        );
    } else {
        println!("next: evolve sample --run {} --prompt \"a red circle\" --out grid.png", outcome.run_dir.display());
    }
}
