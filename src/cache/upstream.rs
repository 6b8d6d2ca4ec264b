//! Where the cache's requests go: a fleet's parents first, when it has
//! any (`crate::fleet` names them), then the object's origin. A parent is a
//! keyfront answering as an origin would, from its own cache.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Cache, ObjectRef};
use crate::origin::{FetchError, Origin, OriginResponse};

/// The other nodes this cache asks, as the fleet configures them.
pub trait ParentTier: Send + Sync {
    /// The node of this site that keeps `key`, when it is another one
    /// (healthy): it is asked first, and its answer is kept only briefly.
    fn site_owner(&self, key: &[u8]) -> Option<SocketAddr>;
    /// The healthy parents to ask for `key`, in order: its owner first.
    fn parents_for(&self, key: &[u8]) -> Vec<SocketAddr>;
    /// Headers that authenticate a request to another node for `object`
    /// (its table, origin key and path), telling it to answer from nothing
    /// fetched before `not_before` (Unix milliseconds, 0 for no such bound),
    /// and whether it is asked as its site's owner.
    fn authenticate(&self, method: &str, object: &ObjectRef, range: &str, not_before: u64, site_hop: bool) -> Vec<(&'static str, String)>;
    /// Whether the origin may be asked when no parent answers (`go_direct`).
    fn go_direct(&self) -> bool;
}

/// Whether an origin group's first origin failed as its failover criteria
/// say: not reached, timed out, or one of `statuses`.
fn fails_over(result: &Result<OriginResponse<'_>, FetchError>, statuses: &[u16]) -> bool {
    match result {
        Ok(response) => statuses.contains(&response.status()),
        Err(_) => true,
    }
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
    /// Sends a request for `object` upstream: to the node of this site that
    /// keeps it (its answer marked borrowed), else to its parents in ring
    /// order (the first answer below 500 other than a refusal wins), then, unless the fleet forbids it,
    /// to its origin (and, for a GET or HEAD its origin group's criteria
    /// fail, to the group's second origin); each counted by destination and
    /// outcome and timed to the response header.
    pub async fn send(&self, object: &ObjectRef, method: &str, headers: &[(&str, &str)]) -> Result<OriginResponse<'_>, FetchError> {
        self.send_avoiding(object, method, headers, &[]).await
    }

    /// `send`, asking none of the `failed` nodes (they broke off an answer
    /// that this request resumes).
    pub(super) async fn send_avoiding(
        &self,
        object: &ObjectRef,
        method: &str,
        headers: &[(&str, &str)],
        failed: &[SocketAddr],
    ) -> Result<OriginResponse<'_>, FetchError> {
        if let Some(fleet) = &self.fleet {
            let range = headers.iter().find(|(name, _)| *name == "range").map_or("", |(_, value)| *value);
            let key = ring_key(object, range);
            // After an invalidation here, another node must not answer from
            // a copy older than it (it may not have applied it yet).
            let not_before = self.bans.latest_covering(&object.key).unwrap_or(0);
            // A node asked as its site's owner asks upstream itself.
            if !object.site_hop
                && let Some(owner) = fleet.site_owner(key.as_bytes())
                && !failed.contains(&owner)
            {
                let authentication = fleet.authenticate(method, object, range, not_before, true);
                if let Some(mut response) = self.ask_node(owner, object, method, headers, &authentication).await {
                    response.borrowed = true;
                    return Ok(response);
                }
            }
            let mut last = Err(FetchError::Failed("no parent is healthy".into()));
            for parent in fleet
                .parents_for(key.as_bytes())
                .into_iter()
                .filter(|parent| !failed.contains(parent))
            {
                let authentication = fleet.authenticate(method, object, range, not_before, false);
                match self.ask_node(parent, object, method, headers, &authentication).await {
                    Some(response) => return Ok(response),
                    None => last = Err(FetchError::Failed(format!("parent {parent} did not answer"))),
                }
            }
            if !fleet.go_direct() {
                return last;
            }
        }
        let result = self
            .ask_origin(
                &object.origin_name,
                &object.origin,
                &object.origin_path,
                method,
                &with_sent(object, &object.origin, headers),
            )
            .await;
        match &object.failover {
            Some(failover) if matches!(method, "GET" | "HEAD") && fails_over(&result, &failover.statuses) => {
                let Some(path) = failover.path_for(&object.path) else {
                    return result;
                };
                drop(result);
                let headers = with_sent(object, &failover.origin, headers);
                self.ask_origin(&failover.origin_name, &failover.origin, &path, method, &headers)
                    .await
            }
            _ => result,
        }
    }

    /// Asks `origin` for `path`, counted by origin and outcome and timed.
    async fn ask_origin(
        &self,
        name: &str,
        origin: &Origin,
        path: &str,
        method: &str,
        headers: &[(&str, &str)],
    ) -> Result<OriginResponse<'_>, FetchError> {
        let started = Instant::now();
        let result = self.client.send(origin, method, path, headers).await;
        self.metrics
            .origin_answered(name, outcome(&result), started.elapsed().as_secs_f64());
        result
    }

    /// Asks another keyfront of the fleet; its answer unless it failed, gave
    /// a 5xx, or refused this node (a 403 is its refusal of the fleet
    /// authentication: the origin's own refusals reach us as 502s).
    async fn ask_node(
        &self,
        node: SocketAddr,
        object: &ObjectRef,
        method: &str,
        headers: &[(&str, &str)],
        authentication: &[(&'static str, String)],
    ) -> Option<OriginResponse<'_>> {
        let mut all = headers.to_vec();
        all.extend(authentication.iter().map(|(name, value)| (*name, value.as_str())));
        // A parent is sent all the viewer's values the behavior sends: it
        // keys them and sends them on by the same behavior.
        let target = match &object.sent {
            Some(sent) => {
                all.extend(sent.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())));
                &sent.target
            }
            None => &object.path,
        };
        let started = Instant::now();
        let result = self.client.send_to_parent(node, &object.origin, method, target, &all).await;
        self.metrics
            .parent_answered(&node.to_string(), outcome(&result), started.elapsed().as_secs_f64());
        match result {
            Ok(response) if response.status() == 403 => {
                tracing::warn!(%node, table = %object.table, "a fleet node refused this node: check fleet.secret_file, the clocks, and that it serves this distribution (a control plane, the same control log)");
                None
            }
            Ok(response) if response.status() < 500 => Some(response),
            _ => None,
        }
    }
}

/// `headers` and the viewer's headers `object`'s behavior sends that
/// `origin` takes (no copy when it sends none).
fn with_sent<'h>(object: &'h ObjectRef, origin: &Origin, headers: &'h [(&'h str, &'h str)]) -> Cow<'h, [(&'h str, &'h str)]> {
    let Some(sent) = &object.sent else {
        return Cow::Borrowed(headers);
    };
    let taken = sent.headers.iter().filter(|(name, _)| origin.takes_viewer_header(name));
    let mut all = headers.to_vec();
    all.extend(taken.map(|(name, value)| (name.as_str(), value.as_str())));
    Cow::Owned(all)
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
