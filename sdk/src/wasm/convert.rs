//! Every conversion between the guest's WIT bindings and the SDK's types, in one place: the
//! guest's side of the wasm boundary (the host's is `core/src/external/wasm/convert.rs`). The
//! host's `tests/boundary.rs` sends every type through real components and back, so a field
//! one side drops fails there.

use super::bindings::judge_plugin::exports::evolve::plugin::judge;
use super::bindings::operator_plugin::exports::evolve::plugin::operator;
use super::bindings::teacher_plugin::evolve::plugin::types;
use super::bindings::teacher_plugin::exports::evolve::plugin::teacher;
use crate::{
    Action, Choice, Comparison, EvaluatedSample, GeneratedImage, Image, Limits, Origin, Outcome, PluginContext,
    PluginError, Verdict,
};

/// The context the host starts the plugin with (on the CPU, without a cache folder: those
/// are for built-in models).
pub(super) fn context(ctx: types::Context) -> PluginContext {
    PluginContext::new(ctx.instance, ctx.seed).with_run(ctx.image_size, "cpu")
}

/// The WIT error for the SDK's (a transient failure's wait is the host's to choose).
pub(super) fn to_wit_error(error: PluginError) -> types::PluginError {
    match error {
        PluginError::InvalidConfig(m) => types::PluginError::InvalidConfig(m),
        PluginError::InvalidInput(m) => types::PluginError::InvalidInput(m),
        PluginError::Transient { message, .. } => types::PluginError::Transient(message),
        PluginError::Uncertain(m) => types::PluginError::Uncertain(m),
        PluginError::Billed(m) => types::PluginError::Billed(m),
        PluginError::Unsupported(m) => types::PluginError::Unsupported(m),
        PluginError::Failed(m) | PluginError::Quarantined(m) => types::PluginError::Failed(m),
    }
}

/// The plugin's limits.
pub(super) fn wit_limits(l: Limits) -> types::Limits {
    types::Limits { concurrency: l.concurrency, requests_per_minute: l.requests_per_minute }
}

/// An image for the host.
pub(super) fn wit_image(image: &Image) -> types::Image {
    types::Image { width: image.width(), height: image.height(), rgb: image.pixels().to_vec() }
}

/// An image from the host, checked.
pub(super) fn from_wit_image(image: types::Image) -> Result<Image, types::PluginError> {
    Image::from_rgb(image.width, image.height, image.rgb).map_err(|e| types::PluginError::InvalidInput(e.to_string()))
}

/// Images from the host, checked.
pub(super) fn from_wit_images(images: Vec<types::Image>) -> Result<Vec<crate::Image>, types::PluginError> {
    images.into_iter().map(from_wit_image).collect()
}

/// A judge's verdict for the host.
pub(super) fn wit_verdict(verdict: &Verdict) -> types::Verdict {
    types::Verdict {
        choice: match verdict.choice {
            Choice::Best(i) => types::Choice::Best(i as u32),
            Choice::Tie => types::Choice::Tie,
        },
        confidence: verdict.confidence,
        raw: verdict.raw.clone(),
    }
}

/// A verdict in a sample from the host.
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

/// A teacher request from the host.
pub(super) fn from_wit_request(r: teacher::GenerateRequest) -> crate::GenerateRequest {
    crate::GenerateRequest { prompt: r.prompt, width: r.width, height: r.height, seed: r.seed }
}

/// A teacher's image for the host.
pub(super) fn to_wit_generated(generated: &GeneratedImage) -> teacher::GeneratedImage {
    teacher::GeneratedImage {
        image: wit_image(&generated.image),
        revised_prompt: generated.revised_prompt.clone(),
        cost_micro_usd: generated.cost.micro_usd,
    }
}

/// The comparison an expansion or mutation follows.
pub(super) fn from_wit_comparison(after: Option<judge::Comparison>) -> Result<Option<Comparison>, types::PluginError> {
    after.map(|c| Ok(Comparison { prompt: c.prompt, images: from_wit_images(c.images)?, reply: c.reply })).transpose()
}

/// A judged outcome.
pub(super) fn from_wit_outcome(o: operator::Outcome) -> Outcome {
    match o {
        operator::Outcome::TeacherBetter => Outcome::TeacherBetter,
        operator::Outcome::BaseAsGood => Outcome::BaseAsGood,
    }
}

/// An action an earlier operator proposed.
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

/// An action the plugin decided, for the host.
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

/// The judged sample the host asks about.
pub(super) fn from_wit_sample(s: operator::EvaluatedSample) -> EvaluatedSample {
    EvaluatedSample {
        sample_id: s.sample_id,
        prompt: s.prompt,
        origin: match s.origin {
            operator::Origin::Seed => Origin::Seed,
            operator::Origin::Expansion => Origin::Expansion,
            operator::Origin::Mutation => Origin::Mutation,
            operator::Origin::Imported => Origin::Imported,
        },
        round: s.round,
        outcome: from_wit_outcome(s.outcome),
        verdict: from_wit_verdict(s.verdict),
        rejudged: s.rejudged,
        history: s.history.into_iter().map(from_wit_outcome).collect(),
        proposed: s.proposed.into_iter().map(from_wit_action).collect(),
        seed: s.seed,
    }
}
