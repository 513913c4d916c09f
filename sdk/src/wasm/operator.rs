//! The `operator-plugin` world's exports, answered by the SDK's [`crate::Operator`].

use super::bindings::operator_plugin::exports::evolve::plugin::operator;
use super::bindings::teacher_plugin::evolve::plugin::types;
use super::{Component, from_wit_verdict, info, init, installed, to_wit_error};
use crate::exported::{Built, Exported};
use crate::{Action, EvaluatedSample, Origin, Outcome};

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

fn from_wit_outcome(o: operator::Outcome) -> Outcome {
    match o {
        operator::Outcome::TeacherBetter => Outcome::TeacherBetter,
        operator::Outcome::BaseAsGood => Outcome::BaseAsGood,
    }
}

fn from_wit_action(a: operator::Action) -> Action {
    match a {
        operator::Action::Keep => Action::Keep,
        operator::Action::Deactivate => Action::Deactivate,
        operator::Action::Expand(n) => Action::Expand { n: n as usize },
        operator::Action::Mutate => Action::Mutate,
        operator::Action::Rejudge => Action::Rejudge,
        operator::Action::Propose(prompt) => Action::Propose { prompt },
    }
}

fn to_wit_action(a: &Action) -> operator::Action {
    match a {
        Action::Keep => operator::Action::Keep,
        Action::Deactivate => operator::Action::Deactivate,
        Action::Expand { n } => operator::Action::Expand(*n as u32),
        Action::Mutate => operator::Action::Mutate,
        Action::Rejudge => operator::Action::Rejudge,
        Action::Propose { prompt } => operator::Action::Propose(prompt.clone()),
    }
}

fn from_wit_sample(s: operator::EvaluatedSample) -> EvaluatedSample {
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
