//! ShapesEval: a fixed, held-out prompt suite in GenEval's six categories, scored by the
//! detector. No ShapesEval prompt may ever enter a training set: [`is_eval_prompt`] is what every
//! training-prompt generator in this crate checks.

use crate::grammar::{Colour, ObjectSpec, Prompt, Relation, Shape, Size};
use evolve_sdk::SplitMix64;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Bump when the suite or the world it renders changes; scores of different versions are not
/// comparable. 2: objects in fixed places for the prompt's structure, in two exact sizes (was:
/// anywhere, any size in a range); the prompts are version 1's.
pub const VERSION: u32 = 2;

/// The version whose prompts and seeds the suite draws (they stay those of version 1 so that
/// no prompt a run of version 1 trained on becomes an evaluation prompt).
const PROMPTS_VERSION: u64 = 1;

/// GenEval's task categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// "a circle".
    SingleObject,
    /// "a circle and a square".
    TwoObjects,
    /// "three circles".
    Counting,
    /// "a red circle".
    Colors,
    /// "a circle to the left of a square".
    Position,
    /// "a red circle and a blue square".
    ColorAttribution,
}

impl Category {
    /// Every category, in GenEval's order, with the number of prompts the suite holds.
    pub const ALL: [(Category, usize); 6] = [
        (Category::SingleObject, 12),
        (Category::TwoObjects, 60),
        (Category::Counting, 80),
        (Category::Colors, 24),
        (Category::Position, 120),
        (Category::ColorAttribution, 110),
    ];

    /// GenEval's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Category::SingleObject => "single_object",
            Category::TwoObjects => "two_objects",
            Category::Counting => "counting",
            Category::Colors => "colors",
            Category::Position => "position",
            Category::ColorAttribution => "color_attr",
        }
    }
}

/// One prompt of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalPrompt {
    /// The prompt.
    pub prompt: Prompt,
    /// Its category.
    pub category: Category,
    /// The seed models render it with.
    pub seed: u64,
}

fn uncoloured(rng: &mut SplitMix64, allow_large: bool) -> ObjectSpec {
    let shape = *rng.pick(&Shape::ALL).expect("non-empty");
    let size = match rng.below(3) {
        0 => Some(Size::Small),
        1 if allow_large => Some(Size::Large),
        _ => None,
    };
    ObjectSpec { shape, colour: None, size }
}

fn coloured(rng: &mut SplitMix64) -> ObjectSpec {
    ObjectSpec { colour: rng.pick(&Colour::ALL).copied(), ..uncoloured(rng, true) }
}

fn draw(category: Category, rng: &mut SplitMix64) -> Prompt {
    match category {
        Category::SingleObject => Prompt::Single(uncoloured(rng, true)),
        Category::Colors => Prompt::Single(coloured(rng)),
        Category::Counting => {
            let n = 2 + rng.below(3) as u8;
            let mut spec = if rng.chance(0.5) { coloured(rng) } else { uncoloured(rng, true) };
            if n > 2 && spec.size == Some(Size::Large) {
                spec.size = None;
            }
            Prompt::Count(n, spec)
        }
        Category::TwoObjects => {
            let a = uncoloured(rng, true);
            let b = ObjectSpec {
                shape: Shape::ALL[(a.shape as usize + 1 + rng.below(3) as usize) % 4],
                ..uncoloured(rng, true)
            };
            Prompt::Pair(a, b)
        }
        Category::Position => {
            let relation = *rng.pick(&Relation::ALL).expect("non-empty");
            let a = uncoloured(rng, true);
            let b = ObjectSpec {
                shape: Shape::ALL[(a.shape as usize + 1 + rng.below(3) as usize) % 4],
                ..uncoloured(rng, true)
            };
            Prompt::Relation(a, relation, b)
        }
        Category::ColorAttribution => {
            let a = coloured(rng);
            let mut b = coloured(rng);
            while b.colour == a.colour || b.shape == a.shape {
                b = coloured(rng);
            }
            Prompt::Pair(a, b)
        }
    }
}

/// The suite, in a fixed order: category by category, each drawn without repeats from a fixed
/// seed.
pub fn suite() -> &'static [EvalPrompt] {
    static SUITE: OnceLock<Vec<EvalPrompt>> = OnceLock::new();
    SUITE.get_or_init(|| {
        let mut all = vec![];
        let mut seen = HashSet::new();
        for (category, count) in Category::ALL {
            let mut rng = SplitMix64::from_parts(&[0x5EA1, PROMPTS_VERSION, category as u64]);
            let mut taken = 0;
            while taken < count {
                let prompt = draw(category, &mut rng);
                if seen.insert(prompt) {
                    let seed = SplitMix64::from_parts(&[PROMPTS_VERSION, all.len() as u64]).next_u64();
                    all.push(EvalPrompt { prompt, category, seed });
                    taken += 1;
                }
            }
        }
        all
    })
}

/// Whether `prompt` belongs to ShapesEval (and so must never be trained on).
pub fn is_eval_prompt(prompt: &Prompt) -> bool {
    static SET: OnceLock<HashSet<Prompt>> = OnceLock::new();
    SET.get_or_init(|| suite().iter().map(|e| e.prompt).collect()).contains(prompt)
}

/// A random prompt for training: any structure, never a ShapesEval prompt.
pub fn training_prompt(rng: &mut SplitMix64) -> Prompt {
    loop {
        let prompt = Prompt::random_any(rng);
        if !is_eval_prompt(&prompt) {
            return prompt;
        }
    }
}
