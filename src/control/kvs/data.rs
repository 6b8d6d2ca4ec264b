//! The key value stores' data plane (the `cloudfront-keyvaluestore` API
//! boto3 and the AWS CLI call, JSON over REST, SigV4A-signed): describe a
//! store, get, list, put and delete keys, and several at once, each change
//! under the store's current ETag (`If-Match`), as CloudFront's.

use serde::Deserialize;
use serde_json::json;

use super::KvsRecord;
use crate::control::api::{Api, ApiError, ApiReply, ApiRequest, new_etag};
use crate::control::store::State;

/// The path every data-plane operation starts with.
pub const DATA_PLANE_PREFIX: &str = "/key-value-stores/";
/// The service its requests are signed for.
pub const SERVICE: &str = "cloudfront-keyvaluestore";

/// CloudFront's limits: a key's and a value's bytes, a store's total.
const MAX_KEY_BYTES: usize = 512;
const MAX_VALUE_BYTES: usize = 1024;
const MAX_STORE_BYTES: usize = 5 * 1024 * 1024;
/// Keys one `ListKeys` page holds at most, and by default.
const MAX_PAGE: usize = 50;
const DEFAULT_PAGE: usize = 10;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutBody {
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyValue {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyOnly {
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    puts: Vec<KeyValue>,
    #[serde(default)]
    deletes: Vec<KeyOnly>,
}

fn json_reply(status: u16, value: &serde_json::Value) -> ApiReply {
    ApiReply::blob(value.to_string().into_bytes(), "application/json").with_status(status)
}

/// `error` as the data plane answers it: its code in `x-amzn-ErrorType`
/// (where botocore reads it), its message in the JSON body.
pub fn error_reply(error: &ApiError) -> ApiReply {
    json_reply(error.status, &json!({ "Message": error.message })).with_header("x-amzn-ErrorType", error.code)
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "ValidationException", message)
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(404, "ResourceNotFoundException", format!("{what} was not found"))
}

/// The store `kvs_arn` names, by name, in `state`.
fn store_name(state: &State, kvs_arn: &str) -> Result<String, ApiError> {
    super::by_arn(state, kvs_arn)
        .map(|(name, _)| name.clone())
        .ok_or_else(|| not_found(&format!("The key value store {kvs_arn}")))
}

fn check_key(key: &str) -> Result<(), ApiError> {
    match key.len() {
        1..=MAX_KEY_BYTES => Ok(()),
        _ => Err(validation(format!("a key is 1 to {MAX_KEY_BYTES} bytes"))),
    }
}

fn check_value(value: &str) -> Result<(), ApiError> {
    match value.len() <= MAX_VALUE_BYTES {
        true => Ok(()),
        false => Err(validation(format!("a value is at most {MAX_VALUE_BYTES} bytes"))),
    }
}

fn sizes(record: &KvsRecord) -> serde_json::Value {
    json!({ "ItemCount": record.items.len(), "TotalSizeInBytes": record.size() })
}

/// Answers a data-plane request (`segments` after `/key-value-stores/`,
/// percent-decoded); errors are answered as the data plane's. The bool
/// tells whether a store's keys changed.
pub fn handle(api: &Api, request: &ApiRequest<'_>) -> (ApiReply, bool) {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let changes = !matches!(request.method, "GET" | "HEAD");
    let result = match (request.method, segments.as_slice()) {
        ("GET", [kvs_arn]) => api.store.read(|state| describe(state, kvs_arn)),
        ("GET", [kvs_arn, "keys", key]) => api.store.read(|state| {
            let name = store_name(state, kvs_arn)?;
            let record = &state.key_value_stores[&name];
            let value = record.items.get(*key).ok_or_else(|| not_found(&format!("The key {key}")))?;
            let mut body = sizes(record);
            body["Key"] = json!(key);
            body["Value"] = json!(value);
            Ok(json_reply(200, &body))
        }),
        ("GET", [kvs_arn, "keys"]) => api.store.read(|state| list(state, kvs_arn, request)),
        ("PUT", [kvs_arn, "keys", key]) => {
            let body =
                serde_json::from_slice::<PutBody>(request.body).map_err(|e| validation(format!("the body is not {{\"Value\": ...}}: {e}")));
            body.and_then(|body| change(api, request, kvs_arn, vec![(key.to_string(), Some(body.value))]))
        }
        ("DELETE", [kvs_arn, "keys", key]) => change(api, request, kvs_arn, vec![(key.to_string(), None)]),
        ("POST", [kvs_arn, "keys"]) => {
            let body = serde_json::from_slice::<UpdateBody>(request.body)
                .map_err(|e| validation(format!("the body is not {{\"Puts\": [...], \"Deletes\": [...]}}: {e}")));
            body.and_then(|body| {
                let puts = body.puts.into_iter().map(|put| (put.key, Some(put.value)));
                let deletes = body.deletes.into_iter().map(|delete| (delete.key, None));
                change(api, request, kvs_arn, puts.chain(deletes).collect())
            })
        }
        _ => Err(validation(format!(
            "the key value store data plane has no operation {} {DATA_PLANE_PREFIX}{}",
            request.method,
            segments.join("/")
        ))),
    };
    match result {
        Ok(reply) => (reply, changes),
        Err(error) => (error_reply(&error), false),
    }
}

fn describe(state: &State, kvs_arn: &str) -> Result<ApiReply, ApiError> {
    let name = store_name(state, kvs_arn)?;
    let record = &state.key_value_stores[&name];
    let mut body = sizes(record);
    body["KvsARN"] = json!(kvs_arn);
    body["Created"] = json!(record.created_ms as f64 / 1000.0);
    body["LastModified"] = json!(record.modified_ms as f64 / 1000.0);
    body["ETag"] = json!(record.keys_etag);
    body["Status"] = json!("READY");
    Ok(json_reply(200, &body).with_etag(&record.keys_etag))
}

/// One page of keys, in order, from `NextToken` (the next key, hex) on.
fn list(state: &State, kvs_arn: &str, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
    let name = store_name(state, kvs_arn)?;
    let record = &state.key_value_stores[&name];
    let page = match request.query.get("MaxResults") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| validation(format!("MaxResults is 1 to {MAX_PAGE}")))?,
    };
    let start = match request.query.get("NextToken") {
        None => String::new(),
        Some(token) => hex::decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| validation("NextToken is not one this API gave"))?,
    };
    let mut keys = record.items.range(start..);
    let items: Vec<serde_json::Value> = keys
        .by_ref()
        .take(page)
        .map(|(key, value)| json!({ "Key": key, "Value": value }))
        .collect();
    let mut body = json!({ "Items": items });
    if let Some((next, _)) = keys.next() {
        body["NextToken"] = json!(hex::encode(next));
    }
    Ok(json_reply(200, &body))
}

