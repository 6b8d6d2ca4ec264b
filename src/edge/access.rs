//! Who may have what a request asks for, decided without I/O: another
//! node by the fleet's MAC over exactly this object, a viewer by a
//! signature of one of the behavior's keys, anyone on a public behavior.
//! Pure (the caller passes the clock and what the connection showed), and
//! tested without sockets.

use std::cell::RefCell;
use std::net::IpAddr;

use pingora::http::RequestHeader;

use super::RequestContext;
use crate::auth::{CredentialSource, Rejection, SignedTarget, Verifier, ViewerRequest};
use crate::cache::ObjectRef;
use crate::fleet::{Fleet, FleetAuthError};
use crate::request::with_query;
use crate::routing::Behavior;

/// What the request showed besides its target: read off the connection.
pub struct Presented<'a> {
    pub header: &'a RequestHeader,
    /// It carries the fleet's signature header: another node's request.
    pub from_node: bool,
    /// It came over a TLS listener (its signed URL's scheme is `https`).
    pub over_tls: bool,
    pub client_ip: Option<IpAddr>,
    /// Unix seconds.
    pub now: u64,
}

/// The decision on a request.
#[derive(Debug)]
pub enum Access {
    /// The behavior names no key group: anyone.
    Public,
    /// A viewer's signed URL or signed cookies verified.
    Signed(CredentialSource),
    /// Another node's request, by the fleet's MAC: the time (Unix
    /// milliseconds) before which nothing fetched may answer it, and whether
    /// it comes from a node of this site.
    Node { not_before: u64, site_hop: bool },
    /// Another node's request that does not verify (or a node's request to
    /// a node outside any fleet).
    NodeRefused(FleetAuthError),
    /// A viewer's request the behavior's keys do not grant.
    Refused(Rejection),
}

impl Access {
    /// The access log's label for the decision.
    pub fn label(&self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Signed(CredentialSource::SignedCookies) => "signed_cookies",
            Access::Signed(_) => "signed_url",
            Access::Node { .. } => "fleet",
            Access::NodeRefused(_) => "fleet_refused",
            Access::Refused(rejection) => rejection.reason.label(),
        }
    }
}

/// Decides `presented`'s request for `target` on `behavior` (routed, so
/// `ctx` holds its path, origin path and keyed query). `public_base_url`:
/// the distribution's, which a signed URL names in place of the viewer's
/// scheme and Host.
pub fn decide(
    fleet: Option<&Fleet>,
    verifier: &Verifier,
    presented: &Presented<'_>,
    ctx: &RequestContext,
    public_base_url: Option<&str>,
    behavior: &Behavior,
    target: &SignedTarget<'_>,
) -> Access {
    let header = presented.header;
    if presented.from_node {
        let range = header.headers.get(http::header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let lookup = |name: &str| header.headers.get(name).and_then(|v| v.to_str().ok());
        // The key's query is in the object and the path the asking node
        // signed: a node's request with another query does not verify.
        let object = ctx.origin_path.as_deref().map(|origin_path| {
            ObjectRef::cache_key(
                &behavior.origin_name,
                &with_query(origin_path.to_owned(), &ctx.key_query),
                &ctx.variant,
            )
        });
        let path = with_query(ctx.path.clone(), &ctx.key_query);
        return match (fleet, object) {
            (Some(fleet), Some(object)) => match fleet.verify(header.method.as_str(), &object, &path, range, lookup) {
                Ok(verified) => Access::Node {
                    not_before: verified.not_before,
                    site_hop: verified.site_hop,
                },
                Err(refusal) => Access::NodeRefused(refusal),
            },
            _ => Access::NodeRefused(FleetAuthError::Malformed),
        };
    }
    // A behavior naming key groups is signed even if its groups hold no
    // key (then nothing verifies): emptiness never opens it.
    if behavior.trusted_key_groups.is_empty() {
        return Access::Public;
    }
    let cookies: Vec<&str> = header
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    with_viewer_base_url(public_base_url, header, presented.over_tls, |base_url| {
        let request = ViewerRequest {
            base_url,
            target,
            cookie_headers: &cookies,
            client_ip: presented.client_ip,
            now: presented.now,
        };
        match verifier.verify(&request, &behavior.trusted_keys) {
            Ok(grant) => Access::Signed(grant.source),
            Err(rejection) => Access::Refused(rejection),
        }
    })
}

thread_local! {
    /// Each thread's buffer for a viewer's base URL: no allocation per request.
    static VIEWER_BASE_URL: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Calls `then` with `public_base_url` if configured, else the scheme the
/// viewer used (`https` on a TLS listener) and its `Host` (the `:authority`
/// on HTTP/2).
fn with_viewer_base_url<T>(public_base_url: Option<&str>, header: &RequestHeader, over_tls: bool, then: impl FnOnce(&str) -> T) -> T {
    if let Some(base) = public_base_url {
        return then(base);
    }
    let scheme = if over_tls { "https://" } else { "http://" };
    VIEWER_BASE_URL.with_borrow_mut(|base| {
        base.clear();
        base.push_str(scheme);
        base.push_str(request_host(header).unwrap_or_default());
        then(base)
    })
}

/// The host the viewer asked for: `Host`, or the authority of an absolute
/// target (HTTP/2's `:authority`).
pub fn request_host(header: &RequestHeader) -> Option<&str> {
    header
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| header.uri.authority().map(|a| a.as_str()))
}

#[cfg(test)]
mod tests;
