//! `evolve export`: a run's model in its ecosystem's format (for `dit`, a diffusers pipeline
//! folder that `PixArtAlphaPipeline.from_pretrained` loads).

use anyhow::{Context, bail};
use evolve_core::registry::Registry;
use evolve_core::run_model;
use std::path::Path;
use std::process::ExitCode;

/// Exports the model of the run at `run` (its latest checkpoint, EMA weights) into `out`.
/// An existing `out` is refused unless `force`; the folder appears whole or not at all.
pub fn run(run: &Path, out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if out.exists() && !force {
        bail!("{} already exists; pass --force to replace it", out.display());
    }
    let registry = Registry::builtin();
    let (_, model, _) = run_model::open(run, &registry)?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("export");
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    if let Err(e) = model.export(&partial) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(anyhow::Error::msg(e).context(format!("cannot export the model of {}", run.display())));
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot replace {}", out.display()))?;
    }
    std::fs::rename(&partial, out).with_context(|| format!("cannot move the export into {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
