//! Custom policy documents: a policy that parses re-serializes (as AWS's
//! signers write it) to a document that parses to the same policy, and a URL
//! signed with it verifies exactly when the first policy allows the request.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use keyfront::auth::{
    HashAlgorithm, KeyAlgorithm, MAX_POLICY_BYTES, PolicySpec, PolicyTerms, PrivateKey, Signer, TrustedKeys, Verifier, ViewerRequest,
    parse_custom_policy, split_target,
};
use libfuzzer_sys::fuzz_target;

const BASE: &str = "https://cdn.example.com";

fn signer() -> &'static (Signer, TrustedKeys) {
    static SIGNER: OnceLock<(Signer, TrustedKeys)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let key = PrivateKey::generate(KeyAlgorithm::Ecdsa);
        let trusted = TrustedKeys::new([("KFUZZ".to_owned(), key.public_key())]);
        (Signer::new("KFUZZ", key, HashAlgorithm::Sha256), trusted)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = parse_custom_policy(data) else {
        return;
    };
    let terms = PolicyTerms {
        resource: Some(policy.resource.clone().unwrap_or_else(|| "*".to_owned())),
        date_less_than: policy.date_less_than,
        date_greater_than: policy.date_greater_than,
        ip_address: policy.source_ip.map(|range| range.to_string()),
    };
    let url = format!("{BASE}/fuzz/a.mp4");
    let PolicySpec::Custom { document } = PolicySpec::for_url("https://elsewhere.example/", &terms) else {
        unreachable!("a resource other than the URL makes a custom policy");
    };
    if document.len() > MAX_POLICY_BYTES {
        // Held in canonical spelling, a Resource can grow (each `[` becomes
        // `%5B`) past the size the parser reads; such a policy is refused.
        assert!(parse_custom_policy(document.as_bytes()).is_err());
        return;
    }
    let again = parse_custom_policy(document.as_bytes()).expect("a re-serialized policy parses");
    assert_eq!(again.resource, terms.resource, "the Resource survives re-serialization");
    assert_eq!(
        (again.date_less_than, again.date_greater_than, again.source_ip),
        (policy.date_less_than, policy.date_greater_than, policy.source_ip)
    );
    let (signer, trusted) = signer();
    let signed = signer.sign_url(&url, &PolicySpec::Custom { document });
    let Ok(target) = split_target(signed.strip_prefix(BASE).unwrap()) else {
        // A policy this large signs a URL over CloudFront's 8,192-byte
        // limit, which the edge refuses before reading it.
        assert!(signed.len() > keyfront::request::MAX_URL_BYTES);
        return;
    };
    for (now, ip) in [
        (1_000_000_000, "192.0.2.1"),
        (2_000_000_000, "2001:db8::1"),
        (policy.date_less_than.saturating_sub(1), "198.51.100.7"),
    ] {
        let client_ip: Option<IpAddr> = ip.parse().ok();
        let request = ViewerRequest {
            base_url: BASE,
            target: &target,
            cookie_headers: &[],
            client_ip,
            now,
        };
        let verified = Verifier::new(0).verify(&request, trusted).is_ok();
        assert_eq!(verified, policy.check(&url, now, client_ip).is_ok(), "at {now} from {ip}");
    }
});
