//! CloudFront's control-plane API (REST-XML, version 2020-05-31) on a
//! listener of its own, for test suites: boto3, the AWS CLI and Terraform
//! create public keys, key groups, origin access controls, distributions
//! and invalidations here, and the edge serves what they create at once.
//! The state compiles into the same routing table as the config file's
//! behaviors (`crate::routing`); there is no second way to serve.

mod api;
mod compile;
mod distributions;
mod functions;
mod kvs;
mod monitoring;
mod origins;
mod policies;
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

/// moto's reset of its server's state (`TEST_SERVER_MODE`), answered when
/// `control_api.reset_endpoint` is on.
const MOTO_RESET: &str = "/moto-api/reset";
pub use compile::ServingDefaults;
pub use store::{Collection, ResourceChange, StoreError};

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
    /// Hands resources changed through this node's API to the other nodes
    /// of its fleet (nothing without a fleet's control log).
    fn publish_resources(&self, changes: Vec<ResourceChange>);
    /// Hands an invalidation of distribution `id` to the other nodes of its
    /// fleet (nothing without a fleet's control log).
    fn publish_invalidation(&self, id: &str, paths: Vec<String>);
}

/// Who may call the API.
#[derive(Clone)]
pub enum ApiCredentials {
    /// Requests must carry a SigV4 signature by one of these access keys
    /// (access key id -> secret).
    Keys(HashMap<String, String>),
    /// Any request is accepted, signed or not: for throwaway test setups.
    AcceptAny,
}

impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiCredentials::Keys(keys) => {
                let ids: Vec<&String> = keys.keys().collect();
                write!(formatter, "Keys({ids:?}, secrets redacted)")
            }
            ApiCredentials::AcceptAny => formatter.write_str("AcceptAny"),
        }
    }
}

/// The control plane's state and what it serves into: shared by the API
/// and by the fleet's control log, which brings other nodes' changes.
pub struct ControlPlane {
    api: Api,
    serving: Arc<dyn ServingHandle>,
    defaults: ServingDefaults,
}

impl ControlPlane {
    /// Compiles the state and hands the edge its distributions, inside the
    /// state's lock: tables are stored in the order the state changed, so
    /// an older table is never stored after a newer one.
    fn serve_state(&self) {
        self.api
            .store
            .read(|state| self.serving.set_distributions(compile::compile(state, &self.defaults)));
    }

    /// Takes in resources created, changed or deleted through other nodes'
    /// APIs (each only if newer than what this node has) and serves them.
    /// Blocking (the state is written to disk).
    pub fn adopt(&self, changes: &[ResourceChange]) {
        match self.api.store.adopt(changes) {
            Ok(true) => self.serve_state(),
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "the fleet's control-plane changes not adopted: the state could not be written"),
        }
    }
}

