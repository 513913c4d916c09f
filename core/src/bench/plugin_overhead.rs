//! `evolve bench plugin-overhead`: the cost of one operator call on a typical sample, built in
//! vs native library vs wasm component, for the same rule (the paper's expansion: three
//! variations when the teacher won), and of a Python component.
//!
//! The plugins are given by path: the `probe` fixtures (`tests/plugins/probe*`) and the Python
//! `banlist` example, which `bench/plugin-overhead.sh` builds from the source tree, so that the
//! product never runs cargo or knows a fixture's name.

use super::BenchError;
use crate::experiment::PluginRef;
use crate::registry::Registry;
use evolve_sdk::{Action, Choice, EvaluatedSample, Operator, Origin, Outcome, PluginContext, Verdict};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The plugins to time against the built-in; each is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    /// The probe operator as a native library (`tests/plugins/probe-native`).
    pub native: Option<PathBuf>,
    /// The probe operator as a wasm component (`tests/plugins/probe-wasm`).
    pub wasm: Option<PathBuf>,
    /// The Python `banlist` operator component (`examples/plugins/python-operator`).
    pub python: Option<PathBuf>,
}

/// A judged sample of typical size: a two-object prompt, a judge reply, some history.
pub fn typical_sample() -> EvaluatedSample {
    EvaluatedSample {
        sample_id: 4242,
        prompt: "a small red circle to the left of a large blue square".into(),
        origin: Origin::Expansion,
        round: 7,
        outcome: Outcome::TeacherBetter,
        verdict: Verdict {
            choice: Choice::Best(1),
            confidence: 0.83,
            raw: r#"{"best": 2, "reason": "the second image has both shapes in the right places"}"#.into(),
        },
        rejudged: false,
        history: vec![Outcome::TeacherBetter, Outcome::BaseAsGood, Outcome::TeacherBetter],
        proposed: vec![Action::Keep],
        seed: 0x5EED,
    }
}

/// Per-call cost of each way in, in nanoseconds (median of interleaved rounds).
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// The built-in `expansion` operator.
    pub builtin_ns: f64,
    /// The probe as a native library, if given.
    pub native_ns: Option<f64>,
    /// The probe as a wasm component, if given.
    pub wasm_ns: Option<f64>,
}

/// Times `calls` operator calls per round, `rounds` rounds interleaved across the built-in and
/// the native and wasm probes of `probes` (the Python one: [`measure_python`]).
pub fn measure(registry: &Registry, probes: &Probes, rounds: usize, calls: usize) -> Result<Overhead, BenchError> {
    let ctx = PluginContext::new("bench", 0);
    let build = |plugin: PluginRef, config: serde_json::Value| {
        registry
            .operator(&plugin, config, &ctx)
            .map_err(|source| BenchError::Build { plugin: plugin.to_string(), source })
    };
    let builtin = build("expansion".into(), serde_json::json!({ "expand_num": 3 }))?;
    let sample = typical_sample();
    let expected = builtin.decide(&sample).map_err(BenchError::plugin("the built-in"))?;
    let mut operators: Vec<Box<dyn Operator>> = vec![builtin];
    let mut which = vec![];
    let given = [
        ("native", probes.native.clone().map(|native| PluginRef::Native { native })),
        ("wasm", probes.wasm.clone().map(|wasm| PluginRef::Wasm { wasm })),
    ];
    for (name, plugin) in given {
        let Some(plugin) = plugin else { continue };
        let op = build(plugin, serde_json::json!({}))?;
        // The probes mirror the built-in's rule: a different answer means a different plugin.
        let got = op.decide(&sample).map_err(BenchError::plugin(name))?;
        if got != expected {
            return Err(BenchError::ProbeMismatch {
                probe: name,
                got: format!("{got:?}"),
                expected: format!("{expected:?}"),
            });
        }
        operators.push(op);
        which.push(name);
    }
    let times = time_interleaved(&operators, &sample, rounds, calls)?;
    let of = |name: &str| which.iter().position(|w| *w == name).map(|i| times[i + 1]);
    Ok(Overhead { builtin_ns: times[0], native_ns: of("native"), wasm_ns: of("wasm") })
}

/// The median nanoseconds per call of each operator: `rounds` rounds, each timing `calls`
/// calls of every operator in turn, so that a noisy moment hits them all alike.
fn time_interleaved(
    operators: &[Box<dyn Operator>],
    sample: &EvaluatedSample,
    rounds: usize,
    calls: usize,
) -> Result<Vec<f64>, BenchError> {
    let mut samples: Vec<Vec<f64>> = vec![vec![]; operators.len()];
    for _ in 0..rounds.max(1) {
        for (i, op) in operators.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..calls.max(1) {
                std::hint::black_box(
                    op.decide(std::hint::black_box(sample)).map_err(BenchError::plugin("a timed call"))?,
                );
            }
            samples[i].push(started.elapsed().as_nanos() as f64 / calls.max(1) as f64);
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

/// Per-call cost, in nanoseconds, of the Python `banlist` operator component at `component`
/// (`examples/plugins/python-operator`) on the typical sample, beside the built-in measured in
/// the same interleaved rounds: `(python, built-in)`. An interpreter per call is dearer by
/// orders of magnitude, so it gets its own, shorter measurement.
pub fn measure_python(
    registry: &Registry,
    component: &Path,
    rounds: usize,
    calls: usize,
) -> Result<(f64, f64), BenchError> {
    let ctx = PluginContext::new("bench", 0);
    let builtin = registry
        .operator(&"expansion".into(), serde_json::json!({ "expand_num": 3 }), &ctx)
        .map_err(|source| BenchError::Build { plugin: "expansion".into(), source })?;
    let python = registry
        .operator(&PluginRef::Wasm { wasm: component.to_path_buf() }, serde_json::json!({ "words": ["cat"] }), &ctx)
        .map_err(|source| BenchError::Build { plugin: component.display().to_string(), source })?;
    let times = time_interleaved(&[builtin, python], &typical_sample(), rounds, calls)?;
    Ok((times[1], times[0]))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
