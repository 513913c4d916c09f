//! Images to tensors and back: RGB bytes ↔ `(B, 3, H, W)` in [-1, 1].

use candle_core::{DType, Device, Result, Tensor};
use evolve_sdk::Image;

fn error(message: String) -> candle_core::Error {
    candle_core::Error::Msg(message)
}

/// `images`, each `height`×`width`, as one `(B, 3, height, width)` tensor in [-1, 1].
pub fn to_tensor(images: &[Image], (height, width): (usize, usize), device: &Device, dtype: DType) -> Result<Tensor> {
    let mut data = Vec::with_capacity(images.len() * 3 * height * width);
    for image in images {
        if image.width() as usize != width || image.height() as usize != height {
            return Err(error(format!(
                "image is {}x{}, the model takes {width}x{height} here",
                image.width(),
                image.height()
            )));
        }
        for c in 0..3 {
            data.extend(image.pixels().iter().skip(c).step_by(3).map(|&v| v as f32 / 127.5 - 1.0));
        }
    }
    Tensor::from_vec(data, (images.len(), 3, height, width), device)?.to_dtype(dtype)
}

/// `(B, 3, H, W)` in [-1, 1] (clamped) as images.
pub fn to_images(x: &Tensor) -> Result<Vec<Image>> {
    let (b, _, h, w) = x.dims4()?;
    let values: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let plane = h * w;
    (0..b)
        .map(|i| {
            let base = i * 3 * plane;
            let pixels = (0..plane)
                .flat_map(|p| (0..3).map(move |c| base + c * plane + p))
                .map(|j| ((values[j] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
                .collect();
            Image::from_rgb(w as u32, h as u32, pixels).map_err(|e| error(e.to_string()))
        })
        .collect()
}
