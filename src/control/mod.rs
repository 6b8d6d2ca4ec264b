//! CloudFront's control-plane API (REST-XML, version 2020-05-31) on a
//! listener of its own, for test suites: boto3, the AWS CLI and Terraform
//! create public keys, key groups, origin access controls, distributions
//! and invalidations here, and the edge serves what they create at once.
//! The state compiles into the same routing table as the config file's
//! behaviors (`crate::routing`); there is no second way to serve.

mod api;
mod compile;
mod distributions;
mod resources;
mod sigv4;
mod store;
pub mod xml;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use percent_encoding::percent_decode_str;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub use api::{ApiSettings, VERSION_PREFIX, random_name};
pub use compile::ServingDefaults;
pub use store::StoreError;

use api::{Api, ApiError, ApiRequest};
use sigv4::SignedRequest;
use store::Store;

use crate::routing::Distribution;

/// The largest request body the API reads (a DistributionConfig with many
/// behaviors is tens of KiB).
const MAX_BODY_BYTES: usize = 1 << 20;

/// What the control plane needs of the edge, handed to it at startup (the
/// edge's state implements it): control never imports the edge.
pub trait ServingHandle: Send + Sync + 'static {
    /// Serves `distributions` from now on, in place of the ones before.
    fn set_distributions(&self, distributions: Vec<Distribution>);
    /// Purges `paths` of distribution `id` from both cache tiers. Blocking.
    fn invalidate_distribution(&self, id: &str, paths: &[String]);
}

/// Who may call the API.
#[derive(Clone, Debug)]
pub enum ApiCredentials {
    /// Requests must carry a SigV4 signature by one of these access keys
    /// (access key id -> secret).
    Keys(HashMap<String, String>),
    /// Any request is accepted, signed or not: for throwaway test setups.
    AcceptAny,
}

/// The control-plane API as a pingora app.
pub struct ControlApp {
    api: Arc<Api>,
    credentials: ApiCredentials,
    serving: Arc<dyn ServingHandle>,
    defaults: ServingDefaults,
}

impl ControlApp {
    /// Opens the state (in `state_dir`, or in memory) and hands the edge
    /// the distributions it holds.
    pub fn start(
        state_dir: Option<std::path::PathBuf>,
        settings: ApiSettings,
        credentials: ApiCredentials,
        defaults: ServingDefaults,
        serving: Arc<dyn ServingHandle>,
    ) -> Result<ControlApp, StoreError> {
        let api = Arc::new(Api {
            store: Store::open(state_dir)?,
            settings,
        });
        let app = ControlApp {
            api,
            credentials,
            serving,
            defaults,
        };
        app.publish();
        Ok(app)
    }

    fn publish(&self) {
        let distributions = compile::compile(&self.api.store.snapshot(), &self.defaults);
        self.serving.set_distributions(distributions);
    }

    fn authenticate(&self, method: &str, path: &str, query: &str, headers: &[(String, String)], body: &[u8]) -> Result<(), ApiError> {
        let ApiCredentials::Keys(keys) = &self.credentials else {
            return Ok(());
        };
        let now = crate::cache::unix_now() as i64;
        let request = SignedRequest {
            method,
            path,
            query,
            headers,
            body,
            now,
        };
        sigv4::verify(&request, |key| keys.get(key).cloned())
            .map(|_| ())
            .map_err(|refusal| ApiError::new(403, refusal.code(), refusal.to_string()))
    }

    async fn answer(&self, session: &mut ServerSession) -> Result<api::ApiReply, ApiError> {
        let header = session.req_header();
        let method = header.method.as_str().to_owned();
        let path = header.uri.path().to_owned();
        let query = header.uri.query().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = header
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| ApiError::new(400, "MalformedInput", "the body could not be read"))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::new(413, "RequestEntityTooLarge", "the body is larger than 1 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        self.authenticate(&method, &path, &query, &headers, &body)?;
        let Some(rest) = path.strip_prefix(VERSION_PREFIX) else {
            return Err(ApiError::invalid(format!("API paths start with {VERSION_PREFIX}")));
        };
        let segments = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
            .collect();
        let query: BTreeMap<String, String> = sigv4::query_pairs(&query).collect();
        let host = headers.iter().find(|(n, _)| n == "host").map_or("localhost", |(_, v)| v.as_str());
        let if_match = headers.iter().find(|(n, _)| n == "if-match").map(|(_, v)| v.clone());
        let now = crate::cache::unix_millis();
        let base_url = format!("http://{host}");
        let api = self.api.clone();
        // The store writes and syncs a file: off the runtime's threads.
        let outcome = tokio::task::spawn_blocking(move || {
            api.handle(&ApiRequest {
                method: &method,
                segments,
                query,
                if_match: if_match.as_deref(),
                body: &body,
                base_url,
                now,
            })
        })
        .await
        .map_err(|_| ApiError::new(500, "InternalError", "the request failed"))?;
        if outcome.changed {
            self.publish();
        }
        if let Some(purge) = outcome.purge {
            let serving = self.serving.clone();
            let _ = tokio::task::spawn_blocking(move || serving.invalidate_distribution(&purge.distribution, &purge.paths)).await;
        }
        outcome.reply
    }
}

#[async_trait]
impl ServeHttp for ControlApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request_id = api::random_id('R');
        let summary = format!("{} {}", session.req_header().method, session.req_header().uri.path());
        let answer = self.answer(session).await;
        let builder = Response::builder().header("x-amz-request-id", &request_id);
        let (builder, body) = match answer {
            Ok(reply) => {
                let mut builder = builder.status(reply.status);
                if let Some(etag) = &reply.etag {
                    builder = builder.header("etag", etag);
                }
                if let Some(location) = &reply.location {
                    builder = builder.header("location", location);
                }
                tracing::info!(request = %summary, status = reply.status, "control plane");
                let body = reply.body.map(|element| element.to_document()).unwrap_or_default();
                (builder, body)
            }
            Err(error) => {
                tracing::info!(request = %summary, status = error.status, code = error.code, "control plane refused");
                (builder.status(error.status), error.to_document(&request_id))
            }
        };
        let builder = if body.is_empty() {
            builder
        } else {
            builder.header("content-type", "text/xml")
        };
        builder
            .header("content-length", body.len())
            .body(body.into_bytes())
            .expect("a response from valid parts")
    }
}
