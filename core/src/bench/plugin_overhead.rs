//! `evolve bench plugin-overhead`: the cost of one operator call on a typical sample, built in
//! vs native library vs wasm component, for the same rule (the paper's expansion: three
//! variations when the teacher won).
//!
//! The external side is the `probe` fixture (`tests/plugins/probe*`), built from this source
//! tree with cargo; [`build_plugins`] is shared with the tests.

use crate::experiment::PluginRef;
use crate::registry::Registry;
use evolve_sdk::{Action, Choice, EvaluatedSample, Operator, Origin, Outcome, PluginContext, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The plugin files built from this repository.
#[derive(Debug, Clone)]
pub struct PluginFiles {
    /// `examples/plugins/native-teacher` (a native teacher).
    pub native_teacher: PathBuf,
    /// `examples/plugins/wasm-operator` (a wasm operator).
    pub wasm_operator: PathBuf,
    /// `tests/plugins/probe-native` (native operator, misbehaves on demand).
    pub probe_native: PathBuf,
    /// `tests/plugins/probe-wasm` (wasm operator, misbehaves on demand).
    pub probe_wasm: PathBuf,
    /// `tests/plugins/wrong-abi-native` (a root module of evolve's name with another layout).
    pub wrong_abi_native: PathBuf,
    /// `tests/plugins/flat-teacher-wasm` (a wasm teacher).
    pub flat_teacher_wasm: PathBuf,
    /// `tests/plugins/tally-judge-native` (a native judge).
    pub tally_judge_native: PathBuf,
    /// A native library of this workspace that is not a plugin (the wasm example built for
    /// the host, whose export is wasm-only).
    pub not_a_plugin: PathBuf,
}

/// Builds the example and fixture plugins of the repository at `root` (release, into
/// `target/plugins`, so that it never waits on the lock of a running `cargo test`).
pub fn build_plugins(root: &Path) -> Result<PluginFiles, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let target_dir = root.join("target").join("plugins");
    let native = [
        "evolve-example-native-teacher",
        "evolve-example-wasm-operator",
        "evolve-probe-native",
        "evolve-tally-judge-native",
    ];
    let wasm = ["evolve-example-wasm-operator", "evolve-probe-wasm", "evolve-flat-teacher-wasm"];
    let runs: [(&[&str], Option<&str>); 3] =
        [(&native, None), (&["evolve-wrong-abi-native"], None), (&wasm, Some("wasm32-wasip2"))];
    for (packages, target) in runs {
        let mut command = Command::new(&cargo);
        command.current_dir(root).args(["build", "--release", "--quiet", "--target-dir"]).arg(&target_dir);
        for p in packages {
            command.args(["-p", p]);
        }
        if let Some(target) = target {
            command.args(["--target", target]);
        }
        let status = command.status().map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building the plugins {packages:?} failed ({status}); is {root:?} the evolve repository?"
            ));
        }
    }
    let lib = |name: &str| {
        let (prefix, ext) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
        target_dir.join("release").join(format!("{prefix}{name}.{ext}"))
    };
    let component = |name: &str| target_dir.join("wasm32-wasip2").join("release").join(format!("{name}.wasm"));
    Ok(PluginFiles {
        native_teacher: lib("evolve_example_native_teacher"),
        wasm_operator: component("evolve_example_wasm_operator"),
        probe_native: lib("evolve_probe_native"),
        probe_wasm: component("evolve_probe_wasm"),
        wrong_abi_native: lib("evolve_wrong_abi_native"),
        flat_teacher_wasm: component("evolve_flat_teacher_wasm"),
        tally_judge_native: lib("evolve_tally_judge_native"),
        not_a_plugin: lib("evolve_example_wasm_operator"),
    })
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
    /// The probe as a native library.
    pub native_ns: f64,
    /// The probe as a wasm component.
    pub wasm_ns: f64,
}

/// Times `calls` operator calls per round, `rounds` rounds interleaved across the three.
pub fn measure(registry: &Registry, files: &PluginFiles, rounds: usize, calls: usize) -> Result<Overhead, String> {
    let ctx = PluginContext::new("bench", 0);
    let build = |plugin: PluginRef, config: serde_json::Value| {
        registry.operator(&plugin, config, &ctx).map_err(|e| format!("cannot build {plugin}: {e}"))
    };
    let builtin = build("expansion".into(), serde_json::json!({ "expand_num": 3 }))?;
    let native = build(PluginRef::Native { native: files.probe_native.clone() }, serde_json::json!({}))?;
    let wasm = build(PluginRef::Wasm { wasm: files.probe_wasm.clone() }, serde_json::json!({}))?;
    let sample = typical_sample();
    let expected = builtin.decide(&sample).map_err(|e| e.to_string())?;
    for (name, op) in [("native", &native), ("wasm", &wasm)] {
        let got = op.decide(&sample).map_err(|e| format!("{name}: {e}"))?;
        if got != expected {
            return Err(format!("the {name} probe decided {got:?}, the built-in {expected:?}"));
        }
    }
    let [b, n, w] = time_interleaved([builtin.as_ref(), native.as_ref(), wasm.as_ref()], &sample, rounds, calls)?;
    Ok(Overhead { builtin_ns: b, native_ns: n, wasm_ns: w })
}

/// The median nanoseconds per call of each operator: `rounds` rounds, each timing `calls`
/// calls of every operator in turn, so that a noisy moment hits them all alike.
fn time_interleaved<const N: usize>(
    operators: [&dyn Operator; N],
    sample: &EvaluatedSample,
    rounds: usize,
    calls: usize,
) -> Result<[f64; N], String> {
    let mut samples: [Vec<f64>; N] = std::array::from_fn(|_| vec![]);
    for _ in 0..rounds.max(1) {
        for (i, op) in operators.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..calls.max(1) {
                std::hint::black_box(op.decide(std::hint::black_box(sample)).map_err(|e| e.to_string())?);
            }
            samples[i].push(started.elapsed().as_nanos() as f64 / calls.max(1) as f64);
        }
    }
    Ok(samples.map(median))
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
) -> Result<(f64, f64), String> {
    let ctx = PluginContext::new("bench", 0);
    let builtin = registry
        .operator(&"expansion".into(), serde_json::json!({ "expand_num": 3 }), &ctx)
        .map_err(|e| format!("cannot build the built-in: {e}"))?;
    let python = registry
        .operator(&PluginRef::Wasm { wasm: component.to_path_buf() }, serde_json::json!({ "words": ["cat"] }), &ctx)
        .map_err(|e| format!("cannot build {}: {e}", component.display()))?;
    let [b, p] = time_interleaved([builtin.as_ref(), python.as_ref()], &typical_sample(), rounds, calls)?;
    Ok((p, b))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
