//! The training set as a trainer holds it: ids, captions and the hashes of their images, with
//! the images read from the run's image store when a batch needs them.
//!
//! Why not hold the images decoded: at PixArt's 1024 px one image is 3 MiB decoded, so a set of
//! ten thousand would need 30 GiB. A byte-bounded cache keeps the decoded images most recently
//! drawn (the embedded world's 32 px set fits whole, so it never reads a file twice); the rest
//! are decoded again when drawn. Both training modes (the director's trainer and `train
//! --static`) draw their batches here, so they draw them the same way.

use crate::store::{ImageHash, ImageStore, RunDir, StoreError};
use evolve_sdk::{Image, SplitMix64, TrainBatch};
use lru::LruCache;
use std::collections::HashMap;

/// Decoded images kept by default, in bytes (about 170 images at 1024 px, all of a 32 px set).
pub const DEFAULT_CACHE_BYTES: usize = 512 << 20;

/// One training example: its ledger id, caption and image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingSample {
    /// The ledger id of the sample.
    pub id: i64,
    /// Its caption.
    pub prompt: String,
    /// Its image in the run's store.
    pub image: ImageHash,
}

/// Images from the store at the model's resolution, the recently used ones kept decoded.
pub struct ImageCache {
    store: ImageStore,
    size: u32,
    images: LruCache<ImageHash, Image>,
    bytes: usize,
    budget: usize,
}

impl ImageCache {
    /// Images of `store` fitted to `size` (see [`fit`]), keeping up to `budget` bytes decoded.
    pub fn new(store: ImageStore, size: u32, budget: usize) -> ImageCache {
        ImageCache { store, size, images: LruCache::unbounded(), bytes: 0, budget }
    }

    /// The image with `hash`, fitted to the model's resolution.
    pub fn get(&mut self, hash: &ImageHash) -> Result<Image, StoreError> {
        if let Some(image) = self.images.get(hash) {
            return Ok(image.clone());
        }
        let image = fit(self.store.get(hash)?, self.size);
        self.bytes += image.pixels().len();
        self.images.put(hash.clone(), image.clone());
        while self.bytes > self.budget {
            let Some((_, evicted)) = self.images.pop_lru() else { break };
            self.bytes -= evicted.pixels().len();
        }
        Ok(image)
    }

    /// Bytes of decoded images held now (never above the budget, except for one image larger
    /// than the whole budget while it is in use).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The set a trainer draws its batches from, uniformly with replacement.
pub struct TrainingSet {
    samples: Vec<TrainingSample>,
    index: HashMap<i64, usize>,
    images: ImageCache,
}

impl TrainingSet {
    /// An empty set whose images come from `images`.
    pub fn new(images: ImageCache) -> TrainingSet {
        TrainingSet { samples: vec![], index: HashMap::new(), images }
    }

    /// The run's active samples, their images from its store fitted to `size`, with the default
    /// cache (what both training modes start from).
    pub fn active(run: &RunDir, size: u32) -> Result<TrainingSet, StoreError> {
        let mut set = TrainingSet::new(ImageCache::new(run.images.clone(), size, DEFAULT_CACHE_BYTES));
        let samples = run.ledger.samples(true)?;
        set.add(samples.into_iter().map(|s| TrainingSample { id: s.id, prompt: s.prompt, image: s.image }));
        Ok(set)
    }

    /// Samples in the set.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the set has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds `samples` (a sample already in the set stays once).
    pub fn add(&mut self, samples: impl IntoIterator<Item = TrainingSample>) {
        for sample in samples {
            if !self.index.contains_key(&sample.id) {
                self.index.insert(sample.id, self.samples.len());
                self.samples.push(sample);
            }
        }
    }

    /// Removes the samples with `ids` (unknown ids are ignored).
    pub fn remove(&mut self, ids: &[i64]) {
        for id in ids {
            if let Some(i) = self.index.remove(id) {
                self.samples.swap_remove(i);
                if let Some(moved) = self.samples.get(i) {
                    self.index.insert(moved.id, i);
                }
            }
        }
    }

    /// `size` samples drawn uniformly with replacement by `rng`, with their images. An empty
    /// set gives an empty batch.
    pub fn batch(&mut self, rng: &mut SplitMix64, size: usize) -> Result<TrainBatch, StoreError> {
        let mut batch = TrainBatch { prompts: Vec::with_capacity(size), images: Vec::with_capacity(size) };
        if self.samples.is_empty() {
            return Ok(batch);
        }
        for _ in 0..size {
            let sample = &self.samples[rng.below(self.samples.len() as u64) as usize];
            batch.images.push(self.images.get(&sample.image)?);
            batch.prompts.push(sample.prompt.clone());
        }
        Ok(batch)
    }

