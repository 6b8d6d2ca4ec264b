//! The verification core through its public API: every CloudFront error row,
//! precedence between URL and cookies, tampering, and the memo's guarantees.

use std::net::IpAddr;

use keyfront::auth::{
    CredentialSource, DenyReason, ErrorCode, Grant, HashAlgorithm, PolicySpec, PolicyTerms, PrivateKey, Rejection, Signer, TrustedKeys,
    Verifier, ViewerRequest, cloudfront_base64_decode, cloudfront_base64_encode, split_target,
};
use keyfront::request::TargetRefusal;

const BASE: &str = "https://cdn.example.com";
const NOW: u64 = 1_900_000_000;
const EXPIRES: u64 = NOW + 3600;

fn key(file: &str) -> PrivateKey {
    let path = format!("{}/tests/vectors/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    PrivateKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn signer(algorithm: HashAlgorithm) -> Signer {
    Signer::new("KRSA", key("rsa_pkcs1.pem"), algorithm)
}

fn trusted() -> TrustedKeys {
    TrustedKeys::new([
        ("KRSA".to_owned(), key("rsa_pkcs8.pem").public_key()),
        ("KEC".to_owned(), key("ec_sec1.pem").public_key()),
    ])
}

struct Check<'a> {
    target: &'a str,
    cookies: &'a [&'a str],
    client_ip: Option<IpAddr>,
    now: u64,
}

impl<'a> Check<'a> {
    fn url(target: &'a str) -> Self {
        Self {
            target,
            cookies: &[],
            client_ip: None,
            now: NOW,
        }
    }

    fn run(&self, verifier: &Verifier) -> Result<Grant, Rejection> {
        self.run_trusting(verifier, &trusted())
    }

    fn run_trusting(&self, verifier: &Verifier, trusted: &TrustedKeys) -> Result<Grant, Rejection> {
        let target = split_target(self.target).expect("a target with a canonical path");
        let request = ViewerRequest {
            base_url: BASE,
            target: &target,
            cookie_headers: self.cookies,
            client_ip: self.client_ip,
            now: self.now,
        };
        verifier.verify(&request, trusted)
    }

    fn reason(&self) -> DenyReason {
        match self.run(&Verifier::default()) {
            Ok(grant) => panic!("{} must be refused, was granted: {grant:?}", self.target),
            Err(rejection) => rejection.reason,
        }
    }
}

fn path_of(url: &str) -> &str {
    url.strip_prefix(BASE).unwrap()
}

fn canned(path: &str) -> String {
    signer(HashAlgorithm::Sha1).sign_url(&format!("{BASE}{path}"), &PolicySpec::Canned { expires: EXPIRES })
}

fn custom(path: &str, terms: PolicyTerms) -> String {
    let url = format!("{BASE}{path}");
    signer(HashAlgorithm::Sha1).sign_url(&url, &PolicySpec::for_url(&url, &terms))
}

fn terms() -> PolicyTerms {
    PolicyTerms {
        date_less_than: EXPIRES,
        ..PolicyTerms::default()
    }
}

#[test]
fn canned_and_custom_urls_pass() {
    assert!(Check::url(path_of(&canned("/a.mp4"))).run(&Verifier::default()).is_ok());
    assert!(Check::url(path_of(&canned("/a.mp4?x=1&y=2"))).run(&Verifier::default()).is_ok());
    let wildcard = custom(
        "/v/1.ts",
        PolicyTerms {
            resource: Some(format!("{BASE}/v/*")),
            ..terms()
        },
    );
    assert!(Check::url(path_of(&wildcard)).run(&Verifier::default()).is_ok());
}

#[test]
fn sha256_and_ecdsa_pass() {
    let url = format!("{BASE}/a");
    let sha256 = signer(HashAlgorithm::Sha256).sign_url(&url, &PolicySpec::Canned { expires: EXPIRES });
    assert!(sha256.ends_with("&Hash-Algorithm=SHA256"));
    assert_eq!(
        Check::url(path_of(&sha256)).run(&Verifier::default()).unwrap().hash_algorithm,
        HashAlgorithm::Sha256
    );
    for algorithm in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
        let ec = Signer::new("KEC", key("ec_pkcs8.pem"), algorithm).sign_url(&url, &PolicySpec::Canned { expires: EXPIRES });
        assert!(Check::url(path_of(&ec)).run(&Verifier::default()).is_ok());
    }
    // The SHA-256 signature does not pass as SHA-1: the parameter is covered in effect.
    let stripped = sha256.replace("&Hash-Algorithm=SHA256", "");
    assert!(matches!(Check::url(path_of(&stripped)).reason(), DenyReason::BadSignature { .. }));
}

