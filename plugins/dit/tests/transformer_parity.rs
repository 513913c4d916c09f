//! The transformer against diffusers' `PixArtTransformer2DModel`, loaded from a pipeline folder
//! through the same path `pretrained = "DIR"` takes: fixtures by `tests/fixtures/make.py`.

mod common;

use common::{fixtures, relative_error};
use evolve_dit::candle_core::{DType, Device, Tensor};
use evolve_dit::dit::{Dit, DitShape};
use evolve_dit::params::ParamBuilder;
use evolve_dit::pipeline::{TransformerConfig, safetensors_files};
use evolve_dit::text::Caption;
use evolve_dit::{DitConfig, DitModel};
use std::collections::HashMap;
use std::path::Path;

/// The relative error of the transformer in `dir` (built as `pretrained` builds it) against
/// diffusers' output in `reference`.
fn transformer_error(dir: &Path, reference: &str, resolution: Option<usize>) -> f32 {
    let reference =
        evolve_dit::candle_core::safetensors::load(fixtures().join("reference").join(reference), &Device::Cpu).unwrap();
    let config = TransformerConfig::read(dir).unwrap();
    let shape = DitShape { resolution_condition: resolution, ..config.shape(config.interpolation_scale().unwrap()) };
    assert!(shape.learned_sigma && !shape.qk_norm && !shape.null_caption);
    let mut weights = HashMap::new();
    for file in safetensors_files(dir).unwrap() {
        weights.extend(evolve_dit::candle_core::safetensors::load(file, &Device::Cpu).unwrap());
    }
    let builder = ParamBuilder::pretrained(weights, DType::F32, &Device::Cpu);
    let dit = Dit::new(builder.var_builder(), shape).unwrap();
    assert_eq!(builder.unused_pretrained(), Vec::<String>::new());
    let mask = reference["mask"].to_dtype(DType::F32).unwrap();
    let caption = Caption { features: reference["captions"].clone(), mask: Some(mask) };
    let y = dit.project_caption(&caption, &[true, true]).unwrap();
    let timesteps: Vec<f64> = reference["timesteps"].to_vec1::<f32>().unwrap().into_iter().map(f64::from).collect();
    let out = dit.forward(&reference["latents"], &timesteps, &y).unwrap();
    relative_error(&out, &reference["output"])
}

#[test]
fn transformer_output_matches_diffusers() {
    let error = transformer_error(&fixtures().join("tiny-pixart/transformer"), "transformer.safetensors", None);
    println!("transformer output (both halves, learned sigma): max relative error {error:.2e}");
    assert!(error < 1e-4, "transformer output differs: relative error {error}");
}

#[test]
fn the_1024_models_micro_conditions_and_position_interpolation_match_diffusers() {
    let dir = fixtures().join("reference/transformer-1024");
    let config = TransformerConfig::read(&dir).unwrap();
    assert!(config.micro_conditions());
    assert_eq!(config.interpolation_scale(), Some(2));
    let error = transformer_error(&dir, "transformer-1024.safetensors", Some(16));
    println!("transformer with micro-conditions: max relative error {error:.2e}");
    assert!(error < 1e-4, "transformer output differs: relative error {error}");
    let without = transformer_error(&dir, "transformer-1024.safetensors", Some(32));
    assert!(without > 1e-3, "the resolution condition changes the output ({without})");
}

#[test]
fn a_non_square_bucket_gets_diffusers_positions_and_micro_conditions() {
    // 6x12 latents (12x24 px): positions span the model's square grid along each axis,
    // resolution [12, 24] and aspect ratio 0.5.
    let dir = fixtures().join("reference/transformer-1024");
    let error = transformer_error(&dir, "transformer-1024-wide.safetensors", Some(16));
    println!("transformer on a 6x12 bucket: max relative error {error:.2e}");
    assert!(error < 1e-4, "transformer output differs: relative error {error}");
}

