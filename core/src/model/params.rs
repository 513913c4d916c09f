//! Named trainable parameters, initialised deterministically from a seed.
//!
//! candle's `VarMap` initialises from an unseeded generator; a run must replay exactly, so
//! parameters are drawn here from [`SplitMix64`] and kept in name order.

use candle_core::{DType, Device, Result, Tensor, Var};
use evolve_sdk::SplitMix64;
use std::collections::BTreeMap;

/// How to initialise a parameter.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Normal with this standard deviation.
    Normal(f64),
    /// Xavier/Glorot uniform for a `(fan_out, fan_in)` matrix.
    XavierUniform {
        /// Inputs per output.
        fan_in: usize,
        /// Outputs.
        fan_out: usize,
    },
}

/// Standard normal draws from a seeded generator (Box-Muller).
pub fn normals(rng: &mut SplitMix64, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u, v) = (rng.next_f64().max(f64::MIN_POSITIVE), rng.next_f64());
        let r = (-2.0 * u.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * v;
        out.push(r * theta.cos());
        out.push(r * theta.sin());
    }
    out.truncate(n);
    out
}

/// The model's parameters by name (diffusers layout, e.g. `transformer_blocks.0.attn1.to_q.weight`).
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
    rng: SplitMix64,
    dtype: DType,
    device: Device,
}

impl ParamStore {
    /// An empty store whose initialisers draw from `seed`.
    pub fn new(seed: u64, dtype: DType, device: &Device) -> Self {
        ParamStore { vars: BTreeMap::new(), rng: SplitMix64::new(seed), dtype, device: device.clone() }
    }

    /// Creates parameter `name` of `shape` (in creation order, so a seed fixes every value).
    pub fn get(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Normal(std) => normals(&mut self.rng, n).into_iter().map(|v| v * std).collect(),
            Init::XavierUniform { fan_in, fan_out } => {
                let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                (0..n).map(|_| (self.rng.next_f64() * 2.0 - 1.0) * bound).collect()
            }
        };
        let tensor = Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?;
        let var = Var::from_tensor(&tensor)?;
        let value = var.as_tensor().clone();
        self.vars.insert(name.to_string(), var);
        Ok(value)
    }

    /// The parameter `name`, if it exists.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.vars.get(name).map(|v| v.as_tensor().clone())
    }

    /// Every parameter, in name order.
    pub fn vars(&self) -> &BTreeMap<String, Var> {
        &self.vars
    }

    /// Total number of scalars.
    pub fn count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }
}
