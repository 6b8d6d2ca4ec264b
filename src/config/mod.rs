//! The edge's configuration: the YAML file (`file`), validated into plain
//! settings the rest of keyfront compiles from (keys, origins and behaviors
//! in `routing`). Every error names the field path and the value. Imports
//! nothing of keyfront's: every other module may read it.

mod file;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use file::{BehaviorFile, CacheFile, ConfigFile, CorsFile, FleetFile, MemberFile, OneOrMany, OriginFile};

/// A viewer's kernel send buffer unless configured: with the kernel's
/// doubling, 1 MiB in flight, enough for 80 Mbit/s at 100 ms of round trip,
/// where autotuning would let each slow viewer pin up to 4 MiB of kernel memory.
pub const DEFAULT_VIEWER_SEND_BUFFER: usize = 512 << 10;

/// Where `serve --upgrade` meets the old process unless the config says
/// otherwise (pingora's own default is shared by every pingora program).
pub const DEFAULT_UPGRADE_SOCKET: &str = "/tmp/keyfront-upgrade.sock";

/// The shortest fleet secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Whether `name` can name a node: 1-64 characters of `A-Z a-z 0-9 . _ -`
/// (it is sent in a header and written in the control log's keys).
pub fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A node's place in a fleet of keyfronts.
#[derive(Clone, Debug)]
pub struct FleetSettings {
    /// This node's name, unique in the fleet.
    pub node: String,
    /// The fleet's shared secret, at least `MIN_SECRET_BYTES` long.
    pub secret: Secret,
    /// The tier above and this node's site.
    pub tiers: Tiers,
    /// Whether misses go to the origin when no parent answers.
    pub go_direct: bool,
    /// The control log, if the fleet keeps one.
    pub control: Option<ControlSettings>,
}

/// The nodes a node asks before its origin.
#[derive(Clone, Debug, Default)]
pub struct Tiers {
    /// The tier above.
    pub parents: Vec<Member>,
    /// This node's address as its site peers know it (an address, or a
    /// name of it alone), and theirs.
    pub site: Option<(Member, Vec<Member>)>,
    /// How member names are resolved, when any is a name.
    pub dns: DnsSettings,
}

/// One entry of a fleet's member list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    Address(SocketAddr),
    /// Every A and AAAA record of `name`, at `port`.
    Dns {
        name: String,
        port: u16,
    },
    /// Every target (and port) of the SRV records of this name.
    Srv(String),
}

/// The resolver of member names.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// The DNS server asked; `None`: the system's.
    pub server: Option<SocketAddr>,
    /// How often names are resolved again.
    pub interval: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            server: None,
            interval: Duration::from_secs(5),
        }
    }
}

/// Whether `name` is a DNS name a member list may hold: labels of letters,
/// digits, `-` and `_` (SRV's `_service._proto`), dots between.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Sizes and limits of the cache.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub memory_bytes: u64,
    /// Directory and byte budget of the disk tier, if any.
    pub disk: Option<(PathBuf, u64)>,
    /// How long origin errors (404, 5xx) are remembered.
    pub error_ttl: Duration,
}

/// Where the fleet's control log lives and how often it is read.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// The name of the origin (in `Config::origins`) holding the log.
    pub origin: String,
    /// Bucket-relative key prefix, ending in `/`.
    pub prefix: String,
    pub poll: Duration,
}

/// A secret from the config (a token, an API secret key): `Debug` never
/// prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself, for the one place that checks or uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(..)")
    }
}

