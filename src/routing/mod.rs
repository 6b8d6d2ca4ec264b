//! The table requests are served from: for each Host a distribution made
//! by the control plane, and for every other Host the default distribution,
//! the config file's behaviors (with their origins, TTLs and trusted keys,
//! key groups adopted from the fleet's control log laid over the file's).
//! Both sources compile into distributions of this one table; the edge
//! serves only from it and never asks which source a distribution came from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod file;

pub use file::FileTable;

use crate::auth::{PublicKey, TrustedKeys, wildcard_matches};
use crate::config::{AllowedMethods, CorsPolicy, Ttl};
use crate::functions::FunctionCode;
use crate::origin::{Failover, Origin};
use crate::request::RequestValues;

/// Key groups by name, each a list of `(key id, public key)`.
pub type KeyGroups = HashMap<String, Vec<(String, PublicKey)>>;

/// One cache behavior, compiled: which requests it takes, where they go,
/// whose signatures they need, and what the cache does with them.
#[derive(Clone, Debug)]
pub struct Behavior {
    /// CloudFront path pattern (`*`, `?`), always starting with `/`, in
    /// canonical spelling ([`crate::request::canonical_pattern`]).
    pub path_pattern: String,
    pub origin_name: Arc<str>,
    pub origin: Arc<Origin>,
    /// Keys whose signatures are accepted; empty means the behavior is
    /// public (unless `trusted_key_groups` names any: then nothing verifies).
    pub trusted_keys: TrustedKeys,
    /// The key groups `trusted_keys` was built from, by name.
    pub trusted_key_groups: Vec<String>,
    pub allowed_methods: AllowedMethods,
    pub ttl: Ttl,
    pub forward_metadata_headers: bool,
    /// Slice size in bytes, between 64 KiB and 64 MiB.
    pub slice_size: u64,
    /// The query parameters, headers and cookies in the cache key and sent
    /// to the origin (its cache and origin request policies).
    pub values: RequestValues,
    /// What a viewer's plain-HTTP request gets (`ViewerProtocolPolicy`).
    pub viewer_protocol: ViewerProtocol,
    pub cors: Option<CorsPolicy>,
    /// Headers laid over every answer of the behavior (a response headers
    /// policy's), besides CORS.
    pub response_headers: Option<Arc<HeaderRules>>,
    /// CloudFront Functions run on its viewer requests and responses.
    pub functions: ViewerFunctions,
    /// The second origin of an origin group, asked when `origin` fails.
    pub failover: Option<Arc<Failover>>,
    /// How long an origin's error status is remembered, by status (its
    /// distribution's `ErrorCachingMinTTL`s); any other: the cache's
    /// `error_ttl`.
    pub error_caching: Arc<[(u16, std::time::Duration)]>,
}

/// A behavior's CloudFront Functions (their LIVE stage).
#[derive(Clone, Debug, Default)]
pub struct ViewerFunctions {
    pub request: Option<Arc<FunctionCode>>,
    pub response: Option<Arc<FunctionCode>>,
}

impl ViewerFunctions {
    pub fn is_empty(&self) -> bool {
        self.request.is_none() && self.response.is_none()
    }
}

/// What a behavior does with a viewer's request over plain HTTP, on a node
/// that has a TLS listener (CloudFront's `ViewerProtocolPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewerProtocol {
    #[default]
    AllowAll,
    /// 301 to the same URL over HTTPS.
    RedirectToHttps,
    /// 403.
    HttpsOnly,
}

/// Headers to set on an answer, each with whether it replaces the one the
/// origin sent (or is added only when the origin sent none), and headers
/// to remove from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderRules {
    pub set: Vec<(http::HeaderName, http::HeaderValue, bool)>,
    pub remove: Vec<http::HeaderName>,
    /// The share of answers (per million) that carry the edge's
    /// `Server-Timing` metrics (`ServerTimingHeadersConfig`); 0: none.
    pub server_timing_per_million: u32,
}

impl Behavior {
    /// Whether requests for `path` fall under this behavior.
    pub fn matches(&self, path: &str) -> bool {
        wildcard_matches(self.path_pattern.as_bytes(), path.as_bytes())
    }
}

/// The id of the default distribution, the config file's behaviors: what
/// a node's request names to be served from them. No control-plane id is
/// spelled so.
pub const FILE_TABLE: &str = "-";

/// What the config and the control plane decide; replaced whole by a change.
pub struct Routing {
    /// The config file's behaviors: the distribution (id `FILE_TABLE`) of
    /// every Host no other distribution answers to.
    pub default: Arc<Distribution>,
    /// The key groups of the config file, as read (before any adopted from
    /// the fleet): a reload publishes the groups that changed in the file.
    pub file_key_groups: KeyGroups,
    /// The control plane's distributions by each name they answer to (lower
    /// case; their DomainName and Aliases).
    distributions: HashMap<String, Arc<Distribution>>,
    /// The same distributions by id: what another node's request names.
    distributions_by_id: HashMap<String, Arc<Distribution>>,
}

