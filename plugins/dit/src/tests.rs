//! Gradient checks of every module and whole-model training properties.

use super::diffusion::Prediction;
use super::dit::{BlockPath, Dit, DitShape};
use super::gradcheck::check_param_gradients;
use super::layers::{AffineNorm, Attention, FeedForward, Linear};
use super::params::{ParamBuilder, ParamStore, normals};
use super::text::{Caption, SmallTextEncoder, TextEncoder};
use super::{DitConfig, DitModel};
use candle_core::{DType, Device, Tensor, Var};
use evolve_sdk::{BaseModel, SplitMix64, TrainBatch};

fn store() -> ParamBuilder {
    ParamBuilder::new(5, DType::F64, &Device::Cpu)
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(normals(&mut SplitMix64::new(seed), n), shape, &Device::Cpu).unwrap()
}

/// Gives every parameter random values, so that zero-initialised layers do not hide
/// gradients (a zero output projection makes every upstream gradient vanish).
fn randomise(p: &ParamStore) -> Vec<(String, Var)> {
    for (i, var) in p.vars().values().enumerate() {
        let t = (random(var.dims(), 1000 + i as u64) * 0.3).unwrap();
        var.set(&t).unwrap();
    }
    p.vars().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn projected(out: &Tensor, seed: u64) -> candle_core::Result<Tensor> {
    (out * random(out.dims(), seed))?.sum_all()
}

#[test]
fn linear_and_affine_norm_gradients() {
    let p = store();
    let lin = Linear::new(p.var_builder().pp("lin"), 5, 3).unwrap();
    let norm = AffineNorm::new(p.var_builder().pp("norm"), 3, 1e-5).unwrap();
    let vars = randomise(&p.finish());
    let x = random(&[2, 4, 5], 1);
    check_param_gradients(&vars, || projected(&norm.forward(&lin.forward(&x)?)?, 2));
}

#[test]
fn self_and_cross_attention_gradients() {
    for qk_norm in [false, true] {
        let p = store();
        let attn = Attention::new(p.var_builder().pp("attn"), 8, 6, 2, qk_norm, false).unwrap();
        let vars = randomise(&p.finish());
        let (x, ctx) = (random(&[2, 3, 8], 3), random(&[2, 4, 6], 4));
        check_param_gradients(&vars, || projected(&attn.forward(&x, &ctx, None)?, 5));
    }
}

#[test]
fn feed_forward_gradients() {
    let p = store();
    let ff = FeedForward::new(p.var_builder().pp("ff"), 6, 4).unwrap();
    let vars = randomise(&p.finish());
    let x = random(&[2, 3, 6], 6);
    check_param_gradients(&vars, || projected(&ff.forward(&x)?, 7));
}

fn tiny_shape() -> DitShape {
    DitShape {
        image_size: 8,
        in_channels: 3,
        patch: 4,
        hidden: 16,
        depth: 2,
        heads: 2,
        caption_channels: 8,
        caption_len: 4,
        qk_norm: true,
        null_caption: true,
        learned_sigma: false,
        interpolation_scale: 1,
        resolution_condition: None,
    }
}

#[test]
fn text_encoder_gradients() {
    let p = store();
    let enc = SmallTextEncoder::new(p.var_builder().pp("text_encoder"), 64, 4, 8, 2).unwrap();
    let vars: Vec<(String, Var)> =
        randomise(&p.finish()).into_iter().filter(|(n, _)| n != "text_encoder.token_embedding.weight").collect();
    let prompts = vec!["a red circle".to_string(), "two blue squares".to_string()];
    check_param_gradients(&vars, || projected(&enc.encode(&prompts)?.features, 8));
}

#[test]
fn whole_dit_gradients_including_the_null_caption() {
    let p = store();
    let dit = Dit::new(p.var_builder(), tiny_shape()).unwrap();
    let vars = randomise(&p.finish());
    let x = random(&[2, 3, 8, 8], 9);
    let caption = random(&[2, 4, 8], 10);
    check_param_gradients(&vars, || {
        let y = dit.project_caption(&Caption { features: caption.clone(), mask: None }, &[true, false])?;
        projected(&dit.forward(&x, &[10.0, 700.0], &y)?, 11)
    });
}

pub(crate) fn shapes_batch(n: usize, seed: u64) -> TrainBatch {
    let mut rng = SplitMix64::new(seed);
    let mut prompts = vec![];
    let mut images = vec![];
    for i in 0..n {
        let prompt = evolve_shapes::eval::training_prompt(&mut rng);
        images.push(evolve_shapes::render::render(&prompt, 32, 32, seed * 1000 + i as u64));
        prompts.push(prompt.to_string());
    }
    TrainBatch { prompts, images }
}

/// A two-block tiny model with the config's defaults.
fn tiny_model(seed: u64) -> DitModel {
    tiny_model_from(seed, serde_json::json!({"preset": "tiny", "depth": 2}))
}

fn tiny_model_predicting(seed: u64, prediction: Prediction) -> DitModel {
    tiny_model_from(seed, serde_json::json!({"preset": "tiny", "depth": 2, "prediction": prediction}))
}

pub(crate) fn tiny_model_from(seed: u64, config: serde_json::Value) -> DitModel {
    let config: DitConfig = serde_json::from_value(config).unwrap();
    DitModel::new(config, 32, &Device::Cpu, seed, DType::F32).unwrap()
}

#[test]
fn every_parameter_gets_a_gradient() {
    for prediction in [Prediction::Sample, Prediction::Epsilon] {
        every_parameter_gets_a_gradient_predicting(prediction);
    }
}

fn every_parameter_gets_a_gradient_predicting(prediction: Prediction) {
    let mut model = tiny_model_predicting(1, prediction);
    // Zero-initialised output layers pass no gradient upstream until they have moved once.
    for step in 0..2 {
        model.train_step(&shapes_batch(8, step)).unwrap();
    }
    let (_, grads) = model.gradients(&shapes_batch(8, 9), None).unwrap();
    for (name, var) in model.params().vars() {
        if name == "text_encoder.token_embedding.weight" {
            continue; // Only the rows of words in the batch move; checked below.
        }
        let g = grads.get(var).unwrap_or_else(|| panic!("{prediction:?} {name}: no gradient"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0, "{prediction:?} {name}: zero gradient");
    }
    let emb = grads.get(&model.params().vars()["text_encoder.token_embedding.weight"]).unwrap();
    assert!(emb.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
}

#[test]
fn resume_continues_the_exact_loss_sequence() {
    let batches: Vec<TrainBatch> = (0..6).map(|i| shapes_batch(4, 100 + i)).collect();
    let mut straight = tiny_model(3);
    let expected: Vec<f32> = batches.iter().map(|b| straight.train_step(b).unwrap().loss).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut first = tiny_model(3);
    let mut got: Vec<f32> = batches[..3].iter().map(|b| first.train_step(b).unwrap().loss).collect();
    first.save(dir.path()).unwrap();
    drop(first);
    let mut resumed = tiny_model(42); // different init: everything must come from the checkpoint
    resumed.load(dir.path()).unwrap();
    got.extend(batches[3..].iter().map(|b| resumed.train_step(b).unwrap().loss));
    assert_eq!(got, expected);
}

#[test]
fn start_from_carries_the_model_and_its_optimiser_but_not_the_noise() {
    let dir = tempfile::tempdir().unwrap();
    let mut trained = tiny_model(3);
    for i in 0..3 {
        trained.train_step(&shapes_batch(4, 200 + i)).unwrap();
    }
    trained.save(dir.path()).unwrap();
    let started =
        |seed: u64| tiny_model_from(seed, serde_json::json!({"preset": "tiny", "depth": 2, "start_from": dir.path()}));
    let (mut a, mut b) = (started(7), started(8));
    assert_eq!(a.optim.step, 3);
    let equal =
        |x: &Tensor, y: &Tensor| (x - y).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0;
    for (name, var) in trained.params().vars() {
        for model in [&a, &b] {
            assert!(equal(model.params().vars()[name].as_tensor(), var.as_tensor()), "{name} differs");
            assert!(equal(&model.optim.ema[name], &trained.optim.ema[name]), "{name}'s EMA differs");
            assert!(equal(&model.optim.v[name], &trained.optim.v[name]), "{name}'s Adam moment differs");
        }
    }
    // Each run's own seed draws its noise: the same batch, two seeds, two losses.
    let batch = shapes_batch(4, 300);
    assert_ne!(a.train_step(&batch).unwrap().loss, b.train_step(&batch).unwrap().loss);
}

#[test]
fn start_from_refuses_a_checkpoint_of_other_sizes_and_pretrained_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(3).save(dir.path()).unwrap();
    let deeper: DitConfig =
        serde_json::from_value(serde_json::json!({"preset": "tiny", "depth": 3, "start_from": dir.path()})).unwrap();
    let err = DitModel::new(deeper, 32, &Device::Cpu, 0, DType::F32).err().expect("refused");
    assert!(err.to_string().contains("start_from") && err.to_string().contains("checkpoint is for"), "{err}");
    let both: DitConfig = serde_json::from_value(
        serde_json::json!({"preset": "tiny", "start_from": dir.path(), "pretrained": dir.path()}),
    )
    .unwrap();
    let err = DitModel::new(both, 32, &Device::Cpu, 0, DType::F32).err().expect("refused");
    assert!(err.to_string().contains("set one"), "{err}");
    let missing: DitConfig =
        serde_json::from_value(serde_json::json!({"preset": "tiny", "start_from": dir.path().join("nothing")}))
            .unwrap();
    let err = DitModel::new(missing, 32, &Device::Cpu, 0, DType::F32).err().expect("refused");
    assert!(err.to_string().contains("start_from") && err.to_string().contains("nothing"), "{err}");
}

#[test]
fn a_non_positive_min_snr_gamma_is_refused() {
    for gamma in [0.0, -1.0, f64::NAN] {
        let config: DitConfig = serde_json::from_value(serde_json::json!({"preset": "tiny"})).unwrap();
        let config = DitConfig { min_snr_gamma: gamma, ..config };
        let err = DitModel::new(config, 32, &Device::Cpu, 0, DType::F32).err().expect("refused");
        assert!(err.to_string().contains("min_snr_gamma"), "{err}");
    }
}

#[test]
fn a_checkpoint_loads_only_into_a_model_of_its_prediction() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model_predicting(3, Prediction::Epsilon).save(dir.path()).unwrap();
    let err = tiny_model_predicting(3, Prediction::Sample).load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("predicts epsilon"), "{err}");
    tiny_model_predicting(4, Prediction::Epsilon).load(dir.path()).unwrap();
}

