//! A fleet of real `keyfront serve` processes on loopback addresses: two
//! sites of three nodes (127.0.0.11-13 and 127.0.0.21-23) under one shield
//! (127.0.0.31), in front of one embedded origin, with a control log in its
//! bucket (`tests/fleet_processes.rs`, `bench/fleet`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use keyfront::origin::{Origin, put_object};

use super::served::Served;
use super::{ACCESS_KEY, BUCKET, SECRET, request, spawn_store, wait_for, wait_until};

/// A free port on `ip`.
fn free_address_on(ip: [u8; 4]) -> SocketAddr {
    let ip = IpAddr::V4(Ipv4Addr::from(ip));
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

pub struct Node {
    pub name: String,
    pub edge: SocketAddr,
    pub admin: SocketAddr,
    /// The process; taken (and so killed) to make the node fail.
    pub process: Option<Served>,
    config: std::path::PathBuf,
}

impl Node {
    /// Starts the node's process again (after it was taken).
    pub fn restart(&mut self) {
        self.process = Some(Served::start(&self.config, self.edge, None));
        wait_for(self.admin);
    }

    /// The sum of the node's metric lines starting with `prefix`.
    pub fn metric(&self, prefix: &str) -> u64 {
        let metrics = request(self.admin, "GET", "/metrics", &[], b"").text();
        metrics
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

pub struct Fleet {
    _dir: tempfile::TempDir,
    /// Names the shield for the second site, whose nodes find it by DNS.
    _dns: super::dns::Dns,
    pub origin: Origin,
    pub shield: Node,
    pub sites: [Vec<Node>; 2],
}

/// The config of one node: a public behavior on the store, and `fleet`
/// (none: a node on its own).
fn write_config(dir: &Path, name: &str, edge: SocketAddr, admin: SocketAddr, store: SocketAddr, fleet: Option<&str>) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text = format!(
        "listen: \"{edge}\"\nadmin_listen: \"{admin}\"\nadmin_token: {token}\ndrain_timeout: 0s\norigins:\n  store: {{type: s3, endpoint: \"http://{store}\", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}}}\ncache:\n  slice_size: 1MiB\nbehaviors:\n  - path_pattern: \"*\"\n    origin: store\n{fleet}",
        token = super::ADMIN_TOKEN,
        fleet = fleet.map_or(String::new(), |fleet| {
            format!("fleet: {{node: {name}, secret_file: fleet.secret, control: {{origin: store, poll: 1s}}{fleet}}}\n")
        })
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn quoted(addresses: &[SocketAddr]) -> String {
    addresses.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
}

impl Fleet {
    /// Starts the seven nodes; without `in_fleet` they are seven nodes on
    /// their own with the same addresses (to compare with).
    pub fn start(in_fleet: bool) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        // Random per fleet: fleets of tests running side by side never trust each other.
        std::fs::write(dir.path().join("fleet.secret"), format!("{:032x}", rand::random::<u128>())).unwrap();
        let store = spawn_store(&dir.path().join("store"));
        let origin = Origin::embedded(store, BUCKET, ACCESS_KEY, SECRET);
        let start = |name: &str, ip: [u8; 4], fleet: &str, edge: SocketAddr| {
            let admin = free_address_on(ip);
            let config = write_config(dir.path(), name, edge, admin, store, in_fleet.then_some(fleet));
            let process = Served::start(&config, edge, None);
            wait_for(admin);
            Node {
                name: name.to_owned(),
                edge,
                admin,
                process: Some(process),
                config,
            }
        };
        let shield_address = free_address_on([127, 0, 0, 31]);
        let shield = start("shield", [127, 0, 0, 31], "", shield_address);
        // The first site lists its parent's address and each node's own; the
        // second names its parent, and each node names itself.
        let dns = super::dns::Dns::start("fleet.test.");
        dns.set_a("shield", &[std::net::Ipv4Addr::new(127, 0, 0, 31)]);
        let parents = [
            format!("parents: [\"{shield_address}\"]"),
            format!(
                "parents: [{{dns: \"shield.fleet.test:{}\"}}], dns: {{server: \"{}\", interval: 1s}}",
                shield_address.port(),
                dns.address
            ),
        ];
        let sites = [1u8, 2].map(|site| {
            let ips: Vec<[u8; 4]> = (1..=3).map(|n| [127, 0, 0, site * 10 + n]).collect();
            let edges: Vec<SocketAddr> = ips.iter().map(|ip| free_address_on(*ip)).collect();
            ips.iter()
                .zip(&edges)
                .enumerate()
                .map(|(i, (ip, edge))| {
                    let peers: Vec<SocketAddr> = edges.iter().copied().filter(|peer| peer != edge).collect();
                    let mut fleet = format!(", site_peers: [{}], {}", quoted(&peers), parents[usize::from(site) - 1]);
                    if site == 2 {
                        dns.set_a(&format!("site2-{i}"), &[std::net::Ipv4Addr::from(*ip)]);
                        fleet.push_str(&format!(", site_address: {{dns: \"site2-{i}.fleet.test:{}\"}}", edge.port()));
                    }
                    start(&format!("site{site}-{i}"), *ip, &fleet, *edge)
                })
                .collect()
        });
        let fleet = Fleet {
            _dir: dir,
            _dns: dns,
            origin,
            shield,
            sites,
        };
        if in_fleet {
            fleet.wait_until_healthy();
        }
        fleet
    }

    /// The shield and the six edge nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.shield).chain(self.sites.iter().flatten())
    }

    /// The six edge nodes.
    pub fn edges(&self) -> impl Iterator<Item = &Node> {
        self.sites.iter().flatten()
    }

    /// Every node sees every live peer and parent healthy.
    pub fn wait_until_healthy(&self) {
        for node in self.edges() {
            wait_until(&format!("{}'s peers and parent healthy", node.name), || {
                let state = request(node.admin, "GET", "/fleet", &[], b"").text();
                state.matches("\"healthy\":true").count() == 4 && !state.contains("\"healthy\":false")
            });
        }
    }

    /// Uploads `body` at `key`, cacheable for an hour.
    pub fn put(&self, key: &str, body: &[u8]) {
        let headers = [("cache-control", "max-age=3600")];
        assert_eq!(put_object(&self.origin, key, &headers, body).unwrap(), 200);
    }
}
