//! CloudFront's three policy types (cache, origin request, response
//! headers): each is a resource an account makes, stored like the simple
//! ones, beside managed policies every account has with their real ids,
//! names and settings, which lists show as `managed` and which cannot change.

mod cache;
mod origin_request;
mod response_headers;

pub use cache::{CACHE_POLICIES, key_values, ttl};
pub use origin_request::{ORIGIN_REQUEST_POLICIES, with_sent_values};
pub use response_headers::{RESPONSE_HEADERS_POLICIES, compile as response_headers};

use super::api::{ApiError, ApiReply, ApiRequest, ordered, page};
use super::distributions;
use super::resources::Kind;
use super::store::{Resource, State};
use super::xml::{Element, list};
use crate::request::NameChoice;

/// One policy type: its resource rules and its managed policies.
pub struct PolicyType {
    pub kind: Kind,
    /// Each managed policy's id and config.
    managed: fn() -> Vec<(&'static str, Element)>,
    /// The element a list holds each policy in (`CachePolicySummary`, ...).
    summary: &'static str,
    /// The cache behavior's element naming a policy of this type.
    behavior_field: &'static str,
}

/// When the managed policies last changed, as their `LastModifiedTime`.
const MANAGED_SINCE: &str = "2020-08-31T00:00:00.000Z";

/// The policy type whose API path segment is `path`.
pub fn by_path(path: &str) -> Option<&'static PolicyType> {
    [&CACHE_POLICIES, &ORIGIN_REQUEST_POLICIES, &RESPONSE_HEADERS_POLICIES]
        .into_iter()
        .find(|policy| policy.kind.path == path)
}

impl PolicyType {
    /// Every managed policy of this type, as a stored resource would be.
    fn managed_resources(&self) -> impl Iterator<Item = (&'static str, Resource)> {
        (self.managed)().into_iter().map(|(id, config)| {
            let resource = Resource {
                // Stable: a managed policy never changes, so neither does its ETag.
                etag: format!("E{}", id.replace('-', "").to_ascii_uppercase().get(..13).unwrap_or("")),
                created: MANAGED_SINCE.to_owned(),
                modified: MANAGED_SINCE.to_owned(),
                config,
            };
            (id, resource)
        })
    }

    fn managed(&self, id: &str) -> Option<Resource> {
        self.managed_resources()
            .find(|(managed, _)| *managed == id)
            .map(|(_, resource)| resource)
    }

    /// The config of policy `id`, managed or the account's own.
    pub fn config(&self, state: &State, id: &str) -> Option<Element> {
        match self.managed(id) {
            Some(policy) => Some(policy.config),
            None => (self.kind.resources)(state).get(id).map(|policy| policy.config.clone()),
        }
    }

    /// A managed policy as the get operations answer for it (its config
    /// alone with `config_only`), if `id` names one.
    pub fn get_managed(&self, id: &str, config_only: bool) -> Option<ApiReply> {
        let resource = self.managed(id)?;
        let body = if config_only {
            resource.config.clone()
        } else {
            self.kind.resource(id, &resource)
        };
        Some(ApiReply::ok(body).with_etag(&resource.etag))
    }

    /// Refuses to change (or, for `DELETE`, delete) a managed policy.
    pub fn refuse_managed(&self, id: &str, method: &str) -> Result<(), ApiError> {
        match (self.managed(id), method) {
            (None, _) => Ok(()),
            (Some(_), "DELETE") => Err(ApiError::new(400, "IllegalDelete", "a managed policy cannot be deleted")),
            (Some(_), _) => Err(ApiError::new(400, "IllegalUpdate", "a managed policy cannot be changed")),
        }
    }

    fn summary(&self, kind: &str, id: &str, resource: &Resource) -> Element {
        Element::new(self.summary)
            .with(Element::leaf("Type", kind))
            .with(self.kind.resource(id, resource))
    }

    /// The list operation: the managed policies, then the account's own in
    /// the order they were made; `Type=managed` or `Type=custom` picks one.
    pub fn list(&self, state: &State, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let kind = request.query.get("Type").map(String::as_str);
        if !matches!(kind, None | Some("managed" | "custom")) {
            return Err(ApiError::invalid(format!("Type {kind:?} is not managed or custom")));
        }
        let mut summaries: Vec<(String, Element)> = Vec::new();
        if kind != Some("custom") {
            for (id, resource) in self.managed_resources() {
                summaries.push((id.to_owned(), self.summary("managed", id, &resource)));
            }
        }
        if kind != Some("managed") {
            for (id, resource) in ordered((self.kind.resources)(state)) {
                summaries.push((id.clone(), self.summary("custom", id, resource)));
            }
        }
        Ok(ApiReply::ok(page(self.kind.list, summaries, request, false)?))
    }

    /// The distribution a cache behavior of which names policy `id`.
    fn used_by(&self, state: &State, id: &str) -> Option<String> {
        distributions::first_using(state, |config| {
            distributions::behaviors(config).any(|behavior| behavior.text_of(self.behavior_field) == Some(id))
        })
    }

