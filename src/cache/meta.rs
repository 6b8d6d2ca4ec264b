//! What the cache knows of one object version, stored once per version.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use serde::{Deserialize, Serialize};

use super::freshness::Freshness;

/// Origin headers worth replaying to viewers from the cache.
const KEPT_HEADERS: [&str; 7] = [
    "content-type",
    "etag",
    "last-modified",
    "cache-control",
    "content-encoding",
    "content-disposition",
    "content-language",
];

/// An object version as the origin described it, and how fresh it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// 200 for an object; 404 (or another status) for a cached origin error.
    pub status: u16,
    /// Total size in bytes.
    pub size: u64,
    /// The version's entity tag, quotes included; part of every slice key
    /// (shared, so a lookup's key costs no allocation).
    pub etag: Arc<str>,
    /// Headers replayed to viewers: the content headers, validators,
    /// `Cache-Control` and `x-amz-meta-*` (dropped later unless configured).
    pub headers: Vec<(String, String)>,
    /// When the origin last confirmed this version (Unix seconds).
    pub validated_at: u64,
    /// Seconds it stays fresh after `validated_at`.
    pub fresh_for: u64,
    /// Whether its bytes may be stored (`no-store`/`private` say no).
    pub storable: bool,
    /// Seconds a stale copy may be served while revalidating / when the origin fails.
    pub stale_while_revalidate: u64,
    pub stale_if_error: u64,
    /// The slice size the object is cut into (bytes).
    pub slice_size: u64,
    /// A cached error's own body, when its origin's answer is replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_body: Option<Arc<ErrorBody>>,
    /// What every answer from this version repeats, made once.
    #[serde(skip)]
    pub(crate) prepared: PreparedHeaders,
}

/// An origin's own answer to an error (a custom origin's 404 page, an
/// API's JSON error), replayed to viewers with its status; at most
/// `MAX_ERROR_BODY_BYTES`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub content_type: Option<String>,
    /// Shared with every answer that replays it.
    pub bytes: bytes::Bytes,
}

/// The longest error body replayed: an error page, not an object.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Derived from the fields above on first use, so never stored and never
/// compared: `Last-Modified` parsed, and the response header templates a
/// hit clones (with and without `x-amz-meta-*`).
#[derive(Clone, Debug, Default)]
pub(crate) struct PreparedHeaders {
    last_modified: OnceLock<Option<SystemTime>>,
    templates: [OnceLock<ResponseHeader>; 2],
}

impl PartialEq for PreparedHeaders {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PreparedHeaders {}

/// A version tag for an object whose origin sent no ETag (a custom origin
/// may not): its `Last-Modified` and size, or, with no `Last-Modified`,
/// the time it was fetched, so that no two fetches whose versions cannot
/// be told apart share slices. Never sent to viewers or to the origin.
fn unvalidated_version(headers: &[(String, String)], size: u64, now: u64) -> String {
    match headers.iter().find(|(name, _)| name == "last-modified") {
        Some((_, date)) => format!("keyfront:{size}:{date}"),
        None => format!("keyfront:{size}:fetched:{now}"),
    }
}

/// Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ObjectMeta {
    /// Builds the metadata of a successful origin response for an object of `size` bytes.
    pub fn from_origin(header: &ResponseHeader, size: u64, freshness: Freshness, slice_size: u64, now: u64) -> Self {
        let headers: Vec<(String, String)> = header
            .headers
            .iter()
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("x-amz-meta-"))
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        let etag = match headers.iter().find(|(n, _)| n == "etag") {
            Some((_, etag)) => Arc::from(etag.as_str()),
            None => Arc::from(unvalidated_version(&headers, size, now)),
        };
        Self {
            status: 200,
            size,
            etag,
            headers,
            validated_at: now,
            fresh_for: freshness.ttl.as_secs(),
            storable: freshness.storable,
            stale_while_revalidate: freshness.stale_while_revalidate.as_secs(),
            stale_if_error: freshness.stale_if_error.as_secs(),
            slice_size,
            error_body: None,
            prepared: PreparedHeaders::default(),
        }
    }

    /// A cached origin error (404, 5xx) kept for `ttl`.
    pub fn error(status: u16, ttl: Duration, now: u64) -> Self {
        Self {
            status,
            size: 0,
            etag: Arc::from(""),
            headers: Vec::new(),
            validated_at: now,
            fresh_for: ttl.as_secs(),
            storable: true,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            slice_size: 1,
            error_body: None,
            prepared: PreparedHeaders::default(),
        }
    }

    /// Roughly the bytes it holds, for the cache's budget (a remembered 404
    /// costs memory like a slice and is evicted like one).
    pub fn weight(&self) -> u32 {
        // Each header counted three times: as received, and in the two templates.
        let headers: usize = self.headers.iter().map(|(name, value)| 3 * (name.len() + value.len() + 48)).sum();
        u32::try_from(256 + self.etag.len() + headers).unwrap_or(u32::MAX)
    }

    /// `headers` as names and values for a response (a header the `http`
    /// crate refuses is left out); parsed each call, so for templates only.
    pub fn response_headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        self.headers
            .iter()
            .filter_map(|(name, value)| Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?)))
    }

    /// Whether `other` is this version: the same size and ETag.
    pub fn same_version(&self, other: &ObjectMeta) -> bool {
        self.etag == other.etag && self.size == other.size
    }

    /// The ETag the origin sent, for conditional requests to it (`etag` is
    /// made up when it sent none).
    pub fn origin_etag(&self) -> Option<&str> {
        self.header("etag")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn last_modified(&self) -> Option<SystemTime> {
        *self
            .prepared
            .last_modified
            .get_or_init(|| httpdate::parse_http_date(self.header("last-modified")?).ok())
    }

    /// The response header every answer of this version starts from (one
    /// for each `variant`), made by `build` on first use and then kept as
    /// long as the version: a hit clones it instead of building it again.
    pub fn response_template(&self, variant: bool, build: impl FnOnce(&Self) -> ResponseHeader) -> &ResponseHeader {
        self.prepared.templates[usize::from(variant)].get_or_init(|| build(self))
    }

    /// Seconds since the origin last confirmed this version.
    pub fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.validated_at)
    }

    pub fn is_fresh(&self, now: u64) -> bool {
        self.age(now) < self.fresh_for
    }

    /// Whether a stale copy may be served at once while it is revalidated in the background.
    pub fn usable_while_revalidating(&self, now: u64) -> bool {
        self.status == 200 && self.age(now) < self.fresh_for.saturating_add(self.stale_while_revalidate)
    }

    /// Whether a stale copy may still be served because the origin failed.
    pub fn usable_on_error(&self, now: u64) -> bool {
        self.age(now) < self.fresh_for.saturating_add(self.stale_if_error)
    }

    /// The number of slices.
    pub fn slice_count(&self) -> u64 {
        self.size.div_ceil(self.slice_size)
    }

    /// The byte length of slice `index`.
    pub fn slice_length(&self, index: u64) -> u64 {
        let start = index * self.slice_size;
        self.slice_size.min(self.size.saturating_sub(start))
    }
}
