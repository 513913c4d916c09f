//! `evolve bench NAME`: measured figures, each ending with `figure-name: value` lines that
//! scripts can read. Speeds are compared as ratios against a reference measured in the same run.

pub mod data_efficiency;
mod error;
pub mod plugin_overhead;
pub mod shape_readback;
pub mod teacher_routing;
pub mod train_throughput;
pub mod transformer_step;

pub use error::BenchError;

/// The benchmarks this build has, with one line on each.
pub const AVAILABLE: [(&str, &str); 5] = [
    ("train-throughput", "images/s of a DiT training step, candle vs PyTorch eager, same shapes"),
    (
        "data-efficiency",
        "ShapesEval vs teacher calls at equal steps over seeds: uniform prompts vs the director and its ablations",
    ),
    ("plugin-overhead", "cost of one operator call: built-in vs native library vs wasm component"),
    ("shape-readback", "how often a run's model draws the prompted shape (every single-object prompt, --run DIR)"),
    (
        "teacher-routing",
        "ShapesEval and money per director.teacher_selection policy, three teachers of different price",
    ),
];
