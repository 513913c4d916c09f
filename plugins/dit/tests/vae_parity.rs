//! The KL autoencoder against diffusers' `AutoencoderKL`: fixtures made by
//! `tests/fixtures/make.py` (tiny random weights, committed).

mod common;

use common::{fixtures, relative_error};
use evolve_dit::candle_core::{DType, Device};
use evolve_dit::latent::LatentSpace;

#[test]
fn vae_encode_and_decode_match_diffusers() {
    let reference =
        evolve_dit::candle_core::safetensors::load(fixtures().join("reference/vae.safetensors"), &Device::Cpu).unwrap();
    let latent = LatentSpace::load(&fixtures().join("tiny-pixart/vae"), DType::F32, &Device::Cpu, None).unwrap();
    assert_eq!((latent.channels(), latent.downscale()), (4, 2));
    let mean = latent.vae().encode_mean(&reference["images"]).unwrap();
    let encode_error = relative_error(&mean, &reference["mean"]);
    let decoded = latent.vae().decode(&reference["mean"]).unwrap();
    let decode_error = relative_error(&decoded, &reference["decoded"]);
    println!("VAE encode: max relative error {encode_error:.2e}; decode: {decode_error:.2e}");
    assert!(encode_error < 1e-4, "encode differs: {encode_error}");
    assert!(decode_error < 1e-4, "decode differs: {decode_error}");
}

#[test]
fn latents_are_scaled_cached_per_image_and_decoded_back() {
    let latent = LatentSpace::load(&fixtures().join("tiny-pixart/vae"), DType::F32, &Device::Cpu, None).unwrap();
    let image = evolve_sdk::Image::from_rgb(16, 16, (0..16 * 16 * 3).map(|i| (i * 7 % 256) as u8).collect()).unwrap();
    let latents = latent.encode(std::slice::from_ref(&image), (16, 16)).unwrap();
    assert_eq!(latents.dims(), [1, 4, 8, 8]);
    let x = evolve_dit::pixels::to_tensor(std::slice::from_ref(&image), (16, 16), &Device::Cpu, DType::F32).unwrap();
    let scaled = (latent.vae().encode_mean(&x).unwrap() * latent.vae().config().scaling_factor).unwrap();
    assert!(relative_error(&latents, &scaled) < 1e-6);
    assert_eq!(
        relative_error(&latent.encode(&[image], (16, 16)).unwrap(), &latents),
        0.0,
        "a cache hit is the same latent"
    );
    assert_eq!(latent.decode(&latents).unwrap().dims(), [1, 3, 16, 16]);
}