#[test]
fn a_checkpoint_of_another_format_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model_predicting(3, Prediction::Sample).save(dir.path()).unwrap();
    let path = dir.path().join("trainer.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["format"] = 2.into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let err = tiny_model_predicting(3, Prediction::Sample).load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("checkpoint format 2; this evolve reads format 1"), "{err}");
}

#[test]
fn sampling_is_deterministic_for_a_seed() {
    let mut model = tiny_model(4);
    model.train_step(&shapes_batch(4, 1)).unwrap();
    let request = evolve_sdk::SampleRequest {
        prompts: vec!["a red circle".into(), "two blue squares".into()],
        seed: 7,
        steps: Some(4),
        guidance: None,
        ..evolve_sdk::SampleRequest::default()
    };
    let a = model.generate(&request).unwrap();
    let b = model.generate(&request).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].width(), a[0].height()), (32, 32));
    // The same prompt and seed give the same image whatever else is in the batch.
    let single =
        model.generate(&evolve_sdk::SampleRequest { prompts: vec!["a red circle".into()], ..request.clone() }).unwrap();
    assert_eq!(single[0], a[0]);
}

/// `batch` with its odd images replaced by non-square ones (wide and tall by turns).
fn with_non_square(mut batch: TrainBatch) -> TrainBatch {
    for (i, (prompt, image)) in batch.prompts.iter().zip(batch.images.iter_mut()).enumerate() {
        if i % 2 == 1 {
            let (w, h) = if i % 4 == 1 { (64, 24) } else { (20, 48) };
            let shape = evolve_shapes::grammar::Prompt::parse(prompt).unwrap();
            *image = evolve_shapes::render::render(&shape, w, h, i as u64);
        }
    }
    batch
}

