//! A tiny lock-free seedable RNG (splitmix64 over an atomic counter) for the randomised
//! policies: reproducible in tests (`with a seed`), contention-free on the request path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub struct SeededRng(AtomicU64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// Seed from the clock when no seed is configured.
    pub fn from_seed_or_clock(seed: Option<u64>) -> Self {
        Self::new(seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(GOLDEN)
        }))
    }

    pub fn next_u64(&self) -> u64 {
        mix64(self.0.fetch_add(GOLDEN, Relaxed).wrapping_add(GOLDEN))
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The splitmix64 / murmur3 finaliser: a strong 64-bit mixer, also used to spread hashes.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, finalised with [`mix64`] for a well-spread 64-bit key hash.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_reproducible_and_in_range() {
        let a = SeededRng::new(7);
        let b = SeededRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let r = SeededRng::new(1);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[r.below(5)] += 1;
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
