//! `evolve sample`: images from a run's model, as a PNG grid.

use anyhow::Context;
use evolve_core::registry::Registry;
use evolve_core::run_model;
use evolve_sdk::{Image, SampleRequest};
use std::path::Path;
use std::process::ExitCode;

/// Lays `images` (all the same size) out in a near-square grid with 2-pixel white gutters.
pub fn grid(images: &[Image]) -> Image {
    let Some(first) = images.first() else { return Image::filled(1, 1, [255, 255, 255]) };
    let (w, h) = (first.width(), first.height());
    let cols = (images.len() as f64).sqrt().ceil().max(1.0) as u32;
    let rows = (images.len() as u32).div_ceil(cols);
    let gap = 2;
    let mut out = Image::filled(cols * (w + gap) + gap, rows * (h + gap) + gap, [255, 255, 255]);
    for (i, image) in images.iter().enumerate() {
        let (ox, oy) = (gap + (i as u32 % cols) * (w + gap), gap + (i as u32 / cols) * (h + gap));
        for y in 0..h {
            for x in 0..w {
                if let Some(p) = image.get(x, y) {
                    out.put(ox + x, oy + y, p);
                }
            }
        }
    }
    out
}

/// Renders `n` images of `prompt` from the run at `run` into `out`.
pub fn run(
    run: &Path,
    prompt: &str,
    n: u32,
    seed: u64,
    steps: Option<u32>,
    guidance: Option<f32>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let (_, mut model, _) = run_model::open(run, &registry)?;
    let request = SampleRequest { prompts: vec![prompt.to_string(); n as usize], seed, steps, guidance };
    let images = model.generate(&request).map_err(anyhow::Error::msg).context("sampling failed")?;
    let png = evolve_core::store::encode_png(&grid(&images))?;
    evolve_core::store::atomic_write(out, &png)?;
    println!("wrote {} ({n} images of {prompt:?})", out.display());
    Ok(ExitCode::SUCCESS)
}
