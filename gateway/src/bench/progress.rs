//! A one-line progress bar on stderr, redrawn in place while a run goes on. Drawn only when
//! asked to (the caller checks that stderr is a terminal), so pipes and logs stay clean.

use std::io::Write as _;
use std::time::Duration;

/// What "done" means for the bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// The run sends requests for this long.
    Duration(Duration),
    /// The run sends this many requests.
    Requests(u64),
}

/// A snapshot of the run for one redraw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
}

const WIDTH: usize = 24;

/// The bar's text (without the carriage return), e.g.
/// `[#########---------------]   4.1/10.0 s  sent 82  ok 80  err 0  in flight 2  19.5 req/s`.
pub fn render(goal: Goal, s: &Snapshot) -> String {
    let secs = s.elapsed.as_secs_f64();
    let (fraction, position) = match goal {
        Goal::Duration(d) => (
            secs / d.as_secs_f64().max(f64::EPSILON),
            format!("{secs:>6.1}/{:.1} s", d.as_secs_f64()),
        ),
        Goal::Requests(n) => (
            s.sent as f64 / n.max(1) as f64,
            format!("{secs:>6.1} s  {}/{n} req", s.sent),
        ),
    };
    let filled = ((fraction.clamp(0.0, 1.0)) * WIDTH as f64).round() as usize;
    let finished = s.ok + s.errors;
    let rate = if secs > 0.0 {
        finished as f64 / secs
    } else {
        0.0
    };
    format!(
        "[{}{}] {position}  ok {}  err {}  in flight {}  {rate:.1} req/s",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        s.ok,
        s.errors,
        s.sent.saturating_sub(finished),
    )
}

/// Draws [`render`] on stderr when enabled; a no-op otherwise.
#[derive(Debug)]
pub struct Progress {
    goal: Goal,
    enabled: bool,
}

impl Progress {
    pub fn new(goal: Goal, enabled: bool) -> Self {
        Self { goal, enabled }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn draw(&self, snapshot: &Snapshot) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            // \r back to column 0, ESC[K clears what a longer previous line left.
            let _ = write!(err, "\r{}\x1b[K", render(self.goal, snapshot));
            let _ = err.flush();
        }
    }

    /// Removes the bar so that the summary starts on a clean line.
    pub fn clear(&self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fill_and_counts() {
        let s = Snapshot {
            elapsed: Duration::from_secs(5),
            sent: 12,
            ok: 9,
            errors: 1,
        };
        let line = render(Goal::Duration(Duration::from_secs(10)), &s);
        assert!(
            line.starts_with(&format!("[{}{}]", "#".repeat(12), "-".repeat(12))),
            "{line}"
        );
        assert!(
            line.contains("5.0/10.0 s") && line.contains("in flight 2"),
            "{line}"
        );
        assert!(line.contains("2.0 req/s"), "{line}");
        let line = render(Goal::Requests(6), &s);
        assert!(
            line.starts_with(&format!("[{}]", "#".repeat(WIDTH))),
            "overfull clamps: {line}"
        );
        assert!(line.contains("12/6 req"), "{line}");
    }
}
