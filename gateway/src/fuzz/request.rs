//! The request body parser and validator (`proxy::request::parse`), for every endpoint.
//!
//! Invariants: no panic; a rejection is a 4xx with an OpenAI error body naming its type;
//! the same body gives the same answer twice; a well-formed body is accepted with the fields
//! it carries.

use serde_json::{json, Value};

use super::{run, Gen};
use crate::config::CacheAwareConfig;
use crate::error::{ApiFlavor, GatewayError};
use crate::proxy::request::{parse, KeySources};
use crate::proxy::route::Endpoint;

const ENDPOINTS: [Endpoint; 5] = [
    Endpoint::Chat,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Messages,
    Endpoint::OtherV1,
];

/// The fields the parser reads, and a few it forwards untouched.
pub const KEYS: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "input",
    "stream",
    "user",
    "session_id",
    "priority",
    "max_tokens",
    "max_completion_tokens",
    "role",
    "content",
    "n",
    "temperature",
];

/// A typed client error with a well-formed OpenAI error body.
pub fn assert_client_error(e: &GatewayError) {
    let status = e.status();
    assert!((400..500).contains(&status), "{e:?} is a {status}");
    let (_, _, body) = e.render(ApiFlavor::OpenAi);
    let v: Value = serde_json::from_slice(&body).expect("error body is JSON");
    assert!(v["error"]["type"].is_string(), "{v}");
    assert!(
        !v["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{v}"
    );
}

/// A body a client could well send: the right fields with plausible values.
fn well_formed(g: &mut Gen, endpoint: Endpoint) -> (Value, String) {
    let model = format!("m{}", g.text(20));
    let mut body = json!({ "model": model });
    let field = match endpoint {
        Endpoint::Completions => "prompt",
        Endpoint::Embeddings => "input",
        _ => "messages",
    };
    body[field] = match field {
        "messages" => Value::Array(
            (0..g.rng.usize(1..4))
                .map(|_| json!({"role": g.pick(&["user", "assistant", "system"]), "content": g.text(40)}))
                .collect(),
        ),
        _ if g.bool() => Value::String(g.text(40)),
        _ => json!([g.text(10), g.text(10)]),
    };
    if g.bool() {
        body["stream"] = Value::Bool(g.bool());
    }
    if g.bool() {
        body["max_tokens"] = g.rng.u32(..).into();
    }
    for key in ["user", "session_id"] {
        if g.one_in(3) {
            body[key] = Value::String(g.text(8));
        }
    }
    if g.one_in(3) {
        body["priority"] = g.rng.i64(..).into();
    }
    (body, model)
}

fn input(g: &mut Gen, endpoint: Endpoint) -> Vec<u8> {
    match g.rng.u8(0..4) {
        0 => serde_json::to_vec(&g.json(4, KEYS)).unwrap(),
        1 => {
            let (body, _) = well_formed(g, endpoint);
            let bytes = serde_json::to_vec(&body).unwrap();
            g.mutate(&bytes)
        }
        2 => g.bytes(64),
        _ => {
            // A well-formed body with one field replaced by a random value.
            let (mut body, _) = well_formed(g, endpoint);
            body[*g.pick(KEYS)] = g.json(2, KEYS);
            serde_json::to_vec(&body).unwrap()
        }
    }
}

#[test]
fn any_body_is_parsed_or_refused_cleanly() {
    let cache = CacheAwareConfig::default();
    run("request", |g| {
        let endpoint = *g.pick(&ENDPOINTS);
        let body = input(g, endpoint);
        let keys = KeySources {
            session_header: g.one_in(4).then_some("s-1"),
            api_key: g.one_in(4).then_some("k-1"),
            prefix_bytes: g.rng.usize(0..300),
            prefixes: g.bool().then_some(&cache),
        };
        let first = parse(endpoint, &body, keys);
        match &first {
            Ok(info) => {
                if endpoint != Endpoint::OtherV1 {
                    let m = info
                        .model
                        .as_deref()
                        .expect("an accepted body names its model");
                    assert!(!m.trim().is_empty());
                }
            }
            Err(e) => assert_client_error(e),
        }
        let again = parse(endpoint, &body, keys);
        assert_eq!(format!("{first:?}"), format!("{again:?}"), "deterministic");
    });
}

#[test]
fn well_formed_bodies_are_accepted_as_sent() {
    run("request-well-formed", |g| {
        let endpoint = *g.pick(&ENDPOINTS[..4]);
        let (body, model) = well_formed(g, endpoint);
        let bytes = serde_json::to_vec(&body).unwrap();
        let keys = KeySources {
            prefix_bytes: 64,
            ..Default::default()
        };
        match parse(endpoint, &bytes, keys) {
            Ok(info) => {
                assert_eq!(info.model.as_deref(), Some(model.as_str()));
                assert_eq!(info.stream, body["stream"].as_bool().unwrap_or(false));
                assert_eq!(info.priority, body["priority"].as_i64());
                let session = body["session_id"].as_str().filter(|s| !s.is_empty());
                assert_eq!(info.session_id.as_deref(), session);
                assert!(
                    info.affinity.is_some(),
                    "a prompt always gives an affinity key"
                );
            }
            // Only an over-long model name is refused.
            Err(e) => {
                assert!(
                    model.len() > crate::edge::model::MAX_MODEL_LEN,
                    "{e:?} for {body}"
                );
                assert_client_error(&e);
            }
        }
    });
}
