//! CloudFront Functions: JavaScript run on a behavior's viewer requests and
//! responses, in QuickJS (`rquickjs`).
//!
//! Each invocation is isolated: the code is compiled once per version into
//! a factory whose call runs the code's top level afresh, so nothing a
//! request leaves in the function's variables reaches another request; the
//! realm's built-ins and global object are frozen, and the code runs in
//! strict mode, so nothing can be left there either. There is no file
//! system, network, timer or module loader: `require` knows only the
//! modules CloudFront provides (`querystring`, `crypto`, `cloudfront` with
//! the key value store of the function, read-only). Every invocation
//! has a compute budget (an over-budget function is interrupted, and its
//! request answered 503 as CloudFront answers it) and the realm a memory
//! limit.

mod engine;
mod event;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use event::{
    Generated, RequestChanges, RequestView, ResponseChanges, ResponseView, request_event, request_outcome, response_event, response_outcome,
};

/// CloudFront's limit on a function's code.
pub const MAX_CODE_BYTES: usize = 10 * 1024;

/// Wall time one invocation may take. CloudFront's budget is about 1 ms of
/// CPU on its hardware; this is looser, for debug builds and loaded test
/// machines, and still stops a loop long before a viewer notices.
pub const COMPUTE_BUDGET: Duration = Duration::from_millis(50);

/// The JavaScript runtimes CloudFront names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsRuntime {
    V1,
    V2,
}

impl JsRuntime {
    pub fn parse(name: &str) -> Option<JsRuntime> {
        match name {
            "cloudfront-js-1.0" => Some(JsRuntime::V1),
            "cloudfront-js-2.0" => Some(JsRuntime::V2),
            _ => None,
        }
    }
}

/// One version of a function's code, as a behavior runs it.
#[derive(Debug)]
pub struct FunctionCode {
    pub name: String,
    /// Tells versions apart (the stage's ETag): compiled code is kept per version.
    pub version: String,
    pub source: Arc<str>,
    pub runtime: JsRuntime,
    /// The key value store associated with it (CloudFront allows one).
    pub store: Option<Arc<KeyValues>>,
}

/// A key value store as a function reads it through `cloudfront.kvs()`:
/// its keys when the behavior's table was made.
#[derive(Debug, Default)]
pub struct KeyValues {
    /// The store's id, which `kvs(id)` names.
    pub id: String,
    pub items: BTreeMap<String, String>,
    /// Unix seconds, as `meta()` answers them.
    pub created: u64,
    pub updated: u64,
}

/// Why a function gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FunctionError {
    #[error("the function does not compile: {0}")]
    Syntax(String),
    #[error("the function has no handler(event) function")]
    NoHandler,
    #[error("the function threw: {0}")]
    Thrown(String),
    #[error("the function exceeded its compute budget")]
    OverBudget,
    #[error("the function returned an invalid value: {0}")]
    InvalidOutput(String),
}

impl FunctionError {
    /// The metric's `reason` label.
    pub fn label(&self) -> &'static str {
        match self {
            FunctionError::Syntax(_) | FunctionError::NoHandler => "invalid_code",
            FunctionError::Thrown(_) => "thrown",
            FunctionError::OverBudget => "budget",
            FunctionError::InvalidOutput(_) => "invalid_output",
        }
    }
}

/// What one invocation gave, beside its output.
#[derive(Debug)]
pub struct Invocation {
    /// What `handler` returned, as JSON.
    pub output: serde_json::Value,
    /// Lines the function wrote with `console.log` (bounded).
    pub logs: Vec<String>,
    /// The share of the compute budget used, 0 to 100.
    pub utilization: u32,
}

/// Whether `code` compiles and its top level defines `handler` (within
/// the compute budget), without running it on any request (the API's check).
pub fn check(code: &FunctionCode) -> Result<(), FunctionError> {
    engine::with_engine(|engine| engine.invoke(code, None).map(|_| ()))
}

/// Runs `code`'s `handler` on `event`.
pub fn invoke(code: &FunctionCode, event: &serde_json::Value) -> Result<Invocation, FunctionError> {
    engine::with_engine(|engine| engine.invoke(code, Some(event)))
}

#[cfg(test)]
mod tests;
