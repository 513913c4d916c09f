//! The prompt grammar of the shapes world, both ways: [`Prompt::to_string`] writes natural
//! English, [`Prompt::parse`] reads it back, and `parse(p.to_string()) == p` for every prompt.
//!
//! ```text
//! prompt    := object                          "a red circle", "a small square"
//!            | count object-plural             "three blue triangles"
//!            | object "and" object             "a red circle and a blue square"
//!            | object relation object          "a circle to the left of a diamond"
//! object    := article [size] [colour] shape
//! relation  := "to the left of" | "to the right of" | "above" | "below"
//! ```

use evolve_sdk::SplitMix64;
use std::fmt;

/// The shapes the world can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// A disc.
    Circle,
    /// An axis-aligned filled square.
    Square,
    /// An upward-pointing filled triangle.
    Triangle,
    /// A square standing on a corner.
    Diamond,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 4] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Diamond];

    /// The singular noun.
    pub fn noun(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
        }
    }

    /// The plural noun.
    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Diamond => "diamonds",
        }
    }

    fn from_word(word: &str) -> Option<(Shape, bool)> {
        Shape::ALL.into_iter().find_map(|s| {
            if word == s.noun() {
                Some((s, false))
            } else if word == s.plural() {
                Some((s, true))
            } else {
                None
            }
        })
    }
}

/// The colours the world can paint, 45-60 degrees of hue apart so that a detector can tell
/// them apart after blur, noise and colour shifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    /// Hue 0.
    Red,
    /// Hue ~53.
    Yellow,
    /// Hue ~130.
    Green,
    /// Hue ~184.
    Cyan,
    /// Hue ~229.
    Blue,
    /// Hue ~283.
    Purple,
}

impl Colour {
    /// Every colour.
    pub const ALL: [Colour; 6] =
        [Colour::Red, Colour::Yellow, Colour::Green, Colour::Cyan, Colour::Blue, Colour::Purple];

    /// The adjective.
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Yellow => "yellow",
            Colour::Green => "green",
            Colour::Cyan => "cyan",
            Colour::Blue => "blue",
            Colour::Purple => "purple",
        }
    }

    /// The colour the teacher paints (before jitter).
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [215, 45, 45],
            Colour::Yellow => [225, 205, 40],
            Colour::Green => [50, 170, 70],
            Colour::Cyan => [40, 190, 200],
            Colour::Blue => [50, 80, 215],
            Colour::Purple => [160, 60, 200],
        }
    }

    fn from_word(word: &str) -> Option<Colour> {
        Colour::ALL.into_iter().find(|c| c.word() == word)
    }
}

/// Size adjectives. An object without one may be any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// Equivalent radius about 1/8 of the image side.
    Small,
    /// Equivalent radius about 1/4 of the image side.
    Large,
}

impl Size {
    /// Both sizes.
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    /// The adjective.
    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    fn from_word(word: &str) -> Option<Size> {
        Size::ALL.into_iter().find(|s| s.word() == word)
    }
}

/// Where one object is relative to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    /// Smaller x.
    LeftOf,
    /// Larger x.
    RightOf,
    /// Smaller y (images grow downwards).
    Above,
    /// Larger y.
    Below,
}

impl Relation {
    /// Every relation.
    pub const ALL: [Relation; 4] = [Relation::LeftOf, Relation::RightOf, Relation::Above, Relation::Below];

    /// The English phrase.
    pub fn phrase(self) -> &'static str {
        match self {
            Relation::LeftOf => "to the left of",
            Relation::RightOf => "to the right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }
}

/// An object as a prompt describes it: a shape, and optionally a colour and a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectSpec {
    /// The shape.
    pub shape: Shape,
    /// The colour, if the prompt says.
    pub colour: Option<Colour>,
    /// The size, if the prompt says.
    pub size: Option<Size>,
}

impl ObjectSpec {
    fn words(&self, plural: bool) -> String {
        let mut words = vec![];
        if let Some(s) = self.size {
            words.push(s.word());
        }
        if let Some(c) = self.colour {
            words.push(c.word());
        }
        words.push(if plural { self.shape.plural() } else { self.shape.noun() });
        words.join(" ")
    }

    fn with_article(&self) -> String {
        let words = self.words(false);
        let article = if words.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {words}")
    }
}

