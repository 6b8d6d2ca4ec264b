//! CloudFront's event object in, and what a handler returns out: a changed
//! request, a response generated at the edge, or a changed response. Pure:
//! what is returned is checked here, and anything malformed refused (a 503
//! to the viewer, as CloudFront answers an invalid function result).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::request::cookie_pairs;

/// The viewer's request as a function sees it.
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The canonical path.
    pub uri: &'a str,
    /// The viewer's own query string (signing parameters removed).
    pub query: Option<&'a str>,
    /// Lower-case names, as received (`Cookie` among them).
    pub headers: Vec<(&'a str, &'a str)>,
    pub viewer_ip: Option<String>,
    pub distribution_id: &'a str,
    pub distribution_domain: &'a str,
    pub request_id: String,
}

/// The response about to go to the viewer, as a function sees it.
pub struct ResponseView<'a> {
    pub status: u16,
    pub headers: Vec<(&'a str, &'a str)>,
}

/// A viewer-request handler's changes to the request.
#[derive(Debug, PartialEq)]
pub struct RequestChanges {
    pub uri: String,
    pub query: Option<String>,
    /// The whole header set after the change, `cookie` rebuilt from the cookies.
    pub headers: Vec<(String, String)>,
}

/// A response a viewer-request handler made instead of the request.
#[derive(Debug, PartialEq)]
pub struct Generated {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A viewer-response handler's response.
#[derive(Debug, PartialEq)]
pub struct ResponseChanges {
    pub status: u16,
    /// The whole header set after the change, `set-cookie` included.
    pub headers: Vec<(String, String)>,
}

/// CloudFront's limit on a generated body.
const MAX_BODY_BYTES: usize = 40 * 1024;

/// `{"value": ...}` entries by name, a repeated name with `multiValue`.
fn values_by_name<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut map = Map::new();
    for (name, value) in pairs {
        match map.get_mut(name) {
            None => {
                map.insert(name.to_owned(), json!({ "value": value }));
            }
            Some(entry) => {
                let first = entry["value"].clone();
                let values = entry
                    .as_object_mut()
                    .expect("entries are objects")
                    .entry("multiValue")
                    .or_insert_with(|| json!([{ "value": first }]));
                values.as_array_mut().expect("multiValue is a list").push(json!({ "value": value }));
            }
        }
    }
    Value::Object(map)
}

fn cookies_of<'a>(headers: &[(&'a str, &'a str)]) -> impl Iterator<Item = (&'a str, &'a str)> {
    cookie_pairs(headers.iter().filter(|(name, _)| *name == "cookie").map(|(_, value)| *value))
}

fn request_object(request: &RequestView<'_>) -> Value {
    let query = request.query.unwrap_or("");
    let pairs = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")));
    json!({
        "method": request.method,
        "uri": request.uri,
        "querystring": values_by_name(pairs),
        "headers": values_by_name(request.headers.iter().filter(|(name, _)| *name != "cookie").copied()),
        "cookies": values_by_name(cookies_of(&request.headers)),
    })
}

fn context(request: &RequestView<'_>, event_type: &str) -> Value {
    json!({
        "distributionDomainName": request.distribution_domain,
        "distributionId": request.distribution_id,
        "eventType": event_type,
        "requestId": request.request_id,
    })
}

/// The viewer-request event for `request`.
pub fn request_event(request: &RequestView<'_>) -> Value {
    json!({
        "version": "1.0",
        "context": context(request, "viewer-request"),
        "viewer": { "ip": request.viewer_ip },
        "request": request_object(request),
    })
}

/// The viewer-response event for `response`, from the viewer-request
/// event of its request.
pub fn response_event(mut request_event: Value, response: &ResponseView<'_>) -> Value {
    let set_cookies = response
        .headers
        .iter()
        .filter(|(name, _)| *name == "set-cookie")
        .filter_map(|(_, value)| {
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, value) = pair.split_once('=')?;
            Some((
                name.trim().to_owned(),
                json!({ "value": value.trim(), "attributes": attributes.trim() }),
            ))
        });
    request_event["context"]["eventType"] = json!("viewer-response");
    request_event["response"] = json!({
        "statusCode": response.status,
        "statusDescription": http::StatusCode::from_u16(response.status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
        "headers": values_by_name(response.headers.iter().filter(|(name, _)| *name != "set-cookie").copied()),
        "cookies": Value::Object(set_cookies.collect()),
    });
    request_event
}

/// Each `(name, value)` of a headers or cookies object: `value`, then any
/// further `multiValue` entries. Names lower-cased; each name and value must
/// be one a header can carry.
fn entries(object: Option<&Value>, what: &str) -> Result<Vec<(String, String)>, String> {
    let Some(object) = object else {
        return Ok(Vec::new());
    };
    let object = object.as_object().ok_or_else(|| format!("{what} is not an object"))?;
    let mut pairs = Vec::new();
    for (name, entry) in object {
        let text = |value: &Value| {
            value
                .get("value")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{what}.{name} has no string value"))
        };
        let values = match entry.get("multiValue").and_then(Value::as_array) {
            Some(many) if !many.is_empty() => many.iter().map(text).collect::<Result<Vec<_>, _>>()?,
            _ => vec![text(entry)?],
        };
        for value in values {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(&value).is_err() {
                return Err(format!("{what}.{name} is not a header a message can carry"));
            }
            pairs.push((name.to_ascii_lowercase(), value));
        }
    }
    Ok(pairs)
}

