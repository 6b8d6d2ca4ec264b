//! CloudFront's control-plane operations (REST-XML, 2020-05-31) over the
//! store: routing a request to its operation, the ETag and `If-Match`
//! rules, CloudFront's error codes, and the three simple resources (public
//! keys, key groups, origin access controls) and tags. Distributions and
//! invalidations are in `distributions`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;

use super::policies::{self, PolicyType};
use super::resources::{KEY_GROUP, Kind, ORIGIN_ACCESS_CONTROL, ORIGIN_ACCESS_IDENTITY, PUBLIC_KEY};
use super::store::{Resource, State, Store, StoreError};
use super::xml::{Element, XmlError, list};
use super::{distributions, functions, kvs, monitoring};

/// The path every operation starts with.
pub const VERSION_PREFIX: &str = "/2020-05-31/";

/// A request, as the operations see it.
pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// The path after `/2020-05-31/`, percent-decoded per segment.
    pub segments: Vec<String>,
    /// Query parameters, decoded.
    pub query: BTreeMap<String, String>,
    pub if_match: Option<&'a str>,
    pub body: &'a [u8],
    /// `http://host:port` of this listener, for `Location`.
    pub base_url: String,
    /// Unix milliseconds.
    pub now: u64,
}

/// A successful answer.
#[derive(Debug)]
pub struct ApiReply {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub body: Option<Element>,
    /// A body that is no XML document (a function's code), and its type.
    pub blob: Option<(Vec<u8>, &'static str)>,
    /// Further response headers.
    pub headers: Vec<(&'static str, String)>,
}

impl ApiReply {
    pub fn ok(body: Element) -> ApiReply {
        ApiReply {
            body: Some(body),
            ..ApiReply::no_content()
        }
        .with_status(200)
    }

    pub fn blob(bytes: Vec<u8>, content_type: &'static str) -> ApiReply {
        ApiReply {
            blob: Some((bytes, content_type)),
            ..ApiReply::no_content()
        }
        .with_status(200)
    }

    pub fn with_status(mut self, status: u16) -> ApiReply {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> ApiReply {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn with_etag(mut self, etag: &str) -> ApiReply {
        self.etag = Some(etag.to_owned());
        self
    }

    pub fn created(body: Element, etag: Option<&str>, location: String) -> ApiReply {
        ApiReply {
            status: 201,
            etag: etag.map(str::to_owned),
            location: Some(location),
            body: Some(body),
            ..ApiReply::no_content()
        }
    }

    pub fn no_content() -> ApiReply {
        ApiReply {
            status: 204,
            etag: None,
            location: None,
            body: None,
            blob: None,
            headers: Vec::new(),
        }
    }
}

/// A refusal, as CloudFront words it: status, error code and message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidArgument", message)
    }

    /// CloudFront's `<ErrorResponse>` body.
    pub fn to_document(&self, request_id: &str) -> String {
        let error = Element::new("Error")
            .with(Element::leaf("Type", if self.status >= 500 { "Receiver" } else { "Sender" }))
            .with(Element::leaf("Code", self.code))
            .with(Element::leaf("Message", self.message.clone()));
        Element::new("ErrorResponse")
            .with(error)
            .with(Element::leaf("RequestId", request_id))
            .to_document()
    }
}

impl From<XmlError> for ApiError {
    fn from(error: XmlError) -> ApiError {
        ApiError::new(400, "MalformedInput", error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        tracing::error!(%error, "the control plane's state could not be written");
        ApiError::new(503, "ServiceUnavailable", "the state could not be written; nothing changed")
    }
}

/// What a change asks of the edge besides new tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purge {
    pub distribution: String,
    pub paths: Vec<String>,
}

/// The outcome of one request.
pub struct Outcome {
    pub reply: Result<ApiReply, ApiError>,
    /// Whether what is served changed (the edge's tables are compiled again).
    pub changed: bool,
    pub purge: Option<Purge>,
}

/// How the API answers: its store and the settings its answers need.
pub struct Api {
    pub store: Store,
    pub settings: ApiSettings,
}

/// What the operations need to know of this control plane.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Host names (with port) handed to new distributions as their
    /// DomainName, in order; when all are taken, `<id>.{domain_suffix}`.
    pub domain_pool: Vec<String>,
    pub domain_suffix: String,
    /// How long reads say `InProgress` after a change.
    pub deploy_delay_ms: u64,
    /// Where custom origins may be (none: custom origins are refused).
    pub custom_origin_networks: Arc<[IpNet]>,
    /// Whether `POST /moto-api/reset` deletes every resource.
    pub reset_endpoint: bool,
}

/// The account in every ARN (the emulator has no accounts).
pub const ACCOUNT: &str = "123456789012";

impl Api {
    /// Answers `request`.
    pub fn handle(&self, request: &ApiRequest<'_>) -> Outcome {
        let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
        let changes = !matches!(request.method, "GET" | "HEAD");
        let mut purge = None;
        let reply = match (request.method, segments.as_slice()) {
            ("POST", ["public-key"]) => self.create(&PUBLIC_KEY, request),
            ("GET", ["public-key"]) => self.list(&PUBLIC_KEY, request),
            ("GET", ["public-key", id]) => self.get(&PUBLIC_KEY, id),
            ("GET", ["public-key", id, "config"]) => self.get_config(&PUBLIC_KEY, id),
            ("PUT", ["public-key", id, "config"]) => self.update(&PUBLIC_KEY, id, request),
            ("DELETE", ["public-key", id]) => self.delete(&PUBLIC_KEY, id, request),
            ("POST", ["key-group"]) => self.create(&KEY_GROUP, request),
            ("GET", ["key-group"]) => self.list(&KEY_GROUP, request),
            ("GET", ["key-group", id]) => self.get(&KEY_GROUP, id),
            ("GET", ["key-group", id, "config"]) => self.get_config(&KEY_GROUP, id),
            ("PUT", ["key-group", id]) => self.update(&KEY_GROUP, id, request),
            ("DELETE", ["key-group", id]) => self.delete(&KEY_GROUP, id, request),
            ("POST", ["origin-access-control"]) => self.create(&ORIGIN_ACCESS_CONTROL, request),
            ("GET", ["origin-access-control"]) => self.list(&ORIGIN_ACCESS_CONTROL, request),
            ("GET", ["origin-access-control", id]) => self.get(&ORIGIN_ACCESS_CONTROL, id),
            ("GET", ["origin-access-control", id, "config"]) => self.get_config(&ORIGIN_ACCESS_CONTROL, id),
            ("PUT", ["origin-access-control", id, "config"]) => self.update(&ORIGIN_ACCESS_CONTROL, id, request),
            ("DELETE", ["origin-access-control", id]) => self.delete(&ORIGIN_ACCESS_CONTROL, id, request),
            (method, [path, rest @ ..]) if policies::by_path(path).is_some() => {
                let policy = policies::by_path(path).expect("matched");
                self.policy(policy, method, rest, request)
            }
            ("POST", ["origin-access-identity", "cloudfront"]) => self.create(&ORIGIN_ACCESS_IDENTITY, request),
            ("GET", ["origin-access-identity", "cloudfront"]) => self.list(&ORIGIN_ACCESS_IDENTITY, request),
            ("GET", ["origin-access-identity", "cloudfront", id]) => self.get(&ORIGIN_ACCESS_IDENTITY, id),
            ("GET", ["origin-access-identity", "cloudfront", id, "config"]) => self.get_config(&ORIGIN_ACCESS_IDENTITY, id),
            ("PUT", ["origin-access-identity", "cloudfront", id, "config"]) => self.update(&ORIGIN_ACCESS_IDENTITY, id, request),
            ("DELETE", ["origin-access-identity", "cloudfront", id]) => self.delete(&ORIGIN_ACCESS_IDENTITY, id, request),
            ("GET", ["distributions", id, "monitoring-subscription"]) => self.store.read(|state| monitoring::get(id, state)),
            ("POST" | "DELETE", ["distributions", id, "monitoring-subscription"]) => {
                self.store.update(|state| monitoring::change(id, request, state))
            }
            ("GET" | "POST", ["tagging"]) => self.tagging(request),
            ("POST", ["distribution", id, "invalidation"]) => {
                distributions::create_invalidation(self, id, request).map(|(reply, paths)| {
                    purge = Some(Purge {
                        distribution: id.to_string(),
                        paths,
                    });
                    reply
                })
            }
            (_, ["distribution", ..]) => distributions::handle(self, request, &segments),
            (_, ["function", rest @ ..]) => functions::handle(self, request, rest),
            (_, ["key-value-store", rest @ ..]) => kvs::handle(self, request, rest),
            _ => Err(ApiError::invalid(format!(
                "keyfront's control plane has no operation {} /2020-05-31/{}",
                request.method,
                segments.join("/")
            ))),
        };
        Outcome {
            // An invalidation purges; the tables stay as they are.
            changed: changes && reply.is_ok() && purge.is_none(),
            reply,
            purge,
        }
    }

