//! Named trainable parameters, created through candle-nn's [`VarBuilder`] and initialised
//! deterministically from a seed.
//!
//! Layers are built the candle-transformers way, `new(.., vb: VarBuilder)` with `vb.pp(..)`
//! paths that are diffusers' key names. candle's own `VarMap` draws initial values from an
//! unseeded generator, but a run must replay exactly, so [`ParamBuilder`] is the builder's
//! backend here: it draws each new parameter from [`SplitMix64`] in creation order and keeps it
//! as a trainable [`Var`]. Asking twice for one name returns the same variable (shape-checked),
//! never a second, silently untrained copy.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use evolve_sdk::SplitMix64;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

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

/// Xavier/Glorot uniform initialisation of a `(fan_out, fan_in)` matrix.
pub fn xavier_uniform(fan_in: usize, fan_out: usize) -> Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// Normal initialisation with mean 0 and standard deviation `stdev`.
pub fn normal(stdev: f64) -> Init {
    Init::Randn { mean: 0.0, stdev }
}

struct Drawn {
    vars: BTreeMap<String, Var>,
    rng: SplitMix64,
    /// Pretrained values by name; every parameter must then come from here.
    pretrained: Option<HashMap<String, Tensor>>,
}

/// The [`VarBuilder`] backend that creates seeded trainable variables; [`ParamBuilder::finish`]
/// hands them over as a [`ParamStore`] once the model is built.
#[derive(Clone)]
pub struct ParamBuilder {
    drawn: Arc<Mutex<Drawn>>,
    dtype: DType,
    device: Device,
}

impl ParamBuilder {
    /// A builder whose initialisers draw from `seed`, creating `dtype` tensors on `device`.
    pub fn new(seed: u64, dtype: DType, device: &Device) -> Self {
        let drawn = Drawn { vars: BTreeMap::new(), rng: SplitMix64::new(seed), pretrained: None };
        ParamBuilder { drawn: Arc::new(Mutex::new(drawn)), dtype, device: device.clone() }
    }

    /// A builder whose every parameter comes from `weights` (a pretrained checkpoint's tensors
    /// by name), shape-checked; asking for a name the weights lack is an error naming it.
    pub fn pretrained(weights: HashMap<String, Tensor>, dtype: DType, device: &Device) -> Self {
        let drawn = Drawn { vars: BTreeMap::new(), rng: SplitMix64::new(0), pretrained: Some(weights) };
        ParamBuilder { drawn: Arc::new(Mutex::new(drawn)), dtype, device: device.clone() }
    }

    /// Names of pretrained tensors no parameter took (sorted): a checkpoint of another
    /// architecture, or parts this model does not have.
    pub fn unused_pretrained(&self) -> Vec<String> {
        let drawn = self.drawn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut unused: Vec<String> = match &drawn.pretrained {
            Some(weights) => weights.keys().filter(|k| !drawn.vars.contains_key(*k)).cloned().collect(),
            None => vec![],
        };
        unused.sort();
        unused
    }

    /// A [`VarBuilder`] at the root of the parameter names.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), self.dtype, self.device.clone())
    }

    /// The parameters created so far.
    pub fn finish(&self) -> ParamStore {
        let vars = self.drawn.lock().unwrap_or_else(PoisonError::into_inner).vars.clone();
        ParamStore { vars, dtype: self.dtype, device: self.device.clone() }
    }

    fn draw(rng: &mut SplitMix64, n: usize, init: Init) -> Result<Vec<f64>> {
        Ok(match init {
            Init::Const(value) => vec![value; n],
            Init::Randn { mean, stdev } => normals(rng, n).into_iter().map(|v| mean + v * stdev).collect(),
            Init::Uniform { lo, up } => (0..n).map(|_| lo + (up - lo) * rng.next_f64()).collect(),
            Init::Kaiming { .. } => {
                return Err(candle_core::Error::Msg(
                    "Kaiming initialisation is not seeded here; use xavier_uniform".into(),
                ));
            }
        })
    }
}