#[test]
fn a_batch_of_several_buckets_trains_each_at_its_own_grid_on_both_paths() {
    let batch = with_non_square(shapes_batch(8, 5));
    let mut fused = tiny_model(6);
    let mut reference = tiny_model(6);
    for step in 0..2 {
        let batch = with_non_square(shapes_batch(8, step));
        fused.train_step(&batch).unwrap();
        reference.train_step(&batch).unwrap();
    }
    let (loss_fused, grads_fused) = fused.gradients(&batch, None).unwrap();
    let (loss_reference, grads_reference) = reference.gradients(&batch, Some(BlockPath::Candle)).unwrap();
    assert!((loss_fused - loss_reference).abs() <= 1e-4 * loss_reference.abs(), "{loss_fused} vs {loss_reference}");
    for (name, var) in fused.params().vars() {
        let (a, b) = match (grads_fused.get(var), grads_reference.get(&reference.params().vars()[name])) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => continue, // e.g. the null caption when no caption was dropped
            (a, b) => panic!("{name}: a gradient on one path only (fused {}, reference {})", a.is_some(), b.is_some()),
        };
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        assert!(diff <= 1e-3 * scale, "{name}: gradients differ by {diff} (scale {scale})");
    }
}

#[test]
fn without_buckets_a_non_square_image_is_centre_cropped() {
    let mut model = tiny_model_from(7, serde_json::json!({"preset": "tiny", "depth": 2, "aspect_buckets": false}));
    let stats = model.train_step(&with_non_square(shapes_batch(4, 3))).unwrap();
    assert!(stats.loss.is_finite());
}

