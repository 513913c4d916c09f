//! What a prompt asks of an image, clause by clause, and whether detected objects satisfy it.

use crate::detect::Detected;
use crate::grammar::{ObjectSpec, Prompt, Relation};

/// One checkable statement of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// At least `at_least` objects match `spec`.
    Present {
        /// The object.
        spec: ObjectSpec,
        /// How many distinct matches are needed.
        at_least: u8,
    },
    /// Exactly `count` objects match `spec` (counting prompts).
    Exactly {
        /// The object.
        spec: ObjectSpec,
        /// The count.
        count: u8,
    },
    /// Some object matching `a` is `relation` a different object matching `b`.
    Related {
        /// The first object.
        a: ObjectSpec,
        /// The relation.
        relation: Relation,
        /// The second object.
        b: ObjectSpec,
    },
}

/// The clauses of `prompt`.
pub fn clauses(prompt: &Prompt) -> Vec<Clause> {
    match *prompt {
        Prompt::Single(a) => vec![Clause::Present { spec: a, at_least: 1 }],
        Prompt::Count(n, a) => vec![Clause::Present { spec: a, at_least: 1 }, Clause::Exactly { spec: a, count: n }],
        Prompt::Pair(a, b) if a == b => vec![Clause::Present { spec: a, at_least: 2 }],
        Prompt::Pair(a, b) => vec![Clause::Present { spec: a, at_least: 1 }, Clause::Present { spec: b, at_least: 1 }],
        Prompt::Relation(a, relation, b) => {
            let presence = if a == b {
                vec![Clause::Present { spec: a, at_least: 2 }]
            } else {
                vec![Clause::Present { spec: a, at_least: 1 }, Clause::Present { spec: b, at_least: 1 }]
            };
            presence.into_iter().chain([Clause::Related { a, relation, b }]).collect()
        }
    }
}

/// Whether `object` fits the description `spec`.
pub fn matches(spec: &ObjectSpec, object: &Detected) -> bool {
    object.shape == spec.shape
        && spec.colour.is_none_or(|c| c == object.colour)
        && spec.size.is_none_or(|s| object.is(s))
}

/// Whether `a` lies `relation` `b`: further along the relation's axis than across it.
pub fn related(relation: Relation, a: &Detected, b: &Detected) -> bool {
    let (dx, dy) = (b.cx - a.cx, b.cy - a.cy);
    match relation {
        Relation::LeftOf => dx > dy.abs(),
        Relation::RightOf => -dx > dy.abs(),
        Relation::Above => dy > dx.abs(),
        Relation::Below => -dy > dx.abs(),
    }
}

impl Clause {
    /// Whether `objects` satisfy this clause.
    pub fn holds(&self, objects: &[Detected]) -> bool {
        match self {
            Clause::Present { spec, at_least } => {
                objects.iter().filter(|o| matches(spec, o)).count() >= *at_least as usize
            }
            Clause::Exactly { spec, count } => objects.iter().filter(|o| matches(spec, o)).count() == *count as usize,
            Clause::Related { a, relation, b } => objects.iter().enumerate().any(|(i, oa)| {
                matches(a, oa)
                    && objects.iter().enumerate().any(|(j, ob)| i != j && matches(b, ob) && related(*relation, oa, ob))
            }),
        }
    }
}

/// How many of `prompt`'s clauses `objects` satisfy, out of how many.
pub fn score(prompt: &Prompt, objects: &[Detected]) -> (usize, usize) {
    let all = clauses(prompt);
    (all.iter().filter(|c| c.holds(objects)).count(), all.len())
}
