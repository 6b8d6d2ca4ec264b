//! CloudFront and S3 on loopback for a test suite, in one call: the
//! embedded S3 origin (one bucket), the edge, and the control-plane API
//! that boto3, the AWS CLI and Terraform talk to, all opened by one pair of
//! throwaway credentials. `keyfront emulate` runs it from the command line;
//! other crates' tests start it in-process, and dropping it stops it.
//! `Emulator::call` makes SigV4-signed API calls; viewer URLs for what the
//! API creates are signed with [`crate::auth::Signer`] (or any CloudFront
//! signer) and the key pair whose public half was created through the API.
//!
//! ```
//! use keyfront::emulator::{Emulator, EmulatorOptions};
//!
//! let emulator = Emulator::start(EmulatorOptions::default()).unwrap();
//! // A SigV4-signed call, as the SDKs make it; or hand `environment()` to
//! // boto3, the AWS CLI or Terraform in a child process.
//! let listed = emulator.call("GET", "/2020-05-31/distribution", b"", None).unwrap();
//! assert_eq!(listed.status, 200);
//! assert!(String::from_utf8_lossy(&listed.body).contains("<Quantity>0</Quantity>"));
//! let endpoint = format!("http://{}", emulator.control);
//! assert!(emulator.environment().contains(&("AWS_ENDPOINT_URL_CLOUDFRONT", endpoint)));
//! drop(emulator); // stops the edge, the API and the bucket
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_sigv4::http_request::{SignableBody, SigningSettings};
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::oneshot;

use crate::auth::{KeyAlgorithm, PrivateKey};
use crate::config::{Config, ConfigError};
use crate::control::random_name;
use crate::origin::{Credentials, SigV4Request};
use crate::plain_http::{Answer, exchange};
use crate::s3store::{self, BucketAccess, PortSharing, StoreError};
use crate::server::{ServerMode, StartError, build_server, compose};

/// How an emulator is started. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct EmulatorOptions {
    /// Where the bucket, the config and the control plane's state live,
    /// kept across runs; when `None`, a fresh directory for the bucket,
    /// removed when the emulator stops, and the state in memory.
    pub dir: Option<PathBuf>,
    /// The edge's address (port 0: a free one).
    pub edge: SocketAddr,
    /// The embedded S3 origin's address (port 0: a free one).
    pub s3: SocketAddr,
    /// The control-plane API's address (port 0: a free one).
    pub control: SocketAddr,
    /// The admin listener (health, metrics), if any.
    pub admin: Option<SocketAddr>,
    pub bucket: String,
    /// Random when `None`.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Accept every API request, signed or not.
    pub accept_any_credentials: bool,
    /// How long reads say `InProgress` after a change (default none).
    pub deploy_delay: Duration,
    /// Loopback addresses (127.0.0.2, .3, ...) on the edge's port handed to
    /// distributions as their DomainName, so `http://` + DomainName works
    /// without DNS; none when the edge listens on a non-loopback address.
    pub distribution_addresses: u8,
    /// An HTTPS edge (port 0: a free one) on this address and on the
    /// distributions' addresses, with a certificate made for them at start;
    /// behaviors' `ViewerProtocolPolicy` applies when it is on.
    pub tls: Option<SocketAddr>,
}

impl std::fmt::Debug for EmulatorOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmulatorOptions")
            .field("dir", &self.dir)
            .field("edge", &self.edge)
            .field("s3", &self.s3)
            .field("control", &self.control)
            .field("admin", &self.admin)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| ".."))
            .field("accept_any_credentials", &self.accept_any_credentials)
            .field("deploy_delay", &self.deploy_delay)
            .field("distribution_addresses", &self.distribution_addresses)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        EmulatorOptions {
            dir: None,
            edge: any,
            s3: any,
            control: any,
            admin: None,
            bucket: "media".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            accept_any_credentials: false,
            deploy_delay: Duration::ZERO,
            distribution_addresses: 32,
            tls: None,
        }
    }
}

/// Why an emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("{0} did not start listening")]
    NotListening(SocketAddr),
    #[error("making the HTTPS edge's certificate: {0}")]
    Certificate(String),
}

