//! Tensors derived from content — the latents of an image, the encoding of a prompt — kept in
//! memory (bounded) and, inside a run, on disk in the run's cache folder, so that a resumed run
//! derives nothing twice. Keys are blake3 hashes of the content and of what derived it.
//!
//! Memory is bounded in bytes, least recently used out first: at PixArt's sizes one T5 encoding
//! is 2 MiB and one 1024 px latent 256 KiB, so a count bound would not bound memory (nor, on a
//! GPU, device memory). The disk keeps everything; a training set larger than the budget
//! streams its latents and encodings from there.

use candle_core::{Device, Result, Tensor};
use lru::LruCache;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// A content-addressed tensor cache.
pub struct TensorCache {
    memory: Mutex<Memory>,
    dir: Option<PathBuf>,
    device: Device,
}

struct Memory {
    tensors: LruCache<blake3::Hash, Tensor>,
    bytes: usize,
    budget: usize,
}

impl TensorCache {
    /// A cache of at most `budget` bytes of tensors in memory, every one also kept under `dir`
    /// if given, loaded onto `device`.
    pub fn new(budget: usize, dir: Option<PathBuf>, device: &Device) -> Self {
        let memory = Memory { tensors: LruCache::unbounded(), bytes: 0, budget };
        TensorCache { memory: Mutex::new(memory), dir, device: device.clone() }
    }

    /// Bytes of tensors held in memory now.
    pub fn bytes(&self) -> usize {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }

    fn path(&self, key: &blake3::Hash) -> Option<PathBuf> {
        let hex = key.to_hex();
        self.dir.as_ref().map(|dir| dir.join(&hex[..2]).join(format!("{hex}.safetensors")))
    }

    /// The tensor under `key`, computed by `derive` (and kept) if neither memory nor disk has it.
    /// An unreadable file on disk is derived again and replaced.
    pub fn get_or_derive(&self, key: blake3::Hash, derive: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
        if let Some(hit) = self.memory.lock().unwrap_or_else(PoisonError::into_inner).tensors.get(&key) {
            return Ok(hit.clone());
        }
        let path = self.path(&key);
        let stored = path
            .as_ref()
            .filter(|p| p.is_file())
            .and_then(|p| candle_core::safetensors::load(p, &self.device).ok().and_then(|mut t| t.remove("value")));
        let value = match stored {
            Some(value) => value,
            None => {
                let value = derive()?.detach();
                if let Some(path) = &path {
                    store(path, &value)?;
                }
                value
            }
        };
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        let size = value.elem_count() * value.dtype().size_in_bytes();
        if let Some(replaced) = memory.tensors.put(key, value.clone()) {
            memory.bytes -= replaced.elem_count() * replaced.dtype().size_in_bytes();
        }
        memory.bytes += size;
        while memory.bytes > memory.budget {
            let Some((_, evicted)) = memory.tensors.pop_lru() else { break };
            memory.bytes -= evicted.elem_count() * evicted.dtype().size_in_bytes();
        }
        Ok(value)
    }
}

/// Writes `value` to `path` through a temporary file and a rename: a crash leaves no torn entry.
fn store(path: &std::path::Path, value: &Tensor) -> Result<()> {
    let fail = |e: std::io::Error| candle_core::Error::Msg(format!("cache {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    candle_core::safetensors::save(&HashMap::from([("value".to_string(), value.clone())]), &tmp)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_once_then_serves_from_memory_and_from_disk_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = blake3::hash(b"content");
        let value = || Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu);
        let cache = TensorCache::new(1024, Some(dir.path().to_path_buf()), &Device::Cpu);
        let mut derived = 0;
        for _ in 0..3 {
            cache
                .get_or_derive(key, || {
                    derived += 1;
                    value()
                })
                .unwrap();
        }
        assert_eq!(derived, 1);
        let restarted = TensorCache::new(1024, Some(dir.path().to_path_buf()), &Device::Cpu);
        let got = restarted.get_or_derive(key, || panic!("derived again after a restart")).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), [1.0, 2.0, 3.0]);
        // A torn or foreign file is derived again and replaced.
        let file = restarted.path(&key).unwrap();
        std::fs::write(&file, b"not safetensors").unwrap();
        let fresh = TensorCache::new(1024, Some(dir.path().to_path_buf()), &Device::Cpu);
        assert_eq!(fresh.get_or_derive(key, value).unwrap().to_vec1::<f32>().unwrap(), [1.0, 2.0, 3.0]);
        assert!(candle_core::safetensors::load(&file, &Device::Cpu).is_ok());
    }

    #[test]
    fn memory_stays_within_its_byte_budget_and_the_disk_serves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        // Room for two tensors of 4 floats.
        let cache = TensorCache::new(32, Some(dir.path().to_path_buf()), &Device::Cpu);
        let tensor = |i: u32| Tensor::new(&[i as f32; 4], &Device::Cpu);
        for i in 0..10u32 {
            cache.get_or_derive(blake3::hash(&i.to_le_bytes()), || tensor(i)).unwrap();
            assert!(cache.bytes() <= 32, "{} bytes held", cache.bytes());
        }
        for i in 0..10u32 {
            let got = cache.get_or_derive(blake3::hash(&i.to_le_bytes()), || panic!("derived {i} twice")).unwrap();
            assert_eq!(got.to_vec1::<f32>().unwrap(), [i as f32; 4]);
        }
    }
}
