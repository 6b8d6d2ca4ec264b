//! Origins: where objects live, how requests to them are addressed, and,
//! for S3 buckets, their SigV4 signatures (aws-sigv4, never hand-written).
//! A custom origin (an HTTP server of the user's) is addressed like a
//! virtual-hosted bucket and never signed.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;

use ipnet::IpNet;

use crate::config::OriginSettings;

mod fetch;
mod list;
mod pool;
mod upload;
pub use fetch::{FetchError, OriginClient, OriginResponse, OriginStats, OriginUpload};
pub use list::{KeyPage, SmallObject};
pub use upload::put_object;

/// Access key, secret and optional session token. `Debug` shows the key id only.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, secret redacted)", self.access_key_id)
    }
}

/// An S3 bucket behind an endpoint, or a custom origin (an HTTP server).
#[derive(Clone, Debug)]
pub struct Origin {
    /// `host:port` to connect to.
    pub address: String,
    /// Whether the connection uses TLS.
    pub tls: bool,
    /// The `Host` header (and TLS server name): the endpoint's host, or
    /// `bucket.host` for virtual-hosted addressing.
    pub host: String,
    pub bucket: String,
    /// A key prefix every object path gets (a distribution's `OriginPath`,
    /// canonical, without a trailing `/`); empty for none.
    pub key_prefix: String,
    pub region: String,
    pub path_style: bool,
    /// What signs its requests: `None` for a custom origin, which must
    /// never see a signature made with the node's S3 credentials.
    credentials: Option<Credentials>,
    /// Headers added to every request (a distribution's `CustomHeaders`).
    pub custom_headers: Vec<(String, String)>,
    /// The networks its host may resolve to (`None`: any). Checked on every
    /// connection, after resolution, so a name that changes its address
    /// cannot lead the node anywhere else.
    pub reachable: Option<Arc<[IpNet]>>,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response to start (and between reads).
    pub first_byte_timeout: Duration,
    /// How long an idle connection to it is kept for the next request: a
    /// custom origin's `OriginKeepaliveTimeout` (CloudFront's 5 s unless
    /// set); a bucket's connections, `S3_KEEPALIVE`.
    pub keepalive_timeout: Duration,
}

/// How long an idle connection to a bucket is kept: S3 closes its own after
/// about 20 s of quiet, and a closed one is found so when taken (`pool`).
pub const S3_KEEPALIVE: Duration = Duration::from_secs(60);

/// A custom origin's keep-alive when its config names none (CloudFront's).
pub const CUSTOM_KEEPALIVE: Duration = Duration::from_secs(5);

/// An origin group's second member: asked for a GET or HEAD when the first
/// cannot be reached or answers one of `statuses` (`FailoverCriteria`).
#[derive(Debug)]
pub struct Failover {
    /// Its name, for metrics.
    pub origin_name: Arc<str>,
    pub origin: Arc<Origin>,
    pub statuses: Vec<u16>,
}

impl Failover {
    /// Where the second origin keeps the object of `request_path` (a
    /// canonical path, with the key's query after `?` if any): the path
    /// mapped there, the query kept.
    pub fn path_for(&self, request_path: &str) -> Option<String> {
        let (canonical, query) = request_path.split_once('?').unwrap_or((request_path, ""));
        let mut path = self.origin.object_path(canonical)?;
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        Some(path)
    }
}

/// Why a request to the origin could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("signing the origin request: {0}")]
pub struct SignError(String);

