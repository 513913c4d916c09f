//! The `teacher-plugin` world's exports, answered by the SDK's [`crate::Teacher`].

use super::bindings::teacher_plugin::evolve::plugin::types;
use super::bindings::teacher_plugin::exports::evolve::plugin::teacher;
use super::convert::{from_wit_request, to_wit_error, to_wit_generated, wit_limits};
use super::{Component, info, init, installed};
use crate::exported::{Built, Exported};

fn plugin() -> Result<&'static dyn crate::Teacher, types::PluginError> {
    match installed()? {
        Built::Teacher(teacher) => Ok(teacher.as_ref()),
        _ => Err(types::PluginError::Failed("this component's plugin is not a teacher".into())),
    }
}

impl<P: Exported> teacher::Guest for Component<P> {
    fn info() -> types::PluginInfo {
        info::<P>()
    }

    fn init(config: String, ctx: types::Context) -> Result<(), types::PluginError> {
        init::<P>(&config, ctx)
    }

    fn get_limits() -> types::Limits {
        wit_limits(plugin().map(|t| t.limits()).unwrap_or_default())
    }

    fn quote(request: teacher::GenerateRequest) -> Result<u64, types::PluginError> {
        Ok(plugin()?.quote(&from_wit_request(request)).map_err(to_wit_error)?.micro_usd)
    }

    fn generate(request: teacher::GenerateRequest) -> Result<teacher::GeneratedImage, types::PluginError> {
        let generated = crate::block_on(plugin()?.generate(&from_wit_request(request))).map_err(to_wit_error)?;
        Ok(to_wit_generated(&generated))
    }
}
