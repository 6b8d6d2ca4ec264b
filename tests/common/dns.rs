//! A DNS server on loopback (hickory's, in-process) whose records a test
//! changes while nodes resolve names from it.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// A zone served on a UDP port of 127.0.0.1, records set by the test.
pub struct Dns {
    pub address: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    origin: Name,
    runtime: tokio::runtime::Runtime,
}

/// How long a record may be cached: short, so the nodes follow changes.
const TTL: u32 = 1;

impl Dns {
    /// Serves `origin` (e.g. `fleet.test.`) until dropped.
    pub fn start(origin: &str) -> Dns {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let origin = Name::from_str(origin).unwrap();
        let mut zone = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str("ns").unwrap().append_domain(&origin).unwrap(),
            Name::from_str("admin").unwrap().append_domain(&origin).unwrap(),
            1,
            60,
            60,
            60,
            TTL,
        );
        zone.upsert_mut(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1);
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(origin.clone().into(), vec![zone.clone() as Arc<dyn ZoneHandler>]);
        let socket = runtime.block_on(tokio::net::UdpSocket::bind("127.0.0.1:0")).unwrap();
        let address = socket.local_addr().unwrap();
        let _guard = runtime.enter();
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        runtime.spawn(async move {
            let _ = server.block_until_done().await;
        });
        Dns {
            address,
            zone,
            origin,
            runtime,
        }
    }

    fn name(&self, relative: &str) -> Name {
        Name::from_str(relative).unwrap().append_domain(&self.origin).unwrap()
    }

    /// Makes `relative`'s records of `kind` exactly `records` (none: removed).
    fn set(&self, relative: &str, kind: RecordType, records: Vec<RData>) {
        let name = self.name(relative);
        self.runtime.block_on(async {
            self.zone.records_mut().await.remove(&RrKey::new(name.clone().into(), kind));
            for data in records {
                self.zone.upsert(Record::from_rdata(name.clone(), TTL, data), 2).await;
            }
        });
    }

    /// Makes `relative`'s A records exactly `addresses`.
    pub fn set_a(&self, relative: &str, addresses: &[Ipv4Addr]) {
        self.set(relative, RecordType::A, addresses.iter().map(|ip| RData::A(A(*ip))).collect());
    }

    /// Makes `relative`'s SRV records exactly `targets` (relative names, ports).
    pub fn set_srv(&self, relative: &str, targets: &[(&str, u16)]) {
        let records = targets
            .iter()
            .map(|(target, port)| RData::SRV(SRV::new(0, 0, *port, self.name(target))))
            .collect();
        self.set(relative, RecordType::SRV, records);
    }
}
