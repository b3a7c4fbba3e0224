//! Which workers recently served which prompt prefixes, learnt from the requests this gateway
//! routes — tokenizer-free, so it works for any model behind any engine.
//!
//! A prompt (the raw JSON of `messages` or `prompt`, as the client sent it) is cut into
//! chunks of `chunk_bytes`; each chunk is named by a hash chained over the model and every
//! chunk before it ([`Prompt::new`]), so two prompts share the hash of chunk *k* exactly when
//! they agree on their first *k* + 1 chunks. The index maps a chunk hash to the few workers
//! (at most [`HOLDERS`], the most recent first) that were sent a prompt with that prefix; a
//! lookup walks the chunks from the start and tells, per candidate worker, how many leading
//! chunks it holds — the length of the prefix its engine most likely still has in its KV
//! cache.
//!
//! Memory is bounded: [`SHARDS`] shards, each holding at most `max_entries / SHARDS` entries
//! in two generations (new entries go to the young one; when it is half full the old one is
//! dropped and the young one becomes old; an entry used again moves back to the young one),
//! an LRU approximation with O(1) work per chunk. Each shard has its own lock, held for one
//! map operation, so requests never wait on one global lock. A worker that left the pool is
//! [`PrefixIndex::forget`]-ed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

use super::rng::mix64;

/// Shards of the index (a power of two).
pub const SHARDS: usize = 64;
/// Workers remembered per prefix chunk.
pub const HOLDERS: usize = 4;

/// What the cache-aware policies know of one request's prompt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prompt {
    /// Chained chunk hashes, in prompt order (the last, partial chunk included).
    pub chunks: Vec<u64>,
    /// Bytes per chunk.
    pub chunk_bytes: usize,
    /// Estimated prompt tokens (`bytes / bytes_per_token`).
    pub tokens: u32,
    /// Tokens the request may generate (`max_tokens`, else a configured default).
    pub decode_tokens: u32,
}

impl Prompt {
    /// The prompt `text` of a request for `model`, estimated at `bytes_per_token`.
    pub fn new(
        model: &str,
        text: &[u8],
        chunk_bytes: usize,
        bytes_per_token: f64,
        decode_tokens: u32,
    ) -> Arc<Prompt> {
        let chunk_bytes = chunk_bytes.max(8);
        let mut chain = mix64(super::rng::hash_bytes(model.as_bytes()));
        let chunks = text
            .chunks(chunk_bytes)
            .map(|chunk| {
                chain = hash_chunk(chain, chunk);
                chain
            })
            .collect();
        let tokens = (text.len() as f64 / bytes_per_token.max(0.1)).ceil();
        Arc::new(Prompt {
            chunks,
            chunk_bytes,
            tokens: tokens.min(u32::MAX as f64) as u32,
            decode_tokens,
        })
    }

    /// Estimated prompt tokens covered by the first `chunks` chunks.
    pub fn tokens_in(&self, chunks: u32) -> u32 {
        if self.chunks.is_empty() {
            return 0;
        }
        let share = f64::from(chunks) / self.chunks.len() as f64;
        ((f64::from(self.tokens) * share).round() as u32).min(self.tokens)
    }
}

/// Hash of one chunk, seeded with the previous chunk's hash. Four independent lanes take
/// 32 bytes per step (one multiply chain would wait on each multiply's latency: 4× slower
/// on a long prompt); the rest 8 bytes per step; then everything is folded and mixed.
fn hash_chunk(seed: u64, chunk: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let step = |h: u64, w: &[u8]| {
        let v = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        (h ^ v).wrapping_mul(K).rotate_left(29)
    };
    let mut lanes = [
        seed ^ (chunk.len() as u64).wrapping_mul(K),
        seed.rotate_left(16) ^ K,
        seed.rotate_left(32).wrapping_add(K),
        seed.rotate_left(48) ^ K.rotate_left(7),
    ];
    let mut blocks = chunk.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = step(*lane, w);
        }
    }
    let mut h = lanes
        .iter()
        .fold(0, |h, &l| (h ^ l).wrapping_mul(K).rotate_left(31));
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        h = step(h, w);
    }
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    mix64(h)
}

/// The keys are hashes already: use them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Map = HashMap<u64, Holders, BuildHasherDefault<Identity>>;

/// The workers (uids) that hold one prefix chunk, the most recent first.
#[derive(Clone, Copy, Debug, Default)]
struct Holders {
    uids: [u64; HOLDERS],
    len: u8,
}

impl Holders {
    fn as_slice(&self) -> &[u64] {
        &self.uids[..self.len as usize]
    }

    fn contains(&self, uid: u64) -> bool {
        self.as_slice().contains(&uid)
    }

    /// Put `uid` first (the oldest holder falls off when full).
    fn touch(&mut self, uid: u64) {
        let len = self.len as usize;
        let at = self.as_slice().iter().position(|&u| u == uid);
        let end = match at {
            Some(i) => i,
            None if len < HOLDERS => {
                self.len += 1;
                len
            }
            None => HOLDERS - 1,
        };
        self.uids.copy_within(0..end, 1);
        self.uids[0] = uid;
    }

