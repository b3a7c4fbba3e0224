//! HTTP/1.1 framing attacks against the gateway's front door: request smuggling shapes
//! (`Content-Length` against `Transfer-Encoding`, obfuscated codings, obs-fold, bare CR),
//! header floods and very long URIs. Each must be refused cleanly (a 4xx, or the connection
//! closed), must not let a second request hidden in the body reach a worker, and must leave
//! the gateway serving. Raw bytes over loopback against the real gateway and an in-process
//! `sagellm-sim` worker.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{chat_body, sim, Fleet};

/// A valid chat request: hidden behind a hostile request, it must never reach a worker.
fn smuggled() -> String {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"smuggled"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Send raw bytes and return every status line the gateway wrote back before it closed the
/// connection (or went quiet for 2 s: the hidden request asks to close after its answer).
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .filter_map(|(i, m)| text.get(i + m.len()..i + m.len() + 3)?.parse().ok())
        .collect()
}

/// The hostile requests, each with a valid request pipelined behind it.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let hidden = smuggled();
    let chat =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n";
    let with = |name: &'static str, head: &str, body: &str| {
        (name, format!("{chat}{head}\r\n{body}{hidden}").into_bytes())
    };
    let flood: String = (0..10_000).map(|i| format!("x-h-{i}: v\r\n")).collect();
    let over_max: String = (0..300).map(|i| format!("x-h-{i}: v\r\n")).collect();
    vec![
        // CL.TE: a front that trusts Content-Length would forward the hidden request as body.
        with(
            "CL then TE",
            &format!(
                "content-length: {}\r\ntransfer-encoding: chunked\r\n",
                5 + hidden.len()
            ),
            "0\r\n\r\n",
        ),
        // TE.CL: the chunk swallows the hidden request if Content-Length is ignored wrongly.
        with(
            "TE then CL",
            "transfer-encoding: chunked\r\ncontent-length: 4\r\n",
            &format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len()),
        ),
        with("xchunked", "transfer-encoding: xchunked\r\n", "0\r\n\r\n"),
        with(
            "chunked not last",
            "transfer-encoding: chunked, identity\r\n",
            "0\r\n\r\n",
        ),
        with(
            "space before colon",
            "transfer-encoding : chunked\r\ncontent-length: 5\r\n",
            "0\r\n\r\n",
        ),
        with(
            "obs-fold TE",
            "transfer-encoding:\r\n chunked\r\ncontent-length: 5\r\n",
            "0\r\n\r\n",
        ),
        with("obs-fold header", "x-a: b\r\n c\r\ncontent-length: 0\r\n", ""),
        with("bare CR", "x-a: b\rx-b: c\r\ncontent-length: 0\r\n", ""),
        with("NUL in header", "x-a: b\0c\r\ncontent-length: 0\r\n", ""),
        with("space in name", "x a: b\r\ncontent-length: 0\r\n", ""),
        with(
            "differing lengths",
            "content-length: 0\r\ncontent-length: 10\r\n",
            "",
        ),
        with("length list", "content-length: 0, 10\r\n", ""),
        with("signed length", "content-length: +0\r\n", ""),
        with("hex length", "content-length: 0x0\r\n", ""),
        (
            "TE on HTTP/1.0",
            format!(
                "POST /v1/chat/completions HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
            )
            .into_bytes(),
        ),
        (
            "10,000 headers",
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{flood}\r\n{hidden}").into_bytes(),
        ),
        (
            "300 headers",
            format!("{chat}{over_max}content-length: 0\r\n\r\n{hidden}").into_bytes(),
        ),
        (
            "2 MB URI",
            format!(
                "GET /v1/{} HTTP/1.1\r\nhost: x\r\n\r\n{hidden}",
                "a".repeat(2 * 1024 * 1024)
            )
            .into_bytes(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_and_nothing_hidden_reaches_a_worker() {
    let fleet = Fleet::start(vec![sim("a", "m")], |_| {}).await;
    let addr = fleet.gw.addr;
    // The control: the hidden request alone is served, so a refusal below is not an accident.
    let alone = tokio::task::spawn_blocking(move || exchange(addr, smuggled().as_bytes()))
        .await
        .unwrap();
    assert_eq!(alone, vec![200], "the hidden request on its own");
    let mut before = fleet.sims[0].control().requests_total();
    for (name, request) in cases() {
        let statuses = tokio::task::spawn_blocking(move || exchange(addr, &request))
            .await
            .unwrap();
        println!("{name}: {statuses:?}");
        assert!(
            statuses.len() <= 1,
            "{name}: the gateway answered a request hidden behind it: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| (400..500).contains(s)),
            "{name}: {statuses:?}"
        );
        assert_eq!(
            fleet.sims[0].control().requests_total(),
            before,
            "{name}: something reached the worker"
        );
        let resp = fleet.chat(&chat_body("m", name)).await;
        assert_eq!(resp.status(), 200, "{name}: the gateway stopped serving");
        let _ = resp.bytes().await;
        // The control request above is the only new one the worker saw.
        before += 1;
        assert_eq!(fleet.sims[0].control().requests_total(), before, "{name}");
    }
    fleet.stop().await;
}
