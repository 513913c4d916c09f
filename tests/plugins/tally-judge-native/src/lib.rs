//! A native judge that prefers the image with the most red and writes prompts by rule: enough
//! to exercise the judge interface of the native ABI end to end.

use evolve_sdk::prelude::*;

/// The fixture's config.
#[derive(Debug, Clone, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct TallyConfig {
    /// A hostile answer instead of the honest one: `nan_confidence` or `choice_out_of_range`.
    #[serde(default)]
    pub hostile: Option<String>,
}

/// The judge.
pub struct Tally {
    hostile: Option<String>,
}

fn red(image: &Image) -> u64 {
    image.pixels().chunks(3).map(|p| p[0] as u64).sum()
}

#[async_trait]
impl Judge for Tally {
    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        let best = request.images.iter().enumerate().max_by_key(|(_, image)| red(image)).map(|(i, _)| i);
        let choice = best.map_or(Choice::Tie, Choice::Best);
        let raw = format!("reddest: {best:?}");
        Ok(match self.hostile.as_deref() {
            Some("nan_confidence") => Verdict { choice, confidence: f32::NAN, raw },
            Some("choice_out_of_range") => Verdict { choice: Choice::Best(request.images.len()), confidence: 0.9, raw },
            _ => Verdict { choice, confidence: 0.9, raw },
        })
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        Ok((0..request.n).map(|i| format!("{} #{i}", request.prompt)).collect())
    }

    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError> {
        Ok(format!("something new after {} prompts", request.recent.len()))
    }
}

evolve_sdk::export_native_plugin! {
    kind: Judge,
    name: "tally",
    description: "Test fixture: prefers the reddest image.",
    config: TallyConfig,
    build: |config: TallyConfig, _ctx: &PluginContext| Ok(Tally { hostile: config.hostile }),
}