impl SimpleBackend for ParamBuilder {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let mut drawn = self.drawn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(var) = drawn.vars.get(name) {
            if var.shape() != &shape {
                return Err(candle_core::Error::Msg(format!(
                    "parameter {name} was created as {:?} and is asked for as {:?}",
                    var.shape(),
                    shape
                )));
            }
            return Ok(var.as_tensor().clone());
        }
        let value = match &drawn.pretrained {
            Some(weights) => {
                let Some(value) = weights.get(name) else {
                    return Err(candle_core::Error::Msg(format!(
                        "the pretrained weights lack {name} {:?}",
                        shape.dims()
                    )));
                };
                if value.shape() != &shape {
                    return Err(candle_core::Error::Msg(format!(
                        "pretrained {name} is {:?}, this model needs {:?}",
                        value.dims(),
                        shape.dims()
                    )));
                }
                value.to_device(device)?.to_dtype(dtype)?
            }
            None => Tensor::from_vec(Self::draw(&mut drawn.rng, shape.elem_count(), init)?, shape, device)?
                .to_dtype(dtype)?,
        };
        let var = Var::from_tensor(&value)?;
        let tensor = var.as_tensor().clone();
        drawn.vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _device: &Device) -> Result<Tensor> {
        let drawn = self.drawn.lock().unwrap_or_else(PoisonError::into_inner);
        match drawn.vars.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => Err(candle_core::Error::CannotFindTensor { path: name.to_string() }),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.drawn.lock().unwrap_or_else(PoisonError::into_inner).vars.contains_key(name)
    }
}

/// The model's parameters by name (diffusers layout, e.g. `transformer_blocks.0.attn1.to_q.weight`).
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
    dtype: DType,
    device: Device,
}

impl ParamStore {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_is_one_variable_and_a_seed_fixes_every_value() {
        let draw = |seed| {
            let builder = ParamBuilder::new(seed, DType::F32, &Device::Cpu);
            let vb = builder.var_builder();
            let a = vb.pp("layer").get_with_hints((2, 3), "weight", xavier_uniform(3, 2)).unwrap();
            let again = vb.pp("layer").get_with_hints((2, 3), "weight", normal(1.0)).unwrap();
            assert_eq!(a.to_vec2::<f32>().unwrap(), again.to_vec2::<f32>().unwrap());
            assert!(vb.pp("layer").get_with_hints((3, 2), "weight", normal(1.0)).is_err(), "shape mismatch accepted");
            vb.get_with_hints(4, "bias", Init::Const(0.0)).unwrap();
            let store = builder.finish();
            assert_eq!(store.vars().keys().collect::<Vec<_>>(), ["bias", "layer.weight"]);
            store.tensor("layer.weight").unwrap().to_vec2::<f32>().unwrap()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn pretrained_weights_are_taken_by_name_and_every_gap_is_named() {
        let weight = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
        let weights: HashMap<String, Tensor> =
            [("layer.weight".to_string(), weight.clone()), ("extra".to_string(), weight)].into();
        let misshaped = ParamBuilder::pretrained(weights.clone(), DType::F32, &Device::Cpu)
            .var_builder()
            .get_with_hints((3, 2), "layer.weight", normal(1.0))
            .unwrap_err()
            .to_string();
        assert!(misshaped.contains("is [2, 3], this model needs [3, 2]"), "{misshaped}");
        let builder = ParamBuilder::pretrained(weights, DType::F32, &Device::Cpu);
        let vb = builder.var_builder();
        let got = vb.pp("layer").get_with_hints((2, 3), "weight", normal(1.0)).unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), vec![vec![1.0; 3]; 2]);
        let missing = vb.get_with_hints(4, "bias", Init::Const(0.0)).unwrap_err().to_string();
        assert!(missing.contains("lack bias"), "{missing}");
        assert_eq!(builder.unused_pretrained(), ["extra"]);
    }
}
