//! The production edge, end to end: HTTPS on the public listener with certificates made here
//! (rcgen), HTTP/2 offered by ALPN, a client with the wrong CA refused, bad certificate files
//! as startup errors naming the file, a renewed certificate served without a restart, the
//! official `openai` Python SDK over HTTPS; `https://` workers (SNI, a private CA, their
//! own headers, a wrong CA or name refused with the reason shown, `insecure_skip_verify`);
//! and secure-by-default management on a listener other hosts could reach.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use reqwest::Method;
use sagellm_gateway::config::{Config, TlsConfig, WorkerConfig};
use sagellm_gateway::server::spawn as spawn_gateway;
use sagellm_gateway::views::WorkerInfo;
use serde_json::{json, Value};

const MODEL: &str = "tls-model";

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `127.0.0.1` and `localhost`: (chain PEM, key PEM).
    fn leaf(&self) -> (String, String) {
        self.leaf_for(&["127.0.0.1", "localhost"])
    }

    /// A server certificate for `names` (host names or IP addresses).
    fn leaf_for(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A fresh folder for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sagellm-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replace a file the way renewal tools do: write beside it, then rename over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn tls_config(dir: &Path) -> TlsConfig {
    TlsConfig {
        cert_file: dir.join("cert.pem").display().to_string(),
        key_file: dir.join("key.pem").display().to_string(),
        http2: true,
        reload_interval_seconds: 1,
    }
}

/// A client that trusts `ca` (and nothing else).
fn trusting(ca: &str, http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30));
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// A sim behind a gateway serving HTTPS with a certificate of `ca`, files in `dir`.
async fn https_fleet(dir: &Path, ca: &Ca) -> Fleet {
    let (cert, key) = ca.leaf();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let tls = tls_config(dir);
    let mut fleet = Fleet::start(vec![sim("w0", MODEL)], move |c| c.server.tls = Some(tls)).await;
    assert!(fleet.url("/").starts_with("https://"), "{}", fleet.url("/"));
    fleet.http = trusting(&ca.pem(), false);
    fleet
}

async fn chat_with(client: &reqwest::Client, fleet: &Fleet) -> reqwest::Result<reqwest::Response> {
    client
        .post(fleet.url("/v1/chat/completions"))
        .json(&chat_body(MODEL, "hello there"))
        .send()
        .await
}

