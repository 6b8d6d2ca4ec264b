//! A behavior's CloudFront Functions on a viewer's request: the
//! viewer-request function between authentication and the answer (it may
//! change the request, or answer it), the viewer-response function as the
//! response header is written (it may change the status and headers).
//! A function that fails, or returns something CloudFront would refuse,
//! gets the viewer a 503, never the request unchanged.

use std::sync::Arc;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

use super::respond::{self, EdgeError};
use super::{RequestContext, Viewer};
use crate::functions::{self, FunctionCode, FunctionError, RequestView, ResponseView};
use crate::metrics::FunctionFailures;
use crate::request::canonical_path;
use crate::routing::{Behavior, Distribution};

pub const FUNCTION_FAILED: EdgeError = EdgeError {
    status: 503,
    code: "FunctionExecutionError",
    message: "The CloudFront function associated with the cache behavior failed.",
};

/// Headers that frame the message: never changed by a viewer-response function.
const READ_ONLY: [&str; 4] = ["content-length", "transfer-encoding", "content-range", "connection"];

/// What the viewer-request phase decided.
pub enum Next {
    /// Go on; `true` when the function changed the path or query.
    Continue(bool),
    /// The answer was written.
    Answered,
}

/// The viewer-response function waiting for the response header, with the
/// event of the request it answers.
pub struct ResponseHook {
    code: Arc<FunctionCode>,
    event: serde_json::Value,
    failures: FunctionFailures,
}

/// Runs `behavior`'s viewer-request function, if any, and arms its
/// viewer-response function.
pub async fn viewer_request(
    viewer: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    (distribution, behavior): (&Distribution, &Behavior),
    failures: &FunctionFailures,
) -> Result<Next> {
    let hooks = &behavior.functions;
    let event = request_event(viewer, ctx, distribution);
    if let Some(code) = &hooks.response {
        viewer.response_hook = Some(ResponseHook {
            code: code.clone(),
            event: event.clone(),
            failures: failures.clone(),
        });
    }
    let Some(code) = &hooks.request else {
        return Ok(Next::Continue(false));
    };
    let outcome = functions::invoke(code, &event)
        .and_then(|invocation| functions::request_outcome(&invocation.output).map_err(FunctionError::InvalidOutput));
    match outcome {
        Ok(Ok(changes)) => {
            let Ok(path) = canonical_path(&changes.uri) else {
                return refuse(
                    viewer,
                    ctx,
                    (code, failures),
                    FunctionError::InvalidOutput(format!("uri {:?} has no canonical form", changes.uri)),
                )
                .await;
            };
            let rewritten = path != ctx.path || changes.query != ctx.query;
            ctx.path = path.into_owned();
            ctx.query = changes.query;
            let header = viewer.req_header_mut();
            let names: Vec<http::HeaderName> = header.headers.keys().cloned().collect();
            for name in names {
                header.remove_header(&name);
            }
            for (name, value) in changes.headers {
                header.append_header(name, value)?;
            }
            Ok(Next::Continue(rewritten))
        }
        Ok(Err(generated)) => {
            // CloudFront runs no viewer-response function on a response a
            // viewer-request function made.
            viewer.response_hook = None;
            ctx.decision = "function_response";
            let mut header = ResponseHeader::build(generated.status, Some(generated.headers.len() + 1))?;
            for (name, value) in generated.headers {
                header.append_header(name, value)?;
            }
            header.insert_header(http::header::CONTENT_LENGTH, generated.body.len())?;
            viewer.write_response_header(Box::new(header)).await?;
            let head = viewer.req_header().method == http::Method::HEAD;
            let body = (!head && !generated.body.is_empty()).then(|| Bytes::from(generated.body));
            viewer.write_response_body(body, true).await?;
            Ok(Next::Answered)
        }
        Err(error) => refuse(viewer, ctx, (code, failures), error).await,
    }
}

async fn refuse(
    viewer: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    (code, failures): (&FunctionCode, &FunctionFailures),
    error: FunctionError,
) -> Result<Next> {
    tracing::warn!(function = %code.name, %error, path = %ctx.path, "a viewer-request function failed; answered 503");
    failures.record(&code.name, "viewer-request", error.label());
    viewer.response_hook = None;
    ctx.decision = "function_failed";
    respond::write_error(viewer, FUNCTION_FAILED).await?;
    Ok(Next::Answered)
}

fn request_event(viewer: &Viewer<'_>, ctx: &RequestContext, distribution: &Distribution) -> serde_json::Value {
    let header = viewer.req_header();
    let headers: Vec<(&str, &str)> = header
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    functions::request_event(&RequestView {
        method: header.method.as_str(),
        uri: &ctx.path,
        query: ctx.query.as_deref(),
        headers,
        viewer_ip: viewer.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
        distribution_id: &distribution.id,
        distribution_domain: distribution.hosts.first().map_or("", String::as_str),
        request_id: format!("{:016x}", rand::random::<u64>()),
    })
}

impl ResponseHook {
    /// Runs the function on `header`, the response about to be written,
    /// and lays its answer over it; `false` when the function failed and
    /// `header` became an empty 503 (the body that was to follow is not sent).
    pub fn apply(self, header: &mut ResponseHeader) -> bool {
        let view = ResponseView {
            status: header.status.as_u16(),
            headers: header
                .headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
                .collect(),
        };
        let event = functions::response_event(self.event, &view);
        let outcome = functions::invoke(&self.code, &event)
            .and_then(|invocation| functions::response_outcome(&invocation.output).map_err(FunctionError::InvalidOutput))
            .and_then(|changes| lay_over(header, changes).map_err(|error| FunctionError::InvalidOutput(error.to_string())));
        match outcome {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(function = %self.code.name, %error, "a viewer-response function failed; answered 503");
                self.failures.record(&self.code.name, "viewer-response", error.label());
                *header = failed_header();
                false
            }
        }
    }
}

fn lay_over(header: &mut ResponseHeader, changes: functions::ResponseChanges) -> Result<()> {
    header.set_status(changes.status)?;
    let names: Vec<http::HeaderName> = header
        .headers
        .keys()
        .filter(|name| !READ_ONLY.contains(&name.as_str()))
        .cloned()
        .collect();
    for name in names {
        header.remove_header(&name);
    }
    for (name, value) in changes.headers {
        if !READ_ONLY.contains(&name.as_str()) {
            header.append_header(name, value)?;
        }
    }
    Ok(())
}

fn failed_header() -> ResponseHeader {
    let mut header = ResponseHeader::build(FUNCTION_FAILED.status, Some(2)).expect("a valid status");
    header.insert_header(http::header::CONTENT_LENGTH, "0").expect("a valid header");
    header
        .insert_header("x-cache", "FunctionExecutionError from keyfront")
        .expect("a valid header");
    header
}
