//! The probe operator as a wasm component.

#[cfg(target_arch = "wasm32")]
use evolve_probe::{Probe, ProbeConfig};
#[cfg(target_arch = "wasm32")]
use evolve_sdk::PluginContext;

#[cfg(target_arch = "wasm32")]
evolve_sdk::export_wasm_plugin! {
    kind: Operator,
    name: "probe",
    description: "Test fixture: expands like the built-in, or misbehaves on demand.",
    config: ProbeConfig,
    build: |config: ProbeConfig, _ctx: &PluginContext| Ok(Probe(config)),
}
