//! What each request asks for: deterministic prompts and the JSON body for the chosen
//! endpoint, in one of three shapes (`--workload`):
//!
//! - `plain`: every request gets its own prompt of about `--prompt-len` tokens (drawn from the
//!   seed and the request's index), so a prefix cache in the target does not turn the run
//!   into a cache benchmark;
//! - `shared-prefix`: request *i* takes context *c* (drawn from the seed and *i* among
//!   `--contexts`) as its system message, `--context-tokens` words long, then its own question;
//! - `multi-turn`: request *i* is turn *t* = (*i* / N) mod K of conversation *i* mod N (N =
//!   `--conversations`, K = `--turns`) of round *i* / (N·K): the history of turns 0..*t* —
//!   each question and a stand-in reply of `min(max_tokens, 256)` words, deterministic, since
//!   concurrent turns cannot wait for the real one — then question *t*. Each round has new
//!   conversations.
//!
//! Two runs with the same seed send the same bodies; `--request-offset` numbers a run's
//! requests on from another's (the same contexts, new questions and conversations).

use serde_json::{json, Value};

use super::args::{BenchArgs, Endpoint, WorkloadKind};

/// Seed salts of the contexts, the questions and the replies of the shaped workloads.
const CONTEXT_SALT: u64 = 0xC0_17E7;
const TURN_SALT: u64 = 0x7E_57;
const REPLY_SALT: u64 = 0x2E_91;

/// Short, common English words: most tokenizers encode each as a single token, so the prompt's
/// word count approximates its token count.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "it", "that", "for", "was", "on", "are", "as", "with",
    "his", "they", "at", "be", "this", "from", "have", "or", "by", "one", "had", "not", "but",
    "what", "all", "were", "when", "we", "there", "can", "an", "your", "which", "their", "said",
    "if", "do", "will", "each", "about", "how", "up", "out", "them", "then", "she", "many", "some",
    "so", "these", "would", "other", "into", "has", "more", "her", "two", "like", "him", "see",
    "time", "could", "no", "make", "than", "first", "been", "its", "who", "now", "people", "my",
    "made", "over", "did", "down", "only", "way", "find", "use", "may", "water", "long", "little",
    "very", "after", "words", "called", "just", "where", "most", "know", "get", "through", "back",
    "much", "before", "go", "good", "new", "write", "our", "used", "me", "man", "too", "any",
    "day", "same", "right", "look", "think", "also", "around", "another", "came", "come", "work",
    "three", "must", "because", "does", "part",
];

/// Builds request bodies for one run.
#[derive(Clone, Debug)]
pub struct Workload {
    endpoint: Endpoint,
    kind: WorkloadKind,
    model: String,
    prompt_len: u32,
    max_tokens: u32,
    stream: bool,
    seed: u64,
    contexts: u32,
    context_tokens: u32,
    conversations: u32,
    turns: u32,
    offset: u64,
}

