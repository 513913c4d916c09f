//! Every conversion between the SDK's types and the host's WIT bindings, in one place: the
//! host's side of the wasm boundary (the guest's is `sdk/src/wasm/`). `tests/boundary.rs`
//! sends every type through real components and back, so a field one side drops fails there.

use super::bindings::judge_plugin::exports::evolve::plugin::judge;
use super::bindings::operator_plugin::exports::evolve::plugin::operator;
use super::bindings::teacher_plugin::evolve::plugin::types;
use super::bindings::teacher_plugin::exports::evolve::plugin::teacher;
use evolve_sdk::{
    Action, Choice, Comparison, Cost, EvaluatedSample, GenerateRequest, GeneratedImage, Image, Limits, Origin, Outcome,
    PluginContext, PluginError, Verdict,
};

/// What a plugin is told at `init`: its label, seed and image size (the device and cache
/// folder are for built-in models only).
pub(super) fn context(ctx: &PluginContext) -> types::Context {
    types::Context { instance: ctx.instance.clone(), seed: ctx.seed, image_size: ctx.image_size }
}

/// The SDK's error for the WIT one.
pub(super) fn plugin_error(error: types::PluginError) -> PluginError {
    match error {
        types::PluginError::InvalidConfig(m) => PluginError::InvalidConfig(m),
        types::PluginError::InvalidInput(m) => PluginError::InvalidInput(m),
        types::PluginError::Transient(m) => PluginError::transient(m),
        types::PluginError::Uncertain(m) => PluginError::Uncertain(m),
        types::PluginError::Billed(m) => PluginError::Billed(m),
        types::PluginError::Failed(m) => PluginError::Failed(m),
        types::PluginError::Unsupported(m) => PluginError::Unsupported(m),
    }
}

/// A plugin's limits.
pub(super) fn from_wit_limits(l: types::Limits) -> Limits {
    // One instance serves one call at a time.
    Limits { concurrency: 1, requests_per_minute: l.requests_per_minute }
}

/// An image lent to the plugin.
pub(super) fn to_wit_image(image: &Image) -> types::Image {
    types::Image { width: image.width(), height: image.height(), rgb: image.pixels().to_vec() }
}

/// An image from the plugin, checked.
pub(super) fn from_wit_image(image: types::Image) -> Result<Image, PluginError> {
    Image::from_rgb(image.width, image.height, image.rgb)
        .map_err(|e| PluginError::Failed(format!("the plugin returned a bad image: {e}")))
}

/// A verdict shown to an operator.
pub(super) fn to_wit_verdict(verdict: &Verdict) -> types::Verdict {
    types::Verdict {
        choice: match verdict.choice {
            Choice::Best(i) => types::Choice::Best(i as u32),
            Choice::Tie => types::Choice::Tie,
        },
        confidence: verdict.confidence,
        raw: verdict.raw.clone(),
    }
}

/// A judge's verdict (its choice is checked against the images by the caller).
pub(super) fn from_wit_verdict(verdict: types::Verdict) -> Verdict {
    Verdict {
        choice: match verdict.choice {
            types::Choice::Best(i) => Choice::Best(i as usize),
            types::Choice::Tie => Choice::Tie,
        },
        confidence: verdict.confidence,
        raw: verdict.raw,
    }
}

/// A teacher request.
pub(super) fn to_wit_request(r: &GenerateRequest) -> teacher::GenerateRequest {
    teacher::GenerateRequest { prompt: r.prompt.clone(), width: r.width, height: r.height, seed: r.seed }
}

/// The generated image a teacher returns, checked.
pub(super) fn from_wit_generated(generated: teacher::GeneratedImage) -> Result<GeneratedImage, PluginError> {
    Ok(GeneratedImage {
        image: from_wit_image(generated.image)?,
        revised_prompt: generated.revised_prompt,
        cost: Cost { micro_usd: generated.cost_micro_usd },
    })
}

/// The comparison an expansion or mutation follows.
pub(super) fn to_wit_comparison(after: &Option<Comparison>) -> Option<judge::Comparison> {
    after.as_ref().map(|c| judge::Comparison {
        prompt: c.prompt.clone(),
        images: c.images.iter().map(to_wit_image).collect(),
        reply: c.reply.clone(),
    })
}

/// A judged outcome.
pub(super) fn to_wit_outcome(o: Outcome) -> operator::Outcome {
    match o {
        Outcome::TeacherBetter => operator::Outcome::TeacherBetter,
        Outcome::BaseAsGood => operator::Outcome::BaseAsGood,
    }
}

/// An action an earlier operator proposed.
pub(super) fn to_wit_action(a: &Action) -> operator::Action {
    match a {
        Action::Keep => operator::Action::Keep,
        Action::Deactivate => operator::Action::Deactivate,
        Action::Expand { n } => operator::Action::Expand(*n as u32),
        Action::Mutate => operator::Action::Mutate,
        Action::Rejudge => operator::Action::Rejudge,
        Action::Propose { prompt } => operator::Action::Propose(prompt.clone()),
    }
}

/// An action the operator decides.
pub(super) fn from_wit_action(a: operator::Action) -> Action {
    match a {
        operator::Action::Keep => Action::Keep,
        operator::Action::Deactivate => Action::Deactivate,
        operator::Action::Expand(n) => Action::Expand { n: n as usize },
        operator::Action::Mutate => Action::Mutate,
        operator::Action::Rejudge => Action::Rejudge,
        operator::Action::Propose(prompt) => Action::Propose { prompt },
    }
}

/// The judged sample an operator decides on.
pub(super) fn to_wit_sample(s: &EvaluatedSample) -> operator::EvaluatedSample {
    operator::EvaluatedSample {
        sample_id: s.sample_id,
        prompt: s.prompt.clone(),
        origin: match s.origin {
            Origin::Seed => operator::Origin::Seed,
            Origin::Expansion => operator::Origin::Expansion,
            Origin::Mutation => operator::Origin::Mutation,
            Origin::Imported => operator::Origin::Imported,
        },
        round: s.round,
        outcome: to_wit_outcome(s.outcome),
        verdict: to_wit_verdict(&s.verdict),
        rejudged: s.rejudged,
        history: s.history.iter().copied().map(to_wit_outcome).collect(),
        proposed: s.proposed.iter().map(to_wit_action).collect(),
        seed: s.seed,
    }
}
