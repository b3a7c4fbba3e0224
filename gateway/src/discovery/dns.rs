//! One DNS lookup of the discovery name: A/AAAA records (each address with the configured
//! port) or SRV records (each target's addresses with the record's port and weight; only the
//! records of the lowest priority, the others being backups). `hickory-resolver` over UDP/TCP to
//! the configured server, or the system's resolver.
//!
//! The resolver's cache is cleared before every lookup: the refresh schedule already follows
//! the records' TTL, and a change must be seen on the next refresh.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::config::discovery::DnsDiscoveryConfig;

/// A worker address found, with its weight (1 for A/AAAA; the SRV weight, at least 1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// What one lookup found, and until when the answer is valid.
#[derive(Debug)]
pub struct Found {
    pub endpoints: Vec<Endpoint>,
    pub valid_until: Instant,
}

pub struct DnsSource {
    resolver: TokioResolver,
    name: String,
    port: u16,
    srv: bool,
}

/// An answer that says "no such records" (the name has no workers now), as opposed to a
/// failure to get an answer (which keeps the last good set).
fn is_empty_answer(e: &ResolveError) -> bool {
    e.proto().is_some_and(|p| {
        matches!(
            p.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            }
        )
    })
}

impl DnsSource {
    pub fn new(cfg: &DnsDiscoveryConfig) -> Result<Self, String> {
        let mut builder = match cfg.server_addr()? {
            Some(addr) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], servers),
                    TokioConnectionProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = Duration::from_millis(cfg.timeout_ms);
        opts.attempts = 1;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        Ok(Self {
            resolver: builder.build(),
            name: cfg.name.clone(),
            port: cfg.port,
            srv: cfg.uses_srv(),
        })
    }

    /// Look the name up once. `Err` when no answer came (timeout, refused, SERVFAIL): the
    /// caller keeps what it had. An answer without records is an empty set.
    pub async fn lookup(&self) -> Result<Found, String> {
        self.resolver.clear_cache();
        let result = if self.srv {
            self.srv_lookup().await
        } else {
            self.ip_lookup().await
        };
        match result {
            Ok(mut found) => {
                found.endpoints.sort();
                found.endpoints.dedup_by(|a, b| a.addr == b.addr);
                Ok(found)
            }
            Err(e) if is_empty_answer(&e) => Ok(Found {
                endpoints: Vec::new(),
                valid_until: Instant::now(),
            }),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn ip_lookup(&self) -> Result<Found, ResolveError> {
        let ips = self.resolver.lookup_ip(self.name.as_str()).await?;
        Ok(Found {
            endpoints: ips
                .iter()
                .map(|ip| Endpoint {
                    addr: SocketAddr::new(ip, self.port),
                    weight: 1,
                })
                .collect(),
            valid_until: ips.valid_until(),
        })
    }

    async fn srv_lookup(&self) -> Result<Found, ResolveError> {
        let srv = self.resolver.srv_lookup(self.name.as_str()).await?;
        let mut valid_until = srv.as_lookup().valid_until();
        let lowest = srv.iter().map(|r| r.priority()).min();
        let mut endpoints = Vec::new();
        for record in srv.iter().filter(|r| Some(r.priority()) == lowest) {
            // A target of "." means "no service here" (RFC 2782).
            if record.target().is_root() {
                continue;
            }
            let ips = match self.resolver.lookup_ip(record.target().clone()).await {
                Ok(ips) => ips,
                // A target without addresses is skipped; the others still count.
                Err(e) if is_empty_answer(&e) => continue,
                Err(e) => return Err(e),
            };
            valid_until = valid_until.min(ips.valid_until());
            let weight = u32::from(record.weight()).clamp(1, 1000);
            endpoints.extend(ips.iter().map(|ip| Endpoint {
                addr: SocketAddr::new(ip, record.port()),
                weight,
            }));
        }
        Ok(Found {
            endpoints,
            valid_until,
        })
    }
}
