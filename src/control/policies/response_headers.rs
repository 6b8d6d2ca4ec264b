//! Response headers policies: the managed ones, what a policy may hold, and
//! what it lays over every answer of a behavior that names it (CORS,
//! security headers, custom headers, headers removed).

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{PolicyType, check_name};
use crate::config::CorsPolicy;
use crate::control::api::{ApiError, random_uuid};
use crate::control::resources::Kind;
use crate::control::store::State;
use crate::control::xml::Element;
use crate::routing::HeaderRules;

const SECURITY: &str = "<SecurityHeadersConfig>\
    <ContentTypeOptions><Override>false</Override></ContentTypeOptions>\
    <FrameOptions><FrameOption>SAMEORIGIN</FrameOption><Override>false</Override></FrameOptions>\
    <ReferrerPolicy><Override>false</Override><ReferrerPolicy>strict-origin-when-cross-origin</ReferrerPolicy></ReferrerPolicy>\
    <StrictTransportSecurity><AccessControlMaxAgeSec>31536000</AccessControlMaxAgeSec><IncludeSubdomains>false</IncludeSubdomains><Override>false</Override><Preload>false</Preload></StrictTransportSecurity>\
    <XSSProtection><ModeBlock>true</ModeBlock><Override>false</Override><Protection>true</Protection></XSSProtection>\
    </SecurityHeadersConfig>";

const SIMPLE_CORS: &str = "<CorsConfig><AccessControlAllowCredentials>false</AccessControlAllowCredentials>\
    <AccessControlAllowHeaders><Quantity>1</Quantity><Items><Header>*</Header></Items></AccessControlAllowHeaders>\
    <AccessControlAllowMethods><Quantity>1</Quantity><Items><Method>ALL</Method></Items></AccessControlAllowMethods>\
    <AccessControlAllowOrigins><Quantity>1</Quantity><Items><Origin>*</Origin></Items></AccessControlAllowOrigins>\
    <OriginOverride>false</OriginOverride></CorsConfig>";

const PREFLIGHT_CORS: &str = "<CorsConfig><AccessControlAllowCredentials>false</AccessControlAllowCredentials>\
    <AccessControlAllowHeaders><Quantity>1</Quantity><Items><Header>*</Header></Items></AccessControlAllowHeaders>\
    <AccessControlAllowMethods><Quantity>7</Quantity><Items><Method>DELETE</Method><Method>GET</Method><Method>HEAD</Method><Method>OPTIONS</Method><Method>PATCH</Method><Method>POST</Method><Method>PUT</Method></Items></AccessControlAllowMethods>\
    <AccessControlAllowOrigins><Quantity>1</Quantity><Items><Origin>*</Origin></Items></AccessControlAllowOrigins>\
    <AccessControlExposeHeaders><Quantity>1</Quantity><Items><Header>*</Header></Items></AccessControlExposeHeaders>\
    <OriginOverride>false</OriginOverride></CorsConfig>";

/// The managed response headers policies: id, name, comment and settings,
/// as AWS's guide ("Use managed response headers policies") describes them.
const MANAGED: [(&str, &str, &str, &[&str]); 5] = [
    (
        "e61eb60c-9c35-4d20-a928-2b84e02af89c",
        "Managed-CORS-and-SecurityHeadersPolicy",
        "Allows all origins for simple CORS requests, and adds security headers",
        &[SIMPLE_CORS, SECURITY],
    ),
    (
        "5cc3b908-e619-4b99-88e5-2cf7f45965bd",
        "Managed-CORS-With-Preflight",
        "Allows all origins for CORS requests, including preflight requests",
        &[PREFLIGHT_CORS],
    ),
    (
        "eaab4381-ed33-4a86-88ca-d9558dc6cd63",
        "Managed-CORS-with-preflight-and-SecurityHeadersPolicy",
        "Allows all origins for CORS requests, including preflight requests, and adds security headers",
        &[PREFLIGHT_CORS, SECURITY],
    ),
    (
        "67f7725c-6f97-4210-82d7-5512b31e9d03",
        "Managed-SecurityHeadersPolicy",
        "Adds a set of security headers to every response",
        &[SECURITY],
    ),
    (
        "60669652-455b-4ae9-85a4-c4c02393f86c",
        "Managed-SimpleCORS",
        "Allows all origins for simple CORS requests",
        &[SIMPLE_CORS],
    ),
];

