//! Ending an attempt: releasing the worker and telling its statistics, its circuit breaker
//! (the passive health signal from real traffic) and the adaptive policy what happened. Every
//! attempt ends here exactly once, failed attempts when they fail, the last one in `logging`.
//! And what a finished request contributes to the metrics ([`record`]).

use super::ctx::{Kind, RequestCtx};
use super::Gateway;
use crate::metrics::RequestRecord;
use crate::worker::stats::Outcome;

/// What a finished request contributes to the metrics.
pub(super) fn record(ctx: &RequestCtx, status: u16) -> RequestRecord {
    let o = &ctx.observer;
    let proxied = ctx.worker.is_some() && ctx.kind == Kind::Llm && (200..300).contains(&status);
    let first = o.first_byte.zip(ctx.dispatched_at);
    let ttft = first
        .filter(|_| proxied && o.sse)
        .map(|(f, d)| f.saturating_duration_since(d));
    let tokens = if proxied {
        o.output_tokens().unwrap_or(0)
    } else {
        0
    };
    let tpot = o
        .first_byte
        .filter(|_| ttft.is_some() && tokens >= 2)
        .map(|f| f.elapsed() / (tokens as u32 - 1));
    let now = std::time::Instant::now();
    // Only a request one worker answered in full: a failed attempt's time is the worker's.
    let overhead = ctx
        .sent_at
        .zip(ctx.upstream_done)
        .filter(|_| proxied && ctx.attempts() <= 1)
        .map(|(sent, done)| {
            sent.saturating_duration_since(ctx.start) + now.saturating_duration_since(done)
        });
    RequestRecord {
        route: Some(ctx.route.label()),
        status,
        latency: now.saturating_duration_since(ctx.start),
        overhead,
        ttft,
        tpot,
        prompt_tokens: if proxied {
            o.prompt_tokens.unwrap_or(0)
        } else {
            0
        },
        completion_tokens: tokens,
        retries: u64::from(ctx.attempts().saturating_sub(1)),
    }
}

/// How an attempt went, from the worker's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answered (2xx, or a 4xx the client caused).
    Success,
    /// Answered 429: alive but overloaded. Counts in the error rate, not in the breaker.
    Overloaded,
    /// Reset, timeout, broken response or 5xx.
    Failure,
    /// Could not even connect.
    ConnectFailure,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Overloaded => "overloaded",
            Verdict::Failure => "failure",
            Verdict::ConnectFailure => "connect_failure",
        }
    }

    /// The verdict for a response status.
    pub fn of_status(status: u16) -> Verdict {
        match status {
            429 => Verdict::Overloaded,
            500.. => Verdict::Failure,
            0 => Verdict::Failure,
            _ => Verdict::Success,
        }
    }
}

impl Gateway {
    /// Record `verdict` for the current attempt's worker, then release it (no-op when none
    /// is held).
    pub(crate) fn end_attempt(&self, ctx: &mut RequestCtx, verdict: Verdict) {
        let Some(guard) = ctx.guard.take() else {
            return;
        };
        let worker = guard.worker();
        super::trace::on_attempt_end(ctx, worker, verdict);
        let dispatched = ctx.dispatched_at.unwrap_or(ctx.start);
        let success = verdict == Verdict::Success;
        // Only a stream's first byte is its first token; a whole response arrives at once.
        let ttft = (ctx.observer.first_byte)
            .filter(|_| ctx.observer.sse)
            .map(|t| t.saturating_duration_since(dispatched));
        let outcome = Outcome {
            success,
            latency: dispatched.elapsed(),
            ttft,
            prefill_tokens: ctx.prefill_tokens,
            completion_tokens: if success {
                ctx.observer.output_tokens()
            } else {
                None
            },
        };
        worker.stats.record(&outcome);
        self.state.policy.load().observe(worker, &outcome);
        if success {
            worker.count_served();
        }

        let breaker = ctx.config.circuit_breaker.settings();
        // A slow call is a failure for the breaker: time to the response's first byte (the
        // length of a generation does not count).
        let slow = outcome.ttft.unwrap_or(outcome.latency) > breaker.slow_call_threshold;
        let breaker_ok = matches!(verdict, Verdict::Success | Verdict::Overloaded) && !slow;
        if let Some(admission) = ctx.admission.take() {
            if let Some(to) = worker.breaker.record(&breaker, admission, breaker_ok) {
                tracing::info!(worker = %worker.id, state = to.as_str(), slow, "circuit breaker changed");
            }
        }
        // Released last, so whoever sees the worker's slot free also sees this attempt
        // counted; then a queued request may take the slot.
        drop(guard);
        self.state.scheduler.kick(self.state.fleet());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(Verdict::of_status(200), Verdict::Success);
        assert_eq!(Verdict::of_status(404), Verdict::Success);
        assert_eq!(Verdict::of_status(429), Verdict::Overloaded);
        assert_eq!(Verdict::of_status(503), Verdict::Failure);
        assert_eq!(Verdict::of_status(0), Verdict::Failure);
    }
}
