//! Captions to features: a tokenizer that accepts any English prompt and a small trainable
//! transformer encoder, behind [`TextEncoder`] so that a frozen T5
//! ([`T5TextEncoder`](crate::t5_text::T5TextEncoder)) can take its place.

use super::layers::{AffineNorm, Attention, FeedForward};
use super::params::normal;
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;

/// Caption features and which of their tokens are real.
#[derive(Debug, Clone)]
pub struct Caption {
    /// `(B, caption_len, caption_channels)`.
    pub features: Tensor,
    /// `(B, caption_len)`, 1 for a token and 0 for padding the cross-attention must never
    /// attend to; `None` when every token counts.
    pub mask: Option<Tensor>,
}

impl Caption {
    /// The same captions with their graph history dropped.
    pub fn detach(&self) -> Caption {
        Caption { features: self.features.detach(), mask: self.mask.as_ref().map(Tensor::detach) }
    }
}

/// Turns prompts into caption features.
pub trait TextEncoder: Send + Sync {
    /// Encodes `prompts`.
    fn encode(&self, prompts: &[String]) -> Result<Caption>;
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
    /// An encoder producing `(B, max_len, dim)` features, parameters under `vb` (the model
    /// puts them under `text_encoder.`).
    pub fn new(vb: VarBuilder, vocab: usize, max_len: usize, dim: usize, heads: usize) -> Result<Self> {
        let layer = vb.pp("layers.0");
        Ok(SmallTextEncoder {
            tokenizer: HashTokenizer::new(vocab, max_len),
            token_embedding: vb.get_with_hints((vocab, dim), "token_embedding.weight", normal(0.02))?,
            position_embedding: vb.get_with_hints((max_len, dim), "position_embedding.weight", normal(0.01))?,
            norm1: AffineNorm::new(layer.pp("norm1"), dim, 1e-5)?,
            attn: Attention::new(layer.pp("attn"), dim, dim, heads, false, false)?,
            norm2: AffineNorm::new(layer.pp("norm2"), dim, 1e-5)?,
            ff: FeedForward::new(layer.pp("ff"), dim, 4)?,
            final_norm: AffineNorm::new(vb.pp("final_norm"), dim, 1e-5)?,
            device: vb.device().clone(),
        })
    }
}

impl TextEncoder for SmallTextEncoder {
    fn encode(&self, prompts: &[String]) -> Result<Caption> {
        let ids: Vec<u32> = prompts.iter().flat_map(|p| self.tokenizer.encode(p)).collect();
        let (b, l) = (prompts.len(), self.tokenizer.max_len);
        let ids = Tensor::from_vec(ids, b * l, &self.device)?;
        let x = self.token_embedding.embedding(&ids)?.reshape((b, l, ()))?;
        let x = x.broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let h = self.norm1.forward(&x)?;
        let x = (&x + self.attn.forward(&h, &h, None)?)?;
        let x = (&x + self.ff.forward(&self.norm2.forward(&x)?)?)?;
        Ok(Caption { features: self.final_norm.forward(&x)?, mask: None })
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
