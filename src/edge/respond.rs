//! Responses the edge writes itself: CloudFront-style XML errors.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

use super::Viewer;
use crate::auth::error_xml;
use crate::cache::ErrorBody;
use crate::request::TargetRefusal;

/// An error response for viewers: a status and CloudFront-style `<Error>` XML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeError {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

pub const METHOD_NOT_ALLOWED: EdgeError = EdgeError {
    status: 403,
    code: "MethodNotAllowed",
    message: "This distribution is not configured to allow the HTTP request method that was used for this request.",
};
pub const CORS_REFUSED: EdgeError = EdgeError {
    status: 403,
    code: "CORSRequestRefused",
    message: "This origin, method or header is not allowed by the CORS policy.",
};
pub const FLEET_REFUSED: EdgeError = EdgeError {
    status: 403,
    code: "AccessDenied",
    message: "The fleet authentication of this request is missing, expired or wrong.",
};
pub const CONTROL_PREFIX_REFUSED: EdgeError = EdgeError {
    status: 403,
    code: "AccessDenied",
    message: "Access Denied",
};
pub const DISTRIBUTION_DISABLED: EdgeError = EdgeError {
    status: 403,
    code: "AccessDenied",
    message: "This distribution is disabled.",
};
pub const GEO_RESTRICTED: EdgeError = EdgeError {
    status: 403,
    code: "AccessDenied",
    message: "The Amazon CloudFront distribution is configured to block access from your country.",
};
pub const HTTPS_REQUIRED: EdgeError = EdgeError {
    status: 403,
    code: "AccessDenied",
    message: "This distribution's behavior is configured to serve HTTPS only.",
};
pub const FOLDER_PATH: EdgeError = EdgeError {
    status: 400,
    code: "InvalidURI",
    message: "Couldn't parse the specified URI: a path ending in / names no object unless a viewer-request function rewrites it.",
};
pub const NOT_FOUND: EdgeError = EdgeError {
    status: 404,
    code: "NoSuchKey",
    message: "The specified key does not exist.",
};
pub const BAD_REQUEST: EdgeError = EdgeError {
    status: 400,
    code: "BadRequest",
    message: "The request could not be understood.",
};
pub const HEADERS_TOO_LARGE: EdgeError = EdgeError {
    status: 413,
    code: "RequestHeaderTooLarge",
    message: "The request headers are larger than 20480 bytes",
};
pub const BAD_GATEWAY: EdgeError = EdgeError {
    status: 502,
    code: "BadGateway",
    message: "The origin could not be reached or refused the edge's request.",
};
pub const GATEWAY_TIMEOUT: EdgeError = EdgeError {
    status: 504,
    code: "GatewayTimeout",
    message: "The origin did not answer in time.",
};

/// What the log says when the origin answers 403 to a request the viewer
/// proved itself for: the bucket refused keyfront's own signature.
pub const CREDENTIALS_REFUSED: &str =
    "origin refused keyfront's credentials (HTTP 403): check the origin's access_key_id, secret_access_key and region";

/// Writes a whole XML response; for HEAD, the same headers and no body.
pub async fn write_xml(viewer: &mut Viewer<'_>, status: u16, body: String) -> Result<()> {
    write_whole(viewer, status, Some("text/xml"), Bytes::from(body)).await
}

/// Writes a whole response of `body`; for HEAD, the same headers and no body.
async fn write_whole(viewer: &mut Viewer<'_>, status: u16, content_type: Option<&str>, body: Bytes) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    if let Some(content_type) = content_type {
        header.insert_header("content-type", content_type)?;
    }
    header.insert_header("content-length", body.len().to_string())?;
    let head = viewer.req_header().method == http::Method::HEAD;
    viewer.write_response_header(Box::new(header)).await?;
    if !head {
        viewer.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes an origin's own error answer (a custom origin's page or JSON)
/// under its status; for HEAD, the same headers and no body.
pub async fn write_origin_error(viewer: &mut Viewer<'_>, status: u16, error: &ErrorBody) -> Result<()> {
    write_whole(viewer, status, error.content_type.as_deref(), error.bytes.clone()).await
}

/// Writes `error` as the response.
pub async fn write_error(viewer: &mut Viewer<'_>, error: EdgeError) -> Result<()> {
    write_xml(viewer, error.status, error_xml(error.code, error.message)).await
}

/// Writes the refusal of a target that is too long or has no canonical path.
/// The message names the rule, never the viewer's bytes.
pub async fn write_target_refusal(viewer: &mut Viewer<'_>, refusal: TargetRefusal) -> Result<()> {
    let body = match refusal {
        TargetRefusal::TooLong { .. } => error_xml("UriTooLong", "The request URL is longer than 8192 bytes"),
        TargetRefusal::Path(path) => error_xml("InvalidURI", &format!("Couldn't parse the specified URI: {path}.")),
    };
    write_xml(viewer, refusal.status(), body).await
}