    /// The operations of a policy type, its managed policies included.
    fn policy(&self, policy: &PolicyType, method: &str, rest: &[&str], request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let kind = &policy.kind;
        match (method, rest) {
            ("POST", []) => self.create(kind, request),
            ("GET", []) => self.store.read(|state| policy.list(state, request)),
            ("GET", [id]) => policy.get_managed(id, false).map_or_else(|| self.get(kind, id), Ok),
            ("GET", [id, "config"]) => policy.get_managed(id, true).map_or_else(|| self.get_config(kind, id), Ok),
            ("PUT", [id]) => policy.refuse_managed(id, method).and_then(|()| self.update(kind, id, request)),
            ("DELETE", [id]) => policy.refuse_managed(id, method).and_then(|()| self.delete(kind, id, request)),
            _ => Err(ApiError::invalid(format!(
                "keyfront's control plane has no operation {method} /2020-05-31/{}/{}",
                kind.path,
                rest.join("/")
            ))),
        }
    }

    fn create(&self, kind: &Kind, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let config = Element::parse(request.body, kind.config)?;
        check_well_formed(&config)?;
        let stamp = iso_time(request.now);
        self.store.update(|state| {
            (kind.validate)(&config, state)?;
            let caller_reference = config.text_of("CallerReference");
            let existing = (kind.collection)(state)
                .iter()
                .find(|(_, resource)| caller_reference.is_some() && resource.config.text_of("CallerReference") == caller_reference);
            if let Some((id, resource)) = existing {
                // CloudFront's idempotent create: the same request again
                // answers with what it made.
                return if resource.config == config {
                    Ok(ApiReply::created(
                        kind.resource(id, resource),
                        Some(&resource.etag),
                        kind.location(request, id),
                    ))
                } else {
                    Err(ApiError::new(
                        409,
                        kind.already_exists,
                        "the CallerReference was used with another configuration",
                    ))
                };
            }
            let name = config.text_of("Name");
            if (kind.collection)(state).values().any(|r| r.config.text_of("Name") == name) {
                return Err(ApiError::new(409, kind.already_exists, format!("the name {name:?} is taken")));
            }
            let (quota, code) = kind.quota;
            if (kind.resources)(state).len() >= quota {
                return Err(ApiError::new(400, code, format!("an account holds at most {quota} of these")));
            }
            let id = (kind.new_id)();
            let resource = Resource {
                etag: new_etag(),
                created: stamp.clone(),
                modified: stamp,
                config,
            };
            let reply = ApiReply::created(kind.resource(&id, &resource), Some(&resource.etag), kind.location(request, &id));
            (kind.collection)(state).insert(id, resource);
            Ok(reply)
        })
    }