impl Workload {
    pub fn new(args: &BenchArgs, model: String) -> Self {
        Self {
            endpoint: args.endpoint,
            kind: args.workload,
            model,
            prompt_len: args.prompt_len,
            max_tokens: args.max_tokens,
            stream: args.stream,
            seed: args.seed,
            contexts: args.contexts.max(1),
            context_tokens: args.context_tokens.max(1),
            conversations: args.conversations.max(1),
            turns: args.turns.max(1),
            offset: args.request_offset,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The context request `index` of a shared-prefix run uses.
    pub fn context_of(&self, index: u64) -> u64 {
        let mut rng = fastrand::Rng::with_seed(
            self.seed ^ CONTEXT_SALT ^ index.wrapping_mul(0xA24B_AED4_963E_E407),
        );
        rng.u64(..u64::from(self.contexts))
    }

    /// The chat messages of request `index`.
    fn messages(&self, index: u64) -> Value {
        let question = prompt(self.seed, index, self.prompt_len);
        match self.kind {
            WorkloadKind::Plain => json!([{"role": "user", "content": question}]),
            WorkloadKind::SharedPrefix => {
                let ctx = prompt(
                    self.seed ^ CONTEXT_SALT,
                    self.context_of(index),
                    self.context_tokens,
                );
                json!([
                    {"role": "system", "content": ctx},
                    {"role": "user", "content": question},
                ])
            }
            WorkloadKind::MultiTurn => {
                let n = u64::from(self.conversations);
                let k = u64::from(self.turns);
                let round = index / (n * k);
                let (conv, turn) = (round * n + index % n, (index / n) % k);
                let reply_len = self.max_tokens.min(256);
                let mut messages = Vec::new();
                for t in 0..=turn {
                    let id = conv * k + t;
                    messages.push(json!({"role": "user", "content": prompt(self.seed ^ TURN_SALT, id, self.prompt_len)}));
                    if t < turn {
                        messages.push(json!({"role": "assistant", "content": prompt(self.seed ^ REPLY_SALT, id, reply_len)}));
                    }
                }
                Value::Array(messages)
            }
        }
    }

    /// The body of request number `index` (counted from `--request-offset`).
    pub fn body(&self, index: u64) -> Value {
        let index = index.wrapping_add(self.offset);
        let mut body = match self.endpoint {
            Endpoint::Chat => json!({
                "model": self.model,
                "messages": self.messages(index),
            }),
            Endpoint::Completions => {
                // One text: the messages' contents in order (multi-turn is refused earlier).
                let text: Vec<String> = self
                    .messages(index)
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["content"].as_str().map(str::to_string))
                    .collect();
                json!({"model": self.model, "prompt": text.join("\n\n")})
            }
        };
        body["max_tokens"] = json!(self.max_tokens);
        body["stream"] = json!(self.stream);
        if self.stream {
            // Exact output token counts from the server instead of counting chunks.
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

/// `words` space-separated words, a pure function of `(seed, index)`.
pub fn prompt(seed: u64, index: u64, words: u32) -> String {
    let mut rng = fastrand::Rng::with_seed(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut text = String::with_capacity(words as usize * 6);
    for i in 0..words {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_deterministic_and_sized() {
        let p = prompt(42, 7, 128);
        assert_eq!(p.split_whitespace().count(), 128);
        assert_eq!(p, prompt(42, 7, 128));
        assert_ne!(p, prompt(42, 8, 128), "each request has its own prompt");
        assert_ne!(p, prompt(43, 7, 128), "the seed changes the prompts");
        assert_eq!(prompt(1, 0, 1).split_whitespace().count(), 1);
    }

    #[test]
    fn shared_prefix_requests_reuse_a_few_long_contexts() {
        let args = BenchArgs::try_parse_args([
            "http://h:1",
            "--workload",
            "shared-prefix",
            "--contexts",
            "3",
            "--context-tokens",
            "50",
            "--prompt-len",
            "5",
        ])
        .unwrap();
        let w = Workload::new(&args, "m".into());
        let bodies: Vec<Value> = (0..30).map(|i| w.body(i)).collect();
        let contexts: std::collections::HashSet<&str> = bodies
            .iter()
            .map(|b| b["messages"][0]["content"].as_str().unwrap())
            .collect();
        assert_eq!(contexts.len(), 3, "all three contexts used, no others");
        assert!(contexts.iter().all(|c| c.split_whitespace().count() == 50));
        assert_ne!(
            bodies[0]["messages"][1], bodies[1]["messages"][1],
            "fresh questions"
        );
        assert_eq!(bodies[4], w.body(4), "deterministic");
        let mut c = args.clone();
        c.endpoint = Endpoint::Completions;
        let p = Workload::new(&c, "m".into()).body(0);
        assert!(p["prompt"].as_str().unwrap().split_whitespace().count() == 55);
    }

    #[test]
    fn multi_turn_requests_resend_their_history() {
        let args = BenchArgs::try_parse_args([
            "http://h:1",
            "--workload",
            "multi-turn",
            "--conversations",
            "2",
            "--turns",
            "3",
            "--max-tokens",
            "4",
        ])
        .unwrap();
        let w = Workload::new(&args, "m".into());
        let turn = |i: u64| w.body(i)["messages"].as_array().unwrap().clone();
        // Requests 0 and 1 open conversations 0 and 1; 2 is conversation 0's second turn.
        assert_eq!(turn(0).len(), 1);
        assert_eq!(turn(2).len(), 3);
        assert_eq!(turn(4).len(), 5);
        assert_eq!(turn(2)[0], turn(0)[0], "the history is resent as it was");
        assert_eq!(
            turn(4)[..3],
            turn(2)[..],
            "each turn extends the previous one"
        );
        assert_eq!(turn(2)[1]["role"], "assistant");
        assert_eq!(
            turn(2)[1]["content"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .count(),
            4
        );
        assert_eq!(
            turn(6).len(),
            1,
            "after the last turn a new conversation starts"
        );
        assert_ne!(turn(6)[0], turn(0)[0], "a new one");
        let mut later = args.clone();
        later.request_offset = 6;
        assert_eq!(Workload::new(&later, "m".into()).body(0), w.body(6));
        assert_ne!(turn(1)[0], turn(0)[0]);
    }

    #[test]
    fn bodies_per_endpoint() {
        let mut args = BenchArgs::try_parse_args(["http://h:1", "--max-tokens", "9"]).unwrap();
        let chat = Workload::new(&args, "m".into()).body(0);
        assert_eq!(chat["model"], "m");
        assert_eq!(chat["max_tokens"], 9);
        assert_eq!(chat["stream"], false);
        assert!(chat.get("stream_options").is_none());
        assert!(chat["messages"][0]["content"].is_string());

        args.endpoint = Endpoint::Completions;
        args.stream = true;
        let completion = Workload::new(&args, "m".into()).body(0);
        assert!(completion["prompt"].is_string());
        assert_eq!(completion["stream_options"]["include_usage"], true);
    }
}