fn pretrained_config(dir: &Path) -> DitConfig {
    serde_json::from_value(serde_json::json!({ "pretrained": dir })).unwrap()
}

#[test]
fn a_pipeline_folder_builds_a_trainable_model_with_its_own_parts() {
    let model = DitModel::new(pretrained_config(&fixtures().join("tiny-pixart")), 16, &Device::Cpu, 0, DType::F32);
    let model = model.unwrap();
    assert_eq!((model.shape().image_size, model.shape().in_channels, model.shape().caption_channels), (8, 4, 32));
    let error = DitModel::new(pretrained_config(&fixtures().join("tiny-pixart")), 32, &Device::Cpu, 0, DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("set run.image_size = 16"), "{error}");
}

#[test]
fn a_missing_or_misshaped_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("tiny-pixart"), dir.path());
    let weights_path = dir.path().join("transformer/diffusion_pytorch_model.safetensors");
    let mut weights = evolve_dit::candle_core::safetensors::load(&weights_path, &Device::Cpu).unwrap();
    weights.remove("transformer_blocks.1.attn2.to_k.weight");
    evolve_dit::candle_core::safetensors::save(&weights, &weights_path).unwrap();
    let error = DitModel::new(pretrained_config(dir.path()), 16, &Device::Cpu, 0, DType::F32).err().unwrap();
    assert!(error.to_string().contains("lack transformer_blocks.1.attn2.to_k.weight [16, 16]"), "{error}");

    weights.insert(
        "transformer_blocks.1.attn2.to_k.weight".into(),
        Tensor::zeros((16, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    evolve_dit::candle_core::safetensors::save(&weights, &weights_path).unwrap();
    let error = DitModel::new(pretrained_config(dir.path()), 16, &Device::Cpu, 0, DType::F32).err().unwrap();
    assert!(error.to_string().contains("to_k.weight is [16, 8], this model needs [16, 16]"), "{error}");

    std::fs::remove_dir_all(dir.path().join("vae")).unwrap();
    let error = DitModel::new(pretrained_config(dir.path()), 16, &Device::Cpu, 0, DType::F32).err().unwrap();
    assert!(error.to_string().contains("vae/config.json is missing"), "{error}");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_ddim_sample_from_given_latents_matches_the_diffusers_pipeline() {
    use evolve_sdk::{BaseModel, InitialNoise, SampleRequest};
    let reference =
        evolve_dit::candle_core::safetensors::load(fixtures().join("reference/ddim.safetensors"), &Device::Cpu)
            .unwrap();
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference/ddim.json")).unwrap()).unwrap();
    // Image size 0: the pipeline's own (16 px).
    let mut model =
        DitModel::new(pretrained_config(&fixtures().join("tiny-pixart")), 0, &Device::Cpu, 0, DType::F32).unwrap();
    let latents = &reference["latents"];
    let request = SampleRequest {
        prompts: vec![settings["prompt"].as_str().unwrap().to_string()],
        steps: Some(settings["steps"].as_u64().unwrap() as u32),
        guidance: Some(settings["guidance"].as_f64().unwrap() as f32),
        sampler: Some("ddim".into()),
        initial_noise: Some(InitialNoise {
            shape: latents.dims().to_vec(),
            values: latents.flatten_all().unwrap().to_vec1().unwrap(),
        }),
        ..SampleRequest::default()
    };
    let image = model.generate(&request).unwrap().remove(0);
    let want: Vec<f32> = reference["image"].flatten_all().unwrap().to_vec1().unwrap();
    let worst =
        image.pixels().iter().zip(&want).map(|(&got, &want)| (got as f32 - want * 255.0).abs()).fold(0f32, f32::max);
    println!("DDIM sample vs PixArtAlphaPipeline: max difference {worst:.3}/255 per channel");
    assert!(worst <= 2.0, "the DDIM sample differs by {worst}/255");
}
