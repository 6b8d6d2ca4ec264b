//! A distribution's origins as the API takes them and the edge asks them:
//! S3 buckets (on the node's S3 endpoint, signed as origin access control
//! signs) and custom origins (HTTP servers of the user's, never signed),
//! both with the `CustomHeaders` CloudFront adds to every origin request.
//!
//! A custom origin lets an API client point the node at any host: it is
//! reachable only inside the networks the node's config names
//! (`control_api.custom_origin_networks`), checked on every connection.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::api::ApiError;
use super::distributions::s3_bucket;
use super::xml::Element;
use crate::origin::{CUSTOM_KEEPALIVE, Origin};

/// CloudFront's limits on `CustomHeaders`: headers per origin, and the
/// length of a name, of a value, and of all names and values together.
const MAX_CUSTOM_HEADERS: usize = 10;
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 1783;
const MAX_HEADERS_TOTAL: usize = 10_240;

/// Headers CloudFront will not add to origin requests (they frame or
/// route the request, or are its own); names starting with `x-amz-` or
/// `x-edge-` are refused as well.
const RESERVED_HEADERS: [&str; 23] = [
    "cache-control",
    "connection",
    "content-length",
    "cookie",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "max-forwards",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "request-range",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-real-ip",
    "x-forwarded-proto",
];

/// The statuses an origin group may fail over on (`FailoverCriteria`).
const FAILOVER_STATUSES: [u16; 8] = [400, 403, 404, 416, 500, 502, 503, 504];

/// An origin group: its two members' origin ids, first asked first, and
/// the statuses of the first that send a request to the second.
pub struct OriginGroup<'a> {
    pub first: &'a str,
    pub second: &'a str,
    pub statuses: Vec<u16>,
}

/// The origin group `id` names in `config`, if one does (checked by `check_groups`).
pub fn group<'a>(config: &'a Element, id: &str) -> Option<OriginGroup<'a>> {
    let group = config
        .child("OriginGroups")
        .into_iter()
        .flat_map(Element::items)
        .find(|group| group.text_of("Id") == Some(id))?;
    let members: Vec<&str> = group
        .child("Members")
        .into_iter()
        .flat_map(Element::items)
        .filter_map(|member| member.text_of("OriginId"))
        .collect();
    let statuses = group
        .at(&["FailoverCriteria", "StatusCodes"])
        .into_iter()
        .flat_map(Element::items)
        .map(|status| status.text.parse().ok())
        .collect::<Option<Vec<u16>>>()?;
    match members[..] {
        [first, second] => Some(OriginGroup { first, second, statuses }),
        _ => None,
    }
}

/// Refuses origin groups CloudFront refuses: each of two members naming
/// an origin of the distribution, a failover status CloudFront allows, an
/// id no origin has.
pub fn check_groups(config: &Element) -> Result<(), ApiError> {
    let origin_ids: Vec<&str> = config
        .child("Origins")
        .into_iter()
        .flat_map(Element::items)
        .filter_map(|origin| origin.text_of("Id"))
        .collect();
    for element in config.child("OriginGroups").into_iter().flat_map(Element::items) {
        let id = element.text_of("Id").unwrap_or("");
        let invalid = |what: String| ApiError::invalid(format!("origin group {id:?}: {what}"));
        if origin_ids.contains(&id) {
            return Err(invalid("an origin has the same Id".into()));
        }
        let group = group(config, id).ok_or_else(|| {
            invalid(format!(
                "needs two Members and FailoverCriteria StatusCodes among {FAILOVER_STATUSES:?}"
            ))
        })?;
        if let Some(status) = group.statuses.iter().find(|status| !FAILOVER_STATUSES.contains(status)) {
            return Err(invalid(format!(
                "FailoverCriteria status {status} is not one of {FAILOVER_STATUSES:?}"
            )));
        }
        if group.statuses.is_empty() {
            return Err(invalid("FailoverCriteria needs at least one status".into()));
        }
        for member in [group.first, group.second] {
            if !origin_ids.contains(&member) {
                return Err(ApiError::new(
                    404,
                    "NoSuchOrigin",
                    format!("origin group {id:?}: no origin {member:?}"),
                ));
            }
        }
        if group.first == group.second {
            return Err(invalid("its two Members are one origin".into()));
        }
    }
    Ok(())
}

