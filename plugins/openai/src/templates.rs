//! The judge's prompts, in two styles (`prompt_style`), each replaceable in the experiment file.
//! Placeholders: `{prompt}`, `{n}`, `{recent}`, `{layout}`, `{length_hint}`.
//!
//! `paper` (the default) is EvolveDirector's wording, from its released code
//! (showlab/EvolveDirector, `VLM/vlm_script.py`: `quary_dis`, `quary_expan`, `quary_mut` and
//! `enhanced_prompts`). There, expansion and mutation are asked in the conversation of the
//! comparison, with its image; evolve's judge requests do not carry that conversation yet, so
//! the mutation is told the recent prompts it must differ from instead of "the previous images",
//! and a comparison of two separate images is told which is (A) and which (B).
//! `evolve` is this project's earlier paraphrase.

/// Which set of prompts a judge asks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, evolve_sdk::schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(crate = "evolve_sdk::schemars")]
pub enum PromptStyle {
    /// EvolveDirector's released wording.
    #[default]
    Paper,
    /// evolve's paraphrase.
    Evolve,
}

/// The three prompts of a style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Templates {
    /// Discrimination: which image matches the description.
    pub compare: &'static str,
    /// Expansion: variations of a prompt the base model still gets wrong.
    pub expand: &'static str,
    /// Mutation: something new, after a prompt was mastered.
    pub mutate: &'static str,
}

impl PromptStyle {
    /// The style's prompts.
    pub fn templates(self) -> Templates {
        match self {
            PromptStyle::Paper => Templates { compare: PAPER_COMPARE, expand: PAPER_EXPAND, mutate: PAPER_MUTATE },
            PromptStyle::Evolve => Templates { compare: COMPARE, expand: EXPAND, mutate: MUTATE },
        }
    }
}

/// The paper's `quary_dis`, after the layout.
pub const PAPER_COMPARE: &str = "{layout} In these two images (A) and (B), which one aligns better with the text \
description \"{prompt}\"? You have two options: <(A) is better>, <(B) is better>. Simply state your choice, no need \
for a detailed explanation.";

/// The paper's `quary_expan`.
pub const PAPER_EXPAND: &str = "Replace the nouns in the text description: \"{prompt}\" with other kinds of objects, \
characters, backgrounds, names, colors, or styles to generate {n} more diverse text descriptions. Arrange them in \
the format of a list [\"Text description 1\", \"Text description 2\", ...].";

/// The paper's `quary_mut`, with the recent prompts standing in for the conversation.
pub const PAPER_MUTATE: &str = "Previous text descriptions: {recent}. Now, exercise your imagination to generate one \
new text description for visual content that is completely unrelated to the previous images. It should have a \
completely different structure from the previous descriptions. {length_hint} Arrange it in the format of a list \
just like [\"xxxxx\"].";

/// The paper's `enhanced_prompts`: one is drawn at random for each mutation, so that new prompts
/// come in every length and level of detail.
pub const LENGTH_HINTS: [&str; 4] = [
    "It should be rough and short.",
    "It should contain less than 30 words and be highly detailed.",
    "It should contain over 30 words with different granular levels of detail.",
    "It should contain over 50 words with a lot of details.",
];

/// evolve's comparison.
pub const COMPARE: &str = "{layout} Which image aligns better with the text description \"{prompt}\"? \
Answer with exactly one of: (A) is better / (B) is better.";

/// How the two images are laid out, for `{layout}` with two separate images.
pub const LAYOUT_TWO: &str = "You are shown two images: the first is (A), the second is (B).";

/// How the two images are laid out, for `{layout}` with one side-by-side image.
pub const LAYOUT_SIDE_BY_SIDE: &str =
    "You are shown one picture made of two images side by side: the left half is (A), the right half is (B).";

/// evolve's expansion.
pub const EXPAND: &str = "Here is a text description of an image: \"{prompt}\". Replace the nouns, colours, \
counts or positions in it to generate {n} more diverse text descriptions of the same kind. Answer with a JSON \
list of {n} strings and nothing else.";

/// evolve's mutation.
pub const MUTATE: &str = "Previous text descriptions: {recent}. Write one new text description of an image that \
is completely unrelated to them, with a completely different structure. Answer with the description only, on \
one line.";

/// Fills `{key}` placeholders in `template`.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_style_asks_in_the_released_codes_words() {
        let t = PromptStyle::default().templates();
        let compare = fill(t.compare, &[("layout", LAYOUT_TWO), ("prompt", "a red circle")]);
        assert!(compare.ends_with(
            "In these two images (A) and (B), which one aligns better with the text description \"a red circle\"? \
             You have two options: <(A) is better>, <(B) is better>. Simply state your choice, no need for a detailed \
             explanation."
        ));
        let expand = fill(t.expand, &[("prompt", "a red circle"), ("n", "3")]);
        assert!(expand.contains("to generate 3 more diverse text descriptions"), "{expand}");
        let mutate = fill(t.mutate, &[("recent", "[\"a red circle\"]"), ("length_hint", LENGTH_HINTS[1])]);
        assert!(mutate.contains("completely unrelated to the previous images"), "{mutate}");
        assert!(mutate.contains("less than 30 words and be highly detailed."), "{mutate}");
        assert!(!mutate.contains('{'), "every placeholder filled: {mutate}");
    }
}
