//! What the parity tests share: the fixtures' folder and the error measure.

use evolve_dit::candle_core::Tensor;
use std::path::{Path, PathBuf};

/// `tests/fixtures/`, made by `make.py`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// max |a - b| / max |b|.
pub fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / scale
}
