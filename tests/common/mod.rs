//! A real stack for integration tests: the embedded S3 origin (s3s checks
//! every SigV4 signature) and the pingora edge, on ephemeral loopback ports,
//! in this process. Plus a minimal HTTP/1.1 client, so responses are seen
//! exactly as sent.

#![allow(dead_code)] // each test binary uses part of the harness

pub mod api;
pub mod app;
pub mod dns;
pub mod fleet;
pub mod served;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyfront::auth::{HashAlgorithm, PolicySpec, PolicyTerms, PrivateKey, Signer};
use keyfront::config::Config;
use keyfront::edge::EdgeState;
use keyfront::origin::{Origin, put_object};
use keyfront::s3store::{self, BucketAccess, PortSharing};
use keyfront::server::{ServerMode, build_server, compose};

pub const KEY_ID: &str = "KTESTKEY";
pub const BUCKET: &str = "media";
pub const ACCESS_KEY: &str = "edge-test";
pub const SECRET: &str = "edge-test-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// A second bucket of the same store, with credentials of its own: what no
/// request for `BUCKET` may reach.
pub const OTHER_BUCKET: &str = "other";
pub const OTHER_ACCESS_KEY: &str = "other-owner";
pub const OTHER_SECRET: &str = "other-owner-secret";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/keys").join(name)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An address nothing listens on, nor ever will during the tests (a port
/// released by `free_address` may be taken by a test running alongside).
pub fn dead_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 254], 1))
}

