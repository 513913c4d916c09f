//! Finite-difference gradient checks (tests only).
//!
//! Every module's backward pass is compared with central differences in f64 on a random
//! projection of its output: `f(θ) = Σ r ⊙ module(θ)`.

use candle_core::{Tensor, Var};
use evolve_sdk::SplitMix64;

const STEP: f64 = 1e-5;
const TOLERANCE: f64 = 1e-5;

fn projection(like: &Tensor, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let v: Vec<f64> = (0..like.elem_count()).map(|_| rng.next_f64() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, like.shape(), like.device()).expect("projection")
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().expect("f64 scalar")
}

fn assert_close(what: &str, analytic: f64, numeric: f64) {
    let err = (analytic - numeric).abs() / (1.0 + analytic.abs().max(numeric.abs()));
    assert!(err < TOLERANCE, "{what}: analytic {analytic} vs numeric {numeric} (rel err {err})");
}

/// Checks d f / d x for a function of one input, at up to 24 coordinates.
pub fn check_input_gradient(x: &Tensor, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) {
    let var = Var::from_tensor(x).expect("var");
    let r = projection(&f(x).expect("forward"), 99);
    let objective = |t: &Tensor| scalar(&(f(t).expect("forward") * &r).expect("mul").sum_all().expect("sum"));
    let loss = (f(var.as_tensor()).expect("forward") * &r).expect("mul").sum_all().expect("sum");
    let grads = loss.backward().expect("backward");
    let g: Vec<f64> = grads.get(&var).expect("gradient reaches the input").flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let n = base.len();
    let mut rng = SplitMix64::new(7);
    for _ in 0..24.min(n) {
        let i = rng.below(n as u64) as usize;
        let mut plus = base.clone();
        plus[i] += STEP;
        let mut minus = base.clone();
        minus[i] -= STEP;
        let (p, m) = (
            Tensor::from_vec(plus, x.shape(), x.device()).unwrap(),
            Tensor::from_vec(minus, x.shape(), x.device()).unwrap(),
        );
        assert_close(&format!("input[{i}]"), g[i], (objective(&p) - objective(&m)) / (2.0 * STEP));
    }
}

/// Checks d loss / d θ for every variable in `vars` (a few coordinates each), where `loss`
/// recomputes the scalar objective from the variables' current values.
pub fn check_param_gradients(vars: &[(String, Var)], loss: impl Fn() -> candle_core::Result<Tensor>) {
    let grads = loss().expect("forward").backward().expect("backward");
    let mut rng = SplitMix64::new(11);
    for (name, var) in vars {
        let g = grads.get(var).unwrap_or_else(|| panic!("no gradient reaches {name}"));
        let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for _ in 0..3.min(base.len()) {
            let i = rng.below(base.len() as u64) as usize;
            let eval = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), var.device()).unwrap()).unwrap();
                scalar(&loss().expect("forward"))
            };
            let numeric = (eval(STEP) - eval(-STEP)) / (2.0 * STEP);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), var.device()).unwrap()).unwrap();
            assert_close(&format!("{name}[{i}]"), g[i], numeric);
        }
    }
}

/// A variable of `shape` with values uniform in [-1, 1), drawn from `seed`.
pub fn random_var(shape: &[usize], seed: u64) -> Var {
    let n: usize = shape.iter().product();
    let mut rng = SplitMix64::new(seed);
    let v: Vec<f64> = (0..n).map(|_| rng.next_f64() * 2.0 - 1.0).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &candle_core::Device::Cpu).expect("tensor")).expect("var")
}
