//! CloudFront policies: the canned policy CloudFront rebuilds from the URL, the
//! custom policy a signer sends, and the conditions both put on a request.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::encoding::{JsonEscape, push_json_string};
use crate::request::canonical_resource;

/// The largest policy document read (decoded). A signed URL's is at most
/// about 6 KiB (CloudFront's 8,192-byte URL limit); cookies allow more.
pub const MAX_POLICY_BYTES: usize = 16 * 1024;
/// The deepest nesting of objects and arrays read; a valid policy has 5
/// (policy, Statement array, statement, Condition, condition).
const MAX_POLICY_DEPTH: usize = 8;

/// The largest epoch CloudFront accepts; larger values are milliseconds by mistake.
pub const MAX_EPOCH: u64 = 2_147_483_647;

/// A policy's statement, as keyfront evaluates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// What URLs the policy covers; `None` covers every URL. For a custom policy
    /// this may hold `*` and `?` wildcards; a canned policy's is its URL, literal.
    pub resource: Option<String>,
    /// Whether `resource` holds wildcards (custom policy) or is literal (canned).
    pub resource_is_pattern: bool,
    /// Requests are allowed strictly before this Unix time (seconds).
    pub date_less_than: u64,
    /// Requests are allowed from this Unix time (seconds) on, when set.
    pub date_greater_than: Option<u64>,
    /// The viewer's address must be in this range, when set.
    pub source_ip: Option<IpNet>,
}

/// Why a request does not satisfy a policy that was validly signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditionFailure {
    /// The policy's `DateLessThan` has passed.
    Expired { date_less_than: u64, now: u64 },
    /// The policy's `DateGreaterThan` has not yet come.
    NotYetValid { date_greater_than: u64, now: u64 },
    /// The viewer's address is outside `AWS:SourceIp` (or unknown).
    IpNotAllowed { allowed: IpNet, client_ip: Option<IpAddr> },
    /// The policy's Resource does not cover the URL.
    ResourceMismatch { resource: String, url: String },
}

impl Policy {
    /// The canned policy for `url` expiring at `expires`.
    pub fn canned(url: &str, expires: u64) -> Self {
        Self {
            resource: Some(url.to_owned()),
            resource_is_pattern: false,
            date_less_than: expires,
            date_greater_than: None,
            source_ip: None,
        }
    }

    /// Checks the request against every condition, in the order a person
    /// debugging a URL would want them reported: resource, then time, then IP.
    pub fn check(&self, url: &str, now: u64, client_ip: Option<IpAddr>) -> Result<(), ConditionFailure> {
        if let Some(resource) = &self.resource {
            let covered = if self.resource_is_pattern {
                wildcard_matches(resource.as_bytes(), url.as_bytes())
            } else {
                resource == url
            };
            if !covered {
                return Err(ConditionFailure::ResourceMismatch {
                    resource: resource.clone(),
                    url: url.to_owned(),
                });
            }
        }
        if now >= self.date_less_than {
            return Err(ConditionFailure::Expired {
                date_less_than: self.date_less_than,
                now,
            });
        }
        if let Some(start) = self.date_greater_than
            && now < start
        {
            return Err(ConditionFailure::NotYetValid {
                date_greater_than: start,
                now,
            });
        }
        if let Some(allowed) = self.source_ip {
            // An IPv4 viewer reached over an IPv6 socket arrives as ::ffff:a.b.c.d.
            let client = client_ip.map(|ip| match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            });
            if !client.is_some_and(|ip| allowed.contains(&ip)) {
                return Err(ConditionFailure::IpNotAllowed { allowed, client_ip });
            }
        }
        Ok(())
    }
}

/// CloudFront's Resource wildcards: `*` matches any run of characters (also
/// empty), `?` exactly one; everything else literally, case-sensitively.
/// Linear memory, and at worst pattern x text steps on adversarial input;
/// patterns come from signed policies and both sides are length-limited.
pub fn wildcard_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Why a custom policy document is malformed (CloudFront's `MalformedPolicy`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(String),
}

fn shape(message: impl Into<String>) -> PolicyError {
    PolicyError::Shape(message.into())
}