/// The control-plane API as a pingora app.
pub struct ControlApp {
    plane: Arc<ControlPlane>,
    credentials: ApiCredentials,
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
        let plane = Arc::new(ControlPlane {
            api: Api {
                store: Store::open(state_dir)?,
                settings,
            },
            serving,
            defaults,
        });
        plane.serve_state();
        Ok(ControlApp { plane, credentials })
    }

    /// The state and its serving, for the fleet's control log to bring
    /// other nodes' changes to.
    pub fn plane(&self) -> &Arc<ControlPlane> {
        &self.plane
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
        let service = if path.starts_with(kvs::data::DATA_PLANE_PREFIX) {
            kvs::data::SERVICE
        } else {
            "cloudfront"
        };
        sigv4::verify(&request, service, |key| keys.get(key).cloned())
            .map(|_| ())
            .map_err(|refusal| ApiError::new(403, refusal.code(), refusal.to_string()))
    }

    /// Deletes every resource (moto's server mode asks between tests), as
    /// authenticated as any call: with `accept_any_credentials` only can it
    /// come unsigned, as moto sends it.
    async fn reset(&self) -> Result<api::ApiReply, ApiError> {
        let plane = self.plane.clone();
        let reset = tokio::task::spawn_blocking(move || {
            let reply = plane.api.store.update(|state| {
                *state = store::State::default();
                Ok(api::ApiReply::no_content().with_status(200))
            });
            plane.serve_state();
            reply
        })
        .await
        .map_err(|_| ApiError::new(500, "InternalError", "the reset failed"))?;
        self.plane.serving.publish_resources(self.plane.api.store.take_changes());
        reset
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
        let data_plane = path.strip_prefix(kvs::data::DATA_PLANE_PREFIX).map(str::to_owned);
        if let Err(refusal) = self.authenticate(&method, &path, &query, &headers, &body) {
            return match data_plane {
                Some(_) => Ok(kvs::data::error_reply(&refusal)),
                None => Err(refusal),
            };
        }
        if path == MOTO_RESET && method == "POST" && self.plane.api.settings.reset_endpoint {
            return self.reset().await;
        }
        let Some(rest) = data_plane.as_deref().or_else(|| path.strip_prefix(VERSION_PREFIX)) else {
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
        let plane = self.plane.clone();
        // The store writes and syncs a file: off the runtime's threads.
        let outcome = tokio::task::spawn_blocking(move || {
            let request = ApiRequest {
                method: &method,
                segments,
                query,
                if_match: if_match.as_deref(),
                body: &body,
                base_url,
                now,
            };
            match data_plane {
                Some(_) => {
                    let (reply, changed) = kvs::data::handle(&plane.api, &request);
                    api::Outcome {
                        reply: Ok(reply),
                        changed,
                        purge: None,
                    }
                }
                None => plane.api.handle(&request),
            }
        })
        .await
        .map_err(|_| ApiError::new(500, "InternalError", "the request failed"))?;
        let serving = &self.plane.serving;
        if outcome.changed {
            let plane = self.plane.clone();
            let _ = tokio::task::spawn_blocking(move || plane.serve_state()).await;
        }
        // Invalidation records and tags change the state without changing
        // what is served: they travel to the fleet all the same.
        serving.publish_resources(self.plane.api.store.take_changes());
        if let Some(purge) = outcome.purge {
            let local = serving.clone();
            let paths = purge.paths.clone();
            let id = purge.distribution.clone();
            let _ = tokio::task::spawn_blocking(move || local.invalidate_distribution(&id, &paths)).await;
            serving.publish_invalidation(&purge.distribution, purge.paths);
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
                for (name, value) in &reply.headers {
                    builder = builder.header(*name, value);
                }
                tracing::info!(request = %summary, status = reply.status, "control plane");
                let body = match (reply.body, reply.blob) {
                    (Some(element), _) => (element.to_document().into_bytes(), "text/xml"),
                    (None, Some(blob)) => blob,
                    (None, None) => (Vec::new(), "text/xml"),
                };
                (builder, body)
            }
            Err(error) => {
                tracing::info!(request = %summary, status = error.status, code = error.code, "control plane refused");
                (
                    builder.status(error.status),
                    (error.to_document(&request_id).into_bytes(), "text/xml"),
                )
            }
        };
        let (body, content_type) = body;
        let builder = if body.is_empty() {
            builder
        } else {
            builder.header("content-type", content_type)
        };
        builder
            .header("content-length", body.len())
            .body(body)
            .expect("a response from valid parts")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::origin::Origin;

    /// The edge's side, recording how many distributions each table it was
    /// handed holds; every other table is slow to store, as a busy edge's
    /// may be.
    #[derive(Default)]
    struct Recorder {
        tables: Mutex<Vec<usize>>,
    }

    impl ServingHandle for Recorder {
        fn set_distributions(&self, distributions: Vec<Distribution>) {
            let calls = self.tables.lock().unwrap().len();
            if calls % 2 == 1 {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.tables.lock().unwrap().push(distributions.len());
        }
        fn invalidate_distribution(&self, _: &str, _: &[String]) {}
        fn publish_resources(&self, _: Vec<ResourceChange>) {}
        fn publish_invalidation(&self, _: &str, _: Vec<String>) {}
    }

    /// Defect 5 of the trust issue: tables reach the edge in the order the
    /// state changed, however their compiling and storing interleave.
    #[test]
    fn tables_are_served_in_the_order_the_state_changed() {
        let recorder = Arc::new(Recorder::default());
        let settings = ApiSettings {
            domain_pool: Vec::new(),
            domain_suffix: "cloudfront.test".into(),
            deploy_delay_ms: 0,
            custom_origin_networks: Arc::from(Vec::new()),
            reset_endpoint: false,
        };
        let defaults = ServingDefaults {
            s3: Arc::new(Origin::embedded("127.0.0.1:9".parse().unwrap(), "media", "k", "secret")),
            slice_size: 1 << 20,
            custom_origin_networks: Arc::from(Vec::new()),
        };
        let app = ControlApp::start(None, settings, ApiCredentials::AcceptAny, defaults, recorder.clone()).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let plane = app.plane();
                scope.spawn(move || {
                    for i in 0..5 {
                        let body = format!(
                            "<DistributionConfig><CallerReference>t{thread}-{i}</CallerReference><Comment/><Enabled>true</Enabled><Origins><Quantity>1</Quantity><Items><Origin><Id>o</Id><DomainName>media.s3.amazonaws.com</DomainName></Origin></Items></Origins><DefaultCacheBehavior><TargetOriginId>o</TargetOriginId></DefaultCacheBehavior></DistributionConfig>"
                        );
                        let outcome = plane.api.handle(&ApiRequest {
                            method: "POST",
                            segments: vec!["distribution".into()],
                            query: BTreeMap::new(),
                            if_match: None,
                            body: body.as_bytes(),
                            base_url: "http://control".into(),
                            now: 0,
                        });
                        assert!(outcome.reply.is_ok() && outcome.changed);
                        plane.serve_state();
                    }
                });
            }
        });
        let tables = recorder.tables.lock().unwrap().clone();
        assert!(
            tables.windows(2).all(|pair| pair[0] <= pair[1]),
            "never an older table after a newer one: {tables:?}"
        );
        assert_eq!(tables.last(), Some(&20), "the last table stored holds every distribution");
    }
}
