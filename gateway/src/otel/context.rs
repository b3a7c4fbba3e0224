//! W3C Trace Context (`traceparent`, `tracestate`): reading the client's, writing the one the
//! worker gets. <https://www.w3.org/TR/trace-context/>
//!
//! A malformed header is ignored (the request starts a new trace), exactly as the
//! recommendation says; it is never an error for the client.

use std::fmt::Write;

/// A trace id (16 bytes) and a span id (8 bytes); all-zero ids are invalid.
pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// The caller's position in a trace, from its `traceparent` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    /// The caller's span: the parent of the gateway's span.
    pub span_id: SpanId,
    /// The caller's sampling decision (flag `01`).
    pub sampled: bool,
}

fn hex_into(text: &str, out: &mut [u8]) -> Option<()> {
    let bytes = text.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None, // upper case is invalid in traceparent
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(bytes[2 * i])? << 4) | digit(bytes[2 * i + 1])?;
    }
    Some(())
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parse a `traceparent` value: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
/// Later versions are read by their first four fields (the recommendation's forward
/// compatibility rule); version `ff`, all-zero ids, upper-case hex or wrong lengths are `None`.
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let mut parts = value.splitn(5, '-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    let mut v = [0u8; 1];
    hex_into(version, &mut v)?;
    match v[0] {
        0xff => return None,
        // Version 00 has exactly four fields; a later one may append more after a dash.
        0x00 if rest.is_some() => return None,
        _ => {}
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    let mut f = [0u8; 1];
    hex_into(trace, &mut trace_id)?;
    hex_into(span, &mut span_id)?;
    hex_into(flags, &mut f)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: f[0] & 1 == 1,
    })
}

/// The `traceparent` a worker gets: the trace, the gateway's span as its parent.
pub fn format_traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> String {
    format!(
        "00-{}-{}-{}",
        hex(trace_id),
        hex(span_id),
        if sampled { "01" } else { "00" }
    )
}

/// A `tracestate` worth passing on: printable ASCII, at most 512 bytes (the recommendation's
/// limit for what a vendor must propagate), else dropped.
pub fn clean_tracestate(value: &str) -> Option<&str> {
    let v = value.trim();
    (!v.is_empty() && v.len() <= 512 && v.bytes().all(|b| (0x20..0x7f).contains(&b))).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_the_recommendation_example() {
        let p = parse_traceparent(GOOD).unwrap();
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&p.span_id), "00f067aa0ba902b7");
        assert!(p.sampled);
        let unsampled = parse_traceparent(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        assert_eq!(
            format_traceparent(&p.trace_id, &p.span_id, true),
            GOOD,
            "round trip"
        );
    }

    #[test]
    fn later_versions_are_read_by_their_first_fields() {
        let p = parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what")
            .unwrap();
        assert!(p.sampled);
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "00",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tracestate_is_passed_only_when_sane() {
        assert_eq!(
            clean_tracestate(" rojo=00f067aa0ba902b7 "),
            Some("rojo=00f067aa0ba902b7")
        );
        assert_eq!(clean_tracestate(""), None);
        assert_eq!(clean_tracestate("a=\u{7}"), None);
        assert_eq!(clean_tracestate(&"a".repeat(513)), None);
    }
}