    /// The image cache (for its size).
    pub fn images(&self) -> &ImageCache {
        &self.images
    }
}

/// `image` at the model's resolution `size`, never stretched: a square image is resized to
/// `size`×`size`; any other keeps its aspect ratio at about `size`² pixels (a base model trains
/// it in its aspect-ratio bucket, or centre-crops it).
pub fn fit(image: Image, size: u32) -> Image {
    let (w, h) = (image.width(), image.height());
    let (to_w, to_h) = if w == h {
        (size, size)
    } else {
        let scale = (f64::from(size) * f64::from(size) / (f64::from(w) * f64::from(h))).sqrt();
        ((f64::from(w) * scale).round().max(1.0) as u32, (f64::from(h) * scale).round().max(1.0) as u32)
    };
    resize(image, to_w, to_h)
}

/// `image` resized to exactly `to_w`×`to_h` (bilinear; unchanged when it is that size).
pub fn resize(image: Image, to_w: u32, to_h: u32) -> Image {
    let (w, h) = (image.width(), image.height());
    if (w, h) == (to_w, to_h) {
        return image;
    }
    let Some(buffer) = ::image::RgbImage::from_raw(w, h, image.into_pixels()) else {
        return Image::filled(to_w, to_h, [0, 0, 0]);
    };
    let resized = ::image::imageops::resize(&buffer, to_w, to_h, ::image::imageops::FilterType::Triangle);
    Image::from_rgb(to_w, to_h, resized.into_raw()).unwrap_or_else(|_| Image::filled(to_w, to_h, [0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(images: &[Image]) -> (tempfile::TempDir, ImageStore, Vec<ImageHash>) {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let hashes = images.iter().map(|image| store.put(image).unwrap().hash().clone()).collect();
        (dir, store, hashes)
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_still_serves_every_image() {
        let images: Vec<Image> = (0..10u8).map(|i| Image::filled(8, 8, [i, 0, 0])).collect();
        let (_dir, store, hashes) = store_with(&images);
        // Room for three 8×8 images.
        let mut cache = ImageCache::new(store, 8, 3 * 8 * 8 * 3);
        for round in 0..2 {
            for (hash, image) in hashes.iter().zip(&images) {
                assert_eq!(&cache.get(hash).unwrap(), image, "round {round}");
                assert!(cache.bytes() <= 3 * 8 * 8 * 3);
            }
        }
    }

    #[test]
    fn batches_draw_from_the_set_as_it_changes() {
        let images: Vec<Image> = (0..3u8).map(|i| Image::filled(4, 4, [i, i, i])).collect();
        let (_dir, store, hashes) = store_with(&images);
        let mut set = TrainingSet::new(ImageCache::new(store, 4, DEFAULT_CACHE_BYTES));
        let sample = |id: i64| TrainingSample { id, prompt: format!("p{id}"), image: hashes[id as usize].clone() };
        set.add([sample(0), sample(1), sample(2), sample(1)]);
        assert_eq!(set.len(), 3);
        set.remove(&[0, 7]);
        let mut rng = SplitMix64::new(5);
        let batch = set.batch(&mut rng, 64).unwrap();
        assert_eq!(batch.images.len(), 64);
        for (prompt, image) in batch.prompts.iter().zip(&batch.images) {
            let id: usize = prompt[1..].parse().unwrap();
            assert_ne!(id, 0, "a removed sample was drawn");
            assert_eq!(image, &images[id]);
        }
        assert!(batch.prompts.iter().any(|p| p == "p1") && batch.prompts.iter().any(|p| p == "p2"));
    }

    #[test]
    fn a_missing_image_is_an_error_not_a_panic() {
        let (_dir, store, _) = store_with(&[]);
        let mut set = TrainingSet::new(ImageCache::new(store, 4, DEFAULT_CACHE_BYTES));
        let missing = ImageHash::parse(&"ab".repeat(32)).unwrap();
        set.add([TrainingSample { id: 1, prompt: "p".into(), image: missing }]);
        assert!(set.batch(&mut SplitMix64::new(1), 2).is_err());
    }

    #[test]
    fn fit_keeps_the_aspect_ratio_of_a_non_square_image() {
        let wide = fit(Image::filled(200, 100, [9, 9, 9]), 64);
        assert_eq!((wide.width(), wide.height()), (91, 45));
        let square = fit(Image::filled(100, 100, [9, 9, 9]), 64);
        assert_eq!((square.width(), square.height()), (64, 64));
    }
}
