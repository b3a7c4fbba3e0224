//! Unit tests of `proxy/request.rs`.

use super::*;

fn keys() -> KeySources<'static> {
    KeySources {
        prefix_bytes: 256,
        ..Default::default()
    }
}

#[test]
fn reads_routing_fields() {
    let body = br#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"model":"m1"}"#;
    let info = parse(Endpoint::Chat, body, keys()).unwrap();
    assert_eq!(info.model.as_deref(), Some("m1"));
    assert!(info.stream);
    assert!(info.affinity.is_some());
    let info = parse(
        Endpoint::Completions,
        br#"{"model":"m\u0031","prompt":"x"}"#,
        keys(),
    )
    .unwrap();
    assert_eq!(
        info.model.as_deref(),
        Some("m1"),
        "escaped strings are decoded"
    );
    assert!(!info.stream);
}

#[test]
fn rejects_client_mistakes() {
    let cases: &[(Endpoint, &[u8], &str)] = &[
        (Endpoint::Chat, b"", "empty"),
        (Endpoint::Chat, b"{\"model\":", "invalid JSON"),
        (Endpoint::Chat, b"[1,2]", "invalid JSON"),
        (Endpoint::Chat, b"{\"messages\":[]}", "`model` is required"),
        (
            Endpoint::Chat,
            b"{\"model\":\"m\"}",
            "`messages` is required",
        ),
        (
            Endpoint::Chat,
            b"{\"model\":\"m\",\"messages\":null}",
            "`messages` is required",
        ),
        (
            Endpoint::Chat,
            b"{\"model\":\"m\",\"messages\":\"hi\"}",
            "must be an array",
        ),
        (
            Endpoint::Chat,
            b"{\"model\":5,\"messages\":[]}",
            "invalid type",
        ),
        (
            Endpoint::Chat,
            b"{\"model\":\"m\",\"messages\":[],\"stream\":\"yes\"}",
            "invalid type",
        ),
        (
            Endpoint::Chat,
            b"{\"model\":\"\",\"messages\":[]}",
            "must not be empty",
        ),
        (
            Endpoint::Completions,
            b"{\"model\":\"m\"}",
            "`prompt` is required",
        ),
        (
            Endpoint::Embeddings,
            b"{\"model\":\"m\"}",
            "`input` is required",
        ),
        (
            Endpoint::Chat,
            b"{\"model\":\"m\xff\",\"messages\":[]}",
            "invalid JSON",
        ),
    ];
    for (ep, body, want) in cases {
        let e = parse(*ep, body, keys()).unwrap_err();
        assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(body));
        assert!(e.to_string().contains(want), "{e} does not contain {want}");
    }
    let long = format!("{{\"model\":\"{}\",\"prompt\":\"x\"}}", "a".repeat(300));
    assert_eq!(
        parse(Endpoint::Completions, long.as_bytes(), keys())
            .unwrap_err()
            .status(),
        400
    );
}

#[test]
fn other_endpoints_are_lenient() {
    assert_eq!(parse(Endpoint::OtherV1, b"", keys()).unwrap().model, None);
    assert_eq!(
        parse(Endpoint::OtherV1, b"--multipart--", keys())
            .unwrap()
            .model,
        None
    );
    let i = parse(Endpoint::OtherV1, br#"{"model":"r","query":"q"}"#, keys()).unwrap();
    assert_eq!(i.model.as_deref(), Some("r"));
}

#[test]
fn prompt_chunks_only_when_a_cache_aware_policy_asks() {
    let cfg = CacheAwareConfig::default();
    let with = KeySources {
        prefixes: Some(&cfg),
        ..keys()
    };
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":7}"#;
    let p = parse(Endpoint::Chat, body, with).unwrap().prompt.unwrap();
    assert_eq!(p.chunks.len(), 1);
    assert_eq!(p.decode_tokens, 7);
    assert!(parse(Endpoint::Chat, body, keys())
        .unwrap()
        .prompt
        .is_none());
    // A max_tokens the worker will refuse is not the gateway's to judge: default work.
    let odd = br#"{"model":"m","prompt":"hello","max_tokens":"lots"}"#;
    let p = parse(Endpoint::Completions, odd, with)
        .unwrap()
        .prompt
        .unwrap();
    assert_eq!(p.decode_tokens, cfg.default_decode_tokens);
    let emb = br#"{"model":"m","input":"hello"}"#;
    assert!(parse(Endpoint::Embeddings, emb, with)
        .unwrap()
        .prompt
        .is_none());
}

#[test]
fn affinity_precedence() {
    let k = KeySources {
        session_header: Some("s1"),
        api_key: Some("k"),
        prefix_bytes: 8,
        prefixes: None,
    };
    let by_header = affinity(Some("other"), Some("u"), k, Some("p"));
    let by_field = affinity(
        Some("s1"),
        None,
        KeySources {
            session_header: None,
            ..k
        },
        None,
    );
    assert_eq!(
        by_header, by_field,
        "header and body session ids are the same key"
    );
    let user = affinity(
        None,
        Some("s1"),
        KeySources {
            session_header: None,
            ..k
        },
        None,
    );
    assert_ne!(
        user, by_field,
        "a user named like a session is a different key"
    );
    let p1 = affinity(
        None,
        None,
        keys_prefix(8),
        Some("[{\"role\":\"system\" AAA"),
    );
    let p2 = affinity(
        None,
        None,
        keys_prefix(8),
        Some("[{\"role\":\"system\" BBB"),
    );
    assert_eq!(p1, p2, "only the prefix counts");
    assert_eq!(affinity(None, None, keys_prefix(8), None), None);
}

fn keys_prefix(n: usize) -> KeySources<'static> {
    KeySources {
        prefix_bytes: n,
        ..Default::default()
    }
}
