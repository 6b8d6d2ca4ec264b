//! A signed URL's query and Policy: whatever the target, verification answers
//! (never panics), and a grant is only given for a URL its policy covers.
#![no_main]

use std::sync::OnceLock;

use keyfront::auth::{PublicKey, TrustedKeys, Verifier, ViewerRequest, split_target};
use libfuzzer_sys::fuzz_target;

const BASE: &str = "https://cdn.example.com";

fn keys() -> &'static (TrustedKeys, Verifier) {
    static KEYS: OnceLock<(TrustedKeys, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pem = include_str!("../../tests/vectors/keys/rsa_public.pem");
        let trusted = TrustedKeys::new([("K2JCJMDEHXQW5F".to_owned(), PublicKey::from_pem(pem).unwrap())]);
        (trusted, Verifier::new(1 << 20))
    })
}

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
