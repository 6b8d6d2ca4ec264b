//! The signed cookies header: whatever the `Cookie` values, verification
//! answers, and cookies never outrank a URL that carries signing parameters.
#![no_main]

use keyfront::auth::{CredentialSource, DenyReason, ViewerRequest, split_target};
use libfuzzer_sys::fuzz_target;
use trusted::keys;

#[path = "trusted.rs"]
mod trusted;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let headers: Vec<&str> = text.split('\n').collect();
    let (trusted, verifier) = keys();
    for target in ["/images/logo.svg", "/images/logo.svg?Key-Pair-Id=KNOTCOOKIE"] {
        let target = split_target(target).unwrap();
        let request = ViewerRequest {
            base_url: "https://cdn.example.com",
            target: &target,
            cookie_headers: &headers,
            client_ip: Some("203.0.113.5".parse().unwrap()),
            // Inside the AWS vectors' validity (2029-06-01 to 2030-01-01).
            now: 1_890_000_000,
        };
        match verifier.verify(&request, trusted) {
            Ok(grant) => assert_eq!(grant.source, CredentialSource::SignedCookies),
            Err(rejection) if target.url_credentials.key_pair_id.is_some() => {
                // The URL's key id is judged, never the cookies'.
                assert!(
                    matches!(rejection.reason, DenyReason::UnknownKey { .. } | DenyReason::CookiesTooLarge { .. }),
                    "{:?}",
                    rejection.reason
                );
            }
            Err(_) => {}
        }
    }
});