/// A distribution of the control plane, compiled for serving.
#[derive(Debug)]
pub struct Distribution {
    /// Shared with every object served from it (`ObjectRef::table`): a hit
    /// clones it rather than copying the text.
    pub id: Arc<str>,
    /// Host names it answers to, lower case: its DomainName (which may
    /// carry a port) and its Aliases.
    pub hosts: Vec<String>,
    /// A disabled distribution answers every request 403.
    pub enabled: bool,
    /// Its cache behaviors in order, the default (`*`) last.
    pub behaviors: Vec<Behavior>,
    /// The object served for `/`, as `/index.html`.
    pub default_root_object: Option<String>,
    /// Pages served in place of origin errors (`CustomErrorResponses`).
    pub error_pages: Vec<ErrorPage>,
    /// `scheme://host` signed URLs are checked against, when configured
    /// (the default distribution's `public_base_url`); `None`: the scheme
    /// and Host the viewer used.
    pub public_base_url: Option<String>,
    /// The viewer countries it serves (`Restrictions`).
    pub geo_restriction: GeoRestriction,
}

/// Which viewers' countries a distribution serves (CloudFront's
/// `GeoRestriction`), by ISO 3166-1 alpha-2 code, upper case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GeoRestriction {
    #[default]
    Everywhere,
    /// These countries only: a viewer whose country is unknown is refused.
    Only(Vec<String>),
    /// Every country but these: a viewer whose country is unknown is served.
    Except(Vec<String>),
}

impl GeoRestriction {
    /// Whether a viewer in `country` (its code as the edge learnt it; `None`
    /// when unknown) is served.
    pub fn serves(&self, country: Option<&str>) -> bool {
        let listed = |codes: &[String]| country.is_some_and(|country| codes.iter().any(|code| code.eq_ignore_ascii_case(country)));
        match self {
            Self::Everywhere => true,
            Self::Only(codes) => listed(codes),
            Self::Except(codes) => !listed(codes),
        }
    }
}

/// A page served in place of an origin's error, with its own status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    /// The origin's status it replaces (404, 503, ...).
    pub error_code: u16,
    /// The page's canonical path, served through the distribution's behaviors.
    pub page: String,
    /// The status the viewer gets with the page.
    pub response_code: u16,
}

impl Distribution {
    /// The page that replaces an origin's `status`, if there is one.
    pub fn error_page(&self, status: u16) -> Option<&ErrorPage> {
        self.error_pages.iter().find(|page| page.error_code == status)
    }
}

impl Routing {
    /// The distribution that answers to `host` (a `Host` header): the name
    /// with its port first, then without it, else the default.
    pub fn distribution_for(&self, host: &str) -> &Arc<Distribution> {
        self.named_distribution(host).unwrap_or(&self.default)
    }

    fn named_distribution(&self, host: &str) -> Option<&Arc<Distribution>> {
        if self.distributions.is_empty() {
            return None;
        }
        // Hosts come in lower case nearly always: no copy for those.
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        self.distributions.get(host).or_else(|| {
            let bare = host.rsplit_once(':').map_or(host, |(name, _)| name);
            self.distributions.get(bare)
        })
    }

    /// The distribution with id `id` (`FILE_TABLE`: the default).
    pub fn distribution_by_id(&self, id: &str) -> Option<&Arc<Distribution>> {
        match id {
            FILE_TABLE => Some(&self.default),
            id => self.distributions_by_id.get(id),
        }
    }

    /// This table with `distributions` in place of its own.
    pub fn with_distributions(&self, distributions: Vec<Distribution>) -> Routing {
        let mut by_host = HashMap::new();
        let mut by_id = HashMap::new();
        for distribution in distributions {
            let distribution = Arc::new(distribution);
            for host in &distribution.hosts {
                by_host.insert(host.clone(), distribution.clone());
            }
            by_id.insert(distribution.id.to_string(), distribution);
        }
        Routing {
            default: self.default.clone(),
            file_key_groups: self.file_key_groups.clone(),
            distributions: by_host,
            distributions_by_id: by_id,
        }
    }

    /// This table with `behaviors` as the default distribution's.
    pub fn with_default_behaviors(&self, behaviors: Vec<Behavior>) -> Routing {
        Routing {
            default: Arc::new(default_distribution(behaviors, self.default.public_base_url.clone())),
            file_key_groups: self.file_key_groups.clone(),
            distributions: self.distributions.clone(),
            distributions_by_id: self.distributions_by_id.clone(),
        }
    }

    /// This table with `file`'s default distribution (and the file's key
    /// groups that go with it) in place of its own; its other
    /// distributions kept.
    pub fn with_file(&self, file: Routing) -> Routing {
        Routing {
            distributions: self.distributions.clone(),
            distributions_by_id: self.distributions_by_id.clone(),
            ..file
        }
    }
}

/// The config file's behaviors as a distribution: every Host, always
/// enabled, no root object or error pages.
fn default_distribution(behaviors: Vec<Behavior>, public_base_url: Option<String>) -> Distribution {
    Distribution {
        id: FILE_TABLE.into(),
        hosts: Vec::new(),
        enabled: true,
        behaviors,
        default_root_object: None,
        error_pages: Vec::new(),
        public_base_url,
        geo_restriction: GeoRestriction::Everywhere,
    }
}