fn managed() -> Vec<(&'static str, Element)> {
    MANAGED
        .iter()
        .map(|(id, name, comment, parts)| {
            let text = format!(
                "<ResponseHeadersPolicyConfig><Comment>{comment}</Comment><Name>{name}</Name>{}</ResponseHeadersPolicyConfig>",
                parts.concat()
            );
            let config = Element::parse(text.as_bytes(), "ResponseHeadersPolicyConfig").expect("a managed policy is well-formed");
            (*id, config)
        })
        .collect()
}

const METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"];

const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

/// Headers a policy may neither set nor remove: they frame the message or
/// are keyfront's own account of it.
const FRAMING: [&str; 7] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "content-range",
    "content-encoding",
    "date",
    "x-cache",
];

fn boolean(element: &Element, name: &str) -> bool {
    element.text_of(name) == Some("true")
}

fn texts<'a>(element: &'a Element, list: &str) -> Vec<&'a str> {
    element
        .child(list)
        .into_iter()
        .flat_map(Element::items)
        .map(|item| item.text.as_str())
        .collect()
}

/// What a policy lays over each answer: CORS for the edge's CORS phase,
/// and the other headers to set (each overriding the origin's or not) and
/// to remove. `Err` names the first field no answer could carry.
pub fn compile(config: &Element) -> Result<(Option<CorsPolicy>, HeaderRules), ApiError> {
    let mut rules = HeaderRules::default();
    let mut set = |name: &str, value: String, part: &Element| -> Result<(), ApiError> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| ApiError::invalid(format!("{name:?} is not a header name")))?;
        if FRAMING.contains(&name.as_str()) {
            return Err(ApiError::invalid(format!("a response headers policy cannot set {name}")));
        }
        let value = HeaderValue::from_str(&value).map_err(|_| ApiError::invalid(format!("{value:?} is not a value of {name}")))?;
        rules.set.push((name, value, boolean(part, "Override")));
        Ok(())
    };
    if let Some(security) = config.child("SecurityHeadersConfig") {
        if let Some(part) = security.child("ContentTypeOptions") {
            set("x-content-type-options", "nosniff".into(), part)?;
        }
        if let Some(part) = security.child("FrameOptions") {
            let option = part.text_of("FrameOption").unwrap_or("");
            if !matches!(option, "DENY" | "SAMEORIGIN") {
                return Err(ApiError::invalid(format!("FrameOption {option:?} is not DENY or SAMEORIGIN")));
            }
            set("x-frame-options", option.into(), part)?;
        }
        if let Some(part) = security.child("ReferrerPolicy") {
            let policy = part.text_of("ReferrerPolicy").unwrap_or("");
            if !REFERRER_POLICIES.contains(&policy) {
                return Err(ApiError::invalid(format!(
                    "ReferrerPolicy {policy:?} is not one of {REFERRER_POLICIES:?}"
                )));
            }
            set("referrer-policy", policy.into(), part)?;
        }
        if let Some(part) = security.child("StrictTransportSecurity") {
            let age = part.text_of("AccessControlMaxAgeSec").unwrap_or("");
            let age: u64 = age
                .parse()
                .map_err(|_| ApiError::invalid(format!("StrictTransportSecurity: AccessControlMaxAgeSec {age:?}")))?;
            let mut value = format!("max-age={age}");
            if boolean(part, "IncludeSubdomains") {
                value += "; includeSubDomains";
            }
            if boolean(part, "Preload") {
                value += "; preload";
            }
            set("strict-transport-security", value, part)?;
        }
        if let Some(part) = security.child("XSSProtection") {
            let mut value = if boolean(part, "Protection") { "1" } else { "0" }.to_owned();
            if boolean(part, "Protection") && boolean(part, "ModeBlock") {
                value += "; mode=block";
            }
            if let Some(uri) = part.text_of("ReportUri").filter(|uri| !uri.is_empty()) {
                value += &format!("; report={uri}");
            }
            set("x-xss-protection", value, part)?;
        }
        if let Some(part) = security.child("ContentSecurityPolicy") {
            set(
                "content-security-policy",
                part.text_of("ContentSecurityPolicy").unwrap_or("").into(),
                part,
            )?;
        }
    }
    for header in config.child("CustomHeadersConfig").into_iter().flat_map(Element::items) {
        set(
            header.text_of("Header").unwrap_or(""),
            header.text_of("Value").unwrap_or("").into(),
            header,
        )?;
    }
    for header in config.child("RemoveHeadersConfig").into_iter().flat_map(Element::items) {
        let name = header.text_of("Header").unwrap_or("");
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| ApiError::invalid(format!("{name:?} is not a header name")))?;
        if FRAMING.contains(&name.as_str()) {
            return Err(ApiError::invalid(format!("a response headers policy cannot remove {name}")));
        }
        rules.remove.push(name);
    }
    if let Some(timing) = config.child("ServerTimingHeadersConfig") {
        rules.server_timing_per_million = server_timing(timing)?;
    }
    let cors = config.child("CorsConfig").map(cors).transpose()?;
    Ok((cors, rules))
}