/// How a custom origin is asked, from its `CustomOriginConfig`.
struct CustomOrigin<'a> {
    host: &'a str,
    port: u16,
    tls: bool,
    read_timeout: Duration,
    connect_timeout: Duration,
    keepalive_timeout: Duration,
}

/// Refuses an origin keyfront could not ask as CloudFront would; a custom
/// origin only where `networks` lets custom origins be reached at all.
pub fn check(origin: &Element, networks: &[IpNet]) -> Result<(), ApiError> {
    let id = origin.text_of("Id").unwrap_or("");
    custom_headers(origin)?;
    match origin.child("CustomOriginConfig") {
        Some(_) if networks.is_empty() => Err(ApiError::invalid(format!(
            "origin {id:?}: custom origins are disabled on this node (control_api.custom_origin_networks names no network)"
        ))),
        Some(_) => custom(origin).map(|_| ()),
        None if s3_bucket(origin.text_of("DomainName").unwrap_or("")).is_none() => Err(ApiError::invalid(
            "The parameter Origin DomainName does not refer to a valid S3 bucket.",
        )),
        None => Ok(()),
    }
}

/// The origin the edge asks for `origin`, every path under `key_prefix`:
/// `s3` rebased on its bucket, or the custom origin it names. `None` for
/// one the API would refuse (a state written before it did).
pub fn compile(origin: &Element, key_prefix: &str, s3: &Origin, networks: &Arc<[IpNet]>) -> Option<Origin> {
    let mut compiled = match origin.child("CustomOriginConfig") {
        Some(_) if networks.is_empty() => return None,
        Some(_) => {
            let custom = custom(origin).ok()?;
            let mut compiled = Origin::custom(custom.host, custom.port, custom.tls, key_prefix, networks.clone());
            compiled.first_byte_timeout = custom.read_timeout;
            compiled.connect_timeout = custom.connect_timeout;
            compiled.keepalive_timeout = custom.keepalive_timeout;
            compiled
        }
        None => s3.for_bucket(s3_bucket(origin.text_of("DomainName")?)?, key_prefix),
    };
    compiled.custom_headers = custom_headers(origin).ok()?;
    Some(compiled)
}

fn custom(origin: &Element) -> Result<CustomOrigin<'_>, ApiError> {
    let id = origin.text_of("Id").unwrap_or("");
    let invalid = |what: String| ApiError::invalid(format!("origin {id:?}: {what}"));
    let config = origin.child("CustomOriginConfig").expect("called for custom origins");
    let host = origin.text_of("DomainName").unwrap_or("");
    if !valid_host(host) {
        return Err(invalid(format!(
            "DomainName {host:?} must be a DNS name of a-z, A-Z, 0-9, '.', '-' and '_' (no scheme, port or path)"
        )));
    }
    let port = |name: &str| {
        let text = config.text_of(name).unwrap_or("");
        match text.parse::<u16>() {
            Ok(port @ (80 | 443 | 1024..)) => Ok(port),
            _ => Err(invalid(format!("CustomOriginConfig {name} {text:?} must be 80, 443 or 1024-65535"))),
        }
    };
    let (http_port, https_port) = (port("HTTPPort")?, port("HTTPSPort")?);
    // `match-viewer` asks over HTTP: the cache is shared by viewers of both
    // protocols, and keyfront asks for the first one's (README, "Known differences").
    let (port, tls) = match config.text_of("OriginProtocolPolicy").unwrap_or("") {
        "http-only" | "match-viewer" => (http_port, false),
        "https-only" => (https_port, true),
        other => {
            return Err(invalid(format!(
                "OriginProtocolPolicy {other:?} must be http-only, match-viewer or https-only"
            )));
        }
    };
    let seconds = |element: &Element, name: &str, default: u64, most: u64| match element.text_of(name) {
        None => Ok(Duration::from_secs(default)),
        Some(text) => match text.parse::<u64>() {
            Ok(value @ 1..) if value <= most => Ok(Duration::from_secs(value)),
            _ => Err(invalid(format!("{name} {text:?} must be 1 to {most} seconds"))),
        },
    };
    Ok(CustomOrigin {
        host,
        port,
        tls,
        read_timeout: seconds(config, "OriginReadTimeout", 30, 180)?,
        connect_timeout: seconds(origin, "ConnectionTimeout", 10, 10)?,
        keepalive_timeout: seconds(config, "OriginKeepaliveTimeout", CUSTOM_KEEPALIVE.as_secs(), 180)?,
    })
}