/// A key group's identity for comparison: its key ids and key fingerprints.
fn identity(keys: &[(String, PublicKey)]) -> Vec<(String, [u8; 32])> {
    let mut identity: Vec<(String, [u8; 32])> = keys.iter().map(|(id, key)| (id.clone(), *key.fingerprint())).collect();
    identity.sort();
    identity
}

impl Routing {
    /// The table for a config's `behaviors`, `public_base_url` and
    /// `key_groups`, its key groups overlaid by `adopted` ones.
    pub fn new(behaviors: Vec<Behavior>, public_base_url: Option<String>, key_groups: KeyGroups, adopted: &KeyGroups) -> Self {
        let routing = Routing {
            default: Arc::new(default_distribution(behaviors, public_base_url)),
            file_key_groups: key_groups,
            distributions: HashMap::new(),
            distributions_by_id: HashMap::new(),
        };
        routing.with_default_behaviors(routing.with_groups(adopted))
    }

    /// The groups `newer` (a file read again) changed or added (those it
    /// removed are the file's groups it no longer names).
    pub fn changed_groups(&self, newer: &KeyGroups) -> KeyGroups {
        newer
            .iter()
            .filter(|(name, keys)| self.file_key_groups.get(*name).map(|old| identity(old)) != Some(identity(keys)))
            .map(|(name, keys)| (name.clone(), keys.clone()))
            .collect()
    }

    /// The default distribution's behaviors with each trusted key group
    /// taken from `adopted` where it has the group, from the file otherwise.
    pub fn with_groups(&self, adopted: &KeyGroups) -> Vec<Behavior> {
        self.default
            .behaviors
            .iter()
            .map(|behavior| {
                let mut behavior = behavior.clone();
                if behavior.trusted_key_groups.iter().any(|group| adopted.contains_key(group)) {
                    let keys = behavior
                        .trusted_key_groups
                        .iter()
                        .filter_map(|group| adopted.get(group).or_else(|| self.file_key_groups.get(group)))
                        .flatten()
                        .cloned();
                    behavior.trusted_keys = TrustedKeys::new(keys);
                }
                behavior
            })
            .collect()
    }
}

/// Key groups as the control log carries them: name -> (key id, PEM).
pub type PublishedGroups = BTreeMap<String, Vec<(String, String)>>;

/// `groups` for the control log.
pub fn publish_form(groups: &KeyGroups) -> PublishedGroups {
    groups
        .iter()
        .map(|(name, keys)| (name.clone(), keys.iter().map(|(id, key)| (id.clone(), key.to_pem())).collect()))
        .collect()
}

/// Key groups read back from the control log; a key that does not parse
/// drops its whole group (a half group would be a wrong grant or refusal).
pub fn from_published(published: &PublishedGroups) -> KeyGroups {
    let mut groups = HashMap::new();
    for (name, keys) in published {
        let parsed: Result<Vec<(String, PublicKey)>, _> = keys
            .iter()
            .map(|(id, pem)| PublicKey::from_pem(pem).map(|key| (id.clone(), key)))
            .collect();
        match parsed {
            Ok(keys) => {
                groups.insert(name.clone(), keys);
            }
            Err(error) => tracing::warn!(group = %name, %error, "a published key group does not parse; ignored"),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{KeyAlgorithm, PrivateKey};

    #[test]
    fn an_unknown_country_is_refused_by_a_whitelist_and_served_by_a_blacklist() {
        let only = GeoRestriction::Only(vec!["DE".into(), "FR".into()]);
        let except = GeoRestriction::Except(vec!["US".into()]);
        for (country, by_only, by_except) in [(Some("DE"), true, true), (Some("us"), false, false), (None, false, true)] {
            assert_eq!(only.serves(country), by_only, "{country:?}");
            assert_eq!(except.serves(country), by_except, "{country:?}");
            assert!(GeoRestriction::Everywhere.serves(country));
        }
    }

    #[test]
    fn a_published_group_with_a_key_that_does_not_parse_is_dropped_whole() {
        let good = PrivateKey::generate(KeyAlgorithm::Ecdsa).public_key().to_pem();
        let mut published = PublishedGroups::new();
        published.insert("main".into(), vec![("K1".into(), good.clone())]);
        published.insert(
            "mixed".into(),
            vec![("K2".into(), good), ("K3".into(), "-----BEGIN PUBLIC KEY-----\nnot a key\n".into())],
        );
        published.insert("huge".into(), vec![("K4".into(), "A".repeat(1 << 20))]);
        let groups = from_published(&published);
        assert_eq!(groups.keys().collect::<Vec<_>>(), vec!["main"], "only the whole, parseable group");
        assert_eq!(groups["main"][0].0, "K1");
        let round_trip = from_published(&publish_form(&groups));
        assert_eq!(identity(&round_trip["main"]), identity(&groups["main"]));
    }
}