/// A `ServerTimingHeadersConfig`'s share of answers, per million: its
/// `SamplingRate` (a percentage, 0 to 100, at most four decimals) when
/// enabled.
fn server_timing(config: &Element) -> Result<u32, ApiError> {
    let rate = config.text_of("SamplingRate");
    let per_million = match rate {
        None => None,
        Some(rate) => {
            let (whole, decimals) = rate.split_once('.').unwrap_or((rate, ""));
            let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
            let parsed = (!whole.is_empty() && digits(whole) && digits(decimals) && decimals.len() <= 4 && whole.len() <= 3)
                .then(|| {
                    whole
                        .parse::<u32>()
                        .ok()
                        .map(|whole| whole * 10_000 + format!("{decimals:0<4}").parse::<u32>().unwrap_or(0))
                })
                .flatten()
                .filter(|per_million| *per_million <= 1_000_000);
            Some(parsed.ok_or_else(|| {
                ApiError::invalid(format!(
                    "SamplingRate {rate:?} is not a percentage from 0 to 100 with at most four decimals"
                ))
            })?)
        }
    };
    match (boolean(config, "Enabled"), per_million) {
        (true, Some(per_million)) => Ok(per_million),
        (true, None) => Err(ApiError::invalid("ServerTimingHeadersConfig needs a SamplingRate when Enabled")),
        (false, _) => Ok(0),
    }
}

fn cors(config: &Element) -> Result<CorsPolicy, ApiError> {
    let origins = texts(config, "AccessControlAllowOrigins");
    let methods = texts(config, "AccessControlAllowMethods");
    if origins.is_empty() || methods.is_empty() {
        return Err(ApiError::invalid(
            "CorsConfig needs AccessControlAllowOrigins and AccessControlAllowMethods",
        ));
    }
    if let Some(method) = methods.iter().find(|method| **method != "ALL" && !METHODS.contains(method)) {
        return Err(ApiError::invalid(format!("{method:?} is not a method CloudFront answers CORS for")));
    }
    let any_origin = origins.contains(&"*");
    if any_origin && boolean(config, "AccessControlAllowCredentials") {
        return Err(ApiError::invalid("AccessControlAllowCredentials cannot go with the origin *"));
    }
    let age = match config.text_of("AccessControlMaxAgeSec") {
        Some(age) => age
            .parse()
            .map_err(|_| ApiError::invalid(format!("AccessControlMaxAgeSec {age:?}")))?,
        None => 600,
    };
    Ok(CorsPolicy {
        allowed_origins: (!any_origin).then(|| origins.iter().map(|origin| (*origin).to_owned()).collect()),
        allowed_methods: if methods.contains(&"ALL") {
            METHODS.join(", ")
        } else {
            methods.join(", ")
        },
        allowed_headers: texts(config, "AccessControlAllowHeaders")
            .into_iter()
            .map(str::to_ascii_lowercase)
            .collect(),
        max_age: Duration::from_secs(age),
        allow_credentials: boolean(config, "AccessControlAllowCredentials"),
    })
}

/// Refuses a config that is not a response headers policy CloudFront would take.
fn validate(config: &Element, _: &State) -> Result<(), ApiError> {
    check_name(config, &managed(), "ResponseHeadersPolicyAlreadyExists")?;
    compile(config).map(|_| ())
}

