//! What each request asks for: a deterministic prompt of about `--prompt-len` tokens and the
//! JSON body for the chosen endpoint.
//!
//! Every request gets its own prompt (drawn from the seed and the request's index) so that a
//! prefix cache in the target does not turn the run into a cache benchmark, while two runs with
//! the same seed send the same bodies.

use serde_json::{json, Value};

use super::args::{BenchArgs, Endpoint};

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
    model: String,
    prompt_len: u32,
    max_tokens: u32,
    stream: bool,
    seed: u64,
}

impl Workload {
    pub fn new(args: &BenchArgs, model: String) -> Self {
        Self {
            endpoint: args.endpoint,
            model,
            prompt_len: args.prompt_len,
            max_tokens: args.max_tokens,
            stream: args.stream,
            seed: args.seed,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The body of request number `index`.
    pub fn body(&self, index: u64) -> Value {
        let text = prompt(self.seed, index, self.prompt_len);
        let mut body = match self.endpoint {
            Endpoint::Chat => json!({
                "model": self.model,
                "messages": [{"role": "user", "content": text}],
            }),
            Endpoint::Completions => json!({"model": self.model, "prompt": text}),
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
