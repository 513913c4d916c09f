//! The T5 caption encoder against transformers' `T5EncoderModel` and `PreTrainedTokenizerFast`:
//! fixtures made by `tests/fixtures/make.py` (tiny random weights, committed).

mod common;

use common::{fixtures, relative_error};
use evolve_dit::candle_core::{DType, Device, Tensor};
use evolve_dit::t5_text::{PIXART_TOKENS, T5TextEncoder, T5Tokenizer};
use evolve_dit::text::TextEncoder;

fn reference() -> (Vec<String>, std::collections::HashMap<String, Tensor>) {
    let json = std::fs::read_to_string(fixtures().join("reference/t5.json")).unwrap();
    let prompts: Vec<String> = serde_json::from_str::<serde_json::Value>(&json).unwrap()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let tensors =
        evolve_dit::candle_core::safetensors::load(fixtures().join("reference/t5.safetensors"), &Device::Cpu).unwrap();
    (prompts, tensors)
}

#[test]
fn the_tokenizer_pads_truncates_and_masks_as_transformers() {
    let (prompts, reference) = reference();
    let tokenizer =
        T5Tokenizer::from_file(&fixtures().join("tiny-pixart/tokenizer/tokenizer.json"), PIXART_TOKENS).unwrap();
    let want_ids = reference["ids"].to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap();
    let want_mask = reference["mask"].to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let (ids, mask) = tokenizer.encode(prompt).unwrap();
        assert_eq!(ids, want_ids[i], "ids of {prompt:?}");
        assert_eq!(mask, want_mask[i], "mask of {prompt:?}");
    }
}

#[test]
fn t5_hidden_states_match_transformers() {
    let (prompts, reference) = reference();
    let encoder = T5TextEncoder::load(
        &fixtures().join("tiny-pixart/text_encoder"),
        PIXART_TOKENS,
        DType::F32,
        &Device::Cpu,
        None,
    )
    .unwrap();
    let caption = encoder.encode(&prompts).unwrap();
    let error = relative_error(&caption.features, &reference["hidden"]);
    println!("T5 hidden states: max relative error {error:.2e}");
    assert!(error < 1e-4, "T5 hidden states differ: relative error {error}");
    let mask = caption.mask.unwrap().to_dtype(DType::I64).unwrap();
    assert_eq!(mask.to_vec2::<i64>().unwrap(), reference["mask"].to_vec2::<i64>().unwrap());
    // Cached: the second encoding is the first.
    let again = encoder.encode(&prompts[..1]).unwrap();
    assert_eq!(relative_error(&again.features, &caption.features.narrow(0, 0, 1).unwrap()), 0.0);
}

#[test]
fn a_folder_without_a_tokenizer_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("tiny-pixart/text_encoder").join(file), dir.path().join(file)).unwrap();
    }
    let error =
        T5TextEncoder::load(dir.path(), PIXART_TOKENS, DType::F32, &Device::Cpu, None).err().unwrap().to_string();
    assert!(error.contains("tokenizer.json") && error.contains(&dir.path().display().to_string()), "{error}");
}
