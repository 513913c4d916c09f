//! A wasm component of the `operator-plugin` world as the SDK's [`Operator`].

use super::bindings::operator_plugin::exports::evolve::plugin::operator;
use super::sandbox::{Exports, Sandboxed};
use super::to_wit_verdict;
use evolve_sdk::{Action, EvaluatedSample, Operator, Origin, Outcome, PluginError};

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

fn to_wit_outcome(o: Outcome) -> operator::Outcome {
    match o {
        Outcome::TeacherBetter => operator::Outcome::TeacherBetter,
        Outcome::BaseAsGood => operator::Outcome::BaseAsGood,
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

fn to_wit_sample(s: &EvaluatedSample) -> operator::EvaluatedSample {
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