    /// Drop `uid`; whether any holder is left.
    fn remove(&mut self, uid: u64) -> bool {
        if let Some(i) = self.as_slice().iter().position(|&u| u == uid) {
            let len = self.len as usize;
            self.uids.copy_within(i + 1..len, i);
            self.len -= 1;
        }
        self.len > 0
    }
}

#[derive(Debug, Default)]
struct Shard {
    young: Map,
    old: Map,
}

/// The prefix index of one routing policy.
#[derive(Debug)]
pub struct PrefixIndex {
    shards: Box<[Mutex<Shard>]>,
    /// Entries per generation of one shard.
    generation_cap: usize,
    /// Estimated prompt tokens of the routed requests, and of those the tokens the chosen
    /// worker held (the matched-prefix ratio is their quotient).
    prompt_tokens: AtomicU64,
    matched_tokens: AtomicU64,
}

impl PrefixIndex {
    /// An index of at most about `max_entries` prefix chunks.
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            generation_cap: (max_entries / SHARDS / 2).max(1),
            prompt_tokens: AtomicU64::new(0),
            matched_tokens: AtomicU64::new(0),
        }
    }

    fn shard(&self, chunk: u64) -> &Mutex<Shard> {
        &self.shards[shard_of(chunk)]
    }

    /// For each of `uids`, how many leading chunks of `chunks` it holds.
    pub fn lookup(&self, chunks: &[u64], uids: &[u64]) -> Vec<u32> {
        let mut depth = vec![0u32; uids.len()];
        for (i, &chunk) in chunks.iter().enumerate() {
            let holders = {
                let shard = self.shard(chunk).lock();
                shard
                    .young
                    .get(&chunk)
                    .or_else(|| shard.old.get(&chunk))
                    .copied()
            };
            let Some(holders) = holders else { break };
            let mut any = false;
            for (d, &uid) in depth.iter_mut().zip(uids) {
                if *d == i as u32 && holders.contains(uid) {
                    *d += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        depth
    }

    /// Record that `uid` was sent a prompt of `chunks`. Each shard is locked once for all of
    /// its chunks (a long prompt has hundreds of chunks over at most [`SHARDS`] shards).
    pub fn insert(&self, chunks: &[u64], uid: u64) {
        let (sorted, starts) = by_shard(chunks);
        for (s, shard) in self.shards.iter().enumerate() {
            let batch = &sorted[starts[s]..starts[s + 1]];
            if batch.is_empty() {
                continue;
            }
            let mut shard = shard.lock();
            for &chunk in batch {
                self.insert_one(&mut shard, chunk, uid);
            }
        }
    }

    fn insert_one(&self, shard: &mut Shard, chunk: u64, uid: u64) {
        if let Some(h) = shard.young.get_mut(&chunk) {
            h.touch(uid);
            return;
        }
        let mut h = shard.old.remove(&chunk).unwrap_or_default();
        h.touch(uid);
        shard.young.insert(chunk, h);
        if shard.young.len() >= self.generation_cap {
            shard.old = std::mem::take(&mut shard.young);
        }
    }

    /// Drop a worker from every entry (it left the pool).
    pub fn forget(&self, uid: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.young.retain(|_, h| h.remove(uid));
            shard.old.retain(|_, h| h.remove(uid));
        }
    }

    /// Prefix chunks held now.
    pub fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.young.len() + s.old.len()
            })
            .sum()
    }

    /// Count one routed request: `matched` of its `prompt` tokens were on the chosen worker.
    pub fn record_route(&self, matched: u32, prompt: u32) {
        self.prompt_tokens.fetch_add(u64::from(prompt), Relaxed);
        self.matched_tokens
            .fetch_add(u64::from(matched.min(prompt)), Relaxed);
    }

    /// `(matched, prompt)` tokens of the routed requests so far.
    pub fn routed_tokens(&self) -> (u64, u64) {
        (
            self.matched_tokens.load(Relaxed),
            self.prompt_tokens.load(Relaxed),
        )
    }

    /// The most entries the index holds.
    pub fn capacity(&self) -> usize {
        self.generation_cap * 2 * SHARDS
    }
}

fn shard_of(chunk: u64) -> usize {
    (chunk >> 58) as usize % SHARDS
}

/// `chunks` grouped by shard (a counting sort: order kept within a shard), and where each
/// shard's group starts (shard `s` holds `sorted[starts[s]..starts[s + 1]]`).
fn by_shard(chunks: &[u64]) -> (Vec<u64>, [usize; SHARDS + 1]) {
    let mut starts = [0usize; SHARDS + 1];
    for &c in chunks {
        starts[shard_of(c) + 1] += 1;
    }
    for s in 0..SHARDS {
        starts[s + 1] += starts[s];
    }
    let mut next = starts;
    let mut sorted = vec![0u64; chunks.len()];
    for &c in chunks {
        let s = shard_of(c);
        sorted[next[s]] = c;
        next[s] += 1;
    }
    (sorted, starts)
}

#[cfg(test)]
#[path = "prefix_index_tests.rs"]
mod tests;
