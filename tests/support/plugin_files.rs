//! The example and fixture plugins of this repository, built once per test binary with cargo
//! (release, into `target/plugins`, so that it never waits on the lock of a running `cargo
//! test`). `bench/plugin-overhead.sh` builds the probes the same way for the benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    /// `tests/plugins/mirror-wasm` built as a teacher, a judge and an operator (gives back
    /// what it is sent).
    pub mirror_teacher: PathBuf,
    /// The mirror built as a judge.
    pub mirror_judge: PathBuf,
    /// The mirror built as an operator.
    pub mirror_operator: PathBuf,
}

/// Builds the example and fixture plugins of the repository at `root`.
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
    // One component per world: the mirror is built once per kind, each copied aside.
    let mirrors = target_dir.join("mirror");
    std::fs::create_dir_all(&mirrors).map_err(|e| format!("{}: {e}", mirrors.display()))?;
    for kind in ["teacher", "judge", "operator"] {
        let status = Command::new(&cargo)
            .current_dir(root)
            .args(["build", "--release", "--quiet", "--target-dir"])
            .arg(&target_dir)
            .args(["-p", "evolve-mirror-wasm", "--target", "wasm32-wasip2", "--features", kind])
            .status()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() {
            return Err(format!("building the {kind} mirror failed ({status})"));
        }
        let built = target_dir.join("wasm32-wasip2/release/evolve_mirror_wasm.wasm");
        std::fs::copy(&built, mirrors.join(format!("{kind}.wasm"))).map_err(|e| format!("{}: {e}", built.display()))?;
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
        mirror_teacher: mirrors.join("teacher.wasm"),
        mirror_judge: mirrors.join("judge.wasm"),
        mirror_operator: mirrors.join("operator.wasm"),
    })
}