fn status_of(value: &Value) -> Result<u16, String> {
    value
        .as_u64()
        .and_then(|status| u16::try_from(status).ok())
        .filter(|status| (200..=599).contains(status))
        .ok_or_else(|| format!("statusCode {value} is not a status from 200 to 599"))
}

/// What a viewer-request handler returned: the request to go on with, or
/// a response to answer with.
pub fn request_outcome(output: &Value) -> Result<Result<RequestChanges, Generated>, String> {
    let object = output.as_object().ok_or_else(|| "the handler returned no object".to_owned())?;
    if let Some(status) = object.get("statusCode") {
        let mut headers = entries(object.get("headers"), "headers")?;
        for (name, cookie) in entries_with_attributes(object.get("cookies"))? {
            headers.push(("set-cookie".into(), format!("{name}={cookie}")));
        }
        let body = match object.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) => text.clone().into_bytes(),
            Some(body) => match (
                body.get("data").and_then(Value::as_str),
                body.get("encoding").and_then(Value::as_str),
            ) {
                (Some(data), Some("text") | None) => data.as_bytes().to_vec(),
                (Some(data), Some("base64")) => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| "body.data is not base64".to_owned())?,
                _ => return Err("body must be a string or {data, encoding: text|base64}".to_owned()),
            },
        };
        if body.len() > MAX_BODY_BYTES {
            return Err(format!("a generated body holds at most {MAX_BODY_BYTES} bytes"));
        }
        return Ok(Err(Generated {
            status: status_of(status)?,
            headers,
            body,
        }));
    }
    let uri = object
        .get("uri")
        .and_then(Value::as_str)
        .filter(|uri| uri.starts_with('/'))
        .ok_or_else(|| "request.uri must be a string starting with /".to_owned())?;
    let query = match object.get("querystring") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()).filter(|text| !text.is_empty()),
        Some(parameters) => {
            let pairs = entries(Some(parameters), "querystring")?;
            let text = pairs
                .iter()
                .map(|(name, value)| {
                    if value.is_empty() {
                        name.clone()
                    } else {
                        format!("{name}={value}")
                    }
                })
                .collect::<Vec<_>>()
                .join("&");
            Some(text).filter(|text| !text.is_empty())
        }
    };
    let mut headers: Vec<(String, String)> = entries(object.get("headers"), "headers")?
        .into_iter()
        .filter(|(name, _)| name != "cookie")
        .collect();
    let cookies = entries(object.get("cookies"), "cookies")?;
    if !cookies.is_empty() {
        let line = cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        headers.push(("cookie".into(), line));
    }
    Ok(Ok(RequestChanges {
        uri: uri.to_owned(),
        query,
        headers,
    }))
}

/// Cookies of a response object: `name=value; attributes`.
fn entries_with_attributes(object: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(object) = object.and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut cookies = Vec::new();
    for (name, cookie) in object {
        let value = cookie
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("cookies.{name} has no string value"))?;
        let line = match cookie.get("attributes").and_then(Value::as_str).filter(|a| !a.is_empty()) {
            Some(attributes) => format!("{value}; {attributes}"),
            None => value.to_owned(),
        };
        if http::HeaderValue::from_str(&format!("{name}={line}")).is_err() {
            return Err(format!("cookies.{name} is not a cookie a header can carry"));
        }
        cookies.push((name.clone(), line));
    }
    Ok(cookies)
}

/// What a viewer-response handler returned.
pub fn response_outcome(output: &Value) -> Result<ResponseChanges, String> {
    let object = output.as_object().ok_or_else(|| "the handler returned no object".to_owned())?;
    let status = status_of(
        object
            .get("statusCode")
            .ok_or_else(|| "the response has no statusCode".to_owned())?,
    )?;
    let mut headers: Vec<(String, String)> = entries(object.get("headers"), "headers")?
        .into_iter()
        .filter(|(name, _)| name != "set-cookie")
        .collect();
    for (name, cookie) in entries_with_attributes(object.get("cookies"))? {
        headers.push(("set-cookie".into(), format!("{name}={cookie}")));
    }
    Ok(ResponseChanges { status, headers })
}

/// `crypto`'s digests and HMACs: SHA-1, SHA-256 (CloudFront also offers
/// MD5, which keyfront has no implementation of), as hex, base64 or base64url.
pub fn hash(ctx: rquickjs::Ctx<'_>, algorithm: String, key: Option<String>, data: String, encoding: String) -> rquickjs::Result<String> {
    use ring::{digest, hmac};
    let refuse = |message: String| Err(rquickjs::Exception::throw_message(&ctx, &message));
    let bytes: Vec<u8> = match (algorithm.as_str(), &key) {
        ("sha1", None) => digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data.as_bytes()).as_ref().to_vec(),
        ("sha256", None) => digest::digest(&digest::SHA256, data.as_bytes()).as_ref().to_vec(),
        ("sha1", Some(key)) => hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key.as_bytes()),
            data.as_bytes(),
        )
        .as_ref()
        .to_vec(),
        ("sha256", Some(key)) => hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), data.as_bytes())
            .as_ref()
            .to_vec(),
        _ => return refuse(format!("Digest method not supported: {algorithm} (sha1 and sha256 are)")),
    };
    match encoding.as_str() {
        "hex" => Ok(hex::encode(bytes)),
        "base64" => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
        "base64url" => Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)),
        _ => refuse(format!("digest needs an encoding: hex, base64 or base64url, not {encoding:?}")),
    }
}