#[test]
fn accumulated_micro_batches_give_the_mean_of_their_gradients() {
    let config = |accumulate: usize| serde_json::json!({"preset": "tiny", "depth": 2, "accumulate": accumulate});
    // Twins: one accumulates, the other's `gradients` are called by hand.
    let (mut accumulating, mut by_hand) = (tiny_model_from(8, config(3)), tiny_model_from(8, config(3)));
    // Moved once, so that no layer is still zero and every gradient is nonzero.
    accumulating.train_step(&shapes_batch(6, 1)).unwrap();
    by_hand.train_step(&shapes_batch(6, 1)).unwrap();
    let batch = shapes_batch(7, 2);
    let (loss, grads) = accumulating.accumulated_gradients(&batch).unwrap();
    // The same micro-batches (2, 2 and 3 images), one after the other, drawing the same noise.
    let parts: Vec<TrainBatch> = [0..2, 2..4, 4..7]
        .into_iter()
        .map(|r| TrainBatch { prompts: batch.prompts[r.clone()].to_vec(), images: batch.images[r].to_vec() })
        .collect();
    let each: Vec<(f32, candle_core::backprop::GradStore)> =
        parts.iter().map(|part| by_hand.gradients(part, None).unwrap()).collect();
    let shares = [2.0 / 7.0, 2.0 / 7.0, 3.0 / 7.0];
    let expected_loss: f64 = each.iter().zip(shares).map(|((l, _), s)| f64::from(*l) * s).sum();
    assert!((f64::from(loss) - expected_loss).abs() <= 1e-6 * expected_loss, "{loss} vs {expected_loss}");
    let mut compared = 0;
    for (name, var) in accumulating.params().vars() {
        let other = &by_hand.params().vars()[name];
        let mut expected: Option<Tensor> = None;
        for ((_, g), share) in each.iter().zip(shares) {
            let Some(g) = g.get(other) else { continue };
            let g = (g * share).unwrap();
            expected = Some(match expected {
                Some(sum) => (sum + g).unwrap(),
                None => g,
            });
        }
        let (Some(got), Some(expected)) = (grads.get(var), expected) else {
            assert!(grads.get(var).is_none(), "{name}: a gradient only when accumulated");
            continue;
        };
        let diff = (got - &expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = expected.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-12);
        assert!(diff <= 1e-5 * scale, "{name}: differs by {diff} (scale {scale})");
        compared += 1;
    }
    assert!(compared > 10, "{compared}");
    // And a step of it trains.
    let stats = accumulating.train_step(&batch).unwrap();
    assert!(stats.loss.is_finite() && stats.grad_norm > 0.0);
}

