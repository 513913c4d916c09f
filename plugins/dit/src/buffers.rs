//! Plain slices of CPU tensors, read and written in place.
//!
//! candle hands out a tensor's storage mutably only inside an in-place op, one tensor per op.
//! [`with_buffers_mut`] opens several by nesting: each further tensor is opened inside the
//! previous one's op, and the innermost call sees them all. Why: the optimiser updates four
//! buffers per parameter (weights, two moments, the EMA); copying each out and back cost more
//! than the update's arithmetic.

use candle_core::{CpuStorage, Error, InplaceOp1, Layout, Result, Tensor, WithDType};
use std::cell::RefCell;

/// An element type whose CPU storage can be opened as a slice.
pub trait Element: WithDType {
    /// The storage's vector, if it holds this type.
    fn vec_mut(storage: &mut CpuStorage) -> Option<&mut Vec<Self>>;
}

impl Element for f32 {
    fn vec_mut(storage: &mut CpuStorage) -> Option<&mut Vec<Self>> {
        match storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Element for f64 {
    fn vec_mut(storage: &mut CpuStorage) -> Option<&mut Vec<Self>> {
        match storage {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Whether [`with_buffers_mut`] can open `tensors` as `T`: on the CPU, of dtype `T`,
/// contiguous, and no two sharing a storage (opening one storage twice would deadlock on its
/// lock).
pub fn can_open<T: Element>(tensors: &[&Tensor]) -> bool {
    let keys: Vec<*const candle_core::Storage> = tensors
        .iter()
        .map(|t| {
            let (storage, _) = t.storage_and_layout();
            std::ptr::from_ref(&*storage)
        })
        .collect();
    let distinct = keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k));
    distinct && tensors.iter().all(|t| t.device().is_cpu() && t.dtype() == T::DTYPE && t.is_contiguous())
}

/// What [`with_buffers_mut`] runs: it gets one slice per tensor, in order.
pub type BuffersFn<'f, T> = dyn FnMut(&mut [&mut [T]]) + 'f;

/// Runs `f` over mutable slices of `tensors`' elements, in order, in place. Fails unless
/// [`can_open`] holds.
pub fn with_buffers_mut<T: Element>(tensors: &[&Tensor], f: &mut BuffersFn<'_, T>) -> Result<()> {
    if !can_open::<T>(tensors) {
        return Err(Error::Msg("buffers: tensors must be distinct, contiguous CPU tensors of one dtype".into()));
    }
    let Some(first) = tensors.first() else {
        f(&mut []);
        return Ok(());
    };
    let op = Opener { tensors, opened: RefCell::new(vec![]), f: RefCell::new(f) };
    first.inplace_op1(&op)
}

/// The in-place op that opens the next of `tensors` (the one after those `opened`), or runs `f`
/// once all are open.
struct Opener<'a, 'f, T> {
    tensors: &'a [&'a Tensor],
    opened: RefCell<Vec<(*mut T, usize)>>,
    f: RefCell<&'f mut BuffersFn<'f, T>>,
}

impl<T: Element> InplaceOp1 for Opener<'_, '_, T> {
    fn name(&self) -> &'static str {
        "open-buffers"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let vec = T::vec_mut(storage).ok_or_else(|| Error::Msg("buffers: unexpected dtype".into()))?;
        let (start, len) = (layout.start_offset(), layout.shape().elem_count());
        let slice =
            vec.get_mut(start..start + len).ok_or_else(|| Error::Msg("buffers: layout out of bounds".into()))?;
        let next = {
            let mut opened = self.opened.borrow_mut();
            opened.push((slice.as_mut_ptr(), slice.len()));
            opened.len()
        };
        if let Some(tensor) = self.tensors.get(next) {
            return tensor.inplace_op1(self);
        }
        let opened = self.opened.borrow();
        // SAFETY: each pointer is a live slice of a distinct storage (`can_open`), whose write
        // lock is held by an enclosing `cpu_fwd` until this call returns.
        let mut slices: Vec<&mut [T]> =
            opened.iter().map(|&(ptr, len)| unsafe { std::slice::from_raw_parts_mut(ptr, len) }).collect();
        (self.f.borrow_mut())(&mut slices);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn opens_several_tensors_in_place() -> Result<()> {
        let a = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)?;
        let b = Tensor::new(&[10f32, 20.0, 30.0, 40.0], &Device::Cpu)?.narrow(0, 1, 3)?;
        with_buffers_mut::<f32>(&[&a, &b], &mut |s| {
            let [x, y] = s else { panic!("two slices") };
            for (x, y) in x.iter_mut().zip(y.iter_mut()) {
                *y += *x;
                *x = 0.0;
            }
        })?;
        assert_eq!(a.to_vec1::<f32>()?, [0.0, 0.0, 0.0]);
        assert_eq!(b.to_vec1::<f32>()?, [21.0, 32.0, 43.0]);
        Ok(())
    }

    #[test]
    fn refuses_shared_storage_and_other_dtypes() -> Result<()> {
        let a = Tensor::new(&[1f32, 2.0], &Device::Cpu)?;
        let alias = a.clone();
        assert!(!can_open::<f32>(&[&a, &alias]));
        assert!(with_buffers_mut::<f32>(&[&a, &alias], &mut |_| {}).is_err());
        assert!(!can_open::<f64>(&[&a]));
        assert!(!can_open::<f32>(&[&Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu)?.t()?]));
        Ok(())
    }
}