/// A prompt of the shapes grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prompt {
    /// One object.
    Single(ObjectSpec),
    /// `count` (2-4) identical objects.
    Count(u8, ObjectSpec),
    /// Two objects, in no stated relation.
    Pair(ObjectSpec, ObjectSpec),
    /// Two objects in a spatial relation: the first is `relation` the second.
    Relation(ObjectSpec, Relation, ObjectSpec),
}

/// The four sentence structures, for mutation (which wants a structure unlike recent ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Structure {
    /// [`Prompt::Single`].
    Single,
    /// [`Prompt::Count`].
    Count,
    /// [`Prompt::Pair`].
    Pair,
    /// [`Prompt::Relation`].
    Relation,
}

impl Structure {
    /// Every structure.
    pub const ALL: [Structure; 4] = [Structure::Single, Structure::Count, Structure::Pair, Structure::Relation];
}

const NUMBERS: [&str; 5] = ["zero", "one", "two", "three", "four"];

/// Why a text is not a prompt of the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The text.
    pub text: String,
    /// What was expected where parsing stopped.
    pub expected: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a shapes prompt: {:?} (expected {})", self.text, self.expected)
    }
}

impl std::error::Error for ParseError {}

impl Prompt {
    /// Parses natural English of the grammar; case, surrounding space and a final full stop are
    /// ignored, as is a leading "a photo of".
    pub fn parse(text: &str) -> Result<Prompt, ParseError> {
        let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut words: Vec<&str> = lower.split_whitespace().collect();
        if words.starts_with(&["a", "photo", "of"]) {
            words.drain(..3);
        }
        let err = |expected: &str| ParseError { text: text.to_string(), expected: expected.to_string() };
        let mut p = Parser { words: &words, at: 0 };
        let prompt = if let Some(n) = p.peek().and_then(|w| NUMBERS.iter().position(|x| *x == w)) {
            if !(2..=4).contains(&n) {
                return Err(err("a count from two to four"));
            }
            p.at += 1;
            let (spec, plural) = p.object_words().ok_or_else(|| err("a plural shape"))?;
            if !plural {
                return Err(err("a plural noun after a count"));
            }
            Prompt::Count(n as u8, spec)
        } else {
            let first = p.object().ok_or_else(|| err("\"a\" or \"an\", then [size] [colour] shape"))?;
            if p.done() {
                Prompt::Single(first)
            } else if p.eat(&["and"]) {
                Prompt::Pair(first, p.object().ok_or_else(|| err("a second object after \"and\""))?)
            } else {
                let relation = Relation::ALL
                    .into_iter()
                    .find(|r| p.eat(&r.phrase().split(' ').collect::<Vec<_>>()))
                    .ok_or_else(|| err("\"and\", \"to the left of\", \"to the right of\", \"above\" or \"below\""))?;
                Prompt::Relation(first, relation, p.object().ok_or_else(|| err("a second object"))?)
            }
        };
        if !p.done() {
            return Err(err("the end of the prompt"));
        }
        Ok(prompt)
    }

    /// The sentence structure.
    pub fn structure(&self) -> Structure {
        match self {
            Prompt::Single(_) => Structure::Single,
            Prompt::Count(..) => Structure::Count,
            Prompt::Pair(..) => Structure::Pair,
            Prompt::Relation(..) => Structure::Relation,
        }
    }

    /// The objects the prompt names, with multiplicity (a count of three gives three).
    pub fn objects(&self) -> Vec<ObjectSpec> {
        match *self {
            Prompt::Single(a) => vec![a],
            Prompt::Count(n, a) => vec![a; n as usize],
            Prompt::Pair(a, b) | Prompt::Relation(a, _, b) => vec![a, b],
        }
    }

    /// A random prompt of `structure`, drawn uniformly over its parts.
    pub fn random(structure: Structure, rng: &mut SplitMix64) -> Prompt {
        match structure {
            Structure::Single => Prompt::Single(random_object(rng, true)),
            Structure::Count => {
                let n = 2 + rng.below(3) as u8;
                let mut spec = random_object(rng, n == 2);
                // Three or four large objects do not fit side by side in the frame.
                if n > 2 && spec.size == Some(Size::Large) {
                    spec.size = None;
                }
                Prompt::Count(n, spec)
            }
            Structure::Pair => Prompt::Pair(random_object(rng, true), random_object(rng, true)),
            Structure::Relation => {
                let relation = *rng.pick(&Relation::ALL).expect("non-empty");
                Prompt::Relation(random_object(rng, true), relation, random_object(rng, true))
            }
        }
    }