/// A running emulator; dropping it stops the edge, the API and the store.
pub struct Emulator {
    pub edge: SocketAddr,
    pub s3: SocketAddr,
    pub control: SocketAddr,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The region clients should sign with (any is accepted).
    pub region: String,
    pub dir: PathBuf,
    /// The HTTPS edge, if on, and the certificate (PEM) clients trust it by.
    pub tls: Option<(SocketAddr, PathBuf)>,
    owns_dir: bool,
    stop_edge: Mutex<Option<oneshot::Sender<()>>>,
    stop_store: Option<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// pingora's shutdown, asked for by dropping the emulator.
struct StopWhenSent(Mutex<Option<oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for StopWhenSent {
    async fn recv(&self) -> ShutdownSignal {
        let receiver = self.0.lock().expect("stop lock").take();
        if let Some(receiver) = receiver {
            let _ = receiver.await;
        }
        ShutdownSignal::FastShutdown
    }
}

/// A free port on `address`'s IP when its port is 0.
fn resolve(address: SocketAddr) -> std::io::Result<SocketAddr> {
    if address.port() != 0 {
        return Ok(address);
    }
    TcpListener::bind(address)?.local_addr()
}

fn wait_for(address: SocketAddr) -> Result<(), EmulatorError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(address).is_err() {
        if Instant::now() > deadline {
            return Err(EmulatorError::NotListening(address));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Emulator {
    /// Starts the store, the edge and the API, and returns once all listen.
    pub fn start(options: EmulatorOptions) -> Result<Emulator, EmulatorError> {
        let io = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| EmulatorError::Io { path, source }
        };
        let (dir, owns_dir) = match &options.dir {
            Some(dir) => (dir.clone(), false),
            None => (std::env::temp_dir().join(random_name("keyfront-emulator-", 12)), true),
        };
        crate::private_fs::private_dir(&dir).map_err(io(&dir))?;
        let access_key_id = options.access_key_id.clone().unwrap_or_else(|| random_name("AKIA", 16));
        let secret_access_key = options
            .secret_access_key
            .clone()
            .unwrap_or_else(|| random_name("", 40).to_ascii_lowercase());
        let access = BucketAccess {
            bucket: options.bucket.clone(),
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            public_read: false,
            creates_buckets: true,
        };
        let (stop_store, store_stopped) = oneshot::channel::<()>();
        let (s3, store_thread) = s3store::spawn_until(dir.join("store"), options.s3, PortSharing::Exclusive, vec![access], async move {
            let _ = store_stopped.await;
        })?;
        let edge = resolve(options.edge).map_err(io(&dir))?;
        let control = resolve(options.control).map_err(io(&dir))?;
        // Nothing no-one holds the key to: requests for no distribution's
        // name are refused, never served from the bucket.
        let unused_key = dir.join("no-distribution.pem");
        std::fs::write(&unused_key, PrivateKey::generate(KeyAlgorithm::Ecdsa).public_key().to_pem()).map_err(io(&unused_key))?;
        let pool: Vec<SocketAddr> = match edge.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => (2..2 + u16::from(options.distribution_addresses))
                .filter_map(|last| u8::try_from(last).ok())
                .map(|last| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), edge.port()))
                .collect(),
            _ => Vec::new(),
        };
        let tls = match options.tls {
            Some(address) => Some(edge_certificate(&dir, resolve(address).map_err(io(&dir))?, &pool)?),
            None => None,
        };
        let tls_listen = match &tls {
            Some((address, _)) => {
                let listeners: Vec<String> = std::iter::once(address.ip())
                    .chain(pool.iter().map(|address| address.ip()))
                    .map(|ip| {
                        format!(
                            "  - {{address: \"{}\", certificate: edge-cert.pem, key: edge-key.pem}}\n",
                            SocketAddr::new(ip, address.port())
                        )
                    })
                    .collect();
                format!("tls_listen:\n{}", listeners.concat())
            }
            None => String::new(),
        };
        let config_path = dir.join("keyfront.yaml");
        let admin = match options.admin {
            Some(address) => format!("admin_listen: \"{address}\"\n"),
            None => String::new(),
        };
        // A directory of the caller's keeps the state across runs; a fresh
        // one would die with the emulator, so the state stays in memory.
        let state = if owns_dir { "" } else { "control_state: control\n" };
        let config = format!(
            "# Written by keyfront's emulator.\nlisten: \"{edge}\"\n{tls_listen}{admin}control_listen: \"{control}\"\n{state}control_api:\n  s3_origin: s3\n  accept_any_credentials: {any}\n  credentials: [{{access_key_id: \"{access_key_id}\", secret_access_key: \"{secret_access_key}\"}}]\n  distribution_addresses: [{pool}]\n  deploy_delay: {delay}s\n  custom_origin_networks: [\"127.0.0.0/8\", \"::1/128\"]\n  reset_endpoint: true\nviewer_country_header: CloudFront-Viewer-Country\nkey_groups:\n  nobody:\n    - id: KNOBODY\n      public_key: no-distribution.pem\norigins:\n  s3:\n    type: s3\n    endpoint: http://{s3}\n    bucket: {bucket}\n    path_style: true\n    access_key_id: \"{access_key_id}\"\n    secret_access_key: \"{secret_access_key}\"\nbehaviors:\n  - path_pattern: \"*\"\n    origin: s3\n    trusted_key_groups: [nobody]\n",
            any = options.accept_any_credentials,
            delay = options.deploy_delay.as_secs(),
            pool = pool.iter().map(|address| format!("\"{address}\"")).collect::<Vec<_>>().join(", "),
            bucket = options.bucket,
        );
        crate::private_fs::write_private(&config_path, config).map_err(io(&config_path))?;
        let config = Config::load(&config_path)?;
        let (state, listeners) = compose(config)?;
        let mode = ServerMode {
            threads: 2,
            upgrade: false,
            one_runtime_per_thread: false,
        };
        let server = build_server(state, &listeners, mode)?;
        let (stop_edge, edge_stopped) = oneshot::channel();
        let edge_thread = std::thread::Builder::new()
            .name("emulator".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(StopWhenSent(Mutex::new(Some(edge_stopped)))),
                })
            })
            .map_err(io(&dir))?;
        let emulator = Emulator {
            edge,
            s3,
            control,
            bucket: options.bucket,
            access_key_id,
            secret_access_key,
            region: "us-east-1".to_owned(),
            dir,
            tls,
            owns_dir,
            stop_edge: Mutex::new(Some(stop_edge)),
            stop_store: Some(stop_store),
            threads: vec![edge_thread, store_thread],
        };
        wait_for(edge)?;
        wait_for(control)?;
        Ok(emulator)
    }

    /// The environment a test (boto3, the AWS CLI, Terraform) needs.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let mut environment = vec![
            ("AWS_ENDPOINT_URL_CLOUDFRONT", format!("http://{}", self.control)),
            ("AWS_ENDPOINT_URL_S3", format!("http://{}", self.s3)),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
            ("AWS_REGION", self.region.clone()),
            ("KEYFRONT_BUCKET", self.bucket.clone()),
            ("KEYFRONT_EDGE", format!("http://{}", self.edge)),
        ];
        if let Some((address, certificate)) = &self.tls {
            environment.push(("KEYFRONT_EDGE_HTTPS", format!("https://{address}")));
            environment.push(("KEYFRONT_CA_BUNDLE", certificate.display().to_string()));
        }
        environment
    }

    /// Calls the control-plane API (`path` with its query, e.g.
    /// `/2020-05-31/distribution`), signed with SigV4 as the SDKs sign.
    pub fn call(&self, method: &str, path: &str, body: &[u8], if_match: Option<&str>) -> std::io::Result<Answer> {
        let credentials = Credentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: None,
        };
        call_api(self.control, &credentials, method, path, body, if_match)
    }
}

