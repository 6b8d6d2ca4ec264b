//! Why a request was refused: CloudFront's own error response for the viewer,
//! and the exact reason for logs, metrics and `keyfront verify`.

use std::fmt;

use super::policy::ConditionFailure;

/// CloudFront's error codes for signed requests; each answers 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    MissingKey,
    InvalidKey,
    MalformedSignature,
    MalformedPolicy,
    AccessDenied,
}

impl ErrorCode {
    /// The `<Code>` CloudFront sends.
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingKey => "MissingKey",
            Self::InvalidKey => "InvalidKey",
            Self::MalformedSignature => "MalformedSignature",
            Self::MalformedPolicy => "MalformedPolicy",
            Self::AccessDenied => "AccessDenied",
        }
    }

    /// The `<Message>` CloudFront sends.
    pub fn message(self) -> &'static str {
        match self {
            Self::MissingKey => "Missing Key-Pair-Id query parameter or cookie value",
            Self::InvalidKey => "Unknown Key",
            Self::MalformedSignature => "Could not unencode Signature",
            Self::MalformedPolicy => "Malformed Policy",
            Self::AccessDenied => "Access denied",
        }
    }
}

/// The exact reason a request was refused. Viewers only see the [`ErrorCode`];
/// nothing here holds a signature, and `Display` never prints one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The cookies exceed CloudFront's 20,480-byte request limit.
    CookiesTooLarge { bytes: usize },
    /// No `Key-Pair-Id` parameter or cookie, or an empty one.
    MissingKeyPairId,
    /// The key id is not in any key group the behavior trusts.
    UnknownKey { key_pair_id: String },
    /// No `Signature`, or an empty one.
    MissingSignature,
    /// `Signature` is not CloudFront base64.
    UndecodableSignature,
    /// The policy (or the canned `Expires`) cannot be read.
    MalformedPolicy { detail: String },
    /// A signing parameter appears twice.
    DuplicateParameter { name: &'static str },
    /// `Hash-Algorithm` names something other than SHA1 or SHA256.
    UnsupportedHashAlgorithm { value: String },
    /// The signature does not verify with the named key.
    BadSignature { key_pair_id: String },
    /// The signature is good but the request is outside the policy.
    Condition(ConditionFailure),
}

impl DenyReason {
    /// The CloudFront error the viewer gets.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::MissingKeyPairId => ErrorCode::MissingKey,
            Self::UnknownKey { .. } => ErrorCode::InvalidKey,
            Self::MissingSignature | Self::UndecodableSignature => ErrorCode::MalformedSignature,
            Self::MalformedPolicy { .. } => ErrorCode::MalformedPolicy,
            Self::CookiesTooLarge { .. }
            | Self::DuplicateParameter { .. }
            | Self::UnsupportedHashAlgorithm { .. }
            | Self::BadSignature { .. }
            | Self::Condition(_) => ErrorCode::AccessDenied,
        }
    }

    /// The HTTP status: 403 for every signature failure, as CloudFront; 414
    /// and 413 for requests over CloudFront's size limits.
    pub fn status(&self) -> u16 {
        match self {
            Self::CookiesTooLarge { .. } => 413,
            _ => 403,
        }
    }

    /// A short stable label for metrics and log fields.
    pub fn label(&self) -> &'static str {
        match self {
            Self::CookiesTooLarge { .. } => "cookies_too_large",
            Self::MissingKeyPairId => "missing_key",
            Self::UnknownKey { .. } => "unknown_key",
            Self::MissingSignature => "missing_signature",
            Self::UndecodableSignature => "undecodable_signature",
            Self::MalformedPolicy { .. } => "malformed_policy",
            Self::DuplicateParameter { .. } => "duplicate_parameter",
            Self::UnsupportedHashAlgorithm { .. } => "unsupported_hash_algorithm",
            Self::BadSignature { .. } => "bad_signature",
            Self::Condition(ConditionFailure::Expired { .. }) => "expired",
            Self::Condition(ConditionFailure::NotYetValid { .. }) => "not_yet_valid",
            Self::Condition(ConditionFailure::IpNotAllowed { .. }) => "ip_not_allowed",
            Self::Condition(ConditionFailure::ResourceMismatch { .. }) => "resource_mismatch",
        }
    }

    /// The body the viewer gets, as CloudFront writes it (`text/xml`).
    pub fn xml_body(&self) -> String {
        match self {
            Self::CookiesTooLarge { .. } => error_xml("RequestHeaderTooLarge", "The request headers are larger than 20480 bytes"),
            _ => error_xml(self.error_code().code(), self.error_code().message()),
        }
    }
}

