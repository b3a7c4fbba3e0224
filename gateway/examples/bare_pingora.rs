//! The floor of the proxy benchmark: a bare Pingora 0.9.1 proxy (round robin, no body
//! inspection, no accounting) with the same server settings as `sagellm-gateway`. Comparing it
//! with the gateway in `scripts/bench-proxy.sh` shows how much of the per-request cost is
//! Pingora's own and how much is the gateway's.
//!
//! ```text
//! cargo run --release -p sagellm-gateway --example bare_pingora -- 127.0.0.1:18085 127.0.0.1:18001 127.0.0.1:18002
//! curl -d '{}' localhost:18085/v1/chat/completions
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

struct Bare {
    upstreams: Vec<SocketAddr>,
    next: AtomicUsize,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn upstream_peer(&self, _s: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.upstreams.len();
        Ok(Box::new(HttpPeer::new(
            self.upstreams[i],
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("usage: bare_pingora LISTEN UPSTREAM...");
    let upstreams: Vec<SocketAddr> = args
        .map(|a| a.parse().expect("upstream host:port"))
        .collect();
    assert!(!upstreams.is_empty(), "give at least one upstream");
    let conf = ServerConf {
        threads: 2,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = http_proxy_service(
        &server.configuration,
        Bare {
            upstreams,
            next: AtomicUsize::new(0),
        },
    );
    svc.add_tcp(&listen);
    server.add_service(svc);
    server.run_forever();
}
