//! The admin listener: `/healthz`, and `POST /invalidations` (bearer token)
//! that removes objects from both cache tiers, as CloudFront's invalidations do.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::fleet::Fleet;

/// CloudFront's limits: 3,000 paths per invalidation; a path is at most 4,096 bytes.
const MAX_PATHS: usize = 3000;
const MAX_PATH_BYTES: usize = 4096;
const MAX_BODY_BYTES: usize = MAX_PATHS * (MAX_PATH_BYTES / 8);

/// What the admin listener needs of the edge, handed to it at startup (the
/// edge's state implements it): admin never imports the edge.
pub trait EdgeHandle: Send + Sync + 'static {
    /// Reads the config file again; the number of behaviors now in force.
    fn reload(&self) -> Result<usize, ConfigError>;
    /// Invalidates `paths` in both cache tiers. Blocking (disk).
    fn invalidate(&self, paths: &[String]);
    /// The Prometheus text exposition.
    fn metrics_text(&self) -> String;
    /// Why the disk tier is degraded, if it is. Blocking (disk).
    fn disk_degradation(&self) -> Option<String>;
    /// This node's fleet, if it is in one.
    fn fleet(&self) -> Option<&Arc<Fleet>>;
}

pub struct AdminApp {
    state: Arc<dyn EdgeHandle>,
    /// The bearer token `POST` requests need; without one they are refused.
    token: Option<String>,
}

impl AdminApp {
    pub fn new(state: Arc<dyn EdgeHandle>, token: Option<String>) -> Self {
        Self { state, token }
    }
}

/// The body of `POST /invalidations`: `{"paths": ["/videos/*", "/a.mp4"]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidationRequest {
    pub paths: Vec<String>,
}

fn reply(status: StatusCode, body: String) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body.into_bytes())
        .expect("a response from valid parts")
}

fn error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    reply(status, serde_json::json!({ "error": message }).to_string())
}

/// The paths of a `POST /invalidations` body, or why it is refused: JSON
/// `{"paths": [...]}` with 1 to 3,000 paths, each starting with `/`, at most
/// 4,096 bytes, with `*` only at its end (as CloudFront's).
pub fn parse_invalidation(body: &[u8]) -> Result<Vec<String>, String> {
    let request: InvalidationRequest = serde_json::from_slice(body).map_err(|e| format!("expected {{\"paths\": [...]}}: {e}"))?;
    if request.paths.is_empty() || request.paths.len() > MAX_PATHS {
        return Err(format!("between 1 and {MAX_PATHS} paths"));
    }
    if let Some(problem) = request.paths.iter().find_map(|p| check_path(p).err()) {
        return Err(problem);
    }
    Ok(request.paths)
}

/// Why a path cannot be invalidated; CloudFront allows `*` only at the end.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.len() > MAX_PATH_BYTES {
        return Err(format!("{path:?}: a path starts with / and is at most {MAX_PATH_BYTES} bytes"));
    }
    if path.trim_end_matches('*').contains('*') || path.ends_with("**") {
        return Err(format!("{path:?}: * may only end a path"));
    }
    Ok(())
}

impl AdminApp {
    fn authorized(&self, session: &ServerSession) -> bool {
        let given = session.req_header().headers.get("authorization").and_then(|v| v.to_str().ok());
        match (&self.token, given.and_then(|v| v.strip_prefix("Bearer "))) {
            // Digests are compared, so the time taken says nothing about the token.
            (Some(expected), Some(given)) => Sha256::digest(expected.as_bytes()) == Sha256::digest(given.as_bytes()),
            _ => false,
        }
    }

    async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| error(StatusCode::BAD_REQUEST, "unreadable body"))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Ready: the config loaded and the listeners are up (this answers).
    /// A disk tier that cannot write makes the edge `degraded`, still 200:
    /// memory and the origin serve every viewer, so a load balancer should
    /// keep sending them.
    async fn readiness(&self) -> Response<Vec<u8>> {
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || state.disk_degradation()).await {
            Ok(None) => reply(StatusCode::OK, "{\"status\":\"ready\"}".to_owned()),
            Ok(Some(problem)) => reply(
                StatusCode::OK,
                serde_json::json!({ "status": "degraded", "disk": problem }).to_string(),
            ),
            Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the readiness check failed"),
        }
    }

    /// Reloads the config file; a config that fails validation is refused
    /// (400, with the error) and the previous one keeps serving.
    async fn reload(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if !self.authorized(session) {
            return error(StatusCode::UNAUTHORIZED, "a valid bearer token (admin_token) is needed");
        }
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || state.reload()).await {
            Ok(Ok(behaviors)) => reply(
                StatusCode::OK,
                serde_json::json!({ "reloaded": true, "behaviors": behaviors }).to_string(),
            ),
            Ok(Err(problem)) => error(StatusCode::BAD_REQUEST, &problem.to_string()),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the reload failed"),
        }
    }

    async fn invalidations(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if !self.authorized(session) {
            return error(StatusCode::UNAUTHORIZED, "a valid bearer token (admin_token) is needed");
        }
        let body = match Self::read_body(session).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let paths = match parse_invalidation(&body) {
            Ok(paths) => paths,
            Err(problem) => return error(StatusCode::BAD_REQUEST, &problem),
        };
        let state = self.state.clone();
        let done = tokio::task::spawn_blocking(move || {
            state.invalidate(&paths);
            paths
        })
        .await;
        let Ok(paths) = done else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "the invalidation failed");
        };
        tracing::info!(paths = paths.len(), "invalidation done");
        // The other nodes apply it from the fleet's control log.
        if let Some(control) = self.state.fleet().and_then(|fleet| fleet.control.as_ref())
            && let Err(problem) = control.publish_invalidation(None, paths.clone()).await
        {
            tracing::warn!(%problem, "invalidation not published to the fleet");
            return error(
                StatusCode::BAD_GATEWAY,
                &format!("invalidated on this node, but not published to the fleet: {problem}"),
            );
        }
        reply(StatusCode::OK, serde_json::json!({ "invalidated": paths }).to_string())
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        match (header.method.clone(), header.uri.path()) {
            (Method::GET, "/healthz") => reply(StatusCode::OK, "{\"status\":\"ok\"}".to_owned()),
            (Method::GET, "/readyz") => self.readiness().await,
            (Method::GET, "/metrics") => {
                let text = self.state.metrics_text();
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "text/plain; version=0.0.4")
                    .header("content-length", text.len())
                    .body(text.into_bytes())
                    .expect("a response from valid parts")
            }
            (Method::GET, "/fleet") => match self.state.fleet() {
                Some(fleet) => reply(StatusCode::OK, fleet.state().to_string()),
                None => error(StatusCode::NOT_FOUND, "this node is in no fleet"),
            },
            (Method::POST, "/invalidations") => self.invalidations(session).await,
            (Method::POST, "/reload") => self.reload(session).await,
            (_, "/healthz" | "/readyz" | "/metrics" | "/fleet" | "/invalidations" | "/reload") => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn invalidation_paths_follow_cloudfront() {
        assert!(check_path("/videos/*").is_ok());
        assert!(check_path("/a.mp4").is_ok());
        assert!(check_path("/*").is_ok());
        assert!(check_path("videos/*").is_err());
        assert!(check_path("/v*/a").is_err());
        assert!(check_path("/v/**").is_err());
        assert!(check_path(&format!("/{}", "a".repeat(5000))).is_err());
    }
}