impl Origin {
    /// The bucket `settings` describe (checked by the config already).
    pub fn from_settings(settings: &OriginSettings) -> Self {
        let credentials = Credentials {
            access_key_id: settings.access_key_id.clone(),
            secret_access_key: settings.secret_access_key.expose().to_owned(),
            session_token: settings.session_token.as_ref().map(|token| token.expose().to_owned()),
        };
        let (tls, authority, bucket) = (settings.endpoint.tls, settings.endpoint.authority.as_str(), &settings.bucket);
        let path_style = settings.path_style;
        let has_port = authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) && !authority.ends_with(']');
        let address = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        };
        let host = if path_style {
            authority.to_owned()
        } else {
            format!("{bucket}.{authority}")
        };
        let address = if path_style { address } else { format!("{bucket}.{address}") };
        Self {
            address,
            tls,
            host,
            bucket: bucket.to_owned(),
            key_prefix: String::new(),
            region: settings.region.clone(),
            path_style,
            credentials: Some(credentials),
            custom_headers: Vec::new(),
            reachable: None,
            connect_timeout: settings.connect_timeout,
            first_byte_timeout: settings.first_byte_timeout,
            keepalive_timeout: S3_KEEPALIVE,
        }
    }

    /// A bucket of an embedded store listening at `address`
    /// (`OriginSettings::embedded`).
    pub fn embedded(address: std::net::SocketAddr, bucket: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        Self::from_settings(&OriginSettings::embedded(address, bucket, access_key_id, secret_access_key))
    }

    /// An HTTP server at `host` (a DNS name or an IP address) and `port`,
    /// every path under `key_prefix` (canonical, `/dir` or empty): asked
    /// unsigned, with `Host: host`, as CloudFront asks a custom origin.
    pub fn custom(host: &str, port: u16, tls: bool, key_prefix: &str, reachable: Arc<[IpNet]>) -> Self {
        let bracketed = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let default_port = if tls { 443 } else { 80 };
        Self {
            address: format!("{bracketed}:{port}"),
            tls,
            host: if port == default_port {
                bracketed
            } else {
                format!("{bracketed}:{port}")
            },
            bucket: String::new(),
            key_prefix: key_prefix.trim_end_matches('/').to_owned(),
            region: String::new(),
            path_style: false,
            credentials: None,
            custom_headers: Vec::new(),
            reachable: Some(reachable),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            keepalive_timeout: CUSTOM_KEEPALIVE,
        }
    }

    /// The same endpoint, credentials and timeouts for `bucket`, every key
    /// under `key_prefix` (canonical, `/dir` or empty).
    pub fn for_bucket(&self, bucket: &str, key_prefix: &str) -> Origin {
        let rebased = |name: &str| match name.strip_prefix(&format!("{}.", self.bucket)) {
            Some(endpoint) if !self.path_style => format!("{bucket}.{endpoint}"),
            _ => name.to_owned(),
        };
        Origin {
            address: rebased(&self.address),
            host: rebased(&self.host),
            bucket: bucket.to_owned(),
            key_prefix: key_prefix.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The host name for TLS SNI: `host` without its port.
    pub fn server_name(&self) -> &str {
        let name = match self.host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            _ => self.host.as_str(),
        };
        name.trim_start_matches('[').trim_end_matches(']')
    }

    /// The origin path for a canonical viewer path
    /// ([`crate::request::canonical_path`]): the object key is the path
    /// without its leading `/`, and the canonical spelling is S3's own
    /// encoding of it, so the bytes sent are the bytes signed. `None` for an
    /// empty key, which would address the bucket itself.
    pub fn object_path(&self, canonical_path: &str) -> Option<String> {
        Some(self.origin_path_for(canonical_path)).filter(|path| path.len() > self.bucket_prefix_len() + 1)
    }

    /// The origin path of the object a viewer would name `key` (a path such
    /// as `/videos/a.mp4`, in any spelling that has a canonical form).
    pub fn key_path(&self, key: &str) -> Option<String> {
        crate::request::canonical_path(key)
            .ok()
            .and_then(|canonical| self.object_path(&canonical))
    }

    /// The origin path prefix covering every key that starts like the
    /// canonical `viewer_prefix` (for invalidating `/videos/*`); `/` covers the bucket.
    pub fn origin_path_for(&self, viewer_prefix: &str) -> String {
        let key = viewer_prefix.strip_prefix('/').unwrap_or(viewer_prefix);
        // Pushed, not `format!`ed: every request, hits included, makes one.
        let mut path = String::with_capacity(self.bucket.len() + self.key_prefix.len() + key.len() + 2);
        if self.path_style {
            path.push('/');
            path.push_str(&self.bucket);
        }
        path.push_str(&self.key_prefix);
        path.push('/');
        path.push_str(key);
        path
    }

    /// The length of `/bucket` (path-style) and the key prefix in origin paths.
    fn bucket_prefix_len(&self) -> usize {
        self.key_prefix.len() + if self.path_style { self.bucket.len() + 1 } else { 0 }
    }

    /// Whether requests to it are signed with the node's credentials (an S3
    /// origin): its refusals are of keyfront, not of the viewer.
    pub fn is_signed(&self) -> bool {
        self.credentials.is_some()
    }

    /// Whether a viewer's header `name` (lower case) that a behavior's
    /// policies send may reach this origin: an origin signed with the
    /// node's credentials (an S3 bucket) never gets the viewer's
    /// `Authorization` or `Host` (its requests are signed for its own host,
    /// and S3 finds the bucket by it), and an origin custom header is the
    /// origin's own.
    pub fn takes_viewer_header(&self, name: &str) -> bool {
        let signed_by_the_node = self.is_signed() && matches!(name, "authorization" | "host");
        let own = self.custom_headers.iter().any(|(custom, _)| custom.as_str() == name);
        !signed_by_the_node && !own
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`,
    /// `x-amz-security-token`) for a request with an unsigned payload. `headers`
    /// are the other headers to sign; `host` is always signed. None for a
    /// custom origin.
    pub fn sign(&self, method: &str, path: &str, headers: &[(&str, &str)], time: SystemTime) -> Result<Vec<(String, String)>, SignError> {
        let Some(credentials) = &self.credentials else {
            return Ok(Vec::new());
        };
        let mut settings = SigningSettings::default();
        // S3 paths are encoded once and never normalised (unlike other AWS services).
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let scheme = if self.tls { "https" } else { "http" };
        let request = SigV4Request {
            credentials,
            region: &self.region,
            service: "s3",
            settings,
            method,
            url: &format!("{scheme}://{}{path}", self.host),
            headers: &std::iter::once(("host", self.host.as_str()))
                .chain(headers.iter().copied())
                .collect::<Vec<_>>(),
            body: SignableBody::UnsignedPayload,
        };
        request.sign(time)
    }
}

/// A request to sign with SigV4, for any AWS service.
pub struct SigV4Request<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    pub service: &'a str,
    pub settings: SigningSettings,
    pub method: &'a str,
    pub url: &'a str,
    /// The headers to sign, `host` included.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: SignableBody<'a>,
}

impl SigV4Request<'_> {
    /// The headers that sign it at `time` (`authorization`, `x-amz-date`, ...).
    pub fn sign(self, time: SystemTime) -> Result<Vec<(String, String)>, SignError> {
        let failed = |error: &dyn fmt::Display| SignError(error.to_string());
        let identity = aws_credential_types::Credentials::new(
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            self.credentials.session_token.clone(),
            None,
            "keyfront",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(time)
            .settings(self.settings)
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let signable = SignableRequest::new(self.method, self.url, self.headers.iter().copied(), self.body).map_err(|e| failed(&e))?;
        let (instructions, _signature) = sign(signable, &params).map_err(|e| failed(&e))?.into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

/// The pingora peer for `origin`, with its connect and first-byte timeouts.
/// Host names are resolved here, asynchronously, so that DNS changes (S3
/// rotates addresses) are followed.
pub async fn peer(origin: &Origin) -> pingora::Result<Box<pingora::upstreams::peer::HttpPeer>> {
    use pingora::prelude::*;
    let address = match origin.address.parse::<std::net::SocketAddr>() {
        Ok(address) => address,
        Err(_) => tokio::net::lookup_host(&origin.address)
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, format!("cannot resolve origin {}", origin.address)))?,
    };
    if let Some(networks) = &origin.reachable
        && !networks.iter().any(|network| network.contains(&address.ip()))
    {
        return Err(Error::explain(
            ErrorType::ConnectNoRoute,
            format!(
                "origin {} resolves to {}, outside the networks custom origins may reach",
                origin.address,
                address.ip()
            ),
        ));
    }
    let mut peer = HttpPeer::new(address, origin.tls, origin.server_name().to_owned());
    peer.options.connection_timeout = Some(origin.connect_timeout);
    peer.options.read_timeout = Some(origin.first_byte_timeout);
    peer.options.idle_timeout = Some(origin.keepalive_timeout);
    Ok(Box::new(peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, Secret};

    fn origin(endpoint: &str, path_style: bool) -> Origin {
        Origin::from_settings(&OriginSettings {
            endpoint: Endpoint::parse(endpoint).unwrap(),
            bucket: "media".into(),
            region: "eu-west-1".into(),
            path_style,
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: Some(Secret("token".into())),
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn an_origin_signed_by_the_node_never_takes_the_viewers_authorization_or_host() {
        let s3 = origin("https://s3.eu-west-1.amazonaws.com", false);
        assert!(s3.is_signed());
        assert!(!s3.takes_viewer_header("authorization"));
        assert!(
            !s3.takes_viewer_header("host"),
            "S3 finds the bucket, and checks the signature, by its own host"
        );
        assert!(s3.takes_viewer_header("accept-language"));
        let mut api = Origin::custom("127.0.0.1", 8080, false, "", Arc::from(Vec::new()));
        api.custom_headers.push(("x-origin-verify".into(), "secret".into()));
        assert!(!api.is_signed());
        assert!(
            api.takes_viewer_header("authorization") && api.takes_viewer_header("host"),
            "a custom origin gets them when a policy sends them"
        );
        assert!(
            !api.takes_viewer_header("x-origin-verify"),
            "the origin's own header is never the viewer's"
        );
    }

    #[test]
    fn addressing() {
        let path = origin("http://127.0.0.1:9000", true);
        assert_eq!(
            (path.address.as_str(), path.host.as_str(), path.tls),
            ("127.0.0.1:9000", "127.0.0.1:9000", false)
        );
        let virtual_hosted = origin("https://s3.eu-west-1.amazonaws.com", false);
        assert_eq!(virtual_hosted.address, "media.s3.eu-west-1.amazonaws.com:443");
        assert_eq!(virtual_hosted.server_name(), "media.s3.eu-west-1.amazonaws.com");
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x/path").is_err());
        assert_eq!(Endpoint::parse("https://x:9000/").unwrap().authority, "x:9000");
    }

    #[test]
    fn canonical_paths_are_s3_paths() {
        let path = origin("http://127.0.0.1:9000", true);
        assert_eq!(path.object_path("/docs/a%20b%2Bc.pdf").unwrap(), "/media/docs/a%20b%2Bc.pdf");
        assert_eq!(path.object_path("/caf%C3%A9/x~y").unwrap(), "/media/caf%C3%A9/x~y");
        assert_eq!(path.object_path("/"), None, "the bucket itself is not an object");
        assert_eq!(origin("https://s3.amazonaws.com", false).object_path("/a").unwrap(), "/a");
    }

    #[test]
    fn signature_shape() {
        let origin = origin("http://127.0.0.1:9000", true);
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = origin.sign("GET", "/media/a.mp4", &[("range", "bytes=0-99")], time).unwrap();
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-date"), Some("20231114T221320Z"));
        assert_eq!(get("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
        assert_eq!(get("x-amz-security-token"), Some("token"));
        let authorization = get("authorization").unwrap();
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/s3/aws4_request, SignedHeaders="));
        assert!(
            authorization.contains("host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token"),
            "{authorization}"
        );
        assert!(!format!("{origin:?}").contains("wJalr"), "secrets stay out of Debug output");
    }
}
