//! Optimisation pieces candle-nn does not have: AdamW with inspectable state (for exact
//! resumes), linear warm-up, global gradient-norm clipping and an EMA of the weights.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Optimiser settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    #[serde(default = "lr")]
    pub learning_rate: f64,
    /// Steps of linear warm-up from 0 to the peak.
    #[serde(default = "warmup")]
    pub warmup_steps: u64,
    /// AdamW weight decay (decoupled).
    #[serde(default = "weight_decay")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 disables).
    #[serde(default = "clip")]
    pub grad_clip: f64,
    /// Decay of the exponential moving average of the weights used for sampling.
    #[serde(default = "ema")]
    pub ema_decay: f64,
}

fn lr() -> f64 {
    1e-3
}
fn warmup() -> u64 {
    100
}
fn weight_decay() -> f64 {
    0.0
}
fn clip() -> f64 {
    1.0
}
fn ema() -> f64 {
    0.995
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            learning_rate: lr(),
            warmup_steps: warmup(),
            weight_decay: weight_decay(),
            grad_clip: clip(),
            ema_decay: ema(),
        }
    }
}

impl OptimConfig {
    /// The learning rate at (1-based) `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 {
            self.learning_rate
        } else {
            self.learning_rate * (step as f64 / self.warmup_steps as f64).min(1.0)
        }
    }
}

/// AdamW (Loshchilov & Hutter, 2019) over named variables, with EMA weights.
pub struct AdamW {
    config: OptimConfig,
    /// Steps taken.
    pub step: u64,
    /// First moments by parameter name.
    pub m: BTreeMap<String, Tensor>,
    /// Second moments by parameter name.
    pub v: BTreeMap<String, Tensor>,
    /// EMA weights by parameter name.
    pub ema: BTreeMap<String, Tensor>,
}

/// What an optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Learning rate used.
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl AdamW {
    /// A fresh optimiser for `vars` (moments zero, EMA equal to the weights).
    pub fn new(config: OptimConfig, vars: &BTreeMap<String, Var>) -> Result<Self> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        let mut ema = BTreeMap::new();
        for (name, var) in vars {
            m.insert(name.clone(), var.zeros_like()?);
            v.insert(name.clone(), var.zeros_like()?);
            ema.insert(name.clone(), var.as_tensor().copy()?);
        }
        Ok(AdamW { config, step: 0, m, v, ema })
    }

    /// The settings.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// The global L2 norm of the gradients of `vars` (missing gradients count as zero).
    pub fn grad_norm(vars: &BTreeMap<String, Var>, grads: &GradStore) -> Result<f64> {
        let mut total = 0.0;
        for var in vars.values() {
            if let Some(g) = grads.get(var) {
                total += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            }
        }
        Ok(total.sqrt())
    }

    /// One update of every variable from `grads`, then the EMA.
    pub fn step(&mut self, vars: &BTreeMap<String, Var>, grads: &GradStore) -> Result<StepInfo> {
        self.step += 1;
        let c = self.config;
        let lr = c.lr_at(self.step);
        let grad_norm = Self::grad_norm(vars, grads)?;
        let clip = if c.grad_clip > 0.0 && grad_norm > c.grad_clip { c.grad_clip / grad_norm } else { 1.0 };
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let correction1 = 1.0 - b1.powi(self.step as i32);
        let correction2 = 1.0 - b2.powi(self.step as i32);
        for (name, var) in vars {
            let Some(g) = grads.get(var) else { continue };
            let g = (g * clip)?;
            let (Some(m), Some(v)) = (self.m.get_mut(name), self.v.get_mut(name)) else { continue };
            *m = ((&*m * b1)? + (&g * (1.0 - b1))?)?;
            *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&*m / correction1)? / ((&*v / correction2)?.sqrt()? + eps)?)?;
            let p = var.as_tensor();
            let decayed = if c.weight_decay > 0.0 { (p * (1.0 - lr * c.weight_decay))? } else { p.clone() };
            var.set(&(decayed - (update * lr)?)?)?;
        }
        for (name, var) in vars {
            if let Some(e) = self.ema.get_mut(name) {
                *e = ((&*e * c.ema_decay)? + (var.as_tensor() * (1.0 - c.ema_decay))?)?;
            }
        }
        Ok(StepInfo { learning_rate: lr, grad_norm })
    }
}
