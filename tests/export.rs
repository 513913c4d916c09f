//! End-to-end: `evolve run` fine-tunes the tiny PixArt pipeline fixture (T5 captions, VAE
//! latents) on the shapes teacher, then `evolve export` writes a diffusers pipeline folder whose
//! transformer holds exactly the checkpoint's EMA weights — through the real binary.

use evolve_dit::candle_core::{Device, Tensor};
use evolve_dit::pipeline::PipelineFolder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn evolve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evolve")).args(args).current_dir(root()).output().expect("evolve runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

fn latest_checkpoint(run: &Path) -> PathBuf {
    let name = std::fs::read_to_string(run.join("checkpoints/LATEST")).unwrap();
    run.join("checkpoints").join(name.trim())
}

#[test]
fn a_run_from_a_pretrained_pipeline_exports_a_diffusers_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let experiment = root().join("examples/pixart-tiny/evolve.toml");
    let text = std::fs::read_to_string(&experiment).unwrap();
    // CI-sized: a few steps and one round.
    let text = text.replace("max_steps = 300", "max_steps = 24").replace("every_steps = 100", "every_steps = 12");
    let exp = dir.path().join("exp.toml");
    std::fs::write(&exp, text).unwrap();
    ok(&evolve(&["run", exp.to_str().unwrap(), "--quiet", "--run-dir", run.to_str().unwrap()]));
    // Latents and caption encodings are kept in the run for resumes (one file per image / prompt).
    for kind in ["latents", "captions"] {
        let count = walk(&run.join("cache").join(kind)).len();
        assert!(count > 0, "no cached {kind}");
    }

    let out = dir.path().join("exported");
    ok(&evolve(&["export", "--run", run.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    for part in ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer.json", "vae/config.json"] {
        assert!(out.join(part).is_file(), "{part} missing from the export");
    }
    // Export then import is bit-exact: the exported transformer is the checkpoint's EMA.
    let folder = PipelineFolder::open(&out).unwrap();
    let exported = folder.transformer_weights().unwrap();
    let checkpoint =
        evolve_dit::candle_core::safetensors::load(latest_checkpoint(&run).join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let ema: HashMap<&str, &Tensor> =
        checkpoint.iter().filter_map(|(k, v)| k.strip_prefix("ema.").map(|name| (name, v))).collect();
    assert_eq!(exported.len(), ema.len());
    for (name, tensor) in &exported {
        let want = ema[name.as_str()].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want, "{name}");
    }
    // The export starts a new run as `pretrained` does a published one.
    assert_eq!(
        folder.shape(),
        PipelineFolder::open(&root().join("plugins/dit/tests/fixtures/tiny-pixart")).unwrap().shape()
    );

    let again = evolve(&["export", "--run", run.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"), "{}", String::from_utf8_lossy(&again.stderr));
    ok(&evolve(&["export", "--run", run.to_str().unwrap(), "--out", out.to_str().unwrap(), "--force"]));
}

#[test]
fn a_pixel_space_run_cannot_be_exported_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let exp = dir.path().join("exp.toml");
    let text = r#"
[run]
name = "pixels"
image_size = 32

[base_model]
plugin = "dit"
config = { preset = "tiny", depth = 1, sample_steps = 2 }

[[teachers]]
plugin = "shapes"

[judge]
plugin = "shapes"

[prompts]
generate = 8

[training]
batch_size = 4
checkpoint_every = 4

[budget]
max_teacher_calls = 8
max_steps = 4
"#;
    std::fs::write(&exp, text).unwrap();
    ok(&evolve(&["train", exp.to_str().unwrap(), "--static", "--quiet", "--run-dir", run.to_str().unwrap()]));
    let out = dir.path().join("exported");
    let result = evolve(&["export", "--run", run.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("pixel space"), "{stderr}");
    assert!(!out.exists(), "a failed export leaves nothing behind");
}

#[test]
fn sample_renders_a_pretrained_folder_from_given_noise_as_diffusers_does() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("ddim.png");
    let fixtures = root().join("plugins/dit/tests/fixtures");
    let reference = fixtures.join("reference/ddim.safetensors");
    let pipeline = fixtures.join("tiny-pixart");
    let args = [
        "sample",
        "--pretrained",
        pipeline.to_str().unwrap(),
        "--prompt",
        "a red circle",
        "-n",
        "1",
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--guidance",
        "4.5",
        "--init-noise",
        reference.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ];
    ok(&evolve(&args));
    let image = image::open(&png).unwrap().to_rgb8();
    let want = evolve_dit::candle_core::safetensors::load(&reference, &Device::Cpu).unwrap()["image"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // The grid of one image has a 2-pixel gutter.
    let mut worst = 0f32;
    for y in 0..16u32 {
        for x in 0..16u32 {
            for c in 0..3 {
                let got = image.get_pixel(x + 2, y + 2)[c] as f32;
                worst = worst.max((got - want[((y * 16 + x) * 3) as usize + c] * 255.0).abs());
            }
        }
    }
    assert!(worst <= 2.0, "differs from the diffusers pipeline by {worst}/255");
    let bad = evolve(&[
        "sample",
        "--pretrained",
        fixtures.join("tiny-pixart").to_str().unwrap(),
        "--prompt",
        "x",
        "--sampler",
        "euler",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("use ddim or dpm (dpm_solver2m)"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
