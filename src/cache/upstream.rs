//! Where the cache's requests go: a fleet's parents first, when it has
//! any (`crate::fleet` names them), then the object's origin. A parent is a
//! keyfront answering as an origin would, from its own cache.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Cache, ObjectRef};
use crate::origin::{FetchError, OriginResponse};

/// The tier above this cache, as the fleet configures it.
pub trait ParentTier: Send + Sync {
    /// The healthy parents to ask for `key`, in order: its owner first.
    fn parents_for(&self, key: &[u8]) -> Vec<SocketAddr>;
    /// Headers that authenticate a request to a parent, telling it to
    /// answer from nothing fetched before `not_before` (Unix milliseconds,
    /// 0 for no such bound).
    fn authenticate(&self, method: &str, path: &str, range: &str, not_before: u64) -> Vec<(&'static str, String)>;
    /// Whether the origin may be asked when no parent answers (`go_direct`).
    fn go_direct(&self) -> bool;
}

/// A metric label for how a request ended.
fn outcome(result: &Result<OriginResponse<'_>, FetchError>) -> &'static str {
    match result {
        Ok(response) => match response.status() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        Err(FetchError::Timeout(_)) => "timeout",
        Err(FetchError::Failed(_)) => "error",
    }
}

impl Cache {
    /// Sends a request for `object` upstream: to its parents in ring order
    /// (the first answer below 500 other than a refusal wins), then, unless the fleet forbids it,
    /// to its origin; each counted by destination and outcome and timed to
    /// the response header.
    pub async fn send(&self, object: &ObjectRef, method: &str, headers: &[(&str, &str)]) -> Result<OriginResponse<'_>, FetchError> {
        if let Some(parents) = &self.parents {
            let range = headers.iter().find(|(name, _)| *name == "range").map_or("", |(_, value)| *value);
            let mut last = Err(FetchError::Failed("no parent is healthy".into()));
            // After an invalidation here, a parent must not answer from a
            // copy older than it (it may not have applied it yet).
            let not_before = self.bans.latest_covering(&object.key).unwrap_or(0);
            for parent in parents.parents_for(ring_key(object, range).as_bytes()) {
                let authentication = parents.authenticate(method, &object.path, range, not_before);
                let mut all = headers.to_vec();
                all.extend(authentication.iter().map(|(name, value)| (*name, value.as_str())));
                let started = Instant::now();
                let result = self.client.send_to_parent(parent, &object.origin, method, &object.path, &all).await;
                self.metrics
                    .parent_answered(&parent.to_string(), outcome(&result), started.elapsed().as_secs_f64());
                match result {
                    // A parent's 403 is its refusal of this node (a wrong
                    // fleet secret, a clock out of step): the origin's own
                    // refusals reach us as 502s.
                    Ok(response) if response.status() == 403 => {
                        tracing::warn!(%parent, "a fleet parent refused this node: check fleet.secret_file and the clocks");
                        last = Ok(response);
                    }
                    Ok(response) if response.status() < 500 => return Ok(response),
                    other => last = other,
                }
            }
            if !parents.go_direct() {
                return last;
            }
        }
        let started = Instant::now();
        let result = self.client.send(&object.origin, method, &object.origin_path, headers).await;
        self.metrics
            .origin_answered(&object.origin_name, outcome(&result), started.elapsed().as_secs_f64());
        result
    }
}

/// Where on the parents' ring a request falls: its object and slice, so a
/// slice, and any range inside it, has one owner; metadata requests (no
/// range) fall on the object's own point.
fn ring_key(object: &ObjectRef, range: &str) -> String {
    let first_byte = range
        .strip_prefix("bytes=")
        .and_then(|spec| spec.split('-').next())
        .and_then(|start| start.parse::<u64>().ok());
    match first_byte {
        Some(start) => format!("{}\n{}", object.key, start / object.slice_size.max(1)),
        None => object.key.to_string(),
    }
}
