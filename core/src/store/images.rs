//! The content-addressed image store: every image a run touched, once, as a PNG named by the
//! blake3 hash of the file.

use super::fsutil::sync_dir;
use super::{StoreError, io_err};
use evolve_sdk::Image;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Largest side accepted when decoding, against decompression bombs from providers.
const MAX_SIDE: u32 = 8192;
/// Largest decoded allocation accepted.
const MAX_ALLOC: u64 = 512 << 20;

/// The blake3 hash of a stored PNG, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageHash(String);

impl ImageHash {
    /// Parses 64 hex digits.
    pub fn parse(hex: &str) -> Option<ImageHash> {
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| ImageHash(hex.to_ascii_lowercase()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ImageHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Proof that an image is durably on disk: only [`ImageStore::put`] makes one, and ledger
/// rows that name an image require one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    hash: ImageHash,
    width: u32,
    height: u32,
    bytes: u64,
}

impl StoredImage {
    /// Its address.
    pub fn hash(&self) -> &ImageHash {
        &self.hash
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Size of the PNG file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Encodes an image as PNG.
pub fn encode_png(image: &Image) -> Result<Vec<u8>, StoreError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(image.pixels(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| StoreError::Image { hash: "-".into(), message: format!("cannot encode PNG: {e}") })?;
    Ok(out)
}

/// Why bytes did not decode to an image.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The format is unknown, the data corrupt, or the image over the limits.
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// The format could not be guessed from the bytes.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The decoded pixels do not make an RGB image of the stated size.
    #[error(transparent)]
    Size(#[from] evolve_sdk::ImageError),
}

/// Decodes PNG (or any format the build supports) into RGB, refusing images larger than
/// 8192 px a side or 512 MiB decoded.
pub fn decode_png(bytes: &[u8]) -> Result<Image, DecodeError> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let rgb = reader.decode()?.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(Image::from_rgb(w, h, rgb.into_raw())?)
}

/// PNG files under `images/`, sharded by the first two bytes of their hash. A clone reads and
/// writes the same folder (each write is atomic), e.g. from the trainer's thread.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store at `root`, for reading (a report of a live run): unlike [`ImageStore::open`],
    /// it leaves `tmp/` alone, where the run's own process may be writing a paid image.
    pub fn reader(root: &Path) -> ImageStore {
        ImageStore { root: root.to_path_buf() }
    }

    /// Opens (creating if needed) the store at `root` and clears temp files a crash left. Only
    /// the process that holds the run (see [`crate::store::RunDir`]) may do this.
    pub fn open(root: &Path) -> Result<ImageStore, StoreError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err("cannot create image store", &tmp))?;
        for entry in fs::read_dir(&tmp).map_err(io_err("cannot list", &tmp))?.flatten() {
            // Leftovers of writes a crash interrupted; no ledger row can name them.
            let _ = fs::remove_file(entry.path());
        }
        Ok(ImageStore { root: root.to_path_buf() })
    }

    /// Where the image with `hash` lives.
    pub fn path(&self, hash: &ImageHash) -> PathBuf {
        let h = hash.as_str();
        self.root.join(&h[0..2]).join(&h[2..4]).join(format!("{h}.png"))
    }

    /// Stores `image` durably and returns its address; storing the same image again is free.
    pub fn put(&self, image: &Image) -> Result<StoredImage, StoreError> {
        let png = encode_png(image)?;
        let hash = ImageHash(blake3::hash(&png).to_hex().to_string());
        let stored = StoredImage { hash, width: image.width(), height: image.height(), bytes: png.len() as u64 };
        let path = self.path(&stored.hash);
        if path.exists() {
            return Ok(stored);
        }
        let shard = path.parent().unwrap_or(&self.root).to_path_buf();
        if !shard.exists() {
            fs::create_dir_all(&shard).map_err(io_err("cannot create", &shard))?;
            sync_dir(shard.parent().unwrap_or(&self.root))?;
            sync_dir(&self.root)?;
        }
        let tmp = self.root.join("tmp").join(format!(
            "{}.{}.{}",
            stored.hash,
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = fs::File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        file.write_all(&png).map_err(io_err("cannot write", &tmp))?;
        file.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err("cannot rename into place", &path))?;
        sync_dir(&shard)?;
        Ok(stored)
    }

    /// The proof of durability for an image already in the store (e.g. paid for before a crash),
    /// after checking that its file still hashes to `hash`; reads only the PNG header.
    pub fn existing(&self, hash: &ImageHash) -> Result<StoredImage, StoreError> {
        let path = self.path(hash);
        let bytes = fs::read(&path).map_err(io_err("cannot read image", &path))?;
        let corrupt = |message: String| StoreError::Image { hash: hash.to_string(), message };
        if blake3::hash(&bytes).to_hex().as_str() != hash.as_str() {
            return Err(corrupt("file does not match its hash".into()));
        }
        let (width, height) = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| corrupt(e.to_string()))?
            .into_dimensions()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(StoredImage { hash: hash.clone(), width, height, bytes: bytes.len() as u64 })
    }

    /// Reads the image with `hash`.
    pub fn get(&self, hash: &ImageHash) -> Result<Image, StoreError> {
        let path = self.path(hash);
        let bytes = fs::read(&path).map_err(io_err("cannot read image", &path))?;
        decode_png(&bytes).map_err(|e| StoreError::Image { hash: hash.to_string(), message: e.to_string() })
    }

    /// Whether the file for `hash` exists and still hashes to `hash`.
    pub fn verify(&self, hash: &ImageHash) -> bool {
        fs::read(self.path(hash)).is_ok_and(|bytes| blake3::hash(&bytes).to_hex().as_str() == hash.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_round_trip_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let mut img = Image::filled(5, 3, [10, 20, 30]);
        img.put(1, 1, [255, 0, 0]);
        let a = store.put(&img).unwrap();
        let b = store.put(&img).unwrap();
        assert_eq!(a, b);
        assert_eq!(store.get(a.hash()).unwrap(), img);
        assert!(store.verify(a.hash()));
        assert_eq!(store.existing(a.hash()).unwrap(), a);
        fs::write(store.path(a.hash()), b"tampered").unwrap();
        assert!(!store.verify(a.hash()));
    }

    #[test]
    fn refuses_decompression_bombs() {
        // A valid 20000x1 PNG header is enough to trip the side limit before any allocation.
        let img = image::RgbImage::new(MAX_SIDE + 1, 1);
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let err = decode_png(&png).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("limit"), "{err}");
        assert!(decode_png(b"not a png").is_err());
    }
}
