//! `evolve eval`: score a run's model, or a teacher, on a held-out suite.

use anyhow::{Context, bail};
use evolve_core::eval::eval_teacher;
use evolve_core::registry::Registry;
use evolve_sdk::{PluginContext, PluginKind};
use std::process::ExitCode;
use std::sync::Arc;

/// Scores the teacher plugin `teacher` (with its default config) on `suite`, or on the only
/// registered evaluator when `suite` is `None`.
pub fn teacher(teacher: &str, suite: Option<&str>, size: u32, json: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let suite = match suite {
        Some(name) => name.to_string(),
        None => match registry.names(PluginKind::Evaluator).as_slice() {
            [only] => only.clone(),
            [] => bail!("no evaluator plugin is registered in this build"),
            several => bail!("several evaluators are registered; pick one with --suite ({})", several.join(", ")),
        },
    };
    let ctx = PluginContext::new(teacher, 0);
    let empty = serde_json::json!({});
    let teacher_plugin: Arc<dyn evolve_sdk::Teacher> = Arc::from(
        registry
            .teacher(&teacher.into(), empty.clone(), &ctx)
            .with_context(|| format!("cannot build teacher `{teacher}`"))?,
    );
    let evaluator = registry
        .evaluator(&suite.as_str().into(), empty, &ctx)
        .with_context(|| format!("cannot build evaluator `{suite}`"))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(eval_teacher(teacher_plugin, teacher, evaluator.as_ref(), size))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Scores the model of the run at `run` on its experiment's evaluator (or `suite`).
pub fn run(run: &std::path::Path, suite: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let (experiment, mut model, _) = evolve_core::run_model::open(run, &registry)?;
    let section = match (suite, &experiment.eval) {
        (Some(name), _) => evolve_core::experiment::PluginSection::named(name),
        (None, Some(section)) => section.clone(),
        (None, None) => bail!("the run's experiment has no [eval] section; pick an evaluator with --suite"),
    };
    let ctx = evolve_core::run_model::context(&experiment, "eval");
    let evaluator = registry
        .evaluator(&section.plugin, section.config.clone(), &ctx)
        .with_context(|| format!("cannot build evaluator `{}`", section.plugin))?;
    let report =
        evolve_core::eval::eval_model(model.as_mut(), evaluator.as_ref(), &run.display().to_string(), |_, _| {})?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}
