//! CloudFront Functions' API: create, describe, get (the code), list,
//! update, publish, test and delete, with the DEVELOPMENT and LIVE stages;
//! behaviors run the LIVE stage (`compile`).

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::api::{ACCOUNT, ApiError, ApiReply, ApiRequest, Created, check_if_match, iso_time, new_etag, ordered, page};
use super::distributions::behaviors;
use super::kvs;
use super::store::State;
use super::xml::Element;
use crate::functions::{self, FunctionCode, FunctionError, JsRuntime, MAX_CODE_BYTES};
use crate::routing::ViewerFunctions;

/// CloudFront's quota of functions per account.
const MAX_FUNCTIONS: usize = 100;

/// A function: its stages, each a configuration and code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// The ETag of its last change (for the fleet's ordering of changes).
    pub etag: String,
    pub created: String,
    pub development: FunctionStage,
    pub live: Option<FunctionStage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionStage {
    pub etag: String,
    pub modified: String,
    /// `FunctionConfig` as sent.
    pub config: Element,
    pub code: String,
}

impl Created for FunctionRecord {
    fn created(&self) -> &str {
        &self.created
    }
}

pub fn arn(name: &str) -> String {
    format!("arn:aws:cloudfront::{ACCOUNT}:function/{name}")
}

/// The function an ARN names.
fn name_of(function_arn: &str) -> Option<&str> {
    function_arn.strip_prefix(&format!("arn:aws:cloudfront::{ACCOUNT}:function/"))
}

/// The LIVE code of the function `function_arn` names, as behaviors run it.
fn live_code(state: &State, function_arn: &str) -> Option<Arc<FunctionCode>> {
    let name = name_of(function_arn)?;
    let live = state.functions.get(name)?.live.as_ref()?;
    Some(Arc::new(code_of(name, live, state)?))
}

/// A behavior's `FunctionAssociations`: at most one per viewer event, each
/// naming a published function; `Err` the first that is not.
pub fn viewer_functions(behavior: &Element, state: &State) -> Result<ViewerFunctions, ApiError> {
    let refused = |message: String| ApiError::new(400, "InvalidFunctionAssociation", message);
    let mut functions = ViewerFunctions::default();
    for association in behavior.child("FunctionAssociations").into_iter().flat_map(Element::items) {
        let function_arn = association.text_of("FunctionARN").unwrap_or("");
        let slot = match association.text_of("EventType").unwrap_or("") {
            "viewer-request" => &mut functions.request,
            "viewer-response" => &mut functions.response,
            other => {
                return Err(refused(format!(
                    "EventType {other:?}: CloudFront Functions run on viewer-request and viewer-response"
                )));
            }
        };
        if slot.is_some() {
            return Err(refused("a behavior has at most one function per event type".into()));
        }
        *slot = Some(live_code(state, function_arn).ok_or_else(|| {
            refused(format!(
                "The function ARN {function_arn:?} is invalid or the function is not published."
            ))
        })?);
    }
    Ok(functions)
}

/// A stage's code as it runs, with its key value store's keys now; `None`
/// when its runtime or its store is gone (the API refuses both; a state
/// written before it did may hold one): the behavior is then unserved.
fn code_of(name: &str, stage: &FunctionStage, state: &State) -> Option<FunctionCode> {
    let store = match kvs::associations(&stage.config).next() {
        Some(kvs_arn) => Some(kvs::key_values(state, kvs_arn)?),
        None => None,
    };
    Some(FunctionCode {
        name: name.to_owned(),
        version: stage.etag.clone(),
        source: Arc::from(stage.code.as_str()),
        runtime: JsRuntime::parse(stage.config.text_of("Runtime")?)?,
        store,
    })
}

