//! Unit tests of `session/store.rs`.

use super::*;

const ALICE: Owner = Some([1; 32]);
const BOB: Owner = Some([2; 32]);

fn session(id: &str, owner: Owner, now: u64) -> Session {
    Session {
        id: id.into(),
        owner,
        title: None,
        system_prompt: None,
        created_ms: now,
        last_used_ms: now,
        ttl_seconds: 10,
        messages: VecDeque::new(),
        trimmed: 0,
        worker: None,
        seq: 0,
    }
}

fn msg(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
    }
}

#[tokio::test]
async fn sessions_belong_to_their_owner() {
    let store = MemoryStore::default();
    let limits = SessionsConfig::default();
    store
        .create(session("s1", ALICE, 0), &limits)
        .await
        .unwrap();
    assert!(store.get("s1", &ALICE, 1).await.unwrap().is_some());
    assert!(store.get("s1", &BOB, 1).await.unwrap().is_none());
    assert!(store.get("s1", &None, 1).await.unwrap().is_none());
    assert!(!store
        .append("s1", &BOB, vec![msg("user", "x")], None, &limits, 1)
        .await
        .unwrap());
    assert!(!store.delete("s1", &BOB).await.unwrap());
    assert_eq!(store.list(&BOB, 0, 10, 1).await.unwrap().1, 0);
    assert_eq!(store.list(&ALICE, 0, 10, 1).await.unwrap().1, 1);
    assert!(store.delete("s1", &ALICE).await.unwrap());
    assert!(store.get("s1", &ALICE, 1).await.unwrap().is_none());
}

#[tokio::test]
async fn idle_sessions_expire_and_use_extends_them() {
    let store = MemoryStore::default();
    let limits = SessionsConfig::default();
    store
        .create(session("s1", ALICE, 0), &limits)
        .await
        .unwrap();
    store
        .create(session("s2", ALICE, 0), &limits)
        .await
        .unwrap();
    // s1 is used at 9 s: it lives until 19 s; s2 expires at 10 s.
    assert!(store
        .append("s1", &ALICE, vec![msg("user", "hi")], None, &limits, 9_000)
        .await
        .unwrap());
    assert!(store.get("s2", &ALICE, 9_999).await.unwrap().is_some());
    assert!(store.get("s2", &ALICE, 10_000).await.unwrap().is_none());
    assert!(store.get("s1", &ALICE, 18_999).await.unwrap().is_some());
    assert_eq!(store.prune(10_000).await, 1);
    assert_eq!(store.len().await, 1);
    assert!(!store
        .append("s1", &ALICE, vec![], None, &limits, 19_000)
        .await
        .unwrap());
}

#[tokio::test]
async fn the_store_is_bounded() {
    let store = MemoryStore::default();
    let limits = SessionsConfig {
        max_sessions: 2,
        ..Default::default()
    };
    store.create(session("a", ALICE, 0), &limits).await.unwrap();
    store.create(session("b", BOB, 0), &limits).await.unwrap();
    assert_eq!(
        store.create(session("c", ALICE, 5_000), &limits).await,
        Err(StoreError::Full(2))
    );
    // Once the others expired there is room again.
    store
        .create(session("c", ALICE, 10_000), &limits)
        .await
        .unwrap();
    assert_eq!(store.len().await, 1);
}

#[tokio::test]
async fn oldest_turns_are_trimmed_first_and_the_newest_is_kept() {
    let store = MemoryStore::default();
    let limits = SessionsConfig {
        max_messages: 4,
        max_tokens: 1_000,
        ..Default::default()
    };
    store.create(session("s", ALICE, 0), &limits).await.unwrap();
    for i in 0..3 {
        let turn = vec![
            msg("user", &format!("q{i}")),
            msg("assistant", &format!("a{i}")),
        ];
        assert!(store
            .append("s", &ALICE, turn, Some("w1".into()), &limits, 1)
            .await
            .unwrap());
    }
    let s = store.get("s", &ALICE, 1).await.unwrap().unwrap();
    let contents: Vec<&str> = s.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["q1", "a1", "q2", "a2"]);
    assert_eq!(s.trimmed, 2);
    assert_eq!(s.worker.as_deref(), Some("w1"));

    // By tokens: a huge newest turn evicts everything before it, and stays.
    let big = "x".repeat(8_000);
    assert!(store
        .append(
            "s",
            &ALICE,
            vec![msg("user", &big), msg("assistant", "ok")],
            None,
            &limits,
            2
        )
        .await
        .unwrap());
    let s = store.get("s", &ALICE, 2).await.unwrap().unwrap();
    assert_eq!(s.messages.len(), 2);
    assert_eq!(s.messages[0].content, big);
    assert_eq!(
        s.worker.as_deref(),
        Some("w1"),
        "kept when no worker is given"
    );
}

#[tokio::test]
async fn lists_page_newest_first() {
    let store = MemoryStore::default();
    let limits = SessionsConfig::default();
    // All in the same millisecond: creation order still decides.
    for i in 0..5u64 {
        store
            .create(session(&format!("s{i}"), ALICE, 0), &limits)
            .await
            .unwrap();
    }
    let (page, total) = store.list(&ALICE, 1, 2, 5).await.unwrap();
    assert_eq!(total, 5);
    let ids: Vec<&str> = page.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s3", "s2"]);
}
