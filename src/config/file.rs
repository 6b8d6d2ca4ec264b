//! The YAML file as written: serde structs, unknown fields refused.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Viewer listeners, `host:port`; one address or a list.
    pub listen: OneOrMany,
    /// TLS listeners, HTTP/2 offered through ALPN.
    #[serde(default)]
    pub tls_listen: Vec<TlsListenFile>,
    /// The admin listener (health, invalidations), `host:port`.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// Application log level (`error`, `warn`, `info`, `debug`, `trace`);
    /// `RUST_LOG` wins when set.
    #[serde(default)]
    pub log_level: Option<String>,
    /// Where access-log lines go: `stdout`, or a file path.
    #[serde(default)]
    pub access_log: Option<String>,
    /// `standard` (CloudFront's format, the default) or `json` (one object a line).
    #[serde(default)]
    pub access_log_format: Option<String>,
    /// The bearer token the admin listener's POST endpoints require.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// `scheme://host[:port]` used to rebuild signed URLs, when keyfront sits
    /// behind a TLS terminator or is reached by another name.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// How long an idle keep-alive viewer connection is kept open (default 60s).
    #[serde(default)]
    pub viewer_idle_timeout: Option<String>,
    /// How long a viewer may take to send a request header (default 10s).
    #[serde(default)]
    pub viewer_header_timeout: Option<String>,
    /// How long one write may wait for a viewer that reads nothing (default 30s).
    #[serde(default)]
    pub viewer_send_timeout: Option<String>,
    /// The kernel send buffer of each viewer connection (default 512KiB).
    #[serde(default)]
    pub viewer_send_buffer: Option<String>,
    /// The request header holding the viewer's country (ISO 3166-1 alpha-2),
    /// set by a trusted proxy in front, read by distributions' geo
    /// restrictions; unset: every viewer's country is unknown.
    #[serde(default)]
    pub viewer_country_header: Option<String>,
    /// On SIGTERM, how long in-flight responses may run on (default 10s).
    #[serde(default)]
    pub drain_timeout: Option<String>,
    /// The Unix socket of the graceful upgrade (default /tmp/keyfront-upgrade.sock).
    #[serde(default)]
    pub upgrade_socket: Option<String>,
    /// This node's place in a fleet (none: a node on its own).
    #[serde(default)]
    pub fleet: Option<FleetFile>,
    /// CloudFront's control-plane API, `host:port`; off unless set.
    #[serde(default)]
    pub control_listen: Option<String>,
    /// The directory keeping the control plane's state across restarts;
    /// in memory only when unset.
    #[serde(default)]
    pub control_state: Option<String>,
    /// Who may call the control plane and how its distributions are served.
    #[serde(default)]
    pub control_api: Option<ControlApiFile>,
    /// Key group name -> its public keys.
    #[serde(default)]
    pub key_groups: BTreeMap<String, Vec<KeyFile>>,
    /// Origin name -> where misses are fetched from.
    pub origins: BTreeMap<String, OriginFile>,
    /// Cache behaviors, matched first to last; the last must be `*`.
    pub behaviors: Vec<BehaviorFile>,
    /// Cache sizes and tiers.
    #[serde(default)]
    pub cache: CacheFile,
}

/// A fleet member as the file names it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MemberFile {
    /// `ip:port`.
    Address(String),
    Named(NamedMemberFile),
}

/// Members a DNS name gives: every A/AAAA record of `dns` (`name:port`),
/// or every target of the SRV records of `srv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedMemberFile {
    #[serde(default)]
    pub dns: Option<String>,
    #[serde(default)]
    pub srv: Option<String>,
}

/// The resolver of a fleet's member names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// `ip:port` of the DNS server asked (default: the system's, from
    /// /etc/resolv.conf).
    #[serde(default)]
    pub server: Option<String>,
    /// How often names are resolved again (default 5s); a record's TTL
    /// is kept within it.
    #[serde(default)]
    pub interval: Option<String>,
}

/// This node's place in a fleet of keyfronts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// This node's unique name.
    pub node: String,
    /// A file holding the fleet's shared secret (32 bytes or more).
    pub secret_file: String,
    /// The tier above: `ip:port`, `{dns: name:port}` or `{srv: name}`
    /// each; empty: misses go to the origin.
    #[serde(default)]
    pub parents: Vec<MemberFile>,
    /// The other nodes of this site (their listeners), as `parents`.
    #[serde(default)]
    pub site_peers: Vec<MemberFile>,
    /// How names among `parents` and `site_peers` are resolved.
    #[serde(default)]
    pub dns: Option<DnsFile>,
    /// This node's address as its site peers list it (default: the first
    /// `listen` address).
    #[serde(default)]
    pub site_address: Option<MemberFile>,
    /// Whether misses go to the origin when no parent answers (default true).
    #[serde(default)]
    pub go_direct: Option<bool>,
    /// The control log every node of the fleet reads.
    #[serde(default)]
    pub control: Option<ControlFile>,
}