/// Puts (`Some` value) and deletes (`None`) keys of the store, at once,
/// if its keys' ETag is `If-Match`: a new ETag after.
fn change(api: &Api, request: &ApiRequest<'_>, kvs_arn: &str, changes: Vec<(String, Option<String>)>) -> Result<ApiReply, ApiError> {
    for (key, value) in &changes {
        check_key(key)?;
        value.as_deref().map(check_value).transpose()?;
    }
    api.store.update(|state| {
        let name = store_name(state, kvs_arn)?;
        let record = state.key_value_stores.get_mut(&name).expect("named above");
        if request.if_match != Some(record.keys_etag.as_str()) {
            return Err(ApiError::new(
                409,
                "ConflictException",
                "If-Match is not the key value store's current ETag",
            ));
        }
        for (key, value) in changes {
            match value {
                Some(value) => {
                    record.items.insert(key, value);
                }
                None if record.items.remove(&key).is_none() => return Err(not_found(&format!("The key {key}"))),
                None => {}
            }
        }
        if record.size() > MAX_STORE_BYTES {
            return Err(ApiError::new(
                402,
                "ServiceQuotaExceededException",
                format!("a key value store holds at most {MAX_STORE_BYTES} bytes of keys and values"),
            ));
        }
        record.keys_etag = new_etag();
        record.modified_ms = request.now;
        Ok(json_reply(200, &sizes(record)).with_etag(&record.keys_etag))
    })
}
