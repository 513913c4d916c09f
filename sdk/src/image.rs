//! Images as plugins exchange them: 8-bit RGB, row-major, no alignment padding.

/// An 8-bit RGB image. Encoding (PNG, JPEG) is the host's business; plugins see pixels.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// A pixel buffer whose length does not match its dimensions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an RGB image of {width}x{height} needs {expected} bytes, got {actual}")]
pub struct ImageError {
    /// Claimed width.
    pub width: u32,
    /// Claimed height.
    pub height: u32,
    /// `width * height * 3`.
    pub expected: usize,
    /// Length of the buffer given.
    pub actual: usize,
}

impl Image {
    /// Wraps an RGB buffer of exactly `width * height * 3` bytes.
    pub fn from_rgb(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, ImageError> {
        let expected = width as usize * height as usize * 3;
        if pixels.len() != expected {
            return Err(ImageError { width, height, expected, actual: pixels.len() });
        }
        Ok(Image { width, height, pixels })
    }

    /// A `width` x `height` image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let pixels = rgb.iter().copied().cycle().take(width as usize * height as usize * 3).collect();
        Image { width, height, pixels }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGB bytes, row by row.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Mutable RGB bytes, row by row.
    pub fn pixels_mut(&mut self) -> &mut [u8] {
        &mut self.pixels
    }

    /// Gives the buffer back.
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    /// The pixel at (`x`, `y`), or `None` outside the image.
    pub fn get(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// Sets the pixel at (`x`, `y`); writes outside the image are ignored, which keeps
    /// rasterisers free of bounds checks.
    pub fn put(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&rgb);
        }
    }
}

impl std::fmt::Debug for Image {
    // Pixel dumps are never useful in logs or assertion failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{})", self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_length() {
        let err = Image::from_rgb(2, 2, vec![0; 11]).unwrap_err();
        assert_eq!(err.expected, 12);
        assert!(Image::from_rgb(2, 2, vec![0; 12]).is_ok());
    }

    #[test]
    fn get_and_put_respect_bounds() {
        let mut img = Image::filled(3, 2, [1, 2, 3]);
        img.put(2, 1, [9, 9, 9]);
        img.put(3, 0, [7, 7, 7]);
        assert_eq!(img.get(2, 1), Some([9, 9, 9]));
        assert_eq!(img.get(0, 0), Some([1, 2, 3]));
        assert_eq!(img.get(3, 0), None);
    }
}
