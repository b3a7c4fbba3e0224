//! The warm-up request sent once the model is loaded, before `/health` turns ready: one greedy
//! token from a short prompt. It runs the first forward pass (allocations, lazily built
//! kernels' state) outside any client's time to first token, and carries the
//! [`crate::pin`] processor, so the engine thread is pinned before real traffic.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mistralrs::{MistralRs, NormalRequest, Request, RequestMessage, Response, SamplingParams};
use tokio::sync::mpsc;

/// Generate one token; returns how long it took.
pub async fn run(runner: &MistralRs) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut params = SamplingParams::deterministic();
    params.max_len = Some(1);
    let (tx, mut rx) = mpsc::channel(8);
    let mut req = NormalRequest::new_simple(
        RequestMessage::Completion {
            text: "Hello".into(),
            echo_prompt: false,
            best_of: None,
        },
        params,
        tx,
        runner.next_request_id(),
        None,
        None,
    );
    req.logits_processors = crate::pin::processor().map(|p| vec![p]);
    let sender = runner.get_sender(None).context("engine sender")?;
    sender
        .send(Request::Normal(Box::new(req)))
        .await
        .map_err(|_| anyhow::anyhow!("the engine stopped"))?;
    loop {
        match rx.recv().await {
            Some(Response::CompletionDone(_)) | Some(Response::Done(_)) => {
                return Ok(started.elapsed())
            }
            Some(Response::CompletionModelError(e, _)) | Some(Response::ModelError(e, _)) => {
                bail!("warm-up failed: {e}")
            }
            Some(Response::InternalError(e)) | Some(Response::ValidationError(e)) => {
                bail!("warm-up failed: {e}")
            }
            Some(_) => continue,
            None => bail!("the engine stopped during warm-up"),
        }
    }
}