/// A host CloudFront accepts as a custom origin's DomainName.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-'])
        && !host.contains("..")
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The origin's `CustomHeaders`, as sent (names in lower case).
fn custom_headers(origin: &Element) -> Result<Vec<(String, String)>, ApiError> {
    let items: Vec<&Element> = origin.child("CustomHeaders").into_iter().flat_map(Element::items).collect();
    if items.len() > MAX_CUSTOM_HEADERS {
        return Err(ApiError::new(
            400,
            "TooManyOriginCustomHeaders",
            format!("an origin has at most {MAX_CUSTOM_HEADERS} custom headers"),
        ));
    }
    let mut headers = Vec::with_capacity(items.len());
    for item in items {
        let name = item.text_of("HeaderName").unwrap_or("");
        let value = item.text_of("HeaderValue").unwrap_or("");
        let lower = name.to_ascii_lowercase();
        let reserved = RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-amz-") || lower.starts_with("x-edge-");
        let well_formed = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && http::HeaderValue::from_str(value).is_ok()
            && name.len() <= MAX_HEADER_NAME
            && value.len() <= MAX_HEADER_VALUE;
        if reserved || !well_formed {
            return Err(ApiError::invalid(format!("The parameter HeaderName : {name} is not allowed.")));
        }
        if headers.iter().any(|(seen, _): &(String, String)| *seen == lower) {
            return Err(ApiError::invalid(format!("The parameter HeaderName : {name} is repeated.")));
        }
        headers.push((lower, value.to_owned()));
    }
    let total: usize = headers.iter().map(|(name, value)| name.len() + value.len()).sum();
    if total > MAX_HEADERS_TOTAL {
        return Err(ApiError::invalid(format!(
            "an origin's custom headers hold at most {MAX_HEADERS_TOTAL} characters; these hold {total}"
        )));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(xml: &str) -> Element {
        Element::parse(format!("<Origin><Id>app</Id>{xml}</Origin>").as_bytes(), "Origin").unwrap()
    }

    fn custom_origin(domain: &str, config: &str) -> Element {
        origin(&format!(
            "<DomainName>{domain}</DomainName><CustomOriginConfig>{config}</CustomOriginConfig>"
        ))
    }

    const HTTP: &str = "<HTTPPort>8080</HTTPPort><HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>http-only</OriginProtocolPolicy>";

    fn loopback() -> Arc<[IpNet]> {
        Arc::from(vec!["127.0.0.0/8".parse().unwrap()])
    }

    #[test]
    fn hostile_custom_origins_are_refused_with_the_field_named() {
        let networks = loopback();
        let refused = |origin: Element| check(&origin, &networks).unwrap_err().message;
        for host in ["evil.example/x", "user@host", "host:8080", "[::1]", "", "a..b", "-a", "http://a"] {
            assert!(refused(custom_origin(host, HTTP)).contains("DomainName"), "{host:?}");
        }
        for port in ["0", "22", "1023", "65536", "-1", "eighty", ""] {
            let config =
                format!("<HTTPPort>{port}</HTTPPort><HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>http-only</OriginProtocolPolicy>");
            assert!(refused(custom_origin("app.internal", &config)).contains("HTTPPort"), "{port:?}");
        }
        let policy = "<HTTPPort>80</HTTPPort><HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>HTTP-ONLY</OriginProtocolPolicy>";
        assert!(refused(custom_origin("app.internal", policy)).contains("OriginProtocolPolicy"));
        let slow = format!("{HTTP}<OriginReadTimeout>0</OriginReadTimeout>");
        assert!(refused(custom_origin("app.internal", &slow)).contains("OriginReadTimeout"));
        for keepalive in ["0", "181", "-1", "5s", ""] {
            let config = format!("{HTTP}<OriginKeepaliveTimeout>{keepalive}</OriginKeepaliveTimeout>");
            assert!(
                refused(custom_origin("app.internal", &config)).contains("OriginKeepaliveTimeout"),
                "{keepalive:?}"
            );
        }
        let disabled = check(&custom_origin("127.0.0.1", HTTP), &[]).unwrap_err();
        assert!(disabled.message.contains("custom_origin_networks"), "{}", disabled.message);
        assert!(compile(&custom_origin("127.0.0.1", HTTP), "", &s3(), &Arc::from(Vec::new())).is_none());
        assert!(refused(origin("<DomainName>app.internal</DomainName>")).contains("S3 bucket"));
    }

    #[test]
    fn custom_headers_that_would_reframe_or_reroute_a_request_are_refused() {
        let networks = loopback();
        let with_header = |name: &str, value: &str| {
            let header = format!(
                "<CustomHeaders><Quantity>1</Quantity><Items><OriginCustomHeader><HeaderName>{name}</HeaderName><HeaderValue>{value}</HeaderValue></OriginCustomHeader></Items></CustomHeaders>"
            );
            check(&origin(&format!("<DomainName>b.s3.amazonaws.com</DomainName>{header}")), &networks)
        };
        for name in [
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "X-Amz-Date",
            "x-edge-location",
            "Range",
            "bad name",
            "",
        ] {
            let error = with_header(name, "v").unwrap_err();
            assert_eq!(
                (error.code, error.message.contains("not allowed")),
                ("InvalidArgument", true),
                "{name:?}"
            );
        }
        assert!(
            with_header("X-Origin-Verify", "a&#10;Host: evil").is_err(),
            "a newline would split the header"
        );
        assert!(with_header("X-Origin-Verify", &"v".repeat(MAX_HEADER_VALUE + 1)).is_err());
        with_header("X-Origin-Verify", "s3cr3t").unwrap();
        let eleven: String = (0..11)
            .map(|i| format!("<OriginCustomHeader><HeaderName>x-h{i}</HeaderName><HeaderValue>v</HeaderValue></OriginCustomHeader>"))
            .collect();
        let many = origin(&format!(
            "<DomainName>b.s3.amazonaws.com</DomainName><CustomHeaders><Quantity>11</Quantity><Items>{eleven}</Items></CustomHeaders>"
        ));
        assert_eq!(check(&many, &networks).unwrap_err().code, "TooManyOriginCustomHeaders");
    }

    fn s3() -> Origin {
        Origin::embedded("127.0.0.1:9".parse().unwrap(), "media", "k", "secret")
    }

    #[test]
    fn a_custom_origin_is_asked_unsigned_with_its_host_its_port_and_its_headers() {
        let xml = custom_origin(
            "app.internal",
            "<HTTPPort>8080</HTTPPort><HTTPSPort>8443</HTTPSPort><OriginProtocolPolicy>https-only</OriginProtocolPolicy><OriginReadTimeout>7</OriginReadTimeout><OriginKeepaliveTimeout>2</OriginKeepaliveTimeout>",
        );
        let mut with_header = xml.clone();
        with_header.children.push(
            Element::parse(
                b"<CustomHeaders><Quantity>1</Quantity><Items><OriginCustomHeader><HeaderName>X-Origin-Verify</HeaderName><HeaderValue>s3cr3t</HeaderValue></OriginCustomHeader></Items></CustomHeaders>",
                "CustomHeaders",
            )
            .unwrap(),
        );
        let compiled = compile(&with_header, "/site", &s3(), &loopback()).unwrap();
        assert_eq!(
            (compiled.address.as_str(), compiled.host.as_str(), compiled.tls),
            ("app.internal:8443", "app.internal:8443", true)
        );
        assert_eq!(compiled.first_byte_timeout, Duration::from_secs(7));
        assert_eq!(compiled.keepalive_timeout, Duration::from_secs(2));
        let default = compile(&custom_origin("app.internal", HTTP), "", &s3(), &loopback()).unwrap();
        assert_eq!(default.keepalive_timeout, Duration::from_secs(5), "CloudFront's default");
        assert_eq!(compiled.object_path("/a%20b.html").unwrap(), "/site/a%20b.html");
        assert_eq!(compiled.custom_headers, [("x-origin-verify".to_owned(), "s3cr3t".to_owned())]);
        assert!(
            compiled
                .sign("GET", "/site/a", &[], std::time::SystemTime::now())
                .unwrap()
                .is_empty()
        );
        let bucket = compile(&origin("<DomainName>media.s3.amazonaws.com</DomainName>"), "", &s3(), &loopback()).unwrap();
        assert!(
            !bucket
                .sign("GET", "/media/a", &[], std::time::SystemTime::now())
                .unwrap()
                .is_empty()
        );
    }
}
