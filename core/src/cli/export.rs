//! `evolve export`: a run's model in its ecosystem's format (for `dit`, a diffusers pipeline
//! folder that `PixArtAlphaPipeline.from_pretrained` loads), or its curated dataset.

use anyhow::{Context, bail};
use evolve_core::registry::Registry;
use evolve_core::run_model;
use evolve_core::store::replace_folder;
use std::path::Path;
use std::process::ExitCode;

/// Exports the curated set of the run at `run` into `out` as `options` say.
pub fn dataset(run: &Path, out: &Path, options: evolve_core::dataset::ExportOptions) -> anyhow::Result<ExitCode> {
    let summary = evolve_core::dataset::export(run, out, &options)
        .with_context(|| format!("cannot export the dataset of {}", run.display()))?;
    let shards = if summary.shards > 0 { format!(" in {} shards", summary.shards) } else { String::new() };
    println!("wrote {} images{shards} to {}", summary.images, summary.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Exports the model of the run at `run` (its latest checkpoint, EMA weights) into `out`.
/// An existing `out` is refused unless `force`; the folder appears whole or not at all.
pub fn run(run: &Path, out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if out.exists() && !force {
        bail!("{} already exists; pass --force to replace it", out.display());
    }
    let registry = Registry::builtin();
    let (_, model, _) = run_model::open(run, &registry)?;
    replace_folder(out, |partial| {
        model
            .export(partial)
            .map_err(|e| anyhow::Error::msg(e).context(format!("cannot export the model of {}", run.display())))
    })?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
