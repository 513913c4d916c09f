//! `evolve eval`: score a run's model, or a teacher, on a held-out suite.

use anyhow::{Context, bail};
use evolve_core::eval::eval_teacher;
use evolve_core::registry::Registry;
use evolve_sdk::{PluginContext, PluginKind};
use std::process::ExitCode;
use std::sync::Arc;

/// Scores the teacher plugin `teacher` (with its default config) on `suite`, or on the only
/// registered evaluator when `suite` is `None`, at `images` images per prompt.
pub fn teacher(teacher: &str, suite: Option<&str>, size: u32, images: u32, json: bool) -> anyhow::Result<ExitCode> {
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
    let evaluator = evolve_core::eval::ImagesPerPrompt::wrap(Arc::from(evaluator), images as usize);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(eval_teacher(teacher_plugin, teacher, evaluator.as_ref(), size))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Scores the model of the run at `run` on its experiment's evaluator (or `suite`), at `images`
/// images per prompt (default: the experiment's).
pub fn run(run: &std::path::Path, suite: Option<&str>, images: Option<u32>, json: bool) -> anyhow::Result<ExitCode> {
    let report = evolve_core::eval::score_run(run, &Registry::builtin(), suite, images)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}
