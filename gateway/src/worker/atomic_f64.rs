//! A lock-free `f64` cell (bits in an `AtomicU64`) for statistics read on the request path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }

    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed)
    }

    /// Apply `f` atomically (compare-and-swap loop); returns the new value.
    pub fn update(&self, f: impl Fn(f64) -> f64) -> f64 {
        let mut cur = self.0.load(Relaxed);
        loop {
            let new = f(f64::from_bits(cur));
            match self
                .0
                .compare_exchange_weak(cur, new.to_bits(), Relaxed, Relaxed)
            {
                Ok(_) => return new,
                Err(actual) => cur = actual,
            }
        }
    }
}

impl Default for AtomicF64 {
    fn default() -> Self {
        Self::new(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_is_applied() {
        let a = AtomicF64::new(1.5);
        assert_eq!(a.update(|v| v * 2.0), 3.0);
        a.set(-0.25);
        assert_eq!(a.get(), -0.25);
    }
}
