//! CORS for browser players, as CloudFront's response headers policies do it:
//! preflights answered by the edge without a signature, and the CORS headers
//! on every response to an allowed origin (errors included, so a player can
//! read why it was refused).

use http::{HeaderName, HeaderValue};

use crate::config::CorsPolicy;

/// What players need to read from ranged responses.
const EXPOSED: &str = "Content-Range, Content-Length, Accept-Ranges, ETag, Age, X-Cache";

pub type Headers = Vec<(HeaderName, HeaderValue)>;

fn header(name: &'static str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((HeaderName::from_static(name), HeaderValue::from_str(value).ok()?))
}

/// `Access-Control-Allow-Origin`'s value for `origin`, if it is allowed.
fn allowed_origin(policy: &CorsPolicy, origin: &str) -> Option<String> {
    match &policy.allowed_origins {
        None => Some("*".to_owned()),
        Some(list) => list.iter().any(|allowed| allowed == origin).then(|| origin.to_owned()),
    }
}

fn common_headers(policy: &CorsPolicy, allow: &str) -> Headers {
    let mut headers: Headers = [header("access-control-allow-origin", allow), header("vary", "Origin")]
        .into_iter()
        .flatten()
        .collect();
    if policy.allow_credentials {
        headers.extend(header("access-control-allow-credentials", "true"));
    }
    headers
}

/// The CORS headers for a response to a request from `origin`, if allowed.
pub fn response_headers(policy: &CorsPolicy, origin: &str) -> Option<Headers> {
    let allow = allowed_origin(policy, origin)?;
    let mut headers = common_headers(policy, &allow);
    headers.extend(header("access-control-expose-headers", EXPOSED));
    Some(headers)
}

/// The answer to a preflight: `Some(headers)` for 204, `None` for 403.
pub fn preflight_headers(policy: &CorsPolicy, origin: &str, method: &str, requested_headers: Option<&str>) -> Option<Headers> {
    let allow = allowed_origin(policy, origin)?;
    if !policy.allowed_methods.split(", ").any(|m| m == method) {
        return None;
    }
    let asked: Vec<String> = requested_headers
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let any_header = policy.allowed_headers.iter().any(|h| h == "*");
    if !any_header && asked.iter().any(|h| !policy.allowed_headers.contains(h)) {
        return None;
    }
    let mut headers = common_headers(policy, &allow);
    headers.extend(header("access-control-allow-methods", &policy.allowed_methods));
    headers.extend(header("access-control-allow-headers", &policy.allowed_headers.join(", ")));
    headers.extend(header("access-control-max-age", &policy.max_age.as_secs().to_string()));
    Some(headers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(origins: Option<Vec<&str>>) -> CorsPolicy {
        CorsPolicy {
            allowed_origins: origins.map(|list| list.into_iter().map(String::from).collect()),
            allowed_methods: "GET, HEAD".into(),
            allowed_headers: vec!["range".into(), "if-range".into()],
            max_age: Duration::from_secs(600),
            allow_credentials: false,
        }
    }

    fn value<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn listed_origins_are_echoed_and_others_get_nothing() {
        let listed = policy(Some(vec!["https://app.example.com"]));
        let headers = response_headers(&listed, "https://app.example.com").unwrap();
        assert_eq!(value(&headers, "access-control-allow-origin"), Some("https://app.example.com"));
        assert!(value(&headers, "access-control-expose-headers").unwrap().contains("Content-Range"));
        assert!(response_headers(&listed, "https://evil.example.com").is_none());
        assert_eq!(
            value(
                &response_headers(&policy(None), "https://any.example").unwrap(),
                "access-control-allow-origin"
            ),
            Some("*")
        );
    }

    #[test]
    fn preflights_check_method_and_headers() {
        let any = policy(None);
        let ok = preflight_headers(&any, "https://a.example", "GET", Some("Range, If-Range")).unwrap();
        assert_eq!(value(&ok, "access-control-max-age"), Some("600"));
        assert_eq!(value(&ok, "access-control-allow-methods"), Some("GET, HEAD"));
        assert!(preflight_headers(&any, "https://a.example", "PUT", None).is_none());
        assert!(preflight_headers(&any, "https://a.example", "GET", Some("x-secret")).is_none());
    }
}
