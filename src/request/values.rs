//! What of a viewer's request a behavior's policies key and send on: its
//! cache policy's query parameters, headers and cookies (in the cache key
//! and sent to the origin) and its origin request policy's (sent only).
//! Each in one spelling, so that two spellings of the same values are one
//! object, and a parent node that is sent them keys them alike.

use http::HeaderMap;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::NameChoice;

/// Headers no policy sends on as the viewer spelled them: hop-by-hop ones,
/// those the cache sets itself for each slice (`Range`, the conditions),
/// S3's signing headers, the fleet's, and `Accept-Encoding` (an origin must
/// answer identity bytes, which every viewer and range can be cut from).
/// Cookies are sent as the policies choose them, in one header; `Host` as
/// the host the viewer asked for (see `RequestValues::sent`).
const NEVER_SENT: &[&str] = &[
    "accept-encoding",
    "connection",
    "content-length",
    "cookie",
    "expect",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn never_sent(name: &str) -> bool {
    NEVER_SENT.contains(&name) || name.starts_with("x-amz-") || name.starts_with("x-keyfront-")
}

/// The signed cookies' own names: a signature is never keyed or sent on,
/// as a signed URL's parameters are not.
fn signing_cookie(name: &str) -> bool {
    matches!(
        name,
        "CloudFront-Policy" | "CloudFront-Signature" | "CloudFront-Key-Pair-Id" | "CloudFront-Expires" | "CloudFront-Hash-Algorithm"
    )
}

/// What a variant spells literally: visible ASCII but its own separators.
const VARIANT_ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b';').add(b'\n').add(b'=').add(b'&');

/// A behavior's choice of the viewer's query parameters, headers and cookies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestValues {
    /// Parameters in the cache key (and sent).
    pub key_query: NameChoice,
    /// Header names (lower case, sorted) in the cache key (and sent).
    pub key_headers: Vec<String>,
    /// Cookies in the cache key (and sent).
    pub key_cookies: NameChoice,
    /// Parameters sent to the origin: the key's and the origin request policy's.
    pub sent_query: NameChoice,
    /// Headers sent (names lower case): the key's and the origin request policy's.
    pub sent_headers: NameChoice,
    /// Cookies sent: the key's and the origin request policy's.
    pub sent_cookies: NameChoice,
}

impl RequestValues {
    /// Whether the key holds anything of the viewer's besides the path and
    /// query (then one path has several cached objects).
    pub fn varies(&self) -> bool {
        !self.key_headers.is_empty() || self.key_cookies != NameChoice::Nothing
    }

    /// Whether anything but the key's query is sent.
    pub fn sends_more_than_the_key(&self) -> bool {
        self.sent_query != self.key_query || self.sent_headers != NameChoice::Nothing || self.sent_cookies != NameChoice::Nothing
    }

    /// The keyed headers' and cookies' values in one spelling: each keyed
    /// header as `name:value` (repeats joined by `,`; absent: the name
    /// alone), then each keyed cookie as `name=value`, sorted, `\n` between.
    /// Empty when the behavior keys neither.
    pub fn variant(&self, headers: &HeaderMap) -> String {
        if !self.varies() {
            return String::new();
        }
        let mut parts = Vec::new();
        for name in &self.key_headers {
            let values: Vec<String> = headers.get_all(name.as_str()).iter().map(|v| escaped(v.as_bytes())).collect();
            parts.push(if values.is_empty() {
                name.clone()
            } else {
                format!("{name}:{}", values.join(","))
            });
        }
        for (name, value) in cookies(headers, &self.key_cookies) {
            parts.push(format!("{}={}", escaped(name.as_bytes()), escaped(value.as_bytes())));
        }
        parts.join("\n")
    }

    /// The viewer's headers the origin is sent, in order, and a `Cookie`
    /// header of the cookies it is sent, if any. `host` is the host the
    /// viewer asked for (its `Host`, or HTTP/2's `:authority`): sent as
    /// `Host` when the policies send all headers or name it, as CloudFront's
    /// `Managed-AllViewer` does and `Managed-AllViewerExceptHostHeader`
    /// does not. Whether an origin takes it is the origin's to say
    /// (`Origin::takes_viewer_header`: an S3 origin never does).
    pub fn sent(&self, headers: &HeaderMap, host: Option<&str>) -> Vec<(String, String)> {
        let sent_host = host
            .filter(|_| self.sends_header("host"))
            .map(|host| ("host".to_owned(), host.to_owned()));
        let mut sent: Vec<(String, String)> = sent_host
            .into_iter()
            .chain(
                headers
                    .iter()
                    .filter(|(name, _)| !never_sent(name.as_str()) && self.sends_header(name.as_str()))
                    .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))),
            )
            .collect();
        let chosen = cookies(headers, &self.sent_cookies);
        if !chosen.is_empty() {
            let pairs: Vec<String> = chosen.iter().map(|(name, value)| format!("{name}={value}")).collect();
            sent.push(("cookie".to_owned(), pairs.join("; ")));
        }
        sent
    }

    fn sends_header(&self, name: &str) -> bool {
        self.key_headers.iter().any(|keyed| keyed == name) || self.sent_headers.keeps(name)
    }
}

fn escaped(bytes: &[u8]) -> String {
    utf8_percent_encode(&String::from_utf8_lossy(bytes), VARIANT_ESCAPE).to_string()
}

/// The request's cookies `choice` names (names case-sensitive, as
/// CloudFront compares them), the signing cookies never, sorted by name
/// then value.
fn cookies<'h>(headers: &'h HeaderMap, choice: &NameChoice) -> Vec<(&'h str, &'h str)> {
    if *choice == NameChoice::Nothing {
        return Vec::new();
    }
    let mut chosen: Vec<(&str, &str)> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (!name.is_empty() && !signing_cookie(name) && choice.keeps(name)).then_some((name, value))
        })
        .collect();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests;