fn no_such_function(name: &str) -> ApiError {
    ApiError::new(404, "NoSuchFunctionExists", format!("The function {name} does not exist."))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether any distribution's behavior runs `name`.
fn associated(state: &State, name: &str) -> bool {
    let arn = arn(name);
    state.distributions.values().any(|record| {
        behaviors(&record.resource.config).any(|behavior| {
            behavior
                .child("FunctionAssociations")
                .into_iter()
                .flat_map(Element::items)
                .any(|association| association.text_of("FunctionARN") == Some(&arn))
        })
    })
}

fn summary(name: &str, record: &FunctionRecord, stage: &FunctionStage, stage_name: &str, state: &State) -> Element {
    let status = match (&record.live, associated(state, name)) {
        (None, _) => "UNPUBLISHED",
        (Some(_), false) => "UNASSOCIATED",
        (Some(_), true) => "DEPLOYED",
    };
    Element::new("FunctionSummary")
        .with(Element::leaf("Name", name))
        .with(Element::leaf("Status", status))
        .with(stage.config.clone())
        .with(
            Element::new("FunctionMetadata")
                .with(Element::leaf("FunctionARN", arn(name)))
                .with(Element::leaf("Stage", stage_name))
                .with(Element::leaf("CreatedTime", record.created.clone()))
                .with(Element::leaf("LastModifiedTime", stage.modified.clone())),
        )
}

/// The stage `Stage` names (DEVELOPMENT when none), and its name.
fn stage<'a>(
    record: &'a FunctionRecord,
    request: &ApiRequest<'_>,
    name: &str,
    asked: Option<&str>,
) -> Result<(&'a FunctionStage, &'static str), ApiError> {
    match asked.or_else(|| request.query.get("Stage").map(String::as_str)) {
        None | Some("DEVELOPMENT") => Ok((&record.development, "DEVELOPMENT")),
        Some("LIVE") => record
            .live
            .as_ref()
            .map(|live| (live, "LIVE"))
            .ok_or_else(|| no_such_function(name)),
        Some(other) => Err(ApiError::invalid(format!("Stage {other:?} must be DEVELOPMENT or LIVE"))),
    }
}