/// Parses a custom policy document, as CloudFront reads it: one statement (as
/// an array of one or a bare object), optional `Resource`, `DateLessThan`
/// required, `DateGreaterThan` and `IpAddress` optional. Conditions keyfront
/// does not know are refused rather than ignored, so a policy never grants
/// more than its signer meant.
pub fn parse_custom_policy(document: &[u8]) -> Result<Policy, PolicyError> {
    if document.len() > MAX_POLICY_BYTES {
        return Err(shape(format!("the policy is {} bytes, over {MAX_POLICY_BYTES}", document.len())));
    }
    if nesting_depth(document) > MAX_POLICY_DEPTH {
        return Err(shape(format!("the policy nests deeper than {MAX_POLICY_DEPTH} levels")));
    }
    let root: Value = serde_json::from_slice(document).map_err(|e| PolicyError::Json(e.to_string()))?;
    let root = root.as_object().ok_or_else(|| shape("the policy is not a JSON object"))?;
    only_keys(root, &["Statement"], "policy")?;
    let statement = match root.get("Statement") {
        Some(Value::Array(statements)) if statements.len() == 1 => &statements[0],
        Some(Value::Array(statements)) => {
            return Err(shape(format!(
                "Statement holds {} statements; exactly one is allowed",
                statements.len()
            )));
        }
        Some(single @ Value::Object(_)) => single,
        Some(_) => return Err(shape("Statement is neither an array nor an object")),
        None => return Err(shape("Statement is missing")),
    };
    let statement = statement.as_object().ok_or_else(|| shape("the statement is not an object"))?;
    only_keys(statement, &["Resource", "Condition"], "Statement")?;
    let resource = match statement.get("Resource") {
        None => None,
        Some(Value::String(resource)) => Some(canonical_resource(resource)),
        Some(_) => return Err(shape("Resource is not a string")),
    };
    let condition = statement
        .get("Condition")
        .and_then(Value::as_object)
        .ok_or_else(|| shape("Condition is missing or not an object"))?;
    only_keys(condition, &["DateLessThan", "DateGreaterThan", "IpAddress"], "Condition")?;
    let date_less_than = match condition.get("DateLessThan") {
        Some(value) => epoch(value, "DateLessThan")?,
        None => return Err(shape("Condition.DateLessThan is missing")),
    };
    let date_greater_than = condition.get("DateGreaterThan").map(|v| epoch(v, "DateGreaterThan")).transpose()?;
    let source_ip = condition.get("IpAddress").map(source_ip).transpose()?;
    Ok(Policy {
        resource,
        resource_is_pattern: true,
        date_less_than,
        date_greater_than,
        source_ip,
    })
}

/// The deepest nesting of objects and arrays in `document`, counted without
/// parsing it (brackets inside strings do not count).
fn nesting_depth(document: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &byte in document {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn only_keys(object: &Map<String, Value>, allowed: &[&str], place: &str) -> Result<(), PolicyError> {
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(shape(format!("{place} has an unknown key {key:?}"))),
        None => Ok(()),
    }
}

fn epoch(value: &Value, name: &str) -> Result<u64, PolicyError> {
    let inner = value.as_object().ok_or_else(|| shape(format!("{name} is not an object")))?;
    only_keys(inner, &["AWS:EpochTime"], name)?;
    let seconds = inner
        .get("AWS:EpochTime")
        .and_then(Value::as_u64)
        .ok_or_else(|| shape(format!("{name}.AWS:EpochTime is missing or not a whole number")))?;
    if seconds > MAX_EPOCH {
        return Err(shape(format!(
            "{name}.AWS:EpochTime {seconds} is above {MAX_EPOCH} (milliseconds instead of seconds?)"
        )));
    }
    Ok(seconds)
}

fn source_ip(value: &Value) -> Result<IpNet, PolicyError> {
    let inner = value.as_object().ok_or_else(|| shape("IpAddress is not an object"))?;
    only_keys(inner, &["AWS:SourceIp"], "IpAddress")?;
    let text = inner
        .get("AWS:SourceIp")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("IpAddress.AWS:SourceIp is missing or not a string"))?;
    parse_ip_range(text).ok_or_else(|| shape(format!("IpAddress.AWS:SourceIp {text:?} is not an address range")))
}

