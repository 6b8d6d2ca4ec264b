//! The processes under test, each started as its user would start it: the
//! embedded origin (`keyfront origin`), keyfront (`keyfront serve`), nginx
//! with the slice module, and the pingora ceiling (this binary again).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyfront::auth::{HashAlgorithm, KeyAlgorithm, PolicySpec, PolicyTerms, PrivateKey, Signer};
use keyfront::origin::{Origin, put_object};

use crate::Failure;
use crate::relay::CountingRelay;

pub const BUCKET: &str = "bench";
const ACCESS_KEY: &str = "bench-key";
const SECRET: &str = "bench-secret";
const KEY_ID: &str = "KBENCHCOMPARE";
/// keyfront's memory tier (MiB): 512, where the 256 MiB ranges object and
/// the hot objects fit, unless `KEYFRONT_MEMORY_MIB` says otherwise (a small
/// budget shows what each viewer holds beside it).
pub fn keyfront_memory_mib() -> u64 {
    std::env::var("KEYFRONT_MEMORY_MIB")
        .ok()
        .and_then(|mib| mib.parse().ok())
        .unwrap_or(512)
}
/// Each server's disk cache budget: room for every object.
const DISK_BUDGET_GIB: u64 = 8;

/// A child process, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` with its output in `log` and waits until `address` listens.
    fn start(command: &mut Command, log: PathBuf, address: SocketAddr) -> Result<Process, Failure> {
        let output = std::fs::File::create(&log)?;
        command.stdin(Stdio::null()).stdout(output.try_clone()?).stderr(output);
        let mut process = Process {
            child: command.spawn().map_err(|e| format!("starting {command:?}: {e}"))?,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(address).is_err() {
            if let Some(status) = process.child.try_wait()? {
                return Err(format!("{command:?} exited ({status}): {}", process.log_text()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("{command:?} did not listen on {address}: {}", process.log_text()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(process)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process and its children (nginx's workers).
    pub fn pids(&self) -> Vec<u32> {
        let parent = self.child.id();
        let mut pids = vec![parent];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
                pids.extend(entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()));
            }
        }
        pids
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn free_address() -> Result<SocketAddr, Failure> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The embedded origin, its bucket public-read so that nginx needs no signature.
pub fn start_origin(keyfront: &Path, dir: &Path) -> Result<(Process, SocketAddr), Failure> {
    let address = free_address()?;
    Ok((start_origin_at(keyfront, dir, address)?, address))
}

/// The embedded origin on `address` (again, after a restart).
pub fn start_origin_at(keyfront: &Path, dir: &Path, address: SocketAddr) -> Result<Process, Failure> {
    Process::start(
        Command::new(keyfront)
            .args([
                "origin",
                "--root",
                &dir.join("origin").to_string_lossy(),
                "--listen",
                &address.to_string(),
            ])
            .args(["--bucket", &format!("{BUCKET}={ACCESS_KEY}:{SECRET}"), "--public-read", BUCKET])
            .env("RUST_LOG", "warn"),
        dir.join("origin.log"),
        address,
    )
}

/// The SigV4 headers keyfront's origin client sends with a GET of `key`
/// through `origin` (an address in front of the embedded origin): the
/// origin's own first byte is measured for the request keyfront has to make.
pub fn origin_signature(origin: SocketAddr, key: &str) -> Result<Vec<(String, String)>, Failure> {
    let store = Origin::embedded(origin, BUCKET, ACCESS_KEY, SECRET);
    Ok(store.sign("GET", &format!("/{BUCKET}{key}"), &[], SystemTime::now())?)
}

/// Uploads `body` as `key` to the origin, signed as any S3 client would.
pub fn seed(origin: SocketAddr, key: &str, body: &[u8]) -> Result<(), Failure> {
    let store = Origin::embedded(origin, BUCKET, ACCESS_KEY, SECRET);
    match put_object(&store, key, &[("content-type", "application/octet-stream")], body)? {
        200 => Ok(()),
        status => Err(format!("seeding {key}: the origin answered {status}").into()),
    }
}

/// A self-signed certificate for 127.0.0.1, served by keyfront and nginx alike.
pub struct Certificate {
    certificate: PathBuf,
    key: PathBuf,
}

impl Certificate {
    /// Made with `openssl req` in `dir` (RSA-2048, as most sites still use).
    pub fn make(dir: &Path) -> Result<Self, Failure> {
        let (certificate, key) = crate::common::self_signed_certificate(dir)?;
        Ok(Self { certificate, key })
    }
}

/// One server under test and how its viewers address an object.
pub struct Server {
    pub name: &'static str,
    pub address: SocketAddr,
    /// Its TLS listener (HTTP/2 through ALPN), if it was given a certificate.
    pub tls: Option<SocketAddr>,
    /// keyfront's admin listener (`/metrics`).
    pub admin: Option<SocketAddr>,
    pub process: Process,
    /// keyfront's objects sit behind a signed-URL behavior.
    signer: Option<Signer>,
    /// Where its origin traffic is counted (none for the ceiling).
    pub relay: Option<CountingRelay>,
}

impl Server {
    /// The request target for `key`: signed (a canned policy valid for a day) for keyfront.
    pub fn target(&self, key: &str) -> String {
        self.target_until(&format!("http://{}", self.address), key, unix_now() + 86_400)
    }

    /// The target for `key` at `base` (scheme and authority), signed for
    /// keyfront with a canned policy that expires at `expires`.
    fn target_until(&self, base: &str, key: &str, expires: u64) -> String {
        let Some(signer) = &self.signer else { return key.to_owned() };
        let signed = signer.sign_url(&format!("{base}{key}"), &PolicySpec::Canned { expires });
        signed[base.len()..].to_owned()
    }

    /// The `https://` URL of `key` on the TLS listener (signed for keyfront).
    pub fn https_url(&self, key: &str) -> Option<String> {
        let base = format!("https://{}", self.tls?);
        Some(format!("{base}{}", self.target_until(&base, key, unix_now() + 86_400)))
    }

    /// A target for `key` whose signature expired an hour ago (keyfront only).
    pub fn expired_target(&self, key: &str) -> String {
        self.target_until(&format!("http://{}", self.address), key, unix_now() - 3_600)
    }

    /// A target for `key` whose signature is random bytes of the right
    /// length: what an attacker sends, a public-key operation each time
    /// the signature differs (keyfront only).
    pub fn forged_target(&self, key: &str) -> String {
        let target = self.target(key);
        let Some((before, signature_and_rest)) = target.split_once("Signature=") else {
            return target;
        };
        let (signature, rest) = signature_and_rest.split_at(signature_and_rest.find('&').unwrap_or(signature_and_rest.len()));
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~";
        let forged: String = (0..signature.len())
            .map(|_| ALPHABET[rand::random::<u8>() as usize % ALPHABET.len()] as char)
            .collect();
        format!("{before}Signature={forged}{rest}")
    }

    /// A `Cookie` header of signed cookies granting every key under
    /// `prefix` for a day (keyfront only).
    pub fn signed_cookies(&self, prefix: &str) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let expires = unix_now() + 86_400;
        let terms = PolicyTerms {
            resource: Some(format!("http://{}{prefix}*", self.address)),
            date_less_than: expires,
            ..PolicyTerms::default()
        };
        let url = format!("http://{}{prefix}", self.address);
        let cookies = signer.sign_cookies(&url, &PolicySpec::for_url(&url, &terms));
        Some(
            cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

pub fn start_keyfront(
    keyfront: &Path,
    dir: &Path,
    origin: SocketAddr,
    threads: usize,
    certificate: Option<&Certificate>,
) -> Result<Server, Failure> {
    let relay = CountingRelay::start(origin)?;
    let key = PrivateKey::generate(KeyAlgorithm::Rsa);
    let public_key = dir.join("public_key.pem");
    std::fs::write(&public_key, key.public_key().to_pem())?;
    let address = free_address()?;
    let admin = free_address()?;
    let tls = certificate.map(|_| free_address()).transpose()?;
    let tls_listen = match (certificate, tls) {
        (Some(certificate), Some(tls)) => format!(
            "tls_listen:\n  - {{address: \"{tls}\", certificate: {}, key: {}}}\n",
            certificate.certificate.display(),
            certificate.key.display()
        ),
        _ => String::new(),
    };
    let config = dir.join("keyfront.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {address}\nadmin_listen: {admin}\n{tls_listen}access_log: access.log\ndrain_timeout: 0s\ncache:\n  memory: {memory}MiB\n  disk: {{path: keyfront-cache, size: {DISK_BUDGET_GIB}GiB}}\n  slice_size: 1MiB\nkey_groups:\n  bench:\n    - id: {KEY_ID}\n      public_key: public_key.pem\norigins:\n  bench: {{type: s3, endpoint: \"http://{relay}\", bucket: {BUCKET}, path_style: true, access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET}}}\nbehaviors:\n  - path_pattern: \"*\"\n    origin: bench\n    trusted_key_groups: [bench]\n",
            relay = relay.address,
            memory = keyfront_memory_mib(),
        ),
    )?;
    let process = Process::start(
        Command::new(keyfront).args(["serve", "--config", &config.to_string_lossy(), "--threads", &threads.to_string()]),
        dir.join("keyfront.log"),
        address,
    )?;
    Ok(Server {
        name: "keyfront",
        address,
        tls,
        admin: Some(admin),
        process,
        signer: Some(Signer::new(KEY_ID, key, HashAlgorithm::Sha1)),
        relay: Some(relay),
    })
}

/// nginx as its documentation recommends for caching large objects from an
/// origin: proxy_cache with slice 1m, proxy_cache_lock, sendfile, keepalive
/// to the origin, one worker per core.
pub fn start_nginx(dir: &Path, origin: SocketAddr, threads: usize, certificate: Option<&Certificate>) -> Result<Server, Failure> {
    let relay = CountingRelay::start(origin)?;
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix)?;
    let address = free_address()?;
    // Workers would otherwise run as `nobody` and be refused the cache directory.
    let user = if Command::new("id").arg("-u").output()?.stdout.starts_with(b"0\n") {
        "user root;"
    } else {
        ""
    };
    let tls = certificate.map(|_| free_address()).transpose()?;
    let tls_listen = match (certificate, tls) {
        (Some(certificate), Some(tls)) => format!(
            "listen {tls} ssl http2 backlog=4096;\n        ssl_certificate {};\n        ssl_certificate_key {};",
            certificate.certificate.display(),
            certificate.key.display()
        ),
        _ => String::new(),
    };
    let config = prefix.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            r#"{user}
daemon off;
worker_processes {threads};
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    # Both servers log every request (keyfront in CloudFront's format), each
    # through a buffer flushed about once a second or 20 ms.
    access_log {prefix}/access.log combined buffer=64k flush=1s;
    # One descriptor per cached slice file otherwise: 200 streams of a 1 GiB
    # object queue a subrequest per slice and run out of descriptors.
    open_file_cache max=10000 inactive=60s;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:64m max_size={DISK_BUDGET_GIB}g inactive=1d use_temp_path=off;
    upstream origin {{
        server {relay};
        keepalive 64;
    }}
    server {{
        listen {address} backlog=4096;
        {tls_listen}
        location / {{
            slice 1m;
            proxy_cache bench;
            proxy_cache_key $uri$is_args$args$slice_range;
            proxy_set_header Range $slice_range;
            proxy_cache_valid 200 206 1d;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://origin/{BUCKET}/;
        }}
    }}
}}
"#,
            prefix = prefix.display(),
            relay = relay.address,
        ),
    )?;
    let process = Process::start(
        Command::new(nginx_binary())
            .args(["-p", &prefix.to_string_lossy(), "-e", &prefix.join("error.log").to_string_lossy()])
            .args(["-c", &config.to_string_lossy()]),
        dir.join("nginx.log"),
        address,
    )?;
    Ok(Server {
        name: "nginx",
        address,
        tls,
        admin: None,
        process,
        signer: None,
        relay: Some(relay),
    })
}

pub fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

pub fn start_ceiling(dir: &Path, threads: usize) -> Result<Server, Failure> {
    let address = free_address()?;
    let process = Process::start(
        Command::new(std::env::current_exe()?).args(["ceiling", "--listen", &address.to_string(), "--threads", &threads.to_string()]),
        dir.join("ceiling.log"),
        address,
    )?;
    Ok(Server {
        name: "ceiling",
        address,
        tls: None,
        admin: None,
        process,
        signer: None,
        relay: None,
    })
}
