//! Key value stores: the CloudFront API's operations on stores (create,
//! describe, list, update, delete), the data plane's on their keys
//! (`data`), and the snapshot a function associated with one reads.

pub mod data;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::api::{ACCOUNT, ApiError, ApiReply, ApiRequest, Created, check_if_match, iso_time, new_etag, ordered, page};
use super::store::State;
use super::xml::Element;
use crate::functions::KeyValues;

/// CloudFront's quota of key value stores per account.
const MAX_STORES: usize = 50;

/// A key value store: what the CloudFront API says of it, and its keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvsRecord {
    pub id: String,
    /// The store's ETag in the CloudFront API (it changes with its comment).
    pub etag: String,
    /// The ETag of its keys in the data plane (it changes with every key).
    pub keys_etag: String,
    pub comment: String,
    /// ISO 8601, as lists are ordered by it.
    pub created: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub modified_ms: u64,
    pub items: BTreeMap<String, String>,
}

impl Created for KvsRecord {
    fn created(&self) -> &str {
        &self.created
    }
}

impl KvsRecord {
    /// Keys and values, in bytes, as the data plane counts a store's size.
    pub fn size(&self) -> usize {
        self.items.iter().map(|(key, value)| key.len() + value.len()).sum()
    }
}

pub fn arn(id: &str) -> String {
    format!("arn:aws:cloudfront::{ACCOUNT}:key-value-store/{id}")
}

/// The name and record of the store `kvs_arn` names.
pub fn by_arn<'s>(state: &'s State, kvs_arn: &str) -> Option<(&'s String, &'s KvsRecord)> {
    let id = kvs_arn.strip_prefix(&format!("arn:aws:cloudfront::{ACCOUNT}:key-value-store/"))?;
    state.key_value_stores.iter().find(|(_, record)| record.id == id)
}

/// What a function associated with the store `kvs_arn` reads.
pub fn key_values(state: &State, kvs_arn: &str) -> Option<Arc<KeyValues>> {
    let (_, record) = by_arn(state, kvs_arn)?;
    Some(Arc::new(KeyValues {
        id: record.id.clone(),
        items: record.items.clone(),
        created: record.created_ms / 1000,
        updated: record.modified_ms / 1000,
    }))
}

/// The ARNs of the stores a function config (`FunctionConfig`) associates.
pub fn associations(config: &Element) -> impl Iterator<Item = &str> {
    config
        .child("KeyValueStoreAssociations")
        .into_iter()
        .flat_map(Element::items)
        .filter_map(|association| association.text_of("KeyValueStoreARN"))
}

fn element(name: &str, record: &KvsRecord) -> Element {
    Element::new("KeyValueStore")
        .with(Element::leaf("Name", name))
        .with(Element::leaf("Id", record.id.clone()))
        .with(Element::leaf("Comment", record.comment.clone()))
        .with(Element::leaf("ARN", arn(&record.id)))
        .with(Element::leaf("Status", "READY"))
        .with(Element::leaf("LastModifiedTime", iso_time(record.modified_ms)))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(404, "EntityNotFound", format!("The key value store {name} does not exist."))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The comment of a create or update body, within CloudFront's 128 characters.
fn comment(body: &Element) -> Result<String, ApiError> {
    let comment = body.text_of("Comment").unwrap_or("").to_owned();
    if comment.chars().count() > 128 {
        return Err(ApiError::invalid("Comment is at most 128 characters"));
    }
    Ok(comment)
}

/// Whether a function (either stage) associates the store `id`.
fn in_use(state: &State, id: &str) -> bool {
    let kvs_arn = arn(id);
    state.functions.values().any(|function| {
        std::iter::once(&function.development)
            .chain(&function.live)
            .any(|stage| associations(&stage.config).any(|associated| associated == kvs_arn))
    })
}

/// Answers the store operations (`segments` after `key-value-store`).
pub fn handle(api: &super::api::Api, request: &ApiRequest<'_>, segments: &[&str]) -> Result<ApiReply, ApiError> {
    match (request.method, segments) {
        ("POST", []) => create(api, request),
        ("GET", []) => api.store.read(|state| {
            let summaries = ordered(&state.key_value_stores)
                .into_iter()
                .map(|(name, record)| (name.clone(), element(name, record)))
                .collect();
            Ok(ApiReply::ok(page("KeyValueStoreList", summaries, request, false)?))
        }),
        ("GET", [name]) => api.store.read(|state| {
            let record = state.key_value_stores.get(*name).ok_or_else(|| not_found(name))?;
            Ok(ApiReply::ok(element(name, record)).with_etag(&record.etag))
        }),
        ("PUT", [name]) => {
            let body = Element::parse(request.body, "UpdateKeyValueStoreRequest")?;
            let comment = comment(&body)?;
            api.store.update(|state| {
                let record = state.key_value_stores.get_mut(*name).ok_or_else(|| not_found(name))?;
                check_if_match(request.if_match, &record.etag)?;
                record.comment = comment;
                record.etag = new_etag();
                record.modified_ms = request.now;
                Ok(ApiReply::ok(element(name, record)).with_etag(&record.etag))
            })
        }
        ("DELETE", [name]) => api.store.update(|state| {
            let record = state.key_value_stores.get(*name).ok_or_else(|| not_found(name))?;
            check_if_match(request.if_match, &record.etag)?;
            if in_use(state, &record.id) {
                return Err(ApiError::new(
                    409,
                    "CannotDeleteEntityWhileInUse",
                    format!("The key value store {name} is associated with a function."),
                ));
            }
            state.key_value_stores.remove(*name);
            Ok(ApiReply::no_content())
        }),
        _ => Err(ApiError::invalid(format!(
            "keyfront's control plane has no operation {} /2020-05-31/key-value-store/{}",
            request.method,
            segments.join("/")
        ))),
    }
}

fn create(api: &super::api::Api, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
    let body = Element::parse(request.body, "CreateKeyValueStoreRequest")?;
    let name = body.text_of("Name").unwrap_or("").to_owned();
    if !valid_name(&name) {
        return Err(ApiError::invalid(format!(
            "Name {name:?} must be 1 to 64 of a-z, A-Z, 0-9, - and _"
        )));
    }
    if body.child("ImportSource").is_some() {
        return Err(ApiError::new(
            400,
            "UnsupportedOperation",
            "keyfront does not import key value stores from S3: put the keys through the data plane",
        ));
    }
    let comment = comment(&body)?;
    api.store.update(|state| {
        if state.key_value_stores.contains_key(&name) {
            return Err(ApiError::new(
                409,
                "EntityAlreadyExists",
                format!("A key value store named {name} already exists."),
            ));
        }
        if state.key_value_stores.len() >= MAX_STORES {
            return Err(ApiError::new(
                400,
                "EntityLimitExceeded",
                format!("an account holds at most {MAX_STORES} key value stores"),
            ));
        }
        let record = KvsRecord {
            id: super::api::random_uuid(),
            etag: new_etag(),
            keys_etag: new_etag(),
            comment,
            created: iso_time(request.now),
            created_ms: request.now,
            modified_ms: request.now,
            items: BTreeMap::new(),
        };
        let location = format!("{}/2020-05-31/key-value-store/{}", request.base_url, arn(&record.id));
        let reply = ApiReply::created(element(&name, &record), Some(&record.etag), location);
        state.key_value_stores.insert(name.clone(), record);
        Ok(reply)
    })
}