/// The `FunctionConfig` and code of a create or update body: a runtime
/// CloudFront has, at most one key value store, code within 10 KB.
fn config_and_code(body: &Element) -> Result<(Element, String), ApiError> {
    let config = body
        .child("FunctionConfig")
        .cloned()
        .ok_or_else(|| ApiError::invalid("FunctionConfig is required"))?;
    let runtime = config.text_of("Runtime").unwrap_or("");
    if JsRuntime::parse(runtime).is_none() {
        return Err(ApiError::invalid(format!(
            "Runtime {runtime:?} must be cloudfront-js-1.0 or cloudfront-js-2.0"
        )));
    }
    if kvs::associations(&config).count() > 1 {
        return Err(ApiError::invalid("a function is associated with at most one key value store"));
    }
    let encoded = body
        .text_of("FunctionCode")
        .ok_or_else(|| ApiError::invalid("FunctionCode is required"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::invalid("FunctionCode is not base64"))?;
    if bytes.len() > MAX_CODE_BYTES {
        return Err(ApiError::new(
            413,
            "FunctionSizeLimitExceeded",
            format!("A function's code is at most {MAX_CODE_BYTES} bytes; this one has {}.", bytes.len()),
        ));
    }
    let code = String::from_utf8(bytes).map_err(|_| ApiError::invalid("FunctionCode is not UTF-8 text"))?;
    Ok((config, code))
}

/// A new development stage of `config` and `code`, checked against
/// `state`: its key value store exists, and the code compiles and defines
/// `handler` (its top level run once, its store at hand).
fn development_stage(name: &str, config: Element, code: String, now: &str, state: &State) -> Result<FunctionStage, ApiError> {
    if let Some(kvs_arn) = kvs::associations(&config).next()
        && kvs::by_arn(state, kvs_arn).is_none()
    {
        return Err(ApiError::new(
            404,
            "EntityNotFound",
            format!("The key value store {kvs_arn} does not exist."),
        ));
    }
    let stage = FunctionStage {
        etag: new_etag(),
        modified: now.to_owned(),
        config,
        code,
    };
    let mut candidate =
        code_of(name, &stage, state).ok_or_else(|| ApiError::invalid("the function's Runtime or store is not one CloudFront has"))?;
    candidate.version = format!("check-{}", new_etag());
    functions::check(&candidate).map_err(|error| ApiError::invalid(error.to_string()))?;
    Ok(stage)
}

/// Answers the function operations (`segments` after `function`).
pub fn handle(api: &super::api::Api, request: &ApiRequest<'_>, segments: &[&str]) -> Result<ApiReply, ApiError> {
    let now = iso_time(request.now);
    match (request.method, segments) {
        ("POST", []) => {
            let body = Element::parse(request.body, "CreateFunctionRequest")?;
            let name = body.text_of("Name").unwrap_or("").to_owned();
            if !valid_name(&name) {
                return Err(ApiError::invalid(format!(
                    "Name {name:?} must be 1 to 64 of a-z, A-Z, 0-9, - and _"
                )));
            }
            let (config, code) = config_and_code(&body)?;
            api.store.update(|state| {
                if state.functions.contains_key(&name) {
                    return Err(ApiError::new(
                        409,
                        "FunctionAlreadyExists",
                        format!("A function named {name} already exists."),
                    ));
                }
                if state.functions.len() >= MAX_FUNCTIONS {
                    return Err(ApiError::new(
                        400,
                        "TooManyFunctions",
                        format!("an account holds at most {MAX_FUNCTIONS} functions"),
                    ));
                }
                let development = development_stage(&name, config, code, &now, state)?;
                let record = FunctionRecord {
                    etag: development.etag.clone(),
                    created: now.clone(),
                    development,
                    live: None,
                };
                let element = summary(&name, &record, &record.development, "DEVELOPMENT", state);
                let location = format!("{}/2020-05-31/function/{}", request.base_url, arn(&name));
                let reply = ApiReply::created(element, Some(&record.development.etag), location);
                state.functions.insert(name.clone(), record);
                Ok(reply)
            })
        }
        ("GET", []) => api.store.read(|state| {
            let stage_filter = request.query.get("Stage").map(String::as_str);
            let summaries = ordered(&state.functions)
                .into_iter()
                .filter_map(|(name, record)| {
                    let (stage, stage_name) = match stage_filter {
                        Some("LIVE") => (record.live.as_ref()?, "LIVE"),
                        _ => (&record.development, "DEVELOPMENT"),
                    };
                    Some((name.clone(), summary(name, record, stage, stage_name, state)))
                })
                .collect();
            Ok(ApiReply::ok(page("FunctionList", summaries, request, false)?))
        }),
        ("GET", [name, "describe"]) => api.store.read(|state| {
            let record = state.functions.get(*name).ok_or_else(|| no_such_function(name))?;
            let (stage, stage_name) = stage(record, request, name, None)?;
            Ok(ApiReply::ok(summary(name, record, stage, stage_name, state)).with_etag(&stage.etag))
        }),
        ("GET", [name]) => api.store.read(|state| {
            let record = state.functions.get(*name).ok_or_else(|| no_such_function(name))?;
            let (stage, _) = stage(record, request, name, None)?;
            Ok(ApiReply::blob(stage.code.clone().into_bytes(), "application/octet-stream").with_etag(&stage.etag))
        }),
        ("PUT", [name]) => {
            let body = Element::parse(request.body, "UpdateFunctionRequest")?;
            let (config, code) = config_and_code(&body)?;
            api.store.update(|state| {
                let etag = &state.functions.get(*name).ok_or_else(|| no_such_function(name))?.development.etag;
                check_if_match(request.if_match, etag)?;
                let development = development_stage(name, config, code, &now, state)?;
                let record = state.functions.get_mut(*name).expect("found above");
                record.development = development;
                record.etag = record.development.etag.clone();
                let record = record.clone();
                let element = summary(name, &record, &record.development, "DEVELOPMENT", state);
                // botocore reads UpdateFunction's ETag from `ETtag` (sic).
                Ok(ApiReply::ok(element)
                    .with_etag(&record.development.etag)
                    .with_header("ETtag", &record.development.etag))
            })
        }
        ("POST", [name, "publish"]) => api.store.update(|state| {
            let record = state.functions.get_mut(*name).ok_or_else(|| no_such_function(name))?;
            check_if_match(request.if_match, &record.development.etag)?;
            let live = FunctionStage {
                etag: new_etag(),
                modified: now.clone(),
                ..record.development.clone()
            };
            record.etag = live.etag.clone();
            record.live = Some(live);
            let record = record.clone();
            let live = record.live.as_ref().expect("set above");
            Ok(ApiReply::ok(summary(name, &record, live, "LIVE", state)))
        }),
        ("DELETE", [name]) => api.store.update(|state| {
            let record = state.functions.get(*name).ok_or_else(|| no_such_function(name))?;
            check_if_match(request.if_match, &record.development.etag)?;
            if associated(state, name) {
                return Err(ApiError::new(
                    409,
                    "FunctionInUse",
                    format!("The function {name} is associated with a distribution."),
                ));
            }
            state.functions.remove(*name);
            Ok(ApiReply::no_content())
        }),
        ("POST", [name, "test"]) => test(api, request, name),
        _ => Err(ApiError::invalid(format!(
            "keyfront's control plane has no operation {} /2020-05-31/function/{}",
            request.method,
            segments.join("/")
        ))),
    }
}

/// TestFunction: runs a stage on the event sent and answers with its
/// output, logs and compute utilization; a function that fails is a
/// `FunctionErrorMessage`, not an error of the call.
fn test(api: &super::api::Api, request: &ApiRequest<'_>, name: &str) -> Result<ApiReply, ApiError> {
    let body = Element::parse(request.body, "TestFunctionRequest")?;
    let (record, code, summary_element) = api.store.read(|state| {
        let record = state.functions.get(name).ok_or_else(|| no_such_function(name))?;
        let (stage, stage_name) = stage(record, request, name, body.text_of("Stage"))?;
        check_if_match(request.if_match, &stage.etag)?;
        let code =
            code_of(name, stage, state).ok_or_else(|| ApiError::invalid("the stage's Runtime or store is not one CloudFront has"))?;
        Ok::<_, ApiError>((record.clone(), code, summary(name, record, stage, stage_name, state)))
    })?;
    drop(record);
    let encoded = body
        .text_of("EventObject")
        .ok_or_else(|| ApiError::invalid("EventObject is required"))?;
    let event: serde_json::Value = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::invalid("EventObject must be a base64-encoded JSON event object"))?;
    let mut result = Element::new("TestResult").with(summary_element);
    // What the edge would refuse of the output is the test's error too.
    let checked = |output: &serde_json::Value| match event.pointer("/context/eventType").and_then(|kind| kind.as_str()) {
        Some("viewer-response") => functions::response_outcome(output).map(|_| ()),
        _ => functions::request_outcome(output).map(|_| ()),
    };
    let invoked = functions::invoke(&code, &event).and_then(|invocation| {
        checked(&invocation.output)
            .map(|()| invocation)
            .map_err(FunctionError::InvalidOutput)
    });
    match invoked {
        Ok(invocation) => {
            result = result
                .with(Element::leaf("ComputeUtilization", invocation.utilization.to_string()))
                .with(Element {
                    children: invocation.logs.into_iter().map(|line| Element::leaf("member", line)).collect(),
                    ..Element::new("FunctionExecutionLogs")
                })
                .with(Element::leaf("FunctionErrorMessage", ""))
                .with(Element::leaf("FunctionOutput", invocation.output.to_string()));
        }
        Err(error) => {
            result = result
                .with(Element::leaf(
                    "ComputeUtilization",
                    if error == FunctionError::OverBudget { "100" } else { "0" },
                ))
                .with(Element::leaf("FunctionErrorMessage", error.to_string()));
        }
    }
    Ok(ApiReply::ok(result))
}
