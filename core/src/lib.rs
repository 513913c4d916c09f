//! # evolve-core
//!
//! The evolve host: everything that is compiled once and shared by every experiment. It holds
//! no model code: the built-in base model is the `evolve-dit` plugin crate.
//!
//! - [`registry`]: the plugins this binary can build, by kind and name.
//! - [`experiment`]: experiment files — types, JSON Schema, validation with precise diagnostics.
//! - [`store`]: the run directory — content-addressed image store and the SQLite run ledger.
//! - [`eval`]: scoring a model or a teacher on an evaluator's held-out suite.
//! - [`session`]: what both training modes start from — plugins built, run directory, runtime.
//! - [`director`]: `evolve run` — the trainer thread and the evolution rounds beside it.
//! - [`ranks`]: `evolve run --gpus N` — the worker processes of a data-parallel run.
//! - [`static_train`]: `evolve train --static` — the paper's baseline without the director.
//! - [`run_model`]: building the base model, its checkpoints and the trainer's saved state.
//! - [`training_set`]: the active samples as batches the base model trains on.
//! - [`purchase`] and [`budget`]: buying a teacher image within the budget, never twice.
//! - [`audit`]: the online judge audit (swapped-order and known-answer probes).
//! - [`external`]: loaders for native (abi_stable) and wasm (wasmtime) plugins.
//! - [`bench`]: `evolve bench` — the measured figures.
//! - [`step_means`]: the interval means both training loops record as their metrics.
//! - [`acquire`]: initial prompts and paid teacher images, each bought once.
//! - [`dataset`]: the curated set out (`evolve export --dataset`) and in (`[prompts] from_dataset`).
//! - [`report`]: `evolve report` — the HTML report of a run.
//! - [`serve`]: `evolve serve` — the embedded world behind OpenAI-compatible HTTP endpoints.

pub mod acquire;
pub mod audit;
pub mod bench;
pub mod budget;
pub mod dataset;
pub mod director;
pub mod eval;
pub mod experiment;
pub mod external;
pub mod in_order;
pub mod purchase;
pub mod ranks;
pub mod registry;
pub mod report;
pub mod run_model;
pub mod serve;
pub mod session;
pub mod static_train;
pub mod step_means;
pub mod store;
pub mod training_set;

/// Locks `mutex`. A poisoned lock (a panic elsewhere) is still usable: every ledger write is its
/// own transaction and the budget's counters are updated whole.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f`, which blocks (PNG encoding, an fsync, a SQLite commit), from an async task without
/// stalling the runtime: on a multi-threaded runtime the worker first hands its other tasks over.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
