//! Request sampling settings for mistral.rs, including reproducible `seed`s.
//!
//! mistral.rs 0.8.1 samples every sequence from one engine-wide RNG, so a per-request `seed`
//! has no effect there. When a request sets `seed` (and samples, i.e. temperature > 0), the
//! engine samples in a custom logits processor instead, with the request's own RNG: it
//! applies temperature and top-p, draws the token, and hands mistral.rs logits in which only
//! that token is finite, so mistral.rs's greedy pick returns it. Same seed, same prompt, same
//! parameters → same output.

use std::sync::{Arc, Mutex};

use mistralrs::{CustomLogitsProcessor, SamplingParams, Tensor};

use crate::api::types::Params;

/// splitmix64: tiny, seedable, good enough for sampling.
fn next_u64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Pick a token index from logits with temperature and nucleus (top-p) sampling.
pub fn sample(logits: &[f32], temperature: f64, top_p: f64, state: &mut u64) -> usize {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::MIN, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (i, (((*v - max) as f64) / temperature).exp()))
        .collect();
    if probs.is_empty() {
        return 0;
    }
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut kept = 0.0;
    let mut cut = probs.len();
    for (k, p) in probs.iter().enumerate() {
        kept += p.1 / total;
        if kept >= top_p {
            cut = k + 1;
            break;
        }
    }
    let probs = &probs[..cut];
    let mass: f64 = probs.iter().map(|p| p.1).sum();
    let mut x = (next_u64(state) >> 11) as f64 / (1u64 << 53) as f64 * mass;
    for (i, p) in probs {
        if x < *p {
            return *i;
        }
        x -= p;
    }
    probs[probs.len() - 1].0
}

/// The per-request seeded sampler (see the module doc).
struct SeededSampler {
    state: Mutex<u64>,
    temperature: f64,
    top_p: f64,
}

impl CustomLogitsProcessor for SeededSampler {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
        let values: Vec<f32> = logits.to_dtype(mistralrs::DType::F32)?.to_vec1()?;
        let chosen = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            sample(&values, self.temperature, self.top_p, &mut state)
        };
        let mut forced = vec![f32::NEG_INFINITY; values.len()];
        if let Some(slot) = forced.get_mut(chosen) {
            *slot = 0.0;
        }
        Tensor::from_vec(forced, values.len(), logits.device())?.to_dtype(logits.dtype())
    }
}

/// mistral.rs sampling parameters (and the seeded processor, if any) for `p`.
pub fn engine_params(
    p: &Params,
    max_len: usize,
) -> (SamplingParams, Option<Vec<Arc<dyn CustomLogitsProcessor>>>) {
    let mut s = SamplingParams::neutral();
    // mistral.rs reads a missing temperature as 1.0; 0.0 selects its greedy (argmax) path.
    s.temperature = Some(0.0);
    s.max_len = Some(max_len);
    s.frequency_penalty = p.frequency_penalty;
    s.presence_penalty = p.presence_penalty;
    // `stop` strings are applied by `crate::stop` on the text stream, not by mistral.rs.
    match (p.temperature, p.seed) {
        (Some(t), Some(seed)) => {
            let sampler = SeededSampler {
                state: Mutex::new(seed),
                temperature: t,
                top_p: p.top_p.unwrap_or(1.0),
            };
            (
                s,
                Some(vec![Arc::new(sampler) as Arc<dyn CustomLogitsProcessor>]),
            )
        }
        (Some(t), None) => {
            s.temperature = Some(t);
            s.top_p = p.top_p;
            (s, None)
        }
        (None, _) => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let logits = [1.0f32, 2.0, 3.0, 0.5, f32::NEG_INFINITY];
        let draw = |seed: u64| {
            let mut s = seed;
            (0..50)
                .map(|_| sample(&logits, 1.0, 1.0, &mut s))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(1).iter().all(|&i| i < 4), "never a -inf token");
    }

    #[test]
    fn low_temperature_and_top_p_concentrate() {
        let logits = [1.0f32, 5.0, 2.0];
        let mut s = 3;
        assert!((0..100).all(|_| sample(&logits, 0.05, 1.0, &mut s) == 1));
        assert!(
            (0..100).all(|_| sample(&logits, 1.0, 0.5, &mut s) == 1),
            "top_p keeps only the head"
        );
    }
}
