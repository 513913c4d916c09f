//! A wasm component of the `operator-plugin` world as the SDK's [`Operator`].

use super::bindings::operator_plugin::exports::evolve::plugin::operator;
use super::convert::{from_wit_action, to_wit_sample};
use super::sandbox::{Exports, Sandboxed};
use evolve_sdk::{Action, EvaluatedSample, Operator, PluginError};

/// A started operator instance.
pub struct WasmOperator(pub Sandboxed);

fn exports(exports: &Exports) -> wasmtime::Result<&operator::Guest> {
    match exports {
        Exports::Operator(p) => Ok(p.evolve_plugin_operator()),
        _ => Err(wasmtime::Error::msg("the component is not an operator")),
    }
}

impl Operator for WasmOperator {
    fn decide(&self, sample: &EvaluatedSample) -> Result<Vec<Action>, PluginError> {
        let wit_sample = to_wit_sample(sample);
        let actions = self.0.call(|live| exports(&live.exports)?.call_decide(&mut live.store, &wit_sample))?;
        Ok(actions.into_iter().map(from_wit_action).collect())
    }
}
