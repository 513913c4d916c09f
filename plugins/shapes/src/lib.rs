//! # evolve-shapes: the embedded world
//!
//! No weights, datasets or API keys can be fetched on every machine, so evolve ships a world
//! whose truth is known, and implements its teacher and judge exactly as an API plugin would:
//!
//! - [`grammar`]: prompts like "two small red circles" or "a blue square to the left of a
//!   diamond" — four shapes, six colours, two sizes, counts 2-4, four relations — written and
//!   parsed both ways.
//! - [`render`] and the `shapes` **teacher**: renders any prompt exactly, deterministic for
//!   (prompt, seed): objects in fixed places for the prompt's structure, small or large, in
//!   jittered colours on a random grey background with grain. Optional price,
//!   latency and failure rate exercise budgets and retries offline.
//! - [`detect`] and the `shapes` **judge**: a detector (colour segmentation, connected
//!   components, shape templates) reads images back; `compare` prefers the image satisfying more
//!   of the prompt's [`clauses`]; `expand` and `mutate` walk the grammar. `flip_rate` and
//!   `position_bias` emulate a real VLM's mistakes.
//! - [`eval`] and the `shapes` **evaluator**: ShapesEval, 406 held-out prompts in GenEval's six
//!   categories. No generator here ever emits one of them for training.
//! - [`natural`]: a prompt set skewed as real captions are, for the paper's baseline.
//!
//! ```
//! use evolve_shapes::{detect::detect, grammar::Prompt, render::render};
//! let prompt = Prompt::parse("a red circle to the left of a blue square").unwrap();
//! let image = render(&prompt, 32, 32, 7);
//! let (satisfied, total) = evolve_shapes::clauses::score(&prompt, &detect(&image));
//! assert_eq!(satisfied, total);
//! ```

pub mod clauses;
pub mod detect;
pub mod eval;
pub mod evaluator;
pub mod grammar;
pub mod judge;
pub mod natural;
pub mod render;
pub mod teacher;

/// Forces the linker to keep this crate, and with it the plugins it registers.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