#[test]
fn every_error_row_of_cloudfront() {
    let good = canned("/a");
    let rows: Vec<(String, ErrorCode)> = vec![
        (format!("{BASE}/a"), ErrorCode::MissingKey),
        (good.replace("Key-Pair-Id=KRSA", "Key-Pair-Id="), ErrorCode::MissingKey),
        (good.replace("Key-Pair-Id=KRSA", "Key-Pair-Id=KNOPE"), ErrorCode::InvalidKey),
        (good.replace("Signature=", "Signature=%%%"), ErrorCode::MalformedSignature),
        (good.replace("Signature=", "Ignored="), ErrorCode::MalformedSignature),
        (
            good.replace(&format!("Expires={EXPIRES}"), "Expires=1900003600000"),
            ErrorCode::MalformedPolicy,
        ),
        (
            good.replace(&format!("Expires={EXPIRES}"), "Expires=soon"),
            ErrorCode::MalformedPolicy,
        ),
        (good.replace(&format!("Expires={EXPIRES}&"), ""), ErrorCode::MalformedPolicy),
        (
            good.replace(&format!("Expires={EXPIRES}"), &format!("Expires={}", EXPIRES + 1)),
            ErrorCode::AccessDenied,
        ),
    ];
    for (url, code) in rows {
        let reason = Check::url(path_of(&url)).reason();
        assert_eq!(reason.error_code(), code, "{url}: {reason}");
        assert_eq!(reason.status(), 403);
    }
}

#[test]
fn malformed_custom_policies_are_malformed_policy() {
    let good = custom(
        "/a",
        PolicyTerms {
            ip_address: Some("10.0.0.0/8".into()),
            ..terms()
        },
    );
    let encoded = good.split("Policy=").nth(1).unwrap().split('&').next().unwrap();
    let milliseconds = cloudfront_base64_encode(
        &String::from_utf8(cloudfront_base64_decode(encoded).unwrap())
            .unwrap()
            .replace(&EXPIRES.to_string(), "1900003600000")
            .into_bytes(),
    );
    for bad in ["bm90IGpzb24_", "!!!", milliseconds.as_str()] {
        let url = good.replace(encoded, bad);
        assert_eq!(Check::url(path_of(&url)).reason().error_code(), ErrorCode::MalformedPolicy, "{bad}");
    }
}

#[test]
fn tampering_is_refused() {
    let good = canned("/a.mp4?quality=hd&lang=en");
    let signature = good.split("Signature=").nth(1).unwrap().split('&').next().unwrap();
    let mut bytes = cloudfront_base64_decode(signature).unwrap();
    bytes[100] ^= 0x01;
    let tampered = [
        good.replace(signature, &cloudfront_base64_encode(&bytes)),
        format!("{good}&admin=1"),
        good.replace("quality=hd&lang=en", "lang=en&quality=hd"),
        good.replace("quality=hd", "quality=4k"),
        good.replace("/a.mp4", "/b.mp4"),
    ];
    for url in &tampered {
        assert!(
            matches!(Check::url(path_of(url)).reason(), DenyReason::BadSignature { .. }),
            "{url}"
        );
    }
    // A lower-case `signature` is the viewer's own parameter, not the signature.
    let lower = good.replace("Signature=", "signature=");
    assert_eq!(Check::url(path_of(&lower)).reason().error_code(), ErrorCode::MalformedSignature);
    // Signing parameters given twice are ambiguous.
    let doubled = format!("{good}&Signature={signature}");
    assert_eq!(Check::url(path_of(&doubled)).reason().error_code(), ErrorCode::AccessDenied);
}

