//! A minimal HTTP/1.1 client over raw tokio sockets (no extra dependency), which also records
//! when each SSE `data:` event arrives.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The payloads of the SSE events (`data: …`), in order.
    pub fn events(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

pub(crate) fn request_bytes(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Sends one request on a fresh connection and reads the whole response.
pub(crate) async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> HttpResponse {
    send_timed(addr, method, path, body).await.0
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    send(addr, "GET", path, "").await
}

pub(crate) async fn post(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    send(addr, "POST", path, body).await
}

/// Like [`send`], also returning when each `data: ` event arrived (since the request was sent).
pub(crate) async fn send_timed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (HttpResponse, Vec<Duration>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(&request_bytes(addr, method, path, body.as_bytes()))
        .await
        .expect("write request");
    let sent = Instant::now();
    let mut raw = Vec::new();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await.expect("read response");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let seen = count(&raw, b"data: ");
        while arrivals.len() < seen {
            arrivals.push(sent.elapsed());
        }
    }
    (parse_response(&raw), arrivals)
}

pub(crate) fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let head_end = find(raw, b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}
