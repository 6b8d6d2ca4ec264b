//! The control plane's state compiled into the routing table's
//! distributions: each S3 origin mapped to its bucket on the configured S3
//! endpoint (signed with its credentials, as origin access control would),
//! each custom origin to its server (`origins`), each behavior's key groups
//! resolved to the public keys they hold.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::distributions::{allowed_methods, behaviors, geo_restriction, viewer_protocol};
use super::functions;
use super::origins;
use super::policies;
use super::store::State;
use super::xml::Element;
use crate::auth::{PublicKey, TrustedKeys};
use crate::config::Ttl;
use crate::origin::{Failover, Origin};
use crate::request::{RequestValues, canonical_path, canonical_pattern};
use crate::routing::{Behavior, Distribution, ErrorPage};

/// What serving a distribution takes from the config file.
pub struct ServingDefaults {
    /// The endpoint, credentials and timeouts every S3 origin uses.
    pub s3: Arc<Origin>,
    pub slice_size: u64,
    /// Where custom origins may be (none: they are not served).
    pub custom_origin_networks: Arc<[IpNet]>,
}

/// Names a behavior that trusts the legacy `TrustedSigners` (AWS account
/// key pairs, which keyfront cannot know): present, with no key, it makes
/// every request of that behavior need a signature nothing verifies.
const LEGACY_SIGNERS: &str = "TrustedSigners (account key pairs are not supported)";

/// The distributions of `state`, ready to serve.
pub fn compile(state: &State, defaults: &ServingDefaults) -> Vec<Distribution> {
    state
        .distributions
        .iter()
        .map(|(id, record)| {
            let config = &record.resource.config;
            let domain = record.domain_name.to_ascii_lowercase();
            // A DomainName with the edge's port (the emulator's loopback
            // addresses) answers on any port of that address too: its HTTPS edge's.
            let bare = domain
                .rsplit_once(':')
                .map(|(host, _)| host.to_owned())
                .filter(|host| !host.contains(':'));
            let mut hosts: Vec<String> = std::iter::once(domain).chain(bare).collect();
            hosts.extend(
                config
                    .child("Aliases")
                    .into_iter()
                    .flat_map(Element::items)
                    .map(|alias| alias.text.to_ascii_lowercase()),
            );
            // A behavior left out would hand its paths to the next one, which
            // may be public: a distribution with one that does not compile
            // (the API's checks make that unlikely) serves nothing.
            let compiled: Option<Vec<Behavior>> = behaviors(config)
                .map(|behavior| compile_behavior(id, config, behavior, state, defaults))
                .collect();
            if compiled.is_none() {
                tracing::warn!(distribution = %id, "a cache behavior cannot be served; the distribution answers 403");
            }
            // Likewise a restriction that does not compile serves no country.
            let geo = geo_restriction(config);
            Distribution {
                id: id.as_str().into(),
                error_pages: error_pages(config),
                public_base_url: None,
                hosts,
                enabled: config.text_of("Enabled") == Some("true") && compiled.is_some() && geo.is_some(),
                geo_restriction: geo.unwrap_or_default(),
                behaviors: compiled.unwrap_or_default(),
                default_root_object: config
                    .text_of("DefaultRootObject")
                    .filter(|object| !object.is_empty())
                    .and_then(|object| {
                        let path = format!("/{}", object.trim_start_matches('/'));
                        canonical_path(&path).ok().map(|canonical| canonical.into_owned())
                    }),
            }
        })
        .collect()
}

/// The distribution's `CustomErrorResponses` items.
fn custom_error_responses(config: &Element) -> impl Iterator<Item = &Element> {
    config.child("CustomErrorResponses").into_iter().flat_map(Element::items)
}

/// The `CustomErrorResponses` that name a page (those that only set an
/// error caching time have nothing to serve).
fn error_pages(config: &Element) -> Vec<ErrorPage> {
    custom_error_responses(config)
        .filter_map(|response| {
            let error_code = response.text_of("ErrorCode")?.parse().ok()?;
            let page = canonical_path(response.text_of("ResponsePagePath").filter(|p| p.starts_with('/'))?).ok()?;
            let response_code = response
                .text_of("ResponseCode")
                .and_then(|code| code.parse().ok())
                .unwrap_or(error_code);
            Some(ErrorPage {
                error_code,
                page: page.into_owned(),
                response_code,
            })
        })
        .collect()
}

/// How long each error status is remembered (`ErrorCachingMinTTL`), by
/// the distribution's `CustomErrorResponses` (the API checked them).
fn error_caching(config: &Element) -> Arc<[(u16, Duration)]> {
    custom_error_responses(config)
        .filter_map(|response| {
            let code = response.text_of("ErrorCode")?.parse().ok()?;
            let seconds = response.text_of("ErrorCachingMinTTL")?.parse().ok()?;
            Some((code, Duration::from_secs(seconds)))
        })
        .collect()
}