async fn metric(fleet: &Fleet, series: &str) -> f64 {
    let text = fleet.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Poll `cond` every 100 ms for at most 20 s.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_http2_a_wrong_ca_refused_and_a_renewed_certificate_served() {
    let dir = scratch("serve");
    let ca = Ca::new("sagellm test CA one");
    let mut fleet = https_fleet(&dir, &ca).await;

    // HTTP/2 by ALPN for a client that offers it; HTTP/1.1 for one that does not.
    let resp = chat_with(&fleet.http, &fleet).await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    let h1 = trusting(&ca.pem(), true);
    let resp = chat_with(&h1, &fleet).await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);

    // A stream over HTTP/2 arrives whole.
    let mut body = chat_body(MODEL, "stream please");
    body["stream"] = json!(true);
    let resp = fleet
        .http
        .post(fleet.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // The management API and the dashboard come through the same TLS port.
    let resp = fleet.get("/api/status").await;
    assert_eq!(resp.status(), 200);

    // A client that trusts another CA is refused in the handshake; plain HTTP gets nothing.
    let other = Ca::new("some other CA");
    let err = chat_with(&trusting(&other.pem(), false), &fleet)
        .await
        .unwrap_err();
    let chain = format!("{err:?}");
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("certificate"),
        "{chain}"
    );
    let plain = fleet.url("/health").replacen("https://", "http://", 1);
    let r = client().get(&plain).send().await;
    assert!(
        r.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP on the TLS port: {r:?}"
    );

    // Renewal: a certificate from a new CA replaces the files; it is served without a restart.
    let ca2 = Ca::new("sagellm test CA two");
    let (cert2, key2) = ca2.leaf();
    replace(&dir.join("key.pem"), &key2);
    replace(&dir.join("cert.pem"), &cert2);
    let renewed = trusting(&ca2.pem(), false);
    eventually("the renewed certificate is served", || async {
        chat_with(&renewed, &fleet)
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(
        chat_with(&trusting(&ca.pem(), false), &fleet)
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    fleet.http = renewed;
    let ok = "llm_gateway_tls_certificate_reloads_total{result=\"ok\"}";
    assert!(metric(&fleet, ok).await >= 1.0);

    // A broken renewal is reported and changes nothing. (The two renames above may have been
    // seen half done, a key that does not fit: that counts as an error too.)
    let err_series = "llm_gateway_tls_certificate_reloads_total{result=\"error\"}";
    let before = metric(&fleet, err_series).await;
    replace(
        &dir.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    eventually("the broken renewal is counted", || async {
        metric(&fleet, err_series).await > before
    })
    .await;
    let resp = chat_with(&fleet.http, &fleet).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "still serving the last good certificate"
    );

    fleet.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `server::build` with `[server.tls]` pointing at `cert` and `key` (written to `dir`).
fn build_with(dir: &Path, cert: &str, key: &str) -> String {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let mut c: Config = test_config(&[]);
    c.server.port = 1;
    c.server.tls = Some(tls_config(dir));
    match sagellm_gateway::server::build(c, None) {
        Ok(_) => panic!("a bad pair was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_certificate_files_are_startup_errors_naming_the_file() {
    let dir = scratch("bad");
    let ca = Ca::new("sagellm test CA");
    let (cert, key) = ca.leaf();
    let (_, other_key) = ca.leaf();
    let cert_path = dir.join("cert.pem").display().to_string();
    let key_path = dir.join("key.pem").display().to_string();

    let e = build_with(&dir, "hello", &key);
    assert!(
        e.starts_with("server.tls.cert_file")
            && e.contains(&cert_path)
            && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = build_with(&dir, &cert, "hello");
    assert!(
        e.starts_with("server.tls.key_file")
            && e.contains(&key_path)
            && e.contains("no PEM private key"),
        "{e}"
    );
    let e = build_with(&dir, &cert, &other_key);
    assert!(
        e.starts_with("server.tls.key_file") && e.contains("does not fit the certificate"),
        "{e}"
    );
    std::fs::remove_file(dir.join("cert.pem")).unwrap();
    let mut c = test_config(&[]);
    c.server.port = 1;
    c.server.tls = Some(tls_config(&dir));
    let e = sagellm_gateway::server::build(c, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&cert_path) && e.contains("cannot read it"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_over_https() {
    let dir = scratch("sdk");
    let ca = Ca::new("sagellm SDK test CA");
    let fleet = https_fleet(&dir, &ca).await;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/openai_tls_test.py");
    let out = tokio::process::Command::new(venv_python())
        .arg(script)
        .env("GATEWAY_URL", fleet.url(""))
        .env("CA_FILE", &ca_file)
        .env("MODEL", MODEL)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the SDK script finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok   wrong CA refused"), "{stdout}");
    fleet.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- TLS to workers ------------------------------------------------------------------------

/// A TLS front on `ip` for `backend` (a sim): terminates TLS with the (chain, key) PEM pair
/// and copies bytes both ways. `sni` collects the server names clients asked for.
struct TlsFront {
    addr: SocketAddr,
    sni: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_front(ip: IpAddr, (chain, key): (String, String), backend: SocketAddr) -> TlsFront {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // a refused handshake: the client did not trust us
                };
                if let Some(name) = tls.get_ref().1.server_name() {
                    seen.lock().unwrap().push(name.to_string());
                }
                if let Ok(mut up) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    TlsFront { addr, sni, task }
}

fn worker_at(url: String) -> WorkerConfig {
    WorkerConfig {
        url,
        ..Default::default()
    }
}

fn find(workers: &[WorkerInfo], port: u16) -> &WorkerInfo {
    let id_end = format!(":{port}");
    workers.iter().find(|w| w.id.ends_with(&id_end)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_workers_sni_a_private_ca_worker_headers_and_refused_certificates() {
    let dir = scratch("upstream");
    let ca = Ca::new("sagellm worker CA");
    let stranger = Ca::new("sagellm CA nobody trusts");
    let ca_file = dir.join("workers-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    // A hosted endpoint: TLS in front, and a key it requires (vLLM's --api-key).
    let mut hosted = sim("hosted", MODEL);
    hosted.api_key = Some("sk-hosted-1".into());
    let hosted = sagellm_sim::spawn(hosted).await.unwrap();
    let plain = sagellm_sim::spawn(sim("plain", "plain-model"))
        .await
        .unwrap();
    // `localhost` as the gateway will resolve it, so the worker URL carries a name (SNI).
    let localhost = ("localhost", 0)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
        .ip();
    assert!(localhost.is_loopback(), "{localhost}");
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let good = tls_front(localhost, ca.leaf_for(&["localhost"]), hosted.addr()).await;
    let unknown_ca = tls_front(v4, stranger.leaf(), plain.addr()).await;
    let misnamed = tls_front(v4, ca.leaf_for(&["localhost"]), plain.addr()).await;
    let skipped = tls_front(v4, stranger.leaf(), plain.addr()).await;

    std::env::set_var("SAGELLM_TEST_HOSTED_KEY", "sk-hosted-1");
    let mut config = test_config(&[]);
    config.upstream.ca_file = Some(ca_file.display().to_string());
    let mut hosted_worker = worker_at(format!("https://localhost:{}", good.addr.port()));
    hosted_worker.headers = [(
        "Authorization".to_string(),
        "Bearer ${SAGELLM_TEST_HOSTED_KEY}".to_string(),
    )]
    .into();
    let mut skipping = worker_at(format!("https://127.0.0.1:{}", skipped.addr.port()));
    skipping.insecure_skip_verify = true;
    config.workers = vec![
        hosted_worker,
        worker_at(format!("https://127.0.0.1:{}", unknown_ca.addr.port())),
        worker_at(format!("https://127.0.0.1:{}", misnamed.addr.port())),
        skipping,
    ];
    let gw = tokio::task::spawn_blocking(move || spawn_gateway(config).expect("gateway starts"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), gw.state.wait_routable(2))
        .await
        .expect("the trusted and the skip-verify worker become routable");
    let fleet = Fleet {
        sims: vec![],
        gw,
        http: client(),
    };

    // Pingora's path (small bodies), a stream, and the gateway's own path (> 64 KiB body).
    for _ in 0..3 {
        let r = fleet.chat(&chat_body(MODEL, "hello over TLS")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(served_by(&r), "hosted");
    }
    let mut stream = chat_body(MODEL, "stream over TLS");
    stream["stream"] = json!(true);
    let r = fleet.chat(&stream).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let large = chat_body(MODEL, &"a long prompt ".repeat(8_000));
    let r = fleet.chat(&large).await;
    assert_eq!(
        r.status(),
        200,
        "a 110 KB body through the gateway's own client"
    );
    assert_eq!(served_by(&r), "hosted");
    let names = good.sni.lock().unwrap().clone();
    assert!(
        !names.is_empty() && names.iter().all(|n| n == "localhost"),
        "{names:?}"
    );
    // `insecure_skip_verify` reaches a worker whose certificate nobody checks.
    let r = fleet.chat(&chat_body("plain-model", "hi")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(served_by(&r), "plain");

    // A wrong CA and a wrong name: never routable, and the workers view says why.
    let refused = [
        (unknown_ca.addr.port(), "UnknownIssuer"),
        (misnamed.addr.port(), "not valid for name"),
    ];
    eventually("the refused certificates show as check errors", || async {
        let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
        refused.iter().all(|(port, reason)| {
            let w = find(&workers, *port);
            w.last_check_error
                .as_deref()
                .is_some_and(|e| e.contains(reason))
        })
    })
    .await;
    let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
    for (port, _) in refused {
        assert_ne!(find(&workers, port).state.as_str(), "ready");
    }
    assert_eq!(find(&workers, good.addr.port()).last_check_error, None);

    // The worker's key is neither shown nor accepted back as the mask.
    let shown = fleet.get("/api/config").await.text().await.unwrap();
    assert!(
        !shown.contains("sk-hosted-1") && shown.contains("<redacted>"),
        "{shown}"
    );
    fleet.stop().await;

    // Without its header the hosted endpoint answers 401, and the worker never becomes ready.
    let mut config = test_config(&[]);
    config.upstream.ca_file = Some(ca_file.display().to_string());
    config.workers = vec![worker_at(format!("https://localhost:{}", good.addr.port()))];
    let gw = tokio::task::spawn_blocking(move || spawn_gateway(config).expect("gateway starts"))
        .await
        .unwrap();
    let fleet = Fleet {
        sims: vec![],
        gw,
        http: client(),
    };
    eventually("the missing key shows as the check error", || async {
        let workers: Vec<WorkerInfo> = fleet.get_json("/api/workers").await;
        workers[0]
            .last_check_error
            .as_deref()
            .is_some_and(|e| e.contains("401"))
    })
    .await;
    fleet.stop().await;

    // A CA bundle that is not one is a start-up error naming the field and the file.
    let mut config = test_config(&[]);
    config.upstream.ca_file = Some(dir.join("cert-missing.pem").display().to_string());
    let e = sagellm_gateway::server::build(config, None)
        .err()
        .expect("refused");
    assert_eq!(e.field, "upstream.ca_file");
    assert!(e.message.contains("cert-missing.pem"), "{}", e.message);
    drop((hosted, plain));
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- Secure by default --------------------------------------------------------------------

/// A write of every kind the management surface has, without a key.
async fn every_write(fleet: &Fleet, key: Option<&str>) -> Vec<(String, reqwest::Response)> {
    let id = fleet.sims[0]
        .url()
        .trim_start_matches("http://")
        .to_string();
    let writes = [
        (
            Method::POST,
            "/api/workers".to_string(),
            Some(json!({"url": "http://127.0.0.1:9"})),
        ),
        (
            Method::PUT,
            "/api/config".to_string(),
            Some(json!({"routing": {"strategy": "round_robin"}})),
        ),
        (Method::POST, format!("/api/workers/{id}/drain"), None),
        (Method::DELETE, format!("/api/workers/{id}"), None),
        (
            Method::POST,
            format!("/api/circuit-breaker/{id}/reset"),
            None,
        ),
        (
            Method::POST,
            "/v1/management/engines/start".to_string(),
            Some(json!({"model": "/etc/passwd"})),
        ),
    ];
    let mut out = Vec::new();
    for (method, path, body) in writes {
        let label = format!("{method} {path}");
        out.push((label, send(fleet, method, &path, key, body).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_listener_without_an_admin_key_refuses_management_writes() {
    // Listening on every interface (traffic stays on loopback).
    let fleet = Fleet::start(vec![sim("w0", MODEL)], |c| c.server.host = "0.0.0.0".into()).await;
    for key in [None, Some("a-guessed-admin-key")] {
        for (what, resp) in every_write(&fleet, key).await {
            let v = expect_error(resp, 403).await;
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains("LLM_ADMIN_KEY") && msg.contains("LLM_ALLOW_INSECURE_ADMIN"),
                "{what}: {v}"
            );
        }
    }
    // Nothing changed; reads and the LLM endpoints work.
    let status = fleet.get("/api/status").await;
    assert_eq!(status.status(), 200);
    assert_eq!(fleet.gw.state.pool.load().workers.len(), 1);
    assert_eq!(
        fleet.gw.state.config.load().routing.strategy.as_str(),
        "cache_aware"
    );
    assert_eq!(fleet.get("/api/config").await.status(), 200);
    assert_eq!(fleet.chat(&chat_body(MODEL, "hi")).await.status(), 200);
    fleet.stop().await;

    // The explicit opt-out opens them.
    let fleet = Fleet::start(vec![sim("w0", MODEL)], |c| {
        c.server.host = "0.0.0.0".into();
        c.auth.allow_insecure_admin = true;
    })
    .await;
    let id = fleet.sims[0]
        .url()
        .trim_start_matches("http://")
        .to_string();
    let r = send(
        &fleet,
        Method::POST,
        &format!("/api/workers/{id}/drain"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    fleet.stop().await;

    // With an admin key: 401 without it, allowed with it.
    let fleet = Fleet::start(vec![sim("w0", MODEL)], |c| {
        c.server.host = "0.0.0.0".into();
        c.auth.admin_key = Some("the-admin-key-1".into());
    })
    .await;
    let id = fleet.sims[0]
        .url()
        .trim_start_matches("http://")
        .to_string();
    let path = format!("/api/workers/{id}/drain");
    expect_error(send(&fleet, Method::POST, &path, None, None).await, 401).await;
    let r = send(&fleet, Method::POST, &path, Some("the-admin-key-1"), None).await;
    assert_eq!(r.status(), 200);
    fleet.stop().await;
}