    fn find(&self, kind: &Kind, id: &str) -> Result<Resource, ApiError> {
        self.store
            .read(|state| (kind.resources)(state).get(id).cloned())
            .ok_or_else(|| ApiError::new(404, kind.not_found, format!("no {} {id}", kind.resource)))
    }

    fn get(&self, kind: &Kind, id: &str) -> Result<ApiReply, ApiError> {
        let resource = self.find(kind, id)?;
        Ok(ApiReply::ok(kind.resource(id, &resource)).with_etag(&resource.etag))
    }

    fn get_config(&self, kind: &Kind, id: &str) -> Result<ApiReply, ApiError> {
        let resource = self.find(kind, id)?;
        Ok(ApiReply::ok(resource.config).with_etag(&resource.etag))
    }

    fn list(&self, kind: &Kind, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let summaries = self.store.read(|state| {
            ordered((kind.resources)(state))
                .into_iter()
                .map(|(id, resource)| (id.clone(), (kind.summary)(id, resource)))
                .collect()
        });
        Ok(ApiReply::ok(page(kind.list, summaries, request, kind.marker_in_list)?))
    }

    fn update(&self, kind: &Kind, id: &str, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let config = Element::parse(request.body, kind.config)?;
        check_well_formed(&config)?;
        let stamp = iso_time(request.now);
        self.store.update(|state| {
            let current = (kind.collection)(state)
                .get(id)
                .ok_or_else(|| ApiError::new(404, kind.not_found, format!("no {} {id}", kind.resource)))?;
            check_if_match(request.if_match, &current.etag)?;
            (kind.check_update)(&current.config, &config)?;
            let name = config.text_of("Name");
            if (kind.collection)(state)
                .iter()
                .any(|(other, r)| other != id && r.config.text_of("Name") == name)
            {
                return Err(ApiError::new(409, kind.already_exists, format!("the name {name:?} is taken")));
            }
            (kind.validate)(&config, state)?;
            let resource = (kind.collection)(state).get_mut(id).expect("found above");
            resource.config = config;
            resource.etag = new_etag();
            resource.modified = stamp;
            Ok(ApiReply::ok(kind.resource(id, resource)).with_etag(&resource.etag))
        })
    }