/// Writes a self-signed certificate for `localhost`, `address` and the
/// distributions' `pool` of addresses (`edge-cert.pem`) and its key
/// (`edge-key.pem`, private) in `dir`: the HTTPS edge's address and the
/// certificate's path.
fn edge_certificate(dir: &Path, address: SocketAddr, pool: &[SocketAddr]) -> Result<(SocketAddr, PathBuf), EmulatorError> {
    let mut names = vec!["localhost".to_owned(), address.ip().to_string()];
    names.extend(pool.iter().map(|address| address.ip().to_string()));
    let made = rcgen::generate_simple_self_signed(names).map_err(|error| EmulatorError::Certificate(error.to_string()))?;
    let (certificate, key) = (dir.join("edge-cert.pem"), dir.join("edge-key.pem"));
    std::fs::write(&certificate, made.cert.pem()).map_err(|source| EmulatorError::Io {
        path: certificate.clone(),
        source,
    })?;
    crate::private_fs::write_private(&key, made.signing_key.serialize_pem()).map_err(|source| EmulatorError::Io { path: key, source })?;
    Ok((address, certificate))
}

/// Calls a control-plane API at `control` (any keyfront's `control_listen`)
/// as `Emulator::call` does, signed with `credentials` for us-east-1.
pub fn call_api(
    control: SocketAddr,
    credentials: &Credentials,
    method: &str,
    path: &str,
    body: &[u8],
    if_match: Option<&str>,
) -> std::io::Result<Answer> {
    let host = control.to_string();
    let mut headers = vec![("host", host.as_str())];
    if let Some(etag) = if_match {
        headers.push(("if-match", etag));
    }
    let signature = SigV4Request {
        credentials,
        region: "us-east-1",
        service: "cloudfront",
        settings: SigningSettings::default(),
        method,
        url: &format!("http://{host}{path}"),
        headers: &headers,
        body: SignableBody::Bytes(body),
    }
    .sign(SystemTime::now())
    .map_err(std::io::Error::other)?;
    let mut head = format!("{method} {path} HTTP/1.1");
    for (name, value) in headers
        .iter()
        .copied()
        .chain(signature.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        head.push_str(&format!("\r\n{name}: {value}"));
    }
    exchange(&host, &head, body)
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_edge.lock().expect("stop lock").take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.stop_store.take() {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