fn compile_behavior(id: &str, config: &Element, behavior: &Element, state: &State, defaults: &ServingDefaults) -> Option<Behavior> {
    let target = behavior.text_of("TargetOriginId")?;
    let origin_named = |name: &str| {
        let origin = config
            .child("Origins")
            .into_iter()
            .flat_map(Element::items)
            .find(|origin| origin.text_of("Id") == Some(name))?;
        compile_origin(origin, defaults)
    };
    // A target naming an origin group is served by its first member, and
    // its second when the first fails as the group's criteria say.
    let (origin, failover) = match origins::group(config, target) {
        Some(group) => {
            let failover = Failover {
                origin_name: format!("{id}/{}", group.second).into(),
                origin: Arc::new(origin_named(group.second)?),
                statuses: group.statuses,
            };
            (origin_named(group.first)?, Some(Arc::new(failover)))
        }
        None => (origin_named(target)?, None),
    };
    let pattern = behavior.text_of("PathPattern").unwrap_or("*");
    let pattern = if pattern.starts_with('/') || pattern == "*" {
        pattern.to_owned()
    } else {
        format!("/{pattern}")
    };
    let mut groups = Vec::new();
    let mut keys = Vec::new();
    // Fails closed: anything but an explicit `false` (the API refuses
    // malformed booleans; a state written before it did may hold one) signs.
    let signed = |list: &str| behavior.at(&[list, "Enabled"]).is_some_and(|e| e.text != "false");
    if signed("TrustedKeyGroups") {
        for group in behavior.child("TrustedKeyGroups").into_iter().flat_map(Element::items) {
            groups.push(group.text.clone());
            let key_ids = state.key_groups.get(&group.text).into_iter().flat_map(|g| g.config.items());
            for key_id in key_ids {
                let pem = state.public_keys.get(&key_id.text).and_then(|key| key.config.text_of("EncodedKey"));
                if let Some(key) = pem.and_then(|pem| PublicKey::from_pem(pem).ok()) {
                    keys.push((key_id.text.clone(), key));
                }
            }
        }
    }
    if signed("TrustedSigners") {
        groups.push(LEGACY_SIGNERS.to_owned());
    }
    let allowed_methods = allowed_methods(behavior)?;
    let viewer_protocol = viewer_protocol(behavior)?;
    let seconds =
        |name: &str, default: u64| Duration::from_secs(behavior.text_of(name).and_then(|text| text.parse().ok()).unwrap_or(default));
    // A policy that is gone (the API refuses that; a state written before
    // it did may hold one) leaves the behavior, and its distribution, unserved.
    let (cors, response_headers) = match behavior.text_of("ResponseHeadersPolicyId").filter(|id| !id.is_empty()) {
        Some(id) => {
            let (cors, rules) = policies::response_headers(&policies::RESPONSE_HEADERS_POLICIES.config(state, id)?).ok()?;
            (cors, Some(Arc::new(rules)))
        }
        None => (None, None),
    };
    let (ttl, keyed) = match behavior.text_of("CachePolicyId").filter(|id| !id.is_empty()) {
        Some(id) => {
            let policy = policies::CACHE_POLICIES.config(state, id)?;
            (policies::ttl(&policy)?, policies::key_values(&policy)?)
        }
        None => (
            Ttl {
                min: seconds("MinTTL", 0),
                default: seconds("DefaultTTL", 86_400),
                max: seconds("MaxTTL", 31_536_000),
            },
            RequestValues::default(),
        ),
    };
    let values = match behavior.text_of("OriginRequestPolicyId").filter(|id| !id.is_empty()) {
        Some(id) => policies::with_sent_values(keyed, &policies::ORIGIN_REQUEST_POLICIES.config(state, id)?)?,
        None => keyed,
    };
    // A function gone or unpublished (the API refuses both) leaves the
    // behavior unserved rather than served without it.
    let functions = functions::viewer_functions(behavior, state).ok()?;
    Some(Behavior {
        path_pattern: canonical_pattern(&pattern),
        // Each distribution's origins are their own cache namespace.
        origin_name: format!("{id}/{target}").into(),
        origin: Arc::new(origin),
        trusted_keys: TrustedKeys::new(keys),
        trusted_key_groups: groups,
        allowed_methods,
        ttl,
        forward_metadata_headers: false,
        slice_size: defaults.slice_size,
        values,
        viewer_protocol,
        cors,
        response_headers,
        functions,
        failover,
        error_caching: error_caching(config),
    })
}

/// The origin the edge asks for a distribution's `origin` element, under
/// its `OriginPath`.
fn compile_origin(origin: &Element, defaults: &ServingDefaults) -> Option<Origin> {
    let origin_path = origin.text_of("OriginPath").unwrap_or("");
    let key_prefix = if origin_path.is_empty() {
        String::new()
    } else {
        canonical_path(origin_path).ok()?.into_owned()
    };
    origins::compile(origin, &key_prefix, &defaults.s3, &defaults.custom_origin_networks)
}
