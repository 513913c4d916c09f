//! The `operator-plugin` world's exports, answered by the SDK's [`crate::Operator`].

use super::bindings::operator_plugin::exports::evolve::plugin::operator;
use super::bindings::teacher_plugin::evolve::plugin::types;
use super::convert::{from_wit_sample, to_wit_action, to_wit_error};
use super::{Component, info, init, installed};
use crate::exported::{Built, Exported};

fn plugin() -> Result<&'static dyn crate::Operator, types::PluginError> {
    match installed()? {
        Built::Operator(operator) => Ok(operator.as_ref()),
        _ => Err(types::PluginError::Failed("this component's plugin is not an operator".into())),
    }
}

impl<P: Exported> operator::Guest for Component<P> {
    fn info() -> types::PluginInfo {
        info::<P>()
    }

    fn init(config: String, ctx: types::Context) -> Result<(), types::PluginError> {
        init::<P>(&config, ctx)
    }

    fn decide(sample: operator::EvaluatedSample) -> Result<Vec<operator::Action>, types::PluginError> {
        let actions = plugin()?.decide(&from_wit_sample(sample)).map_err(to_wit_error)?;
        Ok(actions.iter().map(to_wit_action).collect())
    }
}
