//! The probe operator as a native plugin library.

use evolve_probe::{Probe, ProbeConfig};
use evolve_sdk::PluginContext;

evolve_sdk::export_native_plugin! {
    kind: Operator,
    name: "probe",
    description: "Test fixture: expands like the built-in, or misbehaves on demand.",
    config: ProbeConfig,
    build: |config: ProbeConfig, _ctx: &PluginContext| Ok(Probe(config)),
}
