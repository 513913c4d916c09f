//! Aspect-ratio buckets, as PixArt-alpha trains its multi-aspect models: every training image is
//! centre-cropped to the aspect ratio of the nearest bucket and resized to that bucket's size,
//! never stretched; a batch trains each bucket's images at their own token grid.
//!
//! The buckets of a model trained at `side`×`side` pixels have about `side`² pixels each, both
//! sides multiples of the pixel size of one token (patch × VAE downscale), and aspect ratios
//! (height / width) from 1/4 to 4, like PixArt's `ASPECT_RATIO_1024_BIN`. They are generated
//! rather than copied from PixArt's tables, so any training size gets its own.

use evolve_sdk::Image;

/// Widest and tallest aspect ratio of a bucket (height / width and width / height).
const MAX_RATIO: f64 = 4.0;

/// One bucket: the pixel size its images train at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl Bucket {
    /// The square bucket of `side` pixels.
    pub fn square(side: usize) -> Bucket {
        Bucket { height: side, width: side }
    }

    fn log_ratio(self) -> f64 {
        (self.height as f64 / self.width as f64).ln()
    }
}

/// The buckets of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets(Vec<Bucket>);

impl Buckets {
    /// Buckets of about `side`² pixels whose sides are multiples of `multiple` (the pixels of one
    /// token); `side` must itself be a multiple, so the square bucket is exactly `side`².
    pub fn new(side: usize, multiple: usize) -> Buckets {
        let multiple = multiple.max(1);
        let area = (side * side) as f64;
        let mut buckets = vec![Bucket::square(side)];
        // Landscape buckets from the flattest up, each with its portrait transpose.
        for k in 1..=side / multiple {
            let height = k * multiple;
            let width = ((area / height as f64 / multiple as f64).round() as usize).max(1) * multiple;
            let bucket = Bucket { height, width };
            if width >= height && bucket.log_ratio().abs() <= MAX_RATIO.ln() + 1e-9 && !buckets.contains(&bucket) {
                buckets.push(bucket);
                buckets.push(Bucket { height: width, width: height });
            }
        }
        buckets.sort();
        Buckets(buckets)
    }

    /// Only the square bucket: every image is centre-cropped to a square.
    pub fn square_only(side: usize) -> Buckets {
        Buckets(vec![Bucket::square(side)])
    }

    /// Every bucket, by height then width.
    pub fn all(&self) -> &[Bucket] {
        &self.0
    }

    /// The bucket whose aspect ratio is nearest that of a `width`×`height` image (in log ratio,
    /// so 2:1 and 1:2 are equally far from square); ties go to the squarer bucket.
    pub fn nearest(&self, width: u32, height: u32) -> Bucket {
        let target = (f64::from(height.max(1)) / f64::from(width.max(1))).ln();
        let distance = |b: &Bucket| ((b.log_ratio() - target).abs(), b.log_ratio().abs());
        *self
            .0
            .iter()
            .min_by(|a, b| distance(a).partial_cmp(&distance(b)).unwrap_or(std::cmp::Ordering::Equal))
            .unwrap_or(&self.0[0])
    }
}

/// `image` centre-cropped to `bucket`'s aspect ratio and resized to its size (unchanged when it
/// already has that size).
pub fn crop_into(image: &Image, bucket: Bucket) -> Image {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if (w, h) == (bucket.width, bucket.height) {
        return image.clone();
    }
    // The largest centred window of the bucket's aspect ratio.
    let (crop_w, crop_h) = if w * bucket.height > h * bucket.width {
        ((h * bucket.width / bucket.height).max(1), h)
    } else {
        (w, (w * bucket.height / bucket.width).max(1))
    };
    let (x0, y0) = ((w - crop_w) / 2, (h - crop_h) / 2);
    let Some(buffer) = image::RgbImage::from_raw(w as u32, h as u32, image.pixels().to_vec()) else {
        return Image::filled(bucket.width as u32, bucket.height as u32, [0, 0, 0]);
    };
    let window = image::imageops::crop_imm(&buffer, x0 as u32, y0 as u32, crop_w as u32, crop_h as u32).to_image();
    let (to_w, to_h) = (bucket.width as u32, bucket.height as u32);
    let resized = if (crop_w, crop_h) == (bucket.width, bucket.height) {
        window
    } else {
        image::imageops::resize(&window, to_w, to_h, image::imageops::FilterType::Triangle)
    };
    Image::from_rgb(to_w, to_h, resized.into_raw()).unwrap_or_else(|_| Image::filled(to_w, to_h, [0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_have_the_training_area_and_whole_tokens() {
        let buckets = Buckets::new(1024, 64);
        assert!(buckets.all().contains(&Bucket::square(1024)));
        for b in buckets.all() {
            assert_eq!((b.height % 64, b.width % 64), (0, 0), "{b:?}");
            let area = (b.height * b.width) as f64 / (1024.0 * 1024.0);
            assert!((0.85..1.15).contains(&area), "{b:?} has {area} of the area");
            let ratio = b.height as f64 / b.width as f64;
            assert!((0.25 - 1e-9..=4.0 + 1e-9).contains(&ratio), "{b:?}");
        }
        // One per 64 px of height from 512 to 2048 (PixArt's table also varies the width at a
        // height, for some 40 buckets).
        assert_eq!(buckets.all().len(), 17);
        for b in buckets.all() {
            assert!(buckets.all().contains(&Bucket { height: b.width, width: b.height }), "{b:?} has no transpose");
        }
    }

    #[test]
    fn images_go_to_the_bucket_of_their_aspect_ratio() {
        let buckets = Buckets::new(512, 16);
        assert_eq!(buckets.nearest(800, 800), Bucket::square(512));
        let wide = buckets.nearest(1792, 1024);
        assert!(wide.width > wide.height, "{wide:?}");
        let ratio = wide.width as f64 / wide.height as f64;
        assert!((ratio - 1.75).abs() < 0.1, "{wide:?}");
        let tall = buckets.nearest(1024, 1792);
        assert_eq!((tall.height, tall.width), (wide.width, wide.height));
        // Beyond the widest bucket: the widest.
        let widest = buckets.nearest(10_000, 100);
        assert!((widest.width as f64 / widest.height as f64 - 4.0).abs() < 0.3, "{widest:?}");
    }

    #[test]
    fn cropping_keeps_the_centre_and_never_stretches() {
        // 30×10: left third red, middle green, right blue.
        let mut pixels = vec![];
        for _ in 0..10 {
            for x in 0..30 {
                pixels.extend(match x / 10 {
                    0 => [255, 0, 0],
                    1 => [0, 255, 0],
                    _ => [0, 0, 255],
                });
            }
        }
        let image = Image::from_rgb(30, 10, pixels).unwrap();
        let square = crop_into(&image, Bucket::square(10));
        assert_eq!((square.width(), square.height()), (10, 10));
        assert!(square.pixels().chunks(3).all(|p| p == [0, 255, 0]), "the centre square is green");
        let same = crop_into(&image, Bucket { height: 10, width: 30 });
        assert_eq!(same, image);
    }
}
