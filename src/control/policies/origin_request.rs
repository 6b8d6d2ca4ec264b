//! Origin request policies: the managed ones, what a policy may hold, and
//! what it adds to what a behavior sends its origin (an S3 origin, signed
//! with the node's credentials, never gets the viewer's `Authorization`:
//! see `Origin::takes_viewer_header`).

use super::{PolicyType, check_name, check_names_config, name_choice, names_config};
use crate::control::api::{ApiError, random_uuid};
use crate::control::resources::Kind;
use crate::control::store::State;
use crate::control::xml::Element;
use crate::request::RequestValues;

/// A managed origin request policy: id, name, comment, and what it sends
/// of headers, cookies and query strings (a behavior and names).
type Managed = (
    &'static str,
    &'static str,
    &'static str,
    [(&'static str, &'static [&'static str]); 3],
);

const MANAGED: [Managed; 6] = [
    (
        "216adef6-5c7f-47e4-b989-5492eafa07d3",
        "Managed-AllViewer",
        "Policy to forward all parameters in viewer requests",
        [("allViewer", &[]), ("all", &[]), ("all", &[])],
    ),
    (
        "b689b0a8-53d0-40ab-baf2-68738e2966ac",
        "Managed-AllViewerExceptHostHeader",
        "Policy to forward all parameters in viewer requests except for the Host header",
        [("allExcept", &["host"]), ("all", &[]), ("all", &[])],
    ),
    (
        "59781a5b-3903-41f3-afcb-af62929ccde1",
        "Managed-CORS-CustomOrigin",
        "Policy for origins with CORS",
        [("whitelist", &["origin"]), ("none", &[]), ("none", &[])],
    ),
    (
        "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf",
        "Managed-CORS-S3Origin",
        "Policy for S3 origin with CORS",
        [
            (
                "whitelist",
                &["origin", "access-control-request-headers", "access-control-request-method"],
            ),
            ("none", &[]),
            ("none", &[]),
        ],
    ),
    (
        "775133bc-15f2-49f9-abea-afb2e0bf67d2",
        "Managed-Elemental-MediaTailor-PersonalizedManifests",
        "Policy for Elemental MediaTailor Origin",
        [
            (
                "whitelist",
                &[
                    "origin",
                    "access-control-request-headers",
                    "x-forwarded-for",
                    "access-control-request-method",
                    "user-agent",
                ],
            ),
            ("none", &[]),
            ("all", &[]),
        ],
    ),
    (
        "acba4595-bd28-49b6-b8b9-ebd88a3d7e8d",
        "Managed-UserAgentRefererHeaders",
        "Policy to forward user-agent and referer headers to origin",
        [("whitelist", &["user-agent", "referer"]), ("none", &[]), ("none", &[])],
    ),
];

const PARTS: [&str; 3] = ["HeadersConfig", "CookiesConfig", "QueryStringsConfig"];

fn managed() -> Vec<(&'static str, Element)> {
    MANAGED
        .iter()
        .map(|(id, name, comment, parts)| {
            let mut config = Element::new("OriginRequestPolicyConfig")
                .with(Element::leaf("Comment", *comment))
                .with(Element::leaf("Name", *name));
            for (container, part) in PARTS.into_iter().zip(parts) {
                config.children.push(names_config(container, *part));
            }
            (*id, config)
        })
        .collect()
}

/// `keyed` (a cache policy's values) with what the origin request policy
/// `config` sends besides; `None` for a config the API would have refused.
pub fn with_sent_values(keyed: RequestValues, config: &Element) -> Option<RequestValues> {
    Some(RequestValues {
        sent_headers: name_choice(config, "HeadersConfig")?,
        sent_cookies: keyed.sent_cookies.union(&name_choice(config, "CookiesConfig")?),
        sent_query: keyed.sent_query.union(&name_choice(config, "QueryStringsConfig")?),
        ..keyed
    })
}

/// Refuses a config that is not an origin request policy CloudFront would take.
fn validate(config: &Element, _: &State) -> Result<(), ApiError> {
    check_name(config, &managed(), "OriginRequestPolicyAlreadyExists")?;
    let everything = ["none", "whitelist", "all", "allExcept"];
    let headers = ["none", "whitelist", "allViewer", "allViewerAndWhitelistCloudFront", "allExcept"];
    for (container, allowed) in PARTS.into_iter().zip([&headers[..], &everything[..], &everything[..]]) {
        check_names_config(config, container, allowed)?;
    }
    Ok(())
}

pub const ORIGIN_REQUEST_POLICIES: PolicyType = PolicyType {
    kind: Kind {
        resource: "OriginRequestPolicy",
        config: "OriginRequestPolicyConfig",
        path: "origin-request-policy",
        time: Some("LastModifiedTime"),
        derived: None,
        list: "OriginRequestPolicyList",
        marker_in_list: false,
        not_found: "NoSuchOriginRequestPolicy",
        already_exists: "OriginRequestPolicyAlreadyExists",
        in_use: "OriginRequestPolicyInUse",
        collection: |state| &mut state.origin_request_policies,
        resources: |state| &state.origin_request_policies,
        new_id: random_uuid,
        quota: (20, "TooManyOriginRequestPolicies"),
        validate,
        check_update: |_, _| Ok(()),
        used_by: |state, id| ORIGIN_REQUEST_POLICIES.used_by(state, id),
        summary: |id, resource| ORIGIN_REQUEST_POLICIES.summary("custom", id, resource),
    },
    managed,
    summary: "OriginRequestPolicySummary",
    behavior_field: "OriginRequestPolicyId",
};
