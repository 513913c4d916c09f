//! The `shapes` judge: reads images with the detector and checks each clause of the prompt;
//! writes new prompts by walking the grammar. Knobs emulate a real VLM's flaws.

use crate::clauses::score;
use crate::detect::detect;
use crate::eval::{is_eval_prompt, training_prompt};
use crate::grammar::{Colour, ObjectSpec, Prompt, Relation, Shape, Size, Structure};
use evolve_sdk::prelude::*;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

/// Config of the `shapes` judge.
#[derive(Debug, Clone, Default, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "evolve_sdk::schemars")]
pub struct ShapesJudgeConfig {
    /// Probability that a verdict is flipped to another image (a VLM's plain mistakes).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub flip_rate: f64,
    /// Probability that the judge answers "the first image" whatever it sees (position bias).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub position_bias: f64,
    /// How expansion varies a prompt: `swap` (default) changes one word, `redraw` draws every
    /// word anew within the prompt's structure.
    #[serde(default)]
    pub expansion: ExpansionStyle,
}

/// How the judge's expansion varies a prompt the base model got wrong. Both keep its structure
/// (one object, a count, a pair, a relation): that is what the model failed at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(crate = "evolve_sdk::schemars")]
pub enum ExpansionStyle {
    /// One noun, colour, size, count or relation swapped: the prompt's nearest neighbours.
    #[default]
    Swap,
    /// Every noun, colour, size, count and relation drawn anew: as varied as the grammar
    /// allows, as a VLM asked for "more diverse descriptions" of the same kind may write. The
    /// swapped neighbours of a few failures cover little of the grammar; these cover it evenly.
    Redraw,
}

/// The `shapes` judge.
pub struct ShapesJudge {
    config: ShapesJudgeConfig,
    seed: u64,
}

impl ShapesJudge {
    /// A judge with `config`; `seed` drives its emulated mistakes.
    pub fn new(config: ShapesJudgeConfig, seed: u64) -> Result<Self, PluginError> {
        for (name, p) in [("flip_rate", config.flip_rate), ("position_bias", config.position_bias)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(PluginError::InvalidConfig(format!("{name} must be within [0, 1], got {p}")));
            }
        }
        Ok(ShapesJudge { config, seed })
    }

    fn parse(text: &str) -> Result<Prompt, PluginError> {
        Prompt::parse(text).map_err(|e| PluginError::InvalidInput(e.to_string()))
    }

    /// The verdict, synchronously (the trait method wraps this).
    pub fn judge(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        let prompt = Self::parse(&request.prompt)?;
        if request.images.len() < 2 {
            return Err(PluginError::InvalidInput("compare needs at least two images".into()));
        }
        let scores: Vec<(usize, usize)> = request.images.iter().map(|img| score(&prompt, &detect(img))).collect();
        let best = scores.iter().map(|s| s.0).max().unwrap_or(0);
        let winners: Vec<usize> = (0..scores.len()).filter(|&i| scores[i].0 == best).collect();
        let total = scores[0].1.max(1);
        let runner_up = scores.iter().map(|s| s.0).filter(|&s| s < best).max().unwrap_or(best);
        let mut choice = if winners.len() == 1 { Choice::Best(winners[0]) } else { Choice::Tie };
        let mut rng = SplitMix64::from_parts(&[self.seed, request.seed, fingerprint(&request.prompt)]);
        let mut note = String::new();
        if rng.chance(self.config.position_bias) {
            choice = Choice::Best(0);
            note = " (position bias)".into();
        } else if let Choice::Best(i) = choice
            && rng.chance(self.config.flip_rate)
        {
            let other = (i + 1 + rng.below(request.images.len() as u64 - 1) as usize) % request.images.len();
            choice = Choice::Best(other);
            note = " (flipped)".into();
        }
        let letters: Vec<String> =
            scores.iter().enumerate().map(|(i, s)| format!("{}: {}/{} clauses", letter(i), s.0, s.1)).collect();
        let answer = match choice {
            Choice::Best(i) => format!("({}) is better", letter(i)),
            Choice::Tie => "tie".to_string(),
        };
        Ok(Verdict {
            choice,
            confidence: if winners.len() == 1 { (best - runner_up) as f32 / total as f32 } else { 0.0 },
            raw: format!("{answer}{note} [{}]", letters.join("; ")),
        })
    }

    /// `n` distinct variations of `text` with its structure (synchronous form of `expand`).
    pub fn variations(&self, text: &str, n: usize, seed: u64) -> Result<Vec<String>, PluginError> {
        let prompt = Self::parse(text)?;
        let mut rng = SplitMix64::from_parts(&[self.seed, seed, fingerprint(text)]);
        let mut seen = HashSet::from([prompt]);
        let mut out = vec![];
        for attempt in 0..20_000 {
            if out.len() == n {
                break;
            }
            // Small structures run out of swaps; later attempts may also add attributes.
            let add = attempt > 2_000;
            let candidate = match self.config.expansion {
                ExpansionStyle::Swap if add => vary(&vary(&prompt, &mut rng, add), &mut rng, add),
                ExpansionStyle::Swap => vary(&prompt, &mut rng, add),
                ExpansionStyle::Redraw => Prompt::random(prompt.structure(), &mut rng),
            };
            if !is_eval_prompt(&candidate) && seen.insert(candidate) {
                out.push(candidate.to_string());
            }
        }
        if out.len() < n {
            return Err(PluginError::Failed(format!("only {} distinct variations of {text:?} exist", out.len())));
        }
        Ok(out)
    }

    /// A prompt whose structure is the rarest among `recent` (synchronous form of `mutate`).
    pub fn mutation(&self, recent: &[String], seed: u64) -> String {
        let mut rng = SplitMix64::from_parts(&[self.seed, seed, recent.len() as u64]);
        let parsed: Vec<Prompt> = recent.iter().filter_map(|t| Prompt::parse(t).ok()).collect();
        let mut counts: HashMap<Structure, usize> = Structure::ALL.iter().map(|s| (*s, 0)).collect();
        for p in parsed.iter().rev().take(8) {
            *counts.entry(p.structure()).or_default() += 1;
        }
        let fewest = counts.values().copied().min().unwrap_or(0);
        let rarest: Vec<Structure> = Structure::ALL.into_iter().filter(|s| counts[s] == fewest).collect();
        let structure = *rng.pick(&rarest).expect("non-empty");
        let known: HashSet<Prompt> = parsed.into_iter().collect();
        let mut candidate = Prompt::random(structure, &mut rng);
        for attempt in 0..100_000 {
            if !is_eval_prompt(&candidate) && !known.contains(&candidate) {
                break;
            }
            // A structure with few prompts (single objects) can run out; then take any.
            candidate = if attempt < 1_000 { Prompt::random(structure, &mut rng) } else { training_prompt(&mut rng) };
        }
        candidate.to_string()
    }
}

