//! A fleet of keyfronts: node-to-node authentication with the fleet's
//! shared secret, and the tier of parents a node asks before its origin
//! (one copy of each slice among them, by consistent hashing).

mod auth;
mod control;
mod discovery;

pub use discovery::NameState;
mod parents;

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::lb::LoadBalancer;
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::services::background::GenBackgroundService;

pub use auth::{FleetAuthError, FleetRequest, FleetSecret, SIGNATURE_HEADER, Verified, table_named};
pub use control::{ControlEntry, ControlGuard, ControlLog, PublishError, signed_entry, verified_entry};
pub use parents::Parents;

use crate::cache::{ObjectRef, ParentTier, unix_now};
use crate::config::{Member, Tiers};

/// This node in its fleet.
pub struct Fleet {
    node: String,
    secret: FleetSecret,
    parents: Option<Parents>,
    /// The nodes of this site, this one included, and this one among them
    /// (an address, or a name of it): each slice is kept by its owner on
    /// this ring only.
    site: Option<(Parents, Member)>,
    go_direct: bool,
    /// The control log every node reads, if the fleet keeps one.
    pub control: Option<Arc<ControlLog>>,
}

/// The health checks of a node's parents, for the server to run.
pub type ParentHealthChecks = GenBackgroundService<LoadBalancer<KetamaHashing>>;

impl Fleet {
    /// The node `node`, signing and checking with `secret`, asking
    /// `parents` (if any) before the origin, and the origin itself when none
    /// answers only if `go_direct`; reading and writing `control`, if any.
    /// Member names are resolved with the system's resolver unless
    /// `tiers.dns` names a server; a resolver that cannot be made (no
    /// /etc/resolv.conf) leaves the names unresolved, and says so.
    pub fn new(node: String, secret: FleetSecret, tiers: &Tiers, go_direct: bool, control: Option<ControlLog>) -> Arc<Fleet> {
        let named = tiers
            .parents
            .iter()
            .chain(tiers.site.iter().flat_map(|(_, peers)| peers))
            .any(|member| !matches!(member, Member::Address(_)));
        let resolver = named
            .then(|| discovery::resolver(&tiers.dns))
            .transpose()
            .inspect_err(|error| tracing::error!(%error, "fleet member names cannot be resolved"))
            .ok()
            .flatten();
        let ring = |members: &[Member]| Parents::new(members, &tiers.dns, resolver.clone());
        let site = tiers.site.as_ref().map(|(me, peers)| {
            let members: Vec<Member> = peers.iter().cloned().chain([me.clone()]).collect();
            (ring(&members), me.clone())
        });
        Arc::new(Fleet {
            node,
            secret,
            parents: (!tiers.parents.is_empty()).then(|| ring(&tiers.parents)),
            site,
            go_direct,
            control: control.map(Arc::new),
        })
    }

    /// The service that polls the control log, for the server to run.
    pub fn control_polling(&self) -> Option<GenBackgroundService<ControlLog>> {
        let control = self.control.clone()?;
        Some(GenBackgroundService::new("fleet control log".to_owned(), control))
    }

    /// Whether this node asks other nodes (parents or site peers) for misses.
    pub fn asks_other_nodes(&self) -> bool {
        self.parents.is_some() || self.site.is_some()
    }

    /// What this node knows of its fleet, for the admin API: its name, its
    /// parents and their health, the last control entry it applied.
    pub fn state(&self) -> serde_json::Value {
        let parents: Vec<serde_json::Value> = self
            .parents
            .as_ref()
            .map(Parents::health)
            .unwrap_or_default()
            .into_iter()
            .map(|(address, healthy)| serde_json::json!({ "address": address.to_string(), "healthy": healthy }))
            .collect();
        let site: Vec<serde_json::Value> = self
            .site
            .as_ref()
            .map(|(ring, _)| ring.health())
            .unwrap_or_default()
            .into_iter()
            .map(|(address, healthy)| serde_json::json!({ "address": address.to_string(), "healthy": healthy }))
            .collect();
        let names: serde_json::Map<String, serde_json::Value> = self
            .member_names()
            .into_iter()
            .map(|(name, state)| {
                let members: Vec<String> = state.members.iter().map(ToString::to_string).collect();
                let status = serde_json::json!({
                    "members": members,
                    "resolving": state.failing.is_none(),
                    "error": state.failing,
                    "failures": state.failures,
                });
                (name, status)
            })
            .collect();
        serde_json::json!({
            "node": self.node,
            "parents": parents,
            "site": site,
            "member_names": names,
            "go_direct": self.go_direct,
            "control_last_applied": self.control.as_ref().map(|control| control.last_applied()),
        })
    }

    /// What each member name (of the parents and of the site) last resolved
    /// to, and whether it still resolves.
    pub fn member_names(&self) -> std::collections::BTreeMap<String, discovery::NameState> {
        let site = self.site.as_ref().map(|(ring, _)| ring);
        self.parents.iter().chain(site).flat_map(Parents::names).collect()
    }

    /// The health checks of this node's parents and site peers, for the
    /// server to run.
    pub fn health_checks(&self) -> Vec<ParentHealthChecks> {
        let site = self.site.as_ref().map(|(ring, _)| ring);
        self.parents.iter().chain(site).map(Parents::health_checks).collect()
    }

    /// Checks a request from another node (`header` looks its headers up)
    /// for `object`, the origin key its path has in the table it named;
    /// returns what it carries: the asking node, the time (Unix
    /// milliseconds) before which nothing fetched may answer it, and whether
    /// it comes from a node of this site.
    pub fn verify<'h>(
        &self,
        method: &str,
        object: &str,
        path: &str,
        range: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<Verified<'h>, FleetAuthError> {
        self.secret.verify(method, object, path, range, header, unix_now())
    }
}

impl ParentTier for Fleet {
    fn parents_for(&self, key: &[u8]) -> Vec<SocketAddr> {
        self.parents.as_ref().map_or_else(Vec::new, |parents| parents.in_order(key))
    }

    /// `None` too while this node's own name has not resolved: it then
    /// cannot tell itself from a peer, and asks upstream itself.
    fn site_owner(&self, key: &[u8]) -> Option<SocketAddr> {
        let (ring, me) = self.site.as_ref()?;
        let me = ring.address_of(me)?;
        ring.in_order(key).first().copied().filter(|owner| *owner != me)
    }

    fn authenticate(&self, method: &str, object: &ObjectRef, range: &str, not_before: u64, site_hop: bool) -> Vec<(&'static str, String)> {
        let request = FleetRequest {
            method,
            table: &object.table,
            object: &object.key,
            path: &object.path,
            range,
            node: &self.node,
            time: unix_now(),
            not_before,
            site_hop,
        };
        self.secret.sign(&request).into()
    }

    fn go_direct(&self) -> bool {
        self.go_direct || self.parents.is_none()
    }
}