/// A port nothing listens on (bound, then released), on a loopback address
/// of its own: between release and a server's bind, a port on 127.0.0.1 can
/// be taken by a client's ephemeral port or by a test running alongside, and
/// the server then misses its address while requests reach another test's.
pub fn free_address() -> SocketAddr {
    static ISSUED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let issued = ISSUED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Second octet from 1 up: 127.0.0.x is the fleet's and `dead_address`'s.
    let ip = std::net::Ipv4Addr::new(
        127,
        1 + (std::process::id() % 250) as u8,
        (issued / 250 % 256) as u8,
        1 + (issued % 250) as u8,
    );
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

pub struct Stack {
    pub edge: SocketAddr,
    /// The admin listener (token: `ADMIN_TOKEN`).
    pub admin: SocketAddr,
    /// The edge's shared state: its cache and the cache's origin counters.
    pub state: std::sync::Arc<EdgeState>,
    pub origin: Origin,
    /// `OTHER_BUCKET` on the same store, with its own credentials.
    pub other: Origin,
    /// The store itself (not through the relay).
    pub store: SocketAddr,
    pub signer: Signer,
    /// Stops and starts the `relayed` origin's path to the store.
    pub relay: Relay,
    /// The config with `{LISTEN}` where the edge's address goes.
    config_template: String,
    config_dir: tempfile::TempDir,
    _store_dir: tempfile::TempDir,
}

impl Stack {
    /// Starts an origin and an edge whose behaviors are `behaviors` (YAML list
    /// items) followed by the signed default behavior. Origins available:
    /// `store` (good), `relayed` (the store through `relay`), `down` (nothing
    /// listens), `wrong_credentials`, and `silent` (accepts connections,
    /// never answers; 500 ms first-byte timeout).
    pub fn start(behaviors: &str) -> Stack {
        Self::start_with(behaviors, "")
    }

    /// Like `start`, with a `cache:` section (YAML, indented two spaces).
    pub fn start_with(behaviors: &str, cache: &str) -> Stack {
        Self::start_configured(behaviors, cache, "")
    }

    /// Like `start_with`, with more top-level settings (YAML lines).
    pub fn start_configured(behaviors: &str, cache: &str, settings: &str) -> Stack {
        let store_dir = tempfile::tempdir().unwrap();
        let origin_address = spawn_store(store_dir.path());
        let relay = Relay::start(origin_address);
        let config_dir = tempfile::tempdir().unwrap();
        let config_template = format!(
            r#"
listen: "{{LISTEN}}"
admin_listen: "{{ADMIN}}"
admin_token: {ADMIN_TOKEN}
access_log: access-{{LISTEN_PORT}}.log
{settings}
key_groups:
  main:
    - id: {KEY_ID}
      public_key: {public_key}
origins:
  store: {{type: s3, endpoint: "http://{origin_address}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, connect_timeout: 1s, first_byte_timeout: 5s}}
  relayed: {{type: s3, endpoint: "http://{relayed}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, connect_timeout: 1s, first_byte_timeout: 5s}}
  relayed_impatient: {{type: s3, endpoint: "http://{relayed}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, connect_timeout: 1s, first_byte_timeout: 1s}}
  down: {{type: s3, endpoint: "http://{down}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, connect_timeout: 1s}}
  wrong_credentials: {{type: s3, endpoint: "http://{origin_address}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: not-the-secret}}
  ignores_range: {{type: s3, endpoint: "http://{ignores_range}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}}}
  silent: {{type: s3, endpoint: "http://{silent}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, first_byte_timeout: 500ms}}
cache:
{cache}
behaviors:
{behaviors}
  - path_pattern: "*"
    origin: store
    trusted_key_groups: [main]
"#,
            public_key = fixture("rsa_public.pem").display(),
            relayed = relay.address,
            down = dead_address(),
            silent = silent_origin(),
            ignores_range = range_ignoring_origin(),
        );
        let origin = Origin::embedded(origin_address, BUCKET, ACCESS_KEY, SECRET);
        let other = Origin::embedded(origin_address, OTHER_BUCKET, OTHER_ACCESS_KEY, OTHER_SECRET);
        let key = PrivateKey::from_pem(&std::fs::read_to_string(fixture("rsa_pkcs1.pem")).unwrap()).unwrap();
        let (edge, admin, state) = start_edge(&config_template, config_dir.path());
        Stack {
            edge,
            admin,
            state,
            origin,
            other,
            store: origin_address,
            signer: Signer::new(KEY_ID, key, HashAlgorithm::Sha1),
            relay,
            config_template,
            config_dir,
            _store_dir: store_dir,
        }
    }

    /// A second edge with the same config (and so the same disk tier) on a
    /// new port: a restart, as far as the cache can tell.
    pub fn start_another_edge(&self) -> (SocketAddr, std::sync::Arc<EdgeState>) {
        let (edge, _admin, state) = start_edge(&self.config_template, self.config_dir.path());
        (edge, state)
    }

    /// Another edge on the same origin whose config is this stack's, edited
    /// by `edit` (a node of a fleet, say): its viewer and admin listeners.
    pub fn start_edge_with(&self, edit: impl FnOnce(String) -> String) -> (SocketAddr, SocketAddr, std::sync::Arc<EdgeState>) {
        self.start_edge_on(free_address(), edit)
    }

    /// As `start_edge_with`, listening on `listen` (known to others first).
    pub fn start_edge_on(
        &self,
        listen: SocketAddr,
        edit: impl FnOnce(String) -> String,
    ) -> (SocketAddr, SocketAddr, std::sync::Arc<EdgeState>) {
        start_edge_on(&edit(self.config_template.clone()), self.config_dir.path(), listen)
    }

    /// The directory the config file lives in (relative cache paths start here).
    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    /// The config file of this stack's first edge.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.config_dir.path().join(format!("keyfront-{}.yaml", self.edge.port()))
    }

    /// Rewrites this edge's config file with `edit` and reloads it (POST /reload).
    pub fn rewrite_config(&self, edit: impl FnOnce(String) -> String) {
        let config = std::fs::read_to_string(self.config_path()).unwrap();
        std::fs::write(self.config_path(), edit(config)).unwrap();
        let token = format!("Bearer {ADMIN_TOKEN}");
        let reloaded = request(self.admin, "POST", "/reload", &[("Authorization", &token)], b"");
        assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    }

    /// Adds origin `name` (a YAML flow mapping) and a first behavior
    /// `pattern` on it, public, by a reload.
    pub fn route_to_origin(&self, name: &str, origin: &str, pattern: &str) {
        self.rewrite_config(|config| {
            config.replacen("cache:", &format!("  {name}: {origin}\ncache:"), 1).replacen(
                "behaviors:\n",
                &format!("behaviors:\n  - path_pattern: {pattern}\n    origin: {name}\n"),
                1,
            )
        });
    }

    /// The access log of this stack's first edge.
    /// The access log once its writer has caught up (its thread writes
    /// batches some milliseconds apart): the text when it stops changing.
    pub fn access_log(&self) -> String {
        let path = self.config_dir.path().join(format!("access-{}.log", self.edge.port()));
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        let mut text = read();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = read();
            if now == text {
                break;
            }
            text = now;
        }
        text
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.edge)
    }

    /// Uploads straight to the origin (SigV4 checked by s3s).
    pub fn put(&self, key: &str, content_type: &str, body: &[u8]) {
        self.put_with(key, &[("content-type", content_type)], body);
    }

    pub fn put_with(&self, key: &str, headers: &[(&str, &str)], body: &[u8]) {
        assert_eq!(put_object(&self.origin, key, headers, body).unwrap(), 200, "upload of {key}");
    }

    /// A canned-policy target (path and query) for `path`, valid for an hour.
    pub fn signed(&self, path: &str) -> String {
        self.signed_until(path, now() + 3600)
    }

    pub fn signed_until(&self, path: &str, expires: u64) -> String {
        let url = self
            .signer
            .sign_url(&format!("{}{path}", self.base()), &PolicySpec::Canned { expires });
        url.strip_prefix(&self.base()).unwrap().to_owned()
    }

    pub fn signed_custom(&self, path: &str, terms: PolicyTerms) -> String {
        let url = format!("{}{path}", self.base());
        let signed = self.signer.sign_url(&url, &PolicySpec::for_url(&url, &terms));
        signed.strip_prefix(&self.base()).unwrap().to_owned()
    }

    pub fn get(&self, target: &str) -> Response {
        request(self.edge, "GET", target, &[], b"")
    }

    /// Origin requests the edge's cache has made so far.
    pub fn origin_requests(&self) -> u64 {
        self.state.cache.client.stats.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Origin body bytes the edge's cache has read so far.
    pub fn origin_bytes(&self) -> u64 {
        self.state.cache.client.stats.body_bytes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Starts the embedded store on a free port, its bucket `BUCKET` opened by
/// `ACCESS_KEY` and `SECRET` only, and `OTHER_BUCKET` by its own pair.
pub fn spawn_store(root: &Path) -> SocketAddr {
    let access = |bucket: &str, access_key_id: &str, secret_access_key: &str| BucketAccess {
        bucket: bucket.into(),
        access_key_id: access_key_id.into(),
        secret_access_key: secret_access_key.into(),
        public_read: false,
        creates_buckets: false,
    };
    let buckets = vec![
        access(BUCKET, ACCESS_KEY, SECRET),
        access(OTHER_BUCKET, OTHER_ACCESS_KEY, OTHER_SECRET),
    ];
    s3store::spawn(root.to_owned(), "127.0.0.1:0".parse().unwrap(), PortSharing::Exclusive, buckets).unwrap()
}

/// A request to the store at `path` exactly as written (no normalising, no
/// encoding), SigV4-signed with `origin`'s credentials.
pub fn store_request(origin: &Origin, store: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let length = body.len().to_string();
    let mut signed_headers = headers.to_vec();
    if !body.is_empty() {
        signed_headers.push(("content-length", &length));
    }
    let signature = origin.sign(method, path, &signed_headers, std::time::SystemTime::now()).unwrap();
    let all: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .chain(signature.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .collect();
    request(store, method, path, &all, body)
}

/// Writes the config with fresh viewer and admin addresses, starts an edge on
/// them and waits until it listens.
fn start_edge(template: &str, dir: &Path) -> (SocketAddr, SocketAddr, std::sync::Arc<EdgeState>) {
    start_edge_on(template, dir, free_address())
}

fn start_edge_on(template: &str, dir: &Path, listen: SocketAddr) -> (SocketAddr, SocketAddr, std::sync::Arc<EdgeState>) {
    let admin = free_address();
    let path = dir.join(format!("keyfront-{}.yaml", listen.port()));
    let text = template
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace("{LISTEN_PORT}", &listen.port().to_string());
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let (state, listeners) = compose(config).unwrap();
    let server_state = state.clone();
    std::thread::spawn(move || {
        build_server(server_state, &listeners, ServerMode::serving(1, false))
            .unwrap()
            .run_forever()
    });
    wait_for(listen);
    wait_for(admin);
    (listen, admin, state)
}

/// A TCP relay to an origin that can be cut: while off, it refuses new
/// connections and cuts the ones it carries, as an origin that went down.
/// It can also hold each new connection for a while, or send its answers
/// a little at a time, as a slow origin.
pub struct Relay {
    pub address: SocketAddr,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Milliseconds between two 16 KiB parts of an answer (0: no pause).
    trickle_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    carried: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicU64>,
    one_request_each: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let trickle_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let carried = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let one_request_each = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (accept_on, accept_delay, accept_carried, accepted) = (on.clone(), delay_ms.clone(), carried.clone(), connections.clone());
        let (accept_one_request, accept_trickle) = (one_request_each.clone(), trickle_ms.clone());
        std::thread::spawn(move || {
            for viewer in listener.incoming().take(10_000).flatten() {
                if !accept_on.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let delay = Duration::from_millis(accept_delay.load(std::sync::atomic::Ordering::SeqCst));
                let (carried, one_request, trickle) = (accept_carried.clone(), accept_one_request.clone(), accept_trickle.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let Ok(upstream) = TcpStream::connect(target) else {
                        return;
                    };
                    carried
                        .lock()
                        .unwrap()
                        .extend([viewer.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                    let (requests, request_target) = (viewer.try_clone().unwrap(), upstream.try_clone().unwrap());
                    std::thread::spawn(move || forward_requests(requests, request_target, &one_request));
                    let (mut from, mut to) = (upstream, viewer);
                    std::thread::spawn(move || {
                        let mut buffer = vec![0u8; 16 * 1024];
                        while let Ok(read @ 1..) = from.read(&mut buffer) {
                            if to.write_all(&buffer[..read]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(trickle.load(std::sync::atomic::Ordering::SeqCst)));
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                });
            }
        });
        Relay {
            address,
            on,
            delay_ms,
            trickle_ms,
            carried,
            connections,
            one_request_each,
        }
    }

    /// Closes each connection when a second request comes on it, as an
    /// origin that closes an idle connection just as it is used again.
    pub fn close_at_second_request(&self) {
        self.one_request_each.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections carried so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cuts the origin off (or lets it through again).
    pub fn set_on(&self, on: bool) {
        self.on.store(on, std::sync::atomic::Ordering::SeqCst);
        if !on {
            for stream in self.carried.lock().unwrap().drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Pauses `pause` after each 16 KiB of the origin's answers.
    pub fn trickle(&self, pause: Duration) {
        self.trickle_ms.store(pause.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }

    /// Holds every new connection for `delay` before it reaches the origin,
    /// after cutting the ones it carries (so pooled connections are not reused).
    pub fn slow_down(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
        self.set_on(false);
        self.set_on(true);
    }
}

/// Copies requests from `viewer` to `upstream`; with `one_request` set, a
/// second read (a second request: each comes in one write) closes both.
fn forward_requests(mut viewer: TcpStream, mut upstream: TcpStream, one_request: &std::sync::atomic::AtomicBool) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut reads = 0;
    while let Ok(read @ 1..) = viewer.read(&mut buffer) {
        reads += 1;
        if reads > 1 && one_request.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = viewer.shutdown(std::net::Shutdown::Both);
            break;
        }
        if upstream.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = upstream.shutdown(std::net::Shutdown::Both);
}

/// What the `ignores_range` origin serves for every path.
pub fn range_ignoring_body() -> Vec<u8> {
    patterned(3 * 65536 + 100)
}

/// An origin that answers every request 200 with the whole body, whatever
/// its Range, as some S3-compatible servers and plain web servers do.
fn range_ignoring_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().take(1000).flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = range_ignoring_body();
            let is_head = head.starts_with(b"HEAD");
            let header = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\netag: \"whole-v1\"\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            if !is_head {
                let _ = stream.write_all(&body);
            }
        }
    });
    address
}

/// An origin that accepts connections and never answers.
fn silent_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            held.push(stream);
        }
    });
    address
}

/// `keyfront_disk_errors_total` as `node` reports it on its metrics page.
pub fn disk_errors(node: &keyfront::edge::EdgeState) -> u64 {
    let figures = keyfront::metrics::ScrapeFigures {
        access_log_dropped: 0,
        control_log: None,
        member_names: Vec::new(),
    };
    node.metrics
        .render(&node.cache, &figures)
        .lines()
        .find_map(|line| line.strip_prefix("keyfront_disk_errors_total ")?.parse().ok())
        .unwrap_or(0)
}

/// Polls `done` every 20 ms for up to 10 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_for(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to
/// the end. Bodies are taken as sent: this client never decodes or re-frames.
pub fn request(address: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    exchange(TcpStream::connect(address).unwrap(), address, method, target, headers, body)
}

/// `request`, from the loopback address `source` (such as 127.0.0.2): what
/// another viewer's request looks like to the edge.
pub fn request_from(source: std::net::IpAddr, address: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        socket.connect(address).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    exchange(stream, address, method, target, headers, b"")
}

fn exchange(mut stream: TcpStream, address: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Deterministic bytes that differ at every offset within a 251-byte period.
pub fn patterned(length: usize) -> Vec<u8> {
    (0..length).map(|i| (i * 7 % 251) as u8).collect()
}

/// A relay to `server` that breaks off every connection after `cut_after`
/// bytes of answer, as a node dying mid-body does; it counts its cuts.
pub fn cutting_relay(server: SocketAddr, cut_after: usize) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let cuts = std::sync::Arc::new(AtomicU64::new(0));
    let counted = cuts.clone();
    std::thread::spawn(move || {
        for viewer in listener.incoming().take(1000).flatten() {
            let Ok(upstream) = TcpStream::connect(server) else { continue };
            let (mut viewer_reader, mut upstream_writer) = (viewer.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut viewer_reader, &mut upstream_writer));
            let counted = counted.clone();
            std::thread::spawn(move || {
                let (mut upstream, mut viewer) = (upstream, viewer);
                let mut sent = 0usize;
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(read) = upstream.read(&mut buffer) {
                    let part = read.min(cut_after - sent);
                    if read == 0 || viewer.write_all(&buffer[..part]).is_err() {
                        break;
                    }
                    sent += part;
                    if sent == cut_after {
                        counted.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
                let _ = viewer.shutdown(std::net::Shutdown::Both);
                let _ = upstream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (address, cuts)
}

/// A self-signed RSA-2048 certificate for `localhost` and 127.0.0.1, made
/// by `openssl req` in `dir`: the paths of the certificate and its key.
pub fn self_signed_certificate(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let (certificate, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .output()
        .map_err(|error| format!("running openssl (scripts/ensure-deps test installs it): {error}"))?;
    if !made.status.success() {
        return Err(format!("openssl req: {}", String::from_utf8_lossy(&made.stderr)));
    }
    Ok((certificate, key))
}
