//! The judge's prompts. Defaults follow EvolveDirector's (from its code); every one can be
//! replaced in the experiment file. Placeholders: `{prompt}`, `{n}`, `{recent}`, `{layout}`.

/// Discrimination: which image matches the description.
pub const COMPARE: &str = "{layout} Which image aligns better with the text description \"{prompt}\"? \
Answer with exactly one of: (A) is better / (B) is better.";

/// How the two images are laid out, for `{layout}` with two separate images.
pub const LAYOUT_TWO: &str = "You are shown two images: the first is (A), the second is (B).";

/// How the two images are laid out, for `{layout}` with one side-by-side image.
pub const LAYOUT_SIDE_BY_SIDE: &str =
    "You are shown one picture made of two images side by side: the left half is (A), the right half is (B).";

/// Expansion: variations of a prompt the base model still gets wrong.
pub const EXPAND: &str = "Here is a text description of an image: \"{prompt}\". Replace the nouns, colours, \
counts or positions in it to generate {n} more diverse text descriptions of the same kind. Answer with a JSON \
list of {n} strings and nothing else.";

/// Mutation: something new, after a prompt was mastered.
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
