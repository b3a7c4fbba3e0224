//! One request's span while it is recorded ([`RequestSpan`], in the request's context) and
//! once it is finished ([`SpanData`], what the exporter sends).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::context::{SpanId, TraceId};

/// Events kept per span (a request's attempts are bounded by `retry.max_attempts`; this is a
/// guard, not a limit anyone should meet).
const MAX_EVENTS: usize = 32;

/// An attribute value (the OTLP `AnyValue`s the gateway uses).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    F64(f64),
    Bool(bool),
    StrList(Vec<String>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v.min(i64::MAX as u64) as i64)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

pub type Attributes = Vec<(&'static str, Value)>;

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub time_unix_nano: u64,
    pub name: &'static str,
    pub attributes: Attributes,
}

/// OTLP span status.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Unset,
    Error(String),
}

/// A finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanData {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: Option<String>,
    pub name: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    pub events: Vec<Event>,
    pub dropped_events: u32,
    pub status: Status,
}

/// A span being recorded: times are taken as `Instant`s and placed on the wall clock relative
/// to the span's start (one clock read per span).
#[derive(Debug)]
pub struct RequestSpan {
    data: SpanData,
    start: Instant,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

impl RequestSpan {
    /// A span that began at `start` (the request's arrival).
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        parent_span_id: Option<SpanId>,
        trace_state: Option<String>,
        start: Instant,
    ) -> Self {
        let start_unix =
            unix_nanos(SystemTime::now()).saturating_sub(start.elapsed().as_nanos() as u64);
        Self {
            data: SpanData {
                trace_id,
                span_id,
                parent_span_id,
                trace_state,
                name: String::new(),
                start_unix_nano: start_unix,
                end_unix_nano: start_unix,
                attributes: Vec::with_capacity(16),
                events: Vec::new(),
                dropped_events: 0,
                status: Status::Unset,
            },
            start,
        }
    }

    pub fn trace_id(&self) -> &TraceId {
        &self.data.trace_id
    }

    pub fn span_id(&self) -> &SpanId {
        &self.data.span_id
    }

    fn at(&self, t: Instant) -> u64 {
        self.data.start_unix_nano + t.saturating_duration_since(self.start).as_nanos() as u64
    }

    pub fn set_name(&mut self, name: String) {
        self.data.name = name;
    }

    /// Set an attribute (replacing one of the same key: keys are unique in OTLP).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.data.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.data.attributes.push((key, value)),
        }
    }

    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.data
            .attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Add an event that happened at `t`.
    pub fn event(&mut self, t: Instant, name: &'static str, attributes: Attributes) {
        if self.data.events.len() >= MAX_EVENTS {
            self.data.dropped_events += 1;
            return;
        }
        let time_unix_nano = self.at(t);
        self.data.events.push(Event {
            time_unix_nano,
            name,
            attributes,
        });
    }

    pub fn set_error(&mut self, message: String) {
        self.data.status = Status::Error(message);
    }

    /// End the span at `end`.
    pub fn finish(mut self, end: Instant) -> SpanData {
        self.data.end_unix_nano = self.at(end);
        self.data.events.sort_by_key(|e| e.time_unix_nano);
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_relative_to_the_start() {
        let start = Instant::now();
        let mut s = RequestSpan::new([1; 16], [2; 8], None, None, start);
        s.set("k", 1u32);
        s.set("k", "replaced");
        s.event(start + Duration::from_millis(7), "late", vec![]);
        s.event(start + Duration::from_millis(3), "early", vec![]);
        let d = s.finish(start + Duration::from_millis(10));
        assert_eq!(d.end_unix_nano - d.start_unix_nano, 10_000_000);
        assert_eq!(d.attributes, vec![("k", Value::Str("replaced".into()))]);
        let names: Vec<_> = d.events.iter().map(|e| e.name).collect();
        assert_eq!(names, ["early", "late"]);
        assert_eq!(d.events[0].time_unix_nano - d.start_unix_nano, 3_000_000);
    }

    #[test]
    fn events_are_bounded() {
        let start = Instant::now();
        let mut s = RequestSpan::new([1; 16], [2; 8], None, None, start);
        for _ in 0..MAX_EVENTS + 5 {
            s.event(start, "e", vec![]);
        }
        let d = s.finish(start);
        assert_eq!((d.events.len(), d.dropped_events), (MAX_EVENTS, 5));
    }
}
