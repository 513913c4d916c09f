//! The fused stack against candle's reference path (itself checked against finite
//! differences in f64) and against f32 finite differences of its own.

use crate::dit::{BlockPath, Dit, DitShape};
use crate::params::{ParamBuilder, ParamStore, normals};
use crate::text::Caption;
use candle_core::{DType, Device, Tensor, Var};
use evolve_sdk::SplitMix64;

fn shape() -> DitShape {
    DitShape {
        image_size: 8,
        in_channels: 3,
        patch: 2,
        hidden: 32,
        depth: 2,
        heads: 4,
        caption_channels: 16,
        caption_len: 5,
        qk_norm: true,
        null_caption: true,
        learned_sigma: false,
        interpolation_scale: 1,
        resolution_condition: None,
    }
}

fn unmasked(features: &Tensor) -> Caption {
    Caption { features: features.clone(), mask: None }
}

fn random(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = normals(&mut SplitMix64::new(seed), n).into_iter().map(|v| (v * scale) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A DiT with every parameter random (zero-initialised output layers would hide gradients).
fn model() -> (ParamStore, Dit) {
    let builder = ParamBuilder::new(3, DType::F32, &Device::Cpu);
    let dit = Dit::new(builder.var_builder(), shape()).unwrap();
    let p = builder.finish();
    for (i, var) in p.vars().values().enumerate() {
        var.set(&random(var.dims(), 500 + i as u64, 0.3)).unwrap();
    }
    (p, dit)
}

struct Case {
    x: Tensor,
    t: Vec<f64>,
    y: Var,
    r: Tensor,
}

fn case() -> Case {
    let x = random(&[3, 3, 8, 8], 1, 1.0);
    let y = Var::from_tensor(&random(&[3, 5, 32], 2, 1.0)).unwrap();
    let r = random(&[3, 3, 8, 8], 3, 1.0);
    Case { x, t: vec![3.0, 400.0, 999.0], y, r }
}

fn objective(dit: &Dit, c: &Case, path: BlockPath) -> (Tensor, crate::recompute::BlockGrads) {
    let (out, grads) = dit.forward_with(&c.x, &c.t, &unmasked(c.y.as_tensor()), path).unwrap();
    ((out * &c.r).unwrap().sum_all().unwrap(), grads)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tolerance: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().chain(b).fold(0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tolerance * (1.0 + scale), "{what}[{i}]: stack {x} vs candle {y} (scale {scale})");
    }
}

#[test]
fn the_stack_computes_what_candle_computes() {
    let (_, dit) = model();
    let c = case();
    let reference = dit.forward_with(&c.x, &c.t, &unmasked(c.y.as_tensor()), BlockPath::Candle).unwrap().0;
    for train in [false, true] {
        let out = dit.forward_with(&c.x, &c.t, &unmasked(c.y.as_tensor()), BlockPath::Stack { train }).unwrap().0;
        assert_close("output", &values(&out), &values(&reference), 1e-5);
    }
}

#[test]
fn the_stack_gradients_equal_candles_for_every_parameter() {
    let (p, dit) = model();
    let c = case();
    let reference = objective(&dit, &c, BlockPath::Candle).0.backward().unwrap();
    let (loss, stack_grads) = objective(&dit, &c, BlockPath::Stack { train: true });
    let mut grads = loss.backward().unwrap();
    stack_grads.add_to(&mut grads, None).unwrap();
    for (name, var) in p.vars().iter().filter(|(n, _)| !n.starts_with("caption_projection")) {
        let want = reference.get(var).unwrap_or_else(|| panic!("candle: no gradient for {name}"));
        let got = grads.get(var).unwrap_or_else(|| panic!("stack: no gradient for {name}"));
        assert_close(name, &values(got), &values(want), 1e-4);
    }
    assert_close("y", &values(grads.get(&c.y).unwrap()), &values(reference.get(&c.y).unwrap()), 1e-4);
}

#[test]
fn the_stack_gradients_match_finite_differences() {
    let (p, dit) = model();
    let c = case();
    let (loss, stack_grads) = objective(&dit, &c, BlockPath::Stack { train: true });
    let mut grads = loss.backward().unwrap();
    stack_grads.add_to(&mut grads, None).unwrap();
    let mut rng = SplitMix64::new(17);
    for name in [
        "transformer_blocks.0.attn1.to_q.weight",
        "transformer_blocks.1.attn2.norm_k.weight",
        "transformer_blocks.0.scale_shift_table",
        "transformer_blocks.1.ff.net.0.proj.bias",
    ] {
        let var = &p.vars()[name];
        let g = values(grads.get(var).unwrap());
        let base = values(var.as_tensor());
        for _ in 0..3 {
            let i = rng.below(base.len() as u64) as usize;
            let eval = |delta: f32| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
                objective(&dit, &c, BlockPath::Stack { train: false }).0.to_scalar::<f32>().unwrap() as f64
            };
            let step = 1e-2;
            let numeric = ((eval(step) - eval(-step)) / (2.0 * step as f64)) as f32;
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
            let err = (g[i] - numeric).abs() / (1.0 + g[i].abs().max(numeric.abs()));
            assert!(err < 2e-2, "{name}[{i}]: analytic {} vs numeric {numeric}", g[i]);
        }
    }
}
