//! Fleet members from their addresses and from DNS: every A and AAAA record
//! of a name (a Kubernetes headless service), or every target of its SRV
//! records. Names are resolved again on the ring's update interval (the
//! resolver's cache keeps each record for its TTL); a name that stops
//! resolving keeps the members it last resolved to, and says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use pingora::lb::Backend;
use pingora::lb::discovery::ServiceDiscovery;

use crate::config::{DnsSettings, Member};

/// A resolver for member names: `settings.server` if set, else the
/// system's (/etc/resolv.conf).
pub fn resolver(settings: &DnsSettings) -> Result<Arc<TokioResolver>, String> {
    let builder = match settings.server {
        Some(server) => {
            let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
            for connection in &mut name_server.connections {
                connection.port = server.port();
            }
            let config = ResolverConfig::from_name_servers(vec![name_server]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => TokioResolver::builder_tokio().map_err(|error| format!("reading /etc/resolv.conf: {error}"))?,
    };
    let mut options = ResolverOpts::default();
    // A name that stops resolving is asked again on every round, not
    // answered from a cached failure.
    options.negative_max_ttl = Some(std::time::Duration::from_secs(1));
    builder
        .with_options(options)
        .build()
        .map(Arc::new)
        .map_err(|error| error.to_string())
}

/// What a name last gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameState {
    /// The members it last resolved to (kept while it fails).
    pub members: BTreeSet<SocketAddr>,
    /// Why its last resolution failed, if it did.
    pub failing: Option<String>,
    /// Resolutions that failed, in all.
    pub failures: u64,
}

/// One ring's members: the addresses named, and those the names give.
pub struct MemberDiscovery {
    members: Vec<Member>,
    resolver: Option<Arc<TokioResolver>>,
    /// By name (`name:port`, or the SRV name), what it last gave.
    names: Mutex<BTreeMap<String, NameState>>,
}

impl MemberDiscovery {
    /// `members`, resolved with `resolver` (needed when any is a name).
    pub fn new(members: &[Member], resolver: Option<Arc<TokioResolver>>) -> Arc<Self> {
        Arc::new(MemberDiscovery {
            members: members.to_vec(),
            resolver,
            names: Mutex::default(),
        })
    }

    /// Whether any member is a name (then the ring is updated on an interval).
    pub fn has_names(&self) -> bool {
        self.members.iter().any(|member| !matches!(member, Member::Address(_)))
    }

    /// What each name last gave.
    pub fn names(&self) -> BTreeMap<String, NameState> {
        self.names.lock().expect("names lock").clone()
    }

    /// The first member the name `key` last resolved to.
    pub fn first_member(&self, key: &str) -> Option<SocketAddr> {
        self.names.lock().expect("names lock").get(key)?.members.first().copied()
    }

    /// The members now: the addresses, and for each name what it resolves
    /// to, or what it last resolved to when it fails (empty or an error).
    pub async fn members(&self) -> BTreeSet<SocketAddr> {
        let mut all = BTreeSet::new();
        for member in &self.members {
            let (key, resolved) = match member {
                Member::Address(address) => {
                    all.insert(*address);
                    continue;
                }
                Member::Dns { name, port } => (format!("{name}:{port}"), self.addresses(name, *port).await),
                Member::Srv(name) => (name.clone(), self.targets(name).await),
            };
            let resolved = resolved.and_then(|members| match members.is_empty() {
                true => Err("the name has no records".to_owned()),
                false => Ok(members),
            });
            let mut names = self.names.lock().expect("names lock");
            let state = names.entry(key.clone()).or_default();
            match resolved {
                Ok(members) => {
                    if state.failing.take().is_some() {
                        tracing::info!(name = %key, members = members.len(), "fleet member name resolves again");
                    }
                    state.members = members;
                }
                Err(error) => {
                    if state.failing.is_none() {
                        tracing::warn!(name = %key, %error, kept = state.members.len(), "fleet member name does not resolve; its last members are kept");
                    }
                    state.failing = Some(error);
                    state.failures += 1;
                }
            }
            all.extend(state.members.iter().copied());
        }
        all
    }

    async fn addresses(&self, name: &str, port: u16) -> Result<BTreeSet<SocketAddr>, String> {
        let resolver = self.resolver.as_ref().ok_or("no resolver")?;
        let found = resolver.lookup_ip(name).await.map_err(|error| error.to_string())?;
        Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }

    /// Every SRV target's addresses, at its port.
    async fn targets(&self, name: &str) -> Result<BTreeSet<SocketAddr>, String> {
        let resolver = self.resolver.as_ref().ok_or("no resolver")?;
        let found = resolver.srv_lookup(name).await.map_err(|error| error.to_string())?;
        let mut members = BTreeSet::new();
        for record in found.answers() {
            if let RData::SRV(srv) = &record.data {
                members.extend(self.addresses(&srv.target.to_utf8(), srv.port).await?);
            }
        }
        Ok(members)
    }
}

/// The discovery as the ring's view asks it (pingora owns a `Box` of it).
pub struct Discovered(pub Arc<MemberDiscovery>);

#[async_trait]
impl ServiceDiscovery for Discovered {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let backends = self
            .0
            .members()
            .await
            .into_iter()
            .filter_map(|address| Backend::new(&address.to_string()).ok())
            .collect();
        Ok((backends, HashMap::new()))
    }
}
