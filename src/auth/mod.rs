//! Signed URLs and signed cookies, checked as CloudFront checks them.
//!
//! Pure code: no I/O, no clock. The caller passes the time, the client's
//! address and the keys a behavior trusts.
//!
//! ```
//! use keyfront::auth::{HashAlgorithm, KeyAlgorithm, PolicySpec, PrivateKey, Signer, TrustedKeys, Verifier, ViewerRequest, split_target};
//!
//! let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
//! let trusted = TrustedKeys::new([("K1".to_owned(), key.public_key())]);
//! let signer = Signer::new("K1", key, HashAlgorithm::Sha1);
//! let url = signer.sign_url("https://cdn.example.com/a.mp4", &PolicySpec::Canned { expires: 2_000_000_000 });
//!
//! let target = split_target(url.strip_prefix("https://cdn.example.com").unwrap()).unwrap();
//! let request = ViewerRequest { base_url: "https://cdn.example.com", target: &target, cookie_headers: &[], client_ip: None, now: 1_900_000_000 };
//! assert!(Verifier::default().verify(&request, &trusted).is_ok());
//! ```

mod encoding;
mod keys;
mod policy;
mod rejection;
mod request;
mod sign;
mod verify;

pub use encoding::{cloudfront_base64_decode, cloudfront_base64_encode};
pub use keys::{HashAlgorithm, KeyAlgorithm, KeyError, PrivateKey, PublicKey, TrustedKeys};
pub use policy::{
    ConditionFailure, MAX_EPOCH, MAX_POLICY_BYTES, Policy, PolicyError, parse_custom_policy, parse_ip_range, wildcard_matches,
};
pub use rejection::{DenyReason, ErrorCode, error_xml, format_duration};
pub use request::{CredentialSource, Credentials, MAX_COOKIE_BYTES, SIGNING_PARAMS, SignedTarget, split_target};
pub use sign::{PolicySpec, PolicyTerms, Signer, SigningParams};
pub use verify::{DEFAULT_MEMO_BYTES, Grant, Rejection, Verifier, ViewerRequest};

/// `2026-11-22T19:24:52Z` for a Unix time, or the number itself if out of range.
pub fn format_epoch(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}
