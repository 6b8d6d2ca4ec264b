//! Cache policies: the managed ones every account has (their real ids,
//! names and settings) and an account's own, which `api` stores like the
//! simple resources; what a behavior's policy makes of its TTLs.

use std::time::Duration;

use super::api::{ApiError, ApiReply, ApiRequest, page, random_uuid};
use super::distributions;
use super::resources::Kind;
use super::store::{Resource, State};
use super::xml::Element;
use crate::config::Ttl;

/// What a managed cache policy puts in the cache key: a behavior and the
/// names it lists, for headers, cookies and query strings.
struct KeyParts {
    headers: (&'static str, &'static [&'static str]),
    cookies: (&'static str, &'static [&'static str]),
    query_strings: (&'static str, &'static [&'static str]),
}

/// A managed cache policy, as AWS documents it ("Use managed cache policies").
struct Managed {
    id: &'static str,
    name: &'static str,
    comment: &'static str,
    /// Minimum, default and maximum TTL in seconds.
    ttl: (u64, u64, u64),
    key: KeyParts,
    /// Cache compressed objects (gzip and Brotli) or not.
    compressed: bool,
}

const NOTHING: (&str, &[&str]) = ("none", &[]);

/// The headers the UseOriginCacheControlHeaders policies key on.
const METHOD_OVERRIDE_HEADERS: &[&str] = &["host", "origin", "x-http-method-override", "x-http-method", "x-method-override"];

/// The URL path alone is the key.
const NO_KEY: KeyParts = KeyParts {
    headers: NOTHING,
    cookies: NOTHING,
    query_strings: NOTHING,
};

const MANAGED: [Managed; 7] = [
    Managed {
        id: "2e54312d-136d-493c-8eb9-b001f22f67d2",
        name: "Managed-Amplify",
        comment: "Policy for Amplify Origin",
        ttl: (2, 2, 600),
        key: KeyParts {
            headers: ("whitelist", &["Authorization", "CloudFront-Viewer-Country", "Host"]),
            cookies: ("all", &[]),
            query_strings: ("all", &[]),
        },
        compressed: true,
    },
    Managed {
        id: "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
        name: "Managed-CachingDisabled",
        comment: "Policy with caching disabled",
        ttl: (0, 0, 0),
        key: NO_KEY,
        compressed: false,
    },
    Managed {
        id: "658327ea-f89d-4fab-a63d-7e88639e58f6",
        name: "Managed-CachingOptimized",
        comment: "Policy with caching enabled. Supports Gzip and Brotli compression.",
        ttl: (1, 86_400, 31_536_000),
        key: NO_KEY,
        compressed: true,
    },
    Managed {
        id: "b2884449-e4de-46a7-ac36-70bc7f1ddd6d",
        name: "Managed-CachingOptimizedForUncompressedObjects",
        comment: "Default policy when compression is disabled",
        ttl: (1, 86_400, 31_536_000),
        key: NO_KEY,
        compressed: false,
    },
    Managed {
        id: "08627262-05a9-4f76-9ded-b50ca2e3a84f",
        name: "Managed-Elemental-MediaPackage",
        comment: "Policy for Elemental MediaPackage Origin",
        ttl: (0, 86_400, 31_536_000),
        key: KeyParts {
            headers: ("whitelist", &["origin"]),
            cookies: NOTHING,
            query_strings: ("whitelist", &["aws.manifestfilter", "start", "end", "m"]),
        },
        compressed: true,
    },
    Managed {
        id: "83da9c7e-98b4-4e11-a168-04f0df8e2c65",
        name: "Managed-UseOriginCacheControlHeaders",
        comment: "Policy for origins that return Cache-Control headers. Query strings are not included in the cache key.",
        ttl: (0, 0, 31_536_000),
        key: KeyParts {
            headers: ("whitelist", METHOD_OVERRIDE_HEADERS),
            cookies: ("all", &[]),
            query_strings: NOTHING,
        },
        compressed: true,
    },
    Managed {
        id: "4cc15a8a-d715-48a4-82b8-cc0b614638fe",
        name: "Managed-UseOriginCacheControlHeaders-QueryStrings",
        comment: "Policy for origins that return Cache-Control headers and serve different content based on values present in the query string.",
        ttl: (0, 0, 31_536_000),
        key: KeyParts {
            headers: ("whitelist", METHOD_OVERRIDE_HEADERS),
            cookies: ("all", &[]),
            query_strings: ("all", &[]),
        },
        compressed: true,
    },
];

/// When the managed policies last changed, as their `LastModifiedTime`.
const MANAGED_SINCE: &str = "2020-08-31T00:00:00.000Z";

impl Managed {
    fn config(&self) -> Element {
        let part = |container: &str, behavior_name: &str, list: &str, item: &str, (behavior, names): (&str, &[&str])| {
            let mut element = Element::new(container).with(Element::leaf(behavior_name, behavior));
            if !names.is_empty() {
                let items = names.iter().map(|name| Element::leaf(item, *name)).collect();
                element.children.push(super::xml::list(list, items));
            }
            element
        };
        let (min, default, max) = self.ttl;
        let parameters = Element::new("ParametersInCacheKeyAndForwardedToOrigin")
            .with(Element::leaf("EnableAcceptEncodingGzip", self.compressed.to_string()))
            .with(Element::leaf("EnableAcceptEncodingBrotli", self.compressed.to_string()))
            .with(part("HeadersConfig", "HeaderBehavior", "Headers", "Name", self.key.headers))
            .with(part("CookiesConfig", "CookieBehavior", "Cookies", "Name", self.key.cookies))
            .with(part(
                "QueryStringsConfig",
                "QueryStringBehavior",
                "QueryStrings",
                "Name",
                self.key.query_strings,
            ));
        Element::new("CachePolicyConfig")
            .with(Element::leaf("Comment", self.comment))
            .with(Element::leaf("Name", self.name))
            .with(Element::leaf("DefaultTTL", default.to_string()))
            .with(Element::leaf("MaxTTL", max.to_string()))
            .with(Element::leaf("MinTTL", min.to_string()))
            .with(parameters)
    }

    fn resource(&self) -> Resource {
        Resource {
            // Stable: a managed policy never changes, so neither does its ETag.
            etag: format!("E{}", self.id.replace('-', "").to_ascii_uppercase().get(..13).unwrap_or("")),
            created: MANAGED_SINCE.to_owned(),
            modified: MANAGED_SINCE.to_owned(),
            config: self.config(),
        }
    }
}

fn managed(id: &str) -> Option<&'static Managed> {
    MANAGED.iter().find(|policy| policy.id == id)
}

/// The config of cache policy `id`, managed or the account's own.
pub fn cache_policy(state: &State, id: &str) -> Option<Element> {
    match managed(id) {
        Some(policy) => Some(policy.config()),
        None => state.cache_policies.get(id).map(|policy| policy.config.clone()),
    }
}

/// The TTLs a cache policy's config gives a behavior (seconds, as the API
/// took them).
pub fn ttl(config: &Element) -> Option<Ttl> {
    let seconds = |name: &str| config.text_of(name)?.parse::<u64>().ok().map(Duration::from_secs);
    let min = seconds("MinTTL")?;
    let max = match config.child("MaxTTL") {
        Some(_) => seconds("MaxTTL")?,
        None => Duration::from_secs(31_536_000).max(min),
    };
    let default = match config.child("DefaultTTL") {
        Some(_) => seconds("DefaultTTL")?,
        // Not `clamp`: a MinTTL over the MaxTTL is refused, not a panic.
        None => Duration::from_secs(86_400).max(min).min(max),
    };
    Some(Ttl { min, default, max })
}

/// Refuses a config that is not a cache policy CloudFront would take.
fn validate(config: &Element, _: &State) -> Result<(), ApiError> {
    let name = config
        .text_of("Name")
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::invalid("CachePolicyConfig needs a Name"))?;
    if MANAGED.iter().any(|policy| policy.name == name) {
        return Err(ApiError::new(
            409,
            "CachePolicyAlreadyExists",
            format!("the name {name:?} is a managed policy's"),
        ));
    }
    for field in ["MinTTL", "DefaultTTL", "MaxTTL"] {
        if let Some(text) = config.text_of(field)
            && text.parse::<u64>().is_err()
        {
            return Err(ApiError::invalid(format!("{field} {text:?} is not a number of seconds")));
        }
    }
    let ttl = ttl(config).ok_or_else(|| ApiError::invalid("CachePolicyConfig needs MinTTL"))?;
    if !(ttl.min <= ttl.default && ttl.default <= ttl.max) {
        return Err(ApiError::invalid("MinTTL <= DefaultTTL <= MaxTTL is required"));
    }
    let parameters = config
        .child("ParametersInCacheKeyAndForwardedToOrigin")
        .ok_or_else(|| ApiError::invalid("CachePolicyConfig needs ParametersInCacheKeyAndForwardedToOrigin"))?;
    if parameters.child("EnableAcceptEncodingGzip").is_none() {
        return Err(ApiError::invalid(
            "ParametersInCacheKeyAndForwardedToOrigin needs EnableAcceptEncodingGzip",
        ));
    }
    let parts = [
        ("HeadersConfig", "HeaderBehavior", "Headers", &["none", "whitelist"][..]),
        (
            "CookiesConfig",
            "CookieBehavior",
            "Cookies",
            &["none", "whitelist", "allExcept", "all"][..],
        ),
        (
            "QueryStringsConfig",
            "QueryStringBehavior",
            "QueryStrings",
            &["none", "whitelist", "allExcept", "all"][..],
        ),
    ];
    for (container, behavior_name, list, allowed) in parts {
        let part = parameters
            .child(container)
            .ok_or_else(|| ApiError::invalid(format!("ParametersInCacheKeyAndForwardedToOrigin needs {container}")))?;
        let behavior = part.text_of(behavior_name).unwrap_or("");
        if !allowed.contains(&behavior) {
            return Err(ApiError::invalid(format!("{behavior_name} {behavior:?} is not one of {allowed:?}")));
        }
        let named = part.child(list).into_iter().flat_map(Element::items).count();
        if matches!(behavior, "whitelist" | "allExcept") && named == 0 {
            return Err(ApiError::invalid(format!("{behavior_name} {behavior} needs the names in {list}")));
        }
        if ttl.max.is_zero() && behavior != "none" {
            return Err(ApiError::invalid(format!(
                "{behavior_name} must be none when MaxTTL is 0 (caching is disabled)"
            )));
        }
    }
    Ok(())
}

pub const CACHE_POLICY: Kind = Kind {
    resource: "CachePolicy",
    config: "CachePolicyConfig",
    path: "cache-policy",
    time: Some("LastModifiedTime"),
    list: "CachePolicyList",
    marker_in_list: false,
    not_found: "NoSuchCachePolicy",
    already_exists: "CachePolicyAlreadyExists",
    in_use: "CachePolicyInUse",
    collection: |state| &mut state.cache_policies,
    resources: |state| &state.cache_policies,
    new_id: random_uuid,
    quota: (20, "TooManyCachePolicies"),
    validate,
    check_update: |_, _| Ok(()),
    used_by: |state, id| {
        distributions::first_using(state, |config| {
            distributions::behaviors(config).any(|behavior| behavior.text_of("CachePolicyId") == Some(id))
        })
    },
    summary: |id, resource| summary("custom", id, resource),
};

fn summary(kind: &str, id: &str, resource: &Resource) -> Element {
    Element::new("CachePolicySummary")
        .with(Element::leaf("Type", kind))
        .with(CACHE_POLICY.resource(id, resource))
}

/// A managed policy as `GetCachePolicy` and `GetCachePolicyConfig` answer
/// for it (`config_only`), if `id` names one.
pub fn get_managed(id: &str, config_only: bool) -> Option<ApiReply> {
    let resource = managed(id)?.resource();
    let body = if config_only {
        resource.config.clone()
    } else {
        CACHE_POLICY.resource(id, &resource)
    };
    Some(ApiReply::ok(body).with_etag(&resource.etag))
}

/// Refuses to update or delete a managed policy, as CloudFront does.
pub fn refuse_managed(id: &str, method: &str) -> Result<(), ApiError> {
    match (managed(id), method) {
        (None, _) => Ok(()),
        (Some(_), "DELETE") => Err(ApiError::new(400, "IllegalDelete", "a managed cache policy cannot be deleted")),
        (Some(_), _) => Err(ApiError::new(400, "IllegalUpdate", "a managed cache policy cannot be changed")),
    }
}

/// `ListCachePolicies`: the managed policies, then the account's own, in
/// the order they were made; `Type=managed` or `Type=custom` picks one kind.
pub fn list(state: &State, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
    let kind = request.query.get("Type").map(String::as_str);
    if !matches!(kind, None | Some("managed" | "custom")) {
        return Err(ApiError::invalid(format!("Type {kind:?} is not managed or custom")));
    }
    let mut summaries: Vec<(String, Element)> = Vec::new();
    if kind != Some("custom") {
        summaries.extend(
            MANAGED
                .iter()
                .map(|policy| (policy.id.to_owned(), summary("managed", policy.id, &policy.resource()))),
        );
    }
    if kind != Some("managed") {
        summaries.extend(
            super::api::ordered(&state.cache_policies)
                .into_iter()
                .map(|(id, resource)| (id.clone(), summary("custom", id, resource))),
        );
    }
    Ok(ApiReply::ok(page(CACHE_POLICY.list, summaries, request, false)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_policies_are_valid_policies_with_stable_etags_and_their_ttls() {
        let state = State::default();
        for policy in &MANAGED {
            let mut config = policy.config();
            // A managed name is refused to a custom policy, nothing else is.
            assert!(validate(&config, &state).is_err_and(|e| e.code == "CachePolicyAlreadyExists"));
            config.child_mut("Name").unwrap().text = format!("copy of {}", policy.name);
            validate(&config, &state).unwrap_or_else(|error| panic!("{}: {error}", policy.name));
            assert_eq!(policy.resource().etag, policy.resource().etag);
            assert_eq!(policy.resource().etag.len(), 14);
        }
        let optimized = cache_policy(&state, "658327ea-f89d-4fab-a63d-7e88639e58f6").unwrap();
        let ttl = ttl(&optimized).unwrap();
        assert_eq!(
            (ttl.min.as_secs(), ttl.default.as_secs(), ttl.max.as_secs()),
            (1, 86_400, 31_536_000)
        );
        assert!(cache_policy(&state, "not-a-policy").is_none());
    }

    #[test]
    fn hostile_and_inconsistent_configs_are_refused() {
        let state = State::default();
        let config = |ttls: &str, query: &str| {
            let body = format!(
                "<CachePolicyConfig><Name>p</Name>{ttls}<ParametersInCacheKeyAndForwardedToOrigin><EnableAcceptEncodingGzip>false</EnableAcceptEncodingGzip><HeadersConfig><HeaderBehavior>none</HeaderBehavior></HeadersConfig><CookiesConfig><CookieBehavior>none</CookieBehavior></CookiesConfig><QueryStringsConfig>{query}</QueryStringsConfig></ParametersInCacheKeyAndForwardedToOrigin></CachePolicyConfig>"
            );
            Element::parse(body.as_bytes(), "CachePolicyConfig").unwrap()
        };
        let none = "<QueryStringBehavior>none</QueryStringBehavior>";
        assert!(validate(&config("<MinTTL>0</MinTTL>", none), &state).is_ok());
        for (ttls, query) in [
            ("", none),
            ("<MinTTL>-1</MinTTL>", none),
            ("<MinTTL>10</MinTTL><DefaultTTL>5</DefaultTTL><MaxTTL>20</MaxTTL>", none),
            (
                "<MinTTL>0</MinTTL><DefaultTTL>0</DefaultTTL><MaxTTL>0</MaxTTL>",
                "<QueryStringBehavior>all</QueryStringBehavior>",
            ),
            ("<MinTTL>0</MinTTL>", "<QueryStringBehavior>whitelist</QueryStringBehavior>"),
            ("<MinTTL>0</MinTTL>", "<QueryStringBehavior>some</QueryStringBehavior>"),
            ("<MinTTL>0</MinTTL><MaxTTL>1e3</MaxTTL>", none),
        ] {
            let refused = validate(&config(ttls, query), &state);
            assert!(refused.is_err_and(|e| e.code == "InvalidArgument"), "{ttls} {query}");
        }
    }
}
