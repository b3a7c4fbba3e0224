//! The simulated automatic prefix cache, as vLLM V1 keeps it: the prompt's tokens (here
//! whitespace words, with a role marker before each chat message) in blocks of
//! [`BLOCK_TOKENS`], each block named by a hash chained over every block before it, so equal
//! hashes mean equal prefixes. Only full blocks are cached. An LRU holds at most `capacity`
//! blocks; when a prompt is cached its earlier blocks are made more recent than its later
//! ones, so eviction takes the ends of chains first and what stays is still a prefix.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

/// Tokens per cache block (vLLM's default block size).
pub const BLOCK_TOKENS: usize = 16;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// Splits a token stream into hash-chained blocks.
#[derive(Debug)]
pub(crate) struct BlockHasher {
    /// Hash of the block being filled, seeded with the previous block's hash.
    current: u64,
    filled: usize,
    blocks: Vec<u64>,
}

impl Default for BlockHasher {
    fn default() -> Self {
        Self {
            current: FNV_OFFSET,
            filled: 0,
            blocks: Vec::new(),
        }
    }
}

impl BlockHasher {
    /// Adds one token.
    pub fn push(&mut self, token: &str) {
        // A separator byte that no token contains keeps "ab c" and "a bc" apart.
        self.current = fnv(fnv(self.current, token.as_bytes()), &[0xff]);
        self.filled += 1;
        if self.filled == BLOCK_TOKENS {
            self.blocks.push(self.current);
            // The next block's hash starts from this one: the chain.
            self.current = fnv(FNV_OFFSET, &self.current.to_le_bytes());
            self.filled = 0;
        }
    }

    /// Adds every whitespace-separated word of `text`.
    pub fn push_words(&mut self, text: &str) {
        for word in text.split_whitespace() {
            self.push(word);
        }
    }

    /// The hashes of the full blocks, in prompt order.
    pub fn finish(self) -> Vec<u64> {
        self.blocks
    }
}

#[derive(Debug, Default)]
struct Lru {
    /// Block hash → its recency stamp.
    stamp_of: HashMap<u64, u64>,
    /// Recency stamp → block hash; the first entry is evicted first.
    by_stamp: BTreeMap<u64, u64>,
    next: u64,
}

/// A bounded LRU of cached blocks, shared by every request of one worker.
#[derive(Debug)]
pub struct PrefixCache {
    capacity: usize,
    lru: Mutex<Lru>,
}

impl PrefixCache {
    /// A cache of at most `capacity` blocks (0: no caching at all).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            lru: Mutex::new(Lru::default()),
        }
    }

    /// Most blocks held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Blocks held now.
    pub fn len(&self) -> usize {
        self.lru
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stamp_of
            .len()
    }

    /// Prefills a prompt of `blocks`: returns how many leading blocks were cached already,
    /// then caches all of them as the most recently used (evicting the least recent beyond
    /// the capacity).
    pub fn prefill(&self, blocks: &[u64]) -> usize {
        if self.capacity == 0 {
            return 0;
        }
        let mut lru = self.lru.lock().unwrap_or_else(PoisonError::into_inner);
        let matched = blocks
            .iter()
            .take_while(|b| lru.stamp_of.contains_key(b))
            .count();
        // A prompt longer than the cache keeps its first `capacity` blocks.
        let kept = &blocks[..blocks.len().min(self.capacity)];
        // Later blocks get older stamps: eviction takes chain ends first.
        for &block in kept.iter().rev() {
            let stamp = lru.next;
            lru.next += 1;
            if let Some(old) = lru.stamp_of.insert(block, stamp) {
                lru.by_stamp.remove(&old);
            }
            lru.by_stamp.insert(stamp, block);
        }
        while lru.stamp_of.len() > self.capacity {
            let Some((_, block)) = lru.by_stamp.pop_first() else {
                break;
            };
            lru.stamp_of.remove(&block);
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(words: usize, seed: &str) -> Vec<u64> {
        let mut h = BlockHasher::default();
        for i in 0..words {
            h.push(&format!("{seed}{i}"));
        }
        h.finish()
    }

    #[test]
    fn only_full_blocks_count_and_equal_prefixes_share_hashes() {
        assert!(blocks(BLOCK_TOKENS - 1, "w").is_empty());
        let a = blocks(BLOCK_TOKENS * 3 + 5, "w");
        let b = blocks(BLOCK_TOKENS * 2, "w");
        assert_eq!(a.len(), 3);
        assert_eq!(&a[..2], &b[..]);
        // A different first token changes every later block (the chain).
        let mut h = BlockHasher::default();
        h.push("other");
        for i in 1..BLOCK_TOKENS * 3 {
            h.push(&format!("w{i}"));
        }
        let c = h.finish();
        assert!(a.iter().zip(&c).all(|(x, y)| x != y));
    }

    #[test]
    fn word_boundaries_matter() {
        let mut x = BlockHasher::default();
        let mut y = BlockHasher::default();
        x.push_words(&"ab c ".repeat(8));
        y.push_words(&"a bc ".repeat(8));
        assert_ne!(x.finish(), y.finish());
    }

    #[test]
    fn the_longest_cached_prefix_is_found() {
        let cache = PrefixCache::new(100);
        let a = blocks(BLOCK_TOKENS * 4, "w");
        assert_eq!(cache.prefill(&a), 0);
        assert_eq!(cache.prefill(&a), 4);
        let mut longer = a.clone();
        longer.extend(blocks(BLOCK_TOKENS * 2, "tail"));
        assert_eq!(cache.prefill(&longer[..3]), 3);
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.prefill(&blocks(BLOCK_TOKENS, "x")), 0);
    }

    #[test]
    fn eviction_keeps_the_bound_and_takes_the_least_recent_chain_ends() {
        let cache = PrefixCache::new(6);
        let a = blocks(BLOCK_TOKENS * 4, "a");
        let b = blocks(BLOCK_TOKENS * 4, "b");
        cache.prefill(&a);
        cache.prefill(&b);
        assert_eq!(cache.len(), 6);
        // `a` lost its two last blocks, its prefix stays.
        assert_eq!(cache.prefill(&a), 2);
        assert!(cache.len() <= 6);
    }

    #[test]
    fn a_zero_capacity_caches_nothing_and_a_huge_prompt_keeps_its_start() {
        let off = PrefixCache::new(0);
        let a = blocks(BLOCK_TOKENS * 4, "a");
        off.prefill(&a);
        assert_eq!(off.prefill(&a), 0);
        assert_eq!(off.len(), 0);
        let small = PrefixCache::new(2);
        small.prefill(&a);
        assert_eq!(small.prefill(&a), 2);
        assert_eq!(small.len(), 2);
    }
}