pub const RESPONSE_HEADERS_POLICIES: PolicyType = PolicyType {
    kind: Kind {
        resource: "ResponseHeadersPolicy",
        config: "ResponseHeadersPolicyConfig",
        path: "response-headers-policy",
        time: Some("LastModifiedTime"),
        derived: None,
        list: "ResponseHeadersPolicyList",
        marker_in_list: false,
        not_found: "NoSuchResponseHeadersPolicy",
        already_exists: "ResponseHeadersPolicyAlreadyExists",
        in_use: "ResponseHeadersPolicyInUse",
        collection: |state| &mut state.response_headers_policies,
        resources: |state| &state.response_headers_policies,
        new_id: random_uuid,
        quota: (20, "TooManyResponseHeadersPolicies"),
        validate,
        check_update: |_, _| Ok(()),
        used_by: |state, id| RESPONSE_HEADERS_POLICIES.used_by(state, id),
        summary: |id, resource| RESPONSE_HEADERS_POLICIES.summary("custom", id, resource),
    },
    managed,
    summary: "ResponseHeadersPolicySummary",
    behavior_field: "ResponseHeadersPolicyId",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(rules: &'a HeaderRules, name: &str) -> Option<(&'a str, bool)> {
        rules
            .set
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, o)| (v.to_str().unwrap(), *o))
    }

    #[test]
    fn the_security_headers_policy_sets_what_browsers_read() {
        let state = State::default();
        let config = RESPONSE_HEADERS_POLICIES
            .config(&state, "67f7725c-6f97-4210-82d7-5512b31e9d03")
            .unwrap();
        let (cors, rules) = compile(&config).unwrap();
        assert!(cors.is_none());
        assert_eq!(value(&rules, "strict-transport-security"), Some(("max-age=31536000", false)));
        assert_eq!(value(&rules, "x-frame-options"), Some(("SAMEORIGIN", false)));
        assert_eq!(value(&rules, "x-content-type-options"), Some(("nosniff", false)));
        assert_eq!(value(&rules, "x-xss-protection"), Some(("1; mode=block", false)));
        assert_eq!(value(&rules, "referrer-policy"), Some(("strict-origin-when-cross-origin", false)));
        let preflight = RESPONSE_HEADERS_POLICIES
            .config(&state, "5cc3b908-e619-4b99-88e5-2cf7f45965bd")
            .unwrap();
        let cors = compile(&preflight).unwrap().0.unwrap();
        assert_eq!(cors.allowed_origins, None);
        assert!(cors.allowed_methods.contains("PATCH"));
    }

    #[test]
    fn hostile_headers_and_values_are_refused() {
        let policy = |inner: &str| {
            let text = format!("<ResponseHeadersPolicyConfig><Name>p</Name>{inner}</ResponseHeadersPolicyConfig>");
            Element::parse(text.as_bytes(), "ResponseHeadersPolicyConfig").unwrap()
        };
        let custom = |name: &str, value: &str| {
            policy(&format!(
                "<CustomHeadersConfig><Quantity>1</Quantity><Items><ResponseHeadersPolicyCustomHeader><Header>{name}</Header><Value>{value}</Value><Override>true</Override></ResponseHeadersPolicyCustomHeader></Items></CustomHeadersConfig>"
            ))
        };
        assert!(compile(&custom("x-served-by", "keyfront")).is_ok());
        for hostile in [
            custom("content-length", "0"),
            custom("x-cache", "Hit from cloudfront"),
            custom("bad header", "x"),
            custom("x-ok", "line&#10;break"),
            policy(
                "<RemoveHeadersConfig><Quantity>1</Quantity><Items><ResponseHeadersPolicyRemoveHeader><Header>transfer-encoding</Header></ResponseHeadersPolicyRemoveHeader></Items></RemoveHeadersConfig>",
            ),
            policy(
                "<SecurityHeadersConfig><FrameOptions><FrameOption>ALLOW</FrameOption><Override>true</Override></FrameOptions></SecurityHeadersConfig>",
            ),
            policy(
                "<CorsConfig><AccessControlAllowCredentials>true</AccessControlAllowCredentials><AccessControlAllowMethods><Quantity>1</Quantity><Items><Method>GET</Method></Items></AccessControlAllowMethods><AccessControlAllowOrigins><Quantity>1</Quantity><Items><Origin>*</Origin></Items></AccessControlAllowOrigins></CorsConfig>",
            ),
        ] {
            assert!(compile(&hostile).is_err_and(|e| e.code == "InvalidArgument"), "{hostile:?}");
        }
    }
}
