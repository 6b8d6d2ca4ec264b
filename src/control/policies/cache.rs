//! Cache policies: the managed ones, what a policy may hold, and what a
//! behavior's policy makes of its TTLs.

use std::time::Duration;

use super::{PolicyType, check_name, check_names_config, name_choice, names_config};
use crate::config::Ttl;
use crate::control::api::{ApiError, random_uuid};
use crate::control::resources::Kind;
use crate::control::store::State;
use crate::control::xml::Element;
use crate::request::{NameChoice, RequestValues};

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

impl Managed {
    fn config(&self) -> Element {
        let (min, default, max) = self.ttl;
        let parameters = Element::new("ParametersInCacheKeyAndForwardedToOrigin")
            .with(Element::leaf("EnableAcceptEncodingGzip", self.compressed.to_string()))
            .with(Element::leaf("EnableAcceptEncodingBrotli", self.compressed.to_string()))
            .with(names_config("HeadersConfig", self.key.headers))
            .with(names_config("CookiesConfig", self.key.cookies))
            .with(names_config("QueryStringsConfig", self.key.query_strings));
        Element::new("CachePolicyConfig")
            .with(Element::leaf("Comment", self.comment))
            .with(Element::leaf("Name", self.name))
            .with(Element::leaf("DefaultTTL", default.to_string()))
            .with(Element::leaf("MaxTTL", max.to_string()))
            .with(Element::leaf("MinTTL", min.to_string()))
            .with(parameters)
    }
}

fn managed() -> Vec<(&'static str, Element)> {
    MANAGED.iter().map(|policy| (policy.id, policy.config())).collect()
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

/// What a cache policy puts in the key (and sends to the origin): query
/// parameters, headers (names sorted) and cookies; `None` for a config the
/// API would have refused.
pub fn key_values(config: &Element) -> Option<RequestValues> {
    let parameters = config.child("ParametersInCacheKeyAndForwardedToOrigin")?;
    let key_query = name_choice(parameters, "QueryStringsConfig")?;
    let key_cookies = name_choice(parameters, "CookiesConfig")?;
    let key_headers = match name_choice(parameters, "HeadersConfig")? {
        NameChoice::Nothing => Vec::new(),
        NameChoice::Only(mut names) => {
            names.sort_unstable();
            names.dedup();
            names
        }
        _ => return None,
    };
    Some(RequestValues {
        sent_query: key_query.clone(),
        sent_cookies: key_cookies.clone(),
        sent_headers: NameChoice::Nothing,
        key_query,
        key_headers,
        key_cookies,
    })
}

/// Refuses a config that is not a cache policy CloudFront would take.
fn validate(config: &Element, _: &State) -> Result<(), ApiError> {
    check_name(config, &managed(), "CachePolicyAlreadyExists")?;
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
    let all = ["none", "whitelist", "allExcept", "all"];
    for (container, allowed) in [
        ("HeadersConfig", &all[..2]),
        ("CookiesConfig", &all[..]),
        ("QueryStringsConfig", &all[..]),
    ] {
        let behavior = check_names_config(parameters, container, allowed)?;
        if ttl.max.is_zero() && behavior != "none" {
            return Err(ApiError::invalid(format!(
                "{container} must name nothing when MaxTTL is 0 (caching is disabled)"
            )));
        }
    }
    Ok(())
}

pub const CACHE_POLICIES: PolicyType = PolicyType {
    kind: Kind {
        resource: "CachePolicy",
        config: "CachePolicyConfig",
        path: "cache-policy",
        time: Some("LastModifiedTime"),
        derived: None,
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
        used_by: |state, id| CACHE_POLICIES.used_by(state, id),
        summary: |id, resource| CACHE_POLICIES.summary("custom", id, resource),
    },
    managed,
    summary: "CachePolicySummary",
    behavior_field: "CachePolicyId",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caching_optimized_keeps_a_day_and_hostile_configs_are_refused() {
        let state = State::default();
        let optimized = CACHE_POLICIES.config(&state, "658327ea-f89d-4fab-a63d-7e88639e58f6").unwrap();
        let ttl = ttl(&optimized).unwrap();
        assert_eq!(
            (ttl.min.as_secs(), ttl.default.as_secs(), ttl.max.as_secs()),
            (1, 86_400, 31_536_000)
        );
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
            ("<MinTTL>30</MinTTL><MaxTTL>20</MaxTTL>", none),
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
