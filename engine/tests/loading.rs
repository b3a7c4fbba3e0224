//! Before the model is loaded the engine answers, but refuses work: `/health` and generation
//! requests get 503 in OpenAI's error shape, `/v1/models` and `/metrics` already work.

use serde_json::Value;

#[tokio::test]
async fn loading_engine_answers_503() {
    let state = sagellm_engine::state::EngineState::new("m".into(), 4).unwrap();
    let app = sagellm_engine::api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let chat = http
        .post(format!("{url}/v1/chat/completions"))
        .body(r#"{"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 503);
    let v: Value = chat.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_loading");
    let models: Value = http
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "m");
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vllm:num_requests_running{model_name=\"m\"} 0"),
        "{metrics}"
    );
}