#[test]
fn time_and_ip_conditions() {
    let url = custom(
        "/a",
        PolicyTerms {
            date_greater_than: Some(NOW - 10),
            ip_address: Some("192.0.2.0/24".into()),
            ..terms()
        },
    );
    let inside: IpAddr = "192.0.2.44".parse().unwrap();
    let check = |now, ip| Check {
        client_ip: ip,
        now,
        ..Check::url(path_of(&url))
    };
    assert!(check(NOW, Some(inside)).run(&Verifier::default()).is_ok());
    assert_eq!(check(EXPIRES, Some(inside)).reason().label(), "expired");
    assert_eq!(check(NOW - 11, Some(inside)).reason().label(), "not_yet_valid");
    assert_eq!(check(NOW, Some("192.0.3.1".parse().unwrap())).reason().label(), "ip_not_allowed");
    assert_eq!(check(NOW, None).reason().label(), "ip_not_allowed");
}

fn as_cookie_header(signed_url: &str) -> String {
    let query = signed_url.split_once('?').unwrap().1;
    query
        .split('&')
        .map(|pair| format!("CloudFront-{pair}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn cookies_work_and_url_parameters_take_precedence() {
    let folder = custom(
        "/f/",
        PolicyTerms {
            resource: Some(format!("{BASE}/f/*")),
            ..terms()
        },
    );
    let header = as_cookie_header(&folder);
    let cookies = [header.as_str()];
    let with_cookies = |target| Check {
        cookies: &cookies,
        ..Check::url(target)
    };
    let grant = with_cookies("/f/movie.mp4").run(&Verifier::default()).unwrap();
    assert_eq!(grant.source, CredentialSource::SignedCookies);
    assert_eq!(with_cookies("/g/movie.mp4").reason().label(), "resource_mismatch");
    // Any signing parameter in the URL makes it a signed URL: the good cookies are not looked at.
    assert_eq!(with_cookies("/f/movie.mp4?Expires=1").reason().error_code(), ErrorCode::MissingKey);
    assert_eq!(
        with_cookies("/f/movie.mp4?Key-Pair-Id=KRSA").reason().error_code(),
        ErrorCode::MalformedPolicy
    );
    // The viewer's own query is part of the URL the cookie's policy covers.
    assert!(with_cookies("/f/movie.mp4?t=10").run(&Verifier::default()).is_ok());
    // A canned cookie covers its own URL only.
    let canned_header = as_cookie_header(&canned("/c.pdf"));
    let canned_cookies = [canned_header.as_str()];
    assert!(
        Check {
            cookies: &canned_cookies,
            ..Check::url("/c.pdf")
        }
        .run(&Verifier::default())
        .is_ok()
    );
    assert!(
        Check {
            cookies: &canned_cookies,
            ..Check::url("/d.pdf")
        }
        .run(&Verifier::default())
        .is_err()
    );
}

#[test]
fn memo_skips_only_the_signature_check() {
    let verifier = Verifier::default();
    let url = canned("/hot.mp4");
    let first = Check::url(path_of(&url)).run(&verifier).unwrap();
    let second = Check::url(path_of(&url)).run(&verifier).unwrap();
    assert!(!first.memo_hit);
    assert!(second.memo_hit);
    // Expiry is still checked on a memo hit.
    let later = Check {
        now: EXPIRES,
        ..Check::url(path_of(&url))
    };
    assert_eq!(later.run(&verifier).unwrap_err().reason.label(), "expired");
    // Another URL with the same signature is not a hit and fails.
    let moved = url.replace("/hot.mp4", "/cold.mp4");
    assert!(matches!(
        Check::url(path_of(&moved)).run(&verifier).unwrap_err().reason,
        DenyReason::BadSignature { .. }
    ));
    // The same URL and signature with a later expiry: not a hit, and refused.
    let extended = url.replace(&format!("Expires={EXPIRES}"), &format!("Expires={}", EXPIRES + 1));
    assert_ne!(extended, url);
    assert!(matches!(
        Check::url(path_of(&extended)).run(&verifier).unwrap_err().reason,
        DenyReason::BadSignature { .. }
    ));
    // The same query under another trusted key id: still the signature check, not the memo.
    let other_key = url.replace("Key-Pair-Id=KRSA", "Key-Pair-Id=KEC");
    assert!(matches!(
        Check::url(path_of(&other_key)).run(&verifier).unwrap_err().reason,
        DenyReason::BadSignature { .. }
    ));
    // The same signature claimed as SHA-256 is not a hit either.
    let other_hash = format!("{url}&Hash-Algorithm=SHA256");
    assert!(matches!(
        Check::url(path_of(&other_hash)).run(&verifier).unwrap_err().reason,
        DenyReason::BadSignature { .. }
    ));
    // Wildcard policies: a memo hit for one file still checks the Resource for the next.
    let folder = custom(
        "/f/a",
        PolicyTerms {
            resource: Some(format!("{BASE}/f/*")),
            ..terms()
        },
    );
    let query = folder.split_once('?').unwrap().1;
    assert!(!Check::url(&format!("/f/a?{query}")).run(&verifier).unwrap().memo_hit);
    assert!(Check::url(&format!("/f/b?{query}")).run(&verifier).unwrap().memo_hit);
    assert_eq!(
        Check::url(&format!("/g/b?{query}")).run(&verifier).unwrap_err().reason.label(),
        "resource_mismatch"
    );
}

/// Each thread keeps its last proofs in front of the shared memo: another
/// thread finds a proof in the memo, another memo (a verifier built anew)
/// proves its first request itself, and a key one byte off is no hit.
#[test]
fn a_threads_recent_proofs_stand_in_front_of_their_own_memo_only() {
    let verifier = Verifier::default();
    let url = canned("/recent.mp4");
    assert!(!Check::url(path_of(&url)).run(&verifier).unwrap().memo_hit);
    assert!(Check::url(path_of(&url)).run(&verifier).unwrap().memo_hit);
    let elsewhere = verifier.clone();
    let path = path_of(&url).to_owned();
    let shared = std::thread::spawn(move || Check::url(&path).run(&elsewhere).unwrap().memo_hit);
    assert!(shared.join().unwrap(), "another thread finds the proof in the shared memo");
    assert!(!Check::url(path_of(&url)).run(&Verifier::default()).unwrap().memo_hit);
    let mut forged = url.clone().into_bytes();
    let at = url.find("Signature=").unwrap() + "Signature=".len() + 5;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(matches!(
        Check::url(path_of(&forged)).run(&verifier).unwrap_err().reason,
        DenyReason::BadSignature { .. }
    ));
}

/// A proof kept by the memo or a thread never outlives its key: once the
/// key id is no longer trusted the URL is refused as an unknown key, and an
/// id given other key material (a rotation under the same id) checks the
/// signature again, which fails.
#[test]
fn a_kept_proof_never_outlives_its_key() {
    let verifier = Verifier::default();
    let url = canned("/rotated.mp4");
    let check = Check::url(path_of(&url));
    assert!(check.run(&verifier).is_ok());
    assert!(check.run(&verifier).unwrap().memo_hit);
    let revoked = TrustedKeys::new([("KEC".to_owned(), key("ec_sec1.pem").public_key())]);
    assert!(matches!(
        check.run_trusting(&verifier, &revoked).unwrap_err().reason,
        DenyReason::UnknownKey { .. }
    ));
    let rotated = TrustedKeys::new([("KRSA".to_owned(), key("ec_sec1.pem").public_key())]);
    assert!(matches!(
        check.run_trusting(&verifier, &rotated).unwrap_err().reason,
        DenyReason::BadSignature { .. }
    ));
}

#[test]
fn oversized_input_is_refused_without_work() {
    let long = format!("/{}", "a".repeat(9000));
    assert_eq!(
        split_target(&long),
        Err(TargetRefusal::TooLong { bytes: 9001 }),
        "refused before any parsing"
    );
    let huge = "c=".to_owned() + &"x".repeat(30_000);
    let cookies = [huge.as_str()];
    let reason = Check {
        cookies: &cookies,
        ..Check::url("/a")
    }
    .reason();
    assert_eq!((reason.status(), reason.label()), (413, "cookies_too_large"));
    // A policy parameter that is huge but within the URL limit is simply malformed.
    let big_policy = format!("/a?Policy={}&Signature=AA__&Key-Pair-Id=KRSA", "A".repeat(8000));
    assert_eq!(Check::url(&big_policy).reason().error_code(), ErrorCode::MalformedPolicy);
}
