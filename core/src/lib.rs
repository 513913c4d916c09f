//! # evolve-core
//!
//! The evolve host: everything that is compiled once and shared by every experiment.
//!
//! - [`registry`]: the plugins this binary can build, by kind and name.
//! - [`experiment`]: experiment files — types, JSON Schema, validation with precise diagnostics.
//! - [`store`]: the run directory — content-addressed image store and the SQLite run ledger.
//! - [`model`]: the built-in `dit` base model (PixArt-alpha DiT in candle) and its training.
//! - [`eval`]: scoring a model or a teacher on an evaluator's held-out suite.
//!
//! The director, trainer and evaluation arrive as their own modules; see `DESIGN.md`.

pub mod acquire;
pub mod bench;
pub mod eval;
pub mod experiment;
pub mod model;
pub mod registry;
pub mod run_model;
pub mod static_train;
pub mod store;
