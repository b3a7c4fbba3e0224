//! One DNS lookup of the discovery name: A/AAAA records (each address with the configured
//! port) or SRV records (each target's addresses with the record's port and weight; only the
//! records of the lowest priority, the others being backups). `hickory-resolver` over UDP/TCP to
//! the configured server, or the system's resolver.
//!
//! The resolver's cache is cleared before every lookup: the refresh schedule already follows
//! the records' TTL, and a change must be seen on the next refresh.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
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
    timeout: Duration,
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
        Ok(Self {
            resolver: builder.build(),
            name: cfg.name.clone(),
            port: cfg.port,
            srv: cfg.uses_srv(),
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// Look the name up once, within `timeout_ms` in all. `Err` when no answer came
    /// (timeout, refused, SERVFAIL — for any of the queries): the caller keeps what it had. An
    /// answer without records is an empty set, valid until the next interval.
    pub async fn lookup(&self) -> Result<Found, String> {
        self.resolver.clear_cache();
        let lookup = async {
            if self.srv {
                self.srv_lookup().await
            } else {
                self.ip_lookup().await
            }
        };
        let result = match tokio::time::timeout(self.timeout, lookup).await {
            Ok(r) => r,
            Err(_) => return Err(format!("no answer within {:?}", self.timeout)),
        };
        match result {
            Ok(mut found) => {
                found.endpoints.sort();
                found.endpoints.dedup_by(|a, b| a.addr == b.addr);
                Ok(found)
            }
            Err(e) if is_empty_answer(&e) => Ok(Found {
                endpoints: Vec::new(),
                // The refresh is clamped to the interval.
                valid_until: Instant::now() + Duration::from_secs(3_600),
            }),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The A and AAAA records of `name`, asked separately (and at once) so that a lost answer
    /// of one family fails the lookup instead of passing for "no records": only when both
    /// answer without records is the name empty.
    async fn addresses(&self, name: Name) -> Result<(Vec<IpAddr>, Instant), ResolveError> {
        let (v4, v6) = tokio::join!(
            self.resolver.ipv4_lookup(name.clone()),
            self.resolver.ipv6_lookup(name)
        );
        let mut ips = Vec::new();
        let mut valid_until: Option<Instant> = None;
        let mut empty = None;
        match v4 {
            Ok(l) => {
                ips.extend(l.iter().map(|a| IpAddr::V4(a.0)));
                valid_until = Some(l.valid_until());
            }
            Err(e) if is_empty_answer(&e) => empty = Some(e),
            Err(e) => return Err(e),
        }
        match v6 {
            Ok(l) => {
                ips.extend(l.iter().map(|a| IpAddr::V6(a.0)));
                valid_until = Some(valid_until.map_or(l.valid_until(), |v| v.min(l.valid_until())));
            }
            Err(e) if is_empty_answer(&e) => empty = empty.or(Some(e)),
            Err(e) => return Err(e),
        }
        match (valid_until, empty) {
            (None, Some(e)) => Err(e),
            (v, _) => Ok((ips, v.unwrap_or_else(Instant::now))),
        }
    }

    async fn ip_lookup(&self) -> Result<Found, ResolveError> {
        let name = Name::from_str(&self.name).map_err(ResolveError::from)?;
        let (ips, valid_until) = self.addresses(name).await?;
        Ok(Found {
            endpoints: ips
                .into_iter()
                .map(|ip| Endpoint {
                    addr: SocketAddr::new(ip, self.port),
                    weight: 1,
                })
                .collect(),
            valid_until,
        })
    }

    async fn srv_lookup(&self) -> Result<Found, ResolveError> {
        let srv = self.resolver.srv_lookup(self.name.as_str()).await?;
        let mut valid_until = srv.as_lookup().valid_until();
        let lowest = srv.iter().map(|r| r.priority()).min();
        // A target of "." means "no service here" (RFC 2782).
        let records: Vec<_> = srv
            .iter()
            .filter(|r| Some(r.priority()) == lowest && !r.target().is_root())
            .collect();
        // The targets' addresses, all at once.
        let answers = futures_util::future::join_all(
            records.iter().map(|r| self.addresses(r.target().clone())),
        )
        .await;
        let mut endpoints = Vec::new();
        for (record, answer) in records.iter().zip(answers) {
            let (ips, until) = match answer {
                Ok(a) => a,
                // A target without addresses is skipped; the others still count.
                Err(e) if is_empty_answer(&e) => continue,
                Err(e) => return Err(e),
            };
            valid_until = valid_until.min(until);
            let weight = u32::from(record.weight()).clamp(1, 1000);
            endpoints.extend(ips.into_iter().map(|ip| Endpoint {
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