    /// Refuses a cache behavior naming a policy of this type that is not there.
    pub fn check_named(&self, state: &State, behavior: &Element) -> Result<(), ApiError> {
        match behavior.text_of(self.behavior_field).filter(|id| !id.is_empty()) {
            Some(id) if self.config(state, id).is_none() => {
                Err(ApiError::new(404, self.kind.not_found, format!("no {} {id}", self.kind.resource)))
            }
            _ => Ok(()),
        }
    }
}

/// The behavior and list elements of a `HeadersConfig`, `CookiesConfig` or
/// `QueryStringsConfig`.
fn names_of(container: &str) -> (&'static str, &'static str) {
    match container {
        "HeadersConfig" => ("HeaderBehavior", "Headers"),
        "CookiesConfig" => ("CookieBehavior", "Cookies"),
        _ => ("QueryStringBehavior", "QueryStrings"),
    }
}

/// What `parent`'s `HeadersConfig`, `CookiesConfig` or `QueryStringsConfig`
/// names (header names lower case); `None` when it is absent or one the
/// API refuses. The `CloudFront-*` headers CloudFront itself adds are not
/// made here, so `allViewerAndWhitelistCloudFront` sends the viewer's.
fn name_choice(parent: &Element, container: &str) -> Option<NameChoice> {
    let (behavior_name, list_name) = names_of(container);
    let part = parent.child(container)?;
    let mut names: Vec<String> = part
        .child(list_name)
        .into_iter()
        .flat_map(Element::items)
        .map(|name| name.text.clone())
        .collect();
    if container == "HeadersConfig" {
        names.iter_mut().for_each(|name| name.make_ascii_lowercase());
    }
    let listed = !names.is_empty();
    match part.text_of(behavior_name)? {
        "none" => Some(NameChoice::Nothing),
        "whitelist" if listed => Some(NameChoice::Only(names)),
        "allExcept" if listed => Some(NameChoice::AllExcept(names)),
        "all" | "allViewer" | "allViewerAndWhitelistCloudFront" => Some(NameChoice::All),
        _ => None,
    }
}

/// A managed policy's `HeadersConfig`, `CookiesConfig` or
/// `QueryStringsConfig`: its behavior and the names it lists.
fn names_config(container: &str, (behavior, names): (&str, &[&str])) -> Element {
    let (behavior_name, list_name) = names_of(container);
    let mut element = Element::new(container).with(Element::leaf(behavior_name, behavior));
    if !names.is_empty() {
        let items = names.iter().map(|name| Element::leaf("Name", *name)).collect();
        element.children.push(list(list_name, items));
    }
    element
}

/// Refuses a `HeadersConfig`, `CookiesConfig` or `QueryStringsConfig` of
/// `parent` whose behavior is not one of `allowed`, or that lists no names
/// for a behavior that needs them; its behavior otherwise.
fn check_names_config<'a>(parent: &'a Element, container: &str, allowed: &[&str]) -> Result<&'a str, ApiError> {
    let (behavior_name, list_name) = names_of(container);
    let part = parent
        .child(container)
        .ok_or_else(|| ApiError::invalid(format!("{} needs {container}", parent.name)))?;
    let behavior = part.text_of(behavior_name).unwrap_or("");
    if !allowed.contains(&behavior) {
        return Err(ApiError::invalid(format!("{behavior_name} {behavior:?} is not one of {allowed:?}")));
    }
    let named = part.child(list_name).into_iter().flat_map(Element::items).count();
    if matches!(behavior, "whitelist" | "allExcept" | "allViewerAndWhitelistCloudFront") && named == 0 {
        return Err(ApiError::invalid(format!(
            "{behavior_name} {behavior} needs the names in {list_name}"
        )));
    }
    Ok(behavior)
}

/// Refuses a config without a `Name`, or with a managed policy's.
fn check_name(config: &Element, managed: &[(&str, Element)], already_exists: &'static str) -> Result<(), ApiError> {
    let name = config
        .text_of("Name")
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{} needs a Name", config.name)))?;
    if managed.iter().any(|(_, policy)| policy.text_of("Name") == Some(name)) {
        return Err(ApiError::new(
            409,
            already_exists,
            format!("the name {name:?} is a managed policy's"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every managed policy of every type is one its own type would take
    /// (under another name), keeps one ETag, and is found by its id.
    #[test]
    fn managed_policies_are_valid_policies_of_their_type_with_stable_etags() {
        let state = State::default();
        for policy in [&CACHE_POLICIES, &ORIGIN_REQUEST_POLICIES, &RESPONSE_HEADERS_POLICIES] {
            let managed = (policy.managed)();
            assert!(!managed.is_empty());
            for (id, config) in managed {
                let name = config.text_of("Name").unwrap().to_owned();
                let refused = (policy.kind.validate)(&config, &state);
                assert!(refused.is_err_and(|e| e.code == policy.kind.already_exists), "{name}");
                let mut copy = config.clone();
                copy.child_mut("Name").unwrap().text = format!("copy of {name}");
                (policy.kind.validate)(&copy, &state).unwrap_or_else(|error| panic!("{name}: {error}"));
                assert!(name.starts_with("Managed-"), "{name}");
                let etag = policy.managed(id).unwrap().etag;
                assert_eq!(etag, policy.managed(id).unwrap().etag);
                assert_eq!(etag.len(), 14);
                assert_eq!(policy.config(&state, id), Some(config));
            }
            assert!(policy.config(&state, "not-a-policy").is_none());
        }
    }
}
