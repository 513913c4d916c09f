//! The `teacher-plugin` world's exports, answered by the SDK's [`crate::Teacher`].

use super::bindings::teacher_plugin::evolve::plugin::types;
use super::bindings::teacher_plugin::exports::evolve::plugin::teacher;
use super::{Component, info, init, installed, to_wit_error, wit_image, wit_limits};
use crate::exported::{Built, Exported};

fn plugin() -> Result<&'static dyn crate::Teacher, types::PluginError> {
    match installed()? {
        Built::Teacher(teacher) => Ok(teacher.as_ref()),
        _ => Err(types::PluginError::Failed("this component's plugin is not a teacher".into())),
    }
}

fn from_wit_request(r: teacher::GenerateRequest) -> crate::GenerateRequest {
    crate::GenerateRequest { prompt: r.prompt, width: r.width, height: r.height, seed: r.seed }
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
        Ok(teacher::GeneratedImage {
            image: wit_image(&generated.image),
            revised_prompt: generated.revised_prompt,
            cost_micro_usd: generated.cost.micro_usd,
        })
    }
}