/// CloudFront's control-plane API, validated.
#[derive(Clone, Debug)]
pub struct ControlPlaneSettings {
    pub listen: SocketAddr,
    /// Where the state is kept; in memory only when `None`.
    pub state_dir: Option<PathBuf>,
    /// Access key id -> secret; empty with `accept_any_credentials`.
    pub credentials: HashMap<String, Secret>,
    pub accept_any_credentials: bool,
    /// The name of the origin (in `Config::origins`) whose bucket
    /// distributions' S3 origins are served from.
    pub s3_origin: String,
    /// Also listened on by the edge; each is one distribution's DomainName.
    pub distribution_addresses: Vec<SocketAddr>,
    pub domain_suffix: String,
    pub deploy_delay: Duration,
    /// The slice size of distributions' behaviors (`cache.slice_size`).
    pub slice_size: u64,
    /// Where custom origins may be; none refuses them.
    pub custom_origin_networks: Vec<IpNet>,
    /// `POST /moto-api/reset` deletes every resource (test suites).
    pub reset_endpoint: bool,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{file}: {field}: {message}")]
    Syntax { file: PathBuf, field: String, message: String },
    #[error("{file}: {field}: {value:?}: {reason}")]
    Invalid {
        file: PathBuf,
        field: String,
        value: String,
        reason: String,
    },
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from (reloads read it again).
    pub source: PathBuf,
    /// When the newest of that file and the key files it names was last
    /// modified (Unix milliseconds; 0 if unknown): the fleet's control log
    /// changes its key groups only with entries newer than this.
    pub modified_ms: u64,
    /// Key groups by name, each key's PEM text read from its file.
    pub key_groups: KeyGroupSettings,
    /// The S3 origins by name.
    pub origins: BTreeMap<String, OriginSettings>,
    pub listen: Vec<SocketAddr>,
    pub tls_listen: Vec<TlsListener>,
    pub admin_listen: Option<SocketAddr>,
    /// The bearer token for the admin listener's POST endpoints.
    pub admin_token: Option<Secret>,
    /// Where access-log lines go, if anywhere.
    pub access_log: Option<AccessLogTarget>,
    pub access_log_format: AccessLogFormat,
    /// The application log level, when the file sets one.
    pub log_level: Option<String>,
    /// `scheme://host[:port]` without a trailing slash, when configured.
    pub public_base_url: Option<String>,
    /// How long an idle keep-alive viewer connection stays open (HTTP/1.1's
    /// default in pingora is forever: idle connections would pile up).
    pub viewer_idle_timeout: Duration,
    /// How long a viewer may take to send a whole request header (pingora
    /// times each read, not the header: a slow-loris viewer would stay).
    pub viewer_header_timeout: Duration,
    /// How long one write to a viewer may wait for the viewer to read.
    pub viewer_send_timeout: Duration,
    /// `SO_SNDBUF` of each viewer connection, bytes (the kernel doubles it
    /// for its own bookkeeping); `None`: the kernel's autotuning.
    pub viewer_send_buffer: Option<usize>,
    /// The request header a trusted proxy sets to the viewer's country, for
    /// geo restrictions; `None`: no viewer's country is known.
    pub viewer_country_header: Option<http::HeaderName>,
    /// On SIGTERM (or Ctrl-C), how long in-flight responses may run on
    /// after the listeners close.
    pub drain_timeout: Duration,
    /// Where `keyfront serve --upgrade` receives the listening sockets of the
    /// process it replaces (pingora's graceful upgrade).
    pub upgrade_socket: PathBuf,
    /// This node's place in a fleet, if it is in one.
    pub fleet: Option<FleetSettings>,
    /// CloudFront's control-plane API, when it is on.
    pub control_plane: Option<ControlPlaneSettings>,
    /// The default distribution's behaviors, the `*` one last.
    pub behaviors: Vec<BehaviorSettings>,
    /// Embedded stores to start before serving.
    pub embedded_stores: Vec<EmbeddedStore>,
    pub cache: CacheSettings,
}

/// Key groups by name.
pub type KeyGroupSettings = BTreeMap<String, Vec<KeySettings>>;

/// One public key of a key group, as the file names it.
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// Its `Key-Pair-Id`, not empty.
    pub id: String,
    /// The PEM text of its file (parsed where keys are compiled).
    pub pem: String,
    /// The file as the config names it, for errors.
    pub file: String,
}

/// An S3 bucket as configured: where, which bucket, as whom, how patiently.
#[derive(Clone, Debug)]
pub struct OriginSettings {
    pub endpoint: Endpoint,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response to start (and between reads).
    pub first_byte_timeout: Duration,
}

impl OriginSettings {
    /// A bucket of an embedded store listening at `address`: path-style,
    /// plain HTTP, region us-east-1, 2 s to connect and 30 s to a first byte.
    pub fn embedded(address: SocketAddr, bucket: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            endpoint: Endpoint {
                tls: false,
                authority: address.to_string(),
            },
            bucket: bucket.to_owned(),
            region: "us-east-1".to_owned(),
            path_style: true,
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Secret(secret_access_key.to_owned()),
            session_token: None,
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(30),
        }
    }
}

/// An origin's `scheme://host[:port]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// `host` or `host:port`, no path.
    pub authority: String,
}

impl Endpoint {
    /// `http://host[:port]` or `https://host[:port]` (a trailing `/` allowed).
    pub fn parse(text: &str) -> Result<Endpoint, &'static str> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("expected http://host[:port] or https://host[:port]");
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err("expected scheme and host only, without a path");
        }
        Ok(Endpoint {
            tls,
            authority: authority.to_owned(),
        })
    }
}

/// One cache behavior as configured: which requests it takes and what it
/// does with them (compiled, with its origin and keys, by `routing`).
#[derive(Clone, Debug)]
pub struct BehaviorSettings {
    /// CloudFront path pattern (`*`, `?`), always starting with `/` (or `*`).
    pub path_pattern: String,
    /// Its origin's name in `Config::origins`.
    pub origin: String,
    /// The key groups whose signatures are accepted, by name (each in
    /// `Config::key_groups`); none: the behavior is public.
    pub trusted_key_groups: Vec<String>,
    pub allowed_methods: AllowedMethods,
    pub ttl: Ttl,
    pub forward_metadata_headers: bool,
    /// Slice size in bytes, between 64 KiB and 64 MiB.
    pub slice_size: u64,
    pub cors: Option<CorsPolicy>,
}