/// Parses `a.b.c.d/nn` (or IPv6 `x::/nn`); a bare address means that address alone.
pub fn parse_ip_range(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The policy bytes CloudFront rebuilds for a canned-policy request and signers
/// sign: `{"Statement":[{"Resource":"URL","Condition":{"DateLessThan":{"AWS:EpochTime":N}}}]}`.
pub fn canned_policy_document(url: &str, expires: u64, escape: JsonEscape) -> String {
    let mut out = String::with_capacity(url.len() + 96);
    out.push_str(r#"{"Statement":[{"Resource":"#);
    push_json_string(&mut out, url, escape);
    out.push_str(r#","Condition":{"DateLessThan":{"AWS:EpochTime":"#);
    out.push_str(&expires.to_string());
    out.push_str("}}}]}");
    out
}

/// A custom policy written exactly as botocore's `CloudFrontSigner.build_policy`
/// (and so the AWS CLI) writes it: no whitespace, `Resource` before `Condition`,
/// conditions in the order `DateLessThan`, `IpAddress`, `DateGreaterThan`,
/// non-ASCII escaped.
pub fn aws_custom_policy_document(resource: &str, date_less_than: u64, date_greater_than: Option<u64>, source_ip: Option<&str>) -> String {
    let mut out = String::with_capacity(resource.len() + 160);
    out.push_str(r#"{"Statement":[{"Resource":"#);
    push_json_string(&mut out, resource, JsonEscape::AsciiOnly);
    out.push_str(r#","Condition":{"DateLessThan":{"AWS:EpochTime":"#);
    out.push_str(&date_less_than.to_string());
    out.push('}');
    if let Some(ip) = source_ip {
        out.push_str(r#","IpAddress":{"AWS:SourceIp":"#);
        push_json_string(&mut out, ip, JsonEscape::AsciiOnly);
        out.push('}');
    }
    if let Some(start) = date_greater_than {
        out.push_str(r#","DateGreaterThan":{"AWS:EpochTime":"#);
        out.push_str(&start.to_string());
        out.push('}');
    }
    out.push_str("}}]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "https://h/anything?x=1", true),
            ("https://h/*", "https://h/", true),
            ("https://h/*", "https://h/a/b/c.mp4", true),
            ("https://h/*", "http://h/a", false),
            ("*://h/a", "http://h/a", true),
            ("*://h/a", "https://h/a", true),
            ("https://h/a/*.mp4", "https://h/a/b/c.mp4", true),
            ("https://h/a/*.mp4", "https://h/a/c.mp3", false),
            ("https://h/a?.txt", "https://h/a1.txt", true),
            ("https://h/a?.txt", "https://h/a.txt", false),
            ("https://h/a?.txt", "https://h/a12.txt", false),
            ("https://h/A.txt", "https://h/a.txt", false),
            ("https://h/a*", "https://h/a?q=1", true),
            ("https://h/a", "https://h/a?q=1", false),
            ("https://h/*/*/x", "https://h/1/2/x", true),
            ("https://h/*/*/x", "https://h/1/x", false),
            ("**", "", true),
            ("?", "", false),
            ("https://h/a*b*c", "https://h/aXbYbZc", true),
            ("https://h/a*b*c", "https://h/aXbYbZ", false),
        ];
        for (pattern, url, expected) in cases {
            assert_eq!(
                wildcard_matches(pattern.as_bytes(), url.as_bytes()),
                *expected,
                "{pattern} vs {url}"
            );
        }
    }

    #[test]
    fn adversarial_wildcards_finish() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(8000);
        assert!(!wildcard_matches(pattern.as_bytes(), text.as_bytes()));
    }

    #[test]
    fn statement_may_be_an_array_of_one_or_an_object() {
        let array = br#"{"Statement":[{"Resource":"https://h/*","Condition":{"DateLessThan":{"AWS:EpochTime":100}}}]}"#;
        let object = br#"{ "Statement" : {"Condition":{"DateLessThan":{"AWS:EpochTime":100}},"Resource":"https://h/*"} }"#;
        assert_eq!(parse_custom_policy(array).unwrap(), parse_custom_policy(object).unwrap());
    }

    #[test]
    fn conditions_in_any_order_and_resource_optional() {
        let policy = parse_custom_policy(
            br#"{"Statement":[{"Condition":{"IpAddress":{"AWS:SourceIp":"10.0.0.0/8"},"DateGreaterThan":{"AWS:EpochTime":50},"DateLessThan":{"AWS:EpochTime":100}}}]}"#,
        )
        .unwrap();
        assert_eq!(policy.resource, None);
        assert_eq!(policy.date_greater_than, Some(50));
        assert_eq!(policy.source_ip, Some("10.0.0.0/8".parse().unwrap()));
    }

    #[test]
    fn malformed_policies() {
        let cases: &[&[u8]] = &[
            b"not json",
            b"[]",
            br#"{"Statement":[]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}},{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#,
            br#"{"Statement":[{"Resource":"x","Condition":{}}]}"#,
            br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":1700000000000}}}]}"#,
            br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":"1700000000"}}}]}"#,
            br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":1.5}}}]}"#,
            br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":-1}}}]}"#,
            br#"{"Statement":[{"Resource":7,"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#,
            br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":1},"StringLike":{}}}]}"#,
            br#"{"Statement":[{"Resource":"x","Condition":{"DateLessThan":{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":"nope"}}}]}"#,
            br#"{"Statement":[{"Resource":"x","Effect":"Allow","Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}"#,
        ];
        for case in cases {
            assert!(parse_custom_policy(case).is_err(), "{}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn oversize_and_deep_policies_are_refused_before_parsing() {
        let valid = |resource: &str| {
            format!(r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":1}}}}}}]}}"#)
        };
        assert!(parse_custom_policy(valid("https://h/*").as_bytes()).is_ok());
        let long = valid(&"a".repeat(MAX_POLICY_BYTES));
        assert!(matches!(parse_custom_policy(long.as_bytes()), Err(PolicyError::Shape(m)) if m.contains("bytes")));
        let deep = format!(
            r#"{{"Statement":[{{"Resource":{}1{},"Condition":{{}}}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let deep = &deep.as_bytes()[..MAX_POLICY_BYTES.min(deep.len())];
        assert!(matches!(parse_custom_policy(deep), Err(PolicyError::Shape(m)) if m.contains("nests")));
        let brackets_in_strings = valid(&"[{".repeat(20));
        assert!(
            parse_custom_policy(brackets_in_strings.as_bytes()).is_ok(),
            "brackets inside strings do not nest"
        );
    }

    #[test]
    fn resources_are_held_in_canonical_spelling() {
        let policy = |resource: &str| {
            let document = format!(r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":9}}}}}}]}}"#);
            parse_custom_policy(document.as_bytes()).unwrap()
        };
        let covers = |resource: &str, url: &str| policy(resource).check(url, 1, None).is_ok();
        assert!(covers("https://h/%70riv/*", "https://h/priv/a.mp4"));
        assert!(covers("https://h/a+b/*", "https://h/a%2Bb/c"));
        assert!(covers("https://h/my file.pdf", "https://h/my%20file.pdf"));
        assert!(!covers("https://h/lit%2A", "https://h/litX"), "an escaped star is no wildcard");
        assert!(covers("https://h/lit%2A", "https://h/lit%2A"));
    }

    #[test]
    fn every_condition_is_checked() {
        let policy = Policy {
            resource: Some("https://h/v/*".into()),
            resource_is_pattern: true,
            date_less_than: 100,
            date_greater_than: Some(50),
            source_ip: parse_ip_range("192.0.2.0/24"),
        };
        let inside: IpAddr = "192.0.2.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        let outside: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(policy.check("https://h/v/a", 60, Some(inside)), Ok(()));
        assert_eq!(policy.check("https://h/v/a", 60, Some(mapped)), Ok(()));
        assert_eq!(policy.check("https://h/v/a", 50, Some(inside)), Ok(()));
        assert!(matches!(
            policy.check("https://h/v/a", 100, Some(inside)),
            Err(ConditionFailure::Expired { .. })
        ));
        assert!(matches!(
            policy.check("https://h/v/a", 49, Some(inside)),
            Err(ConditionFailure::NotYetValid { .. })
        ));
        assert!(matches!(
            policy.check("https://h/v/a", 60, Some(outside)),
            Err(ConditionFailure::IpNotAllowed { .. })
        ));
        assert!(matches!(
            policy.check("https://h/v/a", 60, None),
            Err(ConditionFailure::IpNotAllowed { .. })
        ));
        assert!(matches!(
            policy.check("https://h/w/a", 60, Some(inside)),
            Err(ConditionFailure::ResourceMismatch { .. })
        ));
    }

    #[test]
    fn ipv6_ranges_are_accepted() {
        let policy = Policy {
            source_ip: parse_ip_range("2001:db8::/32"),
            ..Policy::canned("u", 100)
        };
        assert_eq!(policy.check("u", 1, Some("2001:db8::1".parse().unwrap())), Ok(()));
        assert!(policy.check("u", 1, Some("2001:db9::1".parse().unwrap())).is_err());
    }

    #[test]
    fn canned_resource_is_literal() {
        let policy = Policy::canned("https://h/a*", 100);
        assert_eq!(policy.check("https://h/a*", 1, None), Ok(()));
        assert!(policy.check("https://h/abc", 1, None).is_err());
    }

    #[test]
    fn documents_are_written_like_botocore() {
        assert_eq!(
            canned_policy_document("https://h/a?b=1", 1700000000, JsonEscape::Required),
            r#"{"Statement":[{"Resource":"https://h/a?b=1","Condition":{"DateLessThan":{"AWS:EpochTime":1700000000}}}]}"#
        );
        assert_eq!(
            aws_custom_policy_document("https://h/*", 200, Some(100), Some("10.0.0.0/8")),
            r#"{"Statement":[{"Resource":"https://h/*","Condition":{"DateLessThan":{"AWS:EpochTime":200},"IpAddress":{"AWS:SourceIp":"10.0.0.0/8"},"DateGreaterThan":{"AWS:EpochTime":100}}}]}"#
        );
    }
}