    fn delete(&self, kind: &Kind, id: &str, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        self.store.update(|state| {
            let current = (kind.collection)(state)
                .get(id)
                .ok_or_else(|| ApiError::new(404, kind.not_found, format!("no {} {id}", kind.resource)))?;
            check_if_match(request.if_match, &current.etag)?;
            if let Some(user) = (kind.used_by)(state, id) {
                return Err(ApiError::new(
                    409,
                    kind.in_use,
                    format!("{} {id} is in use by {user}", kind.resource),
                ));
            }
            (kind.collection)(state).remove(id);
            Ok(ApiReply::no_content())
        })
    }

    /// `POST /tagging?Operation=Tag|Untag&Resource=ARN`, `GET /tagging?Resource=ARN`.
    fn tagging(&self, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let arn = request
            .query
            .get("Resource")
            .ok_or_else(|| ApiError::invalid("the Resource parameter is required"))?
            .clone();
        let operation = request.query.get("Operation").map(String::as_str);
        let tag_pairs = |element: &Element| -> Vec<(String, String)> {
            element
                .items()
                .map(|tag| {
                    (
                        tag.text_of("Key").unwrap_or("").to_owned(),
                        tag.text_of("Value").unwrap_or("").to_owned(),
                    )
                })
                .collect()
        };
        let exists = |state: &State| state.distributions.keys().any(|id| distributions::arn(id) == arn);
        match (request.method, operation) {
            ("GET", None) => self.store.read(|state| {
                if !exists(state) {
                    return Err(no_such_resource(&arn));
                }
                Ok(ApiReply::ok(tags_element(state.tags.get(&arn).map_or(&[][..], Vec::as_slice))))
            }),
            ("POST", Some("Tag")) => {
                let tags = tag_pairs(&Element::parse(request.body, "Tags")?);
                self.store.update(|state| {
                    if !exists(state) {
                        return Err(no_such_resource(&arn));
                    }
                    let current = state.tags.entry(arn.clone()).or_default();
                    for (key, value) in tags {
                        current.retain(|(existing, _)| *existing != key);
                        current.push((key, value));
                    }
                    Ok(ApiReply::no_content())
                })
            }
            ("POST", Some("Untag")) => {
                let keys: Vec<String> = Element::parse(request.body, "TagKeys")?
                    .items()
                    .map(|key| key.text.clone())
                    .collect();
                self.store.update(|state| {
                    if !exists(state) {
                        return Err(no_such_resource(&arn));
                    }
                    state.tags.entry(arn.clone()).or_default().retain(|(key, _)| !keys.contains(key));
                    Ok(ApiReply::no_content())
                })
            }
            _ => Err(ApiError::invalid("expected ?Operation=Tag or ?Operation=Untag")),
        }
    }
}

fn no_such_resource(arn: &str) -> ApiError {
    ApiError::new(404, "NoSuchResource", format!("no resource {arn}"))
}

/// `<Tags><Items><Tag>...` for `tags`.
pub fn tags_element(tags: &[(String, String)]) -> Element {
    let items = tags
        .iter()
        .map(|(key, value)| {
            Element::new("Tag")
                .with(Element::leaf("Key", key))
                .with(Element::leaf("Value", value))
        })
        .collect::<Vec<_>>();
    let mut element = Element::new("Tags");
    element.children.push(Element {
        name: "Items".into(),
        text: String::new(),
        children: items,
    });
    element
}

/// `If-Match` against the resource's current ETag.
pub fn check_if_match(if_match: Option<&str>, etag: &str) -> Result<(), ApiError> {
    match if_match {
        None | Some("") => Err(ApiError::new(
            400,
            "InvalidIfMatchVersion",
            "The If-Match version is missing or not valid for the resource.",
        )),
        Some(given) if given == etag => Ok(()),
        Some(_) => Err(ApiError::new(
            412,
            "PreconditionFailed",
            "The request failed because it didn't meet the preconditions in one or more request-header fields.",
        )),
    }
}

/// The elements of CloudFront's model that are booleans (2020-05-31).
const BOOLEANS: [&str; 16] = [
    "AccessControlAllowCredentials",
    "CloudFrontDefaultCertificate",
    "Compress",
    "Enabled",
    "EnableAcceptEncodingBrotli",
    "EnableAcceptEncodingGzip",
    "IncludeCookies",
    "IncludeSubdomains",
    "IsIPV6Enabled",
    "ModeBlock",
    "OriginOverride",
    "Override",
    "Preload",
    "QueryString",
    "SmoothStreaming",
    "Staging",
];

/// Refuses a list whose `Quantity` is not the number of its `Items`, and a
/// boolean that is not exactly `true` or `false`: CloudFront refuses ` true `,
/// `True` and `1`, and a boolean read as a default could open a signed
/// behavior.
pub fn check_well_formed(element: &Element) -> Result<(), ApiError> {
    if BOOLEANS.contains(&element.name.as_str()) && element.children.is_empty() && !matches!(element.text.as_str(), "true" | "false") {
        return Err(ApiError::new(
            400,
            "MalformedInput",
            format!("{}: {:?} is not a boolean (true or false)", element.name, element.text),
        ));
    }
    if let Some(quantity) = element.text_of("Quantity") {
        let counted = element.items().count();
        if quantity.trim().parse::<usize>().ok() != Some(counted) {
            return Err(ApiError::new(
                400,
                "InconsistentQuantities",
                format!(
                    "The specified quantity of {} ({quantity}) does not match the actual quantity supplied ({counted}).",
                    element.name
                ),
            ));
        }
    }
    element.children.iter().try_for_each(check_well_formed)
}

/// Resources in the order they were made (then by id).
pub fn ordered<T: Created>(resources: &BTreeMap<String, T>) -> Vec<(&String, &T)> {
    let mut all: Vec<(&String, &T)> = resources.iter().collect();
    all.sort_by(|a, b| (a.1.created(), a.0).cmp(&(b.1.created(), b.0)));
    all
}

/// What lists are ordered by.
pub trait Created {
    fn created(&self) -> &str;
}

impl Created for Resource {
    fn created(&self) -> &str {
        &self.created
    }
}

/// One page of a list: from `Marker` (an id) on, at most `MaxItems`
/// (default 100), with `NextMarker` when there is more. `with_marker`:
/// the list also carries `Marker` and `IsTruncated`.
pub fn page(root: &str, summaries: Vec<(String, Element)>, request: &ApiRequest<'_>, with_marker: bool) -> Result<Element, ApiError> {
    let max_items = match request.query.get("MaxItems") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::invalid(format!("MaxItems {text:?} is not a positive number")))?,
        None => 100,
    };
    let marker = request.query.get("Marker").cloned().unwrap_or_default();
    let start = if marker.is_empty() {
        0
    } else {
        summaries
            .iter()
            .position(|(id, _)| *id == marker)
            .ok_or_else(|| ApiError::invalid(format!("Marker {marker:?} names nothing in this list")))?
    };
    let rest = &summaries[start..];
    let truncated = rest.len() > max_items;
    let shown: Vec<Element> = rest.iter().take(max_items).map(|(_, summary)| summary.clone()).collect();
    let mut element = Element::new(root);
    if with_marker {
        element.children.push(Element::leaf("Marker", marker));
    }
    if truncated {
        element.children.push(Element::leaf("NextMarker", rest[max_items].0.clone()));
    }
    element.children.push(Element::leaf("MaxItems", max_items.to_string()));
    if with_marker {
        element.children.push(Element::leaf("IsTruncated", truncated.to_string()));
    }
    element.children.extend(list("", shown).children);
    Ok(element)
}

/// `2026-11-27T18:00:00.000Z` for Unix milliseconds.
pub fn iso_time(unix_ms: u64) -> String {
    let moment =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    moment.format(format).unwrap_or_default()
}

/// `prefix` and `length` random upper-case letters and digits.
pub fn random_name(prefix: &str, length: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let rest: String = (0..length)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{rest}")
}

/// CloudFront's ids: a letter and 13 upper-case letters and digits.
pub fn random_id(first: char) -> String {
    random_name(&first.to_string(), 13)
}

/// A new version tag, in CloudFront's ETag form.
pub fn new_etag() -> String {
    random_id('E')
}

pub fn random_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex = hex::encode(bytes);
    format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}