/// A behavior's CORS rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsPolicy {
    /// `None` allows any origin (`*`).
    pub allowed_origins: Option<Vec<String>>,
    /// For `Access-Control-Allow-Methods`, e.g. `GET, HEAD`.
    pub allowed_methods: String,
    /// For `Access-Control-Allow-Headers`, lower case.
    pub allowed_headers: Vec<String>,
    pub max_age: Duration,
    pub allow_credentials: bool,
}

/// A TLS listener: where, and the certificate chain and key it presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListener {
    pub address: SocketAddr,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// The access log's destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

/// How access-log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// CloudFront's standard log format: tab-separated, with header lines.
    #[default]
    Standard,
    /// One JSON object per line, the same fields by their `#Fields` names.
    Json,
}

/// CloudFront's three allowed-method sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowedMethods {
    GetHead,
    GetHeadOptions,
    All,
}

impl AllowedMethods {
    pub fn allows(self, method: &http::Method) -> bool {
        use http::Method;
        match self {
            Self::GetHead => matches!(*method, Method::GET | Method::HEAD),
            Self::GetHeadOptions => matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS),
            Self::All => matches!(
                *method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::POST | Method::PATCH | Method::DELETE
            ),
        }
    }
}

/// Minimum, default and maximum time to live, as CloudFront's behaviors have them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl {
    pub min: Duration,
    pub default: Duration,
    pub max: Duration,
}

/// An embedded S3-compatible store to run in-process.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Parses `512MiB`, `20GiB`, `64KiB`, `1MB` (decimal), `4096` (bytes).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    amount.checked_mul(factor)
}

const MIN_SLICE: u64 = 64 << 10;
const MAX_SLICE: u64 = 64 << 20;

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().ok()?;
    let seconds = match unit {
        "ms" => return Some(Duration::from_millis(amount)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    amount.checked_mul(seconds).map(Duration::from_secs)
}

/// The largest key, certificate or secret file read (a certificate chain of
/// a dozen certificates): a path that names a device or a huge file is
/// refused, not read forever.
const MAX_KEY_FILE_BYTES: u64 = 256 * 1024;

fn read_key_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_KEY_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_KEY_FILE_BYTES} bytes: not a key file"
        )));
    }
    Ok(text)
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text`, resolving relative paths against `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let file: ConfigFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = match e.path().to_string() {
                p if p == "." => "(top level)".to_owned(),
                p => p,
            };
            // serde_yaml starts its message with its own, shorter path; ours is complete.
            let message = e.inner().to_string();
            let message = match message.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') && field.starts_with(prefix) => rest.to_owned(),
                _ => message,
            };
            ConfigError::Syntax {
                file: path.to_owned(),
                field,
                message,
            }
        })?;
        Validator {
            file: path,
            base_dir: path.parent().unwrap_or(Path::new(".")),
            environment: |name: &str| std::env::var(name).ok(),
        }
        .validate(file)
    }
}

struct Validator<'a, E> {
    file: &'a Path,
    base_dir: &'a Path,
    environment: E,
}

