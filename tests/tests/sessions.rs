//! Sessions end to end: history prepended before routing (the simulator's prompt-token count
//! shows what the worker received), replies stored from plain and streamed responses, the
//! session sticking to its worker and moving when that worker drains, ownership by API key,
//! bounds, and bad input — against three in-process `sagellm-sim` workers.

mod common;

use common::{expect_error, sim, Fleet};
use futures_util::StreamExt;
use sagellm_gateway::config::Strategy;
use sagellm_gateway::views::{SessionList, SessionView};
use serde_json::{json, Value};

const ALICE: &str = "alice-key-0001";
const BOB: &str = "bob-key-00002";

async fn create(fleet: &Fleet, key: &str, body: Value) -> reqwest::Response {
    fleet
        .http
        .post(fleet.url("/sessions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_session(fleet: &Fleet, key: &str, id: &str) -> reqwest::Response {
    fleet
        .http
        .get(fleet.url(&format!("/sessions/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn chat(fleet: &Fleet, key: &str, session: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body);
    if let Some(id) = session {
        req = req.header("x-session-id", id);
    }
    req.send().await.unwrap()
}

fn ask(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}], "max_tokens": 4})
}

fn worker_of(resp: &reqwest::Response) -> String {
    resp.headers()["x-sagellm-worker"]
        .to_str()
        .unwrap()
        .to_string()
}

/// The text and the usage of a streamed chat response.
async fn read_stream(resp: reqwest::Response) -> (String, Value) {
    let mut body = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(c) = chunks.next().await {
        body.extend_from_slice(&c.unwrap());
    }
    let body = String::from_utf8(body).unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let mut text = String::new();
    let mut usage = Value::Null;
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
    }
    (text, usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_its_history_and_sticks_to_its_worker() {
    let fleet = Fleet::start(vec![sim("a", "m"), sim("b", "m"), sim("c", "m")], |c| {
        c.routing.strategy = Strategy::RoundRobin; // stickiness must beat the rotation
        c.auth.api_keys = vec![ALICE.into(), BOB.into()];
    })
    .await;

    let resp = create(
        &fleet,
        ALICE,
        json!({"title": "maths", "system_prompt": "be brief now"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let created: SessionView = resp.json().await.unwrap();
    assert!(created.id.starts_with("sess_"));
    assert_eq!(
        (created.message_count, created.title.as_deref()),
        (0, Some("maths"))
    );
    let id = created.id.as_str();

    // Turn 1, plain: the worker sees the system prompt (3 words) and the question (3 words).
    let resp = chat(&fleet, ALICE, Some(id), ask("one two three")).await;
    assert_eq!(resp.status(), 200);
    let worker = worker_of(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    let reply1 = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reply1.split_whitespace().count(), 4);

    // Turn 2, streamed, the session named in the body: system 3 + q1 3 + reply 4 + q2 2.
    let mut body = ask("four five");
    body["session_id"] = json!(id);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = chat(&fleet, ALICE, None, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(worker_of(&resp), worker, "the session stays on its worker");
    let (reply2, usage) = read_stream(resp).await;
    assert_eq!(usage["prompt_tokens"], 12);

    let s: SessionView = get_session(&fleet, ALICE, id).await.json().await.unwrap();
    let messages = s.messages.unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(messages[0].content, "one two three");
    assert_eq!(messages[1].content, reply1);
    assert_eq!(
        messages[3].content, reply2,
        "the streamed reply is stored whole"
    );
    assert_eq!(s.worker.as_deref(), Some(worker.as_str()));
    assert_eq!(s.system_prompt.as_deref(), Some("be brief now"));

    // Several more turns: always the same worker, whatever round_robin would say.
    for i in 0..3 {
        let resp = chat(&fleet, ALICE, Some(id), ask(&format!("again {i}"))).await;
        assert_eq!(worker_of(&resp), worker);
        resp.bytes().await.unwrap();
    }

    // Its worker drains: the session moves, with its history, and sticks to the new one.
    let index = fleet
        .gw
        .state
        .pool
        .load()
        .workers
        .iter()
        .position(|w| w.id == worker)
        .unwrap();
    let resp = common::admin_post(&fleet, &format!("/api/workers/{index}/drain"), None).await;
    assert_eq!(resp.status(), 200);
    let resp = chat(&fleet, ALICE, Some(id), ask("moved")).await;
    assert_eq!(resp.status(), 200);
    let moved_to = worker_of(&resp);
    assert_ne!(moved_to, worker);
    let v: Value = resp.json().await.unwrap();
    let history_words: u64 = 3 + 3 + 4 + 2 + 4 + 3 * (2 + 4) + 1;
    assert_eq!(v["usage"]["prompt_tokens"], history_words);
    let s: SessionView = get_session(&fleet, ALICE, id).await.json().await.unwrap();
    assert_eq!(s.worker.as_deref(), Some(moved_to.as_str()));
    assert_eq!(s.message_count, 12);

    // A failed request leaves the session as it was: a client mistake, and a worker's 400.
    let bad = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]});
    let e = expect_error(chat(&fleet, ALICE, Some(id), bad).await, 400).await;
    assert_eq!(e["error"]["param"], "messages[0].content");
    for s in &fleet.sims {
        s.control().set_status(Some(400));
    }
    assert_eq!(
        chat(&fleet, ALICE, Some(id), ask("refused")).await.status(),
        400
    );
    for s in &fleet.sims {
        s.control().set_status(None);
    }
    let s: SessionView = get_session(&fleet, ALICE, id).await.json().await.unwrap();
    assert_eq!(s.message_count, 12, "failed requests are not stored");

    // Another key sees nothing; no key is refused.
    let e = expect_error(get_session(&fleet, BOB, id).await, 404).await;
    assert_eq!(e["error"]["code"], "session_not_found");
    expect_error(chat(&fleet, BOB, Some(id), ask("steal")).await, 404).await;
    let resp = fleet
        .http
        .delete(fleet.url(&format!("/sessions/{id}")))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    expect_error(resp, 404).await;
    let list: SessionList = fleet
        .http
        .get(fleet.url("/sessions"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.total, 0);
    expect_error(fleet.get(&format!("/sessions/{id}")).await, 401).await;

    // An unknown session id is a 404; other X-Session-ID values stay plain affinity keys.
    expect_error(chat(&fleet, ALICE, Some("sess_0000"), ask("x")).await, 404).await;
    assert_eq!(
        chat(&fleet, ALICE, Some("my-sticky-key"), ask("x"))
            .await
            .status(),
        200
    );

    // A live config change keeps the history.
    let resp = fleet
        .http
        .put(fleet.url("/api/config"))
        .json(&json!({"routing": {"strategy": "least_connections"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: SessionView = get_session(&fleet, ALICE, id).await.json().await.unwrap();
    assert_eq!(s.message_count, 12);

    let resp = fleet
        .http
        .delete(fleet.url(&format!("/sessions/{id}")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    expect_error(get_session(&fleet, ALICE, id).await, 404).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded_and_bad_input_is_refused() {
    let fleet = Fleet::start(vec![sim("a", "m")], |c| {
        c.sessions.max_sessions = 2;
        c.sessions.max_messages = 4;
        c.sessions.max_ttl_seconds = 7_200;
    })
    .await;
    let key = "anyone";

    // Bad bodies name the field; nothing is created.
    for (body, param) in [
        (json!({"ttl_seconds": 0}), "ttl_seconds"),
        (json!({"ttl_seconds": 7_201}), "ttl_seconds"),
        (json!({"title": "x".repeat(70_000)}), "title"),
        (json!({"colour": "blue"}), ""),
        (json!({"title": 5}), "title"),
    ] {
        let e = expect_error(create(&fleet, key, body).await, 400).await;
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(if param.is_empty() { "colour" } else { param }),
            "{msg}"
        );
    }
    let resp = fleet
        .http
        .post(fleet.url("/sessions"))
        .bearer_auth(key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;
    assert_eq!(fleet.gw.state.sessions.len().await, 0);

    // An empty body is a session with the defaults.
    let resp = fleet
        .http
        .post(fleet.url("/sessions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let first: SessionView = resp.json().await.unwrap();
    assert_eq!(first.ttl_seconds, 3_600);
    assert_eq!(
        create(&fleet, key, json!({"ttl_seconds": 60}))
            .await
            .status(),
        201
    );
    let resp = create(&fleet, key, json!({})).await;
    let e = expect_error(resp, 429).await;
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum of 2 sessions"));

    // Paging.
    let page = |q: &'static str| {
        fleet
            .http
            .get(fleet.url(&format!("/sessions{q}")))
            .bearer_auth(key)
            .send()
    };
    let list: SessionList = page("?limit=1&offset=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((list.total, list.data.len()), (2, 1));
    assert_eq!(
        list.data[0].id, first.id,
        "newest first: the first one is second"
    );
    expect_error(page("?limit=0").await.unwrap(), 400).await;
    expect_error(page("?limit=abc").await.unwrap(), 400).await;

    // Three turns in a session of at most four messages: the oldest turn goes.
    for i in 0..3 {
        let resp = chat(&fleet, key, Some(&first.id), ask(&format!("turn{i}"))).await;
        assert_eq!(resp.status(), 200);
        // The turn is stored before the body ends: read it as a client would.
        resp.bytes().await.unwrap();
    }
    let s: SessionView = get_session(&fleet, key, &first.id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((s.message_count, s.trimmed_messages), (4, 2));
    let messages = s.messages.unwrap();
    assert_eq!(messages[0].content, "turn1");
    assert_eq!(messages[2].content, "turn2");
    fleet.stop().await;
}
