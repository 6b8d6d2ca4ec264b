//! The tier above: parent keyfronts chosen per slice by consistent hashing
//! (pingora's Ketama ring, compatible with nginx's `hash ... consistent`),
//! so each slice lives on one parent; parents that fail a TCP health check
//! are skipped until they pass again.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::{Backend, LoadBalancer};
use pingora::services::background::GenBackgroundService;

/// How often each parent's health is checked.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The ring of parents, with their health.
pub struct Parents {
    ring: Arc<LoadBalancer<KetamaHashing>>,
    count: usize,
}

impl Parents {
    /// The ring of `addresses`; every parent counts as healthy until the
    /// first round of `health_checks` has run.
    pub fn new(addresses: &[SocketAddr]) -> Self {
        let mut ring = LoadBalancer::<KetamaHashing>::try_from_iter(addresses.iter().copied()).expect("socket addresses need no lookup");
        let mut check = TcpHealthCheck::default();
        check.peer_template.options.connection_timeout = Some(Duration::from_millis(500));
        ring.set_health_check(Box::new(check));
        ring.health_check_frequency = Some(HEALTH_CHECK_INTERVAL);
        ring.parallel_health_check = true;
        Parents {
            ring: Arc::new(ring),
            count: addresses.len(),
        }
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
        let mut chosen: BTreeSet<Backend> = BTreeSet::new();
        let mut order = Vec::with_capacity(self.count);
        while order.len() < self.count {
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

    fn addresses(count: u8) -> Vec<SocketAddr> {
        (1..=count).map(|i| SocketAddr::from(([127, 0, 0, i], 8080))).collect()
    }

    #[test]
    fn each_key_has_one_owner_and_keys_spread() {
        let parents = Parents::new(&addresses(3));
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
        let three = Parents::new(&addresses(3));
        let two = Parents::new(&addresses(2));
        let gone = addresses(3)[2];
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
