//! Image and text encodings API plugins need (feature `codec`): image decoding that refuses
//! decompression bombs, PNG encoding, base64. Separate from `http` so that an external plugin,
//! which reaches the network through the host, can decode replies without an HTTP client.

use crate::{Image, PluginError};

/// Largest decoded image side accepted.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Decodes a PNG, JPEG or WebP image, refusing images larger than [`MAX_IMAGE_SIDE`] a side
/// before decoding them (a small file can claim a huge canvas).
pub fn decode_image(bytes: &[u8]) -> Result<Image, PluginError> {
    decode_image_within(bytes, MAX_IMAGE_SIDE)
}

/// [`decode_image`] refusing images wider or taller than `max_side` before decoding them (a
/// server that expects small images keeps a request's memory small).
pub fn decode_image_within(bytes: &[u8], max_side: u32) -> Result<Image, PluginError> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PluginError::Failed(format!("image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| PluginError::Failed(format!("image: {e}")))?.to_rgb8();
    let (w, h) = decoded.dimensions();
    Image::from_rgb(w, h, decoded.into_raw()).map_err(|e| PluginError::Failed(format!("image: {e}")))
}

/// Encodes an image as PNG (for sending to a vision model).
pub fn encode_png(image: &Image) -> Result<Vec<u8>, PluginError> {
    let buffer = image::RgbImage::from_raw(image.width(), image.height(), image.pixels().to_vec())
        .ok_or_else(|| PluginError::Failed("image buffer has the wrong size".into()))?;
    let mut out = std::io::Cursor::new(vec![]);
    buffer.write_to(&mut out, image::ImageFormat::Png).map_err(|e| PluginError::Failed(format!("png: {e}")))?;
    Ok(out.into_inner())
}

/// `data:image/png;base64,...` for an image.
pub fn data_url(image: &Image) -> Result<String, PluginError> {
    Ok(format!("data:image/png;base64,{}", base64_encode(&encode_png(image)?)))
}

/// Standard base64 of `bytes`.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64 (as `b64_json` fields carry images).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, PluginError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| PluginError::Failed(format!("bad base64 image: {e}")))
}
