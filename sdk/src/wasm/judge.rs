//! The `judge-plugin` world's exports, answered by the SDK's [`crate::Judge`].

use super::bindings::judge_plugin::exports::evolve::plugin::judge;
use super::bindings::teacher_plugin::evolve::plugin::types;
use super::convert::{from_wit_comparison, from_wit_images, to_wit_error, wit_limits, wit_verdict};
use super::{Component, info, init, installed};
use crate::exported::{Built, Exported};
use crate::{CompareRequest, ExpandRequest, MutateRequest};

fn plugin() -> Result<&'static dyn crate::Judge, types::PluginError> {
    match installed()? {
        Built::Judge(judge) => Ok(judge.as_ref()),
        _ => Err(types::PluginError::Failed("this component's plugin is not a judge".into())),
    }
}

impl<P: Exported> judge::Guest for Component<P> {
    fn info() -> types::PluginInfo {
        info::<P>()
    }

    fn init(config: String, ctx: types::Context) -> Result<(), types::PluginError> {
        init::<P>(&config, ctx)
    }

    fn get_limits() -> types::Limits {
        wit_limits(plugin().map(|j| j.limits()).unwrap_or_default())
    }

    fn compare(prompt: String, images: Vec<types::Image>, seed: u64) -> Result<types::Verdict, types::PluginError> {
        let request = CompareRequest { prompt, images: from_wit_images(images)?, seed };
        let verdict = crate::block_on(plugin()?.compare(&request)).map_err(to_wit_error)?;
        Ok(wit_verdict(&verdict))
    }

    fn expand(
        prompt: String,
        n: u32,
        seed: u64,
        after: Option<judge::Comparison>,
    ) -> Result<Vec<String>, types::PluginError> {
        let request = ExpandRequest { prompt, n: n as usize, seed, after: from_wit_comparison(after)? };
        crate::block_on(plugin()?.expand(&request)).map_err(to_wit_error)
    }

    fn mutate(recent: Vec<String>, seed: u64, after: Option<judge::Comparison>) -> Result<String, types::PluginError> {
        let request = MutateRequest { recent, seed, after: from_wit_comparison(after)? };
        crate::block_on(plugin()?.mutate(&request)).map_err(to_wit_error)
    }
}
