//! Seeded randomness that plugins can carry across any boundary as one `u64`.

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast generator whose whole state is one
/// `u64`, so a host can hand a plugin reproducible randomness as a single number, whether the
/// plugin is built in, a native library or a wasm component. Not for cryptography.
///
/// Written by hand rather than taken from `rand` because it is eight lines and keeps the SDK's
/// dependency set (and every wasm guest) small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The whole state, to save; `SplitMix64::new(state)` resumes the stream exactly.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// A generator whose seed mixes several values (e.g. a run seed and a sample id).
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut rng = SplitMix64::new(0x005E_ED0F_E70E);
        for &p in parts {
            rng.state ^= p;
            rng.next_u64();
        }
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n`; `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SplitMix64::below(0)");
        // Lemire's multiply-shift: unbiased enough for n far below 2^64.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniformly chosen element, or `None` for an empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { Some(&items[self.below(items.len() as u64) as usize]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_spread() {
        let a: Vec<u64> = (0..4).scan(SplitMix64::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..4).scan(SplitMix64::new(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        let mut r = SplitMix64::new(1);
        let mean = (0..10_000).map(|_| r.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert!((0..1000).all(|_| r.below(5) < 5));
    }

    #[test]
    fn parts_change_the_stream() {
        assert_ne!(SplitMix64::from_parts(&[1, 2]).next_u64(), SplitMix64::from_parts(&[2, 1]).next_u64());
    }
}