    /// A random prompt of a random structure.
    pub fn random_any(rng: &mut SplitMix64) -> Prompt {
        Prompt::random(*rng.pick(&Structure::ALL).expect("non-empty"), rng)
    }
}

/// A random object; colour and size each present with probability 1/2 and 1/3.
pub fn random_object(rng: &mut SplitMix64, allow_large: bool) -> ObjectSpec {
    let shape = *rng.pick(&Shape::ALL).expect("non-empty");
    let colour = if rng.chance(0.6) { rng.pick(&Colour::ALL).copied() } else { None };
    let size = match rng.below(3) {
        0 => Some(Size::Small),
        1 if allow_large => Some(Size::Large),
        _ => None,
    };
    ObjectSpec { shape, colour, size }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prompt::Single(a) => f.write_str(&a.with_article()),
            Prompt::Count(n, a) => write!(f, "{} {}", NUMBERS[*n as usize], a.words(true)),
            Prompt::Pair(a, b) => write!(f, "{} and {}", a.with_article(), b.with_article()),
            Prompt::Relation(a, r, b) => write!(f, "{} {} {}", a.with_article(), r.phrase(), b.with_article()),
        }
    }
}

struct Parser<'a> {
    words: &'a [&'a str],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at == self.words.len()
    }

    fn eat(&mut self, phrase: &[&str]) -> bool {
        if self.words[self.at.min(self.words.len())..].starts_with(phrase) {
            self.at += phrase.len();
            true
        } else {
            false
        }
    }

    /// `a|an [size] [colour] shape` (singular).
    fn object(&mut self) -> Option<ObjectSpec> {
        let start = self.at;
        let article = self.peek()?;
        if article != "a" && article != "an" {
            return None;
        }
        self.at += 1;
        match self.object_words() {
            Some((spec, false)) => {
                let expected = if spec.with_article().starts_with("an ") { "an" } else { "a" };
                if article == expected {
                    return Some(spec);
                }
                self.at = start;
                None
            }
            _ => {
                self.at = start;
                None
            }
        }
    }

    /// `[size] [colour] shape(s)`; returns whether the noun was plural.
    fn object_words(&mut self) -> Option<(ObjectSpec, bool)> {
        let size = self.peek().and_then(Size::from_word);
        if size.is_some() {
            self.at += 1;
        }
        let colour = self.peek().and_then(Colour::from_word);
        if colour.is_some() {
            self.at += 1;
        }
        let (shape, plural) = Shape::from_word(self.peek()?)?;
        self.at += 1;
        Some((ObjectSpec { shape, colour, size }, plural))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_natural_english() {
        let p = Prompt::parse("A small red circle to the left of an orange-free large blue square").err();
        assert!(p.is_some(), "unknown words are refused");
        assert_eq!(
            Prompt::parse("a small red circle to the left of a large blue square").unwrap().to_string(),
            "a small red circle to the left of a large blue square"
        );
        assert_eq!(Prompt::parse("Three purple diamonds.").unwrap().to_string(), "three purple diamonds");
        assert_eq!(Prompt::parse("a photo of a triangle").unwrap(), Prompt::parse("a triangle").unwrap());
        assert!(Prompt::parse("an red circle").is_err(), "article agreement");
        assert!(Prompt::parse("two circle").is_err());
        assert!(Prompt::parse("five circles").is_err());
        assert!(Prompt::parse("a circle and").is_err());
        assert!(Prompt::parse("").is_err());
    }

    proptest! {
        #[test]
        fn parse_inverts_display(seed in any::<u64>()) {
            let mut rng = SplitMix64::new(seed);
            let prompt = Prompt::random_any(&mut rng);
            prop_assert_eq!(Prompt::parse(&prompt.to_string()).unwrap(), prompt);
        }

        #[test]
        fn parse_never_panics(text in "[a-z ]{0,60}") {
            let _ = Prompt::parse(&text);
        }
    }
}
