//! The OTLP/HTTP request body: `ExportTraceServiceRequest` in protobuf, written by hand (the
//! few messages of `opentelemetry/proto/{collector/trace,trace,common,resource}/v1` the
//! gateway sends; field numbers from those files). The tests crate decodes it with `prost`,
//! an independent reader, against a real OTLP receiver.

use super::span::{Event, SpanData, Status, Value};

/// `Span.SpanKind.SPAN_KIND_SERVER`.
const KIND_SERVER: u64 = 2;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from((field << 3) | wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A nested message: written into a scratch buffer, then length-prefixed.
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    write(&mut inner);
    bytes_field(out, field, &inner);
}

/// `AnyValue`: string 1, bool 2, int 3, double 4, array 5.
fn any_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => bytes_field(out, 1, s.as_bytes()),
        Value::Bool(b) => varint_field(out, 2, u64::from(*b)),
        Value::Int(i) => varint_field(out, 3, *i as u64),
        Value::F64(f) => fixed64_field(out, 4, f.to_bits()),
        Value::StrList(items) => message(out, 5, |arr| {
            for s in items {
                message(arr, 1, |any| bytes_field(any, 1, s.as_bytes()));
            }
        }),
    }
}

/// `KeyValue { key = 1; value = 2 }` as field `field` of the enclosing message.
fn key_value(out: &mut Vec<u8>, field: u32, k: &str, v: &Value) {
    message(out, field, |kv| {
        bytes_field(kv, 1, k.as_bytes());
        message(kv, 2, |any| any_value(any, v));
    });
}

fn event(out: &mut Vec<u8>, e: &Event) {
    message(out, 11, |m| {
        fixed64_field(m, 1, e.time_unix_nano);
        bytes_field(m, 2, e.name.as_bytes());
        for (k, v) in &e.attributes {
            key_value(m, 3, k, v);
        }
    });
}

fn span(out: &mut Vec<u8>, s: &SpanData) {
    message(out, 2, |m| {
        bytes_field(m, 1, &s.trace_id);
        bytes_field(m, 2, &s.span_id);
        if let Some(ts) = &s.trace_state {
            bytes_field(m, 3, ts.as_bytes());
        }
        if let Some(p) = &s.parent_span_id {
            bytes_field(m, 4, p);
        }
        bytes_field(m, 5, s.name.as_bytes());
        varint_field(m, 6, KIND_SERVER);
        fixed64_field(m, 7, s.start_unix_nano);
        fixed64_field(m, 8, s.end_unix_nano);
        for (k, v) in &s.attributes {
            key_value(m, 9, k, v);
        }
        for e in &s.events {
            event(m, e);
        }
        if s.dropped_events > 0 {
            varint_field(m, 12, u64::from(s.dropped_events));
        }
        if let Status::Error(msg) = &s.status {
            message(m, 15, |st| {
                bytes_field(st, 2, msg.as_bytes());
                varint_field(st, 3, STATUS_ERROR);
            });
        }
    });
}

/// The resource's attributes and the instrumentation scope of every batch.
pub struct Resource {
    pub attributes: Vec<(&'static str, Value)>,
    pub scope_name: &'static str,
    pub scope_version: &'static str,
}

/// `ExportTraceServiceRequest { resource_spans = 1 }` with one `ResourceSpans { resource = 1;
/// scope_spans = 2 }` holding one `ScopeSpans { scope = 1; spans = 2 }`.
pub fn export_request(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 512);
    message(&mut out, 1, |rs| {
        message(rs, 1, |r| {
            for (k, v) in &resource.attributes {
                key_value(r, 1, k, v);
            }
        });
        message(rs, 2, |ss| {
            message(ss, 1, |scope| {
                bytes_field(scope, 1, resource.scope_name.as_bytes());
                bytes_field(scope, 2, resource.scope_version.as_bytes());
            });
            for s in spans {
                span(ss, s);
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_examples() {
        // From the protobuf encoding guide: 150 → 96 01; 1 → 01; 300 → ac 02.
        for (v, want) in [
            (150u64, vec![0x96, 0x01]),
            (1, vec![1]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
        // A negative int64 takes ten bytes (two's complement, not zigzag).
        let mut out = Vec::new();
        varint(&mut out, -1i64 as u64);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn a_string_attribute_is_a_nested_key_value() {
        let mut out = Vec::new();
        key_value(&mut out, 1, "a", &Value::Str("b".into()));
        // field 1 LEN(8) { field 1 "a", field 2 LEN(3) { field 1 "b" } }
        assert_eq!(out, [0x0a, 8, 0x0a, 1, b'a', 0x12, 3, 0x0a, 1, b'b']);
    }
}
