//! The SSE reader (`sse::Events`) and the response observer (`proxy::observe`), which both
//! see a worker's bytes in whatever pieces the network delivers.
//!
//! Invariants: no panic; the events (and the usage, event count and finish reasons) are the
//! same whatever the chunk borders; the events equal a whole-input reading of the stream.

use serde_json::json;

use super::{run, Gen};
use crate::proxy::observe::ResponseObserver;
use crate::sse::Events;

/// A whole-input reading of an SSE stream (the reference the incremental reader must match).
fn reference(input: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (mut data, mut has_data) = (Vec::new(), false);
    let mut on_line = |line: &[u8], out: &mut Vec<Vec<u8>>| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if has_data {
                out.push(std::mem::take(&mut data));
            }
            data.clear();
            has_data = false;
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return,
            Some(at) => {
                let v = &line[at + 1..];
                (&line[..at], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if has_data {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
            has_data = true;
        }
    };
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let last = lines.pop().unwrap_or_default();
    for line in lines {
        on_line(line, &mut out);
    }
    if !last.strip_suffix(b"\r").unwrap_or(last).is_empty() {
        on_line(last, &mut out);
    }
    on_line(b"", &mut out);
    out
}

/// A stream like a worker's (chunks, usage, `[DONE]`), with comments, other fields, `\r\n`
/// line ends and multi-line data mixed in; sometimes mutated.
fn stream(g: &mut Gen) -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..g.rng.usize(0..12) {
        let nl: &[u8] = if g.one_in(4) { b"\r\n" } else { b"\n" };
        match g.rng.u8(0..8) {
            0 => s.extend_from_slice(b": keep-alive"),
            1 => s.extend_from_slice(format!("event: {}", g.text(6)).as_bytes()),
            2 => s.extend_from_slice(format!("id: {i}").as_bytes()),
            3 => s.extend_from_slice(format!("data:{}", g.text(20)).as_bytes()),
            4 => {
                let usage = json!({"choices":[],"usage":{"prompt_tokens": g.rng.u32(..),
                    "completion_tokens": g.rng.u32(..)}});
                s.extend_from_slice(format!("data: {usage}").as_bytes());
            }
            _ => {
                let reason = g
                    .pick(&[json!(null), json!("stop"), json!("length")])
                    .clone();
                let chunk = json!({"choices":[{"index":0,"delta":{"content": g.text(8)},
                    "finish_reason": reason}]});
                s.extend_from_slice(format!("data: {chunk}").as_bytes());
            }
        }
        s.extend_from_slice(nl);
        if g.bool() {
            s.extend_from_slice(nl);
        }
    }
    if g.bool() {
        s.extend_from_slice(b"data: [DONE]\n\n");
    }
    if g.one_in(3) {
        s = g.mutate(&s);
    }
    s
}

fn events(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut e = Events::default();
    let mut out = Vec::new();
    for p in pieces {
        e.push(p, |d| out.push(d.to_vec()));
    }
    e.finish(|d| out.push(d.to_vec()));
    out
}

#[test]
fn events_do_not_depend_on_chunk_borders() {
    run("sse", |g| {
        let input = if g.one_in(5) { g.bytes(200) } else { stream(g) };
        let want = reference(&input);
        assert_eq!(events(&[&input]), want, "whole input");
        let pieces = g.split(&input);
        assert_eq!(events(&pieces), want, "split into {} pieces", pieces.len());
    });
}

fn observe(pieces: &[&[u8]]) -> ResponseObserver {
    let mut o = ResponseObserver::default();
    o.want_finish_reasons = true;
    o.on_headers(200, Some("text/event-stream"));
    for p in pieces {
        o.on_chunk(p);
    }
    o
}

#[test]
fn usage_and_counts_do_not_depend_on_chunk_borders() {
    run("observe", |g| {
        let input = if g.one_in(5) { g.bytes(200) } else { stream(g) };
        let whole = observe(&[&input]);
        let split = observe(&g.split(&input));
        let facts = |o: &ResponseObserver| {
            (
                o.bytes,
                o.sse_events,
                o.prompt_tokens,
                o.completion_tokens,
                o.finish_reasons.clone(),
            )
        };
        assert_eq!(facts(&split), facts(&whole));
        assert!(whole.finish_reasons.len() <= 8);
    });
}