/// The control plane's credentials and serving choices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlApiFile {
    /// The origin whose endpoint, credentials and timeouts serve every
    /// distribution's S3 origins (each with its own bucket).
    pub s3_origin: String,
    /// Access keys whose SigV4 signatures the API accepts.
    #[serde(default)]
    pub credentials: Vec<ApiKeyFile>,
    /// Accept every request, signed or not (throwaway test setups only);
    /// refused unless `control_listen` is a loopback address or
    /// `accept_any_credentials_off_loopback` is set too.
    #[serde(default)]
    pub accept_any_credentials: bool,
    /// Allow `accept_any_credentials` on an address other hosts reach.
    #[serde(default)]
    pub accept_any_credentials_off_loopback: bool,
    /// Addresses the edge also listens on, each handed to one distribution
    /// as its DomainName (`ip:port`), so a test reaches it without DNS.
    #[serde(default)]
    pub distribution_addresses: Vec<String>,
    /// DomainName suffix once those are taken (default `cloudfront.localhost`).
    #[serde(default)]
    pub domain_suffix: Option<String>,
    /// How long reads say `InProgress` after a change (default 0s).
    #[serde(default)]
    pub deploy_delay: Option<String>,
    /// The networks (CIDR) custom origins may resolve to; none (the
    /// default) refuses custom origins.
    #[serde(default)]
    pub custom_origin_networks: Vec<String>,
    /// Answer `POST /moto-api/reset` (moto's server mode, between tests) by
    /// deleting every resource; refused in a fleet with a control log.
    #[serde(default)]
    pub reset_endpoint: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyFile {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Where the fleet's control log lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlFile {
    /// The origin (bucket) holding the log.
    pub origin: String,
    /// Key prefix of the log's entries (default `_keyfront/control/`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// How often each node reads it (default 2s).
    #[serde(default)]
    pub poll: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// Memory tier budget, e.g. `512MiB`.
    pub memory: Option<String>,
    /// Disk tier: a directory and a byte budget.
    pub disk: Option<DiskFile>,
    /// Default slice size, e.g. `1MiB`.
    pub slice_size: Option<String>,
    /// How long origin errors (404, 5xx) are remembered.
    pub error_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFile {
    pub path: String,
    pub size: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenFile {
    pub address: String,
    /// PEM certificate chain, relative to the config file.
    pub certificate: String,
    /// PEM private key, relative to the config file.
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub id: String,
    /// A PEM path, relative to the config file.
    pub public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum OriginFile {
    /// An S3-compatible bucket (AWS S3, MinIO, ...).
    S3 {
        endpoint: String,
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
        #[serde(default)]
        path_style: bool,
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<String>,
        #[serde(default)]
        session_token: Option<String>,
        #[serde(default)]
        connect_timeout: Option<String>,
        #[serde(default)]
        first_byte_timeout: Option<String>,
    },
    /// keyfront's own S3-compatible store, started in-process.
    Embedded {
        /// The directory holding the buckets, relative to the config file.
        root: String,
        /// Where the store listens, `host:port`.
        listen: String,
        bucket: String,
        access_key_id: String,
        secret_access_key: String,
    },
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorFile {
    pub path_pattern: String,
    pub origin: String,
    #[serde(default)]
    pub trusted_key_groups: Vec<String>,
    #[serde(default = "default_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub ttl: TtlFile,
    /// Pass the origin's `x-amz-meta-*` headers on to viewers.
    #[serde(default)]
    pub forward_metadata_headers: bool,
    /// This behavior's slice size, overriding `cache.slice_size`.
    #[serde(default)]
    pub slice_size: Option<String>,
    /// Cross-origin access for browser players, as a CloudFront response headers policy.
    #[serde(default)]
    pub cors: Option<CorsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// `https://app.example.com` origins, or `*`.
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allowed_methods: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_headers: Option<Vec<String>>,
    #[serde(default)]
    pub max_age: Option<String>,
    /// Lets browsers send cookies (signed cookies) with cross-origin requests.
    #[serde(default)]
    pub allow_credentials: bool,
}

fn default_methods() -> Vec<String> {
    vec!["GET".to_owned(), "HEAD".to_owned()]
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlFile {
    pub min: Option<String>,
    pub default: Option<String>,
    pub max: Option<String>,
}
