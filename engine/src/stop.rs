//! `stop` strings, applied to the text stream by the engine itself.
//!
//! mistral.rs turns one-token stop strings into stop tokens and checks longer ones on its
//! byte buffer, but in streaming mode (which every request uses here, see [`crate::generate`])
//! text that starts a stop string has already been sent by the time the match completes. This
//! matcher holds back exactly the text that could still become a stop string, so the client
//! never sees any part of it, in streams and whole answers alike.

#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What to do with one piece of generated text.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send this text (possibly empty) and go on.
    Emit(String),
    /// Send this text, then finish with reason `stop`.
    Stop(String),
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Step {
        if self.stops.is_empty() {
            return Step::Emit(text.to_string());
        }
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            return Step::Stop(out);
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .rev()
                    .filter(|&n| s.is_char_boundary(n))
                    .map(move |n| &s[..n])
            })
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let split = self.held.len() - keep;
        let out = self.held[..split].to_string();
        self.held.drain(..split);
        Step::Emit(out)
    }

    /// The generation ended: release what was held back.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                Step::Emit(t) => out.push_str(&t),
                Step::Stop(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn cuts_before_the_stop_string_across_pieces() {
        assert_eq!(
            run(&["\n\nThe"], &["Paris.", "\n", "\nThe", " answer"]),
            ("Paris.".into(), true)
        );
        assert_eq!(
            run(&["END"], &["ab", "cE", "N", "Dxyz"]),
            ("abc".into(), true)
        );
        assert_eq!(run(&["x", "bc"], &["ab", "c"]), ("a".into(), true));
    }

    #[test]
    fn releases_held_text_when_no_stop_follows() {
        assert_eq!(run(&["END"], &["the E", "ND"]), ("the ".into(), true));
        assert_eq!(run(&["END"], &["the E", "ar"]), ("the Ear".into(), false));
        assert_eq!(
            run(&["END"], &["ok EN"]),
            ("ok EN".into(), false),
            "flushed at the end"
        );
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn holds_back_only_possible_prefixes() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("hello S"), Step::Emit("hello ".into()));
        assert_eq!(m.push("T"), Step::Emit(String::new()));
        assert_eq!(m.push("x"), Step::Emit("STx".into()));
        assert_eq!(
            m.push("é S"),
            Step::Emit("é ".into()),
            "multi-byte text is fine"
        );
    }
}