/// Mixed precision (bf16 activations over f32 master weights) trains like f32: twins on the
/// same batches and noise follow the same loss curve, a little noisier. The bf16 twin runs the
/// composed ops a GPU runs, so this is also the CPU check of the GPU code path.
#[test]
fn bf16_mixed_precision_follows_the_f32_loss_curve() {
    let config = |precision: &str| serde_json::json!({"preset": "tiny", "depth": 2, "precision": precision});
    let (mut f32_model, mut bf16_model) = (tiny_model_from(9, config("f32")), tiny_model_from(9, config("bf16")));
    let steps = std::env::var("EVOLVE_BF16_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let (mut f32_losses, mut bf16_losses) = (vec![], vec![]);
    for step in 0..steps {
        let batch = shapes_batch(8, 500 + step as u64);
        f32_losses.push(f64::from(f32_model.train_step(&batch).unwrap().loss));
        bf16_losses.push(f64::from(bf16_model.train_step(&batch).unwrap().loss));
    }
    let window = steps / 4;
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
    let (f32_start, f32_end) = (mean(&f32_losses[..window]), mean(&f32_losses[steps - window..]));
    let (bf16_start, bf16_end) = (mean(&bf16_losses[..window]), mean(&bf16_losses[steps - window..]));
    eprintln!("f32 {f32_start:.4} -> {f32_end:.4}, bf16 {bf16_start:.4} -> {bf16_end:.4} over {steps} steps");
    assert!(f32_end < 0.8 * f32_start && bf16_end < 0.8 * bf16_start, "both learn");
    assert!((bf16_end - f32_end).abs() <= 0.05 * f32_end, "bf16 ends at {bf16_end}, f32 at {f32_end}");
    // The master weights stay f32.
    assert!(bf16_model.params().vars().values().all(|v| v.dtype() == DType::F32));
}

/// Gradient checkpointing changes where activations come from, not the gradients: every
/// parameter's gradient through recomputed blocks equals candle's autograd through kept ones,
/// for a batch of several buckets (each bucket's blocks recomputed on their own). So do the
/// kept blocks differentiated one at a time (data-parallel training's path).
#[test]
fn checkpointed_blocks_give_the_gradients_of_kept_ones() {
    for path in [BlockPath::Recompute, BlockPath::Segmented] {
        blocks_one_at_a_time_give_candles_gradients(path);
    }
}

fn blocks_one_at_a_time_give_candles_gradients(path: BlockPath) {
    let batch = with_non_square(shapes_batch(6, 11));
    let mut kept = tiny_model(12);
    let mut recomputed = tiny_model(12);
    for step in 0..2 {
        let batch = shapes_batch(6, 20 + step);
        kept.train_step(&batch).unwrap();
        recomputed.train_step(&batch).unwrap();
    }
    let (loss_kept, grads_kept) = kept.gradients(&batch, Some(BlockPath::Candle)).unwrap();
    let mut reported = vec![];
    let mut done = |i: usize, _: &candle_core::backprop::GradStore| {
        reported.push(i);
        Ok(())
    };
    let (loss_recomputed, grads_recomputed) =
        recomputed.gradients_reporting(&batch, Some(path), Some(&mut done)).unwrap();
    // Every block reports once, last first (in the last bucket's backward).
    assert_eq!(reported, vec![1, 0], "{path:?}");
    assert_eq!(loss_kept, loss_recomputed);
    let mut compared = 0;
    for (name, var) in kept.params().vars() {
        let other = &recomputed.params().vars()[name];
        let (a, b) = match (grads_kept.get(var), grads_recomputed.get(other)) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => continue,
            (a, b) => panic!("{name}: a gradient on one path only (kept {}, recomputed {})", a.is_some(), b.is_some()),
        };
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // (A key projection's bias has no gradient but rounding: softmax ignores a shift.)
        let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        assert!(diff <= 1e-5 * scale, "{name}: gradients differ by {diff} (scale {scale})");
        compared += 1;
    }
    // Blocks, embedders, caption projection and text encoder alike.
    assert!(compared == kept.params().vars().len() || compared > 30, "{compared}");
    assert!(kept.params().vars().keys().any(|n| n.contains("transformer_blocks.1")));
}