impl<E: Fn(&str) -> Option<String>> Validator<'_, E> {
    fn invalid(&self, field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// As `duration`, within `seconds` (whole seconds at both ends).
    fn bounded_duration(
        &self,
        field: &str,
        text: Option<&str>,
        default_seconds: u64,
        seconds: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        let duration = self.duration(field.to_owned(), text, Duration::from_secs(default_seconds))?;
        let (low, high) = (*seconds.start(), *seconds.end());
        if (Duration::from_secs(low)..=Duration::from_secs(high)).contains(&duration) {
            return Ok(duration);
        }
        let reason = format!("expected a duration from {low}s to {high}s, e.g. {default_seconds}s");
        Err(self.invalid(field, text.unwrap_or_default(), reason))
    }

    /// A fleet member: an address, or a DNS or SRV name checked for form
    /// (it is resolved while serving).
    fn member(&self, field: &str, member: &MemberFile) -> Result<Member, ConfigError> {
        match member {
            MemberFile::Address(text) => self.address(field, text).map(Member::Address),
            MemberFile::Named(named) => match (&named.dns, &named.srv) {
                (Some(text), None) => {
                    let field = format!("{field}.dns");
                    let expected = "expected name:port, e.g. keyfront-shields.default.svc.cluster.local:8080";
                    let (name, port) = text.rsplit_once(':').ok_or_else(|| self.invalid(&field, text, expected))?;
                    match (valid_dns_name(name), port.parse::<u16>()) {
                        (true, Ok(port)) if port > 0 => Ok(Member::Dns {
                            name: name.to_owned(),
                            port,
                        }),
                        _ => Err(self.invalid(&field, text, expected)),
                    }
                }
                (None, Some(name)) if valid_dns_name(name) && name.starts_with('_') => Ok(Member::Srv(name.clone())),
                (None, Some(name)) => Err(self.invalid(
                    format!("{field}.srv"),
                    name,
                    "expected an SRV name, e.g. _http._tcp.keyfront-shields.default.svc.cluster.local",
                )),
                _ => Err(self.invalid(field, "", "expected an address, or exactly one of dns: and srv:")),
            },
        }
    }

    fn address(&self, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.parse()
            .map_err(|_| self.invalid(field, text, "expected host:port with an IP address, e.g. 127.0.0.1:8080"))
    }

    fn duration(&self, field: String, text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
        match text {
            None => Ok(default),
            Some(text) => {
                parse_duration(text).ok_or_else(|| self.invalid(field, text, "expected a duration such as 500ms, 30s, 5m, 1h, 1d"))
            }
        }
    }

    fn validate(&self, file: ConfigFile) -> Result<Config, ConfigError> {
        let listen_texts = match &file.listen {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        };
        if listen_texts.is_empty() {
            return Err(self.invalid("listen", "[]", "at least one address is needed"));
        }
        let listen = listen_texts
            .iter()
            .enumerate()
            .map(|(i, a)| self.address(&format!("listen[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let admin_listen = file.admin_listen.as_deref().map(|a| self.address("admin_listen", a)).transpose()?;
        let tls_listen = file
            .tls_listen
            .iter()
            .enumerate()
            .map(|(i, tls)| self.tls_listener(i, tls))
            .collect::<Result<_, _>>()?;
        let public_base_url = file.public_base_url.as_deref().map(|url| self.base_url(url)).transpose()?;
        let (key_groups, keys_modified_ms) = self.key_groups(&file)?;
        let mut embedded_stores = Vec::new();
        let mut origins = BTreeMap::new();
        for (name, origin) in &file.origins {
            let origin = self.origin(name, origin, &mut embedded_stores)?;
            origins.insert(name.clone(), origin);
        }
        let cache = self.cache(&file.cache)?;
        let default_slice = self.slice_size("cache.slice_size".into(), file.cache.slice_size.as_deref(), 1 << 20)?;
        let fleet = file.fleet.as_ref().map(|fleet| self.fleet(fleet, &origins, &listen)).transpose()?;
        let control_plane = self.control_plane(&file, &origins, default_slice)?;
        if control_plane.as_ref().is_some_and(|plane| plane.reset_endpoint) && fleet.as_ref().is_some_and(|fleet| fleet.control.is_some()) {
            // Through the control log, one reset would delete every
            // resource on every node of the fleet.
            return Err(self.invalid(
                "control_api.reset_endpoint",
                "true",
                "not allowed in a fleet with a control log (fleet.control)",
            ));
        }
        let behaviors = file
            .behaviors
            .iter()
            .enumerate()
            .map(|(i, b)| self.behavior(i, b, &origins, &key_groups, default_slice))
            .collect::<Result<Vec<_>, _>>()?;
        match behaviors.last() {
            None => {
                return Err(self.invalid("behaviors", "[]", "at least the default behavior (path_pattern: \"*\") is needed"));
            }
            Some(last) if last.path_pattern != "/*" && last.path_pattern != "*" => {
                let field = format!("behaviors[{}].path_pattern", behaviors.len() - 1);
                return Err(self.invalid(field, &last.path_pattern, "the last behavior is the default and must be \"*\""));
            }
            Some(_) => {}
        }
        if let Some(token) = &file.admin_token
            && token.len() < 16
        {
            // The value is a secret: its length is named, never the value.
            let shown = format!("({} characters, not shown)", token.len());
            return Err(self.invalid("admin_token", shown, "use at least 16 characters"));
        }
        Ok(Config {
            source: self.file.to_owned(),
            modified_ms: modified_ms(self.file).max(keys_modified_ms),
            key_groups,
            origins,
            listen,
            tls_listen,
            admin_listen,
            log_level: match file.log_level.as_deref() {
                None => None,
                Some(level @ ("error" | "warn" | "info" | "debug" | "trace")) => Some(level.to_owned()),
                Some(other) => return Err(self.invalid("log_level", other, "expected error, warn, info, debug or trace")),
            },
            admin_token: file.admin_token.clone().map(Secret),
            access_log: file.access_log.as_deref().map(|target| match target {
                "stdout" => AccessLogTarget::Stdout,
                path => AccessLogTarget::File(self.base_dir.join(path)),
            }),
            access_log_format: match file.access_log_format.as_deref() {
                None | Some("standard") => AccessLogFormat::Standard,
                Some("json") => AccessLogFormat::Json,
                Some(other) => return Err(self.invalid("access_log_format", other, "expected standard or json")),
            },
            public_base_url,
            viewer_idle_timeout: self.bounded_duration("viewer_idle_timeout", file.viewer_idle_timeout.as_deref(), 60, 1..=3600)?,
            viewer_header_timeout: self.bounded_duration("viewer_header_timeout", file.viewer_header_timeout.as_deref(), 10, 1..=300)?,
            viewer_send_timeout: self.bounded_duration("viewer_send_timeout", file.viewer_send_timeout.as_deref(), 30, 1..=3600)?,
            viewer_send_buffer: self.send_buffer(file.viewer_send_buffer.as_deref())?,
            viewer_country_header: match file.viewer_country_header.as_deref() {
                None => None,
                Some(name) => Some(
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| self.invalid("viewer_country_header", name, "expected an HTTP header name"))?,
                ),
            },
            drain_timeout: self.bounded_duration("drain_timeout", file.drain_timeout.as_deref(), 10, 0..=3600)?,
            upgrade_socket: match &file.upgrade_socket {
                Some(path) => self.base_dir.join(path),
                None => PathBuf::from(DEFAULT_UPGRADE_SOCKET),
            },
            fleet,
            control_plane,
            behaviors,
            embedded_stores,
            cache,
        })
    }

    fn size(&self, field: String, text: Option<&str>, default: u64) -> Result<u64, ConfigError> {
        match text {
            None => Ok(default),
            Some(text) => parse_size(text).ok_or_else(|| self.invalid(field, text, "expected a size such as 512MiB, 20GiB, 64KiB")),
        }
    }

    /// `auto` (the kernel's autotuning) or a size from 16KiB to 16MiB.
    fn send_buffer(&self, text: Option<&str>) -> Result<Option<usize>, ConfigError> {
        if text == Some("auto") {
            return Ok(None);
        }
        let size = self.size("viewer_send_buffer".to_owned(), text, DEFAULT_VIEWER_SEND_BUFFER as u64)?;
        match usize::try_from(size) {
            Ok(size) if (16 << 10..=16 << 20).contains(&size) => Ok(Some(size)),
            _ => Err(self.invalid(
                "viewer_send_buffer",
                text.unwrap_or_default(),
                "expected auto or a size from 16KiB to 16MiB",
            )),
        }
    }

    fn slice_size(&self, field: String, text: Option<&str>, default: u64) -> Result<u64, ConfigError> {
        let size = self.size(field.clone(), text, default)?;
        if !(MIN_SLICE..=MAX_SLICE).contains(&size) {
            return Err(self.invalid(field, text.unwrap_or_default(), "slices are between 64KiB and 64MiB"));
        }
        Ok(size)
    }

    fn cache(&self, cache: &CacheFile) -> Result<CacheSettings, ConfigError> {
        let disk = match &cache.disk {
            None => None,
            Some(disk) => Some((
                self.base_dir.join(&disk.path),
                self.size("cache.disk.size".into(), Some(&disk.size), 0)?,
            )),
        };
        Ok(CacheSettings {
            memory_bytes: self.size("cache.memory".into(), cache.memory.as_deref(), 512 << 20)?,
            disk,
            error_ttl: self.duration("cache.error_ttl".into(), cache.error_ttl.as_deref(), Duration::from_secs(10))?,
        })
    }

    fn fleet(
        &self,
        fleet: &FleetFile,
        origins: &BTreeMap<String, OriginSettings>,
        listen: &[SocketAddr],
    ) -> Result<FleetSettings, ConfigError> {
        if !valid_node_name(&fleet.node) {
            return Err(self.invalid("fleet.node", &fleet.node, "expected 1 to 64 of A-Z a-z 0-9 . _ -"));
        }
        let secret = read_key_file(&self.base_dir.join(&fleet.secret_file))
            .map_err(|e| self.invalid("fleet.secret_file", &fleet.secret_file, e.to_string()))?;
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_BYTES {
            let reason = format!("the secret must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)");
            return Err(self.invalid("fleet.secret_file", &fleet.secret_file, reason));
        }
        let secret = Secret(secret.to_owned());
        let members = |field: &str, list: &[MemberFile]| {
            list.iter()
                .enumerate()
                .map(|(i, member)| self.member(&format!("fleet.{field}[{i}]"), member))
                .collect::<Result<Vec<_>, _>>()
        };
        let parents = members("parents", &fleet.parents)?;
        let site_peers = members("site_peers", &fleet.site_peers)?;
        let dns = match &fleet.dns {
            None => DnsSettings::default(),
            Some(dns) => DnsSettings {
                server: dns
                    .server
                    .as_deref()
                    .map(|server| self.address("fleet.dns.server", server))
                    .transpose()?,
                interval: self.bounded_duration("fleet.dns.interval", dns.interval.as_deref(), 5, 1..=3600)?,
            },
        };
        let site = match (&fleet.site_address, site_peers.is_empty()) {
            (_, true) => None,
            (Some(member), false) => match self.member("fleet.site_address", member)? {
                Member::Srv(name) => {
                    let reason = "expected this node's address, or {dns: name:port} naming it alone";
                    return Err(self.invalid("fleet.site_address.srv", &name, reason));
                }
                own => Some((own, site_peers)),
            },
            (None, false) => match listen.first() {
                Some(address) if !address.ip().is_unspecified() => Some((Member::Address(*address), site_peers)),
                _ => {
                    let first = listen.first().map(ToString::to_string).unwrap_or_default();
                    let reason = "site peers need this node's own address: set fleet.site_address";
                    return Err(self.invalid("listen[0]", first, reason));
                }
            },
        };
        Ok(FleetSettings {
            node: fleet.node.clone(),
            secret,
            tiers: Tiers { parents, site, dns },
            go_direct: fleet.go_direct.unwrap_or(true),
            control: fleet.control.as_ref().map(|control| self.control(control, origins)).transpose()?,
        })
    }

    fn control(&self, control: &file::ControlFile, origins: &BTreeMap<String, OriginSettings>) -> Result<ControlSettings, ConfigError> {
        let origin = self.origin_named("fleet.control.origin", &control.origin, origins)?;
        let prefix = control.prefix.clone().unwrap_or_else(|| "_keyfront/control/".to_owned());
        // A key under it must be its own canonical spelling: the log's keys
        // are listed and fetched as they are written.
        let canonical = prefix.trim_end_matches('/').split('/').all(|segment| {
            !matches!(segment, "" | "." | "..") && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
        if !prefix.ends_with('/') || prefix.starts_with('/') || !canonical {
            return Err(self.invalid(
                "fleet.control.prefix",
                &prefix,
                "expected a key prefix such as _keyfront/control/ (no leading /, ending in /, letters, digits, - . _ ~)",
            ));
        }
        Ok(ControlSettings {
            origin,
            prefix,
            poll: self.bounded_duration("fleet.control.poll", control.poll.as_deref(), 2, 1..=3600)?,
        })
    }

    /// Checks the PEM files here, since pingora reads them only when the
    /// listener starts, where a mistake would be no clear error.
    /// The origin `field` names, or an error listing the known ones.
    fn origin_named(&self, field: &str, name: &str, origins: &BTreeMap<String, OriginSettings>) -> Result<String, ConfigError> {
        origins.get(name).map(|_| name.to_owned()).ok_or_else(|| {
            let known: Vec<&str> = origins.keys().map(String::as_str).collect();
            self.invalid(field, name, format!("no such origin (known: {})", known.join(", ")))
        })
    }

    fn control_plane(
        &self,
        file: &ConfigFile,
        origins: &BTreeMap<String, OriginSettings>,
        slice_size: u64,
    ) -> Result<Option<ControlPlaneSettings>, ConfigError> {
        let Some(listen) = &file.control_listen else {
            if file.control_api.is_some() || file.control_state.is_some() {
                return Err(self.invalid("control_listen", "", "control_api and control_state need control_listen"));
            }
            return Ok(None);
        };
        let listen = self.address("control_listen", listen)?;
        let api = file
            .control_api
            .as_ref()
            .ok_or_else(|| self.invalid("control_api", "", "control_listen needs control_api (at least s3_origin)"))?;
        let s3_origin = self.origin_named("control_api.s3_origin", &api.s3_origin, origins)?;
        if api.credentials.is_empty() && !api.accept_any_credentials {
            return Err(self.invalid(
                "control_api.credentials",
                "[]",
                "list at least one access key, or set accept_any_credentials: true",
            ));
        }
        if api.accept_any_credentials && !listen.ip().is_loopback() && !api.accept_any_credentials_off_loopback {
            // Whoever reaches the API creates distributions every node serves.
            return Err(self.invalid(
                "control_api.accept_any_credentials",
                "true",
                format!(
                    "accepted on loopback listeners only, and control_listen is {listen}; set accept_any_credentials_off_loopback: true as well to accept unsigned calls from the network"
                ),
            ));
        }
        let mut credentials = HashMap::new();
        for (i, key) in api.credentials.iter().enumerate() {
            if key.access_key_id.is_empty() || key.secret_access_key.len() < 8 {
                // The secret is never shown, only the key id.
                return Err(self.invalid(
                    format!("control_api.credentials[{i}]"),
                    &key.access_key_id,
                    "needs an access_key_id and a secret_access_key of 8 characters or more",
                ));
            }
            credentials.insert(key.access_key_id.clone(), Secret(key.secret_access_key.clone()));
        }
        let distribution_addresses = api
            .distribution_addresses
            .iter()
            .enumerate()
            .map(|(i, a)| self.address(&format!("control_api.distribution_addresses[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let domain_suffix = api.domain_suffix.clone().unwrap_or_else(|| "cloudfront.localhost".to_owned());
        if domain_suffix.is_empty() || !domain_suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return Err(self.invalid("control_api.domain_suffix", &domain_suffix, "expected a DNS name"));
        }
        let custom_origin_networks = api
            .custom_origin_networks
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<IpNet>().map_err(|_| {
                    self.invalid(
                        format!("control_api.custom_origin_networks[{i}]"),
                        text,
                        "expected a network in CIDR notation, such as 127.0.0.0/8 or 10.1.0.0/16",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ControlPlaneSettings {
            listen,
            custom_origin_networks,
            reset_endpoint: api.reset_endpoint,
            state_dir: file.control_state.as_ref().map(|dir| self.base_dir.join(dir)),
            credentials,
            accept_any_credentials: api.accept_any_credentials,
            s3_origin,
            distribution_addresses,
            domain_suffix,
            deploy_delay: self.bounded_duration("control_api.deploy_delay", api.deploy_delay.as_deref(), 0, 0..=3600)?,
            slice_size,
        }))
    }

    fn tls_listener(&self, index: usize, tls: &file::TlsListenFile) -> Result<TlsListener, ConfigError> {
        let field = |f: &str| format!("tls_listen[{index}].{f}");
        let address = self.address(&field("address"), &tls.address)?;
        let pem = |name: &str, value: &str, label: &str| {
            let path = self.base_dir.join(value);
            match read_key_file(&path) {
                Ok(text) if text.contains(label) => Ok(path),
                Ok(_) => Err(self.invalid(field(name), value, format!("no {label} block in the file"))),
                Err(e) => Err(self.invalid(field(name), value, e.to_string())),
            }
        };
        Ok(TlsListener {
            address,
            certificate: pem("certificate", &tls.certificate, "-----BEGIN CERTIFICATE-----")?,
            key: pem("key", &tls.key, "PRIVATE KEY-----")?,
        })
    }

    fn base_url(&self, url: &str) -> Result<String, ConfigError> {
        let trimmed = url.trim_end_matches('/');
        let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains('/') => Ok(trimmed.to_owned()),
            _ => Err(self.invalid(
                "public_base_url",
                url,
                "expected scheme and host only, e.g. https://cdn.example.com",
            )),
        }
    }

    /// The key groups, and when the newest key file was last modified.
    fn key_groups(&self, file: &ConfigFile) -> Result<(KeyGroupSettings, u64), ConfigError> {
        let mut groups = BTreeMap::new();
        let mut newest_ms = 0;
        for (name, keys) in &file.key_groups {
            let mut read = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                let field = format!("key_groups.{name}[{i}].public_key");
                let path = self.base_dir.join(&key.public_key);
                newest_ms = newest_ms.max(modified_ms(&path));
                let pem = read_key_file(&path).map_err(|e| self.invalid(&field, &key.public_key, e.to_string()))?;
                if key.id.is_empty() {
                    return Err(self.invalid(format!("key_groups.{name}[{i}].id"), "", "a key id is needed"));
                }
                read.push(KeySettings {
                    id: key.id.clone(),
                    pem,
                    file: key.public_key.clone(),
                });
            }
            groups.insert(name.clone(), read);
        }
        Ok((groups, newest_ms))
    }

    fn origin(&self, name: &str, origin: &OriginFile, embedded: &mut Vec<EmbeddedStore>) -> Result<OriginSettings, ConfigError> {
        let field = |f: &str| format!("origins.{name}.{f}");
        match origin {
            OriginFile::S3 {
                endpoint,
                bucket,
                region,
                path_style,
                access_key_id,
                secret_access_key,
                session_token,
                connect_timeout,
                first_byte_timeout,
            } => {
                let from_env = |value: &Option<String>, variable: &str| value.clone().or_else(|| (self.environment)(variable));
                let access_key_id = from_env(access_key_id, "AWS_ACCESS_KEY_ID")
                    .ok_or_else(|| self.invalid(field("access_key_id"), "", "not set here nor in AWS_ACCESS_KEY_ID"))?;
                let secret_access_key = from_env(secret_access_key, "AWS_SECRET_ACCESS_KEY")
                    .ok_or_else(|| self.invalid(field("secret_access_key"), "", "not set here nor in AWS_SECRET_ACCESS_KEY"))?;
                let session_token = from_env(session_token, "AWS_SESSION_TOKEN");
                Ok(OriginSettings {
                    endpoint: Endpoint::parse(endpoint).map_err(|reason| self.invalid(field("endpoint"), endpoint, reason))?,
                    bucket: bucket.clone(),
                    region: region.clone(),
                    path_style: *path_style,
                    access_key_id,
                    secret_access_key: Secret(secret_access_key),
                    session_token: session_token.map(Secret),
                    connect_timeout: self.duration(field("connect_timeout"), connect_timeout.as_deref(), Duration::from_secs(2))?,
                    first_byte_timeout: self.duration(
                        field("first_byte_timeout"),
                        first_byte_timeout.as_deref(),
                        Duration::from_secs(30),
                    )?,
                })
            }
            OriginFile::Embedded {
                root,
                listen,
                bucket,
                access_key_id,
                secret_access_key,
            } => {
                let listen = self.address(&field("listen"), listen)?;
                if bucket.is_empty() || bucket.contains('/') {
                    return Err(self.invalid(field("bucket"), bucket, "expected a bucket name"));
                }
                embedded.push(EmbeddedStore {
                    root: self.base_dir.join(root),
                    listen,
                    bucket: bucket.clone(),
                    access_key_id: access_key_id.clone(),
                    secret_access_key: Secret(secret_access_key.clone()),
                });
                Ok(OriginSettings::embedded(listen, bucket, access_key_id, secret_access_key))
            }
        }
    }

    fn behavior(
        &self,
        index: usize,
        behavior: &BehaviorFile,
        origins: &BTreeMap<String, OriginSettings>,
        key_groups: &KeyGroupSettings,
        default_slice: u64,
    ) -> Result<BehaviorSettings, ConfigError> {
        let field = |f: &str| format!("behaviors[{index}].{f}");
        let origin = self.origin_named(&field("origin"), &behavior.origin, origins)?;
        for (i, group) in behavior.trusted_key_groups.iter().enumerate() {
            if !key_groups.contains_key(group) {
                return Err(self.invalid(format!("behaviors[{index}].trusted_key_groups[{i}]"), group, "no such key group"));
            }
        }
        let mut methods: Vec<String> = behavior.allowed_methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        methods.sort();
        let allowed_methods = match methods.join(",").as_str() {
            "GET,HEAD" => AllowedMethods::GetHead,
            "GET,HEAD,OPTIONS" => AllowedMethods::GetHeadOptions,
            "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT" => AllowedMethods::All,
            _ => {
                return Err(self.invalid(
                    field("allowed_methods"),
                    behavior.allowed_methods.join(","),
                    "CloudFront's sets are [GET, HEAD], [GET, HEAD, OPTIONS] and [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]",
                ));
            }
        };
        let ttl = Ttl {
            min: self.duration(field("ttl.min"), behavior.ttl.min.as_deref(), Duration::ZERO)?,
            default: self.duration(field("ttl.default"), behavior.ttl.default.as_deref(), Duration::from_secs(86_400))?,
            max: self.duration(field("ttl.max"), behavior.ttl.max.as_deref(), Duration::from_secs(31_536_000))?,
        };
        if !(ttl.min <= ttl.default && ttl.default <= ttl.max) {
            return Err(self.invalid(field("ttl"), format!("{ttl:?}"), "expected min <= default <= max"));
        }
        let pattern = &behavior.path_pattern;
        if pattern.is_empty() {
            return Err(self.invalid(field("path_pattern"), pattern, "a path pattern is needed (\"*\" for the default)"));
        }
        Ok(BehaviorSettings {
            path_pattern: if pattern.starts_with('/') || pattern == "*" {
                pattern.clone()
            } else {
                format!("/{pattern}")
            },
            origin,
            trusted_key_groups: behavior.trusted_key_groups.clone(),
            allowed_methods,
            ttl,
            forward_metadata_headers: behavior.forward_metadata_headers,
            slice_size: self.slice_size(field("slice_size"), behavior.slice_size.as_deref(), default_slice)?,
            cors: behavior.cors.as_ref().map(|cors| self.cors(&field("cors"), cors)).transpose()?,
        })
    }

    fn cors(&self, field: &str, cors: &CorsFile) -> Result<CorsPolicy, ConfigError> {
        let any = cors.allowed_origins.iter().any(|o| o == "*");
        for (i, origin) in cors.allowed_origins.iter().enumerate() {
            let host_of = |scheme| {
                origin
                    .strip_prefix(scheme)
                    .filter(|host: &&str| !host.is_empty() && !host.contains('/'))
            };
            let well_formed = origin == "*" || host_of("https://").or_else(|| host_of("http://")).is_some();
            if !well_formed {
                return Err(self.invalid(
                    format!("{field}.allowed_origins[{i}]"),
                    origin,
                    "expected * or scheme://host[:port], e.g. https://app.example.com",
                ));
            }
        }
        if cors.allowed_origins.is_empty() {
            return Err(self.invalid(format!("{field}.allowed_origins"), "[]", "name at least one origin, or *"));
        }
        if any && cors.allow_credentials {
            return Err(self.invalid(
                format!("{field}.allow_credentials"),
                "true",
                "browsers refuse credentials with the * origin: list the origins",
            ));
        }
        let methods = cors.allowed_methods.clone().unwrap_or_else(|| vec!["GET".into(), "HEAD".into()]);
        let headers = cors.allowed_headers.clone().unwrap_or_else(|| {
            ["range", "if-range", "if-none-match", "if-modified-since"]
                .map(String::from)
                .to_vec()
        });
        Ok(CorsPolicy {
            allowed_origins: (!any).then(|| cors.allowed_origins.clone()),
            allowed_methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect::<Vec<_>>().join(", "),
            allowed_headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            max_age: self.duration(format!("{field}.max_age"), cors.max_age.as_deref(), Duration::from_secs(600))?,
            allow_credentials: cors.allow_credentials,
        })
    }
}

#[cfg(test)]
mod tests;

/// When `path` was last modified (Unix milliseconds); 0 if that cannot be read.
fn modified_ms(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_millis() as u64)
}