fn letter(i: usize) -> char {
    (b'A' + (i % 26) as u8) as char
}

fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn vary_object(spec: &ObjectSpec, rng: &mut SplitMix64, add: bool, allow_large: bool) -> ObjectSpec {
    let mut out = *spec;
    match rng.below(3) {
        0 => out.shape = *rng.pick(&Shape::ALL).expect("non-empty"),
        1 if spec.colour.is_some() || add => out.colour = rng.pick(&Colour::ALL).copied(),
        2 if spec.size.is_some() || add => {
            let sizes: &[Size] = if allow_large { &Size::ALL } else { &[Size::Small] };
            out.size = rng.pick(sizes).copied();
        }
        _ => out.shape = *rng.pick(&Shape::ALL).expect("non-empty"),
    }
    out
}

/// One variation of `prompt` of the same structure: swap a noun, colour, size, count or relation.
fn vary(prompt: &Prompt, rng: &mut SplitMix64, add: bool) -> Prompt {
    match *prompt {
        Prompt::Single(a) => Prompt::Single(vary_object(&a, rng, add, true)),
        Prompt::Count(n, a) => {
            if rng.chance(0.4) {
                let n = 2 + rng.below(3) as u8;
                let a = if n > 2 && a.size == Some(Size::Large) { ObjectSpec { size: None, ..a } } else { a };
                Prompt::Count(n, a)
            } else {
                Prompt::Count(n, vary_object(&a, rng, add, n == 2))
            }
        }
        Prompt::Pair(a, b) => {
            if rng.chance(0.5) {
                Prompt::Pair(vary_object(&a, rng, add, true), b)
            } else {
                Prompt::Pair(a, vary_object(&b, rng, add, true))
            }
        }
        Prompt::Relation(a, r, b) => match rng.below(3) {
            0 => Prompt::Relation(vary_object(&a, rng, add, true), r, b),
            1 => Prompt::Relation(a, r, vary_object(&b, rng, add, true)),
            _ => Prompt::Relation(a, *rng.pick(&Relation::ALL).expect("non-empty"), b),
        },
    }
}

#[async_trait]
impl Judge for ShapesJudge {
    fn limits(&self) -> Limits {
        Limits { concurrency: 64, requests_per_minute: None }
    }

    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        self.judge(request)
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        self.variations(&request.prompt, request.n, request.seed)
    }

    async fn mutate(&self, request: &MutateRequest) -> Result<String, PluginError> {
        Ok(self.mutation(&request.recent, request.seed))
    }
}

evolve_sdk::register_plugin! {
    kind: Judge,
    name: "shapes",
    description: "Embedded world: a shape detector that checks each clause of the prompt; grammar-walking expansion and mutation.",
    config: ShapesJudgeConfig,
    build: |config: ShapesJudgeConfig, ctx: &PluginContext| ShapesJudge::new(config, ctx.seed),
}
