//! Captions to features: a tokenizer that accepts any English prompt and a small trainable
//! transformer encoder, behind [`TextEncoder`] so that a frozen T5 can take its place.

use super::layers::{AffineNorm, Attention, FeedForward};
use super::params::{Init, ParamStore};
use candle_core::{Device, Result, Tensor};

/// Turns prompts into caption features `(B, caption_len, caption_channels)`.
pub trait TextEncoder {
    /// Encodes `prompts`.
    fn encode(&self, prompts: &[String]) -> Result<Tensor>;
}

/// Common words that get ids of their own (no hash collisions among them): function words,
/// numbers, colours, sizes, shapes and relations.
const KNOWN_WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "of",
    "and",
    "with",
    "to",
    "in",
    "on",
    "at",
    "next",
    "left",
    "right",
    "above",
    "below",
    "behind",
    "front",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "small",
    "large",
    "big",
    "tiny",
    "red",
    "orange",
    "yellow",
    "green",
    "cyan",
    "blue",
    "purple",
    "pink",
    "white",
    "black",
    "gray",
    "brown",
    "circle",
    "circles",
    "square",
    "squares",
    "triangle",
    "triangles",
    "diamond",
    "diamonds",
    "star",
    "stars",
    "cross",
    "crosses",
    "photo",
];

/// Word-level tokenizer: lower-cased words from a short list of common words get their own
/// ids; every other word (or number) is hashed into the remaining buckets, so any English text
/// tokenises with no vocabulary file. 0 is padding. Prompts longer than `max_len` words are
/// truncated.
///
/// Written by hand instead of with `tokenizers`: the embedded default needs no trained
/// vocabulary, and a frozen T5 will bring its own tokenizer through [`TextEncoder`].
#[derive(Debug, Clone)]
pub struct HashTokenizer {
    vocab: usize,
    max_len: usize,
}

impl HashTokenizer {
    /// A tokenizer into `vocab` ids and `max_len` positions.
    pub fn new(vocab: usize, max_len: usize) -> Self {
        HashTokenizer { vocab: vocab.max(KNOWN_WORDS.len() + 2), max_len }
    }

    /// Token ids of `text`, padded with 0 to `max_len`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(self.max_len)
            .map(|w| {
                let w = w.to_lowercase();
                if let Some(i) = KNOWN_WORDS.iter().position(|k| *k == w) {
                    return 1 + i as u32;
                }
                let h = w.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
                let known = KNOWN_WORDS.len() as u64;
                (1 + known + h % (self.vocab as u64 - 1 - known)) as u32
            })
            .collect();
        ids.resize(self.max_len, 0);
        ids
    }
}

/// A one-layer pre-norm transformer over hashed word embeddings.
pub struct SmallTextEncoder {
    tokenizer: HashTokenizer,
    token_embedding: Tensor,
    position_embedding: Tensor,
    norm1: AffineNorm,
    attn: Attention,
    norm2: AffineNorm,
    ff: FeedForward,
    final_norm: AffineNorm,
    device: Device,
}

impl SmallTextEncoder {
    /// An encoder producing `(B, max_len, dim)` features, parameters under `text_encoder.`.
    pub fn new(p: &mut ParamStore, vocab: usize, max_len: usize, dim: usize, heads: usize) -> Result<Self> {
        let n = "text_encoder";
        Ok(SmallTextEncoder {
            tokenizer: HashTokenizer::new(vocab, max_len),
            token_embedding: p.get(&format!("{n}.token_embedding.weight"), &[vocab, dim], Init::Normal(0.02))?,
            position_embedding: p.get(
                &format!("{n}.position_embedding.weight"),
                &[max_len, dim],
                Init::Normal(0.01),
            )?,
            norm1: AffineNorm::new(p, &format!("{n}.layers.0.norm1"), dim, 1e-5)?,
            attn: Attention::new(p, &format!("{n}.layers.0.attn"), dim, dim, heads, false, false)?,
            norm2: AffineNorm::new(p, &format!("{n}.layers.0.norm2"), dim, 1e-5)?,
            ff: FeedForward::new(p, &format!("{n}.layers.0.ff"), dim, 4)?,
            final_norm: AffineNorm::new(p, &format!("{n}.final_norm"), dim, 1e-5)?,
            device: p.device().clone(),
        })
    }
}

impl TextEncoder for SmallTextEncoder {
    fn encode(&self, prompts: &[String]) -> Result<Tensor> {
        let ids: Vec<u32> = prompts.iter().flat_map(|p| self.tokenizer.encode(p)).collect();
        let (b, l) = (prompts.len(), self.tokenizer.max_len);
        let ids = Tensor::from_vec(ids, b * l, &self.device)?;
        let x = self.token_embedding.embedding(&ids)?.reshape((b, l, ()))?;
        let x = x.broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let h = self.norm1.forward(&x)?;
        let x = (&x + self.attn.forward(&h, &h)?)?;
        let x = (&x + self.ff.forward(&self.norm2.forward(&x)?)?)?;
        self.final_norm.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_any_text_and_separates_the_shapes_vocabulary() {
        let t = HashTokenizer::new(4096, 16);
        assert_eq!(t.encode("A red circle").len(), 16);
        assert_eq!(t.encode("A red circle")[..3], t.encode("a RED circle!")[..3]);
        assert_eq!(t.encode("")[0], 0);
        let words = "a an small large red yellow green cyan blue purple circle circles square squares \
                     triangle triangles diamond diamonds two three four and to the left right of above below";
        let mut ids: Vec<u32> = words.split(' ').filter(|w| !w.is_empty()).map(|w| t.encode(w)[0]).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "two grammar words share a token id");
    }
}