/// An S3/CloudFront-style XML error document.
pub fn error_xml(code: &str, message: &str) -> String {
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"#)
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CookiesTooLarge { bytes } => write!(f, "the cookies are {bytes} bytes, over CloudFront's limit of 20480"),
            Self::MissingKeyPairId => write!(f, "no Key-Pair-Id query parameter or CloudFront-Key-Pair-Id cookie"),
            Self::UnknownKey { key_pair_id } => {
                write!(f, "key {key_pair_id:?} is not in a trusted key group")
            }
            Self::MissingSignature => write!(f, "no Signature query parameter or CloudFront-Signature cookie"),
            Self::UndecodableSignature => write!(f, "the Signature is not CloudFront base64"),
            Self::MalformedPolicy { detail } => write!(f, "malformed policy: {detail}"),
            Self::DuplicateParameter { name } => {
                write!(f, "the signing parameter {name} appears more than once")
            }
            Self::UnsupportedHashAlgorithm { value } => {
                write!(f, "Hash-Algorithm {value:?} is neither SHA1 nor SHA256")
            }
            Self::BadSignature { key_pair_id } => write!(
                f,
                "the signature does not match the policy with key {key_pair_id} (wrong key, tampered URL or policy, or wrong Hash-Algorithm)"
            ),
            Self::Condition(ConditionFailure::Expired { date_less_than, now }) => write!(
                f,
                "expired at {} ({} ago)",
                super::format_epoch(*date_less_than),
                format_duration(now - date_less_than)
            ),
            Self::Condition(ConditionFailure::NotYetValid { date_greater_than, now }) => write!(
                f,
                "not valid before {} (in {})",
                super::format_epoch(*date_greater_than),
                format_duration(date_greater_than - now)
            ),
            Self::Condition(ConditionFailure::IpNotAllowed { allowed, client_ip }) => match client_ip {
                Some(ip) => write!(f, "client IP {ip} is outside the policy's AWS:SourceIp {allowed}"),
                None => write!(f, "the policy requires AWS:SourceIp {allowed} but the client IP is unknown"),
            },
            Self::Condition(ConditionFailure::ResourceMismatch { resource, url }) => {
                write!(
                    f,
                    "the policy's Resource does not cover the URL\n  Resource: {resource}\n  URL:      {url}"
                )
            }
        }
    }
}

/// `1d 2h 3m 4s`, largest units first, zero units left out.
pub fn format_duration(seconds: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut rest = seconds;
    let mut parts = Vec::new();
    for (size, name) in units {
        if rest >= size {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
    }
    if parts.is_empty() { "0s".to_owned() } else { parts.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cloudfront_row() {
        let rows = [
            (
                DenyReason::MissingKeyPairId,
                "MissingKey",
                "Missing Key-Pair-Id query parameter or cookie value",
            ),
            (DenyReason::UnknownKey { key_pair_id: "K".into() }, "InvalidKey", "Unknown Key"),
            (
                DenyReason::UndecodableSignature,
                "MalformedSignature",
                "Could not unencode Signature",
            ),
            (
                DenyReason::MalformedPolicy { detail: "x".into() },
                "MalformedPolicy",
                "Malformed Policy",
            ),
            (
                DenyReason::BadSignature { key_pair_id: "K".into() },
                "AccessDenied",
                "Access denied",
            ),
        ];
        for (reason, code, message) in rows {
            assert_eq!(reason.status(), 403);
            assert_eq!(
                reason.xml_body(),
                format!(r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"#)
            );
        }
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(3_725), "1h 2m 5s");
        assert_eq!(format_duration(86_400 * 2 + 7), "2d 7s");
    }
}
