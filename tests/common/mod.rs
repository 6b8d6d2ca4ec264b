//! A real stack for integration tests: the embedded S3 origin (s3s checks
//! every SigV4 signature) and the pingora edge, on ephemeral loopback ports,
//! in this process. Plus a minimal HTTP/1.1 client, so responses are seen
//! exactly as sent.

#![allow(dead_code)] // each test binary uses part of the harness

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyfront::auth::{HashAlgorithm, PolicySpec, PolicyTerms, PrivateKey, Signer};
use keyfront::config::Config;
use keyfront::edge::{EdgeState, build_server};
use keyfront::origin::{Credentials, S3Origin, put_object};
use keyfront::s3store::{self, BucketAccess};

pub const KEY_ID: &str = "KTESTKEY";
pub const BUCKET: &str = "media";
pub const ACCESS_KEY: &str = "edge-test";
pub const SECRET: &str = "edge-test-secret";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/keys")
        .join(name)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A port nothing listens on (bound, then released).
pub fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub struct Stack {
    pub edge: SocketAddr,
    /// The edge's shared state: its cache and the cache's origin counters.
    pub state: std::sync::Arc<EdgeState>,
    pub origin: S3Origin,
    pub signer: Signer,
    _dirs: Vec<tempfile::TempDir>,
}

impl Stack {
    /// Starts an origin and an edge whose behaviors are `behaviors` (YAML list
    /// items) followed by the signed default behavior. Origins available:
    /// `store` (good), `down` (nothing listens), `wrong_credentials`, and
    /// `silent` (accepts connections, never answers; 500 ms first-byte timeout).
    pub fn start(behaviors: &str) -> Stack {
        let store_dir = tempfile::tempdir().unwrap();
        let access = BucketAccess {
            bucket: BUCKET.into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET.into(),
        };
        let origin_address = s3store::spawn(
            store_dir.path().to_owned(),
            "127.0.0.1:0".parse().unwrap(),
            vec![access],
        )
        .unwrap();
        let edge = free_address();
        let config_dir = tempfile::tempdir().unwrap();
        let config_path = config_dir.path().join("keyfront.yaml");
        let yaml = format!(
            r#"
listen: {edge}
key_groups:
  main:
    - id: {KEY_ID}
      public_key: {public_key}
origins:
  store: {{type: s3, endpoint: "http://{origin_address}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, connect_timeout: 1s, first_byte_timeout: 5s}}
  down: {{type: s3, endpoint: "http://{down}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, connect_timeout: 1s}}
  wrong_credentials: {{type: s3, endpoint: "http://{origin_address}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: not-the-secret}}
  silent: {{type: s3, endpoint: "http://{silent}", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}, first_byte_timeout: 500ms}}
behaviors:
{behaviors}
  - path_pattern: "*"
    origin: store
    trusted_key_groups: [main]
"#,
            public_key = fixture("rsa_public.pem").display(),
            down = free_address(),
            silent = silent_origin(),
        );
        std::fs::write(&config_path, yaml).unwrap();
        let config = Config::load(&config_path).unwrap();
        let (state, listen) = EdgeState::from_config(config).unwrap();
        let server_state = state.clone();
        std::thread::spawn(move || build_server(server_state, &listen, 1).run_forever());
        wait_for(edge);
        let credentials = Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET.into(),
            session_token: None,
        };
        let origin = S3Origin::new(
            &format!("http://{origin_address}"),
            BUCKET,
            "us-east-1",
            true,
            credentials,
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .unwrap();
        let key = PrivateKey::from_pem(&std::fs::read_to_string(fixture("rsa_pkcs1.pem")).unwrap())
            .unwrap();
        Stack {
            edge,
            state,
            origin,
            signer: Signer::new(KEY_ID, key, HashAlgorithm::Sha1),
            _dirs: vec![store_dir, config_dir],
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.edge)
    }

    /// Uploads straight to the origin (SigV4 checked by s3s).
    pub fn put(&self, key: &str, content_type: &str, body: &[u8]) {
        assert_eq!(
            put_object(&self.origin, key, content_type, body).unwrap(),
            200,
            "upload of {key}"
        );
    }

    /// A canned-policy target (path and query) for `path`, valid for an hour.
    pub fn signed(&self, path: &str) -> String {
        self.signed_until(path, now() + 3600)
    }

    pub fn signed_until(&self, path: &str, expires: u64) -> String {
        let url = self.signer.sign_url(
            &format!("{}{path}", self.base()),
            &PolicySpec::Canned { expires },
        );
        url.strip_prefix(&self.base()).unwrap().to_owned()
    }

    pub fn signed_custom(&self, path: &str, terms: PolicyTerms) -> String {
        let url = format!("{}{path}", self.base());
        let signed = self
            .signer
            .sign_url(&url, &PolicySpec::for_url(&url, &terms));
        signed.strip_prefix(&self.base()).unwrap().to_owned()
    }

    pub fn get(&self, target: &str) -> Response {
        request(self.edge, "GET", target, &[], b"")
    }
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
pub fn request(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
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
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
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
