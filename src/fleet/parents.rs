//! The tier above: parent keyfronts chosen per slice by consistent hashing
//! (pingora's Ketama ring, compatible with nginx's `hash ... consistent`),
//! so each slice lives on one parent; parents that fail a TCP health check
//! are skipped until they pass again. Members named by DNS join and leave
//! the ring as their names resolve (`discovery`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::services::background::GenBackgroundService;

use super::discovery::{Discovered, MemberDiscovery, NameState};
use crate::config::{DnsSettings, Member};

/// How often each parent's health is checked.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The ring of parents, with their health.
pub struct Parents {
    ring: Arc<LoadBalancer<KetamaHashing>>,
    discovery: Arc<MemberDiscovery>,
}

impl Parents {
    /// The ring of `members`, names resolved by `resolver` every
    /// `dns.interval`; every parent counts as healthy until the first
    /// round of `health_checks` has run. Addresses are on the ring at
    /// once, names from the first resolution on.
    pub fn new(members: &[Member], dns: &DnsSettings, resolver: Option<Arc<hickory_resolver::TokioResolver>>) -> Self {
        let discovery = MemberDiscovery::new(members, resolver);
        let mut ring = LoadBalancer::<KetamaHashing>::from_backends(Backends::new(Box::new(Discovered(discovery.clone()))));
        if discovery.has_names() {
            ring.update_frequency = Some(dns.interval);
        } else {
            // Addresses need no lookup: discovered without waiting.
            let update = std::pin::pin!(ring.update());
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            let outcome = std::future::Future::poll(update, &mut context);
            assert!(
                matches!(outcome, std::task::Poll::Ready(Ok(()))),
                "addresses are discovered at once"
            );
        }
        let mut check = TcpHealthCheck::default();
        check.peer_template.options.connection_timeout = Some(Duration::from_millis(500));
        ring.set_health_check(Box::new(check));
        ring.health_check_frequency = Some(HEALTH_CHECK_INTERVAL);
        ring.parallel_health_check = true;
        Parents {
            ring: Arc::new(ring),
            discovery,
        }
    }

    /// The address of `member`: itself, or what its name last resolved to
    /// (a name of one node: its first address).
    pub fn address_of(&self, member: &Member) -> Option<SocketAddr> {
        match member {
            Member::Address(address) => Some(*address),
            Member::Dns { name, port } => self.discovery.first_member(&format!("{name}:{port}")),
            Member::Srv(_) => None,
        }
    }

    /// What each member name last resolved to, and whether it fails.
    pub fn names(&self) -> std::collections::BTreeMap<String, NameState> {
        self.discovery.names()
    }

    /// The service that checks the parents' health every second, for the
    /// server to run.
    pub fn health_checks(&self) -> GenBackgroundService<LoadBalancer<KetamaHashing>> {
        GenBackgroundService::new("fleet parents health check".to_owned(), self.ring.clone())
    }

    /// Every parent and whether it passed its last health check.
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        let backends = self.ring.backends();
        let mut health: Vec<(SocketAddr, bool)> = backends
            .get_backend()
            .iter()
            .filter_map(|backend| backend.addr.as_inet().map(|address| (*address, backends.ready(backend))))
            .collect();
        health.sort();
        health
    }

    /// The healthy parents in the order to ask them for `key`: its owner on
    /// the ring first, then the next ones.
    pub fn in_order(&self, key: &[u8]) -> Vec<SocketAddr> {
        let count = self.ring.backends().get_backend().len();
        let mut chosen: BTreeSet<Backend> = BTreeSet::new();
        let mut order = Vec::with_capacity(count);
        while order.len() < count {
            let next = self
                .ring
                .select_with(key, 256, |backend, healthy| healthy && !chosen.contains(backend));
            let Some(backend) = next else { break };
            order.extend(backend.addr.as_inet().copied());
            chosen.insert(backend);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(count: u8) -> Vec<Member> {
        (1..=count)
            .map(|i| Member::Address(SocketAddr::from(([127, 0, 0, i], 8080))))
            .collect()
    }

    fn ring(members: &[Member]) -> Parents {
        Parents::new(members, &DnsSettings::default(), None)
    }

    #[test]
    fn each_key_has_one_owner_and_keys_spread() {
        let parents = ring(&addresses(3));
        let mut owners = std::collections::HashMap::new();
        for slice in 0..300 {
            let key = format!("media\n/bucket/film.mp4\nbytes={}-", slice << 20);
            let order = parents.in_order(key.as_bytes());
            assert_eq!(order.len(), 3, "every parent, each once");
            assert_eq!(order.iter().collect::<BTreeSet<_>>().len(), 3);
            assert_eq!(parents.in_order(key.as_bytes()), order, "the same order every time");
            *owners.entry(order[0]).or_insert(0) += 1;
        }
        assert_eq!(owners.len(), 3);
        assert!(
            owners.values().all(|count| *count > 50),
            "slices spread over the parents: {owners:?}"
        );
    }

    #[test]
    fn removing_a_parent_moves_only_its_keys() {
        let three = ring(&addresses(3));
        let two = ring(&addresses(2));
        let Member::Address(gone) = addresses(3)[2] else { unreachable!() };
        for slice in 0..300 {
            let key = format!("k{slice}");
            let before = three.in_order(key.as_bytes())[0];
            let after = two.in_order(key.as_bytes())[0];
            if before != gone {
                assert_eq!(before, after, "a key whose owner stayed keeps it");
            }
        }
    }
}
