//! The `judge-plugin` world's exports, answered by the SDK's [`crate::Judge`].

use super::bindings::judge_plugin::exports::evolve::plugin::judge;
use super::bindings::teacher_plugin::evolve::plugin::types;
use super::{Component, from_wit_image, info, init, installed, to_wit_error, wit_limits, wit_verdict};
use crate::exported::{Built, Exported};
use crate::{CompareRequest, Comparison, ExpandRequest, MutateRequest};

fn plugin() -> Result<&'static dyn crate::Judge, types::PluginError> {
    match installed()? {
        Built::Judge(judge) => Ok(judge.as_ref()),
        _ => Err(types::PluginError::Failed("this component's plugin is not a judge".into())),
    }
}

fn from_wit_images(images: Vec<types::Image>) -> Result<Vec<crate::Image>, types::PluginError> {
    images.into_iter().map(from_wit_image).collect()
}

fn from_wit_comparison(after: Option<judge::Comparison>) -> Result<Option<Comparison>, types::PluginError> {
    after.map(|c| Ok(Comparison { prompt: c.prompt, images: from_wit_images(c.images)?, reply: c.reply })).transpose()
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
