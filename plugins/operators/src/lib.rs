//! # evolve-operators
//!
//! The curation operators of EvolveDirector (Zhao et al., 2024, §3.2) as evolve plugins. A round
//! judges a sample — the base model's image against the teacher's — and hands the result to the
//! experiment's operator chain; each operator adds actions, later ones see what earlier ones
//! proposed. The paper's chain, in order:
//!
//! | operator | when | action |
//! |---|---|---|
//! | [`discrimination`] | always | optionally re-asks the judge with the images swapped |
//! | [`expansion`] | teacher better | `expand_num` (3) variations of the prompt |
//! | [`deletion`] | base as good | the sample leaves the active set |
//! | [`mutation`] | a sample was deleted | with probability `mutation_ratio` (0.1), a new prompt |
//!
//! Every operator is pure: it decides from the [`EvaluatedSample`](evolve_sdk::EvaluatedSample)
//! alone, and draws any randomness from the sample's seed, so a run replays exactly.

pub mod deletion;
pub mod discrimination;
pub mod expansion;
pub mod mutation;

/// Forces the linker to keep this crate, and with it the plugins it registers.
///
/// `inventory` entries live in the crate's object code; a binary that never references the
/// crate would drop them silently. The host calls this once at start-up.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}

#[cfg(test)]
pub(crate) mod testing {
    use evolve_sdk::{Action, Choice, EvaluatedSample, Origin, Outcome, Verdict};

    /// A judged sample with `outcome` and no history.
    pub fn sample(outcome: Outcome, proposed: Vec<Action>, seed: u64) -> EvaluatedSample {
        EvaluatedSample {
            sample_id: 1,
            prompt: "a red circle".into(),
            origin: Origin::Seed,
            round: 1,
            outcome,
            verdict: Verdict { choice: Choice::Best(0), confidence: 1.0, raw: "(A)".into() },
            rejudged: false,
            history: vec![],
            proposed,
            seed,
        }
    }
}
