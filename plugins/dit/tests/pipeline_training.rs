//! The `dit` base model with PixArt-alpha's parts (the tiny fixture T5 encoder and VAE): loss
//! falls, guidance uses the empty prompt, latents decode to images, checkpoints round-trip.

use evolve_dit::candle_core::{DType, Device};
use evolve_dit::{DitConfig, DitModel};
use evolve_sdk::{BaseModel, SampleRequest, TrainBatch};
use std::path::Path;

fn fixture(part: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pixart").join(part)
}

fn model(seed: u64, extra: serde_json::Value) -> DitModel {
    let mut config = serde_json::json!({
        "preset": "tiny",
        "hidden": 64,
        "depth": 2,
        "text_encoder": { "t5": fixture("text_encoder") },
    });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let config: DitConfig = serde_json::from_value(config).unwrap();
    DitModel::new(config, 16, &Device::Cpu, seed, DType::F32).unwrap()
}

fn t5_model(seed: u64) -> DitModel {
    model(seed, serde_json::json!({}))
}

fn batch(step: u64) -> TrainBatch {
    let prompts = ["a red circle", "a blue square", "a large green triangle", "two yellow diamonds"];
    let prompts: Vec<String> = prompts.iter().map(|p| p.to_string()).collect();
    let images = prompts.iter().enumerate().map(|(i, p)| {
        let prompt = evolve_shapes::grammar::Prompt::parse(p).unwrap();
        evolve_shapes::render::render(&prompt, 16, 16, step * 10 + i as u64)
    });
    TrainBatch { images: images.collect(), prompts }
}

#[test]
fn trains_samples_and_resumes_on_t5_captions() {
    let mut model = t5_model(1);
    let shape = *model.shape();
    assert_eq!((shape.caption_channels, shape.caption_len, shape.null_caption), (32, 120, false));
    assert!(
        !model.params().vars().keys().any(|k| k.starts_with("text_encoder.") || k.ends_with("y_embedding")),
        "T5 is frozen and there is no learned null caption"
    );
    let losses: Vec<f32> = (0..60).map(|step| model.train_step(&batch(step % 4)).unwrap().loss).collect();
    let (first, last) = (losses[..10].iter().sum::<f32>() / 10.0, losses[50..].iter().sum::<f32>() / 10.0);
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");

    let request = SampleRequest {
        prompts: vec!["a red circle".into()],
        seed: 3,
        steps: Some(4),
        guidance: Some(3.0),
        ..SampleRequest::default()
    };
    let images = model.generate(&request).unwrap();
    assert_eq!((images[0].width(), images[0].height()), (16, 16));

    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let mut resumed = t5_model(99);
    resumed.load(dir.path()).unwrap();
    assert_eq!(resumed.generate(&request).unwrap(), images);
}

#[test]
fn trains_in_a_vae_latent_space() {
    let latent_model = |seed| model(seed, serde_json::json!({ "vae": fixture("vae"), "patch": 2 }));
    let mut model = latent_model(2);
    let shape = *model.shape();
    assert_eq!((shape.image_size, shape.in_channels), (8, 4), "16 px images are 8x8x4 latents");
    let losses: Vec<f32> = (0..60).map(|step| model.train_step(&batch(step % 4)).unwrap().loss).collect();
    let (first, last) = (losses[..10].iter().sum::<f32>() / 10.0, losses[50..].iter().sum::<f32>() / 10.0);
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
    let request = SampleRequest {
        prompts: vec!["a blue square".into()],
        seed: 5,
        steps: Some(3),
        guidance: None,
        ..SampleRequest::default()
    };
    let images = model.generate(&request).unwrap();
    assert_eq!((images[0].width(), images[0].height()), (16, 16), "samples are decoded to pixels");
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let mut resumed = latent_model(7);
    resumed.load(dir.path()).unwrap();
    assert_eq!(resumed.generate(&request).unwrap(), images);
}

#[test]
fn an_image_size_the_vae_cannot_halve_is_refused() {
    let config: DitConfig =
        serde_json::from_value(serde_json::json!({ "preset": "tiny", "vae": fixture("vae") })).unwrap();
    let error = DitModel::new(config, 15, &Device::Cpu, 0, DType::F32).err().unwrap().to_string();
    assert!(error.contains("downscale 2"), "{error}");
}

#[test]
fn non_square_images_train_in_latent_aspect_ratio_buckets() {
    // 16 px square, 24x12 and 12x24 images: the buckets of 16² px in whole 4 px tokens put the
    // oblong ones at 20x12 and 12x20 px (10x6 and 6x10 latents), never stretched to a square.
    let mut model = model(3, serde_json::json!({ "vae": fixture("vae"), "patch": 2 }));
    let oblong = |step: u64| {
        let mut batch = batch(step);
        for (i, (w, h)) in [(1, (24, 12)), (3, (12, 24))] {
            let prompt = evolve_shapes::grammar::Prompt::parse(&batch.prompts[i]).unwrap();
            batch.images[i] = evolve_shapes::render::render(&prompt, w, h, step * 10 + i as u64);
        }
        batch
    };
    let losses: Vec<f32> = (0..60).map(|step| model.train_step(&oblong(step % 4)).unwrap().loss).collect();
    let (first, last) = (losses[..10].iter().sum::<f32>() / 10.0, losses[50..].iter().sum::<f32>() / 10.0);
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
}
