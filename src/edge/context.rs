//! What one request carries from phase to phase.

use std::sync::Arc;

use super::cached::CacheStatus;
use crate::routing::Behavior;
use crate::routing::Distribution;

/// Per-request state, created empty for each request and filled by its phases.
#[derive(Default)]
pub struct RequestContext {
    /// The distribution the request's Host (or a node's table) named, as
    /// it was when the request began (a change does not touch it); `None`
    /// until routed.
    pub distribution: Option<Arc<Distribution>>,
    /// Index of the matched behavior in the distribution's behaviors.
    pub behavior: Option<usize>,
    /// The viewer's path, signing parameters removed: what is logged, never the query.
    pub path: String,
    /// The path sent to the origin (bucket prefix and S3 encoding applied).
    pub origin_path: Option<String>,
    /// How the request was judged, for the access log: `public`, `signed_url`,
    /// `signed_cookies`, or a rejection label such as `expired`.
    pub decision: &'static str,
    /// When the request's header was read, for the access log's time-taken.
    pub started: Option<std::time::Instant>,
    /// The node's clock then, in whole Unix seconds: what the signature's
    /// times and the cached copy's freshness and age are judged by (read
    /// once: each reading is a clock call, and a hit made three).
    pub now: u64,
    /// The viewer's own query string (signing parameters removed), if any.
    pub query: Option<String>,
    /// The part of it in the cache key and sent on (the behavior's cache
    /// policy chooses; see `NameChoice::select`), empty for none.
    pub key_query: String,
    /// The keyed headers' and cookies' values in one spelling
    /// (`RequestValues::variant`), empty when the behavior keys neither.
    pub variant: String,
    /// The CloudFront error code when the signature check refused the request.
    pub rejection: Option<&'static str>,
    /// The request is another node's (it carries the fleet's signature),
    /// not a viewer's.
    pub from_node: bool,
    /// For a request from another node of the fleet: Unix milliseconds
    /// before which no cached copy may answer it (0: no bound).
    pub fleet_not_before: u64,
    /// For a request from a node of this site asking this one as the owner
    /// of the slice.
    pub fleet_site_hop: bool,
    /// When the answer is a distribution's error page in place of an
    /// origin's error: the status it is sent with.
    pub error_page_status: Option<u16>,
    /// How the cache answered a GET or HEAD (`None` for passthrough methods and refusals).
    pub cache_status: Option<CacheStatus>,
}

impl RequestContext {
    /// The behavior `route` matched, if it got that far.
    pub fn matched_behavior(&self) -> Option<&Behavior> {
        self.distribution.as_ref()?.behaviors.get(self.behavior?)
    }
}
