//! A signed URL's query and Policy: whatever the target, verification answers
//! (never panics), and a grant is only given for a URL its policy covers.
#![no_main]

use keyfront::auth::{ViewerRequest, split_target};
use libfuzzer_sys::fuzz_target;
use trusted::keys;

#[path = "trusted.rs"]
mod trusted;

const BASE: &str = "https://cdn.example.com";

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(target) = split_target(target) else {
        return;
    };
    let (trusted, verifier) = keys();
    let request = ViewerRequest {
        base_url: BASE,
        target: &target,
        cookie_headers: &[],
        client_ip: Some("203.0.113.5".parse().unwrap()),
        // Inside the AWS vectors' validity (2029-06-01 to 2030-01-01).
        now: 1_890_000_000,
    };
    if let Ok(grant) = verifier.verify(&request, trusted) {
        let url = format!("{BASE}{}", target.canonical);
        assert!(grant.policy.check(&url, request.now, request.client_ip).is_ok());
    }
});
