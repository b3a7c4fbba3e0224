//! Response translation on the gateway's own forwarding path ([`crate::proxy`]'s `forward`): for
//! requests whose client speaks another API than the worker (Anthropic's Messages API in
//! front of an OpenAI-only worker) or whose answer the gateway must also keep (a session's
//! assistant reply). The worker's bytes still go through the response observer first (TTFT,
//! usage), then through the translator, then to the client.

use bytes::Bytes;

/// Rewrites one worker response for the client. A fresh translator is made for every
/// attempt that reaches the client (see [`TranslatorFactory`]), so a retried attempt never
/// leaves state behind.
pub trait ResponseTranslator: Send {
    /// The client's `content-type` (the worker's is dropped).
    fn content_type(&self) -> &'static str;

    /// The status for the client, given the worker's (default: the same).
    fn status(&self, upstream: u16) -> u16 {
        upstream
    }

    /// A piece of the worker's body, as it arrived (SSE events may be split anywhere).
    /// Returns what to send to the client now; empty to send nothing yet.
    fn chunk(&mut self, data: &[u8]) -> Bytes;

    /// The worker's body ended normally. Returns the last bytes for the client.
    fn finish(&mut self) -> Bytes;

    /// The worker broke off mid-response after part of it reached the client. Returns bytes
    /// that end the client's response cleanly in its API (e.g. an SSE error event), if any.
    fn abort(&mut self, _message: &str) -> Bytes {
        Bytes::new()
    }

    /// Work to complete after `finish`, before the client's response ends (a session's
    /// exchange written to its store). The forwarding path awaits it, bounded.
    fn commit(&mut self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        None
    }
}

/// Makes the translator for an attempt from the worker's status and the worker's id.
pub type TranslatorFactory = Box<dyn Fn(u16, &str) -> Box<dyn ResponseTranslator> + Send + Sync>;

/// How a request's response is rewritten, set in the request context before forwarding.
pub struct Translation {
    /// The worker path, when it differs from the client's (`/v1/messages` → chat completions).
    pub upstream_path: Option<&'static str>,
    pub factory: TranslatorFactory,
}

impl std::fmt::Debug for Translation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translation")
            .field("upstream_path", &self.upstream_path)
            .finish_non_exhaustive()
    }
}
