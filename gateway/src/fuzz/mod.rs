//! Seeded property fuzzing of every parser that reads client or worker bytes, run as
//! ordinary tests with a bounded case count (stable Rust, no extra crates: `fastrand`).
//!
//! Each target file states its invariants: no panic, a typed error (a 4xx `GatewayError` or
//! a `ConfigError` naming a field) for every rejection, bounded output for bounded input,
//! the same result whatever the chunk borders, and round trips where the format has one.
//!
//! - `FUZZ_CASES=N` sets the cases per target (default [`DEFAULT_CASES`]); run
//!   `FUZZ_CASES=200000 cargo test --release -p sagellm-gateway fuzz::` before a release.
//! - `FUZZ_SEED=S` changes the seed (default fixed, so CI is deterministic). A failing case
//!   prints its target, seed and case number; `FUZZ_SEED=S FUZZ_CASE=K` replays that case
//!   alone. A crash found this way becomes a named regression test next to the target.

mod anthropic;
mod config;
mod prom;
mod request;
mod sse;

/// Cases per target when `FUZZ_CASES` is not set (the whole set runs in seconds).
pub const DEFAULT_CASES: u64 = 2_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Prints how to replay a case when the test thread panics while it is alive.
struct Replay<'a> {
    target: &'a str,
    seed: u64,
    case: u64,
}

impl Drop for Replay<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "fuzz target `{}` failed: replay with FUZZ_SEED={} FUZZ_CASE={}",
                self.target, self.seed, self.case
            );
        }
    }
}

/// Run `check` on `FUZZ_CASES` generated cases, each with its own seeded generator.
pub fn run(target: &str, mut check: impl FnMut(&mut Gen)) {
    let seed = env_u64("FUZZ_SEED").unwrap_or(0x05A6_E11A);
    let cases: Box<dyn Iterator<Item = u64>> = match env_u64("FUZZ_CASE") {
        Some(k) => Box::new(std::iter::once(k)),
        None => Box::new(0..env_u64("FUZZ_CASES").unwrap_or(DEFAULT_CASES)),
    };
    for case in cases {
        let _replay = Replay { target, seed, case };
        let mut g = Gen {
            rng: fastrand::Rng::with_seed(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        check(&mut g);
    }
}

/// A seeded generator of hostile and plausible inputs.
pub struct Gen {
    pub rng: fastrand::Rng,
}

/// Strings that parsers treat specially, mixed into generated text.
const TRICKY: &[&str] = &[
    "",
    " ",
    "\"",
    "\\",
    "\\u0000",
    "\u{0}",
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "data:",
    "data: [DONE]",
    "event:",
    ":",
    "{",
    "}",
    "[",
    "]",
    "null",
    "true",
    "-1",
    "1e309",
    "18446744073709551616",
    "é",
    "😀",
    "\u{feff}",
    "\u{202e}",
    "%00",
    "../",
    "a.b",
    "=",
    ";",
    ",",
    "#",
    "'''",
    "\t",
];

impl Gen {
    pub fn bool(&mut self) -> bool {
        self.rng.bool()
    }

    /// True about once in `n` draws.
    pub fn one_in(&mut self, n: u32) -> bool {
        self.rng.u32(0..n) == 0
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.rng.usize(0..items.len())]
    }

    /// A short string: plain words, tricky pieces and random characters.
    pub fn text(&mut self, max: usize) -> String {
        let mut s = String::new();
        let len = self.rng.usize(0..=max);
        while s.len() < len {
            match self.rng.u8(0..4) {
                0 => s.push_str(TRICKY[self.rng.usize(0..TRICKY.len())]),
                1 => s.push(self.rng.char(..)),
                _ => s.push(self.rng.alphanumeric()),
            }
        }
        s
    }

    /// Random bytes, not necessarily UTF-8.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.rng.usize(0..=max);
        (0..len).map(|_| self.rng.u8(..)).collect()
    }

    /// A number JSON may or may not like.
    pub fn number(&mut self) -> serde_json::Value {
        match self.rng.u8(0..5) {
            0 => self.rng.i64(..).into(),
            1 => self.rng.u64(0..100_000).into(),
            2 => serde_json::Number::from_f64(self.rng.f64() * 10.0 - 5.0)
                .map_or(serde_json::Value::Null, Into::into),
            3 => 0.into(),
            _ => self.rng.u64(..).into(),
        }
    }

    /// A random JSON value, at most `depth` levels deep, with keys drawn from `keys` half
    /// of the time (so the parser's own fields get wrong types and shapes).
    pub fn json(&mut self, depth: u32, keys: &[&str]) -> serde_json::Value {
        use serde_json::Value;
        let leaf = depth == 0 || self.one_in(3);
        match self.rng.u8(0..if leaf { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(self.bool()),
            2 => self.number(),
            3 | 4 => Value::String(self.text(12)),
            5 => Value::Array(
                (0..self.rng.usize(0..4))
                    .map(|_| self.json(depth - 1, keys))
                    .collect(),
            ),
            _ => {
                let mut m = serde_json::Map::new();
                for _ in 0..self.rng.usize(0..5) {
                    let key = if !keys.is_empty() && self.bool() {
                        self.pick(keys).to_string()
                    } else {
                        self.text(6)
                    };
                    let value = self.json(depth - 1, keys);
                    m.insert(key, value);
                }
                Value::Object(m)
            }
        }
    }

    /// `input` with a few random edits: byte flips, insertions (random or tricky), deletions,
    /// duplicated spans and truncation.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..self.rng.usize(1..4) {
            let at = self.rng.usize(0..=out.len());
            match self.rng.u8(0..6) {
                0 if at < out.len() => out[at] ^= 1 << self.rng.u8(0..8),
                1 => {
                    let ins = TRICKY[self.rng.usize(0..TRICKY.len())].as_bytes().to_vec();
                    out.splice(at..at, ins);
                }
                2 => {
                    let ins = self.bytes(4);
                    out.splice(at..at, ins);
                }
                3 => {
                    let end = (at + self.rng.usize(0..8)).min(out.len());
                    out.drain(at..end);
                }
                4 => {
                    let end = (at + self.rng.usize(0..16)).min(out.len());
                    let span = out[at..end].to_vec();
                    out.splice(at..at, span);
                }
                _ => out.truncate(at),
            }
        }
        out
    }

    /// `input` cut at random places (empty pieces included), as a network would deliver it.
    pub fn split<'a>(&mut self, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = match self.rng.u8(0..4) {
                0 => 0,
                1 => 1,
                2 => self.rng.usize(0..=8),
                _ => self.rng.usize(0..=rest.len()),
            }
            .min(rest.len());
            let (a, b) = rest.split_at(n);
            pieces.push(a);
            rest = b;
        }
        pieces
    }
}
