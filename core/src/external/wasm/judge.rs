//! A wasm component of the `judge-plugin` world as the SDK's [`Judge`].

use super::bindings::judge_plugin::exports::evolve::plugin::judge;
use super::bindings::teacher_plugin::evolve::plugin::types;
use super::convert::{from_wit_limits, from_wit_verdict, to_wit_comparison, to_wit_image};
use super::sandbox::{Exports, Sandboxed};
use crate::external::off_runtime;
use evolve_sdk::{CompareRequest, ExpandRequest, Judge, Limits, MutateRequest, PluginError, Verdict};
use std::sync::Arc;

/// A started judge instance.
pub struct WasmJudge(pub Arc<Sandboxed>);

fn exports(exports: &Exports) -> wasmtime::Result<&judge::Guest> {
    match exports {
        Exports::Judge(p) => Ok(p.evolve_plugin_judge()),
        _ => Err(wasmtime::Error::msg("the component is not a judge")),
    }
}

#[evolve_sdk::async_trait]
impl Judge for WasmJudge {
    fn limits(&self) -> Limits {
        let limits = self.0.call(|live| exports(&live.exports)?.call_get_limits(&mut live.store).map(Ok));
        limits.map(from_wit_limits).unwrap_or(Limits { concurrency: 1, requests_per_minute: None })
    }

    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        let sandbox = Arc::clone(&self.0);
        let images: Vec<types::Image> = request.images.iter().map(to_wit_image).collect();
        let (prompt, seed) = (request.prompt.clone(), request.seed);
        let verdict = off_runtime(move || {
            sandbox.call(|live| exports(&live.exports)?.call_compare(&mut live.store, &prompt, &images, seed))
        })
        .await??;
        from_wit_verdict(verdict).checked(request.images.len())
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        let sandbox = Arc::clone(&self.0);
        let (prompt, n, seed) = (request.prompt.clone(), request.n as u32, request.seed);
        let after = to_wit_comparison(&request.after);
        off_runtime(move || {
            sandbox.call(|live| exports(&live.exports)?.call_expand(&mut live.store, &prompt, n, seed, after.as_ref()))
        })
        .await?
    }

    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError> {
        let sandbox = Arc::clone(&self.0);
        let (recent, seed) = (request.recent.clone(), request.seed);
        let after = to_wit_comparison(&request.after);
        off_runtime(move || {
            sandbox.call(|live| exports(&live.exports)?.call_mutate(&mut live.store, &recent, seed, after.as_ref()))
        })
        .await?
    }
}
