//! Unit tests of `routing/prefix_index.rs`: chunking, the longest match, the bound, worker
//! removal and concurrent use.

use super::*;
use crate::routing::test_support::context;

fn prompt(text: &str) -> Arc<Prompt> {
    Prompt::new("m", text.as_bytes(), 16, 4.0, 8)
}

#[test]
fn equal_prefixes_share_their_chunk_hashes_and_models_are_apart() {
    let ctx = context("c", 160);
    let a = prompt(&format!("{ctx}first question"));
    let b = prompt(&format!("{ctx}another question"));
    assert_eq!(a.chunks.len(), 11);
    assert_eq!(a.chunks[..10], b.chunks[..10]);
    assert_ne!(a.chunks[10], b.chunks[10]);
    // A change early changes every chunk after it (the chain).
    let c = prompt(&format!("X{}first question", &ctx[1..]));
    assert!(a.chunks.iter().zip(&c.chunks).all(|(x, y)| x != y));
    let other_model = Prompt::new("n", format!("{ctx}first question").as_bytes(), 16, 4.0, 8);
    assert_ne!(a.chunks[0], other_model.chunks[0]);
    assert_eq!(a.tokens, 44); // 174 bytes / 4
    assert_eq!(a.tokens_in(0), 0);
    assert_eq!(a.tokens_in(11), 44);
    assert!(prompt("").chunks.is_empty());
}

#[test]
fn every_byte_of_a_chunk_counts_in_its_hash() {
    // 256-byte chunks: 8 blocks of 4 lanes; 100 bytes: 3 blocks, a word and a 4-byte tail.
    for len in [256usize, 100, 7, 1] {
        let base = vec![b'a'; len];
        let h = hash_chunk(1, &base);
        for at in 0..len {
            let mut changed = base.clone();
            changed[at] = b'b';
            assert_ne!(hash_chunk(1, &changed), h, "len {len}, byte {at}");
        }
        assert_ne!(hash_chunk(2, &base), h, "the seed counts");
        // Swapping two words of different lanes changes the hash.
        if len >= 16 {
            let mut swapped = base.clone();
            swapped[..8].copy_from_slice(b"12345678");
            let mut other = base.clone();
            other[8..16].copy_from_slice(b"12345678");
            assert_ne!(hash_chunk(1, &swapped), hash_chunk(1, &other));
        }
    }
}

#[test]
fn chunks_are_grouped_by_shard_keeping_their_order() {
    let chunks: Vec<u64> = (0..1000u64).map(super::super::rng::mix64).collect();
    let (sorted, starts) = by_shard(&chunks);
    assert_eq!((starts[0], starts[SHARDS]), (0, chunks.len()));
    let mut seen = 0;
    for s in 0..SHARDS {
        let group = &sorted[starts[s]..starts[s + 1]];
        assert!(group.iter().all(|&c| shard_of(c) == s));
        let expected: Vec<u64> = chunks
            .iter()
            .copied()
            .filter(|&c| shard_of(c) == s)
            .collect();
        assert_eq!(group, expected.as_slice());
        seen += group.len();
    }
    assert_eq!(seen, chunks.len());
}

#[test]
fn lookup_finds_each_workers_longest_prefix() {
    let index = PrefixIndex::new(10_000);
    let ctx = context("c", 320);
    let long = prompt(&format!("{ctx}{}", context("tail", 160)));
    let short = prompt(&ctx);
    index.insert(&short.chunks, 1);
    index.insert(&long.chunks, 2);
    let d = index.lookup(&long.chunks, &[1, 2, 3]);
    assert_eq!(d, vec![20, 30, 0]);
    // A prompt nobody saw matches nothing, whoever is asked.
    assert_eq!(index.lookup(&prompt("fresh").chunks, &[1, 2]), vec![0, 0]);
    assert_eq!(index.lookup(&long.chunks, &[]), Vec::<u32>::new());
}

#[test]
fn a_chunk_keeps_its_most_recent_holders() {
    let index = PrefixIndex::new(10_000);
    let p = prompt(&context("c", 64));
    for uid in 1..=(HOLDERS as u64 + 2) {
        index.insert(&p.chunks, uid);
    }
    let uids: Vec<u64> = (1..=HOLDERS as u64 + 2).collect();
    let d = index.lookup(&p.chunks, &uids);
    assert_eq!(d[..2], [0, 0], "the two oldest fell off");
    assert!(d[2..].iter().all(|&x| x == 4), "{d:?}");
    // Touching an old holder again makes it the most recent.
    index.insert(&p.chunks, 3);
    index.insert(&p.chunks, 100);
    let d = index.lookup(&p.chunks, &[3, 4, 100]);
    assert_eq!(d, vec![4, 0, 4]);
}

#[test]
fn the_bound_holds_and_recent_entries_survive() {
    let index = PrefixIndex::new(SHARDS * 8);
    for i in 0..2_000 {
        let p = prompt(&context(&format!("p{i}-"), 64));
        index.insert(&p.chunks, 1 + i % 3);
        assert!(index.entries() <= index.capacity(), "at {i}");
    }
    assert!(index.capacity() <= SHARDS * 8);
    let last = prompt(&context("p1999-", 64));
    assert_eq!(index.lookup(&last.chunks, &[1 + 1999 % 3]), vec![4]);
    let first = prompt(&context("p0-", 64));
    assert_eq!(
        index.lookup(&first.chunks, &[1]),
        vec![0],
        "evicted long ago"
    );
}

#[test]
fn a_forgotten_worker_is_gone_from_every_entry() {
    let index = PrefixIndex::new(10_000);
    let p = prompt(&context("c", 160));
    index.insert(&p.chunks, 7);
    index.insert(&p.chunks, 8);
    index.forget(7);
    assert_eq!(index.lookup(&p.chunks, &[7, 8]), vec![0, 10]);
    index.forget(8);
    assert_eq!(index.entries(), 0);
}

#[test]
fn concurrent_inserts_and_lookups_stay_consistent() {
    let index = Arc::new(PrefixIndex::new(SHARDS * 64));
    let shared = prompt(&context("shared", 256));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let index = index.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    index.insert(&shared.chunks, t);
                    let own = prompt(&context(&format!("t{t}-{i}-"), 64));
                    index.insert(&own.chunks, t);
                    let d = index.lookup(&shared.chunks, &[t]);
                    assert!(d[0] as usize <= shared.chunks.len());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(index.entries() <= index.capacity());
    // Everyone inserted the shared prompt last in its loop or before: all hold some of it.
    index.insert(&shared.chunks, 0);
    assert_eq!(
        index.lookup(&shared.chunks, &[0])[0] as usize,
        shared.chunks.len()
    );
}
