//! A wasm component of the `teacher-plugin` world as the SDK's [`Teacher`].

use super::bindings::teacher_plugin::exports::evolve::plugin::teacher;
use super::convert::{from_wit_generated, from_wit_limits, to_wit_request};
use super::sandbox::{Exports, Sandboxed};
use crate::external::off_runtime;
use evolve_sdk::{Cost, GenerateRequest, GeneratedImage, Limits, PluginError, Teacher};
use std::sync::Arc;

/// A started teacher instance.
pub struct WasmTeacher(pub Arc<Sandboxed>);

fn exports(exports: &Exports) -> wasmtime::Result<&teacher::Guest> {
    match exports {
        Exports::Teacher(p) => Ok(p.evolve_plugin_teacher()),
        _ => Err(wasmtime::Error::msg("the component is not a teacher")),
    }
}

#[evolve_sdk::async_trait]
impl Teacher for WasmTeacher {
    fn limits(&self) -> Limits {
        let limits = self.0.call(|live| exports(&live.exports)?.call_get_limits(&mut live.store).map(Ok));
        limits.map(from_wit_limits).unwrap_or(Limits { concurrency: 1, requests_per_minute: None })
    }

    fn price(&self, request: &GenerateRequest) -> Cost {
        // Only for display: the host buys with `quote`, which refuses what cannot be priced.
        self.quote(request).unwrap_or(Cost::ZERO)
    }

    fn quote(&self, request: &GenerateRequest) -> Result<Cost, PluginError> {
        let wit = to_wit_request(request);
        let micro_usd = self.0.call(|live| exports(&live.exports)?.call_quote(&mut live.store, &wit))?;
        Ok(Cost { micro_usd })
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GeneratedImage, PluginError> {
        let (sandbox, wit) = (Arc::clone(&self.0), to_wit_request(request));
        let generated =
            off_runtime(move || sandbox.call(|live| exports(&live.exports)?.call_generate(&mut live.store, &wit)))
                .await??;
        from_wit_generated(generated)
    }
}
