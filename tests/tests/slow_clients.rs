//! A client that reads a stream very slowly does not make the gateway buffer it: the
//! gateway reads the worker only as fast as the client takes the bytes, so the worker's
//! stream stops producing while the client does not read, and nothing is lost when it reads
//! again. Real sim, real gateway, a raw TCP client with a small receive buffer, loopback.

mod common;

use std::time::Duration;

use common::{sim, Fleet};
use sagellm_sim::SimConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stream of this many tokens is ~40 MB of SSE: far more than any socket buffer.
const TOKENS: u32 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_back_pressures_the_worker() {
    for failover in [true, false] {
        // With failover on, streams take the gateway's own path; off, Pingora's.
        let fast = SimConfig {
            tpot: Duration::ZERO,
            output_tokens: TOKENS,
            ..sim("a", "m")
        };
        let fleet = Fleet::start(vec![fast], |c| c.failover.enabled = failover).await;
        let body = json!({"model": "m", "stream": true, "max_tokens": TOKENS,
            "messages": [{"role": "user", "content": "flood me"}]})
        .to_string();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut conn = socket.connect(fleet.gw.addr).await.unwrap();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

        // The client stops reading: the worker's stream must come to a standstill.
        let sim = fleet.sims[0].control();
        let mut last = sim.stream_events_total();
        let stalled = loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = sim.stream_events_total();
            if now == last {
                break now;
            }
            assert!(
                now < u64::from(TOKENS),
                "the whole stream was produced unread"
            );
            last = now;
        };
        eprintln!("failover {failover}: {stalled} of {TOKENS} events produced while unread");
        assert!(
            stalled < u64::from(TOKENS) / 2,
            "produced {stalled} of {TOKENS} events while unread"
        );

        // Reading again, the whole stream arrives.
        let mut tail = Vec::new();
        let mut total = n;
        loop {
            let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
                .await
                .expect("the stream keeps coming")
                .unwrap();
            if n == 0 {
                break;
            }
            total += n;
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 64);
            }
            if tail.windows(12).any(|w| w == b"data: [DONE]") {
                break;
            }
        }
        assert!(tail.windows(12).any(|w| w == b"data: [DONE]"), "complete");
        assert!(total > 20 << 20, "{total} bytes");
        assert_eq!(sim.stream_events_total(), u64::from(TOKENS) + 3);
        drop(conn);
        fleet.stop().await;
    }
}
